//! Shared pieces of lazyflight's benchmarks (the benches themselves are in
//! `benches/`; results and the commands that produce them are in
//! `docs/benchmarks.md`).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// The baselines here are measured against std's own types on purpose; the
// shim discipline (clippy.toml) is for the library, which loom must see.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::cell::UnsafeCell;
use std::future::{poll_fn, Future};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::task::{Poll, Waker};

/// Returns `r` unchanged, but the compiler can no longer see where it points:
/// a load through it cannot be hoisted out of a benchmark loop.
///
/// Unlike `std::hint::black_box`, it keeps the pointer in a register instead
/// of storing it to the stack: a store per iteration can alias (modulo 4 KiB)
/// with the cell being measured and slow its load down, which made one
/// contender or another 1.4-1.5x slower depending only on where the cells
/// happened to sit.
#[inline(always)]
// The asm never reads or writes through the pointer: it only hides its value.
#[allow(clippy::pointers_in_nomem_asm_block)]
pub fn opaque<T>(r: &T) -> &T {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    {
        let mut p: *const T = r;
        // SAFETY: an empty asm block: it reads and writes nothing but the
        // register holding `p`, which it leaves as it was.
        unsafe {
            std::arch::asm!("/* {0} */", inout(reg) p, options(nomem, nostack, preserves_flags))
        };
        // SAFETY: `p` is still `r`.
        unsafe { &*p }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        std::hint::black_box(r)
    }
}

/// Consumes `v` so that the computation producing it cannot be removed,
/// without storing it to memory (see [`opaque`]).
#[inline(always)]
pub fn sink(v: u64) {
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    // SAFETY: an empty asm block that only reads the register holding `v`.
    unsafe {
        std::arch::asm!("/* {0} */", in(reg) v, options(nomem, nostack, preserves_flags))
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    std::hint::black_box(v);
}

/// The floor every once-cell's filled fast path is measured against: a
/// one-byte flag loaded with `Acquire`, a branch, and a reference to the
/// value. No waiting, no initialization protocol: only `set` from one thread
/// before sharing.
#[derive(Debug)]
pub struct RawCell<T> {
    filled: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: the value is written once through `set` (which takes `&self` but
// refuses a second call) before the `Release` store, and only read after an
// `Acquire` load has seen that store; as `OnceLock`, it needs `T: Send + Sync`.
unsafe impl<T: Send + Sync> Sync for RawCell<T> {}

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const FILLED: u8 = 2;

impl<T> RawCell<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        Self {
            filled: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Fills the cell. Panics if it was set before.
    pub fn set(&self, value: T) {
        // Acquire/Relaxed: the winner is the only writer; nobody reads the
        // value before the Release store below.
        let won =
            self.filled
                .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed);
        assert!(won.is_ok(), "RawCell::set called twice");
        // SAFETY: we won the CAS, so we are the only writer, and readers wait
        // for FILLED.
        unsafe { (*self.value.get()).write(value) };
        // Release: pairs with the Acquire load in `get`.
        self.filled.store(FILLED, Ordering::Release);
    }

    /// The value, if set: one `Acquire` load and a branch.
    #[inline]
    pub fn get(&self) -> Option<&T> {
        // Acquire: pairs with the Release store in `set`.
        if self.filled.load(Ordering::Acquire) == FILLED {
            // SAFETY: FILLED was observed with Acquire, so the value is
            // written and never written again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }
}

impl<T> Default for RawCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for RawCell<T> {
    fn drop(&mut self) {
        if *self.filled.get_mut() == FILLED {
            // SAFETY: FILLED: the value is initialized, and we are its last user.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}

/// The floor of contended initialization: the least an async once-cell can
/// do, and nothing more. A state byte, a `Mutex<Vec<Waker>>` of waiters, no
/// cancellation or panic handling (a dropped leader leaves its waiters
/// hanging), no error caching, a waker pushed again on every pending poll.
/// It shows how much of a contended init is the runtime's wake-and-poll
/// cycle, which every correct cell pays, rather than the cell's own work.
#[derive(Debug)]
pub struct RawAsyncCell<T> {
    state: AtomicU8,
    value: UnsafeCell<MaybeUninit<T>>,
    waiters: Mutex<Vec<Waker>>,
}

// SAFETY: as `RawCell`: one writer (the CAS winner) before the `Release`
// store, readers only after an `Acquire` load of FILLED.
unsafe impl<T: Send + Sync> Sync for RawAsyncCell<T> {}

impl<T> RawAsyncCell<T> {
    /// An empty cell.
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            value: UnsafeCell::new(MaybeUninit::uninit()),
            waiters: Mutex::new(Vec::new()),
        }
    }

    #[inline]
    fn get(&self) -> Option<&T> {
        // Acquire: pairs with the Release store in `get_or_init`.
        if self.state.load(Ordering::Acquire) == FILLED {
            // SAFETY: FILLED observed with Acquire: written, never again.
            Some(unsafe { (*self.value.get()).assume_init_ref() })
        } else {
            None
        }
    }

    /// The value, running `f` if the cell is empty; other callers wait.
    pub async fn get_or_init<F, Fut>(&self, f: F) -> &T
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        if let Some(v) = self.get() {
            return v;
        }
        // Acquire on success: nothing to pair with (no reset); Relaxed on
        // failure: we wait below and re-load with Acquire.
        if self
            .state
            .compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            let v = f().await;
            // SAFETY: the CAS winner is the only writer; readers wait for FILLED.
            unsafe { (*self.value.get()).write(v) };
            // Release: pairs with the Acquire loads in `get`.
            self.state.store(FILLED, Ordering::Release);
            let waiters = std::mem::take(&mut *self.waiters.lock().unwrap());
            for w in waiters {
                w.wake();
            }
            return self.get().expect("just filled");
        }
        poll_fn(|cx| {
            if let Some(v) = self.get() {
                return Poll::Ready(v);
            }
            let mut waiters = self.waiters.lock().unwrap();
            // Re-checked under the lock: the leader stores FILLED before it
            // takes the lock to wake everyone.
            if let Some(v) = self.get() {
                return Poll::Ready(v);
            }
            waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

impl<T> Default for RawAsyncCell<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Drop for RawAsyncCell<T> {
    fn drop(&mut self) {
        if *self.state.get_mut() == FILLED {
            // SAFETY: FILLED: the value is initialized, and we are its last user.
            unsafe { self.value.get_mut().assume_init_drop() };
        }
    }
}
