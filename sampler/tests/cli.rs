//! Runs the built `sampler` binary: dump, run until a real signal, watching processes by name,
//! pid and pid file, and failing on missing targets.
#![cfg(target_os = "linux")]

mod config;
mod shm;
mod support;

// A real Prometheus server on loopback, as the exporter's own interop tests start it.
#[path = "../../exporters/prometheus/tests/support/mod.rs"]
mod prometheus;

// Headless Chromium over the DevTools protocol, as the live page's own tests drive it.
#[path = "../../exporters/ui/tests/browser/mod.rs"]
mod browser;

use std::time::Duration;

use support::*;

/// The sequence number in a table header: `# harvest T (sequence N, M series)`.
fn sequence(header: &str) -> u64 {
    let rest = header.split("(sequence ").nth(1).unwrap();
    rest.split(',').next().unwrap().parse().unwrap()
}

#[test]
fn dump_prints_process_rss_and_harvest_self_metrics() {
    let done = run_to_end(&["dump"]);
    assert!(done.status.success(), "stderr: {}", done.stderr);
    assert_eq!(done.stderr, "");
    let lines: Vec<String> = done.stdout.lines().map(String::from).collect();
    assert_eq!(headers(&lines).len(), 1, "one harvest:\n{}", done.stdout);
    for name in [
        "process.memory.usage ",
        "process.cpu.time ",
        "system.memory.usage ",
        "system.cpu.load_average.1m ",
        "sampler.harvest.count ",
        "sampler.harvest.duration ",
        "sampler.exporter.exported ",
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(name)),
            "{name}missing from:\n{}",
            done.stdout
        );
    }
    let rss = lines
        .iter()
        .find(|l| l.starts_with("process.memory.usage "))
        .unwrap();
    assert!(rss.ends_with(" MiB") || rss.ends_with(" KiB"), "{rss}");
}

#[test]
fn dump_json_lines_all_parse() {
    let done = run_to_end(&["dump", "--format", "json"]);
    assert!(done.status.success(), "stderr: {}", done.stderr);
    let lines = parse_json_lines(&done.stdout);
    assert!(lines.len() > 20, "{}", done.stdout);
    let time = &lines[0]["time"];
    for v in &lines {
        assert_eq!(&v["time"], time, "one harvest, one time");
        for key in ["name", "kind", "unit", "labels", "value"] {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
    }
    let rss = lines
        .iter()
        .find(|v| v["name"] == "process.memory.usage")
        .unwrap();
    assert!(rss["value"].as_f64().unwrap() > 1e6, "{rss}");
    assert!(lines.iter().any(|v| v["name"] == "sampler.harvest.count"));
}

#[test]
fn dump_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.jsonl");
    let done = run_to_end(&[
        "dump",
        "--format",
        "json",
        "--output",
        path.to_str().unwrap(),
    ]);
    assert!(done.status.success(), "stderr: {}", done.stderr);
    assert_eq!(done.stdout, "");
    let lines = parse_json_lines(&std::fs::read_to_string(&path).unwrap());
    assert!(lines.iter().any(|v| v["name"] == "process.memory.usage"));
}

#[test]
fn dump_fails_when_its_output_cannot_be_written() {
    let done = run_to_end(&["dump", "--output", "/dev/full"]);
    assert_eq!(done.status.code(), Some(1), "stderr: {}", done.stderr);
    assert_eq!(done.stderr.lines().count(), 1, "{}", done.stderr);
    assert!(
        done.stderr
            .contains("failed to write console output to /dev/full: No space left on device"),
        "{}",
        done.stderr
    );
}

#[test]
fn run_prints_every_second_and_exits_0_after_a_final_harvest_on_sigint() {
    let mut bg = Background::spawn(&["run", "--interval", "1s"]);
    let lines = bg
        .stdout
        .wait_until("three harvests", Duration::from_secs(15), |l| {
            headers(l).len() >= 3
        });
    let seen = headers(&lines);
    let seqs: Vec<u64> = seen.iter().map(|h| sequence(h)).collect();
    assert_eq!(seqs[..3], [1, 2, 3]);
    // Harvests after the first fall on whole seconds of the wall clock.
    assert!(seen[1].contains(".000Z"), "{}", seen[1]);
    assert!(seen[2].contains(".000Z"), "{}", seen[2]);

    let before = headers(&bg.stdout.snapshot()).len();
    bg.signal(libc::SIGINT);
    let status = bg.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr: {}", bg.stderr.text());
    let all = bg.stdout.snapshot();
    let after = headers(&all);
    assert!(after.len() > before, "no final harvest after SIGINT");
    // The final table was written whole and flushed: it ends with its blank line.
    assert_eq!(all.last().map(String::as_str), Some(""));
    let last = all
        .iter()
        .rposition(|l| l.starts_with("# harvest "))
        .unwrap();
    assert!(all[last..]
        .iter()
        .any(|l| l.starts_with("sampler.harvest.count ")));
    assert_eq!(bg.stderr.text(), "");
}

#[test]
fn run_prints_at_once_and_exits_0_on_sigterm() {
    // The default interval is 10 s; the first table must not wait for it.
    let mut bg = Background::spawn(&["run"]);
    bg.stdout
        .wait_until("the first harvest", Duration::from_secs(5), |l| {
            headers(l).len() == 1 && l.iter().any(|l| l.starts_with("process.memory.usage "))
        });
    assert!(bg.started.elapsed() < Duration::from_secs(5));
    bg.signal(libc::SIGTERM);
    let status = bg.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    assert!(headers(&bg.stdout.snapshot()).len() >= 2, "final harvest");
}

#[test]
fn name_finds_sleep_by_pid_with_its_rss_and_run_reports_it_gone() {
    let mut sleep = Sleeper::start("60");
    let pid = sleep.pid().to_string();

    let done = run_to_end(&["dump", "--name", "sleep", "--format", "json"]);
    assert!(done.status.success(), "stderr: {}", done.stderr);
    let lines = parse_json_lines(&done.stdout);
    let ours = |v: &&serde_json::Value| v["labels"]["pid"] == pid.as_str();
    let rss = lines
        .iter()
        .filter(ours)
        .find(|v| v["name"] == "process.memory.usage")
        .unwrap_or_else(|| panic!("no rss series labelled pid={pid}:\n{}", done.stdout));
    assert_eq!(rss["labels"]["name"], "sleep");
    assert_eq!(rss["value"].as_f64().unwrap(), vm_rss(sleep.pid()));
    // The sampler never matches itself, though its command line holds "sleep".
    assert!(!lines
        .iter()
        .any(|v| v["name"] == "process.memory.usage" && v["labels"].get("pid").is_none()));

    let mut bg = Background::spawn(&["run", "--interval", "1s", "--name", "sleep"]);
    bg.stdout.wait_until(
        "the sleep process in a table",
        Duration::from_secs(10),
        |l| {
            l.iter().any(|l| {
                l.starts_with("process.memory.usage ") && l.contains(&format!("pid={pid},"))
            })
        },
    );
    sleep.stop();
    let gone = format!("sampler: name \"sleep\": process {pid} (sleep) is gone");
    bg.stderr
        .wait_until("the gone report", Duration::from_secs(10), |l| {
            l.iter().any(|l| l.starts_with(&gone))
        });
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(15)).code(), Some(0));
    let reports = bg.stderr.snapshot();
    assert_eq!(
        reports.iter().filter(|l| l.starts_with(&gone)).count(),
        1,
        "reported once: {reports:?}"
    );
}

#[test]
fn dump_missing_pid_fails_with_one_line() {
    let done = run_to_end(&["dump", "--pid", "999999"]);
    assert_eq!(done.status.code(), Some(1));
    assert_eq!(
        done.stderr,
        "sampler: process 999999 not found: no such process (/proc/999999 does not exist)\n"
    );
    assert_eq!(done.stdout, "");
}

#[test]
fn dump_garbage_pid_file_fails_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.pid");
    std::fs::write(&path, "garbage\n").unwrap();
    let done = run_to_end(&["dump", "--pidfile", path.to_str().unwrap()]);
    assert_eq!(done.status.code(), Some(1));
    assert_eq!(
        done.stderr,
        format!(
            "sampler: pid file {} holds \"garbage\", not a process id\n",
            path.display()
        )
    );
    assert_eq!(done.stdout, "");
}

#[test]
fn dump_pid_file_of_a_live_process() {
    let sleep = Sleeper::start("60");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pid");
    std::fs::write(&path, format!("{}\n", sleep.pid())).unwrap();
    let done = run_to_end(&["dump", "--pidfile", path.to_str().unwrap()]);
    assert!(done.status.success(), "stderr: {}", done.stderr);
    let row = format!("pid={},name=sleep,pidfile={}", sleep.pid(), path.display());
    assert!(
        done.stdout
            .lines()
            .any(|l| l.starts_with("process.memory.usage ") && l.contains(&row)),
        "{}",
        done.stdout
    );
}

#[test]
fn run_follows_a_pid_file_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("svc.pid");
    let mut first = Sleeper::start("60");
    std::fs::write(&path, format!("{}\n", first.pid())).unwrap();
    let file = path.display().to_string();
    let mut bg = Background::spawn(&["run", "--interval", "1s", "--pidfile", &file]);
    let row = |pid: u32| format!("pid={pid},name=sleep,pidfile={file}");
    let first_row = row(first.pid());
    bg.stdout
        .wait_until("the first service", Duration::from_secs(10), |l| {
            l.iter().any(|l| l.contains(&first_row))
        });
    first.stop();
    let gone = format!(
        "sampler: pid file {file}: process {} (sleep) is gone: no such process (/proc/{} does not exist)",
        first.pid(),
        first.pid()
    );
    bg.stderr
        .wait_until("the gone report", Duration::from_secs(10), |l| {
            l.iter().any(|l| l == &gone)
        });
    // The service restarts and rewrites its pid file.
    let second = Sleeper::start("60");
    std::fs::write(&path, format!("{}\n", second.pid())).unwrap();
    let found = format!(
        "sampler: pid file {file}: process {} (sleep) found",
        second.pid()
    );
    bg.stderr
        .wait_until("the found report", Duration::from_secs(10), |l| {
            l.iter().any(|l| l == &found)
        });
    let second_row = row(second.pid());
    bg.stdout
        .wait_until("the restarted service", Duration::from_secs(10), |l| {
            l.iter().any(|l| l.contains(&second_row))
        });
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert_eq!(bg.stderr.snapshot(), [gone, found]);
}

#[test]
fn run_keeps_going_and_reports_a_missing_target_once() {
    let mut bg = Background::spawn(&["run", "--interval", "1s", "--pid", "999999"]);
    bg.stdout
        .wait_until("three harvests", Duration::from_secs(15), |l| {
            headers(l).len() >= 3
        });
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(15)).code(), Some(0));
    assert_eq!(
        bg.stderr.snapshot(),
        ["sampler: process 999999 not found: no such process (/proc/999999 does not exist)"]
    );
    let out = bg.stdout.snapshot();
    let up: Vec<&String> = out
        .iter()
        .filter(|l| l.starts_with("process.up ") && l.contains("target=pid:999999"))
        .collect();
    assert!(
        up.len() >= 3 && up.iter().all(|l| l.trim_end().ends_with(" 0")),
        "{up:?}"
    );
}

#[test]
fn bad_flags_exit_2_with_clap_usage() {
    let done = run_to_end(&["run", "--interval", "soon"]);
    assert_eq!(done.status.code(), Some(2));
    assert!(
        done.stderr.contains("invalid interval \"soon\""),
        "{}",
        done.stderr
    );
    let done = run_to_end(&["dump", "--format", "xml"]);
    assert_eq!(done.status.code(), Some(2));
}

/// A plain HTTP/1.1 GET on loopback; the test needs nothing more than the status and body.
fn http_get(url: &str) -> (String, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http url");
    let (host, path) = rest.split_once('/').expect("a path");
    let mut s = std::net::TcpStream::connect(host).expect("connect to the endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain;version=0.0.4\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read the response");
    let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[test]
fn run_serves_prometheus_metrics_with_the_prometheus_flag() {
    let mut bg = Background::spawn(&["run", "--interval", "1s", "--prometheus", "127.0.0.1:0"]);
    let lines = bg
        .stderr
        .wait_until("the endpoint address", Duration::from_secs(10), |l| {
            l.iter()
                .any(|l| l.contains("serving prometheus metrics at http://"))
        });
    let url = lines
        .iter()
        .find_map(|l| l.split_once(" at ").map(|(_, u)| u.trim().to_owned()))
        .expect("the url");
    // The first harvest happens at once; poll until the endpoint serves it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = http_get(&url);
        if status.contains("200") && body.contains("process_memory_usage_bytes") {
            break body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no metrics: {status}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        body.contains("# TYPE sampler_harvest_count_total counter"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE process_memory_usage_bytes gauge"),
        "{body}"
    );
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[test]
fn r12_dump_sends_the_harvest_to_graphite_with_the_graphite_flag() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        text
    });
    let done = run_to_end(&["dump", "--graphite", &addr]);
    assert!(done.status.success(), "stderr: {}", done.stderr);
    assert_eq!(done.stderr, "");
    let text = reader.join().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let line = text
        .lines()
        .find(|l| l.starts_with("process.memory.usage "))
        .unwrap_or_else(|| panic!("no rss line in:\n{text}"));
    let f: Vec<&str> = line.split(' ').collect();
    assert_eq!(f.len(), 3, "{line}");
    assert!(f[1].parse::<f64>().unwrap() > 0.0, "{line}");
    let ts: u64 = f[2].parse().unwrap();
    assert!(now - ts < 60, "{line} is not stamped with the harvest time");
    assert!(
        text.lines()
            .any(|l| l.starts_with("sampler.harvest.count ")),
        "{text}"
    );
}

#[test]
fn r12_dump_fails_naming_graphite_when_it_is_away() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: connections are refused
    let addr = format!("127.0.0.1:{port}");
    let done = run_to_end(&["dump", "--graphite", &addr]);
    assert_eq!(done.status.code(), Some(1), "stderr: {}", done.stderr);
    // One line: what failed, where and why.
    let lines: Vec<&str> = done.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{}", done.stderr);
    assert!(
        lines[0].starts_with("sampler: failed to write the harvest: ")
            && lines[0].contains(&format!("failed to connect to graphite at {addr}")),
        "{}",
        lines[0]
    );
}

#[test]
fn r12_run_sends_to_statsd_with_the_statsd_flag() {
    let daemon = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    daemon
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let addr = daemon.local_addr().unwrap().to_string();
    let mut bg = Background::spawn(&["run", "--interval", "1s", "--statsd", &addr]);
    // The first harvest goes at once: gauges as |g, counters as |c deltas.
    let mut text = String::new();
    let mut buf = [0u8; 2048];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !(text.contains("process.memory.usage:") && text.contains("|c")) {
        assert!(std::time::Instant::now() < deadline, "got only:\n{text}");
        let n = daemon.recv(&mut buf).expect("a datagram within 10 s");
        assert!(n <= 1432);
        text.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        text.push('\n');
    }
    assert!(text.contains("|g"), "{text}");
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

/// Runs `promtool check metrics` on `text`: its exit code and everything it printed. Fails,
/// with the install command, when promtool is not installed.
fn promtool_check(text: &str) -> (Option<i32>, String) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let spawned = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = spawned.unwrap_or_else(|e| {
        panic!(
            "cannot run promtool ({e}); install it with `apt-get install prometheus` \
             (or `bash scripts/install-peers.sh`)"
        )
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), printed)
}

/// The value of the sample `name{…}` whose labels include every one of `labels`.
fn sample(body: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    body.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .find(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Field `n` of `/proc/PID/stat` (1-based, as proc(5) numbers them).
fn stat_field(pid: u32, n: usize) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(n - 3).unwrap().parse().unwrap()
}

#[test]
fn r11_promtool_accepts_what_sampler_run_serves_in_both_namings() {
    // Every adapter on: processes by pid, pid file and name, and the host.
    let by_pid = Sleeper::start("3011");
    let by_file = Sleeper::start("3011");
    let _by_name = Sleeper::start("3012");
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("svc.pid");
    std::fs::write(&pidfile, by_file.pid().to_string()).unwrap();
    let pid = by_pid.pid().to_string();
    for names in ["otel", "prometheus"] {
        let mut bg = Background::spawn(&[
            "run",
            "--prometheus",
            "127.0.0.1:0",
            "--names",
            names,
            "--pid",
            &pid,
            "--pidfile",
            pidfile.to_str().unwrap(),
            "--name",
            "^sleep 3012$",
        ]);
        let lines = bg
            .stderr
            .wait_until("the endpoint address", Duration::from_secs(10), |l| {
                l.iter()
                    .any(|l| l.contains("serving prometheus metrics at http://"))
            });
        let url = lines
            .iter()
            .find_map(|l| l.split_once(" at ").map(|(_, u)| u.trim().to_owned()))
            .expect("the url");
        // The first harvest happens at once; scrape once it is served.
        let ready = url.replace("/metrics", "/-/ready");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !http_get(&ready).0.contains("200") {
            assert!(std::time::Instant::now() < deadline, "never ready");
            std::thread::sleep(Duration::from_millis(20));
        }
        let (status, body) = http_get(&url);
        assert!(status.contains("200"), "{status}");
        let (code, printed) = promtool_check(&body);
        assert_eq!(
            (code, printed.as_str()),
            (Some(0), ""),
            "promtool check metrics (--names {names}) on:\n{body}"
        );
        let l = [("pid", pid.as_str()), ("name", "sleep")];
        let ticks = {
            // SAFETY: sysconf has no preconditions.
            (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
        };
        let cpu = (stat_field(by_pid.pid(), 14) + stat_field(by_pid.pid(), 15)) / ticks;
        let status_kb = |key: &str| -> f64 {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let line = status.lines().find(|x| x.starts_with(key)).unwrap();
            line.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<f64>()
                .unwrap()
                * 1024.0
        };
        for (name, want) in [
            ("system_memory_limit_bytes", &[][..]),
            ("system_cpu_logical_count_value", &[]),
            ("system_cpu_load_average_1m", &[]),
            (
                "system_memory_usage_bytes",
                &[("system_memory_state", "used")],
            ),
        ] {
            assert!(
                sample(&body, name, want).is_some(),
                "{name} missing:\n{body}"
            );
        }
        let pidfile_label = [("pidfile", pidfile.to_str().unwrap())];
        let named = [("name", "sleep")];
        if names == "otel" {
            let user = [("pid", pid.as_str()), ("cpu_mode", "user")];
            let system = [("pid", pid.as_str()), ("cpu_mode", "system")];
            let got = sample(&body, "process_cpu_time_seconds_total", &user).unwrap()
                + sample(&body, "process_cpu_time_seconds_total", &system).unwrap();
            assert!((got - cpu).abs() <= 1.0 / ticks, "{got} vs {cpu}");
            assert_eq!(
                sample(&body, "process_memory_usage_bytes", &l),
                Some(status_kb("VmRSS:"))
            );
            assert!(sample(&body, "process_thread_count_value", &l).is_some());
            assert!(sample(&body, "process_memory_usage_bytes", &pidfile_label).is_some());
            assert!(sample(&body, "process_uptime_seconds", &named).is_some());
        } else {
            let got = sample(&body, "process_cpu_seconds_total", &l).unwrap();
            assert!((got - cpu).abs() <= 1.0 / ticks, "{got} vs {cpu}");
            assert_eq!(
                sample(&body, "process_resident_memory_bytes", &l),
                Some(status_kb("VmRSS:"))
            );
            assert_eq!(
                sample(&body, "process_virtual_memory_bytes", &l),
                Some(status_kb("VmSize:"))
            );
            let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .count() as f64;
            assert_eq!(sample(&body, "process_open_fds", &l), Some(fds));
            let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
            let soft: f64 = limits
                .lines()
                .find_map(|x| x.strip_prefix("Max open files"))
                .and_then(|x| x.split_whitespace().next())
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(sample(&body, "process_max_fds", &l), Some(soft));
            let btime: f64 = std::fs::read_to_string("/proc/stat")
                .unwrap()
                .lines()
                .find_map(|x| x.strip_prefix("btime "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let start = btime + stat_field(by_pid.pid(), 22) / ticks;
            let got = sample(&body, "process_start_time_seconds", &l).unwrap();
            assert!((got - start).abs() < 1e-6, "{got} vs {start}");
            assert!(sample(&body, "process_resident_memory_bytes", &pidfile_label).is_some());
            assert!(sample(&body, "process_threads", &named).is_some());
        }
        bg.signal(libc::SIGINT);
        assert_eq!(bg.wait_exit(Duration::from_secs(15)).code(), Some(0));
    }
}

#[test]
fn r11_prometheus_rates_process_cpu_seconds_total_unchanged() {
    let mut bg = Background::spawn(&[
        "run",
        "--interval",
        "1s",
        "--names",
        "prometheus",
        "--prometheus",
        "127.0.0.1:0",
    ]);
    let lines = bg
        .stderr
        .wait_until("the endpoint address", Duration::from_secs(10), |l| {
            l.iter()
                .any(|l| l.contains("serving prometheus metrics at http://"))
        });
    let url = lines
        .iter()
        .find_map(|l| {
            l.split_once(" at http://")
                .map(|(_, u)| u.trim().to_owned())
        })
        .expect("the url");
    let (addr, path) = url.split_once('/').expect("a path");
    let server = prometheus::PrometheusServer::start(&[(
        "sampler",
        addr.parse().unwrap(),
        &format!("/{path}"),
    )]);
    // The queries of every dashboard built on the client libraries' process collector.
    let rate = server.query_until("rate(process_cpu_seconds_total[10s])");
    assert_eq!(rate.len(), 1, "{rate:?}");
    assert!(prometheus::sample_value(&rate[0]) >= 0.0);
    let rss = server.query_until("process_resident_memory_bytes");
    assert!(prometheus::sample_value(&rss[0]) > 1e6, "{rss:?}");
    let age = server.query_until("time() - process_start_time_seconds");
    assert!(
        (0.0..120.0).contains(&prometheus::sample_value(&age[0])),
        "{age:?}"
    );
    for q in [
        "process_virtual_memory_bytes",
        "process_open_fds / process_max_fds",
    ] {
        assert!(!server.query_until(q).is_empty(), "{q}");
    }
    drop(server);
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

/// `sampler run --ui ADDR`, without Prometheus: the live page shows the watched process's
/// series in a real browser, with rates once two harvests are in, and no error on the page.
#[test]
fn r17_run_serves_the_live_page_with_the_ui_flag() {
    let mut bg = Background::spawn(&[
        "run",
        "--interval",
        "250ms",
        "--ui",
        "127.0.0.1:0",
        "--output",
        "/dev/null",
    ]);
    let lines = bg
        .stderr
        .wait_until("the page's address", Duration::from_secs(10), |l| {
            l.iter()
                .any(|l| l.contains("serving the live page at http://"))
        });
    let url = lines
        .iter()
        .find_map(|l| l.split_once("serving the live page at ").map(|(_, u)| u))
        .expect("the url")
        .trim()
        .to_owned();
    let (status, html) = http_get(&url);
    assert!(status.contains("200"), "{status}");
    assert!(html.contains("/ui/app.js"), "{html}");

    let mut b = browser::Browser::launch();
    b.navigate(&url);
    // The process's CPU time is a counter: its card shows a rate once two harvests are in.
    b.wait_for(
        "[...document.querySelectorAll('.series')].some(c => c.querySelector('.name').textContent === 'process.cpu.time' && /[0-9]/.test(c.querySelector('.value').textContent))",
        Duration::from_secs(20),
    );
    let names = b.eval("[...document.querySelectorAll('.series .name')].map(n => n.textContent)");
    for name in ["process.memory.usage", "sampler.harvest.count"] {
        assert!(
            names.as_array().unwrap().iter().any(|n| n == name),
            "{name} not on the page: {names}"
        );
    }
    b.drain_events();
    assert!(b.errors.is_empty(), "errors on the page: {:#?}", b.errors);
    drop(b);
    bg.signal(libc::SIGTERM);
    assert_eq!(bg.wait_exit(Duration::from_secs(15)).code(), Some(0));
}
