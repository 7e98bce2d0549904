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
    let flat = LOCAL.with(|l| l.counters.get());
    if flat.holds(slot) {
        // SAFETY: checked just above; this thread's current array.
        return add(unsafe { flat.cell(slot) }, n);
    }
    counter_add_slow(slot, n)
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

/// A record the flat array does not hold: the thread's first (no slab yet) or its first into
/// a slot made since its array was sized (the array grows), a thread being torn down (the
/// shared slab), or a slab whose array cannot grow (the two-level array).
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
    let flat = LOCAL.with(|l| l.hists.get());
    if !flat.holds(slot) {
        return timing_record_slow(slot, table, value);
    }
    // SAFETY: checked just above; this thread's current array.
    let h = unsafe { flat.cell(slot) }.load(Acquire);
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

/// A record the flat array does not hold (see `counter_add_slow`), or the slot's first in
/// this thread (no histogram yet).
#[cold]
#[inline(never)]
fn timing_record_slow(slot: u32, table: &'static IndexTable, value: f64) {
    let (h, shared) = own_hist(slot, table.scale());
    crate::hooks::at(crate::hooks::Point::TimingAfterHistLoad);
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
