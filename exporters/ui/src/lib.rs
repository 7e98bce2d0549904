//! The live web page of **sampler**: every series of the latest harvests as a small chart (a
//! counter's rate per second, a timing's p50 and p99 over each interval, a gauge's value), a
//! name filter, and the page refreshing itself after every harvest from a JSON endpoint beside
//! it. For people who want to watch a process or a host without a Grafana.
//!
//! The page is three small hand-written files (HTML, JavaScript, CSS) compiled into the binary:
//! no chart library, no CDN, nothing to build. Series names and label values reach the page as
//! JSON and are shown as text, never parsed as HTML; the page is served with a
//! `Content-Security-Policy` that allows its own script and nothing inline.
//!
//! Two ways to serve it:
//! - [`UiExporter`] (feature `server`, on by default): an [`Exporter`](sampler_api::Exporter)
//!   with its own HTTP listener (`sampler run --ui ADDR`, `kind = "ui"` in a config file);
//! - [`Ui`] alone: the history and the routes, for a server that mounts them beside its own (the
//!   Prometheus exporter serves the page at `/` this way).
//!
//! | path | answer |
//! | --- | --- |
//! | `/` | the page |
//! | `/ui/app.js`, `/ui/style.css` | its script and style |
//! | `/ui/data.json` | the history: every kept series with its last points |
//!
//! The history is bounded: at most `max_series` series (default 2000; the rest of a harvest is
//! counted and the page says how many) of `points` harvests each (default 60), 24 bytes a point.
//!
//! # Example
//!
//! ```
//! use sampler_api::{Descriptor, Harvester, Registry};
//! use sampler_exporter_ui::UiExporter;
//! use std::time::Duration;
//!
//! static JOBS: Descriptor = Descriptor::counter("jobs.done", "1", "jobs done");
//!
//! let ui = UiExporter::builder().listen("127.0.0.1:0").build()?;
//! println!("open {}", ui.url());
//! let harvester = Harvester::builder()
//!     .interval(Duration::from_secs(1))
//!     .exporter(ui)
//!     .start();
//! Registry::global().counter(&JOBS).inc();
//! harvester.shutdown(Duration::from_secs(5))?; // also stops the page's server
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod history;
#[cfg(feature = "server")]
mod server;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use sampler_api::Snapshot;
use serde::Deserialize;

pub use history::{since, History, DEFAULT_MAX_SERIES, DEFAULT_POINTS, MAX_POINTS};
#[cfg(feature = "server")]
pub use server::{Error, UiExporter, UiExporterBuilder};

/// The page's default listen address (beside the Prometheus exporter's 9464).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9466";

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// The page's own script and style only; nothing inline, no other origin. `img-src data:` is
/// the empty icon that keeps the browser from asking for `/favicon.ico`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The settings of the page: `kind = "ui"` in a config file reads them (every key optional).
///
/// ```toml
/// [[exporter]]
/// kind = "ui"
/// listen = "127.0.0.1:9466"
/// points = 60         # harvests kept per series
/// max_series = 2000   # series kept; the rest are counted
/// ```
///
/// ```
/// use sampler_exporter_ui::UiConfig;
/// let c = UiConfig::default();
/// assert_eq!((c.listen.as_str(), c.points, c.max_series), ("127.0.0.1:9466", 60, 2000));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UiConfig {
    /// Where the page's server listens (`host:port`; port 0 picks a free port).
    pub listen: String,
    /// Harvests kept per series (1 to [`MAX_POINTS`]).
    pub points: usize,
    /// Series kept; a harvest's series past this many are left out and counted.
    pub max_series: usize,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            listen: DEFAULT_LISTEN.to_owned(),
            points: DEFAULT_POINTS,
            max_series: DEFAULT_MAX_SERIES,
        }
    }
}

impl UiConfig {
    /// Checks the numbers (the address is checked when it is bound).
    ///
    /// ```
    /// use sampler_exporter_ui::UiConfig;
    /// let c = UiConfig { points: 0, ..UiConfig::default() };
    /// assert_eq!(c.check().unwrap_err(), "points must be 1 to 10000, got 0");
    /// ```
    pub fn check(&self) -> Result<(), String> {
        if !(1..=MAX_POINTS).contains(&self.points) {
            return Err(format!(
                "points must be 1 to {MAX_POINTS}, got {}",
                self.points
            ));
        }
        if self.max_series == 0 {
            return Err("max_series must be at least 1, got 0".to_owned());
        }
        Ok(())
    }
}

/// One answer of the page's routes: its content type and body.
#[derive(Clone, Debug)]
pub struct Asset {
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The body.
    pub body: Bytes,
}

/// The page's history and routes, shared by whoever records harvests and whoever serves.
///
/// Cloning gives another handle on the same history.
///
/// ```
/// use sampler_api::{Descriptor, Harvester, Registry};
/// use sampler_exporter_ui::Ui;
///
/// static DEPTH: Descriptor = Descriptor::gauge("queue.depth", "1", "jobs waiting");
/// let registry = Registry::new();
/// let depth = registry.gauge(&DEPTH);
/// depth.set(3.0);
/// let harvester = Harvester::builder().registry(registry).self_metrics(false).build();
///
/// let ui = Ui::new(60, 100).link("Metrics", "/metrics");
/// ui.record(&harvester.harvest_now());
/// let page = ui.respond("/").unwrap();
/// assert_eq!(page.content_type, "text/html; charset=utf-8");
/// let data = ui.respond("/ui/data.json").unwrap();
/// let text = std::str::from_utf8(&data.body)?;
/// assert!(text.contains("\"queue.depth\""), "{text}");
/// assert!(ui.respond("/elsewhere").is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Ui {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    history: Mutex<History>,
    /// The data of the latest harvest, made on its first request (sequence, JSON).
    json: Mutex<(u64, Bytes)>,
    links: Vec<(String, String)>,
    /// Whether harvests are kept only once the page was asked for (see
    /// [`Ui::once_viewed`]), and whether it was.
    once_viewed: bool,
    viewed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ui {
    /// A page keeping `points` harvests (1 to [`MAX_POINTS`]) of at most `max_series` series.
    pub fn new(points: usize, max_series: usize) -> Self {
        Ui {
            inner: Arc::new(Inner {
                history: Mutex::new(History::new(points, max_series)),
                json: Mutex::new((u64::MAX, Bytes::new())),
                links: Vec::new(),
                once_viewed: false,
                viewed: AtomicBool::new(false),
            }),
        }
    }

    /// Adds a link the page shows in its header (such as the metrics path beside it). Call it
    /// before cloning the `Ui`.
    pub fn link(mut self, label: impl Into<String>, path: impl Into<String>) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.links.push((label.into(), path.into()));
        }
        self
    }

    /// Keeps harvests only from the first time the page (`/`) or its data is asked for: a
    /// server that offers the page beside other work (the Prometheus exporter) pays for the
    /// history only once someone looks. Call it before cloning the `Ui`.
    ///
    /// ```
    /// use sampler_api::{Descriptor, Harvester, Registry};
    /// use sampler_exporter_ui::Ui;
    ///
    /// static DEPTH: Descriptor = Descriptor::gauge("queue.depth", "1", "jobs waiting");
    /// let registry = Registry::new();
    /// let depth = registry.gauge(&DEPTH);
    /// depth.set(3.0);
    /// let harvester = Harvester::builder().registry(registry).self_metrics(false).build();
    /// let ui = Ui::new(60, 100).once_viewed();
    /// ui.record(&harvester.harvest_now());
    /// assert_eq!(ui.series(), 0); // nobody looked yet
    /// ui.respond("/");
    /// ui.record(&harvester.harvest_now());
    /// assert_eq!(ui.series(), 1);
    /// ```
    pub fn once_viewed(mut self) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.once_viewed = true;
        }
        self
    }

    /// Adds a harvest to the history (an older or repeated one is ignored; with
    /// [`once_viewed`](Self::once_viewed), so is any before the page was first asked for).
    pub fn record(&self, snapshot: &Snapshot) {
        if self.inner.once_viewed && !self.inner.viewed.load(Ordering::Relaxed) {
            return;
        }
        lock(&self.inner.history).record(snapshot);
    }

    /// Whether `path` is one of the page's routes (`/` and `/ui/…`): a server mounting the page
    /// leaves these to [`respond`](Self::respond).
    pub fn owns(path: &str) -> bool {
        path == "/" || path == "/index.html" || path.starts_with("/ui/")
    }

    /// The answer for `path`, or `None` when it is not one of the page's.
    pub fn respond(&self, path: &str) -> Option<Asset> {
        if matches!(path, "/" | "/index.html" | "/ui/data.json") {
            self.inner.viewed.store(true, Ordering::Relaxed);
        }
        let (content_type, body) = match path {
            "/" | "/index.html" => (
                "text/html; charset=utf-8",
                Bytes::from_static(INDEX_HTML.as_bytes()),
            ),
            "/ui/app.js" => (
                "text/javascript; charset=utf-8",
                Bytes::from_static(APP_JS.as_bytes()),
            ),
            "/ui/style.css" => (
                "text/css; charset=utf-8",
                Bytes::from_static(STYLE_CSS.as_bytes()),
            ),
            "/ui/data.json" => ("application/json", self.data()),
            _ => return None,
        };
        Some(Asset { content_type, body })
    }

    /// The JSON of the history, made once per harvest.
    fn data(&self) -> Bytes {
        let mut cached = lock(&self.inner.json);
        let history = lock(&self.inner.history);
        if cached.0 != history.sequence() {
            *cached = (
                history.sequence(),
                Bytes::from(history.to_json_with(&self.inner.links)),
            );
        }
        cached.1.clone()
    }

    /// How many series the history keeps now.
    pub fn series(&self) -> usize {
        lock(&self.inner.history).len()
    }
}
