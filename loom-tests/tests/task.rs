//! loom models of `lazyflight::task`'s internal state machines: the root
//! task (wake during poll, refused schedules), `sync_await`'s park/unpark,
//! the collect ready list and countdown, and `collect_any`'s claim.
//!
//! Executors here are tiny and loom-visible: `ThreadPerJob` runs each job on
//! a fresh loom thread (so two scheduled children really race), `Refusing`
//! refuses everything. Budget: `LOOM_MAX_PREEMPTIONS=2` (ci/loom.sh).
#![cfg(loom)]
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize as StdAtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Waker};

use lazyflight::sync::atomic::{AtomicBool, Ordering};
use lazyflight::sync::{thread, Arc, Mutex};
use lazyflight::task::{
    collect_all, collect_any_with, sync_await, sync_await_try, Executor, ExecutorRef, Job, Lazy,
    ScheduleError, TaskError,
};

/// A one-shot event another thread fires; the future waits for it.
#[derive(Default)]
struct Signal {
    state: Mutex<(bool, Option<Waker>)>,
}

impl Signal {
    fn fire(&self) {
        let waker = {
            let mut s = self.state.lock();
            s.0 = true;
            s.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

struct Fired(Arc<Signal>);

impl Future for Fired {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut s = self.0.state.lock();
        if s.0 {
            return Poll::Ready(());
        }
        s.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// Ready at once; keeps a clone of its waker in the slot first. In a
/// collect child, that clone is a waker that can still wake the collect
/// (one of its holders) for as long as the slot keeps it: the models that
/// check how a child's wake reaches the collect keep one, so that the wake
/// the last holder's going sends (see `Shared::holders` in collect.rs) does
/// not stand in for the one under test.
struct KeepsAWaker(std::sync::Arc<std::sync::Mutex<Option<Waker>>>);

impl Future for KeepsAWaker {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        *self.0.lock().unwrap() = Some(cx.waker().clone());
        Poll::Ready(())
    }
}

/// Fails the model if two polls of the wrapped future overlap.
struct NoOverlap<F> {
    inner: Pin<Box<F>>,
    in_poll: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<F: Future> Future for NoOverlap<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        assert!(
            !self.in_poll.swap(true, SeqCst),
            "two polls of one task overlap"
        );
        let out = self.inner.as_mut().poll(cx);
        self.in_poll.store(false, SeqCst);
        out
    }
}

/// Fails the model if the wrapped future is polled on `thread` while
/// `in_wake` is set there: a run nested inside that thread's `wake`.
struct NotInsideWake<F> {
    inner: F,
    thread: thread::Thread,
    in_wake: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl<F: Future + Unpin> Future for NotInsideWake<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        assert!(
            !(self.in_wake.load(SeqCst) && thread::current().id() == self.thread.id()),
            "a wake inside a run polled the woken task inside the wake"
        );
        Pin::new(&mut self.inner).poll(cx)
    }
}

fn executor<E: Executor>(e: E) -> ExecutorRef {
    Arc::from_std(std::sync::Arc::new(e) as std::sync::Arc<dyn Executor>)
}

/// Runs every job on a fresh loom thread.
#[derive(Debug)]
struct ThreadPerJob;

impl Executor for ThreadPerJob {
    fn schedule(&self, job: Job) -> Result<(), ScheduleError> {
        drop(thread::spawn(job));
        Ok(())
    }
    fn current_thread_in_executor(&self) -> bool {
        false
    }
}

/// Refuses every job.
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

// Property: a wake that arrives while the task is being polled (from another
// thread) makes the runner poll again; it is never lost (the task completes
// and `sync_await` returns) and never starts a second, concurrent poll (loom
// checks every access to the task's future cell). Whoever runs the last poll
// completes the task and unparks the `sync_await` caller.
#[test]
fn task_wake_during_poll_repolls_once_and_never_overlaps() {
    loom::model(|| {
        let signal = Arc::new(Signal::default());
        let polls = std::sync::Arc::new(StdAtomicUsize::new(0));
        let s2 = signal.clone();
        let firer = thread::spawn(move || s2.fire());
        let p = polls.clone();
        let v = sync_await(Lazy::new(NoOverlap {
            inner: Box::pin(async move {
                p.fetch_add(1, SeqCst);
                Fired(signal).await;
                5
            }),
            in_poll: Default::default(),
        }));
        assert_eq!(v, 5);
        firer.join().unwrap();
        assert_eq!(polls.load(SeqCst), 1, "the body's prefix runs once");
    });
}

/// Ready once all `N` flags read 1 (`Relaxed` loads: only the wake-to-poll
/// edge can make a waker's store visible); keeps its waker where the test
/// can take it (a std mutex, invisible to loom, so it orders nothing).
struct AllSet<const N: usize> {
    flags: [Arc<lazyflight::sync::atomic::AtomicUsize>; N],
    waker: std::sync::Arc<std::sync::Mutex<Option<Waker>>>,
}

impl<const N: usize> Future for AllSet<N> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        *self.waker.lock().unwrap() = Some(cx.waker().clone());
        if self.flags.iter().all(|f| f.load(Ordering::Relaxed) == 1) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// `N` threads each store a flag (`Relaxed`) and wake the task, which runs
/// inline on whichever thread wakes it first; the task must be polled after
/// the last wake with every flag visible.
fn every_wake_publishes<const N: usize>() {
    let flags: [Arc<lazyflight::sync::atomic::AtomicUsize>; N] =
        core::array::from_fn(|_| Arc::new(Default::default()));
    let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    Lazy::new(AllSet {
        flags: flags.clone(),
        waker: slot.clone(),
    })
    .start(move |t| {
        assert!(!t.has_error());
        d.store(true, Ordering::Release);
    });
    let waker = slot.lock().unwrap().clone().expect("polled once, pending");
    set_and_wake_from_threads(flags, &waker);
    drop(waker);
    // Break the cycle task -> slot -> waker -> task.
    slot.lock().unwrap().take();
    assert!(
        done.load(Ordering::Acquire),
        "the task was not polled after every wake"
    );
}

// Property: every wake publishes what the waker wrote before it to the poll
// it causes, also a wake that is absorbed because the task is already due
// for a poll (SCHEDULED, or NOTIFIED during a poll): two threads each store
// a flag (`Relaxed`) and wake the task, which runs inline on whichever
// thread wakes it first. If an absorbed wake published nothing, the poll
// could still read its flag as 0, return `Pending` and never be woken again.
#[test]
fn task_absorbed_wake_still_publishes_to_the_next_poll() {
    loom::model(every_wake_publishes::<2>);
}

// Property: as above with three wakers, so that one wake can be absorbed
// after another set NOTIFIED and the runner's CAS already failed on it: the
// runner's way out of NOTIFIED must read that absorbed wake too (a plain
// store would not, and the re-poll could miss the third flag).
#[test]
fn task_wake_absorbed_after_the_runner_saw_notified_still_publishes() {
    loom::model(every_wake_publishes::<3>);
}

// Property: `sync_await` of a task that completes on another thread (here the
// executor's) parks until the completion callback unparks it: no lost
// unpark, no early return.
#[test]
fn task_sync_await_parks_until_a_scheduled_task_completes() {
    loom::model(|| {
        let ran = Arc::new(AtomicBool::new(false));
        let r = ran.clone();
        let v = sync_await(
            Lazy::new(async move {
                r.store(true, Ordering::Relaxed);
                7
            })
            .via(executor(ThreadPerJob)),
        );
        assert_eq!(v, 7);
        assert!(ran.load(Ordering::Relaxed), "the value comes from the run");
    });
}

// Property: when the executor refuses the job that would resume a task
// (after a wake from another thread, racing with the first poll, or on a
// scheduled first run), the task completes with `TaskError::Rejected`,
// exactly once: never a task that is silently never resumed.
#[test]
fn task_refused_schedule_completes_with_rejected() {
    loom::model(|| {
        let signal = Arc::new(Signal::default());
        let s2 = signal.clone();
        let firer = thread::spawn(move || s2.fire());
        let done = std::sync::Arc::new(StdAtomicUsize::new(0));
        let (d, main) = (done.clone(), thread::current());
        let result = Arc::new(Mutex::new(None));
        let r = result.clone();
        Lazy::new(async move {
            Fired(signal).await;
            1
        })
        .directly_start(
            move |t| {
                d.fetch_add(1, SeqCst);
                *r.lock() = Some(
                    t.into_result()
                        .map_err(|e| matches!(e, TaskError::Rejected)),
                );
                main.unpark();
            },
            executor(Refusing),
        );
        while result.lock().is_none() {
            thread::park();
        }
        firer.join().unwrap();
        // Ok only when the signal came before the first poll (the task never
        // needed the executor); otherwise the refused resumption is an error.
        let got = result.lock().take();
        assert!(matches!(got, Some(Ok(1)) | Some(Err(true))), "{got:?}");
        assert_eq!(done.load(SeqCst), 1);

        // And a first run that is refused.
        let t = sync_await_try(Lazy::new(async { 2 }).via(executor(Refusing)));
        assert!(matches!(t.into_result(), Err(TaskError::Rejected)));
    });
}

// Property: `collect_all` over two inline children, each completed by its own
// thread at the same time: each wake lands in the ready list, the parent is
// resumed after the last one and completes exactly once, with both results in
// input order. (The first child keeps a spare waker until the end, so that
// the resumption comes from the children's wakes themselves.)
#[test]
fn task_collect_all_countdown_resumes_parent_after_last_child() {
    loom::model(|| {
        let a = Arc::new(Signal::default());
        let b = Arc::new(Signal::default());
        let (a2, b2) = (a.clone(), b.clone());
        let ta = thread::spawn(move || a2.fire());
        let tb = thread::spawn(move || b2.fire());
        let spare = std::sync::Arc::new(std::sync::Mutex::new(None));
        let keep = spare.clone();
        let out = sync_await(Lazy::new(async move {
            let children = vec![
                Lazy::new(async move {
                    KeepsAWaker(keep).await;
                    Fired(a).await;
                    0
                }),
                Lazy::new(async move {
                    Fired(b).await;
                    1
                }),
            ];
            collect_all(children).await
        }));
        let out: Vec<i32> = out.into_iter().map(|t| t.value()).collect();
        assert_eq!(out, [0, 1]);
        ta.join().unwrap();
        tb.join().unwrap();
        drop(spare);
    });
}

// Property: a collect child that is woken, polled, parks again and is woken
// again while (or right after) the collect future polls it, never loses the
// second wake: the collect future clears the child's `queued` flag (the one
// that lets a wake push its index to the ready list at most once) before it
// polls the child, so a wake that lands during or after that poll pushes the
// index again. The child waits on two signals fired by two threads, one
// after the other, so its second wake races with the poll that follows its
// first. The child also keeps its waker (a clone of its owned waker) across
// both waits, so the wake nodes are allocated and reused.
#[test]
fn task_collect_rewoken_child_during_its_poll_is_polled_again() {
    loom::model(|| {
        let a = Arc::new(Signal::default());
        let b = Arc::new(Signal::default());
        let (a2, b2) = (a.clone(), b.clone());
        let firer = thread::spawn(move || {
            a2.fire();
            b2.fire();
        });
        let out = sync_await(Lazy::new(async move {
            let children = vec![
                Lazy::new(async move {
                    Fired(a).await;
                    Fired(b).await;
                    7
                }),
                Lazy::ready(8),
            ];
            collect_all(children).await
        }));
        let out: Vec<i32> = out.into_iter().map(|t| t.value()).collect();
        assert_eq!(out, [7, 8]);
        firer.join().unwrap();
    });
}

// Property: two scheduled `collect_any` children finish at the same time on
// two threads: exactly one claims the win, the callback runs exactly once
// with the winner's own value, and the parent resolves to that index (a
// third child never finishes).
#[test]
fn task_collect_any_two_children_finish_at_once_one_winner() {
    loom::model(|| {
        let calls = std::sync::Arc::new(StdAtomicUsize::new(0));
        let seen = std::sync::Arc::new(StdAtomicUsize::new(usize::MAX));
        let (c, s) = (calls.clone(), seen.clone());
        let ex = executor(ThreadPerJob);
        // A third child parks until `later` fires, at the end, so that its
        // report, still to come, keeps the parent's registration and the
        // resumption comes from the winner's report itself.
        let later = Arc::new(Signal::default());
        let n = later.clone();
        let index = sync_await(Lazy::new(async move {
            let children = vec![
                Lazy::new(async { 0usize }).via(ex.clone()),
                Lazy::new(async { 1usize }).via(ex.clone()),
                Lazy::new(async move {
                    Fired(n).await;
                    2usize
                })
                .via(ex),
            ];
            collect_any_with(children, move |i, v| {
                c.fetch_add(1, SeqCst);
                assert_eq!(v.value(), i, "the callback gets the winner's own value");
                s.store(i, SeqCst);
            })
            .await
        }));
        assert!(index < 2);
        assert_eq!(calls.load(SeqCst), 1, "the callback runs exactly once");
        assert_eq!(
            seen.load(SeqCst),
            index,
            "the parent reports the callback's winner"
        );
        later.fire();
    });
}

/// Pending for ever; its first poll hands out two clones of its waker, and
/// later polls keep none. Sets `dropped` when the future is dropped.
struct HandsOutTwoWakers {
    wakers: std::sync::Arc<std::sync::Mutex<Vec<Waker>>>,
    handed: bool,
    dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Future for HandsOutTwoWakers {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if !self.handed {
            self.handed = true;
            let mut wakers = self.wakers.lock().unwrap();
            wakers.extend([cx.waker().clone(), cx.waker().clone()]);
        }
        Poll::Pending
    }
}

impl Drop for HandsOutTwoWakers {
    fn drop(&mut self) {
        self.dropped.store(true, SeqCst);
    }
}

// Property: a suspended task whose last waker is dropped on one thread while
// another thread wakes it (the task runs inline there, stays suspended, and
// keeps no waker) completes exactly once: whichever thread lets go of the
// last count frees it, its future is dropped, and then its callback runs
// with `Abandoned`. Never uncalled (a `sync_await` would park for ever),
// never twice, and the drop's access to the task's body never races the
// wake's run (loom checks the cell).
#[test]
fn task_last_waker_dropped_racing_a_wake_calls_back_once_with_abandoned() {
    loom::model(|| {
        let wakers = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let calls = std::sync::Arc::new(StdAtomicUsize::new(0));
        let (c, d) = (calls.clone(), dropped.clone());
        Lazy::new(HandsOutTwoWakers {
            wakers: wakers.clone(),
            handed: false,
            dropped,
        })
        .start(move |t| {
            assert!(d.load(SeqCst), "the future is dropped before the callback");
            assert!(
                matches!(t.error(), Some(TaskError::Abandoned)),
                "{:?}",
                t.error()
            );
            c.fetch_add(1, SeqCst);
        });
        let (first, second) = {
            let mut w = wakers.lock().unwrap();
            let second = w.pop().expect("two wakers");
            (w.pop().expect("two wakers"), second)
        };
        assert_eq!(calls.load(SeqCst), 0, "suspended");
        let dropper = thread::spawn(move || drop(first));
        let waker = thread::spawn(move || second.wake());
        dropper.join().unwrap();
        waker.join().unwrap();
        assert_eq!(calls.load(SeqCst), 1, "the callback runs exactly once");
    });
}

// Property: a task without an executor woken inside a run on one thread (a
// wake there queues its run for the outermost run on that thread to make)
// while another thread wakes it too: the queued run and the other thread's
// wake never poll it twice at once (the other wake finds it SCHEDULED and
// is absorbed, or runs it inline if the queued run already left it IDLE),
// each wake publishes its flag to a later poll, and the task completes
// exactly once: no wake is lost in the queue. And the wake inside the run
// returns before the task is polled on that thread (the run is queued, not
// nested in the `wake`).
#[test]
fn task_run_queued_inside_a_run_racing_a_wake_from_another_thread() {
    loom::model(|| {
        let in_wake = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flags: [Arc<lazyflight::sync::atomic::AtomicUsize>; 2] =
            core::array::from_fn(|_| Arc::new(Default::default()));
        let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
        let calls = std::sync::Arc::new(StdAtomicUsize::new(0));
        let c = calls.clone();
        Lazy::new(NotInsideWake {
            inner: NoOverlap {
                inner: Box::pin(AllSet {
                    flags: flags.clone(),
                    waker: slot.clone(),
                }),
                in_poll: Default::default(),
            },
            thread: thread::current(),
            in_wake: in_wake.clone(),
        })
        .start(move |t| {
            assert!(!t.has_error());
            c.fetch_add(1, SeqCst);
        });
        let waker: Waker = slot.lock().unwrap().clone().expect("polled once, pending");
        let [mine, theirs] = flags;
        let other = {
            let waker = waker.clone();
            thread::spawn(move || {
                theirs.store(1, Ordering::Relaxed);
                waker.wake();
            })
        };
        // The wake inside this run queues the task's run, made when this run
        // (the outermost on this thread) returns.
        let w = waker.clone();
        Lazy::new(async move {
            mine.store(1, Ordering::Relaxed);
            in_wake.store(true, SeqCst);
            w.wake();
            in_wake.store(false, SeqCst);
        })
        .start(|t| assert!(!t.has_error()));
        other.join().unwrap();
        drop(waker);
        // Break the cycle task -> slot -> waker -> task.
        slot.lock().unwrap().take();
        assert_eq!(calls.load(SeqCst), 1, "the task completes exactly once");
    });
}

/// A collect child: its first poll hands a clone of its waker to a new
/// thread that drops it unwoken and, if `wake`, another clone to a new
/// thread that wakes it; it is ready at its next poll. Sets `dropped` when
/// the future is dropped.
struct HandsOffItsWaker {
    wake: bool,
    polled: bool,
    threads: std::sync::Arc<std::sync::Mutex<Vec<thread::JoinHandle<()>>>>,
    dropped: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Future for HandsOffItsWaker {
    type Output = usize;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<usize> {
        if self.polled {
            return Poll::Ready(7);
        }
        self.polled = true;
        let mut threads = self.threads.lock().unwrap();
        let dropped = cx.waker().clone();
        threads.push(thread::spawn(move || drop(dropped)));
        if self.wake {
            let woken = cx.waker().clone();
            threads.push(thread::spawn(move || woken.wake()));
        }
        Poll::Pending
    }
}

impl Drop for HandsOffItsWaker {
    fn drop(&mut self) {
        self.dropped.store(true, SeqCst);
    }
}

/// A task awaiting `collect_all` over one `HandsOffItsWaker` child: what its
/// callback got, once the child's threads are done, and whether the child's
/// future was dropped.
fn collect_parent_racing_its_childs_last_waker(wake: bool) -> (Vec<Option<usize>>, bool) {
    let threads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let dropped = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let child = HandsOffItsWaker {
        wake,
        polled: false,
        threads: threads.clone(),
        dropped: dropped.clone(),
    };
    let c = calls.clone();
    Lazy::new(async move {
        let out = collect_all(vec![Lazy::new(child)]).await;
        out.into_iter().map(|t| t.value()).sum::<usize>()
    })
    .start(move |t| {
        let got = match t.into_result() {
            Ok(v) => Some(v),
            Err(TaskError::Abandoned) => None,
            Err(e) => panic!("unexpected outcome: {e}"),
        };
        c.lock().unwrap().push(got);
    });
    let handles = std::mem::take(&mut *threads.lock().unwrap());
    for h in handles {
        h.join().unwrap();
    }
    let calls = std::mem::take(&mut *calls.lock().unwrap());
    (calls, dropped.load(SeqCst))
}

// Property: a task awaiting a collect whose only child kept one waker, and
// that waker is dropped unwoken on another thread while the task's run
// registers the task's own waker with the collect (before, during or after
// the registration): once nothing can wake the collect any more, the task
// does not keep itself alive through its own future (which owns the
// collect's queue, which holds the task's waker): whichever of the two
// sides comes last lets go of that waker, the task is abandoned, its
// future (with the child) dropped and its callback run exactly once.
#[test]
fn task_collect_parent_abandoned_when_its_childs_last_waker_is_dropped() {
    loom::model(|| {
        let (calls, dropped) = collect_parent_racing_its_childs_last_waker(false);
        assert_eq!(calls, [None], "the callback runs once, with Abandoned");
        assert!(dropped, "the task's future (and the child) is dropped");
    });
}

// Property: as above, but the child hands out a second clone of its waker
// that another thread wakes, racing the drop of the first and the task's
// registration: the collect can still be woken until that wake, so the
// task is never abandoned, the wake is not lost (the holder that wakes goes
// only after its notification), and the task completes once, with the
// child's value.
#[test]
fn task_collect_parent_not_abandoned_while_a_childs_waker_still_wakes() {
    loom::model(|| {
        let (calls, dropped) = collect_parent_racing_its_childs_last_waker(true);
        assert_eq!(calls, [Some(7)], "the task completes once, with the value");
        assert!(dropped);
    });
}

// Property: a collect child's wake publishes what the waker wrote before it
// to the child's next poll, also a wake that is absorbed because the child is
// already queued in the ready list (its node's `queued` flag set): two threads
// each store a flag (`Relaxed`) and wake the child through clones of its
// waker; the collect future runs inline on whichever thread wakes it. The
// absorbed wake touches neither the ready list's mutex nor the wait queue, so
// only its `queued` swap (Release) and the collect future's clearing swap
// (Acquire) order its flag before the poll; without them the poll could read
// the flag as 0, park, and never be woken again.
#[test]
fn task_collect_absorbed_child_wake_still_publishes_to_the_childs_next_poll() {
    loom::model(|| {
        let flags: [Arc<lazyflight::sync::atomic::AtomicUsize>; 2] =
            core::array::from_fn(|_| Arc::new(Default::default()));
        let slot = std::sync::Arc::new(std::sync::Mutex::new(None));
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let child = AllSet {
            flags: flags.clone(),
            waker: slot.clone(),
        };
        Lazy::new(async move {
            collect_all(vec![Lazy::new(child)]).await;
        })
        .start(move |t| {
            if !t.has_error() {
                d.store(true, Ordering::Release);
            }
        });
        let waker = slot.lock().unwrap().clone().expect("polled once, pending");
        set_and_wake_from_threads(flags, &waker);
        let completed = done.load(Ordering::Acquire);
        drop(waker);
        // Break the cycle task -> collect -> child -> slot -> waker.
        let kept = slot.lock().unwrap().take();
        drop(kept);
        assert!(completed, "the child was not polled after every wake");
    });
}

// Property: a `collect_any_with` future dropped (after its first poll) while
// its scheduled child finishes on another thread: exactly one side owns the
// callback. Either the drop claims the win for nobody first (the callback is
// dropped uncalled, the child loses), or the child claims it first and takes
// the callback to run it; never both touching it (loom checks the cell), and
// the callback runs at most once.
#[test]
fn task_collect_any_dropped_while_its_scheduled_child_finishes_one_owner_of_the_callback() {
    loom::model(|| {
        let calls = std::sync::Arc::new(StdAtomicUsize::new(0));
        let c = calls.clone();
        let child = Lazy::new(async { 3usize }).via(executor(ThreadPerJob));
        let mut fut = collect_any_with(vec![child], move |i, v| {
            assert_eq!((i, v.value()), (0, 3));
            c.fetch_add(1, SeqCst);
        });
        let waker = Waker::noop();
        let _ = Pin::new(&mut fut).poll(&mut Context::from_waker(waker));
        drop(fut);
        assert!(calls.load(SeqCst) <= 1);
    });
}

// Property: a task awaiting a `RescheduleLazy` whose child completes on the
// executor's thread while the awaiting task's poll checks for the outcome and
// registers in the join slot's queue: the completion is either seen by the
// check (or by its re-check under the queue lock) or finds the registration
// and wakes the task. Never a lost wake-up (`sync_await` would park for ever).
#[test]
fn task_awaited_reschedule_lazy_completing_during_registration_wakes_the_awaiter() {
    loom::model(|| {
        let ex = executor(ThreadPerJob);
        let v = sync_await(Lazy::new(async move {
            Lazy::new(async { 4 }).via(ex).await + 1
        }));
        assert_eq!(v, 5);
    });
}

/// Sets each flag to 1 and wakes `waker`, each from a thread of its own, and
/// joins those threads.
fn set_and_wake_from_threads<const N: usize>(
    flags: [Arc<lazyflight::sync::atomic::AtomicUsize>; N],
    waker: &Waker,
) {
    let wakers: Vec<_> = flags
        .into_iter()
        .map(|flag| {
            let waker = waker.clone();
            thread::spawn(move || {
                flag.store(1, Ordering::Relaxed);
                waker.wake();
            })
        })
        .collect();
    for w in wakers {
        w.join().unwrap();
    }
}
