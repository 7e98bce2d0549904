//! An axum service measured per route group, with per-request memory.
//!
//! ```text
//! cargo run --release -p example-web-service
//! curl -s http://127.0.0.1:3000/api/hello
//! curl -s http://127.0.0.1:3000/reports/8192
//! curl -s http://127.0.0.1:9464/metrics | grep -E 'http_server|process_memory'
//! ```
//!
//! Options: `--listen ADDR` (default `127.0.0.1:3000`), `--metrics ADDR` (default
//! `127.0.0.1:9464`), `--layer sampler|none|axum-prometheus`, `--workers N`, `--seconds N`.
//! See the library's documentation for what is measured.

use std::process::ExitCode;

use clap::Parser;
use sampler_adapter_alloc::CountingAllocator;

/// Counts each request's allocations (bytes allocated, peak live bytes): the HTTP layer sees
/// it installed and records `http.server.request.memory.*` per route group.
#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator::system();

fn main() -> ExitCode {
    match example_web_service::run(example_web_service::Options::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("web-service: {e}");
            ExitCode::FAILURE
        }
    }
}
