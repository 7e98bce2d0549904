//! A family of N labelled counters in each library, each series incremented once, each
//! library's way of collecting all of them (its "harvest"), and its way from the recorded
//! counters to Prometheus text bytes (its "exposition").
//!
//! Every family has the two label keys [`SERIES_KEYS`] and the values [`series_values`], so
//! that the libraries hold the same data.
//!
//! ```
//! use sampler_benches::series::{Harvest, Library};
//! for lib in Library::ALL {
//!     let mut family = lib.build(100);
//!     if let Some(seen) = family.harvest() {
//!         assert_eq!(seen, 100, "{}", lib.name());
//!     }
//! }
//! ```

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};
use std::time::Duration;

pub use crate::measured_labels::{MeasuredSeriesLabels, MeasuredSeriesSet};
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
use paracord::ParaCord;
use prometheus_client::encoding::EncodeLabelSet;
use sampler_api::{Descriptor, FamilyOptions, Harvester, Registry};
use sampler_exporter_prometheus::{Encoder, Format, PrometheusConfig};

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
    /// `fastmetrics`.
    FastMetrics,
    /// `measured`, label values interned in `paracord` sets.
    Measured,
}

impl Library {
    /// Every library, ours first.
    pub const ALL: [Library; 7] = [
        Library::Sampler,
        Library::Metrics,
        Library::PrometheusClient,
        Library::Prometheus,
        Library::OpenTelemetry,
        Library::FastMetrics,
        Library::Measured,
    ];

    /// The name used in benchmark ids and tables.
    pub fn name(self) -> &'static str {
        match self {
            Library::Sampler => "sampler",
            Library::Metrics => "metrics",
            Library::PrometheusClient => "prometheus_client",
            Library::Prometheus => "prometheus",
            Library::OpenTelemetry => "opentelemetry",
            Library::FastMetrics => "fastmetrics",
            Library::Measured => "measured",
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
            Library::FastMetrics => Box::new(FastMetricsSeries::new(n)),
            Library::Measured => Box::new(MeasuredSeries::new(n)),
        }
    }

    /// A family of `n` two-label counters, each incremented once, kept the way the library
    /// keeps them when they are to be exposed to Prometheus: as [`build`](Library::build),
    /// except `metrics`, whose exposition comes from a `metrics-exporter-prometheus` recorder.
    pub fn build_exposed(self, n: usize) -> Box<dyn Harvest> {
        match self {
            Library::Metrics => Box::new(MetricsExposedSeries::new(n)),
            other => other.build(n),
        }
    }
}

/// Collects every series of a family, the way the library does it for export, and writes
/// them as Prometheus text.
pub trait Harvest {
    /// Collects once and returns how many series were seen; `None` when the library has no
    /// way to collect other than encoding them (see [`expose`](Harvest::expose)).
    fn harvest(&mut self) -> Option<usize>;

    /// Goes from the recorded counters to Prometheus text bytes (format 0.0.4, or the
    /// library's only text format), the whole way a scrape waits for; `None` when the
    /// library (as built here) has no text exposition.
    fn expose(&mut self) -> Option<&[u8]>;

    /// What the library's exposition leaves for after the scrape is answered, done now (the
    /// benches call it outside the time): ours drops the harvested snapshot, as the Prometheus
    /// exporter's scrape-time harvest does once the waiting scrapes have their answer. The
    /// peers leave nothing.
    fn settle(&mut self) {}
}

static SERIES: Descriptor = Descriptor::counter("bench.requests", "1", "requests");

/// Ours: a counter family with its cardinality limit raised to `n`; the harvest is
/// `Harvester::harvest_now` without self-metrics (a full `Arc<Snapshot>`), the exposition
/// that harvest then the Prometheus exporter's text encoding (plan + encode into a reused
/// buffer), as a scrape with `harvest_on_scrape` does.
pub struct SamplerSeries {
    registry: Registry,
    _family: sampler_api::CounterFamily,
    harvester: Option<Harvester>,
    encoder: Option<Encoder>,
    buf: Vec<u8>,
    last: Option<Arc<sampler_api::Snapshot>>,
    /// The snapshot of the last `expose`, until `settle`.
    answered: Option<Arc<sampler_api::Snapshot>>,
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
            encoder: None,
            buf: Vec::new(),
            last: None,
            answered: None,
        }
    }

    fn harvester(&mut self) -> &Harvester {
        let registry = &self.registry;
        self.harvester.get_or_insert_with(|| {
            Harvester::builder()
                .registry(registry.clone())
                .self_metrics(false)
                .build()
        })
    }

    /// Encodes the last harvest again as Prometheus text (harvesting once if there was
    /// none): the encoding alone, without the harvest before it.
    pub fn encode_last(&mut self) -> &[u8] {
        if self.last.is_none() {
            self.last = Some(self.harvester().harvest_now());
        }
        let encoder = self.encoder.get_or_insert_with(default_encoder);
        if let Some(snapshot) = &self.last {
            let plan = encoder.plan(snapshot);
            self.buf.clear();
            encoder.encode(&plan, Format::Text, &mut self.buf);
        }
        &self.buf
    }
}

fn default_encoder() -> Encoder {
    Encoder::new(PrometheusConfig::default()).expect("the default configuration is valid")
}

impl Harvest for SamplerSeries {
    fn harvest(&mut self) -> Option<usize> {
        Some(self.harvester().harvest_now().len())
    }

    fn expose(&mut self) -> Option<&[u8]> {
        let snapshot = self.harvester().harvest_now();
        let encoder = self.encoder.get_or_insert_with(default_encoder);
        let plan = encoder.plan(&snapshot);
        self.buf.clear();
        encoder.encode(&plan, Format::Text, &mut self.buf);
        drop(plan);
        // Dropped in `settle`, after the answer (or here, by the next `expose`).
        self.answered = Some(snapshot);
        Some(&self.buf)
    }

    fn settle(&mut self) {
        self.answered = None;
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
    fn harvest(&mut self) -> Option<usize> {
        let mut out = Vec::new();
        self.recorder
            .registry()
            .visit_counters(|k, c| out.push((k.clone(), c.load(Relaxed))));
        Some(out.len())
    }

    fn expose(&mut self) -> Option<&[u8]> {
        None
    }
}

/// `metrics` as exposed to Prometheus: the same counters recorded through a
/// `metrics-exporter-prometheus` recorder; the exposition is `PrometheusHandle::render`.
pub struct MetricsExposedSeries {
    handle: metrics_exporter_prometheus::PrometheusHandle,
    _recorder: metrics_exporter_prometheus::PrometheusRecorder,
    text: String,
}

impl std::fmt::Debug for MetricsExposedSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsExposedSeries")
            .finish_non_exhaustive()
    }
}

impl MetricsExposedSeries {
    /// Builds `n` series.
    pub fn new(n: usize) -> Self {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let meta = Metadata::new("bench", metrics::Level::INFO, None);
        recorder.describe_counter("bench_requests".into(), None, "requests".into());
        for i in 0..n {
            let [a, b] = series_values(i);
            let key = Key::from_parts(
                "bench_requests",
                vec![Label::new(SERIES_KEYS[0], a), Label::new(SERIES_KEYS[1], b)],
            );
            recorder.register_counter(&key, &meta).increment(1);
        }
        MetricsExposedSeries {
            handle: recorder.handle(),
            _recorder: recorder,
            text: String::new(),
        }
    }
}

impl Harvest for MetricsExposedSeries {
    fn harvest(&mut self) -> Option<usize> {
        None
    }

    fn expose(&mut self) -> Option<&[u8]> {
        self.text = self.handle.render();
        Some(self.text.as_bytes())
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

/// `prometheus-client`: a `Family<SeriesLabels, Counter>`; it has no way to collect other than
/// encoding: its harvest is the OpenMetrics text encoding into a reused `String`, its
/// exposition the Prometheus text encoding.
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
    fn harvest(&mut self) -> Option<usize> {
        self.buf.clear();
        prometheus_client::encoding::text::encode(&mut self.buf, &self.registry)
            .expect("encoding into a String cannot fail");
        Some(
            self.buf
                .lines()
                .filter(|l| l.starts_with("bench_requests_total{"))
                .count(),
        )
    }

    fn expose(&mut self) -> Option<&[u8]> {
        self.buf.clear();
        prometheus_client::encoding::prometheus_text::encode(&mut self.buf, &self.registry)
            .expect("encoding into a String cannot fail");
        Some(self.buf.as_bytes())
    }
}

/// `prometheus`: an `IntCounterVec`; its harvest is `Registry::gather`, its exposition that
/// gather then `TextEncoder::encode_utf8` into a reused `String`.
#[derive(Debug)]
pub struct PrometheusSeries {
    registry: prometheus::Registry,
    buf: String,
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
        PrometheusSeries {
            registry,
            buf: String::new(),
        }
    }
}

impl Harvest for PrometheusSeries {
    fn harvest(&mut self) -> Option<usize> {
        Some(
            self.registry
                .gather()
                .iter()
                .map(|f| f.get_metric().len())
                .sum(),
        )
    }

    fn expose(&mut self) -> Option<&[u8]> {
        self.buf.clear();
        prometheus::TextEncoder::new()
            .encode_utf8(&self.registry.gather(), &mut self.buf)
            .expect("encoding into a String cannot fail");
        Some(self.buf.as_bytes())
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
    fn expose(&mut self) -> Option<&[u8]> {
        // The SDK has no Prometheus text encoder of its own (that is a separate, deprecated
        // exporter crate, not built here).
        None
    }

    fn harvest(&mut self) -> Option<usize> {
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
            .sum::<usize>()
            .into()
    }
}

/// The label set of `fastmetrics`' family: a struct of owned strings, as for
/// `prometheus-client`.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct FastSeriesLabels {
    /// The first label.
    pub service: String,
    /// The second label.
    pub route: String,
}

impl fastmetrics::raw::LabelSetSchema for FastSeriesLabels {
    fn names() -> Option<&'static [&'static str]> {
        Some(&SERIES_KEYS)
    }
}

impl fastmetrics::encoder::EncodeLabelSet for FastSeriesLabels {
    fn encode(
        &self,
        encoder: &mut dyn fastmetrics::encoder::LabelSetEncoder,
    ) -> fastmetrics::error::Result<()> {
        encoder.encode(&(SERIES_KEYS[0], self.service.as_str()))?;
        encoder.encode(&(SERIES_KEYS[1], self.route.as_str()))?;
        Ok(())
    }
}

/// `fastmetrics`: a `Family<FastSeriesLabels, Counter>` in a registry; it has no way to
/// collect other than encoding, and its exposition is `format::text::encode` with the
/// Prometheus 0.0.4 profile into a reused `String`.
pub struct FastMetricsSeries {
    registry: fastmetrics::registry::Registry,
    buf: String,
}

impl std::fmt::Debug for FastMetricsSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FastMetricsSeries").finish_non_exhaustive()
    }
}

impl FastMetricsSeries {
    /// Builds `n` series.
    pub fn new(n: usize) -> Self {
        use fastmetrics::metrics::{counter::Counter, family::Family};
        let family = Family::<FastSeriesLabels, Counter>::default();
        for i in 0..n {
            let [service, route] = series_values(i);
            family.with_or_new(&FastSeriesLabels { service, route }, |c| c.inc());
        }
        let mut registry = fastmetrics::registry::Registry::default();
        registry
            .register("bench_requests", "requests", family)
            .expect("first registration");
        FastMetricsSeries {
            registry,
            buf: String::new(),
        }
    }
}

impl Harvest for FastMetricsSeries {
    fn harvest(&mut self) -> Option<usize> {
        None
    }

    fn expose(&mut self) -> Option<&[u8]> {
        self.buf.clear();
        fastmetrics::format::text::encode(
            &mut self.buf,
            &self.registry,
            fastmetrics::format::text::TextProfile::PrometheusV0_0_4,
        )
        .expect("encoding into a String cannot fail");
        Some(self.buf.as_bytes())
    }
}

/// A `measured` counter vector keyed by interned label values.
pub type MeasuredCounters = measured::CounterVec<MeasuredSeriesSet>;

/// A `measured` counter vector over two interned labels, as [`MeasuredSeries`] builds it.
pub fn measured_counters() -> MeasuredCounters {
    measured::CounterVec::with_label_set(MeasuredSeriesSet {
        service: ParaCord::default(),
        route: ParaCord::default(),
    })
}

/// `measured`: a `CounterVec` over [`MeasuredSeriesLabels`]; it has no way to collect other
/// than encoding, and its exposition is `collect_family_into` a reused
/// `BufferedTextEncoder`, then `finish` (the bytes).
pub struct MeasuredSeries {
    counters: MeasuredCounters,
    encoder: measured::text::BufferedTextEncoder,
    last: bytes::Bytes,
}

impl std::fmt::Debug for MeasuredSeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeasuredSeries").finish_non_exhaustive()
    }
}

impl MeasuredSeries {
    /// Builds `n` series.
    pub fn new(n: usize) -> Self {
        let counters = measured_counters();
        for i in 0..n {
            let [service, route] = series_values(i);
            counters.inc(MeasuredSeriesLabels {
                service: &service,
                route: &route,
            });
        }
        MeasuredSeries {
            counters,
            encoder: measured::text::BufferedTextEncoder::new(),
            last: bytes::Bytes::new(),
        }
    }
}

impl Harvest for MeasuredSeries {
    fn harvest(&mut self) -> Option<usize> {
        None
    }

    fn expose(&mut self) -> Option<&[u8]> {
        use measured::metric::group::Encoding as _;
        use measured::metric::MetricFamilyEncoding as _;
        let name = measured::metric::name::MetricName::from_str("bench_requests_total");
        let _ = self.encoder.write_help(name, "requests");
        self.counters
            .collect_family_into(name, &mut self.encoder)
            .expect("encoding into memory cannot fail");
        self.last = self.encoder.finish();
        Some(&self.last)
    }
}

/// A counter cell for the floor benchmarks, on its own cache line.
pub fn floor_cell() -> Box<crate::Padded<AtomicU64>> {
    Box::new(crate::Padded(AtomicU64::new(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_lines(text: &[u8]) -> Vec<String> {
        let mut v: Vec<String> = String::from_utf8_lossy(text)
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn every_exposition_holds_every_series_once() {
        let mut ours = Library::Sampler.build_exposed(50);
        let want = sample_lines(ours.expose().expect("ours exposes"));
        assert_eq!(want.len(), 50);
        assert!(
            want.iter()
                .any(|l| l == "bench_requests_total{service=\"svc0\",route=\"/api/v1/items/7\"} 1"),
            "{want:?}"
        );
        let mut exposed = 0;
        for lib in Library::ALL {
            let mut family = lib.build_exposed(50);
            let Some(text) = family.expose() else {
                continue;
            };
            exposed += 1;
            let got = sample_lines(text);
            assert_eq!(got.len(), 50, "{}: {got:?}", lib.name());
            // Same series and values; label order and spacing may differ between libraries.
            for i in 0..50 {
                let [a, b] = series_values(i);
                let hit = got.iter().any(|l| {
                    l.contains(&format!("service=\"{a}\""))
                        && l.contains(&format!("route=\"{b}\""))
                        && l.ends_with(" 1")
                });
                assert!(hit, "{} lacks series {i}: {got:?}", lib.name());
            }
        }
        // Ours, metrics, prometheus-client, prometheus, fastmetrics, measured.
        assert_eq!(exposed, 6);
    }

    #[test]
    fn harvests_see_every_series_and_encoding_only_libraries_say_so() {
        for lib in Library::ALL {
            let seen = lib.build(30).harvest();
            match lib {
                Library::FastMetrics | Library::Measured => assert_eq!(seen, None),
                _ => assert_eq!(seen, Some(30), "{}", lib.name()),
            }
        }
    }

    #[test]
    fn encoding_the_last_harvest_again_gives_the_same_bytes() {
        let mut ours = SamplerSeries::new(20);
        let again = ours.encode_last().to_vec();
        assert_eq!(sample_lines(&again), sample_lines(ours.expose().unwrap()));
    }
}
