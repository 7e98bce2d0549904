//! Heap bytes per labelled counter series, as part of `cargo bench -p sampler-benches`
//! (the same measurement as the `memory` binary).

#[global_allocator]
static ALLOC: sampler_benches::CountingAlloc = sampler_benches::CountingAlloc;

fn main() -> std::process::ExitCode {
    sampler_benches::memory::main()
}
