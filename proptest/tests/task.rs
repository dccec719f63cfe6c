//! Model-based tests of the collect family: children whose completion order
//! the test controls, driven by hand from one thread, checked against a
//! sequential model.
//!
//! Each case draws `n` children (a value or a panic, already finished or
//! waiting on a gate), a random order in which the gates open, random
//! spurious polls of the collect future, and possibly a point at which the
//! collect future is dropped. After every step:
//!
//! * `collect_all` is ready exactly when every child has finished, and then
//!   its results equal the model, in input order;
//! * `collect_any` resolves to the model's winner: the first child already
//!   finished at the start in input order (later children are never
//!   started), or else the first whose gate opens;
//! * no lost wake-ups: opening the gate of a pending child wakes the collect
//!   future;
//! * O(1) wake-ups: a child is polled once when started and once per wake of
//!   its own, never because another child woke or the collect future was
//!   polled spuriously (a `collect_any` loser gets one more poll when it is
//!   detached);
//! * dropping the collect future drops every started child exactly once.

use std::future::Future;
use std::panic;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Wake, Waker};

use lazyflight::task::{collect_all, collect_any, Lazy, Try};
use proptest::prelude::*;

const PLANNED: &str = "planned panic";

fn quiet_planned_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if info.payload().downcast_ref::<&str>() != Some(&PLANNED) {
                default(info);
            }
        }));
    });
}

#[derive(Default)]
struct Gate {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Gate {
    fn open(&self) {
        let w = {
            let mut s = self.state.lock().unwrap();
            s.0 = true;
            s.1.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }
}

#[derive(Default)]
struct Probe {
    polls: AtomicUsize,
    drops: AtomicUsize,
}

struct Child {
    gate: Arc<Gate>,
    probe: Arc<Probe>,
    value: Option<u32>,
    rewake: bool,
}

impl Future for Child {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
        self.probe.polls.fetch_add(1, SeqCst);
        let mut s = self.gate.state.lock().unwrap();
        if !s.0 {
            s.1 = Some(cx.waker().clone());
            return Poll::Pending;
        }
        drop(s);
        if self.rewake {
            // A child opened later wakes itself during the poll that sees
            // its gate open, and is ready at the next: a wake during its own
            // poll must get it polled again.
            self.get_mut().rewake = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match self.value {
            Some(v) => Poll::Ready(v),
            None => panic::panic_any(PLANNED),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.probe.drops.fetch_add(1, SeqCst);
    }
}

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

#[derive(Clone, Debug)]
struct Spec {
    /// `None`: the child panics.
    value: Option<u32>,
    /// The gate is open before the collect future is first polled.
    open_at_start: bool,
}

#[derive(Clone, Debug)]
struct Case {
    children: Vec<Spec>,
    order: Vec<usize>,
    spurious: Vec<bool>,
    drop_after: Option<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    (0usize..9)
        .prop_flat_map(|n| {
            let spec = (
                proptest::option::weighted(0.8, 0u32..1000),
                proptest::bool::weighted(0.2),
            )
                .prop_map(|(value, open_at_start)| Spec {
                    value,
                    open_at_start,
                });
            (
                proptest::collection::vec(spec, n),
                Just((0..n).collect::<Vec<_>>()).prop_shuffle(),
                proptest::collection::vec(any::<bool>(), n),
                proptest::option::weighted(0.25, 0..=n),
            )
        })
        .prop_map(|(children, order, spurious, drop_after)| Case {
            children,
            order,
            spurious,
            drop_after,
        })
}

struct Harness {
    gates: Vec<Arc<Gate>>,
    probes: Vec<Arc<Probe>>,
}

impl Harness {
    /// `rewake`: children opened later wake themselves once during the poll
    /// that sees their gate open (see `Child`).
    fn new(case: &Case, rewake: bool) -> (Self, Vec<Lazy<u32>>) {
        let gates: Vec<Arc<Gate>> = case.children.iter().map(|_| Arc::default()).collect();
        let probes: Vec<Arc<Probe>> = case.children.iter().map(|_| Arc::default()).collect();
        let lazies = case
            .children
            .iter()
            .zip(gates.iter().zip(&probes))
            .map(|(spec, (gate, probe))| {
                if spec.open_at_start {
                    gate.state.lock().unwrap().0 = true;
                }
                Lazy::new(Child {
                    gate: gate.clone(),
                    probe: probe.clone(),
                    value: spec.value,
                    rewake: rewake && !spec.open_at_start,
                })
            })
            .collect();
        (Harness { gates, probes }, lazies)
    }

    fn polls(&self) -> Vec<usize> {
        self.probes.iter().map(|p| p.polls.load(SeqCst)).collect()
    }
}

fn outcome(t: &Try<u32>) -> Option<u32> {
    match t.as_result() {
        Ok(v) => Some(*v),
        Err(e) => {
            assert_eq!(e.panic_message(), Some(PLANNED));
            None
        }
    }
}

fn check_all(case: &Case) -> Result<(), TestCaseError> {
    let (h, lazies) = Harness::new(case, true);
    let n = case.children.len();
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = Box::pin(collect_all(lazies));

    let mut finished: Vec<bool> = case.children.iter().map(|s| s.open_at_start).collect();
    let mut expected_polls = vec![1usize; n];
    let mut poll = fut.as_mut().poll(&mut cx);
    for (step, &i) in case.order.iter().enumerate() {
        if case.drop_after == Some(step) {
            drop(fut);
            for (k, p) in h.probes.iter().enumerate() {
                prop_assert_eq!(p.drops.load(SeqCst), 1, "child {} dropped once", k);
            }
            return Ok(());
        }
        prop_assert_eq!(poll.is_ready(), finished.iter().all(|&f| f));
        if finished[i] {
            continue;
        }
        let before = counter.0.load(SeqCst);
        h.gates[i].open();
        finished[i] = true;
        expected_polls[i] += 2;
        prop_assert!(
            counter.0.load(SeqCst) > before,
            "opening gate {} woke the collect",
            i
        );
        // As an executor would: poll again only if the collect was woken
        // since its last poll.
        let mut seen = counter.0.load(SeqCst);
        poll = fut.as_mut().poll(&mut cx);
        while poll.is_pending() {
            let now = counter.0.load(SeqCst);
            if now == seen {
                break;
            }
            seen = now;
            poll = fut.as_mut().poll(&mut cx);
        }
        if case.spurious[step] && poll.is_pending() {
            poll = fut.as_mut().poll(&mut cx);
        }
        prop_assert_eq!(
            h.polls(),
            expected_polls.clone(),
            "each child polled once per own wake"
        );
    }
    let out = match poll {
        Poll::Ready(out) => out,
        Poll::Pending => {
            return Err(TestCaseError::fail(
                "collect_all pending after every child finished",
            ))
        }
    };
    let got: Vec<Option<u32>> = out.iter().map(outcome).collect();
    let want: Vec<Option<u32>> = case.children.iter().map(|s| s.value).collect();
    prop_assert_eq!(got, want);
    drop(fut);
    for p in &h.probes {
        prop_assert_eq!(p.drops.load(SeqCst), 1);
    }
    Ok(())
}

fn check_any(case: &Case) -> Result<(), TestCaseError> {
    if case.children.is_empty() {
        return Ok(());
    }
    let (h, lazies) = Harness::new(case, false);
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = Box::pin(collect_any(lazies));

    let first_ready = case.children.iter().position(|s| s.open_at_start);
    let mut poll = fut.as_mut().poll(&mut cx);
    // Started in order until one is ready; those started before it are
    // losers, detached (one more poll each); those after it never start.
    let polls = h.polls();
    for (k, &p) in polls.iter().enumerate() {
        let want = match first_ready {
            None => 1,
            Some(w) if k < w => 2,
            Some(w) if k == w => 1,
            Some(_) => 0,
        };
        prop_assert_eq!(p, want, "child {} started iff before the first ready", k);
    }
    let winner = match first_ready {
        Some(w) => w,
        None => {
            let mut winner = None;
            // Runs until the first gate that opens decides the winner.
            #[allow(clippy::never_loop)]
            for (step, &i) in case.order.iter().enumerate() {
                if case.drop_after == Some(step) {
                    drop(fut);
                    for p in &h.probes {
                        prop_assert_eq!(p.drops.load(SeqCst), 1);
                    }
                    return Ok(());
                }
                if case.spurious[step] {
                    // Nothing changed: a poll must not touch any child.
                    let before = h.polls();
                    prop_assert!(fut.as_mut().poll(&mut cx).is_pending());
                    prop_assert_eq!(h.polls(), before, "a spurious poll re-polled a child");
                }
                let before = counter.0.load(SeqCst);
                h.gates[i].open();
                prop_assert!(
                    counter.0.load(SeqCst) > before,
                    "opening gate {} woke the collect",
                    i
                );
                let polls_before = h.polls();
                poll = fut.as_mut().poll(&mut cx);
                let polls_after = h.polls();
                // The winner is polled by its own wake; every started loser
                // is polled once more when it is detached (re-registering
                // its waker with its new root task). Nothing else.
                for k in 0..polls_before.len() {
                    prop_assert_eq!(
                        polls_after[k],
                        polls_before[k] + 1,
                        "child {} after the wake of child {}",
                        k,
                        i
                    );
                }
                winner = Some(i);
                break;
            }
            winner.expect("some gate opens")
        }
    };
    let r = match poll {
        Poll::Ready(r) => r,
        Poll::Pending => match fut.as_mut().poll(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => {
                return Err(TestCaseError::fail(
                    "collect_any pending after a child finished",
                ))
            }
        },
    };
    prop_assert_eq!(r.index, winner);
    prop_assert_eq!(outcome(&r.value), case.children[winner].value);
    drop(fut);
    // Without an executor, started losers are detached as root tasks that
    // run inline; opening their gates lets them finish and be dropped.
    for g in &h.gates {
        g.open();
    }
    for (k, p) in h.probes.iter().enumerate() {
        prop_assert_eq!(p.drops.load(SeqCst), 1, "child {} dropped exactly once", k);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn collect_all_matches_the_sequential_model(case in case()) {
        quiet_planned_panics();
        check_all(&case)?;
    }

    #[test]
    fn collect_any_matches_the_sequential_model(case in case()) {
        quiet_planned_panics();
        check_any(&case)?;
    }
}
