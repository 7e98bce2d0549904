//! Process and host samplers for [`sampler_api`], read from Linux `/proc`.
//!
//! - [`ProcessSampler`]: CPU time, resident, peak and virtual memory, threads, open file
//!   descriptors and their limit, context switches and uptime, for the process itself (in-app
//!   use) or for others picked by pid, pid file or name pattern ([`Target`]), the way an
//!   operator points a process monitor at a service. A target that goes away is reported once
//!   ([`Event`]) and picked up again when it returns.
//! - [`HostSampler`]: memory by state, swap, load averages, logical CPU count.
//!
//! Series are named by OpenTelemetry's semantic conventions (`process.cpu.time`,
//! `system.memory.usage`, …), with their units and attributes, so dashboards built on them
//! work unchanged; [`Naming::Prometheus`] gives the process series the names every Prometheus
//! client library's process collector uses instead (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, …). `spec/process.md` maps each series in both.
//!
//! Elsewhere than Linux both samplers write nothing and say so once.
//!
//! # Example: in an application
//!
//! ```
//! use sampler_adapter_process::{HostSampler, ProcessSampler};
//! use sampler_api::{Harvester, Registry};
//! use std::time::Duration;
//!
//! let registry = Registry::new();
//! let _me = registry.register(ProcessSampler::current());
//! let _host = registry.register(HostSampler::new());
//! let harvester = Harvester::builder().registry(registry).build();
//! let snapshot = harvester.harvest_now();
//! # #[cfg(target_os = "linux")]
//! assert!(snapshot.named("process.memory.usage").next().is_some());
//! harvester.shutdown(Duration::from_secs(1))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Example: watching a service
//!
//! ```
//! use sampler_adapter_process::{ProcessSampler, Target};
//! use sampler_api::Registry;
//!
//! let sampler = ProcessSampler::with_targets(vec![
//!     Target::PidFile("/run/nginx.pid".into()),
//!     Target::name("^postgres$")?,
//! ])
//! .on_event(|event| eprintln!("watch: {event}"));
//! let _registration = Registry::global().register(sampler);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod host;
mod process;
mod procfs;
mod target;

use std::sync::atomic::{AtomicBool, Ordering};

use sampler_api::{Registration, Registry};

pub use host::HostSampler;
pub use process::{Event, ProcessSampler};
pub use target::{
    GoneReason, NamePattern, PatternError, Shown, Target, TargetError, PID_FILE_LIMIT,
};

/// Which names the process series carry (`spec/process.md` has the table).
///
/// ```
/// use sampler_adapter_process::{Naming, ProcessSampler};
/// use sampler_api::{Harvester, Registry};
///
/// let registry = Registry::new();
/// let _r = registry.register(ProcessSampler::current().naming(Naming::Prometheus));
/// let snapshot = Harvester::builder().registry(registry).build().harvest_now();
/// # #[cfg(target_os = "linux")]
/// assert!(snapshot.find("process.resident_memory", &[]).is_some()); // process_resident_memory_bytes
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Naming {
    /// OpenTelemetry's semantic conventions for process metrics: `process.cpu.time{cpu_mode}`
    /// (seconds), `process.memory.usage`, `process.thread.count`, … The default.
    #[default]
    OpenTelemetry,
    /// The standard set of the Prometheus client libraries' process collectors:
    /// `process_cpu_seconds_total`, `process_resident_memory_bytes`,
    /// `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
    /// `process_start_time_seconds`, plus a few in the same style.
    Prometheus,
}

impl Naming {
    /// The name as the `--names` flag spells it: `otel` or `prometheus`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Naming::OpenTelemetry => "otel",
            Naming::Prometheus => "prometheus",
        }
    }
}

impl std::str::FromStr for Naming {
    type Err = String;

    /// `otel` (or `opentelemetry`) or `prometheus`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "otel" | "opentelemetry" => Ok(Naming::OpenTelemetry),
            "prometheus" => Ok(Naming::Prometheus),
            _ => Err(format!("unknown naming {s:?}: expected otel or prometheus")),
        }
    }
}

/// Whether this platform has a Linux `/proc` to read.
pub const SUPPORTED: bool = cfg!(target_os = "linux");

/// The "unsupported platform" error the first time it is asked for in this process, `None`
/// after, so it is said once however many samplers run.
fn unsupported_once() -> Option<TargetError> {
    static SAID: AtomicBool = AtomicBool::new(false);
    (!SAID.swap(true, Ordering::Relaxed)).then_some(TargetError::Unsupported {
        os: std::env::consts::OS,
    })
}

/// Registers a [`ProcessSampler::current`] and a [`HostSampler`] with `registry`; elsewhere
/// than Linux registers nothing and logs so once. Keep the registrations: dropping one
/// unregisters its sampler.
///
/// ```
/// let registrations = sampler_adapter_process::register_defaults(sampler_api::Registry::global());
/// # #[cfg(target_os = "linux")]
/// assert_eq!(registrations.len(), 2);
/// ```
pub fn register_defaults(registry: &Registry) -> Vec<Registration> {
    if !SUPPORTED {
        if let Some(e) = unsupported_once() {
            log::warn!("{e}");
        }
        return Vec::new();
    }
    vec![
        registry.register(ProcessSampler::current()),
        registry.register(HostSampler::new()),
    ]
}
