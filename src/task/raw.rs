//! The root-task state machine: one future, polled by at most one thread at a
//! time, re-polled after every wake, completed exactly once.
//!
//! Every task that is not awaited inline by another task is one of these: a
//! [`Lazy`](super::Lazy) started with `start` / `directly_start` /
//! `sync_await`, a [`RescheduleLazy`](super::RescheduleLazy), a scheduled
//! collect child.
//!
//! # State machine
//!
//! ```text
//!              spawn (inline or scheduled)
//!                      │
//!                      ▼     wake: absorbed
//!   ┌──────────────► SCHEDULED ◄───────────────┐
//!   │                  │ a run starts           │ re-poll requested and the
//!   │ wake (this       ▼                        │ task has an executor, or
//!   │ waker           RUNNING ──── wake ────► NOTIFIED   runs are queued on the
//!   │ dispatches)      │  ▲                     │        thread: re-queued at
//!   │                  │  └─ no executor, ──────┘        the tail
//!   │     Pending      │     nothing queued: re-poll inline
//!   └──── IDLE ◄───────┤
//!          │           │ Ready / panic / the run was refused
//!          │           ▼
//!          └───────► DONE  (wakes ignored)
//!   the last count went
//!   (no waker is left to
//!   resume it): Abandoned
//! ```
//!
//! # Access rules
//!
//! * `body` (the future, the context with the lazy local, the completion
//!   callback) is touched only by the thread that moved the state to
//!   `RUNNING` (from `SCHEDULED`), until it moves it out of `RUNNING` /
//!   `NOTIFIED`. Exactly one thread can do that per `SCHEDULED`: the one that
//!   holds the run (the inline starter, the waker that saw `IDLE`, the run
//!   such a waker queued on its thread for the outermost run there to make,
//!   or the executor job).
//! * `executor` is immutable.
//!
//! # Invariants
//!
//! * Never polled concurrently: only the owner of `SCHEDULED` enters
//!   `RUNNING`, and a wake during `RUNNING` only sets `NOTIFIED`.
//! * Never loses a wake: a wake during `RUNNING` makes the runner's
//!   `RUNNING → IDLE` CAS fail, so it polls again (inline, or by re-queueing
//!   the task on its executor, which is what makes `yield_now` go to the tail;
//!   without an executor, behind the runs queued on the thread, if any).
//! * Completes exactly once: the callback is taken out of `body` by the
//!   single runner that saw `Ready` (or by the dropped, unrun job), or, if
//!   neither ever comes, by the task's own `Drop` when its last count goes
//!   while it is suspended (`IDLE`): no waker is left that could resume it,
//!   so it completes with [`TaskError::Abandoned`] rather than drop its
//!   callback uncalled (a `sync_await` on it would park for ever).
//! * A run refused by the executor (or dropped unrun) completes the task with
//!   [`TaskError::Rejected`]: never a task that is silently never resumed.
//! * The caller of a run holds a count on the task for the whole run (the
//!   spawner's `Arc`, the executor job's, the waking waker's, or the queued
//!   run's), and every
//!   owned waker holds one: a run lends the task's own `Arc` to the future
//!   as its waker without taking a count, and a clone takes one.
//!
//! # Orderings
//!
//! | operation                              | ordering  | pairs with                                                     |
//! |----------------------------------------|-----------|----------------------------------------------------------------|
//! | wake: CAS `IDLE → SCHEDULED`           | `AcqRel`  | Release: the next runner's `Acquire`. Acquire: the runner's `Release` CAS `RUNNING → IDLE`; more than needed, since the next runner's own `Acquire` CAS reads this wake's write, a later update of the same word, and so synchronizes with that runner anyway (a mutation to `Release` passes every check) |
//! | wake: CAS `RUNNING → NOTIFIED`         | `AcqRel`  | Release: the runner's failed `Acquire` CAS (what the waker published before waking is seen by the re-poll) |
//! | wake absorbed (`SCHEDULED` / `NOTIFIED`): CAS to the same value | `AcqRel` | Release: the `Acquire` of the run that follows (`SCHEDULED → RUNNING`, or the failed CAS that finds `NOTIFIED`): what the waker published is seen by that poll, as for a wake that changed the state |
//! | run: CAS `SCHEDULED → RUNNING`         | `Acquire` | the `Release` half of the wake CAS / the spawn store           |
//! | run: CAS `RUNNING → IDLE`              | `AcqRel`  | Release: the next waker's `Acquire`; Acquire on failure: the waker's `Release` `NOTIFIED` |
//! | run: swap `RUNNING` / `SCHEDULED` after `NOTIFIED` | `Acquire` | a wake absorbed after the failed CAS (its same-value `AcqRel` CAS): the swap reads it, so the re-poll sees what that waker published. A plain store would read nothing: the failed CAS acquired only the wake that set `NOTIFIED` |
//! | finish: swap `DONE`                    | `AcqRel`  | later wakes' loads (they only need to see `DONE` to back off)   |

use core::fmt;
use core::future::Future;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::context::{self, Ctx};
use super::executor::ExecutorRef;
use super::try_::{TaskError, Try};
use crate::sync::atomic::{AtomicUsize, Ordering::*};
use crate::sync::{Arc, UnsafeCell};
use crate::unwind::{caught, Payload};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;
pub(crate) type Callback<T> = Box<dyn FnOnce(Try<T>) + Send + 'static>;

/// Encoding of `RawTask::state`.
const IDLE: usize = 0;
const SCHEDULED: usize = 1;
const RUNNING: usize = 2;
const NOTIFIED: usize = 3;
const DONE: usize = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Idle,
    Scheduled,
    Running,
    Notified,
    Done,
}

impl Phase {
    #[inline]
    fn decode(word: usize) -> Phase {
        match word {
            IDLE => Phase::Idle,
            SCHEDULED => Phase::Scheduled,
            RUNNING => Phase::Running,
            NOTIFIED => Phase::Notified,
            DONE => Phase::Done,
            _ => unreachable!("bad task state {word}"),
        }
    }
}

struct Body<T> {
    fut: Option<BoxFuture<T>>,
    ctx: Ctx,
    done: Option<Callback<T>>,
}

/// How a freshly spawned task makes its first run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FirstRun {
    /// On the calling thread, before `spawn` returns (until its first
    /// suspension).
    Inline,
    /// Through the executor's `schedule`.
    Scheduled,
}

pub(crate) struct RawTask<T> {
    /// A [`Phase`], encoded as above.
    state: AtomicUsize,
    executor: Option<ExecutorRef>,
    body: UnsafeCell<Body<T>>,
}

// SAFETY: `body` is only accessed by the single thread that owns the run (see
// the module's access rules), so sharing `RawTask` only ever moves the
// future, the context and the callback (all `Send`) between threads; the
// `Try<T>` is produced and consumed by that thread too.
unsafe impl<T: Send> Sync for RawTask<T> {}

impl<T> fmt::Debug for RawTask<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawTask")
            .field("state", &Phase::decode(self.state.load(Relaxed)))
            .field("has_executor", &self.executor.is_some())
            .finish()
    }
}

/// Runs `drop_rest`, the drop of what is left of a finished task or child
/// (its future, its lazy local: user code), catching a panic: that panic
/// becomes `outcome`, and the outcome it replaces is dropped under
/// [`caught`]. The task or child still completes, once.
pub(crate) fn drop_into<T>(outcome: &mut Try<T>, drop_rest: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(drop_rest)) {
        let lost = core::mem::replace(outcome, Try::from_error(TaskError::Panicked(panic)));
        caught(move || drop(lost));
    }
}

/// `RawWakerVTable` of a root task's waker. The data pointer is the task's
/// own `Arc` (`Arc::as_ptr`), and every owned waker holds one count on it:
/// a clone is a count, not an allocation, and a run lends its waker without
/// taking any (see `run`).
fn task_vtable<T: Send + 'static>() -> &'static RawWakerVTable {
    // A `Waker` may be sent to and shared between threads: so must the task
    // it points at.
    fn send_sync<X: Send + Sync>() {}
    send_sync::<RawTask<T>>();
    &RawWakerVTable::new(
        task_clone::<T>,
        task_wake::<T>,
        task_wake_by_ref::<T>,
        task_drop::<T>,
    )
}

/// Clones a root task's waker: one more count on the task.
///
/// # Safety
///
/// `p` is the data pointer of a waker built by `task_vtable::<T>()`: an
/// `Arc::as_ptr` of a `RawTask<T>` that the waker keeps alive (its own
/// count, or the run that lent it).
unsafe fn task_clone<T: Send + 'static>(p: *const ()) -> RawWaker {
    // SAFETY: `p` came from `Arc::as_ptr` of a task that the waker being
    // cloned keeps alive (its own count, or the run that lent it).
    unsafe { Arc::increment_strong_count(p.cast::<RawTask<T>>()) };
    RawWaker::new(p, task_vtable::<T>())
}

/// Wakes a root task's waker by value, then releases its count.
///
/// # Safety
///
/// `p` is the data pointer of a waker built by `task_vtable::<T>()`: an
/// `Arc::as_ptr` of a `RawTask<T>` that the waker keeps alive (its own
/// count, or the run that lent it). The waker's count is consumed.
unsafe fn task_wake<T: Send + 'static>(p: *const ()) {
    // SAFETY: as in `task_clone`; `wake` consumes the waker's count, owned
    // here by `task` and released after the wake, or while unwinding if the
    // wake panics (it may run the task inline, and its callback).
    let task = unsafe { Arc::from_raw(p.cast::<RawTask<T>>()) };
    RawTask::wake(&task);
}

/// Wakes a root task's waker by reference.
///
/// # Safety
///
/// `p` is the data pointer of a waker built by `task_vtable::<T>()`: an
/// `Arc::as_ptr` of a `RawTask<T>` that the waker keeps alive (its own
/// count, or the run that lent it).
unsafe fn task_wake_by_ref<T: Send + 'static>(p: *const ()) {
    // SAFETY: as in `task_clone`: the task is alive. `ManuallyDrop`: the
    // `Arc` rebuilt here borrows the waker's count, it does not own one.
    let task = ManuallyDrop::new(unsafe { Arc::from_raw(p.cast::<RawTask<T>>()) });
    RawTask::wake(&task);
}

/// Drops a root task's waker: releases its count.
///
/// # Safety
///
/// `p` is the data pointer of a waker built by `task_vtable::<T>()`: an
/// `Arc::as_ptr` of a `RawTask<T>` that the waker keeps alive (its own
/// count, or the run that lent it). The waker's count is consumed.
unsafe fn task_drop<T: Send + 'static>(p: *const ()) {
    // SAFETY: as in `task_clone`; the waker's count is released.
    unsafe { Arc::decrement_strong_count(p.cast::<RawTask<T>>()) };
}

/// The job that runs a task on its executor. Dropped unrun (refused by
/// `schedule`, or discarded by an executor that shuts down), it completes
/// the task with [`TaskError::Rejected`]. Dropped while its thread unwinds
/// (a `schedule` that panics drops the job it was given during that
/// unwind), it completes the task under [`caught`]: the callback is user
/// code, and a panic there (a callback that re-raises the error with
/// [`Try::value`]) would be a panic during a panic, which aborts the
/// process. That panic is dropped; the one unwinding goes on.
struct RunJob<T: Send + 'static>(Option<Arc<RawTask<T>>>);

impl<T: Send + 'static> RunJob<T> {
    fn run(mut self) {
        if let Some(task) = self.0.take() {
            RawTask::run(&task);
        }
    }
}

impl<T: Send + 'static> Drop for RunJob<T> {
    fn drop(&mut self) {
        let Some(task) = self.0.take() else {
            return;
        };
        if crate::sync::thread::panicking() {
            // The task (its last count, maybe) goes with the closure, so its
            // own drop is caught too.
            return caught(move || task.abandon());
        }
        task.abandon();
    }
}

impl<T: Send + 'static> RawTask<T> {
    /// Creates a task and makes its first run.
    pub(crate) fn spawn(
        fut: BoxFuture<T>,
        ctx: Ctx,
        done: Callback<T>,
        first: FirstRun,
    ) -> Arc<Self> {
        let executor = ctx.executor.clone();
        debug_assert!(
            first == FirstRun::Inline || executor.is_some(),
            "a scheduled first run needs an executor"
        );
        let task = Arc::new(RawTask {
            // The spawner owns this first run.
            state: AtomicUsize::new(SCHEDULED),
            executor,
            body: UnsafeCell::new(Body {
                fut: Some(fut),
                ctx,
                done: Some(done),
            }),
        });
        match first {
            FirstRun::Inline => Self::run(&task),
            FirstRun::Scheduled => Self::dispatch(&task),
        }
        task
    }

    /// A wake: see the state machine.
    fn wake(this: &Arc<Self>) {
        let mut cur = this.state.load(Acquire);
        loop {
            let next = match Phase::decode(cur) {
                Phase::Idle => SCHEDULED,
                // Negative control `task_double_poll`: a wake during a poll
                // takes the run for itself and polls concurrently.
                Phase::Running if broken!("task_double_poll") => {
                    this.state.store(SCHEDULED, Relaxed);
                    Self::dispatch_or_run(this);
                    return;
                }
                Phase::Running => NOTIFIED,
                // Already due for a poll: the wake is absorbed, but still
                // made a release (an RMW to the same value), so that what
                // the waker wrote before waking happens before that poll.
                // (Negative control `task_absorbed_wake_relaxed`: an
                // absorbed wake publishes nothing.)
                Phase::Scheduled | Phase::Notified if broken!("task_absorbed_wake_relaxed") => {
                    return;
                }
                Phase::Scheduled | Phase::Notified => cur,
                Phase::Done => return,
            };
            // AcqRel: see the orderings table.
            match this.state.compare_exchange_weak(cur, next, AcqRel, Acquire) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
        if cur == IDLE {
            // We own the run now.
            Self::dispatch_or_run(this);
        }
    }

    /// Makes the run the caller owns: on the executor, or without one inline,
    /// unless a run is in progress on this thread, which then makes it once
    /// it returns (see [`Runs`]).
    fn dispatch_or_run(this: &Arc<Self>) {
        if this.executor.is_some() {
            Self::dispatch(this);
        } else if !defer(this) {
            Self::run(this);
        }
    }

    /// Hands the run the caller owns to the executor. A refusal drops the
    /// job, which abandons the task.
    fn dispatch(this: &Arc<Self>) {
        let executor = this
            .executor
            .as_ref()
            .expect("dispatch without an executor");
        let job = RunJob(Some(this.clone()));
        let result = executor.schedule(Box::new(move || job.run()));
        // Negative control `lost_reject`: forget the refused job, so its task
        // is never resumed and never completed (async_simple #123).
        match result {
            Err(e) if broken!("task_lost_reject") => core::mem::forget(e.into_job()),
            result => drop(result),
        }
    }

    /// Polls the future; the caller owns the run (state `SCHEDULED`).
    fn run(this: &Arc<Self>) {
        let _run = RunGuard::enter();
        // Acquire: see the orderings table.
        let prev = this
            .state
            .compare_exchange(SCHEDULED, RUNNING, Acquire, Relaxed);
        debug_assert_eq!(prev, Ok(SCHEDULED), "a run started without owning it");
        if prev.is_err() {
            return;
        }
        // Lent for the run, without a count of its own: the caller of the
        // run holds one for the whole run (see the invariants), and whatever
        // outlives the run is a clone, which takes its own. Never dropped
        // through the vtable (`ManuallyDrop`).
        let raw = RawWaker::new(Arc::as_ptr(this).cast::<()>(), task_vtable::<T>());
        // SAFETY: the vtable upholds the `RawWaker` contract for a pointer
        // from `Arc::as_ptr` of a live task (see it).
        let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw) });
        let mut cx = Context::from_waker(&waker);
        loop {
            let polled = this.body.with_mut(|body| {
                // SAFETY: we are the runner (state RUNNING or NOTIFIED, set by
                // us): nobody else touches `body` until we leave those states.
                let body = unsafe { &mut *body };
                let fut = body.fut.as_mut().expect("a live task has its future");
                let _ctx = context::enter(&body.ctx);
                catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx)))
            });
            match polled {
                Ok(Poll::Ready(v)) => return this.finish(Try::from_value(v)),
                Err(payload) => return this.finish(Try::from_error(TaskError::Panicked(payload))),
                Ok(Poll::Pending) => {}
            }
            // Negative control `task_lost_wake`: publish IDLE without looking
            // for a wake that arrived during the poll.
            if broken!("task_lost_wake") {
                this.state.store(IDLE, Release);
                return;
            }
            // AcqRel: see the orderings table.
            match this.state.compare_exchange(RUNNING, IDLE, AcqRel, Acquire) {
                Ok(_) => return,
                Err(actual) => {
                    debug_assert_eq!(actual, NOTIFIED, "only a wake changes RUNNING");
                    // A swap, not a store: a wake absorbed after the failed
                    // CAS read NOTIFIED (a same-value CAS) is read by the
                    // swap, which acquires what that waker published (see
                    // the orderings table).
                    let leave_notified = |to| {
                        // Negative control `task_notified_exit_store`: a
                        // plain `Relaxed` store, which reads no wake absorbed
                        // after the failed CAS.
                        if broken!("task_notified_exit_store") {
                            this.state.store(to, Relaxed);
                            return;
                        }
                        let was = this.state.swap(to, Acquire);
                        debug_assert_eq!(was, NOTIFIED, "only the runner leaves NOTIFIED");
                    };
                    if this.executor.is_some() {
                        // Re-queue at the tail: this is where `yield_now`
                        // gives way to the jobs queued before it.
                        leave_notified(SCHEDULED);
                        return Self::dispatch(this);
                    }
                    // Without an executor: behind the runs queued on this
                    // thread, if any (a task that wakes itself until another
                    // one it woke has made progress would otherwise poll for
                    // ever, and the queued run never be made); else again
                    // at once.
                    if requeue_behind_queued_runs(this, || leave_notified(SCHEDULED)) {
                        return;
                    }
                    leave_notified(RUNNING);
                }
            }
        }
    }

    /// The run the caller owned was refused or dropped unrun.
    fn abandon(&self) {
        debug_assert_eq!(Phase::decode(self.state.load(Relaxed)), Phase::Scheduled);
        // Acquire: as for a run, we are about to touch `body`.
        if self
            .state
            .compare_exchange(SCHEDULED, RUNNING, Acquire, Relaxed)
            .is_ok()
        {
            self.finish(Try::from_error(TaskError::Rejected));
        }
    }
}

impl<T> RawTask<T> {
    /// Completes the task. The caller owns the run (`RUNNING` or `NOTIFIED`;
    /// an abandoned job moves `SCHEDULED` to `RUNNING` first), or is the
    /// task's `Drop` (`IDLE`, and no other reference is left).
    fn finish(&self, mut result: Try<T>) {
        let (local, done) = self.body.with_mut(|body| {
            // SAFETY: as in `run`: the caller owns the run.
            let body = unsafe { &mut *body };
            let fut = body.fut.take();
            let ctx = &body.ctx;
            // The future first, in this task's own context (its `Drop` sees
            // the executor and local its polls saw, not those of whatever
            // task's poll woke this one inline), then the local: both before
            // the callback, as async_simple documents for its lazy locals. A
            // panic in either's `Drop` fails the task (its result is
            // dropped): the task still completes, once, and its callback
            // still runs.
            drop_into(&mut result, || {
                let _ctx = context::enter(ctx);
                drop(fut);
            });
            (body.ctx.local.take(), body.done.take())
        });
        drop_into(&mut result, move || drop(local));
        // AcqRel: see the orderings table. Wakes from now on are ignored.
        let prev = self.state.swap(DONE, AcqRel);
        debug_assert_ne!(prev, DONE, "a task completed twice");
        if let Some(done) = done {
            // Outside any task: the callback is not part of the task, and
            // must not see the context of a task whose poll woke this one.
            let _outside = context::outside();
            if crate::sync::thread::panicking() {
                // A wake (or a drop) while the thread unwinds already (a
                // guard or a channel's sender dropped by the unwind woke the
                // task inline): a panic from the callback would unwind out of
                // a destructor during cleanup, which aborts the process. It
                // is dropped; the unwind in progress goes on.
                caught(move || done(result));
            } else {
                done(result);
            }
        }
    }
}

/// A task freed while its callback is still pending: it is suspended
/// (`IDLE`) and its last count is gone, so no waker is left that could
/// resume it. It completes as a finished run does (its future dropped in its
/// own context, then its local), with [`TaskError::Abandoned`]: the callback
/// runs exactly once, also here. Under [`caught`] while the thread unwinds
/// already (a waker dropped by a panicking future's unwind): a panic from
/// the callback or a drop would abort the process there.
impl<T> Drop for RawTask<T> {
    fn drop(&mut self) {
        // Negative control `task_drop_skips_callback`: free the task with
        // its callback uncalled (the code before `Abandoned`).
        if broken!("task_drop_skips_callback") {
            return;
        }
        let pending = self.body.with_mut(|body| {
            // SAFETY: `&mut self`: no other reference to the task is left,
            // so nothing else can touch `body`.
            unsafe { (*body).done.is_some() }
        });
        if !pending {
            return;
        }
        debug_assert_eq!(
            Phase::decode(self.state.load(Relaxed)),
            Phase::Idle,
            "a task freed with its callback pending is suspended: a run holds a count"
        );
        let abandon = || self.finish(Try::from_error(TaskError::Abandoned));
        if crate::sync::thread::panicking() {
            caught(abandon);
        } else {
            abandon();
        }
    }
}

/// A run of a task without an executor, queued by a wake inside another run
/// on the same thread. Dropped unrun, it abandons its task ([`RunJob`]).
type QueuedRun = Box<dyn FnOnce()>;

/// This thread's runs: how many nest right now, and the runs their wakes
/// queued for the outermost one to make (the trampoline).
///
/// A task without an executor is resumed by whoever wakes it, inline in the
/// `wake` call, and its completion callback runs there too. Outside any run
/// that is the contract; inside one (a task's poll or callback waking such
/// a task), running the woken task inside the `wake` would nest it in code
/// that may hold a lock its poll takes (a `futures::lock::Mutex` wakes the
/// next waiter under its own internal lock: the waiter's poll, nested there,
/// waits for ever), and a chain of tasks that wake one another would nest
/// one run per task, in unbounded stack. So such a wake queues the run here,
/// and the outermost run on the thread makes the queued runs, in the order
/// the wakes came, before it returns. They count as nested in it, so their
/// own wakes queue again, to the same loop: the stack stays bounded however
/// long the chain is.
///
/// A thread that blocks inside a run (its poll or callback) would strand
/// the runs queued on it, which cannot be made before that run returns:
/// `sync_await`, [`block_on`](crate::sync::future::block_on) and
/// `SimpleExecutor::shutdown` make them first (see [`make_queued_runs`]).
struct Runs {
    depth: core::cell::Cell<usize>,
    queued: core::cell::RefCell<std::collections::VecDeque<QueuedRun>>,
    /// The first panic out of a queued run (a task's callback): kept for the
    /// outermost run to resume when it ends, also when the run was made
    /// early, by [`make_queued_runs`] before the thread blocks inside a run
    /// (the run about to block, whose task has nothing to do with it, is not
    /// failed with it).
    panicked: core::cell::RefCell<Option<Payload>>,
}

crate::sync::thread_local! {
    /// This thread's runs.
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro has no `const` form
    static RUNS: Runs = Runs {
        depth: core::cell::Cell::new(0),
        queued: core::cell::RefCell::new(std::collections::VecDeque::new()),
        panicked: core::cell::RefCell::new(None),
    };
}

/// One run's place in this thread's nesting, for as long as it lives. The
/// outermost run makes the queued runs when it ends, returning or unwinding.
/// (`false`: not counted, where this thread's [`Runs`] is gone, in a
/// thread-local destructor; wakes there run their tasks inline.)
struct RunGuard(bool);

impl RunGuard {
    #[inline]
    fn enter() -> Self {
        RunGuard(RUNS.try_with(|r| r.depth.set(r.depth.get() + 1)).is_ok())
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        if !self.0 {
            return;
        }
        let outermost = RUNS.try_with(|r| r.depth.get() == 1).unwrap_or(false);
        // Still counted while the queued runs are made: their wakes queue
        // again, to this loop, rather than nest.
        let panic = if outermost {
            make_queued_runs();
            RUNS.try_with(|r| r.panicked.borrow_mut().take())
                .ok()
                .flatten()
        } else {
            None
        };
        let _ = RUNS.try_with(|r| {
            r.depth.set(r.depth.get() - 1);
            debug_assert!(
                r.depth.get() > 0 || r.queued.borrow().is_empty(),
                "a run queued on a thread outlives its outermost run"
            );
        });
        if let Some(panic) = panic {
            if crate::sync::thread::panicking() {
                // Unwinding already (the outermost run's own callback
                // panicked): a second panic would abort the process.
                caught(move || drop(panic));
            } else {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

impl Runs {
    /// Queues the run the caller owns (state `SCHEDULED`) of a task without
    /// an executor, at the tail.
    fn push<T: Send + 'static>(&self, this: &Arc<RawTask<T>>) {
        // The job holds the run's count until the run is made.
        let job = RunJob(Some(this.clone()));
        self.queued
            .borrow_mut()
            .push_back(Box::new(move || job.run()));
    }
}

/// Queues the run the caller owns, of a task without an executor, and
/// returns `true`, if a run is in progress on this thread; otherwise (or
/// where this thread's [`Runs`] is gone) returns `false`, and the caller runs
/// it inline.
fn defer<T: Send + 'static>(this: &Arc<RawTask<T>>) -> bool {
    // Negative control `task_wake_nests_run`: never queue; a wake inside a
    // run runs the task nested in the `wake` (the code before the queue).
    if broken!("task_wake_nests_run") {
        return false;
    }
    RUNS.try_with(|r| {
        if r.depth.get() == 0 {
            return false;
        }
        r.push(this);
        true
    })
    .unwrap_or(false)
}

/// Queues the run of a task without an executor that woke itself during its
/// poll behind the runs already queued on this thread, and returns `true`;
/// returns `false`, doing nothing, when none is queued (the caller polls it
/// again at once). `leave` moves the task to `SCHEDULED` (the run the job
/// makes), before it is queued.
fn requeue_behind_queued_runs<T: Send + 'static>(
    this: &Arc<RawTask<T>>,
    leave: impl FnOnce(),
) -> bool {
    RUNS.try_with(|r| {
        if r.depth.get() == 0 || r.queued.borrow().is_empty() {
            return false;
        }
        leave();
        r.push(this);
        true
    })
    .unwrap_or(false)
}

/// Makes the runs queued on this thread, and those their wakes queue, until
/// none is left: at the end of the outermost run, and before the thread
/// blocks inside a run (`sync_await`, `block_on`, `SimpleExecutor::shutdown`),
/// so that the tasks they resume, which the thread may be about to wait for,
/// are not stranded behind the run it blocks in. Does nothing outside a run
/// (nothing is queued there).
///
/// A panic does not strand the other runs, and does not unwind from here:
/// the first one (a task's callback) is kept in [`Runs::panicked`] for the
/// outermost run to resume, out of its caller, as it unwound into the
/// waker's caller when the run was nested inside the `wake`. Later ones,
/// and any raised while the thread unwinds already (where a second panic
/// would abort the process), are dropped under [`caught`].
pub(crate) fn make_queued_runs() {
    while let Some(run) = RUNS
        .try_with(|r| r.queued.borrow_mut().pop_front())
        .ok()
        .flatten()
    {
        let keep = !crate::sync::thread::panicking()
            && RUNS
                .try_with(|r| r.panicked.borrow().is_none())
                .unwrap_or(false);
        if !keep {
            caught(run);
        } else if let Err(panic) = catch_unwind(AssertUnwindSafe(run)) {
            let mut panic = Some(panic);
            let _ = RUNS.try_with(|r| *r.panicked.borrow_mut() = panic.take());
            if let Some(panic) = panic {
                caught(move || drop(panic));
            }
        }
    }
}
