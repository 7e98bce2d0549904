//! The harvest loop: polls every sampler on an interval aligned to the wall clock, builds one
//! immutable snapshot and hands it to each exporter's own worker over a bounded queue.
//!
//! Invariants (see `spec/sampler-api.md`, "Harvest"):
//! - a sampler that panics loses only its own readings for that harvest and is counted;
//! - a sampler over its time budget is reported, and the others still run; one that does not
//!   return at all is left to its own thread and skipped until it does;
//! - the harvest never waits on an exporter: when an exporter's queue is full, its oldest
//!   snapshot is dropped and counted;
//! - `shutdown` runs one last harvest and lets every exporter flush it before a deadline.

use std::collections::HashMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::descriptor::Descriptor;
use crate::event::{emit, Event};
use crate::exporter::Exporter;
use crate::local::lock;
use crate::registry::{Held, Registered, Registry};
use crate::sampler::{Sampler, SamplerState, Writer};
use crate::snapshot::{Series, Snapshot};

/// The default harvest interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// The default number of snapshots an exporter's queue holds.
pub const DEFAULT_QUEUE: usize = 4;

static HARVEST_DURATION: Descriptor = Descriptor::gauge(
    "sampler.harvest.duration",
    "s",
    "time the last harvest took to poll every sampler",
);
static HARVEST_COUNT: Descriptor =
    Descriptor::counter("sampler.harvest.count", "1", "harvests run");
static HARVEST_SERIES: Descriptor = Descriptor::gauge(
    "sampler.harvest.series",
    "1",
    "series in the last snapshot, self-metrics aside",
);
static HARVEST_SKIPPED: Descriptor = Descriptor::counter(
    "sampler.harvest.skipped",
    "1",
    "interval ticks skipped because a harvest ran past them",
);
static SAMPLER_ERRORS: Descriptor = Descriptor::counter(
    "sampler.sampler.errors",
    "1",
    "sampler failures by reason: panic, budget (over its time budget), hung (abandoned past twice its budget), rejected (bad reading)",
);
static SAMPLER_DURATION: Descriptor = Descriptor::gauge(
    "sampler.sampler.duration",
    "s",
    "time each sampler took in the last harvest",
);
static EXPORTER_DROPPED: Descriptor = Descriptor::counter(
    "sampler.exporter.dropped",
    "1",
    "snapshots dropped because the exporter's queue was full",
);
static EXPORTER_QUEUE: Descriptor = Descriptor::gauge(
    "sampler.exporter.queue_depth",
    "1",
    "snapshots waiting in the exporter's queue",
);
static EXPORTER_ERRORS: Descriptor =
    Descriptor::counter("sampler.exporter.errors", "1", "failed exports");
static EXPORTER_EXPORTED: Descriptor =
    Descriptor::counter("sampler.exporter.exported", "1", "snapshots exported");
static EXPORTER_DURATION: Descriptor = Descriptor::gauge(
    "sampler.exporter.duration",
    "s",
    "time the last export took",
);

/// Configures and starts a [`Harvester`].
///
/// ```
/// use sampler_api::{Descriptor, Harvester, Registry};
/// use std::time::Duration;
/// static JOBS: Descriptor = Descriptor::counter("jobs.done", "1", "jobs done");
/// let registry = Registry::new();
/// let jobs = registry.counter(&JOBS);
/// let harvester = Harvester::builder()
///     .registry(registry)
///     .interval(Duration::from_secs(10))
///     .build();
/// jobs.inc();
/// let snapshot = harvester.harvest_now();
/// assert!(snapshot.find("jobs.done", &[]).is_some());
/// harvester.shutdown(Duration::from_secs(1)).unwrap();
/// ```
pub struct HarvesterBuilder {
    registry: Registry,
    interval: Duration,
    exporters: Vec<Box<dyn Exporter>>,
    queue: usize,
    budget: Option<Duration>,
    harvest_at_start: bool,
    self_metrics: bool,
}

impl fmt::Debug for HarvesterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HarvesterBuilder")
            .field("interval", &self.interval)
            .field("exporters", &self.exporters.len())
            .finish()
    }
}

impl HarvesterBuilder {
    /// The registry to poll (default: [`Registry::global`]).
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// The interval between harvests (default 10 s; at least 1 ms). Harvests fall on multiples
    /// of the interval since the Unix epoch.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Adds an exporter, run on its own thread.
    pub fn exporter(mut self, exporter: impl Exporter + 'static) -> Self {
        self.exporters.push(Box::new(exporter));
        self
    }

    /// Adds a boxed exporter (as built from a config file).
    pub fn boxed_exporter(mut self, exporter: Box<dyn Exporter>) -> Self {
        self.exporters.push(exporter);
        self
    }

    /// Snapshots each exporter's queue holds before the oldest is dropped (default 4).
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue = n.max(1);
        self
    }

    /// The time one sampler may take per harvest before it is reported (default: a quarter
    /// of the interval, at most 1 s).
    pub fn sampler_budget(mut self, budget: Duration) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Harvests once at start instead of waiting for the first aligned tick.
    pub fn harvest_at_start(mut self, yes: bool) -> Self {
        self.harvest_at_start = yes;
        self
    }

    /// Whether snapshots carry the `sampler.*` self-metrics (default yes).
    pub fn self_metrics(mut self, yes: bool) -> Self {
        self.self_metrics = yes;
        self
    }

    /// Builds the harvester and starts the exporter workers, without the periodic thread:
    /// harvest with [`Harvester::harvest_now`], or call [`Harvester::start`].
    pub fn build(self) -> Harvester {
        let budget = self
            .budget
            .unwrap_or_else(|| (self.interval / 4).min(Duration::from_secs(1)));
        let core = Arc::new(Core {
            registry: self.registry,
            interval: self.interval,
            budget,
            self_metrics: self.self_metrics,
            state: Mutex::new(State::default()),
            sequence: AtomicU64::new(0),
            links: Mutex::new(Vec::new()),
            queue: self.queue,
            next_key: AtomicU64::new(0),
        });
        for exporter in self.exporters {
            core.add(exporter);
        }
        Harvester {
            core,
            thread: None,
            stop: None,
            harvest_at_start: self.harvest_at_start,
            done: false,
        }
    }

    /// Builds the harvester and starts its periodic thread.
    pub fn start(self) -> Harvester {
        let mut h = self.build();
        h.start();
        h
    }
}

/// Lets an exporter ask for a fresh snapshot of its own (for scrape-time freshness), without
/// sending it to the other exporters.
///
/// ```
/// use sampler_api::{ExportError, Exporter, HarvestHandle, Harvester, Registry, Snapshot};
/// use std::{sync::{Arc, Mutex}, time::Duration};
///
/// /// Serves the freshest data on each scrape.
/// #[derive(Clone, Default)]
/// struct Pull(Arc<Mutex<Option<HarvestHandle>>>);
/// impl Exporter for Pull {
///     fn name(&self) -> &str { "pull" }
///     fn export(&mut self, _: Arc<Snapshot>) -> Result<(), ExportError> { Ok(()) }
///     fn attach(&mut self, handle: HarvestHandle) { *self.0.lock().unwrap() = Some(handle); }
/// }
///
/// let pull = Pull::default();
/// let harvester = Harvester::builder().registry(Registry::new()).exporter(pull.clone()).build();
/// let handle = pull.0.lock().unwrap().clone().expect("attached at build");
/// let fresh = handle.harvest().expect("the harvester is alive");
/// assert_eq!(fresh.sequence, 1);
/// harvester.shutdown(Duration::from_secs(1))?;
/// assert!(handle.harvest().is_none(), "gone with the harvester");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct HarvestHandle {
    core: std::sync::Weak<Core>,
}

impl fmt::Debug for HarvestHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HarvestHandle").finish()
    }
}

impl HarvestHandle {
    /// Harvests now and returns the snapshot (sent to no exporter); `None` once the harvester
    /// is gone. Waits while another harvest is running.
    pub fn harvest(&self) -> Option<Arc<Snapshot>> {
        let core = self.core.upgrade()?;
        Some(core.harvest(SystemTime::now(), false))
    }

    /// As [`harvest`](Self::harvest), but gives up (`None`) instead of waiting when another
    /// harvest is running.
    pub fn try_harvest(&self) -> Option<Arc<Snapshot>> {
        let core = self.core.upgrade()?;
        let guard = match core.state.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(core.harvest_locked(guard, SystemTime::now(), false))
    }
}

enum Msg {
    Snapshot(Arc<Snapshot>),
    /// The exporter is being removed from a running harvester: export what the queue still
    /// holds, shut down, reply with what failed.
    Stop {
        deadline: Instant,
        reply: Sender<Vec<String>>,
    },
    /// The last snapshot travels with the request to shut down, so a full queue cannot push it
    /// out: the worker exports it, shuts the exporter down and replies with what failed.
    Shutdown {
        last: Arc<Snapshot>,
        deadline: Instant,
        reply: Sender<Vec<String>>,
    },
}

#[derive(Default)]
struct LinkStats {
    dropped: AtomicU64,
    errors: AtomicU64,
    exported: AtomicU64,
    last_nanos: AtomicU64,
    last_error: Mutex<Option<String>>,
}

struct Link {
    /// Never reused within a harvester; the exporter's own sampler is polled under it.
    key: u64,
    name: String,
    /// The exporter's own self-metrics.
    sampler: Option<Arc<dyn Sampler>>,
    worker: Mutex<Option<JoinHandle<()>>>,
    tx: Sender<Msg>,
    /// A receiver kept by the harvest side, to drop the oldest snapshot when the queue is full.
    rx: Receiver<Msg>,
    stats: LinkStats,
}

impl Link {
    /// Queues `msg`, dropping the oldest snapshot while the queue is full. Never blocks.
    fn send(&self, mut msg: Msg) {
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => return,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(m)) => {
                    msg = m;
                    if let Ok(Msg::Snapshot(_)) = self.rx.try_recv() {
                        self.stats.dropped.fetch_add(1, Relaxed);
                    }
                }
            }
        }
    }
}

/// Whether an exporter is failing, and since when: what turns a run of failed exports into one
/// [`Event::ExporterFailing`] and one [`Event::ExporterRecovered`].
#[derive(Default)]
struct Health {
    failing: Option<Failing>,
}

struct Failing {
    since: Instant,
    failed: u64,
    dropped_before: u64,
}

impl Health {
    fn record(&mut self, outcome: &Result<(), String>, link: &Link) {
        match (outcome, &mut self.failing) {
            (Ok(()), None) => {}
            (Ok(()), Some(f)) => {
                let dropped = link.stats.dropped.load(Relaxed) - f.dropped_before;
                emit(Event::ExporterRecovered {
                    exporter: link.name.clone(),
                    failed_for: f.since.elapsed(),
                    failed_exports: f.failed,
                    dropped,
                });
                self.failing = None;
            }
            (Err(e), None) => {
                emit(Event::ExporterFailing {
                    exporter: link.name.clone(),
                    error: e.clone(),
                });
                self.failing = Some(Failing {
                    since: Instant::now(),
                    failed: 1,
                    dropped_before: link.stats.dropped.load(Relaxed),
                });
            }
            (Err(_), Some(f)) => f.failed += 1,
        }
    }
}

fn worker(mut exporter: Box<dyn Exporter>, rx: Receiver<Msg>, link: Arc<Link>) {
    let mut health = Health::default();
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Snapshot(s) => {
                let outcome = export(&mut *exporter, s, &link);
                health.record(&outcome, &link);
            }
            Msg::Shutdown {
                last,
                deadline,
                reply,
            } => {
                let mut failures = Vec::new();
                if let Err(e) = export(&mut *exporter, last, &link) {
                    failures.push(format!("failed to export the last snapshot: {e}"));
                }
                match catch_unwind(AssertUnwindSafe(|| exporter.shutdown(deadline))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(e.chain()),
                    Err(p) => {
                        failures.push(format!("panicked during shutdown: {}", panic_message(&*p)))
                    }
                }
                let _ = reply.send(failures);
                return;
            }
            Msg::Stop { deadline, reply } => {
                let mut failures = Vec::new();
                match catch_unwind(AssertUnwindSafe(|| exporter.shutdown(deadline))) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => failures.push(e.chain()),
                    Err(p) => {
                        failures.push(format!("panicked during shutdown: {}", panic_message(&*p)))
                    }
                }
                let _ = reply.send(failures);
                return;
            }
        }
    }
}

/// Exports one snapshot under a panic guard and counts the outcome in the link's stats.
fn export(exporter: &mut dyn Exporter, snapshot: Arc<Snapshot>, link: &Link) -> Result<(), String> {
    let t = Instant::now();
    let r = catch_unwind(AssertUnwindSafe(|| exporter.export(snapshot)));
    link.stats
        .last_nanos
        .store(t.elapsed().as_nanos() as u64, Relaxed);
    let error = match r {
        Ok(Ok(())) => {
            link.stats.exported.fetch_add(1, Relaxed);
            return Ok(());
        }
        Ok(Err(e)) => e.chain(),
        Err(p) => format!("panicked during export: {}", panic_message(&*p)),
    };
    link.stats.errors.fetch_add(1, Relaxed);
    *lock(&link.stats.last_error) = Some(error.clone());
    Err(error)
}

/// The text a panic was raised with, when it has one.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

#[derive(Default)]
struct State {
    /// The thread samplers run on (see `Sampling`).
    sampling: Sampling,
    /// Per sampler: its identities, and (unless it is an instrument, held weakly) the sampler
    /// itself, for its `stop` hook.
    samplers: HashMap<u64, (SamplerState, Option<Held>)>,
    own: SamplerState,
    errors: HashMap<(String, &'static str), u64>,
    /// Seconds each sampler took in this harvest, summed over samplers of one name (two
    /// `gauge_fn`s of one metric), so that none is dropped as a duplicate series.
    durations: HashMap<String, f64>,
    harvests: u64,
    skipped: u64,
    /// Series in the last snapshot.
    last_len: usize,
}

struct Core {
    registry: Registry,
    interval: Duration,
    budget: Duration,
    self_metrics: bool,
    state: Mutex<State>,
    sequence: AtomicU64,
    links: Mutex<Vec<Arc<Link>>>,
    /// Snapshots each exporter's queue holds.
    queue: usize,
    /// Numbers the exporters, also those added later.
    next_key: AtomicU64,
}

impl Core {
    /// Starts `exporter` on its own worker thread behind its own queue.
    fn add(self: &Arc<Self>, mut exporter: Box<dyn Exporter>) -> ExporterKey {
        exporter.attach(HarvestHandle {
            core: Arc::downgrade(self),
        });
        let (tx, rx) = bounded::<Msg>(self.queue);
        let mut links = lock(&self.links);
        // Two exporters of one kind (two Prometheus endpoints) get `name`, `name-2`, …
        // in self-metrics and messages, so their series stay apart.
        let base = exporter.name().to_owned();
        let mut name = base.clone();
        let mut n = 1;
        while links.iter().any(|l| l.name == name) {
            n += 1;
            name = format!("{base}-{n}");
        }
        let key = self.next_key.fetch_add(1, Relaxed);
        let link = Arc::new(Link {
            key,
            name,
            sampler: exporter.sampler(),
            worker: Mutex::new(None),
            tx,
            rx: rx.clone(),
            stats: LinkStats::default(),
        });
        let stats_link = link.clone();
        let name = link.name.clone();
        let handle = std::thread::Builder::new()
            .name(format!("sampler-export-{name}"))
            .spawn(move || worker(exporter, rx, stats_link))
            .unwrap_or_else(|e| {
                panic!("failed to spawn the worker thread of exporter {name}: {e}")
            });
        *lock(&link.worker) = Some(handle);
        links.push(link);
        ExporterKey(key)
    }

    fn harvest(&self, time: SystemTime, publish: bool) -> Arc<Snapshot> {
        self.harvest_locked(lock(&self.state), time, publish)
    }

    fn harvest_locked(
        &self,
        mut guard: std::sync::MutexGuard<'_, State>,
        time: SystemTime,
        publish: bool,
    ) -> Arc<Snapshot> {
        let started = Instant::now();
        let state = &mut *guard;
        let mut registered = self.registry.snapshot();
        // The exporters' own samplers go through the same lifecycle (hooks, identities,
        // isolation) as registered ones, after them, under ids the registry never hands out.
        let links = lock(&self.links).clone();
        registered.extend(links.iter().filter_map(|l| {
            Some(Registered {
                id: u64::MAX - l.key,
                sampler: Held::Arc(l.sampler.clone()?),
                weak: false,
            })
        }));
        // Sized like the last snapshot, so a large harvest does not grow its vector step by step.
        let mut series = Vec::with_capacity(state.last_len);
        state.durations.clear();

        // Stop hooks for samplers that went away.
        let live: std::collections::HashSet<u64> = registered.iter().map(|r| r.id).collect();
        let gone: Vec<u64> = state
            .samplers
            .keys()
            .filter(|id| !live.contains(id))
            .copied()
            .collect();
        for id in gone {
            if let Some((_, Some(held))) = state.samplers.remove(&id) {
                if !run_hook(&held, |s| s.stop()) {
                    *state
                        .errors
                        .entry((held.name().to_owned(), "panic"))
                        .or_default() += 1;
                }
            }
        }

        let poll = Poll {
            time,
            interval: self.interval,
            budget: self.budget,
        };
        for r in registered {
            let (sampler_state, _) = state.samplers.entry(r.id).or_insert_with(|| {
                if !run_hook(&r.sampler, |s| s.start()) {
                    *state
                        .errors
                        .entry((r.sampler.name().to_owned(), "panic"))
                        .or_default() += 1;
                }
                (
                    SamplerState::default(),
                    (!r.weak).then(|| r.sampler.clone()),
                )
            });
            state.sampling.run(
                r.id,
                r.weak,
                r.sampler,
                sampler_state,
                &mut series,
                &poll,
                &mut state.errors,
                &mut state.durations,
            );
        }
        state.harvests += 1;
        let polled = started.elapsed();
        let user_series = series.len();

        if self.self_metrics {
            let own = &mut state.own;
            own.begin();
            let mut w = Writer::new(own, &mut series, time, self.interval);
            w.gauge(&HARVEST_DURATION, &[], polled.as_secs_f64());
            w.counter(&HARVEST_COUNT, &[], state.harvests);
            w.gauge(&HARVEST_SERIES, &[], user_series as f64);
            w.counter(&HARVEST_SKIPPED, &[], state.skipped);
            for ((sampler, reason), n) in &state.errors {
                w.counter(
                    &SAMPLER_ERRORS,
                    &[("sampler", sampler), ("reason", reason)],
                    *n,
                );
            }
            for (sampler, secs) in &state.durations {
                w.gauge(&SAMPLER_DURATION, &[("sampler", sampler)], *secs);
            }
            for l in &links {
                let e = [("exporter", l.name.as_str())];
                w.counter(&EXPORTER_DROPPED, &e, l.stats.dropped.load(Relaxed));
                w.gauge(&EXPORTER_QUEUE, &e, l.tx.len() as f64);
                w.counter(&EXPORTER_ERRORS, &e, l.stats.errors.load(Relaxed));
                w.counter(&EXPORTER_EXPORTED, &e, l.stats.exported.load(Relaxed));
                w.gauge(
                    &EXPORTER_DURATION,
                    &e,
                    l.stats.last_nanos.load(Relaxed) as f64 / 1e9,
                );
            }
            own.end();
        }
        guard.last_len = series.len();
        drop(guard);

        let snapshot = Arc::new(Snapshot {
            time,
            interval: self.interval,
            sequence: self.sequence.fetch_add(1, Relaxed) + 1,
            series,
        });
        if publish {
            for l in lock(&self.links).iter() {
                l.send(Msg::Snapshot(snapshot.clone()));
            }
        }
        snapshot
    }
}

/// What one harvest polls with.
struct Poll {
    time: SystemTime,
    interval: Duration,
    budget: Duration,
}

/// Who settles a sampler call: the sampling thread when it finishes in time, or the harvest
/// when it gives up waiting. Exactly one of them wins the exchange from `RUNNING`.
const RUNNING: u8 = 0;
const FINISHED: u8 = 1;
const ABANDONED: u8 = 2;

struct Job {
    id: u64,
    claim: Arc<std::sync::atomic::AtomicU8>,
    sampler: Held,
    state: SamplerState,
    out: Vec<Series>,
    time: SystemTime,
    interval: Duration,
}

struct Done {
    state: SamplerState,
    out: Vec<Series>,
    rejected: u64,
    panicked: bool,
    took: Duration,
}

/// Runs samplers on a thread of its own (the crate's own instruments excepted: they only read
/// memory), so that one that never returns holds up only itself: past twice its budget (and at least 100 ms) the harvest stops waiting, counts it
/// under `reason="hung"`, leaves that thread to it, and polls the rest on a new thread. The
/// hung sampler is skipped (and counted again) at every harvest until its call returns.
#[derive(Default)]
struct Sampling {
    worker: Option<(Sender<Job>, Receiver<Done>)>,
    /// Samplers whose call has not returned; their abandoned thread removes them.
    hung: Arc<Mutex<std::collections::HashSet<u64>>>,
    /// A reused buffer for one sampler's output.
    spare: Vec<Series>,
}

impl Sampling {
    fn worker(&mut self) -> &(Sender<Job>, Receiver<Done>) {
        self.worker.get_or_insert_with(|| {
            let (job_tx, job_rx) = bounded::<Job>(1);
            let (done_tx, done_rx) = bounded::<Done>(1);
            let hung = self.hung.clone();
            std::thread::Builder::new()
                .name("sampler-sampling".into())
                .spawn(move || sampling_thread(job_rx, done_tx, hung))
                .unwrap_or_else(|e| panic!("failed to spawn the harvest's sampling thread: {e}"));
            (job_tx, done_rx)
        })
    }

    /// Polls one sampler: on the sampling thread, or `inline` on the calling thread for the
    /// crate's own instruments, which read memory only and cannot hang (this spares large
    /// families a hand-over of their output between threads).
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        id: u64,
        inline: bool,
        sampler: Held,
        st: &mut SamplerState,
        series: &mut Vec<Series>,
        poll: &Poll,
        errors: &mut HashMap<(String, &'static str), u64>,
        durations: &mut HashMap<String, f64>,
    ) {
        let name = sampler.name().to_owned();
        if lock(&self.hung).contains(&id) {
            *errors.entry((name, "hung")).or_default() += 1;
            return;
        }
        let claim = Arc::new(std::sync::atomic::AtomicU8::new(RUNNING));
        let mut job = Job {
            id,
            claim: claim.clone(),
            sampler,
            state: std::mem::take(st),
            out: Vec::new(),
            time: poll.time,
            interval: poll.interval,
        };
        if inline {
            // Written straight into the snapshot's vector; a panic truncates it back.
            let before = series.len();
            job.out = std::mem::take(series);
            let (rejected, panicked, took) = sample_once(&mut job);
            *st = job.state;
            *series = job.out;
            if panicked {
                series.truncate(before);
            }
            account(name, rejected, panicked, took, poll, errors, durations);
            return;
        }
        job.out = std::mem::take(&mut self.spare);
        job.out.clear();
        let Some(done) = self.run_on_thread(job, claim, poll) else {
            self.worker = None;
            *errors.entry((name, "hung")).or_default() += 1;
            return;
        };
        *st = done.state;
        let mut out = done.out;
        if !done.panicked {
            series.append(&mut out);
        }
        self.spare = out;
        account(
            name,
            done.rejected,
            done.panicked,
            done.took,
            poll,
            errors,
            durations,
        );
    }

    fn run_on_thread(
        &mut self,
        job: Job,
        claim: Arc<std::sync::atomic::AtomicU8>,
        poll: &Poll,
    ) -> Option<Done> {
        let id = job.id;
        let limit = (poll.budget * 2).max(Duration::from_millis(100));
        let (tx, rx) = self.worker();
        let rx = rx.clone();
        match tx.send(job) {
            Ok(()) => match rx.recv_timeout(limit) {
                Ok(done) => Some(done),
                Err(_) => {
                    // Marked before the claim, so the thread's clean-up cannot come first.
                    lock(&self.hung).insert(id);
                    if claim
                        .compare_exchange(RUNNING, ABANDONED, AcqRel, Acquire)
                        .is_ok()
                    {
                        None
                    } else {
                        // It finished just now: its result is on the way.
                        lock(&self.hung).remove(&id);
                        rx.recv().ok()
                    }
                }
            },
            Err(_) => None,
        }
    }
}

/// Runs a sampler's `start` or `stop` hook under a panic guard; `false` if it panicked.
fn run_hook(sampler: &Held, hook: fn(&dyn Sampler)) -> bool {
    catch_unwind(AssertUnwindSafe(|| hook(sampler.get()))).is_ok()
}

/// Counts what one poll of a sampler did. A panicking sampler's partial output was dropped;
/// its identities stay, so the next good harvest continues the same series.
fn account(
    name: String,
    rejected: u64,
    panicked: bool,
    took: Duration,
    poll: &Poll,
    errors: &mut HashMap<(String, &'static str), u64>,
    durations: &mut HashMap<String, f64>,
) {
    if panicked {
        *errors.entry((name.clone(), "panic")).or_default() += 1;
    }
    if rejected > 0 {
        *errors.entry((name.clone(), "rejected")).or_default() += rejected;
    }
    if took > poll.budget {
        *errors.entry((name.clone(), "budget")).or_default() += 1;
    }
    *durations.entry(name).or_default() += took.as_secs_f64();
}

/// Polls one sampler into the job's buffer, under a panic guard.
fn sample_once(job: &mut Job) -> (u64, bool, Duration) {
    let t = Instant::now();
    job.state.begin();
    let mut rejected = 0;
    let r = catch_unwind(AssertUnwindSafe(|| {
        let mut w = Writer::new(&mut job.state, &mut job.out, job.time, job.interval);
        job.sampler.get().sample(&mut w);
        rejected = w.rejected();
    }));
    if r.is_ok() {
        job.state.end();
    }
    (rejected, r.is_err(), t.elapsed())
}

fn sampling_thread(
    jobs: Receiver<Job>,
    done: Sender<Done>,
    hung: Arc<Mutex<std::collections::HashSet<u64>>>,
) {
    while let Ok(mut job) = jobs.recv() {
        let (rejected, panicked, took) = sample_once(&mut job);
        if job
            .claim
            .compare_exchange(RUNNING, FINISHED, AcqRel, Acquire)
            .is_err()
        {
            // The harvest gave up on this call and moved on: let the sampler be polled again,
            // and end this thread (a new one serves the harvest).
            lock(&hung).remove(&job.id);
            return;
        }
        let result = Done {
            state: job.state,
            out: job.out,
            rejected,
            panicked,
            took,
        };
        if done.send(result).is_err() {
            return;
        }
    }
}

/// Runs the harvest loop and owns the exporter workers.
///
/// Dropping a harvester shuts it down with a 5 s deadline; call [`shutdown`](Self::shutdown)
/// to choose the deadline and see what failed.
///
/// ```
/// use sampler_api::{Descriptor, Harvester, Registry, Value};
/// use std::time::Duration;
/// static JOBS: Descriptor = Descriptor::counter("jobs.done", "1", "jobs done");
/// let registry = Registry::new();
/// let jobs = registry.counter(&JOBS);
/// let mut harvester = Harvester::builder().registry(registry).build();
/// jobs.add(2);
/// let snapshot = harvester.harvest_now(); // also queued to every exporter
/// assert_eq!(snapshot.find("jobs.done", &[]).unwrap().value, Value::Counter(2));
/// harvester.start(); // harvests every 10 s from now on
/// harvester.shutdown(Duration::from_secs(1))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Harvester {
    core: Arc<Core>,
    thread: Option<JoinHandle<()>>,
    stop: Option<Sender<()>>,
    harvest_at_start: bool,
    done: bool,
}

impl fmt::Debug for Harvester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harvester")
            .field("interval", &self.core.interval)
            .field("running", &self.thread.is_some())
            .finish()
    }
}

impl Harvester {
    /// A builder that harvests the global registry ([`Registry::global`]) unless given another
    /// with [`HarvesterBuilder::registry`]; other defaults: a 10 s interval, no exporters.
    ///
    /// Everything registered globally (statics of linked libraries included) is harvested
    /// then; a test or an embedding that wants only its own samplers passes its own registry:
    ///
    /// ```
    /// use sampler_api::{Harvester, Registry};
    /// let registry = Registry::new();
    /// let snapshot = Harvester::builder()
    ///     .registry(registry)
    ///     .self_metrics(false)
    ///     .build()
    ///     .harvest_now();
    /// assert!(snapshot.series.is_empty());
    /// ```
    pub fn builder() -> HarvesterBuilder {
        HarvesterBuilder {
            registry: Registry::global().clone(),
            interval: DEFAULT_INTERVAL,
            exporters: Vec::new(),
            queue: DEFAULT_QUEUE,
            budget: None,
            harvest_at_start: false,
            self_metrics: true,
        }
    }

    /// Harvests now, sends the snapshot to every exporter and returns it.
    pub fn harvest_now(&self) -> Arc<Snapshot> {
        self.core.harvest(SystemTime::now(), true)
    }

    /// A handle that can harvest on demand (see [`Exporter::attach`]).
    pub fn handle(&self) -> HarvestHandle {
        HarvestHandle {
            core: Arc::downgrade(&self.core),
        }
    }

    /// Starts the periodic harvest thread (once; later calls do nothing).
    pub fn start(&mut self) {
        if self.thread.is_some() || self.done {
            return;
        }
        let (tx, rx) = bounded::<()>(1);
        let core = self.core.clone();
        let at_start = self.harvest_at_start;
        self.stop = Some(tx);
        self.thread = Some(
            std::thread::Builder::new()
                .name("sampler-harvest".into())
                .spawn(move || run_loop(core, rx, at_start))
                .unwrap_or_else(|e| panic!("failed to spawn the harvest thread: {e}")),
        );
    }

    /// Adds an exporter to a built (or running) harvester: it gets every harvest from the next
    /// on, on its own worker thread. A config reload adds the exporters it did not have.
    ///
    /// ```
    /// use sampler_api::{ExportError, Exporter, Harvester, Registry, Snapshot};
    /// use std::{sync::Arc, time::{Duration, Instant}};
    /// struct Nop;
    /// impl Exporter for Nop {
    ///     fn name(&self) -> &str { "nop" }
    ///     fn export(&mut self, _: Arc<Snapshot>) -> Result<(), ExportError> { Ok(()) }
    /// }
    /// let h = Harvester::builder().registry(Registry::new()).build();
    /// let key = h.add_exporter(Box::new(Nop));
    /// let s = h.harvest_now();
    /// assert!(s.find("sampler.exporter.dropped", &[("exporter", "nop")]).is_some());
    /// h.remove_exporter(key, Instant::now() + Duration::from_secs(1))?;
    /// assert!(h.harvest_now().find("sampler.exporter.dropped", &[("exporter", "nop")]).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_exporter(&self, exporter: Box<dyn Exporter>) -> ExporterKey {
        self.core.add(exporter)
    }

    /// The keys of the exporters, in the order they were added (those given to the builder
    /// first).
    pub fn exporter_keys(&self) -> Vec<ExporterKey> {
        lock(&self.core.links)
            .iter()
            .map(|l| ExporterKey(l.key))
            .collect()
    }

    /// Removes an exporter: it exports what its queue still holds, then shuts down (flush,
    /// release) before `deadline`. An exporter still busy at the deadline is left behind and
    /// named in the error; an unknown key is not an error.
    pub fn remove_exporter(
        &self,
        key: ExporterKey,
        deadline: Instant,
    ) -> Result<(), ShutdownError> {
        let link = {
            let mut links = lock(&self.core.links);
            match links.iter().position(|l| l.key == key.0) {
                Some(i) => links.remove(i),
                None => return Ok(()),
            }
        };
        let (reply, rx) = bounded(1);
        // The queue may be full: this send must not drop what is queued, so it waits for room
        // (bounded by the deadline).
        let left = deadline.saturating_duration_since(Instant::now());
        let sent = link
            .tx
            .send_timeout(Msg::Stop { deadline, reply }, left)
            .is_ok();
        let left = deadline.saturating_duration_since(Instant::now());
        let failures = match sent.then(|| rx.recv_timeout(left)) {
            Some(Ok(errors)) => errors
                .into_iter()
                .map(|e| format!("exporter {}: {e}", link.name))
                .collect(),
            _ => vec![format!(
                "exporter {}: did not finish before the deadline",
                link.name
            )],
        };
        let worker = lock(&link.worker).take();
        if let Some(w) = worker {
            if w.is_finished() {
                let _ = w.join();
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError { failures })
        }
    }

    /// The last error each exporter reported, by exporter name.
    pub fn exporter_errors(&self) -> Vec<(String, String)> {
        lock(&self.core.links)
            .iter()
            .filter_map(|l| {
                lock(&l.stats.last_error)
                    .clone()
                    .map(|e| (l.name.clone(), e))
            })
            .collect()
    }

    /// Stops the loop, runs a last harvest, and has every exporter export it, flush and shut
    /// down within `timeout`, then runs the samplers' `stop` hooks. On a harvester that was
    /// never started this is exactly one harvest, exported and flushed (what a one-shot `dump`
    /// wants). The last snapshot reaches every exporter whatever its queue holds. Exporters
    /// still busy at the deadline are left behind; they, exporters that failed to export the
    /// last snapshot or to shut down, and samplers whose `stop` panicked are named in the error.
    ///
    /// ```
    /// use sampler_api::{ExportError, Exporter, Harvester, Registry, Snapshot};
    /// use std::{sync::Arc, time::Duration};
    ///
    /// struct Down;
    /// impl Exporter for Down {
    ///     fn name(&self) -> &str { "down" }
    ///     fn export(&mut self, _: Arc<Snapshot>) -> Result<(), ExportError> {
    ///         Err(ExportError::new("failed to connect to graphite at 127.0.0.1:2003: connection refused"))
    ///     }
    /// }
    ///
    /// let harvester = Harvester::builder().registry(Registry::new()).exporter(Down).build();
    /// let err = harvester.shutdown(Duration::from_secs(1)).unwrap_err();
    /// assert_eq!(
    ///     err.to_string(),
    ///     "shutdown incomplete: exporter down: failed to export the last snapshot: \
    ///      failed to connect to graphite at 127.0.0.1:2003: connection refused"
    /// );
    /// ```
    pub fn shutdown(mut self, timeout: Duration) -> Result<(), ShutdownError> {
        self.shutdown_inner(timeout)
    }

    fn shutdown_inner(&mut self, timeout: Duration) -> Result<(), ShutdownError> {
        if self.done {
            return Ok(());
        }
        self.done = true;
        let deadline = Instant::now() + timeout;
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let last = self.core.harvest(SystemTime::now(), false);
        let links = lock(&self.core.links).clone();
        let mut replies = Vec::new();
        for l in &links {
            let (reply, rx) = bounded(1);
            l.send(Msg::Shutdown {
                last: last.clone(),
                deadline,
                reply,
            });
            replies.push((l.name.clone(), rx));
        }
        let mut failures = Vec::new();
        for (name, rx) in replies {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(errors) => {
                    failures.extend(errors.iter().map(|e| format!("exporter {name}: {e}")))
                }
                Err(_) => failures.push(format!(
                    "exporter {name}: did not finish before the shutdown deadline"
                )),
            }
        }
        // Workers that answered have returned; the others are left to finish on their own.
        for l in &links {
            let w = lock(&l.worker).take();
            if let Some(w) = w {
                if w.is_finished() {
                    let _ = w.join();
                }
            }
        }
        let mut state = lock(&self.core.state);
        for (_, (_, held)) in state.samplers.drain() {
            if let Some(held) = held {
                if !run_hook(&held, |s| s.stop()) {
                    failures.push(format!(
                        "sampler {}: panicked in its stop hook",
                        held.name()
                    ));
                }
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ShutdownError { failures })
        }
    }
}

impl Drop for Harvester {
    fn drop(&mut self) {
        let _ = self.shutdown_inner(Duration::from_secs(5));
    }
}

/// The next multiple of `interval` since the Unix epoch strictly after `now`.
fn next_tick(now: SystemTime, interval: Duration) -> SystemTime {
    let since = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let step = interval.as_nanos().max(1);
    let next = (since / step + 1) * step;
    UNIX_EPOCH + Duration::from_nanos(next as u64)
}

fn run_loop(core: Arc<Core>, stop: Receiver<()>, at_start: bool) {
    if at_start {
        core.harvest(SystemTime::now(), true);
    }
    let mut tick = next_tick(SystemTime::now(), core.interval);
    loop {
        let wait = tick.duration_since(SystemTime::now()).unwrap_or_default();
        match stop.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        // The clock may wake us a hair early: never harvest before the tick.
        let now = SystemTime::now();
        if now < tick {
            continue;
        }
        core.harvest(tick, true);
        let next = next_tick(SystemTime::now(), core.interval);
        let missed = next
            .duration_since(tick)
            .unwrap_or_default()
            .as_nanos()
            .saturating_div(core.interval.as_nanos().max(1))
            .saturating_sub(1) as u64;
        if missed > 0 {
            lock(&core.state).skipped += missed;
        }
        tick = next;
    }
}

/// Names one exporter of a harvester, to remove it later ([`Harvester::remove_exporter`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExporterKey(u64);

/// What failed during [`Harvester::shutdown`]: exporters that did not finish by the deadline
/// or failed to export the last snapshot or to shut down, and samplers whose `stop` panicked.
#[derive(Debug, Clone)]
pub struct ShutdownError {
    /// One message per failure, each naming the exporter or sampler (`exporter stuck: did
    /// not finish before the shutdown deadline`).
    pub failures: Vec<String>,
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "shutdown incomplete: {}", self.failures.join("; "))
    }
}

impl std::error::Error for ShutdownError {}
