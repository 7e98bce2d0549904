//! Outputs that fail: a pipe whose reader is gone ends the run quietly, as a Unix filter ends
//! (killed by SIGPIPE); a full device ends it with one line and exit 1.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::support::*;

/// Waits at most `timeout` for the child to exit; kills it and returns `None` past that.
fn wait_for(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `sampler ARGS` into a pipe, reads its first line and closes the pipe, as `head -1`
/// does; checks that it ends quietly, killed by SIGPIPE, within 2 s. Returns the first line.
fn ends_quietly_when_its_reader_closes(args: &[&str]) -> String {
    let mut child = sampler()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    assert!(!first.is_empty(), "{args:?}: no output");
    // `head -1` exits: the read end closes.
    drop(out);
    let closed = Instant::now();
    let status = wait_for(&mut child, Duration::from_secs(5));
    let took = closed.elapsed();
    let stderr = drain(child.stderr.take().unwrap());
    eprintln!("{args:?}: ended {took:?} after its reader closed: {status:?}");
    let status = status.expect("the run ends once its reader is gone");
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "{args:?}: {status:?}: {stderr}"
    );
    assert_eq!(stderr, "", "{args:?}: quietly");
    assert!(took < Duration::from_secs(2), "{args:?}: {took:?}");
    first
}

#[test]
fn r10_run_piped_into_head_ends_quietly_when_head_exits() {
    for format in ["table", "json"] {
        ends_quietly_when_its_reader_closes(&["run", "--interval", "100ms", "--format", format]);
    }
}

#[test]
fn r10_dump_piped_into_a_closed_pipe_ends_quietly() {
    let mut child = sampler()
        .args(["dump"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let status = wait_for(&mut child, Duration::from_secs(5)).expect("dump ends");
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}");
    assert_eq!(drain(child.stderr.take().unwrap()), "");
}

#[test]
fn r10_run_to_a_full_device_fails_with_one_line() {
    let run = run_bounded(
        &["run", "--interval", "100ms", "--output", "/dev/full"],
        Duration::from_secs(5),
        64 * 1024,
    );
    eprintln!("ended after {:?}: {:?}", run.elapsed, run.status);
    run.assert_exit(1);
    assert_eq!(
        run.stderr,
        "sampler: failed to write console output to /dev/full: No space left on device (os error 28)\n"
    );
    assert!(run.elapsed < Duration::from_secs(2), "{run:#?}");
}

/// A config file with two consoles: the one on stdout and one appending to a file.
fn two_consoles(dir: &std::path::Path, file_output: &str) -> std::path::PathBuf {
    let path = dir.join("sampler.toml");
    std::fs::write(
        &path,
        format!(
            "[harvest]\ninterval = \"100ms\"\n[adapters.process]\n\
             [[exporter]]\nkind = \"console\"\nformat = \"json\"\n\
             [[exporter]]\nname = \"file\"\nkind = \"console\"\noutput = {file_output:?}\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_config_run_piped_into_head_ends_quietly_when_head_exits() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_consoles(dir.path(), dir.path().join("out.txt").to_str().unwrap());
    let first = ends_quietly_when_its_reader_closes(&["run", "--config", config.to_str().unwrap()]);
    assert!(first.starts_with('{'), "the json console's line: {first:?}");
}

#[test]
fn a_config_run_with_a_console_on_a_full_device_fails_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = two_consoles(dir.path(), "/dev/full");
    let config = config.to_str().unwrap();
    let run = run_bounded(
        &["run", "--config", config],
        Duration::from_secs(5),
        64 * 1024,
    );
    eprintln!("ended after {:?}: {:?}", run.elapsed, run.status);
    run.assert_exit(1);
    assert_eq!(
        run.stderr,
        "sampler: failed to write console output to /dev/full: No space left on device (os error 28)\n"
    );
    assert!(run.elapsed < Duration::from_secs(2), "{run:#?}");
    // The same from `dump --config`.
    let dump = run_bounded(
        &["dump", "--config", config],
        Duration::from_secs(5),
        64 * 1024,
    );
    dump.assert_exit(1);
    assert_eq!(dump.stderr, run.stderr);
}
