//! `lazyflight::task` when user code panics in a drop or during an unwind:
//! a collect's drop still drops every child and never treats an outcome as a
//! child; a callback run by a wake during an unwind does not abort the
//! process.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use lazyflight::task::{collect_all, Lazy};

/// Sets its flag when dropped.
struct DropFlag(Arc<AtomicBool>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
    }
}

/// A value whose `Drop` panics (when the thread is not unwinding already).
struct PanicsOnDrop;
impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("outcome drop");
        }
    }
}

/// A child that never finishes and owns `flag`; it keeps its waker (so the
/// collect future stays registered).
fn forever(flag: Arc<AtomicBool>) -> Lazy<PanicsOnDrop> {
    Lazy::new(async move {
        let _f = DropFlag(flag);
        // Keeps its waker (a holder of the collect) until it is dropped.
        let mut kept = None;
        std::future::poll_fn(move |cx: &mut Context<'_>| {
            if kept.is_none() {
                kept = Some(cx.waker().clone());
            }
            Poll::<()>::Pending
        })
        .await;
        PanicsOnDrop
    })
}

struct Noop;
impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

/// Dropping a `CollectAll` whose finished child's outcome panics on drop must
/// still drop the children that are still running (a `Vec` drops every
/// element even if one's `Drop` panics; the collect's docs say the same).
#[test]
fn dropping_a_collect_whose_outcome_panics_on_drop_still_drops_running_children() {
    let flag = Arc::new(AtomicBool::new(false));
    let mut fut = collect_all(vec![
        Lazy::new(async { PanicsOnDrop }),
        forever(flag.clone()),
    ]);
    let waker = Waker::from(Arc::new(Noop));
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
    let r = catch_unwind(AssertUnwindSafe(move || drop(fut)));
    assert!(r.is_err(), "the outcome's panic unwinds out of the drop");
    assert!(
        flag.load(SeqCst),
        "the running child's future was leaked, not dropped"
    );
}

/// A parent waker whose `Drop` panics.
struct PanickyWaker;
impl Wake for PanickyWaker {
    fn wake(self: Arc<Self>) {}
}
impl Drop for PanickyWaker {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("waker drop");
        }
    }
}

/// The awaiting task's waker is user code: a panic from its drop, when the
/// collect future drops its registration, must not make the collect drop
/// its outcome bytes as if they were children (UB), nor leak the children.
#[test]
fn a_parent_waker_that_panics_on_drop_does_not_corrupt_the_collect_drop() {
    let flag = Arc::new(AtomicBool::new(false));
    let mut fut = collect_all(vec![
        Lazy::new(async { PanicsOnDrop }),
        Lazy::new(async { PanicsOnDrop }),
        forever(flag.clone()),
    ]);
    {
        let waker = Waker::from(Arc::new(PanickyWaker));
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut fut).poll(&mut cx).is_pending());
        // Our waker goes; the collect future's registered clone is the last.
        let _ = catch_unwind(AssertUnwindSafe(move || drop(waker)));
    }
    let r = catch_unwind(AssertUnwindSafe(move || drop(fut)));
    assert!(r.is_err());
    assert!(flag.load(SeqCst), "the running child was leaked");
}

/// Runs the test `name` of this binary in a child process (with
/// `LAZYFLIGHT_TASK_UNWIND_CHILD` set) and returns whether it exited normally:
/// for scenarios that may abort the process.
fn in_child_process(name: &str) -> std::process::ExitStatus {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            name,
            "--nocapture",
            "--include-ignored",
            "--test-threads=1",
        ])
        .env("LAZYFLIGHT_TASK_UNWIND_CHILD", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
}

/// Wakes its waker when dropped (a channel sender, a guard).
struct WakeOnDrop(Option<Waker>);
impl Drop for WakeOnDrop {
    fn drop(&mut self) {
        if let Some(w) = self.0.take() {
            w.wake();
        }
    }
}

/// The scenario: a task without an executor waits on a oneshot channel;
/// the sender is dropped while its thread unwinds (the code holding it
/// panicked), which wakes the task inline; the task fails (`Canceled`) and
/// its callback re-raises that error with `Try::value`, a panic inside a
/// drop during unwinding.
#[test]
#[ignore = "run in a child process by the test below"]
fn child_callback_panic_in_a_wake_during_unwinding() {
    if std::env::var_os("LAZYFLIGHT_TASK_UNWIND_CHILD").is_none() {
        return;
    }
    let (tx, rx) = futures::channel::oneshot::channel::<u32>();
    Lazy::new(async move { rx.await.expect("sender dropped") }).start(|t| {
        let _ = t.value();
    });
    let r = catch_unwind(AssertUnwindSafe(move || {
        let _tx = tx;
        panic!("the code holding the sender fails");
    }));
    assert!(r.is_err());
}

/// As `RunJob` and the task's own drop do when the thread is unwinding
/// already (see `Lazy::start`'s `# Panics`), a callback's panic during an
/// unwind must be dropped, not abort the process.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_callback_panicking_in_a_wake_during_unwinding_does_not_abort() {
    let status = in_child_process("child_callback_panic_in_a_wake_during_unwinding");
    assert!(status.success(), "the process aborted: {status:?}");
}

/// The same with a plain waker dropped by the unwind.
#[test]
#[ignore = "run in a child process by the test below"]
fn child_waker_woken_by_a_guard_during_unwinding() {
    if std::env::var_os("LAZYFLIGHT_TASK_UNWIND_CHILD").is_none() {
        return;
    }
    let slot = Arc::new(std::sync::Mutex::new(None::<Waker>));
    let s = slot.clone();
    let mut polled = false;
    Lazy::new(std::future::poll_fn(move |cx| {
        if polled {
            return Poll::Ready(7u32);
        }
        polled = true;
        *s.lock().unwrap() = Some(cx.waker().clone());
        Poll::Pending
    }))
    .start(|_| panic!("callback"));
    let w = slot.lock().unwrap().take();
    let r = catch_unwind(AssertUnwindSafe(move || {
        let _g = WakeOnDrop(w);
        panic!("outer");
    }));
    assert!(r.is_err());
}

/// As above, for a callback that panics on a plain wake-up made by a guard
/// dropped during an unwind.
#[test]
#[cfg_attr(miri, ignore = "spawns a process")]
fn a_callback_run_by_a_wake_during_unwinding_does_not_abort() {
    let status = in_child_process("child_waker_woken_by_a_guard_during_unwinding");
    assert!(status.success(), "the process aborted: {status:?}");
}
