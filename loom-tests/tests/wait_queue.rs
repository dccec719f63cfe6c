//! loom models of the waiter queue every primitive is built on
//! (`src/wait_queue.rs`, reachable here as `lazyflight::__wait_queue` under
//! `--cfg loom` only). Each model is exhaustive under `LOOM_MAX_PREEMPTIONS=2`.
#![cfg(loom)]
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Waker};

use lazyflight::__wait_queue::{Notify, WaitKey, WaitQueue};
use lazyflight::sync::atomic::{AtomicBool, Ordering};
use lazyflight::sync::future::block_on;
use lazyflight::sync::{thread, Arc};
use lazyflight_loom_tests::{counting_waker, live_wakers};

/// Waits until `flag` is set, the way a primitive uses the queue: register
/// with the condition re-checked under the queue lock, then poll until
/// notified; cancel on drop.
struct UntilSet<'a> {
    queue: &'a WaitQueue,
    flag: &'a AtomicBool,
    key: WaitKey,
}

impl Future for UntilSet<'_> {
    type Output = Notify;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Notify> {
        let this = self.get_mut();
        if this.key.is_registered() {
            return this.queue.poll(&mut this.key, cx);
        }
        // Acquire: pairs with the Release store of the flag by the notifier.
        let still_waiting = || !this.flag.load(Ordering::Acquire);
        if this
            .queue
            .register(&mut this.key, cx.waker(), still_waiting)
        {
            Poll::Pending
        } else {
            Poll::Ready(Notify::All)
        }
    }
}

impl Drop for UntilSet<'_> {
    fn drop(&mut self) {
        self.queue.cancel(&mut self.key, || {});
    }
}

/// Registers a new waiter that waits unconditionally.
fn register(queue: &WaitQueue, waker: &Waker) -> WaitKey {
    let mut key = WaitKey::new();
    assert!(queue.register(&mut key, waker, || true));
    key
}

/// Polls a registered key once with `waker`.
fn poll_key(queue: &WaitQueue, key: &mut WaitKey, waker: &Waker) -> Poll<Notify> {
    queue.poll(key, &mut Context::from_waker(waker))
}

/// Counts runs of an `on_unclaimed` / `if_none` callback.
fn counter() -> std::sync::Arc<AtomicUsize> {
    std::sync::Arc::new(AtomicUsize::new(0))
}

// Property: registration re-checks the condition under the queue lock, so a
// waiter racing a "set the flag, then notify_all" never misses the wake-up:
// both waiters finish, and the queue ends empty.
#[test]
fn register_recheck_vs_notify_all_no_lost_wakeup() {
    loom::model(|| {
        let queue = Arc::new(WaitQueue::new());
        let flag = Arc::new(AtomicBool::new(false));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let (q, f) = (queue.clone(), flag.clone());
                thread::spawn(move || {
                    block_on(UntilSet {
                        queue: &q,
                        flag: &f,
                        key: WaitKey::new(),
                    })
                })
            })
            .collect();
        // Release: pairs with the Acquire load in the waiters' re-check.
        flag.store(true, Ordering::Release);
        queue.notify_all();
        for w in waiters {
            assert_eq!(w.join().unwrap(), Notify::All);
        }
        assert_eq!(queue.len(), 0);
    });
}

// Property: `notify_one` singling out a waiter that is cancelled concurrently
// is not lost: the notification passes on to the next waiter in line, which
// is woken and sees `Notify::One`; `on_unclaimed` / `if_none` never run, and
// the cancelled waiter's waker is released without being kept.
#[test]
fn notify_one_to_cancelled_waiter_passes_to_next() {
    loom::model(|| {
        let queue = Arc::new(WaitQueue::new());
        let (w1, p1) = counting_waker();
        let (w2, p2) = counting_waker();
        let mut k1 = register(&queue, &w1);
        let mut k2 = register(&queue, &w2);
        let (unclaimed, none) = (counter(), counter());

        let (q, u) = (queue.clone(), unclaimed.clone());
        let canceller = thread::spawn(move || {
            q.cancel(&mut k1, || {
                u.fetch_add(1, SeqCst);
            })
        });
        let n = none.clone();
        let notified = queue.notify_one(|| {
            n.fetch_add(1, SeqCst);
        });
        canceller.join().unwrap();

        assert!(notified, "a waiter was queued when notify_one ran");
        assert_eq!(p2.wakes(), 1, "the next waiter was woken exactly once");
        assert_eq!(
            poll_key(&queue, &mut k2, Waker::noop()),
            Poll::Ready(Notify::One)
        );
        assert_eq!((unclaimed.load(SeqCst), none.load(SeqCst)), (0, 0));
        assert_eq!(queue.len(), 0);
        drop((w1, w2));
        assert_eq!(
            (live_wakers(&p1), live_wakers(&p2)),
            (0, 0),
            "no waker kept"
        );
    });
}

// Property: when the only waiter is cancelled while `notify_one` singles it
// out, the notification is handed back exactly once: either `if_none` runs
// (the waiter was gone) or `on_unclaimed` runs (it was notified, then left),
// never both, never neither.
#[test]
fn notify_one_to_cancelled_last_waiter_is_handed_back_once() {
    loom::model(|| {
        let queue = Arc::new(WaitQueue::new());
        let (w1, p1) = counting_waker();
        let mut k1 = register(&queue, &w1);
        let (unclaimed, none) = (counter(), counter());

        let (q, u) = (queue.clone(), unclaimed.clone());
        let canceller = thread::spawn(move || {
            q.cancel(&mut k1, || {
                u.fetch_add(1, SeqCst);
            })
        });
        let n = none.clone();
        let notified = queue.notify_one(|| {
            n.fetch_add(1, SeqCst);
        });
        canceller.join().unwrap();

        let (unclaimed, none) = (unclaimed.load(SeqCst), none.load(SeqCst));
        assert_eq!(
            unclaimed + none,
            1,
            "handed back exactly once (on_unclaimed {unclaimed}, if_none {none})"
        );
        assert_eq!(notified, none == 0);
        assert_eq!(queue.len(), 0);
        drop(w1);
        assert_eq!(live_wakers(&p1), 0);
    });
}

// Property: waiters are served in the order they registered (FIFO), whatever
// the interleaving of three concurrent registrations; an empty queue runs
// `if_none` instead.
#[test]
fn notify_one_serves_waiters_in_fifo_order() {
    loom::model(|| {
        let queue = Arc::new(WaitQueue::new());
        // Registration order, recorded by the predicate, which runs under the
        // queue lock right before the node is appended.
        let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let register_as = |id: usize, queue: &WaitQueue, order: &std::sync::Mutex<Vec<usize>>| {
            let mut key = WaitKey::new();
            assert!(queue.register(&mut key, Waker::noop(), || {
                order.lock().unwrap().push(id);
                true
            }));
            (id, key)
        };
        let others: Vec<_> = (1..3)
            .map(|id| {
                let (q, o) = (queue.clone(), order.clone());
                thread::spawn(move || register_as(id, &q, &o))
            })
            .collect();
        let mut keys = vec![register_as(0, &queue, &order)];
        keys.extend(others.into_iter().map(|t| t.join().unwrap()));
        assert_eq!(queue.len(), 3);

        let order = order.lock().unwrap().clone();
        for &next in &order {
            assert!(queue.notify_one(|| panic!("three waiters are queued")));
            for (id, key) in &mut keys {
                let polled = poll_key(&queue, key, Waker::noop());
                if *id == next {
                    assert_eq!(
                        polled,
                        Poll::Ready(Notify::One),
                        "waiter {id} is next in {order:?}"
                    );
                } else {
                    assert_eq!(
                        polled,
                        Poll::Pending,
                        "waiter {id} is not next in {order:?}"
                    );
                }
            }
            keys.retain(|(id, _)| *id != next);
        }
        let none = counter();
        let n = none.clone();
        assert!(!queue.notify_one(move || {
            n.fetch_add(1, SeqCst);
        }));
        assert_eq!(none.load(SeqCst), 1);
    });
}

// Property: cancelling waiting nodes (a middle one and the tail, concurrently
// with a `notify_one` of the head) unlinks just those nodes: the head still
// gets the notification, the cancelled waiters are never woken and keep no
// waker, and the list stays well formed (a later waiter becomes the new head
// and is served next). Removal is by slab index, without walking the list.
#[test]
fn cancel_of_waiting_nodes_unlinks_only_them() {
    loom::model(|| {
        let queue = Arc::new(WaitQueue::new());
        let (w2, p2) = counting_waker();
        let (w3, p3) = counting_waker();
        let mut k1 = register(&queue, Waker::noop());
        let mut k2 = register(&queue, &w2);
        let mut k3 = register(&queue, &w3);

        let q = queue.clone();
        let middle = thread::spawn(move || q.cancel(&mut k2, || panic!("k2 was never notified")));
        queue.cancel(&mut k3, || panic!("k3 was never notified"));
        assert!(queue.notify_one(|| panic!("k1 is queued")));
        middle.join().unwrap();

        assert_eq!(
            poll_key(&queue, &mut k1, Waker::noop()),
            Poll::Ready(Notify::One)
        );
        assert_eq!(queue.len(), 0);
        assert_eq!(
            (p2.wakes(), p3.wakes()),
            (0, 0),
            "cancelled waiters are not woken"
        );
        drop((w2, w3));
        assert_eq!(
            (live_wakers(&p2), live_wakers(&p3)),
            (0, 0),
            "cancel released their wakers"
        );

        let mut k4 = register(&queue, Waker::noop());
        assert!(queue.notify_one(|| panic!("k4 is queued")));
        assert_eq!(
            poll_key(&queue, &mut k4, Waker::noop()),
            Poll::Ready(Notify::One)
        );
    });
}

// Property: a waiter re-polled with a new waker while `notify_all` runs is
// never lost: either that poll sees the notification, or the new waker is
// the one woken; the replaced waker is released and nothing keeps a clone.
#[test]
fn waker_replacement_racing_notify_all_no_lost_wakeup() {
    loom::model(|| {
        let queue = Arc::new(WaitQueue::new());
        let (old, p_old) = counting_waker();
        let (new, p_new) = counting_waker();
        let mut key = register(&queue, &old);

        let q = queue.clone();
        let notifier = thread::spawn(move || q.notify_all());
        let polled = poll_key(&queue, &mut key, &new);
        notifier.join().unwrap();

        match polled {
            Poll::Ready(n) => assert_eq!(n, Notify::All),
            Poll::Pending => {
                assert_eq!(p_new.wakes(), 1, "the fresh waker was woken");
                assert_eq!(p_old.wakes(), 0, "the replaced waker was not");
                assert_eq!(poll_key(&queue, &mut key, &new), Poll::Ready(Notify::All));
            }
        }
        assert!(!key.is_registered());
        assert_eq!(p_old.wakes() + p_new.wakes(), 1, "exactly one wake-up");
        drop((old, new));
        assert_eq!((live_wakers(&p_old), live_wakers(&p_new)), (0, 0));
    });
}
