//! Slabs: one per recording thread, holding its cells; the pool that keeps them (a slab never
//! goes away, it goes back to the pool at thread exit and the next new thread takes it over,
//! values and all); and what a thread keeps at hand to reach its own.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};
use std::sync::Mutex;

use super::flat::Flat;
use super::hist::LocalHist;
use super::lock;
use super::read::timing_lock;
use super::storage::{CellValue, Cells};
use crate::descriptor::Kind;
use crate::lifecycle::{slots, Slots};

/// How many cells a new slab holds in its flat arrays for slots of one kind: room for every
/// slot handed out so far, rounded up to a power of two (at least 64).
fn flat_len(slots: &Slots) -> usize {
    (slots.high_water().max(64) as usize).next_power_of_two()
}

/// One thread's cells.
pub(crate) struct Slab {
    pub(super) counters: Cells<AtomicU64>,
    pub(super) hists: Cells<AtomicPtr<LocalHist>>,
    /// The shared slab for threads being torn down: updated with atomic RMW by anyone. It is
    /// never installed in `LOCAL`, so the inlined fast paths only ever see an owned slab.
    pub(super) shared: bool,
}

impl Slab {
    fn new(shared: bool) -> Self {
        // The shared slab is rarely used: everything goes to its two-level arrays.
        let flat = |slots| if shared { 0 } else { flat_len(slots) };
        Slab {
            counters: Cells::new(flat(slots(Kind::Counter)), !shared),
            hists: Cells::new(flat(slots(Kind::Timing)), !shared),
            shared,
        }
    }

    #[cold]
    fn alloc_hist(&self, cell: &AtomicPtr<LocalHist>, scale: i8) -> *mut LocalHist {
        let fresh = Box::into_raw(Box::new(LocalHist::new(scale)));
        match cell.compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire) {
            Ok(_) => fresh,
            Err(other) => {
                // SAFETY: `fresh` was never shared.
                drop(unsafe { Box::from_raw(fresh) });
                other
            }
        }
    }
}

/// This thread's slab and its cell of `slot` among the slab's `cells` (of `kind`), growing
/// that flat array to hold the slot (and setting the thread's word for it, `local`) or making
/// the cell's chunk; `f` gets the slab and the cell, and must not record: a record could grow
/// the array the cell lies in.
fn with_own_cell<T: CellValue, R>(
    slot: u32,
    kind: Kind,
    cells: fn(&Slab) -> &Cells<T>,
    local: fn(&Local) -> &Cell<Flat<T>>,
    f: impl FnOnce(&'static Slab, &T) -> R,
) -> R {
    let slab = slab();
    // SAFETY: `slab()` is this thread's own slab, or the shared one, whose cells never grow;
    // the cell is used only within this call, before this thread can grow the array again.
    let (cell, grew) = unsafe { cells(slab).reach(slot, || slots(kind).high_water()) };
    if let Some(flat) = grew {
        let _ = LOCAL.try_with(|l| local(l).set(flat));
    }
    f(slab, cell)
}

/// Runs `f` on this thread's cell of counter `slot` (see `with_own_cell`), with whether the
/// cell is in the shared slab (then others write it too).
pub(super) fn with_counter_cell(slot: u32, f: impl FnOnce(&AtomicU64, bool)) {
    with_own_cell(
        slot,
        Kind::Counter,
        |s| &s.counters,
        |l| &l.counters,
        |slab, cell| f(cell, slab.shared),
    )
}

/// This thread's histogram of timing `slot`, made at `scale` if it has none yet (its cell
/// reached as in `with_own_cell`), with whether it is in the shared slab (then others write it
/// too).
pub(super) fn own_hist(slot: u32, scale: i8) -> (&'static LocalHist, bool) {
    with_own_cell(
        slot,
        Kind::Timing,
        |s| &s.hists,
        |l| &l.hists,
        |slab, cell| {
            let mut h = cell.load(Acquire);
            if h.is_null() {
                h = slab.alloc_hist(cell, scale);
            }
            // SAFETY: a LocalHist pointer is freed only by `drop_hists`, under the timing lock,
            // for a slot nothing can reach any more (`lifecycle`); the caller can reach `slot`.
            (unsafe { &*h }, slab.shared)
        },
    )
}

/// The pool of slabs: every slab ever made, and the ones whose thread has exited.
struct Pool {
    all: Vec<&'static Slab>,
    free: Vec<&'static Slab>,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    all: Vec::new(),
    free: Vec::new(),
});

fn shared_slab() -> &'static Slab {
    static SHARED: std::sync::OnceLock<&'static Slab> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        let slab: &'static Slab = Box::leak(Box::new(Slab::new(true)));
        lock(&POOL).all.push(slab);
        slab
    })
}

/// What a thread keeps at hand: its slab and the flat arrays in it. All null and zero until
/// the thread's first record and again once the thread is being torn down, so that the fast
/// paths need no other check than the slot against the length. The flat arrays are the slab's
/// current ones: only this thread grows them, and sets them here when it does.
pub(super) struct Local {
    pub(super) slab: Cell<*const Slab>,
    pub(super) counters: Cell<Flat<AtomicU64>>,
    pub(super) hists: Cell<Flat<AtomicPtr<LocalHist>>>,
}

impl Local {
    const fn empty() -> Self {
        Local {
            slab: Cell::new(ptr::null()),
            counters: Cell::new(Flat::NONE),
            hists: Cell::new(Flat::NONE),
        }
    }

    fn install(&self, slab: &'static Slab) {
        self.slab.set(slab);
        self.counters.set(slab.counters.flat());
        self.hists.set(slab.hists.flat());
    }

    /// Forgets the slab and returns it.
    fn clear(&self) -> *const Slab {
        self.counters.set(Flat::NONE);
        self.hists.set(Flat::NONE);
        self.slab.replace(ptr::null())
    }
}

thread_local! {
    /// This thread's slab and flat arrays. It has no destructor, so reading it costs one
    /// thread-local load with no state check, even while the thread is exiting.
    pub(super) static LOCAL: Local = const { Local::empty() };
    /// Returns the slab to the pool when the thread exits.
    static GUARD: Guard = const { Guard };
}

struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        // Records made after this point (from other thread-local destructors) find no slab,
        // take the slow path, find the guard gone and add atomically into the shared slab.
        let _ = LOCAL.try_with(|local| {
            let p = local.clear();
            if !p.is_null() {
                // SAFETY: set by `take` from a leaked `&'static Slab`.
                lock(&POOL).free.push(unsafe { &*p });
            }
        });
    }
}

#[cold]
#[inline(never)]
fn take() -> &'static Slab {
    // Register the guard first; if this thread is already tearing down, use the shared slab.
    if GUARD.try_with(|_| ()).is_err() {
        return shared_slab();
    }
    let pooled = lock(&POOL).free.pop();
    let slab = pooled.unwrap_or_else(|| {
        // Made outside the pool lock, which every harvest takes. Slabs are leaked on purpose:
        // the harvest may read any slab at any time, and a pooled slab is handed to the next
        // new thread, so their number stays at the peak number of threads that recorded at once.
        let s: &'static Slab = Box::leak(Box::new(Slab::new(false)));
        lock(&POOL).all.push(s);
        s
    });
    let _ = LOCAL.try_with(|l| l.install(slab));
    slab
}

/// This thread's slab: its own, or the shared one while the thread is being torn down.
fn slab() -> &'static Slab {
    let p = LOCAL.with(|l| l.slab.get());
    if p.is_null() {
        return take();
    }
    // SAFETY: set by `Local::install` from a leaked `&'static Slab`.
    unsafe { &*p }
}

/// Every slab ever made.
pub(super) fn slabs() -> Vec<&'static Slab> {
    lock(&POOL).all.clone()
}

/// Zeroes counter slot `slot` in every slab. Only for a slot nothing can reach
/// (`lifecycle::free_slot`): no thread writes its cell meanwhile.
pub(crate) fn zero_counter(slot: u32) {
    for s in slabs() {
        s.counters.exclusive(slot, |c| c.store(0, Relaxed));
    }
}

/// Drops timing slot `slot`'s histograms in every slab. Only for a slot nothing can reach
/// (`lifecycle::free_slot`); under the timing lock, so no reader holds one.
pub(crate) fn drop_hists(slot: u32) {
    let _g = timing_lock();
    for s in slabs() {
        s.hists.exclusive(slot, |c| {
            let p = c.swap(ptr::null_mut(), AcqRel);
            if !p.is_null() {
                // SAFETY: allocated by `alloc_hist`; swapped out under the timing lock, so no
                // reader holds it, and nothing can record into this slot any more.
                drop(unsafe { Box::from_raw(p) });
            }
        });
    }
}
