//! Model-based tests of `ALazy`: proptest generates single-threaded,
//! deterministic schedules over up to five callers of one cell, each polled
//! by hand with a counting waker, whose initializers are futures the test
//! completes by hand. Every step is checked against a small sequential
//! reference model of the contract; proptest shrinks a failing schedule to a
//! minimal one.
//!
//! Operations:
//! * `Poll(i)`: poll caller `i` (starting a new call in slot `i` if its last
//!   one finished or was dropped);
//! * `Drop(i)`: drop caller `i`'s call (cancellation);
//! * `Ok` / `Err`: the running initializer returns `Ok` / `Err` on its next
//!   poll (it wakes the task that polled it last, like a real event source);
//! * `Panic`: the running initializer panics on its next poll (the caller's
//!   poll is wrapped in `catch_unwind`).
//!
//! After every step the test compares with the model: the poll's result,
//! which callers' closures were called (so which caller leads, FIFO after a
//! hand-off), exactly which tasks were woken and how often, `state()`,
//! `get()`, `get_result()` and `waiting()`. At the end it drives every call
//! like an executor would (polling only woken tasks, completing a pending
//! initializer when nothing else can move) and checks that nobody hangs and
//! everybody agrees on the cached result.
//!
//! The `owned` properties run the same schedules through
//! `get_or_init_owned`; there slot 0 plays a parked leader in the final
//! drive: it is never polled until every other call has finished.

use std::collections::VecDeque;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll, Wake, Waker};

use lazyflight::{ALazy, State};
use proptest::prelude::*;

const SLOTS: usize = 5;

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Poll(usize),
    Drop(usize),
    Ok,
    Err,
    Panic,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..SLOTS).prop_map(Op::Poll),
        2 => (0..SLOTS).prop_map(Op::Drop),
        1 => Just(Op::Ok),
        1 => Just(Op::Err),
        1 => Just(Op::Panic),
    ]
}

// ---------------------------------------------------------------------------
// Hand-driven initializers
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmd {
    Ok,
    Err,
    Panic,
}

/// What the test tells the running initializer, and what it saw happen.
#[derive(Default)]
struct Control {
    /// Call id of the initializer alive right now.
    live: Option<u32>,
    /// What it does on its next poll.
    command: Option<Cmd>,
    /// The waker it was last polled with.
    waker: Option<Waker>,
    /// Closures called (call ids), in order.
    created: Vec<u32>,
}

/// The payload of a deliberate initializer panic.
#[derive(Debug)]
struct InitPanic(#[allow(dead_code)] u32);

const OWNED_PANIC: &str = "ALazy: the owned initializer started by this call panicked";

struct InitFut {
    id: u32,
    ctl: Arc<Mutex<Control>>,
    finished: bool,
}

impl Future for InitFut {
    type Output = Result<u32, u32>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<u32, u32>> {
        let id = self.id;
        let mut c = self.ctl.lock().unwrap();
        assert_eq!(
            c.live,
            Some(id),
            "initializer {id} polled while not the live one"
        );
        let cmd = c.command.take();
        if cmd.is_none() {
            c.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        c.live = None;
        c.waker = None;
        drop(c);
        self.finished = true;
        match cmd.unwrap() {
            Cmd::Ok => Poll::Ready(Ok(id)),
            Cmd::Err => Poll::Ready(Err(id)),
            Cmd::Panic => panic::panic_any(InitPanic(id)),
        }
    }
}

impl Drop for InitFut {
    fn drop(&mut self) {
        if !self.finished {
            let mut c = self.ctl.lock().unwrap();
            assert_eq!(
                c.live,
                Some(self.id),
                "initializer {} dropped while not live",
                self.id
            );
            c.live = None;
            c.waker = None;
            c.command = None;
        }
    }
}

fn init(id: u32, ctl: &Arc<Mutex<Control>>) -> impl FnOnce() -> InitFut {
    let ctl = ctl.clone();
    move || {
        let mut c = ctl.lock().unwrap();
        assert_eq!(
            c.live, None,
            "closure of call {id} called while initializer {:?} lives",
            c.live
        );
        c.live = Some(id);
        c.created.push(id);
        drop(c);
        InitFut {
            id,
            ctl,
            finished: false,
        }
    }
}

// ---------------------------------------------------------------------------
// Callers, polled by hand
// ---------------------------------------------------------------------------

struct Counter(AtomicUsize);

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

type CallFut<'a> = Pin<Box<dyn Future<Output = Result<&'a u32, &'a u32>> + 'a>>;

struct Slot<'a> {
    fut: Option<CallFut<'a>>,
    counter: Arc<Counter>,
    waker: Waker,
    /// Wake count at the last check.
    seen: usize,
    /// Wake count at the last poll (the executor's view: woken since?).
    polled_at: usize,
}

/// What one poll returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Out {
    Pending,
    Ready(Result<u32, u32>),
    /// The panic of initializer `.0` came out of this poll.
    InitPanicked(u32),
    /// This call's own owned initializer had panicked elsewhere.
    OwnPanicked,
}

// ---------------------------------------------------------------------------
// The reference model
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cell {
    Empty,
    /// Plain mode: a caller holds the right to initialize (or it is in
    /// transit to the head of the queue). Owned mode: driver generation.
    Init(u32),
    Done(Result<u32, u32>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    /// Plain: the leader, its initializer alive.
    Leading,
    /// Plain: linked in the cell's queue.
    Queued,
    /// Plain: singled out by the hand-off (holds the baton), not yet polled.
    Handed,
    /// Plain: woken by the broadcast at publication, not yet polled.
    Woken,
    /// Owned: in the helper list of driver `gen`; `notified` if the
    /// broadcast reached it since its last poll.
    Driving { gen: u32, notified: bool },
}

#[derive(Clone, Copy, Debug)]
struct Active {
    id: u32,
    call: Call,
    /// Owned: the driver generation this call installed, if any.
    installed: Option<u32>,
}

#[derive(Debug)]
struct Model {
    owned: bool,
    cell: Cell,
    slots: [Option<Active>; SLOTS],
    /// Plain: the cell's FIFO (slot numbers).
    queue: VecDeque<usize>,
    /// The live initializer: (call id, owned-mode generation).
    live: Option<(u32, u32)>,
    command: Option<Cmd>,
    /// Who polled the live initializer last (its waker's owner). Owned: all
    /// helpers of that generation, through the shared waker.
    init_waker: Option<usize>,
    gens: u32,
    /// Generations whose initializer panicked.
    panicked: Vec<u32>,
    /// Generation -> installing call id.
    installer: Vec<(u32, u32)>,
    next_id: u32,
}

/// What the model expects one step to do.
#[derive(Debug, Default)]
struct Expect {
    out: Option<Out>,
    created: Vec<u32>,
    wakes: [usize; SLOTS],
}

impl Model {
    fn new(owned: bool) -> Model {
        Model {
            owned,
            cell: Cell::Empty,
            slots: [None; SLOTS],
            queue: VecDeque::new(),
            live: None,
            command: None,
            init_waker: None,
            gens: 0,
            panicked: Vec::new(),
            installer: Vec::new(),
            next_id: 0,
        }
    }

    fn state(&self) -> State {
        match self.cell {
            Cell::Empty => State::Empty,
            Cell::Init(_) => State::Initializing,
            Cell::Done(Ok(_)) => State::Filled,
            Cell::Done(Err(_)) => State::Failed,
        }
    }

    fn start_init(&mut self, slot: usize, id: u32, e: &mut Expect) {
        assert!(self.live.is_none());
        e.created.push(id);
        self.live = Some((id, self.gens));
        self.command = None;
        self.init_waker = Some(slot);
    }

    /// Plain-mode hand-off by a departing baton holder.
    fn hand_off(&mut self, e: &mut Expect) {
        match self.queue.pop_front() {
            Some(next) => {
                self.slots[next].as_mut().unwrap().call = Call::Handed;
                e.wakes[next] += 1;
            }
            None => self.cell = Cell::Empty,
        }
    }

    /// Owned mode: broadcast to every helper of `gen` not yet notified.
    fn notify_helpers(&mut self, gen: u32, e: &mut Expect) {
        for (i, s) in self.slots.iter_mut().enumerate() {
            if let Some(Active {
                call: Call::Driving { gen: g, notified },
                ..
            }) = s
            {
                if *g == gen && !*notified {
                    *notified = true;
                    e.wakes[i] += 1;
                }
            }
        }
    }

    fn step(&mut self, op: Op) -> Expect {
        let mut e = Expect::default();
        match op {
            Op::Ok | Op::Err | Op::Panic => {
                if self.live.is_some() && self.command.is_none() {
                    self.command = Some(match op {
                        Op::Ok => Cmd::Ok,
                        Op::Err => Cmd::Err,
                        _ => Cmd::Panic,
                    });
                    let gen = self.live.unwrap().1;
                    if self.owned {
                        self.notify_helpers(gen, &mut e);
                    } else if let Some(w) = self.init_waker {
                        e.wakes[w] += 1;
                    }
                }
            }
            Op::Drop(i) => {
                if let Some(a) = self.slots[i].take() {
                    match a.call {
                        Call::Leading => {
                            self.live = None;
                            self.command = None;
                            self.init_waker = None;
                            self.hand_off(&mut e);
                        }
                        Call::Queued => self.queue.retain(|&s| s != i),
                        Call::Handed => self.hand_off(&mut e),
                        Call::Woken | Call::Driving { .. } => {}
                    }
                }
            }
            Op::Poll(i) => {
                let a = match self.slots[i] {
                    Some(a) => a,
                    None => {
                        let id = self.next_id;
                        self.next_id += 1;
                        // A new call: the fast path, then `acquire`.
                        if let Cell::Done(r) = self.cell {
                            e.out = Some(Out::Ready(r));
                            return e;
                        }
                        Active {
                            id,
                            call: Call::Woken,
                            installed: None,
                        }
                    }
                };
                let out = if self.owned {
                    self.poll_owned(i, a, &mut e)
                } else {
                    self.poll_plain(i, a, &mut e)
                };
                e.out = Some(out);
            }
        }
        e
    }

    fn poll_plain(&mut self, i: usize, a: Active, e: &mut Expect) -> Out {
        let id = a.id;
        match a.call {
            Call::Queued => {
                self.slots[i] = Some(a);
                return Out::Pending;
            }
            Call::Leading => {}
            Call::Handed => {
                self.start_init(i, id, e);
                self.slots[i] = Some(Active {
                    call: Call::Leading,
                    ..a
                });
                return Out::Pending;
            }
            // A fresh call, or one woken by the broadcast: `acquire`.
            Call::Woken => match self.cell {
                Cell::Done(r) => {
                    self.slots[i] = None;
                    return Out::Ready(r);
                }
                Cell::Empty => {
                    self.cell = Cell::Init(0);
                    self.start_init(i, id, e);
                    self.slots[i] = Some(Active {
                        call: Call::Leading,
                        ..a
                    });
                    return Out::Pending;
                }
                Cell::Init(_) => {
                    self.queue.push_back(i);
                    self.slots[i] = Some(Active {
                        call: Call::Queued,
                        ..a
                    });
                    return Out::Pending;
                }
            },
            Call::Driving { .. } => unreachable!("plain mode"),
        }
        // The leader polls its initializer.
        self.init_waker = Some(i);
        match self.command.take() {
            None => {
                self.slots[i] = Some(a);
                Out::Pending
            }
            Some(Cmd::Panic) => {
                self.live = None;
                self.init_waker = None;
                self.slots[i] = None;
                self.hand_off(e);
                Out::InitPanicked(id)
            }
            Some(cmd) => {
                let r = if cmd == Cmd::Ok { Ok(id) } else { Err(id) };
                self.live = None;
                self.init_waker = None;
                self.cell = Cell::Done(r);
                for s in self.queue.drain(..) {
                    self.slots[s].as_mut().unwrap().call = Call::Woken;
                    e.wakes[s] += 1;
                }
                self.slots[i] = None;
                Out::Ready(r)
            }
        }
    }

    fn poll_owned(&mut self, i: usize, mut a: Active, e: &mut Expect) -> Out {
        // Inside `Drive::poll` of the generation the call helps, if any.
        if let Call::Driving { gen, notified } = a.call {
            let done = self.cell != Cell::Init(gen);
            if !notified && done {
                unreachable!("every helper is notified when its driver finishes");
            }
            a.call = Call::Driving {
                gen,
                notified: false,
            };
            if !done {
                if let Some(out) = self.drive(i, &mut a, gen, e) {
                    return out;
                }
                self.slots[i] = Some(a);
                return Out::Pending;
            }
        }
        // `acquire`'s loop.
        loop {
            if let Some(g) = a.installed {
                if self.panicked.contains(&g) {
                    self.slots[i] = None;
                    return Out::OwnPanicked;
                }
            }
            match self.cell {
                Cell::Done(r) => {
                    self.slots[i] = None;
                    return Out::Ready(r);
                }
                Cell::Empty => {
                    assert!(a.installed.is_none(), "a call installs at most once");
                    self.gens += 1;
                    let gen = self.gens;
                    self.start_init(i, a.id, e);
                    self.installer.push((gen, a.id));
                    self.cell = Cell::Init(gen);
                    a.installed = Some(gen);
                }
                Cell::Init(gen) => {
                    a.call = Call::Driving {
                        gen,
                        notified: false,
                    };
                    if let Some(out) = self.drive(i, &mut a, gen, e) {
                        return out;
                    }
                    self.slots[i] = Some(a);
                    return Out::Pending;
                }
            }
        }
    }

    /// Polls the owned initializer of `gen` from call `a` (registered as a
    /// helper). `Some` if the call finished in this poll.
    fn drive(&mut self, i: usize, a: &mut Active, gen: u32, e: &mut Expect) -> Option<Out> {
        self.slots[i] = Some(*a);
        match self.command.take() {
            None => {
                self.init_waker = Some(i);
                None
            }
            Some(cmd) => {
                self.live = None;
                self.init_waker = None;
                if cmd == Cmd::Panic {
                    self.panicked.push(gen);
                    self.cell = Cell::Empty;
                    self.notify_helpers(gen, e);
                    self.slots[i] = None;
                    let owner = self.installer.iter().find(|(g, _)| *g == gen).unwrap().1;
                    return Some(Out::InitPanicked(owner));
                }
                let owner = self.installer.iter().find(|(g, _)| *g == gen).unwrap().1;
                let r = if cmd == Cmd::Ok {
                    Ok(owner)
                } else {
                    Err(owner)
                };
                self.cell = Cell::Done(r);
                self.notify_helpers(gen, e);
                self.slots[i] = None;
                Some(Out::Ready(r))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Running a schedule
// ---------------------------------------------------------------------------

struct Harness<'a> {
    owned: bool,
    cell: &'a ALazy<u32, u32>,
    ctl: Arc<Mutex<Control>>,
    slots: Vec<Slot<'a>>,
    model: Model,
    next_id: u32,
    log: Vec<Op>,
}

impl<'a> Harness<'a> {
    fn new(cell: &'a ALazy<u32, u32>, owned: bool) -> Self {
        let slots = (0..SLOTS)
            .map(|_| {
                let counter = Arc::new(Counter(AtomicUsize::new(0)));
                let waker = Waker::from(counter.clone());
                Slot {
                    fut: None,
                    counter,
                    waker,
                    seen: 0,
                    polled_at: 0,
                }
            })
            .collect();
        Harness {
            owned,
            cell,
            ctl: Arc::new(Mutex::new(Control::default())),
            slots,
            model: Model::new(owned),
            next_id: 0,
            log: Vec::new(),
        }
    }

    fn poll_slot(&mut self, i: usize) -> Out {
        let slot = &mut self.slots[i];
        if slot.fut.is_none() {
            let id = self.next_id;
            self.next_id += 1;
            let f = init(id, &self.ctl);
            slot.fut = Some(if self.owned {
                Box::pin(self.cell.get_or_init_owned(f))
            } else {
                Box::pin(self.cell.get_or_init(f))
            });
        }
        slot.polled_at = slot.counter.0.load(SeqCst);
        let fut = slot.fut.as_mut().unwrap();
        let mut cx = Context::from_waker(&slot.waker);
        match panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))) {
            Ok(Poll::Pending) => Out::Pending,
            Ok(Poll::Ready(r)) => {
                slot.fut = None;
                Out::Ready(r.copied().map_err(|e| *e))
            }
            Err(payload) => {
                slot.fut = None;
                if let Some(InitPanic(id)) = payload.downcast_ref::<InitPanic>() {
                    Out::InitPanicked(*id)
                } else if payload.downcast_ref::<&str>() == Some(&OWNED_PANIC) {
                    Out::OwnPanicked
                } else {
                    panic::resume_unwind(payload)
                }
            }
        }
    }

    /// Applies `op` to the real cell and to the model, and compares.
    fn step(&mut self, op: Op) {
        self.log.push(op);
        let created_before = self.ctl.lock().unwrap().created.len();
        let expect = self.model.step(op);
        let out = match op {
            Op::Poll(i) => Some(self.poll_slot(i)),
            Op::Drop(i) => {
                self.slots[i].fut = None;
                None
            }
            Op::Ok | Op::Err | Op::Panic => {
                let mut c = self.ctl.lock().unwrap();
                if c.live.is_some() && c.command.is_none() {
                    c.command = Some(match op {
                        Op::Ok => Cmd::Ok,
                        Op::Err => Cmd::Err,
                        _ => Cmd::Panic,
                    });
                    let w = c.waker.clone();
                    drop(c);
                    if let Some(w) = w {
                        w.wake();
                    }
                }
                None
            }
        };
        let ctx = || {
            format!(
                "after {:?} (schedule {:?}); model {:#?}",
                op, self.log, self.model
            )
        };
        assert_eq!(out, expect.out, "poll result {}", ctx());
        let created = self.ctl.lock().unwrap().created[created_before..].to_vec();
        assert_eq!(created, expect.created, "closures called {}", ctx());
        let mut wakes = [0; SLOTS];
        for (i, s) in self.slots.iter_mut().enumerate() {
            let now = s.counter.0.load(SeqCst);
            wakes[i] = now - s.seen;
            s.seen = now;
        }
        assert_eq!(wakes, expect.wakes, "wake-ups per caller {}", ctx());
        self.check_cell(&ctx);
    }

    fn check_cell(&self, ctx: &dyn Fn() -> String) {
        let cell = self.cell;
        assert_eq!(cell.state(), self.model.state(), "state() {}", ctx());
        let fin = match self.model.cell {
            Cell::Done(r) => Some(r),
            _ => None,
        };
        assert_eq!(
            cell.get().copied(),
            fin.and_then(|r| r.ok()),
            "get() {}",
            ctx()
        );
        assert_eq!(
            cell.get_result().map(|r| r.copied().map_err(|e| *e)),
            fin,
            "get_result() {}",
            ctx()
        );
        assert_eq!(
            cell.waiting(),
            self.model.queue.len(),
            "waiting() {}",
            ctx()
        );
        assert_eq!(
            self.ctl.lock().unwrap().live,
            self.model.live.map(|(id, _)| id),
            "live initializer {}",
            ctx()
        );
    }

    /// Drives every call to the end like an executor: polls only calls
    /// woken since their last poll (or never polled), and completes the
    /// initializer when nothing else can move. `parked` is never polled.
    fn drive_all(&mut self, parked: Option<usize>) {
        for _ in 0..1000 {
            let runnable = (0..SLOTS).find(|&i| {
                let s = &self.slots[i];
                Some(i) != parked && s.fut.is_some() && s.counter.0.load(SeqCst) > s.polled_at
            });
            if let Some(i) = runnable {
                self.step(Op::Poll(i));
                continue;
            }
            if self.model.live.is_some() && self.model.command.is_none() {
                self.step(Op::Ok);
                continue;
            }
            break;
        }
        for i in 0..SLOTS {
            assert!(
                Some(i) == parked || self.slots[i].fut.is_none(),
                "caller {i} hangs: nobody will wake it (schedule {:?}); model {:#?}",
                self.log,
                self.model
            );
        }
    }
}

fn quiet_init_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let inner = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let p = info.payload();
            if p.is::<InitPanic>() || p.downcast_ref::<&str>() == Some(&OWNED_PANIC) {
                return;
            }
            inner(info);
        }));
    });
}

fn run_schedule(ops: &[Op], owned: bool) {
    quiet_init_panics();
    let cell = ALazy::<u32, u32>::new();
    let mut h = Harness::new(&cell, owned);
    for &op in ops {
        h.step(op);
    }
    // Finish: slot 0 plays a parked leader in owned mode.
    let parked = if owned { Some(0) } else { None };
    h.drive_all(parked);
    if parked.is_some() {
        h.drive_all(None);
    }
    if owned && cell.state() == State::Initializing {
        // Every caller of a pending owned initializer went away: it stays in
        // the cell, and a late caller resumes it (the model checks that no
        // closure runs and which result or panic comes out).
        let free = (0..SLOTS)
            .find(|&i| h.slots[i].fut.is_none())
            .expect("all calls finished");
        h.step(Op::Poll(free));
        h.drive_all(None);
    }
    assert_eq!(cell.waiting(), 0);
    assert!(h.ctl.lock().unwrap().live.is_none(), "schedule {:?}", h.log);
    drop(h);
}

/// 4,096 schedules per property by default (about 3 s for both in a debug
/// build, 0.1 s in release); `PROPTEST_CASES` overrides.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4096);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    // Property: for any schedule of polls, drops, completions and panics
    // over up to five `get_or_init` callers, the cell behaves as the
    // sequential model: the first caller leads and calls its closure; others
    // queue in FIFO order; a cancelled or panicking leader hands the right to
    // initialize to the longest waiter, which alone is woken and calls its own
    // closure when polled (a dropped waiter that held it passes it on); `Ok`
    // and `Err` are cached and every queued caller is woken exactly once and
    // gets them; no closure runs once a result is cached; no other wake-up
    // happens; `state`/`get`/`get_result`/`waiting` agree at every step; and
    // driving the survivors like an executor finishes every one of them.
    #[test]
    fn plain_schedules_follow_the_model(ops in proptest::collection::vec(op(), 1..48)) {
        run_schedule(&ops, false);
    }

    // Property: the same for `get_or_init_owned`: the first caller installs
    // its initializer and every caller polled afterwards helps drive it (a
    // completion wakes every helper registered since its last poll exactly
    // once); dropping any caller, the installer included, keeps the
    // initializer's progress (no new closure runs); a panic wakes every
    // helper, resets the cell, reaches the polling caller, and later reaches
    // the installer as its own panic, while the next caller polled installs
    // its own; at the end the others finish while slot 0's call stays parked.
    #[test]
    fn owned_schedules_follow_the_model(ops in proptest::collection::vec(op(), 1..48)) {
        run_schedule(&ops, true);
    }
}

// Property: a hand-written schedule the generator may not hit often: the
// head of the queue is handed the baton and dropped before being polled;
// the baton passes to the next waiter, which alone is woken.
#[test]
fn baton_passes_over_a_dropped_head() {
    use Op::*;
    run_schedule(
        &[
            Poll(0),
            Poll(1),
            Poll(2),
            Poll(3),
            Drop(0),
            Drop(1),
            Poll(2),
            Err,
            Poll(2),
            Poll(3),
        ],
        false,
    );
}

// Property: a parked owned leader (polled once, never again) does not stall
// a caller that arrives later: it drives the leader's initializer, and the
// leader, polled at last, sees the same value.
#[test]
fn owned_parked_leader_is_driven_by_others() {
    use Op::*;
    run_schedule(&[Poll(0), Poll(1), Ok, Poll(1), Poll(0)], true);
}
