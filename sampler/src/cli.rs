//! The command line: `sampler run` and `sampler dump`, with their flags.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use sampler_adapter_process::NamePattern;
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
    /// Time between harvests: 1s, 500ms, 10s, 1m [default: 10s, or the config file's].
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
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9464")]
    pub prometheus: Option<String>,
    /// Also harvest the shared-memory segments that worker processes write into DIR (counters
    /// and timings summed across processes, gauges per process).
    #[arg(long, value_name = "DIR")]
    pub shm: Option<PathBuf>,
}

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
}

/// The processes to watch. With none given, the sampler watches itself.
#[derive(Debug, Args, Default, Clone)]
pub struct Watch {
    /// Watch the process with this id (repeatable).
    #[arg(long, value_name = "PID", value_parser = clap::value_parser!(u32).range(1..))]
    pub pid: Vec<u32>,
    /// Watch the process whose id this file holds, read again at every harvest (repeatable).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Vec<PathBuf>,
    /// Watch every process whose name or command line matches this regular expression
    /// (repeatable); anchor it to match the name alone: '^nginx$'.
    #[arg(long, value_name = "REGEX", value_parser = parse_name)]
    pub name: Vec<NamePattern>,
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

/// Parses `1s`, `500ms`, `10s`, `1m`, at least 1 ms.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(sampler::cli::parse_interval("500ms"), Ok(Duration::from_millis(500)));
/// assert!(sampler::cli::parse_interval("0s").is_err());
/// assert!(sampler::cli::parse_interval("soon").is_err());
/// ```
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("invalid interval {s:?}: {e} (try 1s, 500ms, 10s)"))?;
    if d < Duration::from_millis(1) {
        return Err(format!("invalid interval {s:?}: must be at least 1ms"));
    }
    Ok(d)
}

fn parse_name(s: &str) -> Result<NamePattern, String> {
    NamePattern::new(s).map_err(|e| e.to_string())
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
        assert!(run.watch.is_explicit());
        assert!(Cli::try_parse_from(["sampler", "dump", "--pid", "0"]).is_err());
        assert!(Cli::try_parse_from(["sampler", "dump", "--name", "("]).is_err());
        assert!(Cli::try_parse_from(["sampler", "run", "--interval", "0ms"]).is_err());
        let Command::Dump(d) = Cli::try_parse_from(["sampler", "dump"]).unwrap().command else {
            panic!("not dump")
        };
        assert!(!d.watch.is_explicit());
        assert_eq!(d.output.format, FormatArg::Table);
    }
}
