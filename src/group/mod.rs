//! [`Group`]: single-flight coalescing of concurrent calls per key.
//!
//! # State machine of one flight
//!
//! ```text
//!   entry(k) finds no flight for k: insert a new flight, return a Leader
//!        │
//!        ▼
//!   RUNNING (in the map under k) ── entry(k) ──► + one Subscriber (JOINS += 1)
//!        │  │
//!        │  └── forget(k): removed from the map; still RUNNING, nobody new joins
//!        │
//!        │  Leader::complete(r)            or  drop(Leader) (cancel, panic)
//!        ▼
//!   1. removed from the map by identity (if it is still there), under the shard lock;
//!      JOINS is read under that same lock, so it is final: that is `shared`
//!   2. the outcome `Arc` is written, then DONE is stored (Release)
//!   3. every registered subscriber is woken, once
//!   (2 and 3 are skipped when nobody joined: there is nobody to tell)
//!        │
//!        ▼
//!   DONE: subscribers read the outcome; the flight is freed with its last Arc
//! ```
//!
//! # Access rules
//!
//! * The shard lock guards the table and the `joins` count: a subscriber joins
//!   (clones the flight's `Arc`, bumps `joins` and `subscribers`) only while the
//!   flight is in the map, and the leader removes the flight and reads
//!   `joins` under the same lock. After removal nobody can join, so `shared`
//!   is exact.
//! * `outcome` is written once, by the leader, before the `Release` store of
//!   DONE, and read only after an `Acquire` load has seen DONE.
//! * The leader never holds a lock while the work runs: the shard lock is
//!   taken twice per flight (insert, remove), each time for one table
//!   operation.
//!
//! # Invariants
//!
//! * A flight in the map is not DONE (it is removed before it is published),
//!   so a caller that finds it will be woken: it registers in the flight's
//!   wait queue with a predicate re-checked under the queue lock, and the
//!   leader stores DONE before it takes that lock to wake everyone.
//! * Removal is by identity (`Arc::ptr_eq`, found through the hash the flight
//!   stored at insertion): a forgotten flight finishing never removes the
//!   flight that replaced it, and no key is compared or re-hashed.
//! * Every flight is published exactly once: `complete` consumes the leader,
//!   and the leader's `Drop` publishes `Canceled` otherwise.
//!
//! # Orderings
//!
//! | operation                              | ordering  | pairs with                                               |
//! |----------------------------------------|-----------|----------------------------------------------------------|
//! | store DONE in `publish`                | `Release` | the `Acquire` loads of `state` in `Recv::poll`           |
//! | load of `state` in `Recv::poll`        | `Acquire` | the store above: the outcome written before it is visible |
//! | `joins`, `subscribers`, `in_flight`    | `Relaxed` | counters; `joins` is ordered by the shard lock            |

mod shards;

pub(crate) use shards::Shards;

use core::convert::Infallible;
use core::fmt;
use core::future::Future;
use core::hash::Hash;
use core::pin::Pin;
use core::task::{Context, Poll};

use crate::sync::atomic::{AtomicU8, AtomicUsize, Ordering::*};
use crate::sync::{Arc, UnsafeCell};
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

/// One flight: created by its leader, joined by subscribers.
struct Flight<T, E> {
    /// The hash of the key it was inserted under; finds it again for removal.
    hash: u64,
    /// `RUNNING` or `DONE`.
    state: AtomicU8,
    /// How many subscribers have joined; written under the shard lock, and
    /// final once the flight has left the map.
    joins: AtomicUsize,
    /// Live subscribers (joined and neither resolved nor dropped).
    subscribers: AtomicUsize,
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
    fn new(hash: u64) -> Self {
        Self {
            hash,
            state: AtomicU8::new(RUNNING),
            joins: AtomicUsize::new(0),
            subscribers: AtomicUsize::new(0),
            outcome: UnsafeCell::new(None),
            waiters: WaitQueue::new(),
        }
    }

    /// The published outcome, if any.
    fn outcome(&self) -> Option<Arc<Outcome<T, E>>> {
        // Acquire: pairs with the Release store in `publish`.
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
///
/// `Group` is a handle to shared state: it is not `Clone`, put it in an `Arc`
/// to share it (leaders and subscribers keep what they need alive on their
/// own).
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
    map: Shards<(K, Arc<Flight<T, E>>)>,
    /// Leaders neither completed nor dropped (forgotten flights included).
    in_flight: AtomicUsize,
}

impl<K, T, E> Group<K, T, E> {
    /// Creates an empty group.
    #[must_use]
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                map: Shards::new(),
                in_flight: AtomicUsize::new(0),
            }),
        }
    }

    /// Number of flights in progress: leaders that have neither completed nor
    /// been dropped, forgotten flights included.
    ///
    /// A snapshot for diagnostics and tests; it may change at once.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        // Relaxed: a counter; nothing is read through it.
        self.inner.in_flight.load(Relaxed)
    }

    /// Number of keys that currently have a flight a new caller would join
    /// (forgotten flights are not counted).
    ///
    /// Locks each shard in turn, so it is not atomic across keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.inner.map.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether no key currently has a flight (see [`len`](Self::len)).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.inner.map.iter().all(|s| s.lock().is_empty())
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
        let map = &self.inner.map;
        let hash = map.hash(&key);
        let mut shard = map.shard(hash).lock();
        if let Some((_, flight)) = shard.find(hash, |(k, _)| *k == key) {
            let flight = flight.clone();
            // Relaxed: the shard lock orders it with the leader's read.
            flight.joins.fetch_add(1, Relaxed);
            // Relaxed: a counter.
            flight.subscribers.fetch_add(1, Relaxed);
            drop(shard);
            drop(key);
            return Entry::Subscriber(Subscriber { flight });
        }
        let flight = Arc::new(Flight::new(hash));
        shard.insert_unique(hash, (key, flight.clone()), |(_, f)| f.hash);
        drop(shard);
        // Relaxed: a counter.
        self.inner.in_flight.fetch_add(1, Relaxed);
        Entry::Leader(Leader {
            group: self.inner.clone(),
            flight: Some(flight),
        })
    }

    /// Runs `f` as the leader of a new flight for `key`, or waits for the
    /// flight in progress, and resolves to the flight's outcome.
    ///
    /// All callers of one flight get the same `Arc`. `f` is called only by
    /// the leader. If `f`'s future finishes at its first poll, the leader
    /// yields to the executor once before publishing, so that calls already
    /// scheduled on it can join the flight: a burst of identical calls
    /// becomes one flight even when the work is instant. Work that does not
    /// finish at once costs no yield.
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
    /// # Examples
    ///
    /// ```
    /// # lazyflight::sync::future::block_on(async {
    /// use lazyflight::Group;
    ///
    /// let group = Group::<u32, String, std::io::Error>::new();
    /// let outcome = group.run(7, || async { Ok("seven".to_owned()) }).await;
    /// assert_eq!(outcome.result().unwrap().as_ref().unwrap(), "seven");
    /// # });
    /// ```
    pub async fn run<F, Fut>(&self, key: K, f: F) -> Arc<Outcome<T, E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.entry(key) {
            Entry::Leader(leader) => {
                // A panic or cancellation below drops `leader`: Canceled.
                let mut work = core::pin::pin!(f());
                let result = match (PollOnce(work.as_mut())).await {
                    // The work finished at its first poll. The join window:
                    // callers already scheduled on this executor get one
                    // chance to join before the result is published.
                    Poll::Ready(result) => {
                        YieldOnce(false).await;
                        result
                    }
                    // Work in progress: callers join while it runs.
                    Poll::Pending => work.await,
                };
                leader.complete(result)
            }
            Entry::Subscriber(sub) => match sub.recv().await {
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
        let removed = match map
            .shard(hash)
            .lock()
            .find_entry(hash, |(k, _)| k.borrow() == key)
        {
            Ok(entry) => Some(entry.remove().0),
            Err(_) => None,
        };
        // The key and the flight's Arc are dropped outside the lock.
        removed.is_some()
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
        let shard = map.shard(hash).lock();
        // Relaxed: a counter.
        shard
            .find(hash, |(k, _)| k.borrow() == key)
            .map_or(0, |(_, f)| f.subscribers.load(Relaxed))
    }
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

/// The caller that does a flight's work. `Send + 'static` (when `K`, `T`, `E`
/// are): it can be moved into a spawned task.
///
/// [`complete`](Self::complete) publishes the result. Dropping the leader
/// without completing (cancellation, panic) publishes [`Outcome::Canceled`].
#[must_use = "dropping a Leader cancels its flight"]
pub struct Leader<K, T, E> {
    group: Arc<Inner<K, T, E>>,
    /// `None` once published.
    flight: Option<Arc<Flight<T, E>>>,
}

impl<K, T, E> Leader<K, T, E> {
    /// Publishes `result` to every subscriber and returns the very `Arc`
    /// they receive.
    ///
    /// `shared` in the outcome is true if at least one subscriber joined.
    /// The flight leaves the group's map before the outcome is visible, so a
    /// caller arriving afterwards starts a new flight.
    pub fn complete(mut self, result: Result<T, E>) -> Arc<Outcome<T, E>> {
        self.publish(Some(result))
    }

    /// Number of live subscribers: joined, and neither resolved nor dropped.
    #[must_use]
    pub fn subscribers(&self) -> usize {
        // Relaxed: a counter.
        self.flight().subscribers.load(Relaxed)
    }

    /// Whether any subscriber has joined so far (the final value is the
    /// outcome's `shared`).
    #[must_use]
    pub fn is_shared(&self) -> bool {
        self.joins() > 0
    }

    /// How many subscribers have joined so far, including those gone since.
    #[must_use]
    pub fn joins(&self) -> usize {
        // Relaxed: a snapshot; the final value is read under the shard lock.
        self.flight().joins.load(Relaxed)
    }

    fn flight(&self) -> &Flight<T, E> {
        self.flight.as_deref().expect("a live leader has a flight")
    }

    /// Removes the flight from the map by identity, then publishes.
    /// `None` publishes `Canceled`.
    fn publish(&mut self, result: Option<Result<T, E>>) -> Arc<Outcome<T, E>> {
        let flight = self.flight.take().expect("published once");
        let make = |shared| {
            Arc::new(match result {
                Some(result) => Outcome::Complete { result, shared },
                None => Outcome::Canceled,
            })
        };
        let outcome = if cfg!(lazyflight_break = "group_publish_before_remove") {
            // Negative control: publish first, so a caller arriving in
            // between joins a finished flight.
            // Relaxed: the broken order is the point of the control.
            let outcome = make(flight.joins.load(Relaxed) > 0);
            announce(&flight, &outcome);
            let _ = self.detach(&flight);
            outcome
        } else {
            let shared = self.detach(&flight);
            let outcome = make(shared);
            // Nobody joined, and nobody can any more (the flight is out of
            // the map): there is no subscriber to tell, so skip the write
            // and the queue lock.
            if shared {
                announce(&flight, &outcome);
            }
            outcome
        };
        // Relaxed: a counter.
        self.group.in_flight.fetch_sub(1, Relaxed);
        outcome
    }

    /// Removes `flight` from the map if it is still there (it is not if it
    /// was forgotten) and returns whether anyone joined it: final from now
    /// on, since joining needs the flight in the map.
    fn detach(&self, flight: &Arc<Flight<T, E>>) -> bool {
        let mut shard = self.group.map.shard(flight.hash).lock();
        // By identity, through the stored hash: O(1), no key compared.
        #[cfg(not(lazyflight_break = "group_remove_by_key"))]
        let found = shard.find_entry(flight.hash, |(_, f)| Arc::ptr_eq(f, flight));
        // Negative control: remove whatever flight has this key's hash (for
        // one key, the same as removal by key).
        #[cfg(lazyflight_break = "group_remove_by_key")]
        let found = shard.find_entry(flight.hash, |_| true);
        let removed = found.ok().map(|e| e.remove().0);
        // Relaxed: joins happen under this lock.
        let shared = flight.joins.load(Relaxed) > 0;
        drop(shard);
        // The key and the map's Arc are dropped outside the lock.
        drop(removed);
        shared
    }
}

/// Writes the outcome, publishes DONE and wakes every subscriber once.
fn announce<T, E>(flight: &Flight<T, E>, outcome: &Arc<Outcome<T, E>>) {
    debug_assert_eq!(flight.state.load(Relaxed), RUNNING, "published twice");
    // SAFETY: only the leader writes `outcome`, once (it took its flight out
    // of `Leader::flight` first), and no subscriber reads it before DONE.
    flight
        .outcome
        .with_mut(|p| unsafe { *p = Some(outcome.clone()) });
    // Release: pairs with the Acquire load in `Flight::outcome`.
    flight.state.store(DONE, Release);
    flight.waiters.notify_all();
}

impl<K, T, E> Drop for Leader<K, T, E> {
    fn drop(&mut self) {
        let Some(flight) = self.flight.as_ref() else {
            return;
        };
        if cfg!(lazyflight_break = "group_drop_silent") {
            // Negative control: leave the map but never publish.
            let flight = flight.clone();
            let _ = self.detach(&flight);
            self.flight = None;
            // Relaxed: a counter.
            self.group.in_flight.fetch_sub(1, Relaxed);
            return;
        }
        let _ = self.publish(None);
    }
}

impl<K, T, E> fmt::Debug for Leader<K, T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leader")
            .field("subscribers", &self.subscribers())
            .finish_non_exhaustive()
    }
}

/// A caller waiting for a flight led by someone else. `Send + 'static` (when
/// `T`, `E` are).
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

impl<T, E> Drop for Subscriber<T, E> {
    fn drop(&mut self) {
        // Relaxed: a counter.
        self.flight.subscribers.fetch_sub(1, Relaxed);
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
        if this.key.is_registered() {
            if flight.waiters.poll(&mut this.key, cx).is_pending() {
                return Poll::Pending;
            }
        } else if flight.outcome().is_none() {
            let state = &flight.state;
            // Re-checked under the queue lock; the leader stores DONE before
            // it takes that lock to wake everyone. Acquire: pairs with it.
            if flight
                .waiters
                .register(&mut this.key, cx.waker(), || state.load(Acquire) != DONE)
            {
                return Poll::Pending;
            }
        }
        let outcome = flight.outcome().expect("woken only once DONE");
        this.sub = None;
        Poll::Ready(Ok(outcome))
    }
}

impl<T, E> Drop for Recv<T, E> {
    fn drop(&mut self) {
        if let Some(sub) = &self.sub {
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

/// Polls a future once and reports what it said, without waiting.
struct PollOnce<'a, F>(Pin<&'a mut F>);

impl<F: Future> Future for PollOnce<'_, F> {
    type Output = Poll<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Poll::Ready(self.0.as_mut().poll(cx))
    }
}

/// Returns `Pending` once (waking itself at once), then `Ready`.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
