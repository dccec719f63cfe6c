//! [`ALazy`]: an async once-cell that caches errors and hands off on cancellation.
//!
//! # State machine
//!
//! ```text
//!                      CAS by the first caller (it now holds the baton)
//!            EMPTY ───────────────────────────────────────────────► INITIALIZING
//!              ▲                                                     │  │  │  │
//!              │ leader cancelled or panicked and nobody waits       │  │  │  │
//!              └─────────────────────────────────────────────────────┘  │  │  │
//!                                                                       │  │  │
//!        leader cancelled or panicked with waiters: the baton goes to   │  │  │
//!        the longest waiter; the state stays INITIALIZING ◄─────────────┘  │  │
//!                                                                          │  │
//!   FILLED ◄────────── init returned Ok(v): value written, then published ─┘  │
//!   FAILED ◄────────── init returned Err(e): error written, then published ───┘
//!
//!   FILLED / FAILED ── take(&mut self) ──► EMPTY
//! ```
//!
//! `INITIALIZING` carries one flag, `OWNED`, when the running initializer is
//! owned by the cell ([`ALazy::get_or_init_owned`]) rather than by the
//! caller that started it. An owned initializer is not tied to any caller:
//! whichever caller polls the cell drives it, so a leader that is parked
//! (polled once, then never again) cannot stall the others. If an owned
//! initializer panics, the cell drops it and goes back to `EMPTY`, and every
//! waiter re-runs the state machine (one of them becomes the next leader).
//!
//! # Access rules
//!
//! * `slot` (the value or the error) is written exactly once per fill, by the
//!   caller holding the baton (or, for an owned initializer, by whichever
//!   caller saw it complete while holding `Driver::fut`), *before* the
//!   `Release` store that publishes `FILLED`/`FAILED`. It is read only after an
//!   `Acquire` load has seen `FILLED`/`FAILED`, and from then on only shared
//!   references are handed out. `&mut self` ([`ALazy::take`], `Drop`) may move
//!   it out.
//! * The *baton* ([`Baton`]) is the right to initialize. Exactly one exists
//!   while the state is `INITIALIZING` without `OWNED`: held by the leader, or
//!   in transit inside the waiter queue as a [`Notify::One`]. Dropping it
//!   without completing (cancellation, panic) passes it to the next waiter in
//!   FIFO order, or stores `EMPTY` if nobody waits — under the queue lock, so
//!   that a caller about to queue either sees `EMPTY` or is in the queue.
//! * `driver` holds the owned initializer while the state is
//!   `INITIALIZING | OWNED`; it is set before that state is published and
//!   cleared after the state leaves it.
//!
//! # Invariants
//!
//! * At most one initializer runs at a time: the baton is unique, and an
//!   owned initializer's future is polled only under `Driver::fut`'s lock.
//! * Once `FILLED` or `FAILED`, the state never changes again until `&mut self`.
//! * Every waiter is woken when the state leaves `INITIALIZING`, or is handed
//!   the baton: nobody waits on a cell that nobody initializes, except while a
//!   caller-owned leader is itself parked (use the owned mode for that).
//!
//! # Orderings
//!
//! | operation                                       | ordering  | pairs with                                                   |
//! |-------------------------------------------------|-----------|--------------------------------------------------------------|
//! | `get`, `get_result`, state loads on every path  | `Acquire` | the `Release` store that publishes `FILLED`/`FAILED`          |
//! | publish `FILLED` / `FAILED`                     | `Release` | the `Acquire` loads above: the slot write happens-before any read |
//! | CAS `EMPTY → INITIALIZING` (success)            | `Acquire` | the `Release` store of `EMPTY` by a cancelled leader or `take` |
//! | store `EMPTY` on an unclaimed hand-off          | `Release` | the CAS above                                                 |
//! | store `INITIALIZING \| OWNED`                   | `Release` | the `Acquire` load that makes a caller read `driver`          |
//!
//! A `Relaxed` fast-path load (as in the seed design) would let a reader see
//! `FILLED` without the value's bytes: see `docs/design.md` and the
//! `relaxed_get` negative control, which loom rejects with a causality
//! violation.

use core::fmt;
use core::future::Future;
use core::marker::PhantomData;
use core::mem::{self, ManuallyDrop};
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use std::panic::{RefUnwindSafe, UnwindSafe};

use crate::sync::atomic::{AtomicBool, AtomicU8, Ordering::*};
use crate::sync::{Arc, Mutex, MutexGuard, UnsafeCell};
use crate::unwind::{caught, dropped, each};
use crate::wait_queue::{Notify, WaitKey, WaitQueue};

/// Encoding of `ALazy::state`: the two low bits are the [`State`]; bit 2 is
/// `OWNED` and only appears together with `INITIALIZING`.
const EMPTY: u8 = 0;
const INITIALIZING: u8 = 1;
const FILLED: u8 = 2;
const FAILED: u8 = 3;
const STATE_MASK: u8 = 0b011;
const OWNED: u8 = 0b100;

/// Ordering of the fast-path load. The `relaxed_get` negative control
/// weakens it to show that the loom suite notices.
#[inline(always)]
fn fast_load() -> crate::sync::atomic::Ordering {
    if broken!("relaxed_get") {
        Relaxed
    } else {
        Acquire
    }
}

/// The observable state of an [`ALazy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// No value, no error, no initializer running.
    Empty,
    /// An initializer is running (or the right to run one is being handed to
    /// the next waiter).
    Initializing,
    /// The initializer returned `Ok`; the value is cached.
    Filled,
    /// The initializer returned `Err`; the error is cached.
    Failed,
}

impl State {
    #[inline]
    fn decode(word: u8) -> State {
        match word & STATE_MASK {
            EMPTY => {
                debug_assert_eq!(word & OWNED, 0, "OWNED without INITIALIZING");
                State::Empty
            }
            INITIALIZING => State::Initializing,
            FILLED => State::Filled,
            FAILED => State::Failed,
            _ => unreachable!("two-bit state"),
        }
    }
}

/// The value or the error; which one is recorded in the state word.
union Slot<T, E> {
    empty: (),
    value: ManuallyDrop<T>,
    error: ManuallyDrop<E>,
}

/// An async once-cell with error caching and FIFO hand-off.
///
/// * [`get_or_init`](Self::get_or_init) runs at most one initializer at a time.
///   `Ok(v)` fills the cell; `Err(e)` is cached too, and every current and
///   later caller receives `Err(&e)` without running another initializer.
/// * If the running initializer is cancelled (its caller's future is dropped)
///   or panics, the longest-waiting caller runs its own initializer next.
/// * [`get`](Self::get) on a filled cell is one `Acquire` load and a branch.
/// * [`get_or_init_owned`](Self::get_or_init_owned) moves the initializer
///   into the cell, so any caller can drive it: a parked leader cannot stall
///   the others.
///
/// Works on any executor and under `loom::future::block_on` /
/// `shuttle::future::block_on`; it depends on no runtime.
///
/// # Examples
///
/// ```
/// # lazyflight::sync::future::block_on(async {
/// use lazyflight::{ALazy, State};
///
/// let lazy = ALazy::new();
/// assert_eq!(lazy.state(), State::Empty);
///
/// let v = lazy.get_or_init(|| async { Ok::<_, ()>(42) }).await;
/// assert_eq!(v, Ok(&42));
/// assert_eq!(lazy.get(), Some(&42));
///
/// // Errors are cached: the second initializer never runs.
/// let failing = ALazy::<u32, &str>::new();
/// assert_eq!(failing.get_or_init(|| async { Err("down") }).await, Err(&"down"));
/// assert_eq!(failing.get_or_init(|| async { Ok(1) }).await, Err(&"down"));
/// assert_eq!(failing.state(), State::Failed);
/// # });
/// ```
// `repr(C)`: the state byte and the value share a cache line (the default
// layout put the byte last, behind the waiter queue and the driver).
#[repr(C)]
pub struct ALazy<T, E> {
    /// `EMPTY | INITIALIZING | FILLED | FAILED` in bits 0–1, `OWNED` in bit 2.
    state: AtomicU8,
    slot: UnsafeCell<Slot<T, E>>,
    waiters: WaitQueue,
    driver: Mutex<Option<Arc<Driver<T, E>>>>,
}

// SAFETY: like `OnceLock`: `&ALazy` hands out `&T`/`&E` to several threads
// (needs `Sync`) and lets any thread create the value that another thread
// will drop (needs `Send`). Everything else inside is `Sync` already.
unsafe impl<T: Send + Sync, E: Send + Sync> Sync for ALazy<T, E> {}

// As `OnceLock`: a panic anywhere in an initialization (the closure, the
// future, a waker) leaves the cell consistent: the state is published only
// after the slot is written, and a failed leader hands the init on. The
// interior mutability that keeps these from being automatic (the slot's
// `UnsafeCell`, the queue's and the driver's locks) is never seen half-done.
impl<T: RefUnwindSafe + UnwindSafe, E: RefUnwindSafe + UnwindSafe> RefUnwindSafe for ALazy<T, E> {}
impl<T: UnwindSafe, E: UnwindSafe> UnwindSafe for ALazy<T, E> {}

impl<T, E> ALazy<T, E> {
    /// Creates an empty cell.
    ///
    /// `const` in normal builds (not under `--cfg loom`/`--cfg shuttle`,
    /// whose atomics cannot be built in a constant), so it fits a `static`.
    #[cfg(not(any(loom, shuttle)))]
    #[must_use]
    pub const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            slot: UnsafeCell::new(Slot { empty: () }),
            waiters: WaitQueue::new(),
            driver: Mutex::new(None),
        }
    }

    /// Creates an empty cell.
    #[cfg(any(loom, shuttle))]
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            slot: UnsafeCell::new(Slot { empty: () }),
            waiters: WaitQueue::new(),
            driver: Mutex::new(None),
        }
    }

    /// The value, if the cell is filled.
    ///
    /// One `Acquire` load and a branch; never waits.
    #[inline]
    pub fn get(&self) -> Option<&T> {
        // Acquire: pairs with the Release store in `publish`, so the value's
        // bytes written before it are visible here.
        if self.state.load(fast_load()) == FILLED {
            // SAFETY: FILLED was observed, so `slot.value` is initialized and
            // is never written again while `&self` lives.
            Some(unsafe { self.value_unchecked() })
        } else {
            None
        }
    }

    /// The cached value or error, if the cell is filled or failed.
    ///
    /// Never waits.
    #[inline]
    pub fn get_result(&self) -> Option<Result<&T, &E>> {
        // Acquire: pairs with the Release store in `publish`.
        let s = self.state.load(fast_load());
        // SAFETY: `s` was loaded with Acquire from the state word.
        unsafe { self.result_if_done(s) }
    }

    /// The current [`State`]. A snapshot: it may change right after.
    pub fn state(&self) -> State {
        // Acquire: a caller that sees Filled may go on to `get` the value.
        State::decode(self.state.load(Acquire))
    }

    /// Returns the cached result, or runs `f` to produce it.
    ///
    /// * If the cell is filled or failed, resolves at once to the cached
    ///   `Ok(&value)` / `Err(&error)`.
    /// * If it is empty, this caller becomes the leader: it runs `f().await`
    ///   and caches its `Ok` or `Err`.
    /// * If another caller is initializing, waits for its result. If that
    ///   leader is cancelled or panics, the waiter that has waited longest runs
    ///   its own `f` next (FIFO hand-off).
    ///
    /// `f` is called at most once per call, and only by the leader.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe. Dropping a waiting call removes it from the queue in O(1)
    /// (if it had just been handed the right to initialize, that right passes
    /// to the next waiter). Dropping the leading call drops `f`'s future and
    /// hands off as above; the cell never stays `Initializing` without a
    /// leader. A leader that is kept alive but never polled again does stall
    /// the waiters: use [`get_or_init_owned`](Self::get_or_init_owned) when
    /// that can happen.
    ///
    /// # Panics
    ///
    /// If `f` or its future panics, the panic propagates to this caller, and
    /// the cell hands off as if the leader were cancelled.
    ///
    /// While another caller's owned initializer runs (see
    /// [`get_or_init_owned`](Self::get_or_init_owned)), this call helps drive
    /// it; if it panics while this call polls it, the panic propagates to
    /// this caller too, and the cell goes back to `Empty`.
    ///
    /// An initializer future that awaits its own cell (re-entrant
    /// initialization) would wait for itself: the inner call panics instead,
    /// which fails the initializer as above. "Its own" means polled with the
    /// waker the initializer is polled with: another task polled inside the
    /// initializer's poll (an executor nested in it) waits as usual.
    ///
    /// # Deadlocks
    ///
    /// An initializer that waits for its own cell in a way the cell cannot
    /// see (through another task, through a combinator that polls it with a
    /// waker of its own, or by blocking on it inside `f`) never completes, as
    /// a re-entrant `OnceLock::get_or_init` does.
    ///
    /// # Examples
    ///
    /// ```
    /// # lazyflight::sync::future::block_on(async {
    /// use lazyflight::ALazy;
    ///
    /// static CONFIG: ALazy<String, std::io::ErrorKind> = ALazy::new();
    ///
    /// let cfg = CONFIG.get_or_init(|| async { Ok("debug=1".to_owned()) }).await;
    /// assert_eq!(cfg.map(String::as_str), Ok("debug=1"));
    /// # });
    /// ```
    #[inline]
    pub fn get_or_init<F, Fut>(
        &self,
        f: F,
    ) -> impl Future<Output = Result<&T, &E>> + use<'_, T, E, F, Fut>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        // A hand-written future rather than an `async fn`: on a filled or
        // failed cell its poll is the fast-path load alone and writes nothing
        // to the future's own memory (see `GetOrInit`).
        GetOrInit {
            cell: self,
            phase: ManuallyDrop::new(Phase::Start(f)),
            make: Self::get_or_init_slow::<F, Fut>,
        }
    }

    /// [`get_or_init`](Self::get_or_init) once the fast path missed.
    async fn get_or_init_slow<F, Fut>(&self, f: F) -> Result<&T, &E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        match self.acquire(None, false).await {
            Acquired::Done(done) => done,
            Acquired::MinePanicked => unreachable!("no owned initializer of ours"),
            Acquired::Lead(baton) => {
                // If `f` or the future panics, or this future is dropped
                // here, `baton` is dropped and hands off.
                let result = self.initializing(f).await;
                baton.complete(result)
            }
        }
    }

    /// Like [`get_or_init`](Self::get_or_init), but the initializer is moved
    /// into the cell, so it does not depend on the caller that started it.
    ///
    /// Every caller waiting on an owned initializer helps drive it: the
    /// future is polled by whichever caller is polled next, and its wake-ups
    /// reach every waiting caller. A leader that is parked (kept alive but
    /// never polled again) or cancelled does not stall the others, and the
    /// initializer keeps its progress: the next caller resumes it where it
    /// stopped.
    ///
    /// That holds among owned-mode callers. A plain
    /// [`get_or_init`](Self::get_or_init) caller of the same cell can still
    /// stall them: a plain leader that is parked holds the initialization,
    /// and when a leader is cancelled the baton goes to the longest-waiting
    /// plain caller, which may itself be parked or leaked. Use one mode per
    /// cell when callers may be parked.
    ///
    /// If the owned initializer panics, the panic propagates to the caller
    /// that was polling it, the cell drops it and returns to `Empty`, and the
    /// remaining callers start over (one of them leads with its own `f`). The
    /// caller whose `f` built the panicking future also panics.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: dropping any caller, the one that started the initializer
    /// included, leaves the initializer in the cell, and later callers resume
    /// it.
    ///
    /// # Panics
    ///
    /// As described above: the caller polling the owned initializer when it
    /// panics, and the caller whose `f` built it, panic with it. An owned
    /// initializer that awaits its own cell panics, as in
    /// [`get_or_init`](Self::get_or_init).
    ///
    /// # Deadlocks
    ///
    /// As for [`get_or_init`](Self::get_or_init): an initializer that waits
    /// for its own cell through another task never completes.
    ///
    /// # Examples
    ///
    /// ```
    /// # lazyflight::sync::future::block_on(async {
    /// use lazyflight::ALazy;
    ///
    /// let cell = ALazy::<u32, ()>::new();
    /// assert_eq!(cell.get_or_init_owned(|| async { Ok(7) }).await, Ok(&7));
    /// # });
    /// ```
    pub async fn get_or_init_owned<F, Fut>(&self, f: F) -> Result<&T, &E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: Send + 'static,
    {
        if let Some(done) = self.get_result() {
            return done;
        }
        let mut f = Some(f);
        let mut installed: Option<Arc<Driver<T, E>>> = None;
        // Negative control: the starter takes its initializer down with it.
        #[cfg(any(
            lazyflight_break = "owned_init_dies_with_starter",
            lazyflight_break_dynamic
        ))]
        let mut starter = StarterTearsDown(self, None);
        loop {
            match self.acquire(installed.as_deref(), true).await {
                Acquired::Done(done) => return done,
                Acquired::MinePanicked => {
                    panic!("ALazy: the owned initializer started by this call panicked")
                }
                Acquired::Lead(baton) => {
                    // Given up before installing (the closure panicked), the
                    // baton is handed on as a plain leader's is: to the
                    // longest-waiting plain caller, or, if only owned-mode
                    // callers wait (they never take a baton: one may be
                    // parked), the cell goes back to EMPTY and they are all
                    // woken.
                    let lead = OwnedLead(Some(baton));
                    let Some(f) = f.take() else {
                        // Our initializer panicked between the check in
                        // `acquire` and our win of the CAS.
                        drop(lead);
                        panic!("ALazy: the owned initializer started by this call panicked");
                    };
                    // A panic in `f` drops `lead`, which resets the cell.
                    let fut: BoxFuture<T, E> = Box::pin(f());
                    installed = Some(lead.install(fut));
                    #[cfg(any(
                        lazyflight_break = "owned_init_dies_with_starter",
                        lazyflight_break_dynamic
                    ))]
                    if broken!("owned_init_dies_with_starter") {
                        starter.1 = installed.clone();
                    }
                }
            }
        }
    }

    /// Takes the value or error out, leaving the cell `Empty`.
    ///
    /// Returns `None` if the cell was empty. An owned initializer that was
    /// still pending is dropped. Callers left queued by waiting futures that
    /// were leaked (`mem::forget`; no live caller can wait while `take` has
    /// `&mut self`) are forgotten, with their wakers: they would otherwise
    /// be handed the next leader's turn and keep it.
    ///
    /// # Panics
    ///
    /// If dropping that owned initializer, or a waker a leaked caller left,
    /// panics, the panic propagates; the cell is `Empty` by then, and the
    /// value or error taken out is dropped.
    pub fn take(&mut self) -> Option<Result<T, E>> {
        // Exclusive access: no other thread can touch the cell now; Acquire
        // only documents that any earlier publication is visible.
        let s = self.state.load(Acquire);
        self.state.store(EMPTY, Release);
        let out = match s & STATE_MASK {
            // SAFETY: FILLED: `value` is initialized; the state is now EMPTY
            // so it will not be read or dropped again.
            FILLED => Some(Ok(self
                .slot
                .with_mut(|p| unsafe { ManuallyDrop::take(&mut (*p).value) }))),
            // SAFETY: as above, for `error`.
            FAILED => Some(Err(self
                .slot
                .with_mut(|p| unsafe { ManuallyDrop::take(&mut (*p).error) }))),
            _ => None,
        };
        if let Some(driver) = self.driver.get_mut().take() {
            driver.retire();
        }
        self.waiters.clear();
        out
    }

    /// Consumes the cell, returning its value or error, if any. An owned
    /// initializer that was still pending is dropped.
    ///
    /// # Panics
    ///
    /// As for [`take`](Self::take).
    pub fn into_inner(mut self) -> Option<Result<T, E>> {
        self.take()
    }

    /// Number of callers currently queued behind the initializer.
    ///
    /// Meant for diagnostics and tests; the answer may be stale at once.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// # Safety
    /// `FILLED` must have been observed with `Acquire` (or `&mut self`).
    #[inline]
    unsafe fn value_unchecked(&self) -> &T {
        // SAFETY: the caller guarantees `value` is initialized and published.
        self.slot
            .with(|p| unsafe { &*core::ptr::addr_of!((*p).value).cast::<T>() })
    }

    /// # Safety
    /// `s` must have been loaded from `self.state` with `Acquire`.
    #[inline]
    unsafe fn result_if_done(&self, s: u8) -> Option<Result<&T, &E>> {
        match s {
            // SAFETY: FILLED observed with Acquire (caller's contract).
            FILLED => Some(Ok(unsafe { self.value_unchecked() })),
            // SAFETY: FAILED observed with Acquire: `error` is initialized
            // and never written again while `&self` lives.
            FAILED => Some(Err(self
                .slot
                .with(|p| unsafe { &*core::ptr::addr_of!((*p).error).cast::<E>() }))),
            _ => None,
        }
    }

    /// Waits until the cell is done, or until this caller holds the baton.
    ///
    /// `mine` is the owned initializer this caller installed, if any: if it
    /// panicked (polled by another caller), we stop with `MinePanicked`.
    ///
    /// `owned` callers queue as broadcast-only waiters: they are never handed
    /// a cancelled caller-owned leader's baton, since an owned-mode caller may
    /// be parked and must not be the one everybody else depends on.
    async fn acquire(&self, mine: Option<&Driver<T, E>>, owned: bool) -> Acquired<'_, T, E> {
        loop {
            // Acquire: pairs with the Release store in PanicGuard.
            if mine.is_some_and(|d| d.sig.panicked.load(Acquire)) {
                return Acquired::MinePanicked;
            }
            // Acquire: pairs with the Release store in `publish`.
            let s = self.state.load(Acquire);
            match s & STATE_MASK {
                EMPTY => {
                    // Acquire on success: pairs with the Release store of
                    // EMPTY by a cancelled leader. Failure: we reload above.
                    if self
                        .state
                        .compare_exchange(EMPTY, INITIALIZING, Acquire, Relaxed)
                        .is_ok()
                    {
                        return Acquired::Lead(Baton { cell: self });
                    }
                }
                INITIALIZING if s & OWNED != 0 => {
                    Initializing::refuse_reentry(self).await;
                    let driver = self.driver.lock().clone();
                    if let Some(driver) = driver {
                        Drive {
                            cell: self,
                            driver,
                            key: WaitKey::new(),
                        }
                        .await;
                    }
                }
                INITIALIZING => {
                    Initializing::refuse_reentry(self).await;
                    if (Wait {
                        cell: self,
                        key: WaitKey::new(),
                        takes_baton: !owned,
                    })
                    .await
                        == Notify::One
                    {
                        // The previous leader handed us the baton.
                        debug_assert_eq!(self.state.load(Relaxed), INITIALIZING);
                        return Acquired::Lead(Baton { cell: self });
                    }
                }
                _ => {
                    // SAFETY: `s` was loaded with Acquire.
                    let done = unsafe { self.result_if_done(s) };
                    return Acquired::Done(done.expect("FILLED or FAILED"));
                }
            }
        }
    }

    /// Calls `f` and awaits its future as this cell's initializer: while the
    /// future is polled, the cell is marked as initializing on this thread
    /// (see [`Initializing`]).
    async fn initializing<F, Fut>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut fut = core::pin::pin!(f());
        core::future::poll_fn(|cx| {
            let _here = Initializing::enter(self, cx.waker());
            fut.as_mut().poll(cx)
        })
        .await
    }

    /// Writes the result, publishes it and wakes every waiter.
    ///
    /// # Safety
    /// The caller must be the only initializer: it holds the baton, or it
    /// took an owned initializer's output while holding `Driver::fut`.
    unsafe fn publish(&self, result: Result<T, E>) -> Result<&T, &E> {
        // SAFETY: the caller's contract.
        let s = unsafe { self.publish_quietly(result) };
        self.waiters.notify_all();
        // SAFETY: we just wrote and published the slot.
        unsafe { self.result_if_done(s) }.expect("just published")
    }

    /// [`publish`](Self::publish) without waking the waiters (the caller
    /// does); returns the state published.
    ///
    /// # Safety
    /// As for `publish`.
    unsafe fn publish_quietly(&self, result: Result<T, E>) -> u8 {
        debug_assert_eq!(self.state.load(Relaxed) & STATE_MASK, INITIALIZING);
        let s = match result {
            Ok(v) => {
                // SAFETY: unique initializer (caller's contract); nobody reads
                // the slot before the Release store below.
                self.slot.with_mut(|p| unsafe {
                    p.write(Slot {
                        value: ManuallyDrop::new(v),
                    })
                });
                FILLED
            }
            Err(e) => {
                // SAFETY: as above.
                self.slot.with_mut(|p| unsafe {
                    p.write(Slot {
                        error: ManuallyDrop::new(e),
                    })
                });
                FAILED
            }
        };
        // Release: pairs with the Acquire loads in `get`, `get_result`,
        // `acquire`; makes the slot write visible to whoever sees `s`.
        self.state.store(s, Release);
        s
    }

    /// The leader gave up (cancelled or panicked): pass the baton on.
    fn hand_off(&self) {
        debug_assert_eq!(self.state.load(Relaxed), INITIALIZING);
        if broken!("no_handoff") {
            // Negative control: go back to EMPTY but wake nobody.
            self.state.store(EMPTY, Release);
            return;
        }
        // Release: pairs with the Acquire CAS of the next leader (the
        // teardown of this initializer happens before the next one runs).
        // Runs under the queue lock, so a caller about to queue sees EMPTY
        // instead. Negative control `handoff_reset_relaxed`: `Relaxed`.
        self.waiters.notify_one(|| {
            self.state.store(
                EMPTY,
                if broken!("handoff_reset_relaxed") {
                    Relaxed
                } else {
                    Release
                },
            )
        });
    }
}

impl<T, E> Default for ALazy<T, E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T, E> Drop for ALazy<T, E> {
    fn drop(&mut self) {
        // Exclusive access; Acquire documents that the publication is visible.
        match self.state.load(Acquire) & STATE_MASK {
            // SAFETY: FILLED: `value` is initialized and dropped only here.
            FILLED => self
                .slot
                .with_mut(|p| unsafe { ManuallyDrop::drop(&mut (*p).value) }),
            // SAFETY: FAILED: `error` is initialized and dropped only here.
            FAILED => self
                .slot
                .with_mut(|p| unsafe { ManuallyDrop::drop(&mut (*p).error) }),
            _ => {}
        }
        if let Some(driver) = self.driver.get_mut().take() {
            driver.retire();
        }
    }
}

impl<T: fmt::Debug, E: fmt::Debug> fmt::Debug for ALazy<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ALazy");
        d.field("state", &self.state());
        match self.get_result() {
            Some(Ok(v)) => d.field("value", v),
            Some(Err(e)) => d.field("error", e),
            None => d.field("waiting", &self.waiters.len()),
        };
        d.finish()
    }
}

enum Acquired<'a, T, E> {
    Done(Result<&'a T, &'a E>),
    Lead(Baton<'a, T, E>),
    MinePanicked,
}

/// The right to initialize. Dropping it without [`complete`](Self::complete)
/// or [`install`](Self::install) hands it to the next waiter.
struct Baton<'a, T, E> {
    cell: &'a ALazy<T, E>,
}

impl<'a, T, E> Baton<'a, T, E> {
    fn complete(self, result: Result<T, E>) -> Result<&'a T, &'a E> {
        let cell = self.cell;
        mem::forget(self);
        // SAFETY: we held the baton, so we are the only initializer.
        unsafe { cell.publish(result) }
    }

    /// Moves the initializer into the cell; the baton becomes the cell's.
    fn install(self, fut: BoxFuture<T, E>) -> Arc<Driver<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let cell = self.cell;
        let sig = Arc::new(Signals {
            waiters: WaitQueue::new(),
            done: AtomicBool::new(false),
            panicked: AtomicBool::new(false),
            repoll: AtomicBool::new(false),
        });
        let waker = crate::sync::waker(SignalsWaker(sig.clone()));
        let driver = Arc::new(Driver {
            fut: Mutex::new(Some(fut)),
            waker,
            sig,
        });
        mem::forget(self);
        {
            // Install and publish OWNED under `driver`'s lock: a caller that
            // saw the previous initializer's OWNED and only now takes the
            // lock may find this driver and complete it at once; its
            // FILLED/FAILED must come after our OWNED, never be overwritten
            // by it.
            let mut installed = cell.driver.lock();
            *installed = Some(driver.clone());
            // Release: pairs with the Acquire load in `acquire` that then
            // reads `driver` (the mutex orders the `driver` write as well).
            cell.state.store(INITIALIZING | OWNED, Release);
        }
        // Callers queued behind us come and help drive. (Negative control
        // `owned_install_silent`: they are not told.)
        if !broken!("owned_install_silent") {
            cell.waiters.notify_all();
        }
        driver
    }
}

/// The baton of a [`ALazy::get_or_init_owned`] leader until its initializer
/// is installed. Dropped without installing (the closure panicked, or the
/// caller's own initializer had already panicked), it hands the baton on as
/// a cancelled plain leader does ([`ALazy::hand_off`]): to the longest
/// waiter that takes batons, in FIFO order; owned-mode callers never take
/// one (they register broadcast-only), so if only they wait the cell goes
/// back to `EMPTY` and every one of them is woken.
struct OwnedLead<'a, T, E>(Option<Baton<'a, T, E>>);

impl<T, E> OwnedLead<'_, T, E> {
    fn install(mut self, fut: BoxFuture<T, E>) -> Arc<Driver<T, E>>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        self.0.take().expect("armed until installed").install(fut)
    }
}

impl<T, E> Drop for Baton<'_, T, E> {
    fn drop(&mut self) {
        self.cell.hand_off();
    }
}

/// Waits in the cell's queue while a caller-owned initializer runs.
struct Wait<'a, T, E> {
    cell: &'a ALazy<T, E>,
    key: WaitKey,
    /// Whether the baton may be handed to this waiter.
    takes_baton: bool,
}

impl<T, E> Future for Wait<'_, T, E> {
    type Output = Notify;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Notify> {
        // `Wait` is `Unpin`: it holds only a reference and a key.
        let this = self.get_mut();
        if this.key.is_registered() {
            return this.cell.waiters.poll(&mut this.key, cx);
        }
        let state = &this.cell.state;
        // Re-checked under the queue lock: the leader's hand-off changes the
        // state under the same lock, and its completion stores the state
        // before it takes the lock to wake everyone.
        let still_waiting = || broken!("no_recheck") || state.load(Acquire) == INITIALIZING;
        let waiters = &this.cell.waiters;
        let registered = if this.takes_baton {
            waiters.register(&mut this.key, cx.waker(), still_waiting)
        } else {
            waiters.register_broadcast_only(&mut this.key, cx.waker(), still_waiting)
        };
        if registered {
            Poll::Pending
        } else {
            Poll::Ready(Notify::All)
        }
    }
}

impl<T, E> Drop for Wait<'_, T, E> {
    fn drop(&mut self) {
        let cell = self.cell;
        // If we were handed the baton but are going away, it goes to the next
        // waiter; with nobody left the cell is EMPTY again. Release: pairs with
        // the next leader's Acquire CAS.
        cell.waiters
            .cancel(&mut self.key, || cell.state.store(EMPTY, Release));
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

/// An owned initializer and the callers helping to drive it.
struct Driver<T, E> {
    /// The initializer; `None` once it completed, panicked or was retired.
    /// Polled only while this lock is held.
    fut: Mutex<Option<BoxFuture<T, E>>>,
    /// The waker the initializer is polled with: wakes every helper.
    waker: Waker,
    sig: Arc<Signals>,
}

/// The part of a [`Driver`] its waker needs (no `T`/`E`, so no cycle
/// through the future and no bounds on the cell's types).
struct Signals {
    /// Callers waiting for the initializer to make progress.
    waiters: WaitQueue,
    /// Set (before `waiters` is notified) once the initializer is gone.
    done: AtomicBool,
    /// Set when the initializer panicked.
    panicked: AtomicBool,
    /// Set by the waker; tells the caller polling the initializer that a
    /// wake-up arrived meanwhile (see `Drive::poll`).
    repoll: AtomicBool,
}

impl Signals {
    /// Marks the initializer gone and wakes every helper.
    fn finish(&self) {
        let mut wakers = Vec::new();
        self.finish_into(&mut wakers);
        each(wakers, Waker::wake);
    }

    /// [`finish`](Self::finish), with the helpers' wake-ups added to
    /// `wakers` for the caller to deliver.
    fn finish_into(&self, wakers: &mut Vec<Waker>) {
        // Release: pairs with the Acquire load in `Drive::poll`'s register
        // predicate; `notify_all_into` takes the queue lock after it.
        self.done.store(true, Release);
        self.waiters.notify_all_into(wakers);
    }
}

impl<T, E> Driver<T, E> {
    /// Drops a pending initializer (the cell was dropped or taken).
    fn retire(&self) {
        let fut = self.fut.lock().take();
        self.sig.finish();
        drop(fut);
    }
}

/// Shares a shim `Arc<Signals>` with the std waker machinery.
struct SignalsWaker(Arc<Signals>);

impl crate::sync::WakeHandle for SignalsWaker {
    fn wake(&self) {
        // SeqCst: see `Drive::poll`.
        self.0.repoll.store(true, SeqCst);
        // Every helper is woken; a helper's waker that panics (another
        // task's executor) must not unwind into the initializer's `poll`
        // when it wakes itself there: that would fail a healthy initializer
        // and report its panic to every caller. The panic is dropped.
        caught(|| self.0.waiters.notify_all());
    }
}

/// How many times one `Drive::poll` re-polls an initializer that woke itself
/// while being polled, before it yields to the executor.
const REPOLL_LIMIT: u32 = 32;

/// Helps drive an owned initializer until it is done.
struct Drive<'a, T, E> {
    cell: &'a ALazy<T, E>,
    driver: Arc<Driver<T, E>>,
    key: WaitKey,
}

impl<T, E> Future for Drive<'_, T, E> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let driver = &*this.driver;
        let sig = &*driver.sig;
        // Stay registered while we try to drive, so that any wake-up the
        // initializer raises from now on reaches us. A notification (if any)
        // is consumed here and we register afresh below.
        if this.key.is_registered() {
            let _ = sig.waiters.poll(&mut this.key, cx);
        }
        if !this.key.is_registered()
            && !sig
                .waiters
                .register(&mut this.key, cx.waker(), || !sig.done.load(Acquire))
        {
            return Poll::Ready(());
        }
        let mut rounds = 0;
        loop {
            let Some(slot) = driver.fut.try_lock() else {
                // Another caller is polling it. Its wake-ups reach us, and a
                // wake-up that lands before it unlocks makes it poll again.
                return Poll::Pending;
            };
            let mut guard = PanicGuard {
                cell: this.cell,
                driver,
                slot: Some(slot),
            };
            let Some(fut) = guard.slot.as_mut().and_then(|s| s.as_mut()) else {
                drop(guard.disarm());
                // The caller that took the future out (it completed or
                // panicked) has yet to publish and call `finish`. Returning
                // now would send us round `acquire` to spin on a state only
                // that caller can change; we are registered, and `finish`
                // wakes us. Acquire: pairs with the Release store in `finish`.
                return if sig.done.load(Acquire) {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            };
            // SeqCst, with the store in `SignalsWaker::wake` and the load below:
            // a wake-up either precedes this store (and the poll sees its
            // event) or is seen by the load after we unlock.
            sig.repoll.store(false, SeqCst);
            let polled = {
                let waker = &driver.waker;
                let _here = Initializing::enter(this.cell, waker);
                fut.as_mut().poll(&mut Context::from_waker(waker))
            };
            let mut slot = guard.disarm();
            match polled {
                Poll::Ready(result) => {
                    let done = slot.take();
                    drop(slot);
                    // SAFETY: we took the owned initializer's output under
                    // `Driver::fut`'s lock; nobody else can publish.
                    let _ = unsafe { this.cell.publish_quietly(result) };
                    *this.cell.driver.lock() = None;
                    // Both queues are notified before anyone is woken, so
                    // that a panicking waker of one (the first panic unwinds
                    // on after every wake) cannot keep the other's waiters
                    // from their wake-ups: a helper parked here waits for
                    // `finish`, and would wait for ever.
                    let mut wakers = Vec::new();
                    this.cell.waiters.notify_all_into(&mut wakers);
                    // Negative control `owned_wake_before_finish`: the
                    // cell's waiters are woken before the helpers are
                    // notified, so a panicking waker skips `finish`.
                    if broken!("owned_wake_before_finish") {
                        each(mem::take(&mut wakers), Waker::wake);
                    }
                    sig.finish_into(&mut wakers);
                    each(wakers, Waker::wake);
                    drop(done);
                    return Poll::Ready(());
                }
                Poll::Pending => {
                    drop(slot);
                    // SeqCst: see the store above.
                    if !sig.repoll.load(SeqCst) {
                        return Poll::Pending;
                    }
                    rounds += 1;
                    if rounds == REPOLL_LIMIT {
                        // It keeps waking itself: yield, and make sure some
                        // caller (maybe us) polls it again.
                        sig.waiters.notify_all();
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
            }
        }
    }
}

impl<T, E> Drop for Drive<'_, T, E> {
    fn drop(&mut self) {
        // Notifications here are broadcasts; nothing to pass on.
        self.driver.sig.waiters.cancel(&mut self.key, || {});
    }
}

/// Negative control `owned_init_dies_with_starter`: the caller that installed
/// an owned initializer tears it down when it is dropped (as a cancelled
/// plain leader's initializer goes with it): a pending initializer is dropped
/// and the cell reset to `EMPTY`, so the others start over instead of
/// resuming it.
#[cfg(any(
    lazyflight_break = "owned_init_dies_with_starter",
    lazyflight_break_dynamic
))]
struct StarterTearsDown<'a, T, E>(&'a ALazy<T, E>, Option<Arc<Driver<T, E>>>);

#[cfg(any(
    lazyflight_break = "owned_init_dies_with_starter",
    lazyflight_break_dynamic
))]
impl<T, E> Drop for StarterTearsDown<'_, T, E> {
    fn drop(&mut self) {
        let Some(driver) = self.1.take() else { return };
        // Acquire: pairs with the Release store in `PanicGuard` (whose
        // unwind poisoned loom's mutex).
        if driver.sig.panicked.load(Acquire) {
            return;
        }
        // Still pending: nobody can publish it now (as in `PanicGuard`).
        let Some(fut) = driver.fut.lock().take() else {
            return;
        };
        {
            let mut installed = self.0.driver.lock();
            *installed = None;
            self.0.state.store(EMPTY, Release);
        }
        self.0.waiters.notify_all();
        driver.sig.finish();
        drop(fut);
    }
}

/// Holds `Driver::fut` while an owned initializer is polled. If the poll
/// panics, it drops the initializer and resets the cell to `EMPTY`.
struct PanicGuard<'a, T, E> {
    cell: &'a ALazy<T, E>,
    driver: &'a Driver<T, E>,
    slot: Option<MutexGuard<'a, Option<BoxFuture<T, E>>>>,
}

impl<'a, T, E> PanicGuard<'a, T, E> {
    fn disarm(mut self) -> MutexGuard<'a, Option<BoxFuture<T, E>>> {
        self.slot.take().expect("armed guard holds the lock")
    }
}

impl<T, E> Drop for PanicGuard<'_, T, E> {
    fn drop(&mut self) {
        let Some(mut slot) = self.slot.take() else {
            return;
        };
        // We are unwinding out of the initializer's `poll`.
        let fut = slot.take();
        drop(slot);
        // Release: pairs with the Acquire load in `get_or_init_owned`.
        self.driver.sig.panicked.store(true, Release);
        // The dead initializer goes before the cell is reset: at most one
        // initializer exists at a time, so the next one (started as soon as
        // the cell is `EMPTY`) never runs beside what this one still holds
        // (a lock, a port, a permit). Meanwhile helpers that take the lock
        // find no future and wait for `finish`. Its `Drop` runs during the
        // unwind, where a panic would abort: it is caught.
        //
        // Negative control `owned_panic_reset_before_teardown`: the cell is
        // reset first and the dead initializer dropped after, so the next
        // initializer can run beside its teardown.
        let fut = if broken!("owned_panic_reset_before_teardown") {
            Some(fut)
        } else {
            dropped(fut);
            None
        };
        {
            // Clear `driver` and leave OWNED under `driver`'s lock: a caller
            // that saw OWNED and then finds no driver must find the new state
            // too (or it would spin), and a next leader's `install` cannot
            // slip in between and be cleared.
            let mut installed = self.cell.driver.lock();
            *installed = None;
            // Release: pairs with the Acquire CAS of the next leader, so the
            // teardown above happens before the next initializer runs. Nobody
            // queues on the cell while it is OWNED (they drive instead), so
            // no queue lock is needed to keep registration consistent.
            // Negative control `owned_panic_reset_relaxed`: `Relaxed`.
            let order = if broken!("owned_panic_reset_relaxed") {
                Relaxed
            } else {
                Release
            };
            self.cell.state.store(EMPTY, order);
        }
        if let Some(fut) = fut {
            dropped(fut);
        }
        self.cell.waiters.notify_all();
        self.driver.sig.finish();
    }
}

/// The future of [`ALazy::get_or_init`].
///
/// Its poll first does what [`ALazy::get_result`] does: on a filled or failed
/// cell it is ready at once, without writing to the future's own memory, so
/// once inlined the fast path is the load and a branch. Only a poll that
/// misses goes out of line (`#[cold]`, never inlined): it builds the slow
/// future from `f` (by calling `make`) and polls it. An `async fn` could not
/// do that: its poll records its own progress even when it returns at once,
/// and awaiting the slow future inside it made every poll save registers and
/// set up a large frame before the load (see docs/benchmarks.md).
///
/// Polling again after `Ready` is ready again with the same result; once the
/// slow path has run, the cell is filled or failed for good.
struct GetOrInit<'a, T, E, F, S, M> {
    cell: &'a ALazy<T, E>,
    /// Dropped by hand in `Drop`, so that the common case (still `Start`)
    /// drops `f` alone, inline, and the slow future's drop stays out of line.
    phase: ManuallyDrop<Phase<F, S>>,
    /// Builds the slow future: `ALazy::get_or_init_slow`, a zero-sized
    /// function item (its return type cannot be named, only inferred).
    make: M,
}

enum Phase<F, S> {
    /// Not polled yet, or only on the fast path: `f` unused. Not pinned.
    Start(F),
    /// The slow path, structurally pinned: never moved once written.
    Slow(S),
    /// Between the two, while `f` is moved into the slow future.
    Gone,
}

impl<'a, T, E, F, S, M> GetOrInit<'a, T, E, F, S, M>
where
    S: Future<Output = Result<&'a T, &'a E>>,
    M: Fn(&'a ALazy<T, E>, F) -> S,
{
    /// A poll that missed the fast path: builds the slow future on the first
    /// such poll, then polls it.
    #[cold]
    #[inline(never)]
    fn poll_slow(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<S::Output> {
        // SAFETY: only `Phase::Slow` is structurally pinned, and it is never
        // moved out: `phase` is replaced below only while it is `Start`, and
        // dropped in place in `Drop`.
        let this = unsafe { self.get_unchecked_mut() };
        if let Some(done) = this.cell.get_result() {
            return Poll::Ready(done);
        }
        // Through `&mut`, never a shared reference to the whole phase: the
        // slow future may hold mutable borrows into itself (see `poll`).
        if matches!(&mut *this.phase, Phase::Start(_)) {
            let Phase::Start(f) = mem::replace(&mut *this.phase, Phase::Gone) else {
                unreachable!("checked just above")
            };
            *this.phase = Phase::Slow((this.make)(this.cell, f));
        }
        match &mut *this.phase {
            // SAFETY: pinned in place, see above.
            Phase::Slow(slow) => unsafe { Pin::new_unchecked(slow) }.poll(cx),
            Phase::Start(_) | Phase::Gone => unreachable!("the slow future was just built"),
        }
    }
}

impl<'a, T, E, F, S, M> Future for GetOrInit<'a, T, E, F, S, M>
where
    S: Future<Output = Result<&'a T, &'a E>>,
    M: Fn(&'a ALazy<T, E>, F) -> S,
{
    type Output = Result<&'a T, &'a E>;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Read through `&mut`: `self.cell` through `Pin`'s `Deref` would
        // make a shared reference to the whole future, slow future included,
        // and so invalidate the mutable borrows an initializer may hold into
        // itself across a suspension (Miri's Stacked Borrows reports it; see
        // `an_initializer_borrowing_itself_across_a_suspension`).
        // SAFETY: nothing is moved out; only `cell`, a reference, is copied.
        let cell = unsafe { self.as_mut().get_unchecked_mut() }.cell;
        // A waiter whose slow future is still registered leaves the queue
        // when this future is dropped. A failed cell is answered by
        // `poll_slow`, which starts with the same check for both results.
        match cell.get() {
            Some(value) => Poll::Ready(Ok(value)),
            None => self.poll_slow(cx),
        }
    }
}

impl<T, E, F, S, M> Drop for GetOrInit<'_, T, E, F, S, M> {
    #[inline(always)]
    fn drop(&mut self) {
        match &mut *self.phase {
            // SAFETY: `f` is dropped once, here; `phase` is not used again.
            Phase::Start(f) => unsafe { core::ptr::drop_in_place(f) },
            Phase::Slow(_) => drop_slow(&mut self.phase),
            Phase::Gone => {}
        }
    }
}

/// Drops a started slow path (a waiter leaving the queue, a leader handing
/// off), out of line.
#[cold]
#[inline(never)]
pub(crate) fn drop_slow<P>(phase: &mut ManuallyDrop<P>) {
    // SAFETY: called once, from `GetOrInit::drop`; `phase` is not used again,
    // and it is dropped in place, as its pinning requires.
    unsafe { ManuallyDrop::drop(phase) }
}

crate::sync::thread_local! {
    /// The cells whose initializer future this thread is polling right now,
    /// each with the waker it is polled with, innermost last.
    #[allow(clippy::missing_const_for_thread_local)] // loom's macro has no `const` form
    static INITIALIZING_HERE: core::cell::RefCell<Vec<(usize, *const Waker)>> =
        core::cell::RefCell::new(Vec::new());
}

/// Marks a cell as initializing on this thread, polled with a given waker,
/// for as long as it lives.
///
/// A call that would wait for a cell marked on its own thread, polled with
/// a waker that wakes the same task as the mark's, is made by that cell's
/// initializer future (the mark is set while it is polled), so it would
/// wait for itself for ever: it panics instead, and the panic fails the
/// initializer as any other would. Another task polled inside the
/// initializer's poll (an executor nested in the initializer, such as a
/// `LocalSet`) has a waker of its own and waits as usual. An initializer
/// that passes its own call a waker of its own making (a combinator that
/// wraps wakers) is not recognized and stays the documented deadlock. The
/// closure `f` is not marked: code there may poll another caller's future
/// of the same cell once (the tests do, to queue a waiter behind the
/// leader), and one that blocks on the cell instead stays the documented
/// deadlock too.
///
/// During the thread's teardown (a thread-local's `Drop` that uses a cell)
/// the marks are gone: nothing is marked, and no re-entrance is detected.
struct Initializing<'w> {
    addr: usize,
    /// Whether the mark was pushed (not in the thread's teardown).
    marked: bool,
    /// The mark holds a pointer to this waker: see `refuse_reentry`.
    _waker: PhantomData<&'w Waker>,
}

impl<'w> Initializing<'w> {
    fn enter<T, E>(cell: &ALazy<T, E>, waker: &'w Waker) -> Self {
        let addr = cell as *const ALazy<T, E> as usize;
        // `try_with`: a cell used from a thread-local's `Drop` must not panic
        // (which aborts there) because this thread-local is gone already.
        let marked = INITIALIZING_HERE
            .try_with(|h| h.borrow_mut().push((addr, waker as *const Waker)))
            .is_ok();
        Initializing {
            addr,
            marked,
            _waker: PhantomData,
        }
    }

    /// Panics, when polled, if `cell`'s initializer is being polled on this
    /// thread for the task polling this.
    fn refuse_reentry<T, E>(cell: &ALazy<T, E>) -> impl Future<Output = ()> + '_ {
        let addr = cell as *const ALazy<T, E> as usize;
        core::future::poll_fn(move |cx| {
            let mine = INITIALIZING_HERE.try_with(|h| {
                h.borrow().iter().any(|&(a, w)| {
                    // SAFETY: a mark is on the stack only while its
                    // `Initializing` lives, which borrows the waker for
                    // that long; it is popped when the poll that set it
                    // returns or unwinds, and this code runs inside that
                    // poll (on this thread, nested in it), so the waker
                    // is alive.
                    a == addr && unsafe { &*w }.will_wake(cx.waker())
                })
            });
            // No marks (the thread's teardown): nothing to refuse.
            let mine = mine.unwrap_or(false);
            if mine {
                panic!(
                    "lazyflight: an initializer awaits its own result (an `ALazy` init awaiting \
                     its own cell, or a `Cache` init awaiting its own key), which would wait for \
                     itself for ever (re-entrant initialization)"
                );
            }
            Poll::Ready(())
        })
    }
}

impl Drop for Initializing<'_> {
    fn drop(&mut self) {
        if !self.marked {
            return;
        }
        INITIALIZING_HERE.with(|h| {
            let popped = h.borrow_mut().pop();
            debug_assert_eq!(
                popped.map(|(a, _)| a),
                Some(self.addr),
                "initializer marks nest"
            );
        });
    }
}
