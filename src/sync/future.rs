//! Driving a future to completion on the current thread.
//!
//! [`block_on`] is `loom::future::block_on` under `--cfg loom`,
//! `shuttle::future::block_on` under `--cfg shuttle`, and otherwise a small
//! park/unpark loop. Tests and downstream models use it to await lazyflight's
//! futures without a runtime.

#[cfg(loom)]
pub use loom::future::block_on;

#[cfg(all(shuttle, not(loom)))]
pub use shuttle::future::{block_on, spawn, JoinHandle};

/// Blocks the current thread until `fut` completes.
///
/// # Examples
///
/// ```
/// use lazyflight::sync::future::block_on;
/// assert_eq!(block_on(async { 7 }), 7);
/// ```
#[cfg(not(any(loom, shuttle)))]
pub fn block_on<F: core::future::Future>(fut: F) -> F::Output {
    use core::pin::pin;
    use core::task::{Context, Poll};
    use std::sync::atomic::{AtomicBool, Ordering::*};
    use std::sync::Arc;

    /// The thread to unpark, and whether a wake-up came since the last
    /// poll. The thread's park token alone is not enough: anything that
    /// parks this thread inside `poll` (a nested `block_on`, `sync_await`,
    /// a channel) may consume the token our waker left, and we would then
    /// park for ever although the future is ready to make progress.
    struct Unparker {
        thread: std::thread::Thread,
        woken: AtomicBool,
    }
    impl std::task::Wake for Unparker {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            // Release: pairs with the Acquire swap below, so the poll that
            // follows sees what happened before the wake-up.
            self.woken.store(true, Release);
            self.thread.unpark();
        }
    }

    let unparker = Arc::new(Unparker {
        thread: std::thread::current(),
        woken: AtomicBool::new(false),
    });
    let waker = core::task::Waker::from(unparker.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            Poll::Pending => {
                // Blocking inside a run (a task's poll or callback) would
                // strand the runs that tasks woken there queued on this
                // thread: the future may be waiting for one of them.
                crate::task::make_queued_runs();
                // Spurious unparks (and tokens consumed by a nested wait)
                // only send us round this loop again.
                while !unparker.woken.swap(false, Acquire) {
                    std::thread::park();
                }
            }
        }
    }
}
