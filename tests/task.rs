//! Public-API tests of `lazyflight::task`, carrying over async_simple's
//! LazyTest scenarios (simple async, start with an executor, via keeps the
//! worker, yield FIFO, ready chains, executor passed to grandchildren,
//! move-only values, exceptions, destruction order) plus the scheduling
//! failure cases async_simple gets wrong (#123).
// Callbacks send `r.value()` of a `Try<()>` on purpose: it re-raises a
// captured panic inside the callback, which is what those tests observe.
#![allow(clippy::unit_arg)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use lazyflight::task::{
    current_executor, sleep, sync_await, sync_await_try, yield_now, Executor, ExecutorRef, Job,
    Lazy, ScheduleError, SimpleExecutor, TaskError, Try,
};

#[path = "common/keeps_waker.rs"]
mod keeps_waker;
use keeps_waker::KeepsWaker;

fn plus_one(x: i32) -> Lazy<i32> {
    Lazy::new(async move { x + 1 })
}

/// Sets its flag when dropped: tells a test that a job or timer was dropped.
struct Flag(Arc<AtomicBool>);

impl Drop for Flag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// An executor that never runs anything: every job is refused.
#[derive(Debug)]
struct Refusing;
impl Executor for Refusing {
    fn schedule(&self, job: Job) -> Result<(), ScheduleError> {
        Err(ScheduleError::new(job))
    }
    fn current_thread_in_executor(&self) -> bool {
        false
    }
}

/// An executor that accepts jobs into a queue the test drains by hand (or
/// drops unrun).
#[derive(Default)]
struct Manual {
    jobs: Mutex<VecDeque<Job>>,
}
impl std::fmt::Debug for Manual {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Manual")
    }
}
impl Executor for Manual {
    fn schedule(&self, job: Job) -> Result<(), ScheduleError> {
        self.jobs.lock().unwrap().push_back(job);
        Ok(())
    }
    fn current_thread_in_executor(&self) -> bool {
        false
    }
}
impl Manual {
    fn run_all(&self) -> usize {
        let mut n = 0;
        loop {
            let job = self.jobs.lock().unwrap().pop_front();
            match job {
                Some(j) => {
                    j();
                    n += 1;
                }
                None => return n,
            }
        }
    }
}

#[test]
fn creating_runs_nothing_and_await_runs_inline() {
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let lazy = Lazy::new(async move {
        r.store(true, SeqCst);
        5
    });
    assert!(!ran.load(SeqCst), "creating a Lazy must not run it");
    let outer = Lazy::new(async move { lazy.await * 2 });
    assert!(!ran.load(SeqCst));
    assert_eq!(sync_await(outer), 10);
    assert!(ran.load(SeqCst));
    drop(Lazy::new(async {
        unreachable!("a dropped Lazy never runs")
    }));
}

#[test]
fn simple_async() {
    let t = Lazy::new(async { plus_one(1).await + plus_one(2).await });
    assert_eq!(sync_await(t), 5);
}

#[test]
fn start_runs_inline_until_the_first_suspension_and_calls_back_once() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let (tx, rx) = mpsc::channel();
    Lazy::new(async { 41 + 1 }).start(move |r: Try<i32>| {
        c.fetch_add(1, SeqCst);
        tx.send(r.value()).unwrap();
    });
    // A task that never suspends completes before `start` returns.
    assert_eq!(calls.load(SeqCst), 1);
    assert_eq!(rx.recv().unwrap(), 42);
}

#[test]
fn start_with_executor() {
    let ex = SimpleExecutor::new(2);
    let (tx, rx) = mpsc::channel();
    let ex2 = ex.clone();
    Lazy::new(async move {
        let e = current_executor().expect("via binds the executor");
        (
            e.current_thread_in_executor(),
            ex2.current_thread_in_executor(),
            plus_one(1).await,
        )
    })
    .via(ex.clone())
    .start(move |r| tx.send(r.value()).unwrap());
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        (true, true, 2)
    );
}

#[test]
fn via_keeps_the_worker_after_an_await_completed_elsewhere() {
    let ex = SimpleExecutor::new(2);
    let ex2 = ex.clone();
    let steps = sync_await(
        Lazy::new(async move {
            let mut on_pool = vec![ex2.current_thread_in_executor()];
            for _ in 0..5 {
                // Completed by a foreign thread: the task must resume on its
                // executor, not on that thread.
                let (tx, rx) = futures::channel::oneshot::channel();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(1));
                    tx.send(()).unwrap();
                });
                rx.await.unwrap();
                on_pool.push(ex2.current_thread_in_executor());
            }
            on_pool
        })
        .via(ex.clone()),
    );
    assert_eq!(steps, vec![true; 6]);
}

#[test]
fn directly_start_runs_inline_then_on_the_executor_after_sleep() {
    let ex = SimpleExecutor::new(1);
    let (tx, rx) = mpsc::channel();
    Lazy::new(async {
        let e = current_executor().expect("bound by directly_start");
        let before = e.current_thread_in_executor();
        sleep(Duration::from_millis(2)).await.unwrap();
        (before, e.current_thread_in_executor())
    })
    .directly_start(move |r| tx.send(r.value()).unwrap(), ex);
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        (false, true)
    );
}

#[test]
fn yield_is_fifo_on_a_one_thread_executor() {
    let ex = SimpleExecutor::new(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    // Hold the only worker until all three tasks are queued, so that the
    // queue starts as [0, 1, 2].
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    ex.schedule(Box::new(move || gate_rx.recv().unwrap()))
        .unwrap();
    for id in 0..3 {
        let (order, tx) = (order.clone(), tx.clone());
        Lazy::new(async move {
            for step in 0..3 {
                order.lock().unwrap().push((step, id));
                yield_now().await.unwrap();
            }
        })
        .via(ex.clone())
        .start(move |r| tx.send(r.value()).unwrap());
    }
    gate_tx.send(()).unwrap();
    for _ in 0..3 {
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    let got = order.lock().unwrap().clone();
    let want: Vec<_> = (0..3).flat_map(|s| (0..3).map(move |i| (s, i))).collect();
    assert_eq!(
        got, want,
        "each yield must go behind the tasks already queued"
    );
}

#[test]
fn yield_and_sleep_without_an_executor_are_errors() {
    assert!(matches!(
        sync_await(Lazy::new(yield_now())),
        Err(TaskError::NoExecutor)
    ));
    assert!(matches!(
        sync_await(Lazy::new(sleep(Duration::from_millis(1)))),
        Err(TaskError::NoExecutor)
    ));
}

#[test]
fn void_tasks() {
    let hit = Arc::new(AtomicUsize::new(0));
    let h = hit.clone();
    let t: Lazy<()> = Lazy::new(async move {
        h.fetch_add(1, SeqCst);
    });
    sync_await(t);
    assert_eq!(hit.load(SeqCst), 1);
}

fn chain(depth: usize) -> Lazy<usize> {
    if depth == 0 {
        return Lazy::ready(0);
    }
    Lazy::new(async move { chain(depth - 1).await + 1 })
}

#[test]
fn ready_chains_30_deep_5000_times() {
    let ex = SimpleExecutor::new(1);
    let total = sync_await(
        Lazy::new(async {
            let mut sum = 0;
            for _ in 0..5000 {
                sum += chain(30).await;
            }
            sum
        })
        .via(ex),
    );
    assert_eq!(total, 30 * 5000);
}

#[test]
fn executor_is_passed_to_grandchildren() {
    let ex = SimpleExecutor::new(1);
    let exr: ExecutorRef = ex.clone();
    let grandchild = || Lazy::new(async { current_executor() });
    let child = move || Lazy::new(async move { grandchild().await });
    let got = sync_await(Lazy::new(async move { child().await }).via(ex));
    let got = got.expect("the grandchild sees the root's executor");
    assert!(std::ptr::addr_eq(Arc::as_ptr(&got), Arc::as_ptr(&exr)));
    assert!(sync_await(Lazy::new(async { current_executor() })).is_none());
}

#[test]
fn move_only_values() {
    struct MoveOnly(Box<u32>);
    let t = Lazy::new(async { MoveOnly(Box::new(9)) });
    let outer = Lazy::new(async move {
        let m = t.await;
        MoveOnly(Box::new(*m.0 + 1))
    });
    assert_eq!(*sync_await(outer).0, 10);
}

#[test]
fn panics_propagate_through_await_and_land_in_try() {
    let foo = || Lazy::new(async { panic!("test") as i32 });
    let bar = move || Lazy::new(async move { foo().await + 1 });
    let r = sync_await_try(Lazy::new(async move { bar().await }));
    assert!(r.has_error());
    let err = r.into_result().unwrap_err();
    assert!(err.is_panic());
    assert_eq!(err.panic_message(), Some("test"));

    // Caught in place with await_try.
    let caught = sync_await(Lazy::new(async move {
        let t = foo().await_try().await;
        if t.has_error() {
            -1
        } else {
            t.value()
        }
    }));
    assert_eq!(caught, -1);

    // sync_await resumes the panic on the caller.
    let resumed = std::panic::catch_unwind(|| sync_await(foo()));
    assert_eq!(
        *resumed.unwrap_err().downcast_ref::<&str>().unwrap(),
        "test"
    );

    // start: the callback gets the error.
    let (tx, rx) = mpsc::channel();
    foo().start(move |r| tx.send(r.has_error()).unwrap());
    assert!(rx.recv().unwrap());
}

#[test]
fn try_conversions() {
    let t: Try<u8> = Ok(3).into();
    assert_eq!(t.as_value(), Some(&3));
    let r: Result<u8, TaskError> = t.into();
    assert_eq!(r.unwrap(), 3);
    let e: Try<u8> = Try::from_error(TaskError::Rejected);
    assert!(e.has_error());
    assert!(matches!(e.error(), Some(TaskError::Rejected)));
    assert_eq!(
        e.error().unwrap().to_string(),
        "the executor refused to resume the task"
    );
    assert_eq!(format!("{:?}", Try::from_value(1)), "Try::Value(1)");
}

#[test]
fn refused_schedule_is_an_error_not_a_hang() {
    let ex: ExecutorRef = Arc::new(Refusing);
    let r = sync_await_try(Lazy::new(async { 1 }).via(ex.clone()));
    assert!(matches!(r.into_result(), Err(TaskError::Rejected)));

    // Refused on a resumption, mid-task: directly_start runs the first step
    // inline, the resumption after the foreign wake is refused.
    let (tx, rx) = mpsc::channel();
    let (otx, orx) = futures::channel::oneshot::channel::<()>();
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Flag(dropped.clone());
    Lazy::new(async move {
        let _flag = flag;
        orx.await.unwrap();
        7
    })
    .directly_start(
        move |r| tx.send(r.into_result().map_err(|e| e.to_string())).unwrap(),
        ex,
    );
    assert!(rx.try_recv().is_err(), "suspended, not finished");
    otx.send(()).unwrap();
    let got = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        got,
        Err("the executor refused to resume the task".to_string())
    );
    assert!(
        dropped.load(SeqCst),
        "the abandoned task's future is dropped"
    );
}

#[test]
fn jobs_dropped_unrun_complete_the_task_with_an_error() {
    let manual = Arc::new(Manual::default());
    let (tx, rx) = mpsc::channel();
    Lazy::new(async { 1 })
        .via(manual.clone())
        .start(move |r| tx.send(r.has_error()).unwrap());
    assert!(rx.try_recv().is_err());
    // The executor "shuts down": its queue is dropped unrun.
    drop(std::mem::take(&mut *manual.jobs.lock().unwrap()));
    assert!(rx.recv().unwrap());

    let (tx, rx) = mpsc::channel();
    Lazy::new(async { 2 })
        .via(manual.clone())
        .start(move |r| tx.send(r.value()).unwrap());
    assert_eq!(manual.run_all(), 1);
    assert_eq!(rx.recv().unwrap(), 2);
}

#[test]
fn sleep_without_timers_is_rejected() {
    let manual = Arc::new(Manual::default());
    let (tx, rx) = mpsc::channel();
    Lazy::new(sleep(Duration::from_millis(1)))
        .via(manual.clone())
        .start(move |r| {
            tx.send(r.value()).unwrap();
        });
    manual.run_all();
    assert!(matches!(rx.recv().unwrap(), Err(TaskError::Rejected)));
}

#[test]
#[should_panic(expected = "sync_await called from a thread of the task's own executor")]
fn sync_await_on_its_own_executor_panics() {
    let ex = SimpleExecutor::new(1);
    let inner_ex = ex.clone();
    // The outer task runs on `ex` and calls sync_await on a task bound to
    // `ex`: refused with a panic inside the task, resumed here.
    sync_await(Lazy::new(async move { sync_await(Lazy::new(async { 1 }).via(inner_ex)) }).via(ex));
}

#[test]
fn sync_await_on_another_executor_works() {
    let a = SimpleExecutor::new(1);
    let b = SimpleExecutor::new(1);
    let v = sync_await(Lazy::new(async move { sync_await(plus_one(1).via(b)) }).via(a));
    assert_eq!(v, 2);
}

#[test]
fn awaiting_a_reschedule_lazy_hops_and_comes_back() {
    let a = SimpleExecutor::new(1);
    let b = SimpleExecutor::new(1);
    let (a2, b2) = (a.clone(), b.clone());
    let got = sync_await(
        Lazy::new(async move {
            let b3 = b2.clone();
            let inner = Lazy::new(async move { b3.current_thread_in_executor() }).via(b2.clone());
            let on_b = inner.await;
            (on_b, a2.current_thread_in_executor())
        })
        .via(a),
    );
    assert_eq!(got, (true, true));
}

#[test]
fn destruction_order_future_before_callback() {
    let log = Arc::new(Mutex::new(Vec::new()));
    struct Noisy(Arc<Mutex<Vec<&'static str>>>);
    impl Drop for Noisy {
        fn drop(&mut self) {
            self.0.lock().unwrap().push("future state dropped");
        }
    }
    let n = Noisy(log.clone());
    let l2 = log.clone();
    Lazy::new(async move {
        let _n = n;
        1
    })
    .start(move |_| l2.lock().unwrap().push("callback"));
    assert_eq!(
        *log.lock().unwrap(),
        vec!["future state dropped", "callback"]
    );
}

#[test]
fn a_panicking_job_does_not_kill_the_worker() {
    let ex = SimpleExecutor::new(1);
    ex.schedule(Box::new(|| panic!("job panic"))).unwrap();
    assert_eq!(sync_await(plus_one(1).via(ex)), 2);
}

#[test]
fn sleep_orders_by_deadline() {
    // One worker: the order of the log is the order the timers fired in.
    let ex = SimpleExecutor::new(1);
    let order = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    for ms in [30u64, 10, 20] {
        let (order, tx) = (order.clone(), tx.clone());
        Lazy::new(async move {
            sleep(Duration::from_millis(ms)).await.unwrap();
            order.lock().unwrap().push(ms);
        })
        .via(ex.clone())
        .start(move |r| tx.send(r.value()).unwrap());
    }
    let t0 = Instant::now();
    for _ in 0..3 {
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    assert!(t0.elapsed() >= Duration::from_millis(25));
    assert_eq!(*order.lock().unwrap(), vec![10, 20, 30]);
}

#[test]
fn a_sleeping_task_keeps_its_executor_alive() {
    let ex = SimpleExecutor::new(1);
    let (tx, rx) = mpsc::channel();
    Lazy::new(async {
        sleep(Duration::from_millis(20)).await.unwrap();
        current_executor().unwrap().current_thread_in_executor()
    })
    .directly_start(move |r| tx.send(r.value()).unwrap(), ex.clone());
    // The caller's last handle goes; the task's context still holds one.
    drop(ex);
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
}

#[test]
fn destruction_order_child_state_before_the_parent_resumes() {
    let log = Arc::new(Mutex::new(Vec::new()));
    struct Noisy(&'static str, Arc<Mutex<Vec<&'static str>>>);
    impl Drop for Noisy {
        fn drop(&mut self) {
            self.1.lock().unwrap().push(self.0);
        }
    }
    let (l1, l2) = (log.clone(), log.clone());
    let child = Lazy::new(async move {
        let _state = Noisy("child state dropped", l1);
        1
    });
    let parent = Lazy::new(async move {
        let v = child.await;
        l2.lock().unwrap().push("parent resumed");
        v
    });
    assert_eq!(sync_await(parent), 1);
    assert_eq!(
        *log.lock().unwrap(),
        ["child state dropped", "parent resumed"]
    );
}

#[test]
fn windowed_without_an_executor_skips_the_yield() {
    let input: Vec<Lazy<u8>> = (0..5).map(Lazy::ready).collect();
    let out = sync_await(lazyflight::task::collect_all_windowed(2, true, input));
    assert_eq!(
        out.into_iter().map(Try::value).collect::<Vec<_>>(),
        [0, 1, 2, 3, 4]
    );
}

/// A timer whose deadline `Instant` cannot hold (`Duration::MAX`) is never
/// due: the job is neither run nor lost to a panic, and it is dropped
/// (rejected) when the pool stops.
#[test]
fn a_timer_too_far_away_is_kept_until_the_pool_stops() {
    let ex = SimpleExecutor::new(1);
    let (ran, dropped) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (r, flag) = (ran.clone(), Flag(dropped.clone()));
    ex.schedule_after(
        Duration::MAX,
        Box::new(move || {
            let _flag = flag;
            r.store(true, SeqCst);
        }),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(!ran.load(SeqCst) && !dropped.load(SeqCst));
    drop(ex);
    assert!(!ran.load(SeqCst), "never due");
    assert!(dropped.load(SeqCst), "dropped when the pool stopped");
}

/// Dropping the pool joins its timer thread too: the pending timers have
/// been dropped by the time `drop` returns.
#[test]
fn dropping_the_pool_waits_for_its_pending_timers_to_be_dropped() {
    struct SlowDrop(Arc<AtomicBool>);
    impl Drop for SlowDrop {
        fn drop(&mut self) {
            std::thread::sleep(Duration::from_millis(50));
            self.0.store(true, SeqCst);
        }
    }
    let ex = SimpleExecutor::new(1);
    let dropped = Arc::new(AtomicBool::new(false));
    let slow = SlowDrop(dropped.clone());
    ex.schedule_after(Duration::from_secs(3600), Box::new(move || drop(slow)))
        .unwrap();
    drop(ex);
    assert!(dropped.load(SeqCst));
}

/// A job that panics with a payload whose own `Drop` panics does not kill
/// its worker: a one-thread pool still runs the next job.
#[test]
fn a_panic_payload_that_panics_when_dropped_does_not_kill_the_worker() {
    struct Bomb;
    impl Drop for Bomb {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                panic!("payload dropped");
            }
        }
    }
    let ex = SimpleExecutor::new(1);
    ex.schedule(Box::new(|| std::panic::panic_any(Bomb)))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    Lazy::new(async { 1 })
        .via(ex.clone())
        .start(move |r| tx.send(r.value()).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(1));
}

/// A task without an executor runs inside `wake()`; if its callback
/// panics there, the panic reaches the waker's caller and the waker's
/// count on the task is still released (Miri's leak check sees the task
/// freed).
#[test]
fn a_wake_whose_run_panics_still_releases_the_wakers_count() {
    let slot = Arc::new(Mutex::new(None));
    Lazy::new(KeepsWaker(slot.clone(), false)).start(|_| panic!("callback panics"));
    let waker = slot.lock().unwrap().take().expect("the task is parked");
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || waker.wake()));
    assert!(r.is_err());
}

/// A task completed inline inside another task's poll (the other's poll
/// woke it) is finished in its own context: its future's `Drop` sees its own
/// executor and local, and its callback, which is not part of any task, sees
/// none, not those of the task whose poll woke it.
#[test]
fn a_task_completed_inside_another_tasks_poll_finishes_in_its_own_context() {
    use lazyflight::task::{current_executor, with_lazy_local};
    /// Ready once its receiver fires; records the context its `Drop` sees.
    struct Recv {
        rx: futures::channel::oneshot::Receiver<()>,
        seen: mpsc::Sender<(&'static str, bool, Option<&'static str>)>,
    }
    impl std::future::Future for Recv {
        type Output = ();
        fn poll(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<()> {
            std::pin::Pin::new(&mut self.rx).poll(cx).map(|_| ())
        }
    }
    impl Drop for Recv {
        fn drop(&mut self) {
            let seen = (current_executor().is_some(), with_lazy_local(|v: &&str| *v));
            let _ = self.seen.send(("drop", seen.0, seen.1));
        }
    }
    let ex = SimpleExecutor::new(1);
    let (fire, rx) = futures::channel::oneshot::channel::<()>();
    let (seen, saw) = mpsc::channel();
    let on_done = seen.clone();
    // B: no executor; its own local.
    Lazy::new(Recv { rx, seen })
        .set_local("B's local")
        .unwrap()
        .start(move |_| {
            let ctx = (current_executor().is_some(), with_lazy_local(|v: &&str| *v));
            on_done.send(("callback", ctx.0, ctx.1)).unwrap();
        });
    // A, on an executor with a local of its own, wakes B from its poll: B
    // runs and completes inline there.
    sync_await(
        Lazy::new(async move { fire.send(()).unwrap() })
            .set_local("A's local")
            .unwrap()
            .via(ex.clone()),
    );
    assert_eq!(saw.recv().unwrap(), ("drop", false, Some("B's local")));
    assert_eq!(saw.recv().unwrap(), ("callback", false, None));
}

/// A task asleep on a `SimpleExecutor` holds a handle to it (its context),
/// and the pool holds the task (its timer): dropping the caller's handles
/// cannot stop the pool then, and `shutdown` does: the pending timers are
/// dropped, the sleeping task completes with `Rejected`, later schedules are
/// refused, and a second `shutdown` (here the drop of the last handle) does
/// nothing.
#[test]
fn shutdown_stops_a_pool_with_a_sleeping_task() {
    let ex = SimpleExecutor::new(1);
    let timer_dropped = Arc::new(AtomicBool::new(false));
    let flag = Flag(timer_dropped.clone());
    ex.schedule_after(Duration::from_secs(3600), Box::new(move || drop(flag)))
        .unwrap();
    let (tx, rx) = mpsc::channel();
    Lazy::new(async { lazyflight::task::sleep(Duration::from_secs(3600)).await })
        .via(ex.clone())
        .start(move |t| {
            let rejected = matches!(t.error(), Some(TaskError::Rejected))
                || matches!(t.as_value(), Some(Err(TaskError::Rejected)));
            tx.send(rejected).unwrap();
        });
    std::thread::sleep(Duration::from_millis(20)); // asleep by now
    ex.shutdown();
    assert!(
        timer_dropped.load(SeqCst),
        "the pending timers were dropped"
    );
    assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(true));
    assert!(
        ex.schedule(Box::new(|| {})).is_err(),
        "refused after shutdown"
    );
    ex.shutdown();
    drop(ex);
}

/// `n` tasks without an executor, each waiting on a oneshot; task `i`'s
/// callback records `i` and sends to task `i + 1` (and panics after sending
/// if `i == panic_at`). Returns the send that wakes task 0, the order the
/// callbacks ran in, and what the last task's callback sends to.
#[allow(clippy::type_complexity)]
fn wake_chain_to(
    n: usize,
    panic_at: Option<usize>,
) -> (
    futures::channel::oneshot::Sender<usize>,
    Arc<Mutex<Vec<usize>>>,
    futures::channel::oneshot::Receiver<usize>,
) {
    let order = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let (first_tx, mut rx) = futures::channel::oneshot::channel::<usize>();
    for i in 0..n {
        let (tx, next_rx) = futures::channel::oneshot::channel::<usize>();
        let this_rx = std::mem::replace(&mut rx, next_rx);
        let order = order.clone();
        Lazy::new(async move { this_rx.await.expect("sent") + 1 }).start(move |r| {
            let v = r.value();
            order.lock().unwrap().push(i);
            let _ = tx.send(v);
            if panic_at == Some(i) {
                panic!("callback {i}");
            }
        });
    }
    (first_tx, order, rx)
}

/// Tasks without an executor are resumed by whoever wakes them; a task
/// woken inside another's run (its callback here) is queued for the
/// outermost run on the thread, not nested in the wake: a chain of tasks
/// that wake one another completes, in order, and the last task's value
/// arrives.
#[test]
fn a_chain_of_tasks_waking_one_another_completes_in_order() {
    let (tx, order, last) = wake_chain_to(200, None);
    tx.send(0).unwrap();
    assert_eq!(futures::executor::block_on(last), Ok(200));
    assert_eq!(*order.lock().unwrap(), (0..200).collect::<Vec<_>>());
}

/// The same with 100,000 tasks, started from a thread with a 256 KiB stack:
/// the runs do not nest one per task (when every wake ran its task inline,
/// this overflowed the stack and aborted the process).
#[test]
fn long_wake_chains_run_in_bounded_stack() {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let (tx, order, last) = wake_chain_to(100_000, None);
            tx.send(0).unwrap();
            assert_eq!(futures::executor::block_on(last), Ok(100_000));
            let order = order.lock().unwrap();
            assert_eq!(order.len(), 100_000);
            assert!(order.windows(2).all(|w| w[1] == w[0] + 1));
        })
        .unwrap()
        .join()
        .unwrap();
}

/// A callback that panics in a queued run strands no other run: the rest
/// of the chain (woken before the panic) still completes, and the panic
/// then unwinds out of the wake that began the outermost run, as it would
/// have unwound from a run nested in that wake.
#[test]
fn a_panicking_callback_in_a_queued_run_strands_no_other_run() {
    let (tx, order, last) = wake_chain_to(200, Some(100));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tx.send(0)));
    let payload = r.expect_err("the callback's panic reaches the first wake");
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("callback 100")
    );
    assert_eq!(futures::executor::block_on(last), Ok(200));
    assert_eq!(*order.lock().unwrap(), (0..200).collect::<Vec<_>>());
}

/// Blocks, with `block`, inside a run (a `start` callback, on a thread of
/// its own) on a future that wakes a chain of 100 tasks, whose runs are
/// queued on that thread, and waits for its end. Returns the chain's last value and
/// how many callbacks ran, or the timeout if the blocked thread waited for
/// ever.
fn block_inside_a_run(
    block: impl FnOnce(futures::future::BoxFuture<'static, usize>) -> usize + Send + 'static,
) -> Result<(usize, usize), mpsc::RecvTimeoutError> {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        Lazy::new(async { 1 }).start(move |_| {
            let (tx, order, last) = wake_chain_to(100, None);
            let end = block(Box::pin(async move {
                tx.send(0).unwrap();
                last.await.unwrap()
            }));
            let _ = done_tx.send((end, order.lock().unwrap().len()));
        });
    });
    done_rx.recv_timeout(Duration::from_secs(20))
}

/// `sync_await` inside a run on a task that waits for the end of a chain:
/// it makes the runs queued on its thread before it blocks, which the
/// outermost run could only make once it returns, and the task gets its
/// value.
#[test]
fn sync_await_inside_a_run_makes_the_runs_queued_on_its_thread() {
    let got = block_inside_a_run(|fut| sync_await(Lazy::new(fut)));
    assert_eq!(
        got,
        Ok((100, 100)),
        "sync_await inside a run waited for ever"
    );
}

/// The same with the crate's `block_on`.
#[test]
fn block_on_inside_a_run_makes_the_runs_queued_on_its_thread() {
    let got = block_inside_a_run(lazyflight::sync::future::block_on);
    assert_eq!(got, Ok((100, 100)), "block_on inside a run waited for ever");
}

/// Set by a test that re-runs itself as a child process.
const CHILD: &str = "LAZYFLIGHT_TASK_TEST_CHILD";

/// An executor whose `schedule` panics (as a pool that unwraps a send to a
/// worker that is gone); the job it was given is dropped during that
/// unwind.
#[derive(Debug)]
struct PanickingSchedule;
impl Executor for PanickingSchedule {
    fn schedule(&self, job: Job) -> Result<(), ScheduleError> {
        let _job = job;
        panic!("schedule panics");
    }
    fn current_thread_in_executor(&self) -> bool {
        false
    }
}

/// A job dropped while `schedule`'s panic unwinds completes its task with
/// `Rejected` there; a callback that panics on that error (re-raising it, as
/// `r.value()` does) must not be a panic during a panic, which aborts the
/// process: the schedule's panic reaches `start`'s caller, and the process
/// lives on. Run in a child process, since the failure is an abort.
#[test]
#[cfg_attr(miri, ignore = "spawns a child process")]
fn a_panicking_schedule_with_a_panicking_callback_does_not_abort() {
    let name = "a_panicking_schedule_with_a_panicking_callback_does_not_abort";
    if std::env::var_os(CHILD).is_some() {
        let rejected = Arc::new(AtomicBool::new(false));
        let r = rejected.clone();
        let unwound = std::panic::catch_unwind(move || {
            Lazy::new(async { 1 })
                .via(Arc::new(PanickingSchedule))
                .start(move |t| {
                    r.store(matches!(t.error(), Some(TaskError::Rejected)), SeqCst);
                    t.value();
                });
        });
        let payload = unwound.expect_err("the schedule's panic reaches the caller");
        assert_eq!(payload.downcast_ref::<&str>(), Some(&"schedule panics"));
        assert!(rejected.load(SeqCst), "the callback got Rejected");
        println!("child: survived");
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("child: survived"),
        "the child process died ({}):\n{}\n{stdout}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread of its own; `None` if it has not returned within
/// `limit` (the thread is then left behind, blocked).
fn within<R: Send + 'static>(limit: Duration, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// Parks its task, handing its waker to a registry that may drop it unwoken
/// (a shutdown that clears its waiters: the `Waker` contract allows it).
/// Its flag is set when the future is dropped.
struct ParkedIn {
    wakers: Arc<Mutex<Vec<std::task::Waker>>>,
    _dropped: Flag,
}

impl std::future::Future for ParkedIn {
    type Output = u32;
    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<u32> {
        self.wakers.lock().unwrap().push(cx.waker().clone());
        std::task::Poll::Pending
    }
}

/// A task whose last waker is dropped unwoken can never be resumed: it is
/// freed then, its future dropped first, and its callback still runs, once,
/// with `Abandoned`.
#[test]
fn a_task_whose_last_waker_is_dropped_calls_back_with_abandoned() {
    let wakers = Arc::new(Mutex::new(Vec::new()));
    let dropped = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let d = dropped.clone();
    Lazy::new(ParkedIn {
        wakers: wakers.clone(),
        _dropped: Flag(dropped.clone()),
    })
    .start(move |t| {
        let abandoned = matches!(t.error(), Some(TaskError::Abandoned));
        tx.send((abandoned, d.load(SeqCst))).unwrap();
    });
    assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Empty), "parked");
    wakers.lock().unwrap().clear();
    assert_eq!(
        rx.try_recv(),
        Ok((true, true)),
        "the callback ran, with Abandoned, after the future was dropped"
    );
    assert_eq!(rx.try_recv(), Err(mpsc::TryRecvError::Disconnected), "once");
}

/// `sync_await` of such a task returns that error instead of parking for
/// ever.
#[test]
fn sync_await_of_a_task_whose_last_waker_is_dropped_returns_abandoned() {
    let wakers = Arc::new(Mutex::new(Vec::new()));
    let w = wakers.clone();
    let waiter = std::thread::spawn(move || {
        sync_await_try(Lazy::new(ParkedIn {
            wakers: w,
            _dropped: Flag(Arc::default()),
        }))
        .into_result()
        .map_err(|e| e.to_string())
    });
    while wakers.lock().unwrap().is_empty() {
        std::thread::yield_now();
    }
    wakers.lock().unwrap().clear();
    let got = within(Duration::from_secs(10), move || waiter.join().unwrap());
    assert_eq!(
        got,
        Some(Err(TaskError::Abandoned.to_string())),
        "sync_await parked for ever although its task was freed"
    );
}

/// Two tasks without an executor contend for a `futures::lock::Mutex`,
/// whose unlock wakes the next waiter while it still holds the mutex's own
/// internal lock, which the waiter's poll takes again. The waiter is woken
/// inside the holder's run, so it runs once that run returns, not inside the
/// unlock (where its poll would wait for ever for the lock its own thread
/// holds).
#[test]
fn a_task_woken_inside_another_run_runs_after_it_not_inside_the_wake() {
    let got = within(Duration::from_secs(10), || {
        let m = Arc::new(futures::lock::Mutex::new(0u32));
        let (release, released) = futures::channel::oneshot::channel::<()>();
        let (done_tx, done) = mpsc::channel();
        let (ma, da) = (m.clone(), done_tx.clone());
        Lazy::new(async move {
            let mut g = ma.lock().await;
            *g += 1;
            let _ = released.await;
            drop(g); // wakes B, under the mutex's internal lock
        })
        .start(move |r| da.send(("A", r.value())).unwrap());
        Lazy::new(async move { *m.lock().await += 1 })
            .start(move |r| done_tx.send(("B", r.value())).unwrap());
        release.send(()).unwrap(); // resumes A here, outside any run
        let mut got = vec![done.recv().unwrap().0, done.recv().unwrap().0];
        got.sort_unstable();
        got
    });
    assert_eq!(
        got,
        Some(vec!["A", "B"]),
        "the waiter was resumed inside the wake that unlocked, and deadlocked"
    );
}

/// `SimpleExecutor::shutdown` blocks (it joins the workers): called inside a
/// run, it first makes the runs queued on its thread, one of which a worker
/// is waiting for.
#[test]
fn shutdown_inside_a_run_makes_the_runs_queued_on_its_thread_first() {
    let got = within(Duration::from_secs(10), || {
        let ex = SimpleExecutor::new(1);
        let (tx, rx) = futures::channel::oneshot::channel::<u32>();
        let (suspended_tx, suspended) = mpsc::channel::<()>();
        let (out_tx, out) = mpsc::channel();
        ex.schedule(Box::new(move || {
            // The worker waits for a task without an executor.
            let t = sync_await_try(Lazy::new(async move {
                suspended_tx.send(()).unwrap();
                rx.await.unwrap()
            }));
            out_tx.send(t).unwrap();
        }))
        .unwrap();
        suspended.recv().unwrap();
        let ex2 = ex.clone();
        // This run's wake of that task is queued behind it; its callback then
        // shuts the pool down, which waits for the worker.
        Lazy::new(async move { tx.send(7).unwrap() }).start(move |_| ex2.shutdown());
        out.recv().unwrap().value()
    });
    assert_eq!(
        got,
        Some(7),
        "shutdown inside a run stranded the run the worker waits for"
    );
}

/// Releases `tx` on its second poll, and is ready then.
struct SendsOnSecondPoll {
    polled: bool,
    tx: Option<futures::channel::oneshot::Sender<u32>>,
}

impl std::future::Future for SendsOnSecondPoll {
    type Output = u32;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<u32> {
        if !self.polled {
            self.polled = true;
            return std::task::Poll::Pending;
        }
        let _ = self.tx.take().expect("polled twice at most").send(1);
        std::task::Poll::Ready(0)
    }
}

/// A `collect_any` loser detached outside any run is the outermost run on
/// its thread: the panic of another task's callback that its poll woke
/// (queued behind it) must not fail the winner's poll.
#[test]
fn a_loser_that_wakes_a_task_whose_callback_panics_does_not_fail_collect_any() {
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    Lazy::new(async move { rx.await.unwrap() }).start(|_| panic!("the woken task's callback"));
    let won = lazyflight::sync::future::block_on(lazyflight::task::collect_any(vec![
        Lazy::new(SendsOnSecondPoll {
            polled: false,
            tx: Some(tx),
        }),
        Lazy::new(async { 5u32 }),
    ]));
    assert_eq!((won.index, won.value.value()), (1, 5));
}

/// Runs made early, by a `sync_await` inside a run, keep their panics for
/// the outermost run, as the runs it makes itself do: the task that called
/// `sync_await` gets its own result, and the panic of the other task's
/// callback unwinds out of the `start` that began the outermost run.
#[test]
fn a_panic_of_a_run_made_early_unwinds_out_of_the_outermost_run() {
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    Lazy::new(async move { rx.await.unwrap() }).start(|_| panic!("the woken task's callback"));
    let got = Arc::new(Mutex::new(None));
    let g = got.clone();
    let outer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        Lazy::new(async move {
            tx.send(1).unwrap(); // queued: this is a run
            sync_await_try(Lazy::new(async { 42u32 })).value()
        })
        .start(move |t| *g.lock().unwrap() = Some(t.into_result()));
    }));
    let payload = outer.expect_err("the queued callback's panic unwinds out of `start`");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"the woken task's callback")
    );
    let x = got
        .lock()
        .unwrap()
        .take()
        .expect("the outer task completed");
    assert!(matches!(x, Ok(42)), "the outer task got {x:?}");
}

/// A refused job converts with `?` into the usual boxed error of
/// `Send + Sync` (and so into `anyhow::Error` and the like).
#[test]
fn a_schedule_error_converts_into_a_send_sync_boxed_error() {
    #[derive(Debug)]
    struct Refuses;
    impl Executor for Refuses {
        fn schedule(&self, job: Job) -> Result<(), ScheduleError> {
            Err(ScheduleError::new(job))
        }
        fn current_thread_in_executor(&self) -> bool {
            false
        }
    }
    fn submit(ex: &dyn Executor) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        ex.schedule(Box::new(|| {}))?;
        Ok(())
    }
    let err = submit(&Refuses).unwrap_err();
    assert_eq!(err.to_string(), "the executor refused the job");
    assert!(err.downcast::<ScheduleError>().is_ok());
}

/// A future that wakes itself once and returns `Pending` (a cooperative
/// yield, as runtime-agnostic `yield_now`s do), then is ready.
struct SelfWakeOnce(bool);

impl std::future::Future for SelfWakeOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// A task without an executor that wakes another task (whose run is queued
/// for the outermost run on the thread) and then yields by waking itself
/// until that task has made progress: its re-poll goes behind the queued
/// run, which is made, instead of polling for ever in front of it.
#[test]
fn a_self_waking_task_yields_to_the_runs_queued_on_its_thread() {
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (tx, rx) = futures::channel::oneshot::channel::<()>();
        let progressed = Arc::new(AtomicBool::new(false));
        let p = progressed.clone();
        Lazy::new(async move {
            rx.await.unwrap();
            p.store(true, SeqCst);
        })
        .start(|_| {});
        let spins = sync_await(Lazy::new(async move {
            // Wakes the task above inside this run: its run is queued.
            tx.send(()).unwrap();
            let mut spins = 0u32;
            while !progressed.load(SeqCst) {
                SelfWakeOnce(false).await;
                spins += 1;
            }
            spins
        }));
        let _ = done_tx.send(spins);
    });
    let spins = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the yielding task gave way to the queued run");
    assert_eq!(spins, 1, "one yield let the queued run be made");
}
