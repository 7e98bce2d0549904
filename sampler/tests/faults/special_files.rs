//! Pid files that are not small regular files: a device, a FIFO, a directory, a 1 GB sparse
//! file. Each is refused or read to its first bytes at once, in little memory, with the cause.

use std::time::Duration;

use crate::harness::*;
use crate::support::*;

/// Peak RSS allowed for a one-shot dump, in KiB: the command itself needs under 20 MiB.
const DUMP_RSS_KIB: u64 = 64 * 1024;

#[test]
fn r10_dev_zero_as_pid_file_is_refused_at_once() {
    let run = run_bounded(
        &["dump", "--pidfile", "/dev/zero"],
        Duration::from_secs(5),
        DUMP_RSS_KIB,
    );
    run.assert_exit(1);
    assert_eq!(
        run.stderr,
        "sampler: failed to read pid file /dev/zero: not a regular file but a character device\n"
    );
    assert!(run.elapsed < Duration::from_secs(2), "{run:#?}");
}

#[test]
fn r10_fifo_as_pid_file_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("svc.pid");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let file = fifo.to_str().unwrap();
    let run = run_bounded(
        &["dump", "--pidfile", file],
        Duration::from_secs(5),
        DUMP_RSS_KIB,
    );
    run.assert_exit(1);
    assert_eq!(
        run.stderr,
        format!("sampler: failed to read pid file {file}: not a regular file but a FIFO\n")
    );
    assert!(run.elapsed < Duration::from_secs(2), "{run:#?}");
}

#[test]
fn r10_fifo_as_pid_file_in_run_leaves_the_other_targets_sampled() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("svc.pid");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path that outlives the call.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let file = fifo.to_str().unwrap();
    let sleep = Sleeper::start("60");
    let pid = sleep.pid().to_string();
    let mut bg = Background::spawn(&[
        "run",
        "--interval",
        "200ms",
        "--format",
        "json",
        "--pidfile",
        file,
        "--pid",
        &pid,
    ]);
    // Three harvests, each with the sleeper's RSS: the FIFO holds up nothing.
    let rss_of_sleeper = |l: &String| {
        serde_json::from_str::<serde_json::Value>(l).is_ok_and(|v| {
            v["name"].as_str().is_some_and(|n| n.contains("memory"))
                && has_label_value(&v["labels"], &pid)
        })
    };
    bg.stdout.wait_until(
        "three harvests of the pid target",
        Duration::from_secs(10),
        |l| l.iter().filter(|l| rss_of_sleeper(l)).count() >= 3,
    );
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(
        bg.stderr.snapshot(),
        [format!(
            "sampler: failed to read pid file {file}: not a regular file but a FIFO"
        )],
        "the cause, once"
    );
}

#[test]
fn r10_directory_as_pid_file_is_refused_naming_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap();
    let run = run_bounded(
        &["dump", "--pidfile", path],
        Duration::from_secs(5),
        DUMP_RSS_KIB,
    );
    run.assert_exit(1);
    assert_eq!(
        run.stderr,
        format!("sampler: failed to read pid file {path}: not a regular file but a directory\n")
    );
}

#[test]
fn r10_sparse_1gb_pid_file_is_read_to_its_first_bytes_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.pid");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(1 << 30).unwrap();
    drop(f);
    let file = path.to_str().unwrap();
    let run = run_bounded(
        &["dump", "--pidfile", file],
        Duration::from_secs(5),
        DUMP_RSS_KIB,
    );
    run.assert_exit(1);
    let zeros = "\\0".repeat(64);
    assert_eq!(
        run.stderr,
        format!("sampler: pid file {file} holds \"{zeros}\", not a process id\n")
    );
    assert!(run.elapsed < Duration::from_secs(2), "{run:#?}");
}

#[test]
fn r10_a_removed_or_garbled_pid_file_is_reported_as_such_not_as_a_gone_process() {
    let sleep = Sleeper::start("60");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pid");
    let file = path.to_str().unwrap().to_owned();
    std::fs::write(&path, format!("{}\n", sleep.pid())).unwrap();
    let mut bg = Background::spawn(&["run", "--interval", "100ms", "--pidfile", &file]);
    let pid = sleep.pid().to_string();
    bg.stdout
        .wait_until("the service in a table", Duration::from_secs(10), |l| {
            l.iter().any(|l| row_has_label_value(l, &pid))
        });
    std::fs::remove_file(&path).unwrap();
    bg.stderr
        .wait_until("the removal", Duration::from_secs(10), |l| !l.is_empty());
    std::fs::write(&path, format!("{}\n", sleep.pid())).unwrap();
    bg.stderr
        .wait_until("the return", Duration::from_secs(10), |l| l.len() >= 2);
    std::fs::write(&path, "garbage\n").unwrap();
    bg.stderr
        .wait_until("the garbage", Duration::from_secs(10), |l| l.len() >= 3);
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(10)).code(), Some(0));
    assert_eq!(
        bg.stderr.snapshot(),
        [
            format!(
                "sampler: failed to read pid file {file}: No such file or directory (os error 2)"
            ),
            format!(
                "sampler: pid file {file}: process {} (sleep) found",
                sleep.pid()
            ),
            format!("sampler: pid file {file} holds \"garbage\", not a process id"),
        ]
    );
}
