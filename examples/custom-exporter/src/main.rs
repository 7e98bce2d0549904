//! The `sampler` command with the `csv` exporter kind linked in.

// Linking the crate is what registers its kind.
use example_custom_exporter as _;

fn main() -> std::process::ExitCode {
    sampler::cli_main()
}
