//! The console exporter for [`sampler_api`]: an aligned table for people and JSON lines for
//! programs, written to stdout or a file.
//!
//! The table shows, under a header with the harvest time, one row per series: name, labels,
//! value and, for counters, the rate per second since the previous harvest. Timings show
//! count, mean, p50, p90, p99 and max. Units read as people expect (`1.2 GiB`, `35 ms`, see
//! [`human`]), and a gauge in seconds whose last word is `time` or `timestamp` reads as a date.
//! A counter with a divisor (CPU seconds kept to the microsecond) shows its value in its unit.
//!
//! ```text
//! # harvest 2026-01-01T00:00:10.000Z (sequence 2, 5 series)
//! NAME                  LABELS                 VALUE                 RATE
//! http.server.requests  method=GET,route=/api  1250                  25/s
//! process.cpu.time      cpu_mode=user          2.12 s                12 ms/s
//! process.memory.usage                         12.5 MiB
//! process.start_time                           2025-12-29T09:20:00Z
//! http.server.duration  route=/api             count 6, mean 61.2 ms, p50 19.4 ms, p90 239 ms, p99 239 ms, max 250 ms
//! ```
//!
//! JSON lines carry one object per series per harvest (see [`json_lines`]).
//!
//! # Example
//!
//! ```
//! use sampler_api::{Descriptor, Harvester, Registry};
//! use sampler_exporter_console::{ConsoleExporter, Format};
//! use std::time::Duration;
//!
//! static JOBS: Descriptor = Descriptor::counter("jobs.done", "1", "jobs done");
//! let registry = Registry::new();
//! let jobs = registry.counter(&JOBS);
//! jobs.inc();
//! let harvester = Harvester::builder()
//!     .registry(registry)
//!     .exporter(ConsoleExporter::stdout(Format::Table))
//!     .build();
//! harvester.shutdown(Duration::from_secs(1))?; // one last harvest, printed and flushed
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod human;
mod render;

use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use sampler_api::{ExportError, Exporter, Snapshot};

pub use render::{json_lines, rfc3339, TableRenderer};

/// What the console exporter writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// An aligned table for people.
    #[default]
    Table,
    /// One JSON object per series per harvest, one per line, for programs.
    Json,
}

impl FromStr for Format {
    type Err = String;

    /// `table` or `json`.
    ///
    /// ```
    /// use sampler_exporter_console::Format;
    /// assert_eq!("json".parse::<Format>(), Ok(Format::Json));
    /// assert!("xml".parse::<Format>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(Format::Table),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "unknown console format {other:?}: expected table or json"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Json => "json",
        })
    }
}

enum Sink {
    Stdout,
    Writer(Box<dyn Write + Send>),
}

/// Writes each snapshot as a table or JSON lines to stdout, a file or any writer, and flushes
/// after each, so output shows as soon as a harvest is done.
pub struct ConsoleExporter {
    format: Format,
    sink: Sink,
    /// Where output goes, for error messages: `stdout`, a path, or `writer`.
    place: String,
    table: TableRenderer,
}

impl fmt::Debug for ConsoleExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsoleExporter")
            .field("format", &self.format)
            .field("output", &self.place)
            .finish()
    }
}

impl ConsoleExporter {
    /// Writes to the process's standard output.
    pub fn stdout(format: Format) -> Self {
        ConsoleExporter {
            format,
            sink: Sink::Stdout,
            place: "stdout".to_owned(),
            table: TableRenderer::new(),
        }
    }

    /// Appends to a file, creating it if needed.
    ///
    /// ```
    /// use sampler_exporter_console::{ConsoleExporter, Format};
    /// let dir = tempfile::tempdir()?;
    /// let exporter = ConsoleExporter::file(dir.path().join("metrics.jsonl"), Format::Json)?;
    /// # let _ = exporter;
    /// let err = ConsoleExporter::file(dir.path().join("no/such/dir/m.txt"), Format::Table).unwrap_err();
    /// assert!(err.to_string().starts_with("failed to open console output file "));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn file(path: impl AsRef<Path>, format: Format) -> Result<Self, FileError> {
        let path = path.as_ref();
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| FileError {
                path: path.to_owned(),
                source,
            })?;
        Ok(ConsoleExporter {
            format,
            // Unbuffered: each export is one whole `write_all`, so a buffer would only copy
            // it, and after a failed write keep its tail to write again into later output.
            sink: Sink::Writer(Box::new(file)),
            place: path.display().to_string(),
            table: TableRenderer::new(),
        })
    }

    /// Writes to any writer (a socket, a buffer shared with a test).
    pub fn writer(format: Format, writer: impl Write + Send + 'static) -> Self {
        ConsoleExporter {
            format,
            sink: Sink::Writer(Box::new(writer)),
            place: "writer".to_owned(),
            table: TableRenderer::new(),
        }
    }

    /// The format written.
    pub fn format(&self) -> Format {
        self.format
    }

    fn write(&mut self, text: &str) -> io::Result<()> {
        match &mut self.sink {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(text.as_bytes())?;
                out.flush()
            }
            Sink::Writer(w) => {
                w.write_all(text.as_bytes())?;
                w.flush()
            }
        }
    }
}

impl Exporter for ConsoleExporter {
    fn name(&self) -> &str {
        "console"
    }

    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        let text = match self.format {
            Format::Table => self.table.render(&snapshot),
            Format::Json => json_lines(&snapshot),
        };
        self.write(&text).map_err(|e| {
            ExportError::with_source(
                format!("failed to write console output to {}", self.place),
                e,
            )
        })
    }

    fn flush(&mut self, _deadline: Instant) -> Result<(), ExportError> {
        let r = match &mut self.sink {
            Sink::Stdout => io::stdout().lock().flush(),
            Sink::Writer(w) => w.flush(),
        };
        r.map_err(|e| {
            ExportError::with_source(
                format!("failed to flush console output to {}", self.place),
                e,
            )
        })
    }
}

/// The console output file could not be opened: names the file and the cause.
#[derive(Debug)]
pub struct FileError {
    path: PathBuf,
    source: io::Error,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "failed to open console output file {}: {}",
            self.path.display(),
            self.source
        )
    }
}

/// The cause is part of the message, so the error has no separate `source`.
impl std::error::Error for FileError {}
