//! A global allocator that keeps the net number of heap bytes in use.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering::Relaxed};

static NET: AtomicI64 = AtomicI64::new(0);
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting the bytes it hands out and takes back.
///
/// Install it in a binary with `#[global_allocator]`; [`net_allocated`] then reads the bytes
/// in use. Sizes are the requested ones (the allocator's own rounding and headers are not
/// counted), the same way for every library measured.
///
/// ```
/// use sampler_benches::{net_allocated, CountingAlloc};
///
/// #[global_allocator]
/// static ALLOC: CountingAlloc = CountingAlloc;
///
/// let before = net_allocated().unwrap();
/// let v = vec![0u8; 4096];
/// assert_eq!(net_allocated().unwrap() - before, 4096);
/// drop(v);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAlloc;

/// Net heap bytes allocated so far through [`CountingAlloc`], or `None` when it is not the
/// global allocator of this binary (nothing has gone through it).
pub fn net_allocated() -> Option<i64> {
    INSTALLED.load(Relaxed).then(|| NET.load(Relaxed))
}

#[inline]
fn add(n: usize) {
    INSTALLED.store(true, Relaxed);
    NET.fetch_add(n as i64, Relaxed);
}

#[inline]
fn sub(n: usize) {
    NET.fetch_sub(n as i64, Relaxed);
}

// SAFETY: every method forwards to `System` with the same arguments, which upholds the
// `GlobalAlloc` contract; the counting touches only two atomics and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract for `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc_zeroed`'s contract for `layout`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            add(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator (so by `System`) with `layout`.
        unsafe { System.dealloc(ptr, layout) };
        sub(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller upholds `realloc`'s contract; `ptr` came from `System`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            sub(layout.size());
            add(new_size);
        }
        p
    }
}
