//! shuttle models of `Group`: 16 callers per execution over keys drawn from a
//! 1,000-key space, with random cancellation and failing work.
//!
//! Build and run with `RUSTFLAGS="--cfg shuttle"`. Each execution draws its
//! scenario from `shuttle::rand`, so a failure replays from the printed
//! schedule: which of the 1,000 keys are hot in this execution (1 to 3 of
//! them), which key each caller asks for, whether its work succeeds or fails
//! and after how many yields, and which callers are cancelled (aborted through
//! their `JoinHandle` by the main task, or dropped by their own task after a
//! few polls).
//!
//! Iterations per test: `LAZYFLIGHT_SHUTTLE_ITERATIONS` (default 1,000).
#![cfg(shuttle)]
// The test's bookkeeping uses std types on purpose: shuttle runs one task at
// a time, and keeping them invisible to it adds no scheduling points beyond
// the library's own.
#![allow(clippy::disallowed_types)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use lazyflight::{Group, Outcome};
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
    /// Work closures called (flights whose leader started its work).
    started: AtomicUsize,
    /// Work futures that ran to completion.
    finished: AtomicUsize,
    /// Work futures alive right now, per key.
    running: Mutex<Vec<(u32, usize)>>,
}

type Out = Arc<Outcome<u32, u32>>;

async fn caller(
    group: Arc<Group<u32, u32, u32>>,
    book: Arc<Book>,
    key: u32,
    fail: bool,
    yields: usize,
    give_up: Option<usize>,
) -> Option<Out> {
    let b = book.clone();
    let work = move || async move {
        b.started.fetch_add(1, SeqCst);
        {
            let mut running = b.running.lock().unwrap();
            assert!(
                running.iter().all(|&(k, _)| k != key),
                "two flights' work running for key {key} at once"
            );
            running.push((key, 0));
        }
        struct Leave(Arc<Book>, u32);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.running.lock().unwrap().retain(|&(k, _)| k != self.1);
            }
        }
        let _leave = Leave(b.clone(), key);
        for _ in 0..yields {
            sfut::yield_now().await;
        }
        b.finished.fetch_add(1, SeqCst);
        if fail {
            Err(key)
        } else {
            Ok(key)
        }
    };
    let call = group.run(key, work);
    match give_up {
        Some(polls) => {
            GiveUpAfter {
                inner: Box::pin(call),
                polls,
            }
            .await
        }
        None => Some(call.await),
    }
}

fn scenario() {
    let mut rng = thread_rng();
    let group = Arc::new(Group::<u32, u32, u32>::new());
    let book = Arc::new(Book::default());
    let hot: Vec<u32> = (0..rng.gen_range(1..=3))
        .map(|_| rng.gen_range(0..KEY_SPACE))
        .collect();

    sfut::block_on(async {
        let mut handles: Vec<JoinHandle<Option<Out>>> = Vec::new();
        for _ in 0..CALLERS {
            let key = hot[rng.gen_range(0..hot.len())];
            let fail = rng.gen_bool(0.3);
            let yields = rng.gen_range(0..=3);
            let give_up = rng.gen_bool(0.15).then(|| rng.gen_range(0..=3));
            handles.push(sfut::spawn(caller(
                group.clone(),
                book.clone(),
                key,
                fail,
                yields,
                give_up,
            )));
        }
        let aborts: Vec<usize> = (0..CALLERS).filter(|_| rng.gen_bool(0.1)).collect();
        for &i in &aborts {
            for _ in 0..rng.gen_range(0..=2) {
                sfut::yield_now().await;
            }
            handles[i].abort();
        }
        let mut outcomes = Vec::new();
        for h in handles {
            // `Err`: aborted; `Ok(None)`: gave up; both are cancellations.
            if let Ok(Some(out)) = h.await {
                outcomes.push(out);
            }
        }

        // Every completed flight is one finished execution, and vice versa:
        // a leader publishes as soon as its work returns.
        let flights: HashSet<*const Outcome<u32, u32>> = outcomes
            .iter()
            .filter(|o| !o.is_canceled())
            .map(Arc::as_ptr)
            .collect();
        let finished = book.finished.load(SeqCst);
        assert!(flights.len() <= finished);
        // A finished execution whose callers were all cancelled afterwards
        // is a flight nobody reports; without cancellation they match.
        if aborts.is_empty() && outcomes.len() == CALLERS {
            assert_eq!(flights.len(), finished, "executions == flights");
        }
        assert!(book.started.load(SeqCst) >= finished);
        // Results are per key and shared flags are consistent.
        for o in &outcomes {
            if let Outcome::Complete { result, shared } = &**o {
                let k = match result {
                    Ok(k) | Err(k) => *k,
                };
                assert!(hot.contains(&k));
                let holders = outcomes.iter().filter(|p| Arc::ptr_eq(p, o)).count();
                if holders > 1 {
                    assert!(*shared, "an outcome several callers got must be shared");
                }
            }
        }
        // Nothing left in flight.
        assert_eq!(group.in_flight(), 0, "a flight outlived every caller");
        assert!(group.is_empty(), "an entry outlived its flight");
        assert!(book.running.lock().unwrap().is_empty());
    });
}

// Property: 16 callers over 1–3 hot keys of a 1,000-key space, with work that
// fails or succeeds after some yields and callers that are aborted or give up:
// nobody hangs (shuttle reports deadlocks), never two executions of one key
// at once, executions == flights when nobody was cancelled, any outcome held
// by several callers is shared, and at the end nothing is in flight and the
// map is empty. Random scheduler.
#[test]
fn group_stampede_random() {
    shuttle::check_random(scenario, iterations());
}

// Property: as `group_stampede_random`, under shuttle's PCT scheduler
// (depth 3), which favours rare orderings.
#[test]
fn group_stampede_pct() {
    shuttle::check_pct(scenario, iterations(), 3);
}
