//! A thread's flat array of one kind of cell, kept at hand as one word: the array's address
//! in the low 48 bits and its length, in units of 64 cells, in the high 16. A record reaches
//! its cell with one thread-local load (the address and the length together) where a pointer
//! and a length beside it took two.
//!
//! An array that cannot be described so (an address at or above 2^48, a length that is not a
//! multiple of 64 or above 64 × 65,535 cells) is not used as a flat array at all: its slab
//! keeps those cells in its two-level array, reached the slow way, never wrongly. Slab arrays
//! are powers of two from 64 to `MAX_SLOTS` (2^20) cells, and user-space addresses lie below
//! 2^48 on the platforms Rust supports unless a program maps memory above it on purpose.
//!
//! The slab keeps the word too ([`AtomicFlat`]), for readers on other threads: the array grows
//! (is replaced by a longer one) while the thread runs.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering::*};

/// Bits of the word that hold the address: 48 on 64-bit targets (on a 32-bit one, 16, which no
/// array's address fits in: no array, every record the slow way).
const ADDR_BITS: u32 = usize::BITS - 16;
/// Cells in one unit of the length.
const UNIT: u32 = 64;

/// See the module docs.
pub(super) struct Flat<T>(*mut T);

impl<T> Clone for Flat<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Flat<T> {}

impl<T> Flat<T> {
    /// No array: every slot lies past it.
    pub(super) const NONE: Self = Flat(ptr::null_mut());

    /// The array `cells`, if the word can describe it.
    pub(super) fn new(cells: *mut [T]) -> Option<Self> {
        let units = cells.len() / UNIT as usize;
        let start = cells.cast::<T>();
        let fits = cells.len() % UNIT as usize == 0
            && units <= usize::from(u16::MAX)
            && (start as usize) >> ADDR_BITS == 0;
        fits.then(|| Flat(start.wrapping_byte_add(units << ADDR_BITS)))
    }

    /// The whole array, as given to [`new`](Self::new) (empty for [`NONE`](Self::NONE)).
    pub(super) fn array(self) -> *mut [T] {
        let len = self.units() * UNIT as usize;
        if len == 0 {
            return ptr::slice_from_raw_parts_mut(ptr::NonNull::dangling().as_ptr(), 0);
        }
        ptr::slice_from_raw_parts_mut(self.start(), len)
    }

    /// The array's length in units.
    fn units(self) -> usize {
        (self.0 as usize) >> ADDR_BITS
    }

    /// The array's first cell (pointer arithmetic, so it keeps the provenance of the array the
    /// word was made from).
    #[inline(always)]
    fn start(self) -> *mut T {
        let length_bits = (self.0 as usize) & !((1 << ADDR_BITS) - 1);
        self.0.wrapping_byte_sub(length_bits)
    }

    /// Whether the cell of `slot` lies in the array.
    #[inline(always)]
    pub(super) fn holds(self, slot: u32) -> bool {
        ((slot / UNIT) as usize) < (self.0 as usize) >> ADDR_BITS
    }

    /// The cell of `slot`, which lies in the array.
    ///
    /// # Safety
    /// `self.holds(slot)`, and the array stays allocated for `'a`. (A method that checked and
    /// returned an `Option` made the compiler test the pointer for null as well on every
    /// record.)
    #[inline(always)]
    pub(super) unsafe fn cell<'a>(self, slot: u32) -> &'a T {
        debug_assert!(self.holds(slot));
        // SAFETY: the word was made by `new` from an array of `units × UNIT` cells whose
        // address fits below the length bits, added to it there and taken off again by
        // `start`; the caller saw `slot / UNIT < units`, so `slot` is in bounds, and keeps the
        // array allocated for `'a`.
        unsafe { &*self.start().add(slot as usize) }
    }

    /// Cells in the array (those a record reaches through it).
    pub(super) fn len(self) -> u32 {
        self.units() as u32 * UNIT
    }

    /// The cell of `slot`, if it lies in the array.
    ///
    /// # Safety
    /// As [`cell`](Self::cell): the array stays allocated for `'a`.
    #[inline]
    pub(super) unsafe fn get<'a>(self, slot: u32) -> Option<&'a T> {
        // SAFETY: `holds` checked; the caller keeps the array allocated.
        self.holds(slot).then(|| unsafe { self.cell(slot) })
    }
}

/// A [`Flat`] word that other threads read: a slab's current flat array of one kind.
pub(super) struct AtomicFlat<T>(AtomicPtr<T>);

impl<T> AtomicFlat<T> {
    pub(super) fn new(flat: Flat<T>) -> Self {
        AtomicFlat(AtomicPtr::new(flat.0))
    }

    /// The current word; the array it describes was filled before it was stored.
    #[inline]
    pub(super) fn load(&self) -> Flat<T> {
        Flat(self.0.load(Acquire))
    }

    /// Makes `flat` the current word, after its array was filled.
    pub(super) fn store(&self, flat: Flat<T>) {
        self.0.store(flat.0, Release)
    }
}

#[cfg(test)]
mod tests {
    use super::Flat;

    /// On a 32-bit target the word has no room for an address: every array is refused, and
    /// its slab keeps its cells in the two-level array.
    #[test]
    #[cfg(not(target_pointer_width = "64"))]
    fn refuses_every_array_on_a_32_bit_target() {
        let cells = Box::into_raw(vec![0u32; 64].into_boxed_slice());
        assert!(Flat::new(cells).is_none());
        // SAFETY: made by `Box::into_raw` just above, never shared.
        drop(unsafe { Box::from_raw(cells) });
    }

    /// The cell of `slot`, from an array the test leaks or frees only after its last call.
    #[cfg(target_pointer_width = "64")]
    fn get<T>(flat: Flat<T>, slot: u32) -> Option<&'static T> {
        // SAFETY: the tests keep each array allocated while they read it.
        unsafe { flat.get(slot) }
    }

    /// Every slot of the array is reached, in its own cell, and none past it; the whole array
    /// comes back as it was given; an array the word cannot describe is refused.
    #[test]
    #[cfg(target_pointer_width = "64")]
    fn reaches_exactly_the_cells_of_its_array() {
        let none = Flat::<u32>::NONE;
        assert!(get(none, 0).is_none());
        assert_eq!(none.len(), 0);
        assert_eq!(none.array().len(), 0);
        for len in [64usize, 128, 1 << 20] {
            let cells: *mut [u32] = Box::into_raw((0..len as u32).collect());
            let flat = Flat::new(cells).expect("a describable array");
            assert_eq!(flat.len() as usize, len);
            assert!(std::ptr::eq(flat.array(), cells));
            for slot in [0, 1, 63, 64.min(len as u32 - 1), len as u32 - 1] {
                let cell = get(flat, slot).expect("a slot in the array");
                assert!(std::ptr::eq(
                    cell,
                    cells.cast::<u32>().wrapping_add(slot as usize)
                ));
                assert_eq!(*cell, slot);
            }
            for slot in [len as u32, len as u32 + 1, u32::MAX] {
                assert!(get(flat, slot).is_none(), "slot {slot} past {len} cells");
            }
            // SAFETY: made by `Box::into_raw` above, and no reference to it is left.
            drop(unsafe { Box::from_raw(flat.array()) });
        }
        // Not a multiple of 64 cells, or too many: refused.
        for len in [100usize, 64 * 65_536] {
            let cells = Box::into_raw(vec![0u8; len].into_boxed_slice());
            assert!(Flat::new(cells).is_none());
            // SAFETY: as above.
            drop(unsafe { Box::from_raw(cells) });
        }
    }
}
