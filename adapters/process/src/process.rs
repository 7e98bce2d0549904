//! The process sampler: per-process readings for a set of targets, with gone/found reports.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use sampler_api::{Descriptor, Sampler, Writer};

use crate::procfs::{self, ProcInfo, ReadError};
use crate::target::{check_alive, GoneReason, NotAlive, Shown, Target, TargetError};
use crate::{unsupported_once, SUPPORTED};

static RSS: Descriptor = Descriptor::gauge(
    "process.memory.rss",
    "By",
    "resident set size (VmRSS of /proc/PID/status)",
);
static PEAK_RSS: Descriptor = Descriptor::gauge(
    "process.memory.peak_rss",
    "By",
    "peak resident set size (VmHWM)",
);
static VIRTUAL: Descriptor = Descriptor::gauge(
    "process.memory.virtual",
    "By",
    "virtual memory size (VmSize)",
);
static CPU_USER: Descriptor = Descriptor::counter(
    "process.cpu.user",
    "us",
    "CPU time spent in user mode, in microseconds (clock-tick resolution)",
);
static CPU_SYSTEM: Descriptor = Descriptor::counter(
    "process.cpu.system",
    "us",
    "CPU time spent in kernel mode, in microseconds (clock-tick resolution)",
);
static THREADS: Descriptor = Descriptor::gauge("process.threads", "1", "threads");
static OPEN_FDS: Descriptor = Descriptor::gauge("process.open_fds", "1", "open file descriptors");
static CTX_SWITCHES: Descriptor = Descriptor::counter(
    "process.context_switches",
    "1",
    "context switches, by kind (voluntary, involuntary); of the main thread for other processes",
);
static START_TIME: Descriptor = Descriptor::gauge(
    "process.start_time",
    "s",
    "when the process started, in Unix seconds",
);
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

/// Samples processes read from Linux `/proc`: memory, CPU, threads, file descriptors, context
/// switches and start time, for the process itself or for others picked by pid, pid file or
/// name pattern.
///
/// | series | kind | unit | from |
/// |---|---|---|---|
/// | `process.memory.rss` | gauge | `By` | `VmRSS` in `/proc/PID/status` |
/// | `process.memory.peak_rss` | gauge | `By` | `VmHWM` |
/// | `process.memory.virtual` | gauge | `By` | `VmSize` |
/// | `process.cpu.user`, `process.cpu.system` | counter | `us` | `utime`, `stime` in `/proc/PID/stat` |
/// | `process.threads` | gauge | `1` | `Threads` |
/// | `process.open_fds` | gauge | `1` | entries of `/proc/PID/fd` (left out when not readable) |
/// | `process.context_switches{kind=voluntary\|involuntary}` | counter | `1` | `*_ctxt_switches` (see below) |
/// | `process.start_time` | gauge | `s` | `starttime` plus the boot time (`btime` of `/proc/stat`), Unix seconds |
/// | `process.up{target}` | gauge | `1` | 1 while the target resolves to a live process, else 0 (not for [`Target::Current`]) |
///
/// The kernel counts context switches per thread, and `/proc/PID/status` shows the main
/// thread's: for other processes that is what is reported (summing live threads would make the
/// counter drop when a thread exits). For [`Target::Current`] the counts come from
/// `getrusage(RUSAGE_SELF)` and cover every thread, exited ones included.
///
/// CPU times are counters in microseconds rather than gauges in seconds, so that exporters
/// derive rates and detect resets as for any counter; their resolution is one clock tick
/// (10 ms on usual kernels).
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
/// assert!(snapshot.find("process.memory.rss", &[]).is_some());
/// ```
pub struct ProcessSampler {
    name: String,
    targets: Vec<Target>,
    /// Each target's [`Target::spec`], the `target` label of `process.up`.
    specs: Vec<String>,
    state: Mutex<Vec<TargetState>>,
    handler: Option<Handler>,
}

impl fmt::Debug for ProcessSampler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessSampler")
            .field("name", &self.name)
            .field("targets", &self.targets)
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
        }
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
                write_process(out, p, &labels, matches!(target, Target::Current));
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

fn write_process(out: &mut Writer<'_>, p: &ProcInfo, labels: &[(&str, &str)], own: bool) {
    let s = &p.status;
    for (d, v) in [
        (&RSS, s.rss),
        (&PEAK_RSS, s.peak_rss),
        (&VIRTUAL, s.virtual_size),
        (&THREADS, s.threads),
        (&OPEN_FDS, p.open_fds),
    ] {
        if let Some(v) = v {
            out.gauge(d, labels, v as f64);
        }
    }
    let ticks = procfs::clock_ticks();
    let micros = |t: u64| (t as u128 * 1_000_000 / ticks as u128) as u64;
    out.counter(&CPU_USER, labels, micros(p.stat.utime));
    out.counter(&CPU_SYSTEM, labels, micros(p.stat.stime));
    let (voluntary, involuntary) = match own.then(procfs::own_context_switches).flatten() {
        Some((v, i)) => (Some(v), Some(i)),
        None => (s.voluntary, s.involuntary),
    };
    for (kind, v) in [("voluntary", voluntary), ("involuntary", involuntary)] {
        if let Some(v) = v {
            let mut l = labels.to_vec();
            l.push(("kind", kind));
            out.counter(&CTX_SWITCHES, &l, v);
        }
    }
    if let Some(boot) = procfs::boot_time() {
        let start = boot as f64 + p.stat.starttime as f64 / ticks as f64;
        out.gauge(&START_TIME, labels, start);
    }
}
