//! Model-based tests of `Group`: proptest generates single-threaded
//! sequences of `entry`, `run` (polled by hand), `complete`, drop, `forget`
//! and `recv` polls over two keys, and every step is checked against a small
//! sequential reference model of the group's documented behaviour: who
//! leads, who subscribes,
//! which outcome each caller receives (the very same `Arc` for one flight),
//! `shared`, the live subscriber count, the flights in progress, the keys in
//! the map, and exactly which waiting tasks were woken, once each.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use lazyflight::{Entry, Group, Leader, Outcome, Recv};
use proptest::prelude::*;

const SLOTS: usize = 6;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// `entry(key)` into slot `slot` (if it is free).
    Entry {
        slot: usize,
        key: u8,
    },
    /// `run(key, work)` into slot `slot`, polled once; its work stays pending
    /// until `Finish`.
    Run {
        slot: usize,
        key: u8,
    },
    /// The slot's leader completes with `Ok(v)` / `Err(v)`, or its `run`'s
    /// work finishes so, and the run is polled.
    Complete {
        slot: usize,
        ok: bool,
        v: u8,
    },
    /// Poll the slot (a subscriber's `recv`, or a `run`).
    Poll {
        slot: usize,
    },
    /// Drop whatever the slot holds (cancellation).
    Drop {
        slot: usize,
    },
    Forget {
        key: u8,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let key = 0..2u8;
    prop_oneof![
        3 => (slot.clone(), key.clone()).prop_map(|(slot, key)| Op::Entry { slot, key }),
        2 => (slot.clone(), key.clone()).prop_map(|(slot, key)| Op::Run { slot, key }),
        2 => (slot.clone(), any::<bool>(), 0..4u8).prop_map(|(slot, ok, v)| Op::Complete { slot, ok, v }),
        3 => slot.clone().prop_map(|slot| Op::Poll { slot }),
        2 => slot.prop_map(|slot| Op::Drop { slot }),
        1 => key.prop_map(|key| Op::Forget { key }),
    ]
}

#[derive(Default)]
struct Wakes(AtomicUsize);
impl Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

type G = Group<u8, u8, u8>;
type Out = Arc<Outcome<u8, u8>>;
type RunFut = Pin<Box<dyn Future<Output = Out>>>;

/// The work a `run` leader awaits: finished by hand.
#[derive(Default)]
struct Gate {
    result: std::sync::Mutex<Option<Result<u8, u8>>>,
    waker: std::sync::Mutex<Option<Waker>>,
}
struct GateFut(Arc<Gate>);
impl Future for GateFut {
    type Output = Result<u8, u8>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.0.result.lock().unwrap().take() {
            Some(r) => Poll::Ready(r),
            None => {
                *self.0.waker.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

enum Handle {
    Leader(Leader<u8, u8, u8>, usize),
    Sub(Pin<Box<Recv<u8, u8>>>, usize),
    RunLead(RunFut, usize, Arc<Gate>),
    RunSub(RunFut, usize),
    /// Resolved: nothing left to do.
    Done,
}

struct Slot {
    handle: Handle,
    wakes: Arc<Wakes>,
    waker: Waker,
    /// Wake-ups the model expects so far (subscribers only; a `run` leader
    /// wakes itself for its join window and through its work).
    expect_wakes: usize,
    /// Registered in the flight's queue (polled while pending).
    waiting: bool,
}

impl Slot {
    fn new(handle: Handle) -> Self {
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(wakes.clone());
        Slot {
            handle,
            wakes,
            waker,
            expect_wakes: 0,
            waiting: false,
        }
    }

    fn subscriber_of(&self) -> Option<usize> {
        match self.handle {
            Handle::Sub(_, id) | Handle::RunSub(_, id) => Some(id),
            _ => None,
        }
    }
}

/// The sequential reference model of one flight.
#[derive(Clone, Debug)]
struct MFlight {
    key: u8,
    joins: usize,
    live_subs: usize,
    /// `Some` once published: `None` inside for Canceled, else (ok, v, shared).
    outcome: Option<Option<(bool, u8, bool)>>,
    seen: Option<Out>,
}

struct Model {
    flights: Vec<MFlight>,
    mapped: HashMap<u8, usize>,
}

impl Model {
    fn in_flight(&self) -> usize {
        self.flights.iter().filter(|f| f.outcome.is_none()).count()
    }

    fn join_or_lead(&mut self, key: u8) -> (bool, usize) {
        match self.mapped.get(&key) {
            Some(&id) => {
                self.flights[id].joins += 1;
                self.flights[id].live_subs += 1;
                (false, id)
            }
            None => {
                self.flights.push(MFlight {
                    key,
                    joins: 0,
                    live_subs: 0,
                    outcome: None,
                    seen: None,
                });
                let id = self.flights.len() - 1;
                self.mapped.insert(key, id);
                (true, id)
            }
        }
    }

    /// Publishes flight `id`: out of the map, and each registered subscriber
    /// woken once.
    fn publish(&mut self, id: usize, result: Option<(bool, u8)>, slots: &mut [Option<Slot>]) {
        let f = &mut self.flights[id];
        assert!(f.outcome.is_none(), "published twice");
        f.outcome = Some(result.map(|(ok, v)| (ok, v, f.joins > 0)));
        if self.mapped.get(&f.key) == Some(&id) {
            self.mapped.remove(&f.key);
        }
        for s in slots.iter_mut().flatten() {
            if s.subscriber_of() == Some(id) && s.waiting {
                s.expect_wakes += 1;
                s.waiting = false;
            }
        }
    }

    /// Checks `out` against flight `id`'s published outcome, and that every
    /// caller of the flight gets the same `Arc`.
    fn check_outcome(&mut self, id: usize, out: &Out) {
        let f = &mut self.flights[id];
        let expected = f.outcome.expect("published");
        match (expected, &**out) {
            (None, Outcome::Canceled) => {}
            (Some((ok, v, shared)), Outcome::Complete { result, shared: s }) => {
                assert_eq!(*result, if ok { Ok(v) } else { Err(v) });
                assert_eq!(*s, shared, "shared");
            }
            (e, o) => panic!("expected {e:?}, got {o:?}"),
        }
        match &f.seen {
            Some(prev) => assert!(Arc::ptr_eq(prev, out), "one flight, one Arc"),
            None => f.seen = Some(out.clone()),
        }
    }
}

fn result_of(o: &Outcome<u8, u8>) -> Option<(bool, u8)> {
    match o {
        Outcome::Complete { result: Ok(v), .. } => Some((true, *v)),
        Outcome::Complete { result: Err(v), .. } => Some((false, *v)),
        Outcome::Canceled => None,
    }
}

/// Polls slot `i` once and updates the model.
fn poll_slot(i: usize, slots: &mut [Option<Slot>], model: &mut Model) {
    let Some(s) = slots[i].as_mut() else { return };
    let mut cx = Context::from_waker(&s.waker);
    let polled: Option<(usize, bool, Out)> = match &mut s.handle {
        Handle::Leader(..) | Handle::Done => return,
        Handle::Sub(r, id) => match r.as_mut().poll(&mut cx) {
            Poll::Ready(out) => Some((*id, false, out.unwrap())),
            Poll::Pending => {
                assert!(
                    model.flights[*id].outcome.is_none(),
                    "a subscriber pending after publication"
                );
                s.waiting = true;
                None
            }
        },
        Handle::RunSub(fut, id) => match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => Some((*id, false, out)),
            Poll::Pending => {
                assert!(
                    model.flights[*id].outcome.is_none(),
                    "a subscriber pending after publication"
                );
                s.waiting = true;
                None
            }
        },
        Handle::RunLead(fut, id, _) => match fut.as_mut().poll(&mut cx) {
            Poll::Ready(out) => Some((*id, true, out)),
            Poll::Pending => None,
        },
    };
    let Some((id, leads, out)) = polled else {
        return;
    };
    s.handle = Handle::Done;
    s.waiting = false;
    if leads {
        // The leader's work returned: it publishes now.
        model.publish(
            id,
            Some(result_of(&out).expect("a live leader completes")),
            slots,
        );
    } else {
        assert!(
            model.flights[id].outcome.is_some(),
            "resolved before its flight was published"
        );
        model.flights[id].live_subs -= 1;
    }
    model.check_outcome(id, &out);
}

fn run_ops(ops: Vec<Op>) {
    // Leaked so that `run` futures can be boxed as `'static`.
    let group: &'static G = Box::leak(Box::new(G::new()));
    let mut model = Model {
        flights: Vec::new(),
        mapped: HashMap::new(),
    };
    let mut slots: Vec<Option<Slot>> = (0..SLOTS).map(|_| None).collect();
    // Dropped subscribers' wake counters, with their count at the drop: a
    // dropped subscriber leaves the queue at once, so it is never woken
    // again and nothing keeps its waker.
    let mut gone: Vec<(Arc<Wakes>, usize)> = Vec::new();

    for op in ops {
        match op {
            Op::Entry { slot, key } if slots[slot].is_none() => {
                let (leads, id) = model.join_or_lead(key);
                let handle = match (group.entry(key), leads) {
                    (Entry::Leader(l), true) => Handle::Leader(l, id),
                    (Entry::Subscriber(s), false) => Handle::Sub(Box::pin(s.recv()), id),
                    (_, leads) => panic!("entry: the model says leads = {leads}"),
                };
                slots[slot] = Some(Slot::new(handle));
            }
            Op::Run { slot, key } if slots[slot].is_none() => {
                let (leads, id) = model.join_or_lead(key);
                let gate = Arc::new(Gate::default());
                let g = gate.clone();
                let fut: RunFut = Box::pin(group.run(key, move || GateFut(g)));
                let handle = if leads {
                    Handle::RunLead(fut, id, gate)
                } else {
                    Handle::RunSub(fut, id)
                };
                slots[slot] = Some(Slot::new(handle));
                poll_slot(slot, &mut slots, &mut model);
            }
            Op::Complete { slot, ok, v } => {
                let r = if ok { Ok(v) } else { Err(v) };
                match slots[slot].as_ref().map(|s| &s.handle) {
                    Some(Handle::Leader(..)) => {
                        let Some(Slot {
                            handle: Handle::Leader(l, id),
                            ..
                        }) = slots[slot].take()
                        else {
                            unreachable!()
                        };
                        model.publish(id, Some((ok, v)), &mut slots);
                        let out = l.complete(r);
                        model.check_outcome(id, &out);
                    }
                    Some(Handle::RunLead(_, id, gate)) => {
                        let (id, gate) = (*id, gate.clone());
                        let before = slots[slot].as_ref().unwrap().wakes.0.load(SeqCst);
                        *gate.result.lock().unwrap() = Some(r);
                        let w = gate.waker.lock().unwrap().take();
                        if let Some(w) = w {
                            w.wake();
                        }
                        // The work's wake reached the run's task, and
                        // polling it (as an executor would, once) publishes
                        // this very result.
                        assert!(
                            slots[slot].as_ref().unwrap().wakes.0.load(SeqCst) > before,
                            "the work's wake did not reach the run's task"
                        );
                        poll_slot(slot, &mut slots, &mut model);
                        assert!(
                            matches!(slots[slot].as_ref().map(|s| &s.handle), Some(Handle::Done)),
                            "a run whose work finished did not complete when polled"
                        );
                        assert_eq!(
                            model.flights[id].outcome,
                            Some(Some((ok, v, model.flights[id].joins > 0))),
                            "the run's leader published another result"
                        );
                    }
                    _ => {}
                }
            }
            Op::Poll { slot } => poll_slot(slot, &mut slots, &mut model),
            Op::Drop { slot } => {
                let Some(s) = slots[slot].take() else {
                    continue;
                };
                match s.handle {
                    Handle::Leader(l, id) => {
                        model.publish(id, None, &mut slots);
                        drop(l);
                    }
                    Handle::RunLead(fut, id, _) => {
                        model.publish(id, None, &mut slots);
                        drop(fut);
                    }
                    Handle::Sub(_, id) | Handle::RunSub(_, id) => {
                        model.flights[id].live_subs -= 1;
                        let wakes = s.wakes.clone();
                        drop(s.handle);
                        drop(s.waker);
                        let n = wakes.0.load(SeqCst);
                        gone.push((wakes, n));
                    }
                    Handle::Done => {}
                }
            }
            Op::Forget { key } => {
                let was = model.mapped.remove(&key).is_some();
                assert_eq!(group.forget(&key), was, "forget");
            }
            _ => {}
        }

        // Invariants after every step.
        for (w, n) in &gone {
            assert_eq!(w.0.load(SeqCst), *n, "a dropped subscriber was woken");
            assert_eq!(
                Arc::strong_count(w),
                1,
                "a dropped subscriber's waker was kept"
            );
        }
        assert_eq!(group.in_flight(), model.in_flight(), "in_flight");
        assert_eq!(group.len(), model.mapped.len(), "keys in the map");
        for key in 0..2u8 {
            let expected = model
                .mapped
                .get(&key)
                .map_or(0, |&id| model.flights[id].live_subs);
            assert_eq!(
                group.subscribers(&key),
                expected,
                "live subscribers of key {key}"
            );
        }
        for s in slots.iter().flatten() {
            if s.subscriber_of().is_some() {
                assert_eq!(
                    s.wakes.0.load(SeqCst),
                    s.expect_wakes,
                    "wake-ups of a subscriber"
                );
            }
            if let Handle::Leader(l, id) = &s.handle {
                assert_eq!(
                    l.subscribers(),
                    model.flights[*id].live_subs,
                    "Leader::subscribers"
                );
                assert_eq!(l.joins(), model.flights[*id].joins, "Leader::joins");
            }
        }
    }

    // Cancel whatever is left; nothing stays behind.
    for s in slots.iter_mut() {
        drop(s.take());
    }
    assert_eq!(group.in_flight(), 0);
    assert!(group.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // Property: any single-threaded sequence of entry / run / complete / poll
    // / drop / forget over two keys behaves as the sequential model: who
    // leads, every outcome (one Arc per flight, exact `shared`), live
    // subscriber and in-flight counts, the map, and one wake-up per waiting
    // subscriber; and dropping everything leaves nothing behind.
    #[test]
    fn group_matches_the_sequential_model(ops in proptest::collection::vec(op(), 1..60)) {
        run_ops(ops);
    }
}
