//! Lazy locals (async_simple's LazyLocalTest scenarios): set once per task
//! chain, typed access, passed down the await chain, errors on a second
//! local, dropped after the task and before its callback.
// `Lazy::new(async move { child.await })` is the point of several tests: the
// child is awaited inside a parent task, which is what carries the local.
#![allow(clippy::redundant_async_block)]

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use lazyflight::task::{
    has_lazy_local, sleep, sync_await, sync_await_try, with_lazy_local, Lazy, SimpleExecutor,
};

#[derive(Debug, PartialEq)]
struct MyLocal {
    value: i32,
}

#[test]
fn no_local() {
    let got = sync_await(Lazy::new(async {
        (has_lazy_local(), with_lazy_local(|l: &MyLocal| l.value))
    }));
    assert_eq!(got, (false, None));
    assert_eq!(
        with_lazy_local(|l: &MyLocal| l.value),
        None,
        "outside any task"
    );
}

#[test]
fn local_is_typed_and_flows_to_children_and_grandchildren() {
    let grandchild = || Lazy::new(async { with_lazy_local(|l: &MyLocal| l.value) });
    let child = move || {
        Lazy::new(async move { (with_lazy_local(|l: &MyLocal| l.value), grandchild().await) })
    };
    let task = Lazy::new(async move {
        let mismatch = with_lazy_local(|l: &String| l.len());
        (has_lazy_local(), mismatch, child().await)
    })
    .set_local(MyLocal { value: 42 })
    .unwrap();
    assert_eq!(sync_await(task), (true, None, (Some(42), Some(42))));
}

#[test]
fn setting_twice_is_an_error_and_gives_the_task_back() {
    let t = Lazy::new(async { with_lazy_local(|l: &MyLocal| l.value) })
        .set_local(MyLocal { value: 1 })
        .unwrap();
    let err = t.set_local(MyLocal { value: 2 }).unwrap_err();
    assert_eq!(err.to_string(), "the task already has a lazy local");
    // The task comes back intact, with its first local.
    let t = err.into_inner();
    assert!(t.has_local());
    assert_eq!(sync_await(t), Some(1));
}

#[test]
fn awaiting_a_child_with_its_own_local_from_a_task_with_one_is_an_error() {
    let child = Lazy::new(async { 1 }).set_local(7u8).unwrap();
    let parent = Lazy::new(async move { child.await })
        .set_local(MyLocal { value: 1 })
        .unwrap();
    let r = sync_await_try(parent);
    let msg = r
        .into_result()
        .unwrap_err()
        .panic_message()
        .unwrap()
        .to_string();
    assert!(msg.contains("already has one"), "{msg}");
}

#[test]
fn a_child_with_a_local_under_a_parent_without_one_sees_its_own() {
    let child = Lazy::new(async { with_lazy_local(|v: &u8| *v) })
        .set_local(7u8)
        .unwrap();
    let parent = Lazy::new(async move { (child.await, has_lazy_local()) });
    // After the child completes, its local is gone again.
    assert_eq!(sync_await(parent), (Some(7), false));
}

struct DropFlag(Arc<AtomicBool>, Arc<Mutex<Vec<&'static str>>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, SeqCst);
        self.1.lock().unwrap().push("local dropped");
    }
}

#[test]
fn local_is_dropped_after_the_task_and_before_the_callback() {
    let ex = SimpleExecutor::new(1);
    let dropped = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let (d2, l2) = (dropped.clone(), log.clone());
    let l3 = log.clone();
    Lazy::new(async move {
        sleep(Duration::from_millis(1)).await.unwrap();
        l3.lock().unwrap().push("task body done");
        with_lazy_local(|_: &DropFlag| ()).is_some()
    })
    .via(ex)
    .set_local(DropFlag(dropped.clone(), log.clone()))
    .unwrap()
    .start(move |r| {
        l2.lock().unwrap().push("callback");
        tx.send((r.value(), d2.load(SeqCst))).unwrap();
    });
    let (saw_local, dropped_before_callback) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert!(saw_local);
    assert!(dropped_before_callback);
    assert_eq!(
        *log.lock().unwrap(),
        vec!["task body done", "local dropped", "callback"]
    );
}

#[test]
fn local_is_dropped_when_the_task_panics_too() {
    let dropped = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Vec::new()));
    let t = Lazy::new(async { panic!("boom") as i32 })
        .set_local(DropFlag(dropped.clone(), log))
        .unwrap();
    assert!(sync_await_try(t).has_error());
    assert!(dropped.load(SeqCst));
}

#[test]
fn a_ready_lazy_follows_the_same_local_rules() {
    let child = Lazy::ready(5u8).set_local(1u8).unwrap();
    let ok = Lazy::new(async move { child.await });
    assert_eq!(sync_await(ok), 5);
    let child = Lazy::ready(5u8).set_local(1u8).unwrap();
    let parent = Lazy::new(async move { child.await })
        .set_local(MyLocal { value: 1 })
        .unwrap();
    assert!(sync_await_try(parent).has_error());
}

/// A local whose `Drop` panics, on a task run on an executor: the task
/// still completes exactly once, its callback runs, and the panic is its
/// error (the inline path, where the panic reaches the awaiting task, is
/// covered by the other tests).
#[test]
fn a_local_whose_drop_panics_fails_the_task_and_the_callback_still_runs() {
    struct PanicsOnDrop;
    impl Drop for PanicsOnDrop {
        fn drop(&mut self) {
            panic!("local dropped");
        }
    }
    let (tx, rx) = mpsc::channel();
    Lazy::new(async { 1 })
        .set_local(PanicsOnDrop)
        .unwrap()
        .via(SimpleExecutor::new(1))
        .start(move |t| tx.send(t.into_result().map_err(|e| e.is_panic())).unwrap());
    assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(Err(true)));
}

/// A child awaited as a `RescheduleLazy` (scheduled on an executor) joins
/// the awaiting chain: it sees the chain's local, as an inline child and a
/// collect child do; with a local of its own in a chain that has one, the
/// await is an error, as for an inline child.
#[test]
fn a_scheduled_child_awaited_inherits_the_chains_local() {
    let ex = SimpleExecutor::new(1);
    let (e1, e2) = (ex.clone(), ex.clone());
    let seen = sync_await(
        Lazy::new(async move {
            let inline = Lazy::new(async { with_lazy_local(|l: &MyLocal| l.value) }).await;
            let via_collect = lazyflight::task::collect_all(vec![Lazy::new(async {
                with_lazy_local(|l: &MyLocal| l.value)
            })
            .via(e1)])
            .await
            .pop()
            .unwrap()
            .value();
            let via_await = Lazy::new(async { with_lazy_local(|l: &MyLocal| l.value) })
                .via(e2)
                .await;
            (inline, via_collect, via_await)
        })
        .set_local(MyLocal { value: 42 })
        .unwrap(),
    );
    assert_eq!(seen, (Some(42), Some(42), Some(42)));
    let two = sync_await_try(
        Lazy::new(async move {
            Lazy::new(async { 1 })
                .set_local(MyLocal { value: 2 })
                .unwrap()
                .via(ex)
                .await
        })
        .set_local(MyLocal { value: 1 })
        .unwrap(),
    );
    assert!(two.has_error(), "a second local in one chain is an error");
}
