//! The Prometheus remote write 1.0 exporter for **sampler**: each harvest becomes protobuf
//! `WriteRequest`s, snappy-compressed and POSTed to a receiver (Prometheus with
//! `--web.enable-remote-write-receiver`, VictoriaMetrics, Mimir, Thanos, InfluxDB).
//!
//! Names and labels are mapped as for the Prometheus exporter (`spec/prometheus.md`), plus
//! `job`, `instance` and external labels; counters and gauges are one sample each at the
//! harvest's time; timings are classic `_bucket`/`_sum`/`_count` series, native histograms
//! (`timings = "native"`, lossless from the timing's own exponential buckets) or both. A
//! series gone from a harvest gets one stale marker, so queries stop returning it at once.
//! The mapping and the delivery rules are in `spec/remote-write.md`.
//!
//! Delivery runs on the exporter's own worker thread with a blocking HTTP client, so it needs
//! no async runtime of the application's. Requests that fail with a 5xx, a 429 or a transport
//! error wait in a bounded buffer, in order, and are retried with exponential backoff and
//! jitter (honouring `Retry-After`); any other 4xx drops the request and counts its samples,
//! never retried. Past `max_buffered_samples` the oldest waiting samples are dropped and
//! counted.
//!
//! ```no_run
//! use sampler_api::Harvester;
//! use sampler_exporter_remote_write::RemoteWriteExporter;
//! use std::time::Duration;
//!
//! let exporter = RemoteWriteExporter::builder()
//!     .url("http://127.0.0.1:9090/api/v1/write")
//!     .external_label("region", "eu")
//!     .build()?;
//! let harvester = Harvester::builder()
//!     .interval(Duration::from_secs(15))
//!     .exporter(exporter)
//!     .start();
//! // ... the application runs ...
//! harvester.shutdown(Duration::from_secs(5))?; // the last harvest is sent or its loss reported
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod config;
mod encode;
pub mod proto;

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use sampler_api::{Descriptor, ExportError, Exporter, Sampler, Snapshot, Writer};
use sampler_push_support::{retry_after, Backoff, Jitter};

pub use config::{RemoteWriteConfig, TimingMode, DEFAULT_URL};
pub use encode::{native_histogram, samples, Encoder};

/// The longest `Retry-After` honoured: a receiver asking for more is tried again after this.
pub const MAX_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(600);

/// A request waiting to be sent: compressed body and how many samples it carries.
struct Pending {
    body: Vec<u8>,
    samples: usize,
}

#[derive(Debug, Default)]
struct Stats {
    sent: AtomicU64,
    requests: AtomicU64,
    bytes: AtomicU64,
    dropped: AtomicU64,
    rejected: AtomicU64,
    retries: AtomicU64,
    buffered: AtomicU64,
}

static SENT: Descriptor = Descriptor::counter(
    "sampler.exporter.remote_write.samples_sent",
    "1",
    "samples the receiver accepted",
);
static DROPPED: Descriptor = Descriptor::counter(
    "sampler.exporter.remote_write.samples_dropped",
    "1",
    "samples dropped: the buffer was full while the receiver was away (reason=buffer_full) or the receiver rejected them with a 4xx (reason=rejected)",
);
static RETRIES: Descriptor = Descriptor::counter(
    "sampler.exporter.remote_write.retries",
    "1",
    "requests sent again after a 5xx, a 429 or a transport error",
);
static BUFFERED: Descriptor = Descriptor::gauge(
    "sampler.exporter.remote_write.samples_buffered",
    "1",
    "samples waiting to be sent",
);
static BYTES: Descriptor = Descriptor::counter(
    "sampler.exporter.remote_write.bytes_sent",
    "By",
    "compressed request bytes the receiver accepted",
);

struct StatsSampler(Arc<Stats>);

impl Sampler for StatsSampler {
    fn sample(&self, out: &mut Writer<'_>) {
        let s = &self.0;
        out.counter(&SENT, &[], s.sent.load(Relaxed));
        out.counter(
            &DROPPED,
            &[("reason", "buffer_full")],
            s.dropped.load(Relaxed),
        );
        out.counter(
            &DROPPED,
            &[("reason", "rejected")],
            s.rejected.load(Relaxed),
        );
        out.counter(&RETRIES, &[], s.retries.load(Relaxed));
        out.gauge(&BUFFERED, &[], s.buffered.load(Relaxed) as f64);
        out.counter(&BYTES, &[], s.bytes.load(Relaxed));
    }
    fn name(&self) -> &str {
        "remote-write"
    }
}

/// Why the exporter could not be built.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Pushes each harvest to a remote write receiver. See the [crate docs](crate).
pub struct RemoteWriteExporter {
    config: RemoteWriteConfig,
    encoder: Encoder,
    agent: ureq::Agent,
    pending: VecDeque<Pending>,
    buffered: usize,
    backoff: Backoff,
    /// Not before this instant (backoff or `Retry-After`).
    next_try: Option<Instant>,
    /// Why the last attempt failed, while requests wait for a retry.
    last_error: Option<String>,
    stats: Arc<Stats>,
}

impl fmt::Debug for RemoteWriteExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteWriteExporter")
            .field("url", &self.config.url)
            .field("buffered", &self.buffered)
            .finish()
    }
}

/// What one attempt to send the oldest pending request came to.
enum Outcome {
    Sent,
    /// 4xx other than 429: dropped, never retried.
    Rejected(String),
    /// 5xx, 429 or a transport error: kept, retried after `wait`.
    Retry {
        why: String,
        wait: Duration,
    },
}

impl RemoteWriteExporter {
    /// A builder with the defaults of [`RemoteWriteConfig`].
    pub fn builder() -> RemoteWriteExporterBuilder {
        RemoteWriteExporterBuilder {
            config: RemoteWriteConfig::default(),
        }
    }

    /// An exporter with these settings.
    pub fn from_config(config: RemoteWriteConfig) -> Result<Self, Error> {
        config
            .validate()
            .map_err(|e| Error(format!("invalid remote write settings: {e}")))?;
        let mut extra = config.external_labels.clone();
        extra.insert("job".into(), config.job.clone());
        extra.insert("instance".into(), config.instance.clone());
        let bounds = config.buckets.bounds().map_err(Error)?;
        let encoder = Encoder::new(
            config.timings,
            bounds,
            extra,
            config.max_samples_per_send,
            config.metadata,
        )
        .staleness_markers(config.staleness_markers);
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(config.timeout))
                .user_agent(concat!("sampler-remote-write/", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Ok(RemoteWriteExporter {
            backoff: Backoff::new(config.min_backoff, config.max_backoff).jitter(Jitter::Full),
            config,
            encoder,
            agent,
            pending: VecDeque::new(),
            buffered: 0,
            next_try: None,
            last_error: None,
            stats: Arc::new(Stats::default()),
        })
    }

    /// Samples waiting to be sent.
    pub fn buffered_samples(&self) -> usize {
        self.buffered
    }

    fn enqueue(&mut self, snapshot: &Snapshot) {
        for r in self.encoder.encode(snapshot) {
            let samples = samples(&r);
            let body = snap::raw::Encoder::new()
                .compress_vec(&r.encode_to_vec())
                .unwrap_or_default();
            self.pending.push_back(Pending { body, samples });
            self.buffered += samples;
        }
        while self.buffered > self.config.max_buffered_samples {
            match self.pending.pop_front() {
                Some(p) => {
                    self.buffered -= p.samples;
                    self.stats.dropped.fetch_add(p.samples as u64, Relaxed);
                }
                None => break,
            }
        }
        self.stats.buffered.store(self.buffered as u64, Relaxed);
    }

    fn send_front(&mut self, deadline: Instant) -> Outcome {
        let Some(p) = self.pending.front() else {
            return Outcome::Sent;
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = self.config.timeout.min(left.max(Duration::from_millis(1)));
        let mut req = self
            .agent
            .post(&self.config.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0");
        for (k, v) in &self.config.headers {
            req = req.header(k, v);
        }
        let result = req
            .config()
            .timeout_global(Some(timeout))
            .build()
            .send(&p.body[..]);
        let url = &self.config.url;
        match result {
            Ok(mut resp) => {
                let status = resp.status().as_u16();
                if (200..300).contains(&status) {
                    return Outcome::Sent;
                }
                let after = resp
                    .headers()
                    .get("Retry-After")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| retry_after(v, std::time::SystemTime::now()))
                    .map(|wait| wait.min(MAX_RETRY_AFTER));
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(512)
                    .read_to_string()
                    .unwrap_or_default();
                let why = format!(
                    "remote write to {url} answered {status}: {}",
                    body.trim().chars().take(200).collect::<String>()
                );
                if status == 429 || status >= 500 {
                    let wait = after.unwrap_or_else(|| self.backoff.failed());
                    Outcome::Retry { why, wait }
                } else {
                    Outcome::Rejected(why)
                }
            }
            Err(e) => Outcome::Retry {
                why: format!("failed to send to remote write receiver {url}: {e}"),
                wait: self.backoff.failed(),
            },
        }
    }

    /// Sends what is pending, oldest first, until it is all sent or `deadline` passes. Waits
    /// out backoffs that end before the deadline.
    fn drain(&mut self, deadline: Instant) -> Result<(), ExportError> {
        let mut rejected = Vec::new();
        while !self.pending.is_empty() {
            if let Some(at) = self.next_try {
                if at > deadline {
                    return Err(self.still_failing(rejected));
                }
                std::thread::sleep(at.saturating_duration_since(Instant::now()));
                self.stats.retries.fetch_add(1, Relaxed);
            }
            if Instant::now() >= deadline {
                return Err(ExportError::timed_out(&format!(
                    "remote write to {}: {} samples still buffered",
                    self.config.url, self.buffered
                )));
            }
            match self.send_front(deadline) {
                Outcome::Sent => {
                    if let Some(p) = self.pending.pop_front() {
                        self.buffered -= p.samples;
                        self.stats.sent.fetch_add(p.samples as u64, Relaxed);
                        self.stats.requests.fetch_add(1, Relaxed);
                        self.stats.bytes.fetch_add(p.body.len() as u64, Relaxed);
                    }
                    self.backoff.succeeded();
                    self.next_try = None;
                    self.last_error = None;
                }
                Outcome::Rejected(why) => {
                    if let Some(p) = self.pending.pop_front() {
                        self.buffered -= p.samples;
                        self.stats.rejected.fetch_add(p.samples as u64, Relaxed);
                        rejected.push(format!("{why} ({} samples dropped)", p.samples));
                    }
                    self.next_try = None;
                }
                Outcome::Retry { why, wait } => {
                    self.next_try = Some(Instant::now() + wait);
                    self.last_error = Some(why);
                }
            }
            self.stats.buffered.store(self.buffered as u64, Relaxed);
        }
        self.stats.buffered.store(self.buffered as u64, Relaxed);
        match rejected.pop() {
            None => Ok(()),
            Some(last) => Err(ExportError::new(last)),
        }
    }

    fn still_failing(&self, rejected: Vec<String>) -> ExportError {
        let mut why = self
            .last_error
            .clone()
            .unwrap_or_else(|| format!("remote write to {} is backing off", self.config.url));
        why.push_str(&format!(
            " ({} samples buffered, {} dropped so far)",
            self.buffered,
            self.stats.dropped.load(Relaxed)
        ));
        if let Some(r) = rejected.last() {
            why.push_str(&format!("; also {r}"));
        }
        ExportError::new(why)
    }
}

impl Exporter for RemoteWriteExporter {
    fn name(&self) -> &str {
        "remote-write"
    }

    /// Buffers the snapshot's requests, then sends what is pending for at most half an
    /// interval, so a slow receiver never makes the worker fall behind the harvests.
    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        self.enqueue(&snapshot);
        let budget = (snapshot.interval / 2).max(Duration::from_millis(10));
        self.drain(Instant::now() + budget)
    }

    fn flush(&mut self, deadline: Instant) -> Result<(), ExportError> {
        self.drain(deadline)
    }

    fn sampler(&self) -> Option<Arc<dyn Sampler>> {
        Some(Arc::new(StatsSampler(self.stats.clone())))
    }
}

/// Builds a [`RemoteWriteExporter`].
#[derive(Debug, Clone)]
pub struct RemoteWriteExporterBuilder {
    config: RemoteWriteConfig,
}

impl RemoteWriteExporterBuilder {
    /// The receiver's URL (default `http://127.0.0.1:9090/api/v1/write`).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.config.url = url.into();
        self
    }

    /// Adds a request header (authentication, a tenant id).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.insert(name.into(), value.into());
        self
    }

    /// Adds a label to every series (a series' own label of that name wins).
    pub fn external_label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config
            .external_labels
            .insert(name.into(), value.into());
        self
    }

    /// The per-request timeout (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// Samples kept while the receiver is away (default 500,000).
    pub fn max_buffered_samples(mut self, n: usize) -> Self {
        self.config.max_buffered_samples = n;
        self
    }

    /// Samples per request at most (default 2000).
    pub fn max_samples_per_send(mut self, n: usize) -> Self {
        self.config.max_samples_per_send = n;
        self
    }

    /// The backoff range between retries (default 30 ms to 5 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.config.min_backoff = min;
        self.config.max_backoff = max;
        self
    }

    /// Every setting at once.
    pub fn config(mut self, config: RemoteWriteConfig) -> Self {
        self.config = config;
        self
    }

    /// The exporter, or why the settings are invalid.
    pub fn build(self) -> Result<RemoteWriteExporter, Error> {
        RemoteWriteExporter::from_config(self.config)
    }
}
