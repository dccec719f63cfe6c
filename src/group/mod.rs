//! [`Group`]: single-flight coalescing of concurrent calls per key.
//!
//! # State machine of one flight
//!
//! ```text
//!   entry(k) finds no slot for k: a slot {key, id, joins: 0, flight: None}
//!   is inserted under k, and the caller leads (a `Ticket`: hash and id)
//!        │
//!        ▼
//!   RUNNING, UNSHARED (a slot without shared state)
//!        │  │
//!        │  └── forget(k): the slot is removed; nothing is kept (nobody to tell)
//!        │
//!        │  entry(k): the first subscriber allocates the `Flight` (state,
//!        │  outcome cell, waiter queue) and stores it in the slot, under the
//!        │  shard lock; joins = 1
//!        ▼
//!   RUNNING, SHARED (the slot holds the Flight's Arc) ── entry(k) ──► + one
//!        │  │                                       subscriber (joins += 1)
//!        │  └── forget(k): the slot is removed; its Flight moves to the
//!        │      shard's `forgotten` table under the flight's id; nobody
//!        │      new joins it
//!        │
//!        │  Leader::complete(r)            or  drop(Leader) (cancel, panic)
//!        ▼
//!   1. under the shard lock, by identity (the id): the slot is removed (or
//!      the forgotten entry, or nothing if the flight was forgotten
//!      unshared); its Flight, if any, is taken. `shared` = there was one.
//!   2. the outcome `Arc` is built (a canceled flight nobody joined skips it)
//!   3. if shared: the outcome is written into the Flight, DONE is stored
//!      (Release), and every registered subscriber is woken once
//!        │
//!        ▼
//!   DONE: subscribers read the outcome; the Flight is freed with its last Arc
//! ```
//!
//! A flight nobody joins therefore costs one table insert and one table
//! removal (two rounds of one shard lock) and the outcome's `Arc`: no shared
//! state, no waiter queue, no reference counts.
//!
//! # Access rules
//!
//! * The shard lock guards its table: the slots (key, id, `joins`, the
//!   Flight's `Arc`), the forgotten flights, the id counter and the
//!   `in_flight` count. A subscriber joins (allocates or clones the Flight,
//!   bumps `joins`) only while the slot is in the table, and the leader takes
//!   the slot (and with it the Flight) out under the same lock. After that
//!   nobody can join, so `shared` is exact, and a Flight that exists is
//!   always published.
//! * `Flight::outcome` is written once, by the leader, before the `Release`
//!   store of DONE, and read only after an `Acquire` load has seen DONE.
//! * The leader never holds a lock while the work runs: the shard lock is
//!   taken twice per flight (insert, remove), each time for one table
//!   operation. User code run under it: `K`'s `Eq`, and in `forget` and
//!   `subscribers` `K`'s `Borrow<Q>` and `Q`'s `Eq` (a key is hashed before
//!   the lock, the table rehashes by the stored hash, and keys and `Arc`s
//!   are dropped after unlocking).
//!
//! # Invariants
//!
//! * A slot's Flight is not DONE (the slot is removed before it is
//!   published), so a caller that joins will be woken: it registers in the
//!   Flight's wait queue with a predicate re-checked under the queue lock,
//!   and the leader stores DONE before it takes that lock to wake everyone.
//! * Removal is by identity (the id, found through the hash the leader kept):
//!   a forgotten flight finishing never removes the flight that replaced it,
//!   and no key is compared or re-hashed.
//! * Every shared flight is published exactly once: `complete` consumes the
//!   leader, and the leader's `Drop` publishes `Canceled` otherwise.
//! * Live subscribers of a flight = the Flight's strong count minus the one
//!   reference its slot (or forgotten entry) holds, read under the shard
//!   lock: every other `Arc<Flight>` belongs to a `Subscriber`.
//! * A Flight's queue is notified once (`notify_all`) and never registered
//!   in again (registration re-checks DONE under the queue lock). So a
//!   subscriber that sees DONE returns at once, without the queue lock: a
//!   node it left in the queue is, or is about to be, notified, and the
//!   queue's storage is freed with the Flight.
//!
//! # Orderings
//!
//! | operation                              | ordering  | pairs with                                               |
//! |----------------------------------------|-----------|----------------------------------------------------------|
//! | store DONE in `announce`               | `Release` | the `Acquire` loads of `state` in `Flight::outcome`, `Recv::poll` |
//! | loads of `state`                       | `Acquire` | the store above: the outcome written before it is visible |
//! | everything else                        | —         | plain fields under the shard lock                         |

mod shards;

pub(crate) use shards::{free_if_empty, shrink_empty, shrink_if_sparse, too_roomy, ShardsOf};

use core::convert::Infallible;
use core::fmt;
use core::future::Future;
use core::hash::Hash;
use core::pin::Pin;
use core::task::{Context, Poll};

use hashbrown::HashTable;

use crate::sync::atomic::{AtomicU8, Ordering::*};
use crate::sync::{Arc, UnsafeCell};
use crate::unwind::Quiet;
use crate::wait_queue::{WaitKey, WaitQueue};

/// Encoding of `Flight::state`.
const RUNNING: u8 = 0;
const DONE: u8 = 1;

/// The result of one flight, shared by its leader and all its subscribers.
///
/// Every caller of one flight receives the same `Arc` ([`Arc::ptr_eq`]).
///
/// # Examples
///
/// ```
/// use lazyflight::Outcome;
///
/// let done: Outcome<u32, ()> = Outcome::Complete { result: Ok(1), shared: false };
/// assert_eq!(done.result(), Some(&Ok(1)));
/// assert!(!done.is_shared());
/// assert!(Outcome::<u32, ()>::Canceled.is_canceled());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome<T, E> {
    /// The leader completed the flight.
    Complete {
        /// What the leader's work returned.
        result: Result<T, E>,
        /// Whether at least one subscriber joined the flight. The leader sees
        /// the same value as its subscribers.
        shared: bool,
    },
    /// The leader was dropped without completing (its task was cancelled or
    /// panicked). The flight is over; the next caller for the key leads a
    /// new one.
    Canceled,
}

impl<T, E> Outcome<T, E> {
    /// Whether the flight completed and at least one subscriber joined it.
    #[must_use]
    pub fn is_shared(&self) -> bool {
        matches!(self, Outcome::Complete { shared: true, .. })
    }

    /// Whether the leader was dropped without completing.
    #[must_use]
    pub fn is_canceled(&self) -> bool {
        matches!(self, Outcome::Canceled)
    }

    /// The leader's result, unless the flight was canceled.
    #[must_use]
    pub fn result(&self) -> Option<&Result<T, E>> {
        match self {
            Outcome::Complete { result, .. } => Some(result),
            Outcome::Canceled => None,
        }
    }

    /// The leader's result by value, unless the flight was canceled.
    #[must_use]
    pub fn into_result(self) -> Option<Result<T, E>> {
        match self {
            Outcome::Complete { result, .. } => Some(result),
            Outcome::Canceled => None,
        }
    }
}

/// The shared state of a flight someone joined: allocated by its first
/// subscriber (see the module docs).
struct Flight<T, E> {
    /// `RUNNING` or `DONE`.
    state: AtomicU8,
    /// Written once before DONE is published; see the access rules.
    outcome: UnsafeCell<Option<Arc<Outcome<T, E>>>>,
    /// Subscribers waiting for DONE.
    waiters: WaitQueue,
}

// SAFETY: `outcome` is written once by the leader before the Release store of
// DONE and only read (cloned) after an Acquire load sees DONE; the `Arc` it
// holds is shared between threads, which needs `Outcome<T, E>: Send + Sync`,
// hence the bounds. Every other field is `Sync`.
unsafe impl<T: Send + Sync, E: Send + Sync> Sync for Flight<T, E> {}

impl<T, E> Flight<T, E> {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(RUNNING),
            outcome: UnsafeCell::new(None),
            waiters: WaitQueue::new(),
        }
    }

    /// The published outcome, if any.
    fn outcome(&self) -> Option<Arc<Outcome<T, E>>> {
        // Acquire: pairs with the Release store in `announce`.
        if self.state.load(Acquire) == DONE {
            // SAFETY: DONE was seen with Acquire, so the write of `outcome`
            // happened before, and it is never written again.
            Some(
                self.outcome
                    .with(|p| unsafe { (*p).clone() })
                    .expect("DONE implies an outcome"),
            )
        } else {
            None
        }
    }
}

/// A flight in its shard's table, under its key.
struct Slot<K, T, E> {
    key: K,
    /// The key's hash, computed once by the caller that inserted the slot:
    /// the table rehashes with it, so no user code (`K`'s `Hash`) runs under
    /// the shard lock when the table grows. (A `Hash` that panics there
    /// could make hashbrown lose slots, stranding their subscribers.)
    hash: u64,
    /// The flight's identity within its shard.
    id: u64,
    /// Subscribers that have joined, including those gone since.
    joins: usize,
    /// `None` until the first subscriber joins.
    flight: Option<Arc<Flight<T, E>>>,
}

/// A forgotten flight that someone joined, kept (without its key) until its
/// leader publishes, which finds it by id.
struct Forgotten<T, E> {
    id: u64,
    joins: usize,
    flight: Arc<Flight<T, E>>,
}

/// One shard: what its lock guards.
struct Table<K, T, E> {
    /// The flights a caller would join, at most one per key.
    slots: HashTable<Slot<K, T, E>>,
    /// Forgotten flights with subscribers, hashed by id.
    forgotten: HashTable<Forgotten<T, E>>,
    /// The id of the next flight led in this shard.
    next_id: u64,
    /// Leaders in this shard neither completed nor dropped.
    in_flight: usize,
}

impl<K, T, E> Default for Table<K, T, E> {
    fn default() -> Self {
        Self {
            slots: HashTable::new(),
            forgotten: HashTable::new(),
            next_id: 0,
            in_flight: 0,
        }
    }
}

/// What a leader holds on to: where its flight is, and which one it is.
#[derive(Clone, Copy, Debug)]
struct Ticket {
    hash: u64,
    id: u64,
}

/// What [`Inner::lead_or_join`] makes of a caller.
enum Role<T, E> {
    Lead(Ticket),
    Join(Subscriber<T, E>),
}

/// Coalesces concurrent calls per key: one caller (the *leader*) does the
/// work, the others (*subscribers*) receive its [`Outcome`].
///
/// * [`run`](Self::run) is the one-call form: lead or join, and resolve to the
///   flight's `Arc<Outcome>`.
/// * [`entry`](Self::entry) splits the two roles, so the leader can be moved
///   into a spawned task and completed from there: both [`Leader`] and
///   [`Subscriber`] are `Send + 'static`.
/// * Results are shared as `Arc`s: `T` and `E` need not be `Clone`.
/// * Nothing is cached: once a flight is over, the next caller starts a new
///   one. Use [`Cache`](crate::Cache) to keep results.
/// * A flight's leader never holds a lock while the work runs, so a slow key
///   never delays another key. Finished, canceled and forgotten flights leave
///   nothing behind; removal is by identity, in O(1).
/// * A flight nobody joins allocates nothing but its outcome's `Arc`: the
///   state subscribers wait on is allocated by the first of them.
///
/// `Group` is a handle to shared state: it is not `Clone`, put it in an `Arc`
/// to share it (leaders and subscribers keep what they need alive on their
/// own).
///
/// # User code under a shard lock
///
/// `K`'s `Eq` (and, for [`forget`](Self::forget) and
/// [`subscribers`](Self::subscribers), `Borrow` and the borrowed type's
/// `Eq`) runs while the key's shard lock is held; `K`'s `Hash` and `Drop`
/// run outside it. An `Eq` that calls into the same group, or takes a lock
/// that a caller of the group may hold, can deadlock: keep it a plain
/// comparison. A panic in it propagates to the caller and leaves the group
/// as it was.
///
/// # Memory
///
/// A shard's table gives its memory back once its flights are mostly gone
/// (when under a quarter of its capacity is in use, it shrinks to twice its
/// length), so a burst of keys does not keep the memory of its peak.
///
/// # Examples
///
/// ```
/// # lazyflight::sync::future::block_on(async {
/// use lazyflight::{Group, Outcome};
///
/// let group = Group::<&str, u32, String>::new();
/// let outcome = group.run("answer", || async { Ok(42) }).await;
/// assert_eq!(*outcome, Outcome::Complete { result: Ok(42), shared: false });
/// assert_eq!(group.in_flight(), 0);
/// # });
/// ```
pub struct Group<K, T, E> {
    inner: Arc<Inner<K, T, E>>,
}

struct Inner<K, T, E> {
    map: ShardsOf<Table<K, T, E>>,
}

impl<K, T, E> Group<K, T, E> {
    /// Creates an empty group.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                map: ShardsOf::new(),
            }),
        }
    }

    /// Number of flights in progress: leaders that have neither completed nor
    /// been dropped, forgotten flights included.
    ///
    /// Locks each shard in turn: a snapshot for diagnostics and tests, not
    /// atomic across keys.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.inner.map.iter().map(|s| s.lock().in_flight).sum()
    }

    /// Number of keys that currently have a flight a new caller would join
    /// (forgotten flights are not counted).
    ///
    /// Locks each shard in turn, so it is not atomic across keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.map.iter().map(|s| s.lock().slots.len()).sum()
    }

    /// Whether no key currently has a flight (see [`len`](Self::len)).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.map.iter().all(|s| s.lock().slots.is_empty())
    }
}

impl<K: Hash + Eq, T, E> Group<K, T, E> {
    /// Leads a new flight for `key`, or joins the one in progress.
    ///
    /// * [`Entry::Leader`]: no flight was in progress; this caller must do the
    ///   work and [`complete`](Leader::complete) it (dropping the leader
    ///   publishes [`Outcome::Canceled`]).
    /// * [`Entry::Subscriber`]: a flight is in progress; [`Subscriber::recv`]
    ///   waits for its outcome. The flight is now
    ///   [shared](Outcome::is_shared).
    ///
    /// Never waits: it takes one shard lock for one table operation.
    ///
    /// # Examples
    ///
    /// ```
    /// # lazyflight::sync::future::block_on(async {
    /// use lazyflight::{Entry, Group};
    ///
    /// let group = Group::<u8, &str, ()>::new();
    /// let Entry::Leader(leader) = group.entry(1) else { unreachable!() };
    /// let Entry::Subscriber(sub) = group.entry(1) else { unreachable!() };
    /// assert_eq!(leader.subscribers(), 1);
    ///
    /// let mine = leader.complete(Ok("done"));
    /// let theirs = sub.recv().await.unwrap();
    /// assert!(lazyflight::sync::Arc::ptr_eq(&mine, &theirs));
    /// assert!(theirs.is_shared());
    /// # });
    /// ```
    pub fn entry(&self, key: K) -> Entry<K, T, E> {
        match self.inner.lead_or_join(key) {
            Role::Lead(ticket) => Entry::Leader(Leader {
                group: self.inner.clone(),
                ticket: Some(ticket),
            }),
            Role::Join(sub) => Entry::Subscriber(sub),
        }
    }

    /// Runs `f` as the leader of a new flight for `key`, or waits for the
    /// flight in progress, and resolves to the flight's outcome.
    ///
    /// All callers of one flight get the same `Arc`. `f` is called only by
    /// the leader, and its result is published as soon as it is ready: a
    /// caller joins if it arrives while the work runs. The flight is in the
    /// map from the first poll of the returned future (where this call leads
    /// or joins; nothing happens before it) to the publication, so a caller
    /// on another thread, or `f` itself through [`entry`](Self::entry), can
    /// join even work that finishes at its first poll; a caller that only comes after the
    /// outcome is published leads a new flight. Like every single-flight,
    /// `Group` coalesces calls that overlap in time.
    ///
    /// # Cancel safety
    ///
    /// Dropping a subscribing call only removes it (O(1)). Dropping the
    /// leading call drops `f`'s future and ends the flight with
    /// [`Outcome::Canceled`] for its subscribers; the next call for the key
    /// starts a new flight.
    ///
    /// # Panics
    ///
    /// A panic in `f` propagates to the leader's caller; its subscribers get
    /// [`Outcome::Canceled`].
    ///
    /// The leader's caller also panics, after its subscribers have all been
    /// told the outcome, when a subscriber's waker panics as it is woken, or
    /// when the key's `Drop` panics; the same holds when the leading call is
    /// dropped, and the panic then comes out of the drop. Any caller panics
    /// with its key's `Hash` or `Eq`, and a joining caller with its own
    /// key's `Drop`. The group stays consistent in every case (see
    /// [`Leader::complete`]).
    ///
    /// # Deadlocks
    ///
    /// Work that calls `run` for its own key, directly or through another
    /// task, joins its own flight and waits for itself for ever (so does any
    /// single-flight). lazyflight does not detect it.
    ///
    /// # Examples
    ///
    /// ```
    /// # lazyflight::sync::future::block_on(async {
    /// use lazyflight::Group;
    ///
    /// let group = Group::<u32, String, std::io::Error>::new();
    /// let outcome = group.run(7, || async { Ok("seven".to_owned()) }).await;
    /// // `None` only when the leader was cancelled (`Outcome::Canceled`): a
    /// // caller that still wants the value calls `run` again. Here this call
    /// // led, and was not cancelled.
    /// let result = outcome.result().expect("this call led the flight");
    /// assert_eq!(result.as_ref().unwrap(), "seven");
    /// # });
    /// ```
    pub async fn run<F, Fut>(&self, key: K, f: F) -> Arc<Outcome<T, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.inner.lead_or_join(key) {
            Role::Lead(ticket) => {
                // A panic or cancellation below drops `lead`: Canceled. The
                // leader borrows the group: no reference count to touch.
                let lead = RunLead {
                    group: &self.inner,
                    ticket: Some(ticket),
                };
                let result = f().await;
                lead.complete(result)
            }
            Role::Join(sub) => match sub.recv().await {
                Ok(outcome) => outcome,
                Err(never) => match never {},
            },
        }
    }

    /// Detaches the flight in progress for `key`, if any, and returns whether
    /// there was one.
    ///
    /// Its leader and current subscribers are not disturbed: they still get
    /// its outcome. The next call for `key` starts a new flight, and the old
    /// flight finishing does not remove the new one.
    ///
    /// # Examples
    ///
    /// ```
    /// use lazyflight::{Entry, Group};
    ///
    /// let group = Group::<u8, (), ()>::new();
    /// let Entry::Leader(old) = group.entry(1) else { unreachable!() };
    /// assert!(group.forget(&1));
    /// let Entry::Leader(new) = group.entry(1) else { unreachable!() };
    /// drop(old); // does not touch the new flight
    /// assert!(matches!(group.entry(1), Entry::Subscriber(_)));
    /// # drop(new);
    /// ```
    pub fn forget<Q>(&self, key: &Q) -> bool
    where
        K: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = &self.inner.map;
        let hash = map.hash(key);
        let mut guard = map.shard(hash).lock();
        let table = &mut *guard;
        let Ok(found) = table.slots.find_entry(hash, |s| s.key.borrow() == key) else {
            return false;
        };
        let Slot {
            key,
            id,
            joins,
            flight,
            ..
        } = found.remove().0;
        shrink_if_sparse(&mut table.slots, |s| s.hash);
        if let Some(flight) = flight {
            // Its subscribers still wait: keep the flight where its leader
            // finds it by identity. (Unshared, there is nobody to tell.)
            table
                .forgotten
                .insert_unique(map.hash(&id), Forgotten { id, joins, flight }, |f| {
                    map.hash(&f.id)
                });
        }
        drop(guard);
        // The key is dropped outside the lock.
        drop(key);
        true
    }

    /// Number of live subscribers of the flight `key` currently maps to (0
    /// if there is none). A snapshot, for diagnostics and tests.
    #[must_use]
    pub fn subscribers<Q>(&self, key: &Q) -> usize
    where
        K: core::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = &self.inner.map;
        let hash = map.hash(key);
        let table = map.shard(hash).lock();
        table
            .slots
            .find(hash, |s| s.key.borrow() == key)
            .and_then(|s| s.flight.as_ref())
            .map_or(0, live_subscribers)
    }
}

/// Live subscribers of `flight`, whose slot (or forgotten entry) holds one
/// reference; every other one is a subscriber's. Read under the shard lock.
fn live_subscribers<T, E>(flight: &Arc<Flight<T, E>>) -> usize {
    Arc::strong_count(flight) - 1
}

impl<K: Hash + Eq, T, E> Inner<K, T, E> {
    /// The core of [`Group::entry`] and [`Group::run`]: one round of the
    /// key's shard lock.
    #[inline]
    fn lead_or_join(&self, key: K) -> Role<T, E> {
        let hash = self.map.hash(&key);
        let mut guard = self.map.shard(hash).lock();
        let table = &mut *guard;
        if let Some(slot) = table.slots.find_mut(hash, |s| s.key == key) {
            if broken!("group_alloc_outside_lock") && slot.flight.is_none() {
                // Negative control: allocate the first subscriber's flight
                // outside the lock and store it in whatever slot has this id
                // afterwards; the leader may have taken the slot meanwhile.
                let id = slot.id;
                drop(guard);
                let flight = Arc::new(Flight::new());
                let mut guard = self.map.shard(hash).lock();
                if let Some(slot) = guard.slots.find_mut(hash, |s| s.id == id) {
                    slot.joins += 1;
                    slot.flight = Some(flight.clone());
                }
                drop(guard);
                drop(key);
                return Role::Join(Subscriber { flight });
            }
            slot.joins += 1;
            // The first subscriber allocates the shared state, under the
            // lock: the leader takes it out under the same lock, so it never
            // misses a flight someone joined.
            let flight = slot
                .flight
                .get_or_insert_with(|| Arc::new(Flight::new()))
                .clone();
            drop(guard);
            // The subscriber exists before the caller's key is dropped: if
            // that drop panics, a subscriber that joined leaves (the flight
            // counts it as shared, as for any subscriber that leaves).
            let sub = Subscriber { flight };
            drop(key);
            return Role::Join(sub);
        }
        let id = table.next_id;
        table.next_id = id.wrapping_add(1);
        table.in_flight += 1;
        table.slots.insert_unique(
            hash,
            Slot {
                key,
                hash,
                id,
                joins: 0,
                flight: None,
            },
            |s| s.hash,
        );
        drop(guard);
        Role::Lead(Ticket { hash, id })
    }
}

impl<K, T, E> Inner<K, T, E> {
    /// Removes the flight of `ticket` by identity (its slot, or its forgotten
    /// entry; a flight forgotten before anyone joined has neither) and
    /// returns its key, if it was still in its slot, and its shared state, if
    /// anyone joined it. Nobody can join it from now on.
    ///
    /// The caller drops the key, outside the lock and only after it has told
    /// the subscribers: a key whose `Drop` panics must not strand them.
    fn detach(&self, ticket: Ticket) -> Detached<K, T, E> {
        let mut guard = self.map.shard(ticket.hash).lock();
        let table = &mut *guard;
        debug_assert!(table.in_flight > 0, "a leader is counted in its shard");
        table.in_flight -= 1;
        // By identity, through the hash the leader kept: O(1), no key
        // compared.
        // (Negative control `group_remove_by_key`: remove whatever flight
        // has this key's hash; for one key, the same as removal by key.)
        let found = table.slots.find_entry(ticket.hash, |s| {
            broken!("group_remove_by_key") || s.id == ticket.id
        });
        let (key, flight) = match found {
            Ok(slot) => {
                let slot = slot.remove().0;
                shrink_if_sparse(&mut table.slots, |s| s.hash);
                (Some(slot.key), slot.flight)
            }
            // Forgotten. If nobody had joined, nothing was kept.
            Err(_) if table.forgotten.is_empty() => (None, None),
            Err(_) => {
                let flight = table
                    .forgotten
                    .find_entry(self.map.hash(&ticket.id), |f| f.id == ticket.id)
                    .ok()
                    .map(|f| f.remove().0.flight);
                shrink_if_sparse(&mut table.forgotten, |f| self.map.hash(&f.id));
                (None, flight)
            }
        };
        drop(guard);
        Detached { key, flight }
    }

    /// Ends the flight of `ticket` with `result`: removes it, then tells its
    /// subscribers, if any.
    fn publish(&self, ticket: Ticket, result: Result<T, E>) -> Arc<Outcome<T, E>> {
        if broken!("group_publish_before_remove") {
            // Negative control: publish first, so a caller arriving in
            // between joins a finished flight (or allocates one nobody will
            // publish).
            let flight = self.peek(ticket, |_, flight| flight.cloned());
            let outcome = Arc::new(Outcome::Complete {
                result,
                shared: flight.is_some(),
            });
            if let Some(flight) = &flight {
                announce(flight, &outcome);
            }
            drop(self.detach(ticket));
            return outcome;
        }
        let Detached { key, flight } = self.detach(ticket);
        // A subscriber's waker may panic in `announce`: the unwind then
        // drops these (the key, and maybe the last `Arc`s of the outcome and
        // the flight, user code all three) through `Quiet`, where a second
        // panic is caught instead of aborting the process.
        let key = Quiet::new(key);
        let flight = Quiet::new(flight);
        let outcome = Quiet::new(Arc::new(Outcome::Complete {
            result,
            shared: flight.is_some(),
        }));
        if let Some(flight) = &*flight {
            announce(flight, &outcome);
        }
        drop(flight);
        // Last: user code (see `detach`). Not unwinding: a panic goes on.
        drop(key);
        outcome.into_inner()
    }

    /// Ends the flight of `ticket` without a result: its subscribers, if it
    /// has any, get [`Outcome::Canceled`].
    fn cancel(&self, ticket: Ticket) {
        let Detached { key, flight } = self.detach(ticket);
        // As in `publish`: dropped quietly if a waker's panic unwinds
        // through `announce`.
        let key = Quiet::new(key);
        let flight = Quiet::new(flight);
        if broken!("group_drop_silent") {
            // Negative control: leave the map but never publish.
            return;
        }
        if let Some(flight) = &*flight {
            announce(flight, &Arc::new(Outcome::Canceled));
        }
        drop(flight);
        // Last: user code (see `detach`). A leader's work that panicked
        // brings us here while unwinding, where `Quiet` catches a panic in
        // `K::drop` (it would abort).
        drop(key);
    }

    /// Calls `f` with the `joins` count and the shared state of the flight of
    /// `ticket`, under its shard lock (`0, None` once it is gone).
    fn peek<R>(&self, ticket: Ticket, f: impl FnOnce(usize, Option<&Arc<Flight<T, E>>>) -> R) -> R {
        let table = self.map.shard(ticket.hash).lock();
        if let Some(slot) = table.slots.find(ticket.hash, |s| s.id == ticket.id) {
            return f(slot.joins, slot.flight.as_ref());
        }
        match table
            .forgotten
            .find(self.map.hash(&ticket.id), |f| f.id == ticket.id)
        {
            Some(forgotten) => f(forgotten.joins, Some(&forgotten.flight)),
            None => f(0, None),
        }
    }
}

/// What [`Inner::detach`] took out of the group.
struct Detached<K, T, E> {
    key: Option<K>,
    flight: Option<Arc<Flight<T, E>>>,
}

/// Writes the outcome, publishes DONE and wakes every subscriber once.
fn announce<T, E>(flight: &Flight<T, E>, outcome: &Arc<Outcome<T, E>>) {
    debug_assert_eq!(flight.state.load(Relaxed), RUNNING, "published twice");
    // SAFETY: only the leader writes `outcome`, once (it took the flight out
    // of its slot first, so no other leader call can reach it), and no
    // subscriber reads it before DONE.
    flight
        .outcome
        .with_mut(|p| unsafe { *p = Some(outcome.clone()) });
    // Release: pairs with the Acquire loads in `Flight::outcome` and
    // `Recv::poll`.
    flight.state.store(DONE, Release);
    flight.waiters.notify_all();
}

impl<K, T, E> Default for Group<K, T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, T, E> fmt::Debug for Group<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("in_flight", &self.in_flight())
            .finish_non_exhaustive()
    }
}

/// What [`Group::entry`] returns: lead a new flight, or join the current one.
#[must_use = "dropping an Entry cancels its flight (a Leader) or leaves it (a Subscriber, which has made the flight shared)"]
pub enum Entry<K, T, E> {
    /// No flight was in progress: this caller does the work.
    Leader(Leader<K, T, E>),
    /// A flight is in progress: wait for its outcome.
    Subscriber(Subscriber<T, E>),
}

impl<K, T, E> fmt::Debug for Entry<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Leader(l) => f.debug_tuple("Leader").field(l).finish(),
            Entry::Subscriber(s) => f.debug_tuple("Subscriber").field(s).finish(),
        }
    }
}

/// The caller that does a flight's work. `Send` when `K` is `Send` and `T`
/// and `E` are `Send + Sync` (the outcome is shared as an `Arc`), and
/// `'static` when they are: it can be moved into a spawned task.
///
/// [`complete`](Self::complete) publishes the result. Dropping the leader
/// without completing (cancellation, panic) publishes [`Outcome::Canceled`].
#[must_use = "dropping a Leader cancels its flight"]
pub struct Leader<K, T, E> {
    group: Arc<Inner<K, T, E>>,
    /// `None` once published.
    ticket: Option<Ticket>,
}

impl<K, T, E> Leader<K, T, E> {
    /// Publishes `result` to every subscriber and returns the very `Arc`
    /// they receive.
    ///
    /// `shared` in the outcome is true if at least one subscriber joined.
    /// The flight leaves the group's map before the outcome is visible, so a
    /// caller arriving afterwards starts a new flight.
    ///
    /// # Panics
    ///
    /// If a subscriber's waker panics as it is woken, or the key's `Drop`
    /// panics. Either happens only after the flight has left the map and
    /// every subscriber has been told the outcome (a panicking waker costs
    /// no other subscriber its wake-up); the first panic then unwinds out of
    /// this call, and its `Arc` is lost to this caller alone. Dropping a
    /// leader without completing panics in the same cases, after publishing
    /// [`Outcome::Canceled`].
    pub fn complete(mut self, result: Result<T, E>) -> Arc<Outcome<T, E>> {
        let ticket = self.ticket.take().expect("a live leader has a ticket");
        self.group.publish(ticket, result)
    }

    /// Number of live subscribers: joined, and neither resolved nor dropped.
    ///
    /// Takes the flight's shard lock (a snapshot).
    #[must_use]
    pub fn subscribers(&self) -> usize {
        self.group.peek(self.ticket(), |_, flight| {
            flight.map_or(0, live_subscribers)
        })
    }

    /// Whether any subscriber has joined so far (the final value is the
    /// outcome's `shared`).
    #[must_use]
    pub fn is_shared(&self) -> bool {
        self.joins() > 0
    }

    /// How many subscribers have joined so far, including those gone since.
    ///
    /// Takes the flight's shard lock (a snapshot).
    #[must_use]
    pub fn joins(&self) -> usize {
        self.group.peek(self.ticket(), |joins, _| joins)
    }

    fn ticket(&self) -> Ticket {
        self.ticket.expect("a live leader has a ticket")
    }
}

impl<K, T, E> Drop for Leader<K, T, E> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.group.cancel(ticket);
        }
    }
}

impl<K, T, E> fmt::Debug for Leader<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leader")
            .field("subscribers", &self.subscribers())
            .finish_non_exhaustive()
    }
}

/// The leader inside [`Group::run`]: a [`Leader`] that borrows its group
/// instead of holding an `Arc` of it.
struct RunLead<'a, K, T, E> {
    group: &'a Inner<K, T, E>,
    /// `None` once published.
    ticket: Option<Ticket>,
}

impl<K, T, E> RunLead<'_, K, T, E> {
    #[inline]
    fn complete(mut self, result: Result<T, E>) -> Arc<Outcome<T, E>> {
        let ticket = self.ticket.take().expect("a live leader has a ticket");
        self.group.publish(ticket, result)
    }
}

impl<K, T, E> Drop for RunLead<'_, K, T, E> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.group.cancel(ticket);
        }
    }
}

/// A caller waiting for a flight led by someone else. `Send` when `T` and
/// `E` are `Send + Sync`, and `'static` when they are.
///
/// Dropping it only removes it from the flight.
#[must_use = "a Subscriber does nothing unless `recv` is awaited"]
pub struct Subscriber<T, E> {
    flight: Arc<Flight<T, E>>,
}

impl<T, E> Subscriber<T, E> {
    /// Waits for the flight's outcome.
    ///
    /// The error type is [`Infallible`]: a flight always ends with an
    /// outcome ([`Outcome::Canceled`] if its leader went away), so
    /// `recv().await.unwrap()` never panics.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping the future removes the subscriber from the
    /// flight's queue in O(1) and disturbs nobody else.
    pub fn recv(self) -> Recv<T, E> {
        Recv {
            sub: Some(self),
            key: WaitKey::new(),
        }
    }

    /// The outcome, if the flight is already over. Never waits.
    #[must_use]
    pub fn try_recv(&self) -> Option<Arc<Outcome<T, E>>> {
        self.flight.outcome()
    }
}

impl<T, E> fmt::Debug for Subscriber<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Acquire: pairs with the Release store of DONE (only a snapshot).
        let done = self.flight.state.load(Acquire) == DONE;
        f.debug_struct("Subscriber")
            .field("done", &done)
            .finish_non_exhaustive()
    }
}

/// Future of [`Subscriber::recv`].
#[must_use = "futures do nothing unless polled"]
pub struct Recv<T, E> {
    /// `None` once resolved (the subscriber is then gone).
    sub: Option<Subscriber<T, E>>,
    key: WaitKey,
}

impl<T, E> Future for Recv<T, E> {
    type Output = Result<Arc<Outcome<T, E>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // `Recv` is `Unpin`: an Option of an Arc and a key.
        let this = self.get_mut();
        let flight = &this
            .sub
            .as_ref()
            .expect("Recv polled after completion")
            .flight;
        // Acquire: pairs with the Release store of DONE in `announce`.
        // (Negative control `group_relaxed_done`: the fast path reads DONE
        // without Acquire, so the outcome written before it need not be
        // visible.)
        let order = if broken!("group_relaxed_done") {
            Relaxed
        } else {
            Acquire
        };
        let done = flight.state.load(order) == DONE;
        let outcome = if done {
            // No lock: if this waiter's node is still in the queue, it is
            // notified (or about to be) and freed with the flight, so the key
            // is simply let go (see the invariants).
            this.key = WaitKey::new();
            // SAFETY: DONE was seen (with Acquire, see above), so the write
            // of `outcome` happened before, and it is never written again.
            flight
                .outcome
                .with(|p| unsafe { (*p).clone() })
                .expect("DONE implies an outcome")
        } else {
            let waiting = if this.key.is_registered() {
                flight.waiters.poll(&mut this.key, cx).is_pending()
            } else {
                let state = &flight.state;
                // Re-checked under the queue lock; the leader stores DONE
                // before it takes that lock to wake everyone. Acquire: pairs
                // with it.
                flight
                    .waiters
                    .register(&mut this.key, cx.waker(), || state.load(Acquire) != DONE)
            };
            if waiting {
                return Poll::Pending;
            }
            flight.outcome().expect("woken only once DONE")
        };
        this.sub = None;
        Poll::Ready(Ok(outcome))
    }
}

impl<T, E> Drop for Recv<T, E> {
    fn drop(&mut self) {
        // Negative control `group_recv_drop_no_cancel`: a dropped subscriber
        // lets go of its key, as one that saw DONE does, and leaves its node
        // (and waker) in the queue until the flight ends.
        if let Some(sub) = &self.sub {
            if broken!("group_recv_drop_no_cancel") {
                return;
            }
            // Broadcast notifications only: nothing to pass on.
            sub.flight.waiters.cancel(&mut self.key, || {});
        }
    }
}

impl<T, E> fmt::Debug for Recv<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recv")
            .field("subscriber", &self.sub)
            .finish_non_exhaustive()
    }
}
