//! A family of N labelled counters in each library, each series incremented once, and each
//! library's way of collecting all of them (its "harvest").
//!
//! Every family has the two label keys [`SERIES_KEYS`] and the values [`series_values`], so
//! that the libraries hold the same data.
//!
//! ```
//! use sampler_benches::series::{Harvest, Library};
//! for lib in Library::ALL {
//!     let mut family = lib.build(100);
//!     assert_eq!(family.harvest(), 100, "{}", lib.name());
//! }
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

use metrics::{Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry as MetricsRegistry};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{
    Instrument, InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Stream, Temporality,
};
use prometheus_client::encoding::EncodeLabelSet;
use sampler_api::{Descriptor, FamilyOptions, Harvester, Registry};

use crate::{series_values, SERIES_KEYS};

/// The libraries compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Library {
    /// This workspace's `sampler-api`.
    Sampler,
    /// `metrics` over a `metrics-util` registry with atomic storage.
    Metrics,
    /// `prometheus-client`.
    PrometheusClient,
    /// `prometheus` (the TiKV crate).
    Prometheus,
    /// `opentelemetry_sdk` with a manual reader.
    OpenTelemetry,
}

impl Library {
    /// Every library, ours first.
    pub const ALL: [Library; 5] = [
        Library::Sampler,
        Library::Metrics,
        Library::PrometheusClient,
        Library::Prometheus,
        Library::OpenTelemetry,
    ];

    /// The name used in benchmark ids and tables.
    pub fn name(self) -> &'static str {
        match self {
            Library::Sampler => "sampler",
            Library::Metrics => "metrics",
            Library::PrometheusClient => "prometheus_client",
            Library::Prometheus => "prometheus",
            Library::OpenTelemetry => "opentelemetry",
        }
    }

    /// The library with this [`name`](Library::name).
    pub fn from_name(name: &str) -> Option<Library> {
        Library::ALL.into_iter().find(|l| l.name() == name)
    }

    /// A family of `n` two-label counters, each incremented once.
    pub fn build(self, n: usize) -> Box<dyn Harvest> {
        match self {
            Library::Sampler => Box::new(SamplerSeries::new(n)),
            Library::Metrics => Box::new(MetricsSeries::new(n)),
            Library::PrometheusClient => Box::new(PrometheusClientSeries::new(n)),
            Library::Prometheus => Box::new(PrometheusSeries::new(n)),
            Library::OpenTelemetry => Box::new(OpenTelemetrySeries::new(n)),
        }
    }
}

/// Collects every series of a family, the way the library does it for export.
pub trait Harvest {
    /// Collects once and returns how many series were seen.
    fn harvest(&mut self) -> usize;
}

static SERIES: Descriptor = Descriptor::counter("bench.requests", "1", "requests");

/// Ours: a counter family with its cardinality limit raised to `n`; the harvest is
/// `Harvester::harvest_now` without self-metrics (a full `Arc<Snapshot>`).
pub struct SamplerSeries {
    registry: Registry,
    _family: sampler_api::CounterFamily,
    harvester: Option<Harvester>,
}

impl std::fmt::Debug for SamplerSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamplerSeries").finish_non_exhaustive()
    }
}

impl SamplerSeries {
    /// Builds `n` series.
    pub fn new(n: usize) -> Self {
        let registry = Registry::new();
        let family = registry.counter_family_with(
            &SERIES,
            &SERIES_KEYS,
            FamilyOptions::default().limit(n.max(1)),
        );
        for i in 0..n {
            let [a, b] = series_values(i);
            family.inc(&[&a, &b]);
        }
        SamplerSeries {
            registry,
            _family: family,
            harvester: None,
        }
    }
}

impl Harvest for SamplerSeries {
    fn harvest(&mut self) -> usize {
        let registry = &self.registry;
        let harvester = self.harvester.get_or_insert_with(|| {
            Harvester::builder()
                .registry(registry.clone())
                .self_metrics(false)
                .build()
        });
        harvester.harvest_now().series.len()
    }
}

/// A `metrics` recorder over a `metrics-util` registry with atomic storage: the storage every
/// `metrics-util`-based exporter builds on, with nothing else in the way.
///
/// ```
/// use metrics::Recorder;
/// let recorder = sampler_benches::series::MetricsRecorder::default();
/// let key = metrics::Key::from_name("jobs");
/// let meta = metrics::Metadata::new("bench", metrics::Level::INFO, None);
/// recorder.register_counter(&key, &meta).increment(2);
/// let mut total = 0;
/// recorder.registry().visit_counters(|_, c| total += c.load(std::sync::atomic::Ordering::Relaxed));
/// assert_eq!(total, 2);
/// ```
pub struct MetricsRecorder {
    registry: MetricsRegistry<Key, AtomicStorage>,
}

impl Default for MetricsRecorder {
    fn default() -> Self {
        MetricsRecorder {
            registry: MetricsRegistry::atomic(),
        }
    }
}

impl std::fmt::Debug for MetricsRecorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRecorder").finish_non_exhaustive()
    }
}

impl MetricsRecorder {
    /// The registry behind the recorder.
    pub fn registry(&self) -> &MetricsRegistry<Key, AtomicStorage> {
        &self.registry
    }
}

impl Recorder for MetricsRecorder {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> metrics::Counter {
        self.registry
            .get_or_create_counter(key, |c| metrics::Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> metrics::Gauge {
        self.registry
            .get_or_create_gauge(key, |g| metrics::Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> metrics::Histogram {
        self.registry
            .get_or_create_histogram(key, |h| metrics::Histogram::from_arc(h.clone()))
    }
}

/// `metrics`: keys with owned labels in a `metrics-util` registry; the harvest visits every
/// counter and copies out its key and value (what a snapshot of the registry holds).
#[derive(Debug)]
pub struct MetricsSeries {
    recorder: MetricsRecorder,
}

impl MetricsSeries {
    /// Builds `n` series.
    pub fn new(n: usize) -> Self {
        let recorder = MetricsRecorder::default();
        let meta = Metadata::new("bench", metrics::Level::INFO, None);
        for i in 0..n {
            let [a, b] = series_values(i);
            let key = Key::from_parts(
                "bench.requests",
                vec![Label::new(SERIES_KEYS[0], a), Label::new(SERIES_KEYS[1], b)],
            );
            recorder.register_counter(&key, &meta).increment(1);
        }
        MetricsSeries { recorder }
    }
}

impl Harvest for MetricsSeries {
    fn harvest(&mut self) -> usize {
        let mut out = Vec::new();
        self.recorder
            .registry()
            .visit_counters(|k, c| out.push((k.clone(), c.load(Relaxed))));
        out.len()
    }
}

/// The label set of `prometheus-client`'s family: a derived struct of owned strings, its
/// leanest form for values known only at run time.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SeriesLabels {
    /// The first label.
    pub service: String,
    /// The second label.
    pub route: String,
}

/// `prometheus-client`: a `Family<SeriesLabels, Counter>`; its harvest is encoding the
/// registry as text into a reused `String` (it has no other way to collect).
#[derive(Debug)]
pub struct PrometheusClientSeries {
    registry: prometheus_client::registry::Registry,
    buf: String,
}

impl PrometheusClientSeries {
    /// Builds `n` series.
    pub fn new(n: usize) -> Self {
        use prometheus_client::metrics::{counter::Counter, family::Family};
        let family = Family::<SeriesLabels, Counter>::default();
        for i in 0..n {
            let [service, route] = series_values(i);
            family.get_or_create(&SeriesLabels { service, route }).inc();
        }
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("bench_requests", "requests", family);
        PrometheusClientSeries {
            registry,
            buf: String::new(),
        }
    }
}

impl Harvest for PrometheusClientSeries {
    fn harvest(&mut self) -> usize {
        self.buf.clear();
        prometheus_client::encoding::text::encode(&mut self.buf, &self.registry)
            .expect("encoding into a String cannot fail");
        self.buf
            .lines()
            .filter(|l| l.starts_with("bench_requests_total{"))
            .count()
    }
}

/// `prometheus`: an `IntCounterVec`; its harvest is `Registry::gather`.
#[derive(Debug)]
pub struct PrometheusSeries {
    registry: prometheus::Registry,
}

impl PrometheusSeries {
    /// Builds `n` series.
    pub fn new(n: usize) -> Self {
        let vec = prometheus::IntCounterVec::new(
            prometheus::Opts::new("bench_requests", "requests"),
            &SERIES_KEYS,
        )
        .expect("valid metric");
        for i in 0..n {
            let [a, b] = series_values(i);
            vec.with_label_values(&[a.as_str(), b.as_str()]).inc();
        }
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(vec))
            .expect("first registration");
        PrometheusSeries { registry }
    }
}

impl Harvest for PrometheusSeries {
    fn harvest(&mut self) -> usize {
        self.registry
            .gather()
            .iter()
            .map(|f| f.get_metric().len())
            .sum()
    }
}

/// Lets the benchmark keep the manual reader after handing it to the meter provider.
#[derive(Debug, Clone)]
pub struct SharedReader(pub Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

/// An OpenTelemetry meter provider with a manual reader (no background thread) whose
/// streams allow `limit` attribute sets (the SDK's default is 2000).
pub fn otel_provider(limit: usize) -> (SdkMeterProvider, SharedReader) {
    let reader = SharedReader(Arc::new(ManualReader::builder().build()));
    let provider = SdkMeterProvider::builder()
        .with_reader(reader.clone())
        .with_view(move |_: &Instrument| {
            Stream::builder()
                .with_cardinality_limit(limit.max(1))
                .build()
                .ok()
        })
        .build();
    (provider, reader)
}

/// `opentelemetry_sdk`: a `u64_counter` with a view raising the cardinality limit to `n`;
/// its harvest is `ManualReader::collect` into a reused `ResourceMetrics`.
#[derive(Debug)]
pub struct OpenTelemetrySeries {
    _provider: SdkMeterProvider,
    reader: SharedReader,
    rm: ResourceMetrics,
}

impl OpenTelemetrySeries {
    /// Builds `n` series.
    pub fn new(n: usize) -> Self {
        let (provider, reader) = otel_provider(n + 1);
        let counter = provider
            .meter("bench")
            .u64_counter("bench.requests")
            .build();
        for i in 0..n {
            let [a, b] = series_values(i);
            counter.add(
                1,
                &[
                    KeyValue::new(SERIES_KEYS[0], a),
                    KeyValue::new(SERIES_KEYS[1], b),
                ],
            );
        }
        OpenTelemetrySeries {
            _provider: provider,
            reader,
            rm: ResourceMetrics::default(),
        }
    }
}

impl Harvest for OpenTelemetrySeries {
    fn harvest(&mut self) -> usize {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        self.reader
            .collect(&mut self.rm)
            .expect("the reader is registered");
        self.rm
            .scope_metrics()
            .flat_map(|s| s.metrics())
            .map(|m| match m.data() {
                AggregatedMetrics::U64(MetricData::Sum(s)) => s.data_points().count(),
                _ => 0,
            })
            .sum()
    }
}

/// A counter cell for the floor benchmarks, on its own cache line.
pub fn floor_cell() -> Box<crate::Padded<AtomicU64>> {
    Box::new(crate::Padded(AtomicU64::new(0)))
}
