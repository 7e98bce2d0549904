//! A pipeline from a config file: adapters registered, exporters built behind their shaping,
//! one harvester; reloaded in place, keeping what did not change.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use sampler_api::{Exporter, ExporterKey, Harvester, Registration, Registry, Sampler, Snapshot};
use sampler_config::{AdapterPlan, Config, ConfigError, ExporterPlan};

use crate::SHUTDOWN_TIMEOUT;

/// A checked config file, ready to start.
///
/// ```no_run
/// let running = sampler::Pipeline::from_file("sampler.toml".as_ref())?.start()?;
/// // ... the application runs ...
/// running.shutdown()?; // last harvest, flushed (dropping it does the same)
/// # Ok::<(), anyhow::Error>(())
/// ```
pub struct Pipeline {
    config: Config,
    registry: Registry,
    extra_exporters: Vec<Box<dyn Exporter>>,
    extra_samplers: Vec<Arc<dyn Sampler>>,
    harvest_at_start: bool,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("config", &self.config)
            .field("extra_exporters", &self.extra_exporters.len())
            .field("extra_samplers", &self.extra_samplers.len())
            .finish()
    }
}

impl Pipeline {
    /// Reads and checks a config file (every problem at once, with lines and columns).
    pub fn from_file(path: &Path) -> Result<Pipeline, ConfigError> {
        Ok(Pipeline::new(Config::load(path)?))
    }

    /// A pipeline of a checked config, harvesting the global registry.
    pub fn new(config: Config) -> Pipeline {
        Pipeline {
            config,
            registry: Registry::global().clone(),
            extra_exporters: Vec::new(),
            extra_samplers: Vec::new(),
            harvest_at_start: true,
        }
    }

    /// Harvests another registry instead of the global one.
    pub fn registry(mut self, registry: Registry) -> Self {
        self.registry = registry;
        self
    }

    /// Adds an exporter that is not in the file (from a command-line flag); it stays across
    /// reloads.
    pub fn exporter(mut self, exporter: Box<dyn Exporter>) -> Self {
        self.extra_exporters.push(exporter);
        self
    }

    /// Adds a sampler that is not in the file; it stays across reloads.
    pub fn sampler(mut self, sampler: Arc<dyn Sampler>) -> Self {
        self.extra_samplers.push(sampler);
        self
    }

    /// Whether the first harvest runs at once (default) or at the first aligned tick.
    pub fn harvest_at_start(mut self, yes: bool) -> Self {
        self.harvest_at_start = yes;
        self
    }

    /// The checked config.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Builds every adapter and exporter and starts harvesting. Fails, naming the exporter or
    /// adapter, when one cannot be built (a port in use, a file that cannot be opened);
    /// nothing is left running then.
    pub fn start(self) -> Result<RunningPipeline> {
        self.launch(true)
    }

    /// Builds everything, harvests exactly once, exports, flushes and stops (`sampler dump`).
    pub fn dump(self) -> Result<()> {
        self.launch(false)?.shutdown()
    }

    fn launch(self, periodic: bool) -> Result<RunningPipeline> {
        let Pipeline {
            config,
            registry,
            extra_exporters,
            extra_samplers,
            harvest_at_start,
        } = self;
        let mut adapters = Vec::new();
        for a in &config.adapters {
            adapters.push(register(&registry, a)?);
        }
        let fixed: Vec<Registration> = extra_samplers
            .into_iter()
            .map(|s| registry.register_arc(s))
            .collect();
        let mut built = Vec::new();
        for e in &config.exporters {
            built.push(build(e)?);
        }
        let h = &config.harvest;
        let mut builder = Harvester::builder()
            .registry(registry.clone())
            .interval(h.interval)
            .queue_capacity(h.queue_depth)
            .self_metrics(h.self_metrics)
            .harvest_at_start(harvest_at_start);
        if let Some(b) = h.sampler_budget {
            builder = builder.sampler_budget(b);
        }
        let fixed_exporters = extra_exporters.len();
        for e in extra_exporters {
            builder = builder.boxed_exporter(e);
        }
        for e in built {
            builder = builder.boxed_exporter(e);
        }
        let has_actions = !config.actions.is_empty();
        if has_actions {
            builder = builder.boxed_exporter(engine(&config));
        }
        let harvester = if periodic {
            builder.start()
        } else {
            builder.build()
        };
        let keys = harvester.exporter_keys();
        let mut exporters = keys[fixed_exporters..].to_vec();
        let actions = if has_actions { exporters.pop() } else { None };
        Ok(RunningPipeline {
            harvester: Some(harvester),
            config,
            registry,
            exporters,
            actions,
            adapters,
            _fixed: fixed,
        })
    }
}

fn register(registry: &Registry, a: &AdapterPlan) -> Result<Vec<Registration>> {
    let samplers = a
        .build()
        .map_err(|e| anyhow!("failed to start adapter {}: {e}", a.name))?;
    Ok(samplers
        .into_iter()
        .map(|s| registry.register_arc(s))
        .collect())
}

/// The engine of the config's `[[action]]` rules: an exporter of its own.
fn engine(config: &Config) -> Box<dyn Exporter> {
    Box::new(sampler_actions::Engine::new(config.actions.clone()))
}

fn build(e: &ExporterPlan) -> Result<Box<dyn Exporter>> {
    e.build().map_err(|err| {
        anyhow!(
            "failed to start exporter {} (kind {}): {err}",
            e.name,
            e.kind
        )
    })
}

/// A running pipeline. [`shutdown`](Self::shutdown) or dropping it harvests a last time and
/// flushes every exporter.
#[derive(Debug)]
pub struct RunningPipeline {
    harvester: Option<Harvester>,
    config: Config,
    registry: Registry,
    /// The key of each of `config.exporters`, in order.
    exporters: Vec<ExporterKey>,
    /// The key of the `[[action]]` engine, when there are rules.
    actions: Option<ExporterKey>,
    /// The registrations of each of `config.adapters`, in order.
    adapters: Vec<Vec<Registration>>,
    _fixed: Vec<Registration>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Exporters kept running as they were (same kind, name, shaping and settings).
    pub kept: Vec<String>,
    /// Exporters started.
    pub started: Vec<String>,
    /// Exporters stopped (removed, or replaced because their settings changed).
    pub stopped: Vec<String>,
    /// Settings that take effect only at the next start.
    pub deferred: Vec<String>,
}

impl std::fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        write!(
            f,
            "reloaded: kept {}; started {}; stopped {}",
            list(&self.kept),
            list(&self.started),
            list(&self.stopped)
        )?;
        for d in &self.deferred {
            write!(f, "; {d}")?;
        }
        Ok(())
    }
}

impl RunningPipeline {
    /// The harvester.
    pub fn harvester(&self) -> &Harvester {
        self.harvester
            .as_ref()
            .expect("a running pipeline has its harvester until shutdown")
    }

    /// Harvests now and sends the snapshot to every exporter.
    pub fn harvest_now(&self) -> Arc<Snapshot> {
        self.harvester().harvest_now()
    }

    /// The config it runs.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Switches to `new` in place: exporters and adapters whose settings did not change keep
    /// running untouched (an exporter keeps its connection and its buffered data); the others
    /// are stopped (flushed) and started anew. Instruments keep their totals: the registry is
    /// the same. New exporters and adapters are built before anything is swapped, so if one
    /// cannot be started the error says which and the pipeline runs on as it was, except that
    /// an exporter whose settings changed was already stopped (it may hold the port its
    /// replacement needs).
    pub fn reload(&mut self, new: Config) -> Result<ReloadReport> {
        let mut report = ReloadReport::default();
        // Build everything new first, so a failure leaves the running pipeline as it was.
        let mut new_adapters: Vec<Option<Vec<Registration>>> = Vec::new();
        for a in &new.adapters {
            let same = self.config.adapters.iter().any(|o| o.same_as(a));
            new_adapters.push(if same {
                None
            } else {
                Some(register(&self.registry, a)?)
            });
        }
        let mut new_exporters: Vec<Option<Box<dyn Exporter>>> = Vec::new();
        for e in &new.exporters {
            let same = self.config.exporters.iter().any(|o| o.same_as(e));
            new_exporters.push(if same {
                None
            } else {
                // A port the old exporter still holds would fail to bind: stop that one first.
                self.stop_exporters_named(&e.name, &new, &mut report);
                Some(build(e)?)
            });
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        let harvester = self.harvester.as_ref().expect("running");
        // Exporters.
        let mut keys = Vec::with_capacity(new.exporters.len());
        let mut old_keys: Vec<Option<ExporterKey>> =
            self.exporters.iter().copied().map(Some).collect();
        for (e, built) in new.exporters.iter().zip(new_exporters) {
            match built {
                None => {
                    let i = self
                        .config
                        .exporters
                        .iter()
                        .enumerate()
                        .position(|(i, o)| o.same_as(e) && old_keys[i].is_some())
                        .expect("an unchanged exporter is among the old ones");
                    keys.push(old_keys[i].take().expect("checked above"));
                    report.kept.push(e.name.clone());
                }
                Some(x) => {
                    keys.push(harvester.add_exporter(x));
                    report.started.push(e.name.clone());
                }
            }
        }
        for (i, k) in old_keys.into_iter().enumerate() {
            if let Some(k) = k {
                let name = self.config.exporters[i].name.clone();
                if let Err(err) = harvester.remove_exporter(k, deadline) {
                    crate::say(&err);
                }
                if !report.stopped.contains(&name) {
                    report.stopped.push(name);
                }
            }
        }
        // Adapters: kept ones keep their registrations (and so their series' identities).
        let mut old_regs: Vec<Option<Vec<Registration>>> = std::mem::take(&mut self.adapters)
            .into_iter()
            .map(Some)
            .collect();
        let mut regs = Vec::new();
        for (a, fresh) in new.adapters.iter().zip(new_adapters) {
            match fresh {
                Some(r) => regs.push(r),
                None => {
                    let i = self
                        .config
                        .adapters
                        .iter()
                        .enumerate()
                        .position(|(i, o)| o.same_as(a) && old_regs[i].is_some())
                        .expect("an unchanged adapter is among the old ones");
                    regs.push(old_regs[i].take().expect("checked above"));
                }
            }
        }
        drop(old_regs);
        if new.harvest != self.config.harvest {
            report
                .deferred
                .push("[harvest] changes take effect at the next start".to_owned());
        }
        self.adapters = regs;
        self.exporters = keys;
        // Actions: a new engine when the rules changed (their per-series state starts over).
        if new.actions != self.config.actions {
            if let Some(k) = self.actions.take() {
                if let Err(err) = harvester.remove_exporter(k, deadline) {
                    crate::say(&err);
                }
            }
            if !new.actions.is_empty() {
                self.actions = Some(harvester.add_exporter(engine(&new)));
            }
            report.started.push("actions".to_owned());
        }
        let harvest = self.config.harvest.clone();
        self.config = new;
        // The running harvester keeps its settings.
        self.config.harvest = harvest;
        Ok(report)
    }

    /// Stops the running exporters named `name` that `new` does not keep unchanged.
    fn stop_exporters_named(&mut self, name: &str, new: &Config, report: &mut ReloadReport) {
        let harvester = self.harvester.as_ref().expect("running");
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        let mut i = 0;
        while i < self.config.exporters.len() {
            let old = &self.config.exporters[i];
            if old.name == name && !new.exporters.iter().any(|n| n.same_as(old)) {
                if let Err(err) = harvester.remove_exporter(self.exporters[i], deadline) {
                    crate::say(&err);
                }
                report.stopped.push(old.name.clone());
                self.config.exporters.remove(i);
                self.exporters.remove(i);
            } else {
                i += 1;
            }
        }
    }

    /// Harvests a last time, has every exporter export it and flush, and stops.
    pub fn shutdown(mut self) -> Result<()> {
        self.shutdown_inner(SHUTDOWN_TIMEOUT)
    }

    fn shutdown_inner(&mut self, timeout: Duration) -> Result<()> {
        match self.harvester.take() {
            Some(h) => h
                .shutdown(timeout)
                .map_err(|e| anyhow!("failed to write the last harvest: {e}")),
            None => Ok(()),
        }
    }
}

impl Drop for RunningPipeline {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown_inner(SHUTDOWN_TIMEOUT) {
            crate::say(&e);
        }
    }
}
