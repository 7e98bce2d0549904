//! Running the binary under bounds: time and peak RSS watched from outside, limits set inside.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::support::{sampler, Lines};

/// How a bounded run ended.
#[derive(Debug)]
pub struct Bounded {
    /// The exit status, or `None` when the run was killed for passing a bound.
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
    /// The highest VmHWM seen, in KiB.
    pub peak_rss_kib: u64,
    pub elapsed: Duration,
    /// Which bound the run passed, if it was killed.
    pub killed: Option<&'static str>,
}

impl Bounded {
    /// Asserts the run exited by itself with `code`, within the bounds, and prints its figures
    /// (shown with `--nocapture`).
    #[track_caller]
    pub fn assert_exit(&self, code: i32) {
        eprintln!(
            "{}: exit {:?} after {:?}, peak RSS {} KiB, killed {:?}, stderr {:?}",
            std::panic::Location::caller(),
            self.status,
            self.elapsed,
            self.peak_rss_kib,
            self.killed,
            self.stderr.chars().take(200).collect::<String>()
        );
        assert_eq!(
            (self.killed, self.status.and_then(|s| s.code())),
            (None, Some(code)),
            "{self:#?}"
        );
    }
}

/// `VmHWM` (peak RSS) of a live process, in KiB.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `sampler ARGS` to its end, killing it once it runs longer than `time` or its peak RSS
/// passes `rss_kib` (polled every 5 ms).
pub fn run_bounded(args: &[&str], time: Duration, rss_kib: u64) -> Bounded {
    let mut cmd = sampler();
    cmd.args(args);
    run_command_bounded(cmd, time, rss_kib)
}

/// As [`run_bounded`], for a prepared command.
// The child is reaped by `reap` (wait4, for its peak RSS), or killed and waited for.
#[allow(clippy::zombie_processes)]
pub fn run_command_bounded(mut cmd: Command, time: Duration, rss_kib: u64) -> Bounded {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the sampler binary");
    let stdout = Lines::default();
    let stderr = Lines::default();
    stdout.clone().collect(child.stdout.take().unwrap());
    stderr.clone().collect(child.stderr.take().unwrap());
    let mut peak = 0;
    let mut killed = None;
    let status = loop {
        if let Some((s, max_rss)) = reap(child.id()) {
            peak = peak.max(max_rss);
            break Some(s);
        }
        peak = peak.max(peak_rss_kib(child.id()).unwrap_or(0));
        if peak > rss_kib {
            killed = Some("rss");
        } else if started.elapsed() > time {
            killed = Some("time");
        }
        if killed.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let elapsed = started.elapsed();
    // Let the readers drain the pipes (a killed child's pipes close with it).
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !(closed(&stdout) && closed(&stderr)) {
        std::thread::sleep(Duration::from_millis(5));
    }
    Bounded {
        status,
        stdout: stdout.text(),
        stderr: stderr.text(),
        peak_rss_kib: peak,
        elapsed,
        killed,
    }
}

/// Reaps the child if it has exited: its status and its peak RSS in KiB (`ru_maxrss`).
fn reap(pid: u32) -> Option<(ExitStatus, u64)> {
    use std::os::unix::process::ExitStatusExt;
    let mut status = 0;
    // SAFETY: `rusage` is plain data, for which all-zero bytes are a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid, writable out-pointers that outlive the call.
    let rc = unsafe { libc::wait4(pid as i32, &mut status, libc::WNOHANG, &mut usage) };
    (rc == pid as i32).then(|| (ExitStatus::from_raw(status), usage.ru_maxrss.max(0) as u64))
}

fn closed(lines: &Lines) -> bool {
    lines.is_closed()
}

/// The `sampler` binary with its file descriptor limit (soft and hard) set to `n`, as
/// `ulimit -n n` would.
pub fn with_fd_limit(n: u64) -> Command {
    let mut cmd = sampler();
    // SAFETY: the closure runs in the child between fork and exec, and calls setrlimit alone,
    // which is async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: n as libc::rlim_t,
                rlim_max: n as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// Reads everything left in a reader, for a pipe that is about to close.
pub fn drain(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}

/// The URL printed in `sampler: serving prometheus metrics at URL…`, waiting for it.
pub fn endpoint_url(stderr: &Lines) -> String {
    let lines = stderr.wait_until("the endpoint address", Duration::from_secs(10), |l| {
        l.iter()
            .any(|l| l.contains("serving prometheus metrics at http://"))
    });
    lines
        .iter()
        .find_map(|l| l.split_once(" at http://"))
        .map(|(_, rest)| format!("http://{}", rest.split_whitespace().next().unwrap()))
        .expect("the url")
}

/// One HTTP/1.1 GET; the status line and body, or the error, within `timeout`.
pub fn http_get(url: &str, timeout: Duration) -> std::io::Result<(String, String)> {
    use std::io::Write;
    let rest = url.strip_prefix("http://").expect("an http url");
    let (host, path) = rest.split_once('/').expect("a path");
    let addr: std::net::SocketAddr = host.parse().expect("a socket address");
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain;version=0.0.4\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    let out = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    Ok((
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    ))
}

/// The JSON lines of harvests so far, grouped by harvest time, in order.
pub fn harvests(lines: &[String]) -> Vec<(String, Vec<serde_json::Value>)> {
    let mut out: Vec<(String, Vec<serde_json::Value>)> = Vec::new();
    for l in lines {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(l) else {
            continue;
        };
        let t = v["time"].as_str().unwrap_or("").to_owned();
        match out.last_mut() {
            Some((last, vs)) if *last == t => vs.push(v),
            _ => out.push((t, vec![v])),
        }
    }
    out
}

/// Milliseconds since the epoch of an RFC 3339 time `2026-01-01T00:00:10.000Z`, enough for
/// differences within a day.
pub fn millis_of_day(t: &str) -> u64 {
    let time = t.split('T').nth(1).expect("a time");
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: u64 = parts.next().unwrap().parse().unwrap();
    let m: u64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    (h * 3600 + m * 60) * 1000 + (s * 1000.0).round() as u64
}

/// Whether a table row has a label with this value (`k=value` among its comma-separated
/// labels), whatever the label's name.
pub fn row_has_label_value(row: &str, value: &str) -> bool {
    row.split(|c: char| c == ',' || c.is_whitespace())
        .any(|part| part.split_once('=').is_some_and(|(_, v)| v == value))
}

/// Whether a JSON line's or parsed sample's labels hold this value, whatever the label's name.
pub fn has_label_value(labels: &serde_json::Value, value: &str) -> bool {
    labels
        .as_object()
        .is_some_and(|m| m.values().any(|v| v == value))
}
