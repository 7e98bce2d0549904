//! A thread's histogram of one timing slot: bucket groups allocated on first use, owner-only
//! plain stores (atomic read-modify-writes in the shared slab), merged by the harvest.

use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering::*};

use crate::distribution::{index_table, Distribution, IndexTable};

/// Bucket groups per histogram. At scale `s` the index range `[-64·2^s, 64·2^s)` (values from
/// 2^-64 to 2^64) splits into 16 groups of `8·2^s` buckets (8 powers of two each: 512 bytes at
/// the default scale 3), allocated on first use. The group pointers sit inside the histogram,
/// so a record reaches its bucket with two loads once it has the histogram.
const GROUPS: usize = 16;

/// Where a positive value's bucket lives in a [`LocalHist`] of the table's scale.
#[derive(Clone, Copy)]
pub(super) struct Position {
    /// The bucket index plus `64 << scale`, clamped to `0..128 << scale`.
    pos: usize,
    /// log2 of the buckets per group: `3 + scale`.
    shift: u32,
    /// The value, to find its position again in a histogram of another scale.
    value: f64,
}

impl Position {
    /// The position of `value` in a histogram of `table`'s scale, which is `scale`.
    #[inline(always)]
    pub(super) fn of(table: &IndexTable, value: f64, scale: i8) -> Self {
        let r = 64i32 << scale;
        Position {
            // `max`/`min` rather than `clamp`: the bounds are always ordered, and `clamp` would
            // check that on every record.
            pos: (table.index_at(value, scale).max(-r).min(r - 1) + r) as usize,
            shift: 3 + scale as u32,
            value,
        }
    }
}

pub(crate) struct LocalHist {
    /// The sum, spread over four lanes picked by the value's lowest bits: a floating-point add
    /// to memory is a long dependency chain, and lanes let consecutive records overlap (the
    /// harvest adds them up).
    sums: [AtomicU64; 4],
    min: AtomicU64,
    max: AtomicU64,
    zero: AtomicU64,
    /// log2 of the buckets per group: `3 + scale`.
    shift: u32,
    /// Each a boxed slice of `1 << shift` cells, or null.
    groups: [AtomicPtr<AtomicU64>; GROUPS],
}

impl LocalHist {
    pub(super) fn new(scale: i8) -> Self {
        let scale = scale.clamp(0, crate::distribution::MAX_SCALE);
        LocalHist {
            sums: std::array::from_fn(|_| AtomicU64::new(0f64.to_bits())),
            min: AtomicU64::new(f64::INFINITY.to_bits()),
            // Values are never negative, and the bits of non-negative floats order like the
            // floats themselves, so the integer min/max of the bits is the float min/max.
            max: AtomicU64::new(0),
            zero: AtomicU64::new(0),
            shift: 3 + scale as u32,
            groups: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    fn scale(&self) -> i8 {
        (self.shift - 3) as i8
    }

    fn group_len(&self) -> usize {
        1 << self.shift
    }

    /// `64 << scale` (`GROUPS << shift` positions, half of them below bucket 0): bucket index
    /// `i` lives at position `i + range`.
    fn range(&self) -> i32 {
        (GROUPS << self.shift) as i32 / 2
    }

    /// The cell at `at`, allocating its group. A position found at another scale than this
    /// histogram's (which the slot lifecycle rules out, but a release build checks too) is
    /// found again at this one's: an offset past the end of a group is never formed.
    #[inline(always)]
    pub(super) fn bucket(&self, at: Position) -> &AtomicU64 {
        if at.shift != self.shift {
            return self.bucket_of(at.value);
        }
        // `pos < 128 << scale = GROUPS << shift`, so the group index is in bounds.
        let g = &self.groups[(at.pos >> at.shift) % GROUPS];
        let mut p = g.load(Acquire);
        if p.is_null() {
            p = alloc_group(g, self.group_len());
        }
        // SAFETY: a group holds `1 << self.shift` cells (`at.shift` is the same, checked above)
        // and lives as long as the histogram (see `Slab::hist`); the offset is below that.
        unsafe { &*p.add(at.pos & ((1 << at.shift) - 1)) }
    }

    /// The cell of `value` at this histogram's own scale.
    #[cold]
    #[inline(never)]
    fn bucket_of(&self, value: f64) -> &AtomicU64 {
        self.bucket(Position::of(index_table(self.scale()), value, self.scale()))
    }

    /// Records a positive `value` whose bucket is at `at`, by this slab's owner thread.
    #[inline(always)]
    pub(super) fn record_positive(&self, at: Position, value: f64) {
        let bits = value.to_bits();
        // Owner-only cells: plain loads and stores (see `counter_add`). The fixed cells are
        // read before the bucket is written: the bucket's address is known last, and loads
        // placed after its store were measured to stall behind it.
        let sum = &self.sums[bits as usize % 4];
        let s = f64::from_bits(sum.load(Relaxed)) + value;
        let (lo, hi) = (self.min.load(Relaxed), self.max.load(Relaxed));
        let cell = self.bucket(at);
        sum.store(s.to_bits(), Relaxed);
        if bits < lo {
            self.min.store(bits, Relaxed);
        }
        if bits > hi {
            self.max.store(bits, Relaxed);
        }
        cell.store(cell.load(Relaxed) + 1, Relaxed);
    }

    /// Records zero, a negative value (as zero) or NaN (ignored).
    #[cold]
    #[inline(never)]
    pub(super) fn record_zero(&self, value: f64, shared: bool) {
        if value.is_nan() {
            return;
        }
        if shared {
            self.bump_atomic(&self.zero, 0.0);
        } else {
            self.zero.store(self.zero.load(Relaxed) + 1, Relaxed);
            // Zero's bits are 0, the least of any value's.
            self.min.store(0, Relaxed);
        }
    }

    /// Records into `cell` with atomic read-modify-writes (the shared slab).
    pub(super) fn bump_atomic(&self, cell: &AtomicU64, value: f64) {
        let bits = value.to_bits();
        cell.fetch_add(1, Relaxed);
        let _ = self.sums[bits as usize % 4].fetch_update(Relaxed, Relaxed, |s| {
            Some((f64::from_bits(s) + value).to_bits())
        });
        self.min.fetch_min(bits, Relaxed);
        self.max.fetch_max(bits, Relaxed);
    }

    pub(super) fn sum(&self) -> f64 {
        self.sums
            .iter()
            .map(|s| f64::from_bits(s.load(Relaxed)))
            .sum()
    }

    /// How many zeros (and negative values) were recorded.
    pub(super) fn zeros(&self) -> u64 {
        self.zero.load(Relaxed)
    }

    /// The smallest and largest value recorded, as bits (min above max when none was).
    pub(super) fn min_max_bits(&self) -> (u64, u64) {
        (self.min.load(Relaxed), self.max.load(Relaxed))
    }

    pub(super) fn merge_into(&self, d: &mut Distribution) {
        let r = self.range();
        for (gi, g) in self.groups.iter().enumerate() {
            let p = g.load(Acquire);
            if p.is_null() {
                continue;
            }
            // SAFETY: as in `bucket`.
            let cells = unsafe { std::slice::from_raw_parts(p, self.group_len()) };
            for (ci, c) in cells.iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    d.add_to_bucket(((gi << self.shift) + ci) as i32 - r, n);
                }
            }
        }
    }
}

#[cold]
fn alloc_group(g: &AtomicPtr<AtomicU64>, len: usize) -> *mut AtomicU64 {
    let fresh: Box<[AtomicU64]> = (0..len).map(|_| AtomicU64::new(0)).collect();
    let fresh = Box::into_raw(fresh) as *mut AtomicU64;
    match g.compare_exchange(ptr::null_mut(), fresh, AcqRel, Acquire) {
        Ok(_) => fresh,
        Err(other) => {
            // SAFETY: `fresh` came from a boxed slice of `len` cells just above, never shared.
            drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, len)) });
            other
        }
    }
}

impl Drop for LocalHist {
    fn drop(&mut self) {
        let len = self.group_len();
        for g in self.groups.iter() {
            let p = g.load(Acquire);
            if !p.is_null() {
                // SAFETY: allocated by `alloc_group` as a boxed slice of `len` cells; dropped
                // once, here.
                drop(unsafe { Box::from_raw(ptr::slice_from_raw_parts_mut(p, len)) });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s4_a_histogram_checks_the_scale_of_every_position() {
        // A position found at scale 8 in a histogram of scale 0: its offset lies far past the
        // end of the histogram's bucket group of 8 cells.
        let h = LocalHist::new(0);
        let v = 1e10;
        h.record_positive(Position::of(index_table(8), v, 8), v);
        let mut d = Distribution::new(0);
        h.merge_into(&mut d);
        let mut want = Distribution::new(0);
        want.add_to_bucket(index_table(0).index_at(v, 0), 1);
        assert_eq!(
            (d.offset(), d.bucket_counts()),
            (want.offset(), want.bucket_counts()),
            "the record lands in the bucket of its value at the histogram's own scale"
        );
    }
}
