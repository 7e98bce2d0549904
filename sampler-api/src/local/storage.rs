//! Arrays of cells that never move: a lazily allocated two-level array, and a thread's cells of
//! one kind (a flat array sized when its slab was made, then the two-level array).

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};

use crate::lifecycle::{CHUNK, DIR};

/// A lazily allocated two-level array whose elements never move. The directory is inline, so
/// reaching a cell costs one load for the chunk pointer and one for the cell.
pub(super) struct Stable<T> {
    dir: [AtomicPtr<[T; CHUNK]>; DIR],
}

impl<T: Default> Stable<T> {
    pub(super) fn new() -> Self {
        Stable {
            dir: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    pub(super) fn boxed() -> Box<Self> {
        Box::new(Self::new())
    }

    /// The element at `i`, if its chunk exists.
    #[inline(always)]
    pub(super) fn get(&self, i: u32) -> Option<&T> {
        let i = i as usize;
        let chunk = self.dir[(i / CHUNK) % DIR].load(Acquire);
        // SAFETY: a non-null chunk pointer came from `Box::into_raw` in `get_or_alloc` and is
        // freed only in `Drop`, which needs `&mut self`; `i % CHUNK` is in bounds.
        (!chunk.is_null()).then(|| unsafe { &(*chunk)[i % CHUNK] })
    }

    /// The element at `i`, allocating its chunk on first use.
    #[cold]
    #[inline(never)]
    pub(super) fn get_or_alloc(&self, i: u32) -> &T {
        if let Some(t) = self.get(i) {
            return t;
        }
        let fresh: Box<[T; CHUNK]> = Box::new(std::array::from_fn(|_| T::default()));
        let fresh = Box::into_raw(fresh);
        let slot = &self.dir[(i as usize / CHUNK) % DIR];
        if let Err(_other) = slot.compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire) {
            // SAFETY: `fresh` came from `Box::into_raw` just above and was never shared.
            drop(unsafe { Box::from_raw(fresh) });
        }
        self.get(i).expect("chunk present")
    }
}

impl<T> Drop for Stable<T> {
    fn drop(&mut self) {
        for p in self.dir.iter() {
            let p = p.load(Acquire);
            if !p.is_null() {
                // SAFETY: allocated by `Box::into_raw` in `get_or_alloc`; dropped once, here.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

/// Types whose all-zero bit pattern is a valid value (so their arrays can come zeroed from
/// the allocator, and the operating system commits only the pages that get written).
///
/// # Safety
/// An all-zero `Self` must be valid.
pub(super) unsafe trait ZeroIsValid {}
// SAFETY: an all-zero `AtomicU64` is 0 and an all-zero `AtomicPtr` is null.
unsafe impl ZeroIsValid for AtomicU64 {}
// SAFETY: as above.
unsafe impl<T> ZeroIsValid for AtomicPtr<T> {}

/// One thread's cells of one kind: slots below `flat.len()` in one array allocated with the
/// slab (reached with a single load from a pointer the thread keeps at hand), slots created
/// later in a lazily filled two-level array.
pub(super) struct Cells<T> {
    flat: Box<[T]>,
    pub(super) rest: Stable<T>,
}

impl<T: Default + ZeroIsValid> Cells<T> {
    pub(super) fn new(flat_len: usize) -> Self {
        Cells {
            flat: zeroed_slice(flat_len),
            rest: Stable::new(),
        }
    }

    /// The cell of `slot`, if it exists yet.
    #[inline]
    pub(super) fn get(&self, slot: u32) -> Option<&T> {
        self.flat.get(slot as usize).or_else(|| self.rest.get(slot))
    }

    /// The cell of `slot`, allocating its chunk on first use.
    pub(super) fn get_or_alloc(&self, slot: u32) -> &T {
        match self.flat.get(slot as usize) {
            Some(c) => c,
            None => self.rest.get_or_alloc(slot),
        }
    }

    /// The flat array, for the thread's `Local`.
    pub(super) fn flat(&self) -> &[T] {
        &self.flat
    }
}

/// `len` zeroed cells straight from the allocator (large arrays come as untouched pages).
fn zeroed_slice<T: ZeroIsValid>(len: usize) -> Box<[T]> {
    let layout = std::alloc::Layout::array::<T>(len).expect("slot count fits in memory");
    if layout.size() == 0 {
        return Vec::new().into_boxed_slice();
    }
    // SAFETY: the layout's size is not zero.
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if p.is_null() {
        std::alloc::handle_alloc_error(layout);
    }
    // SAFETY: `p` is a fresh allocation of `len` zeroed `T`s, valid as `T: ZeroIsValid`, with
    // the layout `Box<[T]>` frees it with.
    unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, len)) }
}
