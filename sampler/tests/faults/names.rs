//! Processes with hostile names (not UTF-8, a carriage return, a tab, a newline, an escape
//! sequence): read and labelled (lossy), matched by `--name` as bytes, shown escaped in
//! events, and exposed to Prometheus so that promtool and the Python parsers read them back.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::support::*;

/// The name: Latin-1 `é`, CR, tab, newline and a colour escape; 12 bytes, under the 15 the
/// kernel keeps.
const NAME: &[u8] = b"ev\xe9l\r\t\n\x1b[31m";
/// The name as labelled: the byte that is not UTF-8 replaced.
const LABEL: &str = "ev\u{fffd}l\r\t\n\u{1b}[31m";

/// A copy of `sleep` run under the hostile name (the kernel names a process after the file it
/// executes), killed on drop.
struct Hostile {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Hostile {
    fn start() -> Hostile {
        Self::named(NAME)
    }

    /// Under another name, for a test whose `--name` must not see the others' processes.
    fn named(name: &[u8]) -> Hostile {
        let dir = tempfile::tempdir().unwrap();
        let mut path = PathBuf::from(dir.path());
        path.push(OsStr::from_bytes(name));
        let sleep = ["/usr/bin/sleep", "/bin/sleep"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("sleep (coreutils) in /usr/bin or /bin");
        std::fs::copy(sleep, &path).unwrap();
        let child = Command::new(&path)
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn the renamed sleep");
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let comm = std::fs::read(format!("/proc/{pid}/comm")).unwrap_or_default();
            let stat = std::fs::read(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat
                .iter()
                .rposition(|&b| b == b')')
                .and_then(|i| stat.get(i + 2).copied());
            if comm.strip_suffix(b"\n") == Some(name) && state == Some(b'S') {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the renamed sleep {pid} did not settle"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        Hostile { child, _dir: dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop();
    }
}

fn series_of<'a>(lines: &'a [serde_json::Value], pid: &str) -> Vec<&'a serde_json::Value> {
    lines
        .iter()
        .filter(|v| has_label_value(&v["labels"], pid))
        .collect()
}

#[test]
fn r10_a_process_named_in_bytes_that_are_not_utf8_is_read_and_labelled() {
    let p = Hostile::start();
    let pid = p.pid().to_string();
    let run = run_bounded(
        &["dump", "--pid", &pid, "--format", "json"],
        Duration::from_secs(10),
        64 * 1024,
    );
    run.assert_exit(0);
    assert_eq!(run.stderr, "");
    let lines = parse_json_lines(&run.stdout);
    let up = lines
        .iter()
        .find(|v| v["name"] == "process.up" && v["labels"]["target"] == format!("pid:{pid}"))
        .expect("process.up");
    assert_eq!(up["value"], 1.0);
    let ours = series_of(&lines, &pid);
    assert!(ours.len() >= 5, "the process's series: {ours:?}");
    assert!(
        ours.iter().all(|v| has_label_value(&v["labels"], LABEL)),
        "{ours:?}"
    );
    // The table, for people, shows the name escaped: no raw control character reaches it.
    let run = run_bounded(&["dump", "--pid", &pid], Duration::from_secs(10), 64 * 1024);
    run.assert_exit(0);
    let shown = "=\"ev\u{fffd}l\\r\\t\\n\\u{1b}[31m\"";
    let rows = run
        .stdout
        .lines()
        .filter(|l| row_has_label_value(l, &pid) && l.contains(shown))
        .count();
    assert!(rows >= 5, "{shown} in\n{}", run.stdout);
    assert!(!run.stdout.contains(['\r', '\u{1b}']), "{:?}", run.stdout);
}

#[test]
fn r10_name_patterns_match_the_raw_bytes() {
    let p = Hostile::start();
    let pid = p.pid().to_string();
    // A pattern with the very byte that is not UTF-8, as a shell passes it.
    let raw = OsStr::from_bytes(b"^ev\xe9l\r");
    let mut cmd = sampler();
    cmd.arg("dump")
        .arg("--name")
        .arg(raw)
        .args(["--format", "json"]);
    let run = run_command_bounded(cmd, Duration::from_secs(10), 64 * 1024);
    run.assert_exit(0);
    let lines = parse_json_lines(&run.stdout);
    assert!(!series_of(&lines, &pid).is_empty(), "{}", run.stdout);
    // And a UTF-8 pattern around it.
    let run = run_bounded(
        &["dump", "--name", "^ev.l\\r\\t\\n", "--format", "json"],
        Duration::from_secs(10),
        64 * 1024,
    );
    run.assert_exit(1);
    // `.` matches a character, and the lone byte 0xE9 is none: with `(?-u:.)` it matches.
    let run = run_bounded(
        &["dump", "--name", "^ev(?-u:.)l\\r\\t\\n", "--format", "json"],
        Duration::from_secs(10),
        64 * 1024,
    );
    run.assert_exit(0);
    assert!(!series_of(&parse_json_lines(&run.stdout), &pid).is_empty());
}

#[test]
fn r10_events_show_hostile_names_escaped_on_one_line() {
    // Its own first letters, which the other tests' processes do not share.
    let mut p = Hostile::named(b"gone\xe9\r\t\n\x1b[31m");
    let pid = p.pid().to_string();
    let mut bg = Background::spawn(&["run", "--interval", "100ms", "--name", "^gone"]);
    bg.stdout
        .wait_until("the process in a table", Duration::from_secs(10), |l| {
            l.iter().any(|l| row_has_label_value(l, &pid))
        });
    p.stop();
    bg.stderr
        .wait_until("the gone report", Duration::from_secs(10), |l| {
            l.iter().any(|l| l.contains("is gone"))
        });
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let stderr = bg.stderr.text();
    assert_eq!(
        stderr,
        format!(
            "sampler: name \"^gone\": process {pid} (gone\u{fffd}\\r\\t\\n\\u{{1b}}[31m) is gone: no such process (/proc/{pid} does not exist)\n"
        )
    );
    assert!(!stderr.contains('\u{1b}') && !stderr.contains('\r'));
}

/// The Python with `prometheus_client`: `$SAMPLER_PYTHON`, or the workspace's `.venv`.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("SAMPLER_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python with prometheus_client at {}: install it with `bash scripts/install-peers.sh`",
        venv.display()
    );
    venv
}

#[test]
fn r10_hostile_names_in_the_text_exposition_parse_in_python() {
    let p = Hostile::start();
    let pid = p.pid().to_string();
    let mut bg = Background::spawn(&[
        "run",
        "--interval",
        "100ms",
        "--pid",
        &pid,
        "--prometheus",
        "127.0.0.1:0",
    ]);
    let url = endpoint_url(&bg.stderr);
    let deadline = Instant::now() + Duration::from_secs(10);
    let body = loop {
        let (status, body) = http_get(&url, Duration::from_secs(5)).unwrap();
        if status.contains("200") && body.contains(&format!("=\"{pid}\"")) {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "no series of {pid}: {status}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    bg.signal(libc::SIGINT);
    assert_eq!(bg.wait_exit(Duration::from_secs(10)).code(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics.txt");
    std::fs::write(&file, &body).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../exporters/prometheus/tests/support/parse_exposition.py");
    let out = Command::new(python())
        .arg(&script)
        .arg("text")
        .arg(&file)
        .output()
        .expect("run the Python parser");
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parsed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ours: Vec<&serde_json::Value> = parsed["families"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|f| f["samples"].as_array().unwrap())
        .filter(|s| has_label_value(&s["labels"], &pid))
        .collect();
    assert!(ours.len() >= 5, "{parsed}");
    // Every byte comes back: the newline escaped and unescaped, the carriage return, tab and
    // escape raw (valid in a label value), the byte that is not UTF-8 as U+FFFD.
    assert!(
        ours.iter().all(|s| has_label_value(&s["labels"], LABEL)),
        "{ours:?}"
    );
    // And promtool's parser (Prometheus's own) takes it.
    let check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&file).unwrap())
        .output()
        .expect(
            "promtool (Debian package prometheus): install it with `bash scripts/install-peers.sh`",
        );
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(
        !said.contains("parsing error"),
        "promtool check metrics: {said}"
    );
}
