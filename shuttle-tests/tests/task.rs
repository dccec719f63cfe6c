//! shuttle models of `lazyflight::task`: random trees of tasks on a
//! shuttle-backed executor, with random yields, cancellations, panics,
//! scheduled children and every collect flavour.
//!
//! Build and run with `RUSTFLAGS="--cfg shuttle"`. Every execution draws its
//! tree from `shuttle::rand`, so a failing execution replays exactly from the
//! schedule shuttle prints. A tree node is one of:
//!
//! * a leaf that yields a few times (re-queued on the executor each time)
//!   and then returns a value or panics;
//! * a sequence that awaits its children inline, one after the other (a
//!   child's panic propagates through the parent);
//! * `collect_all` or `collect_all_para` over its children (panics stay in
//!   each child's `Try`);
//! * `collect_any` over its children, inline or all scheduled (so that they
//!   race to claim the win); the winner's `Try` must be what that child's
//!   plan says;
//! * a cancellation: the child is polled once, inline, and dropped;
//! * a scheduled child: `child.via(executor).await`.
//!
//! The checks: the root's `Try` equals the sequential model of the plan, no
//! `collect_any` winner disagrees with its plan, no leaf is polled while a
//! poll of it is under way (a task's polls never overlap: a leaf's yield
//! schedules its task while the poll is still running), and nothing hangs
//! (shuttle reports a deadlock otherwise). The executor runs each job on a fresh
//! shuttle thread, so every resumption races with everything else.
//!
//! Iterations per test: `LAZYFLIGHT_SHUTTLE_ITERATIONS` (default 10,000);
//! PCT depth: `LAZYFLIGHT_SHUTTLE_PCT_DEPTH` (default 3).
#![cfg(shuttle)]

use std::future::Future;
use std::panic;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Once};
use std::task::{Context, Poll};

use lazyflight::task::{
    collect_all, collect_all_para, collect_any, sync_await_try, yield_now, Executor, ExecutorRef,
    Job, Lazy, ScheduleError,
};
use lazyflight_shuttle_tests::env_usize;
use shuttle::rand::{thread_rng, Rng};

fn iterations() -> usize {
    env_usize("LAZYFLIGHT_SHUTTLE_ITERATIONS", 10_000)
}

fn pct_depth() -> usize {
    env_usize("LAZYFLIGHT_SHUTTLE_PCT_DEPTH", 3)
}

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

/// Runs every job on a fresh shuttle thread.
#[derive(Debug)]
struct ThreadPerJob;

impl Executor for ThreadPerJob {
    fn schedule(&self, job: Job) -> Result<(), ScheduleError> {
        drop(shuttle::thread::spawn(job));
        Ok(())
    }
    fn current_thread_in_executor(&self) -> bool {
        false
    }
}

#[derive(Clone, Debug)]
enum Plan {
    Leaf {
        value: u64,
        yields: u8,
        panics: bool,
    },
    Seq(Vec<Plan>),
    All {
        children: Vec<Plan>,
        para: bool,
    },
    Any(Vec<Plan>),
    AnyScheduled(Vec<Plan>),
    Cancel(Box<Plan>),
    Scheduled(Box<Plan>),
}

fn draw(depth: u32) -> Plan {
    let mut rng = thread_rng();
    // The root is never a leaf; below it, one node in four is.
    if depth == 0 || (depth < 3 && rng.gen_range(0..4) == 0) {
        return Plan::Leaf {
            value: rng.gen_range(0..100),
            yields: rng.gen_range(0..3),
            panics: rng.gen_range(0..6) == 0,
        };
    }
    let fanout = rng.gen_range(1..=3);
    let kids = || (0..fanout).map(|_| draw(depth - 1)).collect::<Vec<_>>();
    match rng.gen_range(0..7) {
        0 => Plan::Seq(kids()),
        1 => Plan::All {
            children: kids(),
            para: false,
        },
        2 => Plan::All {
            children: kids(),
            para: true,
        },
        3 => Plan::Any(kids()),
        4 => Plan::AnyScheduled(kids()),
        5 => Plan::Cancel(Box::new(draw(depth - 1))),
        _ => Plan::Scheduled(Box::new(draw(depth - 1))),
    }
}

/// The sequential model: the value, or `Err(())` for a panic that escapes.
fn expected(plan: &Plan) -> Result<u64, ()> {
    match plan {
        Plan::Leaf { panics: true, .. } => Err(()),
        Plan::Leaf { value, .. } => Ok(*value),
        Plan::Seq(kids) => kids.iter().map(expected).sum(),
        Plan::All { children, .. } => {
            Ok(children.iter().map(|k| expected(k).unwrap_or(1000)).sum())
        }
        Plan::Any(_) | Plan::AnyScheduled(_) => Ok(7),
        Plan::Cancel(_) => Ok(0),
        Plan::Scheduled(kid) => expected(kid),
    }
}

/// Polls the inner future once, then drops it.
struct PollOnceThenDrop(Option<Lazy<u64>>);

impl Future for PollOnceThenDrop {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if let Some(mut f) = self.0.take() {
            // A panic inside is the child's own business; it dies with it.
            let _ = panic::catch_unwind(panic::AssertUnwindSafe(|| Pin::new(&mut f).poll(cx)));
        }
        Poll::Ready(())
    }
}

/// Counts a violation when it is polled while a poll of it is under way.
struct NoOverlap<F> {
    inner: Pin<Box<F>>,
    busy: AtomicBool,
    violations: Arc<AtomicUsize>,
}

impl<F: Future> Future for NoOverlap<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if self.busy.swap(true, SeqCst) {
            self.violations.fetch_add(1, SeqCst);
        }
        // A planned panic leaves `busy` set: the leaf is not polled again.
        let out = self.inner.as_mut().poll(cx);
        self.busy.store(false, SeqCst);
        out
    }
}

fn build(plan: Plan, ex: ExecutorRef, violations: Arc<AtomicUsize>) -> Lazy<u64> {
    match plan {
        Plan::Leaf {
            value,
            yields,
            panics,
        } => Lazy::new(NoOverlap {
            inner: Box::pin(async move {
                for _ in 0..yields {
                    yield_now().await.expect("the tree runs on an executor");
                }
                if panics {
                    panic::panic_any(PLANNED);
                }
                value
            }),
            busy: AtomicBool::new(false),
            violations,
        }),
        Plan::Seq(kids) => Lazy::new(async move {
            let mut sum = 0;
            for k in kids {
                sum += build(k, ex.clone(), violations.clone()).await;
            }
            sum
        }),
        Plan::All { children, para } => Lazy::new(async move {
            let lazies = children
                .into_iter()
                .map(|k| build(k, ex.clone(), violations.clone()))
                .collect();
            let out = if para {
                collect_all_para(lazies).await
            } else {
                collect_all(lazies).await
            };
            out.into_iter()
                .map(|t| t.into_result().unwrap_or(1000))
                .sum()
        }),
        Plan::Any(kids) => Lazy::new(async move {
            let plans = kids.clone();
            let lazies = kids
                .into_iter()
                .map(|k| build(k, ex.clone(), violations.clone()))
                .collect();
            let r = collect_any(lazies).await;
            let got = r.value.into_result().map_err(|_| ());
            if got != expected(&plans[r.index]) {
                violations.fetch_add(1, SeqCst);
            }
            7
        }),
        Plan::AnyScheduled(kids) => Lazy::new(async move {
            let plans = kids.clone();
            let scheduled = kids
                .into_iter()
                .map(|k| build(k, ex.clone(), violations.clone()).via(ex.clone()))
                .collect();
            let r = collect_any(scheduled).await;
            let got = r.value.into_result().map_err(|_| ());
            if got != expected(&plans[r.index]) {
                violations.fetch_add(1, SeqCst);
            }
            7
        }),
        Plan::Cancel(kid) => Lazy::new(async move {
            PollOnceThenDrop(Some(build(*kid, ex.clone(), violations))).await;
            0
        }),
        Plan::Scheduled(kid) => {
            Lazy::new(async move { build(*kid, ex.clone(), violations).via(ex).await })
        }
    }
}

fn one_tree() {
    let plan = draw(3);
    let ex: ExecutorRef = Arc::new(ThreadPerJob);
    let violations = Arc::new(AtomicUsize::new(0));
    let root = build(plan.clone(), ex.clone(), violations.clone()).via(ex);
    let got = sync_await_try(root).into_result().map_err(|e| {
        assert_eq!(
            e.panic_message(),
            Some(PLANNED),
            "only planned panics escape: {e}"
        );
    });
    assert_eq!(got, expected(&plan), "plan: {plan:?}");
    assert_eq!(
        violations.load(SeqCst),
        0,
        "a collect_any winner disagreed with its plan, or a leaf's polls overlapped: {plan:?}"
    );
}

// Property: a random tree of tasks (leaves that yield, return or panic;
// inline sequences; every collect flavour; cancellations; scheduled
// children) completes with the `Try` its sequential model gives, every
// `collect_any` winner matches its plan, and nothing hangs, under the random
// scheduler.
#[test]
fn task_trees_random_scheduler() {
    quiet_planned_panics();
    shuttle::check_random(one_tree, iterations());
}

// Property: as `task_trees_random_scheduler`, under the PCT scheduler.
#[test]
fn task_trees_pct_scheduler() {
    quiet_planned_panics();
    shuttle::check_pct(one_tree, iterations(), pct_depth());
}
