//! `lazyflight::sync::future::block_on` (the `std` build's park loop).

use core::future::{poll_fn, Future};
use core::pin::Pin;
use core::task::Poll;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use futures::channel::oneshot;
use lazyflight::sync::future::block_on;
use lazyflight::task::{sync_await, Lazy, SimpleExecutor};

/// Runs `wait` (which blocks its thread) inside a poll of an outer
/// `block_on`, after the outer future has registered its waker; a thread
/// wakes the outer future first and lets `wait` return only afterwards. The
/// nested wait parks the same thread, so it may consume the park token the
/// outer waker left: the outer `block_on` must still poll again (it used to
/// park for ever).
fn nested_wait_then_outer_wake_up(wait: impl FnOnce(oneshot::Receiver<()>) + Send + 'static) {
    let (done_tx, done_rx) = mpsc::channel();
    thread::spawn(move || {
        let (outer_tx, mut outer_rx) = oneshot::channel::<u32>();
        let (inner_tx, inner_rx) = oneshot::channel::<()>();
        thread::spawn(move || {
            thread::sleep(Duration::from_millis(50));
            outer_tx.send(7).unwrap();
            thread::sleep(Duration::from_millis(50));
            inner_tx.send(()).unwrap();
        });
        let mut wait = Some((wait, inner_rx));
        let got = block_on(poll_fn(|cx| {
            if let Poll::Ready(v) = Pin::new(&mut outer_rx).poll(cx) {
                return Poll::Ready(v.unwrap());
            }
            if let Some((wait, inner_rx)) = wait.take() {
                wait(inner_rx);
            }
            Poll::Pending
        }));
        done_tx.send(got).unwrap();
    });
    let got = done_rx.recv_timeout(Duration::from_secs(20));
    assert_eq!(
        got,
        Ok(7),
        "the outer block_on was not polled again after its waker fired"
    );
}

#[test]
fn a_nested_block_on_does_not_swallow_the_outer_wake_up() {
    nested_wait_then_outer_wake_up(|inner| block_on(inner).unwrap());
}

#[test]
fn a_sync_await_inside_block_on_does_not_swallow_the_outer_wake_up() {
    nested_wait_then_outer_wake_up(|inner| {
        let ex = SimpleExecutor::new(1);
        sync_await(Lazy::new(async move { inner.await.unwrap() }).via(ex));
    });
}

#[test]
fn spurious_unparks_only_cost_polls() {
    let (tx, rx) = oneshot::channel::<u32>();
    let me = thread::current();
    let poker = thread::spawn(move || {
        for _ in 0..100 {
            me.unpark();
        }
        thread::sleep(Duration::from_millis(20));
        tx.send(3).unwrap();
    });
    assert_eq!(block_on(rx), Ok(3));
    poker.join().unwrap();
}
