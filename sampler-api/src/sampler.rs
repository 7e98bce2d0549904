//! The `Sampler` trait: a source polled once per harvest, and the `Writer` it reports into.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::collections::HashMap;

use crate::descriptor::{Descriptor, Kind};
use crate::distribution::Distribution;
use crate::labels::LabelKeys;
use crate::labels::Labels;
use crate::snapshot::{unix_nanos, BlockRows, Keep, SeriesBuf, SeriesId, TableLabels, Value};

/// A source of readings, polled once per harvest.
///
/// The source knows its own state best (a pool knows its idle connections), so it reports it
/// when asked instead of pushing every change. Whatever `sample` writes in one harvest is the
/// whole truth for that harvest: a series not written is absent from the snapshot, and if it
/// comes back later it is a new series with a new start time (`spec/sampler-api.md`, "Harvest").
///
/// ```
/// use sampler_api::{Descriptor, Sampler, Writer};
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// static IDLE: Descriptor = Descriptor::gauge("pool.connections.idle", "1", "idle connections");
///
/// struct Pool { idle: AtomicUsize }
///
/// impl Sampler for Pool {
///     fn sample(&self, out: &mut Writer<'_>) {
///         out.gauge(&IDLE, &[("pool", "main")], self.idle.load(Ordering::Relaxed) as f64);
///     }
/// }
/// ```
pub trait Sampler: Send + Sync {
    /// Writes this harvest's readings.
    fn sample(&self, out: &mut Writer<'_>);

    /// A name for error reports and self-metrics; the type name unless overridden.
    fn name(&self) -> &str {
        std::any::type_name::<Self>()
    }

    /// Called once, on the harvest thread, before the first `sample` of this sampler.
    fn start(&self) {}

    /// Called once, on the harvest thread, after the last `sample` (unregistered or shutdown).
    fn stop(&self) {}
}

macro_rules! forward_sampler {
    ($($t:ty),*) => {$(
        impl<S: Sampler + ?Sized> Sampler for $t {
            fn sample(&self, out: &mut Writer<'_>) { (**self).sample(out) }
            fn name(&self) -> &str { (**self).name() }
            fn start(&self) { (**self).start() }
            fn stop(&self) { (**self).stop() }
        }
    )*};
}
forward_sampler!(&S, Box<S>, Arc<S>);

/// A sampler made of a closure; handy for callback gauges.
///
/// ```
/// use sampler_api::{Descriptor, FnSampler, Registry};
/// static LOAD: Descriptor = Descriptor::gauge("queue.depth", "1", "jobs waiting");
/// let registry = Registry::new();
/// let _reg = registry.register(FnSampler::new("queue", |out| out.gauge(&LOAD, &[], 4.0)));
/// ```
pub struct FnSampler<F> {
    name: String,
    f: F,
}

impl<F: Fn(&mut Writer<'_>) + Send + Sync> FnSampler<F> {
    /// Wraps `f` under `name`.
    pub fn new(name: impl Into<String>, f: F) -> Self {
        FnSampler {
            name: name.into(),
            f,
        }
    }
}

impl<F: Fn(&mut Writer<'_>) + Send + Sync> Sampler for FnSampler<F> {
    fn sample(&self, out: &mut Writer<'_>) {
        (self.f)(out)
    }
    fn name(&self) -> &str {
        &self.name
    }
}

impl<F> std::fmt::Debug for FnSampler<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnSampler")
            .field("name", &self.name)
            .finish()
    }
}

/// What the harvest remembers about the series one sampler wrote, so each keeps its identity
/// and start time across harvests.
#[derive(Default)]
pub(crate) struct SamplerState {
    known: HashMap<u64, Vec<Known>>,
    hasher: foldhash::quality::RandomState,
    epoch: u64,
}

struct Known {
    descriptor: Arc<Descriptor>,
    labels: Labels,
    id: SeriesId,
    start_nanos: u64,
    seen: u64,
}

impl SamplerState {
    pub(crate) fn begin(&mut self) {
        self.epoch += 1;
    }

    /// Forgets the series not written in this harvest (the disappearance rule).
    pub(crate) fn end(&mut self) {
        let epoch = self.epoch;
        self.known.retain(|_, v| {
            v.retain(|k| k.seen == epoch);
            !v.is_empty()
        });
    }
}

/// Where a sampler puts its readings during one harvest.
///
/// A reading whose descriptor kind does not match the method, whose name or label key breaks
/// the naming rules, or that repeats a series already written in this harvest is rejected and
/// counted (`sampler.sampler.errors{reason="rejected"}`).
///
/// ```
/// use sampler_api::{Descriptor, Distribution, FnSampler, Harvester, Registry};
/// static SENT: Descriptor = Descriptor::counter("mail.sent", "1", "mails sent");
/// static QUEUED: Descriptor = Descriptor::gauge("mail.queued", "1", "mails waiting");
/// static DELAY: Descriptor = Descriptor::timing("mail.delay", "s", "time mails waited");
/// let registry = Registry::new();
/// let _reg = registry.register(FnSampler::new("mail", |out| {
///     out.counter(&SENT, &[("domain", "example.org")], 42);
///     out.gauge(&QUEUED, &[], 3.0);
///     let mut delays = Distribution::new(3);
///     delays.record(0.25);
///     out.timing(&DELAY, &[], delays);
/// }));
/// let snapshot = Harvester::builder().registry(registry).build().harvest_now();
/// assert!(snapshot.find("mail.sent", &[("domain", "example.org")]).is_some());
/// ```
pub struct Writer<'a> {
    state: &'a mut SamplerState,
    out: &'a mut SeriesBuf,
    now: SystemTime,
    interval: Duration,
    rejected: u64,
}

impl std::fmt::Debug for Writer<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").field("now", &self.now).finish()
    }
}

impl<'a> Writer<'a> {
    pub(crate) fn new(
        state: &'a mut SamplerState,
        out: &'a mut SeriesBuf,
        now: SystemTime,
        interval: Duration,
    ) -> Self {
        Writer {
            state,
            out,
            now,
            interval,
            rejected: 0,
        }
    }

    /// The harvester's configured interval between harvests.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Counts one rejected reading (reported as `sampler.sampler.errors{reason="rejected"}`).
    pub(crate) fn reject(&mut self) {
        self.rejected += 1;
    }

    /// The harvest's wall-clock time.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// How many readings were rejected (bad name, bad label key, kind mismatch).
    pub(crate) fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Reports a counter's cumulative total.
    pub fn counter(&mut self, descriptor: &Descriptor, labels: &[(&str, &str)], total: u64) {
        self.reading(descriptor, Kind::Counter, labels, Value::Counter(total));
    }

    /// Reports a gauge's value.
    pub fn gauge(&mut self, descriptor: &Descriptor, labels: &[(&str, &str)], value: f64) {
        self.reading(descriptor, Kind::Gauge, labels, Value::Gauge(value));
    }

    /// Reports a timing's cumulative distribution.
    pub fn timing(
        &mut self,
        descriptor: &Descriptor,
        labels: &[(&str, &str)],
        value: Distribution,
    ) {
        self.reading(
            descriptor,
            Kind::Timing,
            labels,
            Value::Timing(Box::new(value)),
        );
    }

    /// A writer of up to `rows` series of one family (`descriptor`, `keys`) whose label values
    /// `kept` keeps alive (see `snapshot::keep`); the caller writes only values of the
    /// descriptor's kind.
    pub(crate) fn rows(
        &mut self,
        descriptor: &Arc<Descriptor>,
        keys: Option<&LabelKeys>,
        rows: usize,
        kept: Arc<Keep>,
        labels: TableLabels<'_>,
    ) -> BlockRows<'_> {
        self.out.rows(descriptor, keys, rows, kept, labels)
    }

    /// Appends a series that already carries its identity (a family's overflow series, which
    /// keeps its own id and start time; no lookup). A value of another kind than the
    /// descriptor's is rejected. Crate-private: a sampler outside this crate could forge an id
    /// or a start time and break the rules of `SeriesId`.
    pub(crate) fn row(
        &mut self,
        id: SeriesId,
        descriptor: &Arc<Descriptor>,
        labels: &Labels,
        start_nanos: u64,
        value: Value,
    ) {
        if descriptor.kind() != value.kind() {
            self.rejected += 1;
            return;
        }
        self.out.push(id, descriptor, labels, start_nanos, value);
    }

    fn reading(
        &mut self,
        descriptor: &Descriptor,
        kind: Kind,
        labels: &[(&str, &str)],
        value: Value,
    ) {
        if descriptor.kind() != kind {
            self.rejected += 1;
            return;
        }
        let mut h = self.state.hasher.build_hasher();
        descriptor.name().hash(&mut h);
        kind.hash(&mut h);
        for (k, v) in labels {
            k.hash(&mut h);
            v.hash(&mut h);
        }
        let hash = h.finish();
        let epoch = self.state.epoch;
        let bucket = self.state.known.entry(hash).or_default();
        let found = bucket.iter_mut().find(|k| {
            k.descriptor.name() == descriptor.name()
                && k.descriptor.kind() == kind
                && k.labels.len() == labels.len()
                && k.labels.iter().zip(labels).all(|(a, b)| a == *b)
        });
        let known = match found {
            Some(k) => {
                if k.seen == epoch {
                    // The same series twice in one harvest: the first reading stands.
                    self.rejected += 1;
                    return;
                }
                k
            }
            None => {
                if descriptor.validate().is_err() {
                    self.rejected += 1;
                    return;
                }
                let Ok(labels) = Labels::from_pairs(labels) else {
                    self.rejected += 1;
                    return;
                };
                bucket.push(Known {
                    descriptor: Arc::new(descriptor.clone()),
                    labels,
                    id: SeriesId::next(),
                    start_nanos: unix_nanos(self.now),
                    seen: 0,
                });
                bucket.last_mut().expect("just pushed")
            }
        };
        known.seen = epoch;
        self.out.push(
            known.id,
            &known.descriptor,
            &known.labels,
            known.start_nanos,
            value,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static C: Descriptor = Descriptor::counter("t.c", "1", "");

    #[test]
    fn identity_kept_and_dropped() {
        let mut state = SamplerState::default();
        let now = SystemTime::now();
        let mut out = SeriesBuf::default();
        let id0 = |out: &SeriesBuf| {
            crate::Snapshot::new(now, Duration::ZERO, 1, out.clone())
                .get(0)
                .expect("a series")
                .id()
        };
        state.begin();
        let mut w = Writer::new(&mut state, &mut out, now, Duration::ZERO);
        w.counter(&C, &[("a", "1")], 5);
        w.counter(&C, &[("a", "1")], 6); // duplicate in one harvest
        assert_eq!(w.rejected(), 1);
        state.end();
        let first = id0(&out);
        out.clear();
        state.begin();
        Writer::new(&mut state, &mut out, now, Duration::ZERO).counter(&C, &[("a", "1")], 7);
        state.end();
        assert_eq!(id0(&out), first);
        out.clear();
        state.begin();
        state.end(); // not written: forgotten
        state.begin();
        Writer::new(&mut state, &mut out, now, Duration::ZERO).counter(&C, &[("a", "1")], 1);
        assert_ne!(id0(&out), first);
    }
}
