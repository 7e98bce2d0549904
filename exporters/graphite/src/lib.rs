//! The Graphite push exporter for **sampler**: each harvest sent to carbon (or any Graphite
//! listener: VictoriaMetrics, InfluxDB, carbon-c-relay) as plaintext lines over TCP or UDP,
//! or as pickle frames, with labels as Graphite 1.1 tags or folded into the path by a
//! template.
//!
//! Everything happens on the exporter's own worker thread, given by the harvester: the
//! snapshot is encoded, put in a bounded buffer and written to one persistent connection. A
//! backend that is away, slow or restarted costs only that thread: the harvest goes on, the
//! buffer keeps the harvests not yet acknowledged (dropping the oldest, counted, when full),
//! and after a reconnect — with exponential backoff and jitter, resolving the host name
//! again each time — they are sent in order. Writes time out, so a backend that accepts but
//! never reads cannot hold up shutdown past its deadline.
//!
//! The mapping (paths, tags, sanitising, counters as deltas, timing statistics) is written
//! out in `spec/graphite.md`; the functions of [`mapping`] implement one rule each.
//!
//! # In an application
//!
//! ```no_run
//! use sampler_api::{Descriptor, Harvester, Registry};
//! use sampler_exporter_graphite::{GraphiteExporter, Protocol};
//! use std::time::Duration;
//!
//! static REQUESTS: Descriptor = Descriptor::counter("http.server.requests", "1", "requests served");
//!
//! let exporter = GraphiteExporter::builder()
//!     .address("graphite.example.net:2003")
//!     .protocol(Protocol::Plaintext)
//!     .prefix("myapp")
//!     .on_event(|e| eprintln!("myapp: {e}"))
//!     .build()?;
//! let harvester = Harvester::builder()
//!     .interval(Duration::from_secs(10))
//!     .exporter(exporter)
//!     .start();
//! Registry::global().counter(&REQUESTS).inc();
//! // ... the application runs ...
//! harvester.shutdown(Duration::from_secs(5))?; // sends the last harvest and what is buffered
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Every ten seconds carbon then receives lines such as
//! `myapp.http.server.requests 17 1700000010` (the requests of that interval).

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod config;
mod encode;
pub mod mapping;
pub mod pickle;
mod transport;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sampler_api::{Descriptor, ExportError, Exporter, Sampler, Snapshot, Writer};

pub use config::{
    CounterMode, GraphiteConfig, Protocol, TagStyle, DEFAULT_ADDRESS, DEFAULT_BUFFER,
    DEFAULT_MAX_DATAGRAM, DEFAULT_TEMPLATE,
};
pub use encode::{interval_of, Encoded, Encoder};
pub use transport::{pack_datagrams, Backoff};

use transport::{Progress, TcpLink, UdpLink};

/// Why the exporter could not be built.
#[derive(Debug)]
pub enum Error {
    /// A setting is invalid.
    Config(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(why) => write!(f, "invalid graphite exporter setting: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// A change the operator should hear about: sent once when the backend starts failing and
/// once when it takes data again.
///
/// ```
/// use sampler_exporter_graphite::Event;
/// use std::time::Duration;
/// let e = Event::Recovered { address: "127.0.0.1:2003".into(), after: Duration::from_secs(3), dropped: 0 };
/// assert_eq!(e.to_string(), "graphite exporter: sending to 127.0.0.1:2003 again after 3.0s, 0 points dropped meanwhile");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The backend could not be reached or written to; harvests are kept in the buffer.
    Failing {
        /// What failed, naming the backend.
        error: String,
        /// The buffer's bound, in bytes.
        buffer: usize,
    },
    /// Everything buffered was written again.
    Recovered {
        /// The backend.
        address: String,
        /// How long it failed.
        after: Duration,
        /// Points dropped from the full buffer (or unsendable) while it failed.
        dropped: u64,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Failing { error, buffer } => write!(
                f,
                "graphite exporter: {error}; keeping up to {buffer} bytes until it is back"
            ),
            Event::Recovered {
                address,
                after,
                dropped,
            } => write!(
                f,
                "graphite exporter: sending to {address} again after {:.1}s, {dropped} points dropped meanwhile",
                after.as_secs_f64()
            ),
        }
    }
}

type EventFn = Arc<dyn Fn(&Event) + Send + Sync>;

/// Self-metrics, updated by the worker.
#[derive(Default)]
struct Stats {
    sent: AtomicU64,
    dropped_buffer: AtomicU64,
    dropped_not_finite: AtomicU64,
    dropped_unknown: AtomicU64,
    dropped_unsendable: AtomicU64,
    connects: AtomicU64,
    failures: AtomicU64,
    buffered: AtomicU64,
    connected: AtomicBool,
}

static SENT: Descriptor = Descriptor::counter(
    "sampler.exporter.graphite.sent",
    "1",
    "points the backend acknowledged (tcp) or that were sent (udp)",
);
static DROPPED: Descriptor = Descriptor::counter(
    "sampler.exporter.graphite.dropped",
    "1",
    "points not sent, by reason: buffer_full, not_finite, unknown_kind, unsendable (udp)",
);
static RECONNECTS: Descriptor = Descriptor::counter(
    "sampler.exporter.graphite.reconnects",
    "1",
    "connections made after the first",
);
static FAILURES: Descriptor = Descriptor::counter(
    "sampler.exporter.graphite.failures",
    "1",
    "failed connection attempts, writes and sends",
);
static BUFFERED: Descriptor = Descriptor::gauge(
    "sampler.exporter.graphite.buffered",
    "By",
    "bytes held for the backend",
);

struct StatsSampler(Arc<Stats>);

impl Sampler for StatsSampler {
    fn sample(&self, out: &mut Writer<'_>) {
        let s = &self.0;
        out.counter(&SENT, &[], s.sent.load(Relaxed));
        for (reason, n) in [
            ("buffer_full", &s.dropped_buffer),
            ("not_finite", &s.dropped_not_finite),
            ("unknown_kind", &s.dropped_unknown),
            ("unsendable", &s.dropped_unsendable),
        ] {
            out.counter(&DROPPED, &[("reason", reason)], n.load(Relaxed));
        }
        out.counter(&RECONNECTS, &[], s.connects.load(Relaxed).saturating_sub(1));
        out.counter(&FAILURES, &[], s.failures.load(Relaxed));
        out.gauge(&BUFFERED, &[], s.buffered.load(Relaxed) as f64);
    }

    fn name(&self) -> &str {
        "graphite-exporter"
    }
}

enum Link {
    Tcp(TcpLink),
    Udp(UdpLink),
}

/// The Graphite push exporter: an [`Exporter`] that sends each harvest to a Graphite backend.
///
/// Built with [`GraphiteExporter::builder`]; it connects on its first export, on the worker
/// thread the harvester gives it, and never before.
pub struct GraphiteExporter {
    address: String,
    buffer: usize,
    encoder: Encoder,
    link: Link,
    stats: Arc<Stats>,
    on_event: EventFn,
    /// Since when, and with how many drops counted before, the backend has been failing.
    failing: Option<(Instant, u64)>,
    /// The UDP encoding buffer, reused from harvest to harvest.
    scratch: Vec<u8>,
}

impl fmt::Debug for GraphiteExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphiteExporter")
            .field("address", &self.address)
            .field("failing", &self.failing.is_some())
            .finish()
    }
}

impl GraphiteExporter {
    /// A builder with the defaults of [`GraphiteConfig`].
    pub fn builder() -> GraphiteExporterBuilder {
        GraphiteExporterBuilder {
            config: GraphiteConfig::default(),
            on_event: None,
        }
    }

    /// An exporter from a config, reporting events through `log`.
    pub fn from_config(config: GraphiteConfig) -> Result<Self, Error> {
        GraphiteExporterBuilder {
            config,
            on_event: None,
        }
        .build()
    }

    /// Bytes held for the backend now.
    pub fn buffered(&self) -> usize {
        match &self.link {
            Link::Tcp(l) => l.buffered(),
            Link::Udp(_) => 0,
        }
    }

    /// Harvests held for the backend now.
    pub fn buffered_harvests(&self) -> usize {
        match &self.link {
            Link::Tcp(l) => l.batches(),
            Link::Udp(_) => 0,
        }
    }

    fn dropped(&self) -> u64 {
        self.stats.dropped_buffer.load(Relaxed)
    }

    fn account(&mut self, p: Progress, result: &Result<bool, String>) {
        let s = &self.stats;
        s.sent.fetch_add(p.sent, Relaxed);
        s.dropped_buffer.fetch_add(p.dropped, Relaxed);
        s.dropped_unsendable.fetch_add(p.unsendable, Relaxed);
        s.connects.fetch_add(p.connects, Relaxed);
        s.failures.fetch_add(p.failures, Relaxed);
        s.buffered.store(self.buffered() as u64, Relaxed);
        s.connected
            .store(matches!(&self.link, Link::Tcp(l) if l.connected()), Relaxed);
        match result {
            Err(e) => {
                if self.failing.is_none() {
                    self.failing = Some((Instant::now(), self.dropped()));
                    (self.on_event)(&Event::Failing {
                        error: e.clone(),
                        buffer: self.buffer,
                    });
                }
            }
            Ok(true) => {
                if let Some((since, dropped_before)) = self.failing.take() {
                    (self.on_event)(&Event::Recovered {
                        address: self.address.clone(),
                        after: since.elapsed(),
                        dropped: self.dropped() - dropped_before,
                    });
                }
            }
            Ok(false) => {}
        }
    }

    /// Sends what is buffered until `deadline`, connecting at once if need be.
    fn push_out(&mut self, deadline: Instant, force: bool) -> Result<bool, String> {
        let mut p = Progress::default();
        let r = match &mut self.link {
            Link::Tcp(l) => {
                let r = l.send(deadline, force, &mut p);
                if force && matches!(r, Ok(true)) && !l.drain(deadline, &mut p) {
                    Ok(false)
                } else {
                    r
                }
            }
            Link::Udp(_) => Ok(true),
        };
        self.account(p, &r);
        r
    }
}

impl Exporter for GraphiteExporter {
    fn name(&self) -> &str {
        "graphite"
    }

    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let enc = self.encoder.encode(&snapshot, &mut out);
        self.stats
            .dropped_not_finite
            .fetch_add(enc.not_finite, Relaxed);
        self.stats
            .dropped_unknown
            .fetch_add(enc.unknown_kind, Relaxed);
        let mut p = Progress::default();
        let r = match &mut self.link {
            Link::Udp(l) => {
                let r = l.send(&out, enc.points, &mut p).map(|()| true);
                if r.is_err() {
                    p.failures += 1;
                }
                self.scratch = out;
                r
            }
            Link::Tcp(l) => {
                // The buffer keeps the bytes until they are acknowledged.
                l.push(out, enc.points, &mut p);
                // A write may take at most an interval: past it the next harvest is due.
                let deadline = Instant::now() + snapshot.interval.max(Duration::from_secs(1));
                l.send(deadline, false, &mut p)
            }
        };
        self.account(p, &r);
        match r {
            Ok(_) => Ok(()),
            Err(e) => Err(ExportError::new(e)),
        }
    }

    fn flush(&mut self, deadline: Instant) -> Result<(), ExportError> {
        match self.push_out(deadline, true) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ExportError::new(format!(
                "failed to send {} buffered bytes to graphite at {} before the deadline",
                self.buffered(),
                self.address
            ))),
            Err(e) => Err(ExportError::new(format!(
                "{e}; {} bytes left unsent",
                self.buffered()
            ))),
        }
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), ExportError> {
        let r = self.flush(deadline);
        if let Link::Tcp(l) = &mut self.link {
            l.close();
        }
        r
    }

    fn sampler(&self) -> Option<Arc<dyn Sampler>> {
        Some(Arc::new(StatsSampler(self.stats.clone())))
    }
}

/// Configures a [`GraphiteExporter`].
///
/// ```
/// use sampler_exporter_graphite::{CounterMode, GraphiteExporter, Protocol, TagStyle};
/// let exporter = GraphiteExporter::builder()
///     .address("127.0.0.1:2004")
///     .protocol(Protocol::Pickle)
///     .tags(TagStyle::Template)
///     .template("host.name.tags")
///     .prefix("myapp")
///     .counters(CounterMode::Cumulative)
///     .percentiles([0.5, 0.99])
///     .buffer(1 << 20)
///     .build()?;
/// # Ok::<(), sampler_exporter_graphite::Error>(())
/// ```
pub struct GraphiteExporterBuilder {
    config: GraphiteConfig,
    on_event: Option<EventFn>,
}

impl fmt::Debug for GraphiteExporterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GraphiteExporterBuilder")
            .field("config", &self.config)
            .finish()
    }
}

impl GraphiteExporterBuilder {
    /// Replaces every setting with a config's.
    pub fn config(mut self, config: GraphiteConfig) -> Self {
        self.config = config;
        self
    }

    /// The backend, `host:port`. Default `127.0.0.1:2003`.
    pub fn address(mut self, address: impl Into<String>) -> Self {
        self.config.address = address.into();
        self
    }

    /// The wire protocol. Default plaintext over TCP.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.config.protocol = protocol;
        self
    }

    /// Tagged series or templated paths. Default tagged.
    pub fn tags(mut self, tags: TagStyle) -> Self {
        self.config.tags = tags;
        self
    }

    /// The path template for [`TagStyle::Template`]. Default `name.tags`.
    pub fn template(mut self, template: impl Into<String>) -> Self {
        self.config.template = template.into();
        self
    }

    /// Dotted segments before every path. Default none.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// Counters (and timings) as deltas or cumulative totals. Default deltas.
    pub fn counters(mut self, mode: CounterMode) -> Self {
        self.config.counters = mode;
        self
    }

    /// The percentiles sent for each timing. Default 0.5, 0.9, 0.99.
    pub fn percentiles(mut self, q: impl IntoIterator<Item = f64>) -> Self {
        self.config.percentiles = q.into_iter().collect();
        self
    }

    /// The most bytes held while the backend cannot take them. Default 8 MiB.
    pub fn buffer(mut self, bytes: usize) -> Self {
        self.config.buffer = bytes;
        self
    }

    /// The largest UDP datagram. Default 1432 bytes.
    pub fn max_datagram(mut self, bytes: usize) -> Self {
        self.config.max_datagram = bytes;
        self
    }

    /// How long one connection attempt may take. Default 2 s.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.config.connect_timeout = d;
        self
    }

    /// How long one write may wait on a backend that takes no data. Default 2 s.
    pub fn write_timeout(mut self, d: Duration) -> Self {
        self.config.write_timeout = d;
        self
    }

    /// The reconnect backoff: first wait and longest wait. Default 0.1 s and 30 s.
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config.backoff_initial = initial;
        self.config.backoff_max = max;
        self
    }

    /// Where the one line on failure and the one on recovery go; by default `log::warn!`
    /// and `log::info!`.
    pub fn on_event(mut self, f: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Arc::new(f));
        self
    }

    /// Checks the settings and builds the exporter; it connects on its first export.
    pub fn build(self) -> Result<GraphiteExporter, Error> {
        let c = self.config;
        let encoder = Encoder::new(&c).map_err(Error::Config)?;
        let link = match c.protocol {
            Protocol::Udp => Link::Udp(UdpLink::new(c.address.clone(), c.max_datagram)),
            Protocol::Plaintext | Protocol::Pickle => Link::Tcp(TcpLink::new(
                c.address.clone(),
                c.buffer,
                c.connect_timeout,
                c.write_timeout,
                Backoff::new(c.backoff_initial, c.backoff_max),
            )),
        };
        Ok(GraphiteExporter {
            address: c.address,
            buffer: c.buffer,
            encoder,
            link,
            stats: Arc::new(Stats::default()),
            on_event: self.on_event.unwrap_or_else(|| {
                Arc::new(|e: &Event| match e {
                    Event::Failing { .. } => log::warn!("{e}"),
                    _ => log::info!("{e}"),
                })
            }),
            failing: None,
            scratch: Vec::new(),
        })
    }
}
