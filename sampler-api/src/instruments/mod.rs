//! Instruments: counters, gauges and timings that are samplers themselves, standalone or in
//! labelled families.
//!
//! Recording through a handle costs one thread-local load and a plain store into a cell only
//! the recording thread writes: no hashing, no allocation after the first record of a series
//! in a thread, no lock, no cache line shared with another thread (gauges, last-write-wins,
//! share one cell).

mod counter;
mod family;
#[cfg(test)]
pub(crate) use family::leased_here;
mod gauge;
mod timing;

pub use counter::{Counter, CounterFamily};
pub use family::{FamilyOptions, DEFAULT_LIMIT};
pub use gauge::{Gauge, GaugeFamily};
pub use timing::{Timing, TimingFamily, TimingGuard};

pub(crate) use family::FamilyInner;

/// The default timing scale: 8 buckets per power of two, quantile error at most 4.33 %
/// (the default schema of Prometheus native histograms).
pub const DEFAULT_SCALE: i8 = 3;

use std::sync::Arc;

/// What every handle holds: its family, its entry (for the handle count) and its slot.
pub(crate) struct Handle {
    family: Arc<FamilyInner>,
    entry: u32,
    slot: u32,
}

impl Handle {
    fn new(family: Arc<FamilyInner>, values: &[&str]) -> Self {
        // Found and held in one step under the family's lock: no removal comes between.
        let (entry, slot) = family.get(values);
        crate::hooks::at(crate::hooks::Point::HandleAfterLookup);
        Handle {
            family,
            entry,
            slot,
        }
    }
}

impl Clone for Handle {
    fn clone(&self) -> Self {
        self.family.retain(self.entry);
        Handle {
            family: self.family.clone(),
            entry: self.entry,
            slot: self.slot,
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.family.release(self.entry);
    }
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("metric", &crate::Sampler::name(&*self.family))
            .field("slot", &self.slot)
            .finish()
    }
}
