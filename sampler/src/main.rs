//! The `sampler` command. See `sampler --help`, and the `sampler` library for the parts.

use std::process::ExitCode;

use clap::Parser;

/// The output's reader went away (`sampler run | head -1`): end quietly, the way a Unix filter
/// does, killed by SIGPIPE (a shell shows status 141). The signal is ignored while the command
/// runs, so that a scraper closing its socket never kills it; it is restored here, at the end.
fn broken_pipe() -> ExitCode {
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE and raising it touch no memory of
    // ours; nothing else in the process handles SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::raise(libc::SIGPIPE);
    }
    // Not reached on Unix.
    ExitCode::from(141)
}

fn main() -> ExitCode {
    let cli = sampler::cli::Cli::parse();
    match sampler::main_with(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<sampler::BrokenPipe>() => broken_pipe(),
        Err(e) => {
            // One line per problem, each naming what and why: scripts grep stderr.
            for line in format!("{e:#}").lines() {
                sampler::say(line);
            }
            ExitCode::from(1)
        }
    }
}
