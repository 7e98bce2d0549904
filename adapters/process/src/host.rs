//! The host sampler: memory, swap, load and CPU count of the machine.

use std::path::Path;

use sampler_api::{Descriptor, Sampler, Writer};

use crate::procfs;
use crate::{unsupported_once, SUPPORTED};

static MEM_TOTAL: Descriptor = Descriptor::gauge(
    "host.memory.total",
    "By",
    "total usable memory (MemTotal of /proc/meminfo)",
);
static MEM_AVAILABLE: Descriptor = Descriptor::gauge(
    "host.memory.available",
    "By",
    "memory available to start new work without swapping (MemAvailable)",
);
static SWAP_USED: Descriptor = Descriptor::gauge(
    "host.swap.used",
    "By",
    "swap in use (SwapTotal minus SwapFree)",
);
static LOAD: Descriptor = Descriptor::gauge(
    "host.load",
    "1",
    "load average over 1, 5 and 15 minutes (label period)",
);
static CPU_COUNT: Descriptor = Descriptor::gauge("host.cpu.count", "1", "CPUs online");

/// Samples the host from Linux `/proc`: `host.memory.total`, `host.memory.available`,
/// `host.swap.used` (bytes), `host.load{period=1m|5m|15m}` and `host.cpu.count`.
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
/// assert!(snapshot.find("host.load", &[("period", "1m")]).is_some());
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
            if let Some(v) = m.total {
                out.gauge(&MEM_TOTAL, &[], v as f64);
            }
            if let Some(v) = m.available {
                out.gauge(&MEM_AVAILABLE, &[], v as f64);
            }
            if let (Some(t), Some(f)) = (m.swap_total, m.swap_free) {
                out.gauge(&SWAP_USED, &[], t.saturating_sub(f) as f64);
            }
        }
        if let Some(load) = procfs::read_proc(Path::new("/proc/loadavg"), procfs::PROC_LIMIT)
            .ok()
            .and_then(|t| procfs::parse_loadavg(&String::from_utf8_lossy(&t)))
        {
            for (period, v) in ["1m", "5m", "15m"].into_iter().zip(load) {
                out.gauge(&LOAD, &[("period", period)], v);
            }
        }
        out.gauge(&CPU_COUNT, &[], procfs::cpu_count() as f64);
    }

    fn name(&self) -> &str {
        "host"
    }
}
