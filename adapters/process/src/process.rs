//! The process sampler: per-process readings for a set of targets, with gone/found reports.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use sampler_api::{Descriptor, Sampler, Writer};

use crate::procfs::{self, ProcInfo, ReadError};
use crate::target::{check_alive, GoneReason, NotAlive, Shown, Target, TargetError};
use crate::{unsupported_once, Naming, SUPPORTED};

/// The descriptors of one naming (`spec/process.md`).
struct Names {
    cpu: &'static Descriptor,
    /// The label key of the CPU mode, or `None` when CPU time is one series (user + system).
    cpu_mode: Option<&'static str>,
    resident: &'static Descriptor,
    peak: &'static Descriptor,
    virtual_size: &'static Descriptor,
    threads: &'static Descriptor,
    fds: &'static Descriptor,
    max_fds: &'static Descriptor,
    switches: &'static Descriptor,
    switch_type: &'static str,
    /// `process.uptime` (OpenTelemetry) or the start time (Prometheus).
    time: Time,
}

enum Time {
    Uptime(&'static Descriptor),
    Start(&'static Descriptor),
}

/// CPU times are recorded in microseconds and shown in seconds: a clock tick (10 ms on usual
/// kernels) is a whole number of microseconds for every usual tick rate.
const MICROS: u64 = 1_000_000;

static OTEL: Names = Names {
    cpu: &Descriptor::fractional_counter(
        "process.cpu.time",
        "s",
        MICROS,
        "CPU time of the process, by cpu_mode (user, system): utime and stime of /proc/PID/stat, to the clock tick",
    ),
    cpu_mode: Some("cpu_mode"),
    resident: &Descriptor::gauge(
        "process.memory.usage",
        "By",
        "physical memory in use: the resident set size (VmRSS of /proc/PID/status)",
    ),
    peak: &Descriptor::gauge(
        "process.memory.peak_usage",
        "By",
        "the highest resident set size so far (VmHWM of /proc/PID/status)",
    ),
    virtual_size: &Descriptor::gauge(
        "process.memory.virtual",
        "By",
        "committed virtual memory (VmSize of /proc/PID/status)",
    ),
    threads: &Descriptor::gauge(
        "process.thread.count",
        "{thread}",
        "threads of the process (Threads of /proc/PID/status)",
    ),
    fds: &Descriptor::gauge(
        "process.unix.file_descriptor.count",
        "{file_descriptor}",
        "file descriptors open in the process (entries of /proc/PID/fd)",
    ),
    max_fds: &Descriptor::gauge(
        "process.unix.file_descriptor.limit",
        "{file_descriptor}",
        "the most file descriptors the process may open (soft Max open files of /proc/PID/limits)",
    ),
    switches: &Descriptor::counter(
        "process.context_switches",
        "{context_switch}",
        "times the process was context switched, by process_context_switch_type (voluntary, involuntary)",
    ),
    switch_type: "process_context_switch_type",
    time: Time::Uptime(&Descriptor::gauge(
        "process.uptime",
        "s",
        "time since the process started",
    )),
};

static PROMETHEUS: Names = Names {
    cpu: &Descriptor::fractional_counter(
        "process.cpu.seconds",
        "s",
        MICROS,
        "total user and system CPU time spent in seconds",
    ),
    cpu_mode: None,
    resident: &Descriptor::gauge(
        "process.resident_memory",
        "By",
        "resident memory size in bytes",
    ),
    peak: &Descriptor::gauge(
        "process.resident_memory.max",
        "By",
        "highest resident memory size so far in bytes",
    ),
    virtual_size: &Descriptor::gauge(
        "process.virtual_memory",
        "By",
        "virtual memory size in bytes",
    ),
    threads: &Descriptor::gauge(
        "process.threads",
        "1",
        "number of OS threads in the process",
    ),
    fds: &Descriptor::gauge("process.open_fds", "1", "number of open file descriptors"),
    max_fds: &Descriptor::gauge(
        "process.max_fds",
        "1",
        "maximum number of open file descriptors",
    ),
    switches: &Descriptor::counter(
        "process.context_switches",
        "1",
        "context switches of the process, by type (voluntary, involuntary)",
    ),
    switch_type: "type",
    time: Time::Start(&Descriptor::gauge(
        "process.start_time",
        "s",
        "start time of the process since the Unix epoch in seconds",
    )),
};

impl Naming {
    fn names(self) -> &'static Names {
        match self {
            Naming::Prometheus => &PROMETHEUS,
            _ => &OTEL,
        }
    }
}

static UP: Descriptor = Descriptor::gauge(
    "process.up",
    "1",
    "1 while the target resolves to a live process, 0 while it resolves to none",
);

/// A report about a watched target, given to the handler set with
/// [`ProcessSampler::on_event`] (or logged at `warn`/`info` level when none is set).
///
/// Each disappearance is reported once, and each return once.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The target resolves to no process (at the first harvest, or after it was found), or
    /// could not be read at all (its pid file or `/proc` unreadable: then
    /// [`TargetError::is_unknown`]), with the true cause. Not sent when a
    /// [`Gone`](Event::Gone) already told of the same disappearance; a failure to read is sent
    /// once until the cause changes or the target reads again.
    Missing {
        /// The target, in words (`pid 42`, `pid file /run/app.pid`, `name "nginx"`).
        target: String,
        /// Why it resolves to nothing.
        error: TargetError,
    },
    /// A process the target resolved to at the last harvest is gone.
    Gone {
        /// The target, in words.
        target: String,
        /// The process id.
        pid: u32,
        /// Its name (`comm`).
        name: String,
        /// Why it counts as gone.
        reason: GoneReason,
    },
    /// The target resolves to a process it did not resolve to at the last harvest (a pid file
    /// rewritten by a restart, a new process matching a name). Not sent at the first harvest.
    Found {
        /// The target, in words.
        target: String,
        /// The process id.
        pid: u32,
        /// Its name (`comm`).
        name: String,
    },
    /// This platform has no Linux `/proc`: nothing is sampled. Sent once per process.
    Unsupported(TargetError),
}

impl Event {
    /// Whether this event tells of a problem (missing, gone, unsupported) rather than a return.
    pub fn is_problem(&self) -> bool {
        !matches!(self, Event::Found { .. })
    }
}

impl fmt::Display for Event {
    /// One line: `pid file /run/app.pid: process 42 (app) is gone: no such process (…)`.
    /// Process names and paths are shown with control characters escaped (see [`Shown`]), so
    /// an event is always one line and never reaches the terminal as an escape sequence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Missing { error, .. } => write!(f, "{error}"),
            Event::Gone {
                target,
                pid,
                name,
                reason,
            } => write!(
                f,
                "{target}: process {pid} ({}) is gone: {reason}",
                Shown(name)
            ),
            Event::Found { target, pid, name } => {
                write!(f, "{target}: process {pid} ({}) found", Shown(name))
            }
            Event::Unsupported(e) => write!(f, "{e}"),
        }
    }
}

type Handler = Arc<dyn Fn(&Event) + Send + Sync>;

/// What the sampler remembers about one target between harvests.
#[derive(Debug, Default)]
struct TargetState {
    /// The processes seen at the last harvest: pid to name.
    seen: BTreeMap<u32, String>,
    /// Whether the target's current absence was already reported.
    missing: bool,
    /// The failure to read the target last reported, while it lasts.
    failure: Option<String>,
    /// Whether a harvest has run.
    started: bool,
}

/// Samples processes read from Linux `/proc`: CPU time, memory, threads, file descriptors,
/// context switches and uptime, for the process itself or for others picked by pid, pid file
/// or name pattern.
///
/// Series are named by OpenTelemetry's semantic conventions unless [`naming`](Self::naming)
/// asks for the Prometheus client libraries' names (`spec/process.md`):
///
/// | OpenTelemetry ([`Naming::OpenTelemetry`]) | Prometheus ([`Naming::Prometheus`]) | from |
/// |---|---|---|
/// | `process.cpu.time{cpu_mode=user\|system}` (counter, `s`) | `process_cpu_seconds_total` (user + system) | `utime`, `stime` of `/proc/PID/stat` |
/// | `process.memory.usage` (`By`) | `process_resident_memory_bytes` | `VmRSS` of `/proc/PID/status` |
/// | `process.memory.peak_usage` (`By`) | `process_resident_memory_max_bytes` | `VmHWM` |
/// | `process.memory.virtual` (`By`) | `process_virtual_memory_bytes` | `VmSize` |
/// | `process.thread.count` | `process_threads` | `Threads` |
/// | `process.unix.file_descriptor.count` | `process_open_fds` | entries of `/proc/PID/fd` (left out when not readable) |
/// | `process.unix.file_descriptor.limit` | `process_max_fds` | soft `Max open files` of `/proc/PID/limits` |
/// | `process.context_switches{process_context_switch_type}` (counter) | `process_context_switches_total{type}` | `*_ctxt_switches` (see below) |
/// | `process.uptime` (`s`) | `process_start_time_seconds` | `starttime` plus the boot time (`btime` of `/proc/stat`) |
/// | `process.up{target}` | `process_up{target}` | 1 while the target resolves to a live process, else 0 (not for [`Target::Current`]) |
///
/// The Prometheus names are those of the dotted names `process.cpu.seconds`,
/// `process.resident_memory`, … as the Prometheus exporter maps them. Attribute names are
/// written with `_` for `.` (`cpu_mode` for `cpu.mode`), since label keys hold no dots.
///
/// CPU time is a counter in seconds that keeps the fraction (recorded in microseconds with a
/// divisor of 1,000,000, see [`Descriptor::fractional_counter`]), so exporters derive rates and
/// detect resets as for any counter; its resolution is one clock tick (10 ms on usual
/// kernels).
///
/// The kernel counts context switches per thread, and `/proc/PID/status` shows the main
/// thread's: for other processes that is what is reported (summing live threads would make the
/// counter drop when a thread exits). For [`Target::Current`] the counts come from
/// `getrusage(RUSAGE_SELF)` and cover every thread, exited ones included.
///
/// Series of [`Target::Current`] carry no labels. Other processes are labelled `pid` and
/// `name` (the kernel's `comm`), plus `pidfile` when found through a pid file. A process that
/// several targets of one sampler resolve to is reported once, under the first.
///
/// A target that resolves to nothing is reported once through [`Event`]s, its processes'
/// series vanish from the snapshot, `process.up` turns 0, and it is picked up again when it
/// returns (a pid file rewritten by a restart). Elsewhere than Linux the sampler writes
/// nothing and says so once.
///
/// ```
/// use sampler_adapter_process::ProcessSampler;
/// use sampler_api::{Harvester, Registry};
///
/// let registry = Registry::new();
/// let _registration = registry.register(ProcessSampler::current());
/// let snapshot = Harvester::builder().registry(registry).build().harvest_now();
/// # #[cfg(target_os = "linux")]
/// assert!(snapshot.find("process.cpu.time", &[("cpu_mode", "user")]).is_some());
/// ```
pub struct ProcessSampler {
    name: String,
    targets: Vec<Target>,
    /// Each target's [`Target::spec`], the `target` label of `process.up`.
    specs: Vec<String>,
    state: Mutex<Vec<TargetState>>,
    handler: Option<Handler>,
    naming: Naming,
}

impl fmt::Debug for ProcessSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessSampler")
            .field("name", &self.name)
            .field("targets", &self.targets)
            .field("naming", &self.naming)
            .finish()
    }
}

impl ProcessSampler {
    /// Samples the process it runs in.
    pub fn current() -> Self {
        Self::with_targets(vec![Target::Current])
    }

    /// Samples one target.
    pub fn new(target: Target) -> Self {
        Self::with_targets(vec![target])
    }

    /// Samples several targets; a process several of them resolve to is reported once.
    pub fn with_targets(targets: Vec<Target>) -> Self {
        let specs: Vec<String> = targets.iter().map(Target::spec).collect();
        let name = match targets.as_slice() {
            [Target::Current] => "process".to_owned(),
            _ => format!("process[{}]", specs.join(",")),
        };
        let state = targets.iter().map(|_| TargetState::default()).collect();
        ProcessSampler {
            name,
            targets,
            specs,
            state: Mutex::new(state),
            handler: None,
            naming: Naming::default(),
        }
    }

    /// Names the series by `naming` (default [`Naming::OpenTelemetry`]).
    ///
    /// ```
    /// use sampler_adapter_process::{Naming, ProcessSampler};
    /// let sampler = ProcessSampler::current().naming(Naming::Prometheus);
    /// assert_eq!(sampler.naming_used(), Naming::Prometheus);
    /// ```
    pub fn naming(mut self, naming: Naming) -> Self {
        self.naming = naming;
        self
    }

    /// The naming the series carry.
    pub fn naming_used(&self) -> Naming {
        self.naming
    }

    /// Sends gone/found/missing reports to `handler` instead of the `log` crate. The handler
    /// runs on the harvest thread: keep it short.
    ///
    /// ```
    /// use sampler_adapter_process::{ProcessSampler, Target};
    /// let sampler = ProcessSampler::new(Target::Pid(1))
    ///     .on_event(|event| eprintln!("sampler: {event}"));
    /// # let _ = sampler;
    /// ```
    pub fn on_event(mut self, handler: impl Fn(&Event) + Send + Sync + 'static) -> Self {
        self.handler = Some(Arc::new(handler));
        self
    }

    /// The targets, in the order given.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Resolves every target now and returns why those that resolve to nothing do, without
    /// reporting events or touching the sampler's memory (a one-shot command checks its
    /// targets with this before harvesting). Off Linux it returns one
    /// [`TargetError::Unsupported`].
    pub fn check(&self) -> Vec<TargetError> {
        if !SUPPORTED {
            return vec![TargetError::Unsupported {
                os: std::env::consts::OS,
            }];
        }
        let me = std::process::id();
        self.targets
            .iter()
            .filter_map(|t| t.resolve(me).err())
            .collect()
    }

    fn report(&self, event: Event) {
        match &self.handler {
            Some(h) => h(&event),
            None if event.is_problem() => log::warn!("{event}"),
            None => log::info!("{event}"),
        }
    }
}

impl Sampler for ProcessSampler {
    fn sample(&self, out: &mut Writer<'_>) {
        if !SUPPORTED {
            if let Some(e) = unsupported_once() {
                self.report(Event::Unsupported(e));
            }
            return;
        }
        let me = std::process::id();
        let mut states = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut written: HashSet<u32> = HashSet::new();
        let mut events = Vec::new();
        let targets = self.targets.iter().zip(&self.specs);
        for ((target, spec), st) in targets.zip(states.iter_mut()) {
            // The target in words, for events only.
            let words = || target.to_string();
            let (live, kept, error) = read_target(target, me);
            let (error, unknown) = match error {
                Some(e) if e.is_unknown() => (None, Some(e)),
                e => (e, None),
            };
            if let Some(error) = unknown {
                // Whether its processes are there is not known: nothing is reported gone, no
                // `process.up` is written, and the cause is told once.
                let said = error.to_string();
                if st.failure.as_ref() != Some(&said) {
                    st.failure = Some(said);
                    events.push(Event::Missing {
                        target: words(),
                        error,
                    });
                }
                st.started = true;
                continue;
            }
            st.failure = None;
            let mut gone_now = 0;
            for (pid, name) in &st.seen {
                if live.iter().any(|p| p.pid == *pid) || kept.contains(pid) {
                    continue;
                }
                // A process the target no longer resolves to but that is still there (its pid
                // file rewritten or removed) is not gone: the target's error tells why.
                if let Some(reason) = gone_reason(*pid) {
                    gone_now += 1;
                    events.push(Event::Gone {
                        target: words(),
                        pid: *pid,
                        name: name.clone(),
                        reason,
                    });
                }
            }
            if st.started {
                for p in &live {
                    if !st.seen.contains_key(&p.pid) {
                        events.push(Event::Found {
                            target: words(),
                            pid: p.pid,
                            name: p.name.clone(),
                        });
                    }
                }
            }
            if live.is_empty() {
                if !st.missing && gone_now == 0 {
                    if let Some(error) = error {
                        events.push(Event::Missing {
                            target: words(),
                            error,
                        });
                    }
                }
                st.missing = true;
            } else {
                st.missing = false;
            }
            st.started = true;
            let mut seen: BTreeMap<u32, String> =
                live.iter().map(|p| (p.pid, p.name.clone())).collect();
            for pid in kept {
                if let Some(name) = st.seen.get(&pid) {
                    seen.insert(pid, name.clone());
                }
            }
            st.seen = seen;

            if !matches!(target, Target::Current) {
                let up = if live.is_empty() { 0.0 } else { 1.0 };
                out.gauge(&UP, &[("target", spec)], up);
            }
            let pidfile = match target {
                Target::PidFile(path) => Some(path.display().to_string()),
                _ => None,
            };
            for p in &live {
                if !written.insert(p.pid) {
                    continue;
                }
                let pid = p.pid.to_string();
                let mut labels: Vec<(&str, &str)> = Vec::with_capacity(4);
                if !matches!(target, Target::Current) {
                    labels.push(("pid", &pid));
                    labels.push(("name", &p.name));
                    if let Some(f) = &pidfile {
                        labels.push(("pidfile", f));
                    }
                }
                let own = matches!(target, Target::Current);
                write_process(out, self.naming.names(), p, &labels, own);
            }
        }
        drop(states);
        for e in events {
            self.report(e);
        }
    }

    fn name(&self) -> &str {
        &self.name
    }
}

/// Resolves a target and reads each of its processes. Processes that vanish between the two
/// steps are left out; when none is left, the error says why. The second list holds the
/// processes that are there but could not be read this time (out of descriptors, no
/// permission): neither live nor gone.
fn read_target(target: &Target, me: u32) -> (Vec<ProcInfo>, Vec<u32>, Option<TargetError>) {
    let pids = match target.resolve(me) {
        Ok(pids) => pids,
        Err(e) => return (Vec::new(), Vec::new(), Some(e)),
    };
    let mut live = Vec::with_capacity(pids.len());
    let mut kept = Vec::new();
    let mut last_failure = None;
    for pid in pids {
        let failure = match procfs::read_process(pid) {
            Ok(info) => {
                live.push(info);
                continue;
            }
            Err(ReadError::Exited) => NotAlive::Gone(GoneReason::Exited),
            Err(ReadError::Missing) => NotAlive::Gone(GoneReason::NoSuchProcess(pid)),
            Err(ReadError::Unreadable(e)) => match procfs::exists(pid) {
                Some(false) => NotAlive::Gone(GoneReason::NoSuchProcess(pid)),
                _ => {
                    kept.push(pid);
                    NotAlive::Unreadable(e)
                }
            },
        };
        // An unreadable process outweighs a gone one: the target's state is then unknown.
        if matches!(failure, NotAlive::Unreadable(_))
            || !matches!(last_failure, Some((_, NotAlive::Unreadable(_))))
        {
            last_failure = Some((pid, failure));
        }
    }
    let error = match (live.is_empty(), last_failure) {
        (true, Some((pid, failure))) => Some(failure.into_error(
            pid,
            match target {
                Target::PidFile(path) => Some(path.as_path()),
                _ => None,
            },
        )),
        _ => None,
    };
    (live, kept, error)
}

/// Why a process seen before is gone, or `None` when it is still there (or whether it is cannot
/// be told).
fn gone_reason(pid: u32) -> Option<GoneReason> {
    match check_alive(pid) {
        Ok(()) | Err(NotAlive::Unreadable(_)) => None,
        Err(NotAlive::Gone(reason)) => Some(reason),
    }
}

fn write_process(
    out: &mut Writer<'_>,
    names: &Names,
    p: &ProcInfo,
    labels: &[(&str, &str)],
    own: bool,
) {
    let s = &p.status;
    for (d, v) in [
        (names.resident, s.rss),
        (names.peak, s.peak_rss),
        (names.virtual_size, s.virtual_size),
        (names.threads, s.threads),
        (names.fds, p.open_fds),
        (names.max_fds, procfs::read_max_open_files(p.pid)),
    ] {
        if let Some(v) = v {
            out.gauge(d, labels, v as f64);
        }
    }
    let ticks = procfs::clock_ticks();
    let micros = |t: u64| (t as u128 * MICROS as u128 / ticks as u128) as u64;
    match names.cpu_mode {
        Some(key) => {
            for (mode, t) in [("user", p.stat.utime), ("system", p.stat.stime)] {
                let mut l = labels.to_vec();
                l.push((key, mode));
                out.counter(names.cpu, &l, micros(t));
            }
        }
        None => out.counter(
            names.cpu,
            labels,
            micros(p.stat.utime.saturating_add(p.stat.stime)),
        ),
    }
    let (voluntary, involuntary) = match own.then(procfs::own_context_switches).flatten() {
        Some((v, i)) => (Some(v), Some(i)),
        None => (s.voluntary, s.involuntary),
    };
    for (kind, v) in [("voluntary", voluntary), ("involuntary", involuntary)] {
        if let Some(v) = v {
            let mut l = labels.to_vec();
            l.push((names.switch_type, kind));
            out.counter(names.switches, &l, v);
        }
    }
    if let Some(boot) = procfs::boot_time() {
        let start = boot as f64 + p.stat.starttime as f64 / ticks as f64;
        match names.time {
            Time::Start(d) => out.gauge(d, labels, start),
            Time::Uptime(d) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                out.gauge(d, labels, (now - start).max(0.0));
            }
        }
    }
}
