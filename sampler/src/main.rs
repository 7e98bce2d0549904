//! The `sampler` command. See `sampler --help`, and the `sampler` library for the parts.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = sampler::cli::Cli::parse();
    match sampler::main_with(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line per problem, each naming what and why: scripts grep stderr.
            for line in format!("{e:#}").lines() {
                eprintln!("sampler: {line}");
            }
            ExitCode::from(1)
        }
    }
}
