//! Where instrument values live: per-thread slabs for counters and timings, one shared array
//! for gauges, and the slot allocators behind them.
//!
//! Every counter and timing series owns a *slot* number. Each recording thread owns a slab with
//! one cell per slot: the slots that existed when the slab was made sit in flat arrays whose
//! start and length the thread keeps in a thread-local, so a counter add is a compare and an add
//! into the cell; later slots sit in lazily filled two-level arrays. A thread adds into its own
//! cell with a plain load and store (no locked instruction, no cache line shared with another
//! thread); the harvest sums the cells of all slabs. A slab never goes away: when its thread exits it goes
//! back to a pool and the next new thread takes it over, values and all, so totals stay exact.
//! Recording that happens while a thread is being torn down (its slab already returned) goes to
//! one shared slab updated with atomic read-modify-write instead.

use std::cell::Cell;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};
use std::sync::{Mutex, MutexGuard};

use crate::distribution::{Distribution, IndexTable};

/// Cells per chunk.
const CHUNK: usize = 1024;
/// Chunks per directory: 1024 × 1024 = 1,048,576 slots of each kind.
const DIR: usize = 1024;
/// Slots of each kind a process can hold at once.
pub(crate) const MAX_SLOTS: u32 = (CHUNK * DIR) as u32;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere while holding one of these locks leaves consistent data behind (every
    // update under them is a single push, pop or store), so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A lazily allocated two-level array whose elements never move. The directory is inline, so
/// reaching a cell costs one load for the chunk pointer and one for the cell.
struct Stable<T> {
    dir: [AtomicPtr<[T; CHUNK]>; DIR],
}

impl<T: Default> Stable<T> {
    fn new() -> Self {
        Stable {
            dir: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    fn boxed() -> Box<Self> {
        Box::new(Self::new())
    }

    /// The element at `i`, if its chunk exists.
    #[inline(always)]
    fn get(&self, i: u32) -> Option<&T> {
        let i = i as usize;
        let chunk = self.dir[(i / CHUNK) % DIR].load(Acquire);
        // SAFETY: a non-null chunk pointer came from `Box::into_raw` in `get_or_alloc` and is
        // freed only in `Drop`, which needs `&mut self`; `i % CHUNK` is in bounds.
        (!chunk.is_null()).then(|| unsafe { &(*chunk)[i % CHUNK] })
    }

    /// The element at `i`, allocating its chunk on first use.
    #[cold]
    #[inline(never)]
    fn get_or_alloc(&self, i: u32) -> &T {
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
unsafe trait ZeroIsValid {}
// SAFETY: an all-zero `AtomicU64` is 0 and an all-zero `AtomicPtr` is null.
unsafe impl ZeroIsValid for AtomicU64 {}
// SAFETY: as above.
unsafe impl<T> ZeroIsValid for AtomicPtr<T> {}

/// One thread's cells of one kind: slots below `flat.len()` in one array allocated with the
/// slab (reached with a single load from a pointer the thread keeps at hand), slots created
/// later in a lazily filled two-level array.
struct Cells<T> {
    flat: Box<[T]>,
    rest: Stable<T>,
}

impl<T: Default + ZeroIsValid> Cells<T> {
    fn new(flat_len: usize) -> Self {
        Cells {
            flat: zeroed_slice(flat_len),
            rest: Stable::new(),
        }
    }

    /// The cell of `slot`, if it exists yet.
    #[inline]
    fn get(&self, slot: u32) -> Option<&T> {
        self.flat.get(slot as usize).or_else(|| self.rest.get(slot))
    }

    /// The cell of `slot`, allocating its chunk on first use.
    fn get_or_alloc(&self, slot: u32) -> &T {
        match self.flat.get(slot as usize) {
            Some(c) => c,
            None => self.rest.get_or_alloc(slot),
        }
    }

    /// The flat array's start and length, for [`Local`].
    fn flat_parts(&self) -> (*const T, u32) {
        (self.flat.as_ptr(), self.flat.len() as u32)
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

/// How many cells a new slab holds in its flat arrays for slots of one kind: room for every
/// slot handed out so far, rounded up to a power of two (at least 64).
fn flat_len(slots: &Slots) -> usize {
    (slots.high_water().max(64) as usize).next_power_of_two()
}

/// One thread's cells.
pub(crate) struct Slab {
    counters: Cells<AtomicU64>,
    hists: Cells<AtomicPtr<LocalHist>>,
    /// The shared slab for threads being torn down: updated with atomic RMW by anyone. It is
    /// never installed in `LOCAL`, so the inlined fast paths only ever see an owned slab.
    shared: bool,
}

impl Slab {
    fn new(shared: bool) -> Self {
        // The shared slab is rarely used: everything goes to its two-level arrays.
        let flat = |slots| if shared { 0 } else { flat_len(slots) };
        Slab {
            counters: Cells::new(flat(&COUNTER_SLOTS)),
            hists: Cells::new(flat(&TIMING_SLOTS)),
            shared,
        }
    }

    fn hist(&self, slot: u32, scale: i8) -> &LocalHist {
        let cell = self.hists.get_or_alloc(slot);
        let mut h = cell.load(Acquire);
        if h.is_null() {
            h = self.alloc_hist(cell, scale);
        }
        // SAFETY: a LocalHist pointer is freed only by `free_timing_slot`, under TIMING_LOCK,
        // for a slot that no handle refers to any more; the caller holds a handle to `slot`.
        unsafe { &*h }
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
/// paths need no other check than the slot against the length.
struct Local {
    slab: Cell<*const Slab>,
    counters: Cell<*const AtomicU64>,
    counters_len: Cell<u32>,
    hists: Cell<*const AtomicPtr<LocalHist>>,
    hists_len: Cell<u32>,
}

impl Local {
    const fn empty() -> Self {
        Local {
            slab: Cell::new(ptr::null()),
            counters: Cell::new(ptr::null()),
            counters_len: Cell::new(0),
            hists: Cell::new(ptr::null()),
            hists_len: Cell::new(0),
        }
    }

    fn install(&self, slab: &'static Slab) {
        let (c, c_len) = slab.counters.flat_parts();
        let (h, h_len) = slab.hists.flat_parts();
        self.slab.set(slab);
        self.counters.set(c);
        self.counters_len.set(c_len);
        self.hists.set(h);
        self.hists_len.set(h_len);
    }

    /// Forgets the slab and returns it.
    fn clear(&self) -> *const Slab {
        self.counters_len.set(0);
        self.hists_len.set(0);
        self.counters.set(ptr::null());
        self.hists.set(ptr::null());
        self.slab.replace(ptr::null())
    }
}

thread_local! {
    /// This thread's slab and flat arrays. It has no destructor, so reading it costs one
    /// thread-local load with no state check, even while the thread is exiting.
    static LOCAL: Local = const { Local::empty() };
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

/// Adds `n` to counter slot `slot` in this thread's cell.
#[inline(always)]
pub(crate) fn counter_add(slot: u32, n: u64) {
    let (flat, len, slab) = LOCAL.with(|l| (l.counters.get(), l.counters_len.get(), l.slab.get()));
    let cell = if slot < len {
        // SAFETY: `flat` and `len` were installed together from the slab's flat array, which
        // lives for ever (slabs are leaked), and `slot < len`.
        unsafe { &*flat.add(slot as usize) }
    } else {
        // A slot made after this thread's slab: in the two-level array, when its chunk exists.
        // SAFETY: a non-null `slab` was installed from a leaked `&'static Slab`.
        match unsafe { slab.as_ref() }.and_then(|s| s.counters.rest.get(slot)) {
            Some(cell) => cell,
            None => return counter_add_slow(slot, n),
        }
    };
    // Only this slab's owner thread writes here (besides zeroing of unused slots), so a plain
    // load and store cannot lose an update and no locked instruction is needed.
    cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed);
}

#[cold]
#[inline(never)]
fn counter_add_slow(slot: u32, n: u64) {
    let slab = slab();
    let cell = slab.counters.get_or_alloc(slot);
    if slab.shared {
        cell.fetch_add(n, Relaxed);
    } else {
        cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// Records `value` into timing slot `slot` in this thread's histogram at `table`'s scale.
#[inline(always)]
pub(crate) fn timing_record(slot: u32, table: &'static IndexTable, value: f64) {
    // The default scale gets a copy of the record with its shifts as constants (measured:
    // variable shifts and masks made up a good part of a record's time).
    if table.scale() == crate::instruments::DEFAULT_SCALE {
        timing_record_at(slot, table, value, crate::instruments::DEFAULT_SCALE);
    } else {
        timing_record_at(slot, table, value, table.scale());
    }
}

/// [`timing_record`], given `table`'s scale.
#[inline(always)]
fn timing_record_at(slot: u32, table: &'static IndexTable, value: f64, scale: i8) {
    // The bucket's position depends only on the value and the scale, so it is found while the
    // loads that reach this thread's histogram are still on their way.
    let pos = Position::of(table, value, scale);
    let (flat, len, slab) = LOCAL.with(|l| (l.hists.get(), l.hists_len.get(), l.slab.get()));
    let cell = if slot < len {
        // SAFETY: as in `counter_add`.
        unsafe { &*flat.add(slot as usize) }
    } else {
        // SAFETY: as in `counter_add`.
        match unsafe { slab.as_ref() }.and_then(|s| s.hists.rest.get(slot)) {
            Some(cell) => cell,
            None => return timing_record_slow(slot, table, value),
        }
    };
    let h = cell.load(Acquire);
    if h.is_null() {
        return timing_record_slow(slot, table, value);
    }
    // SAFETY: a LocalHist pointer is freed only by `free_timing_slot`, under TIMING_LOCK, for
    // a slot that no handle refers to any more; the caller holds a handle to `slot`.
    let h = unsafe { &*h };
    if value > 0.0 {
        h.record_positive(pos, value);
    } else {
        h.record_zero(value, false);
    }
}

#[cold]
#[inline(never)]
fn timing_record_slow(slot: u32, table: &'static IndexTable, value: f64) {
    let slab = slab();
    let h = slab.hist(slot, table.scale());
    if value.is_nan() || value <= 0.0 {
        return h.record_zero(value, slab.shared);
    }
    let pos = Position::of(table, value, table.scale());
    if slab.shared {
        h.bump_atomic(h.bucket(pos), value);
    } else {
        h.record_positive(pos, value);
    }
}

fn slabs() -> Vec<&'static Slab> {
    lock(&POOL).all.clone()
}

/// Every slab, for reading many slots at once.
pub(crate) struct Reader {
    slabs: Vec<&'static Slab>,
}

impl Reader {
    pub(crate) fn new() -> Self {
        Reader { slabs: slabs() }
    }

    /// The exact total of counter slot `slot` over all threads.
    pub(crate) fn counter(&self, slot: u32) -> u64 {
        self.slabs.iter().fold(0u64, |acc, s| {
            acc.wrapping_add(s.counters.get(slot).map_or(0, |c| c.load(Relaxed)))
        })
    }

    /// The merged distribution of timing slot `slot`. The caller holds `timing_lock()`.
    pub(crate) fn timing(&self, slot: u32, scale: i8, _guard: &TimingGuard<'_>) -> Distribution {
        let mut d = Distribution::new(scale);
        let (mut sum, mut min, mut max, mut zero) = (0.0, f64::INFINITY, f64::NEG_INFINITY, 0);
        for s in &self.slabs {
            let Some(cell) = s.hists.get(slot) else {
                continue;
            };
            let h = cell.load(Acquire);
            if h.is_null() {
                continue;
            }
            // SAFETY: freed only under TIMING_LOCK, which the caller holds (`_guard`).
            let h = unsafe { &*h };
            h.merge_into(&mut d);
            sum += h.sum();
            zero += h.zero.load(Relaxed);
            let (lo, hi) = (
                f64::from_bits(h.min.load(Relaxed)),
                f64::from_bits(h.max.load(Relaxed)),
            );
            if lo <= hi {
                min = min.min(lo);
                max = max.max(hi);
            }
        }
        d.set_totals(sum, min, max, zero);
        if d.count() == 0 {
            d.set_totals(0.0, f64::INFINITY, f64::NEG_INFINITY, 0);
        }
        d
    }
}

/// Bucket groups per histogram. At scale `s` the index range `[-64·2^s, 64·2^s)` (values from
/// 2^-64 to 2^64) splits into 16 groups of `8·2^s` buckets (8 powers of two each: 512 bytes at
/// the default scale 3), allocated on first use. The group pointers sit inside the histogram,
/// so a record reaches its bucket with two loads once it has the histogram.
const GROUPS: usize = 16;

/// Where a positive value's bucket lives in a [`LocalHist`] of the table's scale.
#[derive(Clone, Copy)]
struct Position {
    /// The bucket index plus `64 << scale`, clamped to `0..128 << scale`.
    pos: usize,
    /// log2 of the buckets per group: `3 + scale`.
    shift: u32,
}

impl Position {
    /// The position of `value` in a histogram of `table`'s scale, which is `scale`.
    #[inline(always)]
    fn of(table: &IndexTable, value: f64, scale: i8) -> Self {
        let r = 64i32 << scale;
        Position {
            // `max`/`min` rather than `clamp`: the bounds are always ordered, and `clamp` would
            // check that on every record.
            pos: (table.index_at(value, scale).max(-r).min(r - 1) + r) as usize,
            shift: 3 + scale as u32,
        }
    }
}

pub(crate) struct LocalHist {
    /// The sum, spread over four lanes picked by the value's lowest bits: a floating-point add
    /// to memory is a long dependency chain, and lanes let consecutive records overlap (the
    /// harvest adds them up).
    sums: [AtomicU64; 4],
    min: AtomicU64,
    max: AtomicU64,
    zero: AtomicU64,
    /// log2 of the buckets per group: `3 + scale`.
    shift: u32,
    /// Each a boxed slice of `1 << shift` cells, or null.
    groups: [AtomicPtr<AtomicU64>; GROUPS],
}

impl LocalHist {
    fn new(scale: i8) -> Self {
        let scale = scale.clamp(0, crate::distribution::MAX_SCALE);
        LocalHist {
            sums: std::array::from_fn(|_| AtomicU64::new(0f64.to_bits())),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            // Values are never negative, and the bits of non-negative floats order like the
            // floats themselves, so the integer min/max of the bits is the float min/max.
            max: AtomicU64::new(0),
            zero: AtomicU64::new(0),
            shift: 3 + scale as u32,
            groups: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    fn group_len(&self) -> usize {
        1 << self.shift
    }

    /// `64 << scale` (`GROUPS << shift` positions, half of them below bucket 0): bucket index
    /// `i` lives at position `i + range`.
    fn range(&self) -> i32 {
        (GROUPS << self.shift) as i32 / 2
    }

    /// The cell at `at` (found with this histogram's scale), allocating its group.
    #[inline(always)]
    fn bucket(&self, at: Position) -> &AtomicU64 {
        debug_assert_eq!(at.shift, self.shift);
        // `pos < 128 << scale = GROUPS << shift`, so the group index is in bounds.
        let g = &self.groups[(at.pos >> at.shift) % GROUPS];
        let mut p = g.load(Acquire);
        if p.is_null() {
            p = alloc_group(g, self.group_len());
        }
        // SAFETY: a group holds `1 << shift` cells and lives as long as the histogram (see
        // `Slab::hist`); the offset is below `1 << shift`.
        unsafe { &*p.add(at.pos & ((1 << at.shift) - 1)) }
    }

    /// Records a positive `value` whose bucket is at `at`, by this slab's owner thread.
    #[inline(always)]
    fn record_positive(&self, at: Position, value: f64) {
        let bits = value.to_bits();
        // Owner-only cells: plain loads and stores (see `counter_add`). The fixed cells are
        // read before the bucket is written: the bucket's address is known last, and loads
        // placed after its store were measured to stall behind it.
        let sum = &self.sums[bits as usize % 4];
        let s = f64::from_bits(sum.load(Relaxed)) + value;
        let (lo, hi) = (self.min.load(Relaxed), self.max.load(Relaxed));
        let cell = self.bucket(at);
        sum.store(s.to_bits(), Relaxed);
        if bits < lo {
            self.min.store(bits, Relaxed);
        }
        if bits > hi {
            self.max.store(bits, Relaxed);
        }
        cell.store(cell.load(Relaxed) + 1, Relaxed);
    }

    /// Records zero, a negative value (as zero) or NaN (ignored).
    #[cold]
    #[inline(never)]
    fn record_zero(&self, value: f64, shared: bool) {
        if value.is_nan() {
            return;
        }
        if shared {
            self.bump_atomic(&self.zero, 0.0);
        } else {
            self.zero.store(self.zero.load(Relaxed) + 1, Relaxed);
            // Zero's bits are 0, the least of any value's.
            self.min.store(0, Relaxed);
        }
    }

    /// Records into `cell` with atomic read-modify-writes (the shared slab).
    fn bump_atomic(&self, cell: &AtomicU64, value: f64) {
        let bits = value.to_bits();
        cell.fetch_add(1, Relaxed);
        let _ = self.sums[bits as usize % 4].fetch_update(Relaxed, Relaxed, |s| {
            Some((f64::from_bits(s) + value).to_bits())
        });
        self.min.fetch_min(bits, Relaxed);
        self.max.fetch_max(bits, Relaxed);
    }

    fn sum(&self) -> f64 {
        self.sums
            .iter()
            .map(|s| f64::from_bits(s.load(Relaxed)))
            .sum()
    }

    fn merge_into(&self, d: &mut Distribution) {
        let r = self.range();
        for (gi, g) in self.groups.iter().enumerate() {
            let p = g.load(Acquire);
            if p.is_null() {
                continue;
            }
            // SAFETY: as in `bucket`.
            let cells = unsafe { std::slice::from_raw_parts(p, self.group_len()) };
            for (ci, c) in cells.iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    d.add_to_bucket(((gi << self.shift) + ci) as i32 - r, n);
                }
            }
        }
    }
}

#[cold]
fn alloc_group(g: &AtomicPtr<AtomicU64>, len: usize) -> *mut AtomicU64 {
    let fresh: Box<[AtomicU64]> = (0..len).map(|_| AtomicU64::new(0)).collect();
    let fresh = Box::into_raw(fresh) as *mut AtomicU64;
    match g.compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire) {
        Ok(_) => fresh,
        Err(other) => {
            // SAFETY: `fresh` came from a boxed slice of `len` cells just above, never shared.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, len)) });
            other
        }
    }
}

impl Drop for LocalHist {
    fn drop(&mut self) {
        let len = self.group_len();
        for g in self.groups.iter() {
            let p = g.load(Acquire);
            if !p.is_null() {
                // SAFETY: allocated by `alloc_group` as a boxed slice of `len` cells; dropped
                // once, here.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, len)) });
            }
        }
    }
}

/// Serialises reading timing histograms with freeing them.
static TIMING_LOCK: Mutex<()> = Mutex::new(());

/// Proof that `TIMING_LOCK` is held.
pub(crate) struct TimingGuard<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

pub(crate) fn timing_lock() -> TimingGuard<'static> {
    TimingGuard(lock(&TIMING_LOCK))
}

/// Hands out slot numbers of one kind and takes them back.
pub(crate) struct Slots {
    inner: Mutex<(u32, Vec<u32>)>,
}

impl Slots {
    pub(crate) const fn new() -> Self {
        Slots {
            inner: Mutex::new((0, Vec::new())),
        }
    }

    /// One more than the highest slot ever handed out.
    fn high_water(&self) -> u32 {
        lock(&self.inner).0
    }

    pub(crate) fn alloc(&self) -> Option<u32> {
        let mut g = lock(&self.inner);
        if let Some(s) = g.1.pop() {
            return Some(s);
        }
        if g.0 >= MAX_SLOTS {
            return None;
        }
        g.0 += 1;
        Some(g.0 - 1)
    }

    fn release(&self, slot: u32) {
        lock(&self.inner).1.push(slot);
    }
}

pub(crate) static COUNTER_SLOTS: Slots = Slots::new();
pub(crate) static GAUGE_SLOTS: Slots = Slots::new();
pub(crate) static TIMING_SLOTS: Slots = Slots::new();

/// Zeroes a counter slot in every slab and makes it reusable. No handle may refer to it.
pub(crate) fn free_counter_slot(slot: u32) {
    for s in slabs() {
        if let Some(c) = s.counters.get(slot) {
            c.store(0, Relaxed);
        }
    }
    COUNTER_SLOTS.release(slot);
}

/// Frees a timing slot's histograms in every slab and makes it reusable. No handle may refer
/// to it.
pub(crate) fn free_timing_slot(slot: u32) {
    let _g = timing_lock();
    for s in slabs() {
        if let Some(c) = s.hists.get(slot) {
            let p = c.swap(ptr::null_mut(), AcqRel);
            if !p.is_null() {
                // SAFETY: allocated by `alloc_hist`; swapped out under TIMING_LOCK, so no
                // reader holds it, and no recorder holds a handle to this slot.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
    TIMING_SLOTS.release(slot);
}

/// Gauge cells: one shared `f64` per gauge slot (a gauge is last-write-wins, so one cell).
pub(crate) fn gauge_cell(slot: u32) -> &'static AtomicU64 {
    static GAUGES: std::sync::OnceLock<Box<Stable<AtomicU64>>> = std::sync::OnceLock::new();
    GAUGES.get_or_init(Stable::boxed).get_or_alloc(slot)
}

pub(crate) fn free_gauge_slot(slot: u32) {
    gauge_cell(slot).store(0f64.to_bits(), Relaxed);
    GAUGE_SLOTS.release(slot);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::index_table;

    #[test]
    fn counters_sum_across_threads_and_exits() {
        let slot = COUNTER_SLOTS.alloc().unwrap();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        counter_add(slot, 1);
                    }
                });
            }
        });
        // Threads have exited; their slabs are pooled, values kept.
        assert_eq!(Reader::new().counter(slot), 40_000);
        std::thread::spawn(move || counter_add(slot, 5))
            .join()
            .unwrap();
        assert_eq!(Reader::new().counter(slot), 40_005);
        free_counter_slot(slot);
    }

    #[test]
    fn timing_merges() {
        let slot = TIMING_SLOTS.alloc().unwrap();
        for v in [0.0, 0.5, 1.0, 2.0, 1e30] {
            timing_record(slot, index_table(3), v);
        }
        let g = timing_lock();
        let d = Reader::new().timing(slot, 3, &g);
        drop(g);
        assert_eq!(d.count(), 5);
        assert_eq!(d.zero_count(), 1);
        assert_eq!(d.max(), 1e30);
        assert_eq!(d.min(), 0.0);
        free_timing_slot(slot);
    }

    #[test]
    fn records_from_thread_local_destructors_are_kept() {
        // A thread-local whose destructor records after this module's guard has returned the
        // thread's slab to the pool: the records go to the shared slab, none is lost.
        struct Late(u32, u32);
        impl Drop for Late {
            fn drop(&mut self) {
                counter_add(self.0, 7);
                for v in [0.25, 0.0, -1.0, f64::NAN, 1e300] {
                    timing_record(self.1, index_table(3), v);
                }
            }
        }
        thread_local! {
            static LATE: std::cell::RefCell<Option<Late>> = const { std::cell::RefCell::new(None) };
        }
        let (c, t) = (
            COUNTER_SLOTS.alloc().unwrap(),
            TIMING_SLOTS.alloc().unwrap(),
        );
        std::thread::spawn(move || {
            // Registered before the guard, so destroyed after it (destructors run in reverse).
            LATE.with(|l| *l.borrow_mut() = Some(Late(c, t)));
            counter_add(c, 1);
            timing_record(t, index_table(3), 0.5);
        })
        .join()
        .unwrap();
        assert_eq!(Reader::new().counter(c), 8);
        let g = timing_lock();
        let d = Reader::new().timing(t, 3, &g);
        drop(g);
        // 0.5, 0.25, 1e300 in buckets; 0.0 and -1.0 as zeros; NaN ignored.
        assert_eq!((d.count(), d.zero_count()), (5, 2));
        assert_eq!((d.min(), d.max()), (0.0, 1e300));
        assert_eq!(d.sum(), 0.75 + 1e300);
        free_counter_slot(c);
        free_timing_slot(t);
    }

    #[test]
    fn slots_past_the_flat_arrays_are_counted() {
        std::thread::spawn(|| {
            // The first record makes this thread's slab; then take slots until some lie past
            // its flat arrays, which were sized when it was made.
            let first = COUNTER_SLOTS.alloc().unwrap();
            counter_add(first, 1);
            let (c_len, h_len) = LOCAL.with(|l| (l.counters_len.get(), l.hists_len.get()));
            let (mut counters, mut timings) = (vec![first], vec![TIMING_SLOTS.alloc().unwrap()]);
            while *counters.last().unwrap() < c_len {
                counters.push(COUNTER_SLOTS.alloc().unwrap());
            }
            while *timings.last().unwrap() < h_len {
                timings.push(TIMING_SLOTS.alloc().unwrap());
            }
            let (c, t) = (*counters.last().unwrap(), *timings.last().unwrap());
            counter_add(c, 3);
            counter_add(c, 4);
            timing_record(t, index_table(3), 2.0);
            timing_record(t, index_table(3), 0.0);
            assert_eq!(Reader::new().counter(c), 7);
            let g = timing_lock();
            let d = Reader::new().timing(t, 3, &g);
            drop(g);
            assert_eq!((d.count(), d.zero_count(), d.max()), (2, 1, 2.0));
            // Freed and reused, a slot past the flat array starts from zero again.
            free_counter_slot(c);
            assert_eq!(Reader::new().counter(c), 0);
            counters.pop();
            counters.into_iter().for_each(free_counter_slot);
            timings.into_iter().for_each(free_timing_slot);
        })
        .join()
        .unwrap();
    }
}
