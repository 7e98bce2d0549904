//! The `sampler` command, as a library: flags become a [`Plan`] (exporters plus samplers), and a
//! plan is [`run`] until a signal or [`dump`]ed once.
//!
//! Keeping the plan apart from running it lets other sources of configuration (a config file,
//! more exporter flags) add exporters and samplers to the same `Vec`s before the harvest starts.
//!
//! ```
//! use sampler::cli::{Output, Watch};
//! use sampler::Plan;
//!
//! let plan = Plan::from_flags(&Watch::default(), &Output::default())?;
//! assert_eq!(plan.exporters.len(), 1); // the console
//! # #[cfg(target_os = "linux")]
//! assert_eq!(plan.samplers.len(), 2); // itself and the host
//! # Ok::<(), anyhow::Error>(())
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

pub mod cli;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sampler_adapter_process::{HostSampler, ProcessSampler, Target};
use sampler_api::{Exporter, Harvester, HarvesterBuilder, Registration, Registry, Sampler};
use sampler_exporter_console::ConsoleExporter;

use cli::{Output, Watch};

/// How long shutdown waits for exporters to write and flush the last harvest.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What to harvest and where to send it.
pub struct Plan {
    /// The registry the samplers are registered with (the global one: samplers that linked
    /// libraries register statically are harvested too).
    pub registry: Registry,
    /// Every exporter, each run on its own thread.
    pub exporters: Vec<Box<dyn Exporter>>,
    /// Every sampler to register for the run.
    pub samplers: Vec<Arc<dyn Sampler>>,
    /// The process sampler for targets named on the command line, which `dump` checks first.
    pub watched: Option<Arc<ProcessSampler>>,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let exporters: Vec<&str> = self.exporters.iter().map(|e| e.name()).collect();
        let samplers: Vec<&str> = self.samplers.iter().map(|s| s.name()).collect();
        f.debug_struct("Plan")
            .field("exporters", &exporters)
            .field("samplers", &samplers)
            .finish()
    }
}

impl Plan {
    /// The plan of the flags: the console exporter, the host sampler, and a process sampler for
    /// the targets given (itself when none is). Gone and returning targets are reported on
    /// stderr, one line each.
    pub fn from_flags(watch: &Watch, output: &Output) -> Result<Plan> {
        let explicit = watch.is_explicit();
        // Before the output file is opened, so a refused run leaves nothing behind.
        if explicit && !sampler_adapter_process::SUPPORTED {
            bail!(
                "cannot watch processes on {}: process metrics need Linux /proc",
                std::env::consts::OS
            );
        }
        let console = match &output.output {
            Some(path) => ConsoleExporter::file(path, output.format.into())?,
            None => ConsoleExporter::stdout(output.format.into()),
        };
        let mut targets: Vec<Target> = Vec::new();
        targets.extend(watch.pid.iter().map(|&p| Target::Pid(p)));
        targets.extend(watch.pidfile.iter().cloned().map(Target::PidFile));
        targets.extend(watch.name.iter().cloned().map(Target::Name));
        if !explicit {
            targets.push(Target::Current);
        }
        let mut plan = Plan {
            registry: Registry::global().clone(),
            exporters: vec![Box::new(console)],
            samplers: Vec::new(),
            watched: None,
        };
        // Elsewhere than Linux the process sampler harvests nothing and says so once, through
        // the same handler.
        let process = Arc::new(
            ProcessSampler::with_targets(targets)
                .naming(watch.names.into())
                .on_event(|event| eprintln!("sampler: {event}")),
        );
        plan.samplers.push(process.clone());
        plan.samplers.push(Arc::new(HostSampler::new()));
        if explicit {
            plan.watched = Some(process);
        }
        Ok(plan)
    }

    /// Registers the samplers and puts the exporters in a harvester builder. Keep the
    /// registrations for as long as the harvester runs.
    pub fn into_builder(self) -> (HarvesterBuilder, Vec<Registration>) {
        let registrations = self
            .samplers
            .into_iter()
            .map(|s| self.registry.register_arc(s))
            .collect();
        let mut builder = Harvester::builder().registry(self.registry);
        for e in self.exporters {
            builder = builder.boxed_exporter(e);
        }
        (builder, registrations)
    }
}

/// Harvests once, prints, flushes and returns. Fails, without harvesting, when a target named
/// on the command line resolves to no process: one line per such target.
pub fn dump(plan: Plan) -> Result<()> {
    if let Some(watched) = &plan.watched {
        let missing: Vec<String> = watched.check().iter().map(|e| e.to_string()).collect();
        if !missing.is_empty() {
            bail!(missing.join("\n"));
        }
    }
    let (builder, _registrations) = plan.into_builder();
    // Shutdown runs exactly one harvest, exports it and flushes every exporter.
    builder
        .build()
        .shutdown(SHUTDOWN_TIMEOUT)
        .context("failed to write the harvest")?;
    Ok(())
}

/// Harvests at once and then every `interval` until SIGINT or SIGTERM; then harvests a last
/// time, flushes every exporter and returns.
#[cfg(unix)]
pub fn run(plan: Plan, interval: Duration) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    // Handlers go in before the first output, so a signal sent as soon as output shows is
    // caught rather than killing the process.
    let mut signals =
        Signals::new([SIGINT, SIGTERM]).context("failed to install SIGINT/SIGTERM handlers")?;
    let (builder, _registrations) = plan.into_builder();
    let harvester = builder.interval(interval).harvest_at_start(true).start();
    // `forever` yields only the signals registered above.
    let _ = signals.forever().next();
    harvester
        .shutdown(SHUTDOWN_TIMEOUT)
        .context("failed to write the last harvest")?;
    Ok(())
}

/// Runs the parsed command line.
pub fn main_with(cli: cli::Cli) -> Result<()> {
    match cli.command {
        cli::Command::Dump(args) => dump(Plan::from_flags(&args.watch, &args.output)?),
        #[cfg(unix)]
        cli::Command::Run(args) => {
            let mut plan = Plan::from_flags(&args.watch, &args.output)?;
            if let Some(addr) = &args.prometheus {
                let exporter = sampler_exporter_prometheus::PrometheusExporter::builder()
                    .address(addr.as_str())
                    .build()?;
                eprintln!("sampler: serving prometheus metrics at {}", exporter.url());
                plan.exporters.push(Box::new(exporter));
            }
            run(plan, args.interval)
        }
        #[cfg(not(unix))]
        cli::Command::Run(_) => bail!("sampler run needs a Unix system for its signal handling"),
    }
}
