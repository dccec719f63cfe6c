//! shuttle models of `Group`: stampedes of 16 callers on each of the keys an
//! execution draws from a 1,000-key space, with random cancellation and work
//! that succeeds, fails or panics.
//!
//! Build and run with `RUSTFLAGS="--cfg shuttle"` (see `ci/shuttle.sh`).
//! Every execution draws its scenario from `shuttle::rand`, so a failing
//! execution replays exactly from the schedule shuttle prints:
//!
//! * which 2 distinct keys of the 1,000 it uses (`KEYS_PER_EXECUTION`); each
//!   gets 16 callers of `run` (`CALLERS_PER_KEY`), 32 tasks in all, spawned
//!   in random order so the two stampedes interleave (under shuttle the
//!   group has 2 shards: the keys share one about half the time);
//! * what each caller's work does if it leads: yield 0–3 times, then return
//!   `Ok`, return `Err`, or panic (in its future, or in the closure before
//!   any future exists);
//! * which callers are cancelled, and when: aborted through their
//!   `JoinHandle` by the main task a few scheduling points apart (a leader
//!   mid-work included), or dropped by their own task after 1–3 polls.
//!
//! A single execution with all 1,000 keys × 16 callers (16,000 tasks) would
//! take seconds under shuttle; the key space is covered across executions
//! instead: with 2 random keys per execution and the 10,000 executions CI
//! requires at least, a given key is missed with probability
//! (998/1000)^10,000 ≈ 2·10⁻⁹, and each test asserts at the end that every
//! one of the 1,000 keys had its 16-caller stampede (at 20,000 executions, 40
//! on average).
//!
//! The checks after every execution are in `check` (see the `// Property:`
//! comments on the tests). A caller that hangs makes shuttle report a
//! deadlock. Each test also asserts that its executions reached the paths it
//! is about.
//!
//! Iterations per test: `LAZYFLIGHT_SHUTTLE_ITERATIONS` (default 1,000);
//! PCT depth: `LAZYFLIGHT_SHUTTLE_PCT_DEPTH` (default 3).
#![cfg(shuttle)]
// The test's bookkeeping uses std types on purpose: shuttle runs one task at
// a time, and keeping them invisible to it adds no scheduling points beyond
// the library's own.
#![allow(clippy::disallowed_types)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once};
use std::task::{Context, Poll};

use lazyflight::{Group, Outcome};
use lazyflight_shuttle_tests::{env_usize, End};
use shuttle::future::{self as sfut, JoinHandle};
use shuttle::rand::{thread_rng, Rng};

const KEY_SPACE: u32 = 1_000;
const KEYS_PER_EXECUTION: usize = 2;
const CALLERS_PER_KEY: usize = 16;
const CALLERS: usize = KEYS_PER_EXECUTION * CALLERS_PER_KEY;

/// The executions from which on each test requires every key to have been
/// exercised (CI's floor; see the module docs for the odds).
const FULL_COVERAGE_FROM: usize = 10_000;

fn iterations() -> usize {
    env_usize("LAZYFLIGHT_SHUTTLE_ITERATIONS", 1_000)
}

fn pct_depth() -> usize {
    env_usize("LAZYFLIGHT_SHUTTLE_PCT_DEPTH", 3)
}

// ---------------------------------------------------------------------------
// One caller
// ---------------------------------------------------------------------------

/// What a caller's work returns, in `Ok` or in `Err`: its key, and which
/// caller's work it was. A flight's outcome thus names its leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Made {
    key: u32,
    by: usize,
}

type Out = Arc<Outcome<Made, Made>>;
type G = Group<u32, Made, Made>;

#[derive(Clone, Copy, Debug)]
struct Spec {
    id: usize,
    key: u32,
    end: End,
    yields: usize,
    /// Drops its call after this many polls.
    give_up: Option<u32>,
}

/// The payload of a deliberate panic of caller `.0`'s work.
#[derive(Debug)]
struct WorkPanic(usize);

/// What one execution records while it runs.
struct Book {
    /// Per caller: whether its work closure was called, that is, whether it
    /// led a flight (`run` calls the leader's closure at once, and only the
    /// leader's).
    led: Vec<AtomicBool>,
    /// Work closures called, per key: the executions.
    executions: Mutex<HashMap<u32, usize>>,
    /// Keys whose work future is being polled right now (between its first
    /// poll and its end or drop).
    running: Mutex<Vec<u32>>,
    /// Work futures created, and dropped (run to the end or not).
    futures_made: AtomicUsize,
    futures_dropped: AtomicUsize,
}

impl Book {
    fn new() -> Self {
        Book {
            led: (0..CALLERS).map(|_| AtomicBool::new(false)).collect(),
            executions: Mutex::new(HashMap::new()),
            running: Mutex::new(Vec::new()),
            futures_made: AtomicUsize::new(0),
            futures_dropped: AtomicUsize::new(0),
        }
    }

    fn led(&self, id: usize) -> bool {
        self.led[id].load(SeqCst)
    }

    fn executions(&self, key: u32) -> usize {
        self.executions
            .lock()
            .unwrap()
            .get(&key)
            .copied()
            .unwrap_or(0)
    }
}

/// Counts the drop of a work future, polled or not.
struct Token(Arc<Book>);

impl Drop for Token {
    fn drop(&mut self) {
        self.0.futures_dropped.fetch_add(1, SeqCst);
    }
}

/// Marks a key's work as running while it lives.
struct Running(Arc<Book>, u32);

impl Running {
    fn enter(book: &Arc<Book>, key: u32) -> Self {
        let mut running = book.running.lock().unwrap();
        let clash = running.contains(&key);
        running.push(key);
        drop(running);
        // Pushed anyway, and asserted after unlocking: the unwind then
        // drops this `Running` (and the other's) with the lock usable.
        let me = Running(book.clone(), key);
        assert!(!clash, "two flights' work running for key {key} at once");
        me
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut running = self.0.running.lock().unwrap();
        let at = running.iter().position(|&k| k == self.1);
        running.swap_remove(at.expect("a running work is listed"));
    }
}

type Work = Pin<Box<dyn Future<Output = Result<Made, Made>> + Send>>;

/// Caller `spec.id`'s work closure; `run` calls it only if the caller leads.
fn work(spec: Spec, book: Arc<Book>) -> impl FnOnce() -> Work {
    move || {
        book.led[spec.id].store(true, SeqCst);
        *book.executions.lock().unwrap().entry(spec.key).or_default() += 1;
        if spec.end == End::PanicInF {
            panic::panic_any(WorkPanic(spec.id));
        }
        book.futures_made.fetch_add(1, SeqCst);
        let token = Token(book.clone());
        Box::pin(async move {
            let _token = token;
            let _running = Running::enter(&book, spec.key);
            for _ in 0..spec.yields {
                sfut::yield_now().await;
            }
            let made = Made {
                key: spec.key,
                by: spec.id,
            };
            match spec.end {
                End::Ok => Ok(made),
                End::Err => Err(made),
                End::Panic | End::PanicInF => panic::panic_any(WorkPanic(spec.id)),
            }
        })
    }
}

/// How a caller's task ended, unless it was aborted.
#[derive(Debug)]
enum Ending {
    Got(Out),
    /// Dropped its call after its polls ran out.
    GaveUp,
    /// The work of caller `.0` panicked in this caller.
    Panicked(usize),
}

/// Polls a call, catches a deliberate work panic, and drops the call after
/// `budget` polls (a caller that gives up after being woken a few times).
struct Caller<F: Future> {
    fut: Option<Pin<Box<F>>>,
    budget: Option<u32>,
}

impl<F: Future<Output = Out>> Future for Caller<F> {
    type Output = Ending;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Ending> {
        let this = &mut *self;
        if let Some(left) = &mut this.budget {
            if *left == 0 {
                this.fut = None;
                return Poll::Ready(Ending::GaveUp);
            }
            *left -= 1;
        }
        let fut = this.fut.as_mut().expect("polled after completion");
        match panic::catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => {
                this.fut = None;
                Poll::Ready(Ending::Got(out))
            }
            Err(payload) => {
                // The call unwound: drop what is left of it.
                this.fut = None;
                match payload.downcast_ref::<WorkPanic>() {
                    Some(&WorkPanic(id)) => Poll::Ready(Ending::Panicked(id)),
                    None => panic::resume_unwind(payload),
                }
            }
        }
    }
}

async fn caller(group: Arc<G>, book: Arc<Book>, spec: Spec) -> Ending {
    let call = group.run(spec.key, work(spec, book));
    Caller {
        fut: Some(Box::pin(call)),
        budget: spec.give_up,
    }
    .await
}

// ---------------------------------------------------------------------------
// One execution
// ---------------------------------------------------------------------------

fn execution(cov: &Coverage) {
    sfut::block_on(stampede(cov));
}

async fn stampede(cov: &Coverage) {
    let mut rng = thread_rng();
    let mut keys: Vec<u32> = Vec::new();
    while keys.len() < KEYS_PER_EXECUTION {
        let k = rng.gen_range(0..KEY_SPACE);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let specs: Vec<Spec> = (0..CALLERS)
        .map(|id| Spec {
            id,
            key: keys[id % KEYS_PER_EXECUTION],
            end: match rng.gen_range(0..100) {
                0..=54 => End::Ok,
                55..=84 => End::Err,
                85..=94 => End::Panic,
                _ => End::PanicInF,
            },
            yields: rng.gen_range(0..=3),
            give_up: rng.gen_bool(0.1).then(|| rng.gen_range(1..=3)),
        })
        .collect();
    let group = Arc::new(G::new());
    let book = Arc::new(Book::new());

    // Spawn in random order, so the stampedes on the keys interleave.
    let mut order: Vec<usize> = (0..CALLERS).collect();
    shuffle(&mut order, &mut rng);
    let mut handles: Vec<Option<JoinHandle<Ending>>> = (0..CALLERS).map(|_| None).collect();
    for &i in &order {
        handles[i] = Some(sfut::spawn(caller(group.clone(), book.clone(), specs[i])));
    }

    // Abort a random subset, in random order, a few scheduling points apart.
    let mut aborted = vec![false; CALLERS];
    let mut victims: Vec<usize> = (0..CALLERS).filter(|_| rng.gen_bool(0.1)).collect();
    shuffle(&mut victims, &mut rng);
    for &i in &victims {
        for _ in 0..rng.gen_range(0..=2) {
            sfut::yield_now().await;
        }
        aborted[i] = true;
        handles[i].as_ref().unwrap().abort();
    }

    // `None`: the task was aborted before it finished.
    let mut endings: Vec<Option<Ending>> = Vec::new();
    for h in handles {
        endings.push(h.unwrap().await.ok());
    }

    check(&group, &book, &keys, &specs, &aborted, &endings);
    cov.record(&book, &keys, &specs, &endings);
}

fn shuffle<T>(v: &mut [T], rng: &mut impl Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.gen_range(0..=i));
    }
}

/// The end-of-execution properties; every caller's task is done.
fn check(
    group: &G,
    book: &Book,
    keys: &[u32],
    specs: &[Spec],
    aborted: &[bool],
    endings: &[Option<Ending>],
) {
    // executions == flights, per key. An execution is a call of a work
    // closure. A flight is counted from what its callers hold: a completed
    // flight by the identity of its outcome (`Arc::as_ptr`, whoever holds
    // it), a flight whose leader is gone (aborted, gave up, or its work
    // panicked) by that leader, whether or not a subscriber saw its
    // `Canceled`. If a flight's work ran twice, or a leader's result were
    // lost or replaced, the two counts would differ.
    for &k in keys {
        let mut completed: HashSet<*const Outcome<Made, Made>> = HashSet::new();
        let mut canceled: HashSet<*const Outcome<Made, Made>> = HashSet::new();
        let mut leaders_gone = 0;
        let callers: Vec<_> = specs
            .iter()
            .zip(endings)
            .filter(|(s, _)| s.key == k)
            .collect();
        for &(spec, ending) in &callers {
            match ending {
                Some(Ending::Got(o)) if o.is_canceled() => {
                    canceled.insert(Arc::as_ptr(o));
                }
                Some(Ending::Got(o)) => {
                    completed.insert(Arc::as_ptr(o));
                }
                _ if book.led(spec.id) => leaders_gone += 1,
                _ => {}
            }
        }
        let flights = completed.len() + leaders_gone;
        assert_eq!(
            book.executions(k),
            flights,
            "executions != flights for key {k}: {} completed flights, {leaders_gone} \
             leaders gone; its callers {callers:?}",
            completed.len()
        );
        // Each `Canceled` anyone saw is a flight whose leader is gone.
        assert!(
            canceled.len() <= leaders_gone,
            "key {k}: {} canceled flights seen, {leaders_gone} leaders gone",
            canceled.len()
        );
    }

    // Every caller got an outcome, unless it was aborted, gave up, or its
    // own work panicked; a leader got its own work's result, and a
    // subscriber the very `Arc` its flight's leader got.
    for (spec, ending) in specs.iter().zip(endings) {
        let id = spec.id;
        let led = book.led(id);
        match ending {
            None => assert!(aborted[id], "caller {id} vanished without an abort"),
            Some(Ending::GaveUp) => assert!(spec.give_up.is_some(), "caller {id} gave up"),
            Some(Ending::Panicked(p)) => assert!(
                *p == id && led && matches!(spec.end, End::Panic | End::PanicInF),
                "caller {id} (led: {led}, {spec:?}) saw the panic of caller {p}'s work"
            ),
            Some(Ending::Got(o)) if led => {
                let mine = Made {
                    key: spec.key,
                    by: id,
                };
                let ok = match &**o {
                    Outcome::Complete { result: Ok(m), .. } => spec.end == End::Ok && *m == mine,
                    Outcome::Complete { result: Err(m), .. } => spec.end == End::Err && *m == mine,
                    Outcome::Canceled => false,
                };
                assert!(ok, "caller {id} led ({spec:?}) and got {o:?}");
            }
            Some(Ending::Got(o)) => {
                if let Outcome::Complete { result, shared } = &**o {
                    let (Ok(m) | Err(m)) = *result;
                    assert!(
                        *shared,
                        "caller {id} joined a flight whose outcome is unshared"
                    );
                    assert_eq!(m.key, spec.key, "caller {id} got another key's outcome");
                    let leaders = match &endings[m.by] {
                        Some(Ending::Got(l)) => Arc::ptr_eq(l, o),
                        _ => false,
                    };
                    assert!(
                        leaders && book.led(m.by),
                        "caller {id} got {o:?}, not the Arc its leader got: {:?}",
                        endings[m.by]
                    );
                }
            }
        }
    }

    // Nothing left in flight, no work alive.
    assert_eq!(group.in_flight(), 0, "a flight outlived every caller");
    assert_eq!(group.len(), 0, "an entry outlived its flight");
    assert!(group.is_empty());
    for &k in keys {
        assert_eq!(group.subscribers(&k), 0, "key {k} still has subscribers");
    }
    assert!(book.running.lock().unwrap().is_empty());
    assert_eq!(
        book.futures_made.load(SeqCst),
        book.futures_dropped.load(SeqCst),
        "a work future outlived its flight"
    );
}

// ---------------------------------------------------------------------------
// Coverage: each test asserts that its executions reached the paths
// ---------------------------------------------------------------------------

struct Coverage {
    executions: AtomicUsize,
    /// Which of the 1,000 keys had a stampede.
    keys: Mutex<Vec<bool>>,
    /// Callers, and those that got an outcome.
    callers: AtomicUsize,
    outcomes: AtomicUsize,
    /// A leader aborted or given up while its work was pending.
    leader_cancelled: AtomicUsize,
    /// A leader whose work panicked.
    leader_panicked: AtomicUsize,
    /// A subscriber got `Canceled`.
    canceled_seen: AtomicUsize,
    /// A subscriber got a shared `Ok`, or a shared `Err`.
    shared_ok: AtomicUsize,
    shared_err: AtomicUsize,
    /// A key had more than one flight in one execution.
    relead: AtomicUsize,
}

impl Coverage {
    const fn new() -> Self {
        Coverage {
            executions: AtomicUsize::new(0),
            keys: Mutex::new(Vec::new()),
            callers: AtomicUsize::new(0),
            outcomes: AtomicUsize::new(0),
            leader_cancelled: AtomicUsize::new(0),
            leader_panicked: AtomicUsize::new(0),
            canceled_seen: AtomicUsize::new(0),
            shared_ok: AtomicUsize::new(0),
            shared_err: AtomicUsize::new(0),
            relead: AtomicUsize::new(0),
        }
    }

    fn record(&self, book: &Book, keys: &[u32], specs: &[Spec], endings: &[Option<Ending>]) {
        let add = |c: &AtomicUsize, n: usize| c.fetch_add(n, SeqCst);
        add(&self.executions, 1);
        {
            let mut seen = self.keys.lock().unwrap();
            seen.resize(KEY_SPACE as usize, false);
            for &k in keys {
                seen[k as usize] = true;
            }
        }
        add(&self.callers, specs.len());
        for (spec, ending) in specs.iter().zip(endings) {
            let led = book.led(spec.id);
            match ending {
                Some(Ending::Got(o)) => {
                    add(&self.outcomes, 1);
                    if !led {
                        match o.result() {
                            None => add(&self.canceled_seen, 1),
                            Some(Ok(_)) => add(&self.shared_ok, 1),
                            Some(Err(_)) => add(&self.shared_err, 1),
                        };
                    }
                }
                Some(Ending::Panicked(_)) => {
                    add(&self.leader_panicked, 1);
                }
                None | Some(Ending::GaveUp) if led => {
                    add(&self.leader_cancelled, 1);
                }
                _ => {}
            }
        }
        for &k in keys {
            if book.executions(k) > 1 {
                add(&self.relead, 1);
            }
        }
    }

    fn report(&self, name: &str) {
        let get = |c: &AtomicUsize| c.load(SeqCst);
        let keys = self.keys.lock().unwrap().iter().filter(|&&s| s).count();
        eprintln!(
            "{name}: {} executions, {keys} of {KEY_SPACE} keys stampeded; {} callers, {} \
             outcomes; leaders cancelled mid-work {}, panicked {}; subscribers got Canceled \
             {}, a shared Ok {}, a shared Err {}; keys led again {}",
            get(&self.executions),
            get(&self.callers),
            get(&self.outcomes),
            get(&self.leader_cancelled),
            get(&self.leader_panicked),
            get(&self.canceled_seen),
            get(&self.shared_ok),
            get(&self.shared_err),
            get(&self.relead),
        );
        for (what, c) in [
            ("cancelled a leader mid-work", &self.leader_cancelled),
            ("had a leader's work panic", &self.leader_panicked),
            ("gave a subscriber Canceled", &self.canceled_seen),
            ("shared an Ok", &self.shared_ok),
            ("shared an Err", &self.shared_err),
            ("led a key twice in one execution", &self.relead),
        ] {
            assert!(get(c) > 0, "{name}: never {what}");
        }
        if get(&self.executions) >= FULL_COVERAGE_FROM {
            assert_eq!(
                keys, KEY_SPACE as usize,
                "{name}: not every key had its stampede"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// Keeps the deliberate work panics off stderr: shuttle's own hook
/// (installed on first use) prints a schedule for every panic, caught or
/// not. Any other panic still goes through shuttle's hook.
fn quiet_work_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        shuttle::check_random(|| {}, 1);
        let inner = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<WorkPanic>() {
                inner(info);
            }
        }));
    });
}

enum Sched {
    Random,
    Pct,
}

fn explore(name: &str, sched: Sched, cov: &'static Coverage) {
    quiet_work_panics();
    let started = std::time::Instant::now();
    let its = iterations();
    let body = move || execution(cov);
    match sched {
        Sched::Random => shuttle::check_random(body, its),
        Sched::Pct => shuttle::check_pct(body, its, pct_depth()),
    }
    cov.report(name);
    eprintln!("{name}: {its} iterations in {:.1?}", started.elapsed());
}

// Property: 16 `run` callers on each of 2 keys drawn per execution from a
// 1,000-key space (all 1,000 keys covered over the ≥ 10,000 executions CI
// runs, asserted), with work that succeeds, fails or panics after 0–3
// yields, and callers aborted at random points (leaders mid-work included)
// or giving up after 1–3 polls. In every execution, cancellation or not:
// for each key, executions (work closures called) == flights (distinct
// completed outcomes, by `Arc` identity, plus leaders that are gone), and
// no more distinct `Canceled` outcomes than leaders gone; never two works
// of one key at once; every caller that was not aborted and did not give
// up got an outcome (or its own work's panic): a leader its own result, a
// subscriber the very `Arc` its leader got, marked shared; nobody hangs; at
// the end `in_flight() == 0`, `len() == 0`, `subscribers(&k) == 0` for both
// keys, and every work future was dropped. Random scheduler.
#[test]
fn group_stampede_random() {
    static COV: Coverage = Coverage::new();
    explore("group_stampede_random", Sched::Random, &COV);
}

// Property: as `group_stampede_random`, under shuttle's PCT scheduler
// (depth `LAZYFLIGHT_SHUTTLE_PCT_DEPTH`, 3 by default), which favours rare
// orderings.
#[test]
fn group_stampede_pct() {
    static COV: Coverage = Coverage::new();
    explore("group_stampede_pct", Sched::Pct, &COV);
}
