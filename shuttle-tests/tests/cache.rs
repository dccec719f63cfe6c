//! shuttle models of `Cache`: 16 callers per execution over keys drawn from a
//! 1,000-key space, with random cancellation and failing inits, under both
//! the default error policy and `ErrorPolicy::SharedOnly`; callers that
//! come back for their key while others invalidate keys and clear the cache;
//! and callers of a cache with a time-to-live while others move the clock
//! and purge expired entries.
//!
//! Build and run with `RUSTFLAGS="--cfg shuttle"`. Each execution draws its
//! scenario from `shuttle::rand`; a failure replays from the printed
//! schedule. Iterations per test: `LAZYFLIGHT_SHUTTLE_ITERATIONS` (default
//! 1,000).
#![cfg(shuttle)]
// Bookkeeping in std types on purpose, as in `group.rs`.
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use core::time::Duration;

use lazyflight::{Cache, ErrorPolicy, ManualClock};
use lazyflight_shuttle_tests::{env_usize, GiveUpAfter};
use shuttle::future::{self as sfut, JoinHandle};
use shuttle::rand::{thread_rng, Rng};

const CALLERS: usize = 16;
const KEY_SPACE: u32 = 1_000;

fn iterations() -> usize {
    env_usize("LAZYFLIGHT_SHUTTLE_ITERATIONS", 1_000)
}

#[derive(Default)]
struct Book {
    inits: AtomicUsize,
    /// Keys whose init is running right now.
    running: Mutex<Vec<u32>>,
    /// The key of every init started, in order.
    started: Mutex<Vec<u32>>,
    /// The key and the caller of every init started, in order.
    owners: Mutex<Vec<(u32, u32)>>,
    /// Inits that started while another init of their key was running
    /// (possible only where keys are invalidated or the cache is cleared).
    overlaps: AtomicUsize,
}

type Res = Result<u32, u32>;

/// One call: who makes it, for which key, and how its init behaves.
#[derive(Clone, Copy)]
struct Call {
    id: u32,
    key: u32,
    fail: bool,
    yields: usize,
    /// Gives up after this many polls.
    give_up: Option<usize>,
    /// Whether no other init of this key may run at the same time: true
    /// unless keys are invalidated meanwhile (an invalidated init may still
    /// be finishing for its own callers while the next one runs).
    exclusive: bool,
}

async fn caller(
    cache: Arc<Cache<u32, u32, u32>>,
    book: Arc<Book>,
    call: Call,
) -> Option<(u32, Res)> {
    let Call {
        id,
        key,
        fail,
        yields,
        give_up,
        exclusive,
    } = call;
    let b = book.clone();
    let init = move || async move {
        b.inits.fetch_add(1, SeqCst);
        b.started.lock().unwrap().push(key);
        b.owners.lock().unwrap().push((key, id));
        {
            let mut running = b.running.lock().unwrap();
            if running.contains(&key) {
                assert!(!exclusive, "two inits running for key {key} at once");
                b.overlaps.fetch_add(1, SeqCst);
            }
            running.push(key);
        }
        struct Leave(Arc<Book>, u32);
        impl Drop for Leave {
            fn drop(&mut self) {
                let mut running = self.0.running.lock().unwrap();
                let at = running.iter().position(|&k| k == self.1).expect("pushed");
                running.swap_remove(at);
            }
        }
        let _leave = Leave(b.clone(), key);
        for _ in 0..yields {
            sfut::yield_now().await;
        }
        if fail {
            Err(id)
        } else {
            Ok(id)
        }
    };
    let call = cache.get(key, init);
    let out = match give_up {
        Some(polls) => {
            GiveUpAfter {
                inner: Box::pin(call),
                polls,
            }
            .await
        }
        None => Some(call.await),
    };
    out.map(|r| (key, r))
}

/// How many executions of [`scenario`] reached what it is there for.
struct StampedeCoverage {
    /// Two or more callers of a key got the same error (one attempt's).
    error_shared: AtomicUsize,
    /// A key's init ran again after one was cancelled (its leader aborted
    /// or gave up): under `ErrorPolicy::Cached`, where a finished result
    /// stays, the only way to a second init.
    restarted: AtomicUsize,
}

impl StampedeCoverage {
    const fn new() -> Self {
        Self {
            error_shared: AtomicUsize::new(0),
            restarted: AtomicUsize::new(0),
        }
    }

    /// Runs `check` over `scenario(policy)`, then requires an error shared
    /// by two callers in some execution and, under `Cached`, an init run
    /// again after a cancelled one (at 10,000 executions: 4,100 to 4,900
    /// and about 1,350).
    fn explore(
        &'static self,
        policy: ErrorPolicy,
        check: impl FnOnce(Box<dyn Fn() + Send + Sync>),
    ) {
        check(Box::new(move || scenario(policy, self)));
        let shared = self.error_shared.load(SeqCst);
        let restarted = self.restarted.load(SeqCst);
        assert!(shared > 0, "no execution shared an error between callers");
        if policy == ErrorPolicy::Cached {
            assert!(
                restarted > 0,
                "no execution ran an init after a cancelled one"
            );
        }
    }
}

fn scenario(policy: ErrorPolicy, cov: &StampedeCoverage) {
    let mut rng = thread_rng();
    let cache = Arc::new(Cache::<u32, u32, u32>::builder().errors(policy).build());
    let book = Arc::new(Book::default());
    let hot: Vec<u32> = (0..rng.gen_range(1..=3))
        .map(|_| rng.gen_range(0..KEY_SPACE))
        .collect();

    sfut::block_on(async {
        let mut handles: Vec<JoinHandle<Option<(u32, Res)>>> = Vec::new();
        for id in 0..CALLERS as u32 {
            let key = hot[rng.gen_range(0..hot.len())];
            let fail = rng.gen_bool(0.3);
            let yields = rng.gen_range(0..=3);
            let give_up = rng.gen_bool(0.15).then(|| rng.gen_range(0..=3));
            let call = Call {
                id,
                key,
                fail,
                yields,
                give_up,
                exclusive: true,
            };
            handles.push(sfut::spawn(caller(cache.clone(), book.clone(), call)));
        }
        let aborts: Vec<usize> = (0..CALLERS).filter(|_| rng.gen_bool(0.1)).collect();
        for i in aborts {
            for _ in 0..rng.gen_range(0..=2) {
                sfut::yield_now().await;
            }
            handles[i].abort();
        }
        let mut results = Vec::new();
        for h in handles {
            if let Ok(Some(r)) = h.await {
                results.push(r);
            }
        }

        assert!(book.running.lock().unwrap().is_empty());
        let started = book.started.lock().unwrap().clone();
        let (mut shared, mut restarted) = (false, false);
        for &key in &hot {
            restarted |= started.iter().filter(|&&k| k == key).count() >= 2;
            let errors: Vec<u32> = results
                .iter()
                .filter_map(|&(k, r)| (k == key).then_some(r.err()).flatten())
                .collect();
            shared |= errors
                .iter()
                .any(|e| errors.iter().filter(|&x| x == e).count() >= 2);
            let got: Vec<Res> = results
                .iter()
                .filter(|(k, _)| *k == key)
                .map(|(_, r)| *r)
                .collect();
            let cached = cache.peek(&key);
            match policy {
                ErrorPolicy::Cached => {
                    // One result per key, stored for ever: everyone who got
                    // an answer got the cached one.
                    if let Some(first) = got.first() {
                        assert!(
                            got.iter().all(|r| r == first),
                            "key {key}: callers disagree: {got:?}"
                        );
                        assert_eq!(cached, Some(*first));
                    }
                }
                ErrorPolicy::SharedOnly => {
                    // Errors are never stored; a stored value is what every
                    // caller that got a value got.
                    assert!(
                        !matches!(cached, Some(Err(_))),
                        "key {key}: a SharedOnly error was stored"
                    );
                    let values: Vec<u32> = got.iter().filter_map(|r| r.ok()).collect();
                    if let Some(v) = values.first() {
                        assert!(
                            values.iter().all(|x| x == v),
                            "key {key}: two values: {values:?}"
                        );
                        assert_eq!(cached, Some(Ok(*v)));
                    }
                }
                ErrorPolicy::CachedFor(_) => unreachable!("not drawn"),
            }
        }
        assert!(cache.len() <= hot.len());
        if shared {
            cov.error_shared.fetch_add(1, SeqCst);
        }
        if restarted {
            cov.restarted.fetch_add(1, SeqCst);
        }
    });
}

// Property: 16 callers over 1–3 hot keys of a 1,000-key space, inits that fail
// or succeed after some yields, callers aborted or giving up, errors cached
// (the default): nobody hangs, never two inits of one key at once, and every
// caller that got an answer for a key got the one result the cache stores.
// Random scheduler.
#[test]
fn cache_stampede_cached_errors_random() {
    static COV: StampedeCoverage = StampedeCoverage::new();
    COV.explore(ErrorPolicy::Cached, |f| {
        shuttle::check_random(f, iterations())
    });
}

// Property: as above with `ErrorPolicy::SharedOnly`: errors are never
// stored, and all callers that got a value for a key got the stored value.
// Random scheduler.
#[test]
fn cache_stampede_shared_only_random() {
    static COV: StampedeCoverage = StampedeCoverage::new();
    COV.explore(ErrorPolicy::SharedOnly, |f| {
        shuttle::check_random(f, iterations())
    });
}

// Property: as `cache_stampede_shared_only_random`, under shuttle's PCT
// scheduler (depth 3).
#[test]
fn cache_stampede_shared_only_pct() {
    static COV: StampedeCoverage = StampedeCoverage::new();
    COV.explore(ErrorPolicy::SharedOnly, |f| {
        shuttle::check_pct(f, iterations(), 3)
    });
}

/// Spawns half of `CALLERS` callers that each come back for one of the
/// `hot` keys one to three times (inits that fail one time in five, after
/// up to two yields; with `give_ups`, some give up after a few polls).
fn returning_callers(
    rng: &mut impl Rng,
    cache: &Arc<Cache<u32, u32, u32>>,
    book: &Arc<Book>,
    hot: &[u32],
    give_ups: bool,
    exclusive: bool,
) -> Vec<JoinHandle<()>> {
    (0..CALLERS as u32 / 2)
        .map(|id| {
            let key = hot[rng.gen_range(0..hot.len())];
            let fail = rng.gen_bool(0.2);
            let yields = rng.gen_range(0..=2);
            let give_up = if give_ups {
                rng.gen_bool(0.15).then(|| rng.gen_range(0..=3))
            } else {
                None
            };
            let rounds = rng.gen_range(1..=3);
            let (cache, book) = (cache.clone(), book.clone());
            sfut::spawn(async move {
                for _ in 0..rounds {
                    let call = Call {
                        id,
                        key,
                        fail,
                        yields,
                        give_up,
                        exclusive,
                    };
                    let _ = caller(cache.clone(), book.clone(), call).await;
                    sfut::yield_now().await;
                }
            })
        })
        .collect()
}

/// How many executions of [`churn`] reached what it is there for.
struct ChurnCoverage {
    /// An invalidate removed its key while that key's init was running (and
    /// the init was still running after it): the contract's in-flight case.
    invalidated_in_flight: AtomicUsize,
    /// A clear ran while an init was running (before and after it).
    cleared_in_flight: AtomicUsize,
    /// An init started while an invalidated or cleared init of its key was
    /// still running: a caller after the removal did not join the old one.
    overlapped: AtomicUsize,
}

impl ChurnCoverage {
    const fn new() -> Self {
        Self {
            invalidated_in_flight: AtomicUsize::new(0),
            cleared_in_flight: AtomicUsize::new(0),
            overlapped: AtomicUsize::new(0),
        }
    }

    /// Runs `check` over `churn`, then requires each of the three to have
    /// happened in some execution (at 10,000 executions: 870, 690 and 1,090
    /// under the random scheduler, 2,520, 1,570 and 1,200 under PCT).
    fn explore(&'static self, check: impl FnOnce(Box<dyn Fn() + Send + Sync>)) {
        check(Box::new(move || churn(self)));
        let invalidated = self.invalidated_in_flight.load(SeqCst);
        let cleared = self.cleared_in_flight.load(SeqCst);
        let overlapped = self.overlapped.load(SeqCst);
        assert!(
            invalidated > 0 && cleared > 0 && overlapped > 0,
            "no execution invalidated an init in flight ({invalidated}), cleared beside one \
             ({cleared}) or started a second init of a key beside the removed one ({overlapped})"
        );
    }
}

/// Callers that come back for their key (so that later calls are first hits,
/// which move a result into the table of stored values, and then plain hits)
/// while two tasks invalidate keys and clear the cache at random moments.
fn churn(cov: &'static ChurnCoverage) {
    let mut rng = thread_rng();
    let cache = Arc::new(Cache::<u32, u32, u32>::new());
    let book = Arc::new(Book::default());
    let hot: Vec<u32> = (0..rng.gen_range(1..=3))
        .map(|_| rng.gen_range(0..KEY_SPACE))
        .collect();

    sfut::block_on(async {
        // Not exclusive: an invalidated init may still be finishing for its
        // own callers while the next one runs.
        let mut handles = returning_callers(&mut rng, &cache, &book, &hot, false, false);
        for _ in 0..2 {
            let (cache, b) = (cache.clone(), book.clone());
            let key = hot[rng.gen_range(0..hot.len())];
            let clear = rng.gen_bool(0.3);
            let wait = rng.gen_range(0..=6);
            handles.push(sfut::spawn(async move {
                for _ in 0..wait {
                    sfut::yield_now().await;
                }
                if clear {
                    let running = !b.running.lock().unwrap().is_empty();
                    cache.clear();
                    if running && !b.running.lock().unwrap().is_empty() {
                        cov.cleared_in_flight.fetch_add(1, SeqCst);
                    }
                } else {
                    let running = b.running.lock().unwrap().contains(&key);
                    let before = b.owners.lock().unwrap().len();
                    let had = cache.invalidate(&key);
                    if had && running && b.running.lock().unwrap().contains(&key) {
                        cov.invalidated_in_flight.fetch_add(1, SeqCst);
                    }
                    // Nothing the key held when it was invalidated, stored
                    // or in flight, is served to a get that starts after:
                    // it runs its own init or shares one started since.
                    let ran = Arc::new(AtomicUsize::new(0));
                    let r = ran.clone();
                    let got = cache
                        .get(key, || async move {
                            r.fetch_add(1, SeqCst);
                            Ok(u32::MAX)
                        })
                        .await;
                    if ran.load(SeqCst) == 0 {
                        let id = match got {
                            Ok(id) | Err(id) => id,
                        };
                        let owners = b.owners.lock().unwrap();
                        let old = owners[..before].contains(&(key, id));
                        let since = owners[before..].contains(&(key, id));
                        assert!(
                            !old || since,
                            "key {key}: a get after invalidate got caller {id}'s result, \
                             from an init started before the invalidate"
                        );
                    }
                }
            }));
        }
        for h in handles {
            h.await.expect("no task panics");
        }
        if book.overlaps.load(SeqCst) > 0 {
            cov.overlapped.fetch_add(1, SeqCst);
        }

        assert!(book.running.lock().unwrap().is_empty());
        assert!(cache.len() <= hot.len(), "more entries than keys");
        for &key in &hot {
            // Whatever the key holds (a stored value or error in either of a
            // shard's tables, or an entry), invalidate removes all of it: the
            // next get runs its init.
            let before = cache.len();
            let had = cache.invalidate(&key);
            assert_eq!(cache.len(), before - usize::from(had));
            assert_eq!(cache.peek(&key), None);
            let fresh = cache.get(key, || async { Ok(u32::MAX) }).await;
            assert_eq!(
                fresh,
                Ok(u32::MAX),
                "key {key}: a value outlived invalidate"
            );
            assert_eq!(cache.peek(&key), Some(Ok(u32::MAX)));
        }
    });
}

// Property: callers that come back for their key while keys are invalidated
// and the cache is cleared at random moments: nobody hangs, every init
// finishes or is dropped, never more entries than keys, a get made right
// after an invalidate is never served by an init started before it (in
// flight or finished), and once all is quiet an invalidated key's next get
// runs its init (nothing of the key survives in either of a shard's
// tables). Random scheduler; the test fails unless some
// execution invalidated a key, and some cleared the cache, while an init ran,
// and some started a second init of a key beside the removed one.
#[test]
fn cache_churn_invalidate_and_clear_random() {
    static COV: ChurnCoverage = ChurnCoverage::new();
    COV.explore(|f| shuttle::check_random(f, iterations()));
}

// Property: as `cache_churn_invalidate_and_clear_random`, under shuttle's PCT
// scheduler (depth 3).
#[test]
fn cache_churn_invalidate_and_clear_pct() {
    static COV: ChurnCoverage = ChurnCoverage::new();
    COV.explore(|f| shuttle::check_pct(f, iterations(), 3));
}

/// How many executions of [`expiry_churn`] reached what it is there for.
struct PurgeCoverage {
    /// A purge removed at least one entry.
    removed: AtomicUsize,
    /// A purge removed an entry while an init was running: it had entries
    /// in flight to leave alone.
    removed_beside_an_init: AtomicUsize,
}

impl PurgeCoverage {
    const fn new() -> Self {
        Self {
            removed: AtomicUsize::new(0),
            removed_beside_an_init: AtomicUsize::new(0),
        }
    }

    /// Runs `check` over `expiry_churn`, then requires both situations to
    /// have happened in some execution (at 20,000 executions: about 2,000
    /// to 4,300 and 60 to 440).
    fn explore(&'static self, check: impl FnOnce(Box<dyn Fn() + Send + Sync>)) {
        check(Box::new(move || expiry_churn(self)));
        let removed = self.removed.load(SeqCst);
        let beside = self.removed_beside_an_init.load(SeqCst);
        assert!(
            removed > 0 && beside > 0,
            "purges never removed anything ({removed}) or never beside an init ({beside})"
        );
    }
}

/// Callers that come back for their key (with inits that fail or give up)
/// in a cache whose values live 10 s and errors 5 s, while one task moves
/// the clock on and another purges expired entries at random moments.
fn expiry_churn(cov: &'static PurgeCoverage) {
    let mut rng = thread_rng();
    let clock = ManualClock::new();
    let cache = Arc::new(
        Cache::<u32, u32, u32>::builder()
            .time_to_live(Duration::from_secs(10))
            .errors(ErrorPolicy::CachedFor(Duration::from_secs(5)))
            .clock(clock.clone())
            .build(),
    );
    let book = Arc::new(Book::default());
    let hot: Vec<u32> = (0..rng.gen_range(1..=3))
        .map(|_| rng.gen_range(0..KEY_SPACE))
        .collect();

    sfut::block_on(async {
        // Exclusive: with no invalidate or clear, an init runs only for the
        // entry in the table, so never two of a key at once (a purge that
        // took an entry in flight would start a second one).
        let mut handles = returning_callers(&mut rng, &cache, &book, &hot, true, true);
        let steps: Vec<(usize, u64)> = (0..rng.gen_range(1..=2))
            .map(|_| (rng.gen_range(0..=4), rng.gen_range(0..=12)))
            .collect();
        let mover = clock.clone();
        handles.push(sfut::spawn(async move {
            for (wait, secs) in steps {
                for _ in 0..wait {
                    sfut::yield_now().await;
                }
                mover.advance(Duration::from_secs(secs));
            }
        }));
        let purges: Vec<usize> = (0..rng.gen_range(1..=2))
            .map(|_| rng.gen_range(0..=6))
            .collect();
        let (c, b, keys) = (cache.clone(), book.clone(), hot.len());
        handles.push(sfut::spawn(async move {
            for wait in purges {
                for _ in 0..wait {
                    sfut::yield_now().await;
                }
                let running = !b.running.lock().unwrap().is_empty();
                let purged = c.purge_expired();
                assert!(purged <= keys, "purged {purged} entries of {keys} keys");
                if purged > 0 {
                    cov.removed.fetch_add(1, SeqCst);
                    if running && !b.running.lock().unwrap().is_empty() {
                        cov.removed_beside_an_init.fetch_add(1, SeqCst);
                    }
                }
            }
        }));
        for h in handles {
            h.await.expect("no task panics");
        }

        assert!(book.running.lock().unwrap().is_empty());
        let left = cache.len();
        assert!(left <= hot.len(), "more entries than keys");
        // Nothing is in flight now, so once everything has expired a purge
        // removes every entry: none was left empty or stranded.
        clock.advance(Duration::from_secs(3600));
        assert_eq!(cache.purge_expired(), left, "a purge left an entry");
        assert!(cache.is_empty());
        for &key in &hot {
            let fresh = cache.get(key, || async { Ok(u32::MAX) }).await;
            assert_eq!(fresh, Ok(u32::MAX), "key {key}: a purged value was served");
        }
    });
}

// Property: callers of a cache with a time-to-live come back for their key
// while the clock moves and expired entries are purged at random moments:
// nobody hangs, never two inits of one key at once (a purge never takes an
// entry in flight), never more entries than keys, and once everything has
// expired one purge removes every entry. Random scheduler; the test fails
// unless some execution's purge removed an entry while an init was running.
#[test]
fn cache_expiry_churn_with_purges_random() {
    static COV: PurgeCoverage = PurgeCoverage::new();
    COV.explore(|f| shuttle::check_random(f, iterations()));
}

// Property: as `cache_expiry_churn_with_purges_random`, under shuttle's PCT
// scheduler (depth 3).
#[test]
fn cache_expiry_churn_with_purges_pct() {
    static COV: PurgeCoverage = PurgeCoverage::new();
    COV.explore(|f| shuttle::check_pct(f, iterations(), 3));
}
