//! Configures a harvester and builds it.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::exporter::Exporter;
use crate::registry::Registry;

use super::collect::{Core, State};
use super::harvester::Harvester;

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
    pub(super) registry: Registry,
    pub(super) interval: Duration,
    pub(super) exporters: Vec<Box<dyn Exporter>>,
    pub(super) queue: usize,
    pub(super) budget: Option<Duration>,
    pub(super) harvest_at_start: bool,
    pub(super) self_metrics: bool,
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
