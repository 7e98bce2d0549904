//! A slow-request watchdog for [`sampler_adapter_http`]: a request in flight longer than a
//! threshold is reported **while it still runs**, with its route group, method, path, time in
//! flight, request id, its open `tracing` spans and, when a thread is running it at that
//! moment, that thread's stack; reported again when it completes or is cancelled.
//!
//! How the stack is taken: the layer's [`RequestHook`](sampler_adapter_http::RequestHook)
//! records which thread polls each request (set on poll entry, cleared on exit). The watchdog
//! thread sends that thread a real-time signal (`SIGRTMAX-3`, `tgkill`); its handler only
//! copies the interrupted registers and live stack words into a preallocated buffer
//! (async-signal-safe: no allocation, no lock) and returns. The watchdog thread then unwinds
//! the copy with `framehop` (DWARF CFI of the loaded modules) and names the frames with
//! `backtrace`. The request's thread pauses only for the copy (see the crate README for the
//! measured pause). A request parked on an await has no thread: it is reported with its route
//! and spans, and no stack (tokio's task dumps could add the await trace; they need
//! `--cfg tokio_unstable` and are not used here).
//!
//! Each slow request counts in `http.server.slow_requests{group}` (counter, unit `1`), is
//! logged (`tracing`, target `sampler_adapter_watchdog`, and stderr if asked), written to a
//! file of its own in the configured directory (its end appended to the same file), and given
//! to the [`on_event`](WatchdogBuilder::on_event) callback.
//!
//! Linux on x86_64 and aarch64 only.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use sampler_adapter_http::{Groups, HttpMetrics};
//! use sampler_adapter_watchdog::Watchdog;
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let registry = sampler_api::Registry::new();
//! let dir = tempfile::tempdir()?;
//! let watchdog = Watchdog::builder(&registry)
//!     .threshold(Duration::from_secs(1))
//!     .dir(dir.path())
//!     .start()?;
//! let metrics = HttpMetrics::new(&registry, Groups::new().prefix("/api", "api"))
//!     .hook(watchdog.hook());
//! // The open spans of slow requests (optional): add the watchdog's layer to the subscriber.
//! let subscriber = tracing_subscriber::registry().with(watchdog.tracing_layer());
//! # let _ = subscriber;
//! // axum: Router::new().route(..).layer(metrics.layer())
//! # let _ = metrics.layer();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
compile_error!("sampler-adapter-watchdog supports Linux on x86_64 and aarch64 only");

mod capture;
mod event;
mod spans;
mod unwind;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sampler_adapter_http::RequestHook;
use sampler_api::{Descriptor, Registry};

pub use event::{Event, EventKind, Outcome, Stack};
pub use spans::SpanLayer;
pub use unwind::Frame;

static SLOW: Descriptor = Descriptor::counter(
    "http.server.slow_requests",
    "1",
    "requests reported by the watchdog as in flight longer than its threshold",
);

/// Why the watchdog did not start.
#[derive(Debug)]
pub struct Error(String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Settings of a [`Watchdog`]; made by [`Watchdog::builder`].
pub struct WatchdogBuilder {
    registry: Registry,
    threshold: Duration,
    dir: Option<PathBuf>,
    stderr: bool,
    capture_wait: Duration,
    on_event: Option<watch::OnEvent>,
}

impl std::fmt::Debug for WatchdogBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchdogBuilder")
            .field("threshold", &self.threshold)
            .field("dir", &self.dir)
            .field("stderr", &self.stderr)
            .finish_non_exhaustive()
    }
}

impl WatchdogBuilder {
    /// Requests in flight longer than this are reported (default 1 s; at least 1 ms).
    ///
    /// ```
    /// # let registry = sampler_api::Registry::new();
    /// let builder = sampler_adapter_watchdog::Watchdog::builder(&registry)
    ///     .threshold(std::time::Duration::from_millis(500));
    /// # drop(builder);
    /// ```
    pub fn threshold(mut self, threshold: Duration) -> Self {
        self.threshold = threshold.max(Duration::from_millis(1));
        self
    }

    /// Writes each slow request to a file of its own in `dir` (created if missing):
    /// `slow-<arrival ms since the epoch>-<n>-<request id>.txt`, its end appended.
    ///
    /// ```
    /// # let registry = sampler_api::Registry::new();
    /// let builder = sampler_adapter_watchdog::Watchdog::builder(&registry).dir("/var/log/slow");
    /// # drop(builder);
    /// ```
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Also prints each report on stderr (besides the `tracing` log).
    ///
    /// ```
    /// # let registry = sampler_api::Registry::new();
    /// let builder = sampler_adapter_watchdog::Watchdog::builder(&registry).stderr(true);
    /// # drop(builder);
    /// ```
    pub fn stderr(mut self, on: bool) -> Self {
        self.stderr = on;
        self
    }

    /// Calls `callback` with every event, on the watchdog thread.
    ///
    /// ```
    /// # let registry = sampler_api::Registry::new();
    /// let builder = sampler_adapter_watchdog::Watchdog::builder(&registry)
    ///     .on_event(|event| println!("{}", event.request_id));
    /// # drop(builder);
    /// ```
    pub fn on_event(mut self, callback: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.on_event = Some(Box::new(callback));
        self
    }

    /// Starts the watchdog thread (and installs the capture signal's handler, once per
    /// process).
    ///
    /// ```
    /// # let registry = sampler_api::Registry::new();
    /// let watchdog = sampler_adapter_watchdog::Watchdog::builder(&registry).start()?;
    /// # drop(watchdog);
    /// # Ok::<(), sampler_adapter_watchdog::Error>(())
    /// ```
    pub fn start(self) -> Result<Watchdog, Error> {
        if let Some(dir) = &self.dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error(format!(
                    "failed to create the slow request directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        capture::install().map_err(Error)?;
        let (tx, rx) = std::sync::mpsc::channel();
        let tick =
            (self.threshold / 10).clamp(Duration::from_millis(5), Duration::from_millis(250));
        let shared = Arc::new(watch::Shared {
            threshold: self.threshold,
            dir: self.dir,
            stderr: self.stderr,
            capture_wait: self.capture_wait,
            slow: self.registry.counter_family(&SLOW, &["group"]),
            on_event: self.on_event,
            in_flight: Mutex::new(watch::InFlightTable::default()),
            next_key: AtomicU64::new(1),
            tx: Mutex::new(tx),
        });
        let thread_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sampler-watchdog".into())
            .spawn(move || watch::run(thread_shared, rx, tick))
            .map_err(|e| Error(format!("failed to start the watchdog thread: {e}")))?;
        Ok(Watchdog {
            shared,
            thread: Some(thread),
        })
    }
}

/// The slow-request watchdog: a thread that watches the requests of every layer given its
/// [`hook`](Self::hook). Dropping it stops the thread.
///
/// ```
/// let registry = sampler_api::Registry::new();
/// let watchdog = sampler_adapter_watchdog::Watchdog::builder(&registry).start()?;
/// let metrics = sampler_adapter_http::HttpMetrics::new(&registry, Default::default())
///     .hook(watchdog.hook());
/// # drop(metrics);
/// # Ok::<(), sampler_adapter_watchdog::Error>(())
/// ```
#[derive(Debug)]
pub struct Watchdog {
    shared: Arc<watch::Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Settings with their defaults: threshold 1 s, no directory, no stderr; the counter
    /// `http.server.slow_requests` is registered in `registry`.
    pub fn builder(registry: &Registry) -> WatchdogBuilder {
        WatchdogBuilder {
            registry: registry.clone(),
            threshold: Duration::from_secs(1),
            dir: None,
            stderr: false,
            capture_wait: Duration::from_millis(200),
            on_event: None,
        }
    }

    /// The hook to give [`HttpMetrics::hook`](sampler_adapter_http::HttpMetrics::hook).
    pub fn hook(&self) -> Arc<dyn RequestHook> {
        Arc::new(watch::Hook(self.shared.clone()))
    }

    /// A `tracing_subscriber` layer that tells the watchdog which spans each request has
    /// open (add it to the process's subscriber; one serves every watchdog).
    pub fn tracing_layer(&self) -> SpanLayer {
        SpanLayer
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self
            .shared
            .tx
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(watch::Message::Stop);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
