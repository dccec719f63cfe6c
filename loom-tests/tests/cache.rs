#![cfg(loom)]
//! loom models of `Cache` (coalesced init per key, error policies, TTL,
//! invalidation). Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p lazyflight-loom-tests --test cache`.

use core::time::Duration;

use lazyflight::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use lazyflight::sync::future::block_on;
use lazyflight::sync::{thread, Arc};
use lazyflight::{Cache, Entry, ErrorPolicy, Group, ManualClock};

// Property: two keys never block each other: key 1's init waits for a signal
// that is sent only after a get on key 2 has completed, in another thread,
// and both finish.
#[test]
fn cache_two_keys_never_block_each_other() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u8, u8, ()>::new());
        let signal = Group::<(), (), ()>::new();
        let Entry::Leader(send) = signal.entry(()) else {
            panic!("first caller leads")
        };
        let Entry::Subscriber(recv) = signal.entry(()) else {
            panic!("joins")
        };
        let c2 = cache.clone();
        let t = thread::spawn(move || {
            let v = block_on(c2.get(2, || async { Ok(2) }));
            send.complete(Ok(()));
            v
        });
        let v1 = block_on(cache.get(1, || async move {
            let _ = recv.recv().await;
            Ok(1)
        }));
        assert_eq!(v1, Ok(1));
        assert_eq!(t.join().unwrap(), Ok(2));
    });
}

// Property: invalidating a key whose init is in flight lets that init's
// caller have its result but never stores it: if `invalidate` found the entry,
// the next get starts a fresh init; if it found nothing, the result is cached.
#[test]
fn cache_invalidate_racing_in_flight_init() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u8, u8, ()>::new());
        let c2 = cache.clone();
        let t = thread::spawn(move || c2.invalidate(&1));
        assert_eq!(block_on(cache.get(1, || async { Ok(1) })), Ok(1));
        let removed = t.join().unwrap();
        let next = block_on(cache.get(1, || async { Ok(2) }));
        if removed {
            assert_eq!(next, Ok(2), "an invalidated result was stored");
        } else {
            assert_eq!(next, Ok(1));
        }
    });
}

// Property: invalidating a key whose result is being copied into the table
// (the first hit after its init finished moves it from the key's entry into
// the table of stored values) removes the key wherever it is: `invalidate`
// always finds it, and the value the hit returned is never served again.
#[test]
fn cache_invalidate_racing_the_first_hit() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u8, u8, ()>::new());
        // Finished, not yet copied: the next get is the first hit.
        assert_eq!(block_on(cache.get(1, || async { Ok(1) })), Ok(1));
        let c2 = cache.clone();
        let t = thread::spawn(move || c2.invalidate(&1));
        let hit = block_on(cache.get(1, || async { Ok(3) }));
        assert!(t.join().unwrap(), "invalidate missed a cached key");
        let next = block_on(cache.get(1, || async { Ok(2) }));
        match hit {
            // The hit came first: invalidate removed the stored value.
            Ok(1) => assert_eq!(next, Ok(2), "an invalidated value was served"),
            // Invalidate came first: the hit ran a fresh init, cached.
            Ok(3) => assert_eq!(next, Ok(3)),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(cache.len(), 1);
    });
}

// Property: two first hits racing on a finished key (each may be the one
// that moves the value into the table of stored values) both get the value,
// and the key ends up in the table once: a look-up probes both of a shard's
// tables in one critical section.
#[test]
fn cache_two_first_hits_race() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u8, u8, ()>::new());
        assert_eq!(block_on(cache.get(1, || async { Ok(1) })), Ok(1));
        let c2 = cache.clone();
        let t = thread::spawn(move || block_on(c2.get(1, || async { Ok(9) })));
        let mine = block_on(cache.get(1, || async { Ok(8) }));
        assert_eq!((mine, t.join().unwrap()), (Ok(1), Ok(1)));
        assert_eq!(cache.len(), 1, "the key is in the table twice");
        assert!(cache.invalidate(&1));
        assert!(cache.is_empty());
        assert_eq!(block_on(cache.get(1, || async { Ok(2) })), Ok(2));
    });
}

// Property: keys, values and errors are dropped outside the shard lock: the
// caller's key on every kind of hit and miss, what a first hit moves out of
// an entry, what `invalidate` and `clear` remove. Each key and value here
// locks the cache's shards when dropped, which would deadlock under the lock
// (loom reports it).
#[test]
fn cache_drops_keys_and_values_outside_the_lock() {
    loom::model(|| {
        let cache = std::sync::Arc::new(Cache::<Locks, Locks, Locks>::new());
        let back = std::sync::Arc::downgrade(&cache);
        let it = |n| Locks {
            n,
            back: back.clone(),
        };
        let n = |r: Result<Locks, Locks>| r.map(|v| v.n).map_err(|e| e.n);
        // A miss that stores a value; the first hit (moves it); a hit.
        assert_eq!(n(block_on(cache.get(it(1), || async { Ok(it(1)) }))), Ok(1));
        assert_eq!(n(block_on(cache.get(it(1), || async { Ok(it(0)) }))), Ok(1));
        assert_eq!(n(block_on(cache.get(it(1), || async { Ok(it(0)) }))), Ok(1));
        // The same for an error: stored, moved, hit.
        assert_eq!(
            n(block_on(cache.get(it(2), || async { Err(it(2)) }))),
            Err(2)
        );
        assert_eq!(
            n(block_on(cache.get(it(2), || async { Ok(it(0)) }))),
            Err(2)
        );
        assert_eq!(
            n(block_on(cache.get(it(2), || async { Ok(it(0)) }))),
            Err(2)
        );
        assert!(cache.invalidate(&it(1)));
        assert_eq!(cache.len(), 1);
        cache.clear();
        assert!(cache.is_empty());
    });
}

/// A key, value or error (compared and hashed by `n`) that locks its
/// cache's shards (`len`) when dropped.
#[derive(Clone)]
struct Locks {
    n: u8,
    back: std::sync::Weak<Cache<Locks, Locks, Locks>>,
}

impl Drop for Locks {
    fn drop(&mut self) {
        if let Some(cache) = self.back.upgrade() {
            let _ = cache.len();
        }
    }
}

impl PartialEq for Locks {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

impl Eq for Locks {}

impl core::hash::Hash for Locks {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        self.n.hash(h);
    }
}

// Property: under the default policy (`ErrorPolicy::Cached`) an error is
// cached until invalidated: two racing callers with failing inits make one
// attempt and both get its error; then an `invalidate` racing a get either
// comes first (the get runs a fresh init, whose value is stored) or second
// (the get is served the cached error, and the next get runs a fresh init).
#[test]
fn cache_error_cached_until_invalidated() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u8, u8, u8>::new());
        let inits = Arc::new(AtomicUsize::new(0));
        let (c2, i2) = (cache.clone(), inits.clone());
        let t = thread::spawn(move || {
            block_on(c2.get(1, || {
                i2.fetch_add(1, Ordering::Relaxed);
                async { Err(1) }
            }))
        });
        let i1 = inits.clone();
        let mine = block_on(cache.get(1, || {
            i1.fetch_add(1, Ordering::Relaxed);
            async { Err(2) }
        }));
        let theirs = t.join().unwrap();
        assert!(mine.is_err(), "a failing init gave {mine:?}");
        assert_eq!(mine, theirs, "the two callers saw different attempts");
        assert_eq!(
            inits.load(Ordering::Relaxed),
            1,
            "a cached error was retried"
        );
        assert_eq!(cache.peek(&1), Some(mine));

        let c2 = cache.clone();
        let t = thread::spawn(move || c2.invalidate(&1));
        let v = block_on(cache.get(1, || async { Ok(3) }));
        assert!(
            t.join().unwrap(),
            "the cached error was not there to invalidate"
        );
        if v == Ok(3) {
            // Invalidated first: the fresh value was stored.
            assert_eq!(block_on(cache.get(1, || async { Ok(4) })), Ok(3));
        } else {
            // Served from the cache, then invalidated: a fresh init runs.
            assert_eq!(
                v, mine,
                "a get saw neither the cached error nor its own init"
            );
            assert_eq!(block_on(cache.get(1, || async { Ok(4) })), Ok(4));
        }
    });
}

// Property: under `ErrorPolicy::SharedOnly` two racing callers either share
// one attempt (and its error) or make one attempt each; either way no error
// is left in the cache, and the next get runs a fresh init.
#[test]
fn cache_shared_only_error_is_never_stored() {
    loom::model(|| two_failing_shared_only_callers(false));
}

/// Two callers of one key in a `SharedOnly` cache race, each with an init
/// that fails (through `get_owned` if `owned`); then no error may be left in
/// the cache, and the next get runs a fresh init.
fn two_failing_shared_only_callers(owned: bool) {
    let cache = Arc::new(
        Cache::<u8, u8, u8>::builder()
            .errors(ErrorPolicy::SharedOnly)
            .build(),
    );
    let get = move |cache: &Cache<u8, u8, u8>, e: u8| {
        if owned {
            block_on(cache.get_owned(1, move || async move { Err(e) }))
        } else {
            block_on(cache.get(1, move || async move { Err(e) }))
        }
    };
    let c2 = cache.clone();
    let t = thread::spawn(move || get(&c2, 1));
    let mine = get(&cache, 2);
    let theirs = t.join().unwrap();
    assert!(mine.is_err() && theirs.is_err());
    assert!(cache.is_empty(), "a SharedOnly error stayed in the table");
    assert_eq!(cache.peek(&1), None);
    assert_eq!(block_on(cache.get(1, || async { Ok(3) })), Ok(3));
}

// Property: under `ErrorPolicy::CachedFor`, an error is served until its
// duration has passed and never after: a get that starts after another
// thread moved the clock past it runs a fresh init.
#[test]
fn cache_cached_for_error_expires() {
    loom::model(|| {
        let clock = ManualClock::new();
        let cache = Arc::new(
            Cache::<u8, u8, u8>::builder()
                .errors(ErrorPolicy::CachedFor(Duration::from_secs(5)))
                .clock(clock.clone())
                .build(),
        );
        assert_eq!(block_on(cache.get(1, || async { Err(1) })), Err(1));
        let moved = Arc::new(AtomicBool::new(false));
        let m2 = moved.clone();
        let t = thread::spawn(move || {
            clock.advance(Duration::from_secs(5));
            m2.store(true, Ordering::Release);
        });
        let after = moved.load(Ordering::Acquire);
        let v = block_on(cache.get(1, || async { Ok(2) }));
        if after {
            assert_eq!(v, Ok(2), "an expired error was served");
        } else {
            assert!(v == Err(1) || v == Ok(2));
        }
        t.join().unwrap();
        // Now the error has expired in every case: a value stored above is
        // served, otherwise a fresh init runs.
        let expected = if v == Ok(2) { Ok(2) } else { Ok(3) };
        assert_eq!(block_on(cache.get(1, || async { Ok(3) })), expected);
    });
}

/// A cache whose values live 10 s by `clock`.
fn ten_second_cache(clock: &ManualClock) -> Arc<Cache<u8, u8, ()>> {
    Arc::new(
        Cache::builder()
            .time_to_live(Duration::from_secs(10))
            .clock(clock.clone())
            .build(),
    )
}

// Property: a hit racing TTL expiry never serves a value after its
// time-to-live: once another thread has moved the clock past it, a get runs
// a fresh init (and two racing gets of the expired key share one init).
#[test]
fn cache_ttl_expiry_racing_a_hit() {
    loom::model(|| {
        let clock = ManualClock::new();
        let cache = ten_second_cache(&clock);
        assert_eq!(block_on(cache.get(1, || async { Ok(1) })), Ok(1));
        let moved = Arc::new(AtomicBool::new(false));
        let (m2, c2) = (moved.clone(), cache.clone());
        let t = thread::spawn(move || {
            clock.advance(Duration::from_secs(10));
            m2.store(true, Ordering::Release);
            block_on(c2.get(1, || async { Ok(2) }))
        });
        let after = moved.load(Ordering::Acquire);
        let mine = block_on(cache.get(1, || async { Ok(2) }));
        if after {
            assert_eq!(mine, Ok(2), "a value was served after its time-to-live");
        }
        assert_eq!(
            t.join().unwrap(),
            Ok(2),
            "a value was served after its time-to-live"
        );
    });
}

// Property: `purge_expired` racing a `get` of the same expired key removes
// only what has expired: the expired entry (if it gets there first), never
// the entry the get put in its place, whether that one is still in flight or
// already holds the fresh value. The get runs one init, its value is stored,
// and the purge reports exactly what it removed.
#[test]
fn cache_purge_racing_a_get_of_the_expired_key() {
    loom::model(|| {
        let clock = ManualClock::new();
        let cache = ten_second_cache(&clock);
        assert_eq!(block_on(cache.get(1, || async { Ok(1) })), Ok(1));
        clock.advance(Duration::from_secs(10));
        let c2 = cache.clone();
        let t = thread::spawn(move || c2.purge_expired());
        let inits = Arc::new(AtomicUsize::new(0));
        let i2 = inits.clone();
        let mine = block_on(cache.get(1, || async move {
            i2.fetch_add(1, Ordering::Relaxed);
            Ok(2)
        }));
        let purged = t.join().unwrap();
        assert_eq!(mine, Ok(2), "a value was served after its time-to-live");
        assert_eq!(inits.load(Ordering::Relaxed), 1);
        assert!(purged <= 1, "purged {purged} entries of one key");
        assert_eq!(cache.len(), 1, "the fresh entry was purged");
        assert_eq!(
            cache.peek(&1),
            Some(Ok(2)),
            "the fresh value was not stored"
        );
        assert_eq!(cache.purge_expired(), 0, "a fresh value was expired");
    });
}

// Property: a `get` cancelled after it started its key's init removes the
// entry only when nothing can finish it: a caller that found the entry
// (and took over its init, or leads it) keeps it in the table, so its value
// is stored and a later `get` is a hit. Here a leader is cancelled on one
// thread while another caller gets the same key.
#[test]
fn cache_abandoned_entry_removal_racing_a_new_caller() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u8, u8, ()>::new());
        let c1 = cache.clone();
        let t = thread::spawn(move || {
            let (waker, _) = lazyflight_loom_tests::counting_waker();
            let mut leader = Box::pin(c1.get(1, || std::future::pending()));
            // Pending (it leads, or waits), or a hit on the other's value.
            if let core::task::Poll::Ready(v) =
                lazyflight_loom_tests::poll_once(leader.as_mut(), &waker)
            {
                assert_eq!(v, Ok(5));
            }
            drop(leader);
        });
        assert_eq!(block_on(cache.get(1, || async { Ok(5) })), Ok(5));
        t.join().unwrap();
        assert_eq!(
            block_on(cache.get(1, || async { Ok(9) })),
            Ok(5),
            "the value of the caller that stayed was stored"
        );
        assert_eq!(cache.len(), 1);
    });
}

// Property: two callers of one key (a leader and its waiter, both pending)
// cancelled at the same moment on two threads: whichever leaves last takes
// the empty entry out of the table, so `len` counts no key with no value, no
// error and no init.
#[test]
fn cache_callers_cancelled_at_once_leave_no_entry() {
    loom::model(|| {
        let cache = Arc::new(Cache::<u8, u8, ()>::new());
        let (waker, _) = lazyflight_loom_tests::counting_waker();
        let mut callers = Vec::new();
        for _ in 0..2 {
            let c = cache.clone();
            let mut f = Box::pin(async move { c.get(1, || std::future::pending()).await });
            assert!(lazyflight_loom_tests::poll_once(f.as_mut(), &waker).is_pending());
            callers.push(f);
        }
        let waiter = callers.pop().unwrap();
        let t = thread::spawn(move || drop(waiter));
        drop(callers);
        t.join().unwrap();
        assert!(cache.is_empty(), "an empty entry was left in the table");
    });
}

// Property: under `ErrorPolicy::SharedOnly` the error of an *owned* attempt
// (`get_owned`, whose init cannot reach the table before it publishes) is
// never stored either: a caller that meets the failed entry between its
// publication and its removal starts afresh instead of keeping the error,
// and once both callers are done no error is left in the cache.
#[test]
fn cache_shared_only_error_of_an_owned_init_is_never_stored() {
    loom::model(|| two_failing_shared_only_callers(true));
}
