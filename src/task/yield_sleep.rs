//! [`yield_now`] and [`sleep`]: suspensions that go through the executor.

use core::fmt;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

use super::context::{self, current_executor};
use super::try_::TaskError;
use crate::sync::atomic::{AtomicU8, Ordering::*};
use crate::sync::Arc;
use crate::wait_queue::{WaitKey, WaitQueue};

/// Suspends the current task and re-queues it at the tail of its executor.
///
/// This is async_simple's `co_await Yield{}`.
///
/// # Errors
///
/// [`TaskError::NoExecutor`] at once in a task without an executor (there is
/// nowhere to yield to), as async_simple's `Yield` refuses.
///
/// # Cancel safety
///
/// Cancel safe: it holds nothing.
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sync_await, yield_now, Lazy, SimpleExecutor, TaskError};
///
/// let ex = SimpleExecutor::new(1);
/// assert!(sync_await(Lazy::new(async { yield_now().await }).via(ex)).is_ok());
/// let no_executor = sync_await(Lazy::new(async { yield_now().await }));
/// assert!(matches!(no_executor, Err(TaskError::NoExecutor)));
/// ```
pub fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

/// The future of [`yield_now`].
///
/// # Cancel safety
///
/// Cancel safe.
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = Result<(), TaskError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.yielded {
            return Poll::Ready(Ok(()));
        }
        if !context::has_executor() {
            return Poll::Ready(Err(TaskError::NoExecutor));
        }
        self.yielded = true;
        // The root task sees a wake during its poll and re-queues itself on
        // its executor, behind every job already there.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

const WAITING: u8 = 0;
const FIRED: u8 = 1;
const REJECTED: u8 = 2;

/// The timer's side of a [`Sleep`].
struct Alarm {
    /// `WAITING`, then `FIRED` (the timed job ran) or `REJECTED` (it was
    /// dropped unrun).
    state: AtomicU8,
    waiters: WaitQueue,
}

impl Alarm {
    fn ring(&self, to: u8) {
        // Release: pairs with the Acquire loads in `Sleep::poll`.
        self.state.store(to, Release);
        self.waiters.notify_all();
    }
}

/// Rings the alarm when the timed job runs, or rejects it when the job is
/// dropped unrun.
struct AlarmJob(Option<Arc<Alarm>>);

impl AlarmJob {
    fn fire(mut self) {
        if let Some(a) = self.0.take() {
            a.ring(FIRED);
        }
    }
}

impl Drop for AlarmJob {
    fn drop(&mut self) {
        if let Some(a) = self.0.take() {
            a.ring(REJECTED);
        }
    }
}

/// Suspends the current task for `duration`, through its executor's
/// [`schedule_after`](super::Executor::schedule_after); the task resumes on
/// its executor.
///
/// # Errors
///
/// [`TaskError::NoExecutor`] in a task without an executor, and
/// [`TaskError::Rejected`] if the executor refuses the timer (or drops it
/// unrun).
///
/// # Cancel safety
///
/// Cancel safe: dropping it leaves the timer to fire into nothing.
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sleep, sync_await, Lazy, SimpleExecutor};
/// use std::time::{Duration, Instant};
///
/// let ex = SimpleExecutor::new(1);
/// let t0 = Instant::now();
/// sync_await(Lazy::new(sleep(Duration::from_millis(5))).via(ex)).unwrap();
/// assert!(t0.elapsed() >= Duration::from_millis(5));
/// ```
pub fn sleep(duration: Duration) -> Sleep {
    Sleep {
        duration,
        alarm: None,
        key: WaitKey::new(),
    }
}

/// The future of [`sleep`].
///
/// # Cancel safety
///
/// Cancel safe.
#[must_use = "futures do nothing unless awaited"]
pub struct Sleep {
    duration: Duration,
    alarm: Option<Arc<Alarm>>,
    key: WaitKey,
}

impl Unpin for Sleep {}

impl Future for Sleep {
    type Output = Result<(), TaskError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.alarm.is_none() {
            let Some(ex) = current_executor() else {
                return Poll::Ready(Err(TaskError::NoExecutor));
            };
            let alarm = Arc::new(Alarm {
                state: AtomicU8::new(WAITING),
                waiters: WaitQueue::new(),
            });
            let job = AlarmJob(Some(alarm.clone()));
            this.alarm = Some(alarm);
            // A refusal hands the job back; dropping it rings REJECTED.
            drop(ex.schedule_after(this.duration, Box::new(move || job.fire())));
        }
        let alarm = this.alarm.as_ref().expect("set above");
        loop {
            // Acquire: pairs with the Release store in `Alarm::ring`.
            match alarm.state.load(Acquire) {
                FIRED => return Poll::Ready(Ok(())),
                REJECTED => return Poll::Ready(Err(TaskError::Rejected)),
                _ => {}
            }
            if this.key.is_registered() {
                if alarm.waiters.poll(&mut this.key, cx).is_pending() {
                    return Poll::Pending;
                }
                continue;
            }
            // The re-check under the queue lock. Acquire: pairs with the
            // Release store in `Alarm::ring`, which stores before it takes
            // the queue lock to notify.
            if alarm.waiters.register(&mut this.key, cx.waker(), || {
                alarm.state.load(Acquire) == WAITING
            }) {
                return Poll::Pending;
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(a) = &self.alarm {
            a.waiters.cancel(&mut self.key, || {});
        }
    }
}

impl fmt::Debug for Sleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sleep")
            .field("duration", &self.duration)
            .field("started", &self.alarm.is_some())
            .finish()
    }
}
