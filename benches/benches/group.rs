//! `Group` against the single-flight crates and a `Shared`-in-a-`Mutex`
//! baseline.
//!
//! * `group_uncontended`: one call on a fresh key whose work is ready at
//!   once, polled once on a no-op waker (every contender, `Group::run`
//!   included, is ready at its first poll); 1024 calls per contender per
//!   round, in ns per call, each round's ratio taken to the baseline.
//! * `group_1_63`: 1 leader + 63 followers on one key, on a 2-worker tokio
//!   runtime. The leader's work yields once before it returns, so the 63
//!   others find the flight running and join it. Every round runs 16 such
//!   stampedes (1024 tasks) per contender, each on a fresh key, and the
//!   `floor` does the same spawns and joins with empty tasks; figures are
//!   per-round differences to that floor, in µs per 1024 tasks.
//!
//! Contenders: lazyflight `Group::run`, rs-singleflight
//! `Group::do_call_shared`, singleflight-async `SingleFlight::work`,
//! async_singleflight `Group::work`, and `shared_mutex_hashmap`: a
//! `futures::future::Shared` of a boxed future in a `Mutex<HashMap>`, removed
//! by the caller that inserted it once it is done (what one writes by hand
//! without a crate).

// Peers and baselines use std types directly; clippy.toml's shim
// discipline is for the library.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::HashMap;
use std::future::Future;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use futures::future::{BoxFuture, FutureExt, Shared};
use lazyflight::Outcome;
use lazyflight_benches::{now_or_never, Compare, Paired};
use tokio::runtime::Runtime;
use tokio::task::yield_now;

const VALUE: u64 = 0x5eed;

type SharedWork = Shared<BoxFuture<'static, Result<u64, ()>>>;

/// The hand-written baseline: a shared future per key.
#[derive(Default)]
struct SharedGroup {
    map: Mutex<HashMap<u64, SharedWork>>,
}

impl SharedGroup {
    async fn run<F, Fut>(&self, key: u64, f: F) -> Result<u64, ()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<u64, ()>> + Send + 'static,
    {
        let (fut, leader) = {
            let mut map = self.map.lock().unwrap();
            match map.get(&key) {
                Some(s) => (s.clone(), false),
                None => {
                    let s = f().boxed().shared();
                    map.insert(key, s.clone());
                    (s, true)
                }
            }
        };
        let out = fut.await;
        if leader {
            self.map.lock().unwrap().remove(&key);
        }
        out
    }
}

fn ours_value(o: &Outcome<u64, ()>) -> u64 {
    match o {
        Outcome::Complete { result: Ok(v), .. } => *v,
        _ => unreachable!("the work succeeds"),
    }
}

/// Every contender's group, shared by all its calls.
#[derive(Default)]
struct Groups {
    ours: lazyflight::Group<u64, u64, ()>,
    shared: SharedGroup,
    rs: rs_singleflight::Group<u64, u64, ()>,
    sfa: singleflight_async::SingleFlight<u64, u64>,
    asf: async_singleflight::Group<u64, u64, ()>,
}

/// Fresh keys for every call, across contenders and rounds.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

fn fresh_key() -> u64 {
    NEXT_KEY.fetch_add(1, Ordering::Relaxed)
}

const UNCONTENDED: [&str; 5] = [
    "shared_mutex_hashmap",
    "lazyflight",
    "rs_singleflight",
    "singleflight_async",
    "async_singleflight",
];

const CALLS: u64 = 1024;

/// `CALLS` uncontended calls of contender `which`, in ns per call.
#[inline(never)]
fn uncontended(g: &Groups, which: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..CALLS {
        let key = fresh_key();
        let v = match which {
            0 => now_or_never(g.shared.run(key, || async { Ok(VALUE) })).unwrap(),
            1 => ours_value(&now_or_never(g.ours.run(key, || async { Ok(VALUE) }))),
            2 => *now_or_never(g.rs.do_call_shared(key, || async { Ok(VALUE) })).unwrap(),
            3 => now_or_never(g.sfa.work(key, || async { VALUE })),
            _ => now_or_never(g.asf.work(&key, async { Ok(VALUE) })).unwrap(),
        };
        black_box(v);
    }
    start.elapsed().as_nanos() as f64 / CALLS as f64
}

fn group_uncontended(c: &mut Criterion) {
    let groups = Groups::default();
    let mut p = Paired::new(&UNCONTENDED, Compare::Ratio, "ns/call");
    let mut g = c.benchmark_group("group_uncontended");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("paired", |b| {
        b.iter_custom(|iters| p.rounds(iters, |which| uncontended(&groups, which)))
    });
    g.finish();
    p.report("group_uncontended");
    // Nothing left behind by any of them.
    assert!(groups.ours.is_empty());
    assert!(groups.shared.map.lock().unwrap().is_empty());
}

const CONTENDED: [&str; 6] = [
    "floor",
    "lazyflight",
    "shared_mutex_hashmap",
    "rs_singleflight",
    "singleflight_async",
    "async_singleflight",
];

/// Tasks per stampede: 1 leader + 63 followers.
const STAMPEDE: usize = 64;
/// Stampedes per round and contender.
const STAMPEDES: usize = 16;

/// The leader's work: yields once, so that the followers find it running.
async fn work() -> Result<u64, ()> {
    yield_now().await;
    Ok(VALUE)
}

/// `STAMPEDES` stampedes of contender `which`, in µs.
fn contended(rt: &Runtime, groups: &Arc<Groups>, which: usize) -> f64 {
    let groups = groups.clone();
    let start = Instant::now();
    // Driven from a task on the runtime, so the spawns go to a worker's local
    // queue (the other worker steals) rather than through the injection
    // queue with a cross-thread wake-up each.
    let driver = rt.spawn(async move {
        let mut handles = Vec::with_capacity(STAMPEDE);
        for _ in 0..STAMPEDES {
            let key = fresh_key();
            for _ in 0..STAMPEDE {
                let g = groups.clone();
                handles.push(tokio::spawn(async move {
                    match which {
                        0 => {
                            black_box(&g);
                            0
                        }
                        1 => ours_value(&*g.ours.run(key, work).await),
                        2 => g.shared.run(key, work).await.unwrap(),
                        3 => *g.rs.do_call_shared(key, work).await.unwrap(),
                        4 => g.sfa.work(key, || async { work().await.unwrap() }).await,
                        _ => g.asf.work(&key, work()).await.unwrap(),
                    }
                }));
            }
            for h in handles.drain(..) {
                black_box(h.await.expect("task panicked"));
            }
        }
    });
    rt.block_on(driver).expect("driver panicked");
    start.elapsed().as_nanos() as f64 / 1000.0
}

fn group_1_63(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    let groups = Arc::new(Groups::default());
    let mut p = Paired::new(&CONTENDED, Compare::AboveFloor, "us/1024 tasks");
    let mut g = c.benchmark_group("group_1_63");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(20)
        .sampling_mode(SamplingMode::Flat);
    g.bench_function("paired", |b| {
        b.iter_custom(|iters| p.rounds(iters, |which| contended(&rt, &groups, which)))
    });
    g.finish();
    p.report("group_1_63");
    assert!(groups.ours.is_empty());
}

criterion_group!(benches, group_uncontended, group_1_63);
criterion_main!(benches);
