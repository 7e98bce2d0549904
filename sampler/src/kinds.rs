//! The exporter and adapter kinds built into the `sampler` command, registered with the config
//! file by name: `kind = "console"`, `kind = "prometheus"`, `kind = "ui"`, `[adapters.process]`,
//! `[adapters.host]`, `[adapters.shm]`. A crate linked into the binary adds its own the same way.

use std::path::PathBuf;
use std::sync::Arc;

use sampler_adapter_process::{HostSampler, NamePattern, Naming, ProcessSampler, Target};
use sampler_api::{Exporter, Sampler};
use sampler_config::{
    inventory, AdapterKind, ExporterKind, PlannedAdapter, PlannedExporter, Settings, SettingsError,
};
use sampler_exporter_console::{ConsoleExporter, Format};
use sampler_exporter_prometheus::{PrometheusConfig, PrometheusExporter};
use sampler_exporter_ui::{UiConfig, UiExporter};
use serde::Deserialize;

/// `kind = "console"`: `format` (`table` or `json`) and `output` (a file to append to;
/// stdout when absent).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConsoleSettings {
    format: ConsoleFormat,
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum ConsoleFormat {
    #[default]
    Table,
    Json,
}

fn console(s: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
    let c: ConsoleSettings = s.parse()?;
    let format = match c.format {
        ConsoleFormat::Table => Format::Table,
        ConsoleFormat::Json => Format::Json,
    };
    Ok(PlannedExporter::new(format!("{c:?}"), move || {
        let inner = match &c.output {
            Some(path) => ConsoleExporter::file(path, format)?,
            None => ConsoleExporter::stdout(format),
        };
        Ok(
            Box::new(crate::Console::new(inner, crate::config_console_failure()))
                as Box<dyn Exporter>,
        )
    }))
}

inventory::submit! { ExporterKind::new("console", console) }

fn prometheus(s: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
    let c: PrometheusConfig = s.parse()?;
    if c.address.parse::<std::net::SocketAddr>().is_err() && !c.address.contains(':') {
        return Err(s.error(
            "address",
            format!(
                "invalid address {:?}: write host:port, such as 127.0.0.1:9464",
                c.address
            ),
        ));
    }
    if !c.path.starts_with('/') {
        return Err(s.error(
            "path",
            format!("invalid path {:?}: must start with /", c.path),
        ));
    }
    Ok(PlannedExporter::new(format!("{c:?}"), move || {
        let e = PrometheusExporter::from_config(c.clone())?;
        crate::say(format_args!("serving prometheus metrics at {}", e.url()));
        if c.ui {
            let page = format!("http://{}/", e.local_addr());
            crate::say(format_args!("serving the live page at {page}"));
        }
        Ok(Box::new(e) as Box<dyn Exporter>)
    }))
}

inventory::submit! { ExporterKind::new("prometheus", prometheus) }

/// `kind = "ui"`: the live page on its own listener (`listen`, `points`, `max_series`).
fn ui(s: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
    let c: UiConfig = s.parse()?;
    if c.listen.parse::<std::net::SocketAddr>().is_err() && !c.listen.contains(':') {
        return Err(s.error(
            "listen",
            format!(
                "invalid address {:?}: write host:port, such as 127.0.0.1:9466",
                c.listen
            ),
        ));
    }
    if let Err(why) = c.check() {
        let key = if why.starts_with("points") {
            "points"
        } else {
            "max_series"
        };
        return Err(s.error(key, why));
    }
    Ok(PlannedExporter::new(format!("{c:?}"), move || {
        let e = UiExporter::from_config(c.clone())?;
        crate::say(format_args!("serving the live page at {}", e.url()));
        Ok(Box::new(e) as Box<dyn Exporter>)
    }))
}

inventory::submit! { ExporterKind::new("ui", ui) }

/// `[adapters.process]`: the same targets as the command's flags.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ProcessSettings {
    /// Process ids.
    pids: Vec<u32>,
    /// Files holding a process id, read again at every harvest.
    pidfiles: Vec<PathBuf>,
    /// Regular expressions matched against the name or command line.
    names: Vec<String>,
    /// Whether to watch the sampler itself (default: when no other target is given).
    #[serde(rename = "self")]
    itself: Option<bool>,
    /// `otel` (the default: OpenTelemetry's semantic conventions) or `prometheus` (the client
    /// libraries' `process_*` names), as `--names`.
    naming: Option<String>,
}

fn process(s: &Settings<'_>) -> Result<PlannedAdapter, SettingsError> {
    let c: ProcessSettings = s.parse()?;
    let mut targets = Vec::new();
    for &pid in &c.pids {
        if pid == 0 {
            return Err(s.error("pids", "invalid pid 0: process ids start at 1"));
        }
        targets.push(Target::Pid(pid));
    }
    targets.extend(c.pidfiles.iter().cloned().map(Target::PidFile));
    for n in &c.names {
        let p = NamePattern::new(n)
            .map_err(|e| s.error("names", format!("invalid name pattern {n:?}: {e}")))?;
        targets.push(Target::Name(p));
    }
    if c.itself.unwrap_or(targets.is_empty()) {
        targets.push(Target::Current);
    }
    let naming = match c.naming.as_deref() {
        None | Some("otel") => Naming::OpenTelemetry,
        Some("prometheus") => Naming::Prometheus,
        Some(other) => {
            return Err(s.error(
                "naming",
                format!("invalid naming {other:?}: write \"otel\" or \"prometheus\""),
            ))
        }
    };
    let summary = targets
        .iter()
        .map(Target::spec)
        .collect::<Vec<_>>()
        .join(", ");
    Ok(PlannedAdapter::new(format!("watch {summary}"), move || {
        let sampler = ProcessSampler::with_targets(targets.clone())
            .naming(naming)
            .on_event(|event| crate::say(format_args!("{event}")));
        Ok(vec![Arc::new(sampler) as Arc<dyn Sampler>])
    }))
}

inventory::submit! { AdapterKind::new("process", true, process) }

/// `[adapters.host]`: memory, load and CPUs of the host; no settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSettings {}

fn host(s: &Settings<'_>) -> Result<PlannedAdapter, SettingsError> {
    let _: HostSettings = s.parse()?;
    Ok(PlannedAdapter::new("memory, load and CPUs", || {
        Ok(vec![Arc::new(HostSampler::new()) as Arc<dyn Sampler>])
    }))
}

inventory::submit! { AdapterKind::new("host", true, host) }

fn graphite(s: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
    let c: sampler_exporter_graphite::GraphiteConfig = s.parse()?;
    c.validate().map_err(|e| s.invalid(e))?;
    Ok(PlannedExporter::new(format!("{c:?}"), move || {
        Ok(
            Box::new(sampler_exporter_graphite::GraphiteExporter::from_config(
                c.clone(),
            )?) as Box<dyn Exporter>,
        )
    }))
}

inventory::submit! { ExporterKind::new("graphite", graphite) }

fn statsd(s: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
    let c: sampler_exporter_statsd::StatsdConfig = s.parse()?;
    c.check().map_err(|e| s.invalid(e))?;
    Ok(PlannedExporter::new(format!("{c:?}"), move || {
        Ok(
            Box::new(sampler_exporter_statsd::StatsdExporter::from_config(
                c.clone(),
            )?) as Box<dyn Exporter>,
        )
    }))
}

inventory::submit! { ExporterKind::new("statsd", statsd) }

fn remote_write(s: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
    let c: sampler_exporter_remote_write::RemoteWriteConfig = s.parse()?;
    c.validate().map_err(|e| s.invalid(e))?;
    Ok(PlannedExporter::new(format!("{c:?}"), move || {
        Ok(
            Box::new(sampler_exporter_remote_write::RemoteWriteExporter::from_config(c.clone())?)
                as Box<dyn Exporter>,
        )
    }))
}

inventory::submit! { ExporterKind::new("remote-write", remote_write) }

fn otlp(s: &Settings<'_>) -> Result<PlannedExporter, SettingsError> {
    let c: sampler_exporter_otlp::OtlpConfig = s.parse()?;
    c.validate().map_err(|e| s.invalid(e))?;
    Ok(PlannedExporter::new(format!("{c:?}"), move || {
        Ok(
            Box::new(sampler_exporter_otlp::OtlpExporter::from_config(c.clone())?)
                as Box<dyn Exporter>,
        )
    }))
}

inventory::submit! { ExporterKind::new("otlp", otlp) }
/// `[adapters.shm]`: the reader of a shared-memory directory (`spec/shm.md`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShmSettings {
    /// The directory the worker processes write their segments into.
    dir: PathBuf,
    /// How gauges of several processes are reported: `pid`, `sum`, `max`, `min`, `last`.
    #[serde(default = "default_gauges")]
    gauges: String,
    /// How long a dead writer's file stays before it is removed.
    #[serde(default = "default_grace")]
    grace: String,
}

fn default_gauges() -> String {
    "pid".into()
}

fn default_grace() -> String {
    "60s".into()
}

fn shm(s: &Settings<'_>) -> Result<PlannedAdapter, SettingsError> {
    let c: ShmSettings = s.parse()?;
    let rule: sampler_adapter_shm::GaugeRule =
        c.gauges.parse().map_err(|e: String| s.error("gauges", e))?;
    let grace = humantime::parse_duration(&c.grace).map_err(|e| {
        s.error(
            "grace",
            format!("invalid duration {:?}: {e} (try 30s, 5m)", c.grace),
        )
    })?;
    let summary = format!(
        "read segments in {}, gauges by {}, dead segments removed after {}",
        c.dir.display(),
        c.gauges,
        humantime::format_duration(grace)
    );
    // Checking builds nothing: the directory is looked at when the pipeline starts.
    Ok(PlannedAdapter::new(summary, move || {
        if !c.dir.is_dir() {
            return Err(format!("shm directory {} is not a directory", c.dir.display()).into());
        }
        let sampler = sampler_adapter_shm::ShmSampler::new(&c.dir)
            .gauges(rule)
            .grace(grace)
            .on_event(|e| eprintln!("sampler: {e}"));
        Ok(vec![Arc::new(sampler) as Arc<dyn Sampler>])
    }))
}

inventory::submit! { AdapterKind::new("shm", false, shm) }
