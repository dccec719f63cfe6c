//! A sharded hash table on the shim's [`Mutex`], shared by `Group` and `Cache`.
//!
//! Each shard is one or more [`hashbrown::HashTable`]s behind its own lock.
//! Entries are stored by a hash the caller computes once per operation; the
//! shard is chosen from bits 32..38 of that hash, which `HashTable` uses
//! neither for its bucket index (low bits) nor for its control bytes (top
//! seven bits), so the shards do not degrade the tables' probing.
//!
//! Critical sections are short and run no user code but `K`'s `Eq` and
//! `Borrow` (and, in `Cache`, `K`'s `Hash` and the clone of a cached value;
//! `Group`'s slots keep their hash): callers move whatever
//! leaves a table out of the lock before dropping it, so a key never waits
//! behind another key's work.
//!
//! Under `--cfg loom` / `--cfg shuttle` the table has two shards and a fixed
//! hash seed, so that every model run takes the same path (loom checks that
//! executions are deterministic).

use core::hash::{BuildHasher, Hash};

use hashbrown::HashTable;

use crate::sync::Mutex;

#[cfg(not(any(loom, shuttle)))]
type Seed = foldhash::fast::RandomState;
#[cfg(any(loom, shuttle))]
type Seed = foldhash::fast::FixedState;

#[cfg(not(any(loom, shuttle)))]
const SHARDS: usize = 64;
#[cfg(any(loom, shuttle))]
const SHARDS: usize = 2;

/// One shard, on its own cache lines so that two threads locking
/// neighbouring shards do not contend on the same line.
#[repr(align(128))]
pub(crate) struct Shard<S>(pub(crate) Mutex<S>);

/// `SHARDS` locks, each guarding one `S` (a shard's hash tables, with some
/// per-shard bookkeeping next to them in `Group`), and the hasher that picks
/// the shard.
pub(crate) struct ShardsOf<S> {
    hasher: Seed,
    shards: Box<[Shard<S>]>,
}

impl<S: Default> ShardsOf<S> {
    pub(crate) fn new() -> Self {
        debug_assert!(SHARDS.is_power_of_two());
        Self {
            hasher: Seed::default(),
            shards: (0..SHARDS)
                .map(|_| Shard(Mutex::new(S::default())))
                .collect(),
        }
    }
}

impl<S> ShardsOf<S> {
    /// The hash every operation on `key` uses.
    #[inline]
    pub(crate) fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The shard that holds entries of hash `hash`.
    #[inline]
    pub(crate) fn shard(&self, hash: u64) -> &Mutex<S> {
        &self.shards[(hash >> 32) as usize & (SHARDS - 1)].0
    }

    /// Every shard, for whole-table operations (`len`, `clear`).
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Mutex<S>> {
        self.shards.iter().map(|s| &s.0)
    }
}

/// Capacity up to which a table is never shrunk: below it, giving memory
/// back would only trade it for allocations on the next few inserts.
const KEEP: usize = 16;

/// Gives a table's memory back after a burst: once at most a quarter of its
/// capacity (above [`KEEP`]) is in use, shrinks it to twice its length, so
/// that a table whose keys came and went does not keep the memory of its
/// peak for ever (`HashTable` never shrinks on its own). Called after a
/// removal, under the shard lock; `hash` must be the slots' stored hash, so
/// that no user code runs.
///
/// Amortized O(1) per removal: a shrink to twice the length `n` leaves
/// room for about `n` more inserts before the table grows, and the next
/// shrink needs the length under a quarter of the new size again; each
/// costs O(n).
///
/// Capacity is counted from the allocation ([`slots`]), not from
/// `HashTable::capacity`, which is the length plus the room left: removals
/// that leave tombstones use that room up, so an emptied table with
/// clustered hashes could report a capacity near its length and never
/// shrink.
#[inline]
pub(crate) fn shrink_if_sparse<T>(table: &mut HashTable<T>, hash: impl Fn(&T) -> u64) {
    if too_roomy(table, table.len()) {
        shrink(table, hash);
    }
}

/// Whether a table whose allocation holds more than [`KEEP`] slots would be
/// under a quarter full with `len` entries: the threshold at which the
/// shrinking functions give its memory back.
#[inline]
pub(crate) fn too_roomy<T>(table: &HashTable<T>, len: usize) -> bool {
    let capacity = slots(table);
    capacity > KEEP && len < capacity / 4
}

#[cold]
#[inline(never)]
fn shrink<T>(table: &mut HashTable<T>, hash: impl Fn(&T) -> u64) {
    let len = table.len();
    table.shrink_to(len * 2, hash);
}

/// Cuts an empty table's room down to `keep` entries (twice that, as
/// [`shrink_if_sparse`] does), once `keep` is under a quarter of its
/// capacity (above [`KEEP`]). For `Cache`'s table of values, which keeps
/// room for keys still in flight: emptied, it hashes nothing to shrink, so
/// no user code runs (it may allocate the smaller table).
#[inline]
pub(crate) fn shrink_empty<T>(table: &mut HashTable<T>, keep: usize) {
    debug_assert!(table.is_empty(), "only an empty table is shrunk unhashed");
    if too_roomy(table, keep) {
        table.shrink_to(keep * 2, |_| unreachable!("an empty table hashes nothing"));
    }
}

/// Frees an emptied table's memory, if it holds more than [`KEEP`] slots'
/// worth: the form of [`shrink_if_sparse`] for paths that must not allocate
/// (a cache's first hit), since freeing allocates nothing.
#[inline]
pub(crate) fn free_if_empty<T>(table: &mut HashTable<T>) {
    if table.is_empty() && slots(table) > KEEP {
        *table = HashTable::new();
    }
}

/// The slots a table's allocation holds, tombstones included: its buckets
/// less the share hashbrown keeps free (one of up to eight buckets, an
/// eighth above that).
#[inline]
fn slots<T>(table: &HashTable<T>) -> usize {
    let buckets = table.num_buckets();
    if buckets <= 8 {
        buckets.saturating_sub(1)
    } else {
        buckets / 8 * 7
    }
}
