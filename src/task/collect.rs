//! The collect family: wait for all, or for the first, of many tasks.
//!
//! # How children run
//!
//! A child that is a plain [`Lazy`] runs *inline*: the collect future polls
//! it inside its own poll (so it sees the awaiting task's executor and lazy
//! local), with a waker of its own. A child bound to an executor (a
//! [`RescheduleLazy`](super::RescheduleLazy), or any child of
//! [`collect_all_para`] when there is a current executor) is started as a
//! root task on that executor and reports back through a callback.
//!
//! # What a child costs
//!
//! All per-child state is in one vector of slots holding the child and then
//! its state (`Task`, the `Lazy` with two more body states: `Started` on an
//! executor, `Done`); a `Vec<Lazy>` *is* that vector (`Task` is
//! `repr(transparent)` over `Lazy`), so building it touches no child.
//! `collect_all` writes each outcome into a separate, uninitialized output
//! vector as the child finishes, which becomes the result without another
//! pass; the slot vector is then freed without a pass either (every child is
//! done and owns nothing). `collect_all` polls its
//! inline children where they stand in the slot vector (the vector is never
//! resized, so a small future kept inside its `Lazy` needs no box; see
//! `inline.rs`), in runs under one `catch_unwind` (a panic is recorded for
//! the child being polled, and the run resumes with the next child). A child
//! ready at its first poll costs no waker: the waker it
//! is lent lives on the collect future's stack (`Lent`). Only when some child
//! first keeps its waker (clones it) or wakes it are the *wake nodes*
//! allocated, one allocation for every child at once (`Shared::nodes`): a
//! child's owned waker is then a pointer to its node plus a count on
//! `Shared` (and one on `Shared::holders`, below), so parking costs no
//! allocation either.
//!
//! A child that makes progress lands its index in one shared *ready list*
//! (`Shared::ready`), and the awaiting task is woken through a
//! [`WaitQueue`]. The collect future then polls exactly the children in the
//! list: a wake costs O(1), never a re-poll of every child.
//!
//! # State of a child slot
//!
//! ```text
//!   live (index >= next: not started) ──start──► live (index < next: inline)
//!        │                                          │ ▲ woken: index pushed to the
//!        │                                          │ │ ready list (once while queued)
//!        │                                          │ └─┘
//!        │                              polled Ready / panicked
//!        │                                          ▼
//!        └──start──► Started ──callback: (index, Try)──► Done
//! ```
//!
//! In `collect_all`, `out[i]` is initialized exactly when slot `i` is
//! `Done`: the outcome is written before (or, for a ready child, right
//! after, with nothing in between that can unwind) the slot becomes `Done`.
//!
//! A node's `queued` flag is set by the wake that pushes its index and
//! cleared (a swap) by the collect future right before it polls that child:
//! a wake that finds it set is covered by that coming poll; a wake after the
//! clear pushes the index again. The `task_collect_clear_after_poll`
//! negative control clears it after the poll instead, which swallows a wake
//! that arrives during the poll.
//!
//! # Access rules
//!
//! * The slots, the bound executors and the start cursor belong to the
//!   collect future (`&mut self` in `poll`): children are only ever polled
//!   there, one at a time.
//! * `Shared::ready` is written by children's wakers and by scheduled
//!   children's callbacks, from any thread, under its mutex; the collect
//!   future drains it under the same mutex.
//! * `Shared::nodes` is set once, by whichever thread first clones or wakes
//!   a lent waker (a CAS from null; a loser frees its copy), and freed with
//!   `Shared`. Nodes are shared read-only except their atomic `queued` flag;
//!   every owned waker holds a count on `Shared`, which owns the nodes.
//! * `Shared::holders` counts what outside the collect future can still
//!   wake it: owned child wakers and the completion callbacks of scheduled
//!   children not yet run (each a `Holder`). A holder is made by another
//!   (a clone) or during the collect future's poll (a child cloning its
//!   lent waker, a child started on an executor), and goes only after its
//!   last wake was recorded and notified.
//! * A waker or callback changes the ready list *before* it notifies the
//!   wait queue, and the collect future registers with a predicate that reads
//!   the ready list under the queue lock: a change is either seen by the
//!   predicate or followed by a notification that finds the collect future
//!   registered (the wait-queue protocol). The `task_collect_lost_ready`
//!   negative control swaps the two steps.
//!
//! # Invariants
//!
//! * Results are in input order; every child's `Try` is recorded once.
//! * A child polled in place is never moved again: the slot vector is not
//!   resized while a child lives in it, and a slot is only overwritten
//!   (dropping the child in place), never moved out, once its child started.
//! * `collect_any`: children are started in order and starting stops once
//!   one has finished. A finishing child *claims* the win with a CAS on
//!   `Shared::claimed` (inline children in the collect future's poll,
//!   scheduled children in their completion callback, on their own thread);
//!   only the claimer touches `Shared::on_win` (the `collect_any_with`
//!   callback, run right there, exactly once) and reports; the others drop
//!   their outcome. The `task_any_two_winners` negative control turns the
//!   CAS into a load and a store. Inline losers that were started are
//!   detached (they keep running as root tasks on the current executor,
//!   results discarded, as in async_simple), which moves them: so
//!   `collect_any` polls its children through `Lazy::poll` (a small inline
//!   future is boxed at its first poll), not in place. Scheduled losers
//!   finish on their executor.
//! * Dropping a collect future mid-flight drops its inline children (in
//!   place) and leaves its scheduled children to finish on their executors
//!   (their callbacks then write into a ready list nobody reads).
//!   `collect_any` first claims the win for nobody (`DROPPED`), so a
//!   scheduled child finishing later loses, and the `collect_any_with`
//!   callback is dropped uncalled; if a child claimed first, its callback
//!   runs (where it finishes) regardless.
//! * The awaiting task's waker is kept (registered in `Shared::parent`,
//!   which the task's own future owns through the collect future: a cycle)
//!   only while a holder is left that can wake the collect future. After
//!   registering, a pending poll checks `Shared::holders`: at 0 it cancels
//!   the registration, dropping the waker, so a task that nothing can
//!   resume any more is freed and completes with `Abandoned`, as a root
//!   task waiting on anything else does. Only the collect future drops that
//!   waker (it alone makes new holders, in its polls); the last holder to
//!   go just wakes it (`Shared::last_holder_gone`), and its next poll checks
//!   again. The two sides meet under the queue lock: the last holder's
//!   notification either finds the registration, or came before it, and
//!   then the check after registering sees its decrement. A holder goes
//!   only after its wake was recorded and notified, so a cancel on 0 loses
//!   no wake. The `task_collect_parent_abandoned_when_its_childs_last_waker_is_dropped`
//!   and `task_collect_parent_not_abandoned_while_a_childs_waker_still_wakes`
//!   loom models check both sides.
//!
//! # Orderings
//!
//! | operation | ordering | pairs with |
//! |---|---|---|
//! | `Node::queued` swap to true, in `Node::wake` | `AcqRel` | the clearing swap before the child's poll: what the waker published is seen by that poll, and the push comes after the clear |
//! | `Node::queued` swap to false, before polling a child (`Core::poll_inline`) | `AcqRel` | the swap in `Node::wake`, both ways |
//! | `Shared::claimed` CAS from `UNCLAIMED` (`Shared::claim`; also to `DROPPED` in `Drop for Core`) | `AcqRel` (failure `Relaxed`) | the other claims: the claim is the lock around `on_win`; a loser touches nothing |
//! | `Shared::claimed` load before starting the next `collect_any` child | `Acquire` | the winning CAS; a stale read only starts one child more |
//! | `Shared::nodes` CAS from null (`make_nodes`) | `AcqRel` (failure `Acquire`) | the `Acquire` loads in `node`, `nodes_if_any` and `Drop`: the nodes are seen initialized |
//! | `Shared::ready` and the wait queue | mutexes | a change to the ready list happens before the notification; the predicate reads it under the queue lock |
//! | `Shared::holders` increment (`Shared::hold`), decrement (`Shared::release`), load after registering (`Core::poll_core`) | `Relaxed` | nothing: the count publishes no data (the ready list and the registration are under their mutexes). What the check needs comes from the queue lock and coherence: a last decrement whose notification locked the queue before the registration happens before the load, which so reads it or a later value (new holders, made by that poll, that notify in turn when they go); one whose notification came after finds the registration and wakes it. A holder's wake is recorded and notified before its decrement, so a load that reads 0 misses no wake either |

use core::any::Any;
use core::fmt;
use core::future::Future;
use core::mem::{self, ManuallyDrop, MaybeUninit};
use core::pin::Pin;
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::panic::{catch_unwind, AssertUnwindSafe};

use super::context::{self, Ctx};
use super::executor::ExecutorRef;
use super::lazy::{Lazy, LazyTask, Task};
use super::raw::{drop_into, FirstRun, RawTask};
use super::try_::{TaskError, Try};
use super::yield_sleep::yield_now;
use crate::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::*};
use crate::sync::{Arc, Mutex, UnsafeCell};
use crate::unwind::{caught, each};
use crate::wait_queue::{WaitKey, WaitQueue};

const TWO_LOCALS: &str = "a collect child with its own lazy local was started from a task chain \
                          that already has one: a chain has at most one lazy local";

/// The outcome of a child that was already polled to completion (by hand)
/// before it was collected: what awaiting it again would panic with.
const COMPLETED_CHILD: &str = "Lazy polled after completion";

struct Ready<T> {
    /// Indices of inline children that were woken, each at most once while
    /// its node is `queued`.
    woken: Vec<usize>,
    /// Outcomes of scheduled children, in completion order (for
    /// `collect_any`: only the winner's, and `None` if its callback took it).
    finished: Vec<(usize, Report<T>)>,
}

/// What a finished child hands the collect future: its outcome, `None` if
/// a `collect_any_with` callback consumed it, or the panic of that callback
/// (resumed in the awaiting task, which must not be left waiting).
type Report<T> = Result<Option<Try<T>>, Box<dyn Any + Send + 'static>>;

impl<T> Ready<T> {
    fn is_empty(&self) -> bool {
        self.woken.is_empty() && self.finished.is_empty()
    }
}

type WinCallback<T> = Box<dyn FnOnce(usize, Try<T>) + Send + 'static>;

const UNCLAIMED: usize = usize::MAX;

/// `collect_any`: the claim of a collect future dropped before any child
/// finished (`Drop for Core`): every later finisher loses, and the callback
/// is dropped uncalled. Never a child's index (there are fewer than
/// `usize::MAX - 1` of them).
const DROPPED: usize = usize::MAX - 1;

/// Shared by a collect future, its children's wakers and its scheduled
/// children's callbacks.
struct Shared<T> {
    ready: Mutex<Ready<T>>,
    parent: WaitQueue,
    /// `collect_any`: `UNCLAIMED`, then the index of the winner.
    claimed: AtomicUsize,
    /// `collect_any_with`'s callback; touched only by the claimer.
    on_win: UnsafeCell<Option<WinCallback<T>>>,
    any: bool,
    /// The children's wake nodes: null, then `len` nodes (one boxed slice),
    /// allocated by the first lent waker that is cloned or woken.
    nodes: AtomicPtr<Node<T>>,
    /// The number of children.
    len: usize,
    /// Holders outside the collect future that can still wake it: owned
    /// child wakers and the completion callbacks of scheduled children not
    /// yet called (`Holder`). Not the collect future itself, nor the wakers
    /// it lends to a child for one poll (`Lent`, and a node's waker built
    /// without a count in `poll_child`). When it is 0 after the collect
    /// future registers, nothing can wake it any more, and it lets go of the
    /// awaiting task's waker (`poll_core`; the last holder to go wakes it
    /// for that, `Shared::release`): that waker, kept in `parent`, is owned
    /// through `Shared` by the awaiting task's own future, and would keep
    /// the task alive for ever (it is never woken, so never `Abandoned`).
    holders: AtomicUsize,
}

// SAFETY: `on_win` is the only field that is not `Sync` by itself; it is
// accessed by exactly one thread, the one whose CAS on `claimed` succeeded
// (`Shared::win`), or through `&mut` on drop. The callback and the outcomes
// it receives are `Send`. (`nodes` only points at nodes, which are shared
// read-only but for their atomic flag.)
unsafe impl<T: Send> Sync for Shared<T> {}

/// The wake state of one inline child; an owned child waker is a pointer to
/// its node plus a count on the `Shared` that owns the nodes.
struct Node<T> {
    /// The owner (`Arc::as_ptr`); outlives the node.
    shared: *const Shared<T>,
    index: usize,
    /// The index is in the ready list and the child not polled since.
    queued: AtomicBool,
}

impl<T> Node<T> {
    /// Marks the child ready and wakes the collect future.
    fn wake(&self) {
        // AcqRel: Release pairs with the Acquire of the collect future's
        // clearing swap (`Core::poll_inline`), so whatever the waker
        // published before waking is seen by the poll that follows, even
        // when this wake is absorbed by one already queued; Acquire: pairs
        // with that clearing swap's Release, ordering this push after it.
        // (Negative control `task_collect_wake_acquire_only`: `Acquire`.)
        let order = if broken!("task_collect_wake_acquire_only") {
            Acquire
        } else {
            AcqRel
        };
        if !self.queued.swap(true, order) {
            // SAFETY: every waker of this node holds a count on `Shared`.
            let shared = unsafe { &*self.shared };
            let index = self.index;
            shared.signal(|r| r.woken.push(index));
        }
    }
}

impl<T> Shared<T> {
    /// Claims the win for `index`: true for exactly one caller.
    fn claim(&self, index: usize) -> bool {
        // Negative control `task_any_two_winners`: check, then set; two
        // children finishing at once can both win.
        if broken!("task_any_two_winners") {
            if self.claimed.load(Acquire) != UNCLAIMED {
                return false;
            }
            self.claimed.store(index, Release);
            return true;
        }
        // AcqRel: the claim is the lock around `on_win`; Acquire on failure
        // is not needed (the loser touches nothing).
        self.claimed
            .compare_exchange(UNCLAIMED, index, AcqRel, Relaxed)
            .is_ok()
    }

    /// The claimer's part: runs the callback, if any, with the outcome, or
    /// hands the outcome back for the collect future.
    fn win(&self, index: usize, t: Try<T>) -> Report<T> {
        // SAFETY: only the thread whose `claim` succeeded gets here, once
        // (see the `Sync` impl).
        let callback = self.on_win.with_mut(|cb| unsafe { (*cb).take() });
        match callback {
            Some(cb) => catch_unwind(AssertUnwindSafe(|| cb(index, t))).map(|()| None),
            None => Ok(Some(t)),
        }
    }

    /// A new holder (`holders`): a clone of a child's waker, or a scheduled
    /// child's callback. Made only by an existing holder or by the collect
    /// future's own poll.
    #[inline]
    fn hold(&self) {
        // Relaxed: the count publishes nothing (see the orderings table).
        self.holders.fetch_add(1, Relaxed);
    }

    /// A holder goes, after its last wake (if any) was recorded and
    /// notified. The last one wakes the collect future: the check that
    /// follows its next registration sees no holder, and lets go of the
    /// awaiting task's waker (`poll_core`).
    #[inline]
    fn release(&self) {
        // Relaxed: see the orderings table.
        // Negative control `task_collect_last_holder_silent`: the last
        // holder goes without waking the collect future, which then keeps
        // the awaiting task's waker registered for ever.
        if self.holders.fetch_sub(1, Relaxed) == 1 && !broken!("task_collect_last_holder_silent") {
            self.last_holder_gone();
        }
    }

    /// No holder is left: wakes the collect future, if it is registered, so
    /// that it lets go of the awaiting task's waker itself. Only a wake: the
    /// collect future may make new holders (its poll may be running right
    /// now), so whether it can still be woken is for it to decide, after it
    /// has registered; a spurious wake costs one poll, a dropped waker that
    /// was still needed would lose a wake.
    #[cold]
    #[inline(never)]
    fn last_holder_gone(&self) {
        self.parent.notify_all();
    }

    /// Records a change with `f`, then wakes the collect future.
    fn signal(&self, f: impl FnOnce(&mut Ready<T>)) {
        // Negative control `task_collect_lost_ready`: notify first, then
        // record, so a collect future that checks the list in between
        // registers and is never woken.
        if broken!("task_collect_lost_ready") {
            self.parent.notify_all();
            f(&mut self.ready.lock());
            return;
        }
        f(&mut self.ready.lock());
        self.parent.notify_all();
    }

    fn finish_child(&self, index: usize, t: Try<T>) {
        let report = if self.any {
            if !self.claim(index) {
                return; // a loser: its outcome is discarded
            }
            self.win(index, t)
        } else {
            Ok(Some(t))
        };
        self.signal(|r| r.finished.push((index, report)));
    }

    /// The node of child `index`, allocating every node at the first call.
    fn node(this: &Arc<Self>, index: usize) -> *const Node<T> {
        debug_assert!(index < this.len);
        // Acquire: pairs with the Release of the CAS below (on whichever
        // thread won it): the nodes are seen initialized.
        let mut base = this.nodes.load(Acquire);
        if base.is_null() {
            base = Self::make_nodes(this);
        }
        // SAFETY: `base` points at `len` nodes, and `index < len`.
        unsafe { base.add(index) }
    }

    #[cold]
    #[inline(never)]
    fn make_nodes(this: &Arc<Self>) -> *mut Node<T> {
        let owner = Arc::as_ptr(this);
        let nodes: Box<[Node<T>]> = (0..this.len)
            .map(|index| Node {
                shared: owner,
                index,
                queued: AtomicBool::new(false),
            })
            .collect();
        let mine = Box::into_raw(nodes).cast::<Node<T>>();
        // AcqRel: Release publishes the initialized nodes to the Acquire
        // loads in `node`; Acquire on failure: the winner's nodes, likewise.
        match this
            .nodes
            .compare_exchange(core::ptr::null_mut(), mine, AcqRel, Acquire)
        {
            Ok(_) => mine,
            Err(theirs) => {
                // SAFETY: `mine` came from `Box::into_raw` of `len` nodes
                // above and was never shared.
                drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(mine, this.len)) });
                theirs
            }
        }
    }

    /// The nodes, if allocated (the collect future's thread only).
    #[inline]
    fn nodes_if_any(&self) -> *const Node<T> {
        // Acquire: as in `node`.
        self.nodes.load(Acquire)
    }
}

impl<T> Drop for Shared<T> {
    fn drop(&mut self) {
        // Acquire: as in `node` (the last `Arc` drop already orders this).
        let base = self.nodes.load(Acquire);
        if !base.is_null() {
            // SAFETY: `base` came from `Box::into_raw` of `len` nodes
            // (`make_nodes`); no waker is left (they hold counts on `self`).
            drop(unsafe { Box::from_raw(core::ptr::slice_from_raw_parts_mut(base, self.len)) });
        }
    }
}

/// One holder (`Shared::holders`) with its count on `Shared`: the
/// completion callback of a scheduled child owns one, and an owned child
/// waker is one (taken apart into its node's pointer; put back together by
/// `node_wake` and `node_drop`). Dropping it releases the holder, then the
/// count.
struct Holder<T>(Arc<Shared<T>>);

impl<T> Holder<T> {
    /// A new holder on `shared`.
    fn new(shared: &Arc<Shared<T>>) -> Self {
        shared.hold();
        Holder(shared.clone())
    }
}

impl<T> Drop for Holder<T> {
    fn drop(&mut self) {
        // Before the `Arc` field goes: `release` may need `Shared`.
        self.0.release();
    }
}

/// `RawWaker` vtable of an owned child waker; the data pointer is the
/// child's `Node`, and the waker is one holder on the node's `Shared`, with
/// its count (a `Holder` taken apart).
fn node_vtable<T: Send + 'static>() -> &'static RawWakerVTable {
    &RawWakerVTable::new(
        node_clone::<T>,
        node_wake::<T>,
        node_wake_by_ref::<T>,
        node_drop::<T>,
    )
}

/// Clones an owned child waker: one more holder and count on the node's
/// `Shared`.
///
/// # Safety
///
/// `p` is the data pointer of an owned child waker (`node_vtable`): a
/// `Node` whose `Shared` that waker holds a count on (or the collect
/// future keeps alive, for the waker lent by `poll_child`).
unsafe fn node_clone<T: Send + 'static>(p: *const ()) -> RawWaker {
    // SAFETY: `p` is a node (see `node_vtable`), alive while the waker being
    // cloned holds its count on the node's `Shared`, whose pointer came from
    // `Arc::as_ptr`.
    unsafe {
        let shared = (*p.cast::<Node<T>>()).shared;
        (*shared).hold();
        Arc::increment_strong_count(shared);
    }
    RawWaker::new(p, node_vtable::<T>())
}

/// The holder an owned child waker is, put back together.
///
/// # Safety
///
/// `p` is the data pointer of an owned child waker (`node_vtable`): a
/// `Node` whose `Shared` that waker holds a count on. That holder and count
/// pass to the result.
unsafe fn node_holder<T>(p: *const ()) -> Holder<T> {
    // SAFETY: the waker's count keeps the node alive; its `shared` came from
    // `Arc::as_ptr` and the count passes to the `Arc`.
    Holder(unsafe { Arc::from_raw((*p.cast::<Node<T>>()).shared) })
}

/// Wakes an owned child waker by value: wakes the child, then releases
/// the waker's count.
///
/// # Safety
///
/// `p` is the data pointer of an owned child waker (`node_vtable`): a
/// `Node` whose `Shared` that waker holds a count on. That count is consumed.
unsafe fn node_wake<T: Send + 'static>(p: *const ()) {
    // SAFETY: as in `node_clone`; `wake` consumes the waker's holder and
    // count, owned here by `_holder` and released after the wake (which is
    // then recorded and notified: the holder goes only after it), or while
    // unwinding if the wake panics (as `task_wake` does for a root task's).
    let _holder = unsafe { node_holder::<T>(p) };
    // SAFETY: as in `node_clone`: `_holder` keeps the node alive.
    unsafe { node_wake_by_ref::<T>(p) };
}

/// Wakes an owned child waker by reference.
///
/// # Safety
///
/// `p` is the data pointer of an owned child waker (`node_vtable`): a
/// `Node` whose `Shared` that waker holds a count on.
unsafe fn node_wake_by_ref<T: Send + 'static>(p: *const ()) {
    // SAFETY: as in `node_clone`: the waker keeps the node alive.
    unsafe { (*p.cast::<Node<T>>()).wake() };
}

/// Drops an owned child waker: releases its holder (the last one wakes the
/// collect future, to let go of the awaiting task's waker), then its count.
///
/// # Safety
///
/// `p` is the data pointer of an owned child waker (`node_vtable`): a
/// `Node` whose `Shared` that waker holds a count on. That count is consumed.
unsafe fn node_drop<T: Send + 'static>(p: *const ()) {
    // SAFETY: as in `node_clone`. The node is read before the count is
    // released (releasing it may free the node).
    drop(unsafe { node_holder::<T>(p) });
}

/// The waker an inline child sees during its polls before any child has
/// kept or woken its waker: it lives on the collect future's stack, so
/// children that finish without doing either cost no waker at all. `clone`
/// and `wake_by_ref` go to the child's node (allocating the nodes of every
/// child the first time), `drop` does nothing.
struct Lent<'a, T> {
    shared: &'a Arc<Shared<T>>,
    index: usize,
}

fn lent_vtable<T: Send + 'static>() -> &'static RawWakerVTable {
    &RawWakerVTable::new(lent_clone::<T>, lent_wake::<T>, lent_wake::<T>, lent_drop)
}

/// Clones the lent waker into an owned child waker (allocating every
/// child's node the first time).
///
/// # Safety
///
/// `p` points at a live `Lent<'_, T>` (the data pointer of a waker built
/// by `lent_vtable` in `poll_inline`, during that poll).
unsafe fn lent_clone<T: Send + 'static>(p: *const ()) -> RawWaker {
    // SAFETY: `p` points at the `Lent` on the stack of `poll_inline`, which
    // outlives every use of the waker built from it: that waker is only ever
    // lent (`&Waker` in the child's `Context`); anything that outlives the
    // poll is a clone, made here, that owns its own count. `Lent` is `Sync`
    // (a shared borrow of the `Arc` and an index), so a clone from another
    // thread during the poll is fine too.
    let lent = unsafe { &*p.cast::<Lent<'_, T>>() };
    let node = Shared::node(lent.shared, lent.index);
    // A new holder, with its count taken through the live `Arc` borrowed by
    // `lent` (whose `as_ptr` is what `Node::shared` holds), taken apart into
    // the node's pointer.
    mem::forget(Holder::new(lent.shared));
    RawWaker::new(node.cast::<()>(), node_vtable::<T>())
}

/// Wakes the lent waker (by value or by reference: it is never owned).
///
/// # Safety
///
/// `p` points at a live `Lent<'_, T>` (the data pointer of a waker built
/// by `lent_vtable` in `poll_inline`, during that poll).
unsafe fn lent_wake<T: Send + 'static>(p: *const ()) {
    // SAFETY: as in `lent_clone`. (A by-value `wake` cannot reach this
    // waker, which is never owned; it is handled like `wake_by_ref`.)
    let lent = unsafe { &*p.cast::<Lent<'_, T>>() };
    let node = Shared::node(lent.shared, lent.index);
    // SAFETY: the nodes live as long as `Shared`, which `lent` borrows.
    unsafe { (*node).wake() };
}

/// Drops the lent waker: nothing to release.
///
/// # Safety
///
/// None beyond the `RawWaker` contract: the pointer is not used.
unsafe fn lent_drop(_: *const ()) {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    All,
    Any,
}

/// The machinery shared by every collect future.
struct Core<T> {
    /// One per child, in input order (never resized; see the invariants).
    /// A slot's state is its task's: a child not started (index `>= next`)
    /// or running inline (`is_live`), handed to an executor (`is_started`),
    /// or finished (`is_done`).
    slots: Vec<Task<T>>,
    /// `collect_all` with compact outcomes ([`compact`]): outcome `i` of
    /// the children `0..dense`, all finished, is stored in the slot vector's
    /// own buffer at byte `i * size_of::<Try<T>>()`, over their dead slots;
    /// the slots `dense..` are intact. Always 0 otherwise.
    dense: usize,
    /// `collect_all`: the outcomes not stored compactly, by index: `late[i]`
    /// is initialized exactly when `dense <= i < next` and slot `i` is done
    /// (a child may come in done, polled to completion by hand, before
    /// `next` reaches it: it has no outcome until it is started). Empty
    /// until a child finishes out of order (or from the start without
    /// compact outcomes); empty for `collect_any`.
    late: Vec<MaybeUninit<Try<T>>>,
    /// `(index, executor)` of the children bound to an executor, last
    /// index first (popped as they start).
    bound: Vec<(usize, ExecutorRef)>,
    /// `Any`: the winner, and its outcome unless its callback took it.
    winner: Option<(usize, Option<Try<T>>)>,
    /// The next child to start.
    next: usize,
    /// Children started and not finished, plus those not started.
    remaining: usize,
    shared: Arc<Shared<T>>,
    key: WaitKey,
    mode: Mode,
    /// Schedule plain children on the current executor.
    para: bool,
    /// The awaiting task's context, captured at the first poll.
    parent: Option<Ctx>,
    /// Reused buffer for draining `woken`.
    scratch: Vec<usize>,
    /// Resolved already.
    completed: bool,
}

/// Whether `collect_all` keeps its outcomes in the slot vector's own buffer:
/// an outcome is no larger than a slot and a whole number of them fills one,
/// with the same alignment, so the buffer is a `Vec<Try<T>>` as it is (of
/// `size_of::<Task<T>>() / size_of::<Try<T>>()` times the capacity).
const fn compact<T>() -> bool {
    let (slot, out) = (mem::size_of::<Task<T>>(), mem::size_of::<Try<T>>());
    out != 0 && slot % out == 0 && mem::align_of::<Task<T>>() == mem::align_of::<Try<T>>()
}

/// `n` uninitialized elements.
fn uninit_vec<U>(n: usize) -> Vec<MaybeUninit<U>> {
    let mut v = Vec::with_capacity(n);
    // SAFETY: `MaybeUninit` needs no initialization, and the capacity is at
    // least `n`.
    unsafe { v.set_len(n) };
    v
}

impl<T> Core<T> {
    /// Slot `index`, which must be intact (`index >= dense`). Made from the
    /// buffer's raw pointer, so no reference covers the compact outcomes.
    #[inline(always)]
    fn slot(&mut self, index: usize) -> &mut Task<T> {
        assert!(index < self.slots.len());
        debug_assert!(index >= self.dense, "slot {index} holds outcomes");
        // SAFETY: in bounds (asserted), and slot `index` is intact (the
        // caller's `index >= dense`: the compact outcomes end at byte
        // `dense * size_of::<Try<T>>()`, at most `dense * size_of::<Task<T>>()`).
        // `Task` is `!Unpin`: this `&mut` does not claim the bytes of a
        // child pinned in place (see `Task`).
        unsafe { &mut *self.slots.as_mut_ptr().add(index) }
    }

    /// Where compact outcome `index` lives in the slot vector's buffer.
    #[inline(always)]
    fn compact_ptr(&mut self, index: usize) -> *mut Try<T> {
        debug_assert!(compact::<T>() && index < self.slots.len());
        // In bounds: `index * size_of::<Try<T>>() < len * size_of::<Task<T>>()`.
        self.slots.as_mut_ptr().cast::<Try<T>>().wrapping_add(index)
    }

    /// Moves the outcomes of the children finished out of order from `dense`
    /// on into the compact region, as far as they are contiguous.
    fn advance(&mut self) {
        if !compact::<T>() || self.late.is_empty() {
            return;
        }
        // Only up to `next`: a child not started yet may be done already (it
        // was polled to completion before it was collected) with no outcome
        // of ours.
        while self.dense < self.next && self.slot(self.dense).is_done() {
            let i = self.dense;
            // SAFETY: slot `dense <= i < next` is done, so `late[i]` is
            // initialized; it is read once (`dense` moves past it). The
            // write is to compact outcome `i`, over dead slots only (those
            // before `i`, and slot `i`, done and owning nothing: its future
            // and local were dropped when it finished); `read` then `write`,
            // so an overlap with slot `i` is harmless.
            unsafe {
                let t = self.late[i].assume_init_read();
                self.compact_ptr(i).write(t);
            }
            self.dense += 1;
        }
    }

    /// Stores a finished child's outcome (`collect_all`); its slot must be
    /// made done right after, by the caller.
    #[inline]
    fn store_late(&mut self, index: usize, t: Try<T>) {
        if self.late.is_empty() {
            self.late = uninit_vec(self.slots.len());
        }
        self.late[index].write(t);
    }
}

impl<T: Send + 'static> Core<T> {
    fn new(
        children: impl IntoIterator<Item = (Lazy<T>, Option<ExecutorRef>)>,
        mode: Mode,
        para: bool,
        on_win: Option<WinCallback<T>>,
    ) -> Self {
        let mut bound = Vec::new();
        let mut index = 0;
        // From a `Vec` this reuses the input's allocation (same layout).
        let slots: Vec<Task<T>> = children
            .into_iter()
            .map(|(lazy, executor)| {
                if let Some(e) = executor {
                    bound.push((index, e));
                }
                index += 1;
                lazy.into_task()
            })
            .collect();
        Self::with_slots(slots, bound, mode, para, on_win)
    }

    /// From the caller's vector: a vector of plain `Lazy`s becomes the slot
    /// vector as it is, without a pass over it.
    fn from_vec<L: LazyTask<Output = T>>(
        tasks: Vec<L>,
        mode: Mode,
        para: bool,
        on_win: Option<WinCallback<T>>,
    ) -> Self {
        match L::into_lazy_vec(tasks) {
            Ok(lazies) => {
                Self::with_slots(Task::from_lazies(lazies), Vec::new(), mode, para, on_win)
            }
            Err(tasks) => Self::new(children(tasks), mode, para, on_win),
        }
    }

    fn with_slots(
        slots: Vec<Task<T>>,
        mut bound: Vec<(usize, ExecutorRef)>,
        mode: Mode,
        para: bool,
        on_win: Option<WinCallback<T>>,
    ) -> Self {
        bound.reverse();
        let n = slots.len();
        let mut late = Vec::new();
        if mode == Mode::All && !compact::<T>() {
            late = uninit_vec(n);
        }
        Core {
            slots,
            dense: 0,
            late,
            bound,
            winner: None,
            next: 0,
            remaining: n,
            shared: Arc::new(Shared {
                ready: Mutex::new(Ready {
                    woken: Vec::new(),
                    finished: Vec::new(),
                }),
                parent: WaitQueue::new(),
                claimed: AtomicUsize::new(UNCLAIMED),
                on_win: UnsafeCell::new(on_win),
                any: mode == Mode::Any,
                nodes: AtomicPtr::new(core::ptr::null_mut()),
                len: n,
                holders: AtomicUsize::new(0),
            }),
            key: WaitKey::new(),
            mode,
            para,
            parent: None,
            scratch: Vec::new(),
            completed: false,
        }
    }

    fn done(&self) -> bool {
        match self.mode {
            Mode::All => self.remaining == 0,
            Mode::Any => self.winner.is_some(),
        }
    }

    /// Records an inline child's outcome (or a scheduled child's that never
    /// started), and drops what is left of the child where it stands. The
    /// child may be done already: one whose lazy local panicked as it was
    /// dropped after its future completed. A panic from that drop becomes
    /// the child's outcome, as for a root task.
    #[inline]
    fn record(&mut self, index: usize, mut t: Try<T>) {
        self.remaining -= 1;
        // `finish` makes the slot done even if a drop panics.
        drop_into(&mut t, || self.slot(index).finish());
        match self.mode {
            Mode::All => {
                self.store_late(index, t);
                self.advance();
            }
            Mode::Any => {
                if self.shared.claim(index) {
                    let report = self.shared.win(index, t);
                    self.set_winner(index, report);
                }
                // Otherwise a scheduled child claimed the win first; its
                // report is on its way through the ready list.
            }
        }
    }

    /// Records a child that was polled to completion before it was
    /// collected: it fails as awaiting it would, instead of never reporting
    /// (and leaving its outcome unwritten).
    #[cold]
    fn record_completed_child(&mut self, index: usize) {
        let e = TaskError::Panicked(Box::new(COMPLETED_CHILD));
        self.record(index, Try::from_error(e));
    }

    /// Records the winner; resumes its callback's panic here.
    fn set_winner(&mut self, index: usize, report: Report<T>) {
        match report {
            Ok(t) => self.winner = Some((index, t)),
            Err(panic) => {
                self.winner = Some((index, None));
                self.completed = true;
                std::panic::resume_unwind(panic);
            }
        }
    }

    /// Records a scheduled child's report.
    fn record_finished(&mut self, index: usize, t: Report<T>) {
        debug_assert!(
            self.slot(index).is_started(),
            "child {index} reported twice"
        );
        self.remaining -= 1;
        match self.mode {
            Mode::All => {
                let t = t.ok().flatten();
                self.store_late(index, t.expect("collect_all reports outcomes"));
                self.slot(index).finish();
                self.advance();
            }
            Mode::Any => {
                self.slot(index).finish();
                assert!(
                    self.winner.is_none(),
                    "two collect_any children claimed the win"
                );
                self.set_winner(index, t);
            }
        }
    }

    /// Polls inline child `index` once (a no-op if it finished), catching
    /// its panic.
    #[inline]
    fn poll_inline(&mut self, index: usize) {
        match catch_unwind(AssertUnwindSafe(|| self.poll_child(index, false))) {
            Ok(Some(polled)) => self.on_polled(index, polled),
            Ok(None) => {}
            Err(p) => self.record(index, Try::from_error(TaskError::Panicked(p))),
        }
    }

    /// `collect_all`: polls the children not started yet, in order, until
    /// one is to be scheduled on an executor (or none is left). The run is
    /// under one `catch_unwind`: a panic is recorded for the child being
    /// polled, and the run goes on with the next child under a fresh one.
    fn poll_run(&mut self) {
        debug_assert_eq!(self.mode, Mode::All);
        let para = self.para && self.parent.as_ref().is_some_and(|p| p.executor.is_some());
        // The first child that needs an executor ends the run.
        let end = if para {
            self.next
        } else {
            self.bound.last().map_or(self.slots.len(), |(i, _)| *i)
        };
        while self.next < end {
            let run = catch_unwind(AssertUnwindSafe(|| {
                while self.next < end {
                    let i = self.next;
                    // Advanced before the poll: a panic is the child at
                    // `next - 1`'s.
                    self.next += 1;
                    if let Some(polled) = self.poll_child(i, true) {
                        self.on_polled(i, polled);
                    }
                }
            }));
            if let Err(p) = run {
                self.record(self.next - 1, Try::from_error(TaskError::Panicked(p)));
            }
        }
    }

    /// What a child's poll returned (it did not panic).
    #[inline(always)]
    fn on_polled(&mut self, index: usize, polled: Poll<T>) {
        match polled {
            Poll::Pending => {}
            Poll::Ready(v) if self.mode == Mode::All => {
                // `record`'s `collect_all` arm without its drop: the child
                // already dropped its future and local when it returned
                // `Ready`, and is done. The hot path of a ready child.
                debug_assert!(self.slot(index).is_completed());
                self.remaining -= 1;
                if compact::<T>() && index == self.dense {
                    // SAFETY: compact outcome `index == dense` goes over
                    // dead slots only: those before it, and slot `index`,
                    // done and owning nothing (see above), whose bytes are
                    // not read again (`dense` moves past it).
                    unsafe { self.compact_ptr(index).write(Try::from_value(v)) };
                    self.dense += 1;
                    self.advance();
                } else {
                    self.store_late(index, Try::from_value(v));
                }
            }
            Poll::Ready(v) => self.record(index, Try::from_value(v)),
        }
    }

    /// Polls inline child `index` once, its panic not caught; `None` if it
    /// is not a live child. `first`: the collect has not polled it before,
    /// so if it is not live it came in completed, and is recorded as such.
    #[inline(always)]
    fn poll_child(&mut self, index: usize, first: bool) -> Option<Poll<T>> {
        let in_place = self.mode == Mode::All;
        if index < self.dense {
            return None; // finished, its slot gone
        }
        let nodes = self.shared.nodes_if_any();
        assert!(index < self.slots.len());
        // SAFETY: `index >= dense` (checked above), in bounds (asserted):
        // as in `slot`, which this is (but for a borrow of `self.shared`
        // alongside).
        let task = unsafe { &mut *self.slots.as_mut_ptr().add(index) };
        if !task.is_live() {
            if first {
                self.record_completed_child(index);
            }
            return None;
        }
        let lent = Lent {
            shared: &self.shared,
            index,
        };
        let raw = if nodes.is_null() {
            RawWaker::new(
                (&lent as *const Lent<'_, T>).cast::<()>(),
                lent_vtable::<T>(),
            )
        } else {
            // SAFETY: `nodes` points at `len` nodes, and `index < len`.
            let node = unsafe { nodes.add(index) };
            // Negative control `task_collect_clear_after_poll`: the flag is
            // cleared after the poll instead, below.
            if !broken!("task_collect_clear_after_poll") {
                // AcqRel: see `Node::wake`.
                // SAFETY: the nodes live as long as `self.shared`.
                unsafe {
                    (*node).queued.swap(false, AcqRel);
                }
            }
            // The owned waker's own form (no count taken: `self.shared`
            // keeps the node alive for this poll), so `will_wake` holds
            // for a clone the child kept from an earlier poll.
            RawWaker::new(node.cast::<()>(), node_vtable::<T>())
        };
        // SAFETY: both vtables uphold the `RawWaker` contract (see them);
        // the waker is only lent to the child for this poll and is never
        // dropped through the vtable (`ManuallyDrop`): for a node, no count
        // was taken for it.
        let waker = ManuallyDrop::new(unsafe { Waker::from_raw(raw) });
        let mut cx = Context::from_waker(&waker);
        let polled = if in_place {
            // SAFETY: in `collect_all` the child stays in its slot until it
            // is dropped there (see the invariants).
            unsafe { task.poll_in_place(&mut cx) }
        } else {
            task.poll_movable(&mut cx)
        };
        if broken!("task_collect_clear_after_poll") && !nodes.is_null() {
            // SAFETY: as above.
            unsafe { (*nodes.add(index)).queued.swap(false, AcqRel) };
        }
        Some(polled)
    }

    fn start(&mut self, index: usize) {
        let bound = match self.bound.last() {
            Some((i, _)) if *i == index => self.bound.pop().map(|(_, e)| e),
            _ => None,
        };
        if !self.slot(index).is_live() {
            return self.record_completed_child(index);
        }
        let executor = bound.or_else(|| {
            if self.para {
                let parent = self.parent.as_ref().expect("captured at the first poll");
                parent.executor.clone()
            } else {
                None
            }
        });
        let Some(executor) = executor else {
            return self.poll_inline(index);
        };
        let mut task = core::mem::replace(self.slot(index), Task::started());
        debug_assert!(task.is_live(), "child {index} started twice");
        let parent = self.parent.as_ref().expect("captured at the first poll");
        // Never polled: it may move.
        let (fut, local) = task.into_lazy().into_parts();
        let local = match (local, &parent.local) {
            (Some(_), Some(_)) => {
                let e = TaskError::Panicked(Box::new(TWO_LOCALS));
                return self.record(index, Try::from_error(e));
            }
            (Some(own), None) => Some(own),
            (None, inherited) => inherited.clone(),
        };
        // The callback is a holder until it has run (or is dropped uncalled):
        // the child can still wake this future.
        let holder = Holder::new(&self.shared);
        RawTask::spawn(
            fut,
            Ctx::new(Some(executor), local),
            Box::new(move |t| holder.0.finish_child(index, t)),
            FirstRun::Scheduled,
        );
    }

    /// Polls the children whose wake arrived and records the scheduled
    /// children that finished.
    fn drain(&mut self) {
        let mut woken = core::mem::take(&mut self.scratch);
        let finished = {
            let mut r = self.shared.ready.lock();
            core::mem::swap(&mut woken, &mut r.woken);
            core::mem::take(&mut r.finished)
        };
        for (i, t) in finished {
            self.record_finished(i, t);
        }
        for &i in &woken {
            if self.mode == Mode::Any && self.winner.is_some() {
                break;
            }
            self.poll_inline(i);
        }
        woken.clear();
        self.scratch = woken;
    }

    fn poll_core(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        assert!(
            !self.completed,
            "a collect future was polled after completion"
        );
        if self.parent.is_none() {
            let (executor, local) = context::with_current(|c| {
                c.map_or((None, None), |c| (c.executor.clone(), c.local.clone()))
            });
            self.parent = Some(Ctx::new(executor, local));
        }
        if self.key.is_registered() {
            // Refreshes the waker, or consumes a notification.
            let _ = self.shared.parent.poll(&mut self.key, cx);
        }
        // Wakes that arrived before this poll first, then new children: a
        // child that wakes itself during this poll (a yield) is polled again
        // on the next poll, after the awaiting task has been re-queued.
        self.drain();
        match self.mode {
            Mode::All => {
                // Every child once, in order; no shared state is touched
                // unless a child parks or wakes.
                while self.next < self.slots.len() {
                    self.poll_run();
                    if self.next < self.slots.len() {
                        // A child for an executor.
                        let i = self.next;
                        self.next += 1;
                        self.start(i);
                    }
                }
            }
            Mode::Any => {
                // Also stop once any child has claimed the win: a scheduled
                // winner claims it before it records its outcome (and runs
                // its callback in between), and its report wakes this future.
                // Acquire: pairs with the winning claim's AcqRel CAS
                // (`Shared::claim`); a stale UNCLAIMED only starts one more
                // child, which then loses its own claim.
                while self.next < self.slots.len()
                    && !self.done()
                    && self.shared.claimed.load(Acquire) == UNCLAIMED
                {
                    let i = self.next;
                    self.next += 1;
                    self.start(i);
                    if !self.shared.ready.lock().finished.is_empty() {
                        // A scheduled child already finished: stop starting.
                        self.drain();
                    }
                }
            }
        }
        if self.done() {
            self.completed = true;
            // A registration left from an earlier poll would keep the
            // awaiting task's waker (see `Shared::holders`) for as long as
            // this future is kept.
            self.shared.parent.cancel(&mut self.key, || {});
            return Poll::Ready(());
        }
        let shared = &self.shared;
        if !shared.ready.lock().is_empty() {
            // Progress is waiting: come back after the executor's queue.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        if !self.key.is_registered()
            && !shared
                .parent
                .register(&mut self.key, cx.waker(), || shared.ready.lock().is_empty())
        {
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        // Registered. No holder left (or never any: children pending without
        // keeping their wakers): nothing can wake this future any more, so
        // the awaiting task must not keep its own waker here, in the state
        // its own future owns (it would never be freed, nor `Abandoned`).
        // A holder that went before this load had notified first (seen by
        // the predicate above, or it found the registration and woke it);
        // one left now will, when it goes last, wake this future (it finds
        // the registration: the queue lock orders its notification after
        // this registration, or its decrement before this load), and the
        // next poll checks again. Relaxed: see the orderings table.
        // Negative control `task_collect_keeps_parent_waker`: the waker is
        // kept whatever the count (the cycle the count is there to break).
        if shared.holders.load(Relaxed) == 0 && !broken!("task_collect_keeps_parent_waker") {
            shared.parent.cancel(&mut self.key, || {});
        }
        Poll::Pending
    }

    /// `collect_any` is over: detach the inline losers that were started.
    fn detach_losers(&mut self) {
        debug_assert_eq!(self.mode, Mode::Any);
        let parent = self.parent.take().unwrap_or_default();
        debug_assert_eq!(self.dense, 0);
        for slot in &mut self.slots[..self.next] {
            if slot.is_live() {
                let task = core::mem::replace(slot, Task::started());
                slot.finish();
                // Polled with `poll_movable` (never in place): it may move.
                let (fut, local) = task.into_lazy().into_parts();
                let local = local.or_else(|| parent.local.clone());
                let ctx = Ctx::new(parent.executor.clone(), local);
                // Under `caught` too: outside any run, this first run is the
                // outermost on the thread, and it resumes the panic of a run
                // that its wakes queued (another task's callback), which must
                // not fail the winner's poll either.
                caught(move || {
                    drop(RawTask::spawn(
                        fut,
                        ctx,
                        // The outcome is discarded; its drop (a value's or a
                        // panic payload's `Drop`, user code) runs inside the
                        // winner's poll, and must not fail it.
                        Box::new(|outcome| caught(move || drop(outcome))),
                        FirstRun::Inline,
                    ));
                });
            }
        }
    }
}

/// One step of `Core`'s drop (see there).
#[derive(Clone, Copy)]
enum DropStep {
    /// Cancel the awaiting task's registration (dropping its waker).
    Cancel,
    /// Drop compact outcome `i`.
    Outcome(usize),
    /// Drop late outcome `i`, if slot `i` is done.
    Late(usize),
    /// Drop slot `i`.
    Slot(usize),
}

impl<T> Drop for Core<T> {
    fn drop(&mut self) {
        // `collect_any` dropped before any child claimed the win: claim it
        // for nobody, so a scheduled child finishing later loses (its
        // outcome is dropped), and drop the callback uncalled, as the cancel
        // safety docs say. Once a child has claimed, its callback runs where
        // it finishes, with or without this future. Dropped last (a quiet
        // drop: user code, perhaps while unwinding), after the children.
        let mut _on_win = None;
        // Negative control `task_any_drop_checks_claim`: a load that sees
        // no claim stands in for the claim itself.
        let claimed = self.mode == Mode::Any
            && if broken!("task_any_drop_checks_claim") {
                self.shared.claimed.load(Acquire) == UNCLAIMED
            } else {
                self.shared.claim(DROPPED)
            };
        if claimed {
            // SAFETY: the claim succeeded: only this thread touches `on_win`
            // (see the `Sync` impl of `Shared`).
            let cb = self.shared.on_win.with_mut(|cb| unsafe { (*cb).take() });
            _on_win = Some(crate::unwind::Quiet::new(cb));
        }
        // The outcomes recorded so far and the slots left (none once the
        // outcomes were handed out): by hand, as the compact outcomes are
        // not slots. The vector's length is 0 from here on, before any user
        // code runs: whatever unwinds out of this drop, the vector's own
        // drop then only frees its buffer (it never drops the compact
        // outcomes' bytes as slots).
        let (len, dense, next) = (self.slots.len(), self.dense, self.next);
        // SAFETY: the slots are dropped below and the vector then only frees
        // its buffer.
        unsafe { self.slots.set_len(0) };
        let base = self.slots.as_mut_ptr();
        let has_late = !self.late.is_empty();
        let (shared, key, late) = (&self.shared, &mut self.key, &mut self.late);
        // Every step runs even if one (user code: the awaiting task's
        // waker's drop, an outcome's or a child's `Drop`) panics, as a `Vec`
        // drops every element; the first such panic unwinds on afterwards.
        // The registration goes first (a child's drop that wakes it then
        // wakes nobody); the late outcomes before any slot, since whether
        // one is initialized is read from its slot.
        let steps = core::iter::once(DropStep::Cancel)
            .chain((0..dense).map(DropStep::Outcome))
            .chain((dense..next).filter(move |_| has_late).map(DropStep::Late))
            .chain((dense..len).map(DropStep::Slot));
        each(steps, |step| match step {
            DropStep::Cancel => shared.parent.cancel(key, || {}),
            // SAFETY: compact outcome `i < dense` is initialized (see
            // `dense`), dropped once.
            DropStep::Outcome(i) => unsafe { base.cast::<Try<T>>().add(i).drop_in_place() },
            // SAFETY: `late[i]` is initialized exactly when `dense <= i <
            // next` and slot `i` is done (a child not started yet may be
            // done, with no outcome: it was polled to completion before it
            // was collected), and dropped once; the slots are still intact
            // (every `Late` step comes before the first `Slot` step).
            DropStep::Late(i) => unsafe {
                if (*base.add(i)).is_done() {
                    late[i].assume_init_drop();
                }
            },
            // SAFETY: slot `i >= dense` is intact, dropped once.
            DropStep::Slot(i) => unsafe { base.add(i).drop_in_place() },
        });
    }
}

fn children<L: LazyTask>(
    tasks: Vec<L>,
) -> impl ExactSizeIterator<Item = (Lazy<L::Output>, Option<ExecutorRef>)> {
    tasks.into_iter().map(LazyTask::into_lazy)
}

/// Waits for every task; resolves to their [`Try`]s in input order.
///
/// Plain [`Lazy`] children run inline, interleaved at their suspension
/// points (no parallelism: async_simple's "serially");
/// [`RescheduleLazy`](super::RescheduleLazy) children run on their
/// executors. For a fixed number of tasks of different types, see
/// [`collect_all!`](crate::collect_all).
///
/// # Examples
///
/// ```
/// use lazyflight::task::{collect_all, sync_await, Lazy};
///
/// fn computing(x: i32) -> Lazy<i32> {
///     Lazy::new(async move { x * 10 })
/// }
/// let sum = sync_await(Lazy::new(async {
///     let out = collect_all(vec![computing(1), computing(2)]).await;
///     out.into_iter().map(|t| t.value()).sum::<i32>()
/// }));
/// assert_eq!(sum, 30);
/// ```
pub fn collect_all<L: LazyTask>(tasks: Vec<L>) -> CollectAll<L::Output> {
    CollectAll(Core::from_vec(tasks, Mode::All, false, None))
}

/// Like [`collect_all`], but plain [`Lazy`] children are scheduled on the
/// current executor, so they run in parallel; without a current executor
/// they run inline, as with [`collect_all`].
///
/// # Examples
///
/// ```
/// use lazyflight::task::{collect_all_para, sync_await, Lazy, SimpleExecutor};
///
/// let ex = SimpleExecutor::new(2);
/// let out = sync_await(
///     Lazy::new(async {
///         let input = (0..4).map(|i| Lazy::new(async move { i * i })).collect();
///         collect_all_para(input).await
///     })
///     .via(ex),
/// );
/// assert_eq!(out.into_iter().map(|t| t.value()).collect::<Vec<_>>(), [0, 1, 4, 9]);
/// ```
pub fn collect_all_para<L: LazyTask>(tasks: Vec<L>) -> CollectAll<L::Output> {
    CollectAll(Core::from_vec(tasks, Mode::All, true, None))
}

/// The future of [`collect_all`] and [`collect_all_para`].
///
/// # Cancel safety
///
/// Dropping it drops the inline children where they stand; scheduled
/// children finish on their executors and their results are discarded.
#[must_use = "futures do nothing unless awaited"]
pub struct CollectAll<T>(Core<T>);

// Outcomes are stored by value and never pinned.
impl<T> Unpin for CollectAll<T> {}

impl<T: Send + 'static> Future for CollectAll<T> {
    type Output = Vec<Try<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Vec<Try<T>>> {
        let core = &mut self.get_mut().0;
        if core.poll_core(cx).is_pending() {
            return Poll::Pending;
        }
        // Every child is done, and owns nothing any more (its future and
        // local were dropped when it finished).
        let (n, dense) = (core.slots.len(), core.dense);
        let slots = ManuallyDrop::new(core::mem::take(&mut core.slots));
        let late = ManuallyDrop::new(core::mem::take(&mut core.late));
        core.dense = 0;
        if compact::<T>() {
            debug_assert_eq!(dense, n, "every outcome moved into place");
            // The outcomes were all moved out of `late` (if it was made):
            // only its buffer is freed.
            drop(ManuallyDrop::into_inner(late));
            let per_slot = mem::size_of::<Task<T>>() / mem::size_of::<Try<T>>();
            // SAFETY: the buffer holds `n` initialized outcomes at its
            // start (`dense == n`); `compact` makes its size and alignment
            // those of `capacity * per_slot` outcomes, so it is that
            // vector's allocation; `slots` is forgotten, so it has one owner.
            Poll::Ready(unsafe {
                Vec::from_raw_parts(
                    slots.as_ptr().cast::<Try<T>>().cast_mut(),
                    n,
                    slots.capacity() * per_slot,
                )
            })
        } else {
            // Dropping the slots one by one would do nothing: only the
            // buffer is freed, without a pass over it.
            let mut slots = ManuallyDrop::into_inner(slots);
            // SAFETY: as said, the slots own nothing.
            unsafe { slots.set_len(0) };
            drop(slots);
            // SAFETY: every child is done, so every outcome in `late` is
            // initialized (`dense == 0`); `MaybeUninit<Try<T>>` has the
            // layout of `Try<T>`; the buffer passes from `late` (forgotten)
            // to the result.
            Poll::Ready(unsafe {
                Vec::from_raw_parts(
                    late.as_ptr().cast::<Try<T>>().cast_mut(),
                    late.len(),
                    late.capacity(),
                )
            })
        }
    }
}

impl<T> fmt::Debug for CollectAll<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectAll")
            .field("children", &self.0.slots.len())
            .field("remaining", &self.0.remaining)
            .finish()
    }
}

/// Runs the tasks in strict batches of `max_concurrency` (the next batch
/// starts when the whole previous one is done, as in async_simple), with a
/// [`yield_now`] between batches when `yield_between` is set and the task
/// has an executor. Results are in input order. A `max_concurrency` of 0
/// means no limit (one batch, as [`collect_all`]), as in async_simple.
///
/// # Cancel safety
///
/// Dropping the returned task (or the task awaiting it) mid-flight drops the
/// batch in progress as dropping a [`CollectAll`] does, and the children of
/// later batches unstarted.
///
/// # Examples
///
/// ```
/// use lazyflight::task::{collect_all_windowed, sync_await, Lazy};
///
/// let input: Vec<_> = (1..=5).map(|i| Lazy::new(async move { i })).collect();
/// let out = sync_await(collect_all_windowed(2, true, input));
/// assert_eq!(out.into_iter().map(|t| t.value()).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
/// ```
pub fn collect_all_windowed<L: LazyTask>(
    max_concurrency: usize,
    yield_between: bool,
    tasks: Vec<L>,
) -> Lazy<Vec<Try<L::Output>>> {
    windowed(max_concurrency, yield_between, tasks, false)
}

/// [`collect_all_windowed`] whose batches run as [`collect_all_para`].
pub fn collect_all_windowed_para<L: LazyTask>(
    max_concurrency: usize,
    yield_between: bool,
    tasks: Vec<L>,
) -> Lazy<Vec<Try<L::Output>>> {
    windowed(max_concurrency, yield_between, tasks, true)
}

fn windowed<L: LazyTask>(
    max_concurrency: usize,
    yield_between: bool,
    tasks: Vec<L>,
    para: bool,
) -> Lazy<Vec<Try<L::Output>>> {
    // 0: no limit, as in async_simple.
    let batch = if max_concurrency == 0 {
        usize::MAX
    } else {
        max_concurrency
    };
    Lazy::new(async move {
        let mut out = Vec::with_capacity(tasks.len());
        let mut rest = children(tasks).peekable();
        while rest.peek().is_some() {
            let group: Vec<_> = rest.by_ref().take(batch).collect();
            out.extend(CollectAll(Core::new(group, Mode::All, para, None)).await);
            if yield_between && rest.peek().is_some() && context::has_executor() {
                // Cannot fail: there is an executor.
                let _ = yield_now().await;
            }
        }
        out
    })
}

/// The first task to finish: its index in the input and its [`Try`].
#[derive(Debug)]
pub struct CollectAnyResult<T> {
    /// Index of the winner in the input.
    pub index: usize,
    /// The winner's outcome.
    pub value: Try<T>,
}

impl<T> CollectAnyResult<T> {
    /// Index of the winner in the input.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether the winner failed.
    pub fn has_error(&self) -> bool {
        self.value.has_error()
    }
}

/// Resolves to the first task to finish.
///
/// Tasks are started in order (plain [`Lazy`] children inline until their
/// first suspension, [`RescheduleLazy`](super::RescheduleLazy) children on
/// their executors) and starting stops as soon as one has finished. Started
/// losers are detached: they keep running and their results are discarded.
/// For tasks of different types see [`collect_any!`](crate::collect_any).
///
/// A detached loser's future is dropped when it finishes (or, on an
/// executor, when its run is refused: it completes with `Rejected`), or when
/// it waits and the last clone of its waker is dropped; the task's own
/// small allocation goes with the last clone of its waker. Nothing else owns
/// it (no runtime task list drops it at shutdown): a loser that waits for
/// ever on something that keeps its waker, its own fields included, stays
/// allocated for good. Give losers a way to finish (a cancellation signal,
/// a timeout) if they may otherwise wait for ever.
///
/// # Panics
///
/// If `tasks` is empty (there would be no first task).
///
/// # Examples
///
/// ```
/// use lazyflight::task::{collect_any, sleep, sync_await, Lazy, SimpleExecutor};
/// use std::time::Duration;
///
/// let ex = SimpleExecutor::new(1);
/// let nap = |ms: u64| Lazy::new(async move {
///     sleep(Duration::from_millis(ms)).await.unwrap();
///     ms
/// });
/// let first = sync_await(Lazy::new(async move {
///     collect_any(vec![nap(200), nap(5), nap(100)]).await
/// }).via(ex));
/// assert_eq!((first.index, first.value.value()), (1, 5));
/// ```
pub fn collect_any<L: LazyTask>(tasks: Vec<L>) -> CollectAny<L::Output> {
    assert!(!tasks.is_empty(), "collect_any needs at least one task");
    CollectAny(Core::from_vec(tasks, Mode::Any, false, None))
}

/// The future of [`collect_any`].
///
/// # Cancel safety
///
/// As [`CollectAll`].
#[must_use = "futures do nothing unless awaited"]
pub struct CollectAny<T>(Core<T>);

// As for `CollectAll`.
impl<T> Unpin for CollectAny<T> {}

impl<T: Send + 'static> Future for CollectAny<T> {
    type Output = CollectAnyResult<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CollectAnyResult<T>> {
        let core = &mut self.get_mut().0;
        if core.poll_core(cx).is_pending() {
            return Poll::Pending;
        }
        let (index, value) = core
            .winner
            .take()
            .expect("collect_any resolved without a winner");
        core.detach_losers();
        let value = value.expect("collect_any has no callback to take the outcome");
        Poll::Ready(CollectAnyResult { index, value })
    }
}

impl<T> fmt::Debug for CollectAny<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectAny")
            .field("children", &self.0.slots.len())
            .finish()
    }
}

/// [`collect_any`] with a callback: `callback(index, try)` runs exactly once,
/// for the winner, and the future resolves to the winner's index.
///
/// As in async_simple, the callback runs where the winner completes: in the
/// awaiting task for a plain [`Lazy`] child, on the child's executor for a
/// [`RescheduleLazy`](super::RescheduleLazy) child (before the awaiting task
/// resumes).
///
/// # Panics
///
/// If `tasks` is empty. A panic in `callback` resumes in the awaiting task,
/// from this future's poll; for a winner that ran on an executor, the
/// callback (and its panic) ran on that executor's thread first, and is
/// caught there and carried over.
///
/// # Examples
///
/// ```
/// use lazyflight::task::{collect_any_with, sync_await, Lazy};
///
/// let input = vec![Lazy::new(async { 41 }), Lazy::new(async { 42 })];
/// let index = sync_await(Lazy::new(collect_any_with(input, |i, v| {
///     assert_eq!(v.value(), 41 + i as i32);
/// })));
/// assert_eq!(index, 0);
/// ```
pub fn collect_any_with<L, F>(tasks: Vec<L>, callback: F) -> CollectAnyWith<L::Output>
where
    L: LazyTask,
    F: FnOnce(usize, Try<L::Output>) + Send + 'static,
{
    assert!(!tasks.is_empty(), "collect_any needs at least one task");
    CollectAnyWith(Core::from_vec(
        tasks,
        Mode::Any,
        false,
        Some(Box::new(callback)),
    ))
}

/// The future of [`collect_any_with`].
///
/// # Cancel safety
///
/// As [`CollectAll`]. If it is dropped before a child has finished, the
/// callback is dropped without being called; once a child has claimed the
/// win, its callback runs (on the thread that completed it) even if this
/// future is already gone.
#[must_use = "futures do nothing unless awaited"]
pub struct CollectAnyWith<T>(Core<T>);

// As for `CollectAll`.
impl<T> Unpin for CollectAnyWith<T> {}

impl<T: Send + 'static> Future for CollectAnyWith<T> {
    type Output = usize;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        let core = &mut self.get_mut().0;
        if core.poll_core(cx).is_pending() {
            return Poll::Pending;
        }
        let (index, _) = core
            .winner
            .take()
            .expect("collect_any resolved without a winner");
        core.detach_losers();
        Poll::Ready(index)
    }
}

impl<T> fmt::Debug for CollectAnyWith<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectAnyWith")
            .field("children", &self.0.slots.len())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Variadic forms.

type BoxAny = Box<dyn Any + Send>;

#[doc(hidden)]
pub type ErasedChild = (Lazy<BoxAny>, Option<ExecutorRef>);

fn erase<L: LazyTask>(task: L) -> ErasedChild {
    let (lazy, executor) = task.into_lazy();
    (lazy.map_output(|v| Box::new(v) as BoxAny), executor)
}

fn unerase<T: 'static>(t: Try<BoxAny>) -> Try<T> {
    t.map(|b| {
        *b.downcast::<T>()
            .expect("the value has the child's own type")
    })
}

/// A tuple of tasks, for [`collect_all!`](crate::collect_all) and
/// [`collect_any!`](crate::collect_any).
pub trait TaskTuple: Send + 'static {
    /// `(Try<A>, Try<B>, ...)`.
    type All;
    /// `AnyOfN<A, B, ...>`.
    type Any;
    #[doc(hidden)]
    fn erase(self) -> Vec<ErasedChild>;
    #[doc(hidden)]
    fn rebuild_all(results: Vec<Try<BoxAny>>) -> Self::All;
    #[doc(hidden)]
    fn rebuild_any(index: usize, value: Try<BoxAny>) -> Self::Any;
}

macro_rules! task_tuples {
    ($( $any:ident { $($T:ident $i:tt $V:ident),+ } )+) => {$(
        /// The winner of a variadic [`collect_any!`](crate::collect_any): one
        /// variant per position, holding that task's [`Try`].
        #[derive(Debug)]
        pub enum $any<$($T),+> {
            $(
                #[doc = concat!("Task ", stringify!($i), " finished first.")]
                $V(Try<$T>),
            )+
        }

        impl<$($T),+> $any<$($T),+> {
            /// The winner's position.
            pub fn index(&self) -> usize {
                match self { $(Self::$V(_) => $i,)+ }
            }
        }

        impl<$($T: LazyTask),+> TaskTuple for ($($T,)+) {
            type All = ($(Try<$T::Output>,)+);
            type Any = $any<$($T::Output),+>;

            fn erase(self) -> Vec<ErasedChild> {
                vec![$(erase(self.$i)),+]
            }

            fn rebuild_all(results: Vec<Try<BoxAny>>) -> Self::All {
                let mut it = results.into_iter();
                ($(unerase::<$T::Output>(it.next().expect("one result per task")),)+)
            }

            fn rebuild_any(index: usize, value: Try<BoxAny>) -> Self::Any {
                match index {
                    $($i => $any::$V(unerase::<$T::Output>(value)),)+
                    _ => unreachable!("index out of range"),
                }
            }
        }
    )+};
}

task_tuples! {
    AnyOf1 { A 0 V0 }
    AnyOf2 { A 0 V0, B 1 V1 }
    AnyOf3 { A 0 V0, B 1 V1, C 2 V2 }
    AnyOf4 { A 0 V0, B 1 V1, C 2 V2, D 3 V3 }
    AnyOf5 { A 0 V0, B 1 V1, C 2 V2, D 3 V3, E 4 V4 }
    AnyOf6 { A 0 V0, B 1 V1, C 2 V2, D 3 V3, E 4 V4, F 5 V5 }
    AnyOf7 { A 0 V0, B 1 V1, C 2 V2, D 3 V3, E 4 V4, F 5 V5, G 6 V6 }
    AnyOf8 { A 0 V0, B 1 V1, C 2 V2, D 3 V3, E 4 V4, F 5 V5, G 6 V6, H 7 V7 }
}

/// The callback of a variadic [`collect_any_with!`](crate::collect_any_with),
/// erased.
#[doc(hidden)]
pub type ErasedCallback = Box<dyn FnOnce(usize, Try<BoxAny>) + Send + 'static>;

/// A tuple of `(task, callback)` pairs, for
/// [`collect_any_with!`](crate::collect_any_with).
pub trait CallbackTuple: Send + 'static {
    #[doc(hidden)]
    fn erase_with(self) -> (Vec<ErasedChild>, ErasedCallback);
}

macro_rules! callback_tuples {
    ($( { $($T:ident $F:ident $i:tt),+ } )+) => {$(
        impl<$($T, $F),+> CallbackTuple for ($(($T, $F),)+)
        where
            $($T: LazyTask, $F: FnOnce(Try<$T::Output>) + Send + 'static,)+
        {
            fn erase_with(self) -> (Vec<ErasedChild>, ErasedCallback) {
                let children = vec![$(erase(self.$i.0)),+];
                let callbacks = ($(self.$i.1,)+);
                let on_win: ErasedCallback = Box::new(move |index, value| match index {
                    $($i => (callbacks.$i)(unerase::<$T::Output>(value)),)+
                    _ => unreachable!("index out of range"),
                });
                (children, on_win)
            }
        }
    )+};
}

callback_tuples! {
    { A FA 0 }
    { A FA 0, B FB 1 }
    { A FA 0, B FB 1, C FC 2 }
    { A FA 0, B FB 1, C FC 2, D FD 3 }
    { A FA 0, B FB 1, C FC 2, D FD 3, E FE 4 }
    { A FA 0, B FB 1, C FC 2, D FD 3, E FE 4, F FF 5 }
    { A FA 0, B FB 1, C FC 2, D FD 3, E FE 4, F FF 5, G FG 6 }
    { A FA 0, B FB 1, C FC 2, D FD 3, E FE 4, F FF 5, G FG 6, H FH 7 }
}

/// Pairs a task with its callback, giving the callback its argument type;
/// used by [`collect_any_with!`](crate::collect_any_with).
#[doc(hidden)]
pub fn __callback_pair<L, F>(task: L, callback: F) -> (L, F)
where
    L: LazyTask,
    F: FnOnce(Try<L::Output>) + Send + 'static,
{
    (task, callback)
}

/// [`collect_any_with`] over `(task, callback)` pairs of different types; what
/// [`collect_any_with!`](crate::collect_any_with) expands to.
pub fn collect_any_with_tuple<U: CallbackTuple>(pairs: U) -> CollectAnyWith<BoxAny> {
    let (children, on_win) = pairs.erase_with();
    CollectAnyWith(Core::new(children, Mode::Any, false, Some(on_win)))
}

/// [`collect_all`] over a tuple of tasks of different types; what
/// [`collect_all!`](crate::collect_all) expands to.
pub fn collect_all_tuple<U: TaskTuple>(tasks: U) -> CollectAllTuple<U> {
    CollectAllTuple {
        inner: CollectAll(Core::new(tasks.erase(), Mode::All, false, None)),
        _tasks: core::marker::PhantomData,
    }
}

/// [`collect_any`] over a tuple of tasks of different types; what
/// [`collect_any!`](crate::collect_any) expands to.
pub fn collect_any_tuple<U: TaskTuple>(tasks: U) -> CollectAnyTuple<U> {
    CollectAnyTuple {
        inner: CollectAny(Core::new(tasks.erase(), Mode::Any, false, None)),
        _tasks: core::marker::PhantomData,
    }
}

/// The future of [`collect_all!`](crate::collect_all).
///
/// # Cancel safety
///
/// As [`CollectAll`].
#[must_use = "futures do nothing unless awaited"]
pub struct CollectAllTuple<U> {
    inner: CollectAll<BoxAny>,
    _tasks: core::marker::PhantomData<fn() -> U>,
}

impl<U: TaskTuple> Future for CollectAllTuple<U> {
    type Output = U::All;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<U::All> {
        Pin::new(&mut self.get_mut().inner)
            .poll(cx)
            .map(U::rebuild_all)
    }
}

impl<U> fmt::Debug for CollectAllTuple<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectAllTuple")
            .field("inner", &self.inner)
            .finish()
    }
}

/// The future of [`collect_any!`](crate::collect_any).
///
/// # Cancel safety
///
/// As [`CollectAll`].
#[must_use = "futures do nothing unless awaited"]
pub struct CollectAnyTuple<U> {
    inner: CollectAny<BoxAny>,
    _tasks: core::marker::PhantomData<fn() -> U>,
}

impl<U: TaskTuple> Future for CollectAnyTuple<U> {
    type Output = U::Any;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<U::Any> {
        Pin::new(&mut self.get_mut().inner)
            .poll(cx)
            .map(|r| U::rebuild_any(r.index, r.value))
    }
}

impl<U> fmt::Debug for CollectAnyTuple<U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectAnyTuple")
            .field("inner", &self.inner)
            .finish()
    }
}

/// Waits for every task of a fixed list of tasks of different types; resolves
/// to a tuple of their [`Try`](crate::task::Try)s, in order (up to 8 tasks).
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sync_await, Lazy};
///
/// let (i, d, s) = sync_await(Lazy::new(async {
///     lazyflight::collect_all!(
///         Lazy::new(async { 1 }),
///         Lazy::new(async { 2.5 }),
///         Lazy::new(async { String::from("three") }),
///     )
///     .await
/// }));
/// assert_eq!((i.value(), d.value(), s.value()), (1, 2.5, "three".to_string()));
/// ```
#[macro_export]
macro_rules! collect_all {
    ($($task:expr),+ $(,)?) => {
        $crate::task::collect_all_tuple(($($task,)+))
    };
}

/// The first of a fixed list of tasks of different types to finish; resolves
/// to an `AnyOfN` enum whose variant is the winner's position (up to 8 tasks).
///
/// # Examples
///
/// ```
/// use lazyflight::task::{sync_await, AnyOf3, Lazy};
///
/// let winner = sync_await(Lazy::new(async {
///     lazyflight::collect_any!(
///         Lazy::new(async { 1 }),
///         Lazy::new(async { 2.5 }),
///         Lazy::new(async { "three" }),
///     )
///     .await
/// }));
/// assert_eq!(winner.index(), 0);
/// assert!(matches!(winner, AnyOf3::V0(t) if t.as_value() == Some(&1)));
/// ```
#[macro_export]
macro_rules! collect_any {
    ($($task:expr),+ $(,)?) => {
        $crate::task::collect_any_tuple(($($task,)+))
    };
}

/// The first of a fixed list of `(task, callback)` pairs to finish: only the
/// winner's callback runs, exactly once, with the winner's
/// [`Try`](crate::task::Try); resolves to the winner's position (up to 8
/// pairs). The callback runs where the winner completes (see
/// [`collect_any_with`](crate::task::collect_any_with)).
///
/// # Examples
///
/// ```
/// use lazyflight::sync::atomic::{AtomicUsize, Ordering};
/// use lazyflight::sync::Arc;
/// use lazyflight::task::{sync_await, Lazy};
///
/// let calls = Arc::new(AtomicUsize::new(0));
/// let (c0, c1, c2) = (calls.clone(), calls.clone(), calls.clone());
/// let index = sync_await(Lazy::new(async move {
///     lazyflight::collect_any_with!(
///         (Lazy::new(async {}), move |_| { c0.fetch_add(1, Ordering::SeqCst); }),
///         (Lazy::new(async { 42 }), move |v| {
///             c1.fetch_add(1, Ordering::SeqCst);
///             assert_eq!(v.value(), 42);
///         }),
///         (Lazy::new(async { 42.to_string() }), move |v| {
///             c2.fetch_add(1, Ordering::SeqCst);
///             assert_eq!(v.value(), "42");
///         }),
///     )
///     .await
/// }));
/// assert_eq!(index, 0);
/// assert_eq!(calls.load(Ordering::SeqCst), 1);
/// ```
#[macro_export]
macro_rules! collect_any_with {
    ($(($task:expr, $callback:expr)),+ $(,)?) => {
        $crate::task::collect_any_with_tuple((
            $($crate::task::__callback_pair($task, $callback),)+
        ))
    };
}
