//! `Cache` against the async caches, and the concurrent maps its table was
//! chosen against.
//!
//! * `cache_hit/1_thread`, `cache_hit/2_threads`: a hit on a warmed cache of
//!   10,000 `u64` keys, keys taken in a fixed random order; 2,048 hits per
//!   contender per round (per thread with two threads, which run at once
//!   behind a barrier; a round's time is the slower thread's). In ns per
//!   hit, each round's ratio taken to quick_cache's `sync::Cache::get`.
//!   `cache_hit/1_thread_64_hot_keys` repeats the 1-thread case over 64 keys
//!   only, which stay in the L1 cache: the instruction cost of a hit.
//!   Contenders: lazyflight `Cache::get` (the future polled once);
//!   quick_cache `sync::Cache::get` and its async `get_value_or_guard_async`
//!   (polled once); moka `future::Cache::get_with` (polled once); and plain
//!   maps, the candidates for `Cache`'s table: dashmap, scc, papaya,
//!   `RwLock<HashMap>` and `sharded_shim` (64 hashbrown tables behind
//!   lazyflight's shim mutex, the shape `Cache` uses; see
//!   `lazyflight_benches::ShardedMap`).
//! * `cache_miss_64`: 64 tasks `get` one absent key on a 2-worker tokio
//!   runtime; the init yields once before it returns, so the other 63 find
//!   it running and wait for it. Each round runs 16 such stampedes (1024
//!   tasks) per contender, on fresh keys; the `floor` does the same spawns
//!   and joins with empty tasks. Figures are per-round differences to the
//!   floor, in µs per 1024 tasks. Contenders: lazyflight `Cache::get`, moka
//!   `get_with`, quick_cache `get_or_insert_async`, and lazyflight
//!   `Cache::get_owned` (the init moved into the key's entry, so a waiting
//!   caller polled while the init can make progress drives it itself).
//! * `cache_stats/1_thread_64_hot_keys`, `cache_stats/2_threads`: what
//!   counters cost a hit: the same warmed cache built with and without
//!   `CacheBuilder::stats`, quick_cache's `get` beside them, over 64 hot keys
//!   on one thread and 10,000 keys on two.

// Peers and baselines use std types directly; clippy.toml's shim
// discipline is for the library.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use lazyflight_benches::{now_or_never, sink, Compare, Paired, ShardedMap};
use tokio::runtime::Runtime;
use tokio::task::yield_now;

const KEYS: u64 = 10_000;

/// Every contender, warmed with the same 10,000 keys (value = key).
struct Caches {
    ours: lazyflight::Cache<u64, u64, ()>,
    qc: quick_cache::sync::Cache<u64, u64>,
    moka: moka::future::Cache<u64, u64>,
    dashmap: dashmap::DashMap<u64, u64>,
    rwlock: RwLock<HashMap<u64, u64>>,
    scc: scc::HashMap<u64, u64>,
    papaya: papaya::HashMap<u64, u64>,
    sharded: ShardedMap<u64, u64>,
}

fn warmed() -> Caches {
    let c = Caches {
        ours: lazyflight::Cache::new(),
        // Room for every key, so nothing is evicted.
        qc: quick_cache::sync::Cache::new(2 * KEYS as usize),
        moka: moka::future::Cache::new(2 * KEYS),
        dashmap: Default::default(),
        rwlock: Default::default(),
        scc: Default::default(),
        papaya: Default::default(),
        sharded: ShardedMap::new(),
    };
    for k in 0..KEYS {
        now_or_never(c.ours.get(k, || async move { Ok(k) })).unwrap();
        // The second call moves the result into the table (the hit path).
        now_or_never(c.ours.get(k, || async { Err(()) })).unwrap();
        c.qc.insert(k, k);
        futures::executor::block_on(c.moka.insert(k, k));
        c.dashmap.insert(k, k);
        c.rwlock.write().unwrap().insert(k, k);
        let _ = c.scc.insert_sync(k, k);
        c.papaya.pin().insert(k, k);
        c.sharded.insert(k, k);
    }
    futures::executor::block_on(c.moka.run_pending_tasks());
    c
}

const HIT: [&str; 9] = [
    "quick_cache_sync",
    "lazyflight",
    "quick_cache_async",
    "moka",
    "dashmap",
    "scc",
    "papaya",
    "rwlock_hashmap",
    "sharded_shim",
];

/// Hits per contender per round (per thread).
const HITS: usize = 2048;

/// The keys in a fixed pseudo-random order (a multiplicative permutation).
fn key_order() -> Vec<u64> {
    (0..KEYS).map(|i| (i * 7919 + 13) % KEYS).collect()
}

/// Successive windows of `HITS` keys of [`key_order`], one per call.
fn key_windows() -> impl FnMut() -> Vec<u64> {
    let order = key_order();
    let mut at = 0usize;
    move || {
        at = (at + HITS) % order.len();
        let mut v = Vec::with_capacity(HITS);
        v.extend(order.iter().cycle().skip(at).take(HITS));
        v
    }
}

/// `HITS` hits over 64 keys only: every line the hits touch stays in the L1
/// cache, so this is the instruction cost of a hit without the cache misses
/// of a 10,000-key table.
fn hot_keys() -> Vec<u64> {
    key_order()
        .into_iter()
        .take(64)
        .cycle()
        .take(HITS)
        .collect()
}

/// Two threads, started together behind a barrier, each making `hits` over
/// its own window of keys; the slower thread's time, in ns per hit.
fn two_threads(
    next_keys: &mut impl FnMut() -> Vec<u64>,
    hits: impl Fn(&[u64]) -> Duration + Sync,
) -> f64 {
    let keys = [next_keys(), next_keys()];
    let barrier = Barrier::new(2);
    let slowest = std::thread::scope(|s| {
        let hs = keys.each_ref().map(|keys| {
            let (hits, barrier) = (&hits, &barrier);
            s.spawn(move || {
                barrier.wait();
                hits(keys)
            })
        });
        hs.map(|h| h.join().unwrap()).into_iter().max().unwrap()
    });
    slowest.as_nanos() as f64 / HITS as f64
}

#[inline(always)]
fn each(keys: &[u64], f: impl Fn(u64) -> u64) -> Duration {
    let start = Instant::now();
    for &k in keys {
        sink(f(k));
    }
    start.elapsed()
}

/// `keys.len()` hits of contender `which`.
#[inline(never)]
fn hits(c: &Caches, which: usize, keys: &[u64]) -> Duration {
    match which {
        0 => each(keys, |k| c.qc.get(&k).unwrap()),
        1 => each(keys, |k| {
            now_or_never(c.ours.get(k, || async { Err(()) })).unwrap()
        }),
        2 => each(keys, |k| {
            match now_or_never(c.qc.get_value_or_guard_async(&k)) {
                Ok(v) => v,
                Err(_) => unreachable!("a hit"),
            }
        }),
        3 => each(keys, |k| now_or_never(c.moka.get_with(k, async { 0 }))),
        4 => each(keys, |k| *c.dashmap.get(&k).unwrap()),
        5 => each(keys, |k| c.scc.read_sync(&k, |_, v| *v).unwrap()),
        6 => each(keys, |k| *c.papaya.pin().get(&k).unwrap()),
        7 => each(keys, |k| *c.rwlock.read().unwrap().get(&k).unwrap()),
        _ => each(keys, |k| c.sharded.get(&k).unwrap()),
    }
}

fn cache_hit(c: &mut Criterion) {
    let caches = warmed();
    let mut next_keys = key_windows();
    let mut g = c.benchmark_group("cache_hit");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat);

    let mut p = Paired::new(&HIT, Compare::Ratio, "ns/hit");
    g.bench_function("1_thread", |b| {
        b.iter_custom(|iters| {
            p.rounds(iters, |which| {
                let keys = next_keys();
                hits(&caches, which, &keys).as_nanos() as f64 / HITS as f64
            })
        })
    });
    p.report("cache_hit/1_thread");

    let hot = hot_keys();
    let mut p = Paired::new(&HIT, Compare::Ratio, "ns/hit");
    g.bench_function("1_thread_64_hot_keys", |b| {
        b.iter_custom(|iters| {
            p.rounds(iters, |which| {
                hits(&caches, which, &hot).as_nanos() as f64 / HITS as f64
            })
        })
    });
    p.report("cache_hit/1_thread_64_hot_keys");

    let mut p = Paired::new(&HIT, Compare::Ratio, "ns/hit");
    g.bench_function("2_threads", |b| {
        b.iter_custom(|iters| {
            p.rounds(iters, |which| {
                two_threads(&mut next_keys, |keys| hits(&caches, which, keys))
            })
        })
    });
    p.report("cache_hit/2_threads");
    g.finish();
}

const MISS: [&str; 5] = [
    "floor",
    "lazyflight",
    "quick_cache",
    "moka",
    "lazyflight_owned",
];

/// Tasks per stampede on one absent key.
const STAMPEDE: usize = 64;
/// Stampedes per round and contender.
const STAMPEDES: usize = 16;

/// Fresh keys for every stampede.
static NEXT_KEY: AtomicU64 = AtomicU64::new(1 << 40);

struct MissCaches {
    ours: lazyflight::Cache<u64, u64, ()>,
    qc: quick_cache::sync::Cache<u64, u64>,
    moka: moka::future::Cache<u64, u64>,
}

/// `STAMPEDES` stampedes of contender `which`, in µs.
fn stampedes(rt: &Runtime, caches: &Arc<MissCaches>, which: usize) -> f64 {
    let caches = caches.clone();
    let start = Instant::now();
    // Driven from a task on the runtime, so the spawns go to a worker's local
    // queue rather than through the injection queue.
    let driver = rt.spawn(async move {
        let mut handles = Vec::with_capacity(STAMPEDE);
        for _ in 0..STAMPEDES {
            let key = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
            for _ in 0..STAMPEDE {
                let c = caches.clone();
                handles.push(tokio::spawn(async move {
                    match which {
                        0 => {
                            black_box(&c);
                            0
                        }
                        1 => c
                            .ours
                            .get(key, || async move {
                                yield_now().await;
                                Ok(key)
                            })
                            .await
                            .unwrap(),
                        4 => c
                            .ours
                            .get_owned(key, move || async move {
                                yield_now().await;
                                Ok(key)
                            })
                            .await
                            .unwrap(),
                        2 => {
                            c.qc.get_or_insert_async(&key, async move {
                                yield_now().await;
                                Ok::<_, ()>(key)
                            })
                            .await
                            .unwrap()
                        }
                        _ => {
                            c.moka
                                .get_with(key, async move {
                                    yield_now().await;
                                    key
                                })
                                .await
                        }
                    }
                }));
            }
            for h in handles.drain(..) {
                let v = h.await.expect("task panicked");
                debug_assert!(v == key || v == 0);
                black_box(v);
            }
        }
    });
    rt.block_on(driver).expect("driver panicked");
    start.elapsed().as_nanos() as f64 / 1000.0
}

fn cache_miss_64(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    let caches = Arc::new(MissCaches {
        ours: lazyflight::Cache::new(),
        qc: quick_cache::sync::Cache::new(1 << 20),
        moka: moka::future::Cache::new(1 << 20),
    });
    let mut p = Paired::new(&MISS, Compare::AboveFloor, "us/1024 tasks");
    let mut g = c.benchmark_group("cache_miss_64");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("paired", |b| {
        b.iter_custom(|iters| p.rounds(iters, |which| stampedes(&rt, &caches, which)))
    });
    g.finish();
    p.report("cache_miss_64");
}

const STATS: [&str; 3] = ["lazyflight", "lazyflight_stats", "quick_cache_sync"];

/// `keys.len()` hits of `STATS` contender `which`.
#[inline(never)]
fn stats_hits(
    caches: &(
        lazyflight::Cache<u64, u64, ()>,
        lazyflight::Cache<u64, u64, ()>,
    ),
    qc: &quick_cache::sync::Cache<u64, u64>,
    which: usize,
    keys: &[u64],
) -> Duration {
    match which {
        0 => each(keys, |k| {
            now_or_never(caches.0.get(k, || async { Err(()) })).unwrap()
        }),
        1 => each(keys, |k| {
            now_or_never(caches.1.get(k, || async { Err(()) })).unwrap()
        }),
        _ => each(keys, |k| qc.get(&k).unwrap()),
    }
}

/// What [`CacheBuilder::stats`](lazyflight::CacheBuilder::stats) costs a
/// hit: the same warmed cache with and without counters, quick_cache's `get`
/// as the reference, over 64 hot keys on one thread and over 10,000 keys on
/// two threads at once (where the counters are shared between threads).
fn cache_stats(c: &mut Criterion) {
    let build = |stats: bool| {
        let cache = lazyflight::Cache::<u64, u64, ()>::builder()
            .stats(stats)
            .build();
        for k in 0..KEYS {
            now_or_never(cache.get(k, || async move { Ok(k) })).unwrap();
            now_or_never(cache.get(k, || async { Err(()) })).unwrap();
        }
        cache
    };
    let caches = (build(false), build(true));
    let qc = quick_cache::sync::Cache::new(2 * KEYS as usize);
    for k in 0..KEYS {
        qc.insert(k, k);
    }
    let hot = hot_keys();
    let mut next_keys = key_windows();
    let mut g = c.benchmark_group("cache_stats");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat);
    let mut p = Paired::new(&STATS, Compare::Ratio, "ns/hit");
    g.bench_function("1_thread_64_hot_keys", |b| {
        b.iter_custom(|iters| {
            p.rounds(iters, |which| {
                stats_hits(&caches, &qc, which, &hot).as_nanos() as f64 / HITS as f64
            })
        })
    });
    p.report("cache_stats/1_thread_64_hot_keys");
    let mut p = Paired::new(&STATS, Compare::Ratio, "ns/hit");
    g.bench_function("2_threads", |b| {
        b.iter_custom(|iters| {
            p.rounds(iters, |which| {
                two_threads(&mut next_keys, |keys| stats_hits(&caches, &qc, which, keys))
            })
        })
    });
    p.report("cache_stats/2_threads");
    g.finish();
}

criterion_group!(benches, cache_hit, cache_miss_64, cache_stats);
criterion_main!(benches);
