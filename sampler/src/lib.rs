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
mod kinds;
mod pipeline;

pub use pipeline::{Pipeline, ReloadReport, RunningPipeline};

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use sampler_adapter_process::{HostSampler, ProcessSampler, Target};
use sampler_api::{
    Exporter, Harvester, HarvesterBuilder, Registration, Registry, Sampler, DEFAULT_INTERVAL,
};
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
            ProcessSampler::with_targets(targets).on_event(|event| eprintln!("sampler: {event}")),
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
    // An exporter that starts failing, or recovers, is one line each; never one per attempt.
    sampler_api::set_event_hook(|event| eprintln!("sampler: {event}"));
    let (builder, _registrations) = plan.into_builder();
    let harvester = builder.interval(interval).harvest_at_start(true).start();
    // `forever` yields only the signals registered above.
    let _ = signals.forever().next();
    harvester
        .shutdown(SHUTDOWN_TIMEOUT)
        .context("failed to write the last harvest")?;
    Ok(())
}

/// Checks a config file: prints the resolved pipeline, or every problem.
pub fn check(path: &std::path::Path) -> Result<()> {
    let config = sampler_config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    print!("{}", config.describe());
    println!("{}: ok", path.display());
    Ok(())
}

/// The process sampler for targets given by flags, when any is.
fn flag_targets(watch: &Watch) -> Option<Arc<dyn Sampler>> {
    if !watch.is_explicit() {
        return None;
    }
    let mut targets: Vec<Target> = Vec::new();
    targets.extend(watch.pid.iter().map(|&p| Target::Pid(p)));
    targets.extend(watch.pidfile.iter().cloned().map(Target::PidFile));
    targets.extend(watch.name.iter().cloned().map(Target::Name));
    Some(Arc::new(
        ProcessSampler::with_targets(targets).on_event(|event| eprintln!("sampler: {event}")),
    ))
}

/// The reader of `--shm DIR`; the directory must exist.
fn shm_flag(dir: &std::path::Path) -> Result<Arc<dyn Sampler>> {
    if !dir.is_dir() {
        bail!("shm directory {} is not a directory", dir.display());
    }
    Ok(Arc::new(
        sampler_adapter_shm::ShmSampler::new(dir).on_event(|e| eprintln!("sampler: {e}")),
    ))
}

fn prometheus_flag(addr: &str) -> Result<Box<dyn Exporter>> {
    let exporter = sampler_exporter_prometheus::PrometheusExporter::builder()
        .address(addr)
        .build()?;
    eprintln!("sampler: serving prometheus metrics at {}", exporter.url());
    Ok(Box::new(exporter))
}

/// `sampler run --config FILE`: runs the file's pipeline (plus what the flags add) until
/// SIGINT or SIGTERM; SIGHUP reloads the file, and an invalid new file is reported while the
/// running pipeline goes on.
#[cfg(unix)]
pub fn run_config(path: &std::path::Path, args: &cli::RunArgs) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;

    // SIGHUP is caught before anything else happens, so a reload sent early never kills us.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("failed to install SIGINT/SIGTERM/SIGHUP handlers")?;
    let load = |path: &std::path::Path| -> Result<sampler_config::Config> {
        let mut c = sampler_config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(i) = args.interval {
            c.harvest.interval = i;
        }
        Ok(c)
    };
    let mut pipeline = Pipeline::new(load(path)?);
    if let Some(s) = flag_targets(&args.watch) {
        pipeline = pipeline.sampler(s);
    }
    if let Some(addr) = &args.prometheus {
        pipeline = pipeline.exporter(prometheus_flag(addr)?);
    }
    if let Some(dir) = &args.shm {
        pipeline = pipeline.sampler(shm_flag(dir)?);
    }
    sampler_api::set_event_hook(|event| eprintln!("sampler: {event}"));
    let mut running = pipeline.start()?;
    for signal in signals.forever() {
        if signal != SIGHUP {
            break;
        }
        match load(path).and_then(|c| running.reload(c)) {
            Ok(report) => eprintln!("sampler: {}: {report}", path.display()),
            Err(e) => {
                eprintln!(
                    "sampler: {}: not reloaded, the running pipeline goes on:",
                    path.display()
                );
                for line in format!("{e:#}").lines() {
                    eprintln!("sampler: {line}");
                }
            }
        }
    }
    running.shutdown()
}

/// The whole `sampler` command: parses the process's arguments, runs, prints errors one line
/// each on stderr and gives the exit code. A binary that links crates with their own exporter
/// or adapter kinds calls this from its `main` to be the `sampler` command with those kinds.
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     sampler::cli_main()
/// }
/// ```
pub fn cli_main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = cli::Cli::parse();
    match main_with(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line per problem, each naming what and why: scripts grep stderr.
            for line in format!("{e:#}").lines() {
                eprintln!("sampler: {line}");
            }
            std::process::ExitCode::from(1)
        }
    }
}

/// Runs the parsed command line.
pub fn main_with(cli: cli::Cli) -> Result<()> {
    match cli.command {
        cli::Command::Check(args) => check(&args.file),
        cli::Command::Dump(args) => match &args.config {
            Some(path) => {
                let config =
                    sampler_config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
                let mut pipeline = Pipeline::new(config);
                if let Some(s) = flag_targets(&args.watch) {
                    pipeline = pipeline.sampler(s);
                }
                pipeline.dump()
            }
            None => dump(Plan::from_flags(&args.watch, &args.output)?),
        },
        #[cfg(unix)]
        cli::Command::Run(args) => {
            if let Some(path) = &args.config {
                return run_config(path, &args);
            }
            let mut plan = Plan::from_flags(&args.watch, &args.output)?;
            if let Some(addr) = &args.prometheus {
                plan.exporters.push(prometheus_flag(addr)?);
            }
            if let Some(dir) = &args.shm {
                plan.samplers.push(shm_flag(dir)?);
            }
            run(plan, args.interval.unwrap_or(DEFAULT_INTERVAL))
        }
        #[cfg(not(unix))]
        cli::Command::Run(_) => bail!("sampler run needs a Unix system for its signal handling"),
    }
}
