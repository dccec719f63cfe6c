//! Go's `x/sync/singleflight` test suite, translated to `Group`.
//!
//! Go's `Do(key, fn)` is [`Group::run`]; `DoChan` is [`Group::entry`] taken
//! synchronously (so the caller is registered before `DoChan` returns, as in
//! Go) with the rest of the call spawned; `Forget` is [`Group::forget`]. Go's
//! `(v, err, shared)` is [`Outcome::Complete`].
#![allow(clippy::disallowed_types)] // tests may name std types next to the shim

use std::future::Future;
use std::time::Duration;

use lazyflight::sync::atomic::{AtomicUsize, Ordering};
use lazyflight::sync::Arc;
use lazyflight::{Entry, Group, Outcome};
use tokio::sync::{oneshot, Barrier};
use tokio::task::JoinHandle;

type Res = Arc<Outcome<String, String>>;

/// Go's `DoChan`: joins or leads synchronously, then finishes in a task.
fn do_chan<F, Fut>(
    g: &Group<&'static str, String, String>,
    key: &'static str,
    f: F,
) -> JoinHandle<Res>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<String, String>> + Send + 'static,
{
    match g.entry(key) {
        Entry::Leader(leader) => tokio::spawn(async move { leader.complete(f().await) }),
        Entry::Subscriber(sub) => tokio::spawn(async move { sub.recv().await.unwrap() }),
    }
}

fn value(o: &Outcome<String, String>) -> &str {
    match o {
        Outcome::Complete { result: Ok(v), .. } => v,
        other => panic!("expected a value, got {other:?}"),
    }
}

// TestDo
#[tokio::test]
async fn test_do() {
    let g = Group::<&str, String, String>::new();
    let out = g.run("key", || async { Ok("bar".to_owned()) }).await;
    assert_eq!(value(&out), "bar");
    assert!(!out.is_shared());
}

// TestDoErr
#[tokio::test]
async fn test_do_err() {
    let g = Group::<&str, String, String>::new();
    let out = g
        .run("key", || async { Err("some error".to_owned()) })
        .await;
    assert_eq!(out.result(), Some(&Err("some error".to_owned())));
}

// TestDoDupSuppress: n callers, the function blocks until released; it runs
// more than zero and fewer than n times, and everyone gets "bar".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_do_dup_suppress() {
    const N: usize = 10;
    let g = Arc::new(Group::<&str, String, String>::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let (first_tx, first_rx) = oneshot::channel::<()>();
    let first_tx = Arc::new(std::sync::Mutex::new(Some(first_tx)));
    let (release_tx, release_rx) = tokio::sync::watch::channel(None::<String>);
    let entered = Arc::new(Barrier::new(N + 1));

    let mut tasks = Vec::new();
    for _ in 0..N {
        let (g, calls, first_tx, entered) =
            (g.clone(), calls.clone(), first_tx.clone(), entered.clone());
        let mut release = release_rx.clone();
        tasks.push(tokio::spawn(async move {
            entered.wait().await;
            g.run("key", || async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    // First invocation.
                    let _ = first_tx.lock().unwrap().take().unwrap().send(());
                }
                let v = release
                    .wait_for(Option::is_some)
                    .await
                    .unwrap()
                    .clone()
                    .unwrap();
                // Let more callers enter Do.
                tokio::time::sleep(Duration::from_millis(10)).await;
                Ok(v)
            })
            .await
        }));
    }
    // Every caller reached the line before Do, and one is inside fn.
    entered.wait().await;
    first_rx.await.unwrap();
    release_tx.send(Some("bar".to_owned())).unwrap();
    for t in tasks {
        assert_eq!(value(&t.await.unwrap()), "bar");
    }
    let got = calls.load(Ordering::SeqCst);
    assert!(
        got > 0 && got < N,
        "number of calls = {got}; want over 0 and less than {N}"
    );
}

// TestForget, with its exact interleaving (golang/go #31420): the first call
// is forgotten while running; the second starts fresh; the first finishes;
// a third call must join the second, not start its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_forget() {
    let g = Arc::new(Group::<&'static str, String, String>::new());
    let (first_started_tx, first_started) = oneshot::channel();
    let (unblock_first, unblock_first_rx) = oneshot::channel::<()>();
    let (first_finished_tx, first_finished) = oneshot::channel();

    let g1 = g.clone();
    tokio::spawn(async move {
        g1.run("key", || async move {
            first_started_tx.send(()).unwrap();
            unblock_first_rx.await.unwrap();
            first_finished_tx.send(()).unwrap();
            Ok(String::new())
        })
        .await
    });
    first_started.await.unwrap();
    assert!(g.forget("key"));

    let (unblock_second, unblock_second_rx) = oneshot::channel::<()>();
    let second = do_chan(&g, "key", || async move {
        unblock_second_rx.await.unwrap();
        Ok("2".to_owned())
    });

    unblock_first.send(()).unwrap();
    first_finished.await.unwrap();
    // Let the first flight publish (it removes itself after its work).
    while g.in_flight() != 1 {
        tokio::task::yield_now().await;
    }

    let third = do_chan(&g, "key", || async { Ok("3".to_owned()) });

    unblock_second.send(()).unwrap();
    let _ = second.await.unwrap();
    let r = third.await.unwrap();
    assert_eq!(
        value(&r),
        "2",
        "we should receive the result produced by the second call"
    );
}

// ExampleGroup: two DoChan calls on one key; only the first function runs,
// and both see its result, shared.
#[tokio::test]
async fn example_group() {
    let g = Group::<&'static str, String, String>::new();
    let (block_tx, block) = tokio::sync::watch::channel(false);
    let mut b1 = block.clone();
    let res1c = do_chan(&g, "key", || async move {
        b1.wait_for(|open| *open).await.unwrap();
        Ok("func 1".to_owned())
    });
    let mut b2 = block.clone();
    let res2c = do_chan(&g, "key", || async move {
        b2.wait_for(|open| *open).await.unwrap();
        Ok("func 2".to_owned())
    });
    block_tx.send(true).unwrap();
    let res1 = res1c.await.unwrap();
    let res2 = res2c.await.unwrap();
    // Results are shared by functions executed with duplicate keys.
    assert!(res2.is_shared(), "Shared: true");
    assert_eq!(value(&res1), value(&res2), "Equal results: true");
    assert_eq!(value(&res1), "func 1", "Result: func 1");
}

// TestDoChan's shared flag for the leader too (golang/go #74880).
#[tokio::test]
async fn shared_is_true_for_the_leader_when_anyone_joined() {
    let g = Group::<&'static str, String, String>::new();
    let (tx, rx) = oneshot::channel::<()>();
    let leader = do_chan(&g, "key", || async move {
        rx.await.unwrap();
        Ok("v".to_owned())
    });
    let joiner = do_chan(&g, "key", || async { unreachable!("joins") });
    tx.send(()).unwrap();
    let (l, j) = (leader.await.unwrap(), joiner.await.unwrap());
    assert!(l.is_shared() && j.is_shared());
    assert!(Arc::ptr_eq(&l, &j));
}
