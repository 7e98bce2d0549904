//! The record paths: a counter add and a timing record into this thread's cell, fast paths
//! inlined into the caller, everything else out of line.
//!
//! The caller can reach `slot` (`lifecycle`): through a handle, a leased cache line or a pin.

use std::sync::atomic::{AtomicU64, Ordering::*};

use super::hist::Position;
use super::slab::{own_hist, with_counter_cell, LOCAL};
use crate::distribution::IndexTable;

/// Adds `n` to counter slot `slot` in this thread's cell.
#[inline(always)]
pub(crate) fn counter_add(slot: u32, n: u64) {
    let (flat, slab) = LOCAL.with(|l| (l.counters.get(), l.slab.get()));
    if flat.holds(slot) {
        // SAFETY: checked just above.
        return add(unsafe { flat.cell(slot) }, n);
    }
    // A slot past the flat array, which has not grown to hold it yet (the slow path grows it),
    // or in the two-level array where the array cannot grow, when its chunk exists.
    // SAFETY: a non-null `slab` was installed from a leaked `&'static Slab`.
    match unsafe { slab.as_ref() }.and_then(|s| s.counters.rest.get(slot)) {
        Some(cell) => add(cell, n),
        None => counter_add_slow(slot, n),
    }
}

/// Adds `n` to a cell of this thread's own slab.
///
/// Only this slab's owner thread writes here (besides zeroing of freed slots, which nothing
/// can reach), so a plain load and store cannot lose an update and no locked instruction is
/// needed. (Each path that found its cell adds on its own: with one add after both, the
/// compiler joined them and the usual one paid a jump.)
#[inline(always)]
fn add(cell: &AtomicU64, n: u64) {
    cell.store(cell.load(Relaxed).wrapping_add(n), Relaxed);
}

#[cold]
#[inline(never)]
fn counter_add_slow(slot: u32, n: u64) {
    with_counter_cell(slot, |cell, shared| {
        if shared {
            cell.fetch_add(n, Relaxed);
        } else {
            add(cell, n);
        }
    });
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
    let (flat, slab) = LOCAL.with(|l| (l.hists.get(), l.slab.get()));
    let cell = if flat.holds(slot) {
        // SAFETY: checked just above.
        unsafe { flat.cell(slot) }
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
    // SAFETY: a LocalHist pointer is freed only by `drop_hists`, for a slot nothing can reach
    // any more (`lifecycle`); the caller can reach `slot`.
    let h = unsafe { &*h };
    crate::hooks::at(crate::hooks::Point::TimingAfterHistLoad);
    if value > 0.0 {
        h.record_positive(pos, value);
    } else {
        h.record_zero(value, false);
    }
}

#[cold]
#[inline(never)]
fn timing_record_slow(slot: u32, table: &'static IndexTable, value: f64) {
    let (h, shared) = own_hist(slot, table.scale());
    if value.is_nan() || value <= 0.0 {
        return h.record_zero(value, shared);
    }
    let pos = Position::of(table, value, table.scale());
    if shared {
        h.bump_atomic(h.bucket(pos), value);
    } else {
        h.record_positive(pos, value);
    }
}
