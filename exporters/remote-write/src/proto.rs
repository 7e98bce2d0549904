//! The remote write 1.0 messages (`prometheus/prompb/types.proto` and `remote.proto`), only
//! the fields this exporter writes, with the field numbers of the specification.

/// `prometheus.WriteRequest`: the body of one request, before snappy compression.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    /// The series with their samples.
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    /// Type, help and unit per metric family.
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`: one label set (with `__name__`), sorted by name, and its samples.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Sorted by name, `__name__` among them.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    /// In time order.
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histogram samples, in time order (Prometheus 2.40 on, with
    /// `--enable-feature=native-histograms`).
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<Histogram>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    /// The label name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The label value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Sample {
    /// The value.
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Histogram`: one native histogram sample with integer counts and positive
/// buckets only (the `count_int` and `zero_count_int` members of their `oneof`s).
///
/// Bucket `i` at `schema` holds the values in `(2^((i-1)/2^schema), 2^(i/2^schema)]`; the
/// buckets present are given as spans and their counts as deltas, each from the previous
/// bucket's count (the first from 0).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// How many values were observed.
    #[prost(uint64, tag = "1")]
    pub count_int: u64,
    /// Their sum.
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// `2^schema` buckets per power of two, -4 to 8.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    /// The zero bucket holds the values in `[-zero_threshold, zero_threshold]`.
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    /// How many values are in the zero bucket.
    #[prost(uint64, tag = "6")]
    pub zero_count_int: u64,
    /// Where the positive buckets are.
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    /// The positive buckets' counts, each as the difference from the one before.
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    /// `ResetHint`: 0 unknown, 1 yes, 2 no, 3 gauge.
    #[prost(int32, tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

/// `prometheus.BucketSpan`: `length` buckets in a row, `offset` buckets after the end of the
/// span before (the first span: the index of its first bucket).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BucketSpan {
    /// The gap before the span (the first span: its first index).
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    /// How many buckets in a row.
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// The value of a sample that marks a series as stale: PromQL stops returning the series
/// from this timestamp on, instead of five minutes after its last sample.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// `MetricType`: 1 counter, 2 gauge, 3 histogram.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    /// The family name.
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    /// The help text.
    #[prost(string, tag = "4")]
    pub help: String,
    /// The unit.
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// `MetricMetadata.MetricType.COUNTER`.
pub const COUNTER: i32 = 1;
/// `MetricMetadata.MetricType.GAUGE`.
pub const GAUGE: i32 = 2;
/// `MetricMetadata.MetricType.HISTOGRAM`.
pub const HISTOGRAM: i32 = 3;
