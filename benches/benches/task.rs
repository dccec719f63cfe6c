//! The collect family of `lazyflight::task` against the futures combinators.
//!
//! Everything runs inside `block_on` of a current-thread tokio runtime (so
//! tokio's `JoinSet` can take part); every measurement is paired (each round
//! times every contender once, in a rotating order) and quoted as medians of
//! per-round ratios.
//!
//! * `collect_ready/built` and `collect_yield/built`: 100,000 children,
//!   ready at their first poll or pending once (they wake themselves and are
//!   ready at the next poll), built and collected inside the timed region;
//!   `collect_ready/built_fn_pointer`: the same, each child built through an
//!   opaque function pointer (a call per child that cannot be inlined);
//!   `collect_ready/prebuilt`: the same ready children built before the
//!   clock starts; `collect_ready/values`: children that are values already,
//!   `Lazy::ready(i)` (no allocation) against `std::future::ready(i)`, built
//!   inside the timed region. ns per child. Contenders: a sequential `.await` of each
//!   child (the floor), lazyflight `collect_all` over `Lazy` children (the
//!   same `async fn` / `YieldOnce` futures in `Lazy::new`, which keeps futures
//!   of up to three words inside the `Lazy`: these are not boxed),
//!   futures-buffered `join_all`, futures `join_all`, `FuturesUnordered`
//!   (collected in completion order) and tokio `JoinSet` (every child
//!   spawned as a task; `join_all`).
//! * `windowed`: 10,000 yield-once children, 64 at a time: lazyflight
//!   `collect_all_windowed(64, false, ..)` (strict batches) against
//!   `buffer_unordered(64)` and `buffered(64)` (sliding windows).
//! * `collect_any/{first,middle,last}`: 1,000 children, one ready (at index
//!   0, 500 or 999), the others pending on a source that keeps a clone of
//!   each one's waker (as a channel or a timer does) and is dropped, never
//!   signalled, when the call is over: lazyflight `collect_any` against
//!   `futures::future::select_all` over boxed children, both built, run and
//!   dropped inside the timed region (both box every child; ours detaches
//!   its started losers, which are freed when the source drops their
//!   wakers; `select_all` hands them back and they are dropped). µs per call.
//! * `chain_30x5000`: 5,000 sequential awaits of a chain of 30 nested tasks:
//!   `Lazy` children against boxed futures (`BoxFuture`). µs per 5,000
//!   chains.

// Peers and baselines use std types directly; clippy.toml's shim
// discipline is for the library.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use futures::future::{BoxFuture, FutureExt};
use futures::stream::{self, FuturesUnordered, StreamExt};
use lazyflight::task::{collect_all, collect_all_windowed, collect_any, Lazy};
use lazyflight_benches::{Compare, Paired, YieldOnce};
use tokio::runtime::Runtime;

const CHILDREN: u64 = 100_000;

const COLLECT: [&str; 6] = [
    "sequential_await",
    "lazyflight",
    "futures_buffered",
    "join_all",
    "futures_unordered",
    "joinset",
];

/// Times building (if `timed_build`) and running `run` over the children of
/// `build`, and dropping its output; returns the time in ns.
macro_rules! timed {
    ($timed_build:expr, $build:expr, |$children:ident| $run:expr) => {{
        let t0 = Instant::now();
        let $children = $build;
        let built = t0.elapsed();
        // Dropped inside the timing too.
        black_box($run);
        let all = t0.elapsed();
        if $timed_build {
            all
        } else {
            all - built
        }
    }};
}

/// Contender `which` over `CHILDREN` children made by `child`, in ns per
/// child.
///
/// `child` and `ours` are generic, not function pointers: a caller builds its
/// children in a loop the compiler sees through, and a call through a
/// function pointer per child (which cannot be inlined, and returns the
/// child through memory) would add the same few ns to every contender's
/// build.
fn collect<F, C, O>(rt: &Runtime, which: usize, child: C, ours: O, timed_build: bool) -> f64
where
    F: Future<Output = u64> + Send + 'static,
    C: Fn(u64) -> F + Copy,
    O: Fn(u64) -> Lazy<u64> + Copy,
{
    let kids = || (0..CHILDREN).map(child).collect::<Vec<_>>();
    let took = rt.block_on(async {
        match which {
            0 => timed!(timed_build, kids(), |children| {
                let mut out = Vec::with_capacity(children.len());
                for c in children {
                    out.push(c.await);
                }
                out
            }),
            1 => timed!(
                timed_build,
                (0..CHILDREN).map(ours).collect::<Vec<_>>(),
                |children| collect_all(children).await
            ),
            2 => timed!(timed_build, kids(), |children| {
                futures_buffered::join_all(children).await
            }),
            3 => timed!(timed_build, kids(), |children| {
                futures::future::join_all(children).await
            }),
            4 => timed!(timed_build, kids(), |children| {
                children
                    .into_iter()
                    .collect::<FuturesUnordered<_>>()
                    .collect::<Vec<_>>()
                    .await
            }),
            // Spawning is JoinSet's way of taking a child in, so it is
            // timed even for prebuilt children.
            _ => timed!(timed_build, kids(), |children| {
                let mut set = tokio::task::JoinSet::new();
                for c in children {
                    set.spawn(c);
                }
                set.join_all().await
            }),
        }
    });
    took.as_nanos() as f64 / CHILDREN as f64
}

async fn ready_child(i: u64) -> u64 {
    i
}

fn yield_child(i: u64) -> YieldOnce<u64> {
    YieldOnce::new(i)
}

fn lazy_ready_child(i: u64) -> Lazy<u64> {
    Lazy::new(ready_child(i))
}

fn lazy_yield_child(i: u64) -> Lazy<u64> {
    Lazy::new(yield_child(i))
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("tokio runtime")
}

fn group<'c>(
    c: &'c mut Criterion,
    name: &str,
    secs: u64,
) -> criterion::BenchmarkGroup<'c, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name.to_owned());
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(secs))
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat);
    g
}

fn collect_all_bench(c: &mut Criterion) {
    let rt = runtime();
    type Case = (&'static str, fn(&Runtime, usize) -> f64);
    let cases: [Case; 5] = [
        ("collect_ready/built", |rt, w| {
            collect(rt, w, ready_child, lazy_ready_child, true)
        }),
        // The same, every child built through an opaque function pointer:
        // a call per child that cannot be inlined (the harness until
        // 2026-11-22 built children this way; kept to show what it cost).
        ("collect_ready/built_fn_pointer", |rt, w| {
            let child: fn(u64) -> _ = black_box(ready_child as fn(u64) -> _);
            let ours: fn(u64) -> Lazy<u64> = black_box(lazy_ready_child as fn(u64) -> Lazy<u64>);
            collect(rt, w, child, ours, true)
        }),
        ("collect_ready/prebuilt", |rt, w| {
            collect(rt, w, ready_child, lazy_ready_child, false)
        }),
        // Children that are values already: `Lazy::ready` (which does not
        // box) against `std::future::ready`.
        ("collect_ready/values", |rt, w| {
            collect(rt, w, std::future::ready, Lazy::ready, true)
        }),
        ("collect_yield/built", |rt, w| {
            collect(rt, w, yield_child, lazy_yield_child, true)
        }),
    ];
    for (name, time) in cases {
        let mut p = Paired::new(&COLLECT, Compare::Ratio, "ns/child");
        let mut g = group(c, name, 4);
        g.bench_function("paired", |b| {
            b.iter_custom(|iters| p.rounds(iters, |which| time(&rt, which)))
        });
        g.finish();
        p.report(name);
    }
}

const WINDOW_CHILDREN: u64 = 10_000;
const WINDOW: usize = 64;
const WINDOWED: [&str; 3] = ["buffer_unordered", "lazyflight", "buffered"];

fn windowed(c: &mut Criterion) {
    let rt = runtime();
    let mut p = Paired::new(&WINDOWED, Compare::Ratio, "ns/child");
    let mut g = group(c, "windowed", 3);
    g.bench_function("paired", |b| {
        b.iter_custom(|iters| {
            p.rounds(iters, |which| {
                let took = rt.block_on(async {
                    let kids = || (0..WINDOW_CHILDREN).map(yield_child);
                    match which {
                        0 => timed!(true, kids(), |children| {
                            stream::iter(children)
                                .buffer_unordered(WINDOW)
                                .collect::<Vec<_>>()
                                .await
                        }),
                        1 => timed!(
                            true,
                            kids().map(Lazy::new).collect::<Vec<_>>(),
                            |children| collect_all_windowed(WINDOW, false, children).await
                        ),
                        _ => timed!(true, kids(), |children| {
                            stream::iter(children)
                                .buffered(WINDOW)
                                .collect::<Vec<_>>()
                                .await
                        }),
                    }
                });
                took.as_nanos() as f64 / WINDOW_CHILDREN as f64
            })
        })
    });
    g.finish();
    p.report("windowed");
}

/// What the pending children of one `collect_any` call wait on: it keeps a
/// clone of each one's waker, as a channel or a timer would, and is dropped
/// (never signalled) when the call is over.
type Source = Arc<Mutex<Vec<Waker>>>;

/// Ready with its value at the first poll, or pending until its source goes
/// away, its waker registered with the source at each poll.
struct Gate {
    value: Option<u64>,
    source: Source,
}

impl Future for Gate {
    type Output = u64;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        let this = self.get_mut();
        match this.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                this.source.lock().unwrap().push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// `ANY_CHILDREN` gates on a fresh source, the one at `winner` ready, each
/// wrapped by `wrap` as its contender takes children; and the source.
fn gates<C>(winner: usize, wrap: impl Fn(Gate) -> C) -> (Vec<C>, Source) {
    let source = Source::default();
    let children = (0..ANY_CHILDREN)
        .map(|i| {
            wrap(Gate {
                value: (i == winner).then_some(i as u64),
                source: source.clone(),
            })
        })
        .collect();
    (children, source)
}

const ANY_CHILDREN: usize = 1000;
const ANY: [&str; 2] = ["select_all", "lazyflight"];

fn collect_any_bench(c: &mut Criterion) {
    let rt = runtime();
    for (name, winner) in [
        ("first", 0),
        ("middle", ANY_CHILDREN / 2),
        ("last", ANY_CHILDREN - 1),
    ] {
        let name = format!("collect_any/{name}");
        let mut p = Paired::new(&ANY, Compare::Ratio, "us/call");
        let mut g = group(c, &name, 2);
        g.bench_function("paired", |b| {
            b.iter_custom(|iters| {
                p.rounds(iters, |which| {
                    let took = rt.block_on(async {
                        if which == 0 {
                            timed!(true, gates(winner, Box::pin), |built| {
                                let (children, source) = built;
                                let (v, index, rest) = futures::future::select_all(children).await;
                                // The losers are dropped, then their source.
                                drop(rest);
                                drop(source);
                                (v, index)
                            })
                        } else {
                            timed!(true, gates(winner, Lazy::new), |built| {
                                let (children, source) = built;
                                let r = collect_any(children).await;
                                // The losers were detached (async_simple's
                                // semantics); dropping the source drops
                                // the last clones of their wakers, which
                                // frees them.
                                drop(source);
                                (r.value.value(), r.index)
                            })
                        }
                    });
                    took.as_nanos() as f64 / 1000.0
                })
            })
        });
        g.finish();
        p.report(&name);
    }
}

fn lazy_chain(depth: u32) -> Lazy<u64> {
    Lazy::new(async move {
        if depth == 0 {
            1
        } else {
            lazy_chain(depth - 1).await + 1
        }
    })
}

fn boxed_chain(depth: u32) -> BoxFuture<'static, u64> {
    async move {
        if depth == 0 {
            1
        } else {
            boxed_chain(depth - 1).await + 1
        }
    }
    .boxed()
}

const CHAIN: [&str; 2] = ["boxed_futures", "lazyflight"];

fn chain(c: &mut Criterion) {
    let rt = runtime();
    let mut p = Paired::new(&CHAIN, Compare::Ratio, "us/5000 chains");
    let mut g = group(c, "chain_30x5000", 2);
    g.bench_function("paired", |b| {
        b.iter_custom(|iters| {
            p.rounds(iters, |which| {
                let took = rt.block_on(async {
                    let start = Instant::now();
                    let mut sum = 0;
                    for _ in 0..5000 {
                        sum += if which == 0 {
                            boxed_chain(30).await
                        } else {
                            lazy_chain(30).await
                        };
                    }
                    assert_eq!(sum, 31 * 5000);
                    start.elapsed()
                });
                took.as_nanos() as f64 / 1000.0
            })
        })
    });
    g.finish();
    p.report("chain_30x5000");
}

criterion_group!(
    benches,
    collect_all_bench,
    windowed,
    collect_any_bench,
    chain
);
criterion_main!(benches);
