//! Peers of the tests: the Python receiver (official protobuf decoder), the rotel collector, and
//! a small HTTP receiver in Rust whose answers each test scripts.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use sampler_exporter_otlp::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use serde_json::Value as Json;

pub const PY_INSTALL: &str = "bash scripts/install-peers.sh (or: python3 -m venv .venv && \
     .venv/bin/pip install opentelemetry-proto==1.45.2 protobuf==7.36.2 rotel==0.0.1a15)";

/// The workspace root: the nearest folder above the including crate that holds `Cargo.lock`
/// (the end-to-end suite includes these helpers too).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .expect("a workspace root holding Cargo.lock above the crate")
        .to_path_buf()
}

/// The python interpreter with opentelemetry-proto 1.45.2 and rotel: `$SAMPLER_PYTHON`, or
/// the workspace's `.venv/bin/python`.
pub fn python() -> PathBuf {
    let candidate = std::env::var_os("SAMPLER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    let ok = Command::new(&candidate)
        .args([
            "-c",
            "import importlib.metadata as m; assert m.version('opentelemetry-proto') == '1.45.2'; \
             assert m.version('rotel') == '0.0.1a15'",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python with opentelemetry-proto 1.45.2 and rotel 0.0.1a15 not found at {} (set \
         SAMPLER_PYTHON or install them: cd {} && {PY_INSTALL})",
        candidate.display(),
        workspace_root().display()
    );
    candidate
}

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The Python receiver (`tests/otlp_receiver.py`), decoding with `opentelemetry-proto`.
pub struct PyReceiver {
    _proc: Proc,
    pub port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl PyReceiver {
    pub fn start() -> PyReceiver {
        let py = python();
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out.jsonl");
        let script = workspace_root().join("exporters/otlp/tests/otlp_receiver.py");
        let mut child = Command::new(py)
            .arg(&script)
            .arg("0")
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("failed to start tests/otlp_receiver.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let proc = Proc(child);
        // Ready once it prints its port (reading blocks until then, or EOF if it died).
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the receiver's port");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("otlp_receiver.py did not start: {line:?}"));
        PyReceiver {
            _proc: proc,
            port,
            out,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/metrics", self.port)
    }

    /// Every request received so far, decoded.
    pub fn requests(&self) -> Vec<Json> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("receiver output is JSON"))
            .collect()
    }

    /// Polls (every 20 ms, at most `within`) until `done` holds for the requests received.
    pub fn wait_for(&self, within: Duration, done: impl Fn(&[Json]) -> bool) -> Vec<Json> {
        let until = Instant::now() + within;
        loop {
            let r = self.requests();
            if done(&r) || Instant::now() >= until {
                return r;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A free loopback port (bound and released: the peer started next binds it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

/// Polls until something accepts TCP connections on the port.
pub fn wait_tcp(port: u16, within: Duration) {
    let until = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < until,
            "nothing listens on 127.0.0.1:{port} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The rotel collector, receiving OTLP/HTTP and gRPC and forwarding over OTLP/HTTP to `to`.
pub struct Rotel {
    _proc: Proc,
    pub http_port: u16,
    pub grpc_port: u16,
    _dir: tempfile::TempDir,
}

impl Rotel {
    pub fn start(to_port: u16) -> Rotel {
        let py = python();
        let out = Command::new(&py)
            .args([
                "-c",
                "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
            ])
            .output()
            .expect("run python");
        let agent = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        assert!(
            Path::new(&agent).is_file(),
            "the rotel-agent binary is not in the rotel package ({agent:?}); install it: {PY_INSTALL}"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let (http_port, grpc_port) = (free_port(), free_port());
        let child = Command::new(&agent)
            .arg("start")
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
            .args(["--exporter", "otlp", "--otlp-exporter-protocol", "http"])
            .args([
                "--otlp-exporter-endpoint",
                &format!("http://127.0.0.1:{to_port}"),
            ])
            .args(["--batch-timeout", "100ms"])
            .arg("--pid-file")
            .arg(dir.path().join("rotel.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("failed to start rotel-agent");
        let proc = Proc(child);
        wait_tcp(http_port, Duration::from_secs(10));
        Rotel {
            _proc: proc,
            http_port,
            grpc_port,
            _dir: dir,
        }
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/metrics", self.http_port)
    }
}

/// How the Rust receiver answers one request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// This status, these headers, this body.
    Status(u16, Vec<(String, String)>, Vec<u8>),
    /// Read the request and never answer (the connection stays open).
    BlackHole,
}

impl Reply {
    pub fn status(code: u16) -> Reply {
        Reply::Status(code, Vec::new(), Vec::new())
    }

    pub fn ok() -> Reply {
        Reply::Status(
            200,
            Vec::new(),
            ExportMetricsServiceResponse::default().encode_to_vec(),
        )
    }
}

/// One request as the Rust receiver saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub at: Instant,
    pub headers: Vec<(String, String)>,
    /// The body as it came, and decompressed.
    pub wire: Vec<u8>,
    pub body: Vec<u8>,
    pub request: ExportMetricsServiceRequest,
    /// The status it was answered with (0: never answered).
    pub status: u16,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct FakeState {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    seen: Vec<Seen>,
    held: Vec<TcpStream>,
}

/// A small OTLP/HTTP receiver on loopback that records every request and answers as scripted
/// (then with the default reply, 200 unless set).
pub struct FakeReceiver {
    state: Arc<Mutex<FakeState>>,
    pub port: u16,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl FakeReceiver {
    pub fn start(script: Vec<Reply>) -> FakeReceiver {
        Self::on(TcpListener::bind("127.0.0.1:0").expect("bind"), script)
    }

    /// On a port given (one an exporter was already pointed at).
    pub fn start_on(port: u16, script: Vec<Reply>) -> FakeReceiver {
        Self::on(
            TcpListener::bind(("127.0.0.1", port)).expect("bind the port again"),
            script,
        )
    }

    fn on(listener: TcpListener, script: Vec<Reply>) -> FakeReceiver {
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(FakeState {
            script: script.into(),
            ..Default::default()
        }));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        listener.set_nonblocking(true).unwrap();
        let (st, stop2) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let st = st.clone();
                        std::thread::spawn(move || serve(stream, st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeReceiver { state, port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/metrics", self.port)
    }

    pub fn set_default(&self, reply: Reply) {
        self.state.lock().unwrap().default = Some(reply);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Polls until at least `n` requests were seen, or `within` passes.
    pub fn wait_for(&self, n: usize, within: Duration) -> Vec<Seen> {
        let until = Instant::now() + within;
        loop {
            let s = self.seen();
            if s.len() >= n || Instant::now() >= until {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FakeReceiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.state.lock().unwrap().held.clear();
    }
}

fn serve(mut stream: TcpStream, st: Arc<Mutex<FakeState>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let len: usize = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut wire = vec![0; len];
        if reader.read_exact(&mut wire).is_err() {
            return;
        }
        let gz = headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-encoding") && v == "gzip");
        let body = if gz {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&wire[..])
                .read_to_end(&mut out)
                .expect("gzip body");
            out
        } else {
            wire.clone()
        };
        let request = ExportMetricsServiceRequest::decode(&body[..]).expect("protobuf body");
        let mut guard = st.lock().unwrap();
        let reply = guard
            .script
            .pop_front()
            .or_else(|| guard.default.clone())
            .unwrap_or_else(Reply::ok);
        let status = match &reply {
            Reply::Status(code, ..) => *code,
            Reply::BlackHole => 0,
        };
        guard.seen.push(Seen {
            at: Instant::now(),
            headers,
            wire,
            body,
            request,
            status,
        });
        match reply {
            Reply::BlackHole => {
                guard.held.push(stream);
                return;
            }
            Reply::Status(code, extra, body) => {
                drop(guard);
                let mut head = format!(
                    "HTTP/1.1 {code} X\r\ncontent-type: application/x-protobuf\r\ncontent-length: {}\r\n",
                    body.len()
                );
                for (k, v) in extra {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                if stream.write_all(head.as_bytes()).is_err() || stream.write_all(&body).is_err() {
                    return;
                }
            }
        }
    }
}

/// Collects the exporter's events.
#[derive(Clone, Default)]
pub struct Events(pub Arc<Mutex<Vec<String>>>);

impl Events {
    pub fn handler(&self) -> impl Fn(&sampler_exporter_otlp::Event) + Send + Sync + 'static {
        let v = self.0.clone();
        move |e| v.lock().unwrap().push(e.to_string())
    }

    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}
