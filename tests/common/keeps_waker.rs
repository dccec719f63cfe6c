//! A future for the task test files that need a task's own waker in hand.

use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Pending once; the waker it saw is kept where the test can take it
/// (`.0`). Ready at the next poll.
pub(crate) struct KeepsWaker(pub(crate) Arc<Mutex<Option<Waker>>>, pub(crate) bool);

impl std::future::Future for KeepsWaker {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.1 {
            return Poll::Ready(());
        }
        self.1 = true;
        *self.0.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }
}
