//! Snapshots: the immutable result of one harvest, shared with every exporter.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::descriptor::{Descriptor, Kind};
use crate::distribution::Distribution;
use crate::labels::{Labels, LabelsRef};

mod blocks;
mod keep;

pub(crate) use blocks::{unix_nanos, BlockRows, SeriesBuf, TableLabels};
use blocks::{Block, Row};
pub(crate) use keep::{Keep, Keeper};

/// Identifies one series for as long as it lives; never reused within a process.
///
/// Exporters that derive deltas keep their cursor per `SeriesId`: a series that disappears and
/// comes back gets a new id and a new start time, which reads as a reset.
///
/// Ids grow with time: each is the wall-clock time it was made, in nanoseconds since the Unix
/// epoch, or one more than the id made before it when the clock has not moved past that (many
/// ids in one tick, or a clock stepped back). A family's series takes its id's time as its
/// start time, so that it keeps one number for both.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesId(u64);

impl SeriesId {
    /// A fresh id, larger than every other id made before it in this process.
    ///
    /// ```
    /// use sampler_api::SeriesId;
    /// let (a, b) = (SeriesId::next(), SeriesId::next());
    /// assert!(b > a);
    /// ```
    pub fn next() -> Self {
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now = unix_nanos(SystemTime::now());
        let before = LAST
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_else(|last| last);
        SeriesId(now.max(before + 1))
    }

    /// The number behind the id.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id whose number is `n` (one that `next` made).
    pub(crate) fn from_u64(n: u64) -> Self {
        SeriesId(n)
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

/// A reading compares with a borrowed one, so `assert_eq!(series.value(), Value::Counter(3))`
/// reads as it says.
impl PartialEq<Value> for &Value {
    fn eq(&self, other: &Value) -> bool {
        **self == *other
    }
}

impl PartialEq<&Value> for Value {
    fn eq(&self, other: &&Value) -> bool {
        *self == **other
    }
}

/// One series, owned: what [`Snapshot::from_series`] takes and [`SeriesRef::to_owned`] gives.
/// A snapshot keeps its series in a more compact form and lends them out as [`SeriesRef`]s.
///
/// It is made with [`Series::new`] (a field may be added in a minor version); its fields can
/// be read and changed.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Series {
    /// Stable identity while the series lives.
    pub id: SeriesId,
    /// Name, kind, unit and description.
    pub descriptor: Arc<Descriptor>,
    /// The label set.
    pub labels: Labels,
    /// When the cumulative value started counting (creation, or the last reset). Kept to the
    /// nanosecond since the Unix epoch (a time before the epoch reads as the epoch).
    pub start_time: SystemTime,
    /// The reading.
    pub value: Value,
}

impl Series {
    /// A series with these parts.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::UNIX_EPOCH;
    /// use sampler_api::{Descriptor, Labels, Series, SeriesId, Value};
    /// let d = Arc::new(Descriptor::gauge("queue.depth", "1", "jobs waiting"));
    /// let mut s = Series::new(SeriesId::next(), d, Labels::empty(), UNIX_EPOCH, Value::Gauge(3.0));
    /// s.value = Value::Gauge(4.0);
    /// assert_eq!(s.value, Value::Gauge(4.0));
    /// ```
    pub fn new(
        id: SeriesId,
        descriptor: Arc<Descriptor>,
        labels: Labels,
        start_time: SystemTime,
        value: Value,
    ) -> Self {
        Series {
            id,
            descriptor,
            labels,
            start_time,
            value,
        }
    }
}

/// The immutable result of one harvest, shared as `Arc<Snapshot>`.
///
/// Its series are kept in blocks: the series of one metric that follow one another share one
/// descriptor and one set of label keys. A family's block names its series' label values
/// where the family keeps them (held for as long as the snapshot lives, also past a removal
/// of the series or the family's drop); other samplers' label values are copied into one
/// buffer per block. A harvest of a family therefore writes no reference count and copies no
/// label per series, and dropping a snapshot frees a few buffers per metric.
/// [`series`](Self::series) lends each out as a [`SeriesRef`].
///
/// ```
/// use sampler_api::{Registry, Descriptor, Harvester};
/// static HITS: Descriptor = Descriptor::counter("cache.hits", "1", "cache hits");
/// let registry = Registry::new();
/// let hits = registry.counter(&HITS);
/// hits.add(3);
/// let snapshot = Harvester::builder().registry(registry.clone()).build().harvest_now();
/// let s = snapshot.find("cache.hits", &[]).unwrap();
/// assert_eq!(*s.value(), sampler_api::Value::Counter(3));
/// assert_eq!(snapshot.series().count(), snapshot.len());
/// ```
#[derive(Clone)]
pub struct Snapshot {
    /// The harvest's wall-clock time, aligned to the interval.
    pub time: SystemTime,
    /// The harvester's configured interval between harvests (also on one-off harvests, so
    /// rates can still be judged against it).
    pub interval: Duration,
    /// Counts harvests from 1; an exporter seeing a gap knows snapshots were dropped.
    pub sequence: u64,
    series: SeriesBuf,
}

impl Snapshot {
    /// A snapshot of these series, in this order (for tests, tools and exporters that relay
    /// snapshots).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use std::time::{Duration, UNIX_EPOCH};
    /// use sampler_api::{Descriptor, Labels, Series, SeriesId, Snapshot, Value};
    /// let d = Arc::new(Descriptor::counter("jobs", "1", "jobs done"));
    /// let labels = Labels::from_pairs(&[("queue", "mail")])?;
    /// let series = Series::new(SeriesId::next(), d, labels, UNIX_EPOCH, Value::Counter(7));
    /// let snap = Snapshot::from_series(UNIX_EPOCH, Duration::from_secs(10), 1, vec![series.clone()]);
    /// assert_eq!(snap.len(), 1);
    /// assert_eq!(snap.get(0).unwrap().to_owned(), series);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_series(
        time: SystemTime,
        interval: Duration,
        sequence: u64,
        series: impl IntoIterator<Item = Series>,
    ) -> Self {
        let mut buf = SeriesBuf::default();
        for s in series {
            buf.push_series(s);
        }
        Snapshot::new(time, interval, sequence, buf)
    }

    pub(crate) fn new(
        time: SystemTime,
        interval: Duration,
        sequence: u64,
        series: SeriesBuf,
    ) -> Self {
        Snapshot {
            time,
            interval,
            sequence,
            series,
        }
    }

    /// Every series, grouped by sampler, in the order the samplers wrote them.
    pub fn series(&self) -> SeriesIter<'_> {
        self.series.iter_from(0)
    }

    /// The series from the `start`th on, in order (the first `start` skipped without walking
    /// them).
    pub fn series_from(&self, start: usize) -> SeriesIter<'_> {
        self.series.iter_from(start)
    }

    /// The series in runs: each run's series share one descriptor (one `Arc`) and one set of
    /// label keys, and either every value in a run is of its descriptor's kind or none is (a
    /// harvest writes none such; [`from_series`](Self::from_series) may be given some). A
    /// family's label sets make one run, so an exporter that groups series by metric can work
    /// per run instead of per series. Runs come in snapshot order; two runs in a row may share
    /// a descriptor (another key set, such as a family's overflow series).
    ///
    /// ```
    /// use sampler_api::{Descriptor, Harvester, Registry, Value};
    /// static JOBS: Descriptor = Descriptor::counter("jobs", "1", "jobs done");
    /// let registry = Registry::new();
    /// let jobs = registry.counter_family(&JOBS, &["queue"]);
    /// jobs.add(&["mail"], 2);
    /// jobs.add(&["print"], 1);
    /// let snapshot = Harvester::builder().registry(registry).self_metrics(false).build().harvest_now();
    /// let runs: Vec<_> = snapshot.runs().collect();
    /// assert_eq!(runs.len(), 1);
    /// assert_eq!(runs[0].descriptor().name(), "jobs");
    /// assert_eq!(runs[0].keys()[0], "queue");
    /// assert_eq!(runs[0].series().map(|s| s.labels().value(0)).collect::<Vec<_>>(), ["mail", "print"]);
    /// ```
    pub fn runs(&self) -> impl Iterator<Item = SeriesRun<'_>> + Clone + '_ {
        self.series
            .blocks()
            .iter()
            .filter(|b| !b.rows.is_empty())
            .map(|block| SeriesRun { block })
    }

    /// The `i`th series.
    pub fn get(&self, i: usize) -> Option<SeriesRef<'_>> {
        self.series.iter_from(i).next()
    }

    /// How many series there are.
    pub fn len(&self) -> usize {
        self.series.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.series.len == 0
    }

    /// The first series with this name and exactly these labels (a linear search, for tests
    /// and tools).
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<SeriesRef<'_>> {
        self.series().find(|s| {
            let l = s.labels();
            s.descriptor().name() == name
                && l.len() == labels.len()
                && l.iter().zip(labels).all(|(a, b)| a == *b)
        })
    }

    /// Every series with this name.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = SeriesRef<'a>> + 'a {
        self.series().filter(move |s| s.descriptor().name() == name)
    }
}

impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("time", &self.time)
            .field("interval", &self.interval)
            .field("sequence", &self.sequence)
            .field("series", &DebugList(self))
            .finish()
    }
}

struct DebugList<'a>(&'a Snapshot);

impl fmt::Debug for DebugList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.series()).finish()
    }
}

/// One series of a [`Snapshot`], borrowed from it: what it is, which labels, since when, and
/// its reading.
///
/// ```
/// use sampler_api::{Registry, Descriptor, Harvester, Value};
/// static JOBS: Descriptor = Descriptor::counter("jobs", "1", "jobs done");
/// let registry = Registry::new();
/// let jobs = registry.counter_family(&JOBS, &["queue"]);
/// jobs.add(&["mail"], 2);
/// let snapshot = Harvester::builder().registry(registry.clone()).build().harvest_now();
/// let s = snapshot.named("jobs").next().unwrap();
/// assert_eq!(s.labels().get("queue"), Some("mail"));
/// assert_eq!(*s.value(), Value::Counter(2));
/// assert!(s.start_time() <= snapshot.time);
/// ```
#[derive(Clone, Copy)]
pub struct SeriesRef<'a> {
    block: &'a Block,
    row: &'a Row,
}

impl<'a> SeriesRef<'a> {
    /// Stable identity while the series lives.
    pub fn id(&self) -> SeriesId {
        self.row.id
    }

    /// Name, kind, unit and description; the series of one family share one (so an exporter
    /// may key what it derives from it by its address).
    pub fn descriptor(&self) -> &'a Arc<Descriptor> {
        &self.block.descriptor
    }

    /// The label set, read in place.
    pub fn labels(&self) -> LabelsRef<'a> {
        self.block.labels(self.row)
    }

    /// When the cumulative value started counting (creation, or the last reset).
    pub fn start_time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.row.start_nanos)
    }

    /// The same, in nanoseconds since the Unix epoch.
    pub fn start_unix_nanos(&self) -> u64 {
        self.row.start_nanos
    }

    /// The reading.
    pub fn value(&self) -> &'a Value {
        &self.row.value
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Series {
        Series {
            id: self.id(),
            descriptor: self.descriptor().clone(),
            labels: self.labels().to_owned(),
            start_time: self.start_time(),
            value: self.value().clone(),
        }
    }
}

impl fmt::Debug for SeriesRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Series")
            .field("id", &self.id())
            .field("descriptor", self.descriptor())
            .field("labels", &self.labels())
            .field("start_time", &self.start_time())
            .field("value", self.value())
            .finish()
    }
}

/// A run of series of one metric and key set: see [`Snapshot::runs`].
#[derive(Clone, Copy)]
pub struct SeriesRun<'a> {
    block: &'a Block,
}

impl<'a> SeriesRun<'a> {
    /// The descriptor every series of the run shares.
    pub fn descriptor(&self) -> &'a Arc<Descriptor> {
        &self.block.descriptor
    }

    /// The label keys every series of the run shares.
    pub fn keys(&self) -> &'a [std::borrow::Cow<'static, str>] {
        self.block.keys.as_ref().map_or(&[], |k| &k[..])
    }

    /// How many series the run holds (at least one).
    pub fn len(&self) -> usize {
        self.block.rows.len()
    }

    /// Whether it holds none (never, for a run from [`Snapshot::runs`]).
    pub fn is_empty(&self) -> bool {
        self.block.rows.is_empty()
    }

    /// Its series, in order.
    pub fn series(&self) -> SeriesIter<'a> {
        SeriesIter {
            blocks: [].iter(),
            block: Some(self.block),
            rows: self.block.rows.iter(),
            left: self.block.rows.len(),
        }
    }
}

impl fmt::Debug for SeriesRun<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesRun")
            .field("descriptor", &self.descriptor().name())
            .field("len", &self.len())
            .finish()
    }
}

/// The series of a [`Snapshot`], in order: see [`Snapshot::series`].
#[derive(Clone)]
pub struct SeriesIter<'a> {
    blocks: std::slice::Iter<'a, Block>,
    block: Option<&'a Block>,
    rows: std::slice::Iter<'a, Row>,
    left: usize,
}

impl<'a> Iterator for SeriesIter<'a> {
    type Item = SeriesRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<SeriesRef<'a>> {
        loop {
            if let Some(row) = self.rows.next() {
                self.left -= 1;
                let block = self.block.expect("rows come from a block");
                return Some(SeriesRef { block, row });
            }
            let block = self.blocks.next()?;
            self.block = Some(block);
            self.rows = block.rows.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for SeriesIter<'_> {}

impl fmt::Debug for SeriesIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeriesIter")
            .field("left", &self.left)
            .finish()
    }
}

impl std::iter::FusedIterator for SeriesIter<'_> {}
