//! A thread's flat array of one kind of cell, kept at hand as one word: the array's address
//! in the low 48 bits and its length, in units of 64 cells, in the high 16. A record reaches
//! its cell with one thread-local load (the address and the length together) where a pointer
//! and a length beside it took two.
//!
//! An array that cannot be described so (an address at or above 2^48, a length that is not a
//! multiple of 64 or above 64 × 65,535 cells) is kept as no array at all: its cells are then
//! reached the slow way, never wrongly. Slab arrays are powers of two from 64 to
//! `MAX_SLOTS` (2^20) cells, and user-space addresses lie below 2^48 on the platforms Rust
//! supports unless a program maps memory above it on purpose.

use std::ptr;

/// Bits of the word that hold the address: 48 on 64-bit targets (on a 32-bit one, 16, which no
/// array's address fits in: no array, every record the slow way).
const ADDR_BITS: u32 = usize::BITS - 16;
/// Cells in one unit of the length.
const UNIT: u32 = 64;

/// See the module docs.
pub(super) struct Flat<T>(*const T);

impl<T> Clone for Flat<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Flat<T> {}

impl<T> Flat<T> {
    /// No array: every slot lies past it.
    pub(super) const NONE: Self = Flat(ptr::null());

    /// The array `cells`.
    pub(super) fn new(cells: &'static [T]) -> Self {
        let units = cells.len() / UNIT as usize;
        let start = cells.as_ptr();
        let fits = cells.len() % UNIT as usize == 0
            && units <= usize::from(u16::MAX)
            && (start as usize) >> ADDR_BITS == 0;
        if fits {
            Flat(start.wrapping_byte_add(units << ADDR_BITS))
        } else {
            Self::NONE
        }
    }

    /// Whether the cell of `slot` lies in the array.
    #[inline(always)]
    pub(super) fn holds(self, slot: u32) -> bool {
        ((slot / UNIT) as usize) < (self.0 as usize) >> ADDR_BITS
    }

    /// The cell of `slot`, which lies in the array.
    ///
    /// # Safety
    /// `self.holds(slot)`. (A method that checked and returned an `Option` made the compiler
    /// test the pointer for null as well on every record.)
    #[inline(always)]
    pub(super) unsafe fn cell(self, slot: u32) -> &'static T {
        debug_assert!(self.holds(slot));
        let length_bits = (self.0 as usize) & !((1 << ADDR_BITS) - 1);
        let start = self.0.wrapping_byte_sub(length_bits);
        // SAFETY: the word was made by `new` from a `&'static [T]` of `units × UNIT` cells
        // whose address fits below the length bits, added to it there and taken off again
        // here (pointer arithmetic, so `start` keeps the provenance of that slice); the caller
        // saw `slot / UNIT < units`, so `slot` is in bounds.
        unsafe { &*start.add(slot as usize) }
    }

    /// Cells in the array (those a record reaches through it).
    #[cfg(test)]
    pub(super) fn len(self) -> u32 {
        ((self.0 as usize) >> ADDR_BITS) as u32 * UNIT
    }

    /// The cell of `slot`, if it lies in the array.
    #[cfg(test)]
    fn get(self, slot: u32) -> Option<&'static T> {
        // SAFETY: `holds` checked.
        self.holds(slot).then(|| unsafe { self.cell(slot) })
    }
}

#[cfg(test)]
mod tests {
    use super::Flat;

    /// Every slot of the array is reached, in its own cell, and none past it; an array the word
    /// cannot describe is no array.
    #[test]
    fn reaches_exactly_the_cells_of_its_array() {
        let none = Flat::<u32>::NONE;
        assert!(none.get(0).is_none());
        assert_eq!(none.len(), 0);
        for len in [64usize, 128, 1 << 20] {
            let cells: &'static [u32] = Box::leak((0..len as u32).collect());
            let flat = Flat::new(cells);
            assert_eq!(flat.len() as usize, len);
            for slot in [0, 1, 63, 64.min(len as u32 - 1), len as u32 - 1] {
                let cell = flat.get(slot).expect("a slot in the array");
                assert!(std::ptr::eq(cell, &cells[slot as usize]));
                assert_eq!(*cell, slot);
            }
            for slot in [len as u32, len as u32 + 1, u32::MAX] {
                assert!(flat.get(slot).is_none(), "slot {slot} past {len} cells");
            }
        }
        // Not a multiple of 64 cells, or too many: no array.
        for len in [100usize, 64 * 65_536] {
            let cells: &'static [u8] = Box::leak(vec![0; len].into_boxed_slice());
            let flat = Flat::new(cells);
            assert_eq!(flat.len(), 0);
            assert!(flat.get(0).is_none());
        }
    }
}
