//! The tokio runtime adapter (feature `tokio`).
#![cfg(feature = "tokio")]

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use lazyflight::task::{
    collect_all_para, current_executor, sleep, sync_await, sync_await_try, yield_now, ExecutorRef,
    Lazy, TaskError, TokioExecutor,
};

fn runtime(workers: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_time()
        .build()
        .unwrap()
}

#[test]
fn tasks_run_sleep_and_yield_on_the_runtime() {
    let rt = runtime(2);
    let ex: ExecutorRef = Arc::new(TokioExecutor::new(rt.handle().clone()));
    let out = sync_await(
        Lazy::new(async {
            let e = current_executor().unwrap();
            let mut on_rt = vec![e.current_thread_in_executor()];
            sleep(Duration::from_millis(2)).await.unwrap();
            on_rt.push(e.current_thread_in_executor());
            yield_now().await.unwrap();
            on_rt.push(e.current_thread_in_executor());
            let kids = (0..4).map(|i| Lazy::new(async move { i * 2 })).collect();
            let sum: i32 = collect_all_para(kids)
                .await
                .into_iter()
                .map(|t| t.value())
                .sum();
            (on_rt, sum)
        })
        .via(ex.clone()),
    );
    assert_eq!(out, (vec![true, true, true], 12));
    assert!(
        !ex.current_thread_in_executor(),
        "the test thread is not a runtime worker"
    );
}

#[test]
fn sync_await_from_a_runtime_worker_is_refused() {
    let rt = runtime(1);
    let ex: ExecutorRef = Arc::new(TokioExecutor::new(rt.handle().clone()));
    let inner = ex.clone();
    let r = sync_await_try(
        Lazy::new(async move { sync_await(Lazy::new(async { 1 }).via(inner)) }).via(ex),
    );
    let msg = r
        .into_result()
        .unwrap_err()
        .panic_message()
        .unwrap()
        .to_string();
    assert!(msg.contains("own executor"), "{msg}");
}

/// tokio does not tell its blocking pool's threads from its workers, so
/// `sync_await` refuses on a `spawn_blocking` thread as well; the documented
/// way there is the handle's `block_on`, which drives the task to its end.
#[test]
fn on_a_blocking_thread_the_handle_block_on_drives_a_task() {
    let rt = runtime(1);
    let ex: ExecutorRef = Arc::new(TokioExecutor::new(rt.handle().clone()));
    let handle = rt.handle().clone();
    let (refused, value) = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let refused = ex.current_thread_in_executor();
            let task = Lazy::new(async {
                sleep(Duration::from_millis(1)).await.unwrap();
                current_executor().unwrap().current_thread_in_executor()
            });
            (refused, handle.block_on(task.via(ex).into_future()))
        })
        .await
        .unwrap()
    });
    assert!(refused, "a blocking-pool thread counts as the runtime's");
    assert!(value, "the task ran on the runtime");
}

#[test]
fn a_shut_down_runtime_rejects_instead_of_hanging() {
    let rt = runtime(1);
    let ex: ExecutorRef = Arc::new(TokioExecutor::new(rt.handle().clone()));
    rt.shutdown_timeout(Duration::from_secs(5));
    let r = sync_await_try(Lazy::new(async { 1 }).via(ex));
    assert!(matches!(r.into_result(), Err(TaskError::Rejected)));
}

/// `yield_now` gives way to the tasks already queued on the runtime: three
/// tasks on a one-worker runtime take turns, every task's step `s` before
/// any task's step `s + 1` (tokio runs a task spawned from its worker next,
/// in its LIFO slot, which a plain spawn per run would turn into three steps
/// in a row). Within a turn the order is tokio's: its deferred wake-ups are
/// not strictly FIFO.
#[test]
fn yield_takes_turns_on_a_one_worker_runtime() {
    let rt = runtime(1);
    let ex: ExecutorRef = Arc::new(TokioExecutor::new(rt.handle().clone()));
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    // Hold the only worker until all three tasks are queued.
    let (gate_tx, gate_rx) = std::sync::mpsc::channel::<()>();
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
        .start(move |r| {
            r.value();
            tx.send(()).unwrap()
        });
    }
    gate_tx.send(()).unwrap();
    for _ in 0..3 {
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    let got = order.lock().unwrap().clone();
    let steps: Vec<u32> = got.iter().map(|&(step, _)| step).collect();
    assert_eq!(
        steps,
        [0, 0, 0, 1, 1, 1, 2, 2, 2],
        "each yield gives way to the tasks already queued: {got:?}"
    );
}
