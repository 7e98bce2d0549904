//! Huge and hostile flag values: they are refused at once with the flag and the value named,
//! never wrapped, never slowing every harvest.

use std::time::Duration;

use crate::harness::*;

const RSS_KIB: u64 = 64 * 1024;

#[test]
fn r10_interval_of_585_years_is_refused_not_wrapped() {
    for huge in ["585y", "600y", "2d"] {
        let run = run_bounded(
            &["run", "--interval", huge],
            Duration::from_secs(5),
            RSS_KIB,
        );
        run.assert_exit(2);
        assert_eq!(run.stdout, "", "no harvest at all");
        assert!(
            run.stderr.contains(&format!(
                "for '--interval <INTERVAL>': invalid interval \"{huge}\": must be at most 1d"
            )),
            "{run:#?}"
        );
    }
}

#[test]
fn r10_pid_beyond_the_kernel_limit_is_refused() {
    let run = run_bounded(
        &["dump", "--pid", "4194305"],
        Duration::from_secs(5),
        RSS_KIB,
    );
    run.assert_exit(2);
    assert!(run.stderr.contains("'--pid <PID>'"), "{run:#?}");
    assert!(run.stderr.contains("4194305"), "{run:#?}");
}

#[test]
fn r10_a_40kb_name_pattern_is_refused_at_once_and_not_echoed_whole() {
    let pattern = "a".repeat(40_000);
    let run = run_bounded(
        &["dump", "--name", &pattern],
        Duration::from_secs(5),
        RSS_KIB,
    );
    run.assert_exit(2);
    assert!(run.elapsed < Duration::from_secs(2), "{run:#?}");
    assert!(
        run.stderr.len() < 1000,
        "{} bytes of stderr",
        run.stderr.len()
    );
    assert!(
        run.stderr
            .contains("40000 bytes long, more than the 1024 allowed"),
        "{}",
        run.stderr
    );
}

#[test]
fn r10_the_longest_name_pattern_allowed_harvests_quickly() {
    // 1024 bytes, the limit: a literal that matches nothing, searched in every process.
    let pattern = "a".repeat(1024);
    let run = run_bounded(
        &["dump", "--name", &pattern],
        Duration::from_secs(5),
        RSS_KIB,
    );
    run.assert_exit(1);
    assert!(run
        .stderr
        .starts_with("sampler: no process matches name pattern"));
    assert!(run.elapsed < Duration::from_secs(2), "{run:#?}");
    // A pattern whose compiled form is too big is refused rather than slowing every harvest.
    let run = run_bounded(
        &["dump", "--name", "a{1000}{1000}"],
        Duration::from_secs(5),
        RSS_KIB,
    );
    run.assert_exit(2);
    assert!(run.stderr.contains("size limit"), "{}", run.stderr);
}

#[test]
fn r10_a_busy_port_is_reported_once_with_its_cause() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let run = run_bounded(
        &["run", "--prometheus", &addr],
        Duration::from_secs(5),
        RSS_KIB,
    );
    run.assert_exit(1);
    assert_eq!(
        run.stderr,
        format!(
            "sampler: failed to bind prometheus endpoint at {addr}: Address already in use (os error 98)\n"
        )
    );
}

#[test]
fn r10_listening_on_every_interface_is_said_aloud() {
    let mut bg = crate::support::Background::spawn(&["run", "--prometheus", ":0"]);
    let lines = bg
        .stderr
        .wait_until("the endpoint line", Duration::from_secs(10), |l| {
            !l.is_empty()
        });
    let line = &lines[0];
    assert!(
        line.starts_with("sampler: serving prometheus metrics at http://0.0.0.0:")
            && line.contains("on every network interface (listening on 0.0.0.0:"),
        "{line}"
    );
    bg.signal(libc::SIGTERM);
    assert_eq!(bg.wait_exit(Duration::from_secs(10)).code(), Some(0));
}

#[test]
fn r10_max_connections_out_of_range_is_refused_naming_the_flag() {
    for (n, want) in [
        ("0", "'--prometheus-max-connections <N>'"),
        ("99999999", "'--prometheus-max-connections <N>'"),
    ] {
        let run = run_bounded(
            &[
                "run",
                "--prometheus",
                "127.0.0.1:0",
                "--prometheus-max-connections",
                n,
            ],
            Duration::from_secs(5),
            RSS_KIB,
        );
        run.assert_exit(2);
        assert!(run.stderr.contains(want), "{n}: {}", run.stderr);
    }
    // More than the descriptor limit allows.
    let mut cmd = with_fd_limit(100);
    cmd.args([
        "run",
        "--prometheus",
        "127.0.0.1:0",
        "--prometheus-max-connections",
        "500",
    ]);
    let run = run_command_bounded(cmd, Duration::from_secs(5), RSS_KIB);
    run.assert_exit(1);
    assert_eq!(
        run.stderr,
        "sampler: --prometheus-max-connections 500 needs 548 file descriptors, more than the limit of 100 (ulimit -n)\n"
    );
}
