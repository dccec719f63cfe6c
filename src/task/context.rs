//! The task context: the executor and the lazy local that flow down an await
//! chain.
//!
//! A root task (started by [`start`](super::Lazy::start),
//! [`sync_await`](super::sync_await), a [`RescheduleLazy`](super::RescheduleLazy)
//! or a scheduled collect child) installs its [`Ctx`] in a thread-local
//! around *each* poll of its future and restores the previous one afterwards
//! (also on unwind). Every child [`Lazy`](super::Lazy) awaited inline is
//! polled inside that window, so it sees the same context without anything
//! being passed explicitly. A child that carries its own lazy local installs
//! a derived context (same executor, its local) around its own polls.
//!
//! The thread-local holds a plain pointer and no synchronization; it comes
//! from the shim (`crate::sync::thread_local!`) so that each modelled thread under loom or
//! shuttle has its own.

use core::any::Any;
use core::cell::Cell;
use core::ptr;

use super::executor::ExecutorRef;
use crate::sync::Arc;

/// A lazy local: set once per task chain, shared (read-only) by every task
/// of the chain, including children scheduled on the executor.
pub(crate) type LocalRef = Arc<Box<dyn Any + Send + Sync>>;

/// What a task carries down its await chain.
#[derive(Default)]
pub(crate) struct Ctx {
    pub(crate) executor: Option<ExecutorRef>,
    pub(crate) local: Option<LocalRef>,
}

impl Ctx {
    pub(crate) fn new(executor: Option<ExecutorRef>, local: Option<LocalRef>) -> Self {
        Self { executor, local }
    }
}

crate::sync::thread_local! {
    /// The context of the task being polled on this thread, or null.
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro has no `const` form
    static CURRENT: Cell<*const Ctx> = Cell::new(ptr::null());
}

/// Installs `ctx` as the current context until the guard is dropped.
///
/// The caller keeps `ctx` alive (and unmoved) for the guard's lifetime; the
/// guard borrows it to make that a compile-time fact.
#[inline]
pub(crate) fn enter(ctx: &Ctx) -> EnterGuard<'_> {
    let prev = CURRENT.with(|c| c.replace(ctx as *const Ctx));
    EnterGuard {
        _ctx: core::marker::PhantomData,
        prev,
    }
}

/// Installs no context (as outside any task) until the guard is dropped.
#[inline]
pub(crate) fn outside() -> EnterGuard<'static> {
    let prev = CURRENT.with(|c| c.replace(ptr::null()));
    EnterGuard {
        _ctx: core::marker::PhantomData,
        prev,
    }
}

/// Restores the previous context when dropped (including on unwind).
pub(crate) struct EnterGuard<'a> {
    _ctx: core::marker::PhantomData<&'a Ctx>,
    prev: *const Ctx,
}

impl Drop for EnterGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let prev = self.prev;
        CURRENT.with(|c| c.set(prev));
    }
}

/// Calls `f` with the current context, if a task is being polled on this
/// thread.
#[inline]
pub(crate) fn with_current<R>(f: impl FnOnce(Option<&Ctx>) -> R) -> R {
    let p = CURRENT.with(Cell::get);
    // SAFETY: a non-null pointer was installed by `enter`, whose guard borrows
    // the context and is still alive: guards are created and dropped in LIFO
    // order on this thread around a synchronous poll, and `f` runs inside
    // that poll (it cannot outlive it: the reference does not escape `f`).
    let ctx = unsafe { p.as_ref() };
    f(ctx)
}

/// The executor of the task being polled on this thread, if it has one.
///
/// Inside a task started with [`via`](super::Lazy::via) or
/// [`directly_start`](super::Lazy::directly_start) (or any child it awaits)
/// this is that executor; inside a task without one, or outside any task, it
/// is `None`. This is async_simple's `co_await CurrentExecutor{}`.
///
/// # Examples
///
/// ```
/// use lazyflight::task::{current_executor, sync_await, Lazy, SimpleExecutor};
///
/// let ex = SimpleExecutor::new(1);
/// let has = sync_await(Lazy::new(async { current_executor().is_some() }).via(ex.clone()));
/// assert!(has);
/// assert!(sync_await(Lazy::new(async { current_executor().is_none() })));
/// ```
pub fn current_executor() -> Option<ExecutorRef> {
    with_current(|c| c.and_then(|c| c.executor.clone()))
}

/// Calls `f` with the current task chain's lazy local if it is an `L`.
///
/// Returns `None` outside a task, when the chain has no local, or when the
/// local is of another type. This is async_simple's
/// `co_await CurrentLazyLocals<L>{}`; the reference cannot escape `f`, so the
/// local's lifetime stays the task's.
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sync_await, with_lazy_local, Lazy};
///
/// let child = || Lazy::new(async { with_lazy_local(|v: &u32| *v) });
/// let task = Lazy::new(async move {
///     let typed = with_lazy_local(|v: &u32| *v);
///     let wrong_type = with_lazy_local(|v: &String| v.clone());
///     (typed, wrong_type, child().await)
/// })
/// .set_local(42u32)
/// .unwrap();
/// assert_eq!(sync_await(task), (Some(42), None, Some(42)));
/// ```
pub fn with_lazy_local<L: Any, R>(f: impl FnOnce(&L) -> R) -> Option<R> {
    with_current(|c| {
        let local = c?.local.as_ref()?;
        let typed: &L = (***local).downcast_ref::<L>()?;
        Some(f(typed))
    })
}

/// Whether the task being polled on this thread has an executor.
pub(crate) fn has_executor() -> bool {
    with_current(|c| c.is_some_and(|c| c.executor.is_some()))
}

/// Whether the current task chain has a lazy local (of any type).
pub fn has_lazy_local() -> bool {
    with_current(|c| c.is_some_and(|c| c.local.is_some()))
}
