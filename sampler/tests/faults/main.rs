//! Fault injection against the built `sampler` binary, one module per class of fault: special
//! files as pid files, huge and hostile flag values, file descriptor exhaustion under a lowered
//! `ulimit -n`, closed and full outputs, signals and stopped processes, and hostile process
//! names. Each test bounds the run's time (and, where memory is at stake, its RSS) and kills the
//! binary past the bound, so a regression fails fast instead of hanging or eating the host.
#![cfg(target_os = "linux")]

#[path = "../support/mod.rs"]
mod support;

mod harness;

mod fds;
mod inputs;
mod names;
mod outputs;
mod signals;
mod special_files;
