//! loom models of lazyflight's primitives live in `tests/`; build them with
//! `RUSTFLAGS="--cfg loom"` (see `ci/loom.sh`). Without the flag they compile
//! to nothing.
//!
//! This library holds the instruments the models share: wakers that count
//! their clones and wake-ups, futures that stop at a point the model controls,
//! values that count their drops, and a panic hook that keeps deliberate
//! panics out of the test output.
//!
//! The counters here use `std`'s atomics on purpose: they observe the
//! protocol, they are not part of it, so loom does not need to explore their
//! interleavings (loom runs one thread at a time, and every count is read after
//! a `join`).
#![cfg(loom)]
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll, Wake, Waker};

use lazyflight::sync::Mutex;

/// What a [`counting_waker`] has seen.
#[derive(Debug, Default)]
pub struct WakeProbe {
    wakes: AtomicUsize,
}

impl WakeProbe {
    /// How many times a clone of the waker was woken.
    pub fn wakes(&self) -> usize {
        self.wakes.load(SeqCst)
    }
}

impl Wake for WakeProbe {
    fn wake(self: std::sync::Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &std::sync::Arc<Self>) {
        self.wakes.fetch_add(1, SeqCst);
    }
}

/// A waker whose clones are visible: every live clone holds one strong count
/// of the returned probe. Once the waker itself is dropped,
/// `std::sync::Arc::strong_count(&probe) == 1` means nobody kept a clone.
pub fn counting_waker() -> (Waker, std::sync::Arc<WakeProbe>) {
    let probe = std::sync::Arc::new(WakeProbe::default());
    (Waker::from(probe.clone()), probe)
}

/// Live clones of a [`counting_waker`] other than the probe itself.
pub fn live_wakers(probe: &std::sync::Arc<WakeProbe>) -> usize {
    std::sync::Arc::strong_count(probe) - 1
}

/// Polls `fut` once with `waker`.
pub fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>, waker: &Waker) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(waker))
}

/// A future that is `Pending` the first time it is polled (after waking its
/// waker, as a well-behaved future would) and `Ready` afterwards: puts an
/// initializer at a suspension point that a hand-polled caller stops at.
#[derive(Debug, Default)]
#[must_use = "futures do nothing unless polled"]
pub struct PendOnce(bool);

impl PendOnce {
    /// A fresh future that has not yielded yet.
    pub fn new() -> Self {
        Self(false)
    }
}

impl Future for PendOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

/// A gate an initializer can wait at until the model opens it. Its state is
/// behind a shim `Mutex`, so loom explores the race between `open` and
/// `wait`.
#[derive(Debug, Default)]
pub struct Gate {
    /// `(open, waker of the task waiting at the gate)`.
    inner: Mutex<(bool, Option<Waker>)>,
}

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self {
            inner: Mutex::new((false, None)),
        }
    }

    /// Opens the gate and wakes whoever waits at it.
    pub fn open(&self) {
        let waker = {
            let mut inner = self.inner.lock();
            inner.0 = true;
            inner.1.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Resolves once the gate is open.
    pub fn wait(&self) -> GateWait<'_> {
        GateWait(self)
    }
}

/// Future returned by [`Gate::wait`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct GateWait<'a>(&'a Gate);

impl Future for GateWait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut inner = self.0.inner.lock();
        if inner.0 {
            return Poll::Ready(());
        }
        let stale = inner.1.replace(cx.waker().clone());
        drop(inner);
        drop(stale);
        Poll::Pending
    }
}

/// Counts how many [`Counted`] values were created and dropped.
#[derive(Debug, Default)]
pub struct DropLedger {
    created: AtomicUsize,
    dropped: AtomicUsize,
}

impl DropLedger {
    /// A fresh ledger behind an `Arc`, to be shared with the values.
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self::default())
    }

    /// Values created so far.
    pub fn created(&self) -> usize {
        self.created.load(SeqCst)
    }

    /// Values dropped so far.
    pub fn dropped(&self) -> usize {
        self.dropped.load(SeqCst)
    }
}

/// A value (or error) that records its creation and drop in a [`DropLedger`].
#[derive(Debug)]
pub struct Counted {
    /// Which caller's initializer produced it.
    pub id: usize,
    ledger: std::sync::Arc<DropLedger>,
}

impl Counted {
    /// Creates a value and records it.
    pub fn new(id: usize, ledger: &std::sync::Arc<DropLedger>) -> Self {
        ledger.created.fetch_add(1, SeqCst);
        Self {
            id,
            ledger: ledger.clone(),
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.ledger.dropped.fetch_add(1, SeqCst);
    }
}

/// Payload of the panics the models raise on purpose.
pub const EXPECTED_PANIC: &str = "lazyflight-loom: deliberate panic in an initializer";

/// Panics with [`EXPECTED_PANIC`]; generic so that it fits any initializer.
pub fn deliberate_panic<T>() -> T {
    std::panic::panic_any(EXPECTED_PANIC)
}

/// Panic messages the models provoke on purpose: [`EXPECTED_PANIC`], and the
/// one `ALazy::get_or_init_owned` raises in the caller whose owned
/// initializer panicked in another caller's hands.
const QUIET_PANICS: [&str; 3] = [
    EXPECTED_PANIC,
    "ALazy: the owned initializer started by this call panicked",
    // owned_init_completed_while_a_waiter_waker_panics_releases_every_helper
    "waker panics",
];

/// Keeps the panics the models raise on purpose out of the test output (loom
/// replays a model many times); every other panic still reaches the previous
/// hook.
pub fn silence_expected_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
            if !message.is_some_and(|m| QUIET_PANICS.contains(&m)) {
                previous(info);
            }
        }));
    });
}
