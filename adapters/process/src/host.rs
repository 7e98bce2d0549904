//! The host sampler: memory, swap, load and CPU count of the machine, named by OpenTelemetry's
//! semantic conventions for system metrics.

use std::path::Path;

use sampler_api::{Descriptor, Sampler, Writer};

use crate::procfs;
use crate::{unsupported_once, SUPPORTED};

static MEMORY_USAGE: Descriptor = Descriptor::gauge(
    "system.memory.usage",
    "By",
    "memory by system_memory_state: used (MemTotal minus MemAvailable of /proc/meminfo), free, buffers, cached",
);
static MEMORY_LIMIT: Descriptor = Descriptor::gauge(
    "system.memory.limit",
    "By",
    "total usable memory (MemTotal of /proc/meminfo)",
);
static MEMORY_AVAILABLE: Descriptor = Descriptor::gauge(
    "system.linux.memory.available",
    "By",
    "memory available to start new work without swapping (MemAvailable of /proc/meminfo)",
);
static PAGING_USAGE: Descriptor = Descriptor::gauge(
    "system.paging.usage",
    "By",
    "swap by system_paging_state: used (SwapTotal minus SwapFree of /proc/meminfo), free",
);
static LOAD: [Descriptor; 3] = [
    Descriptor::gauge(
        "system.cpu.load_average.1m",
        "{thread}",
        "load average over 1 minute (/proc/loadavg)",
    ),
    Descriptor::gauge(
        "system.cpu.load_average.5m",
        "{thread}",
        "load average over 5 minutes (/proc/loadavg)",
    ),
    Descriptor::gauge(
        "system.cpu.load_average.15m",
        "{thread}",
        "load average over 15 minutes (/proc/loadavg)",
    ),
];
static CPU_COUNT: Descriptor =
    Descriptor::gauge("system.cpu.logical.count", "{cpu}", "logical CPUs online");

/// Samples the host from Linux `/proc`, under OpenTelemetry's semantic conventions for system
/// metrics (`spec/process.md` maps them to Prometheus names):
///
/// | series | unit | from |
/// |---|---|---|
/// | `system.memory.usage{system_memory_state=used\|free\|buffers\|cached}` | `By` | `MemTotal − MemAvailable`, `MemFree`, `Buffers`, `Cached` of `/proc/meminfo` |
/// | `system.memory.limit` | `By` | `MemTotal` |
/// | `system.linux.memory.available` | `By` | `MemAvailable` |
/// | `system.paging.usage{system_paging_state=used\|free}` | `By` | `SwapTotal − SwapFree`, `SwapFree` |
/// | `system.cpu.load_average.1m`, `.5m`, `.15m` | `{thread}` | `/proc/loadavg` |
/// | `system.cpu.logical.count` | `{cpu}` | CPUs online |
///
/// A file that cannot be read leaves its series out of that harvest. Elsewhere than Linux the
/// sampler writes nothing and logs so once (at `warn` level, through the `log` crate).
///
/// ```
/// use sampler_adapter_process::HostSampler;
/// use sampler_api::{Harvester, Registry};
///
/// let registry = Registry::new();
/// let _registration = registry.register(HostSampler::new());
/// let snapshot = Harvester::builder().registry(registry).build().harvest_now();
/// # #[cfg(target_os = "linux")]
/// assert!(snapshot.find("system.cpu.load_average.1m", &[]).is_some());
/// ```
#[derive(Debug, Default)]
pub struct HostSampler {
    _private: (),
}

impl HostSampler {
    /// A host sampler.
    pub fn new() -> Self {
        HostSampler { _private: () }
    }
}

impl Sampler for HostSampler {
    fn sample(&self, out: &mut Writer<'_>) {
        if !SUPPORTED {
            if let Some(e) = unsupported_once() {
                log::warn!("{e}");
            }
            return;
        }
        if let Ok(raw) = procfs::read_proc(Path::new("/proc/meminfo"), procfs::PROC_LIMIT) {
            let m = procfs::parse_meminfo(&String::from_utf8_lossy(&raw));
            let used = match (m.total, m.available) {
                (Some(t), Some(a)) => Some(t.saturating_sub(a)),
                _ => None,
            };
            for (state, v) in [
                ("used", used),
                ("free", m.free),
                ("buffers", m.buffers),
                ("cached", m.cached),
            ] {
                if let Some(v) = v {
                    out.gauge(&MEMORY_USAGE, &[("system_memory_state", state)], v as f64);
                }
            }
            if let Some(v) = m.total {
                out.gauge(&MEMORY_LIMIT, &[], v as f64);
            }
            if let Some(v) = m.available {
                out.gauge(&MEMORY_AVAILABLE, &[], v as f64);
            }
            if let (Some(t), Some(f)) = (m.swap_total, m.swap_free) {
                let used = t.saturating_sub(f) as f64;
                out.gauge(&PAGING_USAGE, &[("system_paging_state", "used")], used);
                out.gauge(&PAGING_USAGE, &[("system_paging_state", "free")], f as f64);
            }
        }
        if let Some(load) = procfs::read_proc(Path::new("/proc/loadavg"), procfs::PROC_LIMIT)
            .ok()
            .and_then(|t| procfs::parse_loadavg(&String::from_utf8_lossy(&t)))
        {
            for (d, v) in LOAD.iter().zip(load) {
                out.gauge(d, &[], v);
            }
        }
        out.gauge(&CPU_COUNT, &[], procfs::cpu_count() as f64);
    }

    fn name(&self) -> &str {
        "host"
    }
}
