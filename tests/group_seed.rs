//! The two examples of the single-flight seed (rs-singleflight's README),
//! verbatim but for their `use` lines.
//!
//! The first one asserts that eight tasks spawned at once with work that
//! finishes at its first poll all share one flight. No single-flight
//! implementation can promise that: whether a task spawned last joins depends
//! on when the runtime first polls it, and the flight may be over by then (the
//! seed marks the example `no_run`). So it is compiled here verbatim, and its
//! claims are asserted by `seed_run_example_claims`, the same scenario with
//! the leader's work held open until every caller has joined.

#[allow(dead_code)] // compiled, not run: see the header of this file
mod run_example {
    use lazyflight::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };

    use lazyflight::{Group, Outcome};

    #[tokio::main]
    async fn main() {
        let group = Arc::new(Group::<String, String, ()>::new());
        let calls = Arc::new(AtomicUsize::new(0));

        let mut tasks = Vec::new();
        for _ in 0..8 {
            let group = Arc::clone(&group);
            let calls = Arc::clone(&calls);
            tasks.push(tokio::spawn(async move {
                group
                    .run("resource".to_owned(), || async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        Ok("computed value".to_owned())
                    })
                    .await
            }));
        }

        for task in tasks {
            match task.await.unwrap().as_ref() {
                Outcome::Complete { result, shared } => {
                    assert_eq!(result.as_ref().unwrap(), "computed value");
                    assert!(*shared);
                }
                Outcome::Canceled => panic!("leader was canceled"),
            }
        }

        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}

/// The first example's scenario, made deterministic the way Go's
/// `ExampleGroup` does it: the work waits until all eight callers are in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_run_example_claims() {
    use lazyflight::sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    };
    use lazyflight::{Group, Outcome};

    let group = Arc::new(Group::<String, String, ()>::new());
    let calls = Arc::new(AtomicUsize::new(0));
    let (open_tx, open_rx) = tokio::sync::watch::channel(false);

    let mut tasks = Vec::new();
    for _ in 0..8 {
        let group = Arc::clone(&group);
        let calls = Arc::clone(&calls);
        let mut open = open_rx.clone();
        tasks.push(tokio::spawn(async move {
            group
                .run("resource".to_owned(), || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    open.wait_for(|open| *open).await.unwrap();
                    Ok("computed value".to_owned())
                })
                .await
        }));
    }
    // Wait until the other seven have joined the one flight.
    while group.is_empty() || group.in_flight() != 1 || group.subscribers("resource") < 7 {
        tokio::task::yield_now().await;
    }
    open_tx.send(true).unwrap();

    let mut outcomes = Vec::new();
    for task in tasks {
        let outcome = task.await.unwrap();
        match outcome.as_ref() {
            Outcome::Complete { result, shared } => {
                assert_eq!(result.as_ref().unwrap(), "computed value");
                assert!(*shared);
            }
            Outcome::Canceled => panic!("leader was canceled"),
        }
        outcomes.push(outcome);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(outcomes.iter().all(|o| Arc::ptr_eq(o, &outcomes[0])));
    assert_eq!(group.in_flight(), 0);
    assert!(group.is_empty());
}

mod entry_example {
    use lazyflight::{Entry, Group};

    #[tokio::main]
    async fn main() {
        let group = Group::<&'static str, usize, ()>::new();

        match group.entry("key") {
            Entry::Leader(leader) => {
                tokio::spawn(async move {
                    leader.complete(Ok(42));
                });
            }
            Entry::Subscriber(subscriber) => {
                let outcome = subscriber.recv().await.unwrap();
                assert!(outcome.is_shared());
            }
        }
    }

    #[test]
    fn seed_entry_example() {
        main();
    }
}
