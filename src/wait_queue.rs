//! The waiter queue shared by every primitive in the crate.
//!
//! A FIFO of parked tasks behind one shim [`Mutex`]. Nodes live in a
//! [`slab::Slab`] and are linked by index, so a waiter is inserted at the tail
//! and removed from anywhere in O(1), and the slab's storage is reused without
//! a per-wait allocation once it has grown.
//!
//! # Protocol
//!
//! A waiting future keeps a [`WaitKey`]. It:
//!
//! 1. [`register`](WaitQueue::register)s, passing a predicate that is
//!    re-checked *under the queue lock*. The primitive changes the condition
//!    the predicate reads either under the same lock, or before it calls one of
//!    the `notify_*` methods (which take the lock). Either way a waiter that
//!    registered after the change sees it, and a waiter that registered before
//!    it is in the list when the notification walks it: no lost wake-ups.
//! 2. [`poll`](WaitQueue::poll)s until it is notified, which also removes its
//!    node.
//! 3. On drop, [`cancel`](WaitQueue::cancel)s. If it had been chosen by
//!    [`notify_one`](WaitQueue::notify_one) and never saw it, the notification
//!    is passed to the next waiter in line (or, if there is none, handed back
//!    to the primitive through a callback that runs under the lock).
//!
//! Notifications come in two kinds, see [`Notify`].
//!
//! # Waker hygiene
//!
//! Wakers are cloned before the lock is taken, replaced only when
//! `will_wake` says the task changed, and both the replaced wakers and the
//! ones being woken are dropped or called after the lock is released, so a
//! waker that re-enters the queue cannot deadlock and user code never runs
//! under our lock.

use core::fmt;
use core::task::{Context, Poll, Waker};

use slab::Slab;

use crate::sync::Mutex;
use crate::unwind::each;

const NIL: usize = usize::MAX;

/// What a waiter was told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(unreachable_pub)] // `pub` only for the loom/shuttle models (`__wait_queue`).
pub enum Notify {
    /// From [`WaitQueue::notify_all`]: re-check the condition. Never passed on,
    /// since everyone queued at the time got one.
    All,
    /// From [`WaitQueue::notify_one`]: the waiter was singled out (for
    /// `ALazy`, it now owns the right to initialize). If the waiter goes away
    /// without taking it, it is passed on to the next waiter in line.
    One,
}

enum Slot {
    Waiting(Option<Waker>),
    Notified(Notify),
}

struct Node {
    prev: usize,
    next: usize,
    slot: Slot,
    /// `false` for waiters registered with
    /// [`WaitQueue::register_broadcast_only`]: never singled out.
    takes_one: bool,
}

/// Wake-ups collected under the lock, to be delivered after it is released.
enum Woken {
    Nobody,
    One(Option<Waker>),
    Many(Vec<Waker>),
}

impl Woken {
    fn wake(self) {
        match self {
            Woken::Nobody | Woken::One(None) => {}
            // Through `each` too: a waker that panics while the thread is
            // unwinding already (a hand-off from a guard's `Drop`) would
            // abort the process; `each` catches it there, and costs nothing
            // otherwise.
            Woken::One(Some(w)) => each(Some(w), Waker::wake),
            Woken::Many(wakers) => {
                // If a waker panics, the rest are still woken: their nodes
                // are already marked notified, so nothing else would wake
                // them. The first panic unwinds on after the last wake (a
                // second one, or any while the thread is unwinding already,
                // is dropped: it would abort the process).
                each(wakers, Waker::wake);
            }
        }
    }
}

/// Freed node slots a queue keeps when it empties (see `List::shed_if_empty`).
const KEEP_NODES: usize = 64;

struct List {
    nodes: Slab<Node>,
    head: usize,
    tail: usize,
    /// Linked (waiting, not yet notified) nodes.
    linked: usize,
}

impl List {
    const EMPTY: List = List {
        nodes: Slab::new(),
        head: NIL,
        tail: NIL,
        linked: 0,
    };

    /// A slab whose nodes are all freed and that has grown past
    /// [`KEEP_NODES`] is swapped for an empty one, returned for the caller to
    /// drop after unlocking: a stampede's nodes are not kept for the life of
    /// a long-lived queue (a `static` cell's). The next burst grows it again:
    /// one allocation per burst, not per waiter.
    fn shed_if_empty(&mut self) -> Option<Slab<Node>> {
        (self.nodes.is_empty() && self.nodes.capacity() > KEEP_NODES)
            .then(|| core::mem::replace(&mut self.nodes, Slab::new()))
    }

    fn push_back(&mut self, waker: Waker, takes_one: bool) -> usize {
        let key = self.nodes.insert(Node {
            prev: self.tail,
            next: NIL,
            slot: Slot::Waiting(Some(waker)),
            takes_one,
        });
        match self.tail {
            NIL => self.head = key,
            tail => self.nodes[tail].next = key,
        }
        self.tail = key;
        self.linked += 1;
        key
    }

    /// Unlinks `key` from the FIFO; the node stays in the slab.
    fn unlink(&mut self, key: usize) {
        let (prev, next) = {
            let node = &self.nodes[key];
            (node.prev, node.next)
        };
        match prev {
            NIL => self.head = next,
            p => self.nodes[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            // Negative control `queue_unlink_forward_only`: only the forward
            // link is mended; the next node keeps pointing back at this one.
            _ if broken!("queue_unlink_forward_only") => {}
            n => self.nodes[n].prev = prev,
        }
        let node = &mut self.nodes[key];
        node.prev = NIL;
        node.next = NIL;
        self.linked -= 1;
    }

    /// Marks `key` as notified with `n`, unlinks it and returns its waker.
    fn notify(&mut self, key: usize, n: Notify) -> Option<Waker> {
        self.unlink(key);
        let node = &mut self.nodes[key];
        match core::mem::replace(&mut node.slot, Slot::Notified(n)) {
            Slot::Waiting(waker) => waker,
            Slot::Notified(_) => unreachable!("a notified node is never linked"),
        }
    }

    /// Notifies every linked waiter with [`Notify::All`].
    fn notify_every(&mut self) -> Woken {
        if self.head == NIL {
            return Woken::Nobody;
        }
        let mut wakers = Vec::with_capacity(self.linked);
        while self.head != NIL {
            wakers.extend(self.notify(self.head, Notify::All));
        }
        Woken::Many(wakers)
    }

    /// Gives [`Notify::One`] to the longest waiter that may take it, skipping
    /// broadcast-only waiters. If none may, runs `on_vacant` and notifies the
    /// broadcast-only waiters (if any) with [`Notify::All`]: what they wait
    /// for has just changed.
    fn single_out(&mut self, on_vacant: impl FnOnce()) -> Woken {
        let mut at = self.head;
        while at != NIL && !self.nodes[at].takes_one {
            at = self.nodes[at].next;
        }
        // Negative control `queue_lifo`: the newest waiter is served first.
        if broken!("queue_lifo") {
            at = self.tail;
            while at != NIL && !self.nodes[at].takes_one {
                at = self.nodes[at].prev;
            }
        }
        if at != NIL {
            return Woken::One(self.notify(at, Notify::One));
        }
        on_vacant();
        self.notify_every()
    }
}

/// A waiter's place in a [`WaitQueue`]: `None` until registered.
///
/// The future that owns it must call [`WaitQueue::cancel`] when dropped.
#[derive(Debug, Default)]
#[allow(unreachable_pub)] // `pub` only for the loom/shuttle models (`__wait_queue`).
pub struct WaitKey(Option<usize>);

#[allow(unreachable_pub)]
impl WaitKey {
    /// A key that is not registered yet.
    pub const fn new() -> Self {
        Self(None)
    }

    /// Whether the key holds a place in a queue (registered, not yet
    /// consumed by `poll` or `cancel`).
    pub fn is_registered(&self) -> bool {
        self.0.is_some()
    }
}

/// FIFO of waiting tasks; see the module docs.
#[allow(unreachable_pub)] // `pub` only for the loom/shuttle models (`__wait_queue`).
pub struct WaitQueue {
    list: Mutex<List>,
}

// `pub` only for the loom/shuttle models, where these lints do not apply.
#[allow(
    unreachable_pub,
    clippy::new_without_default,
    clippy::len_without_is_empty
)]
impl WaitQueue {
    /// Creates an empty queue.
    #[cfg(not(any(loom, shuttle)))]
    pub const fn new() -> Self {
        Self {
            list: Mutex::new(List::EMPTY),
        }
    }

    /// Creates an empty queue.
    #[cfg(any(loom, shuttle))]
    pub fn new() -> Self {
        Self {
            list: Mutex::new(List::EMPTY),
        }
    }

    /// Appends the current task, unless `still_waiting()` (evaluated under the
    /// lock) says the condition it waits for has already changed.
    ///
    /// Returns whether the task was registered.
    pub fn register(
        &self,
        key: &mut WaitKey,
        waker: &Waker,
        still_waiting: impl FnOnce() -> bool,
    ) -> bool {
        self.push(key, waker, still_waiting, true)
    }

    /// Like [`register`](Self::register), but the waiter only ever receives
    /// [`Notify::All`]: [`notify_one`](Self::notify_one) skips it. For waiters
    /// that may be parked while queued and so must never be handed something
    /// others depend on them taking.
    pub fn register_broadcast_only(
        &self,
        key: &mut WaitKey,
        waker: &Waker,
        still_waiting: impl FnOnce() -> bool,
    ) -> bool {
        self.push(key, waker, still_waiting, false)
    }

    fn push(
        &self,
        key: &mut WaitKey,
        waker: &Waker,
        still_waiting: impl FnOnce() -> bool,
        takes_one: bool,
    ) -> bool {
        debug_assert!(key.0.is_none(), "waiter registered twice");
        // Clone before locking: a waker's clone may run arbitrary code.
        let waker = waker.clone();
        let mut list = self.list.lock();
        if !still_waiting() {
            drop(list);
            drop(waker);
            return false;
        }
        key.0 = Some(list.push_back(waker, takes_one));
        true
    }

    /// Polls a registered waiter: `Ready` once it has been notified (its node
    /// is then freed and `key` reset), otherwise refreshes the stored waker.
    pub fn poll(&self, key: &mut WaitKey, cx: &mut Context<'_>) -> Poll<Notify> {
        let k = key.0.expect("polled a waiter that is not registered");
        let mut list = self.list.lock();
        match &list.nodes[k].slot {
            Slot::Notified(n) => {
                let n = *n;
                list.nodes.remove(k);
                key.0 = None;
                let spare = list.shed_if_empty();
                drop(list);
                drop(spare);
                Poll::Ready(n)
            }
            Slot::Waiting(Some(w)) if w.will_wake(cx.waker()) => Poll::Pending,
            Slot::Waiting(_) => {
                // The task changed: clone outside the lock, then swap.
                drop(list);
                let fresh = cx.waker().clone();
                let mut list = self.list.lock();
                let old = match &mut list.nodes[k].slot {
                    Slot::Waiting(w) => w.replace(fresh),
                    Slot::Notified(n) => {
                        let n = *n;
                        list.nodes.remove(k);
                        key.0 = None;
                        let spare = list.shed_if_empty();
                        drop(list);
                        drop((fresh, spare));
                        return Poll::Ready(n);
                    }
                };
                drop(list);
                drop(old);
                Poll::Pending
            }
        }
    }

    /// Removes a waiter that is going away. If it had been singled out by
    /// [`notify_one`](Self::notify_one) without seeing it, the notification
    /// goes to the next waiter in line that may take it, or, if there is
    /// none, `on_unclaimed` runs under the lock (and any broadcast-only
    /// waiters are notified, as in `notify_one`).
    pub fn cancel(&self, key: &mut WaitKey, on_unclaimed: impl FnOnce()) {
        let Some(k) = key.0.take() else { return };
        let mut list = self.list.lock();
        let (old, pass) = match list.nodes[k].slot {
            Slot::Waiting(_) => {
                list.unlink(k);
                // Negative control `queue_cancel_leaks_node`: the node is
                // unlinked but never freed, so its slot keeps the waker.
                let old = if broken!("queue_cancel_leaks_node") {
                    Node {
                        prev: NIL,
                        next: NIL,
                        slot: Slot::Waiting(None),
                        takes_one: false,
                    }
                } else {
                    list.nodes.remove(k)
                };
                (old, Woken::Nobody)
            }
            Slot::Notified(Notify::All) => (list.nodes.remove(k), Woken::Nobody),
            Slot::Notified(Notify::One) => {
                let old = list.nodes.remove(k);
                let pass = if broken!("drop_baton") {
                    Woken::Nobody
                } else {
                    list.single_out(on_unclaimed)
                };
                (old, pass)
            }
        };
        let spare = list.shed_if_empty();
        drop(list);
        // Freed nodes only (no wakers): nothing of the user's runs.
        drop(spare);
        // The node's waker, if it still has one: an executor's code, and a
        // waiter is dropped during unwinds too.
        crate::unwind::dropped(old);
        pass.wake();
    }

    /// Singles out the longest-waiting task that may take it (see
    /// [`register_broadcast_only`](Self::register_broadcast_only)) with
    /// [`Notify::One`]. If there is none, runs `if_none` under the lock
    /// instead (so the primitive can change state atomically with respect to
    /// [`register`](Self::register)) and notifies any broadcast-only waiters
    /// with [`Notify::All`].
    ///
    /// Returns whether a waiter was singled out.
    pub fn notify_one(&self, if_none: impl FnOnce()) -> bool {
        let mut list = self.list.lock();
        let woken = list.single_out(if_none);
        drop(list);
        let singled_out = matches!(woken, Woken::One(_));
        woken.wake();
        singled_out
    }

    /// Notifies every queued task with [`Notify::All`].
    pub fn notify_all(&self) {
        self.notify_every().wake();
    }

    /// Like [`notify_all`](Self::notify_all), but the wake-ups are added to
    /// `wakers` for the caller to deliver (with [`each`], so that one
    /// panicking waker costs no other its wake-up): a caller that notifies
    /// two queues at once delivers both sets after taking neither lock
    /// again, even if a waker panics.
    pub fn notify_all_into(&self, wakers: &mut Vec<Waker>) {
        if let Woken::Many(w) = self.notify_every() {
            if wakers.is_empty() {
                *wakers = w;
            } else {
                wakers.extend(w);
            }
        }
    }

    /// Notifies every queued task with [`Notify::All`]; the wake-ups are
    /// returned, to be delivered after the lock is released.
    fn notify_every(&self) -> Woken {
        let mut list = self.list.lock();
        let woken = list.notify_every();
        drop(list);
        // The `no_wake` negative control drops the broadcast's wake-ups.
        if broken!("no_wake") {
            drop(woken);
            return Woken::Nobody;
        }
        woken
    }

    /// Forgets every node, and the wakers they hold. With `&mut self` no
    /// waiter can be live: any node left belongs to a waiting future that
    /// was leaked (`mem::forget`), and would otherwise be singled out later
    /// and swallow a notification meant for a live one.
    pub fn clear(&mut self) {
        let old = core::mem::replace(&mut *self.list.lock(), List::EMPTY);
        drop(old);
    }

    /// Number of tasks currently queued (not yet notified).
    pub fn len(&self) -> usize {
        self.list.lock().linked
    }
}

impl fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitQueue")
            .field("waiting", &self.len())
            .finish()
    }
}
