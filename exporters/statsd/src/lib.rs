//! The StatsD push exporter for **sampler**: each harvest goes to a StatsD or DogStatsD daemon
//! as lines packed into datagrams of at most `max_payload` bytes (UDP by default; TCP or a
//! Unix datagram socket as options).
//!
//! Counters go as the delta since the last harvest (`|c`), gauges as their value (`|g`; a
//! negative one is preceded by `0|g` in the same datagram, since a signed value means "change
//! by" to StatsD), and timings as weighted `|ms` lines that make the daemon's count, lower and
//! upper exact and its mean exact to rounding (with few observations its sum and every
//! percentile too), or as DogStatsD `|d` distributions. Labels are folded into the name or,
//! with DogStatsD tags, sent as `|#key:value`. The mapping is written out in
//! `spec/statsd.md`; the encoder ([`Encoder`]) and the packer ([`Packer`]) are public, so a
//! reader can check each rule.
//!
//! The socket belongs to the exporter's worker thread, so a slow or absent daemon delays only
//! this exporter. The daemon's name is looked up again every `resolve_every` (a datagram
//! sender never learns that the daemon moved); a TCP connection is re-established with
//! exponential backoff and jitter. What cannot be sent is dropped and counted in the
//! exporter's self-metrics, `sampler.exporter.statsd.*`.
//!
//! # In an application
//!
//! ```
//! use sampler_api::{Descriptor, Harvester, Registry};
//! use sampler_exporter_statsd::{StatsdExporter, TagStyle};
//! use std::time::Duration;
//!
//! static REQUESTS: Descriptor = Descriptor::counter("http.server.requests", "1", "requests served");
//! # let daemon = std::net::UdpSocket::bind("127.0.0.1:0")?;
//! # let address = daemon.local_addr()?.to_string();
//!
//! let exporter = StatsdExporter::builder()
//!     .address(&address) // the default is 127.0.0.1:8125
//!     .prefix("myapp")
//!     .tags(TagStyle::DogStatsd)
//!     .build()?;
//! let harvester = Harvester::builder()
//!     .interval(Duration::from_secs(10))
//!     .exporter(exporter)
//!     .start();
//! let requests = Registry::global().counter(&REQUESTS); // keep the handle
//! requests.add(3);
//! // ... the application runs ...
//! harvester.shutdown(Duration::from_secs(5))?; // sends the last harvest
//! # // Loopback datagrams are queued by the time `send` returns.
//! # daemon.set_nonblocking(true)?;
//! # let (mut buf, mut got) = ([0u8; 2048], String::new());
//! # while let Ok(n) = daemon.recv(&mut buf) { got.push_str(std::str::from_utf8(&buf[..n])?); got.push('\n'); }
//! # assert!(got.contains("myapp.http.server.requests:3|c"), "{got}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod config;
mod encode;
mod packer;
mod transport;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sampler_api::{Descriptor, ExportError, Exporter, Sampler, Snapshot, Writer};

pub use config::{
    StatsdConfig, TagStyle, TimingMode, Transport, DEFAULT_ADDRESS, DEFAULT_MAX_PAYLOAD,
    DEFAULT_TIMING_LINES, MAX_PAYLOAD_LIMIT,
};
pub use encode::{exact_weight, sanitize, Encoder, Interval, Skipped, TimingLine};
pub use packer::Packer;
pub use transport::{MAX_BACKOFF, MIN_BACKOFF, TCP_TIMEOUT, UNIX_TIMEOUT};

/// Why the exporter could not be built.
#[derive(Debug)]
pub enum Error {
    /// A setting is invalid.
    Config(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(why) => write!(f, "invalid statsd exporter setting: {why}"),
        }
    }
}

impl std::error::Error for Error {}

/// Self-metrics, updated by the worker.
#[derive(Debug, Default)]
struct Stats {
    payloads: AtomicU64,
    bytes: AtomicU64,
    sent: AtomicU64,
    too_large: AtomicU64,
    send_failed: AtomicU64,
    unrepresentable: AtomicU64,
    unknown_kind: AtomicU64,
    send_errors: AtomicU64,
}

static PAYLOADS: Descriptor = Descriptor::counter(
    "sampler.exporter.statsd.datagrams",
    "1",
    "datagrams sent (over TCP: writes)",
);
static BYTES: Descriptor =
    Descriptor::counter("sampler.exporter.statsd.bytes", "By", "payload bytes sent");
static SENT: Descriptor = Descriptor::counter(
    "sampler.exporter.statsd.points.sent",
    "1",
    "points sent (a point is one line, or the two lines of a negative gauge)",
);
static DROPPED: Descriptor = Descriptor::counter(
    "sampler.exporter.statsd.points.dropped",
    "1",
    "points not sent, by reason: too_large, send_failed, unrepresentable, unknown_kind",
);
static SEND_ERRORS: Descriptor = Descriptor::counter(
    "sampler.exporter.statsd.send_errors",
    "1",
    "failed sends, connects and address look-ups",
);

struct StatsSampler(Arc<Stats>);

impl Sampler for StatsSampler {
    fn sample(&self, out: &mut Writer<'_>) {
        let s = &self.0;
        out.counter(&PAYLOADS, &[], s.payloads.load(Relaxed));
        out.counter(&BYTES, &[], s.bytes.load(Relaxed));
        out.counter(&SENT, &[], s.sent.load(Relaxed));
        for (reason, n) in [
            ("too_large", &s.too_large),
            ("send_failed", &s.send_failed),
            ("unrepresentable", &s.unrepresentable),
            ("unknown_kind", &s.unknown_kind),
        ] {
            out.counter(&DROPPED, &[("reason", reason)], n.load(Relaxed));
        }
        out.counter(&SEND_ERRORS, &[], s.send_errors.load(Relaxed));
    }

    fn name(&self) -> &str {
        "statsd-exporter"
    }
}

/// The StatsD push exporter: an [`Exporter`] that sends each harvest to a StatsD daemon.
///
/// Built with [`StatsdExporter::builder`]; give it to a
/// [`Harvester`](sampler_api::Harvester). Its self-metrics (`sampler.exporter.statsd.*`)
/// come through [`Exporter::sampler`].
pub struct StatsdExporter {
    encoder: Encoder,
    packer: Packer,
    sender: transport::Sender,
    stats: Arc<Stats>,
    failing: bool,
}

impl fmt::Debug for StatsdExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatsdExporter")
            .field("to", &self.sender.describe())
            .field("encoder", &self.encoder)
            .finish()
    }
}

impl StatsdExporter {
    /// A builder with the defaults of [`StatsdConfig`].
    pub fn builder() -> StatsdExporterBuilder {
        StatsdExporterBuilder {
            config: StatsdConfig::default(),
        }
    }

    /// An exporter from a config.
    pub fn from_config(config: StatsdConfig) -> Result<Self, Error> {
        StatsdExporterBuilder { config }.build()
    }

    /// Encodes and sends one snapshot (what [`Exporter::export`] does).
    pub fn send(&mut self, snapshot: &Snapshot) -> Result<(), ExportError> {
        let now = Instant::now();
        let StatsdExporter {
            encoder,
            packer,
            sender,
            stats,
            failing,
        } = self;
        let mut error = sender.prepare(now).err();
        if error.is_some() {
            stats.send_errors.fetch_add(1, Relaxed);
        }
        let mut sink = |payload: &[u8], points: u64| {
            if !sender.usable() {
                stats.send_failed.fetch_add(points, Relaxed);
                return;
            }
            match sender.send(payload, now) {
                Ok(()) => {
                    stats.payloads.fetch_add(1, Relaxed);
                    stats.bytes.fetch_add(payload.len() as u64, Relaxed);
                    stats.sent.fetch_add(points, Relaxed);
                }
                Err(e) => {
                    stats.send_errors.fetch_add(1, Relaxed);
                    stats.send_failed.fetch_add(points, Relaxed);
                    error.get_or_insert(e);
                }
            }
        };
        let skipped = encoder.encode(snapshot, |point| {
            packer.push(point, &mut sink);
        });
        packer.flush(&mut sink);
        stats.too_large.store(packer.dropped(), Relaxed);
        stats
            .unrepresentable
            .fetch_add(skipped.unrepresentable, Relaxed);
        stats.unknown_kind.fetch_add(skipped.unknown_kind, Relaxed);
        match error {
            Some(e) => {
                let message = format!("failed to send to statsd at {}", sender.describe());
                if !*failing {
                    // One line when it fails, one when it recovers.
                    log::warn!("{message}: {e}; dropping points until it recovers");
                    *failing = true;
                }
                Err(ExportError::with_source(message, e))
            }
            None => {
                if *failing {
                    log::warn!("sending to statsd at {} again", sender.describe());
                    *failing = false;
                }
                Ok(())
            }
        }
    }
}

impl Exporter for StatsdExporter {
    fn name(&self) -> &str {
        "statsd"
    }

    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        self.send(&snapshot)
    }

    fn sampler(&self) -> Option<Arc<dyn Sampler>> {
        Some(Arc::new(StatsSampler(self.stats.clone())))
    }
}

/// Configures a [`StatsdExporter`].
///
/// ```
/// use sampler_exporter_statsd::{StatsdExporter, TagStyle, TimingMode, Transport};
/// use std::time::Duration;
/// let exporter = StatsdExporter::builder()
///     .address("127.0.0.1:8125")
///     .transport(Transport::Udp)
///     .max_payload(8192) // loopback or jumbo frames
///     .prefix("myapp")
///     .tags(TagStyle::DogStatsd)
///     .timings(TimingMode::Distribution)
///     .resolve_every(Duration::from_secs(30))
///     .build()?;
/// # drop(exporter);
/// assert!(StatsdExporter::builder().address("no-port").build().is_err());
/// # Ok::<(), sampler_exporter_statsd::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct StatsdExporterBuilder {
    config: StatsdConfig,
}

impl StatsdExporterBuilder {
    /// The daemon: `host:port`, `[v6]:port`, or a socket path for [`Transport::Unix`].
    pub fn address(mut self, address: impl fmt::Display) -> Self {
        self.config.address = address.to_string();
        self
    }

    /// UDP (default), TCP or a Unix datagram socket.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.config.transport = transport;
        self
    }

    /// The largest datagram payload in bytes (default 1432).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.config.max_payload = bytes;
        self
    }

    /// Prepended to every name with a dot.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config.prefix = prefix.into();
        self
    }

    /// Labels folded into the name (default) or sent as DogStatsD tags.
    pub fn tags(mut self, tags: TagStyle) -> Self {
        self.config.tags = tags;
        self
    }

    /// Timings as `|ms` lines (default) or DogStatsD `|d` distributions.
    pub fn timings(mut self, timings: TimingMode) -> Self {
        self.config.timings = timings;
        self
    }

    /// At most this many lines per timing series per harvest (default 100).
    pub fn timing_lines(mut self, lines: usize) -> Self {
        self.config.timing_lines = lines;
        self
    }

    /// How often the daemon's name is looked up again (default 60 s).
    pub fn resolve_every(mut self, every: Duration) -> Self {
        self.config.resolve_every = every;
        self
    }

    /// Replaces every setting.
    pub fn config(mut self, config: StatsdConfig) -> Self {
        self.config = config;
        self
    }

    /// Checks the settings. Nothing is sent, resolved or connected until the first export,
    /// so a daemon that is not up yet is no error here.
    pub fn build(self) -> Result<StatsdExporter, Error> {
        let c = self.config;
        c.check().map_err(Error::Config)?;
        if c.transport != Transport::Unix {
            let port = c.address.rsplit_once(':').map(|(_, p)| p.parse::<u16>());
            if !matches!(port, Some(Ok(_))) {
                return Err(Error::Config(format!(
                    "address must be host:port, got {:?}",
                    c.address
                )));
            }
        }
        Ok(StatsdExporter {
            encoder: Encoder::new(&c),
            packer: Packer::new(c.max_payload, c.transport == Transport::Tcp),
            sender: transport::Sender::new(c.transport, &c.address, c.resolve_every),
            stats: Arc::new(Stats::default()),
            failing: false,
        })
    }
}
