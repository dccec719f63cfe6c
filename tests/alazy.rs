//! Public-API tests for `ALazy` on real threads and real runtimes.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use lazyflight::sync::future::block_on;
use lazyflight::{ALazy, State};

/// Loops shrink under Miri, which is ~100x slower.
const SCALE: usize = if cfg!(miri) { 1 } else { 16 };

/// A waker that counts how often it was woken.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn counting_waker() -> (Arc<CountingWaker>, Waker) {
    let c = Arc::new(CountingWaker::default());
    (c.clone(), Waker::from(c))
}

fn poll_once<F: Future + Unpin>(fut: &mut F, waker: &Waker) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

/// A future that stays pending until `release` is stored, then yields `value`.
struct Gate {
    open: Arc<Mutex<Option<Result<u32, &'static str>>>>,
}

impl Future for Gate {
    type Output = Result<u32, &'static str>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.open.lock().unwrap().take() {
            Some(r) => Poll::Ready(r),
            None => {
                // Busy-wake: keeps the test simple; wakes are cheap here.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
}

#[test]
fn new_cell_is_empty_and_get_is_none() {
    let cell = ALazy::<u32, ()>::new();
    assert_eq!(cell.state(), State::Empty);
    assert_eq!(cell.get(), None);
    assert_eq!(cell.get_result(), None);
    assert_eq!(cell.waiting(), 0);
    let default: ALazy<u32, ()> = ALazy::default();
    assert_eq!(default.state(), State::Empty);
}

#[test]
fn ok_fills_and_later_callers_never_run_init() {
    let cell = ALazy::<String, ()>::new();
    let v = block_on(cell.get_or_init(|| async { Ok("one".to_owned()) }));
    assert_eq!(v.map(String::as_str), Ok("one"));
    let runs = AtomicUsize::new(0);
    let v = block_on(cell.get_or_init(|| async {
        runs.fetch_add(1, SeqCst);
        Ok("two".to_owned())
    }));
    assert_eq!(v.map(String::as_str), Ok("one"));
    assert_eq!(runs.load(SeqCst), 0);
    assert_eq!(cell.state(), State::Filled);
    assert_eq!(cell.get().map(String::as_str), Some("one"));
}

#[test]
fn err_is_cached_and_never_retried() {
    let cell = ALazy::<u32, String>::new();
    let e = block_on(cell.get_or_init(|| async { Err("backend down".to_owned()) }));
    assert_eq!(e, Err(&"backend down".to_owned()));
    let runs = AtomicUsize::new(0);
    let e = block_on(cell.get_or_init(|| async {
        runs.fetch_add(1, SeqCst);
        Ok(1)
    }));
    assert_eq!(e.unwrap_err(), "backend down");
    assert_eq!(runs.load(SeqCst), 0);
    assert_eq!(cell.state(), State::Failed);
    assert_eq!(cell.get(), None);
    assert_eq!(
        cell.get_result().map(|r| r.map_err(String::as_str)),
        Some(Err("backend down"))
    );
}

#[test]
fn stampede_of_threads_runs_one_init() {
    let cell = Arc::new(ALazy::<usize, ()>::new());
    let runs = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..SCALE.max(4))
        .map(|i| {
            let (cell, runs) = (cell.clone(), runs.clone());
            std::thread::spawn(move || {
                *block_on(cell.get_or_init(|| async move {
                    runs.fetch_add(1, SeqCst);
                    std::thread::yield_now();
                    Ok(i)
                }))
                .unwrap()
            })
        })
        .collect();
    let seen: Vec<usize> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(runs.load(SeqCst), 1);
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    assert_eq!(cell.get(), Some(&seen[0]));
}

#[test]
fn cancelled_leader_hands_off_to_the_longest_waiter_fifo() {
    let cell = ALazy::<u32, &'static str>::new();
    let (_, w) = counting_waker();
    let gate = Arc::new(Mutex::new(None));

    let g = gate.clone();
    let mut leader = Box::pin(cell.get_or_init(move || Gate { open: g }));
    assert!(poll_once(&mut leader, &w).is_pending());
    assert_eq!(cell.state(), State::Initializing);

    let (c1, w1) = counting_waker();
    let (c2, w2) = counting_waker();
    let mut first = Box::pin(cell.get_or_init(|| async { Ok(1) }));
    let mut second = Box::pin(cell.get_or_init(|| async { Ok(2) }));
    assert!(poll_once(&mut first, &w1).is_pending());
    assert!(poll_once(&mut second, &w2).is_pending());
    assert_eq!(cell.waiting(), 2);

    drop(leader);
    // Only the longest waiter is woken, and the cell stays Initializing:
    // nobody can barge in between.
    assert_eq!(c1.0.load(SeqCst), 1);
    assert_eq!(c2.0.load(SeqCst), 0);
    assert_eq!(cell.state(), State::Initializing);
    assert_eq!(poll_once(&mut first, &w1), Poll::Ready(Ok(&1)));
    assert_eq!(c2.0.load(SeqCst), 1);
    assert_eq!(poll_once(&mut second, &w2), Poll::Ready(Ok(&1)));
    assert_eq!(cell.waiting(), 0);
}

#[test]
fn dropped_waiter_that_was_handed_the_baton_passes_it_on() {
    let cell = ALazy::<u32, ()>::new();
    let (_, w) = counting_waker();
    let mut leader = Box::pin(cell.get_or_init(std::future::pending));
    assert!(poll_once(&mut leader, &w).is_pending());
    let (c1, w1) = counting_waker();
    let (c2, w2) = counting_waker();
    let mut first = Box::pin(cell.get_or_init(|| async { Ok(1) }));
    let mut second = Box::pin(cell.get_or_init(|| async { Ok(2) }));
    assert!(poll_once(&mut first, &w1).is_pending());
    assert!(poll_once(&mut second, &w2).is_pending());

    drop(leader); // baton to `first`
    assert_eq!(c1.0.load(SeqCst), 1);
    drop(first); // ... which goes away without using it: baton to `second`
    assert_eq!(c2.0.load(SeqCst), 1);
    assert_eq!(poll_once(&mut second, &w2), Poll::Ready(Ok(&2)));
}

#[test]
fn dropped_last_waiter_with_the_baton_leaves_the_cell_empty() {
    let cell = ALazy::<u32, ()>::new();
    let (_, w) = counting_waker();
    let mut leader = Box::pin(cell.get_or_init(std::future::pending));
    assert!(poll_once(&mut leader, &w).is_pending());
    let mut only = Box::pin(cell.get_or_init(|| async { Ok(1) }));
    assert!(poll_once(&mut only, &w).is_pending());
    drop(leader);
    drop(only);
    assert_eq!(cell.state(), State::Empty);
    assert_eq!(cell.waiting(), 0);
    assert_eq!(block_on(cell.get_or_init(|| async { Ok(3) })), Ok(&3));
}

#[test]
fn panicking_initializer_hands_off_and_is_retryable() {
    let cell = Arc::new(ALazy::<u32, ()>::new());
    let c = cell.clone();
    let r = std::thread::spawn(move || {
        let r: Result<u32, ()> = block_on(c.get_or_init(|| async {
            panic!("init exploded");
        }))
        .copied()
        .map_err(|_| ());
        r
    })
    .join();
    assert!(r.is_err(), "the panic reaches the caller");
    assert_eq!(cell.state(), State::Empty);
    assert_eq!(block_on(cell.get_or_init(|| async { Ok(5) })), Ok(&5));
}

#[test]
fn panic_with_a_waiter_hands_the_baton_to_it() {
    let cell = ALazy::<u32, ()>::new();
    let (_, w) = counting_waker();
    let armed = Arc::new(Mutex::new(false));
    let a = armed.clone();
    let mut leader = Box::pin(cell.get_or_init(move || {
        std::future::poll_fn(move |_| {
            if *a.lock().unwrap() {
                panic!("boom");
            }
            Poll::Pending
        })
    }));
    assert!(poll_once(&mut leader, &w).is_pending());
    let (c1, w1) = counting_waker();
    let mut waiter = Box::pin(cell.get_or_init(|| async { Ok(9) }));
    assert!(poll_once(&mut waiter, &w1).is_pending());
    *armed.lock().unwrap() = true;
    let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(&mut leader, &w)));
    assert!(p.is_err());
    assert_eq!(
        c1.0.load(SeqCst),
        1,
        "the waiter is woken by the unwinding leader"
    );
    drop(leader);
    assert_eq!(poll_once(&mut waiter, &w1), Poll::Ready(Ok(&9)));
}

#[test]
fn take_and_into_inner() {
    let mut cell = ALazy::<Vec<u8>, u8>::new();
    assert_eq!(cell.take(), None);
    block_on(cell.get_or_init(|| async { Ok(vec![1, 2]) })).unwrap();
    assert_eq!(cell.take(), Some(Ok(vec![1, 2])));
    assert_eq!(cell.state(), State::Empty);
    block_on(cell.get_or_init(|| async { Err(7) })).unwrap_err();
    assert_eq!(cell.take(), Some(Err(7)));
    block_on(cell.get_or_init(|| async { Ok(vec![3]) })).unwrap();
    assert_eq!(cell.into_inner(), Some(Ok(vec![3])));
    assert_eq!(ALazy::<u8, u8>::new().into_inner(), None);
}

#[test]
fn value_and_error_are_dropped_exactly_once() {
    struct Counted(Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    {
        let cell = ALazy::<Counted, ()>::new();
        let d = drops.clone();
        let _ = block_on(cell.get_or_init(|| async move { Ok(Counted(d)) }));
    }
    assert_eq!(drops.load(SeqCst), 1);
    {
        let cell = ALazy::<(), Counted>::new();
        let d = drops.clone();
        let _ = block_on(cell.get_or_init(|| async move { Err(Counted(d)) }));
    }
    assert_eq!(drops.load(SeqCst), 2);
    {
        let mut cell = ALazy::<Counted, ()>::new();
        let d = drops.clone();
        let _ = block_on(cell.get_or_init(|| async move { Ok(Counted(d)) }));
        let taken = cell.take();
        assert_eq!(drops.load(SeqCst), 2);
        drop(taken);
        assert_eq!(drops.load(SeqCst), 3);
    }
    assert_eq!(drops.load(SeqCst), 3);
}

#[test]
fn static_cell_in_a_const_context() {
    static CELL: ALazy<&'static str, ()> = ALazy::new();
    assert_eq!(
        block_on(CELL.get_or_init(|| async { Ok("static") })),
        Ok(&"static")
    );
    assert_eq!(CELL.get(), Some(&"static"));
}

#[test]
fn debug_shows_state_and_value() {
    let cell = ALazy::<u32, ()>::new();
    assert_eq!(format!("{cell:?}"), "ALazy { state: Empty, waiting: 0 }");
    block_on(cell.get_or_init(|| async { Ok(3) })).unwrap();
    assert_eq!(format!("{cell:?}"), "ALazy { state: Filled, value: 3 }");
    let failed = ALazy::<u32, &str>::new();
    let _ = block_on(failed.get_or_init(|| async { Err("no") }));
    assert_eq!(
        format!("{failed:?}"),
        "ALazy { state: Failed, error: \"no\" }"
    );
}

#[test]
fn owned_initializer_survives_a_parked_leader() {
    let cell = ALazy::<u32, &'static str>::new();
    let gate = Arc::new(Mutex::new(None));
    let (_, w) = counting_waker();
    let g = gate.clone();
    let mut leader = Box::pin(cell.get_or_init_owned(move || Gate { open: g }));
    assert!(poll_once(&mut leader, &w).is_pending());
    // The leader is parked from here on: never polled, never dropped.
    *gate.lock().unwrap() = Some(Ok(11));
    assert_eq!(block_on(cell.get_or_init(|| async { Ok(0) })), Ok(&11));
    assert_eq!(cell.get(), Some(&11));
    // The parked leader sees the same result when it is finally polled.
    assert_eq!(poll_once(&mut leader, &w), Poll::Ready(Ok(&11)));
}

#[test]
fn owned_initializer_keeps_progress_when_every_caller_leaves() {
    let cell = ALazy::<u32, &'static str>::new();
    let gate = Arc::new(Mutex::new(None));
    let (_, w) = counting_waker();
    let g = gate.clone();
    let started = Arc::new(AtomicUsize::new(0));
    let s = started.clone();
    let mut leader = Box::pin(cell.get_or_init_owned(move || {
        s.fetch_add(1, SeqCst);
        Gate { open: g }
    }));
    assert!(poll_once(&mut leader, &w).is_pending());
    drop(leader);
    assert_eq!(cell.state(), State::Initializing);
    *gate.lock().unwrap() = Some(Err("late error"));
    let runs = AtomicUsize::new(0);
    let r = block_on(cell.get_or_init(|| async {
        runs.fetch_add(1, SeqCst);
        Ok(1)
    }));
    assert_eq!(r, Err(&"late error"));
    assert_eq!(
        runs.load(SeqCst),
        0,
        "the stored initializer was resumed, not replaced"
    );
    assert_eq!(started.load(SeqCst), 1);
}

#[test]
fn owned_initializer_panic_resets_and_the_installer_panics_too() {
    let cell = ALazy::<u32, ()>::new();
    let armed = Arc::new(Mutex::new(false));
    let (_, w) = counting_waker();
    let a = armed.clone();
    let mut installer = Box::pin(cell.get_or_init_owned(move || {
        std::future::poll_fn(move |cx| {
            if *a.lock().unwrap() {
                panic!("owned init exploded");
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }));
    assert!(poll_once(&mut installer, &w).is_pending());
    *armed.lock().unwrap() = true;
    // Another caller drives the stored initializer and meets the panic.
    let mut helper = Box::pin(cell.get_or_init(|| async { Ok(2) }));
    let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(&mut helper, &w)));
    assert!(p.is_err());
    assert_eq!(cell.state(), State::Empty);
    // The caller whose initializer panicked learns of it.
    let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_once(&mut installer, &w)
    }));
    assert!(p.is_err());
    // The cell is usable again.
    assert_eq!(block_on(cell.get_or_init(|| async { Ok(4) })), Ok(&4));
}

#[test]
fn cancelled_plain_leader_never_hands_the_baton_to_a_parked_owned_caller() {
    let cell = ALazy::<u32, ()>::new();
    let (_, w) = counting_waker();
    let mut plain_leader = Box::pin(cell.get_or_init(std::future::pending));
    assert!(poll_once(&mut plain_leader, &w).is_pending());
    // An owned-mode caller queues, then is parked: never polled again.
    let (parked_wakes, pw) = counting_waker();
    let mut parked = Box::pin(cell.get_or_init_owned(|| async { Ok(1) }));
    assert!(poll_once(&mut parked, &pw).is_pending());
    let (c, w2) = counting_waker();
    let mut plain_waiter = Box::pin(cell.get_or_init(|| async { Ok(2) }));
    assert!(poll_once(&mut plain_waiter, &w2).is_pending());

    drop(plain_leader);
    // The baton skips the parked owned caller and goes to the plain waiter.
    assert_eq!(c.0.load(SeqCst), 1);
    assert_eq!(parked_wakes.0.load(SeqCst), 0);
    assert_eq!(poll_once(&mut plain_waiter, &w2), Poll::Ready(Ok(&2)));
    assert_eq!(parked_wakes.0.load(SeqCst), 1, "woken by the completion");
    drop(parked);
}

#[test]
fn cancelled_plain_leader_with_only_owned_waiters_resets_and_wakes_them() {
    let cell = ALazy::<u32, ()>::new();
    let (_, w) = counting_waker();
    let mut plain_leader = Box::pin(cell.get_or_init(std::future::pending));
    assert!(poll_once(&mut plain_leader, &w).is_pending());
    let (parked_wakes, pw) = counting_waker();
    let mut parked = Box::pin(cell.get_or_init_owned(|| async { Ok(1) }));
    assert!(poll_once(&mut parked, &pw).is_pending());

    drop(plain_leader);
    assert_eq!(
        cell.state(),
        State::Empty,
        "nobody may take the baton: reset"
    );
    assert_eq!(parked_wakes.0.load(SeqCst), 1);
    // A late owned caller is not stalled by the parked one.
    assert_eq!(block_on(cell.get_or_init_owned(|| async { Ok(3) })), Ok(&3));
    drop(parked);
}

#[test]
fn dropping_a_cell_with_a_pending_owned_initializer_drops_it() {
    struct Tracked(Arc<AtomicUsize>);
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.0.fetch_add(1, SeqCst);
        }
    }
    let drops = Arc::new(AtomicUsize::new(0));
    let (_, w) = counting_waker();
    {
        let cell = ALazy::<u32, ()>::new();
        let t = Tracked(drops.clone());
        let mut leader = Box::pin(cell.get_or_init_owned(move || async move {
            let _t = t;
            std::future::pending::<()>().await;
            Ok(1)
        }));
        assert!(poll_once(&mut leader, &w).is_pending());
        drop(leader);
        assert_eq!(drops.load(SeqCst), 0);
    }
    assert_eq!(drops.load(SeqCst), 1);
}

#[cfg(not(miri))]
mod on_tokio {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn thousand_tasks_one_init() {
        let cell = Arc::new(ALazy::<u64, ()>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (cell, runs) = (cell.clone(), runs.clone());
                tokio::spawn(async move {
                    *cell
                        .get_or_init(|| async {
                            runs.fetch_add(1, SeqCst);
                            tokio::time::sleep(Duration::from_millis(5)).await;
                            Ok(42)
                        })
                        .await
                        .unwrap()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 42);
        }
        assert_eq!(runs.load(SeqCst), 1);
        assert_eq!(cell.waiting(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn timed_out_leaders_hand_off_until_one_finishes() {
        let cell = Arc::new(ALazy::<u32, ()>::new());
        let attempts = Arc::new(AtomicUsize::new(0));
        let spawn = |i: u32| {
            let (cell, attempts) = (cell.clone(), attempts.clone());
            tokio::spawn(async move {
                // The first three callers give up after 10 ms; the init takes 50 ms.
                let limit = if i < 3 { 10 } else { 10_000 };
                tokio::time::timeout(
                    Duration::from_millis(limit),
                    cell.get_or_init(|| async {
                        attempts.fetch_add(1, SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(i)
                    }),
                )
                .await
                .ok()
                .map(|r| *r.unwrap())
            })
        };
        // Caller 0 leads: it gives up, so at least one hand-off happens.
        let mut tasks = vec![spawn(0)];
        while attempts.load(SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        tasks.extend((1..8).map(spawn));
        let mut values = Vec::new();
        for t in tasks {
            values.extend(t.await.unwrap());
        }
        assert!(values.len() >= 5, "{values:?}");
        assert!(values.windows(2).all(|w| w[0] == w[1]));
        // Every attempt but the last was cancelled by its caller's timeout:
        // the first leader's, and maybe those of callers 1 and 2.
        let attempts = attempts.load(SeqCst);
        assert!((2..=4).contains(&attempts), "{attempts} attempts");
        assert_eq!(cell.state(), State::Filled);
        assert_eq!(cell.waiting(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failing_init_is_cached_for_all_concurrent_callers() {
        let cell = Arc::new(ALazy::<u32, String>::new());
        let runs = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (cell, runs) = (cell.clone(), runs.clone());
                tokio::spawn(async move {
                    cell.get_or_init(|| async {
                        runs.fetch_add(1, SeqCst);
                        tokio::task::yield_now().await;
                        Err("refused".to_owned())
                    })
                    .await
                    .unwrap_err()
                    .clone()
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), "refused");
        }
        assert_eq!(
            runs.load(SeqCst),
            1,
            "tokio's OnceCell would retry 64 times"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn parked_leader_with_owned_init_does_not_stall_others() {
        let cell = Arc::new(ALazy::<u32, ()>::new());
        let c = cell.clone();
        // The leader is polled once inside a select and then parked forever.
        let parked = tokio::spawn(async move {
            let mut fut = Box::pin(c.get_or_init_owned(|| async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(7)
            }));
            let _ = futures::poll!(fut.as_mut());
            std::future::pending::<()>().await;
            drop(fut);
        });
        tokio::task::yield_now().await;
        let v = tokio::time::timeout(Duration::from_secs(5), cell.get_or_init(|| async { Ok(0) }))
            .await
            .expect("a parked leader must not stall waiters");
        assert_eq!(v, Ok(&7));
        parked.abort();
    }
}

/// Counts its drops; moved into an initializer closure to see when the
/// closure (and so the future of `get_or_init` holding it) drops it.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, SeqCst);
    }
}

/// `get_or_init`'s future drops `f` exactly once whatever path it takes: never
/// polled; answered by the fast path (filled or failed cell); run as the
/// leader's initializer; or parked as a waiter whose slow path was built.
/// And a waiter polled after the value is published is ready at once,
/// without running `f`.
#[test]
fn get_or_init_drops_f_once_on_every_path_and_a_late_waiter_leaves_the_queue() {
    let drops = Arc::new(AtomicUsize::new(0));
    let f = |v: u32| {
        let guard = DropCount(drops.clone());
        move || async move {
            drop(guard);
            Ok::<u32, &'static str>(v)
        }
    };
    let (_, w) = counting_waker();

    // Never polled.
    let cell = ALazy::<u32, &'static str>::new();
    drop(cell.get_or_init(f(1)));
    assert_eq!(drops.load(SeqCst), 1);

    // The leader: `f` is called, and its future drops the guard.
    assert_eq!(block_on(cell.get_or_init(f(2))), Ok(&2));
    assert_eq!(drops.load(SeqCst), 2);

    // The fast path on a filled cell: `f` is not called, and dropped once.
    let mut hit = Box::pin(cell.get_or_init(f(3)));
    assert_eq!(poll_once(&mut hit, &w), Poll::Ready(Ok(&2)));
    // Polled again after `Ready`: the same result, nothing run.
    assert_eq!(poll_once(&mut hit, &w), Poll::Ready(Ok(&2)));
    assert_eq!(drops.load(SeqCst), 2);
    drop(hit);
    assert_eq!(drops.load(SeqCst), 3);

    // The fast path on a failed cell (out of line, same guarantees).
    let failed = ALazy::<u32, &'static str>::new();
    assert_eq!(
        block_on(failed.get_or_init(|| async { Err("no") })),
        Err(&"no")
    );
    let mut miss = Box::pin(failed.get_or_init(f(4)));
    assert_eq!(poll_once(&mut miss, &w), Poll::Ready(Err(&"no")));
    drop(miss);
    assert_eq!(drops.load(SeqCst), 4);

    // A waiter whose slow path is built and queued, then the leader
    // publishes: the waiter is woken once and ready on its next poll; its
    // `f` is dropped once, with the future, never called.
    let cell = ALazy::<u32, &'static str>::new();
    let gate = Arc::new(Mutex::new(None));
    let g = gate.clone();
    let mut leader = Box::pin(cell.get_or_init(move || Gate { open: g }));
    assert!(poll_once(&mut leader, &w).is_pending());
    let (woken, ww) = counting_waker();
    let mut waiter = Box::pin(cell.get_or_init(f(5)));
    assert!(poll_once(&mut waiter, &ww).is_pending());
    assert_eq!(cell.waiting(), 1);
    *gate.lock().unwrap() = Some(Ok(7));
    assert_eq!(poll_once(&mut leader, &w), Poll::Ready(Ok(&7)));
    assert_eq!(woken.0.load(SeqCst), 1);
    assert_eq!(poll_once(&mut waiter, &ww), Poll::Ready(Ok(&7)));
    assert_eq!(drops.load(SeqCst), 4);
    drop(waiter);
    assert_eq!(drops.load(SeqCst), 5);
    assert_eq!(cell.waiting(), 0);
}

/// Pending at its first poll (waking itself), ready at the next.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if std::mem::replace(&mut self.0, true) {
            Poll::Ready(())
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// An initializer that keeps a `&mut` to one of its own locals across a
/// suspension, as `let mut buf = ..; read(&mut buf).await` does. Polling the
/// `get_or_init` future again must not invalidate that borrow (Miri's
/// Stacked Borrows checks it: a shared reference to the whole future, taken
/// while it holds the initializer, would).
#[test]
fn an_initializer_borrowing_itself_across_a_suspension() {
    let cell = ALazy::<u32, ()>::new();
    let (_, waker) = counting_waker();
    let mut fut = Box::pin(cell.get_or_init(|| async {
        let mut local = 1u32;
        let borrowed = &mut local;
        YieldOnce(false).await;
        *borrowed += 1;
        Ok(local)
    }));
    assert!(poll_once(&mut fut, &waker).is_pending());
    assert_eq!(poll_once(&mut fut, &waker), Poll::Ready(Ok(&2)));
}

/// A waker that panics when woken.
struct PanicsOnWake;

impl Wake for PanicsOnWake {
    fn wake(self: Arc<Self>) {
        panic!("waker panicked");
    }
}

/// One waiter's waker panics when the value is published: the panic
/// reaches the leader's caller, and every other waiter is still woken (the
/// queue wakes the rest while unwinding).
#[test]
fn a_panicking_waker_does_not_cost_the_other_waiters_their_wake_up() {
    let cell = ALazy::<u32, &'static str>::new();
    let open = Arc::new(Mutex::new(None));
    let (_, leader_waker) = counting_waker();
    let mut leader = Box::pin(cell.get_or_init(|| Gate { open: open.clone() }));
    assert!(poll_once(&mut leader, &leader_waker).is_pending());
    let panicky = Waker::from(Arc::new(PanicsOnWake));
    let mut first = Box::pin(cell.get_or_init(|| async { Ok(0) }));
    assert!(poll_once(&mut first, &panicky).is_pending());
    let (count, waker) = counting_waker();
    let mut second = Box::pin(cell.get_or_init(|| async { Ok(0) }));
    assert!(poll_once(&mut second, &waker).is_pending());
    *open.lock().unwrap() = Some(Ok(1));
    let published = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_once(&mut leader, &leader_waker)
    }));
    assert!(published.is_err(), "the waker's panic reaches the leader");
    assert_eq!(cell.get(), Some(&1));
    assert_eq!(count.0.load(SeqCst), 1, "the second waiter was woken");
    assert_eq!(poll_once(&mut second, &waker), Poll::Ready(Ok(&1)));
}

/// Pending at its first poll, panics at its second.
struct PendingThenPanics(bool);

impl Future for PendingThenPanics {
    type Output = Result<u32, ()>;
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
        if std::mem::replace(&mut self.0, true) {
            panic!("init panics");
        }
        Poll::Pending
    }
}

/// The init is handed to a waiter whose waker panics, while the thread
/// unwinds already: from a leader whose init panicked, and from a waiter
/// handed the init and dropped during an unwind. Neither aborts the process
/// (a panic while unwinding would), and the next waiter still takes over.
#[test]
fn a_panicking_waker_handed_the_init_during_unwind_does_not_abort() {
    let (_, noop) = counting_waker();
    let bad = Waker::from(Arc::new(PanicsOnWake));
    // A leader whose init panics.
    let cell = ALazy::<u32, ()>::new();
    let mut leader = Box::pin(cell.get_or_init(|| PendingThenPanics(false)));
    assert!(poll_once(&mut leader, &noop).is_pending());
    let mut waiter = Box::pin(cell.get_or_init(|| async { Ok(7) }));
    assert!(poll_once(&mut waiter, &bad).is_pending());
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_once(&mut leader, &noop)
    }));
    assert!(r.is_err(), "the init's panic reaches its caller");
    drop(leader);
    assert_eq!(poll_once(&mut waiter, &noop), Poll::Ready(Ok(&7)));
    // A waiter handed the init, dropped while its task unwinds.
    let cell = ALazy::<u32, ()>::new();
    let mut leader = Box::pin(cell.get_or_init(std::future::pending));
    assert!(poll_once(&mut leader, &noop).is_pending());
    let mut first = Box::pin(cell.get_or_init(|| async { Ok(1) }));
    assert!(poll_once(&mut first, &noop).is_pending());
    let mut second = Box::pin(cell.get_or_init(|| async { Ok(2) }));
    assert!(poll_once(&mut second, &bad).is_pending());
    drop(leader); // `first` is handed the init
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _first = first;
        panic!("the first waiter's task panics");
    }));
    assert!(r.is_err());
    assert_eq!(poll_once(&mut second, &noop), Poll::Ready(Ok(&2)));
}

/// An owned-mode leader whose closure panics before its initializer is
/// installed hands the init on in FIFO order, as a cancelled plain leader
/// does: the longest waiter runs its own initializer, and a caller that
/// comes later queues behind it instead of overtaking it.
#[test]
fn an_owned_leader_whose_closure_panics_hands_off_in_fifo_order() {
    let cell = ALazy::<u32, ()>::new();
    let (_, waker) = counting_waker();
    let mut longest = Box::pin(cell.get_or_init(|| async { Ok(1) }));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut owned = Box::pin(cell.get_or_init_owned(
            || -> std::future::Ready<Result<u32, ()>> {
                // Queues behind this leader.
                assert!(poll_once(&mut longest, &waker).is_pending());
                assert_eq!(cell.waiting(), 1);
                panic!("the owned closure panics");
            },
        ));
        let _ = poll_once(&mut owned, &waker);
    }));
    assert!(r.is_err());
    let mut late = Box::pin(cell.get_or_init(|| async { Ok(2) }));
    assert_eq!(
        poll_once(&mut late, &waker),
        Poll::Pending,
        "the late caller queues behind the one handed the init"
    );
    assert_eq!(poll_once(&mut longest, &waker), Poll::Ready(Ok(&1)));
    assert_eq!(poll_once(&mut late, &waker), Poll::Ready(Ok(&1)));
}

/// The message of a caught panic.
fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

/// An initializer that awaits its own cell would wait for itself for ever:
/// it panics instead (from the inner call, so the initializer fails and the
/// cell hands off as after any panic), and the cell still works afterwards.
#[test]
fn an_initializer_awaiting_its_own_cell_panics_instead_of_hanging() {
    let cell = ALazy::<u32, ()>::new();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(cell.get_or_init(|| async {
            cell.get_or_init(|| async { Ok(1) })
                .await
                .copied()
                .map_err(|_| ())
        }))
        .copied()
    }));
    assert!(panic_text(r.unwrap_err()).contains("re-entrant"));
    assert_eq!(cell.state(), State::Empty);
    assert_eq!(block_on(cell.get_or_init(|| async { Ok(3) })), Ok(&3));
}

/// The same for an owned initializer: the caller driving it and the caller
/// that started it panic, and the cell starts over.
#[test]
fn an_owned_initializer_awaiting_its_own_cell_panics_instead_of_hanging() {
    let cell = Arc::new(ALazy::<u32, ()>::new());
    let inner = cell.clone();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        block_on(cell.get_or_init_owned(move || async move {
            inner
                .get_or_init(|| async { Ok(1) })
                .await
                .copied()
                .map_err(|_| ())
        }))
        .copied()
    }));
    assert!(
        r.is_err(),
        "the owned initializer's panic reaches its starter"
    );
    assert_eq!(cell.state(), State::Empty);
    assert_eq!(block_on(cell.get_or_init_owned(|| async { Ok(4) })), Ok(&4));
}

/// Cells nested the right way round are not re-entrant: an initializer
/// that initializes another cell, which reads the first one's neighbour.
#[test]
fn initializers_of_different_cells_nest() {
    let (a, b) = (ALazy::<u32, ()>::new(), ALazy::<u32, ()>::new());
    let got = block_on(a.get_or_init(|| async {
        let inner = *b.get_or_init(|| async { Ok(2) }).await.unwrap();
        Ok(inner + 1)
    }));
    assert_eq!(got, Ok(&3));
    assert_eq!(b.get(), Some(&2));
}

/// Another task polled inside the initializer's poll (as by an executor
/// nested in the initializer, a `LocalSet` say) is not re-entrant: it has a
/// waker of its own, so it waits as any caller does instead of panicking,
/// is woken when the initializer publishes, and gets the value.
#[test]
fn another_task_polled_inside_the_initializer_waits_instead_of_panicking() {
    let cell = ALazy::<u32, ()>::new();
    let (other_woken, other_waker) = counting_waker();
    let mut other = Box::pin(cell.get_or_init(|| async { Ok(2) }));
    let got = block_on(cell.get_or_init(|| async {
        // The nested "executor" polls the other task once, with its waker.
        let polled = other.as_mut().poll(&mut Context::from_waker(&other_waker));
        assert!(
            polled.is_pending(),
            "the other task waits for the initializer"
        );
        Ok(1)
    }));
    assert_eq!(got, Ok(&1));
    assert!(other_woken.0.load(SeqCst) >= 1, "the other task was woken");
    assert_eq!(poll_once(&mut other, &other_waker), Poll::Ready(Ok(&1)));
}

/// Something an initializer holds that only one may hold at a time (a lock
/// file, a port); letting it go takes a while.
struct Exclusive(Arc<std::sync::atomic::AtomicBool>);

impl Drop for Exclusive {
    fn drop(&mut self) {
        std::thread::sleep(std::time::Duration::from_millis(200));
        self.0.store(false, SeqCst);
    }
}

/// An owned initializer that panics is dropped before the cell goes back to
/// `Empty`: the next initializer (a helper parked on the dead one, woken by
/// the reset) never runs beside what the dead one still holds. At most one
/// initializer exists at a time, as for a plain leader.
#[test]
fn a_panicked_owned_initializer_is_gone_before_the_next_one_starts() {
    use std::sync::atomic::AtomicBool;
    let cell = Arc::new(ALazy::<u32, ()>::new());
    let held = Arc::new(AtomicBool::new(false));
    let (armed, polls) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (h, a, p) = (held.clone(), armed.clone(), polls.clone());
    let (_, w) = counting_waker();
    let mut starter = Box::pin(cell.get_or_init_owned(move || {
        h.store(true, SeqCst);
        let resource = Exclusive(h);
        std::future::poll_fn(move |_| {
            let _keep = &resource;
            p.fetch_add(1, SeqCst);
            if a.load(SeqCst) {
                panic!("owned init fails");
            }
            // Nobody is woken: the helper below stays parked until the
            // initializer is gone.
            Poll::Pending
        })
    }));
    assert!(poll_once(&mut starter, &w).is_pending());
    let (c, hh) = (cell.clone(), held.clone());
    let helper = std::thread::spawn(move || {
        let overlap = Arc::new(AtomicBool::new(false));
        let o = overlap.clone();
        let got = block_on(c.get_or_init(|| async move {
            o.store(hh.load(SeqCst), SeqCst);
            Ok(2)
        }))
        .copied()
        .map_err(|_| ());
        (got, overlap.load(SeqCst))
    });
    // The helper drove the initializer once (so it is registered with it)
    // and parked.
    while polls.load(SeqCst) < 2 {
        std::thread::yield_now();
    }
    armed.store(true, SeqCst);
    let p = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| poll_once(&mut starter, &w)));
    assert!(
        p.is_err(),
        "the starter drove the initializer into its panic"
    );
    let (got, overlap) = helper.join().unwrap();
    assert_eq!(got, Ok(2), "the helper ran the next initializer");
    assert!(
        !overlap,
        "the next initializer ran while the panicked one still held its resource"
    );
}

/// A helper's waker that panics when an owned initializer wakes itself
/// (inside its own poll) does not fail the initializer: the panic is
/// dropped, the initializer keeps its progress and completes, and nobody is
/// told that it panicked.
#[test]
fn a_helpers_panicking_waker_does_not_fail_a_self_waking_owned_initializer() {
    let cell = ALazy::<u32, ()>::new();
    let polls = Arc::new(AtomicUsize::new(0));
    let p = polls.clone();
    let (_, good) = counting_waker();
    let mut starter = Box::pin(cell.get_or_init_owned(move || {
        std::future::poll_fn(move |cx| match p.fetch_add(1, SeqCst) {
            0 | 1 => Poll::Pending,
            2 => {
                // Wakes itself inside its poll: every helper is woken.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            _ => Poll::Ready(Ok(7)),
        })
    }));
    assert!(poll_once(&mut starter, &good).is_pending()); // poll 0
    let bad = Waker::from(Arc::new(PanicsOnWake));
    let mut helper_bad = Box::pin(cell.get_or_init(|| async { Ok(0) }));
    assert!(poll_once(&mut helper_bad, &bad).is_pending()); // poll 1
    let mut helper_good = Box::pin(cell.get_or_init(|| async { Ok(0) }));
    // Poll 2 wakes every helper, the bad one too; the initializer is then
    // polled again (it woke itself) and completes.
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        poll_once(&mut helper_good, &good)
    }));
    assert!(
        matches!(got, Ok(Poll::Ready(Ok(&7)))),
        "the helper driving the initializer got its value"
    );
    assert_eq!(cell.state(), State::Filled);
    assert_eq!(poll_once(&mut starter, &good), Poll::Ready(Ok(&7)));
    assert_eq!(poll_once(&mut helper_bad, &good), Poll::Ready(Ok(&7)));
    assert_eq!(polls.load(SeqCst), 4);
}

/// `take` forgets callers left queued by leaked waiting futures: a later
/// cancelled leader hands its turn to a live waiter, not to a ghost that
/// would keep it (and leave the cell `Initializing` for ever).
#[test]
#[cfg_attr(
    miri,
    ignore = "leaks two futures on purpose, which Miri's leak check reports"
)]
fn take_forgets_waiters_of_leaked_futures() {
    let mut cell = ALazy::<u32, ()>::new();
    let (_, w) = counting_waker();
    {
        let mut leader = Box::pin(cell.get_or_init(std::future::pending));
        assert!(poll_once(&mut leader, &w).is_pending());
        let mut ghost = Box::pin(cell.get_or_init(|| async { Ok(1) }));
        assert!(poll_once(&mut ghost, &w).is_pending());
        std::mem::forget(leader);
        std::mem::forget(ghost);
    }
    assert_eq!(cell.waiting(), 1);
    assert_eq!(cell.take(), None);
    assert_eq!(cell.waiting(), 0, "take forgot the leaked waiter");
    let mut leader = Box::pin(cell.get_or_init(std::future::pending));
    assert!(poll_once(&mut leader, &w).is_pending());
    let (woken, ww) = counting_waker();
    let mut waiter = Box::pin(cell.get_or_init(|| async { Ok(2) }));
    assert!(poll_once(&mut waiter, &ww).is_pending());
    drop(leader);
    assert_eq!(
        woken.0.load(SeqCst),
        1,
        "the live waiter was handed the turn"
    );
    assert_eq!(poll_once(&mut waiter, &ww), Poll::Ready(Ok(&2)));
}

/// A cell used from a thread-local's `Drop` (a flush at thread exit that
/// reads a lazily made config) works: the slow path does not need the
/// library's own thread-local, which may be gone by then (a panic there
/// would abort the process).
#[test]
fn a_cell_initialized_from_a_thread_locals_drop() {
    static AT_EXIT: ALazy<u32, ()> = ALazy::new();
    struct FlushOnExit;
    impl Drop for FlushOnExit {
        fn drop(&mut self) {
            let (_, w) = counting_waker();
            let mut fut = Box::pin(AT_EXIT.get_or_init(|| async { Ok(5) }));
            assert_eq!(poll_once(&mut fut, &w), Poll::Ready(Ok(&5)));
        }
    }
    thread_local! {
        static FLUSH: FlushOnExit = const { FlushOnExit };
    }
    std::thread::spawn(|| {
        // Registered first, so destroyed after the library's thread-local,
        // which the slow path below sets up.
        FLUSH.with(|_| {});
        let other = ALazy::<u32, ()>::new();
        assert_eq!(block_on(other.get_or_init(|| async { Ok(1) })), Ok(&1));
    })
    .join()
    .expect("the thread exits cleanly");
    assert_eq!(AT_EXIT.get(), Some(&5));
}
