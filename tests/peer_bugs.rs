//! One test per failure recorded against a peer (docs/peers.md in the shared
//! notes): each is a bug this crate must not have. Test names carry the peer
//! and, where there is one, the issue number.
#![allow(clippy::disallowed_types)] // tests may name std types next to the shim

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use lazyflight::sync::future::block_on;
use lazyflight::{Cache, Entry, ErrorPolicy, Group, Outcome};

mod common;
use common::{join, lead};

#[derive(Default)]
struct Wakes(AtomicUsize);
impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

// ---- Single-flight ----

/// rs-singleflight 0.1.x scans the whole map on every completion. Here a
/// flight is removed by identity: completing one among many leaves every
/// other flight (including one that replaced a forgotten flight of the same
/// key) exactly where it was.
#[test]
fn rs_singleflight_cleanup_is_by_identity_not_a_scan() {
    let group = Group::<u32, u32, ()>::new();
    let others: Vec<_> = (1..=10_000).map(|k| lead(group.entry(k))).collect();
    let old = lead(group.entry(0));
    assert!(group.forget(&0));
    let new = lead(group.entry(0));
    old.complete(Ok(0));
    assert_eq!(group.len(), 10_001);
    assert!(matches!(group.entry(0), Entry::Subscriber(_)));
    drop(new);
    for l in others {
        l.complete(Ok(1));
    }
    assert!(group.is_empty());
    assert_eq!(group.in_flight(), 0);
}

/// ihciah/singleflight-async #5: a dead map entry per cancelled call.
#[test]
fn singleflight_async_5_cancelled_calls_leave_no_entry() {
    let group = Group::<u32, u32, ()>::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    for k in 0..100 {
        let mut leader = Box::pin(group.run(k, std::future::pending));
        let mut follower = Box::pin(group.run(k, std::future::pending));
        assert!(leader.as_mut().poll(&mut cx).is_pending());
        assert!(follower.as_mut().poll(&mut cx).is_pending());
        if k % 2 == 0 {
            drop(leader);
            drop(follower);
        } else {
            drop(follower);
            drop(leader);
        }
    }
    assert!(group.is_empty());
    assert_eq!(group.in_flight(), 0);
}

/// PureWhiteWu/async_singleflight #12, first half: followers got `Err(None)`
/// instead of the leader's error. Here they get the leader's very error.
#[test]
fn async_singleflight_12_followers_get_the_real_error() {
    let group = Group::<u8, u8, String>::new();
    let leader = lead(group.entry(1));
    let subs: Vec<_> = (0..4).map(|_| join(group.entry(1))).collect();
    let mine = leader.complete(Err("backend said no".to_owned()));
    for s in subs {
        let theirs = block_on(s.recv()).unwrap();
        assert!(Arc::ptr_eq(&mine, &theirs));
        assert_eq!(theirs.result(), Some(&Err("backend said no".to_owned())));
    }
}

/// PureWhiteWu/async_singleflight #12, second half: after a leader drop,
/// several followers became leaders. Here every follower gets `Canceled`
/// and exactly one next caller leads.
#[test]
fn async_singleflight_12_one_new_leader_after_a_leader_drop() {
    let group = Group::<u8, u8, ()>::new();
    let leader = lead(group.entry(1));
    let subs: Vec<_> = (0..8).map(|_| join(group.entry(1))).collect();
    drop(leader);
    for s in subs {
        assert!(block_on(s.recv()).unwrap().is_canceled());
    }
    let next: Vec<_> = (0..8).map(|_| group.entry(1)).collect();
    assert_eq!(
        next.iter()
            .filter(|e| matches!(e, Entry::Leader(_)))
            .count(),
        1
    );
    assert!(matches!(next[0], Entry::Leader(_)));
}

/// singleflight (sync): one global lock held while the work runs, so key B
/// waited behind key A.
#[test]
fn singleflight_sync_key_b_never_waits_behind_key_a() {
    let group = Group::<char, u8, ()>::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut a = pin!(group.run('a', std::future::pending));
    assert!(a.as_mut().poll(&mut cx).is_pending());
    assert!(a.as_mut().poll(&mut cx).is_pending());
    let b = block_on(group.run('b', || async { Ok(2) }));
    assert_eq!(b.result(), Some(&Ok(2)));
}

/// singleflight (sync): after a leader panic, every later call on the key
/// hung. Here the panic cancels the flight and the key works again.
#[test]
fn singleflight_sync_a_leader_panic_does_not_poison_the_key() {
    let group = Group::<u8, u8, ()>::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(group.run(1, || async { panic!("work panicked") }))
    }));
    assert!(r.is_err());
    assert!(group.is_empty());
    assert_eq!(
        block_on(group.run(1, || async { Ok(1) })).result(),
        Some(&Ok(1))
    );
}

/// tower-resilience-coalesce: a follower busy-polled (tens of thousands of
/// polls per call). Here a waiting follower is woken once, and polled only
/// when woken.
#[test]
fn tower_resilience_coalesce_follower_does_not_busy_poll() {
    let group = Group::<u8, u8, ()>::new();
    let leader = lead(group.entry(1));
    let wakes = Arc::new(Wakes::default());
    let waker = Waker::from(wakes.clone());
    let mut cx = Context::from_waker(&waker);
    let mut follower = pin!(group.run(1, || async { unreachable!() }));
    let mut polls = 1;
    assert!(follower.as_mut().poll(&mut cx).is_pending());
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        0,
        "pending without waking itself"
    );
    leader.complete(Ok(9));
    assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    polls += 1;
    assert!(
        matches!(follower.as_mut().poll(&mut cx), Poll::Ready(o) if o.result() == Some(&Ok(9)))
    );
    assert_eq!(polls, 2);
}

/// huggingface/xet-core #447: the owner dropped and the entry was never
/// removed.
#[test]
fn xet_core_447_a_dropped_owner_removes_its_entry() {
    let group = Group::<u8, u8, ()>::new();
    drop(lead(group.entry(1)));
    assert!(group.is_empty());
    assert_eq!(group.in_flight(), 0);
    assert!(matches!(group.entry(1), Entry::Leader(_)));
}

/// huggingface/xet-core #449: a joiner that subscribes after the broadcast
/// was never woken. Here a subscriber that first waits after completion
/// resolves at once.
#[test]
fn xet_core_449_a_joiner_after_the_broadcast_still_gets_it() {
    let group = Group::<u8, u8, ()>::new();
    let leader = lead(group.entry(1));
    let late = join(group.entry(1));
    let out = leader.complete(Ok(3));
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut recv = pin!(late.recv());
    assert!(matches!(recv.as_mut().poll(&mut cx), Poll::Ready(Ok(o)) if Arc::ptr_eq(&o, &out)));
}

/// golang/go #52557: a leader that exits without returning (`Goexit`) left
/// `DoChan` waiters hanging. Here an aborted leader task cancels the flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_52557_an_aborted_leader_task_does_not_strand_waiters() {
    let group = Arc::new(Group::<u8, u8, ()>::new());
    let leader = lead(group.entry(1));
    let sub = join(group.entry(1));
    let task = tokio::spawn(async move {
        let _leader = leader;
        std::future::pending::<()>().await;
    });
    tokio::task::yield_now().await;
    task.abort();
    let out = tokio::time::timeout(Duration::from_secs(5), sub.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(out.is_canceled());
}

/// golang/go #31420: with `Forget`, the old call finishing removed the new
/// one. (The full interleaving is `singleflight_go::test_forget`.)
#[test]
fn go_31420_an_old_flight_never_removes_its_replacement() {
    let group = Group::<u8, u8, ()>::new();
    let old = lead(group.entry(1));
    group.forget(&1);
    let new = lead(group.entry(1));
    drop(old);
    let joined = join(group.entry(1));
    let out = new.complete(Ok(2));
    assert!(Arc::ptr_eq(&out, &block_on(joined.recv()).unwrap()));
}

/// golang/go #74880: `shared` is true for the leader too when anyone joined.
#[test]
fn go_74880_shared_is_seen_by_the_leader() {
    let group = Group::<u8, u8, ()>::new();
    let leader = lead(group.entry(1));
    let _sub = join(group.entry(1));
    assert_eq!(
        *leader.complete(Ok(1)),
        Outcome::Complete {
            result: Ok(1),
            shared: true
        }
    );
}

// ---- Caches ----

/// Caffeine #870 / hyper-util #299: one caller's cancel killed the load for
/// all. Here the baton passes to the longest waiter, which finishes the load;
/// nobody else fails.
#[test]
fn caffeine_870_one_callers_cancel_does_not_kill_the_load() {
    let cache = Cache::<u8, u8, ()>::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut first = Box::pin(cache.get(1, std::future::pending));
    let mut second = pin!(cache.get(1, || async { Ok(2) }));
    let mut third = pin!(cache.get(1, || async { unreachable!("the second caller takes over") }));
    assert!(first.as_mut().poll(&mut cx).is_pending());
    assert!(second.as_mut().poll(&mut cx).is_pending());
    assert!(third.as_mut().poll(&mut cx).is_pending());
    drop(first);
    assert_eq!(second.as_mut().poll(&mut cx), Poll::Ready(Ok(2)));
    assert_eq!(third.as_mut().poll(&mut cx), Poll::Ready(Ok(2)));
}

/// moka #59 / llamanodes/web3-proxy #217: waiters restarted after a leader
/// cancel, and after 200 aborted retries moka panicked. Here any number of
/// cancelled leaders in a row is fine.
#[test]
fn moka_59_many_cancelled_leaders_never_panic() {
    let cache = Cache::<u8, u8, ()>::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    for _ in 0..1_000 {
        let mut leader = Box::pin(cache.get(1, std::future::pending));
        assert!(leader.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(block_on(cache.get(1, || async { Ok(5) })), Ok(5));
}

/// quick_cache: an error is not shared, so waiters retry one by one. Here,
/// with errors shared with the attempt's callers only, one attempt answers
/// every waiter, and nothing is stored.
#[test]
fn quick_cache_an_error_is_shared_with_all_waiters_once() {
    let cache = Cache::<u8, u8, String>::builder()
        .errors(ErrorPolicy::SharedOnly)
        .build();
    let runs = Arc::new(AtomicUsize::new(0));
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let r = runs.clone();
    let mut leader = pin!(cache.get(1, || async move {
        r.fetch_add(1, Ordering::SeqCst);
        rx.await.unwrap();
        Err("no".to_owned())
    }));
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    let mut waiters: Vec<_> = (0..8)
        .map(|_| {
            let r = runs.clone();
            Box::pin(cache.get(1, move || async move {
                r.fetch_add(1, Ordering::SeqCst);
                Err("retried".to_owned())
            }))
        })
        .collect();
    for w in &mut waiters {
        assert!(w.as_mut().poll(&mut cx).is_pending());
    }
    tx.send(()).unwrap();
    assert_eq!(
        leader.as_mut().poll(&mut cx),
        Poll::Ready(Err("no".to_owned()))
    );
    for w in &mut waiters {
        assert_eq!(w.as_mut().poll(&mut cx), Poll::Ready(Err("no".to_owned())));
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert!(cache.is_empty());
}

/// jaemk/cached #158: 64 bucket locks made unrelated keys serialize. Here a
/// thousand keys complete while another key's init is stuck.
#[test]
fn cached_158_unrelated_keys_do_not_serialize() {
    let cache = Cache::<u32, u32, ()>::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut stuck = pin!(cache.get(0, std::future::pending));
    assert!(stuck.as_mut().poll(&mut cx).is_pending());
    for k in 1..=1_000 {
        assert_eq!(block_on(cache.get(k, || async move { Ok(k) })), Ok(k));
    }
}

/// tokio #5688 (async-once-cell's `Lazy` poisoned for ever by a panic): a
/// panicking init leaves the key usable.
#[test]
fn tokio_5688_a_panicking_init_does_not_poison_the_key() {
    let cache = Cache::<u8, u8, ()>::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(cache.get(1, || async { panic!("init panicked") }))
    }));
    assert!(r.is_err());
    assert_eq!(block_on(cache.get(1, || async { Ok(1) })), Ok(1));
}

/// tokio #4496: under timeouts the init ran six times, concurrently. Here
/// callers that time out never make two inits run at once, and the first one
/// to finish is cached for everyone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_4496_timeouts_never_run_two_inits_at_once() {
    let cache = Arc::new(Cache::<u8, u8, ()>::new());
    let running = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let (cache, running, max) = (cache.clone(), running.clone(), max.clone());
        tasks.push(tokio::spawn(async move {
            let init = || async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                max.fetch_max(now, Ordering::SeqCst);
                struct Dec(Arc<AtomicUsize>);
                impl Drop for Dec {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let _dec = Dec(running.clone());
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok(1)
            };
            // The first callers give up before the init can finish.
            let limit = Duration::from_millis(if i < 3 { 5 } else { 2_000 });
            tokio::time::timeout(limit, cache.get(1, init)).await
        }));
    }
    let mut done = 0;
    for t in tasks {
        if let Ok(v) = t.await.unwrap() {
            assert_eq!(v, Ok(1));
            done += 1;
        }
    }
    assert!(done >= 3);
    assert_eq!(max.load(Ordering::SeqCst), 1, "never two inits at once");
}

/// moka #240 (open since 2023), and quick_cache blocking until the guard
/// drops: a leader polled once and then parked (neither polled nor dropped)
/// stalled every waiter. With `get_owned` the init lives in the entry and the
/// waiters drive it.
#[test]
fn moka_240_a_parked_leader_does_not_stall_the_others() {
    let cache = Cache::<u8, u8, ()>::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
    let mut parked = Box::pin(cache.get_owned(1, || async move { Ok(rx.await.unwrap()) }));
    assert!(parked.as_mut().poll(&mut cx).is_pending());
    // `parked` is never polled again, but stays alive.
    let waiter = std::thread::spawn(move || tx.send(4).unwrap());
    assert_eq!(
        block_on(cache.get_owned(1, || async { unreachable!("joins") })),
        Ok(4)
    );
    waiter.join().unwrap();
    drop(parked);
}
