//! Prints heap bytes per labelled counter series for every library (100k series, 2 labels).
//!
//! `cargo run --release -p sampler-benches --bin memory`

#[global_allocator]
static ALLOC: sampler_benches::CountingAlloc = sampler_benches::CountingAlloc;

fn main() -> std::process::ExitCode {
    sampler_benches::memory::main()
}
