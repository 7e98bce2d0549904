//! End to end: the real `sampler` command (with a custom exporter kind and a library sampler
//! of fixed readings linked in), one config file choosing five exporters with their own
//! filters, and the real backends at once: Prometheus scraping, carbon-cache, the Etsy StatsD
//! daemon, an OTLP receiver decoding with the official protobuf package, and the custom `csv`
//! kind. Each backend is then asked for what it holds, and every
//! one must hold exactly the series its filters let through, with the same values.

#[path = "../../exporters/prometheus/tests/support/mod.rs"]
mod prometheus;

#[path = "../../exporters/graphite/tests/interop/support.rs"]
#[allow(dead_code)]
mod graphite;

#[path = "../../exporters/statsd/tests/support/mod.rs"]
mod statsd;

#[path = "../../exporters/otlp/tests/otlp/support.rs"]
#[allow(dead_code)]
mod otlp;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// `sampler-e2e run --config FILE`, stderr collected; SIGTERM and reaped on drop.
struct Sampler {
    child: Child,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Sampler {
    fn run(config: &std::path::Path) -> Sampler {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sampler-e2e"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sampler-e2e");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for l in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(l);
            }
        });
        Sampler { child, stderr }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// SIGTERM, then the exit status within `limit`.
    fn stop(&mut self, limit: Duration) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own live child's pid touches no memory of ours.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let end = Instant::now() + limit;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < end,
                "sampler did not stop: {}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn r14_one_config_six_exporters_real_backends_same_values() {
    let carbon = graphite::Carbon::start();
    let daemon = statsd::Statsd::start(500);
    let receiver = otlp::PyReceiver::start();
    let prom_port = prometheus::free_port();
    let target: std::net::SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let prom = prometheus::PrometheusServer::start(&[("e2e", target, "/metrics")]);
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("harvests.csv");
    let config = dir.path().join("sampler.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[harvest]
interval = "1s"

[labels]
site = "${{E2E_SITE:-lab}}"

# Prometheus scrapes every e2e series.
[[exporter]]
kind = "prometheus"
address = "127.0.0.1:{prom_port}"
include = ["e2e.*"]

# carbon gets only the requests of route a, as cumulative totals.
[[exporter]]
kind = "graphite"
address = "127.0.0.1:{carbon_port}"
counters = "cumulative"
include = ["e2e.requests"]
match = {{ route = "a" }}

# StatsD gets the temperature alone, under a prefix.
[[exporter]]
kind = "statsd"
address = "127.0.0.1:{statsd_port}"
include = ["e2e.temperature"]
prefix = "st"

# The OTLP receiver gets the latency alone, as an exponential histogram.
[[exporter]]
kind = "otlp"
endpoint = "{otlp_url}"
include = ["e2e.latency"]

# The custom kind gets everything of e2e but the latency.
[[exporter]]
kind = "csv"
path = {csv:?}
include = ["e2e.*"]
exclude = ["e2e.latency"]

[adapters]
"#,
            carbon_port = carbon.line_port,
            statsd_port = daemon.port,
            otlp_url = receiver.url(),
            csv = csv.to_str().unwrap(),
        ),
    )
    .unwrap();
    let mut sampler = Sampler::run(&config);

    // Prometheus: every e2e series, the common label added.
    let value = |expr: &str| -> f64 {
        let r = prom.query_until(expr);
        assert_eq!(r.len(), 1, "{expr}: {r:?}");
        prometheus::sample_value(&r[0])
    };
    assert_eq!(value(r#"e2e_requests_total{route="a",site="lab"}"#), 42.0);
    assert_eq!(value(r#"e2e_requests_total{route="b",site="lab"}"#), 7.0);
    assert_eq!(value(r#"e2e_temperature_celsius{site="lab"}"#), -3.5);
    assert_eq!(value(r#"e2e_latency_seconds_count{site="lab"}"#), 4.0);
    assert!((value(r#"e2e_latency_seconds_sum{site="lab"}"#) - 3.7).abs() < 1e-9);

    // carbon: the one series its filter lets through, with the same value at every point.
    let tagged = "e2e.requests;route=a;site=lab".to_owned();
    let other = "e2e.requests;route=b;site=lab".to_owned();
    let temp = "e2e.temperature;site=lab".to_owned();
    let points = carbon.wait_points(&[(tagged.clone(), 2)]);
    assert!(points[0].iter().all(|(_, v)| *v == 42.0), "{points:?}");
    let absent = carbon.fetch(&[other, temp]);
    assert!(
        absent.iter().all(Vec::is_empty),
        "filtered series reached carbon: {absent:?}"
    );

    // StatsD: the daemon's flushed gauge is the negative value itself (without tags, label
    // values extend the name: spec/statsd.md).
    let flushed = daemon.wait_for(&["stats.gauges.st.e2e.temperature.lab"]);
    assert_eq!(flushed.get("stats.gauges.st.e2e.temperature.lab"), -3.5);
    assert!(
        !flushed
            .0
            .keys()
            .any(|k| k.contains("requests") || k.contains("latency")),
        "filtered series reached statsd: {:?}",
        flushed.0.keys()
    );

    // OTLP: the latency's exponential histogram, decoded by the official package; nothing else.
    let requests = receiver.wait_for(Duration::from_secs(20), |r| !r.is_empty());
    let mut names = Vec::new();
    let mut point = None;
    for r in &requests {
        for rm in r["request"]["resourceMetrics"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for sm in rm["scopeMetrics"].as_array().into_iter().flatten() {
                for m in sm["metrics"].as_array().into_iter().flatten() {
                    names.push(m["name"].as_str().unwrap_or("").to_owned());
                    if m["name"] == "e2e.latency" {
                        point = Some(m["exponentialHistogram"]["dataPoints"][0].clone());
                    }
                }
            }
        }
    }
    assert!(names.iter().all(|n| n == "e2e.latency"), "{names:?}");
    let point = point.unwrap_or_else(|| panic!("no e2e.latency in {requests:?}"));
    assert_eq!(point["count"], "4", "{point}");
    assert!(
        (point["sum"].as_f64().unwrap() - 3.7).abs() < 1e-9,
        "{point}"
    );
    assert_eq!(point["min"].as_f64(), Some(0.1), "{point}");
    assert_eq!(point["max"].as_f64(), Some(3.0), "{point}");
    assert_eq!(point["attributes"][0]["key"], "site", "{point}");
    assert_eq!(
        point["attributes"][0]["value"]["stringValue"], "lab",
        "{point}"
    );

    let status = sampler.stop(Duration::from_secs(20));
    assert!(status.success(), "{status:?}: {}", sampler.stderr());

    // The custom kind: rows of every harvest, the latency left out, the same values.
    let text = std::fs::read_to_string(&csv).unwrap();
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert!(rows.len() >= 6, "{text}");
    for r in &rows {
        let f: Vec<&str> = r.split(',').collect();
        assert_eq!(f.len(), 4, "{r}");
        match (f[1], f[2]) {
            ("e2e.requests", "route=a;site=lab") => assert_eq!(f[3], "42", "{r}"),
            ("e2e.requests", "route=b;site=lab") => assert_eq!(f[3], "7", "{r}"),
            ("e2e.temperature", "site=lab") => assert_eq!(f[3], "-3.5", "{r}"),
            other => panic!("a row the filters should have kept out: {other:?} in {r}"),
        }
    }
    // Nothing failed on the way: no exporter reported a failure.
    let err = sampler.stderr();
    assert!(!err.contains("failing"), "{err}");
}
