//! `[[action]]` rules with the real `sampler` binary watching real processes by pid.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A process that waits for a `go` file, then allocates (and touches) `MiB` mebibytes, and
/// appends one line per SIGUSR1 it gets to `signals`.
const BALLOON: &str = r#"
import os, signal, sys, time
signals, go, mib = sys.argv[1], sys.argv[2], int(sys.argv[3])
def got(sig, frame):
    with open(signals, "a") as f:
        f.write("%d %f\n" % (sig, time.time()))
signal.signal(signal.SIGUSR1, got)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
held = b"\x01" * (mib * 1024 * 1024)
print("allocated", flush=True)
while True:
    time.sleep(0.05)
"#;

struct Kid(Child);
impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn python() -> &'static str {
    if Command::new("python3")
        .arg("-c")
        .arg("0")
        .status()
        .is_ok_and(|s| s.success())
    {
        "python3"
    } else {
        panic!("python3 is needed by this test: apt-get install -y python3")
    }
}

fn balloon(dir: &Path, i: usize, mib: u32) -> (Kid, u32) {
    let mut c = Command::new(python())
        .arg("-c")
        .arg(BALLOON)
        .arg(dir.join(format!("signals{i}")))
        .arg(dir.join(format!("go{i}")))
        .arg(mib.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python3");
    let mut line = String::new();
    BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let pid = c.id();
    (Kid(c), pid)
}

/// When (Unix seconds) each SIGUSR1 reached process `i`.
fn signal_times(dir: &Path, i: usize) -> Vec<f64> {
    std::fs::read_to_string(dir.join(format!("signals{i}")))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_once(' ').and_then(|(_, t)| t.parse().ok()))
        .collect()
}

fn signals(dir: &Path, i: usize) -> usize {
    signal_times(dir, i).len()
}

/// Harvest numbers and harvest times (Unix seconds) of the lines
/// `action RULE fired for ...pid="PID"...: ... at harvest N (TIME)...` in `log`.
fn firings_at(log: &str, rule: &str, pid: u32) -> Vec<(u64, f64)> {
    let head = format!("sampler: action {rule} fired for ");
    log.lines()
        .filter(|l| l.starts_with(&head) && l.contains(&format!("pid=\"{pid}\"")))
        .map(|l| {
            let parsed = l.rsplit_once(" at harvest ").and_then(|(_, r)| {
                let (n, r) = r.split_once(" (")?;
                let (t, _) = r.split_once(')')?;
                let t = humantime::parse_rfc3339(t).ok()?;
                let t = t.duration_since(std::time::UNIX_EPOCH).ok()?;
                Some((n.parse().ok()?, t.as_secs_f64()))
            });
            parsed.unwrap_or_else(|| panic!("no harvest number and time in {l:?}"))
        })
        .collect()
}

/// Harvest numbers of the firings of `rule` for `pid`.
fn firings(log: &str, rule: &str, pid: u32) -> Vec<u64> {
    firings_at(log, rule, pid)
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Runs `sampler` over `n` processes, the first of which balloons to 160 MiB, with a rule
/// sending SIGUSR1 after 3 harvests above 100 MiB and a 1 s cool-down, harvests every 100 ms.
/// Returns the log, the pids and when each got its signals.
fn run(n: usize) -> (String, Vec<u32>, Vec<Vec<f64>>) {
    let dir = tempfile::tempdir().unwrap();
    let kids: Vec<(Kid, u32)> = (0..n)
        .map(|i| balloon(dir.path(), i, if i == 0 { 160 } else { 0 }))
        .collect();
    let pids: Vec<u32> = kids.iter().map(|k| k.1).collect();
    let config = dir.path().join("sampler.toml");
    let list: Vec<String> = pids.iter().map(u32::to_string).collect();
    std::fs::write(
        &config,
        format!(
            r#"
[harvest]
interval = "100ms"
[adapters.process]
pids = [{}]
[[action]]
name = "seen"
when = "process.memory.usage > 100 MiB"
log = true
[[action]]
name = "fat"
when = "process.memory.usage > 100 MiB"
for = 3
cooldown = "1s"
signal = "SIGUSR1"
"#,
            list.join(", ")
        ),
    )
    .unwrap();
    let mut sampler = Kid(Command::new(env!("CARGO_BIN_EXE_sampler"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sampler"));
    // Read the log on a thread; balloon once the first harvest is in.
    let stderr = sampler.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    std::fs::File::create(dir.path().join("go0"))
        .unwrap()
        .flush()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut log = String::new();
    // Wait for two firings, then for a full cool-down more, to see there is no third early.
    let mut two_at = None;
    while Instant::now() < deadline {
        while let Ok(l) = rx.try_recv() {
            log.push_str(&l);
            log.push('\n');
        }
        if two_at.is_none() && signals(dir.path(), 0) >= 2 {
            two_at = Some(Instant::now());
        }
        if two_at.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: kill(2) with the pid of our own child.
    unsafe { libc::kill(sampler.0.id() as i32, libc::SIGTERM) };
    let _ = sampler.0.wait();
    reader.join().unwrap();
    while let Ok(l) = rx.try_recv() {
        log.push_str(&l);
        log.push('\n');
    }
    assert!(
        two_at.is_some(),
        "the rule did not fire twice in 30 s:\n{log}"
    );
    let got = (0..n).map(|i| signal_times(dir.path(), i)).collect();
    drop(kids);
    (log, pids, got)
}

fn check_timing(log: &str, pid: u32, got: &[f64]) {
    let seen = firings(log, "seen", pid);
    let fat = firings(log, "fat", pid);
    assert!(seen.len() >= 3, "{log}");
    let first = seen[0];
    // Above on every harvest from the first one above on.
    for (k, h) in seen.iter().enumerate() {
        assert_eq!(*h, first + k as u64, "a gap in the harvests above:\n{log}");
    }
    eprintln!(
        "pid {pid}: above from harvest {first}, fired at harvests {fat:?}, signals at {got:?}"
    );
    // Exactly 3 harvests above, not before.
    assert_eq!(fat[0], first + 2, "{log}");
    // One signal per firing.
    assert!(fat.len() >= 2, "{log}");
    assert_eq!(got.len(), fat.len(), "{log}");
    // Not again within the 1 s cool-down, measured on the harvests' own clock as the rule
    // measures it (10 harvests of 100 ms unless the harvester skipped ticks), and again on the
    // first harvest once it is over.
    let gap = fat[1] - fat[0];
    assert!(gap <= 12, "second firing {gap} harvests later:\n{log}");
    let at: Vec<f64> = firings_at(log, "fat", pid)
        .iter()
        .map(|(_, t)| *t)
        .collect();
    for w in at.windows(2) {
        assert!(
            w[1] - w[0] >= 1.0,
            "fired within the cool-down: harvests at {at:?}\n{log}"
        );
    }
    assert!(
        at[1] - at[0] < 1.25,
        "not again once the cool-down was over: harvests at {at:?}\n{log}"
    );
    // Each signal reached the process after the harvest that fired it, and before the next
    // firing's harvest: one signal per firing, in order. (Clocks: both are the system clock;
    // the harvest time is taken before the snapshot is evaluated.)
    for (k, (&sent, &arrived)) in at.iter().zip(got).enumerate() {
        assert!(
            arrived >= sent - 0.001,
            "signal {k} arrived at {arrived} before its harvest at {sent}:\n{log}"
        );
        if let Some(&next) = at.get(k + 1) {
            assert!(
                arrived < next,
                "signal {k} arrived at {arrived}, after the next firing's harvest at {next}:\n{log}"
            );
        }
    }
}

#[test]
fn r17_signal_after_n_harvests_not_within_cooldown_and_again_after() {
    let (log, pids, got) = run(1);
    check_timing(&log, pids[0], &got[0]);
}

#[test]
fn r17_pool_of_three_fires_for_the_balloon_only() {
    let (log, pids, got) = run(3);
    check_timing(&log, pids[0], &got[0]);
    for i in 1..3 {
        assert!(got[i].is_empty(), "process {i} got a signal:\n{log}");
        assert!(firings(&log, "fat", pids[i]).is_empty(), "{log}");
        assert!(firings(&log, "seen", pids[i]).is_empty(), "{log}");
    }
}

#[test]
fn r17_check_prints_rules_and_points_at_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[action]]\nname = \"fat\"\nwhen = \"process.memory.usage > 70% of system.memory.limit\"\nfor = 2\nsignal = \"TERM\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sampler"))
        .arg("check")
        .arg(&good)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("action fat: when process.memory.usage > 70% of system.memory.limit for 2 harvests, signal SIGTERM"),
        "{text}"
    );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[[action]]\nwhen = \"rate(x) > 5 furlongs\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sampler"))
        .arg("check")
        .arg(&bad)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("bad.toml:2:21"), "{text}");
    assert!(text.contains("unknown unit `furlongs`"), "{text}");
}

#[test]
fn r17_sighup_replaces_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sampler.toml");
    let file = |rule: &str| {
        format!(
            "[harvest]\ninterval = \"100ms\"\n[adapters.process]\n[[action]]\nname = \"{rule}\"\nwhen = \"process.memory.usage > 1 B\"\n"
        )
    };
    std::fs::write(&config, file("before")).unwrap();
    let mut sampler = Kid(Command::new(env!("CARGO_BIN_EXE_sampler"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sampler"));
    let mut lines = BufReader::new(sampler.0.stderr.take().unwrap()).lines();
    let mut log = String::new();
    let mut wait_for = |what: &str, log: &mut String| {
        for l in lines.by_ref().map_while(Result::ok).take(200) {
            log.push_str(&l);
            log.push('\n');
            if l.contains(what) {
                return;
            }
        }
        panic!("no {what:?} in:\n{log}");
    };
    wait_for("action before fired", &mut log);
    std::fs::write(&config, file("after")).unwrap();
    // SAFETY: kill(2) with the pid of our own child.
    unsafe { libc::kill(sampler.0.id() as i32, libc::SIGHUP) };
    wait_for("action after fired", &mut log);
    let at = log.find("action after fired").unwrap();
    wait_for("action after fired", &mut log);
    assert!(!log[at..].contains("action before fired"), "{log}");
    // SAFETY: as above.
    unsafe { libc::kill(sampler.0.id() as i32, libc::SIGTERM) };
    assert!(sampler.0.wait().unwrap().success());
}
