//! The delimited protobuf exposition (`io.prometheus.client.MetricFamily`, proto2), which is
//! the only way Prometheus ingests native histograms.
//!
//! The messages are declared here with `prost` derives (the fields this exporter writes), so
//! no `protoc` or build script is needed. Field numbers follow `io/prometheus/client/metrics.proto`.

use prost::Message;
use sampler_api::{Distribution, Kind, LabelsRef, Value};

use crate::config::TimingMode;
use crate::encode::{Encoder, Plan};
use crate::mapping::label_name;

/// `MetricType` values.
const COUNTER: i32 = 0;
const GAUGE: i32 = 1;
const SUMMARY: i32 = 2;
const HISTOGRAM: i32 = 4;

/// The lowest native histogram schema Prometheus accepts.
pub const MIN_SCHEMA: i8 = -4;
/// The highest native histogram schema Prometheus accepts.
pub const MAX_SCHEMA: i8 = 8;

/// The zero bucket's threshold: the smallest normal `f64`. The zero bucket of a distribution
/// holds exactly the values recorded as zero (or below); a threshold above zero also tells
/// Prometheus 2.x that an empty histogram is a native one.
pub const ZERO_THRESHOLD: f64 = f64::MIN_POSITIVE;

#[derive(Clone, PartialEq, Message)]
pub(crate) struct MetricFamily {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub help: Option<String>,
    #[prost(int32, optional, tag = "3")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "4")]
    pub metric: Vec<Metric>,
    #[prost(string, optional, tag = "5")]
    pub unit: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Metric {
    #[prost(message, repeated, tag = "1")]
    pub label: Vec<LabelPair>,
    #[prost(message, optional, tag = "2")]
    pub gauge: Option<Gauge>,
    #[prost(message, optional, tag = "3")]
    pub counter: Option<Counter>,
    #[prost(message, optional, tag = "4")]
    pub summary: Option<Summary>,
    #[prost(message, optional, tag = "7")]
    pub histogram: Option<Histogram>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct LabelPair {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub value: Option<String>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Gauge {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Counter {
    #[prost(double, optional, tag = "1")]
    pub value: Option<f64>,
    #[prost(message, optional, tag = "3")]
    pub created_timestamp: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Quantile {
    #[prost(double, optional, tag = "1")]
    pub quantile: Option<f64>,
    #[prost(double, optional, tag = "2")]
    pub value: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Summary {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    #[prost(message, repeated, tag = "3")]
    pub quantile: Vec<Quantile>,
    #[prost(message, optional, tag = "4")]
    pub created_timestamp: Option<Timestamp>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Bucket {
    #[prost(uint64, optional, tag = "1")]
    pub cumulative_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub upper_bound: Option<f64>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct BucketSpan {
    #[prost(sint32, optional, tag = "1")]
    pub offset: Option<i32>,
    #[prost(uint32, optional, tag = "2")]
    pub length: Option<u32>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Histogram {
    #[prost(uint64, optional, tag = "1")]
    pub sample_count: Option<u64>,
    #[prost(double, optional, tag = "2")]
    pub sample_sum: Option<f64>,
    #[prost(message, repeated, tag = "3")]
    pub bucket: Vec<Bucket>,
    #[prost(sint32, optional, tag = "5")]
    pub schema: Option<i32>,
    #[prost(double, optional, tag = "6")]
    pub zero_threshold: Option<f64>,
    #[prost(uint64, optional, tag = "7")]
    pub zero_count: Option<u64>,
    #[prost(message, repeated, tag = "12")]
    pub positive_span: Vec<BucketSpan>,
    #[prost(sint64, repeated, packed = "false", tag = "13")]
    pub positive_delta: Vec<i64>,
    #[prost(message, optional, tag = "15")]
    pub created_timestamp: Option<Timestamp>,
}

/// A distribution's buckets as a native histogram: schema, zero count, spans and deltas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NativeBuckets {
    /// The schema (the distribution's scale, raised to -4 when it is lower).
    pub schema: i8,
    /// Values recorded as zero (or below).
    pub zero_count: u64,
    /// `(offset, length)` spans of positive buckets; the first offset is absolute.
    pub spans: Vec<(i32, u32)>,
    /// Bucket counts, the first absolute and each next one as a difference from the previous.
    pub deltas: Vec<i64>,
}

/// Converts a distribution's buckets to native histogram buckets.
///
/// A distribution's bucket `i` holds `(b^i, b^(i+1)]`; Prometheus numbers that bucket `i + 1`.
/// Gaps of up to two empty buckets stay inside a span (as zero deltas), as Prometheus'
/// own clients do. Scales below -4 are written at schema -4: each coarse bucket's count goes
/// to the schema -4 bucket that shares its upper bound, so no count moves below its bound.
///
/// ```
/// use sampler_api::Distribution;
/// use sampler_exporter_prometheus::native_buckets;
/// let mut d = Distribution::new(0);
/// for v in [0.0, 1.0, 1.5, 1.5, 8.0] {
///     d.record(v);
/// }
/// let n = native_buckets(&d);
/// assert_eq!(n.schema, 0);
/// assert_eq!(n.zero_count, 1);
/// // (0.5,1] is Prometheus bucket 0, (1,2] bucket 1, (4,8] bucket 3.
/// assert_eq!(n.spans, vec![(0, 4)]);
/// assert_eq!(n.deltas, vec![1, 1, -2, 1]);
/// ```
pub fn native_buckets(d: &Distribution) -> NativeBuckets {
    let scale = d.scale();
    let offset = d.offset() as i64;
    let (schema, shift) = if scale < MIN_SCHEMA {
        (MIN_SCHEMA, (MIN_SCHEMA - scale) as u32)
    } else {
        (scale.min(MAX_SCHEMA), 0)
    };
    let mut spans: Vec<(i32, u32)> = Vec::new();
    let mut deltas = Vec::new();
    let mut prev = 0i64;
    let mut end: Option<i64> = None;
    for (i, c) in d.bucket_counts().iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let otel = offset + i as i64;
        // Prometheus index: one more than the distribution's; after raising the scale, the
        // fine bucket whose upper bound is the coarse bucket's.
        let idx = ((otel + 1) << shift) - 1 + 1;
        match end {
            Some(e) if idx - e <= 2 => {
                for _ in e..idx {
                    deltas.push(-prev);
                    prev = 0;
                }
                if let Some(last) = spans.last_mut() {
                    last.1 += (idx - e) as u32 + 1;
                }
            }
            Some(e) => spans.push(((idx - e) as i32, 1)),
            None => spans.push((idx as i32, 1)),
        }
        deltas.push(*c as i64 - prev);
        prev = *c as i64;
        end = Some(idx + 1);
    }
    NativeBuckets {
        schema,
        zero_count: d.zero_count(),
        spans,
        deltas,
    }
}

/// A start time, given in nanoseconds since the Unix epoch (as a snapshot keeps it).
fn timestamp(unix_nanos: u64) -> Timestamp {
    Timestamp {
        seconds: (unix_nanos / 1_000_000_000) as i64,
        nanos: (unix_nanos % 1_000_000_000) as i32,
    }
}

/// The label pairs as the protobuf exposition carries them: names mapped (a key equal to
/// `le` and `quantile` become `exported_<key>`), values raw.
fn labels(labels: LabelsRef<'_>) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(k, v)| LabelPair {
            name: Some(if crate::mapping::is_reserved_label(k) {
                format!("exported_{k}")
            } else {
                label_name(k).into_owned()
            }),
            value: Some(v.to_owned()),
        })
        .collect()
}

/// Writes the plan as delimited `MetricFamily` messages.
pub(crate) fn encode(enc: &mut Encoder, plan: &Plan<'_>, out: &mut Vec<u8>) {
    let created = enc.created();
    let quantiles = enc.quantile_values();
    for f in plan.families.iter().filter(|f| !f.dropped) {
        // Native buckets cannot be scaled to another unit: a converted timing is written
        // with its classic buckets (or as a summary) alone.
        let native = enc.native_histograms() && f.scale.is_one();
        let (name, kind) = match (f.kind, enc.timings(), native) {
            (Kind::Counter, _, _) => (format!("{}_total", f.name), COUNTER),
            (Kind::Gauge, _, _) => (f.name.clone(), GAUGE),
            (Kind::Timing, TimingMode::Summary, false) => (f.name.clone(), SUMMARY),
            (Kind::Timing, _, _) => (f.name.clone(), HISTOGRAM),
            _ => continue,
        };
        let mut metrics = Vec::with_capacity(f.series);
        for s in plan.family_series(f) {
            let m = match s.value() {
                Value::Counter(v) => Metric {
                    label: labels(s.labels()),
                    counter: Some(Counter {
                        value: Some(f.scale.apply(s.descriptor().counter_value(*v))),
                        created_timestamp: created.then(|| timestamp(s.start_unix_nanos())),
                    }),
                    ..Default::default()
                },
                Value::Gauge(v) => Metric {
                    label: labels(s.labels()),
                    gauge: Some(Gauge {
                        value: Some(f.scale.apply(*v)),
                    }),
                    ..Default::default()
                },
                Value::Timing(d) if kind == SUMMARY => Metric {
                    label: labels(s.labels()),
                    summary: Some(Summary {
                        sample_count: Some(d.count()),
                        sample_sum: Some(f.scale.apply(d.sum())),
                        quantile: quantiles
                            .iter()
                            .map(|q| Quantile {
                                quantile: Some(*q),
                                value: Some(f.scale.apply(d.quantile(*q).unwrap_or(f64::NAN))),
                            })
                            .collect(),
                        created_timestamp: created.then(|| timestamp(s.start_unix_nanos())),
                    }),
                    ..Default::default()
                },
                Value::Timing(d) => {
                    let mut h = Histogram {
                        sample_count: Some(d.count()),
                        sample_sum: Some(f.scale.apply(d.sum())),
                        created_timestamp: created.then(|| timestamp(s.start_unix_nanos())),
                        ..Default::default()
                    };
                    if enc.timings() == TimingMode::Histogram {
                        // +Inf is implied by the sample count.
                        h.bucket = enc
                            .classic_buckets(f, d)
                            .into_iter()
                            .map(|(le, c)| Bucket {
                                cumulative_count: Some(c),
                                upper_bound: Some(le),
                            })
                            .collect();
                    }
                    if native {
                        let n = native_buckets(d);
                        h.schema = Some(n.schema as i32);
                        h.zero_threshold = Some(ZERO_THRESHOLD);
                        h.zero_count = Some(n.zero_count);
                        h.positive_span = n
                            .spans
                            .iter()
                            .map(|(o, l)| BucketSpan {
                                offset: Some(*o),
                                length: Some(*l),
                            })
                            .collect();
                        h.positive_delta = n.deltas;
                    }
                    Metric {
                        label: labels(s.labels()),
                        histogram: Some(h),
                        ..Default::default()
                    }
                }
                _ => continue,
            };
            metrics.push(m);
        }
        let family = MetricFamily {
            name: Some(name),
            help: Some(f.help().to_owned()),
            r#type: Some(kind),
            metric: metrics,
            unit: None,
        };
        // Encoding into a Vec cannot run out of room.
        let _ = family.encode_length_delimited(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(n: &NativeBuckets) -> Vec<(i64, i64)> {
        // (prometheus index, count) for every bucket inside a span.
        let mut out = Vec::new();
        let mut idx = 0i64;
        let mut count = 0i64;
        let mut deltas = n.deltas.iter();
        for (k, (off, len)) in n.spans.iter().enumerate() {
            idx = if k == 0 {
                *off as i64
            } else {
                idx + *off as i64
            };
            for _ in 0..*len {
                count += deltas.next().unwrap();
                out.push((idx, count));
                idx += 1;
            }
        }
        assert!(deltas.next().is_none());
        out
    }

    #[test]
    fn spans_keep_every_count_at_its_upper_bound() {
        for scale in [-10i8, -6, -4, 0, 3, 8] {
            let mut d = Distribution::new(scale);
            for v in [1e-3, 2e-3, 0.5, 0.51, 3.0, 1e3, 1e3, 7e5] {
                d.record(v);
            }
            let n = native_buckets(&d);
            assert!(n.schema >= MIN_SCHEMA && n.schema <= MAX_SCHEMA);
            let buckets = expand(&n);
            let total: i64 = buckets.iter().map(|b| b.1).sum();
            assert_eq!(total as u64 + n.zero_count, d.count());
            // Each distribution bucket's upper bound is the upper bound of the native bucket
            // that holds its count.
            let mine: Vec<(f64, u64)> = d.buckets().map(|(_, hi, c)| (hi, c)).collect();
            let theirs: Vec<(f64, i64)> = buckets
                .iter()
                .filter(|b| b.1 > 0)
                .map(|(i, c)| {
                    (
                        sampler_api::distribution::bucket_lower_bound(*i as i32, n.schema),
                        *c,
                    )
                })
                .collect();
            assert_eq!(mine.len(), theirs.len(), "scale {scale}");
            for ((hi, c), (hi2, c2)) in mine.iter().zip(&theirs) {
                assert_eq!(*c as i64, *c2);
                assert!(
                    hi == hi2 || (hi - hi2).abs() <= hi * 1e-12,
                    "scale {scale}: {hi} vs {hi2}"
                );
            }
        }
    }

    #[test]
    fn empty_distribution_has_no_spans() {
        let n = native_buckets(&Distribution::new(3));
        assert!(n.spans.is_empty() && n.deltas.is_empty() && n.zero_count == 0);
    }

    #[test]
    fn far_apart_buckets_get_separate_spans() {
        let mut d = Distribution::new(0);
        d.record(1.0); // otel -1 → prom 0
        d.record(1024.0); // otel 9 → prom 10
        let n = native_buckets(&d);
        assert_eq!(n.spans, vec![(0, 1), (9, 1)]);
        assert_eq!(n.deltas, vec![1, 0]);
    }
}
