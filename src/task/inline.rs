//! Small futures kept inside a [`Lazy`](super::Lazy), without a box.
//!
//! `Lazy<T>` erases the type of its future. A future of at most
//! [`INLINE_BYTES`] bytes, aligned to at most a `usize`, is stored in a
//! buffer inside the `Lazy` with a vtable of its own, instead of in a
//! `Pin<Box<dyn Future>>`: building such a `Lazy` allocates nothing (an
//! `async fn` or `async move` block that captures a few words fits).
//!
//! # Access rules
//!
//! * Before its first poll the future may be moved with the `Lazy`
//!   (a future is only pinned once it is polled): [`InlineFuture`] is a
//!   plain value.
//! * Polling it ([`InlineFuture::poll`]) pins it where it stands: from then
//!   on it must not move until it is dropped, which is the caller's promise
//!   (`unsafe`). The two callers: `Lazy::poll`, which first moves the future
//!   into a box ([`InlineFuture::into_box`]) because a `Lazy` is `Unpin`
//!   and may move between polls; and `collect_all`, which polls its
//!   children in place inside its slot vector, whose buffer never moves nor
//!   is reallocated while a child lives in it.
//! * Dropping it drops the future in place.
//! * It is `!Unpin`, and so is everything that holds it but `Lazy` (which
//!   never pins it in place): the collect family reaches a child pinned in
//!   place only through `!Unpin` types (`Task`, its slots), so no `&mut` it
//!   makes asserts unique access to bytes the future borrows from itself.
//!
//! # Invariants
//!
//! * `buf` always holds a live `F`, the type `vtable` was built for: set by
//!   [`InlineFuture::new`], moved out only by [`InlineFuture::into_box`]
//!   (which consumes the value without running its `Drop`), dropped only by
//!   `Drop`.

use core::future::Future;
use core::marker::{PhantomData, PhantomPinned};
use core::mem::{self, ManuallyDrop, MaybeUninit};
use core::pin::Pin;
use core::ptr::NonNull;
use core::task::{Context, Poll};

use super::raw::BoxFuture;

/// Words of storage for an inline future.
const INLINE_WORDS: usize = 3;

/// Bytes of storage for an inline future: 24 on 64-bit targets, which holds
/// an `async` block that captures up to two words (it also keeps its state
/// tag).
pub(crate) const INLINE_BYTES: usize = INLINE_WORDS * mem::size_of::<usize>();

/// Whether a future of type `F` is kept inline.
#[inline(always)]
pub(crate) const fn fits<F>() -> bool {
    mem::size_of::<F>() <= INLINE_BYTES && mem::align_of::<F>() <= mem::align_of::<usize>()
}

/// A type-erased future of at most [`INLINE_BYTES`] bytes, stored in place.
pub(crate) struct InlineFuture<T> {
    /// The future, an `F` (see the module's invariants). `MaybeUninit`
    /// keeps every byte of it, provenance and padding included, when the
    /// value is moved.
    buf: [MaybeUninit<usize>; INLINE_WORDS],
    /// `F`'s operations; points at a promoted constant (`'static`). A
    /// pointer rather than a `&'static` reference, which would require
    /// `T: 'static` of every `Lazy<T>`.
    vtable: NonNull<VTable<T>>,
    /// Owns a `Send`, not necessarily `Sync`, future of output `T`: the same
    /// auto traits as the boxed form.
    _owns: PhantomData<BoxFuture<T>>,
    /// `!Unpin`: the future may be pinned in here, so a `&mut` to this (or
    /// to anything `!Unpin` holding it) must not claim unique access to its
    /// bytes, which the future may borrow from itself (see `Task`).
    _pinned: PhantomPinned,
}

// SAFETY: the buffer holds an `F: Send` (required by `new`), and the vtable
// pointer only ever points at immutable, `'static` data (function
// pointers). Not `Sync`: `_owns` keeps that off, as for a boxed future.
unsafe impl<T> Send for InlineFuture<T> {}

struct VTable<T> {
    /// # Safety
    /// The pointer is to a live, pinned `F`.
    poll: unsafe fn(*mut (), &mut Context<'_>) -> Poll<T>,
    /// `None` when `F` needs no drop (dropping it would do nothing).
    ///
    /// # Safety
    /// The pointer is to a live `F`, which is dead afterwards.
    drop_in_place: Option<unsafe fn(*mut ())>,
    /// # Safety
    /// The pointer is to a live `F` that was never polled; it is moved out.
    into_box: unsafe fn(*mut ()) -> BoxFuture<T>,
}

/// The vtable of `F`, as an associated constant so that `&F::VTABLE` is
/// promoted to a `'static` borrow.
trait HasVTable: Future + Sized {
    const VTABLE: VTable<Self::Output>;
}

impl<F: Future + Send + 'static> HasVTable for F {
    const VTABLE: VTable<F::Output> = VTable {
        poll: poll_raw::<F>,
        drop_in_place: if mem::needs_drop::<F>() {
            Some(drop_raw::<F>)
        } else {
            None
        },
        into_box: box_raw::<F>,
    };
}

/// # Safety
/// `p` points at a live `F` that stays pinned there until dropped.
unsafe fn poll_raw<F: Future>(p: *mut (), cx: &mut Context<'_>) -> Poll<F::Output> {
    // SAFETY: the caller's promise: a live `F`, pinned where it is.
    let f = unsafe { Pin::new_unchecked(&mut *p.cast::<F>()) };
    f.poll(cx)
}

/// # Safety
/// `p` points at a live `F`, dead afterwards.
unsafe fn drop_raw<F>(p: *mut ()) {
    // SAFETY: the caller's promise.
    unsafe { p.cast::<F>().drop_in_place() }
}

/// # Safety
/// `p` points at a live `F`, never polled, moved out here.
unsafe fn box_raw<F: Future + Send + 'static>(p: *mut ()) -> BoxFuture<F::Output> {
    // SAFETY: the caller's promise: a live `F`; never polled, so not pinned
    // yet and free to move. The buffer is only word-aligned and `F` is at
    // most that (`fits`), so the read is aligned.
    let f = unsafe { p.cast::<F>().read() };
    Box::pin(f)
}

impl<T> InlineFuture<T> {
    /// Stores `fut` in place.
    ///
    /// # Panics
    ///
    /// If `F` does not [`fits`] (a check that folds away at compile time).
    #[inline]
    pub(crate) fn new<F>(fut: F) -> Self
    where
        F: Future<Output = T> + Send + 'static,
    {
        assert!(fits::<F>(), "an inline future that does not fit");
        let mut buf = [MaybeUninit::<usize>::uninit(); INLINE_WORDS];
        // SAFETY: `F` fits the buffer in size and alignment (asserted
        // above).
        unsafe { buf.as_mut_ptr().cast::<F>().write(fut) };
        InlineFuture {
            buf,
            vtable: NonNull::from(&<F as HasVTable>::VTABLE),
            _owns: PhantomData,
            _pinned: PhantomPinned,
        }
    }

    /// The future's address. Taken without a reference to `buf` (an
    /// `Unpin` array): that would claim unique access to the future's bytes,
    /// which a pinned future may borrow from itself.
    #[inline(always)]
    fn buf_ptr(&mut self) -> *mut () {
        core::ptr::addr_of_mut!(self.buf).cast()
    }

    /// The vtable. Takes `&mut self`: a `&self` would claim every byte of
    /// the future as shared and read-only, and so invalidate the `&mut`
    /// borrows a future pinned in place may hold into itself (see the
    /// access rules).
    #[inline(always)]
    fn vtable(&mut self) -> &VTable<T> {
        // SAFETY: points at a promoted constant, which lives for ever.
        unsafe { self.vtable.as_ref() }
    }

    /// Polls the future where it stands.
    ///
    /// # Safety
    ///
    /// From the first call on, `self` must not move until it is dropped
    /// (the future is pinned in place). [`into_box`](Self::into_box) must
    /// not be called afterwards.
    #[inline]
    pub(crate) unsafe fn poll(&mut self, cx: &mut Context<'_>) -> Poll<T> {
        let poll = self.vtable().poll;
        // SAFETY: `buf` holds a live `F` (invariant), pinned there from now
        // on by the caller's promise.
        unsafe { poll(self.buf_ptr(), cx) }
    }

    /// Moves the future into a box.
    ///
    /// # Safety
    ///
    /// The future must never have been polled in place
    /// ([`poll`](Self::poll)): it is moved.
    pub(crate) unsafe fn into_box(self) -> BoxFuture<T> {
        let mut this = ManuallyDrop::new(self);
        let into_box = this.vtable().into_box;
        // SAFETY: a live `F` (invariant), never polled (the caller's
        // promise); `ManuallyDrop` keeps `Drop` from dropping it again.
        unsafe { into_box(this.buf_ptr()) }
    }
}

impl<T> Drop for InlineFuture<T> {
    fn drop(&mut self) {
        if let Some(drop_in_place) = self.vtable().drop_in_place {
            // SAFETY: `buf` holds a live `F` (invariant); it is not used
            // again.
            unsafe { drop_in_place(self.buf_ptr()) }
        }
    }
}
