//! A non-poisoning mutex over std's or shuttle's, and under loom a lock of
//! our own built from a loom channel (see [`Mutex`]).

#[cfg(loom)]
use loom_lock as imp;
#[cfg(all(shuttle, not(loom)))]
use shuttle::sync as imp;
#[cfg(not(any(loom, shuttle)))]
use std::sync as imp;

use core::fmt;

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
/// Under loom it is a lock of our own, poison-free like the others: a token
/// in a loom channel (a locker receives it, blocking while it is out; the
/// guard's drop sends it back), around a loom `UnsafeCell` to which the
/// guard holds a tracked mutable access. loom's own `Mutex` would not do: it
/// keeps the data in a std mutex, which a panic under the lock poisons, and
/// loom then panics at every later lock, so no model could let a second
/// thread take a lock that user code panicked under (an owned initializer
/// does; so can a key's `Eq`). The token is also no stronger than a real
/// lock (an unlock is a `Release`, the next lock an `Acquire`), where loom's
/// `Mutex` makes every unlock a sequentially consistent fence, which could
/// hide a missing ordering from the models. The models see one difference
/// from std: a `try_lock` that finds the lock free but loses it to another
/// thread before it takes it waits for it instead of failing.
#[derive(Default)]
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
    #[inline]
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

impl<T: ?Sized + fmt::Debug> fmt::Debug for Mutex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Mutex");
        match self.try_lock() {
            Some(guard) => d.field("data", &&*guard),
            None => d.field("data", &format_args!("<locked>")),
        };
        d.finish_non_exhaustive()
    }
}

/// loom's model of a non-poisoning lock (see [`Mutex`]). The API is the
/// subset of std's that [`Mutex`] uses, so that the wrapper reads the same
/// in every build.
#[cfg(loom)]
mod loom_lock {
    use core::mem::ManuallyDrop;
    use core::ops::{Deref, DerefMut};
    use loom::cell::{MutPtr, UnsafeCell};
    use loom::sync::mpsc::{channel, Receiver, Sender};
    use std::sync::{LockResult, TryLockError, TryLockResult};

    /// The lock is a token in a loom channel: whoever receives it holds the
    /// lock, and unlocking sends it back. loom blocks a receiver while the
    /// channel is empty and wakes every blocked one on a send, as it blocks
    /// and wakes the threads of its own `Mutex`; a send is a `Release` and
    /// the receive that takes it an `Acquire`, as a real unlock and lock.
    pub(in crate::sync) struct Mutex<T: ?Sized> {
        give: Sender<()>,
        take: Receiver<()>,
        data: UnsafeCell<T>,
    }

    // SAFETY: as std's `Mutex`: the lock hands out one guard at a time, so
    // the data moves between threads but is never shared. The channel ends
    // are only ever used by modelled threads, which loom runs one at a time
    // on one OS thread.
    unsafe impl<T: ?Sized + Send> Send for Mutex<T> {}
    // SAFETY: as above.
    unsafe impl<T: ?Sized + Send> Sync for Mutex<T> {}

    pub struct MutexGuard<'a, T: ?Sized> {
        lock: &'a Mutex<T>,
        // loom's record of our mutable access: from the lock to the unlock.
        data: ManuallyDrop<MutPtr<T>>,
    }

    impl<T: ?Sized + core::fmt::Debug> core::fmt::Debug for MutexGuard<'_, T> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            (**self).fmt(f)
        }
    }

    // SAFETY: as std's guard: sharing it shares only `&T`.
    unsafe impl<T: ?Sized + Sync> Sync for MutexGuard<'_, T> {}

    impl<T: Default> Default for Mutex<T> {
        fn default() -> Self {
            Self::new(T::default())
        }
    }

    impl<T> Mutex<T> {
        pub(in crate::sync) fn new(value: T) -> Self {
            let (give, take) = channel();
            give.send(()).expect("the receiver is alive");
            Self {
                give,
                take,
                data: UnsafeCell::new(value),
            }
        }

        pub(in crate::sync) fn into_inner(self) -> LockResult<T> {
            Ok(self.data.into_inner())
        }
    }

    impl<T: ?Sized> Mutex<T> {
        fn guard(&self) -> MutexGuard<'_, T> {
            MutexGuard {
                lock: self,
                data: ManuallyDrop::new(self.data.get_mut()),
            }
        }

        #[track_caller]
        pub(in crate::sync) fn lock(&self) -> LockResult<MutexGuard<'_, T>> {
            self.take.recv().expect("the sender is alive");
            Ok(self.guard())
        }

        /// Fails if the token is out. A caller that finds it in but loses
        /// it to another thread before loom runs its receive waits for it
        /// (a lock that was free at the try).
        #[track_caller]
        pub(in crate::sync) fn try_lock(&self) -> TryLockResult<MutexGuard<'_, T>> {
            match self.take.try_recv() {
                Ok(()) => Ok(self.guard()),
                Err(_) => Err(TryLockError::WouldBlock),
            }
        }

        pub(in crate::sync) fn get_mut(&mut self) -> LockResult<&mut T> {
            // SAFETY: `&mut self`: nobody else can reach the data.
            Ok(self.data.with_mut(|p| unsafe { &mut *p }))
        }
    }

    impl<T: ?Sized> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            // SAFETY: the guard holds the lock.
            unsafe { MutPtr::deref(&self.data) }
        }
    }

    impl<T: ?Sized> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: the guard holds the lock, and `&mut self` the guard.
            unsafe { MutPtr::deref(&self.data) }
        }
    }

    impl<T: ?Sized> Drop for MutexGuard<'_, T> {
        fn drop(&mut self) {
            // The access ends before the lock is free.
            // SAFETY: dropped once, here.
            unsafe { ManuallyDrop::drop(&mut self.data) };
            self.lock.give.send(()).expect("the receiver is alive");
        }
    }
}
