//! Heap bytes per labelled counter series: each library builds [`SERIES`] two-label counters
//! (each incremented once) in a fresh process of its own, and the net heap bytes allocated
//! while doing so, divided by the number of series, is its cost per series.
//!
//! Run it with `cargo run --release -p sampler-benches --bin memory` (or as part of
//! `cargo bench -p sampler-benches`). The binary must install [`CountingAlloc`] as its
//! global allocator.
//!
//! [`CountingAlloc`]: crate::CountingAlloc

use std::process::{Command, ExitCode};

use crate::net_allocated;
use crate::series::Library;

/// Series per library.
pub const SERIES: usize = 100_000;

/// One library's measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measurement {
    /// Which library.
    pub library: Library,
    /// Net heap bytes after building the series minus before.
    pub total: i64,
    /// `total` divided by the number of series.
    pub per_series: f64,
}

/// Builds `n` series of `library` in this process and counts the heap bytes they hold.
///
/// # Errors
/// When the counting allocator is not this binary's global allocator.
pub fn measure(library: Library, n: usize) -> Result<Measurement, String> {
    let before = net_allocated().ok_or_else(|| {
        "heap counting is off: the binary must set `#[global_allocator] static A: \
         sampler_benches::CountingAlloc = sampler_benches::CountingAlloc;`"
            .to_owned()
    })?;
    let family = library.build(n);
    let after = net_allocated().unwrap_or(before);
    std::hint::black_box(&family);
    let total = after - before;
    Ok(Measurement {
        library,
        total,
        per_series: total as f64 / n.max(1) as f64,
    })
}

/// Measures every library, each in a child process running this same binary with
/// `--one <library>`, so that no library sees another's leftovers.
///
/// # Errors
/// When a child cannot be started, fails, or prints no result.
pub fn measure_all(n: usize) -> Result<Vec<Measurement>, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("failed to find the running binary for child runs: {e}"))?;
    let mut out = Vec::new();
    for library in Library::ALL {
        let child = Command::new(&exe)
            .args(["--one", library.name(), &n.to_string()])
            .output()
            .map_err(|e| {
                format!(
                    "failed to run {} --one {}: {e}",
                    exe.display(),
                    library.name()
                )
            })?;
        let stdout = String::from_utf8_lossy(&child.stdout);
        if !child.status.success() {
            return Err(format!(
                "memory run for {} failed ({}): {}",
                library.name(),
                child.status,
                String::from_utf8_lossy(&child.stderr).trim()
            ));
        }
        let total = stdout
            .lines()
            .find_map(|l| l.strip_prefix("total_bytes "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .ok_or_else(|| {
                format!(
                    "memory run for {} printed no `total_bytes` line: {stdout:?}",
                    library.name()
                )
            })?;
        out.push(Measurement {
            library,
            total,
            per_series: total as f64 / n.max(1) as f64,
        });
    }
    Ok(out)
}

/// The markdown table of measurements, with each library's bytes relative to ours.
pub fn table(ms: &[Measurement], n: usize) -> String {
    let ours = ms
        .iter()
        .find(|m| m.library == Library::Sampler)
        .map(|m| m.per_series);
    let leanest_peer = ms
        .iter()
        .filter(|m| m.library != Library::Sampler)
        .map(|m| m.per_series)
        .fold(f64::INFINITY, f64::min);
    let mut s = format!(
        "| library | heap bytes per series ({n} series, 2 labels) | total | ours ÷ this |\n\
         | --- | ---: | ---: | ---: |\n"
    );
    for m in ms {
        let ratio = ours.map_or("-".to_owned(), |o| format!("{:.2}", o / m.per_series));
        s += &format!(
            "| {} | {:.0} B | {:.1} MiB | {} |\n",
            m.library.name(),
            m.per_series,
            m.total as f64 / (1024.0 * 1024.0),
            ratio
        );
    }
    if let Some(o) = ours {
        s += &format!(
            "\nours: {o:.0} B per series; leanest peer: {leanest_peer:.0} B ({})\n",
            if o <= leanest_peer {
                "target met"
            } else {
                "target missed"
            }
        );
    }
    s
}

/// The entry point of the `memory` binary and bench: `--one <library> [n]` measures one
/// library in this process; with no such argument it measures all of them in child processes
/// and prints the table. Other arguments (as `cargo bench` passes) are ignored.
pub fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--one") {
        let Some(library) = args.get(i + 1).and_then(|n| Library::from_name(n)) else {
            eprintln!(
                "--one needs a library name, one of: {}",
                Library::ALL.map(Library::name).join(", ")
            );
            return ExitCode::FAILURE;
        };
        let n = match args.get(i + 2).map(|v| v.parse::<usize>()) {
            None => SERIES,
            Some(Ok(n)) if n > 0 => n,
            Some(_) => {
                eprintln!(
                    "the series count after --one {} must be a positive integer",
                    library.name()
                );
                return ExitCode::FAILURE;
            }
        };
        return match measure(library, n) {
            Ok(m) => {
                println!("total_bytes {}", m.total);
                println!("per_series {:.1}", m.per_series);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    match measure_all(SERIES) {
        Ok(ms) => {
            println!("{}", table(&ms, SERIES));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
