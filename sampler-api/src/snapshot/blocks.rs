//! Where a snapshot's series are: blocks of series of one metric and key set, their label
//! values copied into one buffer per block, written by the harvest (`SeriesBuf`, and
//! `BlockRows` for a family's run of series).

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Series, SeriesId, SeriesIter, Value};
use crate::descriptor::Descriptor;
use crate::labels::LabelKeys;

/// Series of one metric that follow one another: one descriptor, one set of keys, and the
/// label values of every row in one buffer.
#[derive(Clone)]
pub(super) struct Block {
    pub(super) descriptor: Arc<Descriptor>,
    pub(super) keys: Option<LabelKeys>,
    /// Each row's label values, laid out as `PackedValues` lays them out, one after another.
    pub(super) values: Vec<u8>,
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
    /// Where this row's label values are in its block's `values`, and how long they are.
    pub(super) labels: u32,
    pub(super) labels_len: u32,
}

impl Drop for Block {
    fn drop(&mut self) {
        let (mut rows, mut values) = (
            std::mem::take(&mut self.rows),
            std::mem::take(&mut self.values),
        );
        rows.clear();
        values.clear();
        let mut spare = spare();
        spare.give(rows);
        spare.give(values);
    }
}

/// Row and label buffers of dropped snapshots, kept for the next harvests: a block the size of
/// a large family's is past the size the allocator maps fresh for each allocation, and every
/// page of a fresh mapping is faulted in again on every harvest (10,000 series: about 150
/// page faults, a third of the harvest's time). Only buffers of at least `MIN_BYTES` are
/// kept, at most `KEPT` of each kind, the largest ones.
pub(super) struct Spare {
    rows: Vec<Vec<Row>>,
    values: Vec<Vec<u8>>,
}

const MIN_BYTES: usize = 64 * 1024;
const KEPT: usize = 8;

static SPARE: Mutex<Spare> = Mutex::new(Spare {
    rows: Vec::new(),
    values: Vec::new(),
});

fn spare() -> MutexGuard<'static, Spare> {
    SPARE.lock().unwrap_or_else(|e| e.into_inner())
}

/// The kept buffers of one element type.
pub(super) trait Kept<T> {
    fn kept(&mut self) -> &mut Vec<Vec<T>>;
}

impl Kept<Row> for Spare {
    fn kept(&mut self) -> &mut Vec<Vec<Row>> {
        &mut self.rows
    }
}

impl Kept<u8> for Spare {
    fn kept(&mut self) -> &mut Vec<Vec<u8>> {
        &mut self.values
    }
}

impl Spare {
    /// An empty buffer with room for `n` elements: the smallest kept one that has, else a new
    /// one.
    pub(super) fn take<T>(&mut self, n: usize) -> Vec<T>
    where
        Self: Kept<T>,
    {
        if n.saturating_mul(std::mem::size_of::<T>()) >= MIN_BYTES {
            let kept = self.kept();
            let fit = (0..kept.len())
                .filter(|&i| kept[i].capacity() >= n)
                .min_by_key(|&i| kept[i].capacity());
            if let Some(i) = fit {
                return kept.swap_remove(i);
            }
        }
        Vec::with_capacity(n)
    }

    /// Keeps `buf` (empty) if it is large enough and among the `KEPT` largest.
    pub(super) fn give<T>(&mut self, buf: Vec<T>)
    where
        Self: Kept<T>,
    {
        debug_assert!(buf.is_empty());
        let bytes = buf.capacity().saturating_mul(std::mem::size_of::<T>());
        if bytes < MIN_BYTES {
            return;
        }
        let kept = self.kept();
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
                kind_matches: true,
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
    pub(super) len: usize,
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
        kind_matches: bool,
    ) -> &mut Block {
        let same = |b: &Block| {
            b.kind_matches == kind_matches
                && (Arc::ptr_eq(&b.descriptor, descriptor) || *b.descriptor == **descriptor)
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
                rows: spare().take(rows),
                first: self.len,
                kind_matches,
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
        let b = self.block(descriptor, keys, 0, rows, true);
        if b.values.capacity() == 0 {
            b.values = spare().take(bytes);
        }
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
        let kind_matches = value.kind() == descriptor.kind();
        let b = self.block(descriptor, keys, values.len(), 1, kind_matches);
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

    /// The spare buffers: the smallest that fits is taken, small ones are not kept, and of
    /// more than `KEPT` only the largest stay.
    #[test]
    fn spare_buffers_are_reused_smallest_fit_first_and_bounded() {
        let mut s = Spare {
            rows: Vec::new(),
            values: Vec::new(),
        };
        let big = MIN_BYTES * 4;
        for cap in [big, big * 2, big * 3] {
            s.give(Vec::<u8>::with_capacity(cap));
        }
        s.give(Vec::<u8>::with_capacity(MIN_BYTES / 2));
        assert_eq!(s.values.len(), 3, "a small buffer is not kept");
        let got: Vec<u8> = s.take(big + 1);
        assert!(
            got.capacity() >= big * 2 && got.capacity() < big * 3,
            "the smallest that fits"
        );
        let small: Vec<u8> = s.take(16);
        assert_eq!(s.values.len(), 2, "a small request takes nothing kept");
        drop(small);
        for i in 0..2 * KEPT {
            s.give(Vec::<u8>::with_capacity(big * (10 + i)));
        }
        assert_eq!(s.values.len(), KEPT);
        assert!(
            s.values.iter().all(|v| v.capacity() >= big * (10 + KEPT)),
            "the largest stay"
        );
        let rows: Vec<Row> = s.take(MIN_BYTES);
        assert!(rows.capacity() >= MIN_BYTES);
        s.give(rows);
        assert_eq!(s.rows.len(), 1);
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
        w.row(SeriesId::next(), &d, None, &[], 0, Value::Counter(1));
        assert_eq!(w.rejected(), 1);
        assert_eq!(buf.len(), 0);
    }
}
