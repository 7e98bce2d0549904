//! The Prometheus pull exporter for **sampler**: an HTTP endpoint that serves the latest
//! harvest as OpenMetrics 1.0 text, Prometheus text 0.0.4 or, with native histograms on, the
//! delimited protobuf exposition.
//!
//! Each harvest is encoded once, on the exporter's own worker thread, and every scrape is
//! served the cached bytes (gzipped when the scraper accepts it). A scrape never polls the
//! samplers and never waits for a harvest: during a slow harvest it gets the previous
//! snapshot at once. Those who want scrape-time freshness set
//! [`harvest_on_scrape`](PrometheusExporterBuilder::harvest_on_scrape).
//!
//! The mapping from sampler's data model (dotted names, UCUM units, cumulative counters,
//! exponential-bucket timings) to Prometheus' is written out as a table in
//! `spec/prometheus.md`; the functions of [`mapping`] implement one rule each.
//!
//! # In an application
//!
//! ```
//! use sampler_api::{Descriptor, Harvester, Registry};
//! use sampler_exporter_prometheus::PrometheusExporter;
//! use std::time::Duration;
//!
//! static REQUESTS: Descriptor = Descriptor::counter("http.server.requests", "1", "requests served");
//!
//! let exporter = PrometheusExporter::builder()
//!     .address("127.0.0.1:0") // port 0: any free port; the default is 127.0.0.1:9464
//!     .path("/metrics")
//!     .build()?; // binds now, so a busy port is reported here
//! println!("scrape {}", exporter.url());
//!
//! let harvester = Harvester::builder()
//!     .interval(Duration::from_secs(10))
//!     .harvest_at_start(true)
//!     .exporter(exporter)
//!     .start();
//! Registry::global().counter(&REQUESTS).inc();
//! // ... the application runs ...
//! harvester.shutdown(Duration::from_secs(5))?; // also stops the endpoint
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Features
//!
//! | feature | default | gives |
//! | --- | --- | --- |
//! | `server` | on | [`PrometheusExporter`], the HTTP endpoint (hyper, tokio, flate2); turns on `protobuf` |
//! | `protobuf` | with `server` | the protobuf exposition with native histograms (prost) |
//! | `ui` | on | the live page at `/` (`sampler-exporter-ui`); turns on `server` |
//! | `serde` | off | reading [`PrometheusConfig`] and [`EncoderConfig`] from a config file |
//!
//! With `default-features = false` the crate is the encoder alone: [`Encoder`] with an
//! [`EncoderConfig`] turns a snapshot into text 0.0.4 or OpenMetrics, depending on
//! `sampler-api`, `dtoa` and `itoa` only.
//!
//! ```
//! use sampler_api::{Descriptor, Harvester, Registry};
//! use sampler_exporter_prometheus::{Encoder, EncoderConfig, Format};
//!
//! static JOBS: Descriptor = Descriptor::counter("jobs.done", "1", "jobs done");
//! let registry = Registry::new();
//! let jobs = registry.counter(&JOBS);
//! jobs.add(2);
//! let snapshot = Harvester::builder().registry(registry).self_metrics(false).build().harvest_now();
//! let mut encoder = Encoder::new(EncoderConfig::default())?;
//! let mut out = Vec::new();
//! encoder.encode(&encoder.plan(&snapshot), Format::OpenMetrics, &mut out);
//! assert!(String::from_utf8(out)?.contains("jobs_done_total 2\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What the endpoint answers
//!
//! | path | answer |
//! | --- | --- |
//! | `/metrics` (the `path` setting) | the latest harvest, in the format the `Accept` header prefers |
//! | `/` | the live page (feature `ui`, setting `ui`, both on by default): every series of the last 60 harvests as a small chart, from `/ui/data.json`; else a small HTML page linking to the metrics and the health check |
//! | `/ui/app.js`, `/ui/style.css`, `/ui/data.json` | the live page's script, style and data (`spec/ui.md`) |
//! | `/-/healthy` | `200 Healthy.` while the endpoint runs |
//! | `/-/ready` | `200` once a harvest has been encoded, `503` before |
//!
//! At most `max_connections` connections (default 256) are served at once; past that a new
//! connection gets `503 Service Unavailable` and is closed, so that the endpoint never uses more
//! than a bounded number of file descriptors, whatever its clients do.

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod config;
mod encode;
pub mod mapping;
mod negotiate;
#[cfg(feature = "protobuf")]
mod proto;
#[cfg(feature = "server")]
mod server;

#[cfg(feature = "server")]
use std::fmt;
#[cfg(feature = "server")]
use std::net::{SocketAddr, TcpListener};
#[cfg(feature = "server")]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
#[cfg(feature = "server")]
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
#[cfg(feature = "server")]
use std::time::{Duration, Instant};

#[cfg(feature = "server")]
use bytes::Bytes;
#[cfg(feature = "server")]
use sampler_api::{Descriptor, ExportError, Exporter, HarvestHandle, Sampler, Snapshot, Writer};

pub use config::{
    Buckets, EncoderConfig, PrometheusConfig, TimingMode, DEFAULT_ADDRESS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PATH, MAX_BUCKETS,
};
pub use encode::{Collision, Encoder, Format, Plan};
pub use negotiate::{accepts_gzip, negotiate_format};
#[cfg(feature = "protobuf")]
pub use proto::{native_buckets, NativeBuckets, MAX_SCHEMA, MIN_SCHEMA, ZERO_THRESHOLD};

/// Why the exporter could not start.
#[derive(Debug)]
#[cfg(feature = "server")]
pub enum Error {
    /// The listen address could not be bound.
    Bind {
        /// The address as configured.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A setting is invalid.
    Config(String),
    /// The server thread or runtime could not start.
    Start(std::io::Error),
}

#[cfg(feature = "server")]
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind { address, source } => {
                write!(
                    f,
                    "failed to bind prometheus endpoint at {address}: {source}"
                )
            }
            Error::Config(why) => write!(f, "invalid prometheus exporter setting: {why}"),
            Error::Start(e) => write!(f, "failed to start the prometheus endpoint: {e}"),
        }
    }
}

/// The cause is part of the message, so the error has no separate `source` (an error chain
/// printed whole shows it once).
#[cfg(feature = "server")]
impl std::error::Error for Error {}

#[cfg(feature = "server")]
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One snapshot, encoded: the bodies of every offered format and, made on first demand, their
/// gzipped forms.
#[cfg(feature = "server")]
pub(crate) struct Exposition {
    sequence: u64,
    bodies: [Bytes; 3],
    gz: [OnceLock<Bytes>; 3],
}

#[cfg(feature = "server")]
impl Exposition {
    fn empty() -> Self {
        Exposition {
            sequence: 0,
            bodies: [Bytes::new(), Bytes::from_static(b"# EOF\n"), Bytes::new()],
            gz: Default::default(),
        }
    }

    pub(crate) fn body(&self, f: Format) -> Bytes {
        self.bodies[f.index()].clone()
    }

    pub(crate) fn gzipped(&self, f: Format) -> Option<Bytes> {
        self.gz[f.index()].get().cloned()
    }

    pub(crate) fn gzip(&self, f: Format) -> Bytes {
        self.gz[f.index()]
            .get_or_init(|| {
                use std::io::Write;
                let body = &self.bodies[f.index()];
                let mut enc = flate2::write::GzEncoder::new(
                    Vec::with_capacity(body.len() / 4 + 64),
                    flate2::Compression::fast(),
                );
                // Writing into a Vec cannot fail.
                let _ = enc.write_all(body);
                Bytes::from(enc.finish().unwrap_or_default())
            })
            .clone()
    }
}

/// Self-metrics, updated by the endpoint and the encoder.
#[derive(Default)]
#[cfg(feature = "server")]
struct Stats {
    scrapes: [AtomicU64; 3],
    collisions: AtomicU64,
    encode_nanos: AtomicU64,
    sizes: [AtomicU64; 3],
    harvests_waited: AtomicU64,
    refused: AtomicU64,
}

#[cfg(feature = "server")]
impl Stats {
    fn scraped(&self, f: Format) {
        self.scrapes[f.index()].fetch_add(1, Relaxed);
    }
}

#[cfg(feature = "server")]
struct EncoderState {
    encoder: Encoder,
    /// Collisions already logged (name, dropped family), so each is logged once.
    reported: std::collections::HashSet<(String, String)>,
}

/// What the exporter, its endpoint and its self-metrics share.
#[cfg(feature = "server")]
pub(crate) struct Shared {
    path: String,
    native: bool,
    gzip: bool,
    harvest_on_scrape: bool,
    harvest_timeout: Duration,
    max_connections: usize,
    index_html: Bytes,
    /// The live page, when on: it keeps the history of every harvest published.
    #[cfg(feature = "ui")]
    ui: Option<sampler_exporter_ui::Ui>,
    current: Mutex<Arc<Exposition>>,
    encoder: Mutex<EncoderState>,
    stats: Stats,
    wanted_gzip: [AtomicBool; 3],
    fresh: Mutex<Option<std::sync::mpsc::Sender<tokio::sync::oneshot::Sender<()>>>>,
}

#[cfg(feature = "server")]
impl Shared {
    pub(crate) fn current(&self) -> Arc<Exposition> {
        lock(&self.current).clone()
    }

    pub(crate) fn has_snapshot(&self) -> bool {
        lock(&self.current).sequence > 0
    }

    pub(crate) fn want_gzip(&self, f: Format) {
        self.wanted_gzip[f.index()].store(true, Relaxed);
    }

    /// Asks the scrape-harvest thread for a harvest; the receiver fires once it is encoded.
    pub(crate) fn request_harvest(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let guard = lock(&self.fresh);
        let tx = guard.as_ref()?;
        let (done, wait) = tokio::sync::oneshot::channel();
        tx.send(done).ok()?;
        self.stats.harvests_waited.fetch_add(1, Relaxed);
        Some(wait)
    }

    fn formats(&self) -> &'static [Format] {
        if self.native {
            &Format::ALL
        } else {
            &[Format::Text, Format::OpenMetrics]
        }
    }

    /// Encodes a snapshot into every offered format and makes it the one served, unless a
    /// newer one is already served.
    fn publish(&self, snapshot: &Snapshot) {
        #[cfg(feature = "ui")]
        if let Some(ui) = &self.ui {
            ui.record(snapshot);
        }
        let mut st = lock(&self.encoder);
        if snapshot.sequence != 0 && snapshot.sequence <= lock(&self.current).sequence {
            return;
        }
        let started = Instant::now();
        let st = &mut *st;
        let plan = st.encoder.plan(snapshot);
        for c in &plan.collisions {
            if st.reported.len() < 10_000 && st.reported.insert((c.name.clone(), c.dropped.clone()))
            {
                log::warn!("prometheus exporter: {c}");
            }
        }
        self.stats
            .collisions
            .store(plan.collisions.len() as u64, Relaxed);
        let mut bodies: [Bytes; 3] = Default::default();
        for f in self.formats() {
            let mut out = Vec::new();
            st.encoder.encode(&plan, *f, &mut out);
            self.stats.sizes[f.index()].store(out.len() as u64, Relaxed);
            bodies[f.index()] = Bytes::from(out);
        }
        if !self.native {
            bodies[Format::Protobuf.index()] = bodies[Format::Text.index()].clone();
        }
        let exposition = Exposition {
            sequence: snapshot.sequence.max(1),
            bodies,
            gz: Default::default(),
        };
        if self.gzip {
            for f in self.formats() {
                if self.wanted_gzip[f.index()].swap(false, Relaxed) {
                    exposition.gzip(*f);
                }
            }
        }
        self.stats
            .encode_nanos
            .store(started.elapsed().as_nanos() as u64, Relaxed);
        *lock(&self.current) = Arc::new(exposition);
    }
}

#[cfg(feature = "server")]
static SCRAPES: Descriptor = Descriptor::counter(
    "sampler.exporter.prometheus.scrapes",
    "1",
    "scrapes served, by format",
);
#[cfg(feature = "server")]
static COLLISIONS: Descriptor = Descriptor::gauge(
    "sampler.exporter.prometheus.name_collisions",
    "1",
    "families left out of the latest exposition because their Prometheus names collide with another family's",
);
#[cfg(feature = "server")]
static ENCODE: Descriptor = Descriptor::gauge(
    "sampler.exporter.prometheus.encode.duration",
    "s",
    "time the latest snapshot took to encode in every offered format",
);
#[cfg(feature = "server")]
static SIZE: Descriptor = Descriptor::gauge(
    "sampler.exporter.prometheus.exposition.size",
    "By",
    "size of the latest exposition before compression, by format",
);
#[cfg(feature = "server")]
static REFUSED: Descriptor = Descriptor::counter(
    "sampler.exporter.prometheus.connections.refused",
    "1",
    "connections answered 503 and closed because max_connections were open",
);
#[cfg(feature = "server")]
static WAITED: Descriptor = Descriptor::counter(
    "sampler.exporter.prometheus.scrape_harvests",
    "1",
    "harvests requested by scrapes (harvest_on_scrape)",
);

#[cfg(feature = "server")]
struct StatsSampler(Arc<Shared>);

#[cfg(feature = "server")]
impl Sampler for StatsSampler {
    fn sample(&self, out: &mut Writer<'_>) {
        let s = &self.0.stats;
        for f in self.0.formats() {
            let l = [("format", f.as_str())];
            out.counter(&SCRAPES, &l, s.scrapes[f.index()].load(Relaxed));
            out.gauge(&SIZE, &l, s.sizes[f.index()].load(Relaxed) as f64);
        }
        out.gauge(&COLLISIONS, &[], s.collisions.load(Relaxed) as f64);
        out.gauge(&ENCODE, &[], s.encode_nanos.load(Relaxed) as f64 / 1e9);
        out.counter(&REFUSED, &[], s.refused.load(Relaxed));
        if self.0.harvest_on_scrape {
            out.counter(&WAITED, &[], s.harvests_waited.load(Relaxed));
        }
    }

    fn name(&self) -> &str {
        "prometheus-exporter"
    }
}

/// The Prometheus pull exporter: an [`Exporter`] that serves each harvest on an HTTP endpoint.
///
/// Built with [`PrometheusExporter::builder`], which binds the address at once. Give it to a
/// [`Harvester`](sampler_api::Harvester); shutting the harvester down stops the endpoint (so
/// does dropping the exporter).
#[cfg(feature = "server")]
pub struct PrometheusExporter {
    shared: Arc<Shared>,
    server: Option<server::Server>,
    local_addr: SocketAddr,
}

#[cfg(feature = "server")]
impl fmt::Debug for PrometheusExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrometheusExporter")
            .field("local_addr", &self.local_addr)
            .field("path", &self.shared.path)
            .finish()
    }
}

#[cfg(feature = "server")]
impl PrometheusExporter {
    /// A builder with the defaults of [`PrometheusConfig`].
    pub fn builder() -> PrometheusExporterBuilder {
        PrometheusExporterBuilder {
            config: PrometheusConfig::default(),
        }
    }

    /// Binds and starts an exporter from a config.
    pub fn from_config(config: PrometheusConfig) -> Result<Self, Error> {
        PrometheusExporterBuilder { config }.build()
    }

    /// The address the endpoint listens on (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL of the metrics path, such as `http://127.0.0.1:9464/metrics`.
    pub fn url(&self) -> String {
        format!("http://{}{}", self.local_addr, self.shared.path)
    }

    /// The bytes a scrape asking for `format` gets now (uncompressed).
    pub fn exposition(&self, format: Format) -> Bytes {
        self.shared.current().body(format)
    }

    /// Encodes a snapshot and serves it from now on (what [`Exporter::export`] does).
    pub fn publish(&self, snapshot: &Snapshot) {
        self.shared.publish(snapshot);
    }

    fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop();
        }
        lock(&self.shared.fresh).take();
    }
}

#[cfg(feature = "server")]
impl Exporter for PrometheusExporter {
    fn name(&self) -> &str {
        "prometheus"
    }

    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        self.shared.publish(&snapshot);
        Ok(())
    }

    fn shutdown(&mut self, _deadline: Instant) -> Result<(), ExportError> {
        self.stop();
        Ok(())
    }

    fn sampler(&self) -> Option<Arc<dyn Sampler>> {
        Some(Arc::new(StatsSampler(self.shared.clone())))
    }

    fn attach(&mut self, handle: HarvestHandle) {
        if !self.shared.harvest_on_scrape {
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel::<tokio::sync::oneshot::Sender<()>>();
        let weak = Arc::downgrade(&self.shared);
        let spawned = std::thread::Builder::new()
            .name("sampler-prometheus-scrape-harvest".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    // Every scrape waiting now is served by the one harvest that follows.
                    let mut waiting = vec![first];
                    while let Ok(w) = rx.try_recv() {
                        waiting.push(w);
                    }
                    let Some(shared) = weak.upgrade() else { break };
                    let snapshot = handle.harvest();
                    if let Some(s) = &snapshot {
                        shared.publish(s);
                    }
                    drop(shared);
                    for w in waiting {
                        let _ = w.send(());
                    }
                    // The scrapes are answered before the snapshot goes: dropping every
                    // series of a large harvest is no part of what they wait for.
                    drop(snapshot);
                }
            });
        match spawned {
            Ok(_) => *lock(&self.shared.fresh) = Some(tx),
            Err(e) => {
                log::error!("prometheus exporter: cannot start the scrape-harvest thread: {e}")
            }
        }
    }
}

#[cfg(feature = "server")]
impl Drop for PrometheusExporter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Configures a [`PrometheusExporter`]; [`build`](Self::build) binds the address.
///
/// ```
/// use sampler_exporter_prometheus::{Buckets, PrometheusExporter, TimingMode};
/// let exporter = PrometheusExporter::builder()
///     .address("127.0.0.1:0")
///     .path("/metrics")
///     .buckets(Buckets::Exponential { scale: 1, min: 0.001, max: 10.0 })
///     .native_histograms(true)
///     .build()?;
/// assert_ne!(exporter.local_addr().port(), 0);
/// # Ok::<(), sampler_exporter_prometheus::Error>(())
/// ```
#[derive(Clone, Debug)]
#[cfg(feature = "server")]
pub struct PrometheusExporterBuilder {
    config: PrometheusConfig,
}

#[cfg(feature = "server")]
impl PrometheusExporterBuilder {
    /// Where to listen: `host:port`, `[v6]:port`, or `:port` for every interface.
    pub fn address(mut self, address: impl fmt::Display) -> Self {
        self.config.address = address.to_string();
        self
    }

    /// The path serving the metrics (default `/metrics`).
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }

    /// Harvest on each scrape, waiting at most the harvest timeout (default off).
    pub fn harvest_on_scrape(mut self, yes: bool) -> Self {
        self.config.harvest_on_scrape = yes;
        self
    }

    /// How long a scrape waits for its own harvest (default 1 s).
    pub fn harvest_timeout(mut self, timeout: Duration) -> Self {
        self.config.harvest_timeout = timeout;
        self
    }

    /// Classic histograms (default) or summaries for timings.
    pub fn timings(mut self, mode: TimingMode) -> Self {
        self.config.timings = mode;
        self
    }

    /// The classic histogram boundaries.
    pub fn buckets(mut self, buckets: Buckets) -> Self {
        self.config.buckets = buckets;
        self
    }

    /// Boundaries for one metric, by its dotted name.
    pub fn bucket_override(mut self, name: impl Into<String>, buckets: Buckets) -> Self {
        self.config.bucket_overrides.insert(name.into(), buckets);
        self
    }

    /// The quantiles of summaries.
    pub fn quantiles(mut self, quantiles: impl Into<Vec<f64>>) -> Self {
        self.config.quantiles = quantiles.into();
        self
    }

    /// Offer native histograms through the protobuf exposition (default off).
    pub fn native_histograms(mut self, yes: bool) -> Self {
        self.config.native_histograms = yes;
        self
    }

    /// `_created` samples in OpenMetrics (default on).
    pub fn openmetrics_created(mut self, yes: bool) -> Self {
        self.config.openmetrics_created = yes;
        self
    }

    /// gzip responses for scrapers that accept it (default on).
    pub fn gzip(mut self, yes: bool) -> Self {
        self.config.gzip = yes;
        self
    }

    /// The most connections served at once (default 256, at least 1); past it a connection is
    /// answered `503` and closed.
    ///
    /// ```
    /// use sampler_exporter_prometheus::PrometheusExporter;
    /// let exporter = PrometheusExporter::builder()
    ///     .address("127.0.0.1:0")
    ///     .max_connections(64)
    ///     .build()?;
    /// # let _ = exporter;
    /// assert!(PrometheusExporter::builder().max_connections(0).build().is_err());
    /// # Ok::<(), sampler_exporter_prometheus::Error>(())
    /// ```
    pub fn max_connections(mut self, n: usize) -> Self {
        self.config.max_connections = n;
        self
    }

    /// Serve the live page at `/` (default on; needs the `ui` feature).
    ///
    /// ```
    /// use sampler_exporter_prometheus::PrometheusExporter;
    /// let plain = PrometheusExporter::builder().address("127.0.0.1:0").ui(false).build()?;
    /// # let _ = plain;
    /// # Ok::<(), sampler_exporter_prometheus::Error>(())
    /// ```
    pub fn ui(mut self, yes: bool) -> Self {
        self.config.ui = yes;
        self
    }

    /// Replaces every setting.
    pub fn config(mut self, config: PrometheusConfig) -> Self {
        self.config = config;
        self
    }

    /// Checks the settings, binds the address and starts the endpoint.
    pub fn build(self) -> Result<PrometheusExporter, Error> {
        let c = self.config;
        check_path(&c.path).map_err(Error::Config)?;
        #[cfg(feature = "ui")]
        if c.ui && sampler_exporter_ui::Ui::owns(&c.path) {
            return Err(Error::Config(format!(
                "path {:?} is taken by the live page (/ui/…); choose another or set ui = false",
                c.path
            )));
        }
        if !(1..=MAX_CONNECTIONS).contains(&c.max_connections) {
            return Err(Error::Config(format!(
                "max_connections must be 1 to {MAX_CONNECTIONS}, got {}",
                c.max_connections
            )));
        }
        let encoder = Encoder::new(&c).map_err(Error::Config)?;
        let address = if c.address.starts_with(':') {
            format!("0.0.0.0{}", c.address)
        } else {
            c.address.clone()
        };
        let listener = TcpListener::bind(address.as_str()).map_err(|source| Error::Bind {
            address: c.address.clone(),
            source,
        })?;
        let local_addr = listener.local_addr().map_err(|source| Error::Bind {
            address: c.address.clone(),
            source,
        })?;
        #[cfg(feature = "ui")]
        let ui = c.ui.then(|| {
            sampler_exporter_ui::Ui::new(
                sampler_exporter_ui::DEFAULT_POINTS,
                sampler_exporter_ui::DEFAULT_MAX_SERIES,
            )
            .link("Metrics", c.path.clone())
            .link("Health", "/-/healthy")
            // Most endpoints are only ever scraped: the history is kept once someone looks.
            .once_viewed()
        });
        let shared = Arc::new(Shared {
            index_html: server::index_html(&c.path, local_addr),
            #[cfg(feature = "ui")]
            ui,
            path: c.path,
            native: c.native_histograms,
            gzip: c.gzip,
            harvest_on_scrape: c.harvest_on_scrape,
            harvest_timeout: c.harvest_timeout,
            max_connections: c.max_connections,
            current: Mutex::new(Arc::new(Exposition::empty())),
            encoder: Mutex::new(EncoderState {
                encoder,
                reported: Default::default(),
            }),
            stats: Stats::default(),
            wanted_gzip: Default::default(),
            fresh: Mutex::new(None),
        });
        let server = server::Server::start(listener, shared.clone()).map_err(Error::Start)?;
        Ok(PrometheusExporter {
            shared,
            server: Some(server),
            local_addr,
        })
    }
}

/// The highest `max_connections` accepted: a semaphore's limit, and far more descriptors than a
/// process is usually allowed.
#[cfg(feature = "server")]
const MAX_CONNECTIONS: usize = 1 << 20;

#[cfg(feature = "server")]
fn check_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("path must start with /, got {path:?}"));
    }
    if matches!(path, "/" | "/-/healthy" | "/-/ready") {
        return Err(format!("path {path:?} is taken by the endpoint itself"));
    }
    if !path
        .bytes()
        .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'<' | b'>' | b'\\' | b'?' | b'#'))
    {
        return Err(format!(
            "path {path:?} may hold only printable ASCII without quotes, <, >, \\, ? or #"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[cfg(feature = "server")]
mod endpoint_tests;
