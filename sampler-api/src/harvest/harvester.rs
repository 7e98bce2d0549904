//! The harvester: builds snapshots on demand or on its periodic thread, and shuts down with a
//! last harvest that every exporter flushes before a deadline.

use std::fmt;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{bounded, Sender};

use crate::local::lock;
use crate::registry::Registry;
use crate::snapshot::Snapshot;

use super::builder::HarvesterBuilder;
use super::collect::Core;
use super::delivery::Msg;
use super::sampling::run_hook;
use super::tick::run_loop;
use super::{DEFAULT_INTERVAL, DEFAULT_QUEUE};

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
    pub(super) core: std::sync::Weak<Core>,
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
/// assert_eq!(snapshot.find("jobs.done", &[]).unwrap().value(), Value::Counter(2));
/// harvester.start(); // harvests every 10 s from now on
/// harvester.shutdown(Duration::from_secs(1))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Harvester {
    pub(super) core: Arc<Core>,
    pub(super) thread: Option<JoinHandle<()>>,
    pub(super) stop: Option<Sender<()>>,
    pub(super) harvest_at_start: bool,
    pub(super) done: bool,
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
    /// assert!(snapshot.is_empty());
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

    /// A handle that can harvest on demand (see [`Exporter::attach`](crate::Exporter::attach)).
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

    pub(super) fn shutdown_inner(&mut self, timeout: Duration) -> Result<(), ShutdownError> {
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
