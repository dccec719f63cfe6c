//! Soak tests of `ALazy`, `Group`, `Cache` and the `task` module on
//! executors other than tokio: smol's executor (`async-executor`, 3 threads),
//! `futures::executor::ThreadPool` (3 threads), and a hand-written executor
//! that polls tasks nobody woke and hands out a fresh waker on every poll
//! (`tests/common/soak.rs`). Each test is one primitive on one executor, with
//! fixed seeds.
//!
//! Callers pause at random (yields, timer sleeps), are cancelled at random
//! (after some polls or some time), their initializers panic or fail at
//! random, some callers are moved to another task after their first poll,
//! and owned-mode callers are parked (polled once, then left unpolled until
//! the rest finished). Checked:
//! - at most one initializer per `ALazy` cell / `Group` key / `Cache` key
//!   runs at a time (outside `forget` / `invalidate`), and none starts after
//!   a caller of that cell got its result;
//! - every caller finishes: a hang fails the test through the watchdog,
//!   which names the test and the round, then aborts the test binary;
//! - callers of one cell or key get the same result; a `Group` flight hands
//!   every receiver the same `Arc`, marked shared when there are several;
//! - no `ALazy` waiter is left behind; `Group::len` / `in_flight` and
//!   `Cache::len` settle; a `Cache` never keeps a result whose init started
//!   before an `invalidate` / `clear` of its key;
//! - every value, error, init future and task future is dropped by the end;
//! - every `task` callback runs, every `collect_*` result is at its index,
//!   and no panic escapes to an executor thread.
//!
//! Negative controls (`RUSTFLAGS='--cfg lazyflight_break="<value>"'`, each
//! in a target dir of its own) and what catches them, each in its first
//! round:
//! - `no_wake`: all twelve tests, the watchdog reporting a stall;
//! - `group_drop_silent`: the three `group_on_*` tests, a stall (subscribers
//!   of a dropped leader are never told);
//! - `task_lost_wake`: the three `task_on_*` tests, a stall;
//! - `cache_keep_invalidated`: the three `cache_on_*` tests, "stores the
//!   result of an init started before an invalidation".
//!
//! Sizes (`*_ROUNDS`, 400 callers or 120 tasks a round) keep the whole file
//! at 13-18 s in a debug build on 2 cores (13.8 s at `b5652ba`, load average
//! 3; 22-26 s while other builds kept the load at 5-8).
#![allow(clippy::disallowed_types)] // tests may name std types next to the shim

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use lazyflight::task::{
    collect_all, collect_all_para, collect_all_windowed, collect_any, sleep as task_sleep,
    sync_await_try, yield_now, Executor, ExecutorRef, Job, Lazy, ScheduleError, Try,
};
use lazyflight::{ALazy, Cache, Entry, ErrorPolicy, Group, Outcome, State};

#[path = "common/soak.rs"]
mod soak;
use soak::{
    guarded, pause, random_cancel, run_all, sleep, wait_until, yield_once, Ctx, Drive, Error, Exec,
    Live, Res, RunGuard, Spawner, Val, IN_EXEC,
};

/// Per-test counts, to show each test exercised what it claims to.
#[derive(Debug, Default)]
struct Tally {
    done: AtomicU64,
    cancelled: AtomicU64,
    panicked: AtomicU64,
    inits: AtomicU64,
    parked: AtomicU64,
}
impl Tally {
    fn new() -> &'static Tally {
        Box::leak(Box::default())
    }
    fn count<T>(&self, r: &Res<T>) {
        match r {
            Res::Done(_) => &self.done,
            Res::Cancelled => &self.cancelled,
            Res::Panicked => &self.panicked,
        }
        .fetch_add(1, SeqCst);
    }
    /// The soak reached every path it is meant to.
    fn assert_covered(&self, name: &str, parked: bool) {
        let get = |a: &AtomicU64| a.load(SeqCst);
        let summary = format!("{name}: {self:?}");
        println!("{summary}");
        assert!(get(&self.done) > 0, "no caller finished: {summary}");
        assert!(
            get(&self.cancelled) > 0,
            "no caller was cancelled: {summary}"
        );
        assert!(get(&self.panicked) > 0, "no init panicked: {summary}");
        assert!(get(&self.inits) > 0, "no init ran: {summary}");
        assert!(
            !parked || get(&self.parked) > 0,
            "no caller was parked: {summary}"
        );
    }
}

/// Rounds per test; each round builds fresh cells, groups or caches.
const ALAZY_ROUNDS: u64 = 600;
const GROUP_ROUNDS: u64 = 600;
const CACHE_ROUNDS: u64 = 600;
const TASK_ROUNDS: u64 = 150;

/// Initializer steps: up to this many pauses inside an init.
const INIT_STEPS: u32 = 6;
/// Caller steps: up to this many pauses before a caller starts.
const PRE_STEPS: u32 = 4;

/// A caller's drive: callers migrate between tasks; in owned mode (where an
/// initializer does not need its caller to be polled) some are parked too.
fn drive(owned_only: bool) -> Drive {
    Drive {
        migrate_pct: 20,
        park_pct: if owned_only { 20 } else { 0 },
    }
}

// ------------------------------------------------------------------ ALazy

struct Cells {
    cells: Vec<ALazy<Val, Error>>,
    running: Vec<AtomicUsize>,
    /// A caller of the cell got a result (so no init may start any more).
    done: Vec<AtomicBool>,
    first: Vec<Mutex<Option<(bool, u64)>>>,
}

/// `mode`: 0 every caller plain, 1 every caller owned, 2 mixed.
fn alazy_round(ctx: &'static Ctx, sp: &Arc<dyn Spawner>, tally: &'static Tally, seed: u64) {
    let mode = (seed % 3) as u8;
    let ncells = if seed % 2 == 0 { 16 } else { 2 };
    let ncallers = 400;
    ctx.set_stage(format!("ALazy seed {seed} mode {mode} cells {ncells}"));
    let cells = Arc::new(Cells {
        cells: (0..ncells).map(|_| ALazy::new()).collect(),
        running: (0..ncells).map(|_| AtomicUsize::new(0)).collect(),
        done: (0..ncells).map(|_| AtomicBool::new(false)).collect(),
        first: (0..ncells).map(|_| Mutex::new(None)).collect(),
    });
    let mut futs: Vec<BoxFuture<'static, ()>> = Vec::new();
    for i in 0..ncallers {
        let cells = cells.clone();
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(1_000_003) + i);
        futs.push(Box::pin(async move {
            let c = rng.usize(0..cells.cells.len());
            for _ in 0..rng.u32(0..PRE_STEPS) {
                pause(&mut rng).await;
            }
            let owned = match mode {
                0 => false,
                1 => true,
                _ => rng.bool(),
            };
            let cancel = random_cancel(&mut rng, 35);
            let behaviour = rng.u8(0..100); // < 15 panic, < 35 error, else a value
            let steps = rng.u32(0..INIT_STEPS);
            let init_seed = rng.u64(..);
            let make = {
                let cells = cells.clone();
                move || {
                    let live = Live::new(&ctx.live_futs);
                    async move {
                        let _live = live;
                        let mut rng = fastrand::Rng::with_seed(init_seed);
                        if cells.done[c].load(SeqCst) {
                            ctx.fail(&format!(
                                "ALazy cell {c}: an initializer started after a caller got the result"
                            ));
                        }
                        let mut g = RunGuard::enter(ctx, &cells.running[c], &format!("ALazy cell {c}"));
                        tally.inits.fetch_add(1, SeqCst);
                        for _ in 0..steps {
                            pause(&mut rng).await;
                        }
                        g.exit();
                        if behaviour < 15 {
                            panic!("soak-induced init panic");
                        }
                        if behaviour < 35 {
                            Err(Error::new(ctx, 0))
                        } else {
                            Ok(Val::new(ctx, 0))
                        }
                    }
                }
            };
            let cell = &cells.cells[c];
            let r = if owned {
                let f = async { cell.get_or_init_owned(make).await.map(|v| v.id).map_err(|e| e.id) };
                guarded(f, cancel).await
            } else {
                let f = async { cell.get_or_init(make).await.map(|v| v.id).map_err(|e| e.id) };
                guarded(f, cancel).await
            };
            tally.count(&r);
            if let Res::Done(r) = r {
                cells.done[c].store(true, SeqCst);
                let key = match r {
                    Ok(id) => (true, id),
                    Err(id) => (false, id),
                };
                let mut f = cells.first[c].lock().unwrap();
                match *f {
                    None => *f = Some(key),
                    Some(k) if k != key => ctx.fail(&format!(
                        "ALazy cell {c}: callers got different results {k:?} and {key:?}"
                    )),
                    Some(_) => {}
                }
            }
        }));
    }
    let parked = run_all(ctx, sp, seed, drive(mode == 1), futs);
    tally.parked.fetch_add(parked as u64, SeqCst);
    wait_until(ctx, "ALazy: executors release the callers", || {
        Arc::strong_count(&cells) == 1
    });
    for (c, cell) in cells.cells.iter().enumerate() {
        if cell.waiting() != 0 {
            ctx.fail(&format!(
                "ALazy cell {c}: {} waiters left after every caller finished",
                cell.waiting()
            ));
        }
        let first = *cells.first[c].lock().unwrap();
        match (cell.state(), first) {
            (State::Filled, Some((true, id))) if cell.get().map(|v| v.id) == Some(id) => {}
            (State::Failed, Some((false, id)))
                if cell.get_result().and_then(|r| r.err()).map(|e| e.id) == Some(id) => {}
            // Only cancelled callers, whose init completed anyway (owned) or not.
            (State::Filled | State::Failed | State::Empty, None) => {}
            // An owned init whose every caller left stays in its cell.
            (State::Initializing, None) if mode != 0 => {}
            (s, f) => ctx.fail(&format!("ALazy cell {c}: ends {s:?} but callers saw {f:?}")),
        }
    }
    drop(cells);
    ctx.check_no_leaks("ALazy");
}

fn alazy(name: &str, exec: Exec) {
    let tally = Tally::new();
    soak::soak(name, exec, ALAZY_ROUNDS, |ctx, sp, r| {
        alazy_round(ctx, sp, tally, 1_000 + r)
    });
    tally.assert_covered(name, true);
}

#[test]
fn alazy_on_smol() {
    alazy("alazy_on_smol", Exec::Smol);
}
#[test]
fn alazy_on_threadpool() {
    alazy("alazy_on_threadpool", Exec::ThreadPool);
}
#[test]
fn alazy_on_spurious_executor() {
    alazy("alazy_on_spurious_executor", Exec::Spurious);
}

// ------------------------------------------------------------------ Group

type SharedOutcome = Arc<Outcome<Val, Error>>;

struct Flights {
    g: Group<u32, Val, Error>,
    running: Vec<AtomicUsize>,
    seen: Mutex<Vec<SharedOutcome>>,
}

/// Odd seeds mix in `forget` calls (then two flights of a key may overlap).
fn group_round(ctx: &'static Ctx, sp: &Arc<dyn Spawner>, tally: &'static Tally, seed: u64) {
    let forget = seed % 2 == 1;
    let nkeys: u32 = if seed % 4 < 2 { 16 } else { 2 };
    let ncallers = 400;
    ctx.set_stage(format!("Group seed {seed} forget {forget} keys {nkeys}"));
    let sh = Arc::new(Flights {
        g: Group::new(),
        running: (0..nkeys).map(|_| AtomicUsize::new(0)).collect(),
        seen: Mutex::new(Vec::new()),
    });
    let mut futs: Vec<BoxFuture<'static, ()>> = Vec::new();
    for i in 0..ncallers {
        let sh = sh.clone();
        let sp2 = sp.clone();
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(7_000_003) + i);
        futs.push(Box::pin(async move {
            let k = rng.u32(0..nkeys);
            for _ in 0..rng.u32(0..PRE_STEPS) {
                pause(&mut rng).await;
            }
            let cancel = random_cancel(&mut rng, 30);
            let behaviour = rng.u8(0..100); // < 10 panic, < 30 error, else a value
            let steps = rng.u32(0..INIT_STEPS);
            let wseed = rng.u64(..);
            if forget && rng.u8(0..100) < 5 {
                sh.g.forget(&k);
            }
            let work = {
                let sh = sh.clone();
                move || {
                    let live = Live::new(&ctx.live_futs);
                    async move {
                        let _live = live;
                        let mut rng = fastrand::Rng::with_seed(wseed);
                        tally.inits.fetch_add(1, SeqCst);
                        let mut g = (!forget).then(|| {
                            RunGuard::enter(ctx, &sh.running[k as usize], &format!("Group key {k}"))
                        });
                        for _ in 0..steps {
                            pause(&mut rng).await;
                        }
                        if let Some(g) = g.as_mut() {
                            g.exit();
                        }
                        if behaviour < 10 {
                            panic!("soak-induced work panic");
                        }
                        if behaviour < 30 {
                            Err(Error::new(ctx, 0))
                        } else {
                            Ok(Val::new(ctx, 0))
                        }
                    }
                }
            };
            let r = if rng.u8(0..100) >= 40 {
                guarded(sh.g.run(k, work), cancel).await
            } else {
                match sh.g.entry(k) {
                    // The leader moves to a task of its own that completes
                    // it, or drops it (cancelled), or unwinds with it.
                    Entry::Leader(leader) => {
                        let (tx, rx) = futures::channel::oneshot::channel();
                        sp2.spawn(Box::pin(async move {
                            let f = async move { leader.complete(work().await) };
                            let _ = tx.send(guarded(f, cancel).await);
                        }));
                        rx.await.unwrap_or_else(|_| {
                            ctx.fail("Group: the leader's task vanished");
                            Res::Cancelled
                        })
                    }
                    Entry::Subscriber(sub) => match guarded(sub.recv(), cancel).await {
                        Res::Done(Ok(o)) => Res::Done(o),
                        Res::Done(Err(e)) => {
                            ctx.fail(&format!("Group: recv failed: {e:?}"));
                            Res::Cancelled
                        }
                        Res::Cancelled => Res::Cancelled,
                        Res::Panicked => Res::Panicked,
                    },
                }
            };
            tally.count(&r);
            if let Res::Done(o) = r {
                sh.seen.lock().unwrap().push(o);
            }
        }));
    }
    run_all(ctx, sp, seed, drive(false), futs);
    wait_until(ctx, "Group: executors release the callers", || {
        Arc::strong_count(&sh) == 1
    });
    let (in_flight, len) = (sh.g.in_flight(), sh.g.len());
    if in_flight != 0 || len != 0 || !sh.g.is_empty() {
        ctx.fail(&format!(
            "Group: in_flight={in_flight} len={len} after every caller finished"
        ));
    }
    let seen = std::mem::take(&mut *sh.seen.lock().unwrap());
    let mut by_flight: HashMap<(bool, u64), Vec<&SharedOutcome>> = HashMap::new();
    for o in &seen {
        match o.result() {
            Some(Ok(v)) => by_flight.entry((true, v.id)).or_default().push(o),
            Some(Err(e)) => by_flight.entry((false, e.id)).or_default().push(o),
            None => {}
        }
    }
    for (id, os) in &by_flight {
        if os.iter().any(|o| !Arc::ptr_eq(o, os[0])) {
            ctx.fail(&format!("Group: flight {id:?} delivered different Arcs"));
        }
        if os.len() > 1 && !os[0].is_shared() {
            ctx.fail(&format!(
                "Group: flight {id:?} had {} receivers but is_shared() is false",
                os.len()
            ));
        }
    }
    drop(by_flight);
    drop(seen);
    drop(sh);
    ctx.check_no_leaks("Group");
}

fn group(name: &str, exec: Exec) {
    let tally = Tally::new();
    soak::soak(name, exec, GROUP_ROUNDS, |ctx, sp, r| {
        group_round(ctx, sp, tally, 2_000 + r)
    });
    tally.assert_covered(name, false);
}

#[test]
fn group_on_smol() {
    group("group_on_smol", Exec::Smol);
}
#[test]
fn group_on_threadpool() {
    group("group_on_threadpool", Exec::ThreadPool);
}
#[test]
fn group_on_spurious_executor() {
    group("group_on_spurious_executor", Exec::Spurious);
}

// ------------------------------------------------------------------ Cache

struct Cached {
    c: Cache<u32, Val, Error>,
    running: Vec<AtomicUsize>,
    first: Vec<Mutex<Option<(bool, u64)>>>,
    /// Per key, how many invalidations (`invalidate`, `clear`) so far.
    gens: Vec<AtomicU64>,
}

#[derive(Clone, Copy, Debug)]
struct CacheCfg {
    /// 0 `Cached`, 1 `CachedFor`, 2 `SharedOnly`.
    policy: u8,
    ttl: bool,
    invalidate: bool,
    /// 0 every caller plain, 1 every caller owned, 2 mixed.
    mode: u8,
}

fn cache_round(ctx: &'static Ctx, sp: &Arc<dyn Spawner>, tally: &'static Tally, seed: u64) {
    // Every policy in every mode, with and without invalidations, with and
    // without a TTL (one round in four).
    let cfg = CacheCfg {
        policy: (seed % 3) as u8,
        mode: (seed / 3 % 3) as u8,
        invalidate: seed % 2 == 0,
        ttl: seed % 8 >= 6,
    };
    let nkeys: u32 = if seed % 5 < 3 { 16 } else { 2 };
    let ncallers = 400;
    ctx.set_stage(format!("Cache seed {seed} {cfg:?} keys {nkeys}"));
    let mut b = Cache::builder().errors(match cfg.policy {
        0 => ErrorPolicy::Cached,
        1 => ErrorPolicy::CachedFor(Duration::from_micros(300)),
        _ => ErrorPolicy::SharedOnly,
    });
    if cfg.ttl {
        b = b.time_to_live(Duration::from_micros(500));
    }
    let sh = Arc::new(Cached {
        c: b.build(),
        running: (0..nkeys).map(|_| AtomicUsize::new(0)).collect(),
        first: (0..nkeys).map(|_| Mutex::new(None)).collect(),
        gens: (0..nkeys).map(|_| AtomicU64::new(0)).collect(),
    });
    // Invalidation lets a new init start next to the invalidated one.
    let strict = !cfg.invalidate;
    // Only then must every caller of a key see the same result.
    let consistent = !cfg.invalidate && !cfg.ttl && cfg.policy == 0;
    let mut futs: Vec<BoxFuture<'static, ()>> = Vec::new();
    for i in 0..ncallers {
        let sh = sh.clone();
        let mut rng = fastrand::Rng::with_seed(seed.wrapping_mul(9_000_011) + i);
        futs.push(Box::pin(async move {
            let k = rng.u32(0..nkeys);
            for _ in 0..rng.u32(0..PRE_STEPS) {
                pause(&mut rng).await;
            }
            if cfg.invalidate {
                let x = rng.u16(0..1000);
                if x < 40 {
                    // Bump first: an init that reads the old generation
                    // started before this invalidation.
                    sh.gens[k as usize].fetch_add(1, SeqCst);
                    sh.c.invalidate(&k);
                } else if x < 42 {
                    for g in &sh.gens {
                        g.fetch_add(1, SeqCst);
                    }
                    sh.c.clear();
                }
            }
            let cancel = random_cancel(&mut rng, 30);
            let behaviour = rng.u8(0..100); // < 10 panic, < 30 error, else a value
            let steps = rng.u32(0..INIT_STEPS);
            let wseed = rng.u64(..);
            let owned = match cfg.mode {
                0 => false,
                1 => true,
                _ => rng.bool(),
            };
            let sh2 = sh.clone();
            let init = move || {
                let live = Live::new(&ctx.live_futs);
                async move {
                    let _live = live;
                    let mut rng = fastrand::Rng::with_seed(wseed);
                    tally.inits.fetch_add(1, SeqCst);
                    let gen = sh2.gens[k as usize].load(SeqCst);
                    let mut g = strict.then(|| {
                        RunGuard::enter(ctx, &sh2.running[k as usize], &format!("Cache key {k}"))
                    });
                    for _ in 0..steps {
                        pause(&mut rng).await;
                    }
                    if let Some(g) = g.as_mut() {
                        g.exit();
                    }
                    drop(g);
                    drop(sh2);
                    if behaviour < 10 {
                        panic!("soak-induced cache init panic");
                    }
                    if behaviour < 30 {
                        Err(Error::new(ctx, gen))
                    } else {
                        Ok(Val::new(ctx, gen))
                    }
                }
            };
            let r = if owned {
                guarded(sh.c.get_owned(k, init), cancel).await
            } else {
                guarded(sh.c.get(k, init), cancel).await
            };
            tally.count(&r);
            if let (Res::Done(r), true) = (r, consistent) {
                let key = match &r {
                    Ok(v) => (true, v.id),
                    Err(e) => (false, e.id),
                };
                let mut f = sh.first[k as usize].lock().unwrap();
                match *f {
                    None => *f = Some(key),
                    Some(x) if x != key => {
                        ctx.fail(&format!("Cache key {k}: callers got {x:?} and {key:?}"));
                    }
                    Some(_) => {}
                }
            }
        }));
    }
    let parked = run_all(ctx, sp, seed, drive(cfg.mode == 1), futs);
    tally.parked.fetch_add(parked as u64, SeqCst);
    for k in 0..nkeys {
        let cur = sh.gens[k as usize].load(SeqCst);
        let tag = match sh.c.peek(&k) {
            Some(Ok(v)) => Some(v.tag),
            Some(Err(e)) => Some(e.tag),
            None => None,
        };
        if let Some(t) = tag.filter(|&t| t < cur) {
            ctx.fail(&format!(
                "Cache key {k}: stores the result of an init started before an invalidation \
                 (generation {t} < {cur})"
            ));
        }
    }
    // Without expiry, `len` counts exactly the stored results, plus (owned
    // callers only) entries whose init every caller left.
    if !cfg.ttl && cfg.policy != 1 {
        let len = sh.c.len();
        let stored = (0..nkeys).filter(|k| sh.c.peek(k).is_some()).count();
        if (cfg.mode == 0 && len != stored) || len < stored {
            ctx.fail(&format!(
                "Cache: len()={len} but {stored} keys have a stored result"
            ));
        }
    }
    sh.c.clear();
    let len = sh.c.len();
    if len != 0 || !sh.c.is_empty() {
        ctx.fail(&format!("Cache: len()={len} after clear()"));
    }
    wait_until(
        ctx,
        "Cache: executors release the callers and inits",
        || Arc::strong_count(&sh) == 1,
    );
    drop(sh);
    ctx.check_no_leaks("Cache");
}

fn cache(name: &str, exec: Exec) {
    let tally = Tally::new();
    soak::soak(name, exec, CACHE_ROUNDS, |ctx, sp, r| {
        cache_round(ctx, sp, tally, 3_000 + r)
    });
    tally.assert_covered(name, true);
}

#[test]
fn cache_on_smol() {
    cache("cache_on_smol", Exec::Smol);
}
#[test]
fn cache_on_threadpool() {
    cache("cache_on_threadpool", Exec::ThreadPool);
}
#[test]
fn cache_on_spurious_executor() {
    cache("cache_on_spurious_executor", Exec::Spurious);
}

// ------------------------------------------------------------------- task

/// lazyflight's `Executor` over a soak executor; delays use the soak timer.
struct Adapter(Arc<dyn Spawner>);
impl std::fmt::Debug for Adapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name())
    }
}
impl Executor for Adapter {
    fn schedule(&self, job: Job) -> Result<(), ScheduleError> {
        self.0.spawn(Box::pin(async move { job() }));
        Ok(())
    }
    fn current_thread_in_executor(&self) -> bool {
        IN_EXEC.with(|c| c.get()) == self.0.id()
    }
    fn schedule_after(&self, delay: Duration, job: Job) -> Result<(), ScheduleError> {
        self.0.spawn(Box::pin(async move {
            sleep(delay).await;
            job()
        }));
        Ok(())
    }
    fn name(&self) -> &str {
        self.0.name()
    }
}

/// A leaf task returning its index `i` after some pauses, or panicking.
fn child(ctx: &'static Ctx, i: usize, rng: &mut fastrand::Rng) -> Lazy<usize> {
    let steps = rng.u32(0..4);
    let behaviour = rng.u8(0..100);
    let s = rng.u64(..);
    let live = Live::new(&ctx.live_futs);
    Lazy::new(async move {
        let _live = live;
        let mut rng = fastrand::Rng::with_seed(s);
        for _ in 0..steps {
            match rng.u8(0..4) {
                // Errors of these two (no executor to sleep on) are fine.
                0 => drop(yield_now().await),
                1 => drop(task_sleep(Duration::from_micros(rng.u64(10..300))).await),
                2 => yield_once().await,
                _ => sleep(Duration::from_micros(rng.u64(10..200))).await,
            }
        }
        if behaviour < 8 {
            panic!("soak-induced child panic");
        }
        i
    })
}

/// Each `collect_all*` result is its child's index, or that child's error.
fn check_all(ctx: &'static Ctx, tally: &'static Tally, out: &[Try<usize>]) {
    for (i, t) in out.iter().enumerate() {
        match t.as_result() {
            Ok(v) if *v != i => ctx.fail(&format!("collect: result {v} at index {i}")),
            Ok(_) => {}
            Err(e) if e.is_panic() => drop(tally.panicked.fetch_add(1, SeqCst)),
            Err(_) => {}
        }
    }
}

/// A task running a random `collect_*` over random children, sometimes
/// after awaiting a nested `collect_all_para` task.
fn top(ctx: &'static Ctx, tally: &'static Tally, rng: &mut fastrand::Rng) -> Lazy<usize> {
    let n = rng.usize(1..12);
    let kind = rng.u8(0..5);
    let children: Vec<Lazy<usize>> = (0..n).map(|i| child(ctx, i, rng)).collect();
    let window = rng.usize(0..4);
    let inner = rng.bool().then(|| {
        let m = rng.usize(1..5);
        let leaves: Vec<Lazy<usize>> = (0..m).map(|i| child(ctx, i, rng)).collect();
        Lazy::new(async move {
            let out = collect_all_para(leaves).await;
            check_all(ctx, tally, &out);
            out.len()
        })
    });
    Lazy::new(async move {
        if let Some(inner) = inner {
            let _ = inner.await_try().await;
        }
        tally.inits.fetch_add(1, SeqCst);
        match kind {
            0 => {
                let out = collect_all(children).await;
                check_all(ctx, tally, &out);
                out.len()
            }
            1 => {
                let out = collect_all_para(children).await;
                check_all(ctx, tally, &out);
                out.len()
            }
            2 => {
                let out = collect_all_windowed(window, window % 2 == 0, children).await;
                check_all(ctx, tally, &out);
                out.len()
            }
            _ => {
                let r = collect_any(children).await;
                if let Ok(v) = r.value.as_result() {
                    if *v != r.index() {
                        ctx.fail(&format!("collect_any: value {v} from index {}", r.index()));
                    }
                }
                1
            }
        }
    })
}

/// Tasks run three ways at once: `sync_await` from two plain threads,
/// `start` with callbacks, and awaited (with random cancellation) inside
/// caller futures on the executor.
fn task_round(ctx: &'static Ctx, sp: &Arc<dyn Spawner>, tally: &'static Tally, seed: u64) {
    let ntasks: u64 = 120;
    ctx.set_stage(format!("task seed {seed}"));
    let ex: ExecutorRef = Arc::new(Adapter(sp.clone()));
    let mut rng = fastrand::Rng::with_seed(seed);
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let ex = ex.clone();
            let mut rng = fastrand::Rng::with_seed(seed * 31 + t);
            std::thread::spawn(move || {
                for _ in 0..ntasks / 8 {
                    let _ = sync_await_try(top(ctx, tally, &mut rng).via(ex.clone()));
                    ctx.tick();
                }
            })
        })
        .collect();
    let expected = Arc::new(AtomicUsize::new(0));
    let ran = Arc::new(AtomicUsize::new(0));
    for _ in 0..ntasks / 4 {
        let l = top(ctx, tally, &mut rng);
        expected.fetch_add(1, SeqCst);
        let ran = ran.clone();
        let cb = move |_: Try<usize>| {
            ran.fetch_add(1, SeqCst);
            ctx.tick();
        };
        match rng.u8(0..3) {
            0 => l.via(ex.clone()).start(cb),
            1 => l.directly_start(cb, ex.clone()),
            _ => l.start(cb),
        }
    }
    let mut futs: Vec<BoxFuture<'static, ()>> = Vec::new();
    for _ in 0..ntasks / 2 {
        let l = top(ctx, tally, &mut rng);
        let cancel = random_cancel(&mut rng, 40);
        let ex = ex.clone();
        let via = rng.bool();
        futs.push(Box::pin(async move {
            let r = if via {
                guarded(l.via(ex).await_try(), cancel).await
            } else {
                guarded(l.await_try(), cancel).await
            };
            if let Res::Panicked = r {
                ctx.fail("await_try panicked");
            }
            tally.count(&r);
        }));
    }
    run_all(ctx, sp, seed, drive(false), futs);
    for t in threads {
        t.join().unwrap();
    }
    wait_until(ctx, "task: every start callback ran", || {
        ran.load(SeqCst) == expected.load(SeqCst)
    });
    wait_until(ctx, "task: every task future dropped", || {
        ctx.live_futs.load(SeqCst) == 0
    });
}

fn task(name: &str, exec: Exec) {
    let tally = Tally::new();
    soak::soak(name, exec, TASK_ROUNDS, |ctx, sp, r| {
        task_round(ctx, sp, tally, 4_000 + r)
    });
    let get = |a: &AtomicU64| a.load(SeqCst);
    let summary = format!("{name}: {tally:?}");
    println!("{summary}");
    assert!(get(&tally.done) > 0, "no awaited task finished: {summary}");
    assert!(
        get(&tally.cancelled) > 0,
        "no awaiting caller was cancelled: {summary}"
    );
    assert!(
        get(&tally.panicked) > 0,
        "no child task panicked: {summary}"
    );
}

#[test]
fn task_on_smol() {
    task("task_on_smol", Exec::Smol);
}
#[test]
fn task_on_threadpool() {
    task("task_on_threadpool", Exec::ThreadPool);
}
#[test]
fn task_on_spurious_executor() {
    task("task_on_spurious_executor", Exec::Spurious);
}

/// `SimpleExecutor::shutdown` runs the queued jobs and joins the threads
/// before it returns, also when it overlaps another call: a second,
/// concurrent `shutdown` (or the last handle's drop on another thread) used
/// to return at once, while the first one was still joining, before the
/// queued jobs had run. (If the spawned call starts late, the second call
/// is the first: the test still holds.)
#[test]
fn a_concurrent_second_shutdown_waits_for_the_pool_to_stop_too() {
    use lazyflight::task::{Executor, SimpleExecutor};
    use std::time::Duration;
    let ex = SimpleExecutor::new(1);
    let ran = Arc::new(AtomicBool::new(false));
    // A long job, then a queued one.
    ex.schedule(Box::new(|| std::thread::sleep(Duration::from_millis(400))))
        .unwrap();
    let r = ran.clone();
    ex.schedule(Box::new(move || r.store(true, SeqCst)))
        .unwrap();
    let first = {
        let ex = ex.clone();
        std::thread::spawn(move || ex.shutdown())
    };
    std::thread::sleep(Duration::from_millis(100));
    ex.shutdown();
    let done_after_second = ran.load(SeqCst);
    first.join().unwrap();
    assert!(
        done_after_second,
        "the second shutdown returned before the queued job ran (the worker was not joined)"
    );
}
