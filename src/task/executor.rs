//! The [`Executor`] trait: where tasks run when they are not running inline.

use core::fmt;
use core::time::Duration;

use crate::sync::Arc;

/// A unit of work handed to an [`Executor`].
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// A shared, type-erased executor, as tasks carry it down the await chain.
///
/// With the default build this is the standard library's `Arc<dyn Executor>`,
/// so an `Arc<SimpleExecutor>` coerces to it at any call site. (Under
/// `--cfg loom` it is loom's `Arc`, which cannot coerce: build the standard
/// `Arc<dyn Executor>` first and convert it with loom's `Arc::from_std`.)
pub type ExecutorRef = Arc<dyn Executor>;

/// An executor refused a job; the job is handed back unrun.
///
/// Returning the job (rather than dropping it) lets the caller decide: the
/// task machinery drops it, which completes the task it would have resumed
/// with [`TaskError::Rejected`](super::TaskError::Rejected), so a refused
/// schedule is an error in the task's [`Try`](super::Try), never a task that
/// is silently never resumed.
pub struct ScheduleError {
    job: Job,
}

impl ScheduleError {
    /// Wraps the refused job.
    pub fn new(job: Job) -> Self {
        Self { job }
    }

    /// The refused job.
    pub fn into_job(self) -> Job {
        self.job
    }
}

impl fmt::Debug for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScheduleError").finish_non_exhaustive()
    }
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the executor refused the job")
    }
}

impl std::error::Error for ScheduleError {}

// SAFETY: a shared `&ScheduleError` gives no access to the job (`Debug` and
// `Display` do not touch it; only `into_job`, by value, reaches it), so
// sharing one between threads shares nothing that is not `Sync`. `Sync`
// lets it convert into `Box<dyn Error + Send + Sync>` (and `anyhow::Error`)
// with `?`.
unsafe impl Sync for ScheduleError {}

/// Something that runs jobs: a thread pool, an event loop, a runtime handle.
///
/// The trait is object safe; tasks hold executors as [`ExecutorRef`].
///
/// # Contract
///
/// * [`schedule`](Self::schedule) either runs `job` exactly once, later and on
///   whatever thread the executor chooses, or returns it in the error.
///   "Later" means after `schedule` has returned, or at least not on the
///   calling thread inside the call: a task's run schedules its next run
///   from inside itself (a [`yield_now`](super::yield_now), a wake during
///   its poll), so an executor that ran jobs inline would nest one run in
///   the other, and a task that yields in a loop would overflow the stack. An
///   executor that accepts a job and then drops it unrun (for example because
///   it shuts down) must *drop* it: the tasks' jobs detect that and complete
///   their task with [`TaskError::Rejected`](super::TaskError::Rejected).
///   Dropping a job runs that completion at once, on the dropping thread:
///   the task's callback, and the drop of its future and lazy local, which
///   may wake other tasks and so call `schedule` again. Drop jobs outside
///   the executor's own locks.
/// * Jobs should run in FIFO order for [`yield_now`](super::yield_now) to be
///   fair; nothing else depends on the order.
/// * [`current_thread_in_executor`](Self::current_thread_in_executor) must be
///   exact: [`sync_await`](super::sync_await) relies on it to refuse to block
///   one of the executor's own threads.
///
/// # Examples
///
/// An executor that runs every job on a fresh thread:
///
/// ```
/// use lazyflight::sync::{thread, Arc};
/// use lazyflight::task::{Executor, Job, Lazy, ScheduleError};
/// use std::time::{Duration, Instant};
///
/// #[derive(Debug)]
/// struct ThreadPerJob;
/// impl Executor for ThreadPerJob {
///     fn schedule(&self, job: Job) -> Result<(), ScheduleError> {
///         thread::spawn(job);
///         Ok(())
///     }
///     fn current_thread_in_executor(&self) -> bool {
///         false
///     }
///     fn schedule_after(&self, delay: Duration, job: Job) -> Result<(), ScheduleError> {
///         thread::spawn(move || {
///             let deadline = Instant::now() + delay;
///             while let Some(left) = deadline.checked_duration_since(Instant::now()) {
///                 thread::park_timeout(left);
///             }
///             job()
///         });
///         Ok(())
///     }
/// }
///
/// let ex: Arc<dyn Executor> = Arc::new(ThreadPerJob);
/// let v = lazyflight::task::sync_await(Lazy::new(async { 40 + 2 }).via(ex));
/// assert_eq!(v, 42);
/// ```
pub trait Executor: Send + Sync + fmt::Debug + 'static {
    /// Runs `job` soon, or hands it back.
    fn schedule(&self, job: Job) -> Result<(), ScheduleError>;

    /// Whether the calling thread is one of this executor's threads.
    fn current_thread_in_executor(&self) -> bool;

    /// Runs `job` once `delay` has passed, or hands it back.
    ///
    /// The default refuses, so [`sleep`](super::sleep) on an executor without
    /// timers fails with [`TaskError::Rejected`](super::TaskError::Rejected)
    /// instead of hanging.
    fn schedule_after(&self, delay: Duration, job: Job) -> Result<(), ScheduleError> {
        let _ = delay;
        Err(ScheduleError::new(job))
    }

    /// A name for diagnostics.
    fn name(&self) -> &str {
        "executor"
    }
}

/// Compares two executor handles by identity.
#[allow(dead_code)]
pub(crate) fn same_executor(a: &ExecutorRef, b: &ExecutorRef) -> bool {
    core::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}
