//! The tokio runtime adapter (feature `tokio`).
#![cfg(feature = "tokio")]

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

#[test]
fn a_shut_down_runtime_rejects_instead_of_hanging() {
    let rt = runtime(1);
    let ex: ExecutorRef = Arc::new(TokioExecutor::new(rt.handle().clone()));
    rt.shutdown_timeout(Duration::from_secs(5));
    let r = sync_await_try(Lazy::new(async { 1 }).via(ex));
    assert!(matches!(r.into_result(), Err(TaskError::Rejected)));
}
