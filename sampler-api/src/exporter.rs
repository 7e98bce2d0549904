//! The `Exporter` trait: a sink that receives snapshots on its own worker thread.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use crate::harvest::HarvestHandle;
use crate::sampler::Sampler;
use crate::snapshot::Snapshot;

/// A sink for snapshots: translates them to a backend's protocol.
///
/// The harvester runs each exporter on its own thread behind a bounded queue, so an exporter
/// may block on its backend; it only delays itself. When its queue is full the oldest
/// snapshot is dropped and counted (`sampler.exporter.dropped`).
///
/// Counters and timings in a snapshot are cumulative. An exporter that speaks deltas keeps its
/// own cursor per [`SeriesId`](crate::SeriesId), so exporters never disturb each other.
///
/// ```
/// use sampler_api::{ExportError, Exporter, Snapshot};
/// use std::sync::Arc;
///
/// struct CountSeries(usize);
///
/// impl Exporter for CountSeries {
///     fn name(&self) -> &str { "count" }
///     fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
///         self.0 += snapshot.len();
///         Ok(())
///     }
/// }
/// ```
pub trait Exporter: Send {
    /// A short name for logs and the `exporter` label of self-metrics (`console`, `prometheus`).
    fn name(&self) -> &str;

    /// Takes one harvest's snapshot.
    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError>;

    /// Sends whatever is buffered, giving up at `deadline`.
    fn flush(&mut self, deadline: Instant) -> Result<(), ExportError> {
        let _ = deadline;
        Ok(())
    }

    /// Flushes and releases the backend, giving up at `deadline`. Called once, last.
    fn shutdown(&mut self, deadline: Instant) -> Result<(), ExportError> {
        self.flush(deadline)
    }

    /// The exporter's own self-metrics, harvested like any other sampler.
    fn sampler(&self) -> Option<Arc<dyn Sampler>> {
        None
    }

    /// Called once when the harvester is built, with a handle that can harvest on demand
    /// (a pull exporter offering scrape-time freshness keeps it).
    fn attach(&mut self, handle: HarvestHandle) {
        let _ = handle;
    }
}

impl<E: Exporter + ?Sized> Exporter for Box<E> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        (**self).export(snapshot)
    }
    fn flush(&mut self, deadline: Instant) -> Result<(), ExportError> {
        (**self).flush(deadline)
    }
    fn shutdown(&mut self, deadline: Instant) -> Result<(), ExportError> {
        (**self).shutdown(deadline)
    }
    fn sampler(&self) -> Option<Arc<dyn Sampler>> {
        (**self).sampler()
    }
    fn attach(&mut self, handle: HarvestHandle) {
        (**self).attach(handle)
    }
}

/// Why an export, flush or shutdown failed.
///
/// ```
/// use sampler_api::ExportError;
/// let e = ExportError::new("failed to connect to graphite at 127.0.0.1:2003: connection refused");
/// assert!(e.to_string().contains("127.0.0.1:2003"));
/// ```
#[derive(Debug)]
pub struct ExportError {
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ExportError {
    /// An error with a message naming what failed and where.
    pub fn new(message: impl Into<String>) -> Self {
        ExportError {
            message: message.into(),
            source: None,
        }
    }

    /// An error with a message and its cause.
    pub fn with_source(
        message: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        ExportError {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The message followed by every cause, joined by `: `.
    ///
    /// ```
    /// use sampler_api::ExportError;
    /// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
    /// let e = ExportError::with_source("failed to connect to graphite at 127.0.0.1:2003", io);
    /// assert_eq!(e.chain(), "failed to connect to graphite at 127.0.0.1:2003: connection refused");
    /// ```
    pub fn chain(&self) -> String {
        let mut out = self.message.clone();
        let mut next = std::error::Error::source(self);
        while let Some(cause) = next {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            next = cause.source();
        }
        out
    }

    /// The deadline passed before the work was done.
    pub fn timed_out(what: &str) -> Self {
        ExportError::new(format!("{what}: deadline passed"))
    }
}

impl fmt::Display for ExportError {
    /// The message alone; the cause comes from [`source`](std::error::Error::source), so error
    /// chains (`anyhow`'s `{:#}`) print it once. [`ExportError::chain`] joins both.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| &**s as &(dyn std::error::Error + 'static))
    }
}
