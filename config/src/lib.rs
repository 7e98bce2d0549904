//! The **sampler** config file: operators choose and shape their exporters and adapters in one
//! TOML file; integrators add their own exporter and adapter kinds, selected by name in the same
//! file. The format is written down in `spec/config.md`.
//!
//! ```
//! use sampler_config::Config;
//! # use sampler_config::{ExporterKind, PlannedExporter, Settings, SettingsError};
//! # fn plan(_: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
//! #     Ok(PlannedExporter::new("lib-doc", || Err("not built here".into())))
//! # }
//! # sampler_config::inventory::submit! { ExporterKind::new("lib-doc", plan) }
//! let text = r#"
//! [harvest]
//! interval = "15s"
//!
//! [labels]
//! env = "${DEPLOY_ENV:-dev}"
//!
//! [[exporter]]
//! kind = "lib-doc"
//! name = "http-only"
//! include = ["http.*"]
//! "#;
//! let config = Config::parse("sampler.toml", text)?;
//! assert_eq!(config.harvest.interval, std::time::Duration::from_secs(15));
//! assert_eq!(config.exporters[0].name, "http-only");
//! assert!(config.exporters[0].shaping.wants("http.server.requests", &[]));
//! # Ok::<(), sampler_config::ConfigError>(())
//! ```
//!
//! Errors come all at once, each with its line, column and a caret under the offending text:
//!
//! ```
//! use sampler_config::Config;
//! let e = Config::parse("s.toml", "[harvest]\nintervl = \"10s\"\n").unwrap_err();
//! assert_eq!(e.to_string(), "\
//! error: unknown key `intervl` in [harvest]
//!  --> s.toml:2:1
//!   |
//! 2 | intervl = \"10s\"
//!   | ^^^^^^^
//!   = help: did you mean `interval`?");
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod actions;
mod diagnostic;
mod env;
mod kinds;
mod load;
mod shape;

use std::fmt;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sampler_api::{Exporter, Sampler};

pub use diagnostic::{ConfigError, Diagnostic};
pub use env::{expand, EnvError};
pub use kinds::{
    adapter_kinds, exporter_kinds, AdapterKind, BoxError, ExporterKind, PlannedAdapter,
    PlannedExporter, Settings, SettingsError,
};
pub use load::MAX_FILE_SIZE;
pub use shape::{check_glob, Shaped, Shaping, ShapingBuilder};

#[doc(hidden)]
pub use inventory;

/// A checked config file: everything in it is valid; nothing is built yet.
#[derive(Debug)]
pub struct Config {
    /// The file's name as given.
    pub file: String,
    /// `[harvest]`.
    pub harvest: HarvestSettings,
    /// `[labels]`: added to every series of every exporter.
    pub labels: Vec<(String, String)>,
    /// Every `[[exporter]]`, in file order.
    pub exporters: Vec<ExporterPlan>,
    /// Every adapter switched on.
    pub adapters: Vec<AdapterPlan>,
    /// Every `[[action]]` rule, in file order.
    pub actions: Vec<sampler_actions::Rule>,
}

/// `[harvest]`: how often and how the harvest runs.
#[derive(Clone, Debug, PartialEq)]
pub struct HarvestSettings {
    /// `interval`: between harvests (default 10 s, 1 ms to 24 h).
    pub interval: Duration,
    /// `sampler_budget`: the time one sampler may take (default: the harvester's).
    pub sampler_budget: Option<Duration>,
    /// `queue_depth`: snapshots each exporter's queue holds (default 4, 1 to 1024).
    pub queue_depth: usize,
    /// `self_metrics`: whether snapshots carry `sampler.*` (default true).
    pub self_metrics: bool,
}

impl Default for HarvestSettings {
    fn default() -> Self {
        HarvestSettings {
            interval: sampler_api::DEFAULT_INTERVAL,
            sampler_budget: None,
            queue_depth: sampler_api::DEFAULT_QUEUE,
            self_metrics: true,
        }
    }
}

/// One `[[exporter]]`, checked.
pub struct ExporterPlan {
    /// Its kind.
    pub kind: String,
    /// Its name (the kind's when none is given); the `exporter` label of its self-metrics.
    pub name: String,
    /// Which series it gets and how they are named and labelled.
    pub shaping: Shaping,
    pub(crate) planned: PlannedExporter,
    pub(crate) fingerprint: toml::Value,
    pub(crate) span: Range<usize>,
}

impl fmt::Debug for ExporterPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExporterPlan")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("shaping", &self.shaping)
            .field("settings", &self.planned)
            .finish()
    }
}

impl ExporterPlan {
    /// Builds the exporter behind its shaping (binds, connects, opens files as its kind does).
    pub fn build(&self) -> Result<Box<dyn Exporter>, BoxError> {
        let inner = (self.planned.build)()?;
        Ok(Box::new(Shaped::new(
            self.name.clone(),
            inner,
            self.shaping.clone(),
        )))
    }

    /// Whether `other` (from another version of the file) is the same exporter with the same
    /// settings, so a reload can keep the running one with its connection and buffer.
    pub fn same_as(&self, other: &ExporterPlan) -> bool {
        self.fingerprint == other.fingerprint
    }

    /// One line for `sampler check`: kind, name, shaping and resolved settings.
    pub fn describe(&self) -> String {
        let mut s = format!("exporter {} (kind {})", self.name, self.kind);
        if !self.shaping.is_identity() {
            s.push_str(&format!(": {}", self.shaping.text.join(", ")));
        }
        s.push_str(&format!("\n    {}", self.planned.summary));
        s
    }
}

/// One adapter, checked.
pub struct AdapterPlan {
    /// Its name (the key under `[adapters]`).
    pub name: String,
    pub(crate) planned: PlannedAdapter,
    pub(crate) fingerprint: toml::Value,
}

impl fmt::Debug for AdapterPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdapterPlan")
            .field("name", &self.name)
            .field("settings", &self.planned)
            .finish()
    }
}

impl AdapterPlan {
    /// Builds the adapter's samplers.
    pub fn build(&self) -> Result<Vec<Arc<dyn Sampler>>, BoxError> {
        (self.planned.build)()
    }

    /// Whether `other` is the same adapter with the same settings.
    pub fn same_as(&self, other: &AdapterPlan) -> bool {
        self.name == other.name && self.fingerprint == other.fingerprint
    }

    /// One line for `sampler check`.
    pub fn describe(&self) -> String {
        format!("adapter {}: {}", self.name, self.planned.summary)
    }
}

impl Config {
    /// Checks `text`, expanding `${VAR}` from the process environment.
    pub fn parse(file: &str, text: &str) -> Result<Config, ConfigError> {
        load::parse(file, text, &|name| std::env::var(name).ok())
    }

    /// Checks `text`, reading variables through `env` (for tests, or a config that must not
    /// see the environment).
    pub fn parse_with_env(
        file: &str,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        load::parse(file, text, env)
    }

    /// Reads and checks a file. It must be a regular file of at most [`MAX_FILE_SIZE`] bytes of
    /// UTF-8 text; a FIFO or device is refused without reading it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = read_bounded(path).map_err(|message| ConfigError {
            file: name.clone(),
            source: String::new(),
            diagnostics: vec![Diagnostic {
                message,
                span: None,
                hint: None,
            }],
        })?;
        Config::parse(&name, &text)
    }

    /// What `sampler check` prints: the resolved pipeline.
    pub fn describe(&self) -> String {
        let h = &self.harvest;
        let mut out = format!(
            "harvest every {}, queue depth {}, self-metrics {}",
            humantime::format_duration(h.interval),
            h.queue_depth,
            if h.self_metrics { "on" } else { "off" }
        );
        if let Some(b) = h.sampler_budget {
            out.push_str(&format!(
                ", sampler budget {}",
                humantime::format_duration(b)
            ));
        }
        out.push('\n');
        if !self.labels.is_empty() {
            let l: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v:?}"))
                .collect();
            out.push_str(&format!("labels {}\n", l.join(", ")));
        }
        for a in &self.adapters {
            out.push_str(&a.describe());
            out.push('\n');
        }
        for e in &self.exporters {
            out.push_str(&e.describe());
            out.push('\n');
        }
        for r in &self.actions {
            out.push_str(&r.describe());
            out.push('\n');
        }
        out
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::fs::OpenOptions;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.read(true);
    // Opening a FIFO for reading would wait for a writer: open without waiting, then refuse
    // anything that is not a regular file.
    #[cfg(unix)]
    options.custom_flags(libc::O_NONBLOCK);
    let file = options
        .open(path)
        .map_err(|e| format!("failed to read config file {}: {e}", path.display()))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("failed to read config file {}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!(
            "failed to read config file {}: not a regular file",
            path.display()
        ));
    }
    if meta.len() > MAX_FILE_SIZE {
        return Err(format!(
            "failed to read config file {}: {} bytes is more than the {} a config file may have",
            path.display(),
            meta.len(),
            MAX_FILE_SIZE
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("failed to read config file {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(format!(
            "failed to read config file {}: it grew past {} bytes while being read",
            path.display(),
            MAX_FILE_SIZE
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "failed to read config file {}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}
