//! Public-API tests of `Group`.
#![allow(clippy::disallowed_types)] // tests may name std types next to the shim

use core::future::Future;
use core::pin::pin;
use core::task::{Context, Poll, Waker};
use std::task::Wake;

use lazyflight::sync::atomic::{AtomicUsize, Ordering};
use lazyflight::sync::future::block_on;
use lazyflight::sync::Arc;
use lazyflight::{Group, Leader, Outcome, Recv, Subscriber};

mod common;
use common::{join, lead};
#[path = "common/armed_key.rs"]
mod armed_key;
use armed_key::ArmedKey;

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Counter(std::sync::atomic::AtomicUsize);
impl Wake for Counter {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}
#[allow(clippy::disallowed_types)]
fn counting_waker() -> (std::sync::Arc<Counter>, Waker) {
    let c = std::sync::Arc::new(Counter::default());
    (c.clone(), Waker::from(c))
}

#[test]
fn leader_and_subscribers_share_one_arc() {
    let group = Group::<&str, u32, String>::new();
    let leader = lead(group.entry("k"));
    let a = join(group.entry("k"));
    let b = join(group.entry("k"));
    assert_eq!(leader.subscribers(), 2);
    assert_eq!(leader.joins(), 2);
    assert!(leader.is_shared());
    assert_eq!(group.subscribers("k"), 2);
    assert_eq!(group.in_flight(), 1);
    assert_eq!(group.len(), 1);

    let mine = leader.complete(Ok(5));
    assert_eq!(
        *mine,
        Outcome::Complete {
            result: Ok(5),
            shared: true
        }
    );
    let ra = block_on(a.recv()).unwrap();
    let rb = block_on(b.recv()).unwrap();
    assert!(Arc::ptr_eq(&mine, &ra) && Arc::ptr_eq(&mine, &rb));
    assert_eq!(group.in_flight(), 0);
    assert!(group.is_empty());
}

#[test]
fn lone_leader_is_not_shared() {
    let group = Group::<u8, u8, ()>::new();
    let out = lead(group.entry(1)).complete(Err(()));
    assert_eq!(
        *out,
        Outcome::Complete {
            result: Err(()),
            shared: false
        }
    );
    assert!(!out.is_shared());
    assert!(group.is_empty());
}

#[test]
fn a_subscriber_that_left_still_made_the_flight_shared() {
    let group = Group::<u8, u8, ()>::new();
    let leader = lead(group.entry(1));
    drop(join(group.entry(1)));
    assert_eq!(leader.subscribers(), 0);
    assert!(leader.complete(Ok(1)).is_shared());
}

#[test]
fn dropped_leader_publishes_canceled_and_the_next_caller_leads() {
    let group = Group::<u8, u8, ()>::new();
    let leader = lead(group.entry(1));
    let subs: Vec<_> = (0..3).map(|_| join(group.entry(1))).collect();
    drop(leader);
    assert_eq!(group.in_flight(), 0);
    assert!(group.is_empty());
    let outs: Vec<_> = subs
        .into_iter()
        .map(|s| block_on(s.recv()).unwrap())
        .collect();
    assert!(outs
        .iter()
        .all(|o| o.is_canceled() && Arc::ptr_eq(o, &outs[0])));
    let next = lead(group.entry(1));
    assert_eq!(
        *next.complete(Ok(2)),
        Outcome::Complete {
            result: Ok(2),
            shared: false
        }
    );
}

#[test]
fn forget_detaches_without_disturbing_either_flight() {
    let group = Group::<u8, u8, ()>::new();
    let old = lead(group.entry(1));
    let old_sub = join(group.entry(1));
    assert!(group.forget(&1));
    assert!(!group.forget(&1));
    assert_eq!(group.len(), 0);
    assert_eq!(group.in_flight(), 1);

    let new = lead(group.entry(1));
    let new_sub = join(group.entry(1));
    assert_eq!(group.in_flight(), 2);
    assert_eq!(
        *old.complete(Ok(1)),
        Outcome::Complete {
            result: Ok(1),
            shared: true
        }
    );
    // The old flight finishing left the new one in place.
    let late = join(group.entry(1));
    assert_eq!(block_on(old_sub.recv()).unwrap().result(), Some(&Ok(1)));
    let out = new.complete(Ok(2));
    assert!(Arc::ptr_eq(&out, &block_on(new_sub.recv()).unwrap()));
    assert!(Arc::ptr_eq(&out, &block_on(late.recv()).unwrap()));
    assert!(group.is_empty());
    assert_eq!(group.in_flight(), 0);
}

#[test]
fn subscriber_is_woken_exactly_once_and_polled_twice() {
    let group = Group::<u8, u8, ()>::new();
    let leader = lead(group.entry(1));
    let (count, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut recv = pin!(join(group.entry(1)).recv());
    assert!(recv.as_mut().poll(&mut cx).is_pending());
    assert!(
        recv.as_mut().poll(&mut cx).is_pending(),
        "a spurious poll stays pending"
    );
    assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    leader.complete(Ok(3));
    assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        matches!(recv.as_mut().poll(&mut cx), Poll::Ready(Ok(o)) if o.result() == Some(&Ok(3)))
    );
}

#[test]
fn dropping_a_waiting_subscriber_removes_only_it() {
    let group = Group::<u8, u8, ()>::new();
    let leader = lead(group.entry(1));
    let (_, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let keep = join(group.entry(1));
    let (gone_count, gone_waker) = counting_waker();
    {
        let mut gone = Box::pin(join(group.entry(1)).recv());
        assert!(gone
            .as_mut()
            .poll(&mut Context::from_waker(&gone_waker))
            .is_pending());
        assert_eq!(leader.subscribers(), 2);
    }
    drop(gone_waker);
    assert_eq!(leader.subscribers(), 1);
    assert_eq!(
        std::sync::Arc::strong_count(&gone_count),
        1,
        "the flight kept the dropped subscriber's waker"
    );
    let mut kept = pin!(keep.recv());
    assert!(kept.as_mut().poll(&mut cx).is_pending());
    let out = leader.complete(Ok(4));
    assert_eq!(gone_count.0.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert!(matches!(kept.poll(&mut cx), Poll::Ready(Ok(o)) if Arc::ptr_eq(&out, &o)));
}

#[test]
fn try_recv_does_not_wait() {
    let group = Group::<u8, u8, ()>::new();
    let leader = lead(group.entry(1));
    let sub = join(group.entry(1));
    assert!(sub.try_recv().is_none());
    let out = leader.complete(Ok(1));
    assert!(Arc::ptr_eq(&out, &sub.try_recv().unwrap()));
}

#[test]
fn results_need_not_be_clone() {
    struct NotClone(u32);
    let group = Group::<u8, NotClone, NotClone>::new();
    let out = block_on(group.run(1, || async { Ok(NotClone(9)) }));
    assert!(matches!(out.result(), Some(Ok(NotClone(9)))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_moves_into_a_spawned_task() {
    let group = Group::<String, usize, ()>::new();
    let leader = lead(group.entry("k".into()));
    let sub = join(group.entry("k".into()));
    let done = tokio::spawn(async move {
        tokio::task::yield_now().await;
        leader.complete(Ok(42))
    });
    let theirs = sub.recv().await.unwrap();
    assert!(Arc::ptr_eq(&theirs, &done.await.unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_key_never_delays_another() {
    let group = Arc::new(Group::<u8, u8, ()>::new());
    let g = group.clone();
    let slow = tokio::spawn(async move { g.run(1, core::future::pending).await });
    while group.in_flight() == 0 {
        tokio::task::yield_now().await;
    }
    for i in 0..100 {
        let out = group.run(2, || async move { Ok(i) }).await;
        assert_eq!(out.result(), Some(&Ok(i)));
    }
    slow.abort();
    assert!(slow.await.unwrap_err().is_cancelled());
    assert_eq!(group.in_flight(), 0);
    assert!(group.is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn run_coalesces_a_burst_whose_work_is_still_running() {
    // On one thread, tasks spawned together run one after the other: the
    // first leads, its work yields, and the fifteen others join its flight.
    let group = Arc::new(Group::<u8, usize, ()>::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (group, calls) = (group.clone(), calls.clone());
            tokio::spawn(async move {
                group
                    .run(0, || async move {
                        let n = calls.fetch_add(1, Ordering::SeqCst);
                        tokio::task::yield_now().await;
                        Ok(n)
                    })
                    .await
            })
        })
        .collect();
    let mut outs = Vec::new();
    for t in tasks {
        outs.push(t.await.unwrap());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(outs
        .iter()
        .all(|o| Arc::ptr_eq(o, &outs[0]) && o.is_shared()));
    assert!(group.is_empty());
    assert_eq!(group.in_flight(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn run_publishes_instant_work_at_once() {
    // Work that is ready at its first poll is published in that same poll:
    // no yield, so calls that never overlap in time are separate flights.
    let group = Arc::new(Group::<u8, usize, ()>::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (group, calls) = (group.clone(), calls.clone());
            tokio::spawn(async move {
                let (count, waker) = counting_waker();
                let mut call =
                    pin!(group.run(
                        0,
                        || async move { Ok(calls.fetch_add(1, Ordering::SeqCst)) }
                    ));
                let ready = call.as_mut().poll(&mut Context::from_waker(&waker));
                // Ready at the first poll, without waking itself.
                assert_eq!(count.0.load(std::sync::atomic::Ordering::SeqCst), 0);
                match ready {
                    Poll::Ready(out) => out,
                    Poll::Pending => panic!("instant work must not yield"),
                }
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(
            *t.await.unwrap(),
            Outcome::Complete {
                result: Ok(i),
                shared: false
            }
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 16);
    assert!(group.is_empty());
    assert_eq!(group.in_flight(), 0);
}

#[test]
fn a_panicking_leader_cancels_its_flight_and_the_key_recovers() {
    let group = Arc::new(Group::<u8, u8, ()>::new());
    let sub_group = group.clone();
    let leader = lead(group.entry(1));
    let sub = join(sub_group.entry(1));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _leader = leader;
        panic!("work failed");
    }));
    assert!(r.is_err());
    assert!(block_on(sub.recv()).unwrap().is_canceled());
    let out = block_on(group.run(1, || async { Ok(7) }));
    assert_eq!(out.result(), Some(&Ok(7)));
    assert!(group.is_empty());
}

#[test]
fn debug_does_not_need_debug_values() {
    struct Opaque;
    let group = Group::<u8, Opaque, Opaque>::new();
    let leader = lead(group.entry(1));
    let sub = join(group.entry(1));
    assert_eq!(format!("{group:?}"), "Group { in_flight: 1, .. }");
    assert_eq!(format!("{leader:?}"), "Leader { subscribers: 1, .. }");
    let recv: Recv<Opaque, Opaque> = sub.recv();
    assert!(format!("{recv:?}").starts_with("Recv"));
    drop(leader);
    assert!(block_on(recv).unwrap().is_canceled());
}

#[test]
fn auto_traits() {
    fn send_static<T: Send + 'static>() {}
    fn send_sync<T: Send + Sync>() {}
    fn unpin<T: Unpin>() {}
    send_sync::<Group<String, Vec<u8>, std::io::Error>>();
    send_static::<Leader<String, Vec<u8>, std::io::Error>>();
    send_static::<Subscriber<Vec<u8>, std::io::Error>>();
    send_static::<Recv<Vec<u8>, std::io::Error>>();
    send_sync::<Outcome<Vec<u8>, std::io::Error>>();
    unpin::<Recv<Vec<u8>, String>>();
    fn run_future_is_send(g: &Group<String, u8, ()>) -> impl Future + Send + '_ {
        g.run("k".into(), || async { Ok(1) })
    }
    let _ = run_future_is_send;
}

/// A key (compared and hashed by `n`) that counts the calls of its `Hash`
/// and, when armed, panics in its `Drop`.
struct Touchy {
    n: u32,
    hashes: Arc<AtomicUsize>,
    panics_on_drop: bool,
}

impl PartialEq for Touchy {
    fn eq(&self, other: &Self) -> bool {
        self.n == other.n
    }
}

impl Eq for Touchy {}

impl std::hash::Hash for Touchy {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.hashes.fetch_add(1, Ordering::SeqCst);
        self.n.hash(h);
    }
}

impl Drop for Touchy {
    fn drop(&mut self) {
        if self.panics_on_drop && !std::thread::panicking() {
            panic!("key dropped");
        }
    }
}

/// A stored key whose `Drop` panics when its flight ends: the panic reaches
/// the leader's caller, but only after the subscribers were told, so none of
/// them is left waiting; both for `complete` and for a dropped leader.
#[test]
fn a_key_whose_drop_panics_strands_no_subscriber() {
    let hashes = Arc::new(AtomicUsize::new(0));
    let key = |n, panics_on_drop| Touchy {
        n,
        hashes: hashes.clone(),
        panics_on_drop,
    };
    let group = Group::<Touchy, u32, ()>::new();
    for complete in [true, false] {
        let leader = lead(group.entry(key(1, true)));
        let sub = join(group.entry(key(1, false)));
        let (count, waker) = counting_waker();
        let mut cx = Context::from_waker(&waker);
        let mut recv = Box::pin(sub.recv());
        assert!(recv.as_mut().poll(&mut cx).is_pending());
        let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            if complete {
                drop(leader.complete(Ok(7)));
            } else {
                drop(leader);
            }
        }));
        assert!(
            ended.is_err(),
            "the key's panic reaches the leader's caller"
        );
        assert_eq!(group.in_flight(), 0);
        assert_eq!(
            count.0.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "woken once"
        );
        let Poll::Ready(Ok(outcome)) = recv.as_mut().poll(&mut cx) else {
            panic!("the subscriber got no outcome");
        };
        if complete {
            assert_eq!(outcome.result(), Some(&Ok(7)));
        } else {
            assert!(matches!(*outcome, Outcome::Canceled));
        }
    }
}

/// The group hashes a caller's key once per call: when its table grows, it
/// rehashes the stored flights by the hash kept in each slot, so `K`'s
/// `Hash` (user code, which could panic) never runs under a shard lock.
#[test]
fn growing_the_table_does_not_hash_keys_again() {
    let hashes = Arc::new(AtomicUsize::new(0));
    let group = Group::<Touchy, u32, ()>::new();
    let leaders: Vec<_> = (0..2000)
        .map(|n| {
            lead(group.entry(Touchy {
                n,
                hashes: hashes.clone(),
                panics_on_drop: false,
            }))
        })
        .collect();
    assert_eq!(group.in_flight(), 2000);
    assert_eq!(hashes.load(Ordering::SeqCst), 2000, "one hash per call");
    drop(leaders);
    assert_eq!(group.in_flight(), 0);
}

/// Counts its wake-ups, then panics.
#[derive(Default)]
struct PanickingWaker(std::sync::atomic::AtomicUsize);

impl Wake for PanickingWaker {
    fn wake(self: std::sync::Arc<Self>) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        panic!("waker panics");
    }
}

/// Two subscribers whose wakers both panic: the broadcast still reaches
/// both, and the completing caller sees the first panic. (The second
/// panic, raised while the first unwound, used to abort the process.)
#[test]
fn two_panicking_subscriber_wakers_do_not_abort() {
    let g = Group::<u8, u8, ()>::new();
    let leader = lead(g.entry(1));
    let (a, b) = (join(g.entry(1)), join(g.entry(1)));
    let counts = [(); 2].map(|()| std::sync::Arc::new(PanickingWaker::default()));
    let (mut ra, mut rb) = (pin!(a.recv()), pin!(b.recv()));
    let waker_a = Waker::from(counts[0].clone());
    let waker_b = Waker::from(counts[1].clone());
    assert!(ra
        .as_mut()
        .poll(&mut Context::from_waker(&waker_a))
        .is_pending());
    assert!(rb
        .as_mut()
        .poll(&mut Context::from_waker(&waker_b))
        .is_pending());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| leader.complete(Ok(1))));
    assert_eq!(r.unwrap_err().downcast_ref::<&str>(), Some(&"waker panics"));
    for c in &counts {
        let woken = c.0.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(woken, 1, "each subscriber is woken once, the second too");
    }
    let noop = futures::task::noop_waker();
    let mut cx = Context::from_waker(&noop);
    for r in [ra, rb] {
        match r.poll(&mut cx) {
            Poll::Ready(Ok(o)) => assert_eq!(o.result(), Some(&Ok(1))),
            _ => panic!("a subscriber missed the outcome"),
        }
    }
}

/// The leader's work panics, and the stored key's `Drop` panics as the
/// flight is cancelled during that unwind: the key's panic is caught there
/// (it used to abort the process), the work's panic reaches the caller, the
/// subscriber is told, and the key is free for a new flight.
#[test]
fn a_key_whose_drop_panics_while_the_work_unwinds_does_not_abort() {
    let group = Group::<ArmedKey, u8, ()>::new();
    let leader = lead(group.entry(ArmedKey(1, true)));
    let sub = join(group.entry(ArmedKey(1, false)));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _leader = leader;
        panic!("work failed");
    }));
    assert_eq!(r.unwrap_err().downcast_ref::<&str>(), Some(&"work failed"));
    assert!(block_on(sub.recv()).unwrap().is_canceled());
    assert_eq!(group.in_flight(), 0);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(group.run(ArmedKey(1, true), || async { panic!("work failed") }))
    }));
    assert_eq!(r.unwrap_err().downcast_ref::<&str>(), Some(&"work failed"));
    assert!(group.is_empty());
}

/// A subscriber's waker panics while the flight is published, and the
/// stored key's `Drop` panics too: the key is dropped during that unwind,
/// and its panic is caught there (it used to abort the process), whether
/// the leader completes or is dropped. The waker's panic reaches the
/// leader's caller and the subscriber still gets the outcome.
#[test]
fn a_panicking_waker_and_a_panicking_key_drop_do_not_abort() {
    for complete in [true, false] {
        let group = Group::<ArmedKey, u8, ()>::new();
        let leader = lead(group.entry(ArmedKey(1, true)));
        let sub = join(group.entry(ArmedKey(1, false)));
        let waker = Waker::from(std::sync::Arc::new(PanickingWaker::default()));
        let mut recv = pin!(sub.recv());
        assert!(recv
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            if complete {
                drop(leader.complete(Ok(1)));
            } else {
                drop(leader);
            }
        }));
        assert_eq!(r.unwrap_err().downcast_ref::<&str>(), Some(&"waker panics"));
        let noop = futures::task::noop_waker();
        match recv.poll(&mut Context::from_waker(&noop)) {
            Poll::Ready(Ok(o)) if complete => assert_eq!(o.result(), Some(&Ok(1))),
            Poll::Ready(Ok(o)) => assert!(o.is_canceled()),
            _ => panic!("the subscriber missed the outcome"),
        }
        assert_eq!(group.in_flight(), 0);
        assert!(group.is_empty());
    }
}

/// A waker whose `drop` panics (here, every time).
fn waker_that_panics_on_drop() -> core::mem::ManuallyDrop<Waker> {
    use core::task::{RawWaker, RawWakerVTable};
    const VTABLE: RawWakerVTable = RawWakerVTable::new(
        |_| RawWaker::new(core::ptr::null(), &VTABLE),
        |_| {},
        |_| {},
        |_| panic!("waker dropped"),
    );
    // SAFETY: the vtable's functions ignore the (null) data pointer.
    core::mem::ManuallyDrop::new(unsafe {
        Waker::from_raw(RawWaker::new(core::ptr::null(), &VTABLE))
    })
}

/// A waiting subscriber is dropped while its task unwinds, and the waker
/// it left in the queue panics when dropped: that panic is caught (it used
/// to abort the process), the task's own panic goes on, and the flight is
/// intact.
#[test]
fn a_waker_that_panics_on_drop_in_an_unwind_does_not_abort() {
    let group = Group::<u8, u8, ()>::new();
    let leader = lead(group.entry(1));
    let sub = join(group.entry(1));
    let waker = waker_that_panics_on_drop();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut recv = Box::pin(sub.recv());
        assert!(recv
            .as_mut()
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        panic!("task failed");
    }));
    assert_eq!(r.unwrap_err().downcast_ref::<&str>(), Some(&"task failed"));
    drop(leader.complete(Ok(3)));
    assert!(group.is_empty());
}

/// The flight is in the map from the call on, so even work that is ready at
/// its first poll can be joined, here by `f` itself, and its outcome is
/// then shared.
#[test]
fn work_ready_at_its_first_poll_can_be_joined_while_it_is_set_up() {
    let group = Group::<u8, u8, ()>::new();
    let mut joined = None;
    let out = block_on(group.run(1, || {
        joined = Some(join(group.entry(1)));
        async { Ok(7) }
    }));
    assert!(out.is_shared());
    let theirs = block_on(joined.expect("f ran").recv()).unwrap();
    assert!(std::sync::Arc::ptr_eq(&out, &theirs));
    assert!(group.is_empty());
}
