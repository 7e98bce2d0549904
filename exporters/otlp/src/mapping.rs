//! From snapshots to OTLP messages: one function per rule of `spec/otlp.md`.
//!
//! [`Encoder`] turns each snapshot into one or more `ExportMetricsServiceRequest` bodies, each
//! under the configured size. With delta temporality it keeps the previous cumulative reading
//! of every series (by [`SeriesId`]) to take differences from.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    exponential_histogram_data_point::Buckets as ExpBuckets, metric::Data, number_data_point,
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use sampler_api::{Descriptor, Distribution, Kind, LabelsRef, SeriesId, Snapshot, Value};

use crate::config::{HistogramMode, OtlpConfig, Temporality};

/// Nanoseconds since the Unix epoch (0 for a time before it).
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_millis(1500);
/// assert_eq!(sampler_exporter_otlp::mapping::unix_nanos(t), 1_500_000_000);
/// ```
pub fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

/// One string attribute.
pub fn attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..Default::default()
    }
}

/// Labels become string attributes, in the label set's order. Takes a snapshot's
/// [`LabelsRef`] (from [`SeriesRef::labels`](sampler_api::SeriesRef::labels)) or a `&Labels`.
///
/// ```
/// use sampler_api::Labels;
/// use sampler_exporter_otlp::mapping::{attribute, attributes};
/// let labels = Labels::from_pairs(&[("route", "/a"), ("method", "GET")])?;
/// let want = vec![attribute("route", "/a"), attribute("method", "GET")];
/// assert_eq!(attributes(&labels), want);
/// assert_eq!(attributes(labels.view()), want);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn attributes<'a>(labels: impl Into<LabelsRef<'a>>) -> Vec<KeyValue> {
    labels.into().iter().map(|(k, v)| attribute(k, v)).collect()
}

/// A counter's value: an integer when the divisor is 1 (and the total fits an `i64`), else
/// the total in the unit as a double.
///
/// ```
/// use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;
/// use sampler_api::{Descriptor, Kind};
/// use sampler_exporter_otlp::mapping::counter_value;
/// let requests = Descriptor::counter("http.requests", "1", "");
/// assert_eq!(counter_value(&requests, 7), Value::AsInt(7));
/// let cpu = Descriptor::owned("process.cpu.user", Kind::Counter, "s", "").with_divisor(1_000_000);
/// assert_eq!(counter_value(&cpu, 1_500_000), Value::AsDouble(1.5));
/// ```
pub fn counter_value(descriptor: &Descriptor, raw: u64) -> number_data_point::Value {
    if descriptor.divisor() == 1 {
        if let Ok(v) = i64::try_from(raw) {
            return number_data_point::Value::AsInt(v);
        }
    }
    number_data_point::Value::AsDouble(descriptor.counter_value(raw))
}

/// A timing as an exponential histogram point: the same base-2 buckets, so nothing is lost.
/// `min` and `max` are left out when they are not known (an empty or a delta histogram).
pub fn exponential_point(d: &Distribution, with_min_max: bool) -> ExponentialHistogramDataPoint {
    let known = with_min_max && d.count() > 0;
    ExponentialHistogramDataPoint {
        count: d.count(),
        sum: Some(d.sum()),
        scale: d.scale() as i32,
        zero_count: d.zero_count(),
        positive: Some(ExpBuckets {
            offset: if d.bucket_counts().is_empty() {
                0
            } else {
                d.offset()
            },
            bucket_counts: d.bucket_counts().to_vec(),
        }),
        min: known.then(|| d.min()),
        max: known.then(|| d.max()),
        ..Default::default()
    }
}

/// A timing as an explicit-bucket histogram point over `bounds`: bucket `i` counts the values
/// in `(bounds[i-1], bounds[i]]`, the last one those above every bound. A timing bucket counts
/// towards a bound only when it lies wholly below it, so counts are exact at bounds that are
/// bucket boundaries of the timing (powers of two at any scale).
pub fn explicit_point(d: &Distribution, bounds: &[f64], with_min_max: bool) -> HistogramDataPoint {
    let mut counts = Vec::with_capacity(bounds.len() + 1);
    let mut below = 0;
    for b in bounds {
        let n = d.count_at_most(*b).max(below);
        counts.push(n - below);
        below = n;
    }
    counts.push(d.count().saturating_sub(below));
    let known = with_min_max && d.count() > 0;
    HistogramDataPoint {
        count: d.count(),
        sum: Some(d.sum()),
        bucket_counts: counts,
        explicit_bounds: bounds.to_vec(),
        min: known.then(|| d.min()),
        max: known.then(|| d.max()),
        ..Default::default()
    }
}

/// The observations recorded between two cumulative readings of one timing, or `None` when
/// `cur` is not a continuation of `prev` (a reset). The result's min and max are unknown.
///
/// ```
/// use sampler_api::Distribution;
/// use sampler_exporter_otlp::mapping::delta_distribution;
/// let mut prev = Distribution::new(3);
/// prev.record(1.0);
/// let mut cur = prev.clone();
/// cur.record(2.0);
/// cur.record(2.0);
/// let d = delta_distribution(&cur, &prev).unwrap();
/// assert_eq!((d.count(), d.sum()), (2, 4.0));
/// assert!(delta_distribution(&prev, &cur).is_none()); // fewer observations: a reset
/// ```
pub fn delta_distribution(cur: &Distribution, prev: &Distribution) -> Option<Distribution> {
    if cur.count() < prev.count() || cur.zero_count() < prev.zero_count() {
        return None;
    }
    let prev = if prev.scale() > cur.scale() {
        let mut p = prev.clone();
        p.downscale(prev.scale() - cur.scale());
        std::borrow::Cow::Owned(p)
    } else if prev.scale() < cur.scale() {
        return None;
    } else {
        std::borrow::Cow::Borrowed(prev)
    };
    let mut counts = cur.bucket_counts().to_vec();
    for (i, c) in prev.bucket_counts().iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let at = prev.offset() as i64 + i as i64 - cur.offset() as i64;
        let slot = usize::try_from(at).ok().and_then(|at| counts.get_mut(at))?;
        *slot = slot.checked_sub(*c)?;
    }
    Some(Distribution::from_parts(
        cur.scale(),
        cur.zero_count() - prev.zero_count(),
        cur.offset(),
        counts,
        cur.sum() - prev.sum(),
        // Unknown for a delta: min 0 and max +inf keep `count_at_most` walking the buckets.
        0.0,
        f64::INFINITY,
    ))
}

/// What a snapshot became.
#[derive(Debug, Default)]
pub struct Encoded {
    /// Request bodies (uncompressed protobuf), each under the size limit, with the number of
    /// data points in each.
    pub requests: Vec<(Vec<u8>, u64)>,
    /// Series of a kind this exporter does not know, left out.
    pub skipped: u64,
    /// Data points left out because one alone is larger than the size limit.
    pub oversize: u64,
}

impl Encoded {
    /// Data points in every request.
    pub fn points(&self) -> u64 {
        self.requests.iter().map(|r| r.1).sum()
    }
}

enum Previous {
    Counter(u64),
    Timing(Box<Distribution>),
}

struct Cursor {
    /// The series' start, in nanoseconds since the Unix epoch.
    start: u64,
    time: u64,
    value: Previous,
    generation: u64,
}

/// Encodes snapshots into OTLP requests (see `spec/otlp.md`).
///
/// ```
/// use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
/// use prost::Message;
/// use sampler_api::{Descriptor, Harvester, Registry};
/// use sampler_exporter_otlp::{mapping::Encoder, OtlpConfig};
///
/// static HITS: Descriptor = Descriptor::counter("cache.hits", "1", "cache hits");
/// let registry = Registry::new();
/// let hits = registry.counter(&HITS); // a series lives as long as its handle
/// hits.add(3);
/// let snapshot = Harvester::builder().registry(registry).self_metrics(false).build().harvest_now();
///
/// let mut encoder = Encoder::new(&OtlpConfig::default());
/// let encoded = encoder.encode(&snapshot);
/// let request = ExportMetricsServiceRequest::decode(&encoded.requests[0].0[..])?;
/// let metric = &request.resource_metrics[0].scope_metrics[0].metrics[0];
/// assert_eq!(metric.name, "cache.hits");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Encoder {
    temporality: Temporality,
    histogram: HistogramMode,
    bounds: Vec<f64>,
    resource: Resource,
    scope: InstrumentationScope,
    max_request_size: usize,
    cursors: HashMap<SeriesId, Cursor>,
    generation: u64,
    /// The time of the last snapshot encoded (ns since the epoch; 0 before the first).
    prev_time: u64,
    /// The few series reported with their exact start time (see `start_nanos`), and the
    /// generation that last saw them.
    exact_starts: HashMap<SeriesId, (u64, u64)>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("temporality", &self.temporality)
            .field("histogram", &self.histogram)
            .field("cursors", &self.cursors.len())
            .finish()
    }
}

/// The resource of a config: its attributes, with `service.name` defaulting to
/// `unknown_service:<executable name>` as the OpenTelemetry SDKs do.
pub fn resource(config: &OtlpConfig) -> Resource {
    let mut attrs: Vec<KeyValue> = Vec::with_capacity(config.resource.len() + 1);
    if !config.resource.contains_key("service.name") {
        let exe = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_default();
        attrs.push(attribute("service.name", &format!("unknown_service:{exe}")));
    }
    attrs.extend(config.resource.iter().map(|(k, v)| attribute(k, v)));
    Resource {
        attributes: attrs,
        ..Default::default()
    }
}

impl Encoder {
    /// An encoder for these settings (assumed valid: see [`OtlpConfig::validate`]).
    pub fn new(config: &OtlpConfig) -> Self {
        Encoder {
            temporality: config.temporality,
            histogram: config.histogram,
            bounds: config.buckets.clone(),
            resource: resource(config),
            scope: InstrumentationScope {
                name: config.scope_name.clone(),
                version: config.scope_version.clone(),
                ..Default::default()
            },
            max_request_size: config.max_request_size,
            cursors: HashMap::new(),
            generation: 0,
            prev_time: 0,
            exact_starts: HashMap::new(),
        }
    }

    /// The start time a series is reported with: its own rounded down to the millisecond, so
    /// that series created in the same millisecond (a family filled at start-up, a burst of
    /// new routes) share one value, which gzip stores once. Nothing was counted between the
    /// rounded time and the series' creation, so its cumulative values are the same over
    /// both. A series created after the previous harvest must not start before that harvest's
    /// time (a series reset under the same labels would overlap its earlier points): when
    /// rounding would cross it, that series keeps its exact start, for as long as it lives.
    /// `exact` is the series' start in nanoseconds since the Unix epoch.
    fn start_nanos(&mut self, id: SeriesId, exact: u64) -> u64 {
        if let Some(kept) = self.exact_starts.get_mut(&id) {
            kept.1 = self.generation;
            return kept.0;
        }
        let rounded = exact - exact % 1_000_000;
        if rounded < self.prev_time && self.prev_time <= exact {
            self.exact_starts.insert(id, (exact, self.generation));
            return exact;
        }
        rounded
    }

    fn aggregation(&self) -> i32 {
        match self.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative as i32,
            Temporality::Delta => AggregationTemporality::Delta as i32,
        }
    }

    /// The start time and raw value of a counter point: the snapshot's own with cumulative
    /// temporality; with delta, the change since the previous harvest, which starts at that
    /// harvest's time (at the series' start on first sight; on a reset, the later of the two).
    /// `start` is the series' start in nanoseconds since the Unix epoch.
    fn counter_point(&mut self, id: SeriesId, start: u64, raw: u64, now: u64) -> (u64, u64) {
        let start_ns = self.start_nanos(id, start);
        if self.temporality == Temporality::Cumulative {
            return (start_ns, raw);
        }
        let generation = self.generation;
        let out = match self.cursors.get(&id) {
            Some(c) => match c.value {
                Previous::Counter(p) if c.start == start && raw >= p => (c.time, raw - p),
                _ => (c.time.max(start_ns), raw),
            },
            None => (start_ns, raw),
        };
        self.cursors.insert(
            id,
            Cursor {
                start,
                time: now,
                value: Previous::Counter(raw),
                generation,
            },
        );
        out
    }

    fn timing_point(
        &mut self,
        id: SeriesId,
        start: u64,
        d: &Distribution,
        now: u64,
    ) -> (u64, Option<Distribution>, bool) {
        let start_ns = self.start_nanos(id, start);
        if self.temporality == Temporality::Cumulative {
            return (start_ns, None, true);
        }
        let generation = self.generation;
        let out = match self.cursors.get(&id) {
            Some(c) => match &c.value {
                Previous::Timing(p) if c.start == start => match delta_distribution(d, p) {
                    Some(delta) => (c.time, Some(delta), false),
                    None => (c.time.max(start_ns), None, true),
                },
                _ => (c.time.max(start_ns), None, true),
            },
            None => (start_ns, None, true),
        };
        self.cursors.insert(
            id,
            Cursor {
                start,
                time: now,
                value: Previous::Timing(Box::new(d.clone())),
                generation,
            },
        );
        out
    }

    /// Encodes one snapshot into requests under the size limit.
    pub fn encode(&mut self, snapshot: &Snapshot) -> Encoded {
        self.generation += 1;
        let now = unix_nanos(snapshot.time);
        let mut out = Encoded::default();
        let mut metrics: Vec<Metric> = Vec::new();
        let mut index: HashMap<(&str, Kind, &str), usize> = HashMap::new();
        for s in snapshot.series() {
            let d = s.descriptor();
            let value = s.value();
            let kind = value.kind();
            let slot = *index.entry((d.name(), kind, d.unit())).or_insert_with(|| {
                metrics.push(Metric {
                    name: d.name().to_owned(),
                    description: d.description().to_owned(),
                    unit: d.unit().to_owned(),
                    ..Default::default()
                });
                metrics.len() - 1
            });
            let attributes = attributes(s.labels());
            let data = match value {
                Value::Counter(raw) => {
                    let (start, v) = self.counter_point(s.id(), s.start_unix_nanos(), *raw, now);
                    let point = NumberDataPoint {
                        attributes,
                        start_time_unix_nano: start,
                        time_unix_nano: now,
                        value: Some(counter_value(d, v)),
                        ..Default::default()
                    };
                    PointData::Sum(point)
                }
                Value::Gauge(v) => PointData::Gauge(NumberDataPoint {
                    attributes,
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsDouble(*v)),
                    ..Default::default()
                }),
                Value::Timing(dist) => {
                    let mode = self.histogram;
                    let (start, delta, min_max) =
                        self.timing_point(s.id(), s.start_unix_nanos(), dist, now);
                    let dist = delta.as_ref().unwrap_or(dist);
                    match mode {
                        HistogramMode::Exponential => {
                            let mut p = exponential_point(dist, min_max);
                            p.attributes = attributes;
                            p.start_time_unix_nano = start;
                            p.time_unix_nano = now;
                            PointData::Exponential(p)
                        }
                        HistogramMode::Explicit => {
                            let mut p = explicit_point(dist, &self.bounds, min_max);
                            p.attributes = attributes;
                            p.start_time_unix_nano = start;
                            p.time_unix_nano = now;
                            PointData::Explicit(p)
                        }
                    }
                }
                _ => {
                    out.skipped += 1;
                    continue;
                }
            };
            push_point(&mut metrics[slot], data, self.aggregation());
        }
        // Series that did not come back lose their cursor: one that returns has a new id.
        let g = self.generation;
        if self.temporality == Temporality::Delta {
            self.cursors.retain(|_, c| c.generation == g);
        }
        if !self.exact_starts.is_empty() {
            self.exact_starts.retain(|_, k| k.1 == g);
        }
        self.prev_time = now;
        metrics.retain(|m| m.data.is_some());
        self.pack(metrics, &mut out);
        out
    }

    /// Packs metrics into requests whose encoded length stays at most `max_request_size`;
    /// a metric too large for one request is split by data points.
    fn pack(&self, metrics: Vec<Metric>, out: &mut Encoded) {
        let empty = self.request(Vec::new());
        // The fixed part, plus room for the length prefixes of the resource and scope
        // messages growing (at most 5 bytes each for a body under 4 GiB).
        let overhead = empty.encoded_len() + 10;
        let budget = self.max_request_size.saturating_sub(overhead);
        let mut batch: Vec<Metric> = Vec::new();
        let mut batch_len = 0usize;
        let mut batch_points = 0u64;
        let mut flush = |batch: &mut Vec<Metric>, len: &mut usize, points: &mut u64| {
            if !batch.is_empty() {
                let body = self.request(std::mem::take(batch)).encode_to_vec();
                debug_assert!(body.len() <= self.max_request_size);
                out.requests.push((body, *points));
            }
            *len = 0;
            *points = 0;
        };
        let mut oversize = 0;
        for m in metrics {
            for part in split_metric(m, budget, &mut oversize) {
                let len = framed_len(part.encoded_len());
                if batch_len + len > budget {
                    flush(&mut batch, &mut batch_len, &mut batch_points);
                }
                batch_len += len;
                batch_points += points_of(&part);
                batch.push(part);
            }
        }
        flush(&mut batch, &mut batch_len, &mut batch_points);
        out.oversize += oversize;
    }

    fn request(&self, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(self.scope.clone()),
                    metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }
}

enum PointData {
    Sum(NumberDataPoint),
    Gauge(NumberDataPoint),
    Exponential(ExponentialHistogramDataPoint),
    Explicit(HistogramDataPoint),
}

fn push_point(m: &mut Metric, p: PointData, temporality: i32) {
    match (p, &mut m.data) {
        (PointData::Sum(p), Some(Data::Sum(s))) => s.data_points.push(p),
        (PointData::Sum(p), d) => {
            *d = Some(Data::Sum(Sum {
                data_points: vec![p],
                aggregation_temporality: temporality,
                is_monotonic: true,
            }))
        }
        (PointData::Gauge(p), Some(Data::Gauge(g))) => g.data_points.push(p),
        (PointData::Gauge(p), d) => {
            *d = Some(Data::Gauge(Gauge {
                data_points: vec![p],
            }))
        }
        (PointData::Exponential(p), Some(Data::ExponentialHistogram(h))) => h.data_points.push(p),
        (PointData::Exponential(p), d) => {
            *d = Some(Data::ExponentialHistogram(ExponentialHistogram {
                data_points: vec![p],
                aggregation_temporality: temporality,
            }))
        }
        (PointData::Explicit(p), Some(Data::Histogram(h))) => h.data_points.push(p),
        (PointData::Explicit(p), d) => {
            *d = Some(Data::Histogram(Histogram {
                data_points: vec![p],
                aggregation_temporality: temporality,
            }))
        }
    }
}

/// The length of a message field: tag, length prefix and body.
fn framed_len(len: usize) -> usize {
    1 + prost::length_delimiter_len(len) + len
}

fn points_of(m: &Metric) -> u64 {
    (match &m.data {
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
        None => 0,
    }) as u64
}

/// A metric whose framed length is over `budget`, as several metrics of the same name, each
/// with some of its points; a point that alone is over the budget is dropped and counted.
fn split_metric(m: Metric, budget: usize, oversize: &mut u64) -> Vec<Metric> {
    if framed_len(m.encoded_len()) <= budget {
        return vec![m];
    }
    let head = Metric {
        data: None,
        ..m.clone()
    };
    let head_len = head.encoded_len() + 16;
    let mut parts = Vec::new();
    macro_rules! split {
        ($points:expr, $wrap:expr) => {{
            let mut cur = Vec::new();
            let mut len = head_len;
            for p in $points {
                let plen = framed_len(p.encoded_len());
                if framed_len(head_len + plen) > budget {
                    *oversize += 1;
                    continue;
                }
                if framed_len(len + plen) > budget && !cur.is_empty() {
                    parts.push(Metric {
                        data: Some($wrap(std::mem::take(&mut cur))),
                        ..head.clone()
                    });
                    len = head_len;
                }
                len += plen;
                cur.push(p);
            }
            if !cur.is_empty() {
                parts.push(Metric {
                    data: Some($wrap(cur)),
                    ..head.clone()
                });
            }
        }};
    }
    match m.data {
        Some(Data::Sum(s)) => {
            let (t, mono) = (s.aggregation_temporality, s.is_monotonic);
            split!(s.data_points, |v| Data::Sum(Sum {
                data_points: v,
                aggregation_temporality: t,
                is_monotonic: mono,
            }))
        }
        Some(Data::Gauge(g)) => split!(g.data_points, |v| Data::Gauge(Gauge { data_points: v })),
        Some(Data::Histogram(h)) => {
            let t = h.aggregation_temporality;
            split!(h.data_points, |v| Data::Histogram(Histogram {
                data_points: v,
                aggregation_temporality: t,
            }))
        }
        Some(Data::ExponentialHistogram(h)) => {
            let t = h.aggregation_temporality;
            split!(h.data_points, |v| Data::ExponentialHistogram(
                ExponentialHistogram {
                    data_points: v,
                    aggregation_temporality: t,
                }
            ))
        }
        // Never produced by this encoder.
        Some(Data::Summary(_)) | None => {}
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use sampler_api::{Harvester, Labels, Registry, Series};
    use std::time::Duration;

    fn snapshot(registry: &Registry) -> std::sync::Arc<Snapshot> {
        Harvester::builder()
            .registry(registry.clone())
            .self_metrics(false)
            .build()
            .harvest_now()
    }

    fn decode(e: &Encoded) -> Vec<Metric> {
        e.requests
            .iter()
            .flat_map(|(b, _)| {
                ExportMetricsServiceRequest::decode(&b[..])
                    .unwrap()
                    .resource_metrics[0]
                    .scope_metrics[0]
                    .metrics
                    .clone()
            })
            .collect()
    }

    static REQ: Descriptor = Descriptor::counter("http.requests", "1", "requests");
    static LAT: Descriptor = Descriptor::timing("http.duration", "s", "latency");
    static CPU: Descriptor = Descriptor::fractional_counter("cpu.time", "s", 1_000_000, "cpu");

    #[test]
    fn counters_map_to_monotonic_sums_with_the_series_start() {
        let r = Registry::new();
        let fam = r.counter_family(&REQ, &["route"]);
        fam.get(&["/a"]).add(5);
        let harvested = snapshot(&r);
        let mut series: Vec<Series> = harvested.series().map(|s| s.to_owned()).collect();
        // Written as a sampler writes it (instruments do not take a divisor).
        series.push(Series::new(
            SeriesId::next(),
            std::sync::Arc::new(CPU.clone()),
            Labels::empty(),
            harvested.time,
            Value::Counter(2_500_000),
        ));
        let snap = Snapshot::from_series(
            harvested.time,
            harvested.interval,
            harvested.sequence,
            series,
        );
        let m = decode(&Encoder::new(&OtlpConfig::default()).encode(&snap));
        let Some(Data::Sum(s)) = &m[0].data else {
            panic!("not a sum: {:?}", m[0])
        };
        assert!(s.is_monotonic);
        assert_eq!(
            s.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let p = &s.data_points[0];
        assert_eq!(p.value, Some(number_data_point::Value::AsInt(5)));
        assert_eq!(p.attributes, vec![attribute("route", "/a")]);
        // The series' start, rounded down to the millisecond.
        let start = snap.get(0).unwrap().start_unix_nanos();
        assert_eq!(p.start_time_unix_nano, start - start % 1_000_000);
        assert_eq!(p.time_unix_nano, unix_nanos(snap.time));
        let Some(Data::Sum(s)) = &m[1].data else {
            panic!()
        };
        assert_eq!(
            s.data_points[0].value,
            Some(number_data_point::Value::AsDouble(2.5))
        );
    }

    #[test]
    fn r13_start_times_round_to_the_millisecond_but_never_before_the_previous_harvest() {
        let series = |id: SeriesId, start_ns: u64| {
            Series::new(
                id,
                std::sync::Arc::new(REQ.clone()),
                Labels::empty(),
                UNIX_EPOCH + Duration::from_nanos(start_ns),
                Value::Counter(1),
            )
        };
        let starts = |e: &Encoded| -> Vec<u64> {
            let m = decode(e);
            let Some(Data::Sum(s)) = &m[0].data else {
                panic!()
            };
            s.data_points
                .iter()
                .map(|p| p.start_time_unix_nano)
                .collect()
        };
        let ms = 1_000_000u64;
        let (a, b, c) = (SeriesId::next(), SeriesId::next(), SeriesId::next());
        // A harvest at an unaligned time (as `harvest_now` takes), 5 ms + 300 µs.
        let t1 = 1_000_000 * ms + 5 * ms + 300_000;
        let snapshot = |time: SystemTime, series: &[Series]| {
            Snapshot::from_series(time, Duration::from_secs(10), 1, series.to_vec())
        };
        let mut time = UNIX_EPOCH + Duration::from_nanos(t1);
        let mut kept = vec![series(a, t1 - 4 * ms - 10), series(b, t1 - 4 * ms - 20)];
        let mut enc = Encoder::new(&OtlpConfig::default());
        // Created in the same millisecond: one start.
        assert_eq!(
            starts(&enc.encode(&snapshot(time, &kept))),
            [1_000_001 * ms, 1_000_001 * ms]
        );
        // `c` is created 100 µs after that harvest, in the same millisecond: rounding down
        // would put its start before the harvest's time, so it keeps its own, every time.
        let t2 = t1 + 10 * 1000 * ms;
        time = UNIX_EPOCH + Duration::from_nanos(t2);
        kept.push(series(c, t1 + 100_000));
        let want = [1_000_001 * ms, 1_000_001 * ms, t1 + 100_000];
        assert_eq!(starts(&enc.encode(&snapshot(time, &kept))), want);
        time += Duration::from_secs(10);
        assert_eq!(starts(&enc.encode(&snapshot(time, &kept))), want);
        assert_eq!(enc.exact_starts.len(), 1);
        kept.pop();
        enc.encode(&snapshot(time, &kept));
        assert!(enc.exact_starts.is_empty(), "forgotten once gone");
    }

    #[test]
    fn delta_counters_take_differences_and_handle_resets() {
        let mut c = OtlpConfig {
            temporality: Temporality::Delta,
            ..Default::default()
        };
        c.resource.insert("service.name".into(), "t".into());
        let mut enc = Encoder::new(&c);
        let snapshot = |time: SystemTime, series: &[Series]| {
            Snapshot::from_series(time, Duration::from_secs(10), 1, series.to_vec())
        };
        let mut time = UNIX_EPOCH + Duration::from_secs(100);
        let mut kept = vec![Series::new(
            SeriesId::next(),
            std::sync::Arc::new(REQ.clone()),
            Labels::empty(),
            UNIX_EPOCH + Duration::from_secs(50),
            Value::Counter(10),
        )];
        let point = |e: &Encoded| {
            let m = decode(e);
            let Some(Data::Sum(s)) = &m[0].data else {
                panic!()
            };
            assert_eq!(
                s.aggregation_temporality,
                AggregationTemporality::Delta as i32
            );
            let p = &s.data_points[0];
            (p.start_time_unix_nano / 1_000_000_000, p.value.unwrap())
        };
        use number_data_point::Value::AsInt;
        assert_eq!(point(&enc.encode(&snapshot(time, &kept))), (50, AsInt(10)));
        time += Duration::from_secs(10);
        kept[0].value = Value::Counter(15);
        assert_eq!(point(&enc.encode(&snapshot(time, &kept))), (100, AsInt(5)));
        // Lower than before: a reset; the delta is the new reading, from the previous harvest.
        time += Duration::from_secs(10);
        kept[0].value = Value::Counter(3);
        assert_eq!(point(&enc.encode(&snapshot(time, &kept))), (110, AsInt(3)));
        // A new start time: a reset that starts at the series' start.
        time += Duration::from_secs(10);
        kept[0].start_time = UNIX_EPOCH + Duration::from_secs(125);
        kept[0].value = Value::Counter(4);
        assert_eq!(point(&enc.encode(&snapshot(time, &kept))), (125, AsInt(4)));
        // A series that is gone loses its cursor.
        kept.clear();
        enc.encode(&snapshot(time, &kept));
        assert!(enc.cursors.is_empty());
    }

    #[test]
    fn timings_map_losslessly_to_exponential_histograms() {
        let r = Registry::new();
        let t = r.timing(&LAT);
        for v in [0.0, 0.001, 0.002, 0.5, 3.0] {
            t.record(v);
        }
        let snap = snapshot(&r);
        let Value::Timing(d) = snap.get(0).unwrap().value() else {
            panic!()
        };
        let m = decode(&Encoder::new(&OtlpConfig::default()).encode(&snap));
        let Some(Data::ExponentialHistogram(h)) = &m[0].data else {
            panic!()
        };
        let p = &h.data_points[0];
        assert_eq!(p.scale, d.scale() as i32);
        assert_eq!(p.count, 5);
        assert_eq!(p.zero_count, 1);
        assert_eq!(p.sum, Some(d.sum()));
        assert_eq!((p.min, p.max), (Some(0.0), Some(3.0)));
        let pos = p.positive.as_ref().unwrap();
        assert_eq!(pos.offset, d.offset());
        assert_eq!(pos.bucket_counts, d.bucket_counts());
        // Rebuilt from the message, it is the same distribution.
        let back = Distribution::from_parts(
            p.scale as i8,
            p.zero_count,
            pos.offset,
            pos.bucket_counts.clone(),
            p.sum.unwrap(),
            p.min.unwrap(),
            p.max.unwrap(),
        );
        assert_eq!(&back, &**d);
    }

    #[test]
    fn explicit_histograms_count_each_bound() {
        let mut d = Distribution::new(4);
        for v in [0.1, 0.3, 0.3, 1.0, 5.0, 100.0] {
            d.record(v);
        }
        let p = explicit_point(&d, &[0.25, 1.0, 4.0], true);
        assert_eq!(p.bucket_counts, vec![1, 3, 0, 2]);
        assert_eq!(p.count, 6);
        assert_eq!(p.explicit_bounds, vec![0.25, 1.0, 4.0]);
    }

    #[test]
    fn delta_distributions_across_a_downscale() {
        let mut prev = Distribution::new(4);
        prev.record(1.5);
        let mut cur = prev.clone();
        cur.record(3.0);
        cur.downscale(2);
        let d = delta_distribution(&cur, &prev).unwrap();
        assert_eq!(d.count(), 1);
        assert_eq!(d.scale(), 2);
        assert_eq!(d.bucket_counts().iter().sum::<u64>(), 1);
        assert_eq!(d.count_at_most(2.0), 0);
        assert_eq!(d.count_at_most(4.0), 1);
    }

    #[test]
    fn requests_are_split_under_the_limit_and_lose_nothing() {
        let r = Registry::new();
        let fam = r.counter_family(&REQ, &["route"]);
        for i in 0..2000 {
            fam.get(&[format!("/route/{i}").as_str()]).add(i);
        }
        let g = r.gauge(&Descriptor::gauge("queue.depth", "1", ""));
        g.set(2.0);
        let snap = snapshot(&r);
        let c = OtlpConfig {
            max_request_size: 8192,
            ..Default::default()
        };
        let e = Encoder::new(&c).encode(&snap);
        assert!(e.requests.len() > 5, "{} requests", e.requests.len());
        assert!(e.requests.iter().all(|(b, _)| b.len() <= 8192));
        assert_eq!(e.points(), 2001);
        assert_eq!(e.oversize, 0);
        let m = decode(&e);
        let n: usize = m.iter().map(|m| points_of(m) as usize).sum();
        assert_eq!(n, 2001);
        assert!(m
            .iter()
            .all(|m| m.name == "http.requests" || m.name == "queue.depth"));
    }

    #[test]
    fn resource_defaults_service_name() {
        let r = resource(&OtlpConfig::default());
        assert_eq!(r.attributes[0].key, "service.name");
        let Some(any_value::Value::StringValue(v)) = &r.attributes[0].value.as_ref().unwrap().value
        else {
            panic!()
        };
        assert!(v.starts_with("unknown_service:"), "{v}");
    }
}
