//! Helpers for the interop tests: an HTTP client, a real Prometheus server started on loopback
//! (stopped by a drop guard), `promtool`, and the Python `prometheus_client` parsers.

#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value as Json;

pub const PROMETHEUS_INSTALL: &str = "apt-get update && apt-get install -y prometheus \
     (or scripts/install-peers.sh, which also sets up the Python parsers)";

/// The workspace root: the nearest folder above the including crate that holds `Cargo.lock`
/// (these helpers are shared by crates at different depths).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .expect("a workspace root holding Cargo.lock above the crate")
        .to_path_buf()
}

/// A program on `PATH`, or `None`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub content_encoding: String,
    pub body: Vec<u8>,
}

/// GET `url` with `headers` (and `Accept-Encoding: identity` unless given).
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    get_query(url, headers, &[])
}

pub fn get_query(url: &str, headers: &[(&str, &str)], query: &[(&str, &str)]) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.get(url);
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("accept-encoding"))
    {
        req = req.header("Accept-Encoding", "identity");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    for (k, v) in query {
        req = req.query(*k, *v);
    }
    let mut resp = req.call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let (content_type, content_encoding) = (h("content-type"), h("content-encoding"));
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"));
    Reply {
        status: resp.status().as_u16(),
        content_type,
        content_encoding,
        body,
    }
}

/// Inflates a gzip body (or returns it as is when a gzip-aware client already did).
pub fn gunzip(b: &[u8]) -> Vec<u8> {
    if b.len() < 2 || b[..2] != [0x1f, 0x8b] {
        return b.to_vec();
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// A free loopback port (bound and released, so another process can take it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

/// Polls `f` every 100 ms until it returns `Some`, or fails after `limit` with `what`.
pub fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < until,
            "gave up after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A Prometheus server on loopback with a temporary storage dir; killed when dropped.
pub struct PrometheusServer {
    child: Child,
    pub url: String,
    dir: tempfile::TempDir,
}

impl PrometheusServer {
    /// Starts Prometheus (with native histograms on) scraping each `(job, address, path)`
    /// every second, and waits until it is ready.
    pub fn start(targets: &[(&str, SocketAddr, &str)]) -> PrometheusServer {
        Self::start_with(targets, &[])
    }

    /// As [`start`](Self::start), with more command-line flags
    /// (`--web.enable-remote-write-receiver`).
    pub fn start_with(targets: &[(&str, SocketAddr, &str)], flags: &[&str]) -> PrometheusServer {
        let bin = on_path("prometheus").unwrap_or_else(|| {
            panic!("the prometheus server is not on PATH; install it with: {PROMETHEUS_INSTALL}")
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let mut yml = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, addr, path) in targets {
            yml.push_str(&format!(
                "  - job_name: {job}\n    metrics_path: {path}\n    static_configs:\n      - targets: ['{addr}']\n"
            ));
        }
        std::fs::write(dir.path().join("prometheus.yml"), yml).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--enable-feature=native-histograms")
            .args(flags)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let mut server = PrometheusServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let ready = format!("{}/-/ready", server.url);
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("prometheus exited with {status}:\n{}", server.log());
            }
            let ok = ureq::get(&ready)
                .config()
                .timeout_global(Some(Duration::from_secs(1)))
                .build()
                .call()
                .is_ok();
            if ok {
                break;
            }
            assert!(
                Instant::now() < until,
                "prometheus not ready after 20 s:\n{}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's `data.result`.
    pub fn query(&self, expr: &str) -> Vec<Json> {
        let r = get_query(
            &format!("{}/api/v1/query", self.url),
            &[],
            &[("query", expr)],
        );
        let v: Json = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("query {expr}: {e}: {}", String::from_utf8_lossy(&r.body)));
        assert_eq!(v["status"], "success", "query {expr}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// Polls a query until it returns something (the first scrape comes seconds after start).
    pub fn query_until(&self, expr: &str) -> Vec<Json> {
        poll(
            Duration::from_secs(40),
            &format!("{expr} in prometheus"),
            || {
                let r = self.query(expr);
                (!r.is_empty()).then_some(r)
            },
        )
    }

    /// Every target's health and last error, for failure messages.
    pub fn targets(&self) -> String {
        String::from_utf8_lossy(&get(&format!("{}/api/v1/targets", self.url), &[]).body)
            .into_owned()
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The scalar value of an instant-vector element, as sent (a decimal string).
pub fn sample_value(v: &Json) -> f64 {
    let s = v["value"][1]
        .as_str()
        .unwrap_or_else(|| panic!("no value in {v}"));
    s.parse().unwrap_or_else(|_| panic!("not a float: {s}"))
}

/// `promtool check metrics` on `text`: (success, everything it printed).
pub fn promtool_check(text: &[u8]) -> (bool, String) {
    use std::io::Write;
    let bin = on_path("promtool").unwrap_or_else(|| {
        panic!(
            "promtool is not on PATH; it comes with the prometheus package: {PROMETHEUS_INSTALL}"
        )
    });
    let mut child = Command::new(bin)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text)
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), printed)
}

/// The python interpreter with `prometheus_client` 0.26.0: `$SAMPLER_PYTHON`, or the
/// workspace's `.venv/bin/python`.
pub fn python() -> PathBuf {
    let root = workspace_root();
    let install = format!(
        "cd {} && python3 -m venv .venv && .venv/bin/pip install prometheus-client==0.26.0",
        root.display()
    );
    let candidate = std::env::var_os("SAMPLER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".venv/bin/python"));
    let ok = Command::new(&candidate)
        .args([
            "-c",
            "import importlib.metadata as m; assert m.version('prometheus-client') == '0.26.0'",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python with prometheus-client 0.26.0 not found at {} (set SAMPLER_PYTHON or install it: {install})",
        candidate.display()
    );
    candidate
}

/// One parsed sample: name, labels, value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
}

/// One parsed family: name, type, unit, help and samples.
#[derive(Clone, Debug)]
pub struct Family {
    pub name: String,
    pub kind: String,
    pub unit: String,
    pub help: String,
    pub samples: Vec<Sample>,
}

/// Parses an exposition with `prometheus_client`'s text (`"text"`) or OpenMetrics
/// (`"openmetrics"`) parser.
pub fn python_parse(format: &str, exposition: &[u8]) -> Vec<Family> {
    let py = python();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("exposition");
    std::fs::write(&file, exposition).expect("write exposition");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/parse_exposition.py");
    let out = Command::new(py)
        .arg(script)
        .arg(format)
        .arg(&file)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "prometheus_client's {format} parser rejected the exposition:\n{}\n--- exposition ---\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(exposition)
    );
    let v: Json = serde_json::from_slice(&out.stdout).expect("parser output is JSON");
    assert_eq!(v["version"], "0.26.0");
    v["families"]
        .as_array()
        .expect("families")
        .iter()
        .map(|f| Family {
            name: f["name"].as_str().unwrap_or("").to_owned(),
            kind: f["type"].as_str().unwrap_or("").to_owned(),
            unit: f["unit"].as_str().unwrap_or("").to_owned(),
            help: f["help"].as_str().unwrap_or("").to_owned(),
            samples: f["samples"]
                .as_array()
                .expect("samples")
                .iter()
                .map(|s| Sample {
                    name: s["name"].as_str().unwrap_or("").to_owned(),
                    labels: s["labels"]
                        .as_object()
                        .expect("labels")
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                        .collect(),
                    value: s["value"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .expect("float value"),
                })
                .collect(),
        })
        .collect()
}
