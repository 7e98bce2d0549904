//! Gauge cells: one shared `f64` per gauge slot (a gauge is last-write-wins, so one cell).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::storage::Stable;

/// The cell of gauge slot `slot` (cells never move or go away).
pub(crate) fn gauge_cell(slot: u32) -> &'static AtomicU64 {
    static GAUGES: std::sync::OnceLock<Box<Stable<AtomicU64>>> = std::sync::OnceLock::new();
    GAUGES.get_or_init(Stable::boxed).get_or_alloc(slot)
}

/// Sets gauge slot `slot` back to 0. Only for a slot nothing can reach
/// (`lifecycle::free_slot`).
pub(crate) fn reset_gauge(slot: u32) {
    gauge_cell(slot).store(0f64.to_bits(), Relaxed);
}
