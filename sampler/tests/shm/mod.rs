//! `sampler run --shm DIR` and `[adapters.shm]`: the command as the harvester of a
//! shared-memory directory.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use super::support::*;
use sampler_adapter_shm::Segment;

fn private_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// The counter `jobs.done` summed over two writers, printed as JSON lines every second.
#[test]
fn r15_run_shm_harvests_a_directory() {
    let dir = private_dir();
    let a = Segment::create(dir.path()).unwrap();
    let b = Segment::create(dir.path()).unwrap();
    a.counter("jobs.done", &[("queue", "mail")]).unwrap().add(3);
    let jobs = b.counter("jobs.done", &[("queue", "mail")]).unwrap();
    jobs.add(4);
    let path = dir.path().to_str().unwrap();
    let mut bg = Background::spawn(&["run", "--shm", path, "--interval", "1s", "--format", "json"]);
    let total = |lines: &[String], want: f64| {
        parse_json_lines(&lines.join("\n")).iter().any(|v| {
            v["name"] == "jobs.done" && v["labels"]["queue"] == "mail" && v["value"] == want
        })
    };
    bg.stdout
        .wait_until("jobs.done = 7", Duration::from_secs(15), |l| total(l, 7.0));
    jobs.add(10);
    drop(a); // a writer leaves: its 3 stay in the total
    bg.stdout
        .wait_until("jobs.done = 17", Duration::from_secs(15), |l| {
            total(l, 17.0)
        });
    bg.signal(libc::SIGINT);
    let status = bg.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0), "stderr: {}", bg.stderr.text());
    assert_eq!(bg.stderr.text(), "");

    let done = run_to_end(&["run", "--shm", "/nonexistent/shm"]);
    assert_eq!(done.status.code(), Some(1));
    assert_eq!(
        done.stderr.trim(),
        "sampler: shm directory /nonexistent/shm is not a directory"
    );
}

/// `[adapters.shm]`: checked (with a hint for a bad rule) and run by `dump --config`.
#[test]
fn r15_config_adapters_shm() {
    let dir = private_dir();
    let seg = Segment::create(dir.path()).unwrap();
    seg.gauge("pool.idle", &[]).unwrap().set(2.0);
    let conf = dir.path().join("sampler.conf");
    let path = dir.path().to_str().unwrap();
    std::fs::write(
        &conf,
        format!("[adapters.shm]\ndir = \"{path}\"\ngauges = \"sum\"\ngrace = \"5s\"\n\n[[exporter]]\nkind = \"console\"\nformat = \"json\"\n"),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let done = run_to_end(&["check", conf]);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    assert!(
        done.stdout
            .contains(&format!("read segments in {path}, gauges by sum")),
        "{}",
        done.stdout
    );
    let done = run_to_end(&["dump", "--config", conf]);
    assert_eq!(done.status.code(), Some(0), "{}", done.stderr);
    let lines = parse_json_lines(&done.stdout);
    assert!(
        lines.iter().any(|v| v["name"] == "pool.idle"
            && v["value"] == 2.0
            && v["labels"].as_object().unwrap().is_empty()),
        "{}",
        done.stdout
    );

    std::fs::write(
        dir.path().join("bad.conf"),
        "[adapters.shm]\ndir = \"/x\"\ngauges = \"avg\"\n",
    )
    .unwrap();
    let done = run_to_end(&["check", dir.path().join("bad.conf").to_str().unwrap()]);
    assert_eq!(done.status.code(), Some(1));
    assert!(
        done.stderr
            .contains("invalid gauge rule \"avg\": expected pid, sum, max, min or last"),
        "{}",
        done.stderr
    );
}
