//! Test harness crate; the models are in tests/. What several of them share
//! lives here.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The number in environment variable `name`, or `default` if it is unset.
///
/// # Panics
///
/// If the variable is set but is not a number: a budget that was asked for
/// and silently not applied would make a run look more thorough than it was.
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// How a planned piece of work (an `ALazy` initializer, a `Group` leader's
/// work) ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// Returns `Ok`.
    Ok,
    /// Returns `Err`.
    Err,
    /// Panics inside its future, after its yields.
    Panic,
    /// Panics in the closure, before any future exists.
    PanicInF,
}

/// Drops the inner future after `polls` polls (a caller giving up).
pub struct GiveUpAfter<F> {
    /// The caller's future.
    pub inner: Pin<Box<F>>,
    /// Polls left before it gives up.
    pub polls: usize,
}

impl<F: Future> Future for GiveUpAfter<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            return Poll::Ready(None);
        }
        self.polls -= 1;
        self.inner.as_mut().poll(cx).map(Some)
    }
}
