#![cfg(loom)]
//! loom models of `Group`: single-flight calls per key. Run with
//! `RUSTFLAGS="--cfg loom" cargo test --release -p lazyflight-loom-tests --test group`.

use core::pin::Pin;
use core::task::Poll;

use lazyflight::sync::future::block_on;
use lazyflight::sync::{thread, Arc};
use lazyflight::{Entry, Group, Outcome};
use lazyflight_loom_tests::{counting_waker, live_wakers, poll_once};

type G = Group<u8, u8, ()>;

// Property: a caller racing the leader's completion either joins the flight
// (and then gets its very outcome, marked shared) or arrives after it and
// leads a new one; it never hangs, `shared` is exactly "someone joined", and
// nothing is left in the map.
#[test]
fn group_join_racing_completion() {
    loom::model(|| {
        let group = Arc::new(G::new());
        let Entry::Leader(leader) = group.entry(1) else {
            panic!("first caller leads")
        };
        let t = thread::spawn(move || leader.complete(Ok(1)));
        let joined = match group.entry(1) {
            Entry::Subscriber(sub) => {
                let theirs = block_on(sub.recv()).unwrap();
                Some(theirs)
            }
            Entry::Leader(second) => {
                assert_eq!(
                    *second.complete(Ok(2)),
                    Outcome::Complete {
                        result: Ok(2),
                        shared: false
                    }
                );
                None
            }
        };
        let first = t.join().unwrap();
        match joined {
            Some(theirs) => {
                assert!(Arc::ptr_eq(&first, &theirs));
                assert_eq!(
                    *first,
                    Outcome::Complete {
                        result: Ok(1),
                        shared: true
                    }
                );
            }
            None => assert_eq!(
                *first,
                Outcome::Complete {
                    result: Ok(1),
                    shared: false
                }
            ),
        }
        assert!(group.is_empty());
        assert_eq!(group.in_flight(), 0);
    });
}

// Property: a leader dropped with subscribers waiting (one already parked,
// one not yet polled) gives every subscriber `Canceled` (the same Arc), and
// the next caller leads a new flight.
#[test]
fn group_leader_dropped_with_subscribers() {
    loom::model(|| {
        let group = Arc::new(G::new());
        let Entry::Leader(leader) = group.entry(1) else {
            panic!("first caller leads")
        };
        let Entry::Subscriber(a) = group.entry(1) else {
            panic!("joins")
        };
        let Entry::Subscriber(b) = group.entry(1) else {
            panic!("joins")
        };
        let t = thread::spawn(move || block_on(a.recv()).unwrap());
        drop(leader);
        let ob = block_on(b.recv()).unwrap();
        let oa = t.join().unwrap();
        assert!(oa.is_canceled() && Arc::ptr_eq(&oa, &ob));
        assert!(group.is_empty());
        assert!(matches!(group.entry(1), Entry::Leader(_)));
    });
}

// Property: `forget` racing the old flight's completion never lets the old
// flight remove the new one: after both, a third caller joins the new flight.
#[test]
fn group_forget_racing_completion() {
    loom::model(|| {
        let group = Arc::new(G::new());
        let Entry::Leader(old) = group.entry(1) else {
            panic!("first caller leads")
        };
        let t = thread::spawn(move || old.complete(Ok(1)));
        group.forget(&1);
        // Forgotten or finished: either way this caller leads.
        let Entry::Leader(new) = group.entry(1) else {
            panic!("a forgotten key starts afresh")
        };
        let first = t.join().unwrap();
        assert_eq!(
            *first,
            Outcome::Complete {
                result: Ok(1),
                shared: false
            }
        );
        let Entry::Subscriber(third) = group.entry(1) else {
            panic!("the old flight finishing removed the new one")
        };
        let out = new.complete(Ok(2));
        assert!(Arc::ptr_eq(&out, &block_on(third.recv()).unwrap()));
        assert!(group.is_empty());
        assert_eq!(group.in_flight(), 0);
    });
}

// Property: a subscriber dropped (after registering its waker) while the
// leader completes disturbs nobody and leaves nothing behind: its drop takes
// it out of the flight's queue at once, so the queue keeps no clone of its
// waker past the drop unless the completion had already taken it out to wake
// it; the other subscriber, parked in the queue, is woken exactly once and
// gets the outcome; the live count returns to zero, and nothing is left in
// the map.
#[test]
fn group_subscriber_dropped_while_leader_completes() {
    loom::model(|| {
        let group = Arc::new(G::new());
        let Entry::Leader(leader) = group.entry(1) else {
            panic!("first caller leads")
        };
        let Entry::Subscriber(gone) = group.entry(1) else {
            panic!("joins")
        };
        let Entry::Subscriber(stays) = group.entry(1) else {
            panic!("joins")
        };
        let (w_stays, p_stays) = counting_waker();
        let mut stays = stays.recv();
        assert!(poll_once(Pin::new(&mut stays), &w_stays).is_pending());
        let g = group.clone();
        let t = thread::spawn(move || {
            let (waker, probe) = counting_waker();
            let mut recv = gone.recv();
            let _ = poll_once(Pin::new(&mut recv), &waker);
            // Dropped here, registered or already notified.
            drop(recv);
            drop(waker);
            // A clone still alive is held by the completion, which took it
            // out of the queue to wake it: the flight has left the map by
            // then. One the queue kept would outlive the drop for as long as
            // the flight runs.
            let kept = live_wakers(&probe);
            assert!(
                kept == 0 || g.is_empty(),
                "the queue kept the dropped subscriber's waker"
            );
            probe
        });
        let out = leader.complete(Ok(3));
        assert_eq!(p_stays.wakes(), 1, "the parked subscriber was woken once");
        let theirs = match poll_once(Pin::new(&mut stays), &w_stays) {
            Poll::Ready(theirs) => theirs.unwrap(),
            Poll::Pending => panic!("woken, and still pending"),
        };
        let probe = t.join().unwrap();
        assert!(probe.wakes() <= 1);
        assert_eq!(live_wakers(&probe), 0);
        assert!(Arc::ptr_eq(&out, &theirs));
        assert!(out.is_shared());
        drop((stays, w_stays));
        assert_eq!(live_wakers(&p_stays), 0);
        assert_eq!(group.subscribers(&1), 0);
        assert!(group.is_empty());
    });
}

// Property: `shared` is exact when a joiner races a leader that completes at
// once: the flag the leader publishes is true if and only if an `entry` call
// returned a subscriber of that flight, and a subscriber always sees `true`.
#[test]
fn group_shared_exact() {
    loom::model(|| {
        let group = Arc::new(G::new());
        let g2 = group.clone();
        let t = thread::spawn(move || match g2.entry(1) {
            Entry::Leader(l) => (true, l.complete(Ok(7))),
            Entry::Subscriber(s) => (false, block_on(s.recv()).unwrap()),
        });
        let mine = match group.entry(1) {
            Entry::Leader(l) => (true, l.complete(Ok(7))),
            Entry::Subscriber(s) => (false, block_on(s.recv()).unwrap()),
        };
        let theirs = t.join().unwrap();
        match (mine, theirs) {
            ((true, a), (true, b)) => {
                // Two flights one after the other: nobody joined either.
                assert!(!a.is_shared() && !b.is_shared());
            }
            ((true, a), (false, b)) | ((false, b), (true, a)) => {
                assert!(Arc::ptr_eq(&a, &b));
                assert!(
                    a.is_shared(),
                    "a subscriber joined, so the flight is shared"
                );
            }
            ((false, _), (false, _)) => panic!("somebody leads"),
        }
        assert!(group.is_empty());
    });
}

/// One caller of key 1 for `group_first_joins_racing_completion`: whether it
/// led, and the outcome it got.
fn lead_or_join(group: &G) -> (bool, Arc<Outcome<u8, ()>>) {
    match group.entry(1) {
        Entry::Leader(l) => (true, l.complete(Ok(2))),
        Entry::Subscriber(s) => (false, block_on(s.recv()).unwrap()),
    }
}

// Property: two callers arrive while the leader completes. The first of them
// to join allocates the flight's shared state, under the shard lock, racing
// the leader taking the flight out of the map: every caller that joined the
// first flight gets its very outcome, marked shared (and both share one flight
// if both joined); `shared` is false exactly when nobody joined; a caller that
// came too late leads or joins a later flight; nobody hangs and nothing is
// left in the map.
#[test]
fn group_first_joins_racing_completion() {
    // Executions by how many callers joined the first flight (0, 1 or 2):
    // all three must be explored (see loom-tests/README.md, DPOR blind spot).
    static SEEN: [std::sync::atomic::AtomicUsize; 3] =
        [const { std::sync::atomic::AtomicUsize::new(0) }; 3];
    loom::model(|| {
        let group = Arc::new(G::new());
        let Entry::Leader(leader) = group.entry(1) else {
            panic!("first caller leads")
        };
        let t = thread::spawn(move || leader.complete(Ok(1)));
        let g2 = group.clone();
        let other = thread::spawn(move || lead_or_join(&g2));
        let mine = lead_or_join(&group);
        let theirs = other.join().unwrap();
        let first = t.join().unwrap();
        let mut joined_first = 0;
        for (led, out) in [&mine, &theirs] {
            if !led && out.result() == Some(&Ok(1)) {
                joined_first += 1;
                assert!(Arc::ptr_eq(out, &first), "a joiner got another outcome");
            }
        }
        assert_eq!(first.is_shared(), joined_first > 0);
        SEEN[joined_first].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // The later flight(s): a leader's outcome is shared exactly when the
        // other caller joined it, and then both hold the same Arc.
        match (&mine, &theirs) {
            ((true, a), (false, b)) | ((false, b), (true, a)) if b.result() == Some(&Ok(2)) => {
                assert!(Arc::ptr_eq(a, b) && a.is_shared());
            }
            _ => {
                for (led, out) in [&mine, &theirs] {
                    if *led {
                        assert!(!out.is_shared(), "nobody joined this flight");
                    }
                }
            }
        }
        assert!(group.is_empty());
        assert_eq!(group.in_flight(), 0);
    });
    for (joined, seen) in SEEN.iter().enumerate() {
        let seen = seen.load(std::sync::atomic::Ordering::Relaxed);
        assert!(seen > 0, "no execution where {joined} callers joined");
    }
}

// Property: a subscriber polled again while the leader completes (after DONE
// is stored, perhaps before `notify_all` reaches its node) returns the
// outcome without waiting; the node it leaves in the flight's queue is woken
// at most once, and once the flight is gone no clone of its waker is kept.
#[test]
fn group_subscriber_repolled_during_completion() {
    // Executions whose second poll was ready / pending: both must be explored.
    static SEEN: [std::sync::atomic::AtomicUsize; 2] =
        [const { std::sync::atomic::AtomicUsize::new(0) }; 2];
    loom::model(|| {
        let group = Arc::new(G::new());
        let Entry::Leader(leader) = group.entry(1) else {
            panic!("first caller leads")
        };
        let Entry::Subscriber(sub) = group.entry(1) else {
            panic!("joins")
        };
        let (waker, probe) = counting_waker();
        let mut recv = sub.recv();
        assert!(poll_once(Pin::new(&mut recv), &waker).is_pending());
        // The re-poll is the spawned thread (see the DPOR note in
        // loom-tests/README.md): loom then lets it see DONE early.
        let w = waker.clone();
        let t = thread::spawn(move || {
            let early = poll_once(Pin::new(&mut recv), &w);
            (early, recv, w)
        });
        let first = leader.complete(Ok(5));
        let (early, mut recv, w) = t.join().unwrap();
        drop(w);
        SEEN[usize::from(early.is_pending())].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out = match early {
            Poll::Ready(out) => out.unwrap(),
            Poll::Pending => {
                assert_eq!(probe.wakes(), 1, "a pending subscriber is woken");
                match poll_once(Pin::new(&mut recv), &waker) {
                    Poll::Ready(out) => out.unwrap(),
                    Poll::Pending => panic!("woken, and still pending"),
                }
            }
        };
        drop(recv);
        assert!(Arc::ptr_eq(&out, &first) && first.is_shared());
        assert!(probe.wakes() <= 1);
        drop(waker);
        assert_eq!(live_wakers(&probe), 0, "a waker clone outlived the flight");
        assert!(group.is_empty());
    });
    for (pending, seen) in SEEN.iter().enumerate() {
        let seen = seen.load(std::sync::atomic::Ordering::Relaxed);
        assert!(
            seen > 0,
            "no execution where the second poll was pending: {pending}"
        );
    }
}
