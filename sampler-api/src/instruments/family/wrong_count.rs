//! Lookups with the wrong number of label values: they find no series and record into the
//! sink (which no harvest reads), are counted, and are said once per family on the event hook.

use std::sync::atomic::Ordering::Relaxed;

use super::FamilyInner;
use crate::event::{emit, Event};
use crate::family_error::LabelError;

/// The entry number such a lookup gets (no handle count covers it; its slot is the sink).
pub(super) const WRONG_COUNT: u32 = u32::MAX - 1;

impl FamilyInner {
    /// Counts a lookup of `got` label values where the family takes another number, and says
    /// so on the event hook the first time.
    #[cold]
    #[inline(never)]
    pub(super) fn wrong_count(&self, got: usize) {
        self.wrong_counts.fetch_add(1, Relaxed);
        if !self.wrong_count_said.swap(true, Relaxed) {
            emit(Event::WrongLabelCount {
                error: self.count_error(got),
            });
        }
    }

    /// The error for a lookup of `got` label values.
    pub(super) fn count_error(&self, got: usize) -> LabelError {
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        LabelError::wrong_count(self.descriptor.name(), &keys, got)
    }
}
