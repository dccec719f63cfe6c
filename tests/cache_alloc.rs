//! A cache hit allocates nothing, the first hit (which stores the value)
//! included: counted with a global allocator that tallies allocations made
//! by the current thread.
#![allow(clippy::disallowed_types)] // tests may name std types next to the shim

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::pin::{pin, Pin};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use lazyflight::sync::future::block_on;
use lazyflight::{Cache, ErrorPolicy, ManualClock};

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to `System`, only counting calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|a| a.set(a.get() + 1));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

#[test]
fn hits_allocate_nothing() {
    let clock = ManualClock::new();
    let plain = Cache::<u64, u64, ()>::new();
    let timed = Cache::<u64, u64, ()>::builder()
        .time_to_live(Duration::from_secs(60))
        .errors(ErrorPolicy::CachedFor(Duration::from_secs(1)))
        .clock(clock)
        .stats(true)
        .build();
    for k in 0..1_000 {
        let _ = block_on(plain.get(k, || async move { Ok(k) }));
        let _ = block_on(timed.get(k, || async move { Ok(k) }));
    }
    // A hit is ready at its first poll; polled by hand, since `block_on`
    // allocates its own waker.
    let mut cx = Context::from_waker(Waker::noop());
    let mut hit = |f: Pin<&mut dyn Future<Output = Result<u64, ()>>>| match f.poll(&mut cx) {
        Poll::Ready(v) => v.unwrap(),
        Poll::Pending => panic!("a hit must be ready at once"),
    };
    let before = allocs();
    let mut sum = 0;
    for k in 0..1_000 {
        sum += hit(pin!(plain.get(k, || async { Ok(0) })));
        sum += hit(pin!(timed.get(k, || async { Ok(0) })));
        sum += plain.peek(&k).unwrap().unwrap();
    }
    let during = allocs() - before;
    assert_eq!(sum, 3 * (0..1_000).sum::<u64>());
    assert_eq!(during, 0, "{during} allocations in 3000 hits");
    assert_eq!(timed.stats().unwrap().hits, 1_000);
}
