//! Lazy tasks: async_simple's `Lazy` model in Rust.
//!
//! A [`Lazy<T>`] is a task that does nothing until it is awaited or started.
//! Awaiting it runs it inline, as part of the awaiting task; starting it
//! ([`Lazy::start`], [`Lazy::directly_start`], [`sync_await`], or
//! [`Lazy::via`] and then one of those) makes it a *root* task whose outcome
//! is a [`Try<T>`]: its value, or the panic (this module's exception) or
//! scheduling error that replaced it.
//!
//! A root task carries an optional [`Executor`] and an optional lazy local
//! down its await chain: every child `Lazy` it awaits sees them through
//! [`current_executor`] and [`with_lazy_local`], without passing anything.
//! A root task with an executor is resumed on that executor after every
//! suspension (a wake from a foreign thread schedules it there);
//! [`yield_now`] re-queues it at the tail and [`sleep`] uses the executor's
//! timed schedule.
//!
//! | async_simple                       | here                                        |
//! |------------------------------------|---------------------------------------------|
//! | `Lazy<T>` coroutine                | `Lazy::new(async move { .. })`              |
//! | `co_await lazy`                    | `lazy.await`                                |
//! | `co_await lazy.coAwaitTry()`       | `lazy.await_try().await`                    |
//! | `lazy.start(cb)`                   | `lazy.start(cb)`                            |
//! | `lazy.directlyStart(cb, ex)`       | `lazy.directly_start(cb, ex)`               |
//! | `syncAwait(lazy)`                  | `sync_await(lazy)`                          |
//! | `lazy.via(ex)` → `RescheduleLazy`  | `lazy.via(ex)` → [`RescheduleLazy`]         |
//! | `co_await CurrentExecutor{}`       | `current_executor()`                        |
//! | `co_await Yield{}`                 | `yield_now().await`                         |
//! | `co_await coro::sleep(d)`          | `sleep(d).await`                            |
//! | `setLazyLocal` / `CurrentLazyLocals` | `set_local` / `with_lazy_local`           |
//! | exception                          | panic, caught into [`TaskError::Panicked`]  |
//! | `collectAll(vector)` / variadic    | [`collect_all`] / [`collect_all!`](crate::collect_all) |
//! | `collectAllPara`                   | [`collect_all_para`]                        |
//! | `collectAllWindowed(n, yield, v)`  | [`collect_all_windowed`]`(n, yield, v)`     |
//! | `collectAny(vector)` / variadic    | [`collect_any`] / [`collect_any!`](crate::collect_any) |
//! | `collectAny` with callbacks        | [`collect_any_with`] / [`collect_any_with!`](crate::collect_any_with) |
//! | `executors::SimpleExecutor`        | [`SimpleExecutor`] (and `TokioExecutor` with the `tokio` feature) |
//!
//! Where this module departs from async_simple, on purpose: a schedule the
//! executor refuses (or a job it drops unrun) completes the task with
//! [`TaskError::Rejected`] instead of leaving it suspended for ever
//! (async_simple #123); [`yield_now`] and [`sleep`] report a missing executor
//! as an error instead of throwing or blocking the thread; and lazy locals are
//! any `Any + Send + Sync` value, read through [`with_lazy_local`].
//!
//! # Guarantees
//!
//! | property                                            | checked by                                  |
//! |-----------------------------------------------------|---------------------------------------------|
//! | a wake during a poll re-polls; polls never overlap  | loom, shuttle                               |
//! | `sync_await` never misses its wake-up               | loom                                        |
//! | a refused resumption completes the task (`Rejected`) | loom, tests                                |
//! | a task no waker can resume completes (`Abandoned`), also one awaiting a collect | loom, tests |
//! | a wake inside a run queues, never nests, its task    | loom, tests                                |
//! | collect: parent resumed after the last child; a wake polls only its child | loom, proptest    |
//! | `collect_any`: one winner, its callback exactly once | loom, shuttle, proptest                    |
//! | results in input order; drop mid-flight is safe      | proptest, shuttle, tests                   |
//!
//! The internal synchronization (the root-task state machine in `raw.rs`,
//! the waiter queues, `sync_await`'s park/unpark) goes through
//! [`crate::sync`] and is model-checked under loom and shuttle.

mod collect;
mod context;
mod executor;
mod inline;
mod lazy;
mod raw;
#[cfg(not(any(loom, shuttle)))]
mod simple;
#[cfg(all(feature = "tokio", not(any(loom, shuttle))))]
mod tokio_handle;
mod try_;
mod yield_sleep;

#[doc(hidden)]
pub use collect::{__callback_pair, ErasedCallback, ErasedChild};
pub use collect::{
    collect_all, collect_all_para, collect_all_tuple, collect_all_windowed,
    collect_all_windowed_para, collect_any, collect_any_tuple, collect_any_with,
    collect_any_with_tuple, AnyOf1, AnyOf2, AnyOf3, AnyOf4, AnyOf5, AnyOf6, AnyOf7, AnyOf8,
    CallbackTuple, CollectAll, CollectAllTuple, CollectAny, CollectAnyResult, CollectAnyTuple,
    CollectAnyWith, TaskTuple,
};
pub use context::{current_executor, has_lazy_local, with_lazy_local};
pub use executor::{Executor, ExecutorRef, Job, ScheduleError};
pub use lazy::{
    sync_await, sync_await_try, AwaitTry, Lazy, LazyTask, LocalAlreadySet, RescheduleLazy,
    Scheduled, ScheduledValue,
};
/// For blocking calls outside this module (the std build's `block_on`; the
/// model builds block on loom's or shuttle's, inside no run): see `raw.rs`.
#[cfg(not(any(loom, shuttle)))]
pub(crate) use raw::make_queued_runs;
#[cfg(not(any(loom, shuttle)))]
pub use simple::SimpleExecutor;
#[cfg(all(feature = "tokio", not(any(loom, shuttle))))]
pub use tokio_handle::TokioExecutor;
pub use try_::{TaskError, Try};
pub use yield_sleep::{sleep, yield_now, Sleep, YieldNow};
