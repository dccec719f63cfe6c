//! [`Try`]: a task's value or the error that replaced it.

use core::any::Any;
use core::fmt;

/// Why a task produced no value.
///
/// `Panicked` plays the part of a C++ exception: the panic was caught at the
/// task boundary and is resumed by [`Try::value`] (and by `.await` on a
/// [`Lazy`](super::Lazy)). The other variants are raised by the task machinery
/// itself.
///
/// `TaskError` is `Send` but not `Sync`: a panic payload is only `Send`. So
/// `?` does not convert it into `Box<dyn Error + Send + Sync>` (or an
/// `anyhow::Error`); convert it to its message first, which keeps a string
/// panic's text:
///
/// ```
/// use lazyflight::task::{sync_await_try, Lazy};
///
/// fn run() -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
///     let t = sync_await_try(Lazy::new(async { panic!("boom") }));
///     Ok(t.into_result().map_err(|e| e.to_string())?)
/// }
/// assert_eq!(run().unwrap_err().to_string(), "task panicked: boom");
/// ```
#[non_exhaustive]
pub enum TaskError {
    /// The task panicked; the payload is the one given to `panic!`.
    Panicked(Box<dyn Any + Send + 'static>),
    /// The executor refused to run (or dropped without running) the job that
    /// would have resumed the task, so the task was abandoned where it stood.
    Rejected,
    /// The operation needs an executor and the task has none (for example
    /// [`yield_now`](super::yield_now) in a task that was not started with
    /// [`via`](super::Lazy::via) or [`directly_start`](super::Lazy::directly_start)).
    NoExecutor,
    /// The task can never be resumed: it was suspended, and the last waker
    /// that could resume it was dropped without waking it (say, by a
    /// registry that clears its waiters on shutdown). The task was freed
    /// then: its future and its lazy local were dropped, and its callback
    /// got this error.
    Abandoned,
}

impl TaskError {
    /// The panic message, when the task panicked with a string payload.
    pub fn panic_message(&self) -> Option<&str> {
        match self {
            TaskError::Panicked(p) => p
                .downcast_ref::<&'static str>()
                .copied()
                .or_else(|| p.downcast_ref::<String>().map(String::as_str)),
            _ => None,
        }
    }

    /// Whether the task panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, TaskError::Panicked(_))
    }

    /// Re-raises the error on the current thread: a panic resumes with its
    /// original payload, anything else panics with the error's message.
    pub fn resume(self) -> ! {
        match self {
            TaskError::Panicked(p) => std::panic::resume_unwind(p),
            other => panic!("{other}"),
        }
    }
}

impl fmt::Debug for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(_) => match self.panic_message() {
                Some(m) => f.debug_tuple("Panicked").field(&m).finish(),
                None => f
                    .debug_tuple("Panicked")
                    .field(&"<non-string payload>")
                    .finish(),
            },
            TaskError::Rejected => f.write_str("Rejected"),
            TaskError::NoExecutor => f.write_str("NoExecutor"),
            TaskError::Abandoned => f.write_str("Abandoned"),
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked(_) => match self.panic_message() {
                Some(m) => write!(f, "task panicked: {m}"),
                None => f.write_str("task panicked"),
            },
            TaskError::Rejected => f.write_str("the executor refused to resume the task"),
            TaskError::NoExecutor => f.write_str("the task has no executor"),
            TaskError::Abandoned => {
                f.write_str("the task can never be resumed: its last waker was dropped")
            }
        }
    }
}

impl std::error::Error for TaskError {}

/// The outcome of a task: its value, or the [`TaskError`] that replaced it.
///
/// This is async_simple's `Try<T>`: [`has_error`](Self::has_error),
/// [`value`](Self::value) (which re-raises the error), and conversions to and
/// from `Result<T, TaskError>`.
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sync_await_try, Lazy, Try};
///
/// let ok: Try<u32> = sync_await_try(Lazy::new(async { 7 }));
/// assert!(!ok.has_error());
/// assert_eq!(ok.value(), 7);
///
/// let failed: Try<u32> = sync_await_try(Lazy::new(async { panic!("boom") }));
/// assert!(failed.has_error());
/// assert_eq!(failed.into_result().unwrap_err().panic_message(), Some("boom"));
/// ```
#[must_use = "a Try holds a task's value or its error"]
pub struct Try<T>(Result<T, TaskError>);

impl<T> Try<T> {
    /// A successful outcome.
    pub fn from_value(value: T) -> Self {
        Try(Ok(value))
    }

    /// A failed outcome.
    pub fn from_error(error: TaskError) -> Self {
        Try(Err(error))
    }

    /// Whether the task failed.
    #[inline]
    pub fn has_error(&self) -> bool {
        self.0.is_err()
    }

    /// The value; re-raises the error (a panic resumes with its payload).
    ///
    /// # Panics
    ///
    /// If the task failed: a task that panicked resumes that panic, with its
    /// payload; any other [`TaskError`] panics with its message.
    #[track_caller]
    pub fn value(self) -> T {
        match self.0 {
            Ok(v) => v,
            Err(e) => e.resume(),
        }
    }

    /// A reference to the value, if there is one.
    pub fn as_value(&self) -> Option<&T> {
        self.0.as_ref().ok()
    }

    /// The error, if there is one.
    pub fn error(&self) -> Option<&TaskError> {
        self.0.as_ref().err()
    }

    /// Converts into a `Result`.
    pub fn into_result(self) -> Result<T, TaskError> {
        self.0
    }

    /// Borrows as a `Result`.
    pub fn as_result(&self) -> Result<&T, &TaskError> {
        self.0.as_ref()
    }

    /// Maps the value, keeping the error.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Try<U> {
        Try(self.0.map(f))
    }
}

impl<T> From<Result<T, TaskError>> for Try<T> {
    fn from(r: Result<T, TaskError>) -> Self {
        Try(r)
    }
}

impl<T> From<Try<T>> for Result<T, TaskError> {
    fn from(t: Try<T>) -> Self {
        t.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Try<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Ok(v) => f.debug_tuple("Try::Value").field(v).finish(),
            Err(e) => f.debug_tuple("Try::Error").field(e).finish(),
        }
    }
}
