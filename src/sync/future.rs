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

    struct Unparker(std::thread::Thread);
    impl super::WakeHandle for Unparker {
        fn wake(&self) {
            self.0.unpark();
        }
    }

    let waker = super::waker(Unparker(std::thread::current()));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => return out,
            // A spurious unpark only costs one extra poll.
            Poll::Pending => std::thread::park(),
        }
    }
}
