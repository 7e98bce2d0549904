//! Distributions: base-2 exponential histograms, the scheme of OTLP exponential histograms and
//! Prometheus native histograms.
//!
//! At scale `s` the base is `b = 2^(2^-s)`, and bucket `i` holds the values in `(b^i, b^(i+1)]`.
//! Zero (and anything recorded below zero) goes to a separate zero bucket. Quantiles estimated
//! from the buckets are within a relative error of `(b - 1) / (b + 1)` of the exact nearest-rank
//! quantile: 4.33 % at scale 3, 2.17 % at scale 4, 1.08 % at scale 5 (see
//! [`Distribution::relative_error`] and `spec/sampler-api.md`, "Timing").

use std::sync::OnceLock;

const MANT_BITS: u32 = 52;
const MANT_MASK: u64 = (1 << MANT_BITS) - 1;

/// The smallest scale a timing instrument records at.
pub const MIN_SCALE: i8 = -10;
/// The largest scale supported (256 buckets per power of two).
pub const MAX_SCALE: i8 = 8;

/// A cumulative distribution snapshot: count, sum, min, max, a zero bucket and dense
/// exponential buckets from `offset` on.
///
/// ```
/// use sampler_api::Distribution;
/// let mut d = Distribution::new(3);
/// for v in [0.010, 0.020, 0.030, 0.040, 1.0] {
///     d.record(v);
/// }
/// assert_eq!(d.count(), 5);
/// let p50 = d.quantile(0.5).unwrap();
/// assert!((p50 - 0.030).abs() / 0.030 <= Distribution::relative_error(3));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Distribution {
    scale: i8,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    zero_count: u64,
    offset: i32,
    buckets: Vec<u64>,
}

impl Distribution {
    /// An empty distribution at `scale` (clamped to `MIN_SCALE..=MAX_SCALE`).
    pub fn new(scale: i8) -> Self {
        Distribution {
            scale: scale.clamp(MIN_SCALE, MAX_SCALE),
            count: 0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            zero_count: 0,
            offset: 0,
            buckets: Vec::new(),
        }
    }

    /// A distribution from its parts (as another process or protocol reports it).
    /// The count is the zero count plus the bucket counts.
    pub fn from_parts(
        scale: i8,
        zero_count: u64,
        offset: i32,
        buckets: Vec<u64>,
        sum: f64,
        min: f64,
        max: f64,
    ) -> Self {
        let count = zero_count + buckets.iter().sum::<u64>();
        let (min, max) = if count == 0 {
            (f64::INFINITY, f64::NEG_INFINITY)
        } else {
            (min, max)
        };
        Distribution {
            scale: scale.clamp(MIN_SCALE, MAX_SCALE),
            count,
            sum,
            min,
            max,
            zero_count,
            offset,
            buckets,
        }
    }

    /// Records one value. NaN is ignored; values at or below zero count in the zero bucket.
    pub fn record(&mut self, value: f64) {
        self.record_n(value, 1);
    }

    /// Records `n` observations of one value.
    pub fn record_n(&mut self, value: f64, n: u64) {
        if value.is_nan() || n == 0 {
            return;
        }
        let value = value.max(0.0);
        self.count += n;
        self.sum += value * n as f64;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
        if value == 0.0 {
            self.zero_count += n;
            return;
        }
        let index = bucket_index(value, self.scale);
        self.add_to_bucket(index, n);
    }

    pub(crate) fn add_to_bucket(&mut self, index: i32, n: u64) {
        if self.buckets.is_empty() {
            self.offset = index;
            self.buckets.push(0);
        } else if index < self.offset {
            let grow = (self.offset - index) as usize;
            self.buckets.splice(0..0, std::iter::repeat(0).take(grow));
            self.offset = index;
        } else if index >= self.offset + self.buckets.len() as i32 {
            self.buckets.resize((index - self.offset) as usize + 1, 0);
        }
        self.buckets[(index - self.offset) as usize] += n;
    }

    pub(crate) fn set_totals(&mut self, sum: f64, min: f64, max: f64, zero_count: u64) {
        self.zero_count = zero_count;
        self.count = zero_count + self.buckets.iter().sum::<u64>();
        self.sum = sum;
        self.min = min;
        self.max = max;
    }

    /// The scale: `2^scale` buckets per power of two.
    pub fn scale(&self) -> i8 {
        self.scale
    }
    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.count
    }
    /// The sum of the recorded values.
    pub fn sum(&self) -> f64 {
        self.sum
    }
    /// The smallest recorded value (`+inf` when empty).
    pub fn min(&self) -> f64 {
        self.min
    }
    /// The largest recorded value (`-inf` when empty).
    pub fn max(&self) -> f64 {
        self.max
    }
    /// The mean, or `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
    /// How many values were zero (or below).
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }
    /// The index of the first bucket in [`bucket_counts`](Self::bucket_counts).
    pub fn offset(&self) -> i32 {
        self.offset
    }
    /// Dense bucket counts; entry `i` counts the values in bucket `offset + i`.
    pub fn bucket_counts(&self) -> &[u64] {
        &self.buckets
    }

    /// The bounds `(lower, upper]` of bucket `index` at this distribution's scale.
    pub fn bucket_bounds(&self, index: i32) -> (f64, f64) {
        (
            bucket_lower_bound(index, self.scale),
            bucket_lower_bound(index + 1, self.scale),
        )
    }

    /// Non-empty buckets as `(lower, upper, count)`, in increasing order.
    pub fn buckets(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| {
                let (lo, hi) = self.bucket_bounds(self.offset + i as i32);
                (lo, hi, *c)
            })
    }

    /// How many recorded values are at most `bound`, counting a bucket only when its upper
    /// bound is at most `bound` (exact when `bound` is a bucket boundary or outside the data).
    pub fn count_at_most(&self, bound: f64) -> u64 {
        if bound < 0.0 {
            return 0;
        }
        if bound >= self.max {
            return self.count;
        }
        let mut n = self.zero_count;
        for (i, c) in self.buckets.iter().enumerate() {
            let (_, hi) = self.bucket_bounds(self.offset + i as i32);
            if hi > bound * (1.0 + 1e-12) {
                break;
            }
            n += c;
        }
        n
    }

    /// Estimates the `q`-quantile (`0 <= q <= 1`), or `None` when empty.
    ///
    /// The exact value is the nearest-rank quantile: the value of rank `max(1, ceil(q * count))`
    /// in sorted order. The estimate is the point of that value's bucket with the least worst-case
    /// relative error, `2·lo·hi / (lo + hi)`, clamped to `[min, max]`; `q = 0` gives `min` and
    /// `q = 1` gives `max` exactly.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || q.is_nan() {
            return None;
        }
        if q <= 0.0 {
            return Some(self.min);
        }
        if q >= 1.0 {
            return Some(self.max);
        }
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank <= self.zero_count {
            return Some(0f64.clamp(self.min, self.max));
        }
        let mut seen = self.zero_count;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = self.bucket_bounds(self.offset + i as i32);
                let est = 2.0 * lo * hi / (lo + hi);
                return Some(est.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// The worst relative error of [`quantile`](Self::quantile) at `scale`: `(b - 1) / (b + 1)`.
    pub fn relative_error(scale: i8) -> f64 {
        let b = base(scale);
        (b - 1.0) / (b + 1.0)
    }

    /// Adds another distribution's observations; a finer scale is first lowered to match.
    pub fn merge(&mut self, other: &Distribution) {
        if other.count == 0 {
            return;
        }
        let mut other = other.clone();
        if other.scale > self.scale {
            other.downscale(other.scale - self.scale);
        } else if other.scale < self.scale {
            self.downscale(self.scale - other.scale);
        }
        for (i, c) in other.buckets.iter().enumerate() {
            if *c > 0 {
                self.add_to_bucket(other.offset + i as i32, *c);
            }
        }
        self.zero_count += other.zero_count;
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// Lowers the scale by `by` steps, merging each `2^by` neighbouring buckets into one.
    pub fn downscale(&mut self, by: i8) {
        if by <= 0 {
            return;
        }
        let by = by.min(self.scale - MIN_SCALE);
        let old = std::mem::take(&mut self.buckets);
        let old_offset = self.offset;
        self.scale -= by;
        for (i, c) in old.into_iter().enumerate() {
            if c > 0 {
                self.add_to_bucket((old_offset + i as i32) >> by, c);
            }
        }
    }
}

/// The base `2^(2^-scale)` of the buckets at `scale`.
pub fn base(scale: i8) -> f64 {
    (2f64).powf((2f64).powi(-(scale as i32)))
}

/// The lower bound `b^index` of bucket `index` at `scale`.
pub fn bucket_lower_bound(index: i32, scale: i8) -> f64 {
    if scale <= 0 {
        let e = (index as i64) << (-scale as i64);
        (2f64).powi(e.clamp(-1100, 1100) as i32)
    } else {
        (2f64).powf(index as f64 / (1u64 << scale) as f64)
    }
}

/// The index of the bucket `(b^i, b^(i+1)]` that holds `value` (`value > 0`, finite) at `scale`.
///
/// Exact at powers of two; uses a table of boundaries instead of a logarithm, so it costs a
/// table load and one comparison.
///
/// ```
/// use sampler_api::distribution::bucket_index;
/// assert_eq!(bucket_index(1.0, 0), -1); // (0.5, 1]
/// assert_eq!(bucket_index(1.5, 0), 0); // (1, 2]
/// assert_eq!(bucket_index(2.0, 3), 7); // 2 = b^8 closes bucket 7 at scale 3
/// ```
pub fn bucket_index(value: f64, scale: i8) -> i32 {
    let (exp, mant) = split(value);
    if scale <= 0 {
        let e = exp - (mant == 0) as i32;
        return e >> (-scale);
    }
    index_table(scale).index_of(exp, mant)
}

/// The binary exponent and the 52 mantissa bits of a positive `value`; a subnormal counts as
/// the smallest normal power of two.
#[inline(always)]
fn split(value: f64) -> (i32, u64) {
    let bits = value.to_bits();
    let raw_exp = ((bits >> MANT_BITS) & 0x7ff) as i32;
    if raw_exp == 0 {
        (-1022, 0)
    } else {
        (raw_exp - 1023, bits & MANT_MASK)
    }
}

/// Entries in each boundary table: enough for `2^(MAX_SCALE + 1)` linear slices.
const TABLE: usize = 2 << MAX_SCALE;

/// Boundary tables for one positive scale.
pub(crate) struct IndexTable {
    scale: i8,
    /// One word per linear slice `j` of the mantissa (slice `j` starts at `j << shift`, where
    /// `shift = 52 - (scale + 1)`): the sub-bucket `k` holding the slice's start in the low 12
    /// bits, and above them the last mantissa still in sub-bucket `k` (the next boundary minus
    /// one; at most `2^52 - 1`).
    /// A slice meets at most one boundary (see `build`), so one load and one comparison find
    /// the sub-bucket of any mantissa. Sized for the largest scale, so masked indexes need no
    /// bounds checks.
    slices: [u64; TABLE],
}

impl IndexTable {
    fn build(scale: i8) -> Self {
        let n = 1usize << scale;
        let mut bounds = Vec::with_capacity(n + 1);
        bounds.push(0u64);
        for k in 1..n {
            let b = (2f64).powf(k as f64 / n as f64);
            bounds.push(b.to_bits() & MANT_MASK);
        }
        bounds.push(1 << MANT_BITS);
        // Twice as many linear slices as buckets: the narrowest bucket (2^(1/n) - 1 > ln 2 / n
        // of an octave) is wider than a slice (1 / 2n), so one slice meets at most one boundary.
        let shift = MANT_BITS - (scale as u32 + 1);
        let mut slices = [0u64; TABLE];
        for (j, w) in slices.iter_mut().enumerate().take(2 * n) {
            let m = (j as u64) << shift;
            let k = bounds.partition_point(|&b| b <= m) - 1;
            *w = ((bounds[k + 1] - 1) << 12) | k as u64;
        }
        IndexTable { scale, slices }
    }

    /// The scale this table is for.
    #[inline(always)]
    pub(crate) fn scale(&self) -> i8 {
        self.scale
    }

    #[inline(always)]
    fn sub_index(&self, mant: u64, shift: u32) -> usize {
        let w = self.slices[(mant >> shift) as usize % TABLE];
        (w & 0xfff) as usize + (mant > w >> 12) as usize
    }

    /// The bucket index of `2^exp · (1 + mant / 2^52)`.
    #[inline(always)]
    pub(crate) fn index_of(&self, exp: i32, mant: u64) -> i32 {
        self.index_at_scale(exp, mant, self.scale)
    }

    /// The bucket index of a positive `value` (subnormals count as the smallest normal), given
    /// this table's scale: with a constant `scale` the shifts become constants too.
    #[inline(always)]
    pub(crate) fn index_at(&self, value: f64, scale: i8) -> i32 {
        let (exp, mant) = split(value);
        self.index_at_scale(exp, mant, scale)
    }

    #[inline(always)]
    fn index_at_scale(&self, exp: i32, mant: u64, scale: i8) -> i32 {
        debug_assert_eq!(scale, self.scale);
        let shift = MANT_BITS - (scale as u32 + 1);
        (exp << scale) + self.sub_index(mant, shift) as i32 - (mant == 0) as i32
    }
}

/// The table for `scale` (0 to `MAX_SCALE`; at scale 0 it always answers sub-bucket 0).
pub(crate) fn index_table(scale: i8) -> &'static IndexTable {
    static TABLES: [OnceLock<IndexTable>; MAX_SCALE as usize + 1] =
        [const { OnceLock::new() }; MAX_SCALE as usize + 1];
    TABLES[scale.clamp(0, MAX_SCALE) as usize]
        .get_or_init(|| IndexTable::build(scale.clamp(0, MAX_SCALE)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index_by_log(v: f64, scale: i8) -> i32 {
        ((v.log2() * (2f64).powi(scale as i32)).ceil() - 1.0) as i32
    }

    #[test]
    fn index_matches_logarithm_away_from_boundaries() {
        let mut x = 1e-9f64;
        while x < 1e9 {
            for scale in [-2i8, 0, 1, 3, 4, 5, 8] {
                let want = index_by_log(x, scale);
                let got = bucket_index(x, scale);
                // The log is itself inexact next to a boundary; away from one they must agree.
                let (lo, hi) = (
                    bucket_lower_bound(got, scale),
                    bucket_lower_bound(got + 1, scale),
                );
                assert!(
                    lo < x * (1.0 + 1e-12) && x <= hi * (1.0 + 1e-12),
                    "{x} s{scale} {lo} {hi}"
                );
                assert!(
                    (want - got).abs() <= 1,
                    "{x} scale {scale}: {want} vs {got}"
                );
            }
            x *= 1.0137;
        }
    }

    #[test]
    fn powers_of_two_close_their_bucket() {
        for scale in [-3i8, 0, 2, 3, 6] {
            let step = if scale < 0 { 1 << -scale } else { 1 };
            for e in (-24..24).filter(|e: &i32| e % step == 0) {
                let v = (2f64).powi(e);
                let i = bucket_index(v, scale);
                let (_, hi) = (
                    bucket_lower_bound(i, scale),
                    bucket_lower_bound(i + 1, scale),
                );
                assert_eq!(hi, v, "2^{e} at scale {scale}");
            }
        }
    }

    #[test]
    fn downscale_and_merge_keep_counts() {
        let mut a = Distribution::new(5);
        let mut b = Distribution::new(3);
        for i in 1..1000 {
            a.record(i as f64 * 0.001);
            b.record(i as f64 * 0.37);
        }
        a.merge(&b);
        assert_eq!(a.scale(), 3);
        assert_eq!(a.count(), 1998);
        assert_eq!(a.bucket_counts().iter().sum::<u64>() + a.zero_count(), 1998);
    }
}
