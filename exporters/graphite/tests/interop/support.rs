//! Real backends on loopback (carbon-cache, VictoriaMetrics) and a small TCP sink the tests
//! control, plus helpers to build snapshots with chosen harvest times.

use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sampler_api::Snapshot;

pub const INSTALL: &str =
    "run `bash scripts/install-peers.sh` (apt-get install graphite-carbon python3-whisper victoria-metrics)";

/// Whole seconds since the epoch, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A copy of `s` as if harvested at `secs`.
pub fn at(s: &Snapshot, secs: u64) -> Arc<Snapshot> {
    let mut s = s.clone();
    s.time = UNIX_EPOCH + Duration::from_secs(secs);
    Arc::new(s)
}

/// A port free on 127.0.0.1 for both TCP and UDP when asked.
pub fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `f` every 20 ms until it gives `Some`, or panics with `what` after `limit`.
pub fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// carbon-cache in the foreground on loopback, with a temp dir, a 1 s schema and no limit on
/// creates (see the peers notes: the Debian default of 50 creates a minute drops data).
pub struct Carbon {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub line_port: u16,
    pub pickle_port: u16,
    query_port: u16,
}

impl Carbon {
    pub fn start() -> Carbon {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Carbon {
            child: None,
            dir,
            line_port: free_port(),
            pickle_port: free_port(),
            query_port: free_port(),
        };
        c.restart();
        c
    }

    /// Starts carbon (again) on the same ports and storage.
    pub fn restart(&mut self) {
        let bin = which("carbon-cache")
            .unwrap_or_else(|| panic!("carbon-cache is not installed: {INSTALL}"));
        assert!(
            Command::new("/usr/bin/python3")
                .args(["-c", "import whisper"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false),
            "python3-whisper is not installed: {INSTALL}"
        );
        let d = self.dir.path();
        for sub in ["conf", "storage/whisper", "storage/lists", "log", "run"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        let conf = format!(
            "[cache]\nSTORAGE_DIR = {d}/storage/\nLOCAL_DATA_DIR = {d}/storage/whisper/\n\
             WHITELISTS_DIR = {d}/storage/lists/\nCONF_DIR = {d}/conf/\nLOG_DIR = {d}/log/\n\
             PID_DIR = {d}/run/\nUSER =\nMAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = inf\n\
             MAX_CREATES_PER_MINUTE = inf\nLINE_RECEIVER_INTERFACE = 127.0.0.1\n\
             LINE_RECEIVER_PORT = {lp}\nENABLE_UDP_LISTENER = True\n\
             UDP_RECEIVER_INTERFACE = 127.0.0.1\nUDP_RECEIVER_PORT = {lp}\n\
             PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pp}\n\
             CACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {qp}\nLOG_CREATES = True\n\
             CACHE_WRITE_STRATEGY = sorted\nWHISPER_AUTOFLUSH = True\n\
             WHISPER_FALLOCATE_CREATE = False\nENABLE_TAGS = False\nGRAPHITE_URL = http://127.0.0.1:1\n",
            d = d.display(),
            lp = self.line_port,
            pp = self.pickle_port,
            qp = self.query_port,
        );
        std::fs::write(d.join("conf/carbon.conf"), conf).unwrap();
        std::fs::write(
            d.join("conf/storage-schemas.conf"),
            "[everything_1s]\npattern = .*\nretentions = 1s:1h,60s:1d\n",
        )
        .unwrap();
        std::fs::write(
            d.join("conf/storage-aggregation.conf"),
            "[default]\npattern = .*\nxFilesFactor = 0\naggregationMethod = average\n",
        )
        .unwrap();
        let _ = std::fs::remove_file(d.join("run/carbon.pid"));
        let log = std::fs::File::create(d.join("carbon.out")).unwrap();
        let child = Command::new(bin)
            .arg(format!("--config={}/conf/carbon.conf", d.display()))
            .arg(format!("--pidfile={}/run/carbon.pid", d.display()))
            .args(["--logfile=-", "--nodaemon", "start"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start carbon-cache: {e}: {INSTALL}"));
        self.child = Some(child);
        let (lp, pp) = (self.line_port, self.pickle_port);
        poll(Duration::from_secs(30), "carbon-cache to listen", || {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("carbon-cache exited with {st}: {}", self.log());
            }
            (TcpStream::connect(("127.0.0.1", lp)).is_ok()
                && TcpStream::connect(("127.0.0.1", pp)).is_ok())
            .then_some(())
        });
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("carbon.out")).unwrap_or_default()
    }

    /// Stops carbon with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(10);
            while c.try_wait().unwrap().is_none() && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Every stored (timestamp, value) of each series (paths or tagged names), read from
    /// their whisper files with whisper itself (the file found by carbon's own path rule);
    /// empty while a file does not exist.
    pub fn fetch(&self, names: &[String]) -> Vec<Vec<(u64, f64)>> {
        let script = r#"
import sys, os, json, time, whisper
from carbon.util import TaggedSeries
root = sys.argv[1]
result = []
for name in json.loads(sys.argv[2]):
    if ';' in name:
        name = TaggedSeries.parse(name).path
    out = []
    for h in (True, False):
        p = os.path.join(root, TaggedSeries.encode(name, os.sep, hash_only=h) + '.wsp')
        if os.path.exists(p):
            (start, end, step), vals = whisper.fetch(p, int(time.time()) - 3000, None)
            out = [[start + i * step, v] for i, v in enumerate(vals) if v is not None]
            break
    result.append(out)
print(json.dumps(result))
"#;
        let o = Command::new("/usr/bin/python3")
            .args(["-c", script])
            .arg(self.dir.path().join("storage/whisper"))
            .arg(serde_json::to_string(names).unwrap())
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "reading whisper files failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: Vec<Vec<(f64, f64)>> = serde_json::from_slice(&o.stdout).unwrap();
        v.into_iter()
            .map(|s| s.into_iter().map(|(t, x)| (t as u64, x)).collect())
            .collect()
    }

    /// Polls until every series holds at least as many points as expected, then returns
    /// what whisper holds.
    pub fn wait_points(&self, want: &[(String, usize)]) -> Vec<Vec<(u64, f64)>> {
        let names: Vec<String> = want.iter().map(|(n, _)| n.clone()).collect();
        let mut last;
        let end = Instant::now() + Duration::from_secs(40);
        loop {
            last = self.fetch(&names);
            if last.iter().zip(want).all(|(got, (_, n))| got.len() >= *n) {
                return last;
            }
            if Instant::now() > end {
                let missing: Vec<_> = last
                    .iter()
                    .zip(want)
                    .filter(|(g, (_, n))| g.len() < *n)
                    .map(|(g, (name, n))| format!("{name}: {} of {n}", g.len()))
                    .collect();
                panic!(
                    "whisper files incomplete after 40s: {missing:?}\ncarbon log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Carbon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// VictoriaMetrics with its Graphite listener (TCP and UDP) on loopback.
pub struct Victoria {
    child: Child,
    _dir: tempfile::TempDir,
    pub http: u16,
    pub graphite: u16,
}

impl Victoria {
    pub fn start() -> Victoria {
        let bin = which("victoria-metrics")
            .unwrap_or_else(|| panic!("victoria-metrics is not installed: {INSTALL}"));
        let dir = tempfile::tempdir().unwrap();
        let (http, graphite) = (free_port(), free_port());
        let child = Command::new(bin)
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("data").display()
            ))
            .arg("-retentionPeriod=1d")
            .arg(format!("-httpListenAddr=127.0.0.1:{http}"))
            .arg(format!("-graphiteListenAddr=127.0.0.1:{graphite}"))
            .args([
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-loggerLevel=WARN",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start victoria-metrics: {e}: {INSTALL}"));
        let mut v = Victoria {
            child,
            _dir: dir,
            http,
            graphite,
        };
        poll(
            Duration::from_secs(30),
            "victoria-metrics to listen",
            || {
                if let Some(st) = v.child.try_wait().unwrap() {
                    panic!("victoria-metrics exited with {st}");
                }
                (http_get(v.http, "/health").is_some()
                    && TcpStream::connect(("127.0.0.1", v.graphite)).is_ok())
                .then_some(())
            },
        );
        v
    }

    /// `/api/v1/export` for a selector, after a forced flush: one JSON object per series.
    pub fn export(&self, selector: &str) -> Vec<serde_json::Value> {
        http_get(self.http, "/internal/force_flush");
        let q = format!("/api/v1/export?match[]={}", urlencode(selector));
        let body = http_get(self.http, &q).unwrap_or_default();
        body.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Victoria {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A tiny HTTP/1.0 GET; the body on 200, else `None`.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?;
    (status == "200").then(|| body.to_owned())
}

/// A Graphite backend the fault tests control: a TCP listener on a fixed loopback port that
/// reads every connection into memory, or accepts one and never reads it (a stalled
/// backend), and can be killed and started again on the same port.
pub struct Sink {
    pub port: u16,
    shared: Arc<SinkShared>,
    acceptor: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct SinkShared {
    /// Everything read, per connection, in the order connections were accepted.
    streams: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    /// Connections accepted and never read (stalled mode).
    held: Mutex<Vec<TcpStream>>,
    readers: Mutex<Vec<JoinHandle<()>>>,
    stop: AtomicBool,
}

impl Sink {
    /// A port nothing listens on yet.
    pub fn unbound() -> Sink {
        Sink {
            port: free_port(),
            shared: Arc::default(),
            acceptor: None,
        }
    }

    /// Listens (again) on the port; `read`: read every connection, else hold the first one
    /// unread and stop listening.
    pub fn listen(&mut self, read: bool) {
        assert!(self.acceptor.is_none(), "already listening");
        let listener = TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.shared.stop.store(false, Ordering::SeqCst);
        let shared = self.shared.clone();
        self.acceptor = Some(std::thread::spawn(move || loop {
            // Stopping still takes the connections already made, so what they carry is read.
            let stopping = shared.stop.load(Ordering::SeqCst);
            match listener.accept() {
                Ok((s, _)) => {
                    s.set_nonblocking(false).unwrap();
                    if !read {
                        shared.held.lock().unwrap().push(s);
                        return; // stop listening: new connections are refused
                    }
                    let buf = Arc::new(Mutex::new(Vec::new()));
                    shared.streams.lock().unwrap().push(buf.clone());
                    let sh = shared.clone();
                    let h = std::thread::spawn(move || read_until_stopped(s, &buf, &sh.stop));
                    shared.readers.lock().unwrap().push(h);
                }
                Err(_) if stopping => return,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }));
        // Listening from here on: the bind above happened before the thread started.
    }

    /// Stops listening and closes every connection, after reading what has arrived.
    pub fn kill(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            a.join().unwrap();
        }
        for r in self.shared.readers.lock().unwrap().drain(..) {
            r.join().unwrap();
        }
    }

    /// Reads the held (stalled) connections to their end, as a backend that recovers does.
    pub fn drain_held(&mut self) {
        if let Some(a) = self.acceptor.take() {
            self.shared.stop.store(true, Ordering::SeqCst);
            a.join().unwrap();
        }
        for mut s in self.shared.held.lock().unwrap().drain(..) {
            let mut buf = Vec::new();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            let _ = s.read_to_end(&mut buf);
            self.shared
                .streams
                .lock()
                .unwrap()
                .push(Arc::new(Mutex::new(buf)));
        }
    }

    /// Every complete line received, connection after connection (a line cut off by a
    /// closed connection is not one).
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in self.shared.streams.lock().unwrap().iter() {
            let s = s.lock().unwrap();
            let text = String::from_utf8_lossy(&s);
            let complete = match text.rfind('\n') {
                Some(i) => &text[..=i],
                None => "",
            };
            out.extend(complete.lines().map(str::to_owned));
        }
        out
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.kill();
    }
}

fn read_until_stopped(mut s: TcpStream, buf: &Mutex<Vec<u8>>, stop: &AtomicBool) {
    s.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.lock().unwrap().extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return; // nothing left that had arrived
                }
            }
            Err(_) => return,
        }
    }
}
