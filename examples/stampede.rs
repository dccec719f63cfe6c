//! A thundering herd against a slow backend, three ways.
//!
//! Tens of thousands of requests over a skewed (Zipf-like) key set hit a
//! simulated backend whose latency grows with the number of calls it is
//! serving at once, and which fails a fraction of its calls. Some callers
//! give up early (their futures are dropped mid-call). The same request
//! stream is served:
//!
//! * **direct**: every request calls the backend;
//! * **Group**: concurrent requests for a key share one backend call
//!   (nothing is kept afterwards);
//! * **Cache**: results are kept for a short time-to-live, concurrent misses
//!   share one backend call, and errors go to that attempt's callers only.
//!
//! ```text
//! cargo run --release --example stampede
//! ```
//!
//! Options (environment): `STAMPEDE_REQUESTS` (default 40000),
//! `STAMPEDE_KEYS` (1000), `STAMPEDE_SEED` (7).
#![allow(clippy::disallowed_types)] // an application: std types are fine here

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lazyflight::{Cache, ErrorPolicy, Group, Outcome};

/// Requests per millisecond of the arrival schedule.
const PER_MS: usize = 20;
/// Backend latency: a base, plus this much per call already in progress.
const BASE_LATENCY: Duration = Duration::from_millis(3);
const LATENCY_PER_CALL: Duration = Duration::from_micros(20);
/// One backend call in this many fails.
const FAIL_EVERY: u64 = 20;
/// One request in this many gives up after `IMPATIENT`.
const IMPATIENT_EVERY: u64 = 25;
const IMPATIENT: Duration = Duration::from_millis(2);
/// Time-to-live of the cached values.
const TTL: Duration = Duration::from_millis(250);

/// The simulated backend.
#[derive(Default)]
struct Backend {
    calls: AtomicU64,
    in_progress: AtomicUsize,
}

#[derive(Clone, Debug)]
struct BackendError;

impl Backend {
    async fn fetch(self: Arc<Self>, key: u32) -> Result<Arc<str>, BackendError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let load = self.in_progress.fetch_add(1, Ordering::Relaxed) as u32;
        // Decrements even when the caller gives up mid-call.
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let _done = Done(&self.in_progress);
        tokio::time::sleep(BASE_LATENCY + LATENCY_PER_CALL * load).await;
        if mix(n) % FAIL_EVERY == 0 {
            Err(BackendError)
        } else {
            Ok(format!("value of {key}").into())
        }
    }
}

/// What one request saw.
#[derive(Clone, Copy, PartialEq)]
enum Seen {
    Value,
    Error,
    /// The request gave up (its own deadline).
    GaveUp,
    /// Group only: the flight's leader gave up, so this request got no value.
    LeaderGaveUp,
}

#[derive(Clone, Copy)]
enum Strategy {
    Direct,
    Group,
    Cache,
}

impl Strategy {
    fn name(self) -> &'static str {
        match self {
            Strategy::Direct => "direct (no coalescing)",
            Strategy::Group => "lazyflight::Group",
            Strategy::Cache => "lazyflight::Cache",
        }
    }
}

struct Shared {
    backend: Arc<Backend>,
    group: Group<u32, Arc<str>, BackendError>,
    cache: Cache<u32, Arc<str>, BackendError>,
}

async fn serve(strategy: Strategy, shared: &Shared, key: u32) -> Seen {
    let backend = shared.backend.clone();
    match strategy {
        Strategy::Direct => match backend.fetch(key).await {
            Ok(_) => Seen::Value,
            Err(_) => Seen::Error,
        },
        Strategy::Group => {
            let outcome = shared.group.run(key, || backend.fetch(key)).await;
            match &*outcome {
                Outcome::Complete { result: Ok(_), .. } => Seen::Value,
                Outcome::Complete { result: Err(_), .. } => Seen::Error,
                Outcome::Canceled => Seen::LeaderGaveUp,
            }
        }
        Strategy::Cache => match shared.cache.get(key, || backend.fetch(key)).await {
            Ok(_) => Seen::Value,
            Err(_) => Seen::Error,
        },
    }
}

struct Report {
    backend_calls: u64,
    counts: [usize; 4],
    p50: Duration,
    p99: Duration,
    /// From the first arrival to the last answer.
    wall: Duration,
    /// From the last arrival to the last answer: how long the backlog the
    /// strategy leaves behind takes to clear (arrivals are on a fixed
    /// schedule, so the time from the first arrival says nothing).
    drain: Duration,
}

fn run(strategy: Strategy, keys: &[u32]) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let shared = Arc::new(Shared {
        backend: Arc::default(),
        group: Group::new(),
        cache: Cache::builder()
            .time_to_live(TTL)
            .errors(ErrorPolicy::SharedOnly)
            .build(),
    });
    let results = rt.block_on(async {
        let first_arrival = Instant::now();
        let mut tasks = Vec::with_capacity(keys.len());
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        for (i, chunk) in keys.chunks(PER_MS).enumerate() {
            tick.tick().await;
            for (j, &key) in chunk.iter().enumerate() {
                let shared = shared.clone();
                let impatient = mix((i * PER_MS + j) as u64 ^ 0xA5A5) % IMPATIENT_EVERY == 0;
                tasks.push(tokio::spawn(async move {
                    let t0 = Instant::now();
                    let seen = if impatient {
                        tokio::time::timeout(IMPATIENT, serve(strategy, &shared, key))
                            .await
                            .unwrap_or(Seen::GaveUp)
                    } else {
                        serve(strategy, &shared, key).await
                    };
                    (seen, t0.elapsed())
                }));
            }
        }
        let last_arrival = Instant::now();
        let mut out = Vec::with_capacity(tasks.len());
        for t in tasks {
            out.push(t.await.expect("request task"));
        }
        (out, first_arrival.elapsed(), last_arrival.elapsed())
    });
    let (results, wall, drain) = results;
    let mut counts = [0; 4];
    let mut latencies: Vec<Duration> = Vec::with_capacity(results.len());
    for (seen, latency) in results {
        counts[seen as usize] += 1;
        if seen != Seen::GaveUp {
            latencies.push(latency);
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize];
    Report {
        backend_calls: shared.backend.calls.load(Ordering::Relaxed),
        counts,
        p50: pct(0.50),
        p99: pct(0.99),
        wall,
        drain,
    }
}

/// A 64-bit mixer (splitmix64's finalizer): deterministic pseudo-randomness.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `n` keys drawn from a Zipf(1.1) distribution over `keys` keys.
fn zipf_keys(n: usize, keys: u32, seed: u64) -> Vec<u32> {
    let weights: Vec<f64> = (1..=keys).map(|k| 1.0 / f64::from(k).powf(1.1)).collect();
    let total: f64 = weights.iter().sum();
    let mut cdf = Vec::with_capacity(weights.len());
    let mut acc = 0.0;
    for w in weights {
        acc += w / total;
        cdf.push(acc);
    }
    (0..n as u64)
        .map(|i| {
            let u = (mix(seed ^ i.wrapping_mul(0x2545_F491_4F6C_DD1D)) >> 11) as f64
                / (1u64 << 53) as f64;
            cdf.partition_point(|&c| c < u).min(keys as usize - 1) as u32
        })
        .collect()
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let requests = env("STAMPEDE_REQUESTS", 40_000) as usize;
    let key_count = env("STAMPEDE_KEYS", 1_000) as u32;
    let seed = env("STAMPEDE_SEED", 7);
    let keys = zipf_keys(requests, key_count, seed);
    let hottest = keys.iter().filter(|&&k| k == 0).count();
    println!(
        "{requests} requests over {key_count} keys (Zipf 1.1: the hottest key gets {hottest}), \
         {PER_MS} per ms; backend {} ms + {} us per call in progress, 1 call in {FAIL_EVERY} fails; \
         1 caller in {IMPATIENT_EVERY} gives up after {} ms; cache TTL {} ms\n",
        BASE_LATENCY.as_millis(),
        LATENCY_PER_CALL.as_micros(),
        IMPATIENT.as_millis(),
        TTL.as_millis(),
    );
    println!(
        "{:<24} {:>13} {:>8} {:>9} {:>15} {:>9} {:>9} {:>9} {:>9}",
        "strategy",
        "backend calls",
        "errors",
        "gave up",
        "leader gave up",
        "p50",
        "p99",
        "wall",
        "drain"
    );
    let mut calls = Vec::new();
    for strategy in [Strategy::Direct, Strategy::Group, Strategy::Cache] {
        let r = run(strategy, &keys);
        calls.push(r.backend_calls);
        println!(
            "{:<24} {:>13} {:>8} {:>9} {:>15} {:>9} {:>9} {:>9} {:>9}",
            strategy.name(),
            r.backend_calls,
            r.counts[Seen::Error as usize],
            r.counts[Seen::GaveUp as usize],
            r.counts[Seen::LeaderGaveUp as usize],
            format!("{:.2?}", r.p50),
            format!("{:.2?}", r.p99),
            format!("{:.2?}", r.wall),
            format!("{:.2?}", r.drain),
        );
        assert_eq!(
            r.counts.iter().sum::<usize>(),
            requests,
            "every request got an answer"
        );
    }
    // What the run is there to show: coalescing spares the backend.
    let [direct, group, cache] = calls[..] else {
        unreachable!("three strategies")
    };
    assert!(
        group < direct && cache < direct,
        "coalescing called the backend no less than direct calls did: {direct}, {group}, {cache}"
    );
    println!(
        "\nerrors: backend errors the callers saw; gave up: callers whose own deadline passed; \
         leader gave up: Group callers whose flight's leader gave up (they get Outcome::Canceled); \
         p50/p99: latency of the callers that waited to the end; wall: from the first arrival \
         to the last answer (arrivals alone take {} ms); drain: from the last arrival to the \
         last answer, the backlog each strategy leaves behind.",
        requests.div_ceil(PER_MS)
    );
}
