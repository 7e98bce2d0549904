//! Idle connections by the thousand against the Prometheus endpoint under a lowered
//! `ulimit -n`: the endpoint serves at most its limit and refuses the rest at once, so the
//! process keeps the descriptors it needs to read `/proc`: a live target stays up and the
//! harvests stay on schedule.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::support::*;

/// Opens `n` idle connections (nothing sent), each within 0.5 s; returns them and how many
/// failed to connect.
fn idle_connections(addr: SocketAddr, n: usize) -> (Vec<TcpStream>, usize) {
    let mut open = Vec::with_capacity(n);
    let mut failed = 0;
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(s) => open.push(s),
            Err(_) => failed += 1,
        }
    }
    (open, failed)
}

struct Outcome {
    /// Status lines of the scrapes made while the idle connections were open.
    statuses: Vec<String>,
    /// The slowest of those scrapes.
    slowest: Duration,
    /// The largest gap between consecutive harvests after the connections were open.
    widest_gap_ms: u64,
    harvests: usize,
    up_values: Vec<f64>,
    stderr: Vec<String>,
    /// Descriptors the sampler held while the idle clients were connected.
    fds_open: usize,
}

/// Runs `sampler run` with `ulimit -n fd_limit`, a 200 ms interval, a live `sleep` target and
/// the endpoint; opens `connections` idle connections, scrapes five times and watches
/// two seconds of harvests.
fn under_idle_connections(fd_limit: u64, connections: usize) -> Outcome {
    let sleep = Sleeper::start("60");
    let pid = sleep.pid().to_string();
    let mut cmd = with_fd_limit(fd_limit);
    cmd.args([
        "run",
        "--interval",
        "200ms",
        "--format",
        "json",
        "--pid",
        &pid,
        "--prometheus",
        "127.0.0.1:0",
    ]);
    let mut bg = Background::spawn_command(cmd);
    let url = endpoint_url(&bg.stderr);
    let addr: SocketAddr = url
        .strip_prefix("http://")
        .and_then(|r| r.split('/').next())
        .unwrap()
        .parse()
        .unwrap();
    let t = Instant::now();
    let (conns, failed) = idle_connections(addr, connections);
    // The kernel completes connections the process has yet to accept (up to its backlog),
    // so most connect even to an endpoint that accepts none; the checks below tell.
    eprintln!(
        "{} idle connections open, {failed} failed to connect, in {:?}",
        conns.len(),
        t.elapsed()
    );
    // Let the endpoint accept them all before looking.
    std::thread::sleep(Duration::from_millis(300));
    let from = bg.stdout.snapshot().len();
    let mut statuses = Vec::new();
    let mut slowest = Duration::ZERO;
    let watch_until = Instant::now() + Duration::from_secs(2);
    while statuses.len() < 5 || Instant::now() < watch_until {
        let t = Instant::now();
        let status = match http_get(&url, Duration::from_secs(10)) {
            Ok((status, _)) => status,
            Err(e) => format!("error: {e}"),
        };
        slowest = slowest.max(t.elapsed());
        statuses.push(status);
        std::thread::sleep(Duration::from_millis(200));
    }
    let lines = bg.stdout.snapshot();
    let fds_open = std::fs::read_dir(format!("/proc/{}/fd", bg.pid()))
        .map(|d| d.count())
        .unwrap_or(0);
    // Once the idle clients leave, their places are free again: scrapes are served.
    drop(conns);
    let freed = Instant::now();
    loop {
        if let Ok((status, body)) = http_get(&url, Duration::from_secs(5)) {
            if status.starts_with("HTTP/1.1 200") && !body.is_empty() {
                break;
            }
        }
        assert!(
            freed.elapsed() < Duration::from_secs(5),
            "no 200 within 5 s of the idle clients leaving"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "served again {:?} after the idle clients left",
        freed.elapsed()
    );
    bg.signal(libc::SIGINT);
    let status = bg.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr: {}", bg.stderr.text());

    let after = harvests(&lines[from..]);
    // The first group may be cut; the rest are whole.
    let after = &after[1.min(after.len())..];
    let times: Vec<u64> = after.iter().map(|(t, _)| millis_of_day(t)).collect();
    let widest_gap_ms = times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or(u64::MAX);
    let target = format!("pid:{pid}");
    let up_values = after
        .iter()
        .map(|(_, vs)| {
            vs.iter()
                .find(|v| v["name"] == "process.up" && v["labels"]["target"] == target.as_str())
                .and_then(|v| v["value"].as_f64())
                .unwrap_or(f64::NAN)
        })
        .collect();
    Outcome {
        statuses,
        slowest,
        widest_gap_ms,
        harvests: after.len(),
        up_values,
        stderr: bg.stderr.snapshot(),
        fds_open,
    }
}

#[track_caller]
fn assert_unharmed(o: &Outcome, what: &str) {
    eprintln!(
        "{what}: {} scrapes, slowest {:?}, statuses {:?}; {} harvests, widest gap {} ms, \
         process.up {:?}; {} descriptors open",
        o.statuses.len(),
        o.slowest,
        o.statuses,
        o.harvests,
        o.widest_gap_ms,
        o.up_values,
        o.fds_open
    );
    assert!(
        o.statuses
            .iter()
            .all(|s| s.starts_with("HTTP/1.1 200") || s.starts_with("HTTP/1.1 503")),
        "{what}: every scrape answered or refused: {:?}",
        o.statuses
    );
    assert!(
        o.slowest < Duration::from_secs(1),
        "{what}: slowest scrape {:?}",
        o.slowest
    );
    // Every 200 ms; a loaded machine may skip a boundary or two, a stall shows as seconds.
    assert!(
        o.harvests >= 5,
        "{what}: {} harvests in 2 s at 200 ms",
        o.harvests
    );
    assert!(
        o.widest_gap_ms <= 1000,
        "{what}: harvests 200 ms apart, widest gap {} ms",
        o.widest_gap_ms
    );
    assert!(
        o.up_values.iter().all(|v| *v == 1.0),
        "{what}: the live target stays up: {:?}",
        o.up_values
    );
    assert!(
        !o.stderr
            .iter()
            .any(|l| l.contains("not found") || l.contains("failed")),
        "{what}: nothing reported: {:?}",
        o.stderr
    );
}

#[test]
fn r10_1500_idle_connections_under_ulimit_1024() {
    let o = under_idle_connections(1024, 1500);
    assert_unharmed(&o, "1500 connections, ulimit -n 1024");
    // 256 connections served, at most 16 being refused, and the process's own few.
    assert!(
        o.fds_open <= 256 + 16 + 48,
        "{} descriptors open",
        o.fds_open
    );
    // 256 served (idle), the rest refused: every scrape made meanwhile is a 503.
    assert!(
        o.statuses.iter().all(|s| s.starts_with("HTTP/1.1 503")),
        "{:?}",
        o.statuses
    );
}

#[test]
fn r10_default_connection_limit_is_lowered_to_fit_ulimit_64() {
    let o = under_idle_connections(64, 200);
    assert_unharmed(&o, "200 connections, ulimit -n 64");
    assert!(o.fds_open < 64, "{} descriptors open", o.fds_open);
    assert!(
        o.stderr.iter().any(|l| l
            == "sampler: serving at most 16 prometheus connections at once: the file descriptor limit is 64 (ulimit -n)"),
        "{:?}",
        o.stderr
    );
}
