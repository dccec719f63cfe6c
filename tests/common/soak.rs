//! Machinery for `tests/executors.rs`: three executors behind one `Spawner`
//! trait, a timer thread that belongs to none of them, per-test drop counters
//! and a violation log, random pauses and cancellation, and a watchdog that
//! aborts the test binary when a test stops making progress.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::cell::Cell;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, Once, OnceLock};
use std::task::Wake;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;

/// Panic messages the soak provokes on purpose (or that lazyflight raises for
/// them); the panic hook keeps them off stderr.
const EXPECTED_PANICS: &[&str] = &[
    "soak-induced",
    "owned initializer started by this call panicked",
];

/// A test stalls if none of its callers finishes for this long. Every caller
/// finishes within milliseconds, so this is far above any slow machine.
const STALL: Duration = Duration::from_secs(15);

/// How long a settle check waits for executors to drop finished futures.
const SETTLE: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------- context

/// Everything one test counts and checks. Tests run in parallel in one
/// process, so nothing here is global; each test leaks one `Ctx`.
#[derive(Debug, Default)]
pub(crate) struct Ctx {
    pub(crate) name: String,
    /// Values, errors and init futures alive right now.
    pub(crate) live_values: AtomicUsize,
    pub(crate) live_errors: AtomicUsize,
    pub(crate) live_futs: AtomicUsize,
    /// Finished callers, sync_awaits and callbacks: what the watchdog watches.
    pub(crate) progress: AtomicU64,
    /// What the test is doing (round, seed, configuration), for messages.
    pub(crate) stage: Mutex<String>,
    violations: Mutex<Vec<String>>,
    next_id: AtomicU64,
}

impl Ctx {
    pub(crate) fn new(name: &str) -> &'static Ctx {
        install_hook();
        Box::leak(Box::new(Ctx {
            name: name.to_owned(),
            ..Ctx::default()
        }))
    }

    /// Records a broken invariant; the test fails at its next `check`.
    /// Invariants are checked on executor threads too, where a panic would
    /// only kill a worker, so they are recorded instead of asserted there.
    pub(crate) fn fail(&self, msg: &str) {
        let msg = format!("{}: {msg} (at {})", self.name, self.stage.lock().unwrap());
        eprintln!("INVARIANT VIOLATION: {msg}");
        let mut v = self.violations.lock().unwrap();
        if v.len() < 20 {
            v.push(msg);
        }
    }

    /// Fails the test if any invariant was broken so far.
    pub(crate) fn check(&self) {
        let v = self.violations.lock().unwrap();
        assert!(
            v.is_empty(),
            "{} invariant violation(s):\n{}",
            v.len(),
            v.join("\n")
        );
    }

    pub(crate) fn set_stage(&self, s: String) {
        *self.stage.lock().unwrap() = s;
    }

    pub(crate) fn tick(&self) {
        self.progress.fetch_add(1, SeqCst);
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, SeqCst)
    }

    /// Every value, error and init future made so far has been dropped.
    pub(crate) fn check_no_leaks(&self, what: &str) {
        let (f, v, e) = (
            self.live_futs.load(SeqCst),
            self.live_errors.load(SeqCst),
            self.live_values.load(SeqCst),
        );
        if f != 0 || v != 0 || e != 0 {
            self.fail(&format!(
                "{what}: leaked init futures={f} values={v} errors={e}"
            ));
        }
    }

    fn report(&self) -> String {
        format!(
            "at {}; progress={} live init futures={} values={} errors={}; violations so far: {:?}",
            self.stage.lock().unwrap(),
            self.progress.load(SeqCst),
            self.live_futs.load(SeqCst),
            self.live_values.load(SeqCst),
            self.live_errors.load(SeqCst),
            self.violations.lock().unwrap(),
        )
    }
}

/// Counts itself in one of a `Ctx`'s live counters while it exists.
#[derive(Debug)]
pub(crate) struct Live(&'static AtomicUsize);
impl Live {
    pub(crate) fn new(c: &'static AtomicUsize) -> Self {
        c.fetch_add(1, SeqCst);
        Live(c)
    }
}
impl Clone for Live {
    fn clone(&self) -> Self {
        Live::new(self.0)
    }
}
impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

/// An init's value: `id` is unique per init, `tag` says when it started.
#[derive(Debug, Clone)]
pub(crate) struct Val {
    pub(crate) id: u64,
    pub(crate) tag: u64,
    _live: Live,
}
impl Val {
    pub(crate) fn new(ctx: &'static Ctx, tag: u64) -> Self {
        Val {
            id: ctx.next_id(),
            tag,
            _live: Live::new(&ctx.live_values),
        }
    }
}

/// An init's error, counted like `Val`.
#[derive(Debug, Clone)]
pub(crate) struct Error {
    pub(crate) id: u64,
    pub(crate) tag: u64,
    _live: Live,
}
impl Error {
    pub(crate) fn new(ctx: &'static Ctx, tag: u64) -> Self {
        Error {
            id: ctx.next_id(),
            tag,
            _live: Live::new(&ctx.live_errors),
        }
    }
}

/// Records a violation if two holders of the same slot overlap.
pub(crate) struct RunGuard<'a> {
    slot: &'a AtomicUsize,
    held: bool,
}
impl<'a> RunGuard<'a> {
    pub(crate) fn enter(ctx: &Ctx, slot: &'a AtomicUsize, what: &str) -> Self {
        let prev = slot.fetch_add(1, SeqCst);
        if prev != 0 {
            ctx.fail(&format!(
                "{what}: {} initializers running at once",
                prev + 1
            ));
        }
        RunGuard { slot, held: true }
    }
    pub(crate) fn exit(&mut self) {
        if self.held {
            self.held = false;
            self.slot.fetch_sub(1, SeqCst);
        }
    }
}
impl Drop for RunGuard<'_> {
    fn drop(&mut self) {
        self.exit();
    }
}

// ------------------------------------------------------------- panic hook

thread_local! {
    /// The test an executor worker thread belongs to.
    static WORKER_OF: Cell<Option<&'static Ctx>> = const { Cell::new(None) };
    /// The id of the executor whose worker this thread is (0: none).
    pub(crate) static IN_EXEC: Cell<usize> = const { Cell::new(0) };
}

fn mark_worker(ctx: &'static Ctx, exec_id: usize) {
    WORKER_OF.with(|c| c.set(Some(ctx)));
    IN_EXEC.with(|c| c.set(exec_id));
}

/// Silences the panics the soak provokes; any other panic on an executor
/// worker is recorded as a violation of that worker's test (it would
/// otherwise only kill the worker, or vanish inside the executor).
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = payload_str(info.payload());
            if EXPECTED_PANICS.iter().any(|e| msg.contains(e)) {
                return;
            }
            if let Some(ctx) = WORKER_OF.with(Cell::get) {
                ctx.fail(&format!("unexpected panic on an executor thread: {msg}"));
            }
            default(info);
        }));
    });
}

pub(crate) fn payload_str(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic>".into()
    }
}

// --------------------------------------------------------------- watchdog

/// Aborts the process, after saying which test hung and where, if the test's
/// progress counter stands still for `STALL`. A lost wake-up hangs the
/// test's callers; without this, it would hang CI instead of failing it.
pub(crate) struct Watchdog {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}
impl Watchdog {
    pub(crate) fn start(ctx: &'static Ctx) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut last = ctx.progress.load(SeqCst);
            let mut since = Instant::now();
            while !s.load(SeqCst) {
                std::thread::park_timeout(Duration::from_millis(50));
                let now = ctx.progress.load(SeqCst);
                if now != last {
                    last = now;
                    since = Instant::now();
                } else if since.elapsed() > STALL {
                    // Straight to stderr: the test harness captures
                    // `eprintln!`, and would lose it in the abort.
                    let _ = writeln!(
                        std::io::stderr(),
                        "WATCHDOG: test '{}' made no progress for {STALL:?} (a caller, task or \
                         callback never finished: lost wake-up?): {}",
                        ctx.name,
                        ctx.report()
                    );
                    std::process::abort();
                }
            }
        });
        Watchdog {
            stop,
            thread: Some(thread),
        }
    }
}
impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// Waits until `cond` holds, polling; records a violation if it does not
/// within `SETTLE`. For state that executors release just after a caller
/// finished (they drop a finished future after it returned `Ready`).
pub(crate) fn wait_until(ctx: &'static Ctx, what: &str, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > SETTLE {
            ctx.fail(&format!("{what}: did not settle within {SETTLE:?}"));
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

// ------------------------------------------------------------------ timer

/// One timer thread for every test and executor, so that sleeping does not
/// depend on any executor's reactor.
struct Timers {
    heap: Mutex<BinaryHeap<Reverse<Due>>>,
    cv: Condvar,
}
/// A sleep's slot: whether its deadline passed, and whom to wake then.
type TimerSlot = Arc<Mutex<(bool, Option<Waker>)>>;
struct Due(Instant, u64, TimerSlot);
impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.0, self.1) == (o.0, o.1)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> core::cmp::Ordering {
        (self.0, self.1).cmp(&(o.0, o.1))
    }
}

fn timers() -> &'static Timers {
    static T: OnceLock<&'static Timers> = OnceLock::new();
    T.get_or_init(|| {
        let t: &'static Timers = Box::leak(Box::new(Timers {
            heap: Mutex::new(BinaryHeap::new()),
            cv: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("soak-timer".into())
            .spawn(move || loop {
                let mut heap = t.heap.lock().unwrap();
                let now = Instant::now();
                let mut due = Vec::new();
                while heap.peek().is_some_and(|d| d.0 .0 <= now) {
                    due.push(heap.pop().unwrap().0);
                }
                if due.is_empty() {
                    let wait = heap.peek().map_or(Duration::from_secs(1), |d| d.0 .0 - now);
                    drop(t.cv.wait_timeout(heap, wait).unwrap());
                    continue;
                }
                drop(heap);
                for d in due {
                    let w = {
                        let mut e = d.2.lock().unwrap();
                        e.0 = true;
                        e.1.take()
                    };
                    if let Some(w) = w {
                        w.wake();
                    }
                }
            })
            .unwrap();
        t
    })
}

/// Completes once `d` has passed (woken by the timer thread).
pub(crate) struct Sleep {
    deadline: Instant,
    entry: Option<TimerSlot>,
}
pub(crate) fn sleep(d: Duration) -> Sleep {
    Sleep {
        deadline: Instant::now() + d,
        entry: None,
    }
}
impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.entry {
            Some(e) => {
                let mut e = e.lock().unwrap();
                if e.0 {
                    return Poll::Ready(());
                }
                if !e.1.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    e.1 = Some(cx.waker().clone());
                }
                Poll::Pending
            }
            None => {
                if Instant::now() >= self.deadline {
                    return Poll::Ready(());
                }
                static SEQ: AtomicU64 = AtomicU64::new(0);
                let e = Arc::new(Mutex::new((false, Some(cx.waker().clone()))));
                let t = timers();
                t.heap.lock().unwrap().push(Reverse(Due(
                    self.deadline,
                    SEQ.fetch_add(1, SeqCst),
                    e.clone(),
                )));
                t.cv.notify_one();
                self.entry = Some(e);
                Poll::Pending
            }
        }
    }
}

// ------------------------------------------- pauses and cancellation

/// Returns `Pending` once, waking itself first.
pub(crate) struct YieldOnce(bool);
pub(crate) fn yield_once() -> YieldOnce {
    YieldOnce(false)
}
impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// A random pause: a yield, a short timer sleep, or nothing.
pub(crate) async fn pause(rng: &mut fastrand::Rng) {
    match rng.u8(0..10) {
        0..=5 => yield_once().await,
        6..=8 => sleep(Duration::from_micros(rng.u64(10..300))).await,
        _ => {}
    }
}

/// When a caller gives up: never, after some polls, or after some time.
#[derive(Clone, Copy, Debug)]
pub(crate) enum CancelMode {
    None,
    AfterPolls(u32),
    AfterTime(Duration),
}
pub(crate) fn random_cancel(rng: &mut fastrand::Rng, pct: u8) -> CancelMode {
    if rng.u8(0..100) >= pct {
        CancelMode::None
    } else if rng.bool() {
        CancelMode::AfterPolls(rng.u32(1..6))
    } else {
        CancelMode::AfterTime(Duration::from_micros(rng.u64(1..500)))
    }
}

struct PollLimit<F> {
    f: Pin<Box<F>>,
    left: u32,
}
impl<F: Future> Future for PollLimit<F> {
    type Output = Option<F::Output>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.left -= 1;
        self.f.as_mut().poll(cx).map(Some)
    }
}

/// How a guarded caller ended.
#[derive(Debug)]
pub(crate) enum Res<T> {
    Done(T),
    Cancelled,
    Panicked,
}

/// Runs `f` until it finishes, is cancelled (dropped) as `mode` says, or
/// panics.
pub(crate) async fn guarded<F: Future>(f: F, mode: CancelMode) -> Res<F::Output> {
    let run = async move {
        match mode {
            CancelMode::None => Some(f.await),
            CancelMode::AfterPolls(n) => {
                PollLimit {
                    f: Box::pin(f),
                    left: n,
                }
                .await
            }
            CancelMode::AfterTime(d) => {
                let f = core::pin::pin!(f);
                let t = core::pin::pin!(sleep(d));
                match futures::future::select(f, t).await {
                    futures::future::Either::Left((v, _)) => Some(v),
                    futures::future::Either::Right(_) => None,
                }
            }
        }
    };
    match AssertUnwindSafe(run).catch_unwind().await {
        Ok(Some(v)) => Res::Done(v),
        Ok(None) => Res::Cancelled,
        Err(_) => Res::Panicked,
    }
}

// -------------------------------------------------------------- executors

/// An executor the soak spawns its callers on.
pub(crate) trait Spawner: Send + Sync {
    fn spawn(&self, f: BoxFuture<'static, ()>);
    /// Unique per executor instance; its workers have it in `IN_EXEC`.
    fn id(&self) -> usize;
    fn name(&self) -> &'static str;
    /// Stops and joins the worker threads (tasks still queued are dropped).
    fn shutdown(&self);
}

fn next_exec_id() -> usize {
    static ID: AtomicUsize = AtomicUsize::new(1);
    ID.fetch_add(1, SeqCst)
}

/// The executors the tests run on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Exec {
    /// smol's executor (`async-executor`) run by 3 threads.
    Smol,
    /// `futures::executor::ThreadPool` with 3 threads.
    ThreadPool,
    /// The hand-written executor below: 3 threads, spurious polls, a fresh
    /// waker on every poll.
    Spurious,
}

pub(crate) fn make_spawner(ctx: &'static Ctx, e: Exec) -> Arc<dyn Spawner> {
    match e {
        Exec::Smol => Arc::new(Smol::new(ctx, 3)),
        Exec::ThreadPool => Arc::new(Pool::new(ctx, 3)),
        Exec::Spurious => Arc::new(Spurious::new(ctx, 3, 30)),
    }
}

/// smol's executor, driven by `threads` threads.
struct Smol {
    ex: Arc<async_executor::Executor<'static>>,
    id: usize,
    stops: Mutex<Vec<(futures::channel::oneshot::Sender<()>, JoinHandle<()>)>>,
}
impl Smol {
    fn new(ctx: &'static Ctx, threads: usize) -> Self {
        let ex = Arc::new(async_executor::Executor::new());
        let id = next_exec_id();
        let stops = (0..threads)
            .map(|_| {
                let ex = ex.clone();
                let (tx, rx) = futures::channel::oneshot::channel::<()>();
                let h = std::thread::Builder::new()
                    .name("smol-worker".into())
                    .spawn(move || {
                        mark_worker(ctx, id);
                        futures::executor::block_on(ex.run(rx)).ok();
                    })
                    .unwrap();
                (tx, h)
            })
            .collect();
        Smol {
            ex,
            id,
            stops: Mutex::new(stops),
        }
    }
}
impl Spawner for Smol {
    fn spawn(&self, f: BoxFuture<'static, ()>) {
        self.ex.spawn(f).detach();
    }
    fn id(&self) -> usize {
        self.id
    }
    fn name(&self) -> &'static str {
        "smol"
    }
    fn shutdown(&self) {
        for (tx, h) in self.stops.lock().unwrap().drain(..) {
            let _ = tx.send(());
            h.join().unwrap();
        }
    }
}

/// `futures::executor::ThreadPool`.
struct Pool {
    pool: Mutex<Option<futures::executor::ThreadPool>>,
    id: usize,
}
impl Pool {
    fn new(ctx: &'static Ctx, threads: usize) -> Self {
        let id = next_exec_id();
        let pool = futures::executor::ThreadPool::builder()
            .pool_size(threads)
            .name_prefix("pool-worker")
            .after_start(move |_| mark_worker(ctx, id))
            .create()
            .unwrap();
        Pool {
            pool: Mutex::new(Some(pool)),
            id,
        }
    }
}
impl Spawner for Pool {
    fn spawn(&self, f: BoxFuture<'static, ()>) {
        // A spawn after shutdown (a lazyflight job scheduled late) is dropped,
        // as a stopped executor would.
        if let Some(p) = &*self.pool.lock().unwrap() {
            p.spawn_ok(f);
        }
    }
    fn id(&self) -> usize {
        self.id
    }
    fn name(&self) -> &'static str {
        "threadpool"
    }
    fn shutdown(&self) {
        // The workers exit once the last handle is gone.
        drop(self.pool.lock().unwrap().take());
    }
}

/// A hand-written executor that is legal but unfriendly: each poll gets a
/// fresh `Waker` (so `will_wake` never holds), a polled task is polled again
/// right away `spurious_pct` % of the time without being woken, and idle
/// workers poll random unwoken tasks. Each task gets at most
/// `SPURIOUS_BUDGET` such polls: unbounded spurious polls would also rescue
/// a task whose wake-up was lost, and hide the bug the test looks for.
struct Spurious {
    inner: Arc<SInner>,
    id: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}
struct STask {
    fut: Mutex<Option<BoxFuture<'static, ()>>>,
    queued: AtomicBool,
    done: AtomicBool,
    /// Spurious polls this task may still get.
    spurious_left: AtomicUsize,
}
const SPURIOUS_BUDGET: usize = 4;
struct SInner {
    queue: Mutex<VecDeque<Arc<STask>>>,
    all: Mutex<Vec<Arc<STask>>>,
    cv: Condvar,
    spurious_pct: u8,
    stop: AtomicBool,
}
struct SWaker {
    task: Arc<STask>,
    ex: Arc<SInner>,
}
impl Wake for SWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.task.queued.swap(true, SeqCst) {
            self.ex.queue.lock().unwrap().push_back(self.task.clone());
            self.ex.cv.notify_one();
        }
    }
}
impl Spurious {
    fn new(ctx: &'static Ctx, threads: usize, spurious_pct: u8) -> Self {
        let inner = Arc::new(SInner {
            queue: Mutex::new(VecDeque::new()),
            all: Mutex::new(Vec::new()),
            cv: Condvar::new(),
            spurious_pct,
            stop: AtomicBool::new(false),
        });
        let id = next_exec_id();
        let threads = (0..threads)
            .map(|t| {
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name("spurious-worker".into())
                    .spawn(move || {
                        mark_worker(ctx, id);
                        spurious_worker(&inner, t as u64);
                    })
                    .unwrap()
            })
            .collect();
        Spurious {
            inner,
            id,
            threads: Mutex::new(threads),
        }
    }
}
/// Polls `task` once with a fresh waker; `try_lock` for the spurious polls,
/// so that they never wait for another worker's poll of the same task.
fn spurious_poll(inner: &Arc<SInner>, task: &Arc<STask>, blocking: bool) {
    let mut g = if blocking {
        task.fut.lock().unwrap()
    } else {
        let budget = task
            .spurious_left
            .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1));
        match (budget, task.fut.try_lock()) {
            (Ok(_), Ok(g)) => g,
            _ => return,
        }
    };
    let Some(f) = g.as_mut() else { return };
    let waker = Waker::from(Arc::new(SWaker {
        task: task.clone(),
        ex: inner.clone(),
    }));
    if f.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
        *g = None;
        task.done.store(true, SeqCst);
    }
}
fn spurious_worker(inner: &Arc<SInner>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed * 7919 + 1);
    let mut last_sweep = Instant::now();
    while !inner.stop.load(SeqCst) {
        let next = inner.queue.lock().unwrap().pop_front();
        if let Some(task) = &next {
            task.queued.store(false, SeqCst);
            spurious_poll(inner, task, true);
            if rng.u8(0..100) < inner.spurious_pct {
                spurious_poll(inner, task, false);
            }
        }
        if next.is_none() || last_sweep.elapsed() > Duration::from_millis(1) {
            last_sweep = Instant::now();
            let snapshot: Vec<Arc<STask>> = {
                let mut all = inner.all.lock().unwrap();
                all.retain(|t| !t.done.load(SeqCst));
                all.clone()
            };
            for t in snapshot {
                if t.spurious_left.load(SeqCst) > 0 && rng.u8(0..100) < inner.spurious_pct {
                    spurious_poll(inner, &t, false);
                }
            }
            let q = inner.queue.lock().unwrap();
            if q.is_empty() && !inner.stop.load(SeqCst) {
                // Not a synchronization: the sweep above polls tasks nobody
                // woke, so idle workers come back for it now and then.
                drop(
                    inner
                        .cv
                        .wait_timeout(q, Duration::from_micros(500))
                        .unwrap(),
                );
            }
        }
    }
}
impl Spawner for Spurious {
    fn spawn(&self, f: BoxFuture<'static, ()>) {
        let t = Arc::new(STask {
            fut: Mutex::new(Some(f)),
            queued: AtomicBool::new(true),
            done: AtomicBool::new(false),
            spurious_left: AtomicUsize::new(SPURIOUS_BUDGET),
        });
        self.inner.all.lock().unwrap().push(t.clone());
        self.inner.queue.lock().unwrap().push_back(t);
        self.inner.cv.notify_one();
    }
    fn id(&self) -> usize {
        self.id
    }
    fn name(&self) -> &'static str {
        "spurious"
    }
    fn shutdown(&self) {
        self.inner.stop.store(true, SeqCst);
        self.inner.cv.notify_all();
        for h in self.threads.lock().unwrap().drain(..) {
            h.join().unwrap();
        }
        // Tasks and wakers point at each other through `inner`: break that.
        let all = std::mem::take(&mut *self.inner.all.lock().unwrap());
        for t in &all {
            drop(t.fut.lock().unwrap().take());
        }
        self.inner.queue.lock().unwrap().clear();
    }
}

/// How `run_all` drives each caller future.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Drive {
    /// Percent of callers polled once in one task, then finished in another
    /// (a different waker, possibly another thread).
    pub(crate) migrate_pct: u8,
    /// Percent of callers polled once, then kept alive without being polled
    /// until every other caller has finished, then dropped.
    pub(crate) park_pct: u8,
}

/// Spawns every future on `sp` and blocks until all have finished; counts
/// each as progress for the watchdog. Returns how many were parked.
pub(crate) fn run_all(
    ctx: &'static Ctx,
    sp: &Arc<dyn Spawner>,
    seed: u64,
    drive: Drive,
    futs: Vec<BoxFuture<'static, ()>>,
) -> usize {
    let n = futs.len();
    let done = Arc::new((Mutex::new(0usize), Condvar::new()));
    let parked: Arc<Mutex<Vec<BoxFuture<'static, ()>>>> = Arc::default();
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    for mut f in futs {
        let done = done.clone();
        let migrate = rng.u8(0..100) < drive.migrate_pct;
        let park = rng.u8(0..100) < drive.park_pct;
        let sp2 = sp.clone();
        let parked = parked.clone();
        sp.spawn(Box::pin(async move {
            if park {
                if futures::poll!(f.as_mut()).is_pending() {
                    parked.lock().unwrap().push(f);
                }
            } else if migrate {
                if futures::poll!(f.as_mut()).is_pending() {
                    let (tx, rx) = futures::channel::oneshot::channel::<()>();
                    sp2.spawn(Box::pin(async move {
                        f.await;
                        let _ = tx.send(());
                    }));
                    let _ = rx.await;
                }
            } else {
                f.await;
            }
            ctx.tick();
            *done.0.lock().unwrap() += 1;
            done.1.notify_all();
        }));
    }
    let mut g = done.0.lock().unwrap();
    while *g < n {
        g = done.1.wait(g).unwrap();
    }
    drop(g);
    let p = std::mem::take(&mut *parked.lock().unwrap());
    let count = p.len();
    drop(p);
    count
}

/// Runs `round` `rounds` times on a fresh executor of kind `exec` under a
/// watchdog, failing the test on the first round that broke an invariant.
pub(crate) fn soak(
    name: &str,
    exec: Exec,
    rounds: u64,
    mut round: impl FnMut(&'static Ctx, &Arc<dyn Spawner>, u64),
) -> &'static Ctx {
    let ctx = Ctx::new(name);
    let watchdog = Watchdog::start(ctx);
    let sp = make_spawner(ctx, exec);
    for r in 0..rounds {
        round(ctx, &sp, r);
        ctx.check();
    }
    sp.shutdown();
    drop(watchdog);
    ctx
}
