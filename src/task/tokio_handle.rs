//! [`TokioExecutor`]: a tokio runtime [`Handle`] as an [`Executor`].

use core::fmt;
use core::time::Duration;

use tokio::runtime::Handle;

use super::executor::{Executor, Job, ScheduleError};

/// Runs lazyflight tasks on a tokio runtime (feature `tokio`).
///
/// Each job is spawned as a tokio task (from a thread of this runtime, one
/// that yields once before it runs the job, so that it goes behind the
/// tasks already queued there rather than into the worker's LIFO slot, and
/// [`yield_now`](super::yield_now) gives way to them; among themselves they
/// run in tokio's order, which is not strictly FIFO); timed jobs use
/// `tokio::time::sleep`, so the runtime needs its time driver
/// (`enable_time`). A runtime that is
/// shutting down drops spawned jobs unrun, which completes their lazyflight
/// tasks with [`TaskError::Rejected`](super::TaskError::Rejected).
///
/// [`current_thread_in_executor`](Executor::current_thread_in_executor) is
/// true on any thread that is inside this runtime's context (its workers,
/// or a thread that entered it). That includes the threads of its blocking
/// pool: tokio does not tell them from its workers, so
/// [`sync_await`](super::sync_await) refuses inside `spawn_blocking` too,
/// although blocking is safe there. On such a thread, drive the task with the
/// runtime handle's `block_on` instead:
/// `handle.block_on(lazy.via(ex).into_future())`.
/// Erring this way keeps the check sound where it matters: a task blocked in
/// `sync_await` on a worker of a one-worker runtime would wait for ever for
/// the job it scheduled on that same worker.
///
/// The runtime must run its tasks on its own: a multi-thread runtime does;
/// a `current_thread` runtime runs them only while some thread is inside its
/// `block_on`. With a `current_thread` runtime that nothing drives, jobs are
/// spawned but never run, so `sync_await` of a task bound to this executor
/// from an outside thread waits until the runtime is dropped (the task then
/// completes with `Rejected`).
///
/// # Examples
///
/// ```
/// use lazyflight::sync::Arc;
/// use lazyflight::task::{current_executor, sync_await, Lazy, TokioExecutor};
///
/// let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
/// let ex = Arc::new(TokioExecutor::new(rt.handle().clone()));
/// let v = sync_await(Lazy::new(async {
///     lazyflight::task::sleep(std::time::Duration::from_millis(1)).await.unwrap();
///     current_executor().unwrap().current_thread_in_executor()
/// }).via(ex));
/// assert!(v);
/// ```
pub struct TokioExecutor {
    handle: Handle,
}

impl TokioExecutor {
    /// Wraps a runtime handle.
    pub fn new(handle: Handle) -> Self {
        Self { handle }
    }

    /// The wrapped handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Executor for TokioExecutor {
    fn schedule(&self, job: Job) -> Result<(), ScheduleError> {
        if self.current_thread_in_executor() {
            // Spawned from one of the runtime's workers, a task goes into
            // that worker's LIFO slot and runs next, ahead of the tasks
            // already queued: a `yield_now` (a task re-queued from its own
            // run) would not give way. tokio's own yield puts the job behind
            // them, as near the `Executor` contract's FIFO order as tokio
            // lets a spawner come.
            drop(self.handle.spawn(async move {
                tokio::task::yield_now().await;
                job()
            }));
        } else {
            drop(self.handle.spawn(async move { job() }));
        }
        Ok(())
    }

    fn current_thread_in_executor(&self) -> bool {
        Handle::try_current().is_ok_and(|h| h.id() == self.handle.id())
    }

    fn schedule_after(&self, delay: Duration, job: Job) -> Result<(), ScheduleError> {
        drop(self.handle.spawn(async move {
            tokio::time::sleep(delay).await;
            job()
        }));
        Ok(())
    }

    fn name(&self) -> &str {
        "TokioExecutor"
    }
}

impl fmt::Debug for TokioExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioExecutor")
            .field("runtime", &self.handle.id())
            .finish()
    }
}
