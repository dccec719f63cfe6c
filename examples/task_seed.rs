//! The examples of async_simple's `Lazy` documentation, in Rust, one function
//! per example, in the order the documentation gives them.
//!
//! Run with `cargo run --example task_seed`.
// The examples keep the documentation's names (`foo`, `bar`) and values
// (`3.14f`), and its callbacks that send a `()` result.
#![allow(clippy::disallowed_names, clippy::approx_constant, clippy::unit_arg)]

use std::sync::mpsc;
use std::time::Duration;

use lazyflight::task::{
    collect_all, collect_all_para, collect_all_windowed, collect_any, collect_any_with,
    current_executor, sleep, sync_await, with_lazy_local, yield_now, AnyOf3, Lazy, RescheduleLazy,
    SimpleExecutor, Try,
};

// `Lazy<int> task1(int x) { co_return x; }`
fn task1(x: i32) -> Lazy<i32> {
    Lazy::new(async move { x })
}

// `co_await` another Lazy: nothing runs until it is awaited.
fn task2() -> Lazy<()> {
    Lazy::new(async {
        let t = task1(10);
        let x = t.await; // starts `t`, inline
        assert_eq!(x, 10);
    })
}

// `.start(callback)`: the callback gets a `Try`.
fn start_with_callback() {
    let (tx, rx) = mpsc::channel();
    task2().start(move |result: Try<()>| {
        if result.has_error() {
            println!("Error Happened in task2.");
        } else {
            println!("task2 completed successfully.");
        }
        tx.send(()).unwrap();
    });
    rx.recv().unwrap();
}

// `directlyStart(callback, executor)`: binds the executor, starts inline;
// after a sleep the task runs on the executor.
fn directly_start() {
    let executor = SimpleExecutor::new(1);
    let (tx, rx) = mpsc::channel();
    Lazy::new(async {
        let e = current_executor().expect("binding executor successfully");
        assert!(!e.current_thread_in_executor()); // lazy schedule: not on the executor yet
        sleep(Duration::from_millis(1)).await.unwrap(); // needs the executor
        assert!(e.current_thread_in_executor()); // now on the executor
    })
    .directly_start(move |r| tx.send(r.value()).unwrap(), executor);
    rx.recv().unwrap();
}

// `syncAwait(task2())`.
fn sync_await_example() {
    sync_await(task2());
}

// Exceptions: a panic propagates through `.await` to the root, where the
// caller can catch it, or lands in the `start` callback's `Try`.
fn foo() -> Lazy<i32> {
    Lazy::new(async { panic!("test") })
}

fn bar_catching() -> Lazy<i32> {
    Lazy::new(async {
        // `try { co_await foo() } catch (...) { res = -1 }`
        let r = foo().await_try().await;
        if r.has_error() {
            println!("error happened in foo. Set result to -1.");
            -1
        } else {
            r.value()
        }
    })
}

fn bar() -> Lazy<i32> {
    Lazy::new(async {
        let res = foo().await;
        unreachable!("wouldn't execute: {res}")
    })
}

fn baz() -> Lazy<i32> {
    Lazy::new(async { bar().await })
}

fn exceptions() {
    // The panics below are the point of the example: keep them off stderr.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    assert_eq!(sync_await(bar_catching()), -1);
    // `normal()`: try { syncAwait(baz()) } catch (...) {}
    let caught = std::panic::catch_unwind(|| sync_await(baz()));
    assert!(caught.is_err());
    // `normal2()`: baz().start(...) sees the error in the Try.
    let (tx, rx) = mpsc::channel();
    baz().start(move |result| {
        if result.has_error() {
            println!("baz has error!!");
        }
        tx.send(result.has_error()).unwrap();
    });
    assert!(rx.recv().unwrap());
    std::panic::set_hook(hook);
}

// RescheduleLazy: `addOne().via(&e1)`, then `syncAwait(scheduled)`.
fn reschedule_lazy() {
    let e1 = SimpleExecutor::new(1);
    let get_value = |x: i32| Lazy::new(async move { x });
    let add_one = move |x: i32| Lazy::new(async move { get_value(x).await + 2 });
    let scheduled: RescheduleLazy<i32> = add_one(1).via(e1);
    assert_eq!(sync_await(scheduled), 3); // e1 decides when add_one runs
}

// Passing the executor down a chain: task4 → task3 → task2 → task1, all on e.
fn calculating(x: i32) -> Lazy<(i32, bool)> {
    Lazy::new(async move { (x * 2, current_executor().is_some()) })
}
fn chain1(x: i32) -> Lazy<(i32, bool)> {
    Lazy::new(async move { calculating(x).await })
}
fn chain2(x: i32) -> Lazy<(i32, bool)> {
    Lazy::new(async move { chain1(x).await })
}
fn chain3(x: i32) -> Lazy<(i32, bool)> {
    Lazy::new(async move { chain2(x).await })
}
fn chain4(x: i32) -> Lazy<(i32, bool)> {
    Lazy::new(async move { chain3(x).await })
}

fn passing_executor() {
    let e = SimpleExecutor::new(2);
    let (tx, rx) = mpsc::channel();
    chain4(21).via(e).start(move |result| {
        let (v, on_executor) = result.value();
        println!("Completed task to calculate x. Result is {v}");
        tx.send(on_executor).unwrap();
    });
    assert!(rx.recv().unwrap(), "task1 got the root's executor");
}

// LazyLocals: typed, set once, passed down the chain, dropped after the task.
#[derive(Debug)]
struct MyLocal {
    value: i32,
}

fn lazy_locals() {
    let sub_task = || {
        Lazy::new(async {
            let v = with_lazy_local(|l: &MyLocal| l.value);
            assert_eq!(v, Some(42));
        })
    };
    let task = Lazy::new(async move {
        assert!(lazyflight::task::has_lazy_local());
        sub_task().await; // the local propagates through the await
    });
    sync_await(task.set_local(MyLocal { value: 42 }).unwrap());

    // Setting it a second time is refused.
    let twice = Lazy::new(async {})
        .set_local(MyLocal { value: 1 })
        .unwrap()
        .set_local(MyLocal { value: 2 });
    assert!(twice.is_err());
}

// Yield and CurrentExecutor.
fn yield_and_current_executor() {
    let e = SimpleExecutor::new(1);
    sync_await(
        Lazy::new(async {
            assert!(current_executor().is_some());
            yield_now().await.unwrap();
        })
        .via(e),
    );
}

fn computing_task(x: i32) -> Lazy<i32> {
    Lazy::new(async move { x * 10 })
}

// collectAll, vector and variadic.
fn collect_all_examples() {
    let sum = sync_await(Lazy::new(async {
        let input = vec![computing_task(1), computing_task(2)];
        let out = collect_all(input).await;
        out[0].as_value().unwrap() + out[1].as_value().unwrap()
    }));
    assert_eq!(sum, 30);

    let (int_res, double_res, string_res) = sync_await(Lazy::new(async {
        lazyflight::collect_all!(
            Lazy::new(async { 1 }),
            Lazy::new(async { 2.5f64 }),
            Lazy::new(async { String::from("three") }),
        )
        .await
    }));
    if int_res.has_error() {
        println!("Error happened in computeInt()");
    } else {
        println!("Result for computeInt: {}", int_res.value());
    }
    assert_eq!(
        (double_res.value(), string_res.value()),
        (2.5, "three".to_string())
    );
}

// collectAllPara: needs an executor to run in parallel.
fn collect_all_para_example() {
    let e1 = SimpleExecutor::new(2);
    let foo = || {
        Lazy::new(async {
            let out = collect_all_para(vec![computing_task(1), computing_task(2)]).await;
            out[0].as_value().unwrap() + out[1].as_value().unwrap()
        })
    };
    assert_eq!(sync_await(foo().via(e1)), 30); // correct: executor assigned in advance
    assert_eq!(sync_await(foo()), 30); // no executor: the children run serially
}

// collectAllWindowed: batches of `batch_size`, yielding between them.
fn collect_all_windowed_example() {
    let e = SimpleExecutor::new(2);
    let batch_sum = |total: i32, batch_size: usize| {
        Lazy::new(async move {
            let input = (0..total).map(computing_task).collect();
            let out = collect_all_windowed(batch_size, true, input).await;
            out.into_iter().map(Try::value).sum::<i32>()
        })
    };
    assert_eq!(sync_await(batch_sum(10, 3).via(e)), 450);
}

// collectAny: vector, variadic, and with callbacks.
fn collect_any_examples() {
    let e = SimpleExecutor::new(1);
    let conditional_wait = |i: u64| {
        Lazy::new(async move {
            sleep(Duration::from_millis(100 - i * 10)).await.unwrap();
            i
        })
    };
    let any_result = sync_await(
        Lazy::new(async move {
            let input = (0..5).map(conditional_wait).collect();
            collect_any(input).await
        })
        .via(e.clone()),
    );
    println!(
        "The index of the first task completed is {}",
        any_result.index()
    );
    assert!(!any_result.has_error());
    assert_eq!(any_result.value.value(), 4);

    let res = sync_await(Lazy::new(async {
        lazyflight::collect_any!(
            computing_task(1),
            computing_task(2),
            Lazy::new(async { 3.14f32 })
        )
        .await
    }));
    println!("Index: {}", res.index());
    match res {
        AnyOf3::V0(v) | AnyOf3::V1(v) => println!("Value: {}", v.value()),
        AnyOf3::V2(v) => println!("Value: {}", v.value()),
    }

    // Variadic pairs of (task, callback): only the winner's callback runs.
    let call_count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (c0, c1, c2) = (call_count.clone(), call_count.clone(), call_count.clone());
    let index = sync_await(Lazy::new(async move {
        lazyflight::collect_any_with!(
            (Lazy::new(async {}), move |_| {
                c0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }),
            (Lazy::new(async { 42 }), move |val| {
                c1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(val.value(), 42);
            }),
            (Lazy::new(async { 42.to_string() }), move |val| {
                c2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                assert_eq!(val.value(), "42");
            }),
        )
        .await
    }));
    assert_eq!(index, 0);
    assert_eq!(call_count.load(std::sync::atomic::Ordering::SeqCst), 1);

    // Vector with a callback: returns the index; the callback runs once.
    let input = vec![Lazy::new(async { 41 }), Lazy::new(async { 42 })];
    let index = sync_await(Lazy::new(collect_any_with(
        input,
        |index, val: Try<i32>| {
            if index == 0 {
                assert_eq!(val.value(), 41);
            } else {
                assert_eq!(val.value(), 42);
            }
        },
    )));
    assert_eq!(index, 0);
}

fn main() {
    start_with_callback();
    directly_start();
    sync_await_example();
    exceptions();
    reschedule_lazy();
    passing_executor();
    lazy_locals();
    yield_and_current_executor();
    collect_all_examples();
    collect_all_para_example();
    collect_all_windowed_example();
    collect_any_examples();
    println!("all seed examples ran");
}
