//! Shared pieces of lazyflight's benchmarks (the benches themselves are in
//! `benches/`; results and the commands that produce them are in
//! `docs/benchmarks.md`).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// The baselines here are measured against std's own types on purpose; the
// shim discipline (clippy.toml) is for the library, which loom must see.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::cell::UnsafeCell;
use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};

/// Returns `r` unchanged, but the compiler can no longer see where it points:
/// a load through it cannot be hoisted out of a benchmark loop.
///
/// Unlike `std::hint::black_box`, it keeps the pointer in a register instead
/// of storing it to the stack: a store per iteration can alias (modulo 4 KiB)
/// with the cell being measured and slow its load down, which made one
/// contender or another 1.4-1.5x slower depending only on where the cells
/// happened to sit.
#[inline(always)]
// The asm never reads or writes through the pointer: it only hides its value.
#[allow(clippy::pointers_in_nomem_asm_block)]
pub fn opaque<T>(r: &T) -> &T {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let mut p: *const T = r;
        // SAFETY: an empty asm block: it reads and writes nothing but the
        // register holding `p`, which it leaves as it was.
        unsafe {
            std::arch::asm!("/* {0} */", inout(reg) p, options(nomem, nostack, preserves_flags))
        };
        // SAFETY: `p` is still `r`.
        unsafe { &*p }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        std::hint::black_box(r)
    }
}

/// Consumes `v` so that the computation producing it cannot be removed,
/// without storing it to memory (see [`opaque`]).
#[inline(always)]
pub fn sink(v: u64) {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    // SAFETY: an empty asm block that only reads the register holding `v`.
    unsafe {
        std::arch::asm!("/* {0} */", in(reg) v, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    std::hint::black_box(v);
}

/// The floor every once-cell's filled fast path is measured against: a
/// one-byte flag loaded with `Acquire`, a branch, and a reference to the
/// value. No waiting, no initialization protocol: only `set` from one thread
/// before sharing.
#[derive(Debug)]
pub struct RawCell<T> {
    filled: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once through `set` (which takes `&self` but
// refuses a second call) before the `Release` store, and only read after an
// `Acquire` load has seen that store; as `OnceLock`, it needs `T: Send + Sync`.
unsafe impl<T: Send + Sync> Sync for RawCell<T> {}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const FILLED: u8 = 2;

impl<T> RawCell<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        Self {
            filled: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Fills the cell. Panics if it was set before.
    pub fn set(&self, value: T) {
        // Acquire/Relaxed: the winner is the only writer; nobody reads the
        // value before the Release store below.
        let won =
            self.filled
                .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed);
        assert!(won.is_ok(), "RawCell::set called twice");
        // SAFETY: we won the CAS, so we are the only writer, and readers wait
        // for FILLED.
        unsafe { (*self.value.get()).write(value) };
        // Release: pairs with the Acquire load in `get`.
        self.filled.store(FILLED, Ordering::Release);
    }

    /// The value, if set: one `Acquire` load and a branch.
    #[inline]
    pub fn get(&self) -> Option<&T> {
        // Acquire: pairs with the Release store in `set`.
        if self.filled.load(Ordering::Acquire) == FILLED {
            // SAFETY: FILLED was observed with Acquire, so the value is
            // written and never written again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }
}

impl<T> Default for RawCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for RawCell<T> {
    fn drop(&mut self) {
        if *self.filled.get_mut() == FILLED {
            // SAFETY: FILLED: the value is initialized, and we are its last user.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

/// The floor of contended initialization: the least an async once-cell can
/// do, and nothing more. A state byte, a `Mutex<Vec<Waker>>` of waiters, no
/// cancellation or panic handling (a dropped leader leaves its waiters
/// hanging), no error caching, a waker pushed again on every pending poll.
/// It shows how much of a contended init is the runtime's wake-and-poll
/// cycle, which every correct cell pays, rather than the cell's own work.
#[derive(Debug)]
pub struct RawAsyncCell<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
    waiters: Mutex<Vec<Waker>>,
}

// SAFETY: as `RawCell`: one writer (the CAS winner) before the `Release`
// store, readers only after an `Acquire` load of FILLED.
unsafe impl<T: Send + Sync> Sync for RawAsyncCell<T> {}

impl<T> RawAsyncCell<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            waiters: Mutex::new(Vec::new()),
        }
    }

    #[inline]
    fn get(&self) -> Option<&T> {
        // Acquire: pairs with the Release store in `get_or_init`.
        if self.state.load(Ordering::Acquire) == FILLED {
            // SAFETY: FILLED observed with Acquire: written, never again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// The value, running `f` if the cell is empty; other callers wait.
    pub async fn get_or_init<F, Fut>(&self, f: F) -> &T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        if let Some(v) = self.get() {
            return v;
        }
        // Acquire on success: nothing to pair with (no reset); Relaxed on
        // failure: we wait below and re-load with Acquire.
        if self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            let v = f().await;
            // SAFETY: the CAS winner is the only writer; readers wait for FILLED.
            unsafe { (*self.value.get()).write(v) };
            // Release: pairs with the Acquire loads in `get`.
            self.state.store(FILLED, Ordering::Release);
            let waiters = std::mem::take(&mut *self.waiters.lock().unwrap());
            for w in waiters {
                w.wake();
            }
            return self.get().expect("just filled");
        }
        poll_fn(|cx| {
            if let Some(v) = self.get() {
                return Poll::Ready(v);
            }
            let mut waiters = self.waiters.lock().unwrap();
            // Re-checked under the lock: the leader stores FILLED before it
            // takes the lock to wake everyone.
            if let Some(v) = self.get() {
                return Poll::Ready(v);
            }
            waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl<T> Default for RawAsyncCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for RawAsyncCell<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() == FILLED {
            // SAFETY: FILLED: the value is initialized, and we are its last user.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

/// The median of `v` (the mean of the two middle values for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    assert!(!v.is_empty(), "median of nothing");
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// How a paired measurement compares each contender with the first one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// The median of the per-round ratios to the first contender.
    Ratio,
    /// The first contender is a floor (e.g. spawning and joining empty
    /// tasks): the median of the per-round differences to it.
    AboveFloor,
}

/// A paired measurement: every round times each contender once, back to
/// back, in a rotating order, so that the load of a shared machine, which
/// drifts from second to second, weighs on all of them alike. Each figure is
/// a median over rounds of per-round ratios or differences.
///
/// The report lines start with `paired\t` and are tab-separated, so that
/// `benches/ratios.py` and `benches/plot.py` can read them from the log:
///
/// ```text
/// paired  <measurement>  <contender>  <median>  <unit>  <ratio|above>  <value>
/// ```
#[derive(Debug)]
pub struct Paired {
    names: &'static [&'static str],
    compare: Compare,
    unit: &'static str,
    times: Vec<Vec<f64>>,
}

impl Paired {
    /// A measurement of `names` (the first is the reference or the floor),
    /// each time given in `unit` per round.
    pub fn new(names: &'static [&'static str], compare: Compare, unit: &'static str) -> Self {
        Self {
            names,
            compare,
            unit,
            times: vec![Vec::new(); names.len()],
        }
    }

    /// Runs `rounds` rounds; in each, calls `time(k)` once for every
    /// contender `k` (starting at a different one each round), which returns
    /// that contender's time in `unit`. Returns the wall time it all took,
    /// for criterion's `iter_custom`.
    pub fn rounds(
        &mut self,
        rounds: u64,
        mut time: impl FnMut(usize) -> f64,
    ) -> std::time::Duration {
        let start = std::time::Instant::now();
        let n = self.names.len();
        for i in 0..rounds as usize {
            for k in 0..n {
                let which = (i + k) % n;
                let t = time(which);
                self.times[which].push(t);
            }
        }
        start.elapsed()
    }

    /// The median per-round ratio (or difference to the floor) of contender `k`.
    pub fn figure(&self, k: usize) -> f64 {
        let pairs = self.times[k].iter().zip(&self.times[0]);
        median(match self.compare {
            Compare::Ratio => pairs.map(|(x, r)| x / r).collect(),
            Compare::AboveFloor => pairs.map(|(x, f)| x - f).collect(),
        })
    }

    /// Prints one line per contender (see the type's docs) and forgets the
    /// rounds, so the same `Paired` can measure the next case.
    pub fn report(&mut self, measurement: &str) {
        let rounds = self.times[0].len();
        if rounds == 0 {
            return;
        }
        println!("{measurement}: {rounds} paired rounds");
        let kind = match self.compare {
            Compare::Ratio => "ratio",
            Compare::AboveFloor => "above",
        };
        for (k, name) in self.names.iter().enumerate() {
            println!(
                "paired\t{measurement}\t{name}\t{:.4}\t{}\t{kind}\t{:.4}",
                median(self.times[k].clone()),
                self.unit,
                self.figure(k)
            );
        }
        // lazyflight against every other contender: the median of per-round
        // ratios (above a floor: the ratio of the median differences).
        if let Some(ours) = self.names.iter().position(|n| *n == "lazyflight") {
            let start = usize::from(self.compare == Compare::AboveFloor);
            for (k, name) in self.names.iter().enumerate().skip(start) {
                if k == ours {
                    continue;
                }
                let r = match self.compare {
                    Compare::Ratio => median(
                        self.times[ours]
                            .iter()
                            .zip(&self.times[k])
                            .map(|(x, p)| x / p)
                            .collect(),
                    ),
                    Compare::AboveFloor => self.figure(ours) / self.figure(k),
                };
                println!("vs\t{measurement}\t{name}\t{r:.4}");
            }
        }
        for v in &mut self.times {
            v.clear();
        }
    }
}

/// Polls `fut` once with a no-op waker; it must be ready.
///
/// Always inlined, as a caller's `.await` inlines the poll of the future it
/// awaits into its own: called out of line, the call itself (a frame of
/// several hundred bytes and the future copied into it) cost about 20 ns per
/// call, more than a cache hit's own work, and it is paid by every async
/// contender and by no sync one.
#[inline(always)]
pub fn now_or_never<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("expected a ready future"),
    }
}

/// Polls `fut` with a no-op waker until it is ready: for futures that
/// finish without waiting for anyone else but may yield (wake themselves and
/// return `Pending`) on the way. A real executor would put such a future back
/// in its queue instead; here the re-poll is immediate, so a yield costs only
/// the extra poll.
pub fn spin_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// A future that is pending once (waking itself at once), then ready with
/// its value: a child that suspends exactly once, whatever the executor.
#[derive(Debug)]
pub struct YieldOnce<T> {
    value: Option<T>,
    yielded: bool,
}

impl<T> YieldOnce<T> {
    /// Pending once, then `value`.
    pub fn new(value: T) -> Self {
        Self {
            value: Some(value),
            yielded: false,
        }
    }
}

impl<T> Unpin for YieldOnce<T> {}

impl<T> Future for YieldOnce<T> {
    type Output = T;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        if this.yielded {
            Poll::Ready(this.value.take().expect("polled after completion"))
        } else {
            this.yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// A hash map of the shape `Cache` and `Group` use: 64 shards, each a
/// `hashbrown::HashTable` behind a mutex of lazyflight's sync shim (std's in
/// a normal build), a foldhash hash computed once per call and the shard
/// picked from bits 32..38 of it (64 shards). The "sharded map on the shim" candidate of
/// the hit comparison.
pub struct ShardedMap<K, V> {
    hasher: foldhash::fast::RandomState,
    shards: Box<[ShardSlot<K, V>]>,
}

#[repr(align(128))]
struct ShardSlot<K, V>(lazyflight::sync::Mutex<hashbrown::HashTable<(K, V)>>);

impl<K: std::hash::Hash + Eq, V: Clone> ShardedMap<K, V> {
    const SHARDS: usize = 64;

    /// An empty map.
    pub fn new() -> Self {
        Self {
            hasher: Default::default(),
            shards: (0..Self::SHARDS)
                .map(|_| ShardSlot(lazyflight::sync::Mutex::new(hashbrown::HashTable::new())))
                .collect(),
        }
    }

    fn shard(&self, hash: u64) -> &lazyflight::sync::Mutex<hashbrown::HashTable<(K, V)>> {
        &self.shards[(hash >> 32) as usize & (Self::SHARDS - 1)].0
    }

    /// Inserts or replaces.
    pub fn insert(&self, key: K, value: V) {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(&key);
        let mut t = self.shard(hash).lock();
        match t.find_mut(hash, |(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => {
                t.insert_unique(hash, (key, value), |(k, _)| self.hasher.hash_one(k));
            }
        }
    }

    /// A clone of the value for `key`.
    #[inline]
    pub fn get(&self, key: &K) -> Option<V> {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(key);
        let t = self.shard(hash).lock();
        t.find(hash, |(k, _)| k == key).map(|(_, v)| v.clone())
    }
}

impl<K: std::hash::Hash + Eq, V: Clone> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> std::fmt::Debug for ShardedMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedMap").finish_non_exhaustive()
    }
}
