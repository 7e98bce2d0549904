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
pub mod top;

pub use pipeline::{Pipeline, ReloadReport, RunningPipeline};

use std::fmt;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sampler_adapter_process::{HostSampler, ProcessSampler, Target};
use sampler_api::{
    ExportError, Exporter, HarvestHandle, Harvester, HarvesterBuilder, Registration, Registry,
    Sampler, Snapshot, DEFAULT_INTERVAL,
};
use sampler_exporter_console::ConsoleExporter;

use cli::{Output, Watch};

/// How long shutdown waits for exporters to write and flush the last harvest.
pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes one line to stderr, prefixed `sampler: `. A stderr that cannot be written (closed,
/// full) is no reason to stop sampling, so the error is dropped.
///
/// ```
/// sampler::say(format_args!("serving prometheus metrics at {}", "http://127.0.0.1:9464/metrics"));
/// ```
pub fn say(line: impl fmt::Display) {
    let _ = writeln!(io::stderr().lock(), "sampler: {line}");
}

/// The error of a run or dump whose output was a pipe that its reader closed: the command
/// then ends quietly, as a Unix filter does (see `main`).
#[derive(Debug)]
pub struct BrokenPipe;

impl fmt::Display for BrokenPipe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the output was closed by its reader")
    }
}

impl std::error::Error for BrokenPipe {}

/// The first failure to write the console output, shared by its exporter and the command: a
/// run stops at it (output that cannot be written is fatal), with one line saying why.
///
/// ```
/// use sampler::cli::{Output, Watch};
/// use sampler::Plan;
///
/// # #[cfg(target_os = "linux")] {
/// let output = Output { output: Some("/dev/full".into()), ..Output::default() };
/// let plan = Plan::from_flags(&Watch::default(), &output)?;
/// let failure = plan.output_failure.clone();
/// assert!(sampler::dump(plan).is_err());
/// let (message, broken_pipe) = failure.get().unwrap();
/// assert!(message.starts_with("failed to write console output to /dev/full: "));
/// assert!(!broken_pipe);
/// # }
/// # Ok::<(), anyhow::Error>(())
/// ```
#[derive(Default)]
pub struct OutputFailure {
    failure: Mutex<Option<(String, bool)>>,
    wake: Mutex<Option<Box<dyn Fn() + Send>>>,
}

impl fmt::Debug for OutputFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputFailure")
            .field("failure", &self.get())
            .finish()
    }
}

impl OutputFailure {
    /// The failure, if the output failed: its message, and whether it was a broken pipe.
    pub fn get(&self) -> Option<(String, bool)> {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The error a command returns for this failure, if there is one.
    pub fn error(&self) -> Option<anyhow::Error> {
        self.get().map(|(message, broken_pipe)| {
            if broken_pipe {
                anyhow::Error::new(BrokenPipe)
            } else {
                anyhow::anyhow!(message)
            }
        })
    }

    /// Calls `wake` at the first failure (at once if it already happened).
    pub fn on_failure(&self, wake: impl Fn() + Send + 'static) {
        let failed = self.get().is_some();
        *self.wake.lock().unwrap_or_else(PoisonError::into_inner) = Some(Box::new(wake));
        if failed {
            self.call_wake();
        }
    }

    fn set(&self, e: &ExportError) {
        {
            let mut f = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
            if f.is_some() {
                return;
            }
            *f = Some((e.chain(), is_broken_pipe(e)));
        }
        self.call_wake();
    }

    fn call_wake(&self) {
        if let Some(wake) = &*self.wake.lock().unwrap_or_else(PoisonError::into_inner) {
            wake();
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::BrokenPipe {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// The failure shared by the consoles of a config file: any of them failing ends the run, as
/// the one console of a run from flags does.
pub(crate) fn config_console_failure() -> Arc<OutputFailure> {
    static FAILURE: std::sync::OnceLock<Arc<OutputFailure>> = std::sync::OnceLock::new();
    FAILURE.get_or_init(Arc::default).clone()
}

/// The console exporter, recording its first failure in an [`OutputFailure`]; after it, it
/// writes nothing more.
pub(crate) struct Console {
    inner: ConsoleExporter,
    failure: Arc<OutputFailure>,
}

impl Console {
    /// A console whose first failure goes to `failure`.
    pub(crate) fn new(inner: ConsoleExporter, failure: Arc<OutputFailure>) -> Console {
        Console { inner, failure }
    }

    fn check(&self, r: Result<(), ExportError>) -> Result<(), ExportError> {
        if let Err(e) = &r {
            self.failure.set(e);
        }
        r
    }
}

impl Exporter for Console {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        if let Some((message, _)) = self.failure.get() {
            return Err(ExportError::new(message));
        }
        let r = self.inner.export(snapshot);
        self.check(r)
    }

    fn flush(&mut self, deadline: Instant) -> Result<(), ExportError> {
        if self.failure.get().is_some() {
            return Ok(());
        }
        let r = self.inner.flush(deadline);
        self.check(r)
    }

    fn shutdown(&mut self, deadline: Instant) -> Result<(), ExportError> {
        if self.failure.get().is_some() {
            return Ok(());
        }
        let r = self.inner.shutdown(deadline);
        self.check(r)
    }

    fn sampler(&self) -> Option<Arc<dyn Sampler>> {
        self.inner.sampler()
    }

    fn attach(&mut self, handle: HarvestHandle) {
        self.inner.attach(handle)
    }
}

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
    /// The console output's first failure, which ends a run.
    pub output_failure: Arc<OutputFailure>,
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
        let output_failure = Arc::new(OutputFailure::default());
        let console = Console {
            inner: console,
            failure: output_failure.clone(),
        };
        let mut plan = Plan {
            registry: Registry::global().clone(),
            exporters: vec![Box::new(console)],
            samplers: Vec::new(),
            watched: None,
            output_failure,
        };
        // Elsewhere than Linux the process sampler harvests nothing and says so once, through
        // the same handler. Events show names and paths escaped: one line each.
        let process = Arc::new(
            ProcessSampler::with_targets(targets)
                .naming(watch.names.into())
                .on_event(|event| say(event)),
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
    let output = plan.output_failure.clone();
    let (builder, _registrations) = plan.into_builder();
    // Shutdown runs exactly one harvest, exports it and flushes every exporter.
    let done = builder.build().shutdown(SHUTDOWN_TIMEOUT);
    if let Some(e) = output.error() {
        return Err(e);
    }
    done.context("failed to write the harvest")?;
    Ok(())
}

/// Harvests at once and then every `interval` until SIGINT or SIGTERM; then harvests a last
/// time, flushes every exporter and returns.
///
/// SIGHUP, SIGUSR1 and SIGUSR2 are caught and ignored: the flags are the whole configuration,
/// so there is nothing to reload, and a signal sent by habit (`systemctl reload`, `kill -HUP`)
/// must not end the run and lose its data. A terminal that hangs up ends the run anyway, at the
/// next output it fails to take.
///
/// Output that cannot be written ends the run at once: with the error (one line) when it is
/// full or failing, with [`BrokenPipe`] when its reader closed it.
#[cfg(unix)]
pub fn run(plan: Plan, interval: Duration) -> Result<()> {
    run_with(plan, interval, signals()?)
}

/// The signals a run handles, caught from now on.
#[cfg(unix)]
fn signals() -> Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
    signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2])
        .context("failed to install signal handlers")
}

#[cfg(unix)]
fn run_with(
    plan: Plan,
    interval: Duration,
    mut signals: signal_hook::iterator::Signals,
) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};

    let output = plan.output_failure.clone();
    let handle = signals.handle();
    // A failed output ends the wait below as a signal would.
    output.on_failure(move || handle.close());
    say_events(output.clone());
    let (builder, _registrations) = plan.into_builder();
    let harvester = builder.interval(interval).harvest_at_start(true).start();
    // `forever` yields only the signals registered above, and ends when the handle closes.
    for signal in signals.forever() {
        if matches!(signal, SIGINT | SIGTERM) {
            break;
        }
    }
    let done = harvester.shutdown(SHUTDOWN_TIMEOUT);
    if let Some(e) = output.error() {
        return Err(e);
    }
    done.context("failed to write the last harvest")?;
    Ok(())
}

/// Prints every event on stderr, one line each (an exporter that starts failing, or recovers;
/// never one line per attempt), except the console's own failure: that ends the run and is
/// said once by it.
#[cfg(unix)]
fn say_events(console: Arc<OutputFailure>) {
    sampler_api::set_event_hook(move |event| {
        let the_console_failing = match (event, console.get()) {
            (sampler_api::Event::ExporterFailing { error, .. }, Some((failure, _))) => {
                error.contains(&failure)
            }
            _ => false,
        };
        if !the_console_failing {
            say(format_args!("{event}"))
        }
    });
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
        ProcessSampler::with_targets(targets)
            .naming(watch.names.into())
            .on_event(|event| say(format_args!("{event}"))),
    ))
}

/// The reader of `--shm DIR`; the directory must exist.
fn shm_flag(dir: &std::path::Path) -> Result<Arc<dyn Sampler>> {
    if !dir.is_dir() {
        bail!("shm directory {} is not a directory", dir.display());
    }
    Ok(Arc::new(
        sampler_adapter_shm::ShmSampler::new(dir).on_event(|e| say(e)),
    ))
}

/// The exporter of `--prometheus ADDR`, with its connection limit; says where it serves, and
/// says it aloud when that is every network interface.
fn prometheus_flag(addr: &str, max_connections: Option<u32>) -> Result<Box<dyn Exporter>> {
    let max = cli::prometheus_connections(max_connections)?;
    let exporter = sampler_exporter_prometheus::PrometheusExporter::builder()
        .address(addr)
        .max_connections(max)
        .build()?;
    let at = exporter.local_addr();
    if at.ip().is_unspecified() {
        say(format_args!(
            "serving prometheus metrics at {} on every network interface \
             (listening on {at}); give --prometheus 127.0.0.1:{} for this host alone",
            exporter.url(),
            at.port()
        ));
    } else {
        say(format_args!(
            "serving prometheus metrics at {}",
            exporter.url()
        ));
    }
    say(format_args!("serving the live page at http://{at}/"));
    Ok(Box::new(exporter))
}

/// The exporter of `--ui ADDR`: the live page on its own listener; says where it serves.
fn ui_flag(addr: &str) -> Result<Box<dyn Exporter>> {
    let ui = sampler_exporter_ui::UiExporter::builder()
        .listen(addr)
        .build()?;
    say(format_args!("serving the live page at {}", ui.url()));
    Ok(Box::new(ui))
}

/// `sampler run --config FILE`: runs the file's pipeline (plus what the flags add) until
/// SIGINT or SIGTERM; SIGHUP reloads the file, and an invalid new file is reported while the
/// running pipeline goes on.
#[cfg(unix)]
pub fn run_config(
    path: &std::path::Path,
    args: &cli::RunArgs,
    mut signals: signal_hook::iterator::Signals,
) -> Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

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
        pipeline = pipeline.exporter(prometheus_flag(addr, args.prometheus_max_connections)?);
    }
    if let Some(addr) = &args.ui {
        pipeline = pipeline.exporter(ui_flag(addr)?);
    }
    if let Some(addr) = &args.graphite {
        pipeline = pipeline.exporter(graphite_exporter(addr)?);
    }
    if let Some(addr) = &args.statsd {
        pipeline = pipeline.exporter(statsd_exporter(addr)?);
    }
    if let Some(url) = &args.remote_write {
        pipeline = pipeline.exporter(remote_write_exporter(url)?);
    }
    if let Some(url) = &args.otlp {
        pipeline = pipeline.exporter(otlp_exporter(url)?);
    }
    if let Some(dir) = &args.shm {
        pipeline = pipeline.sampler(shm_flag(dir)?);
    }
    let output = config_console_failure();
    let handle = signals.handle();
    // A console whose output fails ends the run, as in a run from flags, with its own line.
    output.on_failure(move || handle.close());
    say_events(output.clone());
    let mut running = pipeline.start()?;
    // SIGUSR1 and SIGUSR2 are caught and ignored, as in a run from flags.
    for signal in signals.forever() {
        match signal {
            SIGINT | SIGTERM => break,
            SIGHUP => match load(path).and_then(|c| running.reload(c)) {
                Ok(report) => say(format_args!("{}: {report}", path.display())),
                Err(e) => {
                    say(format_args!(
                        "{}: not reloaded, the running pipeline goes on:",
                        path.display()
                    ));
                    for line in format!("{e:#}").lines() {
                        say(line);
                    }
                }
            },
            _ => {}
        }
    }
    let done = running.shutdown();
    if let Some(e) = output.error() {
        return Err(e);
    }
    done
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
        Err(e) if e.is::<BrokenPipe>() => broken_pipe(),
        Err(e) => {
            // One line per problem, each naming what and why: scripts grep stderr.
            for line in format!("{e:#}").lines() {
                say(line);
            }
            std::process::ExitCode::from(1)
        }
    }
}

/// The output's reader went away (`sampler run | head -1`): end quietly, the way a Unix filter
/// does, killed by SIGPIPE (a shell shows status 141). The signal is ignored while the command
/// runs, so that a scraper closing its socket never kills it; it is restored here, at the end.
fn broken_pipe() -> std::process::ExitCode {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE and raising it touch no memory of
    // ours; nothing else in the process handles SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached on Unix.
    std::process::ExitCode::from(141)
}

/// Runs the parsed command line.
pub fn main_with(cli: cli::Cli) -> Result<()> {
    match cli.command {
        cli::Command::Check(args) => check(&args.file),
        cli::Command::Dump(args) => {
            let mut extra = Vec::new();
            if let Some(addr) = &args.graphite {
                extra.push(graphite_exporter(addr)?);
            }
            match &args.config {
                Some(path) => {
                    let config =
                        sampler_config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
                    let mut pipeline = Pipeline::new(config);
                    if let Some(s) = flag_targets(&args.watch) {
                        pipeline = pipeline.sampler(s);
                    }
                    for e in extra {
                        pipeline = pipeline.exporter(e);
                    }
                    let done = pipeline.dump();
                    if let Some(e) = config_console_failure().error() {
                        return Err(e);
                    }
                    done
                }
                None => {
                    let mut plan = Plan::from_flags(&args.watch, &args.output)?;
                    plan.exporters.extend(extra);
                    dump(plan)
                }
            }
        }
        #[cfg(unix)]
        cli::Command::Run(args) => {
            // Handlers go in before the first output (the endpoint's address, the first
            // harvest), so a signal sent as soon as output shows is caught rather than killing
            // the process.
            let signals = signals()?;
            if let Some(path) = &args.config {
                return run_config(path, &args, signals);
            }
            let mut plan = Plan::from_flags(&args.watch, &args.output)?;
            if let Some(addr) = &args.prometheus {
                plan.exporters
                    .push(prometheus_flag(addr, args.prometheus_max_connections)?);
            }
            if let Some(addr) = &args.ui {
                plan.exporters.push(ui_flag(addr)?);
            }
            if let Some(addr) = &args.graphite {
                plan.exporters.push(graphite_exporter(addr)?);
            }
            if let Some(addr) = &args.statsd {
                plan.exporters.push(statsd_exporter(addr)?);
            }
            if let Some(url) = &args.remote_write {
                plan.exporters.push(remote_write_exporter(url)?);
            }
            if let Some(url) = &args.otlp {
                plan.exporters.push(otlp_exporter(url)?);
            }
            if let Some(dir) = &args.shm {
                plan.samplers.push(shm_flag(dir)?);
            }
            run_with(plan, args.interval.unwrap_or(DEFAULT_INTERVAL), signals)
        }
        #[cfg(not(unix))]
        cli::Command::Run(_) => bail!("sampler run needs a Unix system for its signal handling"),
        #[cfg(unix)]
        cli::Command::Top(args) => top::run(args),
        #[cfg(not(unix))]
        cli::Command::Top(_) => bail!("sampler top needs a Unix system for its signal handling"),
    }
}

/// The Graphite exporter of `--graphite ADDR`: plaintext over TCP, labels as tags. When the
/// backend starts failing and when it is back is said once each through the harvester's event
/// hook, like every exporter's.
fn graphite_exporter(addr: &str) -> Result<Box<dyn Exporter>> {
    let exporter = sampler_exporter_graphite::GraphiteExporter::builder()
        .address(addr)
        .build()?;
    Ok(Box::new(exporter))
}

/// The StatsD exporter of `--statsd ADDR`: UDP, lines packed into datagrams.
fn statsd_exporter(addr: &str) -> Result<Box<dyn Exporter>> {
    let exporter = sampler_exporter_statsd::StatsdExporter::builder()
        .address(addr)
        .build()?;
    say(format_args!("sending to statsd at {addr} (udp)"));
    Ok(Box::new(exporter))
}

/// The remote write exporter of `--remote-write URL`.
fn remote_write_exporter(url: &str) -> Result<Box<dyn Exporter>> {
    let exporter = sampler_exporter_remote_write::RemoteWriteExporter::builder()
        .url(url)
        .build()?;
    say(format_args!("pushing to prometheus remote write at {url}"));
    Ok(Box::new(exporter))
}

/// The OTLP exporter of `--otlp URL`: OTLP/HTTP with protobuf and gzip, `service.name=sampler`.
fn otlp_exporter(url: &str) -> Result<Box<dyn Exporter>> {
    let exporter = sampler_exporter_otlp::OtlpExporter::builder()
        .endpoint(url)
        .resource("service.name", "sampler")
        .build()?;
    say(format_args!(
        "sending otlp metrics to {}",
        exporter.endpoint()
    ));
    Ok(Box::new(exporter))
}
