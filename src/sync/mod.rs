//! The synchronization shim: the only place where the crate chooses between
//! `std`, [loom] and [shuttle].
//!
//! | build                       | atomics, `Arc`, `Mutex`, `thread` | `UnsafeCell`                 |
//! |-----------------------------|-----------------------------------|------------------------------|
//! | default                     | `std`                             | a thin wrapper over `core`'s |
//! | `RUSTFLAGS="--cfg loom"`    | `loom` (`Mutex`: see below)       | `loom::cell::UnsafeCell`     |
//! | `RUSTFLAGS="--cfg shuttle"` | `shuttle`                         | a thin wrapper over `core`'s |
//!
//! Every primitive in lazyflight is written against this module and nothing
//! else, so under `--cfg loom` every atomic access, lock and cell access is
//! visible to the model checker. CI rejects any use of `std::sync`,
//! `std::thread` or `core::cell::UnsafeCell` outside this directory.
//!
//! The module is public so that downstream crates can write their own glue
//! against the same types and model-check their code *through* lazyflight:
//! build with `RUSTFLAGS="--cfg loom"` and wrap the test in [`crate::model`].
//!
//! The API mirrors loom's: [`UnsafeCell::with`] / [`UnsafeCell::with_mut`]
//! instead of raw `get()`, and a [`Mutex`] whose `lock()` never reports
//! poisoning (see its docs for why that is safe). Under loom that `Mutex` is
//! not loom's, which panics at every lock after a panic under it, but a lock
//! of our own made of loom's primitives, so models can take a lock that a
//! panic unwound through, as real code can.
//!
//! Where the models differ from real threads (limits of loom and shuttle,
//! which run every modelled thread on one OS thread):
//!
//! * [`thread::panicking`] is the OS thread's, so under a model it is true in
//!   every modelled thread while any one of them unwinds.
//! * A modelled thread that panics fails the whole model; its
//!   `JoinHandle::join` does not return the panic as `Err` as std's does.
//! * Under loom a [`Mutex::try_lock`] that finds the lock free but loses it
//!   to another thread before it takes it waits for it instead of failing
//!   (see [`Mutex`]).
//!
//! [loom]: https://docs.rs/loom
//! [shuttle]: https://docs.rs/shuttle
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

#[cfg(all(loom, shuttle))]
compile_error!("`--cfg loom` and `--cfg shuttle` are mutually exclusive: build with one of them");

mod cell;
pub mod future;
mod mutex;

pub use cell::UnsafeCell;
pub use mutex::{Mutex, MutexGuard};

/// Atomic types: `std::sync::atomic`, or loom's / shuttle's under their cfg.
pub mod atomic {
    pub use core::sync::atomic::Ordering;
    #[cfg(loom)]
    pub use loom::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    };
    #[cfg(all(shuttle, not(loom)))]
    pub use shuttle::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    };
    #[cfg(not(any(loom, shuttle)))]
    pub use std::sync::atomic::{
        fence, AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize,
    };
}

/// Threads: `std::thread`, or loom's / shuttle's under their cfg.
pub mod thread {
    #[cfg(loom)]
    pub use loom::thread::{current, park, spawn, yield_now, JoinHandle, Thread};
    #[cfg(all(shuttle, not(loom)))]
    pub use shuttle::thread::{current, park, spawn, yield_now, JoinHandle, Thread};
    /// Whether the current thread is unwinding from a panic: std's in every
    /// mode (it synchronizes nothing). Under loom and shuttle that is the one
    /// OS thread that runs every modelled thread, so it is true in all of
    /// them while any one unwinds.
    pub use std::thread::panicking;
    #[cfg(not(any(loom, shuttle)))]
    pub use std::thread::{current, park, spawn, yield_now, JoinHandle, Thread};
    /// Timed parking exists only on real threads: the models have no clock.
    #[cfg(not(any(loom, shuttle)))]
    pub use std::thread::{park_timeout, Builder};
}

/// `thread_local!`: std's, or loom's / shuttle's under their cfg (the models
/// run every modelled thread on one OS thread, so std's would be shared).
#[cfg(loom)]
pub use loom::thread_local;
#[cfg(all(shuttle, not(loom)))]
pub use shuttle::thread_local;
#[cfg(not(any(loom, shuttle)))]
pub use std::thread_local;

#[cfg(loom)]
pub use loom::sync::Arc;
#[cfg(all(shuttle, not(loom)))]
pub use shuttle::sync::Arc;
#[cfg(not(any(loom, shuttle)))]
pub use std::sync::Arc;

/// Whether the negative control `name` is the one named by the
/// `LAZYFLIGHT_BREAK` variable, in a build with
/// `--cfg lazyflight_break_dynamic` (see the crate's `broken!` macro).
#[cfg(lazyflight_break_dynamic)]
pub(crate) fn broken_at_run_time(name: &str) -> bool {
    static CONTROL: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    CONTROL
        .get_or_init(|| std::env::var("LAZYFLIGHT_BREAK").ok())
        .as_deref()
        == Some(name)
}

/// No control is switched at run time in this build.
#[cfg(not(lazyflight_break_dynamic))]
#[inline(always)]
pub(crate) const fn broken_at_run_time(_name: &str) -> bool {
    false
}

/// Something a [`Waker`](core::task::Waker) built by [`waker`] notifies.
pub(crate) trait WakeHandle: Send + Sync + 'static {
    /// Called on every `wake` / `wake_by_ref`.
    fn wake(&self);
}

/// Builds a [`Waker`](core::task::Waker) that calls `handle.wake()`.
///
/// The waker's own reference count is a plain `std::sync::Arc` in every
/// build: it only manages the waker's memory, which is not part of any
/// protocol the model checkers need to see. Whatever the handle does when
/// woken goes through the shim.
pub(crate) fn waker<W: WakeHandle>(handle: W) -> core::task::Waker {
    struct Adapter<W>(W);
    impl<W: WakeHandle> std::task::Wake for Adapter<W> {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.wake();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.0.wake();
        }
    }
    core::task::Waker::from(std::sync::Arc::new(Adapter(handle)))
}

/// Runs `f` under the model checker selected at build time.
///
/// * `--cfg loom`: [`loom::model`](https://docs.rs/loom/latest/loom/fn.model.html),
///   which explores every interleaving within loom's budget
///   (`LOOM_MAX_PREEMPTIONS`, `LOOM_MAX_BRANCHES`, ...).
/// * `--cfg shuttle`: shuttle's PCT scheduler (depth
///   `LAZYFLIGHT_SHUTTLE_PCT_DEPTH`, default 3) or, with
///   `LAZYFLIGHT_SHUTTLE_SCHEDULER=random`, its random scheduler, for
///   `LAZYFLIGHT_SHUTTLE_ITERATIONS` runs (default 1000). PCT needs a model
///   whose first run makes at least one scheduling decision; one that makes
///   none fails with shuttle's "test closure did not exercise any
///   concurrency" (the random scheduler accepts it). Shuttle treats every
///   atomic ordering as `SeqCst`: an ordering that is too weak is loom's to
///   find.
///
///   A failing run prints its schedule ("failing schedule: ..."). To replay
///   exactly that run, set `LAZYFLIGHT_SHUTTLE_REPLAY` to the schedule and
///   run the one test again: `model` then runs `f` once, on that schedule
///   (no shuttle dependency of your own needed).
/// * otherwise: `f` runs once, on the calling thread (spawned threads are
///   real). Nothing is explored: build with one of the flags for that.
///
/// # Panics
///
/// Under `--cfg shuttle`, if `LAZYFLIGHT_SHUTTLE_ITERATIONS` or
/// `LAZYFLIGHT_SHUTTLE_PCT_DEPTH` is set but not a number, or
/// `LAZYFLIGHT_SHUTTLE_SCHEDULER` is set to something other than `pct` or
/// `random` (a typo would otherwise run a different check than asked).
///
/// # Examples
///
/// ```
/// use lazyflight::sync::{thread, Arc};
/// use lazyflight::ALazy;
///
/// lazyflight::model(|| {
///     let cell = Arc::new(ALazy::<u32, ()>::new());
///     let c2 = cell.clone();
///     let t = thread::spawn(move || {
///         *lazyflight::sync::future::block_on(c2.get_or_init(|| async { Ok(1) })).unwrap()
///     });
///     let mine = *lazyflight::sync::future::block_on(cell.get_or_init(|| async { Ok(1) })).unwrap();
///     assert_eq!(mine, t.join().unwrap());
/// });
/// ```
pub fn model<F>(f: F)
where
    F: Fn() + Send + Sync + 'static,
{
    #[cfg(loom)]
    loom::model(f);

    #[cfg(all(shuttle, not(loom)))]
    {
        /// The variable's value as a number, `default` when it is unset.
        fn number(name: &str, default: usize) -> usize {
            match std::env::var(name) {
                Err(_) => default,
                Ok(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("lazyflight::model: {name}={v:?} is not a number")),
            }
        }
        if let Ok(schedule) = std::env::var("LAZYFLIGHT_SHUTTLE_REPLAY") {
            shuttle::replay(f, schedule.trim());
            return;
        }
        let iterations = number("LAZYFLIGHT_SHUTTLE_ITERATIONS", 1000);
        let depth = number("LAZYFLIGHT_SHUTTLE_PCT_DEPTH", 3);
        match std::env::var("LAZYFLIGHT_SHUTTLE_SCHEDULER").as_deref() {
            Ok("random") => shuttle::check_random(f, iterations),
            Ok("pct") | Err(_) => shuttle::check_pct(f, iterations, depth),
            Ok(other) => panic!(
                "lazyflight::model: LAZYFLIGHT_SHUTTLE_SCHEDULER={other:?}: expected `pct` or `random`"
            ),
        }
    }

    #[cfg(not(any(loom, shuttle)))]
    f();
}
