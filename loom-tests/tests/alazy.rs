//! loom models of `ALazy`: one model per property, each exhaustive under
//! `LOOM_MAX_PREEMPTIONS=2` (see `ci/loom.sh` for the budget and timings).
//!
//! Callers that must stop at a precise point (a leader inside its
//! initializer, a waiter in the queue) are polled by hand with a no-op or
//! counting waker; the others run under `block_on` in their own loom thread,
//! so a lost wake-up shows up as a loom deadlock.
#![cfg(loom)]
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Poll, Waker};

use lazyflight::sync::future::block_on;
use lazyflight::sync::{thread, Arc};
use lazyflight::{ALazy, State};
use lazyflight_loom_tests::{
    counting_waker, deliberate_panic, live_wakers, poll_once, silence_expected_panics, Counted,
    DropLedger, Gate, PendOnce, EXPECTED_PANIC,
};

/// Copies both sides of a `get_or_init` result out of the cell.
trait Owned<T, E> {
    fn owned(self) -> Result<T, E>;
}

impl<T: Copy, E: Copy> Owned<T, E> for Result<&T, &E> {
    fn owned(self) -> Result<T, E> {
        self.copied().map_err(|e| *e)
    }
}

/// Counts initializer runs; an instrument, not part of the protocol.
fn counter() -> std::sync::Arc<AtomicUsize> {
    std::sync::Arc::new(AtomicUsize::new(0))
}

// Property: two callers race; exactly one initializer runs and both see its value.
#[test]
fn two_callers_one_init() {
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let runs = counter();
        let (c, r) = (cell.clone(), runs.clone());
        let t = thread::spawn(move || {
            *block_on(c.get_or_init(|| async move {
                r.fetch_add(1, SeqCst);
                Ok(1)
            }))
            .unwrap()
        });
        let r = runs.clone();
        let mine = *block_on(cell.get_or_init(|| async move {
            r.fetch_add(1, SeqCst);
            Ok(2)
        }))
        .unwrap();
        let theirs = t.join().unwrap();
        assert_eq!(mine, theirs, "both callers see the one value");
        assert_eq!(runs.load(SeqCst), 1, "exactly one initializer ran");
        assert_eq!(cell.get(), Some(&mine));
        assert_eq!(cell.state(), State::Filled);
        assert_eq!(cell.waiting(), 0);
    });
}

// Property: an initializer that fails caches its error: the racing caller gets
// the very same error (same address), no second initializer runs, and a later
// caller gets the cached error too.
#[test]
fn init_error_is_cached_and_shared() {
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, usize>::new());
        let runs = counter();
        let (c, r) = (cell.clone(), runs.clone());
        let t = thread::spawn(move || {
            let e = block_on(c.get_or_init(|| async move {
                r.fetch_add(1, SeqCst);
                Err(1)
            }))
            .unwrap_err();
            (*e, e as *const usize as usize)
        });
        let r = runs.clone();
        let e = block_on(cell.get_or_init(|| async move {
            r.fetch_add(1, SeqCst);
            Err(2)
        }))
        .unwrap_err();
        let mine = (*e, e as *const usize as usize);
        assert_eq!(
            mine,
            t.join().unwrap(),
            "both callers see the same cached error"
        );
        assert_eq!(runs.load(SeqCst), 1, "exactly one initializer ran");
        assert_eq!(cell.state(), State::Failed);
        assert_eq!(cell.get(), None);
        let r = runs.clone();
        let later = block_on(cell.get_or_init(|| async move {
            r.fetch_add(1, SeqCst);
            Ok(3)
        }));
        assert_eq!(later, Err(&mine.0), "a later caller gets the cached error");
        assert_eq!(runs.load(SeqCst), 1, "no initializer runs on a failed cell");
    });
}

// Property: when the leader is dropped while suspended inside its
// initializer, a waiter takes over, runs its own initializer and finishes
// (FIFO hand-off; nobody hangs, the cell ends FILLED with the waiter's value).
#[test]
fn leader_dropped_mid_init_waiter_takes_over() {
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let c = cell.clone();
        let mut leader = Box::pin(async move {
            c.get_or_init(|| async {
                PendOnce::new().await;
                Ok(1)
            })
            .await
            .owned()
        });
        assert!(poll_once(leader.as_mut(), Waker::noop()).is_pending());
        assert_eq!(
            cell.state(),
            State::Initializing,
            "the leader is inside its initializer"
        );

        let c = cell.clone();
        let waiter = thread::spawn(move || block_on(c.get_or_init(|| async { Ok(2) })).owned());
        drop(leader);
        assert_eq!(
            waiter.join().unwrap(),
            Ok(2),
            "the waiter ran its own initializer"
        );
        assert_eq!(cell.get(), Some(&2));
        assert_eq!(cell.waiting(), 0);
    });
}

// Property: when the leader's initializer panics (after a suspension, with a
// waiter racing in), the panic reaches the leader's caller and a waiter takes
// over and finishes, exactly as if the leader had been dropped.
#[test]
fn leader_panics_waiter_takes_over() {
    silence_expected_panics();
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let c = cell.clone();
        let mut leader = Box::pin(async move {
            c.get_or_init(|| async {
                PendOnce::new().await;
                deliberate_panic()
            })
            .await
            .owned()
        });
        assert!(poll_once(leader.as_mut(), Waker::noop()).is_pending());

        let c = cell.clone();
        let waiter = thread::spawn(move || block_on(c.get_or_init(|| async { Ok(2) })).owned());
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            poll_once(leader.as_mut(), Waker::noop())
        }));
        let payload = panicked.expect_err("the initializer's panic reaches its caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&EXPECTED_PANIC));
        drop(leader);
        assert_eq!(
            waiter.join().unwrap(),
            Ok(2),
            "the waiter ran its own initializer"
        );
        assert_eq!(cell.get(), Some(&2));
        assert_eq!(cell.waiting(), 0);
    });
}

// Property: with three callers, when the first waiter in line is dropped while
// the leader hands off (possibly after it was handed the baton but before it
// saw it), the baton passes on to the next caller, who finishes; nobody hangs
// and the dropped waiter leaves no waker behind.
#[test]
fn first_waiter_dropped_during_handoff_baton_passes() {
    // Executions in which the first waiter was / was not handed the baton
    // (woken) before it was dropped: both must be explored.
    static HANDED: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let c = cell.clone();
        let mut leader = Box::pin(async move {
            c.get_or_init(|| async {
                PendOnce::new().await;
                Ok(1)
            })
            .await
            .owned()
        });
        assert!(poll_once(leader.as_mut(), Waker::noop()).is_pending());

        let (waker, probe) = counting_waker();
        let c = cell.clone();
        let mut first = Box::pin(async move { c.get_or_init(|| async { Ok(2) }).await.owned() });
        assert!(poll_once(first.as_mut(), &waker).is_pending());
        assert_eq!(cell.waiting(), 1, "the first waiter is queued");

        let c = cell.clone();
        let second = thread::spawn(move || block_on(c.get_or_init(|| async { Ok(3) })).owned());
        let cancel_leader = thread::spawn(move || drop(leader));
        drop(first);
        cancel_leader.join().unwrap();
        assert_eq!(
            second.join().unwrap(),
            Ok(3),
            "the baton reached the last caller"
        );
        assert_eq!(cell.get(), Some(&3));
        assert_eq!(cell.waiting(), 0);
        HANDED[usize::from(probe.wakes() > 0)].fetch_add(1, SeqCst);
        drop(waker);
        assert_eq!(
            live_wakers(&probe),
            0,
            "the dropped waiter left no waker behind"
        );
    });
    assert!(
        HANDED.iter().all(|n| n.load(SeqCst) > 0),
        "the drop raced the hand-off both ways"
    );
}

// Property: `get()` racing the completion of an initializer never observes a
// half-published value (loom checks the slot access against happens-before),
// and once it returns `Some` it keeps doing so.
//
// The reader is the spawned thread and the leader the main thread: loom's
// DPOR then explores the reader's loads on both sides of the publishing store
// (with the roles swapped it only ever saw the reader run first).
#[test]
fn get_racing_completion_sees_whole_value() {
    // How many explored executions had the reader see the cell empty / filled:
    // both must occur, or the model did not explore the race.
    static SAW: [AtomicUsize; 2] = [AtomicUsize::new(0), AtomicUsize::new(0)];
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let c = cell.clone();
        let reader = thread::spawn(move || {
            let first = c.get().copied();
            let state = c.state();
            let second = c.get().copied();
            if let Some(v) = first {
                assert_eq!(v, 42);
                assert_eq!(second, Some(42), "a filled cell stays filled");
            }
            if state == State::Filled {
                assert_eq!(second, Some(42), "state() Filled makes the value readable");
            }
            first.is_some()
        });
        assert_eq!(block_on(cell.get_or_init(|| async { Ok(42) })), Ok(&42));
        let saw_value = reader.join().unwrap();
        SAW[usize::from(saw_value)].fetch_add(1, SeqCst);
        assert_eq!(cell.get(), Some(&42));
    });
    assert!(
        SAW.iter().all(|n| n.load(SeqCst) > 0),
        "the reader ran on both sides of the publication"
    );
}

// Property: a waiter dropped while the leader completes leaves nothing behind:
// no clone of its waker survives and the queue is empty.
#[test]
fn waiter_dropped_while_leader_completes_leaks_no_waker() {
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let c = cell.clone();
        let mut leader = Box::pin(async move {
            c.get_or_init(|| async {
                PendOnce::new().await;
                Ok(1)
            })
            .await
            .owned()
        });
        assert!(poll_once(leader.as_mut(), Waker::noop()).is_pending());

        let (waker, probe) = counting_waker();
        let c = cell.clone();
        let mut waiter = Box::pin(async move { c.get_or_init(|| async { Ok(2) }).await.owned() });
        assert!(poll_once(waiter.as_mut(), &waker).is_pending());
        assert_eq!(
            live_wakers(&probe),
            2,
            "the queue holds a clone of the waiter's waker"
        );

        let completer = thread::spawn(move || block_on(leader));
        drop(waiter);
        assert_eq!(completer.join().unwrap(), Ok(1));
        assert_eq!(cell.waiting(), 0);
        drop(waker);
        assert_eq!(
            live_wakers(&probe),
            0,
            "no clone of the dropped waiter's waker leaked"
        );
    });
}

// Property: in the owned-initializer mode, a leader that is polled once and
// then parked (never polled again, never dropped) does not stall a waiter:
// the waiter drives the stored initializer to completion and gets its value,
// and its own initializer never runs.
#[test]
fn parked_leader_owned_init_driven_by_waiter() {
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let gate = Arc::new(Gate::new());
        let runs = counter();
        let (c, g, r) = (cell.clone(), gate.clone(), runs.clone());
        let mut leader = Box::pin(async move {
            c.get_or_init_owned(move || async move {
                r.fetch_add(1, SeqCst);
                g.wait().await;
                Ok(7)
            })
            .await
            .owned()
        });
        assert!(poll_once(leader.as_mut(), Waker::noop()).is_pending());
        assert_eq!(cell.state(), State::Initializing);

        let (c, r) = (cell.clone(), runs.clone());
        let waiter = thread::spawn(move || {
            block_on(c.get_or_init_owned(move || async move {
                r.fetch_add(1, SeqCst);
                Ok(99)
            }))
            .owned()
        });
        gate.open();
        assert_eq!(
            waiter.join().unwrap(),
            Ok(7),
            "the waiter drove the stored initializer"
        );
        assert_eq!(
            runs.load(SeqCst),
            1,
            "only the parked leader's initializer ran"
        );
        assert_eq!(cell.get(), Some(&7));
        // The leader was parked throughout; when it is polled at last it
        // finds the cell filled.
        assert_eq!(
            poll_once(leader.as_mut(), Waker::noop()),
            Poll::Ready(Ok(7))
        );
    });
}

/// Two callers race to fill (or fail) a cell of [`Counted`] values, and the
/// last `Arc` to the cell is dropped in either thread.
fn drop_once(fail: bool) {
    loom::model(move || {
        let ledger = DropLedger::new();
        let cell = Arc::new(ALazy::<Counted, Counted>::new());
        let init = |id: usize, ledger: &std::sync::Arc<DropLedger>| {
            let ledger = ledger.clone();
            move || async move {
                let v = Counted::new(id, &ledger);
                if fail {
                    Err(v)
                } else {
                    Ok(v)
                }
            }
        };
        let id_of = |r: Result<&Counted, &Counted>| match r {
            Ok(v) => (true, v.id),
            Err(e) => (false, e.id),
        };
        let (c, f) = (cell.clone(), init(1, &ledger));
        let t = thread::spawn(move || id_of(block_on(c.get_or_init(f))));
        let mine = id_of(block_on(cell.get_or_init(init(2, &ledger))));
        drop(cell);
        assert_eq!(t.join().unwrap(), mine);
        assert_eq!(mine.0, !fail);
        assert_eq!(ledger.created(), 1, "one initializer ran");
        assert_eq!(
            ledger.dropped(),
            1,
            "the cached value or error was dropped exactly once"
        );
    });
}

// Property: dropping a filled cell drops its value exactly once, whichever
// thread drops the last reference.
#[test]
fn drop_filled_cell_drops_value_once() {
    drop_once(false);
}

// Property: dropping a failed cell drops its cached error exactly once,
// whichever thread drops the last reference.
#[test]
fn drop_failed_cell_drops_error_once() {
    drop_once(true);
}

// Property: after a race to fill, `take` moves the one value out exactly
// once and empties the cell (a second `take` finds nothing, a new
// `get_or_init` runs afresh), and `into_inner` returns the new value; every
// value is dropped exactly once.
#[test]
fn take_and_into_inner_move_the_value_out_once() {
    loom::model(|| {
        let ledger = DropLedger::new();
        let cell = Arc::new(ALazy::<Counted, ()>::new());
        let (c, l) = (cell.clone(), ledger.clone());
        let t = thread::spawn(move || {
            block_on(c.get_or_init(|| async move { Ok(Counted::new(1, &l)) }))
                .map(|v| v.id)
                .map_err(|e| *e)
        });
        let l = ledger.clone();
        let mine = block_on(cell.get_or_init(|| async move { Ok(Counted::new(2, &l)) }))
            .map(|v| v.id)
            .map_err(|e| *e);
        assert_eq!(t.join().unwrap(), mine);

        let mut cell = Arc::try_unwrap(cell).expect("the other thread's handle is gone");
        let taken = cell.take().expect("filled").expect("Ok");
        assert_eq!(Ok(taken.id), mine);
        assert_eq!(cell.state(), State::Empty);
        assert!(cell.take().is_none(), "take empties the cell");
        assert!(cell.get().is_none());
        drop(taken);
        assert_eq!(ledger.dropped(), 1);

        let l = ledger.clone();
        let again = block_on(cell.get_or_init(|| async move { Ok(Counted::new(3, &l)) }))
            .map(|v| v.id)
            .map_err(|e| *e);
        assert_eq!(again, Ok(3), "a taken cell initializes afresh");
        let inner = cell.into_inner().expect("filled").expect("Ok");
        assert_eq!(inner.id, 3);
        assert_eq!(
            ledger.dropped(),
            1,
            "into_inner moves the value out without dropping it"
        );
        drop(inner);
        assert_eq!((ledger.created(), ledger.dropped()), (2, 2));
    });
}

// Property: the owned initializer outlives the leader that installed it, and
// `into_inner` on a cell whose owned initializer is still pending drops that
// initializer exactly once and returns `None`. Nothing leaks (loom reports
// leaked `Arc`s, the driver's included).
#[test]
fn into_inner_drops_pending_owned_initializer() {
    loom::model(|| {
        let ledger = DropLedger::new();
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let gate = Arc::new(Gate::new());
        let (c, g, l) = (cell.clone(), gate.clone(), ledger.clone());
        let mut leader = Box::pin(async move {
            c.get_or_init_owned(move || {
                let guard = Counted::new(1, &l);
                async move {
                    g.wait().await;
                    drop(guard);
                    Ok(7)
                }
            })
            .await
            .owned()
        });
        assert!(poll_once(leader.as_mut(), Waker::noop()).is_pending());
        drop(leader);
        assert_eq!(
            ledger.dropped(),
            0,
            "the owned initializer outlives its leader"
        );
        let cell = Arc::try_unwrap(cell).expect("last handle");
        assert!(cell.into_inner().is_none());
        assert_eq!(
            (ledger.created(), ledger.dropped()),
            (1, 1),
            "the pending initializer was dropped once"
        );
    });
}

// Property: in the owned-initializer mode, cancelling the leader that started
// the initializer (dropping its future while the initializer waits) neither
// drops nor restarts the initializer: a waiter resumes that same initializer
// and gets its value, and the waiter's own initializer never runs.
#[test]
fn owned_leader_cancelled_waiter_resumes_its_initializer() {
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let gate = Arc::new(Gate::new());
        let runs = counter();
        let (c, g, r) = (cell.clone(), gate.clone(), runs.clone());
        let mut leader = Box::pin(async move {
            c.get_or_init_owned(move || async move {
                r.fetch_add(1, SeqCst);
                g.wait().await;
                Ok(7)
            })
            .await
            .owned()
        });
        assert!(poll_once(leader.as_mut(), Waker::noop()).is_pending());

        let (c, r) = (cell.clone(), runs.clone());
        let waiter = thread::spawn(move || {
            block_on(c.get_or_init_owned(move || async move {
                r.fetch_add(1, SeqCst);
                Ok(99)
            }))
            .owned()
        });
        let canceller = thread::spawn(move || drop(leader));
        gate.open();
        canceller.join().unwrap();
        assert_eq!(
            waiter.join().unwrap(),
            Ok(7),
            "the waiter resumed the leader's initializer"
        );
        assert_eq!(
            runs.load(SeqCst),
            1,
            "the initializer ran once and was never restarted"
        );
        assert_eq!(cell.get(), Some(&7));
    });
}

// Property: when an owned initializer panics while another caller drives it
// (its starter parked), the panic reaches the caller that polled it, the cell
// goes back to Empty (nobody is left waiting on a dead initializer), a later
// caller initializes afresh, and the parked starter panics when it is polled
// again. Nothing leaks (loom checks the driver's `Arc`s).
#[test]
fn owned_initializer_panic_resets_and_others_restart() {
    silence_expected_panics();
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let gate = Arc::new(Gate::new());
        let (c, g) = (cell.clone(), gate.clone());
        let mut starter = Box::pin(async move {
            c.get_or_init_owned(move || async move {
                g.wait().await;
                deliberate_panic()
            })
            .await
            .owned()
        });
        assert!(poll_once(starter.as_mut(), Waker::noop()).is_pending());

        let c = cell.clone();
        let helper = thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                block_on(c.get_or_init_owned(|| async { Ok(2) })).owned()
            }))
            .map_err(|payload| payload.downcast_ref::<&str>() == Some(&EXPECTED_PANIC))
        });
        gate.open();
        assert_eq!(
            helper.join().unwrap(),
            Err(true),
            "the helper that polled the initializer saw its panic"
        );
        assert_eq!(
            cell.state(),
            State::Empty,
            "the dead initializer was cleared"
        );

        let again = catch_unwind(AssertUnwindSafe(|| {
            poll_once(starter.as_mut(), Waker::noop())
        }));
        assert!(
            again.is_err(),
            "the parked starter panics when polled again"
        );
        drop(starter);
        assert_eq!(
            block_on(cell.get_or_init_owned(|| async { Ok(3) })),
            Ok(&3),
            "a later caller starts afresh"
        );
    });
}

// Property: the same with two helpers, so that the one that does not poll
// the initializer into its panic finds its lock free again (the lock the
// panic unwound through), and restarts with its own initializer once the dead
// one is gone: exactly one helper sees the panic, the other ends with its own
// value, and so does every later caller.
#[test]
fn owned_initializer_panic_with_two_helpers_the_other_restarts() {
    silence_expected_panics();
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let gate = Arc::new(Gate::new());
        let (c, g) = (cell.clone(), gate.clone());
        let mut starter = Box::pin(async move {
            c.get_or_init_owned(move || async move {
                g.wait().await;
                deliberate_panic()
            })
            .await
            .owned()
        });
        assert!(poll_once(starter.as_mut(), Waker::noop()).is_pending());

        let helper = |value: usize| {
            let c = cell.clone();
            thread::spawn(move || {
                catch_unwind(AssertUnwindSafe(|| {
                    block_on(c.get_or_init_owned(move || async move { Ok(value) })).owned()
                }))
                .map_err(|payload| payload.downcast_ref::<&str>() == Some(&EXPECTED_PANIC))
            })
        };
        let (one, two) = (helper(2), helper(4));
        gate.open();
        let (one, two) = (one.join().unwrap(), two.join().unwrap());
        let value = match (one, two) {
            (Err(true), Ok(Ok(v))) => {
                assert_eq!(v, 4, "the other helper ran its own initializer");
                v
            }
            (Ok(Ok(v)), Err(true)) => {
                assert_eq!(v, 2, "the other helper ran its own initializer");
                v
            }
            other => panic!("exactly one helper sees the initializer's panic: {other:?}"),
        };
        let again = catch_unwind(AssertUnwindSafe(|| {
            poll_once(starter.as_mut(), Waker::noop())
        }));
        assert!(
            again.is_err(),
            "the parked starter panics when polled again"
        );
        drop(starter);
        assert_eq!(
            block_on(cell.get_or_init_owned(|| async { Ok(3) })),
            Ok(&value),
            "a later caller gets the restarted value"
        );
    });
}

// Property: a helper parked on an owned initializer is released when
// another caller completes it, even if a plain waiter's waker panics as the
// value is published. The plain waiter queued while the owned leader held the
// baton, and is still in the cell's queue once the initializer is installed;
// a caller that completes the initializer in that window wakes it. Its waker
// panics; the helpers parked on the initializer must still be woken (every
// thread returns). Needs three preemptions: the model sets that bound itself.
#[test]
fn owned_init_completed_while_a_waiter_waker_panics_releases_every_helper() {
    struct PanicsOnWake;
    impl std::task::Wake for PanicsOnWake {
        fn wake(self: std::sync::Arc<Self>) {
            panic!("waker panics");
        }
    }
    /// Ready at its first poll, with a preemption point inside it (while
    /// the polling caller holds the initializer's lock).
    struct YieldThenReady;
    impl core::future::Future for YieldThenReady {
        type Output = Result<u32, ()>;
        fn poll(
            self: core::pin::Pin<&mut Self>,
            _: &mut core::task::Context<'_>,
        ) -> Poll<Self::Output> {
            thread::yield_now();
            Poll::Ready(Ok(1))
        }
    }
    silence_expected_panics();
    let mut model = loom::model::Builder::new();
    model.preemption_bound = Some(3);
    model.check(|| {
        let cell = Arc::new(ALazy::<u32, ()>::new());
        let c1 = cell.clone();
        let leader = thread::spawn(move || {
            let plain = c1.clone();
            let mut waiter = Box::pin(plain.get_or_init(|| async { Ok(9) }));
            let bad = Waker::from(std::sync::Arc::new(PanicsOnWake));
            let _ = catch_unwind(AssertUnwindSafe(|| {
                block_on(c1.get_or_init_owned(|| {
                    // The cell is INITIALIZING, not yet OWNED: the plain
                    // waiter queues in the cell's queue.
                    let _ = core::future::Future::poll(
                        waiter.as_mut(),
                        &mut core::task::Context::from_waker(&bad),
                    );
                    YieldThenReady
                }))
                .map(|v| *v)
            }));
        });
        let c2 = cell.clone();
        let helper = thread::spawn(move || {
            let _ = catch_unwind(AssertUnwindSafe(|| {
                block_on(c2.get_or_init(|| async { Ok(2) })).map(|v| *v)
            }));
        });
        let _ = catch_unwind(AssertUnwindSafe(|| {
            block_on(cell.get_or_init(|| async { Ok(3) })).map(|v| *v)
        }));
        leader.join().unwrap();
        helper.join().unwrap();
    });
}

/// State that only the running initializer touches (a port, a permit, a
/// scratch file): plain memory, so loom checks every access against
/// happens-before.
struct InitOnly(loom::cell::UnsafeCell<usize>);

// SAFETY: accessed only by the one initializer that runs at a time (the
// property the model below checks); loom reports any other access.
unsafe impl Sync for InitOnly {}

/// Held by an initializer future; its drop (the initializer torn down by a
/// cancelled leader) writes the initializer-only state.
struct TearDown(Arc<InitOnly>);

impl Drop for TearDown {
    fn drop(&mut self) {
        self.0 .0.with_mut(|p| unsafe { *p += 1 });
    }
}

// Property: at most one initializer exists at a time, in the happens-before
// sense: what a cancelled leader's initializer does while it is torn down
// (its future's drop) happens before the next leader's initializer runs, even
// when that next leader took the cell with the CAS from `EMPTY` (it loaded
// `EMPTY` before the first leader started, and won after it gave up) rather
// than through the queue.
#[test]
fn cancelled_leaders_teardown_happens_before_the_next_initializer() {
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let only = Arc::new(InitOnly(loom::cell::UnsafeCell::new(0)));
        let (c, o) = (cell.clone(), only.clone());
        let next = thread::spawn(move || {
            block_on(c.get_or_init(|| async move {
                let seen = o.0.with_mut(|p| unsafe {
                    *p += 1;
                    *p
                });
                Ok(seen)
            }))
            .owned()
        });
        let c = cell.clone();
        let o = only.clone();
        let mut leader = Box::pin(async move {
            c.get_or_init(|| {
                // Made only if this caller leads: its drop is the
                // initializer's teardown.
                let guard = TearDown(o);
                async move {
                    let _guard = guard;
                    PendOnce::new().await;
                    Ok(0)
                }
            })
            .await
            .owned()
        });
        let first = poll_once(leader.as_mut(), Waker::noop());
        drop(leader);
        let theirs = next.join().unwrap();
        let value = theirs.expect("the other caller ends with a value");
        assert!(
            value == 1 || value == 2,
            "its initializer ran, after ours if ours ran"
        );
        if first.is_pending() {
            assert_eq!(cell.get(), Some(&value));
        }
    });
}

/// An initializer that waits, then panics in its poll while it still holds
/// `_held`: a field, so the unwind out of `poll` leaves it in place and only
/// the future's drop tears it down (an `async` block's locals would go with
/// the unwind itself).
struct PanicsHolding {
    wait: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    _held: TearDown,
}

impl std::future::Future for PanicsHolding {
    type Output = Result<usize, ()>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Self::Output> {
        match self.wait.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => deliberate_panic(),
        }
    }
}

// Property: the same for an owned initializer that panics: the dead
// initializer's teardown (its future's drop, during the unwind) happens
// before the next initializer runs, whichever caller drove it into the panic
// (the starter polled again, or a caller that found the cell OWNED and helped
// drive it) and however the next caller reached `EMPTY` (after waiting for
// the panicked attempt to finish, or with its first load). Exactly one of the
// two sees the initializer's panic... or the starter sees it as "the owned
// initializer panicked" when polled again; the other caller initializes
// afresh.
#[test]
fn panicked_owned_initializers_teardown_happens_before_the_next_initializer() {
    silence_expected_panics();
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let only = Arc::new(InitOnly(loom::cell::UnsafeCell::new(0)));
        let gate = Arc::new(Gate::new());
        let (c, o, g) = (cell.clone(), only.clone(), gate.clone());
        let mut starter = Box::pin(async move {
            c.get_or_init_owned(move || PanicsHolding {
                wait: Box::pin(async move { g.wait().await }),
                _held: TearDown(o),
            })
            .await
            .owned()
        });
        assert!(poll_once(starter.as_mut(), Waker::noop()).is_pending());

        let (c, o) = (cell.clone(), only.clone());
        let next = thread::spawn(move || {
            catch_unwind(AssertUnwindSafe(|| {
                block_on(c.get_or_init(|| async move {
                    let seen = o.0.with_mut(|p| unsafe {
                        *p += 1;
                        *p
                    });
                    Ok(seen)
                }))
                .owned()
            }))
            .map_err(|payload| payload.downcast_ref::<&str>() == Some(&EXPECTED_PANIC))
        });
        gate.open();
        let mine = catch_unwind(AssertUnwindSafe(|| block_on(starter.as_mut())));
        assert!(mine.is_err(), "the starter sees its initializer's panic");
        drop(starter);
        match next.join().unwrap() {
            Err(expected) => {
                assert!(expected, "the helper saw the initializer's own panic");
                assert_eq!(cell.state(), State::Empty, "nobody initialized again");
            }
            Ok(seen) => {
                assert_eq!(seen, Ok(2), "the next initializer ran after the teardown");
                assert_eq!(cell.get(), Some(&2));
            }
        }
    });
}

// Property: in the owned-initializer mode, a caller that queued on the cell
// while the leader was still building its initializer (after the leader won
// the cell, before the initializer was installed) is woken by the install and
// helps drive it: a leader parked from then on does not stall it, whichever
// way the two calls interleave.
#[test]
fn caller_queued_before_the_owned_install_drives_it_past_a_parked_leader() {
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let gate = Arc::new(Gate::new());
        let c = cell.clone();
        let waiter =
            thread::spawn(move || block_on(c.get_or_init_owned(|| async { Ok(2) })).owned());
        let (c, g) = (cell.clone(), gate.clone());
        let mut leader = Box::pin(async move {
            c.get_or_init_owned(move || async move {
                g.wait().await;
                Ok(1)
            })
            .await
            .owned()
        });
        // Polled once, then parked until the waiter is done.
        let _ = poll_once(leader.as_mut(), Waker::noop());
        gate.open();
        let value = waiter
            .join()
            .unwrap()
            .expect("the waiter ends with a value");
        assert!(value == 1 || value == 2);
        assert_eq!(cell.get(), Some(&value));
        drop(leader);
    });
}
