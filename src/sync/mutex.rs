//! A non-poisoning mutex over std's, loom's or shuttle's.

#[cfg(loom)]
use loom::sync as imp;
#[cfg(all(shuttle, not(loom)))]
use shuttle::sync as imp;
#[cfg(not(any(loom, shuttle)))]
use std::sync as imp;

/// Guard returned by [`Mutex::lock`].
pub type MutexGuard<'a, T> = imp::MutexGuard<'a, T>;

/// A mutual-exclusion lock whose [`lock`](Mutex::lock) ignores poisoning.
///
/// lazyflight's own critical sections do not panic. The user code it runs
/// under a lock is a key's `Eq` (and `Borrow`, for look-ups by `&Q`) in the
/// shard tables of `Cache` and `Group`, a key's `Hash` in `Cache`'s tables,
/// and the `Clone` of a `Cache`'s value or error (a hit is cloned under its
/// shard lock); a panic there only fails that call and
/// leaves the table consistent (as it was, except that a `Cache` key whose
/// `Hash` panics while its shard's value table grows leaves the cache:
/// see `Cache`'s docs). So a poisoned lock holds consistent data, and, like
/// `parking_lot`, we hand the data back rather than propagate.
///
/// Under loom this does not hold: loom's `Mutex` itself panics when it is
/// locked after a panic poisoned it, so a model in which a key's `Eq`
/// panics under a lock fails there.
#[derive(Debug, Default)]
pub struct Mutex<T: ?Sized>(imp::Mutex<T>);

impl<T> Mutex<T> {
    /// Creates an unlocked mutex.
    #[cfg(not(any(loom, shuttle)))]
    #[inline]
    pub const fn new(value: T) -> Self {
        Self(imp::Mutex::new(value))
    }

    /// Creates an unlocked mutex.
    #[cfg(any(loom, shuttle))]
    pub fn new(value: T) -> Self {
        Self(imp::Mutex::new(value))
    }

    /// Consumes the mutex, returning the data.
    pub fn into_inner(self) -> T {
        self.0.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: ?Sized> Mutex<T> {
    /// Blocks until the lock is held.
    #[inline]
    pub fn lock(&self) -> MutexGuard<'_, T> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the lock if it is free right now.
    #[inline]
    pub fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
        match self.0.try_lock() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Mutable access without locking.
    pub fn get_mut(&mut self) -> &mut T {
        self.0.get_mut().unwrap_or_else(|e| e.into_inner())
    }
}
