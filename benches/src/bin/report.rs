//! Prints the README's tables from criterion's saved results.
//!
//! `cargo bench -p sampler-benches && cargo run --release -p sampler-benches --bin report`
//! (`-- --fastest`: from each benchmark's fastest sample instead of criterion's estimate)

fn main() -> std::process::ExitCode {
    sampler_benches::report::main()
}
