//! Panics from user code that must not escape where they happen.

use std::panic::{catch_unwind, AssertUnwindSafe};

/// A panic's payload, as `catch_unwind` returns it.
pub(crate) type Payload = Box<dyn core::any::Any + Send>;

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

/// Drops `value`, whose `Drop` is user code, on a path that may run while
/// the thread is unwinding (a guard's or a future's `Drop`): there, under
/// [`caught`], because a panic would abort the process; otherwise a plain
/// drop, whose panic unwinds as usual.
#[inline(always)]
pub(crate) fn dropped<V>(value: V) {
    if crate::sync::thread::panicking() {
        caught(move || drop(value));
    } else {
        drop(value);
    }
}

/// Holds a value whose `Drop` is user code until it is dropped with
/// [`dropped`]: also when it goes out of scope because a panic unwinds
/// through its owner (a panicking waker between taking the value and
/// dropping it), where a plain drop that panics would abort the process.
pub(crate) struct Quiet<V>(Option<V>);

impl<V> Quiet<V> {
    #[inline(always)]
    pub(crate) fn new(value: V) -> Self {
        Self(Some(value))
    }

    /// Gives the value back; nothing is dropped.
    #[inline(always)]
    pub(crate) fn into_inner(mut self) -> V {
        self.0
            .take()
            .expect("a Quiet holds its value until dropped")
    }
}

impl<V> core::ops::Deref for Quiet<V> {
    type Target = V;

    fn deref(&self) -> &V {
        self.0
            .as_ref()
            .expect("a Quiet holds its value until dropped")
    }
}

impl<V> Drop for Quiet<V> {
    #[inline(always)]
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            dropped(value);
        }
    }
}

/// Calls `f` on every item even if some calls panic, as a `Vec`'s drop
/// drops every element: the first panic unwinds on once every later item is
/// done (each of those calls then runs under [`caught`], and their panics
/// are dropped). Costs nothing over a plain loop unless a call panics. Called
/// while the thread is unwinding already, every call runs under `caught`
/// (a panic would abort the process there).
#[inline(always)]
pub(crate) fn each<I: IntoIterator>(items: I, mut f: impl FnMut(I::Item)) {
    let mut items = items.into_iter();
    if crate::sync::thread::panicking() {
        for item in items {
            caught(|| f(item));
        }
        return;
    }
    /// On unwind from a call, finishes the items left.
    struct Rest<'a, I: Iterator, F: FnMut(I::Item)> {
        items: &'a mut I,
        f: &'a mut F,
    }
    impl<I: Iterator, F: FnMut(I::Item)> Drop for Rest<'_, I, F> {
        fn drop(&mut self) {
            // Reached only while unwinding: the loop below forgets `Rest`
            // once every item is done.
            for item in self.items.by_ref() {
                caught(|| (self.f)(item));
            }
        }
    }
    let rest = Rest {
        items: &mut items,
        f: &mut f,
    };
    for item in rest.items.by_ref() {
        (rest.f)(item);
    }
    core::mem::forget(rest);
}
