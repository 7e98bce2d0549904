//! The least a timing record can cost: one thread's scale-3 exponential histogram with every
//! bucket allocated up front, reached with no lookup at all. No library can record into a
//! histogram it has to find first any faster, so this is the timing benchmarks' floor.
//!
//! It keeps its own copy of the scale-3 boundary table rather than calling
//! `sampler_api::distribution::bucket_index`, which looks its table up on every call; a test
//! proves both give the same buckets.

use std::cell::UnsafeCell;

/// Buckets per power of two at scale 3.
const PER_OCTAVE: usize = 8;
/// Bucket indexes covered: `[-512, 512)`, values from 2^-64 to 2^64.
const RANGE: i32 = 64 * PER_OCTAVE as i32;

/// A histogram with all its buckets in place: sums in four lanes (as ours), min, max, count
/// per bucket. Values must be positive and normal.
///
/// ```
/// use sampler_benches::floor::DenseHistogram;
/// let mut h = DenseHistogram::new();
/// h.record(1.5);
/// h.record(0.001);
/// assert_eq!(h.count(), 2);
/// assert_eq!(h.bucket_of(1.5), h.bucket_of(1.45));
/// ```
#[derive(Debug)]
pub struct DenseHistogram {
    sums: [f64; 4],
    min: u64,
    max: u64,
    buckets: [u64; 2 * RANGE as usize],
    /// Per eighth of the mantissa: the sub-bucket there and the last mantissa still in it.
    slices: [u64; 16],
}

impl Default for DenseHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl DenseHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        // Boundaries of the 8 sub-buckets of an octave as mantissas: 2^(k/8) - 1 in 52 bits.
        let bound = |k: u64| -> u64 {
            if k == 8 {
                1 << 52
            } else {
                (2f64.powf(k as f64 / 8.0).to_bits()) & ((1 << 52) - 1)
            }
        };
        let mut slices = [0u64; 16];
        for (j, w) in slices.iter_mut().enumerate() {
            let m = (j as u64) << 48;
            let k = (0..8).rev().find(|&k| bound(k) <= m).unwrap_or(0);
            *w = ((bound(k + 1) - 1) << 12) | k;
        }
        DenseHistogram {
            sums: [0.0; 4],
            min: u64::MAX,
            max: 0,
            buckets: [0; 2 * RANGE as usize],
            slices,
        }
    }

    /// The bucket index of a positive normal `value` (bucket `i` holds `(2^(i/8), 2^((i+1)/8)]`).
    #[inline(always)]
    pub fn bucket_of(&self, value: f64) -> i32 {
        let bits = value.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32 - 1023;
        let mant = bits & ((1 << 52) - 1);
        let w = self.slices[(mant >> 48) as usize];
        let sub = (w & 0xfff) as i32 + (mant > w >> 12) as i32;
        (exp * PER_OCTAVE as i32) + sub - (mant == 0) as i32
    }

    /// Records a positive normal value.
    #[inline(always)]
    pub fn record(&mut self, value: f64) {
        let bits = value.to_bits();
        let i = (self.bucket_of(value).clamp(-RANGE, RANGE - 1) + RANGE) as usize;
        self.sums[bits as usize % 4] += value;
        if bits < self.min {
            self.min = bits;
        }
        if bits > self.max {
            self.max = bits;
        }
        self.buckets[i] += 1;
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// `(index, count)` of every non-empty bucket.
    pub fn buckets(&self) -> impl Iterator<Item = (i32, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (i as i32 - RANGE, n))
    }
}

thread_local! {
    static DENSE: UnsafeCell<DenseHistogram> = UnsafeCell::new(DenseHistogram::new());
}

/// Records into this thread's [`DenseHistogram`].
///
/// ```
/// sampler_benches::floor::record_local(0.25);
/// assert_eq!(sampler_benches::floor::local_count(), 1);
/// ```
#[inline(always)]
pub fn record_local(value: f64) {
    // SAFETY: the histogram is this thread's and no reference to it outlives this call.
    DENSE.with(|h| unsafe { (*h.get()).record(value) });
}

/// Values recorded into this thread's [`DenseHistogram`].
pub fn local_count() -> u64 {
    // SAFETY: as in `record_local`.
    DENSE.with(|h| unsafe { (*h.get()).count() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sampler_api::Distribution;

    #[test]
    fn buckets_equal_the_standard_distribution() {
        let mut dense = DenseHistogram::new();
        let mut reference = Distribution::new(3);
        for v in crate::timing_values()
            .into_iter()
            .chain([1.0, 2.0, 0.5, 1.0905077326652577])
        {
            dense.record(v);
            reference.record(v);
        }
        let want: Vec<(i32, u64)> = reference
            .bucket_counts()
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(i, &n)| (reference.offset() + i as i32, n))
            .collect();
        assert_eq!(dense.buckets().collect::<Vec<_>>(), want);
        assert_eq!(dense.count(), reference.count());
    }
}
