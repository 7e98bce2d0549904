//! What the watchdog reports.

use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

pub use sampler_adapter_http::Outcome;

use crate::unwind::Frame;

/// One report of a slow request: while it runs ([`EventKind::Slow`]), and again when it ends
/// ([`EventKind::Ended`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Event {
    /// A report while running, or the report of its end.
    pub kind: EventKind,
    /// `X-Request-Id` of the request, or one made up by the watchdog (16 hex digits).
    pub request_id: String,
    /// The route group.
    pub group: String,
    /// The method.
    pub method: String,
    /// The path (without the query).
    pub path: String,
    /// When the request arrived.
    pub arrived: SystemTime,
    /// Time in flight so far (for [`EventKind::Ended`]: the request's final duration).
    pub elapsed: Duration,
    /// The request's open `tracing` spans, outermost first (with
    /// [`Watchdog::tracing_layer`](crate::Watchdog::tracing_layer) installed).
    pub spans: Vec<String>,
    /// Where the request was when reported as slow.
    pub stack: Stack,
    /// The file this event was written to, when a directory is configured.
    pub file: Option<PathBuf>,
}

/// Which report an [`Event`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventKind {
    /// The request has been in flight longer than the threshold and still runs.
    Slow,
    /// A request reported as slow ended so.
    Ended(Outcome),
}

/// Where a slow request was when it was reported.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Stack {
    /// Running on a thread: that thread's stack, innermost frame first.
    Running {
        /// The thread's id (Linux `gettid`).
        thread: i32,
        /// The unwound, symbolised frames.
        frames: Vec<Frame>,
        /// Time the request's thread spent in the capture's signal handler.
        pause: Duration,
    },
    /// Parked on an await: no thread runs it, so there is no stack of its own to show (its
    /// route and spans say where it waits).
    Parked,
    /// Running, but no stack could be taken (the reason).
    Unavailable(String),
    /// Not applicable: an [`EventKind::Ended`] report.
    None,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            EventKind::Slow => write!(
                f,
                "slow request {} {} {} (group {}): in flight for {:.3} s",
                self.request_id,
                self.method,
                self.path,
                self.group,
                self.elapsed.as_secs_f64()
            )?,
            EventKind::Ended(outcome) => {
                let how = match outcome {
                    Outcome::Status(status) => format!("completed with status {status}"),
                    Outcome::Error => "failed (the service returned an error)".to_string(),
                    Outcome::Cancelled => "cancelled".to_string(),
                    _ => "ended".to_string(),
                };
                write!(
                    f,
                    "slow request {} {} {} (group {}): {how} after {:.3} s",
                    self.request_id,
                    self.method,
                    self.path,
                    self.group,
                    self.elapsed.as_secs_f64()
                )?;
                return Ok(());
            }
        }
        writeln!(f)?;
        if self.spans.is_empty() {
            writeln!(f, "spans: none")?;
        } else {
            writeln!(f, "spans (outermost first):")?;
            for span in &self.spans {
                writeln!(f, "  {span}")?;
            }
        }
        match &self.stack {
            Stack::Running {
                thread,
                frames,
                pause,
            } => {
                writeln!(
                    f,
                    "running on thread {thread} (capture paused it {} µs); stack, innermost first:",
                    pause.as_micros()
                )?;
                for (i, frame) in frames.iter().enumerate() {
                    if frame.symbols.is_empty() {
                        writeln!(f, "  #{i:<3} {:#018x} ?", frame.address)?;
                    }
                    for symbol in &frame.symbols {
                        writeln!(f, "  #{i:<3} {:#018x} {symbol}", frame.address)?;
                    }
                }
            }
            Stack::Parked => writeln!(
                f,
                "parked on an await (not running on any thread): no stack of its own"
            )?,
            Stack::Unavailable(why) => writeln!(f, "running; no stack: {why}")?,
            Stack::None => {}
        }
        Ok(())
    }
}
