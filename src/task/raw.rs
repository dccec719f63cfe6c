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
//!   │ wake (this       ▼                        │ task has an executor:
//!   │ waker           RUNNING ──── wake ────► NOTIFIED   re-queued at the tail
//!   │ dispatches)      │  ▲                     │
//!   │                  │  └─ no executor: ──────┘
//!   │     Pending      │     re-poll inline
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
//!   holds the run (the inline starter, the waker that saw `IDLE`, the
//!   thread such a waker hands the run to past [`INLINE_DEPTH`] nested runs,
//!   or the executor job).
//! * `executor` is immutable.
//!
//! # Invariants
//!
//! * Never polled concurrently: only the owner of `SCHEDULED` enters
//!   `RUNNING`, and a wake during `RUNNING` only sets `NOTIFIED`.
//! * Never loses a wake: a wake during `RUNNING` makes the runner's
//!   `RUNNING → IDLE` CAS fail, so it polls again (inline, or by re-queueing
//!   the task on its executor, which is what makes `yield_now` go to the tail).
//! * Completes exactly once: the callback is taken out of `body` by the
//!   single runner that saw `Ready` (or by the dropped, unrun job), or, if
//!   neither ever comes, by the task's own `Drop` when its last count goes
//!   while it is suspended (`IDLE`): no waker is left that could resume it,
//!   so it completes with [`TaskError::Abandoned`] rather than drop its
//!   callback uncalled (a `sync_await` on it would park for ever).
//! * A run refused by the executor (or dropped unrun) completes the task with
//!   [`TaskError::Rejected`]: never a task that is silently never resumed.
//! * The caller of a run holds a count on the task for the whole run (the
//!   spawner's `Arc`, the executor job's, the waking waker's, or the `Arc`
//!   handed to a thread of its own), and every
//!   owned waker holds one: a run lends the task's own `Arc` to the future
//!   as its waker without taking a count, and a clone takes one.
//!
//! # Orderings
//!
//! | operation                              | ordering  | pairs with                                                     |
//! |----------------------------------------|-----------|----------------------------------------------------------------|
//! | wake: CAS `IDLE → SCHEDULED`           | `AcqRel`  | Acquire: the runner's `Release` CAS `RUNNING → IDLE` (the body it wrote); Release: the next runner's `Acquire` |
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
use crate::unwind::caught;

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
                #[cfg(lazyflight_break = "task_double_poll")]
                Phase::Running => {
                    this.state.store(SCHEDULED, Relaxed);
                    Self::dispatch_or_run(this);
                    return;
                }
                #[cfg(not(lazyflight_break = "task_double_poll"))]
                Phase::Running => NOTIFIED,
                // Already due for a poll: the wake is absorbed, but still
                // made a release (an RMW to the same value), so that what
                // the waker wrote before waking happens before that poll.
                #[cfg(not(lazyflight_break = "task_absorbed_wake_relaxed"))]
                Phase::Scheduled | Phase::Notified => cur,
                // Negative control: an absorbed wake publishes nothing.
                #[cfg(lazyflight_break = "task_absorbed_wake_relaxed")]
                Phase::Scheduled | Phase::Notified => return,
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

    /// Makes the run the caller owns: on the executor, or inline without one
    /// (on a thread of its own when runs already nest [`INLINE_DEPTH`] deep
    /// on this one).
    fn dispatch_or_run(this: &Arc<Self>) {
        if this.executor.is_some() {
            Self::dispatch(this);
        } else if !spill(this) {
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
        #[cfg(lazyflight_break = "task_lost_reject")]
        if let Err(e) = result {
            core::mem::forget(e.into_job());
        }
        #[cfg(not(lazyflight_break = "task_lost_reject"))]
        drop(result);
    }

    /// Polls the future; the caller owns the run (state `SCHEDULED`).
    fn run(this: &Arc<Self>) {
        let _depth = Depth::enter();
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
            #[cfg(lazyflight_break = "task_lost_wake")]
            {
                this.state.store(IDLE, Release);
                return;
            }
            // AcqRel: see the orderings table.
            #[allow(unreachable_code)]
            match this.state.compare_exchange(RUNNING, IDLE, AcqRel, Acquire) {
                Ok(_) => return,
                Err(actual) => {
                    debug_assert_eq!(actual, NOTIFIED, "only a wake changes RUNNING");
                    // A swap, not a store: a wake absorbed after the failed
                    // CAS read NOTIFIED (a same-value CAS) is read by the
                    // swap, which acquires what that waker published (see
                    // the orderings table).
                    let leave_notified = |to| {
                        #[cfg(not(lazyflight_break = "task_notified_exit_store"))]
                        {
                            let was = this.state.swap(to, Acquire);
                            debug_assert_eq!(was, NOTIFIED, "only the runner leaves NOTIFIED");
                        }
                        // Negative control: a plain `Relaxed` store, which
                        // reads no wake absorbed after the failed CAS.
                        #[cfg(lazyflight_break = "task_notified_exit_store")]
                        this.state.store(to, Relaxed);
                    };
                    if this.executor.is_some() {
                        // Re-queue at the tail: this is where `yield_now`
                        // gives way to the jobs queued before it.
                        leave_notified(SCHEDULED);
                        return Self::dispatch(this);
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
    /// Completes the task; the caller owns the run (`RUNNING`, `NOTIFIED`, or
    /// `SCHEDULED` for an abandoned run).
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
            done(result);
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
        #[cfg(lazyflight_break = "task_drop_skips_callback")]
        return;
        #[allow(unreachable_code)]
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

/// How many runs may nest on one thread before a wake of a task without an
/// executor runs it on a thread of its own instead of inline.
///
/// A task without an executor is resumed by whoever wakes it, inline in the
/// `wake` call, and its completion callback runs there too. Tasks that wake
/// one another from their polls or callbacks nest one run per task on the
/// waking thread's stack, without bound; past this depth the run moves to a
/// fresh thread (whose own runs nest from zero), so a chain of any length
/// runs in bounded stack. Nothing waits for that thread: the `wake` returns
/// at once, as a wake of a task with an executor does, so no wait that was
/// possible inline becomes a deadlock.
#[cfg_attr(any(loom, shuttle), allow(dead_code))] // the models never spill
pub(crate) const INLINE_DEPTH: usize = 32;

crate::sync::thread_local! {
    /// Runs nested on this thread right now.
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro has no `const` form
    static DEPTH: core::cell::Cell<usize> = core::cell::Cell::new(0);
}

/// One run's place in this thread's nesting, for as long as it lives. (Not
/// counted where the count is gone: in a thread-local destructor.)
struct Depth(bool);

impl Depth {
    fn enter() -> Self {
        Depth(DEPTH.try_with(|d| d.set(d.get() + 1)).is_ok())
    }
}

impl Drop for Depth {
    fn drop(&mut self) {
        if self.0 {
            let _ = DEPTH.try_with(|d| d.set(d.get() - 1));
        }
    }
}

/// Makes the run the caller owns on a thread of its own, and returns `true`,
/// if runs already nest [`INLINE_DEPTH`] deep on this thread; otherwise (or
/// if no thread can be made) returns `false`, and the caller runs it inline.
///
/// The models (loom, shuttle) never nest that deep, and have no thread
/// builder: there the run is always inline.
#[cfg(not(any(loom, shuttle)))]
fn spill<T: Send + 'static>(this: &Arc<RawTask<T>>) -> bool {
    if DEPTH.try_with(core::cell::Cell::get).unwrap_or(0) < INLINE_DEPTH {
        return false;
    }
    // The run goes to the thread through a slot, not by value, so that it
    // is still ours if no thread can be made.
    let handoff = Arc::new(crate::sync::Mutex::new(Some(this.clone())));
    let theirs = handoff.clone();
    let spawned = crate::sync::thread::Builder::new()
        .name("lazyflight-run".into())
        .spawn(move || {
            let task = theirs.lock().take();
            if let Some(task) = task {
                RawTask::run(&task);
            }
        });
    if spawned.is_ok() {
        // Detached: the run completes the task, and its callback reports it.
        return true;
    }
    // No thread: its closure was dropped unrun, and the run is ours again.
    drop(handoff.lock().take());
    false
}

#[cfg(any(loom, shuttle))]
fn spill<T: Send + 'static>(_: &Arc<RawTask<T>>) -> bool {
    false
}
