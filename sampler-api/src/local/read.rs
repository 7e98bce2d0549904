//! Reading: exact totals of counter slots and merged distributions of timing slots, over every
//! slab; and the lock that keeps histograms from being freed while they are read.

use std::sync::atomic::Ordering::*;
use std::sync::{Mutex, MutexGuard};

use super::lock;
use super::retire::ReadGuard;
use super::slab::{slabs, Slab};
use crate::distribution::Distribution;

/// Serialises reading timing histograms with freeing them.
static TIMING_LOCK: Mutex<()> = Mutex::new(());

/// Proof that the timing lock is held.
pub(crate) struct TimingGuard<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

pub(crate) fn timing_lock() -> TimingGuard<'static> {
    TimingGuard(lock(&TIMING_LOCK))
}

/// Every slab, for reading many slots at once; while it lives, no outgrown flat array is
/// freed (`retire`).
pub(crate) struct Reader {
    slabs: Vec<&'static Slab>,
    guard: ReadGuard,
}

impl Reader {
    pub(crate) fn new() -> Self {
        let guard = ReadGuard::new();
        Reader {
            slabs: slabs(),
            guard,
        }
    }

    /// The exact total of counter slot `slot` over all threads.
    pub(crate) fn counter(&self, slot: u32) -> u64 {
        self.slabs.iter().fold(0u64, |acc, s| {
            acc.wrapping_add(
                s.counters
                    .get(slot, &self.guard)
                    .map_or(0, |c| c.load(Relaxed)),
            )
        })
    }

    /// The merged distribution of timing slot `slot`. The caller holds `timing_lock()`.
    pub(crate) fn timing(&self, slot: u32, scale: i8, _guard: &TimingGuard<'_>) -> Distribution {
        let mut d = Distribution::new(scale);
        let (mut sum, mut min, mut max, mut zero) = (0.0, f64::INFINITY, f64::NEG_INFINITY, 0);
        for s in &self.slabs {
            let Some(cell) = s.hists.get(slot, &self.guard) else {
                continue;
            };
            let h = cell.load(Acquire);
            if h.is_null() {
                continue;
            }
            // SAFETY: freed only under the timing lock, which the caller holds (`_guard`).
            let h = unsafe { &*h };
            h.merge_into(&mut d);
            sum += h.sum();
            zero += h.zeros();
            let (lo, hi) = h.min_max_bits();
            let (lo, hi) = (f64::from_bits(lo), f64::from_bits(hi));
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
