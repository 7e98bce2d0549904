//! The OTLP push exporter for **sampler**: sends each harvest to an OpenTelemetry Collector or
//! any OTLP backend, over OTLP/HTTP with protobuf bodies.
//!
//! Each snapshot is encoded on the exporter's worker thread into the OpenTelemetry project's
//! own protobuf messages (`opentelemetry-proto`), split into requests under a size limit,
//! gzipped, and queued. A sender thread of its own posts them in order with a blocking HTTP
//! client, so the exporter needs no async runtime from its host. With the cargo feature `grpc`
//! it speaks OTLP/gRPC instead (`protocol = "grpc"`): tonic on a current-thread runtime that
//! the sender thread owns. It follows what the OTLP
//! specification asks of an exporter: a timeout per request; retries with exponential backoff
//! and jitter on network errors and HTTP 429, 502, 503 and 504 only, honouring `Retry-After`
//! (over gRPC: the transient status codes, RESOURCE_EXHAUSTED only with a `google.rpc.RetryInfo`,
//! whose delay is honoured); partial success logged and counted, not retried; a bounded queue whose drops are counted;
//! and a shutdown that sends what it can and returns by its deadline.
//!
//! The mapping (counters → monotonic `Sum`, gauges → `Gauge`, timings → `ExponentialHistogram`
//! or explicit-bucket `Histogram`, cumulative or delta temporality, start times rounded down to
//! the millisecond so that series created together share one) is written out in
//! `spec/otlp.md`; the functions of [`mapping`] implement one rule each.
//!
//! # In an application
//!
//! ```no_run
//! use sampler_api::Harvester;
//! use sampler_exporter_otlp::{OtlpExporter, Temporality};
//! use std::time::Duration;
//!
//! let exporter = OtlpExporter::builder()
//!     .endpoint("http://127.0.0.1:4318/v1/metrics") // the default
//!     .resource("service.name", "checkout")
//!     .resource("service.instance.id", "checkout-7")
//!     .temporality(Temporality::Cumulative)
//!     .on_event(|e| eprintln!("{e}")) // one line when it starts failing, one when it recovers
//!     .build()?;
//! let harvester = Harvester::builder()
//!     .interval(Duration::from_secs(10))
//!     .exporter(exporter)
//!     .start();
//! // ... the application runs ...
//! harvester.shutdown(Duration::from_secs(5))?; // sends what is queued, by the deadline
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Self-metrics
//!
//! | series | kind | meaning |
//! | --- | --- | --- |
//! | `sampler.exporter.otlp.requests{result}` | counter | requests `sent`, `failed` (a final HTTP status), `expired` (retries or shutdown ran out of time), `dropped` (the queue was full) |
//! | `sampler.exporter.otlp.retries` | counter | attempts made again |
//! | `sampler.exporter.otlp.points{result}` | counter | data points `sent` (accepted), `rejected` (partial success), `dropped` (never delivered) |
//! | `sampler.exporter.otlp.sent` | counter (`By`) | request bytes delivered, as on the wire |
//! | `sampler.exporter.otlp.queue.length` | gauge | requests waiting or in flight |
//! | `sampler.exporter.otlp.encode.duration` | gauge (`s`) | time the latest snapshot took to encode and compress |
//! | `sampler.exporter.otlp.skipped` | counter | series of a kind this exporter does not know |

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod config;
#[cfg(feature = "grpc")]
mod grpc;
pub mod mapping;
mod sender;

use std::fmt;
use std::io::Write;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Instant;

use sampler_api::{Descriptor, ExportError, Exporter, Sampler, Snapshot, Writer};

pub use config::{
    default_buckets, Compression, HistogramMode, OtlpConfig, Protocol, RetryConfig, Temporality,
    DEFAULT_ENDPOINT, DEFAULT_GRPC_ENDPOINT, DEFAULT_MAX_REQUEST_SIZE,
};
pub use sender::{retryable_status, Event};

/// The OpenTelemetry protobuf messages this exporter sends (`opentelemetry-proto`'s prost
/// types), for those who decode or build requests themselves.
pub use opentelemetry_proto::tonic as proto;

use mapping::Encoder;
use sender::{EventHandler, Pending, Sender, Shared};

/// Why the exporter could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A setting is invalid.
    Config(String),
    /// The sender thread could not start.
    Start(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(why) => write!(f, "invalid otlp exporter setting: {why}"),
            Error::Start(e) => write!(f, "failed to start the otlp sender thread: {e}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Start(e) => Some(e),
            Error::Config(_) => None,
        }
    }
}

/// The OTLP push exporter: an [`Exporter`] that sends each harvest to an OTLP/HTTP endpoint.
///
/// Built with [`OtlpExporter::builder`]. Give it to a
/// [`Harvester`](sampler_api::Harvester); shutting the harvester down sends what is queued, by
/// the deadline. Dropping the exporter stops its sender at once.
pub struct OtlpExporter {
    encoder: Encoder,
    gzip: bool,
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for OtlpExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpExporter")
            .field("endpoint", &self.shared.endpoint)
            .field("encoder", &self.encoder)
            .finish()
    }
}

impl OtlpExporter {
    /// A builder with the defaults of [`OtlpConfig`].
    pub fn builder() -> OtlpExporterBuilder {
        OtlpExporterBuilder {
            config: OtlpConfig::default(),
            on_event: Arc::new(sender::log_event),
        }
    }

    /// Starts an exporter from a config (events go to the `log` crate).
    pub fn from_config(config: OtlpConfig) -> Result<Self, Error> {
        OtlpExporter::builder().config(config).build()
    }

    /// The URL requests are posted to.
    pub fn endpoint(&self) -> &str {
        &self.shared.endpoint
    }

    /// Requests waiting to be sent, or being sent.
    pub fn queued(&self) -> usize {
        self.shared.queued()
    }
}

impl Exporter for OtlpExporter {
    fn name(&self) -> &str {
        "otlp"
    }

    /// Encodes, compresses and queues the snapshot; never waits for the network.
    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        let started = Instant::now();
        let encoded = self.encoder.encode(&snapshot);
        let stats = &self.shared.stats;
        stats.skipped.fetch_add(encoded.skipped, Relaxed);
        stats.points_dropped.fetch_add(encoded.oversize, Relaxed);
        let mut pending = Vec::with_capacity(encoded.requests.len());
        for (body, points) in encoded.requests {
            let body = if self.gzip { gzip(&body) } else { body };
            pending.push(Pending { body, points });
        }
        stats
            .encode_nanos
            .store(started.elapsed().as_nanos() as u64, Relaxed);
        let mut dropped = 0;
        for p in pending {
            dropped += self.shared.push(p);
        }
        if dropped > 0 {
            return Err(ExportError::new(format!(
                "otlp queue for {} is full: dropped {dropped} data points of the oldest requests",
                self.shared.endpoint
            )));
        }
        if encoded.oversize > 0 {
            return Err(ExportError::new(format!(
                "dropped {} data points larger than the otlp max_request_size alone",
                encoded.oversize
            )));
        }
        Ok(())
    }

    /// Waits until every queued request is sent or given up, or `deadline` passes.
    fn flush(&mut self, deadline: Instant) -> Result<(), ExportError> {
        match self.shared.wait_idle(deadline) {
            0 => Ok(()),
            n => Err(ExportError::new(format!(
                "otlp flush to {}: deadline passed with {n} requests unsent",
                self.shared.endpoint
            ))),
        }
    }

    /// Sends what is queued until `deadline` (each request's timeout is cut to it), then stops
    /// the sender; returns by the deadline even when the receiver never answers.
    fn shutdown(&mut self, deadline: Instant) -> Result<(), ExportError> {
        self.shared.close(deadline);
        let left = self.shared.wait_idle(deadline);
        if left == 0 {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
        match left {
            0 => Ok(()),
            n => Err(ExportError::new(format!(
                "otlp shutdown for {}: deadline passed with {n} requests unsent",
                self.shared.endpoint
            ))),
        }
    }

    fn sampler(&self) -> Option<Arc<dyn Sampler>> {
        Some(Arc::new(StatsSampler(self.shared.clone())))
    }
}

impl Drop for OtlpExporter {
    fn drop(&mut self) {
        // The sender stops after its current attempt (cut short by its timeout) without
        // anyone waiting for it.
        self.shared.close(Instant::now());
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4 + 64),
        flate2::Compression::default(),
    );
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(body);
    enc.finish().unwrap_or_default()
}

/// Builds an [`OtlpExporter`].
///
/// ```
/// use sampler_exporter_otlp::{Compression, HistogramMode, OtlpExporter};
/// let exporter = OtlpExporter::builder()
///     .endpoint("http://127.0.0.1:4318/v1/metrics")
///     .header("x-tenant", "team-a")
///     .compression(Compression::None)
///     .histogram(HistogramMode::Explicit)
///     .buckets([0.01, 0.1, 1.0])
///     .build()?; // starts the sender thread; nothing is sent before the first harvest
/// assert_eq!(exporter.endpoint(), "http://127.0.0.1:4318/v1/metrics");
/// assert!(OtlpExporter::builder().endpoint("localhost:4318").build().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct OtlpExporterBuilder {
    config: OtlpConfig,
    on_event: EventHandler,
}

impl fmt::Debug for OtlpExporterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpExporterBuilder")
            .field("config", &self.config)
            .finish()
    }
}

impl OtlpExporterBuilder {
    /// OTLP/HTTP (default) or OTLP/gRPC (cargo feature `grpc`).
    pub fn protocol(mut self, p: Protocol) -> Self {
        self.config.protocol = p;
        self
    }

    /// The URL to post to (default `http://127.0.0.1:4318/v1/metrics`).
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.config.endpoint = url.into();
        self
    }

    /// Adds a request header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.insert(name.into(), value.into());
        self
    }

    /// The timeout of one request (default 10 s).
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Body compression (default gzip).
    pub fn compression(mut self, c: Compression) -> Self {
        self.config.compression = c;
        self
    }

    /// Cumulative or delta counters and histograms (default cumulative).
    pub fn temporality(mut self, t: Temporality) -> Self {
        self.config.temporality = t;
        self
    }

    /// Exponential or explicit-bucket histograms for timings (default exponential).
    pub fn histogram(mut self, h: HistogramMode) -> Self {
        self.config.histogram = h;
        self
    }

    /// The bounds of explicit-bucket histograms.
    pub fn buckets(mut self, bounds: impl Into<Vec<f64>>) -> Self {
        self.config.buckets = bounds.into();
        self
    }

    /// Sets a resource attribute (`service.name`, `service.instance.id`, or any other).
    pub fn resource(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.resource.insert(key.into(), value.into());
        self
    }

    /// The instrumentation scope's name and version (default `sampler` and this crate's
    /// version).
    pub fn scope(mut self, name: impl Into<String>, version: impl Into<String>) -> Self {
        self.config.scope_name = name.into();
        self.config.scope_version = version.into();
        self
    }

    /// How many requests may wait (default 64); past it the oldest is dropped and counted.
    pub fn queue_size(mut self, n: usize) -> Self {
        self.config.queue_size = n;
        self
    }

    /// The largest request body before compression (default 4 MiB).
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.config.max_request_size = bytes;
        self
    }

    /// The retry settings.
    pub fn retry(mut self, retry: RetryConfig) -> Self {
        self.config.retry = retry;
        self
    }

    /// Replaces every setting.
    pub fn config(mut self, config: OtlpConfig) -> Self {
        self.config = config;
        self
    }

    /// Where [`Event`]s go: one when sending starts failing, one when it recovers, one when
    /// the receiver's partial-success message changes. Default: the `log` crate.
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.on_event = Arc::new(f);
        self
    }

    /// Checks the settings and starts the sender thread.
    pub fn build(self) -> Result<OtlpExporter, Error> {
        let c = self.config;
        c.validate().map_err(Error::Config)?;
        let shared = Arc::new(Shared::new(c.effective_endpoint().to_owned(), c.queue_size));
        let sender = Sender::new(&c, shared.clone(), self.on_event).map_err(Error::Config)?;
        let thread = std::thread::Builder::new()
            .name("sampler-otlp-sender".into())
            .spawn(move || sender.run())
            .map_err(Error::Start)?;
        Ok(OtlpExporter {
            encoder: Encoder::new(&c),
            // gRPC compresses in its own framing.
            gzip: c.compression == Compression::Gzip && c.protocol == Protocol::HttpProtobuf,
            shared,
            thread: Some(thread),
        })
    }
}

static REQUESTS: Descriptor = Descriptor::counter(
    "sampler.exporter.otlp.requests",
    "1",
    "otlp requests by result: sent, failed, expired, dropped",
);
static RETRIES: Descriptor = Descriptor::counter(
    "sampler.exporter.otlp.retries",
    "1",
    "otlp attempts made again",
);
static POINTS: Descriptor = Descriptor::counter(
    "sampler.exporter.otlp.points",
    "1",
    "otlp data points by result: sent, rejected, dropped",
);
static BYTES: Descriptor = Descriptor::counter(
    "sampler.exporter.otlp.sent",
    "By",
    "otlp request bytes delivered, as on the wire",
);
static QUEUE: Descriptor = Descriptor::gauge(
    "sampler.exporter.otlp.queue.length",
    "1",
    "otlp requests waiting or in flight",
);
static ENCODE: Descriptor = Descriptor::gauge(
    "sampler.exporter.otlp.encode.duration",
    "s",
    "time the latest snapshot took to encode and compress",
);
static SKIPPED: Descriptor = Descriptor::counter(
    "sampler.exporter.otlp.skipped",
    "1",
    "series of a kind the otlp exporter does not know",
);

struct StatsSampler(Arc<Shared>);

impl Sampler for StatsSampler {
    fn sample(&self, out: &mut Writer<'_>) {
        let s = &self.0.stats;
        for (result, n) in [
            ("sent", &s.requests_sent),
            ("failed", &s.requests_failed),
            ("expired", &s.requests_expired),
            ("dropped", &s.requests_dropped),
        ] {
            out.counter(&REQUESTS, &[("result", result)], n.load(Relaxed));
        }
        for (result, n) in [
            ("sent", &s.points_sent),
            ("rejected", &s.points_rejected),
            ("dropped", &s.points_dropped),
        ] {
            out.counter(&POINTS, &[("result", result)], n.load(Relaxed));
        }
        out.counter(&RETRIES, &[], s.retries.load(Relaxed));
        out.counter(&BYTES, &[], s.bytes_sent.load(Relaxed));
        out.counter(&SKIPPED, &[], s.skipped.load(Relaxed));
        out.gauge(&QUEUE, &[], self.0.queued() as f64);
        out.gauge(&ENCODE, &[], s.encode_nanos.load(Relaxed) as f64 / 1e9);
    }

    fn name(&self) -> &str {
        "otlp-exporter"
    }
}
