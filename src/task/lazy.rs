//! [`Lazy`], [`RescheduleLazy`] and the ways to start them.

use core::any::Any;
use core::fmt;
use core::future::{Future, IntoFuture};
use core::pin::Pin;
use core::task::{Context, Poll};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::context::{self, Ctx, LocalRef};
use super::executor::ExecutorRef;
use super::inline::{self, InlineFuture};
use super::raw::{drop_into, BoxFuture, FirstRun, RawTask};
use super::try_::{TaskError, Try};
use crate::sync::atomic::{AtomicBool, Ordering::*};
use crate::sync::{thread, Arc, Mutex};
use crate::wait_queue::{WaitKey, WaitQueue};

/// A lazily started task: a `Send` future (kept inside the `Lazy` when it
/// is at most three words, boxed otherwise) plus, optionally, a lazy
/// local for its task chain.
///
/// Creating a `Lazy` runs nothing. It runs when it is
///
/// * awaited (`.await`): inline, as part of the awaiting task, which it
///   shares the executor and the lazy local with; a panic inside propagates
///   to the awaiting task, as an exception would in async_simple;
///   [`await_try`](Self::await_try) catches it into a [`Try`] instead;
/// * [`start`](Self::start)ed with a callback, or [`directly_start`](Self::directly_start)ed
///   with a callback and an executor;
/// * passed to [`sync_await`];
/// * bound to an executor with [`via`](Self::via), which gives a
///   [`RescheduleLazy`];
/// * handed to the collect family ([`collect_all`](super::collect_all), ...).
///
/// # Cancel safety
///
/// A `Lazy` is itself the future that `.await` polls: dropping it (for
/// example because the awaiting task was dropped) drops the task where it
/// stands, with its lazy local. Tasks it started on an executor are not
/// cancelled; they finish there.
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sync_await, Lazy};
///
/// fn task1(x: i32) -> Lazy<i32> {
///     Lazy::new(async move { x })
/// }
/// fn task2() -> Lazy<()> {
///     Lazy::new(async {
///         let t = task1(10); // nothing runs yet
///         let x = t.await; // runs task1 inline
///         assert_eq!(x, 10);
///     })
/// }
/// sync_await(task2());
/// ```
#[must_use = "a Lazy does nothing until it is awaited or started"]
pub struct Lazy<T> {
    body: Body<T>,
    /// The lazy local, if any. (Boxed: it is rare, and keeps every `Lazy`
    /// small.)
    local: Option<Box<LocalSlot>>,
}

/// What a `Lazy` runs.
///
/// ```text
///   Inline ──Lazy::poll, into_parts──► Future ──Ready / dropped──► Done
///     │                                                             ▲
///     └──polled in place by collect_all──► Pinned ──Ready──────────┤
///   Value ──first poll──────────────────────────────────────────────┘
///
///   (collect family only) Inline / Future / Value ──handed to an
///   executor──► Started ──reported──► Done
/// ```
enum Body<T> {
    /// A boxed future.
    Future(BoxFuture<T>),
    /// A small future stored in place, never polled yet: it may still move
    /// with the `Lazy` (see `inline.rs`).
    Inline(InlineFuture<T>),
    /// A small future polled in place: it must not move again. Only the
    /// collect family makes one, for a child that lives in its slot vector
    /// until it is dropped; anything that would move it panics instead.
    Pinned(InlineFuture<T>),
    /// [`Lazy::ready`]: the value itself, no allocation.
    Value(T),
    /// Left behind in a collect family's slot by a child that was handed to
    /// an executor: it runs there as a root task and reports back. Only a
    /// `Task` is ever in this state.
    Started,
    /// Completed (or taken apart).
    Done,
}

impl<T> Body<T> {
    /// The future, boxed; `Done` is left behind.
    ///
    /// # Panics
    ///
    /// For a future pinned in place, or a completed body.
    fn take_boxed(&mut self) -> BoxFuture<T>
    where
        T: Send + 'static,
    {
        match core::mem::replace(self, Body::Done) {
            Body::Future(f) => f,
            // SAFETY: an `Inline` future was never polled (polling in place
            // makes it `Pinned` first).
            Body::Inline(f) => unsafe { f.into_box() },
            Body::Value(v) => Box::pin(core::future::ready(v)),
            Body::Pinned(_) => panic!("a Lazy polled in place cannot be moved"),
            Body::Started | Body::Done => panic!("a Lazy is consumed once"),
        }
    }

    /// Polls the future (not a value); `in_place`: an inline future is
    /// pinned where it stands rather than boxed first.
    ///
    /// # Safety
    ///
    /// With `in_place`, the caller promises that the `Lazy` holding this
    /// body does not move again until it is dropped.
    #[inline(always)]
    unsafe fn poll_future(&mut self, cx: &mut Context<'_>, in_place: bool) -> Poll<T> {
        match self {
            Body::Future(f) => f.as_mut().poll(cx),
            // SAFETY: a `Pinned` body is only made below, under the caller's
            // promise that it does not move again.
            Body::Pinned(f) => unsafe { f.poll(cx) },
            Body::Inline(f) if in_place => {
                // Moved for the last time, before its first poll: to where
                // it already is, so that only the variant changes (the
                // compiler elides copying the bytes onto themselves).
                // SAFETY: `f` is read once and written back at once, with
                // nothing in between that can unwind, and `self` is
                // overwritten without dropping the value read from it, so
                // the future is neither dropped nor duplicated; it was never
                // polled, so it may move.
                unsafe {
                    let f = core::ptr::read(f);
                    core::ptr::write(self, Body::Pinned(f));
                }
                let Body::Pinned(f) = self else {
                    unreachable!()
                };
                // SAFETY: the caller's promise pins it here.
                unsafe { f.poll(cx) }
            }
            Body::Inline(_) => {
                // A `Lazy` is `Unpin` and may move between polls: box the
                // future before it is pinned.
                let Body::Inline(f) = core::mem::replace(self, Body::Done) else {
                    unreachable!()
                };
                // SAFETY: an `Inline` future was never polled.
                *self = Body::Future(unsafe { f.into_box() });
                let Body::Future(f) = self else {
                    unreachable!()
                };
                f.as_mut().poll(cx)
            }
            Body::Value(_) | Body::Started | Body::Done => unreachable!("no future to poll"),
        }
    }
}

// The value, the boxed future and an unpolled inline future are never
// pinned in place: the future is pinned inside its box, the value is moved
// out. A future pinned in place (`Body::Pinned`) never moves again: the only
// code that makes one (the collect family) keeps the `Lazy` where it is, and
// everything that would move it out panics.
impl<T> Unpin for Lazy<T> {}

/// The lazy local a `Lazy` carries, and whether it is installed.
enum LocalSlot {
    /// Set with `set_local`, not polled yet.
    Set(LocalRef),
    /// Being awaited inline: the derived context (the awaiting task's
    /// executor, this local) installed around each poll.
    Installed(Ctx),
}

impl<T: Send + 'static> Lazy<T> {
    /// Wraps a future. Nothing runs until the `Lazy` is awaited or started.
    ///
    /// A future of up to three words (24 bytes on 64-bit targets, e.g. an
    /// `async move` block capturing two `u64`s) is stored inside the `Lazy`
    /// without allocating; a larger one is boxed.
    pub fn new<F>(fut: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        let body = if inline::fits::<F>() {
            Body::Inline(InlineFuture::new(fut))
        } else {
            Body::Future(Box::pin(fut))
        };
        Lazy { body, local: None }
    }

    /// A `Lazy` that completes with `value` at its first poll, without
    /// allocating.
    pub fn ready(value: T) -> Self {
        Lazy {
            body: Body::Value(value),
            local: None,
        }
    }

    /// Resolves to the task's [`Try`] instead of propagating its panic.
    ///
    /// This is async_simple's `coAwaitTry()`.
    ///
    /// # Examples
    ///
    /// ```
    /// use lazyflight::task::{sync_await, Lazy};
    ///
    /// fn foo() -> Lazy<i32> {
    ///     Lazy::new(async { panic!("test") })
    /// }
    /// let res = sync_await(Lazy::new(async {
    ///     let r = foo().await_try().await;
    ///     if r.has_error() { -1 } else { r.value() }
    /// }));
    /// assert_eq!(res, -1);
    /// ```
    pub fn await_try(self) -> AwaitTry<T> {
        AwaitTry { lazy: Some(self) }
    }

    /// Binds the task to `executor`: it will be scheduled there when started,
    /// and the executor flows down its await chain.
    pub fn via(self, executor: ExecutorRef) -> RescheduleLazy<T> {
        RescheduleLazy {
            lazy: self,
            executor,
        }
    }

    /// Sets the task chain's lazy local.
    ///
    /// The local is visible (typed, through [`with_lazy_local`](super::with_lazy_local))
    /// to this task and every task it awaits, and is dropped after the task
    /// completes and before a [`start`](Self::start) callback runs. One
    /// exception: a child the chain left running (a loser of
    /// [`collect_any`](super::collect_any), detached, or a scheduled child
    /// whose collect was dropped) shares the local, so the local then lives
    /// until the last such child finishes. A chain has at most one local:
    /// setting it twice fails here, and awaiting a `Lazy` that has its own
    /// local from a task that already has one panics (inside the awaiting
    /// task, so it surfaces in its [`Try`]).
    ///
    /// # Errors
    ///
    /// [`LocalAlreadySet`] (holding this `Lazy`) if a local is already set.
    pub fn set_local<L: Any + Send + Sync>(self, value: L) -> Result<Self, LocalAlreadySet<Self>> {
        if self.local.is_some() {
            return Err(LocalAlreadySet(self));
        }
        Ok(Lazy {
            body: self.body,
            local: Some(Box::new(LocalSlot::Set(Arc::new(Box::new(value))))),
        })
    }

    /// Starts the task on the calling thread, without an executor.
    ///
    /// It runs inline until its first suspension; after that it is resumed
    /// by whoever wakes it, inline in the `wake` call. `callback` runs
    /// exactly once, with the task's [`Try`], on the thread that completes
    /// the task (possibly before `start` returns). If the task can never be
    /// resumed (it is suspended and no waker of it is left), the callback
    /// gets [`TaskError::Abandoned`](super::TaskError::Abandoned), where the
    /// task's last reference goes: where its last waker is dropped, or, if
    /// its future kept none, at the end of the run that suspended it
    /// (possibly before `start` returns).
    ///
    /// A wake from inside a run on the same thread (a task's poll or
    /// callback waking a task without an executor) does not nest the woken
    /// task's run there: it queues it, and the outermost run on the thread
    /// makes the queued runs, in the order of their wakes, before it
    /// returns. So a chain of tasks that wake one another runs in bounded
    /// stack however long it is, and a waker called inside a run under a
    /// lock (as `futures::lock::Mutex` wakes the next waiter) returns before
    /// the woken task is polled. `sync_await`,
    /// [`block_on`](crate::sync::future::block_on) and
    /// [`SimpleExecutor::shutdown`](super::SimpleExecutor::shutdown) (and
    /// its drop) called inside a run make the runs queued on their thread
    /// before they block; a panic out of one of those runs is kept for the
    /// outermost run, as if it had made the run itself. Starting a task
    /// (`start`, `directly_start`) still runs it inline, in a run or not.
    ///
    /// # Deadlocks
    ///
    /// A wake from outside any run resumes the task right there, inside the
    /// `wake` call. So a waker called while the waking code holds a lock
    /// that the task's poll takes too deadlocks: the poll waits for a lock
    /// that its own thread holds, further up the stack. (A
    /// `futures::lock::Mutex` guard dropped outside any run does exactly
    /// that: its unlock wakes the next waiter while it holds the mutex's
    /// internal lock, and the waiter's poll takes it again.) Inside a run
    /// the wake is queued instead (above), so this cannot happen there.
    ///
    /// And a run that blocks its thread by other means than those (a
    /// channel's `recv`, another crate's `block_on`) until a
    /// task that it woke completes deadlocks: that task's run is queued
    /// behind the very run that blocks.
    ///
    /// The way out of both: give the task an executor
    /// ([`directly_start`](Self::directly_start), [`via`](Self::via)); a
    /// wake then schedules the task and returns, and its poll runs on the
    /// executor, never inside the waker's caller.
    ///
    /// # Panics
    ///
    /// A panic in the task is not one: it is captured in the [`Try`]. A
    /// panic in `callback` unwinds from where the callback runs: out of
    /// `start` if the task completes before it returns, and otherwise out of
    /// the `wake` that resumed the task, into the code that called it (a
    /// task without an executor runs in its waker's caller), or, if that
    /// wake came from inside a run and was queued, out of the outermost run
    /// on the thread once every queued run is made: out of the `wake` or
    /// `start` that began it, or out of the executor job it is (further
    /// panics from queued runs there are dropped). A callback run by a
    /// waker's drop ([`TaskError::Abandoned`](super::TaskError::Abandoned))
    /// unwinds out of that drop. Wherever the callback runs, if the thread
    /// is unwinding already (a wake or a waker's drop made by a destructor
    /// during an unwind), its panic is dropped: it would abort the process.
    ///
    /// # Examples
    ///
    /// ```
    /// use lazyflight::sync::future::block_on;
    /// use lazyflight::task::Lazy;
    ///
    /// let (tx, rx) = futures::channel::oneshot::channel();
    /// Lazy::new(async { 1 + 1 }).start(move |r| tx.send(r.value()).unwrap());
    /// assert_eq!(block_on(rx).unwrap(), 2);
    /// ```
    pub fn start(self, callback: impl FnOnce(Try<T>) + Send + 'static) {
        let (fut, local) = self.into_parts();
        RawTask::spawn(
            fut,
            Ctx::new(None, local),
            Box::new(callback),
            FirstRun::Inline,
        );
    }

    /// Starts the task inline (like [`start`](Self::start)) with `executor`
    /// bound: it flows down the await chain, and every resumption after the
    /// first suspension is scheduled on it.
    ///
    /// # Panics
    ///
    /// A panic in `callback` unwinds out of `directly_start` if the task
    /// completes before it returns, and otherwise on the executor's thread,
    /// which handles it as it handles any job's panic ([`SimpleExecutor`](super::SimpleExecutor)'s
    /// workers catch it and go on).
    ///
    /// # Examples
    ///
    /// ```
    /// use lazyflight::sync::future::block_on;
    /// use lazyflight::task::{current_executor, sleep, Lazy, SimpleExecutor};
    /// use std::time::Duration;
    ///
    /// let ex = SimpleExecutor::new(1);
    /// let (tx, rx) = futures::channel::oneshot::channel();
    /// Lazy::new(async {
    ///     let e = current_executor().expect("bound by directly_start");
    ///     let before = e.current_thread_in_executor(); // still on the caller
    ///     sleep(Duration::from_millis(1)).await.unwrap();
    ///     (before, e.current_thread_in_executor()) // resumed by the executor
    /// })
    /// .directly_start(move |r| tx.send(r.value()).unwrap(), ex);
    /// assert_eq!(block_on(rx).unwrap(), (false, true));
    /// ```
    pub fn directly_start(
        self,
        callback: impl FnOnce(Try<T>) + Send + 'static,
        executor: ExecutorRef,
    ) {
        let (fut, local) = self.into_parts();
        RawTask::spawn(
            fut,
            Ctx::new(Some(executor), local),
            Box::new(callback),
            FirstRun::Inline,
        );
    }

    pub(crate) fn from_parts(fut: BoxFuture<T>, local: Option<LocalRef>) -> Self {
        let local = local.map(|l| Box::new(LocalSlot::Set(l)));
        Lazy {
            body: Body::Future(fut),
            local,
        }
    }

    /// Maps the value, keeping the lazy local.
    pub(crate) fn map_output<U: Send + 'static>(
        self,
        f: impl FnOnce(T) -> U + Send + 'static,
    ) -> Lazy<U> {
        let (fut, local) = self.into_parts();
        Lazy::from_parts(Box::pin(async move { f(fut.await) }), local)
    }

    pub(crate) fn into_parts(mut self) -> (BoxFuture<T>, Option<LocalRef>) {
        let fut = self.body.take_boxed();
        let local = self.local.take().and_then(|slot| match *slot {
            LocalSlot::Set(l) => Some(l),
            LocalSlot::Installed(ctx) => ctx.local,
        });
        (fut, local)
    }

    /// Whether this `Lazy` carries its own lazy local.
    pub fn has_local(&self) -> bool {
        self.local.is_some()
    }
}

/// A `Lazy` with its own local is being awaited: the awaiting chain must not
/// have one.
#[track_caller]
fn assert_no_local(parent: Option<&Ctx>) {
    assert!(
        !matches!(parent, Some(c) if c.local.is_some()),
        "a Lazy with its own lazy local was awaited from a task chain that already has one: a \
         chain has at most one lazy local"
    );
}

impl<T> Future for Lazy<T> {
    type Output = T;

    /// Polls the task inline, inside the awaiting task's context.
    ///
    /// # Panics
    ///
    /// Propagates the task's panic; panics if polled after completion, or if
    /// this `Lazy` has a lazy local and the awaiting task already has one.
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        // SAFETY: not in place: an inline future is boxed before its first
        // poll, so nothing is pinned inside the (movable) `Lazy`.
        unsafe { poll_parts(&mut this.body, &mut this.local, cx, false) }
    }
}

/// A [`Lazy`] as the collect family keeps it in its slot vector, where it
/// may be polled in place ([`poll_in_place`](Self::poll_in_place)) and
/// where its slot's state lives afterwards (`Body::Started`, `Body::Done`).
///
/// Unlike `Lazy` (which is `Unpin`), `Task` is `!Unpin`: a `&mut Task` or
/// `&mut [Task]` does not claim unique access to the bytes of a future
/// pinned inside it, so the future's borrows of itself stay valid under
/// Rust's aliasing rules (and Miri's Stacked Borrows). Nothing here makes a
/// `&mut Lazy` of the wrapped value: every access projects to its fields.
///
/// `repr(transparent)` over `Lazy` (the other field is a zero-sized marker),
/// so a `Vec<Lazy<T>>` is a `Vec<Task<T>>` without touching its elements
/// ([`from_lazies`](Self::from_lazies)).
#[repr(transparent)]
pub(crate) struct Task<T> {
    lazy: Lazy<T>,
    _pinned: core::marker::PhantomPinned,
}

impl<T> Lazy<T> {
    /// Takes the `Lazy` apart for the collect family.
    #[inline]
    pub(crate) fn into_task(self) -> Task<T> {
        Task {
            lazy: self,
            _pinned: core::marker::PhantomPinned,
        }
    }
}

impl<T> Task<T> {
    /// The vector itself, reinterpreted: no pass over its elements.
    #[inline]
    pub(crate) fn from_lazies(lazies: Vec<Lazy<T>>) -> Vec<Task<T>> {
        let mut lazies = core::mem::ManuallyDrop::new(lazies);
        let (ptr, len, cap) = (lazies.as_mut_ptr(), lazies.len(), lazies.capacity());
        // SAFETY: `Task<T>` is `repr(transparent)` over `Lazy<T>` (its other
        // field is a zero-sized, 1-aligned marker): same size, alignment and
        // validity, so the allocation, length and capacity carry over; the
        // original vector is forgotten, so the allocation has one owner.
        unsafe { Vec::from_raw_parts(ptr.cast::<Task<T>>(), len, cap) }
    }

    /// What a slot holds once its child was handed to an executor.
    #[inline]
    pub(crate) fn started() -> Self {
        Lazy {
            body: Body::Started,
            local: None,
        }
        .into_task()
    }

    /// Polls the task as `Lazy::poll` does, except that a small inline
    /// future is polled where it stands instead of being boxed first.
    ///
    /// # Safety
    ///
    /// After this returns `Pending`, `self` must not move until it is
    /// dropped (it may be polled again in place). [`into_lazy`](Self::into_lazy)
    /// panics on such a task rather than move it.
    #[inline(always)]
    pub(crate) unsafe fn poll_in_place(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        // SAFETY: the caller's promise.
        unsafe { poll_parts(&mut self.lazy.body, &mut self.lazy.local, cx, true) }
    }

    /// Polls the task as `Lazy::poll` does: nothing is pinned in place, so
    /// it stays movable.
    #[inline]
    pub(crate) fn poll_movable(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        // SAFETY: not in place.
        unsafe { poll_parts(&mut self.lazy.body, &mut self.lazy.local, cx, false) }
    }

    // The predicates below take `&mut self`: a `&Task` would claim the
    // bytes of a child pinned in place as shared and read-only, and so
    // invalidate the `&mut` borrows a child may hold into its own state
    // across a suspension (Miri's Stacked Borrows reports it; `&mut` to the
    // `!Unpin` `Task` does not claim uniqueness). See
    // `children_borrowing_themselves_mutably_across_a_suspension`.

    /// Whether the task is a child still to run or running inline (not
    /// started elsewhere, not finished).
    #[inline(always)]
    pub(crate) fn is_live(&mut self) -> bool {
        !matches!(self.lazy.body, Body::Started | Body::Done)
    }

    /// Whether the task was handed to an executor and has not reported.
    #[inline]
    pub(crate) fn is_started(&mut self) -> bool {
        matches!(self.lazy.body, Body::Started)
    }

    /// Whether the task has finished (completed, failed, or reported from
    /// its executor).
    #[inline(always)]
    pub(crate) fn is_done(&mut self) -> bool {
        matches!(self.lazy.body, Body::Done)
    }

    /// Whether the task has finished and owns nothing any more (its future
    /// and local are dropped).
    pub(crate) fn is_completed(&mut self) -> bool {
        matches!(self.lazy.body, Body::Done) && self.lazy.local.is_none()
    }

    /// Marks the task finished, dropping its future (in place) and then its
    /// local.
    #[inline]
    pub(crate) fn finish(&mut self) {
        // The local after the future, even if the future's drop panics (the
        // assignment completes on unwind, and `_local` is dropped then).
        let _local = self.lazy.local.take();
        self.lazy.body = Body::Done;
    }

    /// Puts the `Lazy` back together.
    ///
    /// # Panics
    ///
    /// If its future was polled in place (it cannot move).
    pub(crate) fn into_lazy(self) -> Lazy<T> {
        assert!(
            !matches!(self.lazy.body, Body::Pinned(_)),
            "a Lazy polled in place cannot be moved"
        );
        self.lazy
    }
}

/// Polls a task's body under its local.
///
/// # Safety
///
/// With `in_place`, the caller promises that `body` does not move again
/// until it is dropped.
#[inline(always)]
unsafe fn poll_parts<T>(
    body: &mut Body<T>,
    local: &mut Option<Box<LocalSlot>>,
    cx: &mut Context<'_>,
    in_place: bool,
) -> Poll<T> {
    match body {
        Body::Value(_) => {
            let Body::Value(v) = core::mem::replace(body, Body::Done) else {
                unreachable!()
            };
            // Nothing runs under the local: it only has to be checked and
            // dropped.
            if let Some(slot) = local {
                if let LocalSlot::Set(_) = **slot {
                    context::with_current(|c| assert_no_local(c));
                }
            }
            *local = None;
            return Poll::Ready(v);
        }
        Body::Started | Body::Done => panic!("Lazy polled after completion"),
        Body::Pinned(_) if !in_place => panic!("a Lazy polled in place cannot be moved"),
        _ => {}
    }
    let out = match local {
        // SAFETY: the caller's promise, passed on.
        None => unsafe { body.poll_future(cx, in_place) },
        Some(slot) => {
            let slot = &mut **slot;
            if let LocalSlot::Set(local) = slot {
                let local = local.clone();
                let executor = context::with_current(|c| {
                    assert_no_local(c);
                    c.and_then(|c| c.executor.clone())
                });
                *slot = LocalSlot::Installed(Ctx::new(executor, Some(local)));
            }
            let LocalSlot::Installed(ctx) = slot else {
                unreachable!()
            };
            let _enter = context::enter(ctx);
            // SAFETY: as above.
            unsafe { body.poll_future(cx, in_place) }
        }
    };
    if out.is_ready() {
        // Drop the future, then the local, before the awaiting task
        // resumes: the local's lifetime is the task's.
        *body = Body::Done;
        *local = None;
    }
    out
}

impl<T> fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lazy")
            .field("completed", &matches!(self.body, Body::Done))
            .field("has_local", &self.local.is_some())
            .finish()
    }
}

/// [`Lazy::set_local`] or [`RescheduleLazy::set_local`] on a task whose chain
/// already has a lazy local; holds the task, unchanged.
pub struct LocalAlreadySet<L>(pub L);

impl<L> LocalAlreadySet<L> {
    /// The task, unchanged.
    pub fn into_inner(self) -> L {
        self.0
    }
}

impl<L> fmt::Debug for LocalAlreadySet<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalAlreadySet").finish_non_exhaustive()
    }
}

impl<L> fmt::Display for LocalAlreadySet<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task already has a lazy local")
    }
}

impl<L> std::error::Error for LocalAlreadySet<L> {}

/// The future of [`Lazy::await_try`]: the task's [`Try`].
///
/// # Cancel safety
///
/// Dropping it drops the task where it stands (as dropping the `Lazy`).
#[must_use = "futures do nothing unless awaited"]
pub struct AwaitTry<T> {
    lazy: Option<Lazy<T>>,
}

impl<T> Future for AwaitTry<T> {
    type Output = Try<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Try<T>> {
        let this = self.get_mut();
        let lazy = this
            .lazy
            .as_mut()
            .expect("AwaitTry polled after completion");
        let mut t = match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *lazy).poll(cx))) {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(v)) => Try::from_value(v),
            Err(payload) => Try::from_error(TaskError::Panicked(payload)),
        };
        // What is left of the task (after a panic, its poisoned future and
        // its local) is dropped here; a panic from that drop becomes the
        // outcome, as for a root task.
        drop_into(&mut t, || this.lazy = None);
        Poll::Ready(t)
    }
}

impl<T> fmt::Debug for AwaitTry<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwaitTry")
            .field("completed", &self.lazy.is_none())
            .finish()
    }
}

/// A [`Lazy`] bound to an executor (async_simple's `RescheduleLazy`), made by
/// [`Lazy::via`].
///
/// Starting it ([`start`](Self::start), [`sync_await`], `.await`, or a
/// collect) schedules its first run on the executor; the executor flows down
/// its await chain, and every resumption is scheduled there too.
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sync_await, Lazy, SimpleExecutor};
///
/// let e1 = SimpleExecutor::new(1);
/// let add_one = |x: i32| Lazy::new(async move { x + 1 });
/// let scheduled = add_one(1).via(e1.clone());
/// assert_eq!(sync_await(scheduled), 2); // e1 decides when add_one runs
/// ```
#[must_use = "a RescheduleLazy does nothing until it is started"]
pub struct RescheduleLazy<T> {
    lazy: Lazy<T>,
    executor: ExecutorRef,
}

impl<T: Send + 'static> RescheduleLazy<T> {
    /// Schedules the task on its executor; `callback` runs exactly once with
    /// its [`Try`] (with [`TaskError::Rejected`] if the executor refuses).
    ///
    /// # Panics
    ///
    /// A panic in the task is captured in the [`Try`]. A panic in `callback`
    /// unwinds from where the callback runs: on the executor's thread,
    /// normally; but if the executor refuses the first run, the callback
    /// runs (with `Rejected`) inside `start`, and its panic unwinds out of
    /// `start`.
    pub fn start(self, callback: impl FnOnce(Try<T>) + Send + 'static) {
        self.spawn(None, Box::new(callback));
    }

    /// Schedules the task on its executor with its own lazy local, or else
    /// `inherited` (the local of the chain that awaits it).
    fn spawn(self, inherited: Option<LocalRef>, callback: super::raw::Callback<T>) {
        let (fut, own) = self.lazy.into_parts();
        RawTask::spawn(
            fut,
            Ctx::new(Some(self.executor), own.or(inherited)),
            callback,
            FirstRun::Scheduled,
        );
    }

    /// The bound executor.
    pub fn executor(&self) -> &ExecutorRef {
        &self.executor
    }

    /// Sets the task chain's lazy local; see [`Lazy::set_local`].
    ///
    /// # Errors
    ///
    /// [`LocalAlreadySet`] (holding this task) if a local is already set.
    pub fn set_local<L: Any + Send + Sync>(self, value: L) -> Result<Self, LocalAlreadySet<Self>> {
        let executor = self.executor;
        match self.lazy.set_local(value) {
            Ok(lazy) => Ok(RescheduleLazy { lazy, executor }),
            Err(LocalAlreadySet(lazy)) => Err(LocalAlreadySet(RescheduleLazy { lazy, executor })),
        }
    }

    /// Resolves to the task's [`Try`] once it has run on its executor.
    pub fn await_try(self) -> Scheduled<T> {
        Scheduled {
            pending: Some(self),
            join: None,
            key: WaitKey::new(),
        }
    }

    pub(crate) fn into_parts(self) -> (Lazy<T>, ExecutorRef) {
        (self.lazy, self.executor)
    }
}

impl<T: Send + 'static> IntoFuture for RescheduleLazy<T> {
    type Output = T;
    type IntoFuture = ScheduledValue<T>;

    /// Awaiting a `RescheduleLazy` schedules it on its executor and resumes
    /// the awaiting task when it is done (on the awaiting task's own
    /// executor, if it has one); its panic propagates.
    fn into_future(self) -> ScheduledValue<T> {
        ScheduledValue(self.await_try())
    }
}

impl<T> fmt::Debug for RescheduleLazy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RescheduleLazy")
            .field("lazy", &self.lazy)
            .field("executor", &self.executor.name())
            .finish()
    }
}

/// Where a scheduled task leaves its outcome for the future awaiting it.
struct JoinSlot<T> {
    done: AtomicBool,
    value: Mutex<Option<Try<T>>>,
    waiters: WaitQueue,
}

impl<T> JoinSlot<T> {
    fn complete(&self, t: Try<T>) {
        *self.value.lock() = Some(t);
        // Release: pairs with the Acquire loads in `Scheduled::poll` (and in
        // the registration predicate, under the queue lock).
        self.done.store(true, Release);
        self.waiters.notify_all();
    }
}

/// The future of [`RescheduleLazy::await_try`].
///
/// # Cancel safety
///
/// Dropping it before its first poll drops the task unstarted. Dropping it
/// later leaves the task to finish on its executor; its outcome is
/// discarded.
#[must_use = "futures do nothing unless awaited"]
pub struct Scheduled<T> {
    pending: Option<RescheduleLazy<T>>,
    join: Option<Arc<JoinSlot<T>>>,
    key: WaitKey,
}

impl<T> Unpin for Scheduled<T> {}

impl<T: Send + 'static> Future for Scheduled<T> {
    type Output = Try<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Try<T>> {
        let this = self.get_mut();
        if let Some(task) = this.pending.take() {
            // The child joins the awaiting task's chain: it inherits the
            // chain's lazy local, as inline children and collect children
            // do; a child with a local of its own in a chain that has one is
            // an error, as for an inline child.
            let inherited = context::with_current(|c| {
                if task.lazy.has_local() {
                    assert_no_local(c);
                }
                c.and_then(|c| c.local.clone())
            });
            let slot = Arc::new(JoinSlot {
                done: AtomicBool::new(false),
                value: Mutex::new(None),
                waiters: WaitQueue::new(),
            });
            this.join = Some(slot.clone());
            task.spawn(inherited, Box::new(move |t| slot.complete(t)));
        }
        let slot = this
            .join
            .as_ref()
            .expect("Scheduled polled after completion");
        loop {
            // Acquire: pairs with the Release store in `JoinSlot::complete`.
            if slot.done.load(Acquire) {
                if this.key.is_registered() {
                    slot.waiters.cancel(&mut this.key, || {});
                }
                let t = slot.value.lock().take().expect("outcome taken once");
                this.join = None;
                return Poll::Ready(t);
            }
            if this.key.is_registered() {
                if slot.waiters.poll(&mut this.key, cx).is_pending() {
                    return Poll::Pending;
                }
                continue;
            }
            // Acquire: as above, re-checked under the queue lock. (Negative
            // control `task_scheduled_no_recheck`: not re-checked.)
            if slot.waiters.register(&mut this.key, cx.waker(), || {
                broken!("task_scheduled_no_recheck") || !slot.done.load(Acquire)
            }) {
                return Poll::Pending;
            }
        }
    }
}

impl<T> Drop for Scheduled<T> {
    fn drop(&mut self) {
        if let Some(slot) = &self.join {
            slot.waiters.cancel(&mut self.key, || {});
        }
    }
}

impl<T> fmt::Debug for Scheduled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduled")
            .field("started", &self.pending.is_none())
            .field(
                "completed",
                &(self.pending.is_none() && self.join.is_none()),
            )
            .finish()
    }
}

/// The future of `RescheduleLazy::into_future` (`.await` on a
/// [`RescheduleLazy`]): the task's value; its panic propagates.
///
/// # Cancel safety
///
/// As [`Scheduled`].
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct ScheduledValue<T>(Scheduled<T>);

impl<T: Send + 'static> Future for ScheduledValue<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        Pin::new(&mut self.get_mut().0).poll(cx).map(Try::value)
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A task that can be started: a [`Lazy`] or a [`RescheduleLazy`].
///
/// [`sync_await`] and the collect family accept either.
pub trait LazyTask: sealed::Sealed + Send + 'static {
    /// The task's value.
    type Output: Send + 'static;

    /// The task, and the executor it is bound to, if any.
    #[doc(hidden)]
    fn into_lazy(self) -> (Lazy<Self::Output>, Option<ExecutorRef>);

    /// A vector of plain `Lazy`s as itself (none is bound to an executor),
    /// or the vector back.
    #[doc(hidden)]
    #[allow(clippy::type_complexity)]
    fn into_lazy_vec(tasks: Vec<Self>) -> Result<Vec<Lazy<Self::Output>>, Vec<Self>>
    where
        Self: Sized,
    {
        Err(tasks)
    }
}

impl<T: Send + 'static> sealed::Sealed for Lazy<T> {}
impl<T: Send + 'static> LazyTask for Lazy<T> {
    type Output = T;
    fn into_lazy(self) -> (Lazy<T>, Option<ExecutorRef>) {
        (self, None)
    }
    #[inline]
    fn into_lazy_vec(tasks: Vec<Self>) -> Result<Vec<Lazy<T>>, Vec<Self>> {
        Ok(tasks)
    }
}

impl<T: Send + 'static> sealed::Sealed for RescheduleLazy<T> {}
impl<T: Send + 'static> LazyTask for RescheduleLazy<T> {
    type Output = T;
    fn into_lazy(self) -> (Lazy<T>, Option<ExecutorRef>) {
        let (lazy, ex) = self.into_parts();
        (lazy, Some(ex))
    }
}

/// Where [`sync_await_try`] parks for the outcome.
struct SyncSlot<T> {
    value: Mutex<Option<Try<T>>>,
    waiter: thread::Thread,
}

/// Runs `task` to completion, blocking the calling thread, and returns its
/// [`Try`].
///
/// A [`Lazy`] runs inline on the calling thread until its first suspension,
/// and is then resumed by whoever wakes it, as with [`Lazy::start`]; a
/// [`RescheduleLazy`] is scheduled on its executor. A task that can never
/// be resumed (suspended, and its last waker dropped without waking it)
/// returns [`TaskError::Abandoned`] rather than block for ever. Called
/// inside a run (a task's poll or callback), it first makes the runs that
/// wakes queued on this thread (see [`Lazy::start`]), which the task may
/// wait for.
///
/// # Deadlocks
///
/// A plain [`Lazy`] has no executor: a wake from another thread that comes
/// outside any run there resumes the task inside that `wake` call. If the
/// waking code holds a lock that the task's poll takes too, that thread
/// deadlocks (see [`Lazy::start`]'s `# Deadlocks`), and so does this one,
/// waiting for the task. Pass an executor ([`Lazy::via`]) to rule it out:
/// the task is then polled on the executor, never inside the waker's
/// caller.
///
/// # Panics
///
/// If `task` is a [`RescheduleLazy`] and the calling thread is one of its
/// executor's threads: blocking it could deadlock (the task might need that
/// very thread), so this is refused, as async_simple's `syncAwait` throws
/// `std::logic_error`.
///
/// Only the task's own executor is checked, as in async_simple: a plain
/// [`Lazy`] that awaits work on the executor of the calling thread (say,
/// `sync_await` of `Lazy::new(async { x.via(this_executor).await })` from a
/// job of a one-thread `this_executor`) still blocks the thread that work
/// needs. Blocking a thread of another executor is allowed (and works).
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sync_await_try, Lazy};
///
/// let t = sync_await_try(Lazy::new(async { "done" }));
/// assert_eq!(t.value(), "done");
/// ```
#[track_caller]
pub fn sync_await_try<L: LazyTask>(task: L) -> Try<L::Output> {
    let (lazy, executor) = task.into_lazy();
    if let Some(ex) = &executor {
        assert!(
            !ex.current_thread_in_executor(),
            "sync_await called from a thread of the task's own executor ({}): blocking it could \
             deadlock; await the task instead",
            ex.name()
        );
    }
    let slot = Arc::new(SyncSlot {
        value: Mutex::new(None),
        waiter: thread::current(),
    });
    let theirs = slot.clone();
    let callback = move |t: Try<L::Output>| {
        *theirs.value.lock() = Some(t);
        // Negative control `sync_no_unpark`: never unpark the waiter.
        if !broken!("task_sync_no_unpark") {
            theirs.waiter.unpark();
        }
    };
    match executor {
        None => lazy.start(callback),
        Some(ex) => lazy.via(ex).start(callback),
    }
    // Called inside a run (a task's poll or callback), this thread may hold
    // runs that wakes queued on it for that run to make once it returns,
    // which it cannot do while blocked here: the task may wait for them.
    super::raw::make_queued_runs();
    loop {
        if let Some(t) = slot.value.lock().take() {
            return t;
        }
        // The unpark token makes this race-free: an unpark between the check
        // above and this park makes it return at once.
        thread::park();
    }
}

/// Runs `task` to completion, blocking the calling thread, and returns its
/// value; a panic in the task resumes on this thread.
///
/// This is async_simple's `syncAwait`.
///
/// # Panics
///
/// When [`sync_await_try`] does (a [`RescheduleLazy`] awaited from its
/// own executor's thread), and when the task fails: a panic in the task
/// resumes with its payload, and any other [`TaskError`] (the executor
/// refused to run the task, [`TaskError::Rejected`], it needs an executor
/// and has none, or the last waker that could resume it was dropped
/// unwoken, [`TaskError::Abandoned`]) panics with its message, as
/// [`Try::value`] does.
///
/// # Deadlocks
///
/// As [`sync_await_try`]'s: a task without an executor is resumed inside
/// its waker's `wake` call; pass an executor ([`Lazy::via`]) if a waker may
/// be called under a lock that the task's poll takes.
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sync_await, Lazy};
///
/// fn task1(x: i32) -> Lazy<i32> {
///     Lazy::new(async move { x })
/// }
/// assert_eq!(sync_await(task1(10)), 10);
/// ```
#[track_caller]
pub fn sync_await<L: LazyTask>(task: L) -> L::Output {
    sync_await_try(task).value()
}
