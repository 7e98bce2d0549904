//! The command line: `sampler run` and `sampler dump`, with their flags.

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sampler_adapter_process::{NamePattern, Naming};
use sampler_exporter_console::Format;

/// Harvests metrics of processes and the host and prints or exports them.
///
/// With no flags it watches itself and the host and prints a table every 10 seconds.
#[derive(Debug, Parser)]
#[command(name = "sampler", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Harvest every interval (the first at once) and print, until SIGINT or SIGTERM; then
    /// harvest a last time, flush and exit 0.
    Run(RunArgs),
    /// Harvest once, print and exit; exits 1 when a watched process is not there.
    Dump(DumpArgs),
    /// Check a config file and print the pipeline it describes; exits 1, with every problem,
    /// when it is not valid.
    Check(CheckArgs),
    /// A live terminal view of the harvest, or of a Prometheus endpoint's (--url).
    ///
    /// Series sorted and filtered, counters as rates, timings as p50/p99, sparklines of the last
    /// minutes, processes with RSS and CPU. Keys: q quit, / filter, n v p sort by name, value,
    /// p99, space pause.
    Top(crate::top::TopArgs),
}

/// Flags of `sampler check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The config file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Flags of `sampler run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Take exporters, adapters and the harvest settings from this TOML file (the flags below
    /// add to it). SIGHUP reloads it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Time between harvests: 1s, 500ms, 10s, 1m (1ms to 1d) [default: 10s, or the config
    /// file's].
    #[arg(long, value_parser = parse_interval)]
    pub interval: Option<Duration>,
    /// Which processes to watch.
    #[command(flatten)]
    pub watch: Watch,
    /// Where and how to print.
    #[command(flatten)]
    pub output: Output,
    /// Also serve the latest harvest for Prometheus to scrape, at ADDR (default
    /// 127.0.0.1:9464) under /metrics.
    /// :PORT listens on every network interface.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9464")]
    pub prometheus: Option<String>,
    /// The most connections the Prometheus endpoint serves at once (default 256, lowered to
    /// fit the file descriptor limit); past it a connection is answered 503 and closed.
    #[arg(long, value_name = "N", requires = "prometheus", value_parser = clap::value_parser!(u32).range(1..=MAX_CONNECTIONS as i64))]
    pub prometheus_max_connections: Option<u32>,
    /// Also serve the live page at ADDR (default 127.0.0.1:9466): every series of the last 60
    /// harvests as small charts, updated after each harvest.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = sampler_exporter_ui::DEFAULT_LISTEN)]
    pub ui: Option<String>,
    /// Also send every harvest to Graphite (carbon's plaintext protocol over TCP, labels as
    /// tags) at ADDR (default 127.0.0.1:2003).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:2003")]
    pub graphite: Option<String>,
    /// Also send every harvest to a StatsD daemon at ADDR (default 127.0.0.1:8125) over UDP:
    /// counters as deltas, gauges, timings as weighted |ms lines.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8125")]
    pub statsd: Option<String>,
    /// Also push every harvest to a Prometheus remote write receiver at URL (Prometheus with
    /// --web.enable-remote-write-receiver: http://127.0.0.1:9090/api/v1/write, VictoriaMetrics,
    /// Mimir, Thanos).
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<String>,
    /// Also send every harvest over OTLP/HTTP (protobuf, gzip) to URL (default
    /// http://127.0.0.1:4318/v1/metrics, an OpenTelemetry Collector on this machine).
    #[arg(long, value_name = "URL", num_args = 0..=1, default_missing_value = sampler_exporter_otlp::DEFAULT_ENDPOINT)]
    pub otlp: Option<String>,
    /// Also harvest the shared-memory segments that worker processes write into DIR (counters
    /// and timings summed across processes, gauges per process).
    #[arg(long, value_name = "DIR")]
    pub shm: Option<PathBuf>,
}

/// The highest `--prometheus-max-connections` accepted.
pub const MAX_CONNECTIONS: u32 = 1 << 20;
/// The default `--prometheus-max-connections`.
pub const DEFAULT_CONNECTIONS: u32 = 256;
/// File descriptors kept for everything but the endpoint's connections: standard streams, the
/// output file, the listener and its runtime, connections being refused, and reading `/proc`.
pub const RESERVED_FDS: u64 = 48;

/// Flags of `sampler dump`.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Take exporters and adapters from this TOML file (the flags below add to it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Which processes to watch.
    #[command(flatten)]
    pub watch: Watch,
    /// Where and how to print.
    #[command(flatten)]
    pub output: Output,
    /// Also send the harvest to Graphite (carbon's plaintext protocol over TCP, labels as
    /// tags) at ADDR (default 127.0.0.1:2003).
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:2003")]
    pub graphite: Option<String>,
}

/// The processes to watch. With none given, the sampler watches itself.
#[derive(Debug, Args, Default, Clone)]
pub struct Watch {
    /// Watch the process with this id (repeatable; 1 to 4194304, the kernel's highest).
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..=4_194_304))]
    pub pid: Vec<u32>,
    /// Watch the process whose id this file holds, read again at every harvest (repeatable).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Vec<PathBuf>,
    /// Watch every process whose name or command line matches this regular expression
    /// (repeatable, at most 1024 bytes); anchor it to match the name alone: '^nginx$'. Names
    /// are matched as bytes: bytes of REGEX that are not UTF-8 match themselves.
    #[arg(long, value_name = "REGEX", value_parser = name_parser())]
    pub name: Vec<NamePattern>,
    /// How process series are named: otel (OpenTelemetry's semantic conventions:
    /// process.cpu.time, process.memory.usage, …) or prometheus (the Prometheus client
    /// libraries' process_cpu_seconds_total, process_resident_memory_bytes, …).
    #[arg(long, value_enum, default_value_t = NamesArg::Otel)]
    pub names: NamesArg,
}

/// The namings of process series, as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum NamesArg {
    /// OpenTelemetry's semantic conventions.
    #[default]
    Otel,
    /// The Prometheus client libraries' standard process_* set.
    Prometheus,
}

impl From<NamesArg> for Naming {
    fn from(n: NamesArg) -> Naming {
        match n {
            NamesArg::Otel => Naming::OpenTelemetry,
            NamesArg::Prometheus => Naming::Prometheus,
        }
    }
}

impl Watch {
    /// Whether any process other than the sampler itself was asked for.
    pub fn is_explicit(&self) -> bool {
        !(self.pid.is_empty() && self.pidfile.is_empty() && self.name.is_empty())
    }
}

/// How and where the console exporter prints.
#[derive(Debug, Args, Clone, Default)]
pub struct Output {
    /// Output format: an aligned table for people, or JSON lines for programs.
    #[arg(long, value_enum, default_value_t = FormatArg::Table)]
    pub format: FormatArg,
    /// Append to this file instead of printing to stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The console formats, as flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum FormatArg {
    /// An aligned table.
    #[default]
    Table,
    /// One JSON object per series per line.
    Json,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Table => Format::Table,
            FormatArg::Json => Format::Json,
        }
    }
}

/// The longest interval: a day. Longer ones are surely a mistake (and past 584 years a
/// duration in nanoseconds no longer fits the clock's arithmetic).
pub const MAX_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses `1s`, `500ms`, `10s`, `1m`, from 1 ms to 1 day.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(sampler::cli::parse_interval("500ms"), Ok(Duration::from_millis(500)));
/// assert!(sampler::cli::parse_interval("0s").is_err());
/// assert!(sampler::cli::parse_interval("soon").is_err());
/// assert_eq!(
///     sampler::cli::parse_interval("585y").unwrap_err(),
///     "invalid interval \"585y\": must be at most 1d"
/// );
/// ```
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("invalid interval {s:?}: {e} (try 1s, 500ms, 10s)"))?;
    if d < Duration::from_millis(1) {
        return Err(format!("invalid interval {s:?}: must be at least 1ms"));
    }
    if d > MAX_INTERVAL {
        return Err(format!("invalid interval {s:?}: must be at most 1d"));
    }
    Ok(d)
}

fn name_parser() -> NameParser {
    NameParser
}

/// Parses `--name`; its error shows the pattern cut short, never a whole 40 KB argument.
#[derive(Clone, Debug)]
struct NameParser;

impl clap::builder::TypedValueParser for NameParser {
    type Value = NamePattern;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<NamePattern, clap::Error> {
        parse_name(value.to_owned()).map_err(|e| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for --name: {e}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

/// Parses a `--name` pattern from the raw argument: bytes that are not UTF-8 become
/// `(?-u:\xNN)`, which match that byte, so a process named in Latin-1 can be asked for.
fn parse_name(s: OsString) -> Result<NamePattern, String> {
    let raw = s.as_encoded_bytes();
    let mut pattern = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        pattern.push_str(chunk.valid());
        for b in chunk.invalid() {
            pattern.push_str(&format!("(?-u:\\x{b:02x})"));
        }
    }
    NamePattern::new(&pattern).map_err(|e| e.to_string())
}

/// How many connections the Prometheus endpoint may serve: `asked` (the flag) or the default,
/// fitted to the file descriptor limit (`ulimit -n`) less [`RESERVED_FDS`], so that clients can
/// never use up the descriptors the samplers and the output need. A flag asking for more than
/// fits is an error naming both; the default is lowered, and says so on stderr.
///
/// ```
/// use sampler::cli::prometheus_connections;
/// assert_eq!(prometheus_connections(Some(8))?, 8);
/// assert!(prometheus_connections(None)? >= 1);
/// # Ok::<(), anyhow::Error>(())
/// ```
pub fn prometheus_connections(asked: Option<u32>) -> anyhow::Result<usize> {
    let limit = fd_limit();
    let fits = limit.map(|l| l.saturating_sub(RESERVED_FDS));
    match (asked, fits) {
        (Some(n), Some(fits)) if u64::from(n) > fits => anyhow::bail!(
            "--prometheus-max-connections {n} needs {} file descriptors, more than the limit of {} (ulimit -n)",
            u64::from(n) + RESERVED_FDS,
            limit.unwrap_or(0)
        ),
        (Some(n), _) => Ok(n as usize),
        (None, Some(fits)) if fits < u64::from(DEFAULT_CONNECTIONS) => {
            let n = fits.max(1);
            crate::say(format_args!(
                "serving at most {n} prometheus connections at once: the file descriptor limit is {} (ulimit -n)",
                limit.unwrap_or(0)
            ));
            Ok(n as usize)
        }
        (None, _) => Ok(DEFAULT_CONNECTIONS as usize),
    }
}

/// The soft limit on open file descriptors, when there is one.
fn fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut rl = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `rl` is a valid, writable rlimit that outlives the call.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0
            && rl.rlim_cur != libc::RLIM_INFINITY
        {
            #[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
            return Some(rl.rlim_cur as u64);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn flags() {
        let cli = Cli::try_parse_from([
            "sampler",
            "run",
            "--interval",
            "1s",
            "--pid",
            "7",
            "--pid",
            "8",
            "--name",
            "^a$",
            "--format",
            "json",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.interval, Some(Duration::from_secs(1)));
        assert_eq!(run.watch.pid, vec![7, 8]);
        assert_eq!(run.output.format, FormatArg::Json);
        assert_eq!(run.watch.names, NamesArg::Otel);
        let Command::Dump(d) = Cli::try_parse_from(["sampler", "dump", "--names", "prometheus"])
            .unwrap()
            .command
        else {
            panic!("not dump")
        };
        assert_eq!(Naming::from(d.watch.names), Naming::Prometheus);
        assert!(Cli::try_parse_from(["sampler", "dump", "--names", "statsd"]).is_err());
        assert!(run.watch.is_explicit());
        assert!(Cli::try_parse_from(["sampler", "dump", "--pid", "0"]).is_err());
        assert!(Cli::try_parse_from(["sampler", "dump", "--name", "("]).is_err());
        assert!(Cli::try_parse_from(["sampler", "run", "--interval", "0ms"]).is_err());
        assert!(Cli::try_parse_from(["sampler", "run", "--interval", "585y"]).is_err());
        assert!(Cli::try_parse_from(["sampler", "dump", "--pid", "4194305"]).is_err());
        assert!(
            Cli::try_parse_from(["sampler", "run", "--prometheus-max-connections", "8"]).is_err()
        );
        assert!(Cli::try_parse_from([
            "sampler",
            "run",
            "--prometheus",
            ":0",
            "--prometheus-max-connections",
            "0"
        ])
        .is_err());
        let Command::Run(r) = Cli::try_parse_from(["sampler", "run", "--otlp"])
            .unwrap()
            .command
        else {
            panic!("not run")
        };
        assert_eq!(r.otlp.as_deref(), Some("http://127.0.0.1:4318/v1/metrics"));
        let Command::Dump(d) = Cli::try_parse_from(["sampler", "dump"]).unwrap().command else {
            panic!("not dump")
        };
        assert!(!d.watch.is_explicit());
        assert_eq!(d.output.format, FormatArg::Table);
        assert_eq!(d.graphite, None);
    }

    #[test]
    fn graphite_flag() {
        let Command::Run(r) = Cli::try_parse_from(["sampler", "run", "--graphite"])
            .unwrap()
            .command
        else {
            panic!("not run")
        };
        assert_eq!(r.graphite.as_deref(), Some("127.0.0.1:2003"));
        let Command::Dump(d) =
            Cli::try_parse_from(["sampler", "dump", "--graphite", "carbon.example:2003"])
                .unwrap()
                .command
        else {
            panic!("not dump")
        };
        assert_eq!(d.graphite.as_deref(), Some("carbon.example:2003"));
    }
}
