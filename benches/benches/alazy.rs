//! The filled-cell fast path of `ALazy` against its peers.
//!
//! * `get`: `ALazy::get` vs `std::sync::OnceLock::get`,
//!   `once_cell::sync::OnceCell::get`, `tokio::sync::OnceCell::get`,
//!   `async_once_cell::OnceCell::get` and a raw baseline (an `Acquire` load of
//!   a one-byte flag, a branch and a reference to the value).
//! * `get_or_init_filled`: build the `get_or_init` future on a filled cell and
//!   poll it once, for `ALazy`, tokio and async-once-cell, vs the same raw
//!   baseline (which has no future at all).
//! * `fast_path_paired`: both again, paired (see [`fast_path_paired`]); the
//!   ratios in docs/benchmarks.md come from here. With a third case,
//!   `get_chain`: the same `get`s, each call's value the index of the next
//!   cell to read (see [`time_get_chain`]), so that the loop is bound by the
//!   latency of one call after another rather than by how many calls the
//!   front end can issue per cycle, which depends on where the loop lands in
//!   the binary.
//!
//! Every contender of one measurement runs in the same process, back to
//! back. Each call goes through [`opaque`] (so the load cannot be hoisted out
//! of the loop) and [`sink`] (so the value is really read), which keep the
//! loop free of stack stores that could alias with the cell.

// Peers and baselines use std types directly; clippy.toml's shim
// discipline is for the library.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::pin::pin;
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode};
use lazyflight_benches::{median, opaque, sink, RawCell};

const VALUE: u64 = 0x5eed;

/// Polls `fut` once; the fast path must be ready at once.
///
/// The `Context` (with `Waker::noop()`) is built once per benchmark, outside
/// the timed loop: in real code it belongs to the caller's own `poll`, so it
/// is not part of what `get_or_init` costs.
#[inline(always)]
fn poll_once<F: Future>(cx: &mut Context<'_>, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    match fut.as_mut().poll(cx) {
        Poll::Ready(out) => out,
        Poll::Pending => unreachable!("a filled cell is ready on the first poll"),
    }
}

struct Cells {
    ours: lazyflight::ALazy<u64, ()>,
    std_lock: OnceLock<u64>,
    once_cell: once_cell::sync::OnceCell<u64>,
    tokio: tokio::sync::OnceCell<u64>,
    aoc: async_once_cell::OnceCell<u64>,
    raw: RawCell<u64>,
}

fn filled_cells() -> Cells {
    let mut cx = Context::from_waker(Waker::noop());
    let ours = lazyflight::ALazy::<u64, ()>::new();
    poll_once(&mut cx, ours.get_or_init(|| async { Ok(VALUE) })).unwrap();
    let std_lock = OnceLock::new();
    std_lock.set(VALUE).unwrap();
    let once_cell = once_cell::sync::OnceCell::new();
    once_cell.set(VALUE).unwrap();
    let tokio = tokio::sync::OnceCell::new_with(Some(VALUE));
    let aoc = async_once_cell::OnceCell::new();
    poll_once(&mut cx, aoc.get_or_init(async { VALUE }));
    let raw = RawCell::new();
    raw.set(VALUE);
    Cells {
        ours,
        std_lock,
        once_cell,
        tokio,
        aoc,
        raw,
    }
}

/// Calls per timed iteration of `get`: unrolled, so that the loop's own
/// branch and where the loop happens to sit in the instruction cache weigh
/// less against a one-cycle operation. (Looped one call at a time, identical
/// machine code for two contenders came out up to 1.8x apart, run after run,
/// depending only on code placement.)
const GET_UNROLL: u64 = 8;

/// Runs `iters` iterations of `GET_UNROLL` calls of `f`; the time it took.
#[inline(never)]
fn timed_unrolled<F: FnMut() -> u64>(iters: u64, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        sink(f());
        sink(f());
        sink(f());
        sink(f());
        sink(f());
        sink(f());
        sink(f());
        sink(f());
    }
    start.elapsed()
}

/// Runs `iters` calls of `f`; the time it took. One call per iteration for
/// `get_or_init`: unrolled, the compiler stops inlining the bigger futures,
/// which would measure a call rather than the fast path.
#[inline(never)]
fn timed<F: FnMut() -> u64>(iters: u64, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..iters {
        sink(f());
    }
    start.elapsed()
}

/// One call of each `get` contender, in `GET` order.
const GET: [&str; 6] = [
    "std_oncelock",
    "lazyflight",
    "once_cell",
    "tokio",
    "async_once_cell",
    "raw_acquire",
];

/// Times `iters` iterations of `GET_UNROLL` calls.
fn time_get(cells: &Cells, which: usize, iters: u64) -> Duration {
    match which {
        0 => timed_unrolled(iters, || *opaque(&cells.std_lock).get().unwrap()),
        1 => timed_unrolled(iters, || *opaque(&cells.ours).get().unwrap()),
        2 => timed_unrolled(iters, || *opaque(&cells.once_cell).get().unwrap()),
        3 => timed_unrolled(iters, || *opaque(&cells.tokio).get().unwrap()),
        4 => timed_unrolled(iters, || *opaque(&cells.aoc).get().unwrap()),
        _ => timed_unrolled(iters, || *opaque(&cells.raw).get().unwrap()),
    }
}

/// Cells per contender in the `get_chain` case: a cycle through all of
/// them, well inside the L1 cache for every contender's cell size.
const CHAIN: usize = 64;

/// Each cell's value in the chain: the byte offset, in its array, of the
/// next cell (an offset rather than an index, so that going from a value to
/// the next cell is one addition for every contender, whatever the size of
/// its cell). A stride coprime with `CHAIN` makes one cycle through every
/// cell.
fn next_in_chain<C>(i: usize) -> u64 {
    (((i + 29) % CHAIN) * std::mem::size_of::<C>()) as u64
}

/// Every `get` contender's cells of the chain, filled with
/// [`next_in_chain`].
struct Chains {
    std_lock: [OnceLock<u64>; CHAIN],
    ours: [lazyflight::ALazy<u64, ()>; CHAIN],
    once_cell: [once_cell::sync::OnceCell<u64>; CHAIN],
    tokio: [tokio::sync::OnceCell<u64>; CHAIN],
    aoc: [async_once_cell::OnceCell<u64>; CHAIN],
    raw: [RawCell<u64>; CHAIN],
}

fn filled_chains() -> Box<Chains> {
    let mut cx = Context::from_waker(Waker::noop());
    let chains = Box::new(Chains {
        std_lock: std::array::from_fn(|_| OnceLock::new()),
        ours: std::array::from_fn(|_| lazyflight::ALazy::new()),
        once_cell: std::array::from_fn(|_| once_cell::sync::OnceCell::new()),
        tokio: std::array::from_fn(|i| {
            tokio::sync::OnceCell::new_with(Some(next_in_chain::<tokio::sync::OnceCell<u64>>(i)))
        }),
        aoc: std::array::from_fn(|_| async_once_cell::OnceCell::new()),
        raw: std::array::from_fn(|_| RawCell::new()),
    });
    for i in 0..CHAIN {
        let next = next_in_chain::<OnceLock<u64>>(i);
        chains.std_lock[i].set(next).unwrap();
        let next = next_in_chain::<lazyflight::ALazy<u64, ()>>(i);
        poll_once(
            &mut cx,
            chains.ours[i].get_or_init(|| async move { Ok(next) }),
        )
        .unwrap();
        let next = next_in_chain::<once_cell::sync::OnceCell<u64>>(i);
        chains.once_cell[i].set(next).unwrap();
        let next = next_in_chain::<async_once_cell::OnceCell<u64>>(i);
        poll_once(&mut cx, chains.aoc[i].get_or_init(async move { next }));
        chains.raw[i].set(next_in_chain::<RawCell<u64>>(i));
    }
    chains
}

/// Runs `iters` calls of `get` down the chain of `cells`, each call reading
/// the cell at the offset the previous call returned; the time it took.
#[inline(never)]
fn timed_chain<C, F: FnMut(&C) -> u64>(iters: u64, cells: &[C; CHAIN], mut get: F) -> Duration {
    let base: *const C = cells.as_ptr();
    let mut at = base;
    let start = Instant::now();
    for _ in 0..iters {
        // SAFETY: every value in the chain is the offset of a cell of
        // `cells` (see `filled_chains`), and `at` starts at the first.
        at = unsafe { base.byte_add(get(&*at) as usize) };
    }
    let took = start.elapsed();
    sink(at as u64);
    took
}

/// Times `iters` calls down the chain, `GET` order.
fn time_get_chain(chains: &Chains, which: usize, iters: u64) -> Duration {
    match which {
        0 => timed_chain(iters, &chains.std_lock, |c| *c.get().unwrap()),
        1 => timed_chain(iters, &chains.ours, |c| *c.get().unwrap()),
        2 => timed_chain(iters, &chains.once_cell, |c| *c.get().unwrap()),
        3 => timed_chain(iters, &chains.tokio, |c| *c.get().unwrap()),
        4 => timed_chain(iters, &chains.aoc, |c| *c.get().unwrap()),
        _ => timed_chain(iters, &chains.raw, |c| *c.get().unwrap()),
    }
}

/// `get_or_init` contenders, in `GET_OR_INIT` order. `OnceLock` and
/// once_cell are blocking cells: theirs is a plain call, no future.
const GET_OR_INIT: [&str; 6] = [
    "raw_acquire",
    "lazyflight",
    "tokio",
    "async_once_cell",
    "std_oncelock",
    "once_cell",
];

/// Times `iters` calls.
fn time_get_or_init(cells: &Cells, which: usize, iters: u64) -> Duration {
    let mut cx = Context::from_waker(Waker::noop());
    match which {
        // No future at all: the target is that ours costs at most 1.5x a
        // bare load, i.e. that its future all but vanishes when inlined.
        0 => timed(iters, || *opaque(&cells.raw).get().unwrap()),
        1 => timed(iters, || {
            let cell = opaque(&cells.ours);
            *poll_once(&mut cx, cell.get_or_init(|| async { Ok(0) })).unwrap()
        }),
        2 => timed(iters, || {
            let cell = opaque(&cells.tokio);
            *poll_once(&mut cx, cell.get_or_init(|| async { 0 }))
        }),
        3 => timed(iters, || {
            let cell = opaque(&cells.aoc);
            *poll_once(&mut cx, cell.get_or_init(async { 0 }))
        }),
        4 => timed(iters, || *opaque(&cells.std_lock).get_or_init(|| 0)),
        _ => timed(iters, || *opaque(&cells.once_cell).get_or_init(|| 0)),
    }
}

/// Times `iters` calls down the chain, `GET_OR_INIT` order: the same
/// futures as [`time_get_or_init`], each built on the cell the previous one's
/// value points to. What this adds to the throughput figures: whether the
/// future lengthens the path from one value to the next (a value passed
/// through the future's memory would), not how many instructions it costs.
fn time_get_or_init_chain(chains: &Chains, which: usize, iters: u64) -> Duration {
    let mut cx = Context::from_waker(Waker::noop());
    match which {
        0 => timed_chain(iters, &chains.raw, |c| *c.get().unwrap()),
        1 => timed_chain(iters, &chains.ours, |c| {
            *poll_once(&mut cx, c.get_or_init(|| async { Ok(0) })).unwrap()
        }),
        2 => timed_chain(iters, &chains.tokio, |c| {
            *poll_once(&mut cx, c.get_or_init(|| async { 0 }))
        }),
        3 => timed_chain(iters, &chains.aoc, |c| {
            *poll_once(&mut cx, c.get_or_init(async { 0 }))
        }),
        4 => timed_chain(iters, &chains.std_lock, |c| *c.get_or_init(|| 0)),
        _ => timed_chain(iters, &chains.once_cell, |c| *c.get_or_init(|| 0)),
    }
}

/// Criterion's figures for this group are per `GET_UNROLL` calls.
fn get(c: &mut Criterion) {
    let cells = filled_cells();
    let mut g = c.benchmark_group("get");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (which, name) in GET.iter().enumerate() {
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| time_get(&cells, which, iters))
        });
    }
    g.finish();
}

fn get_or_init_filled(c: &mut Criterion) {
    let cells = filled_cells();
    let mut g = c.benchmark_group("get_or_init_filled");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for (which, name) in GET_OR_INIT.iter().enumerate() {
        g.bench_function(*name, |b| {
            b.iter_custom(|iters| time_get_or_init(&cells, which, iters))
        });
    }
    g.finish();
}

/// Calls per timed batch of the paired measurement (long enough that
/// reading the clock, twice per batch, is lost in the noise).
const BATCH_CALLS: u64 = 4096;

/// Per-round times (ns per call) of the paired measurement, one `Vec` per
/// contender.
static PAIRED: Mutex<Vec<Vec<f64>>> = Mutex::new(Vec::new());

/// Both measurements again, paired: each round times a batch of every
/// contender back to back (in a rotating order), and each ratio is the
/// median of the per-round ratios to the reference (`OnceLock::get` for
/// `get`, the raw load for `get_or_init`). On a shared machine whose load
/// drifts between the seconds-apart criterion benchmarks above, per-round
/// ratios cancel the drift. Criterion times whole rounds; the medians and
/// ratios are printed after each benchmark.
fn fast_path_paired(c: &mut Criterion) {
    let cells = filled_cells();
    let chains = filled_chains();
    let mut g = c.benchmark_group("fast_path_paired");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
        .sampling_mode(SamplingMode::Flat);

    type TimeFn<'a> = Box<dyn Fn(usize, u64) -> Duration + 'a>;
    let cases: [(&str, &[&str], TimeFn, u64); 4] = [
        (
            "get",
            &GET,
            Box::new(|w, n| time_get(&cells, w, n)),
            GET_UNROLL,
        ),
        (
            "get_or_init_filled",
            &GET_OR_INIT,
            Box::new(|w, n| time_get_or_init(&cells, w, n)),
            1,
        ),
        (
            "get_or_init_chain",
            &GET_OR_INIT,
            Box::new(|w, n| time_get_or_init_chain(&chains, w, n)),
            1,
        ),
        (
            "get_chain",
            &GET,
            Box::new(|w, n| time_get_chain(&chains, w, n)),
            1,
        ),
    ];
    for (what, names, time, calls_per_iter) in cases {
        *PAIRED.lock().unwrap() = vec![Vec::new(); names.len()];
        g.bench_function(what, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut paired = PAIRED.lock().unwrap();
                for i in 0..iters as usize {
                    for k in 0..names.len() {
                        let which = (i + k) % names.len();
                        let took = time(which, BATCH_CALLS / calls_per_iter);
                        paired[which].push(took.as_nanos() as f64 / BATCH_CALLS as f64);
                    }
                }
                start.elapsed()
            })
        });
        report_paired(what, names, &PAIRED.lock().unwrap());
    }
    g.finish();
}

/// Prints each contender's median time per call and the median of its
/// per-round ratio to `names[0]`.
fn report_paired(what: &str, names: &[&str], rounds: &[Vec<f64>]) {
    if rounds[0].is_empty() {
        return;
    }
    println!(
        "fast_path_paired/{what}: {} rounds of {BATCH_CALLS} calls each",
        rounds[0].len()
    );
    for (k, name) in names.iter().enumerate() {
        let ratio = median(
            rounds[k]
                .iter()
                .zip(&rounds[0])
                .map(|(x, r)| x / r)
                .collect(),
        );
        println!(
            "  {name:<16} median {:6.3} ns, per-round ratio to {} (median) {ratio:5.2}",
            median(rounds[k].clone()),
            names[0]
        );
    }
}

criterion_group!(benches, get, get_or_init_filled, fast_path_paired);
criterion_main!(benches);
