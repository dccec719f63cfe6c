//! A stampede on one lazily initialized resource.
//!
//! 2,000 tasks ask for a connection-pool handle at once, on a 2-worker tokio
//! runtime. The first initializer's caller gives up (its request times out),
//! so the right to initialize passes to the longest waiter; that attempt
//! fails, and its error is cached and shared with every caller, so the
//! backend sees exactly two attempts, not two thousand. A second cell shows
//! the same stampede with a leader that is parked (polled once, then never
//! again) while the initializer is owned by the cell: the others finish it.
//!
//! Run: `cargo run --release --example alazy_stampede`
#![allow(clippy::disallowed_types)]

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lazyflight::{ALazy, State};

const TASKS: usize = 2_000;

#[derive(Debug)]
struct Pool {
    generation: usize,
}

async fn connect(attempts: &AtomicUsize) -> Result<Pool, String> {
    let n = attempts.fetch_add(1, SeqCst) + 1;
    tokio::time::sleep(Duration::from_millis(30)).await;
    if n == 2 {
        // The second attempt is refused: this error is what everyone sees.
        return Err(format!("attempt {n}: connection refused"));
    }
    Ok(Pool { generation: n })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cell = Arc::new(ALazy::<Pool, String>::new());
    let attempts = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();

    let mut tasks = Vec::with_capacity(TASKS);
    for i in 0..TASKS {
        let (cell, attempts) = (cell.clone(), attempts.clone());
        tasks.push(tokio::spawn(async move {
            // Task 0 leads and gives up after 5 ms: a cancelled initializer.
            let patience = if i == 0 { 5 } else { 5_000 };
            let got = tokio::time::timeout(
                Duration::from_millis(patience),
                cell.get_or_init(|| connect(&attempts)),
            )
            .await;
            match got {
                Err(_) => "timed out",
                Ok(Ok(_)) => "pool",
                Ok(Err(_)) => "cached error",
            }
        }));
        if i == 0 {
            // Let the first task take the lead before the herd arrives.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    for t in tasks {
        *outcomes.entry(t.await.unwrap()).or_default() += 1;
    }
    println!("ALazy, {TASKS} concurrent callers, first leader cancelled, second attempt fails:");
    println!("  backend attempts : {}", attempts.load(SeqCst));
    for (what, n) in &outcomes {
        println!("  {what:<17}: {n}");
    }
    println!("  final state      : {:?}", cell.state());
    println!("  wall time        : {:?}", start.elapsed());
    assert_eq!(attempts.load(SeqCst), 2);
    assert_eq!(cell.state(), State::Failed);

    // Parked leader: the initializer belongs to the cell.
    let cell = Arc::new(ALazy::<Pool, String>::new());
    let attempts = Arc::new(AtomicUsize::new(0));
    let c = cell.clone();
    let a = attempts.clone();
    let parked = tokio::spawn(async move {
        let mut fut = Box::pin(c.get_or_init_owned(move || async move { connect(&a).await }));
        let _ = futures::poll!(fut.as_mut());
        // Never polled again, never dropped (until the end of the demo).
        std::future::pending::<()>().await;
        drop(fut);
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let cell = cell.clone();
        tasks.push(tokio::spawn(async move {
            cell.get_or_init(|| async { Err("unused".to_owned()) })
                .await
                .map(|p| p.generation)
                .map_err(Clone::clone)
        }));
    }
    let mut ok = 0;
    for t in tasks {
        ok += usize::from(t.await.unwrap().is_ok());
    }
    parked.abort();
    println!("\nALazy::get_or_init_owned, leader parked after its first poll:");
    println!("  backend attempts : {}", attempts.load(SeqCst));
    println!("  callers served   : {ok} of {TASKS}");
    println!("  wall time        : {:?}", start.elapsed());
    assert_eq!(attempts.load(SeqCst), 1);
    assert_eq!(ok, TASKS);
}
