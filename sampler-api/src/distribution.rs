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
/// Exact for every normal `f64` at every scale: the answer is the bucket that exact arithmetic
/// gives, also for the floats nearest a boundary. A subnormal counts as the smallest normal,
/// `2^-1022`. At scales 0 and below the index is the binary exponent's arithmetic; above 0 a
/// table of the boundaries, exactly rounded down to floats, places the mantissa, so it
/// costs a table load and one comparison (no logarithm). The record path of timing instruments
/// uses the same table.
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

/// The boundaries `2^(j/256)`, `j` in `0..256`, of the finest scale (the boundaries of every
/// coarser scale are among them): for each, the 52 mantissa bits of the nearest `f64` at or
/// below it, `floor(2^52 · 2^(j/256)) - 2^52`. For `j > 0` the boundary is irrational, so that
/// float lies strictly below it and the next float strictly above.
///
/// Computed with exact integer arithmetic by `spec/vectors/gen_bucket_boundaries.py
/// --rust-table` (the largest integer `x` with `x^256 <= 2^(52·256 + j)`) and checked the same
/// way by this module's tests. (Not from `f64::powf`: rounded to nearest, and not always
/// correctly, a boundary that rounds up puts the float just below it one bucket too high.)
#[rustfmt::skip]
const BOUNDARY_MANTISSAS: [u64; 256] = [
    0x0000000000000, 0x00b1afa5abcbe, 0x0163da9fb3335, 0x02168143b0280,
    0x02c9a3e778060, 0x037d42e11bbcc, 0x04315e86e7f84, 0x04e5f72f654b1,
    0x059b0d3158574, 0x0650a0e3c1f88, 0x0706b29ddf6dd, 0x07bd42b72a836,
    0x0874518759bc8, 0x092bdf66607df, 0x09e3ecac6f383, 0x0a9c79b1f3919,
    0x0b5586cf9890f, 0x0c0f145e46c85, 0x0cc922b7247f7, 0x0d83b23395deb,
    0x0e3ec32d3d1a2, 0x0efa55fdfa9c4, 0x0fb66affed31a, 0x1073028d7233e,
    0x11301d0125b50, 0x11edbab5e2ab5, 0x12abdc06c31cb, 0x136a814f204aa,
    0x1429aaea92ddf, 0x14e95934f312d, 0x15a98c8a58e51, 0x166a45471c3c2,
    0x172b83c7d517a, 0x17ed48695bbc0, 0x18af9388c8de9, 0x1972658375d2f,
    0x1a35beb6fcb75, 0x1af99f8138a1c, 0x1bbe084045cd3, 0x1c82f95281c6b,
    0x1d4873168b9aa, 0x1e0e75eb44026, 0x1ed5022fcd91c, 0x1f9c18438ce4c,
    0x2063b88628cd6, 0x212be3578a819, 0x21f49917ddc96, 0x22bdda27912d1,
    0x2387a6e756238, 0x2451ffb82140a, 0x251ce4fb2a63f, 0x25e85711ece75,
    0x26b4565e27cdd, 0x2780e341ddf29, 0x284dfe1f56380, 0x291ba7591bb6f,
    0x29e9df51fdee1, 0x2ab8a66d10f12, 0x2b87fd0dad98f, 0x2c57e39771b2e,
    0x2d285a6e4030b, 0x2df961f641589, 0x2ecafa93e2f56, 0x2f9d24abd886a,
    0x306fe0a31b715, 0x31432edeeb2fd, 0x32170fc4cd831, 0x32eb83ba8ea31,
    0x33c08b26416ff, 0x3496266e3fa2c, 0x356c55f929ff0, 0x36431a2de883a,
    0x371a7373aa9ca, 0x37f26231e7549, 0x38cae6d05d865, 0x39a401b7140ee,
    0x3a7db34e59ff6, 0x3b57fbfec6cf4, 0x3c32dc313a8e4, 0x3d0e544ede173,
    0x3dea64c123422, 0x3ec70df1c5174, 0x3fa4504ac801b, 0x40822c367a024,
    0x4160a21f72e29, 0x423fb27094689, 0x431f5d950a896, 0x43ffa3f84b9d4,
    0x44e086061892d, 0x45c2042a7d231, 0x46a41ed1d0057, 0x4786d668b3236,
    0x486a2b5c13cd0, 0x494e1e192aed1, 0x4a32af0d7d3de, 0x4b17dea6db7d6,
    0x4bfdad5362a27, 0x4ce41b817c114, 0x4dcb299fddd0d, 0x4eb2d81d8abfe,
    0x4f9b2769d2ca6, 0x508417f4531ee, 0x516daa2cf6641, 0x5257de83f4eee,
    0x5342b569d4f81, 0x542e2f4f6ad27, 0x551a4ca5d920e, 0x56070dde910d1,
    0x56f4736b527da, 0x57e27dbe2c4ce, 0x58d12d497c7fd, 0x59c0827ff07cb,
    0x5ab07dd485429, 0x5ba11fba87a02, 0x5c9268a5946b7, 0x5d84590998b92,
    0x5e76f15ad2148, 0x5f6a320dceb70, 0x605e1b976dc08, 0x6152ae6cdf6f4,
    0x6247eb03a5584, 0x633dd1d1929fd, 0x6434634ccc31f, 0x652b9febc8fb6,
    0x6623882552224, 0x671c1c70833f5, 0x68155d44ca973, 0x690f4b19e9538,
    0x6a09e667f3bcc, 0x6b052fa75173e, 0x6c012750bdabe, 0x6cfdcddd47645,
    0x6dfb23c651a2e, 0x6ef9298593ae4, 0x6ff7df9519483, 0x70f7466f42e87,
    0x71f75e8ec5f73, 0x72f8286ead089, 0x73f9a48a58173, 0x74fbd35d7cbfd,
    0x75feb564267c8, 0x77024b1ab6e09, 0x780694fde5d3f, 0x790b938ac1cf6,
    0x7a11473eb0186, 0x7b17b0976cfda, 0x7c1ed0130c132, 0x7d26a62ff86f0,
    0x7e2f336cf4e62, 0x7f3878491c490, 0x80427543e1a11, 0x814d2add106d9,
    0x82589994cce12, 0x8364c1eb941f7, 0x8471a4623c7ac, 0x857f4179f5b20,
    0x868d99b4492ec, 0x879cad931a436, 0x88ac7d98a6699, 0x89bd0a478580f,
    0x8ace5422aa0db, 0x8be05bad61778, 0x8cf3216b5448b, 0x8e06a5e0866d8,
    0x8f1ae99157736, 0x902fed0282c8a, 0x9145b0b91ffc5, 0x925c353aa2fe1,
    0x93737b0cdc5e4, 0x948b82b5f98e4, 0x95a44cbc8520e, 0x96bdd9a7670b2,
    0x97d829fde4e4f, 0x98f33e47a22a2, 0x9a0f170ca07b9, 0x9b2bb4d53fe0c,
    0x9c49182a3f090, 0x9d674194bb8d4, 0x9e86319e32323, 0x9fa5e8d07f29d,
    0xa0c667b5de564, 0xa1e7aed8eb8bb, 0xa309bec4a2d33, 0xa42c980460ad7,
    0xa5503b23e255c, 0xa674a8af46052, 0xa799e1330b358, 0xa8bfe53c12e58,
    0xa9e6b5579fdbf, 0xab0e521356eba, 0xac36bbfd3f379, 0xad5ff3a3c2774,
    0xae89f995ad3ad, 0xafb4ce622f2fe, 0xb0e07298db665, 0xb20ce6c9a8952,
    0xb33a2b84f15fa, 0xb468415b749b0, 0xb59728de55939, 0xb6c6e29f1c52a,
    0xb7f76f2fb5e46, 0xb928cf22749e3, 0xba5b030a10649, 0xbb8e0b79a6f1e,
    0xbcc1e904bc1d2, 0xbdf69c3f3a206, 0xbf2c25bd71e08, 0xc06286141b33c,
    0xc199bdd85529c, 0xc2d1cd9fa652b, 0xc40ab5fffd07a, 0xc544778fafb22,
    0xc67f12e57d14b, 0xc7ba88988c932, 0xc8f6d9406e7b5, 0xca3405751c4da,
    0xcb720dcef9069, 0xccb0f2e6d1674, 0xcdf0b555dc3f9, 0xcf3155b5bab73,
    0xd072d4a07897b, 0xd1b532b08c968, 0xd2f87080d89f1, 0xd43c8eacaa1d6,
    0xd5818dcfba487, 0xd6c76e862e6d3, 0xd80e316c98397, 0xd955d71ff6075,
    0xda9e603db3285, 0xdbe7cd63a8314, 0xdd321f301b460, 0xde7d5641c0657,
    0xdfc97337b9b5e, 0xe11676b197d16, 0xe264614f5a128, 0xe3b333b16ee11,
    0xe502ee78b3ff6, 0xe653924676d75, 0xe7a51fbc74c83, 0xe8f7977cdb73f,
    0xea4afa2a490d9, 0xeb9f4867cca6e, 0xecf482d8e67f0, 0xee4aaa2188510,
    0xefa1bee615a27, 0xf0f9c1cb64129, 0xf252b376bba97, 0xf3ac948dd7273,
    0xf50765b6e4540, 0xf6632798844f8, 0xf7bfdad9cbe13, 0xf91d802243c88,
    0xfa7c1819e90d8, 0xfbdba3692d513, 0xfd3c22b8f71f1, 0xfe9d96b2a23d9,
];

/// Boundary tables for one positive scale.
pub(crate) struct IndexTable {
    scale: i8,
    /// One word per linear slice `j` of the mantissa (slice `j` starts at `j << shift`, where
    /// `shift = 52 - (scale + 1)`): the sub-bucket `k` holding the slice's start in the low 12
    /// bits, and above them the last mantissa in sub-bucket `k` (that of the nearest float at
    /// or below the boundary `2^((k + 1) / 2^scale)`, from [`BOUNDARY_MANTISSAS`]; `2^52 - 1`
    /// for the last sub-bucket).
    /// A slice meets at most one boundary (see `build`), so one load and one comparison find
    /// the sub-bucket of any mantissa, exactly. Sized for the largest scale, so masked indexes
    /// need no bounds checks.
    slices: [u64; TABLE],
}

impl IndexTable {
    fn build(scale: i8) -> Self {
        let n = 1usize << scale;
        let step = 1usize << (MAX_SCALE - scale);
        // The last mantissa of each sub-bucket: a mantissa `m > 0` lies in sub-bucket `k` of its
        // octave exactly when `last[k - 1] < m <= last[k]` (its float is above the boundary
        // `2^(k/n)` and at most `2^((k+1)/n)`).
        let last: Vec<u64> = (1..=n)
            .map(|k| {
                if k < n {
                    BOUNDARY_MANTISSAS[k * step]
                } else {
                    MANT_MASK
                }
            })
            .collect();
        // Twice as many linear slices as buckets: the narrowest bucket (2^(1/n) - 1 > ln 2 / n
        // of an octave) is wider than a slice (1 / 2n), so one slice meets at most one boundary.
        let shift = MANT_BITS - (scale as u32 + 1);
        let mut slices = [0u64; TABLE];
        for (j, w) in slices.iter_mut().enumerate().take(2 * n) {
            let m = (j as u64) << shift;
            let k = last.partition_point(|&l| l < m);
            let end = m + (1 << shift) - 1;
            assert!(
                k + 1 >= n || last[k + 1] >= end,
                "slice {j} meets two boundaries"
            );
            *w = (last[k] << 12) | k as u64;
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
    use proptest::prelude::*;

    /// `x^(2^k)` as little-endian 64-bit limbs, by repeated exact squaring.
    fn pow_pow2(x: u64, k: u32) -> Vec<u64> {
        let mut a = vec![x];
        for _ in 0..k {
            let mut sq = vec![0u64; 2 * a.len()];
            for (i, &ai) in a.iter().enumerate() {
                let mut carry = 0u128;
                for (j, &aj) in a.iter().enumerate() {
                    let t = ai as u128 * aj as u128 + sq[i + j] as u128 + carry;
                    sq[i + j] = t as u64;
                    carry = t >> 64;
                }
                sq[i + a.len()] = carry as u64;
            }
            while sq.len() > 1 && sq[sq.len() - 1] == 0 {
                sq.pop();
            }
            a = sq;
        }
        a
    }

    fn bit_len(a: &[u64]) -> u64 {
        let top = a.len() - 1;
        64 * top as u64 + (64 - a[top].leading_zeros()) as u64
    }

    /// The bucket index of a positive normal `value` by integer arithmetic only: at scale
    /// `s > 0` the value `M · 2^(e-52)` (`M` its 53-bit significand) lies above the boundary
    /// `2^(e + j/2^s)` exactly when `M^(2^s) > 2^(52·2^s + j)`, which the bit length of the exact
    /// power `M^(2^s)` decides (it is a power of two only when `M` is).
    fn exact_index(value: f64, scale: i8) -> i32 {
        assert!(value.is_normal() && value > 0.0);
        let bits = value.to_bits();
        let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
        let mant = bits & MANT_MASK;
        let i = if scale > 0 {
            let n = 1i64 << scale;
            if mant == 0 {
                e * n - 1
            } else {
                let len = bit_len(&pow_pow2(mant | 1 << 52, scale as u32)) as i64;
                // 2^(len-1) < M^n < 2^len: the boundaries 2^(52n + j) below M^n are those
                // with j <= len - 1 - 52n.
                e * n + (len - 1 - 52 * n)
            }
        } else {
            // the least t with value <= 2^t, then the least m with m · 2^-scale >= t
            let t = e + (mant != 0) as i64;
            let w = 1i64 << -scale;
            -(-t).div_euclid(w) - 1
        };
        i as i32
    }

    /// The index through the record path's table (a constant scale for the default scale, as
    /// `local::timing_record` has it).
    fn record_path_index(value: f64, scale: i8) -> Option<i32> {
        (scale >= 0).then(|| {
            let t = index_table(scale);
            if scale == crate::instruments::DEFAULT_SCALE {
                t.index_at(value, crate::instruments::DEFAULT_SCALE)
            } else {
                t.index_at(value, scale)
            }
        })
    }

    #[test]
    fn boundary_table_is_exact() {
        // For every j > 0, x = 2^52 + BOUNDARY_MANTISSAS[j] is the largest integer with
        // x^256 <= 2^(52·256 + j): x^256 < 2^P < (x + 1)^256 (neither is a power of two).
        assert_eq!(BOUNDARY_MANTISSAS[0], 0);
        for (j, &m) in BOUNDARY_MANTISSAS.iter().enumerate().skip(1) {
            let x = (1u64 << 52) | m;
            let p = 52 * 256 + j as u64;
            assert!(
                bit_len(&pow_pow2(x, 8)) <= p,
                "entry {j} is above its boundary"
            );
            assert!(
                bit_len(&pow_pow2(x + 1, 8)) > p,
                "entry {j} is not the nearest below"
            );
        }
        assert!(BOUNDARY_MANTISSAS.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn index_is_exact_on_the_boundary_vectors() {
        // The same vectors as tests/api/vectors.rs, here through the record path's table too,
        // over the whole range (a timing's histogram clamps outside 2^-64..2^64).
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../spec/vectors/bucket_boundaries.json"))
                .unwrap();
        let mut n = 0;
        for s in v["scales"].as_array().unwrap() {
            let scale = s["scale"].as_i64().unwrap() as i8;
            for c in s["cases"].as_array().unwrap() {
                let (value, want) = (c[0].as_f64().unwrap(), c[1].as_i64().unwrap() as i32);
                if scale <= 6 {
                    // the two exact computations agree (the finest scales' powers are slow to
                    // square in a debug build; the proptest covers them)
                    assert_eq!(
                        exact_index(value, scale),
                        want,
                        "reference: {value:e} s{scale}"
                    );
                }
                assert_eq!(
                    bucket_index(value, scale),
                    want,
                    "{value:e} at scale {scale}"
                );
                if let Some(got) = record_path_index(value, scale) {
                    assert_eq!(got, want, "record path: {value:e} at scale {scale}");
                }
                n += 1;
            }
        }
        assert_eq!(n, v["count"].as_u64().unwrap());
    }

    #[test]
    fn every_boundary_of_every_scale_splits_its_neighbours() {
        // The floats next to each boundary 2^(k/n) of the octave [1, 2) (and 1 itself), against
        // the integer-only reference; in other octaves the sub-bucket is the same, e·n on.
        for scale in 1..=MAX_SCALE {
            let n = 1i32 << scale;
            for k in 0..n as usize {
                let below = BOUNDARY_MANTISSAS[k << (MAX_SCALE - scale)];
                for m in [below.wrapping_sub(1), below, below + 1, below + 2] {
                    if m > MANT_MASK {
                        continue;
                    }
                    let at_1 = exact_index(f64::from_bits(1023 << 52 | m), scale);
                    for e in [-1022i32, -300, -1, 0, 1, 77, 1023] {
                        let v = f64::from_bits(((e + 1023) as u64) << 52 | m);
                        let want = at_1 + e * n;
                        assert_eq!(bucket_index(v, scale), want, "{v:e} at scale {scale}");
                        assert_eq!(record_path_index(v, scale), Some(want));
                    }
                }
            }
        }
    }

    /// A positive normal float: any, or one within a few ulps of a boundary `2^(k/2^s)` of its
    /// octave (placed with `powf`, which only has to land near it: the reference is exact).
    fn normal_float() -> impl Strategy<Value = f64> {
        let any = (1u64..=2046, 0..=MANT_MASK).prop_map(|(e, m)| f64::from_bits(e << 52 | m));
        let near = (1u64..=2046, 1u32..=8, 0u64..256, -3i64..=3).prop_map(|(e, s, k, d)| {
            let k = k % (1 << s);
            let b = (2f64).powf(k as f64 / (1u64 << s) as f64).to_bits() & MANT_MASK;
            let m = (b as i64 + d).clamp(0, MANT_MASK as i64) as u64;
            f64::from_bits(e << 52 | m)
        });
        prop_oneof![any, near]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn index_matches_exact_reference(v in normal_float()) {
            for scale in MIN_SCALE..=MAX_SCALE {
                let want = exact_index(v, scale);
                prop_assert_eq!(bucket_index(v, scale), want, "{:e} at scale {}", v, scale);
                let mut d = Distribution::new(scale);
                d.record(v);
                prop_assert_eq!((d.offset(), d.bucket_counts()), (want, &[1u64][..]));
                if let Some(got) = record_path_index(v, scale) {
                    prop_assert_eq!(got, want, "record path: {:e} at scale {}", v, scale);
                }
            }
        }
    }

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
