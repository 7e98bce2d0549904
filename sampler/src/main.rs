//! The `sampler` command. See `sampler --help`, and the `sampler` library for the parts.

fn main() -> std::process::ExitCode {
    sampler::cli_main()
}
