//! [`Cache`]: a keyed async cache with coalesced initialization per key.
//!
//! # Structure
//!
//! A sharded table (the one [`Group`](crate::Group) uses) maps each key to an
//! `Arc<ALazy<..>>`, the key's *entry*. The [`ALazy`] does the per-key work:
//! one initializer at a time, every waiter woken once, FIFO hand-off when the
//! running initializer is cancelled or panics. The table only decides *which*
//! entry a caller uses. In a cache without expiry (no time-to-live and no
//! [`ErrorPolicy::CachedFor`]), once an entry's result is stored the first
//! look-up that sees it copies it into the table and lets the entry go, so
//! hits read the table alone: no pointer chase to a separately allocated
//! entry. Each shard holds two tables, keyed alike, a key in at most one:
//! `values` (the key and its stored value, nothing else: 16 bytes for `u64`
//! keys and values, the slot size of a bare map) and `others` (the key and
//! its entry, or a stored error). A hit probes `values` first and returns;
//! everything else looks in `others`, under the same lock. In a timed cache
//! the result stays in its entry, next to the clock reading it is checked
//! against, so `values` stays empty.
//!
//! # State of one key
//!
//! ```text
//!                    get (miss): insert a fresh entry, lead its init
//!   ABSENT ─────────────────────────────────────────────────────────► IN FLIGHT
//!     ▲  ▲                                                        │   │   │
//!     │  │  invalidate / clear: removed; its callers still get    │   │   │
//!     │  └──────────────── the result, which is not stored ───────┘   │   │
//!     │                                                               │   │
//!     │     Err under ErrorPolicy::SharedOnly: removed *before* the   │   │
//!     └──────────── error is published to the attempt's callers ──────┘   │
//!                                                                         │
//!   CACHED (value, or error under Cached / CachedFor) ◄── Ok / Err ───────┘
//!     │  get finds it expired (TTL, CachedFor): the entry is replaced by a
//!     ├─ fresh one under the shard lock, and that caller leads (IN FLIGHT)
//!     │
//!     └─ purge_expired finds it expired: removed (ABSENT); entries in
//!        flight are left alone
//! ```
//!
//! # Access rules
//!
//! * The shard lock guards both of its tables: look-up, insertion,
//!   replacement and removal of entries, and the move of a result from
//!   `others` to `values`, which is one step under the lock. It is held
//!   for one table operation and, on a hit, the clone of the cached value
//!   (two clones on the first hit, which also stores the value); never while
//!   an initializer runs. User code run under it: `K`'s `Hash` and `Eq`,
//!   `V`'s and `E`'s `Clone`. Keys, values and entries that leave the table,
//!   and the caller's key, are dropped after it is released.
//! * An entry's value is written once, by its `ALazy`; results are stamped
//!   with the clock *inside* the initializer, so the stamp is published with
//!   the value.
//! * `get` does the look-up first; a hit returns from the first poll before
//!   any of the miss path's state is set up. `get` and `get_owned` return
//!   `Get`, a hand-written future whose first poll is the look-up, inline up
//!   to the probe of `values`; the rest of the look-up and the miss path (an
//!   `async fn`, `get_slow` or `get_owned_slow`, kept inside `Get`) are
//!   polled and dropped out of line.
//! * Entries are replaced and removed by identity (`Arc::ptr_eq`) wherever
//!   the caller acts on an entry it found earlier, so an old entry never
//!   removes its successor.
//! * A `get` that leaves its key's entry with nothing to finish it
//!   (cancelled, or its init panicked, with nobody else holding the entry)
//!   removes it, so a key never stays counted by `len` with no value, no
//!   error and no init. References to an entry are only handed out under the
//!   shard lock, so the check (`EMPTY`, and a count of two: the table's and
//!   the caller's) made under that lock cannot race a new caller.
//!
//! # Invariants
//!
//! * Per key, at most one initializer runs for the entry in the table. (An
//!   entry already invalidated may still be finishing for its own callers,
//!   or, if its init was cancelled or panicked, running the init of the
//!   longest-waiting of them.)
//! * A caller that finds an entry in flight gets that entry's result; an
//!   entry out of the table is never put back.
//! * Keys never wait on each other: no lock is held across an `.await`.
//!
//! # Orderings
//!
//! The cache adds no atomics of its own beyond the optional statistics
//! counters (`Relaxed`: they are counts, nothing is read through them). The
//! shard mutex orders table changes; `ALazy` orders value publication
//! (`Release` store, `Acquire` load, see its module).

mod clock;

pub use clock::{Clock, ManualClock, SystemClock};

use core::borrow::Borrow;
use core::fmt;
use core::future::Future;
use core::hash::Hash;
use core::mem::ManuallyDrop;
use core::pin::Pin;
use core::ptr;
use core::task::{Context, Poll};
use core::time::Duration;

use hashbrown::HashTable;

use crate::group::{free_if_empty, shrink_empty, shrink_if_sparse, too_roomy, ShardsOf};
use crate::sync::atomic::{fence, AtomicU64, Ordering::Acquire, Ordering::Relaxed};
use crate::sync::Arc;
use crate::sync::MutexGuard;
use crate::unwind::{caught, each, Payload, Quiet};
use crate::{ALazy, State};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

/// What the cache does with an initializer's error.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use lazyflight::{Cache, ErrorPolicy};
///
/// // Retry failed keys after five seconds.
/// let cache = Cache::<u32, String, String>::builder()
///     .errors(ErrorPolicy::CachedFor(Duration::from_secs(5)))
///     .build();
/// # drop(cache);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ErrorPolicy {
    /// The error is stored like a value: every later `get` returns it until
    /// the key is invalidated (or, with a time-to-live, expires). The default,
    /// as in the original async-lazy design.
    #[default]
    Cached,
    /// The error is stored for this long, then the next `get` starts a fresh
    /// attempt. (A time-to-live, if shorter, applies too.)
    CachedFor(Duration),
    /// The error goes to the callers of that attempt only (the leader and
    /// whoever was waiting on it) and is not stored: the next `get` starts a
    /// fresh attempt.
    SharedOnly,
}

/// A result and the clock reading when it was produced.
struct Stamped<X> {
    value: X,
    at: Duration,
}

type Cell<V, E> = ALazy<Stamped<V>, Stamped<E>>;

/// One shard of the table: two hash tables, keyed alike, a key in at most
/// one of them. Hashes are not stored: a table recomputes them from the keys
/// when it grows, which keeps slots (and so the lines a hit touches) small.
///
/// `repr(C)`, in this order: what a hit touches (the lock word before the
/// table, `values`, `hits`) shares the shard's first cache line; `others`
/// spills into the second.
#[repr(C)]
struct Table<K, V, E> {
    /// Stored values of a cache without expiry, copied out of their finished
    /// entries by the first look-up that saw them, so that a hit reads this
    /// table only: a slot is the key and the value (16 bytes for `u64`
    /// keys and values), no variant tag, no pointer chase to the entry,
    /// which is then freed.
    values: HashTable<(K, V)>,
    /// Hits answered from this shard, counted under its lock if the cache
    /// keeps statistics: a plain add to a line the lock already owns, where
    /// one counter shared by every thread would bounce between their caches
    /// on every hit (see docs/benchmarks.md, `cache_stats`).
    hits: u64,
    /// Every other key: its entry, or a stored error.
    others: HashTable<Slot<K, V, E>>,
}

impl<K, V, E> Default for Table<K, V, E> {
    fn default() -> Self {
        Self {
            values: HashTable::new(),
            others: HashTable::new(),
            hits: 0,
        }
    }
}

impl<K, V, E> Table<K, V, E> {
    fn len(&self) -> usize {
        self.values.len() + self.others.len()
    }

    /// Takes `entry`'s slot out of [`Table::others`], found by identity, if
    /// it is still there, for the caller to drop outside the lock.
    fn take_entry(&mut self, hash: u64, entry: &Arc<Cell<V, E>>) -> Option<Slot<K, V, E>> {
        let taken = self
            .others
            .find_entry(hash, |s| s.is_entry(entry))
            .ok()
            .map(|found| found.remove().0);
        shrink_if_sparse(&mut self.others, |s| s.hash);
        self.trim_room();
        taken
    }

    /// Once [`Table::values`] holds nothing, gives back the room it keeps
    /// for the keys of [`Table::others`] (see [`Cache::insert`]) beyond what
    /// they still need: a burst of keys in flight that stored nothing
    /// (cancelled, invalidated, failed under [`ErrorPolicy::SharedOnly`])
    /// does not keep the memory of its peak. Runs no user code.
    fn trim_room(&mut self) {
        if self.values.is_empty() {
            shrink_empty(&mut self.values, self.others.len());
        }
    }

    /// Whether `entry` is the one the table holds for its key.
    fn holds_entry(&self, hash: u64, entry: &Arc<Cell<V, E>>) -> bool {
        self.others.find(hash, |s| s.is_entry(entry)).is_some()
    }
}

/// A key of [`Table::others`] and what it holds.
struct Slot<K, V, E> {
    /// The key's hash, kept so that growing [`Table::others`] runs no user
    /// code (a `Hash` that panicked there would unwind through the table,
    /// which then drops, under the lock, every slot it had not yet moved).
    hash: u64,
    key: K,
    state: SlotState<V, E>,
}

impl<K, V, E> Slot<K, V, E> {
    /// Drops the slot as [`drop_pair`] drops a key and its value.
    fn drop_apart(self) {
        let Self { key, state, .. } = self;
        drop_pair(key, state);
    }

    /// Whether this slot holds `entry` itself (by identity).
    fn is_entry(&self, entry: &Arc<Cell<V, E>>) -> bool {
        matches!(&self.state, SlotState::Pending(e) if Arc::ptr_eq(e, entry))
    }
}

/// Drops a key, then what it held, so that when both `Drop`s panic the
/// second panic is caught instead of aborting the process (as it would if
/// the pair were dropped as one value: the second field is dropped while
/// the first one's panic unwinds). The first panic unwinds on.
fn drop_pair<K, X>(key: K, held: X) {
    let held = Quiet::new(held);
    drop(key);
    drop(held);
}

/// The keys (with their values) a rebuilt table of values left out, and the
/// panics of their `Hash` (see [`Cache::reserve_values`]).
type Evicted<K, V> = (Vec<(K, V)>, Vec<Payload>);

/// A look-up whose insert found a stored key's `Hash` panicking while
/// [`Table::values`] grew (see [`Cache::reserve_values`]): what is left to do
/// once the shard lock is released.
struct HashPanicked<K, V> {
    /// The caller's key, not inserted.
    key: K,
    /// The keys (with their values) taken out of the table because their
    /// `Hash` panicked.
    lost: Vec<(K, V)>,
    /// The panics, the first one to be resumed.
    panics: Vec<Payload>,
}

impl<K, V> HashPanicked<K, V> {
    /// Drops what was taken out (quietly: the first panic is the one the
    /// caller sees) and resumes the first panic.
    fn resume(self) -> ! {
        let Self { key, lost, panics } = self;
        caught(move || drop(key));
        each(lost, |(k, v)| caught(move || drop_pair(k, v)));
        let mut panics = panics.into_iter();
        let first = panics.next().expect("at least one panic");
        each(panics, |p| caught(move || drop(p)));
        resume_unwind(first)
    }
}

/// What [`Table::others`] holds for a key.
enum SlotState<V, E> {
    /// The key's entry: its init is in flight, or has not started, or has
    /// finished and no look-up has seen it yet (the first one moves a value
    /// to [`Table::values`] and turns an error into [`SlotState::Error`]; in
    /// a timed cache neither happens: the result and its stamp stay here).
    Pending(Arc<Cell<V, E>>),
    /// A stored error (only under [`ErrorPolicy::Cached`] without a
    /// time-to-live), copied out of its entry like a value.
    Error(E),
}

/// Optional counters; see [`CacheStats`].
///
/// Hits are not here: each shard counts its own (see [`Table::hits`]).
struct Counters {
    misses: AtomicU64,
    inits: AtomicU64,
    coalesced: AtomicU64,
    errors: AtomicU64,
}

/// A snapshot of a cache's counters (see [`CacheBuilder::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CacheStats {
    /// `get` calls answered from the table without waiting.
    pub hits: u64,
    /// `get` calls that found no cached result (they led or joined an init).
    pub misses: u64,
    /// Initializers run.
    pub inits: u64,
    /// Misses answered by an initializer another caller ran.
    pub coalesced: u64,
    /// Initializers that returned `Err`.
    pub errors: u64,
}

/// A concurrent async cache: per key, at most one initializer runs at a time
/// and concurrent callers share its result.
///
/// * [`get`](Self::get) returns the cached value (a clone), or runs `init`
///   once for every caller that arrives meanwhile. Keys never block each
///   other: no init runs under a lock (but see "User code under a shard
///   lock" below).
/// * Errors are cached until invalidated by default; see [`ErrorPolicy`] for
///   a timed cache or for sharing an error with that attempt's callers only.
/// * An optional time-to-live (see [`CacheBuilder::time_to_live`]); time
///   comes from a [`Clock`] you can replace, e.g. with a [`ManualClock`] in
///   tests.
/// * [`invalidate`](Self::invalidate) on a key whose init is in flight: its
///   current callers still get that result, it is not stored, and the next
///   `get` starts a fresh init. Those callers stay with the invalidated
///   attempt: if its init is cancelled or panics, the longest-waiting of
///   them runs its own init for them, as without the invalidation, beside
///   the fresh one (so two inits of the key may run at once), and its result
///   is not stored either.
/// * A hit allocates nothing in the cache: one shard lock, one probe of the
///   table of stored values, one clone (a stored error, or a result in a
///   timed cache, takes a second probe). What the clone of `V` allocates,
///   and a key the caller builds for the call (a `String`, say), are the
///   caller's.
/// * [`get_owned`](Self::get_owned) moves the init into the entry, so a
///   caller that is parked mid-init cannot stall the others (when every
///   caller of that key uses `get_owned`).
///
/// Entries are removed by `invalidate` and `clear`, replaced when found
/// expired, and dropped when an init fails under
/// [`ErrorPolicy::SharedOnly`] or is abandoned (its caller cancelled, or it
/// panicked) with nobody waiting; there is no size bound. An init started
/// by [`get_owned`](Self::get_owned) belongs to its entry, not to a caller:
/// when every caller of it is cancelled it stays, pending and driven by
/// nobody, counted by `len` and kept by `purge_expired`, until the next
/// `get` of its key resumes it, or the key is invalidated or cleared. An
/// expired entry
/// is not swept in the background (the cache runs no task of its own): it
/// keeps its memory, and counts in [`len`](Self::len), until a `get` of its
/// key replaces it, it is invalidated or cleared, or
/// [`purge_expired`](Self::purge_expired) removes it.
///
/// A shard's table of entries gives its memory back once it is mostly
/// empty, so a burst of keys in flight does not keep the memory of its
/// peak: at once when entries are invalidated or purged, or when the last
/// one moves to the table of stored values; when they move there but some
/// stay (stored errors, inits in flight), at the shard's next miss, since a
/// hit never allocates. The table of stored values keeps room for every key
/// in flight (so that a first hit never allocates either); room it no longer
/// needs (values invalidated, keys in flight that stored nothing) is given
/// back at the shard's next miss, which hashes every stored key and so runs
/// `K`'s `Hash` (see below), or at once when it holds no value.
///
/// # Values, errors and threads
///
/// `get` hands every caller its own copy of the result, so `V` and `E` must
/// be `Clone`. Most error types of I/O and client crates are not: store an
/// `Arc` of them (an `Arc` is `Clone` whatever it holds, and cloning it is a
/// reference-count increment). A `Cache` is `Send` and `Sync` when `K`, `V`
/// and `E` are `Send` and `Sync`, which is what sharing it between tasks on
/// a multi-threaded runtime needs.
///
/// ```
/// # lazyflight::sync::future::block_on(async {
/// use std::sync::Arc;
/// use lazyflight::Cache;
///
/// async fn fetch(id: u64) -> Result<String, std::io::Error> {
///     Ok(format!("profile {id}"))
/// }
///
/// let profiles = Cache::<u64, String, Arc<std::io::Error>>::new();
/// let p = profiles.get(7, || async { fetch(7).await.map_err(Arc::new) }).await;
/// assert_eq!(p.unwrap(), "profile 7");
/// # });
/// ```
///
/// There is no `insert`: a value comes from its key's init. After a write to
/// the backing store, [`invalidate`](Self::invalidate) the key; the next
/// `get` runs its init and reads the new value (an init already in flight
/// is not stored, so its possibly stale result does not stay).
///
/// # User code under a shard lock
///
/// `K`'s `Hash` and `Eq`, and the `Clone` of `V` and `E`, run while the
/// key's shard lock is held: a hit hands out a clone of the stored value,
/// made under the lock. Keep them cheap (store an `Arc` for a value that is
/// costly to clone), and do not call into the same cache from them: the
/// shard lock is not re-entrant, so such a call deadlocks (or panics). A
/// panic in one of them propagates to the caller and leaves the table as it
/// was, with one exception: a stored key's `Hash` runs again when its
/// shard's table of values grows, and a key whose `Hash` panics then is
/// taken out of the cache (its value dropped after the lock is released;
/// every other key stays). A `Hash` that panics for a key it once hashed
/// is a bug in that `Hash`; the cache stays consistent all the same.
///
/// # Examples
///
/// ```
/// # lazyflight::sync::future::block_on(async {
/// use lazyflight::Cache;
///
/// let cache = Cache::new();
///
/// // Initialize the value for key 1.
/// let result = cache.get(1, || async { Ok::<_, ()>(42) }).await;
/// assert_eq!(result, Ok(42));
///
/// // Later calls get the cached value: their initializer does not run.
/// let result2 = cache.get(1, || async { Ok::<_, ()>(99) }).await;
/// assert_eq!(result2, Ok(42));
/// # });
/// ```
pub struct Cache<K, V, E> {
    map: ShardsOf<Table<K, V, E>>,
    ttl: Option<Duration>,
    errors: ErrorPolicy,
    /// Whether `get` needs the clock at all (a TTL or `CachedFor`).
    timed: bool,
    /// Shared (not boxed) so an owned initializer can stamp its own result.
    clock: Arc<Box<dyn Clock>>,
    /// Shared (an `Arc`) so that an owned init can count its error itself.
    stats: Option<Arc<Counters>>,
    /// Negative control: one lock held across every initializer.
    #[cfg(any(lazyflight_break = "cache_global_lock", lazyflight_break_dynamic))]
    global: crate::sync::Mutex<()>,
}

impl<K, V, E> Cache<K, V, E> {
    /// An empty cache with the default options: errors cached until
    /// invalidated, no time-to-live, no statistics.
    #[must_use]
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder for the options.
    pub fn builder() -> CacheBuilder<K, V, E> {
        CacheBuilder {
            ttl: None,
            errors: ErrorPolicy::Cached,
            clock: None,
            stats: false,
            _types: core::marker::PhantomData,
        }
    }

    /// Number of keys with an entry: a cached value or error (expired ones
    /// included until they are next touched or
    /// [purged](Self::purge_expired)), or an init in flight.
    ///
    /// Locks each shard in turn, so it is not atomic across keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.iter().map(|s| s.lock().len()).sum()
    }

    /// Whether no key has an entry (see [`len`](Self::len)).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.iter().all(|s| s.lock().len() == 0)
    }

    /// Removes every entry. Inits in flight finish for their current callers
    /// only, as with [`invalidate`](Self::invalidate).
    ///
    /// # Panics
    ///
    /// If a key's, value's or error's `Drop` panics, every shard is still
    /// emptied and every other element still dropped; the first panic
    /// unwinds on afterwards.
    pub fn clear(&self) {
        /// An element of either of a shard's tables.
        enum Old<K, V, E> {
            Value((K, V)),
            Other(Slot<K, V, E>),
        }
        // `each`, twice: a panicking `Drop` costs no other element of its
        // shard its drop, and leaves no later shard full.
        each(self.map.iter(), |shard| {
            let (mut values, mut others) = {
                let mut t = shard.lock();
                // The hit count stays: statistics are not entries.
                (
                    core::mem::take(&mut t.values),
                    core::mem::take(&mut t.others),
                )
            };
            // Dropped outside the lock, each element's parts apart (see
            // `Slot::drop_apart`).
            let old = (values.drain().map(Old::Value)).chain(others.drain().map(Old::Other));
            each(old, |old| match old {
                Old::Value((key, value)) => drop_pair(key, value),
                Old::Other(slot) => slot.drop_apart(),
            });
        });
    }

    /// Removes every entry whose cached result has expired, and returns how
    /// many it removed.
    ///
    /// A `get` replaces an expired entry when it meets it, so expiry alone
    /// frees nothing: in a cache with a time-to-live (or
    /// [`ErrorPolicy::CachedFor`]) whose keys keep changing (sessions,
    /// request ids), entries nobody asks for again stay in memory and count
    /// in [`len`](Self::len) until they are invalidated or cleared. Call this
    /// from time to time (from a periodic task of your runtime, say) to give
    /// their memory back. Entries in flight and unexpired results stay. In a
    /// cache with nothing that expires it removes nothing and locks nothing.
    ///
    /// Reads the clock once, then locks each shard in turn (as
    /// [`clear`](Self::clear) does), so a result that expires meanwhile may
    /// stay until the next call. Removed keys, values and errors are dropped
    /// after their shard's lock is released. Runs no user code under a
    /// shard lock.
    ///
    /// # Panics
    ///
    /// If the clock panics, nothing is removed. If a removed key's, value's
    /// or error's `Drop` panics, every other removed element is still
    /// dropped (a key's value too, even when both panic), every shard is
    /// still purged, and the first panic unwinds on afterwards.
    ///
    /// # Examples
    ///
    /// ```
    /// # lazyflight::sync::future::block_on(async {
    /// use core::time::Duration;
    /// use lazyflight::{Cache, ManualClock};
    ///
    /// let clock = ManualClock::new();
    /// let sessions = Cache::<u64, String, ()>::builder()
    ///     .time_to_live(Duration::from_secs(60))
    ///     .clock(clock.clone())
    ///     .build();
    /// for id in 0..3 {
    ///     let _ = sessions.get(id, || async move { Ok(format!("session {id}")) }).await;
    /// }
    /// clock.advance(Duration::from_secs(30));
    /// let _ = sessions.get(3, || async { Ok("session 3".to_owned()) }).await;
    ///
    /// clock.advance(Duration::from_secs(30));
    /// // Sessions 0 to 2 are 60 s old: expired. Session 3 is 30 s old.
    /// assert_eq!(sessions.len(), 4);
    /// assert_eq!(sessions.purge_expired(), 3);
    /// assert_eq!(sessions.len(), 1);
    /// # });
    /// ```
    pub fn purge_expired(&self) -> usize {
        if !self.timed {
            // Nothing expires: values and errors stay until invalidated.
            return 0;
        }
        let now = self.now();
        let mut purged = 0;
        each(self.map.iter(), |shard| {
            let expired: Vec<Slot<K, V, E>> = {
                let mut t = shard.lock();
                // Only `others`: a timed cache keeps every result in its
                // entry, next to its stamp (`values` and stored errors are
                // for caches without expiry).
                let expired = t
                    .others
                    .extract_if(|slot| self.expired(&slot.state, now))
                    .collect();
                shrink_if_sparse(&mut t.others, |s| s.hash);
                expired
            };
            purged += expired.len();
            // Dropped outside the lock (see `Slot::drop_apart`).
            each(expired, Slot::drop_apart);
        });
        purged
    }

    /// Whether [`purge_expired`](Self::purge_expired) takes this slot out:
    /// a finished entry whose result is no longer served at `now`. An entry
    /// in flight (or empty, about to be led) stays.
    fn expired(&self, state: &SlotState<V, E>, now: Duration) -> bool {
        // Stored errors are kept only by caches without expiry.
        let SlotState::Pending(entry) = state else {
            return false;
        };
        let Some(done) = entry.get_result() else {
            // Negative control: an entry in flight is purged as well, so its
            // result is not stored.
            return broken!("cache_purge_in_flight");
        };
        !self.is_served(done, now)
    }

    /// The counters, if enabled with [`CacheBuilder::stats`].
    ///
    /// Locks each shard in turn to add up its hits (as [`len`](Self::len)
    /// does), so the snapshot is not atomic across keys, and like `len` it
    /// must not be called from a key's `Hash` or `Eq`, or a value's or
    /// error's `Clone`, of this cache: those run under a shard lock.
    #[must_use]
    pub fn stats(&self) -> Option<CacheStats> {
        self.stats.as_deref().map(|c| CacheStats {
            hits: self.map.iter().map(|s| s.lock().hits).sum(),
            misses: c.misses.load(Relaxed),
            inits: c.inits.load(Relaxed),
            coalesced: c.coalesced.load(Relaxed),
            errors: c.errors.load(Relaxed),
        })
    }

    #[inline]
    fn count(&self, which: impl FnOnce(&Counters) -> &AtomicU64) {
        if let Some(c) = self.stats.as_deref() {
            // Relaxed: a statistic.
            which(c).fetch_add(1, Relaxed);
        }
    }

    /// The clock reading, when anything in the cache depends on time.
    #[inline]
    fn now(&self) -> Duration {
        if self.timed {
            self.clock.now()
        } else {
            Duration::ZERO
        }
    }

    /// Whether a finished entry's result is still served at `now`: not a
    /// failed attempt under [`ErrorPolicy::SharedOnly`] (never served from
    /// the table), and not expired.
    #[inline]
    fn is_served(&self, done: Result<&Stamped<V>, &Stamped<E>>, now: Duration) -> bool {
        let (at, is_err) = match done {
            Ok(v) => (v.at, false),
            Err(e) => (e.at, true),
        };
        !(is_err && self.errors == ErrorPolicy::SharedOnly) && self.fresh(at, now, is_err)
    }

    /// Whether a cached result stamped `at` is still served at `now`.
    #[inline]
    fn fresh(&self, at: Duration, now: Duration, is_err: bool) -> bool {
        if broken!("cache_ttl_unchecked") {
            // Negative control: never expire.
            return true;
        }
        let age = now.saturating_sub(at);
        let ttl_ok = self.ttl.is_none_or(|ttl| age < ttl);
        match (is_err, self.errors) {
            (true, ErrorPolicy::CachedFor(d)) => ttl_ok && age < d,
            _ => ttl_ok,
        }
    }
}

impl<K: Hash + Eq, V: Clone, E: Clone> Cache<K, V, E> {
    /// The cached result for `key`, or the result of `init`, run at most once
    /// at a time per key for every caller that arrives meanwhile.
    ///
    /// * A cached, unexpired value (or error, per the [`ErrorPolicy`]) is
    ///   returned at once, cloned; `init` is not called.
    /// * Otherwise the caller joins the init in flight for `key`, or starts
    ///   one with its own `init`. Its `Ok` is stored; its `Err` is handled as
    ///   the error policy says. Every caller of one attempt gets its result.
    /// * If the running init is cancelled (its caller dropped) or panics, the
    ///   caller that has waited longest runs its own `init` next.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe. A waiting call that is dropped leaves nothing behind. A
    /// leading call that is dropped drops its `init` future; the next waiter
    /// takes over with its own `init` (no other caller is failed), or, with
    /// nobody waiting, the key's entry is removed and the next `get` starts
    /// afresh.
    ///
    /// # Panics
    ///
    /// A panic in `init` propagates to its caller and hands over as above.
    /// An `init` whose future awaits its own key (re-entrant) would wait for
    /// itself: the inner call panics instead. A panic in `K`'s `Hash` or
    /// `Eq`, or in the `Clone` of `V` or `E`, propagates to this caller (see
    /// the type's docs). Polling the returned future again after it
    /// completed panics.
    ///
    /// # Deadlocks
    ///
    /// An `init` that waits for its own key in a way the cache cannot see
    /// (through another task, through a combinator that polls it with a
    /// waker of its own, or by blocking inside the closure) never completes
    /// (as [`ALazy::get_or_init`](crate::ALazy::get_or_init)).
    ///
    /// # Examples
    ///
    /// ```
    /// # lazyflight::sync::future::block_on(async {
    /// use lazyflight::Cache;
    ///
    /// let cache = Cache::<&str, String, String>::new();
    /// let v = cache.get("greeting", || async { Ok("hello".to_owned()) }).await;
    /// assert_eq!(v.as_deref(), Ok("hello"));
    /// # });
    /// ```
    pub fn get<F, Fut>(
        &self,
        key: K,
        init: F,
    ) -> impl Future<Output = Result<V, E>> + use<'_, K, V, E, F, Fut>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        // A hand-written future rather than an `async fn`: a hit is answered
        // by its first poll, inline, without writing any state of the miss
        // path (see `Get`).
        Get {
            cache: self,
            phase: ManuallyDrop::new(GetPhase::Start(key, init)),
            make: Self::get_slow::<F, Fut>,
        }
    }

    /// [`get`](Self::get) once the look-up missed: wait on or lead `entry`.
    async fn get_slow<F, Fut>(&self, hash: u64, entry: Arc<Cell<V, E>>, init: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        self.count(|c| &c.misses);
        // Declared before the `get_or_init` future, so dropped after it: if
        // this caller is cancelled (or its init panics) and leaves the entry
        // with nothing to finish it, the entry goes too.
        let leaving = Abandoned::new(self, hash, entry);
        let entry = leaving.entry();
        let mut ran = false;
        let result = entry
            .get_or_init(|| {
                ran = true;
                self.count(|c| &c.inits);
                #[cfg(any(lazyflight_break = "cache_global_lock", lazyflight_break_dynamic))]
                let held = broken!("cache_global_lock").then(|| self.global.lock());
                let attempt = init();
                async move {
                    #[cfg(any(lazyflight_break = "cache_global_lock", lazyflight_break_dynamic))]
                    let _held = held;
                    let result = attempt.await;
                    let at = self.now();
                    match result {
                        Ok(value) => Ok(Stamped { value, at }),
                        Err(value) => {
                            self.count(|c| &c.errors);
                            // Out of the table before the error is
                            // published: only this attempt's callers see it.
                            self.remove_shared_only_error(hash, entry);
                            Err(Stamped { value, at })
                        }
                    }
                }
            })
            .await;
        if result.is_err() && !ran {
            // The error may come from an owned init (`get_owned`), which
            // cannot reach the table before publishing; its callers remove
            // the entry, and so does this one, in case they are gone.
            self.remove_shared_only_error(hash, entry);
        }
        let out = self.finish(ran, result);
        leaving.finished();
        out
    }

    /// Like [`get`](Self::get), but the initializer is moved into the key's
    /// entry, so it does not depend on the caller that started it: whichever
    /// caller of the key is polled drives it. A leader that is parked (kept
    /// alive but never polled again) or cancelled cannot stall the others,
    /// and the init keeps its progress.
    ///
    /// That holds among `get_owned` callers. A [`get`](Self::get) caller of
    /// the same key can still stall them: a plain leader that is parked
    /// holds the init, and when a leader is cancelled the right to
    /// initialize goes to the longest-waiting plain caller, which may itself
    /// be parked or leaked. Use one of the two per key when callers may be
    /// parked.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping any caller, the one that started the init
    /// included, leaves the init in the entry for the others to drive.
    ///
    /// # Panics
    ///
    /// If the init panics, the panic surfaces in the caller polling it at
    /// that moment and in the caller that started it; the others start over.
    /// Otherwise as for [`get`](Self::get).
    ///
    /// # Deadlocks
    ///
    /// As for [`get`](Self::get): an init that awaits its own key panics,
    /// and one that waits for it through another task never completes.
    ///
    /// # Examples
    ///
    /// ```
    /// # lazyflight::sync::future::block_on(async {
    /// use lazyflight::Cache;
    ///
    /// let cache = Cache::<u8, String, String>::new();
    /// let v = cache.get_owned(1, || async { Ok("owned".to_owned()) }).await;
    /// assert_eq!(v.as_deref(), Ok("owned"));
    /// # });
    /// ```
    pub fn get_owned<F, Fut>(
        &self,
        key: K,
        init: F,
    ) -> impl Future<Output = Result<V, E>> + use<'_, K, V, E, F, Fut>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        V: Send + 'static,
        E: Send + 'static,
    {
        // The same future as `get`'s, with the owned miss path.
        Get {
            cache: self,
            phase: ManuallyDrop::new(GetPhase::Start(key, init)),
            make: Self::get_owned_slow::<F, Fut>,
        }
    }

    /// [`get_owned`](Self::get_owned) once the look-up missed.
    async fn get_owned_slow<F, Fut>(
        &self,
        hash: u64,
        entry: Arc<Cell<V, E>>,
        init: F,
    ) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>> + Send + 'static,
        V: Send + 'static,
        E: Send + 'static,
    {
        self.count(|c| &c.misses);
        // As in `get_slow`: a caller that leaves the entry empty (its init
        // or init closure panicked, or it waited behind a `get` leader that
        // was cancelled) takes it out of the table.
        let leaving = Abandoned::new(self, hash, entry);
        let entry = leaving.entry();
        let mut ran = false;
        let result = entry
            .get_or_init_owned(|| {
                ran = true;
                self.count(|c| &c.inits);
                let attempt = init();
                let clock = self.timed.then(|| self.clock.clone());
                // Counted by the init itself: whoever drives it to its end,
                // even if the caller that started it is gone.
                let stats = self.stats.clone();
                async move {
                    let result = attempt.await;
                    let at = clock.map_or(Duration::ZERO, |c| c.now());
                    match result {
                        Ok(value) => Ok(Stamped { value, at }),
                        Err(value) => {
                            if let Some(c) = stats {
                                // Relaxed: a statistic.
                                c.errors.fetch_add(1, Relaxed);
                            }
                            Err(Stamped { value, at })
                        }
                    }
                }
            })
            .await;
        // Negative control `cache_owned_shared_only_kept`: the failed owned
        // entry is left in the table.
        if result.is_err() && !broken!("cache_owned_shared_only_kept") {
            // The owned init cannot reach the table, so the error is
            // published first; `lookup` never serves a SharedOnly error
            // from the table, and this removes it (by identity; every
            // caller of the attempt tries, the first one succeeds).
            self.remove_shared_only_error(hash, entry);
        }
        let out = self.finish(ran, result);
        leaving.finished();
        out
    }

    #[inline]
    fn finish(&self, ran: bool, result: Result<&Stamped<V>, &Stamped<E>>) -> Result<V, E> {
        if !ran {
            self.count(|c| &c.coalesced);
        }
        match result {
            Ok(v) => Ok(v.value.clone()),
            Err(e) => Err(e.value.clone()),
        }
    }

    /// The rest of a look-up, after [`Get`]'s poll missed [`Table::values`]
    /// (under the same lock): the key has a stored error, an
    /// entry (whose result may be served, stored or expired), or nothing
    /// (an entry is inserted). Called from [`Get::miss`], out of line.
    fn lookup_slow(
        &self,
        hash: u64,
        key: K,
        now: Duration,
        // Last: parameters are dropped in reverse order, so on any way out
        // the lock goes before `key` (user code) is dropped.
        table: MutexGuard<'_, Table<K, V, E>>,
    ) -> Result<Result<V, E>, Arc<Cell<V, E>>> {
        // What the look-up takes out of the table, and the first of the two
        // clones a first hit makes: declared before the guard is bound again
        // below, so that they are dropped after it on every way out, also
        // when the second clone panics.
        let mut old = None;
        let mut first_clone = None;
        let mut hash_panicked = None;
        let mut table = table;
        let t = &mut *table;
        let out = match t.others.find_entry(hash, |s| s.key == key) {
            Err(_) => match self.insert(t, hash, key) {
                Ok(entry) => Some(Err(entry)),
                Err(panicked) => {
                    hash_panicked = Some(panicked);
                    None
                }
            },
            Ok(mut found) => Some({
                // Negative control: the caller's key is dropped under the
                // lock.
                if broken!("cache_drop_key_under_lock") {
                    drop(key);
                }
                let state = &mut found.get_mut().state;
                match state {
                    SlotState::Error(e) => Ok(Err(e.clone())),
                    SlotState::Pending(entry) => match entry.get_result() {
                        // In flight or empty: wait on it or lead it.
                        None => Err(entry.clone()),
                        // A SharedOnly error is never stored (see `get_owned`):
                        // start afresh.
                        Some(Err(_)) if self.errors == ErrorPolicy::SharedOnly => {
                            Err(Self::renew(state, &mut old))
                        }
                        // The result stays in the entry, next to its stamp.
                        Some(done) if self.timed => match self.serve(done, now) {
                            Some(hit) => Ok(hit),
                            // Expired: start afresh.
                            None => Err(Self::renew(state, &mut old)),
                        },
                        // No expiry: copy the result into the table once; the
                        // entry goes.
                        Some(Err(e)) => {
                            first_clone = Some(Err(e.value.clone()));
                            let stored = SlotState::Error(e.value.clone());
                            old = Some(core::mem::replace(state, stored));
                            Ok(first_clone.take().expect("just set"))
                        }
                        Some(Ok(v)) => {
                            first_clone = Some(Ok(v.value.clone()));
                            let value = v.value.clone();
                            let (Slot { key, state, .. }, _) = found.remove();
                            old = Some(state);
                            // Room was kept for it (see `insert`): the
                            // hasher is not called. (Were it, it would hash
                            // the stored keys as before; test builds stop.)
                            t.values.insert_unique(hash, (key, value), |(k, _)| {
                                debug_assert!(false, "room was kept for every promotion");
                                self.map.hash(k)
                            });
                            // A hit allocates nothing, so a table of
                            // entries left sparse by promotions is shrunk
                            // by the next miss (`insert`); only an emptied
                            // one is freed here.
                            free_if_empty(&mut t.others);
                            Ok(first_clone.take().expect("just set"))
                        }
                    },
                }
            }),
        };
        if matches!(out, Some(Ok(_))) && self.stats.is_some() {
            table.hits = table.hits.wrapping_add(1);
        }
        drop(table);
        drop(old);
        drop(first_clone);
        match out {
            Some(out) => out,
            None => hash_panicked
                .expect("no result only after a panicking `Hash`")
                .resume(),
        }
    }

    /// A miss on an absent key: inserts a fresh entry for it.
    ///
    /// In a cache without expiry, also keeps room in [`Table::values`] for
    /// every key of [`Table::others`], so that the look-up which later copies
    /// a result into `values` never grows it: hits allocate nothing, that
    /// first one included. (Only promotions insert into `values`, each one
    /// for a key that leaves `others`; removals never take room away.)
    ///
    /// If a stored key's `Hash` panics while `values` grows, nothing is
    /// inserted: the caller's key, the keys taken out and the panics come
    /// back (see [`reserve_values`](Self::reserve_values)).
    #[cold]
    #[inline(never)]
    fn insert(
        &self,
        t: &mut Table<K, V, E>,
        hash: u64,
        key: K,
    ) -> Result<Arc<Cell<V, E>>, HashPanicked<K, V>> {
        if !self.timed {
            // Before the insert: if `K`'s `Hash` panics while `values` is
            // rehashed, nothing was inserted that the room is missing for.
            let additional = t.others.len() + 1;
            if let Err((lost, panics)) = self.reserve_values(&mut t.values, additional) {
                return Err(HashPanicked { key, lost, panics });
            }
        }
        // Where promotions left the table of entries sparse (see
        // `lookup_slow`), give its memory back.
        shrink_if_sparse(&mut t.others, |s| s.hash);
        let entry = Arc::new(ALazy::new());
        let state = SlotState::Pending(entry.clone());
        t.others
            .insert_unique(hash, Slot { hash, key, state }, |s| s.hash);
        Ok(entry)
    }

    /// Makes room in [`Table::values`] for `additional` more keys, or, if it
    /// keeps far more room than that, shrinks it to twice what it needs. Its
    /// slots keep no hash (a hit reads key and value only), so resizing it
    /// hashes every stored key: user code. A panic there is caught inside the
    /// hasher rather than let unwind through the table (which would drop,
    /// under the lock, every slot not yet moved, and abort the process if
    /// one of those drops panicked too); the table is then rebuilt from
    /// scratch, the keys whose `Hash` panics again taken out of it. Returns
    /// those keys with their values and the panics, for the caller to drop
    /// and resume outside the lock.
    fn reserve_values(
        &self,
        values: &mut HashTable<(K, V)>,
        additional: usize,
    ) -> Result<(), Evicted<K, V>> {
        let panics = core::cell::RefCell::new(Vec::new());
        let hash = |k: &K| {
            catch_unwind(AssertUnwindSafe(|| self.map.hash(k))).unwrap_or_else(|payload| {
                panics.borrow_mut().push(payload);
                0
            })
        };
        let needed = values.len() + additional;
        if too_roomy(values, needed) {
            // The room kept for keys that were in flight together and stored
            // nothing (cancelled, invalidated, failed under `SharedOnly`)
            // while other values stayed: given back at the shard's next
            // miss, as for the table of entries (see `insert`).
            values.shrink_to(needed * 2, |(k, _)| hash(k));
        } else {
            values.reserve(additional, |(k, _)| hash(k));
        }
        if panics.borrow().is_empty() {
            return Ok(());
        }
        // Some keys went in under a made-up hash: place every key afresh.
        let old = core::mem::take(values);
        let mut fresh = HashTable::with_capacity(old.len() + additional);
        let mut lost = Vec::new();
        for (k, v) in old {
            let before = panics.borrow().len();
            let h = hash(&k);
            if panics.borrow().len() == before {
                // Room was made for every key: the hasher is not called.
                fresh.insert_unique(h, (k, v), |_| unreachable!("room was made"));
            } else {
                lost.push((k, v));
            }
        }
        *values = fresh;
        Err((lost, panics.into_inner()))
    }

    /// Replaces the entry in `state` with a fresh one, returned; the old
    /// state goes to `old`, for the caller to drop outside the lock.
    fn renew(state: &mut SlotState<V, E>, old: &mut Option<SlotState<V, E>>) -> Arc<Cell<V, E>> {
        let fresh = Arc::new(ALazy::new());
        *old = Some(core::mem::replace(state, SlotState::Pending(fresh.clone())));
        fresh
    }

    /// A finished entry's result, cloned, if it is still served at `now`
    /// (see [`is_served`](Self::is_served)).
    #[inline]
    fn serve(&self, done: Result<&Stamped<V>, &Stamped<E>>, now: Duration) -> Option<Result<V, E>> {
        self.is_served(done, now).then(|| match done {
            Ok(v) => Ok(v.value.clone()),
            Err(e) => Err(e.value.clone()),
        })
    }

    /// Under [`ErrorPolicy::SharedOnly`], removes the entry of an attempt
    /// that failed (see [`remove_entry`](Self::remove_entry)): its error is
    /// never stored.
    fn remove_shared_only_error(&self, hash: u64, entry: &Arc<Cell<V, E>>) {
        // Negative control `cache_drop_cached_error`: every policy drops a
        // failed attempt's entry, so the default policy retries instead of
        // serving the cached error.
        if (self.errors == ErrorPolicy::SharedOnly && !broken!("cache_store_shared_error"))
            || broken!("cache_drop_cached_error")
        {
            self.remove_entry(hash, entry);
        }
    }

    /// Removes `entry` from the table if it is still the one for its key.
    fn remove_entry(&self, hash: u64, entry: &Arc<Cell<V, E>>) {
        let removed = self.map.shard(hash).lock().take_entry(hash, entry);
        if let Some(slot) = removed {
            slot.drop_apart();
        }
    }

    /// The cached, unexpired result for `key`, without initializing or
    /// waiting. `None` if there is none or an init is in flight.
    ///
    /// # Examples
    ///
    /// ```
    /// # lazyflight::sync::future::block_on(async {
    /// use lazyflight::Cache;
    ///
    /// let cache = Cache::<u8, u8, ()>::new();
    /// assert_eq!(cache.peek(&1), None);
    /// let _ = cache.get(1, || async { Ok(2) }).await;
    /// assert_eq!(cache.peek(&1), Some(Ok(2)));
    /// # });
    /// ```
    #[must_use]
    pub fn peek<Q>(&self, key: &Q) -> Option<Result<V, E>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.map.hash(key);
        let now = self.now();
        let table = self.map.shard(hash).lock();
        if let Some((_, v)) = table.values.find(hash, |(k, _)| k.borrow() == key) {
            return Some(Ok(v.clone()));
        }
        let slot = table.others.find(hash, |s| s.key.borrow() == key)?;
        let done = match &slot.state {
            SlotState::Error(e) => return Some(Err(e.clone())),
            SlotState::Pending(entry) => entry.get_result()?,
        };
        self.serve(done, now)
    }

    /// Removes `key`'s entry and returns whether there was one.
    ///
    /// If its init is in flight, its current callers still get that result,
    /// it is not stored, and the next `get` starts a fresh init.
    ///
    /// # Panics
    ///
    /// A panic in `K`'s `Hash` or `Eq`, or in the `Drop` of the removed key,
    /// value or error, propagates to the caller (the key's, if both the key's
    /// and the value's panic; the other is caught).
    ///
    /// # Examples
    ///
    /// ```
    /// # lazyflight::sync::future::block_on(async {
    /// use lazyflight::Cache;
    ///
    /// let cache = Cache::<u8, u8, ()>::new();
    /// let _ = cache.get(1, || async { Ok(1) }).await;
    /// assert!(cache.invalidate(&1));
    /// assert_eq!(cache.get(1, || async { Ok(2) }).await, Ok(2));
    /// # });
    /// ```
    pub fn invalidate<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.map.hash(key);
        let (found, removed) = {
            let mut table = self.map.shard(hash).lock();
            let stored = if broken!("cache_invalidate_skips_values") {
                // Negative control: only entries and errors are looked for.
                Err(())
            } else {
                table
                    .values
                    .find_entry(hash, |(k, _)| k.borrow() == key)
                    .map_err(drop)
            };
            if let Ok(found) = stored {
                let (key, value) = found.remove().0;
                table.trim_room();
                drop(table);
                // The key and the value are dropped outside the lock.
                drop_pair(key, value);
                return true;
            }
            match table.others.find_entry(hash, |s| s.key.borrow() == key) {
                // Negative control: an entry in flight stays in the table.
                Ok(found)
                    if broken!("cache_keep_invalidated")
                        && matches!(&found.get().state, SlotState::Pending(e) if e.get_result().is_none()) =>
                {
                    (true, None)
                }
                Ok(found) => {
                    let removed = found.remove().0;
                    shrink_if_sparse(&mut table.others, |s| s.hash);
                    table.trim_room();
                    (true, Some(removed))
                }
                Err(_) => (false, None),
            }
        };
        // The key and the entry are dropped outside the lock.
        if let Some(slot) = removed {
            slot.drop_apart();
        }
        found
    }
}

impl<K, V, E> Default for Cache<K, V, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, E> fmt::Debug for Cache<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("len", &self.len())
            .field("ttl", &self.ttl)
            .field("errors", &self.errors)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Options for a [`Cache`]; from [`Cache::builder`].
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use lazyflight::{Cache, ErrorPolicy, ManualClock};
///
/// let clock = ManualClock::new();
/// let cache = Cache::<String, Vec<u8>, String>::builder()
///     .time_to_live(Duration::from_secs(60))
///     .errors(ErrorPolicy::SharedOnly)
///     .clock(clock.clone())
///     .stats(true)
///     .build();
/// assert!(cache.is_empty());
/// ```
#[must_use = "a builder does nothing until `build`"]
pub struct CacheBuilder<K, V, E> {
    ttl: Option<Duration>,
    errors: ErrorPolicy,
    clock: Option<Box<dyn Clock>>,
    stats: bool,
    _types: Types<K, V, E>,
}

/// Ties a builder to its cache's types without owning any of them.
type Types<K, V, E> = core::marker::PhantomData<fn() -> (K, V, E)>;

impl<K, V, E> CacheBuilder<K, V, E> {
    /// Cached values (and errors) expire this long after their init
    /// finished; the next `get` then starts a fresh init. Default: never.
    ///
    /// Expired entries are not swept in the background: each keeps its
    /// memory until a `get` of its key replaces it, or it is invalidated or
    /// cleared. With many keys that are never asked for again, call
    /// [`Cache::purge_expired`] from time to time to reclaim them.
    pub fn time_to_live(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// What to do with an init's error. Default: [`ErrorPolicy::Cached`].
    pub fn errors(mut self, policy: ErrorPolicy) -> Self {
        self.errors = policy;
        self
    }

    /// The clock for expiry. Default: [`SystemClock`].
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Box::new(clock));
        self
    }

    /// Keep counters (see [`Cache::stats`]). Default: off, and then they cost
    /// one predictable branch per event. On, hits are counted per shard
    /// under the lock a hit takes anyway, so they cost no shared write: a
    /// hit measured 1.04x its cost without counters on one thread and 1.00x
    /// on two (docs/benchmarks.md, `cache_stats`).
    pub fn stats(mut self, on: bool) -> Self {
        self.stats = on;
        self
    }

    /// The cache.
    pub fn build(self) -> Cache<K, V, E> {
        let timed = self.ttl.is_some() || matches!(self.errors, ErrorPolicy::CachedFor(_));
        Cache {
            map: ShardsOf::new(),
            ttl: self.ttl,
            errors: self.errors,
            timed,
            clock: Arc::new(self.clock.unwrap_or_else(|| Box::new(SystemClock::new()))),
            stats: self.stats.then(|| {
                Arc::new(Counters {
                    misses: AtomicU64::new(0),
                    inits: AtomicU64::new(0),
                    coalesced: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                })
            }),
            #[cfg(any(lazyflight_break = "cache_global_lock", lazyflight_break_dynamic))]
            global: crate::sync::Mutex::new(()),
        }
    }
}

impl<K, V, E> fmt::Debug for CacheBuilder<K, V, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("ttl", &self.ttl)
            .field("errors", &self.errors)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<K, V, E> Cache<K, V, E> {
    /// Removes `entry` (by identity) if nobody will finish it: nobody but the
    /// table and the caller holds it, and it is empty (no result, no init
    /// running). Takes the caller's reference: if the entry stays, that
    /// reference is let go of under the shard lock.
    ///
    /// The count is read first. References to an entry are only handed out
    /// under its shard lock, so under that lock a count of two cannot grow:
    /// nobody else can reach the entry, so its state cannot change any more.
    /// Read the other way round, a holder could fill the entry and let go of
    /// it between the two reads, and a filled entry would be removed.
    ///
    /// Callers that abandon the same entry at once let go of their references
    /// in the order they take the lock, each before unlocking: the last of
    /// them sees a count of two. (Let go of after unlocking, two callers
    /// cancelled at once could each see the other's reference and both
    /// leave the empty entry in the table.)
    fn remove_if_abandoned(&self, hash: u64, entry: Arc<Cell<V, E>>) {
        let mut table = self.map.shard(hash).lock();
        // Negative control: the state is read before the count.
        let empty_first =
            broken!("cache_abandon_state_first").then(|| entry.state() == State::Empty);
        if Arc::strong_count(&entry) == 2 {
            // Acquire: the count was read `Relaxed` (`Arc::strong_count`),
            // and the last other holder let go with a `Release` decrement (or
            // under this lock); what it did to the entry before (filling it)
            // is seen below. (loom does not model the count as an atomic: the
            // models check the order of the two reads, not this fence.)
            fence(Acquire);
            let empty = empty_first.unwrap_or_else(|| entry.state() == State::Empty);
            if empty {
                let removed = table.take_entry(hash, &entry);
                drop(table);
                // The stored key (user code), on a path that an init's
                // panic takes.
                crate::unwind::dropped(removed);
                return;
            }
        }
        // Negative control `cache_abandon_release_after_unlock`: every
        // caller lets go after unlocking.
        let entry =
            if !broken!("cache_abandon_release_after_unlock") && table.holds_entry(hash, &entry) {
                // The table's reference outlives this one: not the last, so no
                // `Drop` of a value or error runs under the lock.
                drop(entry);
                None
            } else {
                Some(entry)
            };
        drop(table);
        crate::unwind::dropped(entry);
    }
}

/// Drops the key's entry if a `get` leaves it abandoned (see
/// `Cache::remove_if_abandoned`), and with it the caller's reference to the
/// entry; disarmed by [`Abandoned::finished`].
struct Abandoned<'c, K, V, E> {
    cache: &'c Cache<K, V, E>,
    hash: u64,
    /// `None` once finished.
    entry: Option<Arc<Cell<V, E>>>,
}

impl<'c, K, V, E> Abandoned<'c, K, V, E> {
    fn new(cache: &'c Cache<K, V, E>, hash: u64, entry: Arc<Cell<V, E>>) -> Self {
        Abandoned {
            cache,
            hash,
            entry: Some(entry),
        }
    }

    fn entry(&self) -> &Arc<Cell<V, E>> {
        self.entry.as_ref().expect("armed until finished")
    }

    /// The caller finished: the entry holds a result (or was taken out of
    /// the table on purpose), nothing to check.
    fn finished(mut self) {
        drop(self.entry.take());
    }
}

impl<K, V, E> Drop for Abandoned<'_, K, V, E> {
    fn drop(&mut self) {
        if let Some(entry) = self.entry.take() {
            self.cache.remove_if_abandoned(self.hash, entry);
        }
    }
}

/// The future of [`Cache::get`] and [`Cache::get_owned`].
///
/// Its first poll does the look-up inline up to the probe of
/// [`Table::values`]: a hit is one lock, one probe and a clone, and writes
/// nothing to the future but its phase. Everything else continues in
/// [`Get::miss`], out of line and under the same lock; a miss builds the
/// miss path's future (`get_slow` or `get_owned_slow`, an `async fn`), moves
/// it into the phase before its first poll, and polls it from then on, out
/// of line too. (As an `async fn`, `get` kept its progress, its drop flags
/// and the look-up's three-way result in its own memory, and a hit wrote and
/// read them all.)
///
/// Polling it again after `Ready` (or after a panic in user code) panics, as
/// an `async fn`'s future does.
struct Get<'a, K, V, E, F, S, M> {
    cache: &'a Cache<K, V, E>,
    /// Dropped by hand in `Drop`: `Start` inline, `Slow` out of line.
    phase: ManuallyDrop<GetPhase<K, F, S>>,
    /// Builds the miss path's future: `Cache::get_slow` or
    /// `Cache::get_owned_slow`, a zero-sized function item (its return type
    /// cannot be named, only inferred).
    make: M,
}

enum GetPhase<K, F, S> {
    /// Not polled yet: the caller's key and init. Not pinned.
    Start(K, F),
    /// The miss path, structurally pinned: never moved once written.
    Slow(S),
    /// Answered by the look-up, or between the two phases.
    Gone,
}

impl<K, F, S> GetPhase<K, F, S> {
    /// Moves the key and init out of `Start`, leaving `Gone`. (Not
    /// `mem::replace`, which would copy the whole phase, the size of the miss
    /// path's future, on every hit.)
    #[inline(always)]
    fn take_start(&mut self) -> (K, F) {
        let GetPhase::Start(key, init) = self else {
            unreachable!("taken from the first poll only")
        };
        // SAFETY: both are read once, and the phase is overwritten (without
        // being dropped) before anything else can see it; nothing in between
        // can panic.
        unsafe {
            let taken = (ptr::read(key), ptr::read(init));
            ptr::write(self, GetPhase::Gone);
            taken
        }
    }
}

impl<'a, K, V, E, F, S, M> Get<'a, K, V, E, F, S, M>
where
    K: Hash + Eq,
    V: Clone,
    E: Clone,
    S: Future<Output = Result<V, E>>,
    M: Fn(&'a Cache<K, V, E>, u64, Arc<Cell<V, E>>, F) -> S,
{
    /// The first poll, once `values` missed: the rest of the look-up under
    /// the same lock, then, unless that answered, the miss path.
    #[inline(never)]
    fn miss(
        &mut self,
        hash: u64,
        now: Duration,
        table: MutexGuard<'a, Table<K, V, E>>,
        key: K,
        init: F,
        cx: &mut Context<'_>,
    ) -> Poll<Result<V, E>> {
        let cache = self.cache;
        match cache.lookup_slow(hash, key, now, table) {
            Ok(hit) => Poll::Ready(hit),
            Err(entry) => {
                *self.phase = GetPhase::Slow((self.make)(cache, hash, entry, init));
                self.poll_slow(cx)
            }
        }
    }

    /// A later poll: the miss path's.
    #[cold]
    #[inline(never)]
    fn poll_slow(&mut self, cx: &mut Context<'_>) -> Poll<Result<V, E>> {
        match &mut *self.phase {
            // SAFETY: pinned in place: `Slow` is written once, never moved
            // out, and dropped in place (see `Drop`).
            GetPhase::Slow(slow) => unsafe { Pin::new_unchecked(slow) }.poll(cx),
            GetPhase::Start(..) => unreachable!("the first poll handles `Start`"),
            GetPhase::Gone => {
                panic!("a `Cache::get` / `get_owned` future polled after it completed or panicked")
            }
        }
    }
}

impl<'a, K, V, E, F, S, M> Future for Get<'a, K, V, E, F, S, M>
where
    K: Hash + Eq,
    V: Clone,
    E: Clone,
    S: Future<Output = Result<V, E>>,
    M: Fn(&'a Cache<K, V, E>, u64, Arc<Cell<V, E>>, F) -> S,
{
    type Output = Result<V, E>;

    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<V, E>> {
        // SAFETY: only `GetPhase::Slow` is structurally pinned, and nothing
        // here or in `miss` / `poll_slow` moves it: `phase` is written only
        // while it is `Start` (`take_start`) or `Gone` (`miss`, which moves
        // the miss path's future in before its first poll).
        let this = unsafe { self.get_unchecked_mut() };
        // Through `&mut`: a shared reference to the whole phase, taken while
        // it is `Slow`, would assert that nothing in the miss path's future
        // is borrowed mutably, which its own self-references are (Miri's
        // Stacked Borrows reports it).
        if !matches!(&mut *this.phase, GetPhase::Start(..)) {
            return this.poll_slow(cx);
        }
        // Taken out first, so that the look-up works on locals: the future's
        // own memory is written once, here (the `Gone` tag).
        let (key, init) = this.phase.take_start();
        let cache = this.cache;
        let hash = cache.map.hash(&key);
        // Read before the lock: the clock is user code.
        let now = cache.now();
        let mut table = cache.map.shard(hash).lock();
        let Some((_, v)) = table.values.find(hash, |(k, _)| *k == key) else {
            // Negative control `cache_lookup_relocks`: `others` is probed
            // in a critical section of its own, after `values`.
            #[cfg(any(lazyflight_break = "cache_lookup_relocks", lazyflight_break_dynamic))]
            let table = if broken!("cache_lookup_relocks") {
                drop(table);
                cache.map.shard(hash).lock()
            } else {
                table
            };
            return this.miss(hash, now, table, key, init, cx);
        };
        let hit = v.clone();
        if cache.stats.is_some() {
            table.hits = table.hits.wrapping_add(1);
        }
        if broken!("cache_hit_drops_key_under_lock") {
            // Negative control: on a hit, the caller's key is dropped under
            // the lock.
            drop(key);
            drop(table);
        } else {
            drop(table);
            // The caller's key and init (user code) are dropped outside the
            // lock.
            drop(key);
        }
        drop(init);
        Poll::Ready(Ok(hit))
    }
}

impl<K, V, E, F, S, M> Drop for Get<'_, K, V, E, F, S, M> {
    #[inline(always)]
    fn drop(&mut self) {
        match &mut *self.phase {
            // SAFETY: dropped once, here; `phase` is not used again.
            GetPhase::Start(..) => unsafe { ManuallyDrop::drop(&mut self.phase) },
            GetPhase::Slow(_) => crate::alazy::drop_slow(&mut self.phase),
            GetPhase::Gone => {}
        }
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;
    use crate::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use core::hash::Hasher;

    /// While set, a poisoned key's `Hash` and `Drop` panic.
    static ARMED: AtomicBool = AtomicBool::new(false);
    static POISONED_DROPS: AtomicUsize = AtomicUsize::new(0);

    /// Equal and hashed by `id`; a poisoned one panics in `Hash` and `Drop`
    /// while [`ARMED`].
    struct Key {
        id: u32,
        poisoned: bool,
    }

    impl PartialEq for Key {
        fn eq(&self, other: &Self) -> bool {
            self.id == other.id
        }
    }

    impl Eq for Key {}

    impl Hash for Key {
        fn hash<H: Hasher>(&self, h: &mut H) {
            if self.poisoned && ARMED.load(SeqCst) {
                panic!("Hash of a poisoned key");
            }
            self.id.hash(h);
        }
    }

    impl Drop for Key {
        fn drop(&mut self) {
            if self.poisoned {
                POISONED_DROPS.fetch_add(1, SeqCst);
                if ARMED.load(SeqCst) {
                    panic!("Drop of a poisoned key");
                }
            }
        }
    }

    /// A table of values that the next `reserve` rehashes in place, every
    /// stored key hashed again, with a stored key whose `Hash` then panics:
    /// that key alone leaves the table (handed back, not dropped under the
    /// lock), and every other key is found by its hash afterwards.
    ///
    /// The table is built by hand, so that the in-place rehash is certain:
    /// 112 keys stored under one made-up hash fill slots 0..112 of 128 (no
    /// room left), and the keys in slots 16..96 are removed: each has full
    /// groups on both sides, so it leaves a tombstone, which gives no room
    /// back. 32 keys stay, well under half the capacity, so `reserve(1)`
    /// rehashes in place rather than grow. Plain `reserve`, with `K`'s
    /// `Hash` unwinding through it, drops the keys it has not yet moved (the
    /// `Drop` of the poisoned one then panics during that unwind, which
    /// aborts the process).
    #[test]
    fn a_key_whose_hash_panics_in_an_in_place_rehash_leaves_alone() {
        let cache = Cache::<Key, u32, ()>::new();
        let mut values = HashTable::with_capacity(112);
        assert_eq!(values.capacity(), 112, "128 slots");
        for id in 0..112 {
            let key = Key {
                id,
                poisoned: id == 100,
            };
            values.insert_unique(0, (key, id), |_| unreachable!("room was made"));
        }
        for id in 16..96 {
            let found = values.find_entry(0, |(k, _)| k.id == id);
            drop(found.ok().expect("stored").remove());
        }
        ARMED.store(true, SeqCst);
        let rehashed =
            std::panic::catch_unwind(AssertUnwindSafe(|| cache.reserve_values(&mut values, 1)));
        let (lost, panics) = rehashed
            .expect("no panic unwinds through the table")
            .expect_err("the poisoned key's `Hash` panicked");
        ARMED.store(false, SeqCst);
        assert!(!panics.is_empty());
        assert_eq!(
            panics[0].downcast_ref::<&str>(),
            Some(&"Hash of a poisoned key")
        );
        assert_eq!(
            POISONED_DROPS.load(SeqCst),
            0,
            "nothing dropped under the lock"
        );
        let lost: Vec<u32> = lost.iter().map(|(k, _)| k.id).collect();
        assert_eq!(lost, [100]);
        assert_eq!(values.len(), 31);
        for id in (0..16).chain(96..112).filter(|&id| id != 100) {
            let key = Key {
                id,
                poisoned: false,
            };
            let found = values.find(cache.map.hash(&key), |(k, _)| *k == key);
            assert_eq!(found.map(|(_, v)| *v), Some(id), "key {id} is found");
        }
        // Room for one more, as asked.
        assert!(values.capacity() > values.len());
    }
}
