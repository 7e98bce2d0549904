//! A custom exporter kind: `kind = "csv"` appends one CSV row per series per harvest to a file.
//!
//! The crate registers the kind once, with `inventory`; any binary that links it (here
//! `sampler-with-csv`, which is the whole `sampler` command plus this kind) selects it in the
//! config file exactly like a built-in exporter, shaping keys and all:
//!
//! ```toml
//! [[exporter]]
//! kind = "csv"
//! path = "/var/lib/metrics/harvests.csv"
//! include = ["process.*"]
//! ```

#![deny(missing_docs)]

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, UNIX_EPOCH};

use sampler_api::{ExportError, Exporter, Snapshot, Value};
use sampler_config::{inventory, ExporterKind, PlannedExporter, Settings, SettingsError};

/// The settings of `kind = "csv"`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSettings {
    /// The file rows are appended to.
    pub path: PathBuf,
    /// Whether to write a header row when the file is empty (default true).
    #[serde(default = "yes")]
    pub header: bool,
}

fn yes() -> bool {
    true
}

/// Appends `time,name,labels,value` rows; counters as their value in the unit, timings as
/// their count.
#[derive(Debug)]
pub struct CsvExporter {
    out: BufWriter<File>,
    path: PathBuf,
}

impl CsvExporter {
    /// Opens (creates) the file for appending.
    pub fn open(settings: &CsvSettings) -> std::io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&settings.path)?;
        let empty = file.metadata()?.len() == 0;
        let mut out = BufWriter::new(file);
        if empty && settings.header {
            writeln!(out, "time,name,labels,value")?;
        }
        Ok(CsvExporter {
            out,
            path: settings.path.clone(),
        })
    }
}

/// Quotes a CSV field when it needs it.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

impl Exporter for CsvExporter {
    fn name(&self) -> &str {
        "csv"
    }

    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        let t = snapshot
            .time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let fail =
            |e| ExportError::with_source(format!("failed to write {}", self.path.display()), e);
        for s in snapshot.series() {
            let value = match s.value() {
                Value::Counter(n) => s.descriptor().counter_value(*n),
                Value::Gauge(g) => *g,
                Value::Timing(d) => d.count() as f64,
                // A kind added to the standard later: not a row of this format.
                _ => continue,
            };
            let labels: Vec<String> = s.labels().iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(
                self.out,
                "{t:.3},{},{},{value}",
                field(s.descriptor().name()),
                field(&labels.join(";"))
            )
            .map_err(fail)?;
        }
        self.out.flush().map_err(fail)
    }

    fn flush(&mut self, _deadline: Instant) -> Result<(), ExportError> {
        self.out.flush().map_err(|e| {
            ExportError::with_source(format!("failed to write {}", self.path.display()), e)
        })
    }
}

fn plan(s: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
    let c: CsvSettings = s.parse()?;
    if c.path.as_os_str().is_empty() {
        return Err(s.error("path", "path must not be empty"));
    }
    Ok(PlannedExporter::new(format!("{c:?}"), move || {
        Ok(Box::new(
            CsvExporter::open(&c)
                .map_err(|e| format!("failed to open {}: {e}", c.path.display()))?,
        ) as Box<dyn Exporter>)
    }))
}

inventory::submit! { ExporterKind::new("csv", plan) }
