//! Panics from user code that must not escape where they happen.

use std::any::Any;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// Runs `f`, catching a panic. The panic's payload is dropped under
/// `catch_unwind` too: its `Drop` is user code and may panic in turn, and
/// then that panic's payload is dropped the same way (a few times at most;
/// after that it is leaked rather than let the thread die).
pub(crate) fn caught(f: impl FnOnce()) {
    let Err(mut payload) = catch_unwind(AssertUnwindSafe(f)) else {
        return;
    };
    for _ in 0..4 {
        match catch_unwind(AssertUnwindSafe(move || drop(payload))) {
            Ok(()) => return,
            Err(next) => payload = next,
        }
    }
    core::mem::forget(payload);
}

/// Runs every step even if some panic, as a `Vec`'s drop drops every
/// element; then resumes the first panic, unless the thread is unwinding
/// already (a second panic would abort it): then, and for every later
/// panic, the payload is dropped under [`caught`].
pub(crate) struct EachStep {
    first_panic: Option<Box<dyn Any + Send>>,
}

impl EachStep {
    pub(crate) const fn new() -> Self {
        Self { first_panic: None }
    }

    /// Runs one step, keeping its panic for [`finish`](Self::finish).
    pub(crate) fn run(&mut self, step: impl FnOnce()) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(step)) {
            match self.first_panic {
                None => self.first_panic = Some(p),
                Some(_) => caught(move || drop(p)),
            }
        }
    }

    /// Resumes the first step's panic, if any (see the type's docs).
    pub(crate) fn finish(self) {
        if let Some(p) = self.first_panic {
            if std::thread::panicking() {
                caught(move || drop(p));
            } else {
                resume_unwind(p);
            }
        }
    }
}
