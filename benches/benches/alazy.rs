//! The filled-cell fast path of `ALazy` against its peers.
//!
//! Two groups, each running all of its contenders back to back in one
//! process so that their ratios are comparable on a noisy machine:
//!
//! * `get`: `ALazy::get` vs `std::sync::OnceLock::get`,
//!   `once_cell::sync::OnceCell::get`, `tokio::sync::OnceCell::get`,
//!   `async_once_cell::OnceCell::get` and a raw baseline (an `Acquire` load of
//!   a one-byte flag, a branch and a reference to the value).
//! * `get_or_init_filled`: build the `get_or_init` future on a filled cell and
//!   poll it once with a no-op waker, for `ALazy`, tokio and async-once-cell,
//!   vs the same raw baseline.
//!
//! Every iteration passes the cell through `black_box` so that the compiler
//! cannot hoist the load out of the loop, and reads the value through the
//! returned reference so that the reference is really produced.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use lazyflight_benches::RawCell;

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

fn filled_cells() -> Cells {
    let ours = lazyflight::ALazy::<u64, ()>::new();
    poll_once(
        &mut Context::from_waker(Waker::noop()),
        ours.get_or_init(|| async { Ok(VALUE) }),
    )
    .unwrap();
    let std_lock = OnceLock::new();
    std_lock.set(VALUE).unwrap();
    let once_cell = once_cell::sync::OnceCell::new();
    once_cell.set(VALUE).unwrap();
    let tokio = tokio::sync::OnceCell::new_with(Some(VALUE));
    let aoc = async_once_cell::OnceCell::new();
    poll_once(
        &mut Context::from_waker(Waker::noop()),
        aoc.get_or_init(async { VALUE }),
    );
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

struct Cells {
    ours: lazyflight::ALazy<u64, ()>,
    std_lock: OnceLock<u64>,
    once_cell: once_cell::sync::OnceCell<u64>,
    tokio: tokio::sync::OnceCell<u64>,
    aoc: async_once_cell::OnceCell<u64>,
    raw: RawCell<u64>,
}

fn get(c: &mut Criterion) {
    let cells = filled_cells();
    let mut g = c.benchmark_group("get");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));

    g.bench_function("raw_acquire", |b| {
        b.iter(|| *black_box(&cells.raw).get().unwrap())
    });
    g.bench_function("lazyflight", |b| {
        b.iter(|| *black_box(&cells.ours).get().unwrap())
    });
    g.bench_function("std_oncelock", |b| {
        b.iter(|| *black_box(&cells.std_lock).get().unwrap())
    });
    g.bench_function("once_cell", |b| {
        b.iter(|| *black_box(&cells.once_cell).get().unwrap())
    });
    g.bench_function("tokio", |b| {
        b.iter(|| *black_box(&cells.tokio).get().unwrap())
    });
    g.bench_function("async_once_cell", |b| {
        b.iter(|| *black_box(&cells.aoc).get().unwrap())
    });
    g.finish();
}

fn get_or_init_filled(c: &mut Criterion) {
    let cells = filled_cells();
    let mut g = c.benchmark_group("get_or_init_filled");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));

    // The baseline has no future at all: the target is that ours costs no
    // more than 1.5x a bare load, i.e. that its future vanishes when inlined.
    g.bench_function("raw_acquire", |b| {
        b.iter(|| *black_box(&cells.raw).get().unwrap())
    });
    g.bench_function("lazyflight", |b| {
        let mut cx = Context::from_waker(Waker::noop());
        b.iter(|| {
            let cell = black_box(&cells.ours);
            *poll_once(&mut cx, cell.get_or_init(|| async { Ok(0) })).unwrap()
        })
    });
    g.bench_function("tokio", |b| {
        let mut cx = Context::from_waker(Waker::noop());
        b.iter(|| {
            let cell = black_box(&cells.tokio);
            *poll_once(&mut cx, cell.get_or_init(|| async { 0 }))
        })
    });
    g.bench_function("async_once_cell", |b| {
        let mut cx = Context::from_waker(Waker::noop());
        b.iter(|| {
            let cell = black_box(&cells.aoc);
            *poll_once(&mut cx, cell.get_or_init(async { 0 }))
        })
    });
    g.finish();
}

criterion_group!(benches, get, get_or_init_filled);
criterion_main!(benches);
