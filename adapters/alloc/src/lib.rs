//! An opt-in counting global allocator that attributes memory to the piece of work being
//! done: bytes allocated and peak live bytes per request, for the HTTP layer
//! (`sampler-adapter-http` records them per route group) or any other unit of work.
//!
//! Install [`CountingAllocator`] as the program's `#[global_allocator]`; it wraps [`System`]
//! (or any [`GlobalAlloc`]) and forwards every call. Work is attributed through an
//! [`Account`]: while an [`Account::enter`] scope is open on a thread, each allocation and
//! free made by that thread is added to a small thread-local frame, which is folded into the
//! account when the scope closes. [`Tracked`] opens the scope around each `poll` of a future,
//! so a task that moves between a runtime's threads is counted right: the marker follows the
//! poll, not the thread.
//!
//! The allocator path only reads and writes that thread-local frame (a `Cell` with a constant
//! initialiser and no destructor, so touching it never allocates): it takes no lock, calls
//! nothing else and cannot recurse or deadlock, whatever the code inside the scope records.
//! With no scope open the cost is one thread-local load per call.
//!
//! What is counted, per account:
//! - **allocated**: bytes asked for (`alloc`, `alloc_zeroed`, and the new size of a
//!   `realloc`, which also frees the old size, as heap profilers count it);
//! - **live**: bytes allocated minus bytes freed inside the account's scopes, never below
//!   zero: freeing memory the work did not allocate (a buffer made before the request, or by
//!   another request) cannot make it negative;
//! - **peak**: the highest live value reached.
//!
//! Frees outside any scope (a response buffer released after the request) are not seen.
//!
//! # Example
//!
//! ```
//! use sampler_adapter_alloc::{Account, CountingAllocator};
//!
//! #[global_allocator]
//! static ALLOC: CountingAllocator = CountingAllocator::system();
//!
//! let account = Account::new();
//! {
//!     let _scope = account.enter();
//!     let big = vec![0u8; 1 << 20];
//!     drop(big);
//!     let _small = vec![0u8; 1000];
//! }
//! assert_eq!(account.allocated(), (1 << 20) + 1000);
//! assert_eq!(account.peak(), 1 << 20);
//! assert!(sampler_adapter_alloc::is_counting());
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;

/// A [`GlobalAlloc`] that forwards to `A` and adds each allocation and free made inside an
/// [`Account::enter`] scope to that account.
///
/// ```
/// use sampler_adapter_alloc::CountingAllocator;
/// use std::alloc::System;
///
/// #[global_allocator]
/// static ALLOC: CountingAllocator<System> = CountingAllocator::new(System);
/// # fn main() {}
/// ```
#[derive(Debug, Default)]
pub struct CountingAllocator<A = System> {
    inner: A,
}

impl CountingAllocator<System> {
    /// Counts over the system allocator.
    pub const fn system() -> Self {
        CountingAllocator { inner: System }
    }
}

impl<A> CountingAllocator<A> {
    /// Counts over `inner`.
    pub const fn new(inner: A) -> Self {
        CountingAllocator { inner }
    }
}

// SAFETY: every method forwards to `inner` with the caller's arguments unchanged and returns
// its result unchanged; the bookkeeping around it only touches a thread-local `Cell`, never
// the memory handed out, and never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for CountingAllocator<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, passed on unchanged.
        let ptr = unsafe { self.inner.alloc(layout) };
        if !ptr.is_null() {
            note(0, layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { self.inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note(0, layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract: `ptr` came from this
        // allocator (hence from `inner`) with `layout`.
        unsafe { self.inner.dealloc(ptr, layout) };
        note(layout.size(), 0);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract, passed on unchanged.
        let new = unsafe { self.inner.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            note(layout.size(), new_size);
        }
        new
    }
}

/// The counts of the scope open on this thread, if any.
#[derive(Clone, Copy, Debug)]
struct Frame {
    active: bool,
    allocated: u64,
    live: u64,
    peak: u64,
}

impl Frame {
    const IDLE: Frame = Frame {
        active: false,
        allocated: 0,
        live: 0,
        peak: 0,
    };
}

thread_local! {
    // A constant initialiser and a type without `Drop`: access never allocates, never
    // registers a destructor and never fails, so the allocator may touch it at any time
    // (even while the thread is being torn down).
    static FRAME: Cell<Frame> = const { Cell::new(Frame::IDLE) };
}

/// The allocator's only bookkeeping: `freed` then `allocated` bytes, into this thread's frame.
#[inline]
fn note(freed: usize, allocated: usize) {
    let _ = FRAME.try_with(|cell| {
        let mut frame = cell.get();
        if !frame.active {
            return;
        }
        let allocated = allocated as u64;
        frame.allocated = frame.allocated.wrapping_add(allocated);
        frame.live = frame.live.saturating_sub(freed as u64) + allocated;
        frame.peak = frame.peak.max(frame.live);
        cell.set(frame);
    });
}

/// Whether the program's global allocator is a [`CountingAllocator`]: probes it once by
/// allocating a small box inside a scope and seeing whether the scope counted it.
///
/// ```
/// // No counting allocator installed in this program.
/// assert!(!sampler_adapter_alloc::is_counting());
/// ```
pub fn is_counting() -> bool {
    let account = Account::new();
    {
        let _scope = account.enter();
        drop(std::hint::black_box(Box::new(std::hint::black_box(0u64))));
    }
    account.allocated() > 0
}

/// The memory counts of one unit of work (a request): bytes allocated, live and peak live.
///
/// Shared by `Arc` between the [`Tracked`] future and whoever records the totals; the counts
/// are updated when a scope closes, so read them after the work's last poll.
///
/// ```
/// use sampler_adapter_alloc::Account;
/// let account = Account::new();
/// assert_eq!((account.allocated(), account.live(), account.peak()), (0, 0, 0));
/// ```
#[derive(Debug, Default)]
pub struct Account {
    allocated: AtomicU64,
    live: AtomicU64,
    peak: AtomicU64,
}

impl Account {
    /// An account with nothing counted.
    pub fn new() -> Self {
        Account::default()
    }

    /// Counts this thread's allocations into this account until the returned scope is
    /// dropped. A scope opened inside another one pauses the outer one until it closes.
    ///
    /// Scopes of one account must not be open on two threads at once (one poll at a time, as
    /// a future is polled); if they are, counts may be lost (never memory safety).
    ///
    /// ```
    /// use sampler_adapter_alloc::Account;
    /// let account = Account::new();
    /// let scope = account.enter();
    /// let data = vec![1u8; 4096];
    /// drop(scope);
    /// # drop(data);
    /// // Counted only with a `CountingAllocator` installed.
    /// # assert_eq!(account.allocated(), 0);
    /// ```
    pub fn enter(&self) -> Scope<'_> {
        let frame = Frame {
            active: true,
            allocated: 0,
            live: self.live.load(Ordering::Relaxed),
            peak: self.peak.load(Ordering::Relaxed),
        };
        let saved = FRAME.try_with(|cell| cell.replace(frame)).ok();
        Scope {
            account: self,
            saved,
            _thread_bound: PhantomData,
        }
    }

    /// Bytes allocated in this account's scopes.
    pub fn allocated(&self) -> u64 {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Bytes allocated minus bytes freed in this account's scopes, never below zero.
    pub fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed)
    }

    /// The highest [`live`](Self::live) value reached.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

/// An open [`Account::enter`] scope: this thread's allocations count into the account until
/// it is dropped. Bound to its thread (`!Send`).
#[derive(Debug)]
pub struct Scope<'a> {
    account: &'a Account,
    /// The frame of the scope this one pauses (`None` if the thread-local was unreachable).
    saved: Option<Frame>,
    _thread_bound: PhantomData<*const ()>,
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        let Some(saved) = self.saved else { return };
        let Ok(frame) = FRAME.try_with(|cell| cell.replace(saved)) else {
            return;
        };
        // Plain loads and stores, no read-modify-write: one scope of an account is open at a
        // time (a future is polled by one thread at a time), so nothing races these.
        let account = self.account;
        let allocated = account.allocated.load(Ordering::Relaxed);
        account
            .allocated
            .store(allocated.wrapping_add(frame.allocated), Ordering::Relaxed);
        account.live.store(frame.live, Ordering::Relaxed);
        if frame.peak > account.peak.load(Ordering::Relaxed) {
            account.peak.store(frame.peak, Ordering::Relaxed);
        }
    }
}

pin_project! {
    /// A future whose every `poll` runs inside a scope of its [`Account`], wherever it is
    /// polled: the allocations of an async request are counted to it across awaits and
    /// runtime threads.
    ///
    /// ```
    /// use sampler_adapter_alloc::{Account, Tracked};
    /// use std::sync::Arc;
    ///
    /// let account = Arc::new(Account::new());
    /// let work = Tracked::new(async { vec![0u8; 512].len() }, account.clone());
    /// # let _ = work;
    /// // runtime.block_on(work); then account.peak() is at least 512 (with the allocator).
    /// ```
    #[derive(Debug)]
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        account: Arc<Account>,
    }
}

impl<F> Tracked<F> {
    /// `inner`, counted into `account`.
    pub fn new(inner: F, account: Arc<Account>) -> Self {
        Tracked { inner, account }
    }

    /// The account this future counts into.
    pub fn account(&self) -> &Arc<Account> {
        &self.account
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let _scope = this.account.enter();
        this.inner.poll(cx)
    }
}
