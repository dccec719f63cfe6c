//! Time as the [`Cache`](crate::Cache) sees it.

use core::fmt;
use core::time::Duration;

use crate::sync::atomic::{AtomicU64, Ordering::*};
use crate::sync::Arc;

/// A monotonic clock: the time elapsed since an origin of the clock's
/// choosing. The cache reads it only when a time-to-live or a timed error
/// policy is set.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use lazyflight::Clock;
///
/// /// A clock that never moves.
/// struct Frozen;
/// impl Clock for Frozen {
///     fn now(&self) -> Duration {
///         Duration::ZERO
///     }
/// }
/// assert_eq!(Frozen.now(), Duration::ZERO);
/// ```
pub trait Clock: Send + Sync + 'static {
    /// Time since the clock's origin. Must never go backwards.
    fn now(&self) -> Duration;
}

/// The real monotonic clock (`std::time::Instant`), the default.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    origin: std::time::Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A clock that moves only when told to, for tests.
///
/// Clones share one time. Its state is a shim atomic, so under
/// `--cfg loom` / `--cfg shuttle` advancing it is a step the model checker
/// schedules like any other.
///
/// # Examples
///
/// ```
/// use core::time::Duration;
/// use lazyflight::{Clock, ManualClock};
///
/// let clock = ManualClock::new();
/// let handle = clock.clone();
/// handle.advance(Duration::from_secs(3));
/// assert_eq!(clock.now(), Duration::from_secs(3));
/// ```
#[derive(Clone)]
pub struct ManualClock {
    nanos: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock at time zero.
    #[must_use]
    pub fn new() -> Self {
        Self {
            nanos: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Moves the clock forward by `by`. The clock stops at `u64::MAX`
    /// nanoseconds (about 584 years) rather than wrap: it never goes back.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // Release: pairs with the Acquire load in `now`, so a reader that sees
        // the new time also sees what the advancing thread did before.
        // Relaxed on a failed exchange: nothing is published then, and the
        // loop tries again with the value it read.
        let _ = self
            .nanos
            .fetch_update(Release, Relaxed, |n| Some(n.saturating_add(by)));
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Duration {
        // Acquire: pairs with the Release half of `advance`.
        Duration::from_nanos(self.nanos.load(Acquire))
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &self.now())
            .finish()
    }
}
