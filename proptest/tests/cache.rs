//! Model-based tests of `Cache`: proptest generates single-threaded sequences
//! of `get` (polled by hand, with initializers the test finishes by hand),
//! drops (cancellation), `invalidate`, `clear`, `peek`, `purge_expired` and
//! clock advances over two keys, under every error policy with and without a
//! time-to-live. Every step is checked against a small sequential reference
//! model of the cache's documented behaviour: whether a `get` is answered at
//! once, joins the init in flight or leads one (its initializer called), the
//! FIFO hand-off when a leader is cancelled, every result, what is stored and
//! for how long, what a purge removes, `len` and `peek`. Each caller is polled
//! with a waker of its own: a waiter must have been woken before the poll that
//! gives it its attempt's result, and the waiter handed a cancelled leader's
//! init must be woken by the hand-off.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use lazyflight::{Cache, ErrorPolicy, ManualClock};
use proptest::prelude::*;

const SLOTS: usize = 5;
type Res = Result<u8, u8>;

#[derive(Clone, Copy, Debug)]
enum Op {
    Get { slot: usize, key: u8 },
    Finish { slot: usize, ok: bool, v: u8 },
    Poll { slot: usize },
    Drop { slot: usize },
    Invalidate { key: u8 },
    Clear,
    Advance { secs: u8 },
    Peek { key: u8 },
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..SLOTS;
    let key = 0..2u8;
    prop_oneof![
        4 => (slot.clone(), key.clone()).prop_map(|(slot, key)| Op::Get { slot, key }),
        3 => (slot.clone(), any::<bool>(), 0..4u8).prop_map(|(slot, ok, v)| Op::Finish { slot, ok, v }),
        2 => slot.clone().prop_map(|slot| Op::Poll { slot }),
        2 => slot.prop_map(|slot| Op::Drop { slot }),
        1 => key.clone().prop_map(|key| Op::Invalidate { key }),
        1 => Just(Op::Clear),
        2 => (0..4u8).prop_map(|secs| Op::Advance { secs }),
        1 => key.prop_map(|key| Op::Peek { key }),
        1 => Just(Op::Purge),
    ]
}

fn policy() -> impl Strategy<Value = (ErrorPolicy, Option<Duration>)> {
    let errors = prop_oneof![
        Just(ErrorPolicy::Cached),
        Just(ErrorPolicy::CachedFor(Duration::from_secs(3))),
        // Longer than the 5 s time-to-live, which then applies to errors too.
        Just(ErrorPolicy::CachedFor(Duration::from_secs(7))),
        Just(ErrorPolicy::SharedOnly),
    ];
    let ttl = prop_oneof![Just(None), Just(Some(Duration::from_secs(5)))];
    (errors, ttl)
}

/// An initializer's future, finished by hand.
#[derive(Default)]
struct Gate {
    called: AtomicBool,
    result: Mutex<Option<Res>>,
}
struct GateFut(Arc<Gate>);
impl Future for GateFut {
    type Output = Res;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Res> {
        // Finished only by `Op::Finish`, which polls the caller right after.
        self.0
            .result
            .lock()
            .unwrap()
            .take()
            .map_or(Poll::Pending, Poll::Ready)
    }
}

type GetFut = Pin<Box<dyn Future<Output = Res>>>;

struct Slot {
    fut: GetFut,
    gate: Arc<Gate>,
    entry: usize,
    /// Counts the wake-ups of this caller's task.
    wakes: Arc<Wakes>,
    waker: Waker,
    /// `wakes` when this caller was last polled.
    seen: usize,
}

#[derive(Default)]
struct Wakes(AtomicUsize);

impl std::task::Wake for Wakes {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

impl Slot {
    /// Polls this caller with its own waker.
    fn poll(&mut self) -> Poll<Res> {
        self.seen = self.wakes.0.load(SeqCst);
        self.fut
            .as_mut()
            .poll(&mut Context::from_waker(&self.waker))
    }

    /// Whether this caller was woken since it was last polled.
    fn woken(&self) -> bool {
        self.wakes.0.load(SeqCst) > self.seen
    }
}

#[derive(Debug)]
enum MState {
    /// No init running and no result: the next caller leads.
    Empty,
    /// `leader` runs its init; `baton` was handed the right to and has not
    /// been polled since; `waiters` queue in FIFO order.
    InFlight {
        leader: Option<usize>,
        baton: Option<usize>,
        waiters: VecDeque<usize>,
    },
    Done {
        result: Res,
        at: Duration,
    },
}

#[derive(Debug)]
struct MEntry {
    key: u8,
    state: MState,
    /// Whether the table still maps `key` to this entry.
    in_table: bool,
}

struct Model {
    errors: ErrorPolicy,
    ttl: Option<Duration>,
    now: Duration,
    entries: Vec<MEntry>,
    table: HashMap<u8, usize>,
}

impl Model {
    fn fresh(&self, result: &Res, at: Duration) -> bool {
        let age = self.now - at;
        if self.ttl.is_some_and(|t| age >= t) {
            return false;
        }
        match (result, self.errors) {
            (Ok(_), _) => true,
            (Err(_), ErrorPolicy::Cached) => true,
            (Err(_), ErrorPolicy::CachedFor(d)) => age < d,
            (Err(_), ErrorPolicy::SharedOnly) => false,
        }
    }

    /// The cached answer for `key`, if `get` would return at once.
    fn cached(&self, key: u8) -> Option<Res> {
        let &id = self.table.get(&key)?;
        match &self.entries[id].state {
            MState::Done { result, at } if self.fresh(result, *at) => Some(*result),
            _ => None,
        }
    }

    fn new_entry(&mut self, key: u8, leader: usize) -> usize {
        self.entries.push(MEntry {
            key,
            state: MState::InFlight {
                leader: Some(leader),
                baton: None,
                waiters: VecDeque::new(),
            },
            in_table: true,
        });
        let id = self.entries.len() - 1;
        if let Some(old) = self.table.insert(key, id) {
            self.entries[old].in_table = false;
        }
        id
    }

    fn remove_from_table(&mut self, key: u8) -> bool {
        match self.table.remove(&key) {
            Some(id) => {
                self.entries[id].in_table = false;
                true
            }
            None => false,
        }
    }

    /// A leader or baton holder went away: the baton goes to the first
    /// waiter, or the entry is empty again.
    fn hand_off(&mut self, id: usize) {
        let MState::InFlight {
            leader,
            baton,
            waiters,
        } = &mut self.entries[id].state
        else {
            unreachable!("hand-off on an entry not in flight")
        };
        *leader = None;
        *baton = waiters.pop_front();
        if baton.is_none() {
            self.entries[id].state = MState::Empty;
        }
    }
}

fn run_ops(errors: ErrorPolicy, ttl: Option<Duration>, ops: Vec<Op>) {
    let clock = ManualClock::new();
    let mut b = Cache::<u8, u8, u8>::builder()
        .errors(errors)
        .clock(clock.clone());
    if let Some(t) = ttl {
        b = b.time_to_live(t);
    }
    // Leaked so that `get` futures can be boxed as `'static`.
    let cache: &'static Cache<u8, u8, u8> = Box::leak(Box::new(b.build()));
    let mut model = Model {
        errors,
        ttl,
        now: Duration::ZERO,
        entries: Vec::new(),
        table: HashMap::new(),
    };
    let mut slots: Vec<Option<Slot>> = (0..SLOTS).map(|_| None).collect();
    for op in ops {
        match op {
            Op::Get { slot, key } if slots[slot].is_none() => {
                let gate = Arc::new(Gate::default());
                let g = gate.clone();
                let mut fut: GetFut = Box::pin(cache.get(key, move || {
                    g.called.store(true, SeqCst);
                    GateFut(g)
                }));
                let wakes = Arc::new(Wakes::default());
                let waker = Waker::from(wakes.clone());
                let polled = fut.as_mut().poll(&mut Context::from_waker(&waker));
                if let Some(hit) = model.cached(key) {
                    assert_eq!(polled, Poll::Ready(hit), "a hit is answered at once");
                    assert!(!gate.called.load(SeqCst));
                    continue;
                }
                assert_eq!(polled, Poll::Pending);
                let joined = model
                    .table
                    .get(&key)
                    .copied()
                    .filter(|&id| matches!(model.entries[id].state, MState::InFlight { .. }));
                let id = match joined {
                    Some(id) => {
                        let MState::InFlight { waiters, .. } = &mut model.entries[id].state else {
                            unreachable!()
                        };
                        waiters.push_back(slot);
                        assert!(!gate.called.load(SeqCst), "a joiner ran its init");
                        id
                    }
                    None => {
                        assert!(gate.called.load(SeqCst), "a leader did not run its init");
                        match model.table.get(&key).copied() {
                            // An empty entry is reused.
                            Some(id) if matches!(model.entries[id].state, MState::Empty) => {
                                model.entries[id].state = MState::InFlight {
                                    leader: Some(slot),
                                    baton: None,
                                    waiters: VecDeque::new(),
                                };
                                id
                            }
                            // Absent or expired: a fresh entry.
                            _ => model.new_entry(key, slot),
                        }
                    }
                };
                slots[slot] = Some(Slot {
                    fut,
                    gate,
                    entry: id,
                    wakes,
                    waker,
                    seen: 0,
                });
            }
            Op::Finish { slot, ok, v } => {
                let Some(s) = slots[slot].as_mut() else {
                    continue;
                };
                let MState::InFlight {
                    leader, waiters, ..
                } = &model.entries[s.entry].state
                else {
                    continue;
                };
                if *leader != Some(slot) {
                    continue;
                }
                let r = if ok { Ok(v) } else { Err(v) };
                *s.gate.result.lock().unwrap() = Some(r);
                assert_eq!(s.poll(), Poll::Ready(r));
                let waiters: Vec<usize> = waiters.iter().copied().collect();
                let id = s.entry;
                slots[slot] = None;
                let key = model.entries[id].key;
                model.entries[id].state = MState::Done {
                    result: r,
                    at: model.now,
                };
                if !ok && errors == ErrorPolicy::SharedOnly && model.entries[id].in_table {
                    model.remove_from_table(key);
                }
                // Every waiter of this attempt gets its result.
                for w in waiters {
                    let ws = slots[w].as_mut().expect("a queued waiter is live");
                    assert!(ws.woken(), "a waiter was not woken by its attempt's result");
                    assert_eq!(ws.poll(), Poll::Ready(r), "a waiter got another result");
                    assert!(!ws.gate.called.load(SeqCst));
                    slots[w] = None;
                }
            }
            Op::Poll { slot } => {
                let Some(s) = slots[slot].as_mut() else {
                    continue;
                };
                let polled = s.poll();
                assert_eq!(polled, Poll::Pending, "only Finish completes an init");
                if let MState::InFlight { leader, baton, .. } = &mut model.entries[s.entry].state {
                    if *baton == Some(slot) {
                        // Handed the baton: it runs its own init now.
                        *baton = None;
                        *leader = Some(slot);
                        assert!(
                            s.gate.called.load(SeqCst),
                            "the baton holder did not run its init"
                        );
                    }
                }
            }
            Op::Drop { slot } => {
                let Some(s) = slots[slot].take() else {
                    continue;
                };
                drop(s.fut);
                if let MState::InFlight {
                    leader,
                    baton,
                    waiters,
                } = &mut model.entries[s.entry].state
                {
                    if *leader == Some(slot) || *baton == Some(slot) {
                        model.hand_off(s.entry);
                        if let MState::InFlight {
                            baton: Some(next), ..
                        } = model.entries[s.entry].state
                        {
                            let next = slots[next].as_ref().expect("a queued waiter is live");
                            assert!(next.woken(), "the waiter handed the init was not woken");
                        }
                    } else {
                        waiters.retain(|&w| w != slot);
                    }
                }
                // A caller that leaves its entry with nothing to finish it
                // (empty, nobody waiting) removes it from the table.
                let entry = &model.entries[s.entry];
                if matches!(entry.state, MState::Empty) && entry.in_table {
                    let key = entry.key;
                    model.remove_from_table(key);
                }
            }
            Op::Invalidate { key } => {
                let was = model.remove_from_table(key);
                assert_eq!(cache.invalidate(&key), was, "invalidate");
            }
            Op::Clear => {
                for key in 0..2 {
                    model.remove_from_table(key);
                }
                cache.clear();
            }
            Op::Advance { secs } => {
                let d = Duration::from_secs(secs.into());
                clock.advance(d);
                model.now += d;
            }
            Op::Peek { key } => assert_eq!(cache.peek(&key), model.cached(key), "peek"),
            Op::Purge => {
                // Finished entries whose result is no longer served leave;
                // entries in flight or empty stay.
                let expired: Vec<u8> = model
                    .table
                    .iter()
                    .filter(|&(_, &id)| match &model.entries[id].state {
                        MState::Done { result, at } => !model.fresh(result, *at),
                        _ => false,
                    })
                    .map(|(&key, _)| key)
                    .collect();
                for &key in &expired {
                    model.remove_from_table(key);
                }
                assert_eq!(cache.purge_expired(), expired.len(), "purge_expired");
            }
            _ => {}
        }
        assert_eq!(cache.len(), model.table.len(), "len");
        for key in 0..2 {
            assert_eq!(cache.peek(&key), model.cached(key), "peek of key {key}");
        }
    }
    // Cancelling everything leaves no init running and answers nothing wrong.
    for s in slots.iter_mut() {
        drop(s.take());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // Property: any single-threaded sequence of get / finish / poll / drop /
    // invalidate / clear / advance / peek / purge over two keys, under any error
    // policy and time-to-live, behaves as the sequential model: hits answered
    // at once without an init, joiners share the leader's result, a cancelled
    // leader hands the init to the longest waiter, invalidated and
    // SharedOnly-failed results are never stored, expiry is exact, a purge
    // removes exactly the expired results, and `len` and `peek` agree after
    // every step.
    #[test]
    fn cache_matches_the_sequential_model((errors, ttl) in policy(), ops in proptest::collection::vec(op(), 1..60)) {
        run_ops(errors, ttl, ops);
    }
}
