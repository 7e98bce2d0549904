//! `sampler top`: a live terminal view of a harvest (`spec/top.md`).
//!
//! The harvest comes from this process's own harvester (the flags or `--config` of `sampler
//! run`), or from any Prometheus endpoint (`--url`). The parts: [`summary`] turns frames into
//! rows (rates, quantiles, history) and is shared with other views; [`scrape`] reads the
//! Prometheus text format; [`model`] sorts, filters and answers keys; `ui` draws and owns the
//! terminal. Only `ui` and [`run`] touch the terminal.

pub mod model;
pub mod scrape;
pub mod summary;
pub mod ui;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Args;
use crossbeam_channel::{Receiver, Sender};
use crossterm::event::{self, Event, KeyEventKind};
use sampler_adapter_process::{HostSampler, ProcessSampler, Target};
use sampler_api::{ExportError, Exporter, Snapshot};

use crate::cli::{parse_interval, Watch};

/// Flags of `sampler top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Watch what this config file harvests (its adapters and `[harvest]`; its exporters and
    /// actions are not started: run `sampler run` for those).
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    pub config: Option<PathBuf>,
    /// Time between harvests (or scrapes of --url): 1s, 500ms [default: 1s, or the config
    /// file's].
    #[arg(long, value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Which processes to watch (none: the sampler itself), as for `sampler run`.
    #[command(flatten)]
    pub watch: Watch,
    /// Also harvest the shared-memory segments that worker processes write into DIR.
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    pub shm: Option<PathBuf>,
    /// Watch a Prometheus endpoint instead (text format), e.g. http://127.0.0.1:9464/metrics.
    #[arg(long, value_name = "URL", conflicts_with_all = ["pid", "pidfile", "name"])]
    pub url: Option<String>,
    /// How far back each sparkline reaches.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
    pub history: Duration,
}

/// The default interval of `sampler top`: a live view wants more than `run`'s 10 s.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// What a source sends the view.
#[derive(Debug)]
enum Message {
    Frame(summary::Frame),
    Error(String),
}

/// The view's exporter: each snapshot becomes a frame for the view; a view that lags loses
/// frames, never the harvest.
struct View {
    tx: Sender<Message>,
}

impl Exporter for View {
    fn name(&self) -> &str {
        "top"
    }

    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        let _ = self
            .tx
            .try_send(Message::Frame(summary::from_snapshot(&snapshot)));
        Ok(())
    }
}

/// Runs `sampler top` until `q`, Ctrl-C, SIGINT, SIGTERM or SIGHUP; the terminal is restored
/// in every case (and on a panic).
pub fn run(args: TopArgs) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        bail!("sampler top needs a terminal on standard output (for a log, use sampler run)");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone())
            .context("failed to install signal handlers")?;
    }
    end_after_grace(stop.clone())?;
    let (tx, rx) = crossbeam_channel::bounded(16);
    let notes = tx.clone();
    let interval = args
        .interval
        .or_else(|| args.config.is_some().then_some(Duration::ZERO))
        .unwrap_or(DEFAULT_INTERVAL);
    let (source, interval, stopper): (String, Duration, Box<dyn FnOnce()>) = match &args.url {
        Some(url) => {
            let (done_tx, done_rx) = crossbeam_channel::bounded::<()>(0);
            let thread = scrape_thread(url.clone(), interval, tx, done_rx)?;
            (
                url.clone(),
                interval,
                Box::new(move || {
                    drop(done_tx);
                    let _ = thread.join();
                }),
            )
        }
        None => in_process(&args, interval, tx)?,
    };
    let history = (args.history.as_secs_f64() / interval.as_secs_f64().max(1e-3)).ceil() as usize;
    let mut app = model::App::new(source, history.clamp(2, 600));
    let result = (|| -> Result<()> {
        let screen = ui::Screen::enter().context("failed to set up the terminal")?;
        ui::capture_stderr(move |line| {
            let _ = notes.try_send(Message::Error(line));
        })
        .context("failed to capture standard error")?;
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))
                .context("failed to set up the terminal")?;
        let r = view(&mut terminal, &mut app, &rx, &stop);
        drop(terminal);
        drop(screen);
        r
    })();
    stopper();
    result
}

/// How long after a signal the view may take to restore the terminal and stop its harvester
/// before the process ends without it.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Ends the process `STOP_GRACE` after `stop` is set by a signal, if it is still running then.
/// When the terminal goes away (its window closes, its tmux server is killed) the kernel sends
/// SIGHUP, but crossterm's event poll then reads end-of-file in a loop and never returns, so
/// the view never sees `stop`: without this the process would keep a core busy for good and
/// ignore SIGTERM. There is no terminal left to restore in that case.
fn end_after_grace(stop: Arc<AtomicBool>) -> Result<()> {
    std::thread::Builder::new()
        .name("sampler-top-stop".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(STOP_GRACE);
            std::process::exit(1);
        })
        .context("failed to start the stop thread")?;
    Ok(())
}

fn view(
    terminal: &mut ratatui::Terminal<ratatui::backend::CrosstermBackend<std::io::Stdout>>,
    app: &mut model::App,
    rx: &Receiver<Message>,
    stop: &AtomicBool,
) -> Result<()> {
    let mut dirty = true;
    while !stop.load(Ordering::Relaxed) {
        while let Ok(m) = rx.try_recv() {
            match m {
                Message::Frame(f) => app.frame(&f),
                Message::Error(e) => app.note(e),
            }
            dirty = true;
        }
        if dirty {
            terminal
                .draw(|f| ui::draw(f, app))
                .context("failed to draw")?;
            dirty = false;
        }
        // A signal interrupts the wait; the loop then sees `stop`.
        match event::poll(Duration::from_millis(100)) {
            Ok(true) => match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => {
                    if let Some(key) = ui::key_of(k) {
                        if !app.key(key) {
                            return Ok(());
                        }
                        dirty = true;
                    }
                }
                Ok(Event::Resize(..)) => dirty = true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("failed to read the terminal"),
            },
            Ok(false) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("failed to read the terminal"),
        }
    }
    Ok(())
}

type Stopper = Box<dyn FnOnce()>;

/// Starts this process's harvester with the view as its only exporter.
fn in_process(
    args: &TopArgs,
    interval: Duration,
    tx: Sender<Message>,
) -> Result<(String, Duration, Stopper)> {
    let explicit = args.watch.is_explicit();
    if explicit && !sampler_adapter_process::SUPPORTED {
        bail!(
            "cannot watch processes on {}: process metrics need Linux /proc",
            std::env::consts::OS
        );
    }
    // What the samplers would say on stderr goes to the view's status line instead: the
    // screen is the view's.
    let note = {
        let tx = tx.clone();
        move |line: String| {
            let _ = tx.try_send(Message::Error(line));
        }
    };
    {
        let note = note.clone();
        sampler_api::set_event_hook(move |event| note(event.to_string()));
    }
    let mut samplers: Vec<Arc<dyn sampler_api::Sampler>> = Vec::new();
    let mut targets: Vec<Target> = Vec::new();
    targets.extend(args.watch.pid.iter().map(|&p| Target::Pid(p)));
    targets.extend(args.watch.pidfile.iter().cloned().map(Target::PidFile));
    targets.extend(args.watch.name.iter().cloned().map(Target::Name));
    let mut what = Vec::new();
    if !explicit && args.config.is_none() {
        targets.push(Target::Current);
    }
    if !targets.is_empty() {
        let n = note.clone();
        samplers.push(Arc::new(
            ProcessSampler::with_targets(targets)
                .naming(args.watch.names.into())
                .on_event(move |e| n(e.to_string())),
        ));
    }
    if let Some(dir) = &args.shm {
        if !dir.is_dir() {
            bail!("shm directory {} is not a directory", dir.display());
        }
        let n = note.clone();
        samplers.push(Arc::new(
            sampler_adapter_shm::ShmSampler::new(dir).on_event(move |e| n(e.to_string())),
        ));
        what.push(format!("shm {}", dir.display()));
    }
    let view = Box::new(View { tx });
    match &args.config {
        Some(path) => {
            let mut config =
                sampler_config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
            config.exporters.clear();
            config.actions.clear();
            if !interval.is_zero() {
                config.harvest.interval = interval;
            }
            let interval = config.harvest.interval;
            let mut pipeline = crate::Pipeline::new(config).exporter(view);
            for s in samplers {
                pipeline = pipeline.sampler(s);
            }
            let running = pipeline.start()?;
            what.insert(0, path.display().to_string());
            Ok((
                what.join(", "),
                interval,
                Box::new(move || {
                    let _ = running.shutdown();
                }),
            ))
        }
        None => {
            samplers.push(Arc::new(HostSampler::new()));
            let registry = sampler_api::Registry::global().clone();
            let registrations: Vec<_> = samplers
                .into_iter()
                .map(|s| registry.register_arc(s))
                .collect();
            let harvester = sampler_api::Harvester::builder()
                .registry(registry)
                .boxed_exporter(view)
                .interval(interval)
                .harvest_at_start(true)
                .start();
            what.insert(0, "this host".into());
            Ok((
                what.join(", "),
                interval,
                Box::new(move || {
                    let _ = harvester.shutdown(Duration::from_secs(1));
                    drop(registrations);
                }),
            ))
        }
    }
}

/// Scrapes `url` every `interval` on its own thread until `done` closes.
fn scrape_thread(
    url: String,
    interval: Duration,
    tx: Sender<Message>,
    done: Receiver<()>,
) -> Result<std::thread::JoinHandle<()>> {
    if url.parse::<ureq::http::Uri>().is_err() || !url.starts_with("http://") {
        bail!("invalid --url {url:?}: expected http://HOST:PORT/PATH");
    }
    let timeout = interval.clamp(Duration::from_millis(200), Duration::from_secs(10));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .build()
        .into();
    std::thread::Builder::new()
        .name("sampler-top-scrape".into())
        .spawn(move || loop {
            let time = SystemTime::now();
            let message = match scrape(&agent, &url) {
                Ok((readings, _)) => Message::Frame(summary::Frame { time, readings }),
                Err(e) => Message::Error(format!("failed to scrape {url}: {e}")),
            };
            // The view drains the channel; one that is gone or behind loses this scrape.
            if let Err(crossbeam_channel::TrySendError::Disconnected(_)) = tx.try_send(message) {
                return;
            }
            match done.recv_timeout(interval) {
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                _ => return,
            }
        })
        .context("failed to start the scrape thread")
}

fn scrape(agent: &ureq::Agent, url: &str) -> Result<(Vec<summary::Reading>, usize), String> {
    let mut response = agent
        .get(url)
        .header("Accept", "text/plain;version=0.0.4")
        .call()
        .map_err(|e| e.to_string())?;
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| e.to_string())?;
    Ok(scrape::parse_text(&body))
}
