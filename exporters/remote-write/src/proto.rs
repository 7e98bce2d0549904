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
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, prost::Message)]
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
