//! Memory given back: after a burst of keys has come and gone, a `Group` or
//! a `Cache` does not keep the memory of its peak, and a task is freed once
//! the last reference to it goes, also on a path that panics. Measured with a global
//! allocator that tallies, per thread, the bytes allocated and not yet freed
//! (every allocation and free here happens on the test's own thread).
#![allow(clippy::disallowed_types)] // tests may name std types next to the shim

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use lazyflight::sync::future::block_on;
use lazyflight::task::Lazy;
use lazyflight::{Cache, Group, Leader, ManualClock};

mod common;
#[path = "common/keeps_waker.rs"]
mod keeps_waker;
use common::lead;
use keeps_waker::KeepsWaker;
use std::hash::{Hash, Hasher};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn add(bytes: isize) {
    // `try_with`: the allocator runs during thread teardown too.
    let _ = LIVE.try_with(|l| l.set(l.get() + bytes));
}

// SAFETY: forwards to `System`, only counting bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        add(layout.size() as isize);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        add(-(layout.size() as isize));
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes this thread has allocated and not freed.
fn live() -> isize {
    LIVE.with(Cell::get)
}

const BURST: u64 = 100_000;

/// What an emptied structure may keep: its 64 shards' tables at their
/// smallest kept size (a few hundred bytes each).
const KEPT: isize = 64 * 1024;

/// Leads one flight per key in a fresh group, then drops every leader: the
/// emptied group keeps under `KEPT` bytes.
fn group_gives_back_a_burst<K: Hash + Eq>(keys: impl Iterator<Item = K>) {
    let group = Group::<K, u64, ()>::new();
    let before = live();
    let leaders: Vec<Leader<K, u64, ()>> = keys.map(|k| lead(group.entry(k))).collect();
    let peak = live() - before;
    drop(leaders);
    assert!(group.is_empty());
    let kept = live() - before;
    assert!(
        kept < KEPT,
        "an empty group keeps {kept} bytes after a burst (peak {peak})"
    );
}

/// Fills a fresh cache whose values live 10 s with one value per key, lets
/// them all expire and purges them: the emptied cache keeps under `KEPT`
/// bytes.
fn timed_cache_gives_back_a_purged_burst<K: Hash + Eq>(keys: impl Iterator<Item = K>) {
    let clock = ManualClock::new();
    let cache = Cache::<K, u64, ()>::builder()
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    let before = live();
    let mut n = 0;
    for k in keys {
        assert_eq!(block_on(cache.get(k, || async { Ok(1) })), Ok(1));
        n += 1;
    }
    let peak = live() - before;
    clock.advance(Duration::from_secs(10));
    assert_eq!(cache.purge_expired(), n);
    let kept = live() - before;
    assert!(
        kept < KEPT,
        "a purged cache keeps {kept} bytes (peak {peak})"
    );
}

#[test]
fn a_group_gives_back_its_tables_after_a_burst_of_flights() {
    group_gives_back_a_burst(0..BURST);
}

#[test]
fn a_group_gives_back_its_forgotten_flights_after_a_burst() {
    let group = Group::<u64, u64, ()>::new();
    let before = live();
    // Forgotten flights with a subscriber are kept (by id) until their
    // leader ends them.
    let flights: Vec<_> = (0..BURST)
        .map(|k| {
            let l = lead(group.entry(k));
            let s = common::join(group.entry(k));
            assert!(group.forget(&k));
            (l, s)
        })
        .collect();
    for (l, s) in flights {
        let mine = l.complete(Ok(1));
        assert!(lazyflight::sync::Arc::ptr_eq(
            &mine,
            &s.try_recv().expect("published")
        ));
    }
    assert_eq!(group.in_flight(), 0);
    let kept = live() - before;
    assert!(kept < KEPT, "an empty group keeps {kept} bytes");
}

fn timed(clock: &ManualClock) -> Cache<u64, u64, ()> {
    Cache::builder()
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .build()
}

#[test]
fn a_timed_cache_gives_back_purged_entries() {
    timed_cache_gives_back_a_purged_burst(0..BURST);
}

#[test]
fn a_timed_cache_gives_back_invalidated_entries() {
    let clock = ManualClock::new();
    let cache = timed(&clock);
    let before = live();
    for k in 0..BURST {
        assert_eq!(block_on(cache.get(k, || async move { Ok(k) })), Ok(k));
    }
    for k in 0..BURST {
        assert!(cache.invalidate(&k));
    }
    let kept = live() - before;
    assert!(kept < KEPT, "an emptied cache keeps {kept} bytes");
}

/// In a cache without expiry, entries in flight live in one table and
/// stored values in another: once every value has moved across, the first
/// table's memory is given back (the second keeps its capacity until
/// `clear`, since growing or shrinking it runs `K`'s `Hash`).
#[test]
fn a_cache_gives_back_its_table_of_entries_once_values_are_stored() {
    let cache = Cache::<u64, u64, ()>::new();
    let before = live();
    for k in 0..BURST {
        assert_eq!(block_on(cache.get(k, || async move { Ok(k) })), Ok(k));
    }
    let entries_and_room = live() - before;
    // The first hit of each key moves its value into the table of values.
    for k in 0..BURST {
        assert_eq!(block_on(cache.get(k, || async { Ok(0) })), Ok(k));
    }
    let values_only = live() - before;
    // A hashbrown table of `BURST` slots of 16 bytes (`u64` key and value)
    // and a control byte each, in a power-of-two number of buckets at most
    // 7/8 full; the table of entries (32-byte slots) would be twice that.
    let values_table = ((BURST as usize * 8 / 7 + 1).next_power_of_two() * (16 + 1)) as isize;
    assert!(
        values_only < values_table * 3 / 2,
        "{values_only} bytes kept (of {entries_and_room} before the first hits), \
         where the table of values takes {values_table}"
    );
    cache.clear();
    let kept = live() - before;
    assert!(kept < KEPT, "a cleared cache keeps {kept} bytes");
}

/// Equal by both fields, hashed by the first only (a legal `Hash`): every
/// key of one tenant lands in one probe sequence, so removals leave
/// tombstones, which `HashTable::capacity` does not count as capacity.
#[derive(PartialEq, Eq)]
struct Tenant(u32, u32);

impl Hash for Tenant {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

/// The size (3,582 keys) at which the emptied table is all tombstones.
const CLUSTER: u32 = 3_582;

#[test]
fn a_group_with_colliding_keys_gives_back_its_table() {
    group_gives_back_a_burst((0..CLUSTER).map(|i| Tenant(0, i)));
}

#[test]
fn a_timed_cache_with_colliding_keys_gives_back_purged_entries() {
    timed_cache_gives_back_a_purged_burst((0..CLUSTER).map(|i| Tenant(0, i)));
}

/// A task without an executor runs inside `wake()`, and its callback
/// panics there: the waker's count on the task is still released, so the
/// task is freed (every byte of the round is given back).
#[test]
fn a_wake_whose_run_panics_still_frees_the_task() {
    let round = || {
        let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
        // `resume_unwind`: a panic that skips the panic hook, whose message
        // the test harness would keep (allocated) in the test's output.
        Lazy::new(KeepsWaker(slot.clone(), false))
            .start(|_| std::panic::resume_unwind(Box::new("callback panics")));
        let waker = slot.lock().unwrap().take().expect("the task is parked");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || waker.wake()));
        assert!(r.is_err());
    };
    // The first panic sets up what the panic machinery keeps for good.
    round();
    let before = live();
    round();
    let kept = live() - before;
    assert_eq!(kept, 0, "a round kept {kept} bytes: the task was not freed");
}

/// A stampede of `BURST` waiters on a long-lived cell (a `static` one, say)
/// comes and goes: the cell keeps under 4 KiB of it, whether the last
/// waiter to leave was polled to its value (`last_polled`) or dropped.
fn a_cell_gives_back_its_waiters_after_a_stampede(last_polled: bool) {
    use lazyflight::ALazy;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    let cell = ALazy::<u64, ()>::new();
    let mut cx = Context::from_waker(Waker::noop());
    let before = live();
    {
        let open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let o = open.clone();
        let mut leader = Box::pin(cell.get_or_init(move || {
            std::future::poll_fn(move |_| {
                if o.load(std::sync::atomic::Ordering::SeqCst) {
                    Poll::Ready(Ok(1))
                } else {
                    Poll::Pending
                }
            })
        }));
        assert!(leader.as_mut().poll(&mut cx).is_pending());
        let mut waiters: Vec<Pin<Box<_>>> = (0..BURST)
            .map(|_| Box::pin(cell.get_or_init(|| async { Ok(0) })))
            .collect();
        for w in &mut waiters {
            assert!(w.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(cell.waiting(), BURST as usize);
        open.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(leader.as_mut().poll(&mut cx), Poll::Ready(Ok(&1)));
        // Half leave by being polled, half by being dropped, in the order
        // that makes the last one to leave the kind asked for.
        let mut polled = waiters.split_off(waiters.len() / 2);
        let mut dropped = Some(waiters);
        if last_polled {
            drop(dropped.take());
        }
        for w in &mut polled {
            assert_eq!(w.as_mut().poll(&mut cx), Poll::Ready(Ok(&1)));
        }
        drop(dropped);
    }
    assert_eq!(cell.waiting(), 0);
    let kept = live() - before;
    assert!(
        kept < 4096,
        "a filled cell keeps {kept} bytes after a stampede of {BURST} waiters"
    );
}

#[test]
fn a_cell_gives_back_its_waiters_after_a_stampede_whose_last_waiter_is_polled() {
    a_cell_gives_back_its_waiters_after_a_stampede(true);
}

#[test]
fn a_cell_gives_back_its_waiters_after_a_stampede_whose_last_waiter_is_dropped() {
    a_cell_gives_back_its_waiters_after_a_stampede(false);
}

/// A miss of a `u64 -> u64` cache, boxed so a burst of them can be held.
type Miss<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<u64, ()>> + 'a>>;

/// A `get` of every key in `keys` whose init never finishes, each polled
/// once: all in flight at once.
fn pending_misses<'a>(
    cache: &'a Cache<u64, u64, ()>,
    keys: std::ops::Range<u64>,
    cx: &mut std::task::Context<'_>,
) -> Vec<Miss<'a>> {
    let mut misses: Vec<Miss<'a>> = keys
        .map(|k| Box::pin(cache.get(k, std::future::pending::<Result<u64, ()>>)) as Miss<'a>)
        .collect();
    for miss in &mut misses {
        assert!(miss.as_mut().poll(cx).is_pending());
    }
    misses
}

/// A burst of misses in a cache without expiry, all in flight at once and
/// then all cancelled, stores nothing: the emptied cache keeps under `KEPT`
/// bytes. (Each miss keeps room in the table of stored values for every key
/// in flight beside it, and that room was kept for ever.)
#[test]
fn a_cache_gives_back_a_burst_of_cancelled_misses() {
    use std::task::{Context, Waker};
    let cache = Cache::<u64, u64, ()>::new();
    let before = live();
    let mut cx = Context::from_waker(Waker::noop());
    let misses = pending_misses(&cache, 0..BURST, &mut cx);
    let peak = live() - before;
    drop(misses);
    assert!(cache.is_empty());
    let kept = live() - before;
    assert!(
        kept < KEPT,
        "an empty cache keeps {kept} bytes after a burst of misses (peak {peak})"
    );
}

/// As above, with every attempt failing under `ErrorPolicy::SharedOnly`:
/// nothing is ever stored, yet the room kept for values stayed.
#[test]
fn a_shared_only_cache_gives_back_a_burst_of_failed_attempts() {
    use lazyflight::ErrorPolicy;
    use std::cell::Cell;
    use std::rc::Rc;
    use std::task::{Context, Poll, Waker};
    let cache = Cache::<u64, u64, ()>::builder()
        .errors(ErrorPolicy::SharedOnly)
        .build();
    let before = live();
    // Every attempt is held open until all are in flight, then fails.
    let gates: Vec<Rc<Cell<bool>>> = (0..BURST).map(|_| Rc::new(Cell::new(false))).collect();
    let mut cx = Context::from_waker(Waker::noop());
    let mut misses: Vec<Miss<'_>> = gates
        .iter()
        .zip(0..)
        .map(|(gate, k)| {
            let gate = gate.clone();
            let attempt = move || {
                std::future::poll_fn(move |_| {
                    if gate.get() {
                        Poll::Ready(Err(()))
                    } else {
                        Poll::Pending
                    }
                })
            };
            Box::pin(cache.get(k, attempt)) as Miss<'_>
        })
        .collect();
    for miss in &mut misses {
        assert!(miss.as_mut().poll(&mut cx).is_pending());
    }
    let peak = live() - before;
    for gate in &gates {
        gate.set(true);
    }
    for miss in &mut misses {
        assert_eq!(miss.as_mut().poll(&mut cx), Poll::Ready(Err(())));
    }
    drop(misses);
    drop(gates);
    assert!(cache.is_empty());
    let kept = live() - before;
    assert!(
        kept < KEPT,
        "an empty cache keeps {kept} bytes after a burst of failed attempts (peak {peak})"
    );
}

/// As [`a_cache_gives_back_a_burst_of_cancelled_misses`], in a cache that
/// also holds values, in every shard: the room the burst's keys kept in the
/// table of stored values is given back at each shard's next miss.
#[test]
fn a_cache_holding_values_gives_back_a_burst_of_cancelled_misses_at_the_next_misses() {
    use std::future::Future;
    use std::task::{Context, Waker};
    let cache = Cache::<u64, u64, ()>::new();
    let mut cx = Context::from_waker(Waker::noop());
    // 1024 stored values: every one of the 64 shards holds some (so none of
    // their tables of values is empty).
    let stored = 1024;
    for k in 0..stored {
        let hit = Box::pin(cache.get(k, move || async move { Ok(k) }))
            .as_mut()
            .poll(&mut cx);
        assert!(hit.is_ready());
        // The first hit moves the value into the table of stored values.
        assert!(Box::pin(cache.get(k, || async { unreachable!() }))
            .as_mut()
            .poll(&mut cx)
            .is_ready());
    }
    let before = live();
    let misses = pending_misses(&cache, stored..stored + BURST, &mut cx);
    let peak = live() - before;
    drop(misses);
    // One more miss per shard, at the least (keys spread by hash: 4096 of
    // them reach every one of 64 shards), each cancelled at once.
    for k in u64::MAX - 4096..u64::MAX {
        drop(pending_misses(&cache, k..k + 1, &mut cx));
    }
    assert_eq!(cache.len(), stored as usize);
    let kept = live() - before;
    assert!(
        kept < KEPT,
        "a cache keeps {kept} bytes after a burst of misses and a miss per shard (peak {peak})"
    );
}

/// A stampede of `BURST` waiters queues on a long-lived cell while its owned
/// initializer is being built (inside the leader's `f`), is notified all at
/// once when the initializer is installed, and each waiter consumes its
/// notification by being polled (it then helps drive): the emptied waiter
/// queue gives its nodes back, as when the waiters leave by a drop.
#[test]
fn a_cell_gives_back_its_waiters_after_a_stampede_notified_by_an_owned_install() {
    use lazyflight::ALazy;
    use std::future::Future;
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    let cell = ALazy::<u64, ()>::new();
    let mut cx = Context::from_waker(Waker::noop());
    let before = live();
    {
        let mut waiters: Vec<Pin<Box<_>>> = (0..BURST)
            .map(|_| Box::pin(cell.get_or_init_owned(|| async { Ok(0) })))
            .collect();
        let mut leader = Box::pin(cell.get_or_init_owned(|| {
            // The cell is taken, its initializer not yet installed: every
            // waiter queues on the cell itself.
            let mut cx = Context::from_waker(Waker::noop());
            for w in &mut waiters {
                assert!(w.as_mut().poll(&mut cx).is_pending());
            }
            std::future::ready(Ok(1))
        }));
        assert_eq!(leader.as_mut().poll(&mut cx), Poll::Ready(Ok(&1)));
        drop(leader);
        for w in &mut waiters {
            assert_eq!(w.as_mut().poll(&mut cx), Poll::Ready(Ok(&1)));
        }
    }
    assert_eq!(cell.waiting(), 0);
    let kept = live() - before;
    assert!(
        kept < 4096,
        "a filled cell keeps {kept} bytes after a stampede of {BURST} waiters"
    );
}
