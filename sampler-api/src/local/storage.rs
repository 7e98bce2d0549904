//! Arrays of cells: a lazily allocated two-level array whose cells never move, and a thread's
//! cells of one kind (a flat array that grows as slots are made, and the two-level array).

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};
use std::sync::Mutex;

use super::flat::{AtomicFlat, Flat};
use super::lock;
use super::retire::ReadGuard;
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

/// A cell's value, copied when its array is outgrown.
pub(super) trait CellValue: Default + ZeroIsValid + Send + 'static {
    /// Sets `self` to `from`'s value.
    fn copy_from(&self, from: &Self);
}

impl CellValue for AtomicU64 {
    fn copy_from(&self, from: &Self) {
        self.store(from.load(Relaxed), Relaxed);
    }
}

impl<T: 'static> CellValue for AtomicPtr<T> {
    fn copy_from(&self, from: &Self) {
        self.store(from.load(Relaxed), Relaxed);
    }
}

/// One thread's cells of one kind: slots below the flat array's length in one array (reached
/// with a single load from a word the thread keeps at hand), others in a lazily filled
/// two-level array.
///
/// The flat array grows: a record into a slot past it, by the slab's owner thread, replaces it
/// with a longer one holding the same values (`reach`), so that slots made after the thread
/// started are reached as cheaply as the others. Readers on other threads load the current
/// word ([`AtomicFlat`]) and hold a [`ReadGuard`](super::retire::ReadGuard), so the array they
/// may have loaded is freed only after them (`retire`). Only when the word cannot describe an
/// array (never on the usual 64-bit platforms) are slots past the flat array kept in the
/// two-level array instead, and the flat array then never grows again, so that a slot's cell
/// is always the flat array's if the flat array holds the slot and the two-level array's if
/// not.
pub(super) struct Cells<T> {
    /// The current flat array. Replaced only by the slab's owner thread, under `grow`.
    flat: AtomicFlat<T>,
    pub(super) rest: Stable<T>,
    /// Whether the flat array may still grow; held while it grows and while a cell of a freed
    /// slot is reset (`exclusive`), so that a reset never lands in an array being outgrown.
    grow: Mutex<bool>,
}

// SAFETY: the flat array is owned by `Cells` (made by `Box::into_raw` in `new` or `reach`,
// freed by `retire` or `Drop`) and holds `T`s, which are shared across threads by reference.
unsafe impl<T: Send + Sync> Send for Cells<T> {}
// SAFETY: as above; every access to the cells goes through `&T`.
unsafe impl<T: Send + Sync> Sync for Cells<T> {}

impl<T: CellValue> Cells<T> {
    /// Cells with a flat array of `flat_len` cells (none if 0) that may grow if `growable`.
    pub(super) fn new(flat_len: usize, growable: bool) -> Self {
        let (flat, growable) = match flat_array(flat_len) {
            Some(flat) => (flat, growable),
            None => (Flat::NONE, false),
        };
        Cells {
            flat: AtomicFlat::new(flat),
            rest: Stable::new(),
            grow: Mutex::new(growable),
        }
    }

    /// The current flat array, for the owner thread's `Local`.
    pub(super) fn flat(&self) -> Flat<T> {
        self.flat.load()
    }

    /// The cell of `slot`, if it exists yet, for a reader on any thread.
    #[inline]
    pub(super) fn get<'a>(&'a self, slot: u32, _reading: &'a ReadGuard) -> Option<&'a T> {
        let flat = self.flat.load();
        crate::hooks::at(crate::hooks::Point::ReadAfterFlatLoad);
        // SAFETY: an outgrown array is freed only when no `ReadGuard` is held (`retire`).
        unsafe { flat.get(slot) }.or_else(|| self.rest.get(slot))
    }

    /// Runs `f` on the cell of `slot`, if it exists, while the flat array cannot grow: for
    /// resetting the cells of a freed slot, which must land in the array that stays.
    pub(super) fn exclusive(&self, slot: u32, f: impl FnOnce(&T)) {
        let _no_growth = lock(&self.grow);
        // SAFETY: the array is replaced (and the old one retired) only under `grow`.
        if let Some(cell) = unsafe { self.flat.load().get(slot) }.or_else(|| self.rest.get(slot)) {
            f(cell);
        }
    }

    /// The cell of `slot`, growing the flat array to hold it (to room for `high_water()` slots,
    /// asked only then, rounded up to a power of two) or making its chunk of the two-level
    /// array. Returns the new flat array, if it grew, for the owner thread's `Local`.
    ///
    /// # Safety
    /// Called by the thread that owns this slab, or for cells made not to grow: only that
    /// thread replaces the flat array, so the cell stays allocated until its next call here.
    #[cold]
    pub(super) unsafe fn reach(
        &self,
        slot: u32,
        high_water: impl FnOnce() -> u32,
    ) -> (&T, Option<Flat<T>>) {
        let mut grew = None;
        let old = self.flat.load();
        if !old.holds(slot) {
            // Cells whose array cannot grow keep later slots here (and only those have any).
            if let Some(cell) = self.rest.get(slot) {
                return (cell, None);
            }
            let mut growable = lock(&self.grow);
            if *growable {
                let want = (high_water().max(slot + 1).max(64) as usize).next_power_of_two();
                match flat_array::<T>(want) {
                    Some(new) if new.holds(slot) => {
                        for i in 0..old.len() {
                            // SAFETY: `i` lies in both arrays; `old` is the current array,
                            // which only this thread replaces (the caller's promise), and no
                            // reset runs meanwhile (`grow` is held).
                            unsafe { new.cell(i).copy_from(old.cell(i)) };
                        }
                        crate::hooks::at(crate::hooks::Point::GrowAfterCopy);
                        self.flat.store(new);
                        if old.len() > 0 {
                            // SAFETY: made by `Box::into_raw` (`flat_array`), no longer
                            // current; readers that loaded it hold a `ReadGuard`.
                            let array = unsafe { Box::from_raw(old.array()) };
                            super::retire::retire(
                                old.array().cast::<u8>() as usize,
                                Box::new(array),
                            );
                        }
                        grew = Some(new);
                    }
                    other => {
                        // The word cannot describe a longer array: slots past this one go
                        // to the two-level array from now on.
                        if let Some(new) = other {
                            // SAFETY: made by `Box::into_raw` just now, never shared.
                            drop(unsafe { Box::from_raw(new.array()) });
                        }
                        *growable = false;
                    }
                }
            }
        }
        let flat = grew.unwrap_or(old);
        // SAFETY: the current array, which only this thread replaces (the caller's promise).
        let cell = match unsafe { flat.get(slot) } {
            Some(cell) => cell,
            None => self.rest.get_or_alloc(slot),
        };
        (cell, grew)
    }
}

impl<T> Drop for Cells<T> {
    fn drop(&mut self) {
        let flat = self.flat.load();
        if flat.len() > 0 {
            // SAFETY: made by `Box::into_raw` (`flat_array`); `&mut self`, so nothing reads it.
            drop(unsafe { Box::from_raw(flat.array()) });
        }
    }
}

/// A zeroed flat array of `len` cells, if `len` is not 0 and the word can describe it.
fn flat_array<T: ZeroIsValid>(len: usize) -> Option<Flat<T>> {
    if len == 0 {
        return None;
    }
    let array = Box::into_raw(zeroed_slice::<T>(len));
    let flat = Flat::new(array);
    if flat.is_none() {
        // SAFETY: made by `Box::into_raw` just above, never shared.
        drop(unsafe { Box::from_raw(array) });
    }
    flat
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering::*};

    use super::{Cells, Flat};
    use crate::local::retire::ReadGuard;

    /// `Cells::reach`, by the one thread of a test that grows its cells.
    fn reach(cells: &Cells<AtomicU64>, slot: u32) -> (&AtomicU64, Option<Flat<AtomicU64>>) {
        // SAFETY: in each test only one thread calls this on its cells, and it uses the cell
        // before its next call.
        unsafe { cells.reach(slot, || 0) }
    }

    /// The address of the array a flat word describes, as `retire` knows it.
    fn addr(flat: Flat<AtomicU64>) -> usize {
        flat.array().cast::<u8>() as usize
    }

    /// Cells whose array cannot grow keep slots past it in the two-level array, found there by
    /// the record's and the reader's path alike, and their flat array stays as it was.
    #[test]
    fn cells_that_cannot_grow_keep_later_slots_in_the_two_level_array() {
        let cells: &'static Cells<AtomicU64> = Box::leak(Box::new(Cells::new(64, false)));
        let before = addr(cells.flat());
        let (cell, grew) = reach(cells, 100);
        assert!(grew.is_none());
        cell.store(9, Relaxed);
        let (again, _) = reach(cells, 100);
        assert!(std::ptr::eq(cell, again));
        assert!(std::ptr::eq(
            cell,
            cells.rest.get(100).expect("in the two-level array")
        ));
        assert_eq!(addr(cells.flat()), before);
        let guard = ReadGuard::new();
        assert_eq!(cells.get(100, &guard).map(|c| c.load(Relaxed)), Some(9));
        cells.exclusive(100, |c| c.store(0, Relaxed));
        assert_eq!(cells.get(100, &guard).map(|c| c.load(Relaxed)), Some(0));
    }

    /// Growing, where the word can describe the arrays (64-bit targets).
    #[cfg(target_pointer_width = "64")]
    mod grow {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
        use std::sync::mpsc;
        use std::time::Duration;

        use super::super::Cells;
        use super::{addr, reach};
        use crate::hooks::{self, Point};
        use crate::local::retire::{is_retired, ReadGuard};

        /// Cells shared by the test's threads, which take turns: only one of them grows them.
        fn cells() -> &'static Cells<AtomicU64> {
            Box::leak(Box::new(Cells::new(64, true)))
        }

        /// A reader that loaded the word of an array which another thread then outgrows reads the
        /// old array's cell, still allocated and holding the value it had, and the array is freed
        /// only after the reader's guard is gone.
        #[test]
        fn an_outgrown_array_outlives_the_reader_that_loaded_it() {
            let cells = cells();
            // The grower thread below is the only one to grow the cells after this.
            reach(cells, 5).0.store(41, Relaxed);
            let old = cells.flat();
            let (go, orders) = mpsc::channel::<()>();
            let (grown, done) = mpsc::channel::<()>();
            let grower = std::thread::spawn(move || {
                orders.recv().unwrap();
                let (_, new) = reach(cells, 100);
                assert!(
                    new.is_some(),
                    "slot 100 lies past 64 cells: the array grows"
                );
                // The owner goes on recording into the new array.
                reach(cells, 5).0.store(42, Relaxed);
                grown.send(()).unwrap();
            });
            let mut once = true;
            hooks::set(move |p| {
                if p == Point::ReadAfterFlatLoad && std::mem::take(&mut once) {
                    go.send(()).unwrap();
                    done.recv().unwrap();
                }
            });
            let guard = ReadGuard::new();
            let read = cells.get(5, &guard).map(|c| c.load(Relaxed));
            hooks::clear();
            grower.join().unwrap();
            assert_eq!(read, Some(41), "the old array's cell, as the grow found it");
            assert_ne!(addr(cells.flat()), addr(old), "the array was replaced");
            assert!(
                is_retired(addr(old)),
                "the outgrown array was freed while a reader held a guard"
            );
            let fresh = ReadGuard::new();
            assert_eq!(cells.get(5, &fresh).map(|c| c.load(Relaxed)), Some(42));
            assert_eq!(cells.get(100, &fresh).map(|c| c.load(Relaxed)), Some(0));
            drop((guard, fresh));
        }

        /// Resetting a cell waits for a grow under way, so the reset lands in the array that stays:
        /// without the lock it would land in the outgrown one, and the copy would keep the value.
        #[test]
        fn a_reset_during_a_grow_lands_in_the_new_array() {
            let cells = cells();
            reach(cells, 7).0.store(41, Relaxed);
            let reset_done: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
            let mut resetter = None;
            hooks::set(move |p| {
                if p == Point::GrowAfterCopy && resetter.is_none() {
                    resetter = Some(std::thread::spawn(move || {
                        cells.exclusive(7, |c| c.store(0, Relaxed));
                        reset_done.store(true, Release);
                    }));
                    std::thread::sleep(Duration::from_millis(50));
                    assert!(!reset_done.load(Acquire), "the reset ran during the grow");
                }
            });
            let (_, new) = reach(cells, 200);
            hooks::clear();
            assert!(new.is_some());
            while !reset_done.load(Acquire) {
                std::thread::yield_now();
            }
            let guard = ReadGuard::new();
            assert_eq!(cells.get(7, &guard).map(|c| c.load(Relaxed)), Some(0));
        }

        /// Values survive every grow; a slot's cell is the same cell however it is reached.
        #[test]
        fn grows_keep_every_value() {
            let cells = cells();
            let mut grows = 0;
            for slot in 0..5000u32 {
                let (cell, grew) = reach(cells, slot);
                grows += usize::from(grew.is_some());
                cell.store(u64::from(slot) + 1, Relaxed);
            }
            // 64 → 128 → … → 8192.
            assert_eq!(grows, 7);
            assert_eq!(cells.flat().len(), 8192);
            let guard = ReadGuard::new();
            for slot in 0..5000u32 {
                let v = cells.get(slot, &guard).map(|c| c.load(Relaxed));
                assert_eq!(v, Some(u64::from(slot) + 1), "slot {slot}");
            }
            assert!(cells.get(8192, &guard).is_none());
        }
    }
}
