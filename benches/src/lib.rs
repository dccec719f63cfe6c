//! Shared pieces of lazyflight's benchmarks (the benches themselves are in
//! `benches/`; results and the commands that produce them are in
//! `docs/benchmarks.md`).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicU8, Ordering};

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
