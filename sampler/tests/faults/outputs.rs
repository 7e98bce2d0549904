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

#[test]
fn r10_run_piped_into_head_ends_quietly_when_head_exits() {
    for format in ["table", "json"] {
        let mut child = sampler()
            .args(["run", "--interval", "100ms", "--format", format])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        assert!(!first.is_empty());
        // `head -1` exits: the read end closes.
        drop(out);
        let closed = Instant::now();
        let status = wait_for(&mut child, Duration::from_secs(5));
        let took = closed.elapsed();
        let stderr = drain(child.stderr.take().unwrap());
        eprintln!("{format}: ended {took:?} after its reader closed: {status:?}");
        let status = status.expect("the run ends once its reader is gone");
        assert_eq!(status.signal(), Some(libc::SIGPIPE), "{format}: {status:?}");
        assert_eq!(stderr, "", "{format}: quietly");
        assert!(took < Duration::from_secs(2), "{format}: {took:?}");
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
