//! Where a snapshot's series are: blocks of series of one metric and key set, written by the
//! harvest (`SeriesBuf`). A family's block names its rows' label values where the family
//! keeps them: it copies the family's value numbers of every entry and where each numbered
//! value is (`BlockRows`, and `keep` for why that is sound), a copy made in bulk, not per
//! series; any other block copies the values into one buffer of its own.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::keep::Keep;
use super::{Series, SeriesId, SeriesIter, Value};
use crate::descriptor::Descriptor;
use crate::labels::{packed_prefix, LabelKeys, Labels, LabelsRef, TextPtr};
use crate::local::lock;

/// Series of one metric that follow one another: one descriptor, one set of keys, and the
/// label values of every row either in one buffer (`values`) or, for a family's block, named
/// where the family keeps them (`ids` and `texts`, alive while `kept` is: see `keep`).
#[derive(Clone)]
pub(super) struct Block {
    pub(super) descriptor: Arc<Descriptor>,
    pub(super) keys: Option<LabelKeys>,
    /// Each row's label values, laid out as `PackedValues` lays them out, one after another
    /// (empty in a block with `kept`).
    pub(super) values: Vec<u8>,
    /// For a family's block: the family's value numbers of every entry (one per key), as the
    /// family table had them at the harvest.
    pub(super) ids: Vec<u32>,
    /// For a family's block: where each numbered value is (stale for numbers no row names).
    pub(super) texts: Vec<TextPtr>,
    /// For a family's block: what keeps alive the label values `texts` names.
    pub(super) kept: Option<Arc<Keep>>,
    pub(super) rows: Vec<Row>,
    /// The snapshot's number of the first row.
    pub(super) first: usize,
    /// Whether every value is of the descriptor's kind (else none is: a block holds one or
    /// the other, so an exporter checks one series per run).
    pub(super) kind_matches: bool,
}

#[derive(Clone)]
pub(super) struct Row {
    pub(super) id: SeriesId,
    pub(super) start_nanos: u64,
    pub(super) value: Value,
    /// Where this row's label values start: an offset into its block's `values`, or, in a
    /// block with `kept`, into its `ids`.
    pub(super) labels: usize,
}

impl Block {
    /// The labels of `row`, one of this block's rows.
    #[inline]
    pub(super) fn labels<'a>(&'a self, row: &'a Row) -> LabelsRef<'a> {
        let Some(keys) = self.keys.as_ref() else {
            return LabelsRef::EMPTY;
        };
        match &self.kept {
            None => LabelsRef::from_parts(Some(keys), packed_prefix(&self.values[row.labels..])),
            // SAFETY: in a block with `kept`, a row's `keys.len()` numbers from `labels` on are
            // those of a series the family table held at the harvest (`BlockRows::push`), and
            // `texts` has where each of its values was then; `kept` keeps them alive as long
            // as this block (`keep`: K1 to K3), and `&self` outlives `'a`.
            Some(_) => unsafe {
                debug_assert!(
                    row.labels + keys.len() <= self.ids.len(),
                    "a row names an entry the block's copy of the table lacks"
                );
                let ids = self
                    .ids
                    .get(row.labels..row.labels + keys.len())
                    .unwrap_or(&[]);
                LabelsRef::from_texts(keys, ids, &self.texts)
            },
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        SPARE_ROWS.give(std::mem::take(&mut self.rows));
        SPARE_IDS.give(std::mem::take(&mut self.ids));
        SPARE_TEXTS.give(std::mem::take(&mut self.texts));
    }
}

/// Buffers of dropped snapshots' blocks (rows, and a family block's numbers and texts), kept
/// for the next harvests: a family's block of 10,000 rows (400 KB) is past the size the
/// allocator maps fresh for each allocation, and every page of a fresh mapping is faulted in
/// again on every harvest (about 150 page faults, a third of the harvest's time). Only buffers
/// of at least `MIN_BYTES` are kept (smaller ones never take the lock), at most `KEPT`, the
/// largest ones.
struct Spares<T>(Mutex<Vec<Vec<T>>>);

static SPARE_ROWS: Spares<Row> = Spares(Mutex::new(Vec::new()));
static SPARE_IDS: Spares<u32> = Spares(Mutex::new(Vec::new()));
static SPARE_TEXTS: Spares<TextPtr> = Spares(Mutex::new(Vec::new()));

const MIN_BYTES: usize = 64 * 1024;
const KEPT: usize = 8;

fn is_large<T>(n: usize) -> bool {
    n.saturating_mul(std::mem::size_of::<T>()) >= MIN_BYTES
}

impl<T> Spares<T> {
    /// An empty buffer with room for `n`: the smallest kept one that has, else a new one.
    fn take(&self, n: usize) -> Vec<T> {
        if is_large::<T>(n) {
            if let Some(v) = smallest_fit(&mut lock(&self.0), n) {
                return v;
            }
        }
        Vec::with_capacity(n)
    }

    /// Keeps `v` (emptied first) if it is large enough and among the `KEPT` largest.
    fn give(&self, mut v: Vec<T>) {
        if !is_large::<T>(v.capacity()) {
            return;
        }
        v.clear();
        keep_largest(&mut lock(&self.0), v);
    }
}

/// Takes out of `kept` the smallest buffer with room for `n`, if one has.
fn smallest_fit<T>(kept: &mut Vec<Vec<T>>, n: usize) -> Option<Vec<T>> {
    let fit = (0..kept.len())
        .filter(|&i| kept[i].capacity() >= n)
        .min_by_key(|&i| kept[i].capacity())?;
    Some(kept.swap_remove(fit))
}

/// Adds `buf` to `kept`, or in place of its smallest if it already holds `KEPT` and that one
/// is smaller than `buf`.
fn keep_largest<T>(kept: &mut Vec<Vec<T>>, buf: Vec<T>) {
    if kept.len() < KEPT {
        kept.push(buf);
        return;
    }
    if let Some(i) = (0..kept.len()).min_by_key(|&i| kept[i].capacity()) {
        if kept[i].capacity() < buf.capacity() {
            kept[i] = buf;
        }
    }
}

/// Writes series of one family into the last block of a [`SeriesBuf`], naming their label
/// values where the family table keeps them (see `keep`): what a family's harvest does for
/// each of its series, with no check of the descriptor and no copy of labels per series.
pub(crate) struct BlockRows<'a> {
    buf: &'a mut SeriesBuf,
    /// Label values per series.
    width: usize,
}

impl BlockRows<'_> {
    /// Appends one series: its id, which is also its start time (`born`, see `SeriesId`), its
    /// value, which must be of the descriptor's kind, and its entry number in the family
    /// table, whose value numbers the block copied (`SeriesBuf::rows`).
    #[inline(always)]
    pub(crate) fn push(&mut self, born: u64, value: Value, entry: u32) {
        let buf = &mut *self.buf;
        let b = buf.blocks.last_mut().expect("`rows` made the block");
        b.rows.push(Row {
            id: SeriesId::from_u64(born),
            start_nanos: born,
            value,
            labels: entry as usize * self.width,
        });
        buf.len += 1;
    }
}

/// A family table's label values at a harvest, for its block: every entry's value numbers
/// (`width` per entry, in chunks in entry order) and where each numbered value is. The family
/// keeps every value a live entry names alive as long as the block's `Keep` (`keep`, K2).
pub(crate) struct TableLabels<'a> {
    pub(crate) ids: &'a [Vec<u32>],
    pub(crate) texts: &'a [TextPtr],
}

/// The series a harvest writes, grouped into blocks as they come.
#[derive(Clone, Default)]
pub(crate) struct SeriesBuf {
    blocks: Vec<Block>,
    pub(super) len: usize,
}

/// `t` in nanoseconds since the Unix epoch (a time before it reads as the epoch).
pub(crate) fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl SeriesBuf {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The block the next copied series of `descriptor` with `keys` goes in: the last one if it
    /// is a copying block of the same metric, keys and kind agreement, else a new one.
    #[inline]
    fn block(
        &mut self,
        descriptor: &Arc<Descriptor>,
        keys: Option<&LabelKeys>,
        kind_matches: bool,
    ) -> &mut Block {
        let same = |b: &Block| {
            b.kept.is_none()
                && b.kind_matches == kind_matches
                && (Arc::ptr_eq(&b.descriptor, descriptor) || *b.descriptor == **descriptor)
                && match (&b.keys, keys) {
                    (None, None) => true,
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a[..] == b[..],
                    _ => false,
                }
        };
        if !self.blocks.last().is_some_and(same) {
            self.blocks.push(Block {
                descriptor: descriptor.clone(),
                keys: keys.cloned(),
                values: Vec::new(),
                ids: Vec::new(),
                texts: Vec::new(),
                kept: None,
                rows: Vec::new(),
                first: self.len,
                kind_matches,
            });
        }
        self.blocks.last_mut().expect("a block")
    }

    /// A writer of up to `rows` series of one family (`descriptor`, `keys`) into a new block
    /// whose label values `kept` keeps alive, named by number as `labels` names them.
    pub(crate) fn rows(
        &mut self,
        descriptor: &Arc<Descriptor>,
        keys: Option<&LabelKeys>,
        rows: usize,
        kept: Arc<Keep>,
        labels: TableLabels<'_>,
    ) -> BlockRows<'_> {
        let width = keys.map_or(0, |k| k.len());
        let (mut ids, mut texts) = (Vec::new(), Vec::new());
        if width > 0 {
            ids = SPARE_IDS.take(labels.ids.iter().map(Vec::len).sum());
            labels.ids.iter().for_each(|c| ids.extend_from_slice(c));
            texts = SPARE_TEXTS.take(labels.texts.len());
            texts.extend_from_slice(labels.texts);
        }
        self.blocks.push(Block {
            descriptor: descriptor.clone(),
            keys: keys.cloned(),
            values: Vec::new(),
            ids,
            texts,
            kept: Some(kept),
            rows: SPARE_ROWS.take(rows),
            first: self.len,
            kind_matches: true,
        });
        BlockRows { buf: self, width }
    }

    /// Appends one series, its label values copied into the block.
    #[inline]
    pub(crate) fn push(
        &mut self,
        id: SeriesId,
        descriptor: &Arc<Descriptor>,
        labels: &Labels,
        start_nanos: u64,
        value: Value,
    ) {
        let (keys, values) = match labels.parts() {
            Some((k, v)) => (Some(k), v),
            None => (None, &[][..]),
        };
        let kind_matches = value.kind() == descriptor.kind();
        let b = self.block(descriptor, keys, kind_matches);
        let at = b.values.len();
        b.values.extend_from_slice(values);
        b.rows.push(Row {
            id,
            start_nanos,
            value,
            labels: at,
        });
        self.len += 1;
    }

    pub(crate) fn push_series(&mut self, s: Series) {
        let start = unix_nanos(s.start_time);
        self.push(s.id, &s.descriptor, &s.labels, start, s.value);
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
            if let (Some(r), None) = (b.rows.get(keep), &b.kept) {
                b.values.truncate(r.labels);
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

    pub(super) fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    pub(super) fn iter_from(&self, start: usize) -> SeriesIter<'_> {
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
    use crate::labels::Labels;
    use crate::snapshot::Snapshot;
    use crate::Descriptor;
    use std::time::Duration;

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

    /// The kept buffers: the smallest that fits is taken, of more than `KEPT` only the largest
    /// stay, and buffers too small to keep never reach them.
    #[test]
    fn spare_buffers_are_reused_smallest_fit_first_and_bounded() {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        let big = MIN_BYTES * 4;
        for cap in [big, big * 2, big * 3] {
            keep_largest(&mut kept, Vec::with_capacity(cap));
        }
        let got = smallest_fit(&mut kept, big + 1).expect("one fits");
        assert!(
            got.capacity() >= big * 2 && got.capacity() < big * 3,
            "the smallest that fits"
        );
        assert_eq!(kept.len(), 2);
        assert!(smallest_fit(&mut kept, big * 4).is_none(), "none fits");
        for i in 0..2 * KEPT {
            keep_largest(&mut kept, Vec::with_capacity(big * (10 + i)));
        }
        assert_eq!(kept.len(), KEPT);
        assert!(
            kept.iter().all(|v| v.capacity() >= big * (10 + KEPT)),
            "the largest stay"
        );
        let first_large = MIN_BYTES.div_ceil(std::mem::size_of::<Row>());
        assert!(
            !is_large::<Row>(first_large - 1),
            "small buffers never take the lock"
        );
        assert!(is_large::<Row>(first_large));
    }

    /// A run holds values of its descriptor's kind only, or of another kind only: what
    /// `from_series` is given in one metric with both makes two runs.
    #[test]
    fn a_run_never_mixes_values_of_the_kind_and_of_another() {
        let d = Arc::new(Descriptor::counter("c", "1", ""));
        let mut wrong = series(&d, &[("k", "x")], 2);
        wrong.value = Value::Gauge(1.0);
        let all = vec![
            series(&d, &[("k", "w")], 1),
            wrong,
            series(&d, &[("k", "y")], 3),
        ];
        let snap = Snapshot::from_series(UNIX_EPOCH, Duration::ZERO, 1, all.clone());
        let lens: Vec<usize> = snap.runs().map(|r| r.len()).collect();
        assert_eq!(lens, [1, 1, 1]);
        for r in snap.runs() {
            let first = r.series().next().expect("a series").value().kind();
            assert!(r.series().all(|s| s.value().kind() == first));
        }
        let back: Vec<Series> = snap.series().map(|s| s.to_owned()).collect();
        assert_eq!(back, all);
    }

    #[test]
    fn a_value_of_the_wrong_kind_is_not_a_series() {
        let d = Arc::new(Descriptor::gauge("g", "1", ""));
        let mut state = crate::sampler::SamplerState::default();
        let mut buf = SeriesBuf::default();
        let mut w = crate::sampler::Writer::new(&mut state, &mut buf, UNIX_EPOCH, Duration::ZERO);
        w.row(SeriesId::next(), &d, &Labels::empty(), 0, Value::Counter(1));
        assert_eq!(w.rejected(), 1);
        assert_eq!(buf.len(), 0);
    }
}
