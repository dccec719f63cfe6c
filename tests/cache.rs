//! Public-API tests of `Cache`.
#![allow(clippy::disallowed_types)] // tests may name std types next to the shim

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use lazyflight::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use lazyflight::sync::future::block_on;
use lazyflight::sync::Arc;
use lazyflight::{Cache, CacheStats, ErrorPolicy, ManualClock};

#[path = "common/armed_key.rs"]
mod armed_key;

/// The seed's Cache example, with `.await` driven by `block_on`.
#[test]
fn seed_cache_example() {
    block_on(async {
        let cache = Cache::new();

        // Initialize value for key
        let result = cache.get(1, || async { Ok::<_, ()>(42) }).await;

        // Subsequent access returns cached value
        let result2 = cache.get(1, || async { Ok::<_, ()>(99) }).await;
        // result2 is still 42
        assert_eq!(result, Ok(42));
        assert_eq!(result2, Ok(42));
    });
}

fn counted(calls: &Arc<AtomicUsize>, v: u32) -> impl Future<Output = Result<u32, String>> {
    let calls = calls.clone();
    async move {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(v)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_init() {
    let cache = Arc::new(Cache::<u8, u32, String>::builder().stats(true).build());
    let calls = Arc::new(AtomicUsize::new(0));
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (cache, calls, mut open) = (cache.clone(), calls.clone(), open_rx.clone());
            tokio::spawn(async move {
                cache
                    .get(1, || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        open.wait_for(|o| *o).await.unwrap();
                        Ok(7)
                    })
                    .await
            })
        })
        .collect();
    while cache.stats().unwrap().misses < 16 {
        tokio::task::yield_now().await;
    }
    open_tx.send(true).unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Ok(7));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = cache.stats().unwrap();
    assert_eq!((s.misses, s.inits, s.coalesced, s.errors), (16, 1, 15, 0));
    assert_eq!(cache.get(1, || async { Ok(0) }).await, Ok(7));
    assert_eq!(cache.stats().unwrap().hits, 1);
}

#[test]
fn errors_are_cached_until_invalidated_by_default() {
    let cache = Cache::<u8, u32, String>::new();
    let calls = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        block_on(cache.get(1, || async { Err("down".to_owned()) })),
        Err("down".into())
    );
    assert_eq!(
        block_on(cache.get(1, || counted(&calls, 1))),
        Err("down".into())
    );
    assert_eq!(cache.peek(&1), Some(Err("down".into())));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(cache.invalidate(&1));
    assert_eq!(block_on(cache.get(1, || counted(&calls, 1))), Ok(1));
}

#[test]
fn errors_cached_for_a_duration() {
    let clock = ManualClock::new();
    let cache = Cache::<u8, u32, String>::builder()
        .errors(ErrorPolicy::CachedFor(Duration::from_secs(5)))
        .clock(clock.clone())
        .build();
    let calls = Arc::new(AtomicUsize::new(0));
    assert!(block_on(cache.get(1, || async { Err("down".to_owned()) })).is_err());
    clock.advance(Duration::from_secs(4));
    assert_eq!(
        block_on(cache.get(1, || counted(&calls, 1))),
        Err("down".into())
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.peek(&1), None);
    assert_eq!(block_on(cache.get(1, || counted(&calls, 2))), Ok(2));
    // Values are not subject to the error duration.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(block_on(cache.get(1, || counted(&calls, 3))), Ok(2));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

/// With a time-to-live shorter than `CachedFor`, an error expires with the
/// time-to-live (as `ErrorPolicy::CachedFor` documents), and is purged then.
#[test]
fn a_shorter_time_to_live_expires_errors_too() {
    let clock = ManualClock::new();
    let cache = Cache::<u8, u32, String>::builder()
        .errors(ErrorPolicy::CachedFor(Duration::from_secs(7)))
        .time_to_live(Duration::from_secs(5))
        .clock(clock.clone())
        .build();
    let calls = Arc::new(AtomicUsize::new(0));
    assert!(block_on(cache.get(1, || async { Err("down".to_owned()) })).is_err());
    clock.advance(Duration::from_secs(4));
    assert_eq!(cache.peek(&1), Some(Err("down".into())));
    assert_eq!(cache.purge_expired(), 0);
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.peek(&1), None, "an error outlived the time-to-live");
    assert_eq!(cache.purge_expired(), 1);
    assert_eq!(block_on(cache.get(1, || counted(&calls, 2))), Ok(2));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_only_errors_reach_that_attempts_callers_only() {
    let cache = Arc::new(
        Cache::<u8, u32, String>::builder()
            .errors(ErrorPolicy::SharedOnly)
            .stats(true)
            .build(),
    );
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (cache, mut open) = (cache.clone(), open_rx.clone());
            tokio::spawn(async move {
                cache
                    .get(1, || async move {
                        open.wait_for(|o| *o).await.unwrap();
                        Err(format!("attempt by {i}"))
                    })
                    .await
            })
        })
        .collect();
    while cache.stats().unwrap().misses < 8 {
        tokio::task::yield_now().await;
    }
    open_tx.send(true).unwrap();
    let mut errs = Vec::new();
    for t in tasks {
        errs.push(t.await.unwrap().unwrap_err());
    }
    assert!(
        errs.iter().all(|e| *e == errs[0]),
        "one attempt, one error: {errs:?}"
    );
    assert_eq!(cache.stats().unwrap().inits, 1);
    assert!(cache.is_empty(), "the error is not stored");
    assert_eq!(cache.peek(&1), None);
    assert_eq!(cache.get(1, || async { Ok(5) }).await, Ok(5));
}

#[test]
fn values_expire_after_their_ttl() {
    let clock = ManualClock::new();
    let cache = Cache::<u8, u32, String>::builder()
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    let calls = Arc::new(AtomicUsize::new(0));
    assert_eq!(block_on(cache.get(1, || counted(&calls, 1))), Ok(1));
    clock.advance(Duration::from_secs(9));
    assert_eq!(block_on(cache.get(1, || counted(&calls, 2))), Ok(1));
    assert_eq!(cache.peek(&1), Some(Ok(1)));
    clock.advance(Duration::from_secs(1));
    assert_eq!(cache.peek(&1), None);
    assert_eq!(cache.len(), 1, "expired entries stay until touched");
    assert_eq!(block_on(cache.get(1, || counted(&calls, 2))), Ok(2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(cache.len(), 1);
}

/// `purge_expired` removes the entries whose result has expired (values
/// past their time-to-live, errors past their `CachedFor`), and nothing
/// else: not an unexpired value or error, not an entry in flight.
#[test]
fn purge_expired_removes_expired_results_only() {
    let clock = ManualClock::new();
    let cache = Cache::<u8, u32, String>::builder()
        .time_to_live(Duration::from_secs(10))
        .errors(ErrorPolicy::CachedFor(Duration::from_secs(5)))
        .clock(clock.clone())
        .build();
    assert_eq!(cache.purge_expired(), 0, "an empty cache");
    // t = 0: key 1 a value, key 2 an error.
    assert_eq!(block_on(cache.get(1, || async { Ok(1) })), Ok(1));
    assert!(block_on(cache.get(2, || async { Err("down".to_owned()) })).is_err());
    // Key 3: an init in flight, never finished while the purges run.
    let mut in_flight = Box::pin(cache.get(3, std::future::pending));
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(in_flight.as_mut().poll(&mut cx), Poll::Pending);
    clock.advance(Duration::from_secs(4));
    // t = 4: key 4, a value.
    assert_eq!(block_on(cache.get(4, || async { Ok(4) })), Ok(4));
    assert_eq!(cache.purge_expired(), 0, "nothing has expired at t = 4");
    assert_eq!(cache.len(), 4);
    clock.advance(Duration::from_secs(1));
    // t = 5: the error's five seconds are up.
    assert_eq!(cache.purge_expired(), 1);
    assert_eq!(cache.len(), 3);
    assert_eq!(cache.peek(&1), Some(Ok(1)));
    clock.advance(Duration::from_secs(5));
    // t = 10: key 1's time-to-live is up; key 4 has four seconds left.
    assert_eq!(cache.purge_expired(), 1);
    assert_eq!(cache.len(), 2, "key 3 (in flight) and key 4 stay");
    assert_eq!(cache.peek(&4), Some(Ok(4)));
    clock.advance(Duration::from_secs(3600));
    assert_eq!(cache.purge_expired(), 1, "key 4 only: key 3 is in flight");
    assert_eq!(cache.len(), 1);
    // The init in flight was not disturbed: its result is stored, stamped
    // when it finished.
    drop(in_flight);
    assert_eq!(cache.len(), 0, "the abandoned entry leaves");
    assert_eq!(block_on(cache.get(3, || async { Ok(3) })), Ok(3));
    assert_eq!(cache.purge_expired(), 0);
    assert_eq!(cache.peek(&3), Some(Ok(3)));
    // A purged key's next get runs its init again.
    assert_eq!(block_on(cache.get(1, || async { Ok(10) })), Ok(10));
}

/// An init finishing after a purge ran is stored: the purge skips entries
/// in flight rather than removing them (as `invalidate` would).
#[test]
fn purge_expired_keeps_an_init_in_flight_whose_result_is_then_stored() {
    let clock = ManualClock::new();
    let cache = Cache::<u8, u32, String>::builder()
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    let mut leader = Box::pin(cache.get(1, || async { Ok(rx.await.unwrap()) }));
    let mut cx = Context::from_waker(Waker::noop());
    assert_eq!(leader.as_mut().poll(&mut cx), Poll::Pending);
    clock.advance(Duration::from_secs(60));
    assert_eq!(cache.purge_expired(), 0);
    tx.send(7).unwrap();
    assert_eq!(leader.as_mut().poll(&mut cx), Poll::Ready(Ok(7)));
    assert_eq!(cache.peek(&1), Some(Ok(7)), "stamped when it finished");
    let calls = Arc::new(AtomicUsize::new(0));
    assert_eq!(block_on(cache.get(1, || counted(&calls, 8))), Ok(7));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A removed key's and value's `Drop` both panic, in `purge_expired`,
/// `clear` and `invalidate`: the value's panic is caught (dropped as one
/// value, the pair would abort the process: the value is dropped while the
/// key's panic unwinds), the key's reaches the caller, and nothing is left.
#[test]
fn removals_survive_a_key_and_a_value_that_both_panic_in_drop() {
    use armed_key::ArmedKey as Key;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    // The stored keys are armed; values panic once `ARMED` is set.
    static ARMED: AtomicBool = AtomicBool::new(false);
    #[derive(Clone)]
    struct Value;
    impl Drop for Value {
        fn drop(&mut self) {
            if ARMED.load(SeqCst) {
                panic!("value drop");
            }
        }
    }
    let clock = ManualClock::new();
    let timed = || {
        Cache::<Key, Value, Value>::builder()
            .time_to_live(Duration::from_secs(1))
            .clock(clock.clone())
            .build()
    };
    let (purged, timed_invalidated) = (timed(), timed());
    let (cleared, invalidated) = (Cache::new(), Cache::new());
    let errors = Cache::<Key, Value, Value>::new();
    for cache in [&purged, &timed_invalidated, &cleared, &invalidated] {
        drop(block_on(cache.get(Key(1, true), || async { Ok(Value) })));
        // Untimed: the first hit moves the value into the table of values.
        drop(block_on(cache.get(Key(1, false), || async { Ok(Value) })));
    }
    drop(block_on(errors.get(Key(1, true), || async { Err(Value) })));
    clock.advance(Duration::from_secs(1));
    ARMED.store(true, SeqCst);
    let quietly = |f: &dyn Fn()| std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let results = [
        quietly(&|| {
            let _ = purged.purge_expired();
        }),
        quietly(&|| cleared.clear()),
        quietly(&|| {
            let _ = invalidated.invalidate(&Key(1, false));
        }),
        quietly(&|| {
            let _ = timed_invalidated.invalidate(&Key(1, false));
        }),
        quietly(&|| {
            let _ = errors.invalidate(&Key(1, false));
        }),
    ];
    ARMED.store(false, SeqCst);
    for r in results {
        assert_eq!(
            r.unwrap_err().downcast_ref::<&str>(),
            Some(&"key drop panics")
        );
    }
    for cache in [&purged, &timed_invalidated, &cleared, &invalidated, &errors] {
        assert!(cache.is_empty());
    }
}

/// In a cache where nothing expires, `purge_expired` removes nothing.
#[test]
fn purge_expired_without_expiry_removes_nothing() {
    let clock = ManualClock::new();
    for errors in [ErrorPolicy::Cached, ErrorPolicy::SharedOnly] {
        let cache = Cache::<u8, u32, u32>::builder()
            .errors(errors)
            .clock(clock.clone())
            .build();
        assert_eq!(block_on(cache.get(1, || async { Ok(1) })), Ok(1));
        assert_eq!(block_on(cache.get(1, || async { Ok(0) })), Ok(1), "moved");
        assert_eq!(block_on(cache.get(2, || async { Err(2) })), Err(2));
        clock.advance(Duration::from_secs(1 << 40));
        assert_eq!(cache.purge_expired(), 0);
        let stored = if errors == ErrorPolicy::Cached { 2 } else { 1 };
        assert_eq!(cache.len(), stored);
    }
}

/// A key (compared and hashed by `.0`) whose `Drop` panics once for key 0,
/// the first time its flag (`.1`, one per test: tests run in parallel) is
/// found set.
struct ZeroPanicsOnce(u32, &'static AtomicBool);

impl PartialEq for ZeroPanicsOnce {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for ZeroPanicsOnce {}

impl std::hash::Hash for ZeroPanicsOnce {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

impl Drop for ZeroPanicsOnce {
    fn drop(&mut self) {
        if self.0 == 0 && self.1.swap(false, Ordering::SeqCst) {
            panic!("key drop panics");
        }
    }
}

/// A key whose `Drop` panics during `purge_expired`: every other expired
/// entry is still removed, in every shard, and the panic reaches the caller.
#[test]
fn purge_expired_removes_every_expired_entry_when_a_drop_panics() {
    static PANIC_ON_DROP: AtomicBool = AtomicBool::new(false);
    let key = |k| ZeroPanicsOnce(k, &PANIC_ON_DROP);
    let clock = ManualClock::new();
    let cache = Cache::<ZeroPanicsOnce, u32, ()>::builder()
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    let keys = if cfg!(miri) { 40 } else { 1000 };
    for k in 0..keys {
        assert_eq!(block_on(cache.get(key(k), || async move { Ok(k) })), Ok(k));
    }
    clock.advance(Duration::from_secs(10));
    assert_eq!(block_on(cache.get(key(keys), || async { Ok(0) })), Ok(0));
    PANIC_ON_DROP.store(true, Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.purge_expired()));
    assert_eq!(
        r.unwrap_err().downcast_ref::<&str>(),
        Some(&"key drop panics")
    );
    assert_eq!(cache.len(), 1, "expired keys were left behind");
    assert_eq!(cache.peek(&key(keys)), Some(Ok(0)));
}

#[test]
fn invalidate_in_flight_serves_current_callers_and_stores_nothing() {
    let cache = Cache::<u8, u32, String>::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut leader = pin!(cache.get(1, || async move { Ok(rx.await.unwrap()) }));
    let mut joiner = pin!(cache.get(1, || async { unreachable!("joins the flight") }));
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    assert!(joiner.as_mut().poll(&mut cx).is_pending());

    assert!(cache.invalidate(&1));
    assert!(cache.is_empty());
    tx.send(1).unwrap();
    assert_eq!(leader.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
    assert_eq!(joiner.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
    assert_eq!(cache.peek(&1), None, "the invalidated result is not stored");
    assert_eq!(
        block_on(cache.get(1, || async { Ok(2) })),
        Ok(2),
        "the next get starts fresh"
    );
}

/// After `invalidate`, the callers of the invalidated attempt stay with it:
/// when its init is cancelled, the longest-waiting of them runs its own init
/// for them, beside the fresh init the next caller started, and its result
/// is not stored; the fresh init's is.
#[test]
fn a_cancelled_invalidated_init_hands_over_among_its_own_callers() {
    let cache = Cache::<u8, u32, String>::new();
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    let mut cx = Context::from_waker(Waker::noop());
    let mut leader = Box::pin(cache.get(1, std::future::pending));
    let mut waiter = pin!(cache.get(1, || async { Ok(7) }));
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    assert!(waiter.as_mut().poll(&mut cx).is_pending());

    assert!(cache.invalidate(&1));
    let mut fresh = pin!(cache.get(1, || async move { Ok(rx.await.unwrap()) }));
    assert!(fresh.as_mut().poll(&mut cx).is_pending());
    drop(leader);
    assert_eq!(
        waiter.as_mut().poll(&mut cx),
        Poll::Ready(Ok(7)),
        "the invalidated attempt's waiter ran its own init"
    );
    assert_eq!(cache.peek(&1), None, "and its result is not stored");
    tx.send(9).unwrap();
    assert_eq!(fresh.as_mut().poll(&mut cx), Poll::Ready(Ok(9)));
    assert_eq!(cache.peek(&1), Some(Ok(9)), "the fresh init's result is");
}

/// Counts itself in `alive` while it exists.
struct Alive(Arc<AtomicUsize>);

impl Alive {
    fn new(alive: &Arc<AtomicUsize>) -> Self {
        alive.fetch_add(1, Ordering::SeqCst);
        Alive(alive.clone())
    }
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A `get_owned` init belongs to its entry: with every caller cancelled it
/// stays, pending and driven by nobody, counted by `len` and kept by
/// `purge_expired`, until a later `get` of the key resumes it (or the key is
/// invalidated, which drops it).
#[test]
fn an_abandoned_owned_init_stays_in_its_entry_for_the_next_caller() {
    let cache = Cache::<u8, u32, String>::new();
    let alive = Arc::new(AtomicUsize::new(0));
    let mut cx = Context::from_waker(Waker::noop());
    let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
    {
        let counted = Alive::new(&alive);
        let mut only = pin!(cache.get_owned(1, move || async move {
            let _counted = counted;
            Ok(rx.await.unwrap())
        }));
        assert!(only.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(cache.purge_expired(), 0);
    assert_eq!((cache.len(), alive.load(Ordering::SeqCst)), (1, 1));
    tx.send(3).unwrap();
    let mut next = pin!(cache.get_owned(1, || async { unreachable!("resumes the stored init") }));
    assert_eq!(next.as_mut().poll(&mut cx), Poll::Ready(Ok(3)));
    assert_eq!(alive.load(Ordering::SeqCst), 0);

    // Abandoned again, then invalidated: dropped at once.
    let (_tx, rx) = tokio::sync::oneshot::channel::<u32>();
    {
        let counted = Alive::new(&alive);
        let mut only = pin!(cache.get_owned(2, move || async move {
            let _counted = counted;
            Ok(rx.await.unwrap())
        }));
        assert!(only.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(alive.load(Ordering::SeqCst), 1);
    assert!(cache.invalidate(&2));
    assert_eq!(alive.load(Ordering::SeqCst), 0);
}

#[test]
fn clear_len_is_empty_peek() {
    let cache = Cache::<String, usize, ()>::new();
    assert!(cache.is_empty());
    for i in 0..100 {
        assert_eq!(
            block_on(cache.get(i.to_string(), || async move { Ok(i) })),
            Ok(i)
        );
    }
    assert_eq!(cache.len(), 100);
    assert_eq!(cache.peek("42"), Some(Ok(42)));
    assert_eq!(cache.peek("x"), None);
    assert!(!cache.invalidate("x"));
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(cache.peek("42"), None);
}

#[test]
fn a_cancelled_leader_hands_over_to_the_next_caller() {
    let cache = Cache::<u8, u32, String>::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut leader = Box::pin(cache.get(1, std::future::pending));
    let mut waiter = pin!(cache.get(1, || async { Ok(2) }));
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    drop(leader);
    assert_eq!(waiter.as_mut().poll(&mut cx), Poll::Ready(Ok(2)));
    assert_eq!(cache.peek(&1), Some(Ok(2)));
}

#[test]
fn stats_are_off_by_default_and_count_when_on() {
    let off = Cache::<u8, u8, u8>::new();
    let _ = block_on(off.get(1, || async { Ok(1) }));
    assert_eq!(off.stats(), None);

    let on = Cache::<u8, u8, u8>::builder().stats(true).build();
    let _ = block_on(on.get(1, || async { Ok(1) }));
    let _ = block_on(on.get(1, || async { Ok(1) }));
    let _ = block_on(on.get(2, || async { Err(2) }));
    let s = on.stats().unwrap();
    assert_eq!(
        (s.hits, s.misses, s.inits, s.errors, s.coalesced),
        (1, 2, 2, 1, 0)
    );
    assert_eq!(s, on.stats().unwrap());
    let _: CacheStats = s;
}

#[test]
fn hits_from_every_thread_and_shard_are_summed_and_survive_clear() {
    let cache = Cache::<u32, u32, ()>::builder().stats(true).build();
    for k in 0..256 {
        let _ = block_on(cache.get(k, move || async move { Ok(k) }));
    }
    // The first hit of a key copies its value into the table of values (the
    // miss path's look-up answers it); later ones are answered inline. Both
    // count.
    std::thread::scope(|s| {
        for t in 0..4u32 {
            let cache = &cache;
            s.spawn(move || {
                for i in 0..1_000u32 {
                    let k = (i * 7 + t) % 256;
                    let got = block_on(cache.get(k, || async { Err(()) }));
                    assert_eq!(got, Ok(k));
                }
            });
        }
    });
    let s = cache.stats().unwrap();
    assert_eq!((s.hits, s.misses, s.inits), (4_000, 256, 256));
    cache.clear();
    assert!(cache.is_empty());
    assert_eq!(cache.stats().unwrap(), s, "clear keeps the counts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_key_never_blocks_another() {
    let cache = Arc::new(Cache::<u32, u32, ()>::new());
    let c = cache.clone();
    let slow = tokio::spawn(async move { c.get(0, std::future::pending).await });
    while cache.is_empty() {
        tokio::task::yield_now().await;
    }
    for k in 1..1000 {
        assert_eq!(cache.get(k, || async move { Ok(k) }).await, Ok(k));
    }
    slow.abort();
    let _ = slow.await;
}

#[test]
fn debug_does_not_need_debug_values() {
    #[derive(Clone)]
    struct Opaque;
    #[derive(Clone)]
    struct Val;
    let cache = Cache::<u8, Val, Opaque>::new();
    let _ = block_on(cache.get(1, || async { Ok(Val) }));
    let s = format!("{cache:?}");
    assert!(s.starts_with("Cache { len: 1"), "{s}");
    let _ = Opaque;
}

#[test]
fn auto_traits() {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<Cache<String, Vec<u8>, std::io::ErrorKind>>();
    send_sync::<ManualClock>();
    fn get_is_send(c: &Cache<String, u8, ()>) -> impl Future + Send + '_ {
        c.get("k".into(), || async { Ok(1) })
    }
    let _ = get_is_send;
}

/// Counts its drops; compared and hashed by `n`. With `panics`, comparing
/// it panics.
#[derive(Clone)]
struct Counted {
    n: u8,
    drops: Arc<AtomicUsize>,
    panics: bool,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.drops.fetch_add(1, Ordering::SeqCst);
    }
}

impl PartialEq for Counted {
    fn eq(&self, other: &Self) -> bool {
        assert!(
            !(self.panics || other.panics),
            "a key that panics when compared"
        );
        self.n == other.n
    }
}

impl Eq for Counted {}

impl std::hash::Hash for Counted {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.n.hash(h);
    }
}

/// An init closure that owns a `Counted` of its own (counted in `drops`,
/// dropped when the closure is called or dropped) and returns `fut`.
fn counted_init<F>(drops: &Arc<AtomicUsize>, fut: F) -> impl FnOnce() -> F {
    let token = Counted {
        n: 0,
        drops: drops.clone(),
        panics: false,
    };
    move || {
        drop(token);
        fut
    }
}

/// `get`'s future owns the caller's key and init until its first poll: each
/// is dropped exactly once whether the future is dropped unpolled, answered
/// by a hit, or runs the miss path to the end or is dropped in the middle of
/// it.
#[test]
fn get_drops_the_key_and_the_init_once_on_every_path() {
    let cache = Cache::<Counted, u32, ()>::new();
    let (keys, inits) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let key = |n| Counted {
        n,
        drops: keys.clone(),
        panics: false,
    };
    let init = |v: u32| counted_init(&inits, std::future::ready(Ok(v)));
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);

    // Never polled.
    drop(cache.get(key(1), init(1)));
    assert_eq!(
        (keys.load(Ordering::SeqCst), inits.load(Ordering::SeqCst)),
        (1, 1)
    );
    // A miss that runs its init: the key is stored, the init consumed.
    assert_eq!(block_on(cache.get(key(1), init(1))), Ok(1));
    assert_eq!(
        (keys.load(Ordering::SeqCst), inits.load(Ordering::SeqCst)),
        (1, 2)
    );
    // The first hit (moves the value) and a plain hit: key and init dropped.
    assert_eq!(block_on(cache.get(key(1), init(9))), Ok(1));
    assert_eq!(block_on(cache.get(key(1), init(9))), Ok(1));
    assert_eq!(
        (keys.load(Ordering::SeqCst), inits.load(Ordering::SeqCst)),
        (3, 4)
    );
    // A miss dropped while its init is pending, with nobody waiting: the
    // init's future goes with it, and so does the entry it leaves (its key
    // with it).
    let pending_init = counted_init(&inits, std::future::pending());
    let mut leader = Box::pin(cache.get(key(2), pending_init));
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    drop(leader);
    assert_eq!(
        (keys.load(Ordering::SeqCst), inits.load(Ordering::SeqCst)),
        (4, 5)
    );
    assert_eq!(cache.len(), 1);
    drop(cache);
    assert_eq!(
        keys.load(Ordering::SeqCst),
        5,
        "the stored key dropped with the cache"
    );
}

/// A key whose `Eq` panics, on a hit (the inline look-up) and on a miss (the
/// out-of-line one): the panic reaches the caller, the shard lock is
/// released before the key and the init are dropped (once each), and the
/// cache keeps working.
#[test]
fn a_panicking_key_comparison_unwinds_cleanly() {
    let cache = Cache::<Counted, u32, ()>::new();
    let drops = Arc::new(AtomicUsize::new(0));
    let key = |n, panics| Counted {
        n,
        drops: drops.clone(),
        panics,
    };
    // A stored value (moved into the table by the second call) and an entry
    // in flight, so that both probes compare keys.
    assert_eq!(
        block_on(cache.get(key(1, false), || async { Ok(1) })),
        Ok(1)
    );
    assert_eq!(
        block_on(cache.get(key(1, false), || async { Ok(9) })),
        Ok(1)
    );
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut in_flight = Box::pin(cache.get(key(2, false), std::future::pending));
    assert!(in_flight.as_mut().poll(&mut cx).is_pending());
    let before = drops.load(Ordering::SeqCst);
    for n in [1, 2] {
        let init_drops = Arc::new(AtomicUsize::new(0));
        let init = counted_init(&init_drops, std::future::ready(Ok(0)));
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            block_on(cache.get(key(n, true), init))
        }));
        assert!(caught.is_err(), "the comparison's panic reaches the caller");
        assert_eq!(
            init_drops.load(Ordering::SeqCst),
            1,
            "the init dropped once"
        );
    }
    assert_eq!(
        drops.load(Ordering::SeqCst),
        before + 2,
        "each key dropped once"
    );
    // The locks were released: both keys are still served.
    assert_eq!(cache.peek(&key(1, false)), Some(Ok(1)));
    drop(in_flight);
    assert_eq!(
        block_on(cache.get(key(2, false), || async { Ok(2) })),
        Ok(2)
    );
}

/// Polling `get`'s future again after it returned `Ready` is a bug in the
/// caller; it panics, on a hit (with our message) as on a miss (where the
/// miss path's `async fn` reports it).
#[test]
fn get_polled_after_ready_panics() {
    let cache = Cache::<u8, u32, ()>::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    for hit in [false, true] {
        let mut get = Box::pin(cache.get(1, || async { Ok(1) }));
        assert_eq!(get.as_mut().poll(&mut cx), Poll::Ready(Ok(1)));
        let again = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = get.as_mut().poll(&mut cx);
        }));
        let message = again.expect_err("a second poll after Ready must panic");
        if hit {
            let message = message.downcast_ref::<&str>().copied().unwrap_or_default();
            assert!(message.contains("polled after"), "{message}");
        }
    }
}

/// An init that keeps a `&mut` to one of its own locals across a
/// suspension: polling `get`'s future again must not invalidate that borrow
/// (Miri's Stacked Borrows checks it).
#[test]
fn an_init_borrowing_itself_across_a_suspension() {
    struct YieldOnce(bool);
    impl Future for YieldOnce {
        type Output = ();
        fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
    let cache = Cache::<u8, u32, ()>::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    for owned in [false, true] {
        let init = || async {
            let mut local = 1u32;
            let borrowed = &mut local;
            YieldOnce(false).await;
            *borrowed += 1;
            Ok(local)
        };
        let mut get: std::pin::Pin<Box<dyn Future<Output = Result<u32, ()>>>> = if owned {
            Box::pin(cache.get_owned(2, init))
        } else {
            Box::pin(cache.get(1, init))
        };
        // `get` returns to its caller at the init's suspension; `get_owned`'s
        // driver may poll the init again at once, since it woke itself.
        let first = get.as_mut().poll(&mut cx);
        assert!(owned || first.is_pending());
        let done = if first.is_pending() {
            get.as_mut().poll(&mut cx)
        } else {
            first
        };
        assert_eq!(done, Poll::Ready(Ok(2)));
    }
}

/// A `get` cancelled (or whose init panics) with nobody waiting leaves no
/// entry behind: `len` and `is_empty` do not count a key with no value, no
/// error and no init. With a waiter, the entry stays and the waiter takes
/// over.
#[test]
fn an_abandoned_miss_leaves_no_entry() {
    let cache = Cache::<u32, u32, ()>::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    {
        let mut alone = pin!(cache.get(1, std::future::pending));
        assert!(alone.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(cache.peek(&1), None);
    assert!(cache.is_empty(), "no value, no error, no init in flight");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(cache.get(2, || async { panic!("init failed") }))
    }));
    assert!(panicked.is_err());
    assert!(cache.is_empty(), "a panicked init leaves nothing either");
    // With a waiter: the cancelled leader hands over, the entry stays.
    let mut leader = Box::pin(cache.get(3, std::future::pending));
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    let mut waiter = pin!(cache.get(3, || async { Ok(3) }));
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    drop(leader);
    assert_eq!(cache.len(), 1);
    assert_eq!(waiter.as_mut().poll(&mut cx), Poll::Ready(Ok(3)));
    assert_eq!(cache.peek(&3), Some(Ok(3)));
}

/// Starts an owned init of key 1 that fails with `Err(7)` once the returned
/// sender fires, polls its starter once and returns it (to be dropped).
fn start_failing_owned_init(
    cache: &Cache<u32, u32, u32>,
) -> (
    impl Future<Output = Result<u32, u32>> + '_,
    tokio::sync::oneshot::Sender<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut starter = Box::pin(cache.get_owned(1, move || async move {
        let _ = rx.await;
        Err(7)
    }));
    let waker = futures::task::noop_waker();
    assert!(starter
        .as_mut()
        .poll(&mut Context::from_waker(&waker))
        .is_pending());
    (starter, tx)
}

/// `get_owned`'s error is counted once even if the caller that started the
/// init is gone when it fails (another caller drives it to its end).
#[tokio::test]
async fn an_owned_init_counts_its_error_when_its_starter_is_gone() {
    let cache = Cache::<u32, u32, u32>::builder().stats(true).build();
    let (starter, tx) = start_failing_owned_init(&cache);
    let other = cache.get_owned(1, || async { Ok(0) });
    drop(starter);
    tx.send(()).unwrap();
    assert_eq!(other.await, Err(7));
    let stats = cache.stats().unwrap();
    assert_eq!((stats.inits, stats.errors), (1, 1), "{stats:?}");
}

/// Under `ErrorPolicy::SharedOnly`, an owned init's error never stays in
/// the table, also when the only caller left to see it is a plain `get`.
#[tokio::test]
async fn a_shared_only_error_of_an_owned_init_leaves_no_entry() {
    let cache = Cache::<u32, u32, u32>::builder()
        .errors(ErrorPolicy::SharedOnly)
        .build();
    let (starter, tx) = start_failing_owned_init(&cache);
    let plain = cache.get(1, || async { Ok(0) });
    drop(starter);
    tx.send(()).unwrap();
    assert_eq!(plain.await, Err(7));
    assert!(cache.is_empty(), "the error was not stored");
    assert_eq!(cache.get(1, || async { Ok(1) }).await, Ok(1));
}

/// A first hit clones the stored value twice (one for the caller, one for
/// the table of stored values). If the second `Clone` panics, the first
/// clone is still dropped after the shard lock is released (its `Drop` here
/// locks every shard, which would deadlock under the lock).
#[test]
fn a_panicking_clone_on_the_first_hit_drops_nothing_under_the_lock() {
    struct Val {
        cache: std::sync::Weak<Cache<u8, Val, ()>>,
        /// Clones still allowed before one panics (`usize::MAX`: any).
        allowed: Arc<AtomicUsize>,
    }
    impl Clone for Val {
        fn clone(&self) -> Self {
            let left = self.allowed.load(Ordering::SeqCst);
            assert!(left > 0, "clone panicked");
            self.allowed.store(left - 1, Ordering::SeqCst);
            Val {
                cache: self.cache.clone(),
                allowed: self.allowed.clone(),
            }
        }
    }
    impl Drop for Val {
        fn drop(&mut self) {
            if let Some(cache) = self.cache.upgrade() {
                let _ = cache.len();
            }
        }
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    // On its own thread: under the lock, the drop would deadlock it.
    std::thread::spawn(move || {
        let cache = std::sync::Arc::new(Cache::<u8, Val, ()>::new());
        let allowed = Arc::new(AtomicUsize::new(usize::MAX));
        let val = Val {
            cache: std::sync::Arc::downgrade(&cache),
            allowed: allowed.clone(),
        };
        assert!(block_on(cache.get(1, move || async move { Ok(val) })).is_ok());
        // The first hit: its first clone succeeds, its second panics.
        allowed.store(1, Ordering::SeqCst);
        let first_hit = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            block_on(cache.get(1, || async { unreachable!("a hit runs no init") }))
        }));
        assert!(first_hit.is_err(), "the clone's panic reaches the caller");
        // The cache still works: the value is still there, in its entry.
        allowed.store(usize::MAX, Ordering::SeqCst);
        assert!(cache.peek(&1).is_some());
        done_tx.send(()).unwrap();
    });
    assert!(
        done_rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .is_ok(),
        "a value was dropped under the shard lock (deadlock) or the thread panicked"
    );
}

/// `get_owned` leaves no empty entry behind either: not when its init
/// panics, not when its init closure panics, and not when it waited behind
/// a `get` leader that was cancelled and is then cancelled itself.
#[test]
fn an_abandoned_owned_miss_leaves_no_entry() {
    let cache = Cache::<u32, u32, ()>::new();
    let init_panics = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(cache.get_owned(1, || async { panic!("init failed") }))
    }));
    assert!(init_panics.is_err());
    assert!(cache.is_empty(), "a panicked owned init leaves nothing");
    let closure_panics = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(
            cache.get_owned(2, || -> std::future::Ready<Result<u32, ()>> {
                panic!("init closure failed")
            }),
        )
    }));
    assert!(closure_panics.is_err());
    assert!(cache.is_empty(), "a panicked init closure leaves nothing");
    let mut cx = Context::from_waker(Waker::noop());
    let mut leader = Box::pin(cache.get(3, std::future::pending));
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    {
        let mut owned = pin!(cache.get_owned(3, || async { Ok(3) }));
        assert!(owned.as_mut().poll(&mut cx).is_pending());
        drop(leader);
        assert_eq!(cache.len(), 1, "the owned caller may still take over");
    }
    assert!(
        cache.is_empty(),
        "the last caller of an empty entry took it out"
    );
}

/// Two callers of one entry cancelled at the same moment on two threads:
/// whichever leaves last takes the empty entry out. (Each used to let go of
/// its reference after unlocking, so both could see the other's and leave
/// the entry counted by `len` with nothing in it: a few hundred times in
/// 200,000 rounds on two cores.)
#[test]
fn callers_cancelled_at_once_leave_no_entry() {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    type Fut = std::pin::Pin<Box<dyn Future<Output = Result<u32, ()>> + Send + 'static>>;
    let cache = std::sync::Arc::new(Cache::<u32, u32, ()>::new());
    let pending = |key: u32| -> Fut {
        let cache = cache.clone();
        Box::pin(async move { cache.get(key, std::future::pending).await })
    };
    let rounds: usize = if cfg!(miri) { 20 } else { 20_000 };
    let (tx, rx) = std::sync::mpsc::channel::<Fut>();
    let (ready, go, done) = (
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
        std::sync::Arc::new(AtomicUsize::new(0)),
    );
    let other = {
        let (ready, go, done) = (ready.clone(), go.clone(), done.clone());
        std::thread::spawn(move || {
            let mut round = 0;
            while let Ok(waiter) = rx.recv() {
                round += 1;
                ready.store(round, SeqCst);
                while go.load(SeqCst) < round {
                    std::hint::spin_loop();
                }
                drop(waiter);
                done.store(round, SeqCst);
            }
        })
    };
    let mut left = 0;
    for round in 1..=rounds {
        let key = round as u32;
        let mut cx = Context::from_waker(Waker::noop());
        let mut leader = pending(key);
        assert!(leader.as_mut().poll(&mut cx).is_pending());
        let mut waiter = pending(key);
        assert!(waiter.as_mut().poll(&mut cx).is_pending());
        tx.send(waiter).unwrap();
        while ready.load(SeqCst) < round {
            std::hint::spin_loop();
        }
        go.store(round, SeqCst);
        drop(leader);
        while done.load(SeqCst) < round {
            std::hint::spin_loop();
        }
        if !cache.is_empty() {
            left += 1;
            cache.clear();
        }
    }
    drop(tx);
    other.join().unwrap();
    assert_eq!(left, 0, "{left} of {rounds} rounds left an empty entry");
}

/// A key whose `Drop` panics during `clear`: every shard is still emptied,
/// and the panic reaches the caller.
#[test]
fn clear_empties_every_shard_when_a_drop_panics() {
    static PANIC_ON_DROP: AtomicBool = AtomicBool::new(false);
    let key = |k| ZeroPanicsOnce(k, &PANIC_ON_DROP);
    let cache = Cache::<ZeroPanicsOnce, u32, ()>::new();
    let keys = if cfg!(miri) { 40 } else { 1000 };
    for k in 0..keys {
        assert_eq!(block_on(cache.get(key(k), || async move { Ok(k) })), Ok(k));
    }
    PANIC_ON_DROP.store(true, Ordering::SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cache.clear()));
    assert!(r.is_err(), "the drop's panic reaches the caller");
    assert_eq!(cache.len(), 0, "clear left keys behind");
}

/// An init panics, and the key stored for it panics when the abandoned entry
/// is dropped during that unwind: the key's panic is caught there (it used
/// to abort the process), the init's panic reaches the caller, and no entry
/// is left.
#[test]
fn a_key_whose_drop_panics_while_an_init_unwinds_does_not_abort() {
    use armed_key::ArmedKey as Key;
    let cache = Cache::<Key, u32, ()>::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(cache.get(Key(1, true), || async { panic!("init panics") }))
    }));
    assert_eq!(r.unwrap_err().downcast_ref::<&str>(), Some(&"init panics"));
    assert_eq!(cache.len(), 0, "the abandoned entry was left");
    assert_eq!(
        block_on(cache.get(Key(1, false), || async { Ok(2) })),
        Ok(2)
    );
}

/// `ManualClock` saturates instead of wrapping: it never goes back, and a
/// value past its time-to-live is not served again.
#[test]
fn the_manual_clock_never_goes_back() {
    let clock = ManualClock::new();
    let cache = Cache::<u8, u32, ()>::builder()
        .time_to_live(Duration::from_secs(10))
        .clock(clock.clone())
        .build();
    clock.advance(Duration::from_secs(1));
    assert_eq!(block_on(cache.get(1, || async { Ok(1) })), Ok(1));
    let before = lazyflight::Clock::now(&clock);
    clock.advance(Duration::MAX);
    let after = lazyflight::Clock::now(&clock);
    assert!(after >= before, "went back: {before:?} -> {after:?}");
    assert_eq!(after, Duration::from_nanos(u64::MAX));
    assert_eq!(
        block_on(cache.get(1, || async { Ok(2) })),
        Ok(2),
        "expired value served"
    );
}

/// A waiter whose waker panics, handed the init by a leader whose init
/// panicked: the hand-off runs while the thread unwinds, and the waker's
/// panic there is caught instead of aborting the process. The waiter still
/// takes over.
#[test]
fn a_panicking_waker_in_a_hand_off_during_unwind_does_not_abort() {
    struct PanickingWaker;
    impl std::task::Wake for PanickingWaker {
        fn wake(self: std::sync::Arc<Self>) {
            panic!("waker panics");
        }
    }
    struct PanicsOnSecondPoll(bool);
    impl Future for PanicsOnSecondPoll {
        type Output = Result<u32, ()>;
        fn poll(mut self: std::pin::Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            if std::mem::replace(&mut self.0, true) {
                panic!("init panics");
            }
            Poll::Pending
        }
    }
    let cache = Cache::<u32, u32, ()>::new();
    let noop = Waker::noop();
    let bad = Waker::from(std::sync::Arc::new(PanickingWaker));
    let mut leader = pin!(cache.get(1, || PanicsOnSecondPoll(false)));
    assert!(leader
        .as_mut()
        .poll(&mut Context::from_waker(noop))
        .is_pending());
    let mut waiter = pin!(cache.get(1, || async { Ok(2) }));
    assert!(waiter
        .as_mut()
        .poll(&mut Context::from_waker(&bad))
        .is_pending());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = leader.as_mut().poll(&mut Context::from_waker(noop));
    }));
    assert_eq!(r.unwrap_err().downcast_ref::<&str>(), Some(&"init panics"));
    assert_eq!(
        waiter.as_mut().poll(&mut Context::from_waker(noop)),
        Poll::Ready(Ok(2))
    );
}

/// An init that awaits its own key would wait for itself for ever: it
/// panics instead, and the key is free afterwards.
#[test]
fn an_init_awaiting_its_own_key_panics_instead_of_hanging() {
    let cache = Cache::<u8, u32, ()>::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(cache.get(1, || async { cache.get(1, || async { Ok(1) }).await }))
    }));
    let p = r.unwrap_err();
    let text = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(text.contains("re-entrant"), "{text}");
    assert_eq!(cache.len(), 0);
    assert_eq!(block_on(cache.get(1, || async { Ok(5) })), Ok(5));
    // Another key from inside an init is fine.
    assert_eq!(
        block_on(cache.get(2, || async { cache.get(3, || async { Ok(6) }).await })),
        Ok(6)
    );
}
