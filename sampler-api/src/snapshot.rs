//! Snapshots: the immutable result of one harvest, shared with every exporter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::descriptor::{Descriptor, Kind};
use crate::distribution::Distribution;
use crate::labels::Labels;

/// Identifies one series for as long as it lives; never reused within a process.
///
/// Exporters that derive deltas keep their cursor per `SeriesId`: a series that disappears and
/// comes back gets a new id and a new start time, which reads as a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(u64);

impl SeriesId {
    /// A fresh id, distinct from every other id of this process.
    pub fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        SeriesId(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// One reading.
///
/// New kinds may be added in a minor version: exporters skip (and count) a value they do not
/// know instead of failing.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A cumulative total since the series' start time, in whole `1/divisor` parts of the
    /// descriptor's unit ([`Descriptor::counter_value`] gives it in the unit).
    Counter(u64),
    /// An instantaneous value.
    Gauge(f64),
    /// A cumulative distribution since the series' start time.
    Timing(Box<Distribution>),
}

impl Value {
    /// The kind this value is a reading of.
    pub fn kind(&self) -> Kind {
        match self {
            Value::Counter(_) => Kind::Counter,
            Value::Gauge(_) => Kind::Gauge,
            Value::Timing(_) => Kind::Timing,
        }
    }
}

/// One series in a snapshot: what it is, which labels, since when, and its reading.
#[derive(Clone, Debug)]
pub struct Series {
    /// Stable identity while the series lives.
    pub id: SeriesId,
    /// Name, kind, unit and description.
    pub descriptor: Arc<Descriptor>,
    /// The label set.
    pub labels: Labels,
    /// When the cumulative value started counting (creation, or the last reset).
    pub start_time: SystemTime,
    /// The reading.
    pub value: Value,
}

/// The immutable result of one harvest, shared as `Arc<Snapshot>`.
///
/// ```
/// use sampler_api::{Registry, Descriptor, Harvester};
/// static HITS: Descriptor = Descriptor::counter("cache.hits", "1", "cache hits");
/// let registry = Registry::new();
/// let hits = registry.counter(&HITS);
/// hits.add(3);
/// let snapshot = Harvester::builder().registry(registry.clone()).build().harvest_now();
/// let s = snapshot.find("cache.hits", &[]).unwrap();
/// assert_eq!(s.value, sampler_api::Value::Counter(3));
/// ```
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// The harvest's wall-clock time, aligned to the interval.
    pub time: SystemTime,
    /// The harvester's configured interval between harvests (also on one-off harvests, so
    /// rates can still be judged against it).
    pub interval: Duration,
    /// Counts harvests from 1; an exporter seeing a gap knows snapshots were dropped.
    pub sequence: u64,
    /// Every series, grouped by sampler, in the order the samplers wrote them.
    pub series: Vec<Series>,
}

impl Snapshot {
    /// The first series with this name and exactly these labels (a linear search, for tests
    /// and tools).
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<&Series> {
        self.series.iter().find(|s| {
            s.descriptor.name() == name
                && s.labels.len() == labels.len()
                && s.labels.iter().zip(labels).all(|(a, b)| a == *b)
        })
    }

    /// Every series with this name.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Series> + 'a {
        self.series
            .iter()
            .filter(move |s| s.descriptor.name() == name)
    }
}
