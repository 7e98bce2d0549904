//! `web-service` on the system allocator (no per-request memory): the overhead benchmark's
//! rows without the counting allocator. Same options as `web-service`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match example_web_service::run(example_web_service::Options::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("web-service-system-alloc: {e}");
            ExitCode::FAILURE
        }
    }
}
