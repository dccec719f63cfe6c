//! Contended initialization: N tasks on a 2-worker tokio runtime all call
//! `get_or_init` on one fresh cell. The initializer yields once before it
//! returns, so the other tasks really find it running and queue behind it
//! (tokio runs a yielded task again only once its worker has drained its
//! local queue, so the N - 1 others all get to wait).
//!
//! For each N in {2, 64, 1024}, one group runs back to back:
//!
//! * `floor`: the same spawns and joins (and the same `Arc` clones) with
//!   nothing inside the tasks;
//! * `lazyflight`, `tokio`, `async_once_cell`: the stampede on a fresh cell;
//! * `raw_mutex_vec`: the same on `RawAsyncCell`, the least a cell can do
//!   (no cancellation or panic handling): what any correct cell must pay.
//! * `lazyflight_owned`: `ALazy::get_or_init_owned`, the mode in which the
//!   cell owns the initializer and every waiting caller helps drive it: a
//!   waiter polled while the initializer is ready to make progress finishes
//!   it itself instead of parking.
//!
//! One iteration runs `1024 / N` stampedes in a row, each on a fresh cell, so
//! that every iteration spawns 1024 tasks: for small N the cost of waking
//! the runtime would otherwise drown what the cell adds. The figure of
//! interest is each contender's time minus the floor: what the cell itself
//! adds to spawning and joining the tasks.

// Peers and baselines use std types directly; clippy.toml's shim
// discipline is for the library.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use lazyflight_benches::{median, RawAsyncCell};
use tokio::runtime::Runtime;
use tokio::task::yield_now;

const VALUE: u64 = 0x5eed;

/// Tasks spawned per iteration, whatever N.
const TASKS_PER_ITER: usize = 1024;

/// Runs `TASKS_PER_ITER / n` stampedes: each spawns `n` copies of
/// `task(cell.clone())` on a fresh `new_cell()` and joins them all.
async fn stampedes<C, F, Fut>(n: usize, new_cell: fn() -> C, task: F)
where
    C: Send + Sync + 'static,
    F: Fn(Arc<C>) -> Fut,
    Fut: Future<Output = u64> + Send + 'static,
{
    let mut handles = Vec::with_capacity(n);
    for _ in 0..TASKS_PER_ITER / n {
        let cell = Arc::new(new_cell());
        handles.extend((0..n).map(|_| tokio::spawn(task(cell.clone()))));
        for h in handles.drain(..) {
            let v = h.await.expect("task panicked");
            debug_assert!(v == VALUE || v == 0);
            black_box(v);
        }
    }
}

fn run(rt: &Runtime, n: usize, contender: &'static str) {
    // Driven from a task on the runtime, so that the spawns go to a worker's
    // local queue (the other worker steals) rather than through the
    // injection queue with a cross-thread wake-up each.
    let driver = rt.spawn(async move {
        match contender {
            "floor" => {
                stampedes(
                    n,
                    || (),
                    |cell| async move {
                        black_box(&cell);
                        0
                    },
                )
                .await
            }
            "lazyflight" => {
                stampedes(n, lazyflight::ALazy::<u64, ()>::new, |cell| async move {
                    let init = || async {
                        yield_now().await;
                        Ok(VALUE)
                    };
                    *cell.get_or_init(init).await.unwrap()
                })
                .await
            }
            "lazyflight_owned" => {
                stampedes(n, lazyflight::ALazy::<u64, ()>::new, |cell| async move {
                    let init = || async {
                        yield_now().await;
                        Ok(VALUE)
                    };
                    *cell.get_or_init_owned(init).await.unwrap()
                })
                .await
            }
            "tokio" => {
                stampedes(n, tokio::sync::OnceCell::<u64>::new, |cell| async move {
                    let init = || async {
                        yield_now().await;
                        VALUE
                    };
                    *cell.get_or_init(init).await
                })
                .await
            }
            "async_once_cell" => {
                stampedes(
                    n,
                    async_once_cell::OnceCell::<u64>::new,
                    |cell| async move {
                        let init = async {
                            yield_now().await;
                            VALUE
                        };
                        *cell.get_or_init(init).await
                    },
                )
                .await
            }
            "raw_mutex_vec" => {
                stampedes(n, RawAsyncCell::<u64>::new, |cell| async move {
                    let init = || async {
                        yield_now().await;
                        VALUE
                    };
                    *cell.get_or_init(init).await
                })
                .await
            }
            other => unreachable!("unknown contender {other}"),
        }
    });
    rt.block_on(driver).expect("driver panicked");
}

fn contended_init(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    for n in [2usize, 64, 1024] {
        let mut g = c.benchmark_group(format!("contended_init/{n}"));
        g.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30)
            .sampling_mode(SamplingMode::Flat);
        for contender in CONTENDERS {
            g.bench_with_input(BenchmarkId::from_parameter(contender), &n, |b, &n| {
                b.iter(|| run(&rt, n, contender))
            });
        }
        g.finish();
    }
}

/// Per-round times, in nanoseconds, of the paired measurement: one `Vec` per
/// contender, in `CONTENDERS` order.
static PAIRED: Mutex<Vec<Vec<f64>>> = Mutex::new(Vec::new());

const CONTENDERS: [&str; 6] = [
    "floor",
    "lazyflight",
    "tokio",
    "async_once_cell",
    "raw_mutex_vec",
    "lazyflight_owned",
];

/// The same stampedes, measured in pairs: each round runs every contender
/// back to back (in a rotating order) and times each one. On a
/// shared machine whose load drifts from second to second, the per-round
/// differences to the floor cancel the drift that separate criterion
/// benchmarks, seconds apart, cannot. Criterion times whole rounds; the
/// per-contender medians and ratios are printed after the group.
fn contended_init_paired(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    let mut g = c.benchmark_group("contended_init_paired");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6))
        .sample_size(30)
        .sampling_mode(SamplingMode::Flat);
    for n in [2usize, 64, 1024] {
        *PAIRED.lock().unwrap() = vec![Vec::new(); CONTENDERS.len()];
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, &n| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut times = [0.0; CONTENDERS.len()];
                let mut paired = PAIRED.lock().unwrap();
                for i in 0..iters as usize {
                    for k in 0..CONTENDERS.len() {
                        let which = (i + k) % CONTENDERS.len();
                        let start = Instant::now();
                        run(&rt, n, CONTENDERS[which]);
                        let took = start.elapsed();
                        total += took;
                        times[which] = took.as_nanos() as f64;
                    }
                    for (v, t) in paired.iter_mut().zip(times) {
                        v.push(t);
                    }
                }
                total
            })
        });
        report_paired(n, &PAIRED.lock().unwrap());
    }
    g.finish();
}

/// Prints, per contender, the median round time and the median of its
/// per-round difference to the floor, and the ratio of ours to tokio's.
fn report_paired(n: usize, rounds: &[Vec<f64>]) {
    let count = rounds[0].len();
    if count == 0 {
        return;
    }
    let above = |k: usize| {
        median(
            rounds[k]
                .iter()
                .zip(&rounds[0])
                .map(|(x, f)| x - f)
                .collect(),
        )
    };
    let us = |ns: f64| ns / 1000.0;
    println!("contended_init_paired/{n}: {count} rounds of {TASKS_PER_ITER} tasks each");
    println!(
        "  floor            median {:8.1} us",
        us(median(rounds[0].clone()))
    );
    for (k, name) in CONTENDERS.iter().enumerate().skip(1) {
        println!(
            "  {name:<16} median {:8.1} us, above floor (median of paired differences) {:8.1} us",
            us(median(rounds[k].clone())),
            us(above(k))
        );
    }
    println!(
        "  above-floor ratio lazyflight / tokio = {:.2}, async_once_cell / tokio = {:.2}, \
         raw_mutex_vec / tokio = {:.2}, lazyflight_owned / tokio = {:.2}",
        above(1) / above(2),
        above(3) / above(2),
        above(4) / above(2),
        above(5) / above(2)
    );
}

criterion_group!(benches, contended_init, contended_init_paired);
criterion_main!(benches);
