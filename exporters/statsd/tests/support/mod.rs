//! The real Etsy StatsD daemon (npm `statsd@0.9.0`, installed by `scripts/install-peers.sh`
//! into `.peers/statsd`), started on loopback for one test and stopped by a drop guard.
//!
//! The daemon's figures are read from its own flush: its graphite backend connects to a
//! listener of the test's and writes `stats.timers.<key>.count <value> <time>` lines, the
//! numbers the daemon computed (count, sum, lower, upper, mean, percentiles). Flushes are
//! merged (counters and timer counts add up, lower is the least, upper the greatest, a gauge
//! its last value), so a flush that falls between two of our datagrams changes nothing.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const STATSD_INSTALL: &str = "bash scripts/install-peers.sh (it runs: mkdir -p .peers/statsd && \
     cd .peers/statsd && npm install --no-audit --no-fund --omit=optional statsd@0.9.0; node must be on PATH)";

/// The workspace root: the nearest folder above the including crate that holds `Cargo.lock`
/// (these helpers are shared by crates at different depths).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file())
        .expect("a workspace root holding Cargo.lock above the crate")
        .to_path_buf()
}

fn free_port() -> u16 {
    // Free for both UDP and TCP at the time of asking.
    for _ in 0..100 {
        let t = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = t.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 for both udp and tcp")
}

/// One flushed datapoint, as the daemon's graphite backend wrote it.
#[derive(Debug, Clone)]
pub struct Point {
    pub path: String,
    pub value: f64,
}

pub struct Statsd {
    child: Child,
    pub port: u16,
    pub admin: u16,
    flushed: Arc<Mutex<Vec<Point>>>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Statsd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Statsd {
    /// Starts the daemon with UDP and TCP listeners on one free port, the admin port on
    /// another, and its graphite backend flushing every `flush_ms` to a listener of ours.
    pub fn start(flush_ms: u64) -> Statsd {
        Statsd::start_on(free_port(), flush_ms)
    }

    /// Like [`start`](Self::start), listening on `port` (UDP and TCP).
    pub fn start_on(port: u16, flush_ms: u64) -> Statsd {
        let stats_js = workspace_root().join(".peers/statsd/node_modules/statsd/stats.js");
        assert!(
            stats_js.is_file(),
            "etsy statsd is not installed at {}: run {STATSD_INSTALL}",
            stats_js.display()
        );
        let node = std::env::var_os("PATH")
            .and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("node"))
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| {
                panic!("node is not on PATH: install Node.js, then run {STATSD_INSTALL}")
            });

        let sink = TcpListener::bind("127.0.0.1:0").unwrap();
        let sink_port = sink.local_addr().unwrap().port();
        let flushed = Arc::new(Mutex::new(Vec::new()));
        let f = flushed.clone();
        std::thread::spawn(move || {
            for conn in sink.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut text = String::new();
                let _ = conn.read_to_string(&mut text);
                let mut f = f.lock().unwrap();
                for line in text.lines() {
                    let mut it = line.split(' ');
                    if let (Some(path), Some(v)) = (it.next(), it.next()) {
                        if let Ok(value) = v.parse() {
                            f.push(Point {
                                path: path.to_owned(),
                                value,
                            });
                        }
                    }
                }
            }
        });

        let dir = tempfile::tempdir().unwrap();
        let admin = free_port();
        let config = format!(
            r#"{{"servers": [{{"server": "./servers/udp", "address": "127.0.0.1", "port": {port}}},
                         {{"server": "./servers/tcp", "address": "127.0.0.1", "port": {port}}}],
               "mgmt_address": "127.0.0.1", "mgmt_port": {admin}, "flushInterval": {flush_ms},
               "percentThreshold": [50, 90], "backends": ["./backends/graphite"],
               "graphiteHost": "127.0.0.1", "graphitePort": {sink_port},
               "graphite": {{"legacyNamespace": false}}, "deleteIdleStats": true}}"#
        );
        let conf = dir.path().join("config.json");
        std::fs::write(&conf, config).unwrap();
        let log = dir.path().join("statsd.log");
        let child = Command::new(node)
            .arg(&stats_js)
            .arg(&conf)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("failed to start node");
        let s = Statsd {
            child,
            port,
            admin,
            flushed,
            log,
            _dir: dir,
        };
        s.wait_ready();
        s
    }

    /// Polls the admin port until the daemon answers and a probe datagram shows up.
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        loop {
            assert!(
                Instant::now() < deadline,
                "statsd did not come up on udp {} / admin {} within 20 s; its log: {}",
                self.port,
                self.admin,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            if let Some(c) = self.try_admin("counters") {
                if c.contains("r12_probe") {
                    return;
                }
                let _ = udp.send_to(b"r12_probe:1|c", ("127.0.0.1", self.port));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn try_admin(&self, cmd: &str) -> Option<String> {
        let mut s = TcpStream::connect(("127.0.0.1", self.admin)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("{cmd}\n").as_bytes()).ok()?;
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            let n = s.read(&mut buf).ok()?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
            if out.ends_with(b"END\n\n") || out.ends_with(b"ERROR\n") {
                break;
            }
        }
        String::from_utf8(out).ok()
    }

    /// An admin command's answer (node `util.inspect` text, not JSON).
    pub fn admin(&self, cmd: &str) -> String {
        self.try_admin(cmd)
            .unwrap_or_else(|| panic!("statsd admin command {cmd} failed"))
    }

    /// How many flushes reached us.
    pub fn flushes(&self) -> usize {
        self.flushed
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.path == "stats.statsd.numStats")
            .count()
    }

    /// Waits for the next flush, so that what is sent now lands in one flush interval.
    pub fn after_flush(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let n = self.flushes();
        while self.flushes() <= n {
            assert!(
                Instant::now() < deadline,
                "statsd did not flush within 30 s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// In how many flushes `path` came.
    pub fn flushes_of(&self, path: &str) -> usize {
        self.flushed
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.path == path)
            .count()
    }

    /// Waits until every path in `paths` was flushed, then for one more flush (which carries
    /// anything that arrived after the first), and returns every flushed point merged.
    pub fn wait_for(&self, paths: &[&str]) -> Flushed {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let have: Vec<String> = self
                .flushed
                .lock()
                .unwrap()
                .iter()
                .map(|p| p.path.clone())
                .collect();
            if paths.iter().all(|p| have.iter().any(|h| h == p)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "statsd did not flush {:?} within 30 s; flushed: {:?}",
                paths
                    .iter()
                    .filter(|p| !have.iter().any(|h| h == *p))
                    .collect::<Vec<_>>(),
                have
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let n = self.flushes();
        while self.flushes() <= n {
            assert!(Instant::now() < deadline, "statsd stopped flushing");
            std::thread::sleep(Duration::from_millis(20));
        }
        Flushed::merge(&self.flushed.lock().unwrap())
    }
}

/// Every flushed path with its flushes merged.
#[derive(Debug, Default)]
pub struct Flushed(pub HashMap<String, f64>);

impl Flushed {
    fn merge(points: &[Point]) -> Flushed {
        let mut m: HashMap<String, f64> = HashMap::new();
        for p in points {
            let leaf = p.path.split(';').next().unwrap_or("");
            let last = leaf.rsplit('.').next().unwrap_or("");
            let e = m.entry(p.path.clone());
            let combine = |old: f64| match last {
                "count" | "sum" => old + p.value,
                "lower" => old.min(p.value),
                "upper" => old.max(p.value),
                // A gauge, a rate, a mean or a percentile: the latest.
                _ => p.value,
            };
            e.and_modify(|v| *v = combine(*v)).or_insert(p.value);
        }
        Flushed(m)
    }

    pub fn get(&self, path: &str) -> f64 {
        *self
            .0
            .get(path)
            .unwrap_or_else(|| panic!("statsd flushed no {path}; it flushed {:?}", self.0.keys()))
    }
}
