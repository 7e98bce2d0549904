//! The `web-service` program run as a user runs it, on loopback: its routes answer, and its
//! Prometheus endpoint shows the per-group series, the per-request memory singling out the
//! hungry group, and the process adapter's series.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The running program; killed when dropped.
struct Service {
    child: Child,
    base: String,
    metrics: String,
    /// What the program writes on stderr after it said where it listens.
    stderr: mpsc::Receiver<String>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_web-service"))
        .args(["--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0"])
        .args(extra)
        .args(["--workers", "2", "--seconds", "120"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start web-service");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut service = Service {
        child,
        base: String::new(),
        metrics: String::new(),
        stderr: rx,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while service.base.is_empty() || service.metrics.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = service
            .stderr
            .recv_timeout(left)
            .expect("web-service did not say where it listens within 30 s");
        if let Some(url) = line.strip_prefix("serving metrics on ") {
            service.metrics = url.to_owned();
        } else if let Some(rest) = line.strip_prefix("listening on ") {
            service.base = rest.split(' ').next().unwrap_or_default().to_owned();
        }
    }
    service
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// The value of the sample line `name{labels} value` in a Prometheus text exposition.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn r16_web_service_shows_memory_per_route_group() {
    let service = start(&[]);
    let agent = agent();
    let get = |path: &str| {
        let mut r = agent
            .get(format!("{}{path}", service.base))
            .call()
            .expect("request");
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().expect("body"))
    };
    for _ in 0..5 {
        assert_eq!(get("/api/hello"), (200, "hello\n".to_owned()));
    }
    assert_eq!(get("/api/items/7").1, "{\"id\":7,\"name\":\"item-7\"}\n");
    for _ in 0..2 {
        let (status, body) = get("/reports/4096");
        assert_eq!(status, 200);
        assert!(body.starts_with("report: 4096 KiB, checksum "), "{body}");
    }
    assert_eq!(get("/reports/0").0, 400);
    assert_eq!(get("/nowhere").0, 404);

    // Each scrape harvests afresh; the last response's guard may end a moment after the
    // client has read it, so poll.
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = agent
            .get(&service.metrics)
            .call()
            .expect("scrape")
            .body_mut()
            .read_to_string()
            .expect("exposition");
        let done = sample(
            &text,
            "http_server_request_memory_peak_bytes_count{group=\"reports\"}",
        ) == Some(3.0)
            && sample(
                &text,
                "http_server_request_memory_peak_bytes_count{group=\"api\"}",
            ) == Some(6.0);
        if done {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "no memory series after 10 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let requests = |group: &str, class: &str| {
        sample(
            &text,
            &format!(
                "http_server_requests_total{{group=\"{group}\",method=\"GET\",status_class=\"{class}\"}}"
            ),
        )
    };
    assert_eq!(requests("api", "2xx"), Some(6.0));
    assert_eq!(requests("reports", "2xx"), Some(2.0));
    assert_eq!(requests("reports", "4xx"), Some(1.0));
    assert_eq!(requests("unmatched", "4xx"), Some(1.0));

    // Two 4 MiB reports and a refused one: the group's peak sum is over 8 MiB, while six
    // small api requests together stay under 64 KiB.
    let peak_sum = |group: &str| {
        sample(
            &text,
            &format!("http_server_request_memory_peak_bytes_sum{{group=\"{group}\"}}"),
        )
        .expect("peak sum")
    };
    let reports = peak_sum("reports");
    let api = peak_sum("api");
    assert!(
        reports >= 8.0 * 1024.0 * 1024.0,
        "reports peak sum {reports}"
    );
    assert!(api < 64.0 * 1024.0, "api peak sum {api}");
    // Every report of 4 MiB falls in the 4 MiB..8 MiB bucket or above.
    let below_4m = sample(
        &text,
        "http_server_request_memory_peak_bytes_bucket{group=\"reports\",le=\"4.194304e+06\"}",
    );
    assert_eq!(
        below_4m,
        Some(1.0),
        "only the refused report is at most 4 MiB"
    );
    // The process adapter is there too.
    assert!(
        sample(&text, "process_memory_usage_bytes").is_some_and(|rss| rss > 0.0),
        "no process series:\n{text}"
    );
}

#[test]
fn r16_web_service_reports_a_slow_request_while_it_runs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let slow_dir = dir.path().join("slow");
    let service = start(&[
        "--slow-after",
        "300ms",
        "--slow-dir",
        slow_dir.to_str().expect("utf-8 path"),
    ]);
    let agent = agent();
    let base = service.base.clone();
    // Four steps 250 ms apart: about 1 s in flight, parked on an await most of it.
    let slow = std::thread::spawn(move || {
        let mut r = agent
            .get(format!("{base}/reports/64/250"))
            .call()
            .expect("slow report");
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().expect("body"),
        )
    });
    // Reported while it still runs: on stderr, before the response came back.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut said = Vec::new();
    let report = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = service
            .stderr
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no slow-request report within 30 s: {said:#?}"));
        if line.contains("/reports/64/250") {
            break line;
        }
        said.push(line);
    };
    assert!(
        !slow.is_finished(),
        "reported only after the request ended: {report}"
    );
    assert!(report.contains("reports"), "{report}");
    let (status, body) = slow.join().expect("client");
    assert_eq!(status, 200, "{body}");
    // One file for the request, its end appended once it completed; counted for its group.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let files: Vec<_> = std::fs::read_dir(&slow_dir)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        let text = files
            .iter()
            .map(|f| std::fs::read_to_string(f).unwrap_or_default())
            .collect::<String>();
        let scraped = ureq::get(&service.metrics)
            .call()
            .expect("scrape")
            .body_mut()
            .read_to_string()
            .expect("exposition");
        let counted = sample(
            &scraped,
            "http_server_slow_requests_total{group=\"reports\"}",
        );
        if files.len() == 1 && text.contains("/reports/64/250") && counted == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "files {files:?}:\n{text}\ncounted {counted:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
