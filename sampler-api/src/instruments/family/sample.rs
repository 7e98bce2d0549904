//! A family's harvest: frees retired slots nothing can reach, reads every series, expires the
//! idle ones and reports the overflow count and lookups with the wrong number of values.

use std::sync::atomic::Ordering::Relaxed;

use super::expiry::Expiry;
use super::FamilyInner;
use crate::descriptor::{Descriptor, Kind};
use crate::lifecycle::{board, free_slot};
use crate::local::{self, Reader};
use crate::sampler::{Sampler, Writer};
use crate::snapshot::{SeriesId, Value};

impl FamilyInner {
    fn read_value(
        &self,
        reader: &Reader,
        slot: u32,
        timing: Option<&local::TimingGuard<'_>>,
    ) -> Value {
        match (self.kind(), timing) {
            (Kind::Counter, _) => Value::Counter(reader.counter(slot)),
            (Kind::Gauge, _) => Value::Gauge(f64::from_bits(local::gauge_cell(slot).load(Relaxed))),
            (Kind::Timing, Some(g)) => {
                Value::Timing(Box::new(reader.timing(slot, self.scale(), g)))
            }
            (Kind::Timing, None) => unreachable!("timing reads hold the timing lock"),
        }
    }
}

impl Sampler for FamilyInner {
    fn name(&self) -> &str {
        self.descriptor.name()
    }

    fn sample(&self, out: &mut Writer<'_>) {
        if !self.valid {
            out.reject();
            return;
        }
        let kind = self.kind();
        self.retired
            .reclaim(board(), kind, |slot| free_slot(kind, slot));
        let reader = Reader::new();
        let timing = (kind == Kind::Timing).then(local::timing_lock);
        let mut expiry = self
            .options
            .expire_after
            .map(|after| Expiry::new(&self.idle, after, out.interval()));
        let mut expired = Vec::new();
        {
            let t = self.read();
            let keys = Some(&self.keys).filter(|k| !k.is_empty());
            // Under the table's read lock, so no removal buries anything during the harvest.
            let kept = self.keeper.for_harvest();
            let mut rows = out.rows(&self.descriptor, keys, t.live, kept, t.labels());
            t.for_each_label_set(|e, entry| {
                let value = self.read_value(&reader, entry.slot, timing.as_ref());
                if let Some(x) = expiry.as_mut() {
                    if x.expired(e, entry, &value) {
                        expired.push((e, entry.born));
                        return;
                    }
                }
                rows.push(entry.born, value, e);
            });
            // The overflow series after the label sets (spec/sampler-api.md, "Order").
            if let Some(e) = t.overflow {
                let entry = t.entry(e);
                let value = self.read_value(&reader, entry.slot, timing.as_ref());
                let labels = &self.overflow_labels;
                let id = SeriesId::from_u64(entry.born);
                out.row(id, &self.descriptor, labels, entry.born, value);
            }
        }
        drop(timing);
        drop(expiry);
        if !expired.is_empty() {
            self.expire(expired);
        }
        let overflow = self.overflow_hits.load(Relaxed);
        if overflow > 0 {
            static OVERFLOW_DESC: Descriptor = Descriptor::counter(
                "sampler.family.overflow",
                "1",
                "lookups of label sets past a family's cardinality limit, folded into its overflow series",
            );
            out.counter(
                &OVERFLOW_DESC,
                &[("metric", self.descriptor.name())],
                overflow,
            );
        }
        let wrong = self.wrong_counts.load(Relaxed);
        if wrong > 0 {
            static WRONG_DESC: Descriptor = Descriptor::counter(
                "sampler.family.label_errors",
                "1",
                "lookups with the wrong number of label values, recorded in no series",
            );
            out.counter(&WRONG_DESC, &[("metric", self.descriptor.name())], wrong);
        }
    }
}
