//! The overflow series: where lookups past the cardinality limit record.

use super::FamilyInner;
use crate::lifecycle::{slots, SINK};

impl FamilyInner {
    /// The overflow series' slot: its own, made on first use and kept as long as the family.
    /// With no slot left anywhere, the sink, which no series owns and no harvest reads (the
    /// lookups still count in `sampler.family.overflow`): never a slot another series owns.
    pub(super) fn overflow_slot(&self) -> u32 {
        {
            let t = self.read();
            if let Some(e) = t.overflow {
                return t.entry(e).slot;
            }
        }
        let mut t = self.write();
        if let Some(e) = t.overflow {
            return t.entry(e).slot;
        }
        match slots(self.kind()).alloc() {
            Some(slot) => {
                t.push_overflow(self.new_entry(slot));
                drop(t);
                // Said once per family: the overflow series is made once.
                crate::event::emit(crate::event::Event::FamilyFull {
                    metric: self.descriptor.name().to_owned(),
                    limit: self.options.limit,
                });
                slot
            }
            None => SINK,
        }
    }
}
