//! Snapshots: the immutable result of one harvest, shared with every exporter.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::descriptor::{Descriptor, Kind};
use crate::distribution::Distribution;
use crate::labels::{LabelKeys, Labels, LabelsRef};

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
#[derive(Clone, Debug, PartialEq)]
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

/// The immutable result of one harvest, shared as `Arc<Snapshot>`.
///
/// Its series are kept in blocks: the series of one metric that follow one another share one
/// descriptor and one set of label keys, and their label values are copied into one buffer
/// per block. A harvest of a family therefore writes no reference count per series, and
/// dropping a snapshot frees a few buffers per metric. [`series`](Self::series) lends each
/// out as a [`SeriesRef`].
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
    /// let series = Series {
    ///     id: SeriesId::next(),
    ///     descriptor: d,
    ///     labels: Labels::from_pairs(&[("queue", "mail")])?,
    ///     start_time: UNIX_EPOCH,
    ///     value: Value::Counter(7),
    /// };
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
        let r = self.row;
        let values = &self.block.values[r.labels as usize..(r.labels + r.labels_len) as usize];
        LabelsRef::from_parts(self.block.keys.as_ref(), values)
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

/// Series of one metric that follow one another: one descriptor, one set of keys, and the
/// label values of every row in one buffer.
#[derive(Clone)]
struct Block {
    descriptor: Arc<Descriptor>,
    keys: Option<LabelKeys>,
    /// Each row's label values, laid out as `PackedValues` lays them out, one after another.
    values: Vec<u8>,
    rows: Vec<Row>,
    /// The snapshot's number of the first row.
    first: usize,
}

#[derive(Clone)]
struct Row {
    id: SeriesId,
    start_nanos: u64,
    value: Value,
    /// Where this row's label values are in its block's `values`, and how long they are.
    labels: u32,
    labels_len: u32,
}

/// Writes series of one metric and key set into the last block of a [`SeriesBuf`]: what a
/// family's harvest does for each of its series, with no check of the descriptor per series.
pub(crate) struct BlockRows<'a> {
    buf: &'a mut SeriesBuf,
}

impl BlockRows<'_> {
    /// Appends one series: `values` are the bytes of the `PackedValues` made for the block's
    /// keys (empty when there are none). The value must be of the descriptor's kind.
    #[inline(always)]
    pub(crate) fn push(&mut self, id: SeriesId, values: &[u8], start_nanos: u64, value: Value) {
        let buf = &mut *self.buf;
        let mut b = buf.blocks.last_mut().expect("`rows` made the block");
        if u32::try_from(b.values.len() + values.len()).is_err() {
            // Over 4 GiB of label values in one block: the rest go in another.
            let (descriptor, keys) = (b.descriptor.clone(), b.keys.clone());
            let first = buf.len;
            buf.blocks.push(Block {
                descriptor,
                keys,
                values: Vec::new(),
                rows: Vec::new(),
                first,
            });
            b = buf.blocks.last_mut().expect("just pushed");
        }
        let at = b.values.len() as u32;
        extend_short(&mut b.values, values);
        b.rows.push(Row {
            id,
            start_nanos,
            value,
            labels: at,
            labels_len: values.len() as u32,
        });
        buf.len += 1;
    }
}

/// `v.extend_from_slice(bytes)`, by words for the short strings label values are (a call to
/// `memcpy` per series cost more than the copy).
#[inline(always)]
fn extend_short(v: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > 64 {
        v.extend_from_slice(bytes);
        return;
    }
    v.reserve(n);
    let at = v.len();
    let src = bytes.as_ptr();
    // SAFETY: `reserve` made room for `n` more bytes after `at`, so every write below (at most
    // `n` bytes from `at`, the last word ending exactly at `at + n`) lies within the
    // allocation, and every read lies within `bytes`; the two do not overlap (`v` owns its
    // buffer). `set_len` then covers exactly the bytes written.
    unsafe {
        let dst = v.as_mut_ptr().add(at);
        if n >= 8 {
            let mut i = 0;
            while i + 8 < n {
                dst.add(i)
                    .cast::<u64>()
                    .write_unaligned(src.add(i).cast::<u64>().read_unaligned());
                i += 8;
            }
            // The last word overlaps the one before it when `n` is not a multiple of 8.
            dst.add(n - 8)
                .cast::<u64>()
                .write_unaligned(src.add(n - 8).cast::<u64>().read_unaligned());
        } else {
            for i in 0..n {
                *dst.add(i) = *src.add(i);
            }
        }
        v.set_len(at + n);
    }
}

/// The series a harvest writes, grouped into blocks as they come.
#[derive(Clone, Default)]
pub(crate) struct SeriesBuf {
    blocks: Vec<Block>,
    len: usize,
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl SeriesBuf {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The block the next series of `descriptor` with `keys` goes in: the last one if it is
    /// of the same metric and keys (and has room for `bytes` more label bytes), else a new
    /// one, sized for `rows` series.
    #[inline]
    fn block(
        &mut self,
        descriptor: &Arc<Descriptor>,
        keys: Option<&LabelKeys>,
        bytes: usize,
        rows: usize,
    ) -> &mut Block {
        let same = |b: &Block| {
            (Arc::ptr_eq(&b.descriptor, descriptor) || *b.descriptor == **descriptor)
                && match (&b.keys, keys) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a[..] == b[..],
                    _ => false,
                }
                && u32::try_from(b.values.len() + bytes).is_ok()
        };
        if !self.blocks.last().is_some_and(same) {
            self.blocks.push(Block {
                descriptor: descriptor.clone(),
                keys: keys.cloned(),
                values: Vec::new(),
                rows: Vec::with_capacity(rows),
                first: self.len,
            });
        }
        self.blocks.last_mut().expect("a block")
    }

    /// A writer of series of `descriptor` with `keys` into one block, with room for `rows`
    /// series and `bytes` of label values (what a family knows before it writes its series).
    pub(crate) fn rows(
        &mut self,
        descriptor: &Arc<Descriptor>,
        keys: Option<&LabelKeys>,
        rows: usize,
        bytes: usize,
    ) -> BlockRows<'_> {
        let b = self.block(descriptor, keys, 0, rows);
        b.rows.reserve(rows);
        b.values.reserve(bytes);
        BlockRows { buf: self }
    }

    /// Appends one series: `values` are the bytes of the `PackedValues` made for `keys` (empty
    /// when there are no keys).
    #[inline]
    pub(crate) fn push(
        &mut self,
        id: SeriesId,
        descriptor: &Arc<Descriptor>,
        keys: Option<&LabelKeys>,
        values: &[u8],
        start_nanos: u64,
        value: Value,
    ) {
        let b = self.block(descriptor, keys, values.len(), 1);
        let at = b.values.len() as u32;
        b.values.extend_from_slice(values);
        b.rows.push(Row {
            id,
            start_nanos,
            value,
            labels: at,
            labels_len: values.len() as u32,
        });
        self.len += 1;
    }

    pub(crate) fn push_series(&mut self, s: Series) {
        let (keys, values) = match s.labels.parts() {
            Some((k, v)) => (Some(k), v),
            None => (None, &[][..]),
        };
        self.push(
            s.id,
            &s.descriptor,
            keys,
            values,
            unix_nanos(s.start_time),
            s.value,
        );
    }

    /// Drops the series from the `len`th on.
    pub(crate) fn truncate(&mut self, len: usize) {
        while self.len > len {
            let Some(b) = self.blocks.last_mut() else {
                break;
            };
            if b.first >= len {
                self.len = b.first;
                self.blocks.pop();
                continue;
            }
            let keep = len - b.first;
            if let Some(r) = b.rows.get(keep) {
                b.values.truncate(r.labels as usize);
            }
            b.rows.truncate(keep);
            self.len = len;
        }
    }

    /// Moves every series of `other` to the end of this one.
    pub(crate) fn append(&mut self, other: &mut SeriesBuf) {
        for mut b in other.blocks.drain(..) {
            b.first = self.len;
            self.len += b.rows.len();
            self.blocks.push(b);
        }
        other.len = 0;
    }

    pub(crate) fn clear(&mut self) {
        self.blocks.clear();
        self.len = 0;
    }

    fn iter_from(&self, start: usize) -> SeriesIter<'_> {
        let at = self
            .blocks
            .partition_point(|b| b.first + b.rows.len() <= start);
        let mut blocks = self.blocks[at..].iter();
        let (block, rows) = match blocks.next() {
            Some(b) => (
                Some(b),
                b.rows[start.saturating_sub(b.first).min(b.rows.len())..].iter(),
            ),
            None => (None, [].iter()),
        };
        SeriesIter {
            blocks,
            block,
            rows,
            left: self.len.saturating_sub(start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Descriptor;

    fn series(d: &Arc<Descriptor>, labels: &[(&str, &str)], n: u64) -> Series {
        Series {
            id: SeriesId::next(),
            descriptor: d.clone(),
            labels: Labels::from_pairs(labels).expect("labels"),
            start_time: UNIX_EPOCH + Duration::from_nanos(1_000_000_007 * n),
            value: Value::Counter(n),
        }
    }

    /// Series of two metrics, label sets of several lengths, none, and an equal descriptor in
    /// another allocation: what goes in comes out, in order, whatever the blocks.
    fn mixed() -> Vec<Series> {
        let a = Arc::new(Descriptor::counter("a", "1", ""));
        let a2 = Arc::new(Descriptor::counter("a", "1", ""));
        let b = Arc::new(Descriptor::counter("b", "1", ""));
        vec![
            series(&a, &[("k", "x")], 1),
            series(&a, &[("k", "")], 2),
            series(&a2, &[("k", "é\"\\\n")], 3),
            series(&b, &[], 4),
            series(&b, &[], 5),
            series(&a, &[("k", "y"), ("l", "long value past eight bytes")], 6),
            series(&a, &[("k", "z")], 7),
        ]
    }

    fn owned(s: &SeriesBuf) -> Vec<Series> {
        let snap = Snapshot::new(UNIX_EPOCH, Duration::ZERO, 1, s.clone());
        assert_eq!(snap.series().len(), snap.len());
        snap.series().map(|r| r.to_owned()).collect()
    }

    #[test]
    fn series_come_out_as_they_went_in() {
        let all = mixed();
        let snap = Snapshot::from_series(UNIX_EPOCH, Duration::ZERO, 1, all.clone());
        let back: Vec<Series> = snap.series().map(|s| s.to_owned()).collect();
        assert_eq!(back, all);
        assert_eq!(
            snap.series.blocks.len(),
            4,
            "a, b, a with two keys, a with one"
        );
        for start in 0..=all.len() + 1 {
            let from: Vec<Series> = snap.series_from(start).map(|s| s.to_owned()).collect();
            assert_eq!(from, all[start.min(all.len())..], "from {start}");
            assert_eq!(
                snap.series_from(start).len(),
                all.len().saturating_sub(start)
            );
            assert_eq!(
                snap.get(start).map(|s| s.to_owned()),
                all.get(start).cloned()
            );
        }
        let s = snap.get(2).expect("third");
        assert_eq!(s.labels(), all[2].labels);
        assert_eq!(s.labels().value(0), "é\"\\\n");
        assert_eq!(s.start_unix_nanos(), 3_000_000_021);
    }

    #[test]
    fn truncate_and_append_keep_the_rest_whole() {
        let all = mixed();
        for keep in 0..=all.len() {
            let mut buf = SeriesBuf::default();
            for s in all.iter().cloned() {
                buf.push_series(s);
            }
            buf.truncate(keep);
            assert_eq!(buf.len(), keep);
            assert_eq!(owned(&buf), all[..keep], "kept {keep}");
            // What is written after a truncation lands after what was kept.
            let mut tail = SeriesBuf::default();
            for s in all[keep..].iter().cloned() {
                tail.push_series(s);
            }
            buf.append(&mut tail);
            assert_eq!(tail.len(), 0);
            assert_eq!(owned(&buf), all, "kept {keep}, then the rest appended");
            buf.clear();
            assert_eq!(owned(&buf), []);
        }
    }

    /// `extend_short` writes what `extend_from_slice` writes, at every length around its word
    /// and cut-off sizes, onto vectors with and without spare room (`scripts/test.sh` runs
    /// this under memcheck too: an out-of-bounds word would show there).
    #[test]
    fn the_word_copy_equals_extend_from_slice() {
        let src: Vec<u8> = (0..200u32).map(|i| (i * 37 + 11) as u8).collect();
        for before in [0usize, 1, 7, 8, 13] {
            for n in 0..=130 {
                for offset in [0usize, 1, 5] {
                    let bytes = &src[offset..offset + n];
                    let mut want: Vec<u8> = src[..before].to_vec();
                    want.extend_from_slice(bytes);
                    let mut tight: Vec<u8> = src[..before].to_vec();
                    tight.shrink_to_fit();
                    extend_short(&mut tight, bytes);
                    assert_eq!(tight, want, "{before} bytes, then {n} from {offset}");
                    let mut roomy: Vec<u8> = Vec::with_capacity(512);
                    roomy.extend_from_slice(&src[..before]);
                    extend_short(&mut roomy, bytes);
                    assert_eq!(
                        roomy, want,
                        "{before} bytes, then {n} from {offset}, with room"
                    );
                }
            }
        }
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_not_a_series() {
        let d = Arc::new(Descriptor::gauge("g", "1", ""));
        let mut state = crate::sampler::SamplerState::default();
        let mut buf = SeriesBuf::default();
        let mut w = crate::sampler::Writer::new(&mut state, &mut buf, UNIX_EPOCH, Duration::ZERO);
        w.row(SeriesId::next(), &d, None, &[], 0, Value::Counter(1));
        assert_eq!(w.rejected(), 1);
        assert_eq!(buf.len(), 0);
    }
}
