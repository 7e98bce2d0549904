//! `sampler check`, `run --config` and `dump --config` with real files: the resolved pipeline,
//! every error at once, and SIGHUP reloads that keep what did not change.

use std::time::{Duration, Instant};

use super::http_get;
use super::support::*;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

/// The value of an unlabelled sample in a text exposition.
fn sample(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Scrapes `url` until `name` is there, and returns its value.
fn scrape_until(url: &str, name: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = http_get(url);
        if let Some(v) = sample(&body, name).filter(|v| ok(*v)) {
            assert!(status.contains("200"), "{status}");
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never as wanted: {status}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn r14_check_prints_the_resolved_pipeline_or_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.toml",
        "[harvest]\ninterval = \"5s\"\n[[exporter]]\nkind = \"prometheus\"\nname = \"edge\"\naddress = \"127.0.0.1:0\"\ninclude = [\"process.*\"]\n[adapters.host]\n",
    );
    let done = run_to_end(&["check", &good]);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stdout
            .starts_with("harvest every 5s, queue depth 4, self-metrics on\n"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("adapter host: memory, load and CPUs"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout
            .contains("exporter edge (kind prometheus): include process.*"),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.ends_with(&format!("{good}: ok\n")),
        "{}",
        done.stdout
    );
    // Checking binds nothing: the same file can be checked while it runs.
    assert_eq!(done.stderr, "");

    let bad = write(
        dir.path(),
        "bad.toml",
        "[harvest]\ninterval = \"soon\"\n[[exporter]]\nkind = \"promethues\"\n",
    );
    let done = run_to_end(&["check", &bad]);
    assert_eq!(done.status.code(), Some(1));
    assert!(
        done.stderr
            .contains("sampler: error: invalid duration \"soon\""),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains(&format!("sampler:  --> {bad}:2:12")),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr
            .contains("sampler: error: unknown exporter kind \"promethues\""),
        "{}",
        done.stderr
    );
    assert!(
        done.stderr.contains("did you mean `prometheus`?"),
        "{}",
        done.stderr
    );
}

#[test]
fn r14_dump_with_a_config_writes_one_harvest_through_the_file_exporters() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let cfg = write(
        dir.path(),
        "dump.toml",
        &format!(
            "[labels]\nsite = \"lab\"\n[[exporter]]\nkind = \"console\"\nformat = \"json\"\noutput = {:?}\ninclude = [\"process.*\"]\n[adapters.process]\n",
            out.to_str().unwrap()
        ),
    );
    let done = run_to_end(&["dump", "--config", &cfg]);
    assert!(done.status.success(), "{}", done.stderr);
    let lines = parse_json_lines(&std::fs::read_to_string(&out).unwrap());
    assert!(!lines.is_empty());
    for l in &lines {
        assert!(l["name"].as_str().unwrap().starts_with("process."), "{l}");
        assert_eq!(l["labels"]["site"], "lab", "{l}");
    }
}

#[test]
fn r14_sighup_reloads_keeping_unchanged_exporters_and_a_broken_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.jsonl");
    let b = dir.path().join("b.jsonl");
    let config = |console_out: &std::path::Path, include: &str| {
        format!(
            "[harvest]\ninterval = \"1s\"\n\
             [[exporter]]\nkind = \"prometheus\"\nname = \"prom\"\naddress = \"127.0.0.1:0\"\n\
             [[exporter]]\nkind = \"console\"\nformat = \"json\"\noutput = {:?}\ninclude = [{include:?}]\n\
             [adapters.process]\n",
            console_out.to_str().unwrap()
        )
    };
    let cfg = write(dir.path(), "s.toml", &config(&a, "sampler.harvest.*"));
    let mut bg = Background::spawn(&["run", "--config", &cfg]);
    let lines = bg
        .stderr
        .wait_until("the endpoint address", Duration::from_secs(10), |l| {
            l.iter()
                .any(|l| l.contains("serving prometheus metrics at http://"))
        });
    let url = lines
        .iter()
        .find_map(|l| l.split_once(" at ").map(|(_, u)| u.trim().to_owned()))
        .unwrap();
    let before = scrape_until(&url, "sampler_harvest_count_total", |v| v >= 2.0);

    // Only the console's settings change: the Prometheus exporter must keep running as it is
    // (same port: a new one on port 0 would have another) and counters go on from where they were.
    write(dir.path(), "s.toml", &config(&b, "sampler.harvest.count"));
    bg.signal(libc::SIGHUP);
    bg.stderr
        .wait_until("the reload report", Duration::from_secs(10), |l| {
            l.iter()
                .any(|l| l.contains("reloaded: kept prom; started console; stopped console"))
        });
    let after = scrape_until(&url, "sampler_harvest_count_total", |v| v > before);
    assert!(after > before);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string(&b).map_or(true, |t| t.lines().count() < 2) {
        assert!(
            Instant::now() < deadline,
            "the new console never wrote to {b:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for l in parse_json_lines(&std::fs::read_to_string(&b).unwrap()) {
        assert_eq!(l["name"], "sampler.harvest.count", "{l}");
    }
    assert_eq!(
        bg.stderr
            .snapshot()
            .iter()
            .filter(|l| l.contains("serving prometheus metrics"))
            .count(),
        1,
        "the kept exporter was not rebuilt"
    );

    // A broken file: said once, with where; the pipeline goes on untouched.
    write(dir.path(), "s.toml", "[harvest]\ninterval = \"often\"\n");
    bg.signal(libc::SIGHUP);
    bg.stderr
        .wait_until("the rejection", Duration::from_secs(10), |l| {
            l.iter()
                .any(|l| l.contains("not reloaded, the running pipeline goes on"))
                && l.iter().any(|l| l.contains("invalid duration \"often\""))
        });
    let later = scrape_until(&url, "sampler_harvest_count_total", |v| v > after);
    assert!(later > after);

    bg.signal(libc::SIGTERM);
    assert_eq!(bg.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[test]
fn r14_the_annotated_example_config_is_valid() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/config/sampler.toml"
    );
    let done = run_to_end(&["check", path]);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stdout.contains("exporter api-only (kind prometheus)"),
        "{}",
        done.stdout
    );
}

#[test]
fn r14_a_file_without_exporters_prints_to_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(dir.path(), "min.toml", "[harvest]\ninterval = \"2s\"\n");
    let done = run_to_end(&["dump", "--config", &cfg]);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stdout.lines().any(|l| l.starts_with("# harvest ")),
        "{}",
        done.stdout
    );
    assert!(
        done.stdout.contains("process.") || done.stdout.contains("system."),
        "{}",
        done.stdout
    );
}

#[test]
fn r14_every_built_in_kind_is_chosen_by_name_and_checked_by_its_own_rules() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "kinds.toml",
        "[[exporter]]\nkind = \"console\"\n\
         [[exporter]]\nkind = \"prometheus\"\naddress = \"127.0.0.1:0\"\nharvest_timeout = \"500ms\"\n\
         [[exporter]]\nkind = \"graphite\"\naddress = \"127.0.0.1:2003\"\nprotocol = \"pickle\"\nconnect_timeout = 3\n\
         [[exporter]]\nkind = \"statsd\"\naddress = \"127.0.0.1:8125\"\nmax_payload = 512\n\
         [[exporter]]\nkind = \"remote-write\"\nurl = \"http://127.0.0.1:9090/api/v1/write\"\n\
         [[exporter]]\nkind = \"otlp\"\nendpoint = \"http://127.0.0.1:4318/v1/metrics\"\ntimeout = \"1m30s\"\n",
    );
    let done = run_to_end(&["check", &good]);
    assert!(done.status.success(), "{}", done.stderr);
    for kind in [
        "console",
        "prometheus",
        "graphite",
        "statsd",
        "remote-write",
        "otlp",
    ] {
        assert!(
            done.stdout
                .contains(&format!("exporter {kind} (kind {kind})")),
            "{kind}: {}",
            done.stdout
        );
    }
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[exporter]]\nkind = \"graphite\"\nprotocl = \"udp\"\n\
         [[exporter]]\nkind = \"statsd\"\nmax_payload = 10\n\
         [[exporter]]\nkind = \"remote-write\"\nurl = \"ftp://x\"\n",
    );
    let done = run_to_end(&["check", &bad]);
    assert_eq!(done.status.code(), Some(1));
    let e = &done.stderr;
    assert!(
        e.contains("unknown key `protocl` in exporter graphite"),
        "{e}"
    );
    assert!(e.contains("did you mean `protocol`?"), "{e}");
    assert!(
        e.contains("max_payload must be 64 to 65507 bytes, got 10 in exporter statsd"),
        "{e}"
    );
    assert!(e.contains(&format!("{bad}:6:1")), "{e}");
    assert!(
        e.contains("invalid url \"ftp://x\": must start with http://"),
        "{e}"
    );
}

/// `kind = "ui"`: checked by its own rules, and run from a file it serves the page's data.
#[test]
fn r17_the_ui_kind_is_checked_and_serves_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[exporter]]\nkind = \"ui\"\npoints = 0\n\
         [[exporter]]\nkind = \"ui\"\nname = \"second\"\nlisten = \"nowhere\"\n\
         [[exporter]]\nkind = \"ui\"\nname = \"third\"\nmax_series = 0\nlisten = \"127.0.0.1:0\"\n",
    );
    let done = run_to_end(&["check", &bad]);
    assert_eq!(done.status.code(), Some(1));
    let e = &done.stderr;
    assert!(e.contains("points must be 1 to 10000, got 0"), "{e}");
    assert!(e.contains("invalid address \"nowhere\""), "{e}");
    assert!(e.contains("max_series must be at least 1, got 0"), "{e}");

    let good = write(
        dir.path(),
        "ui.toml",
        "[harvest]\ninterval = \"200ms\"\n[[exporter]]\nkind = \"ui\"\nlisten = \"127.0.0.1:0\"\npoints = 5\n",
    );
    let done = run_to_end(&["check", &good]);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(
        done.stdout.contains("exporter ui (kind ui)"),
        "{}",
        done.stdout
    );
    let mut bg = Background::spawn(&["run", "--config", &good]);
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
    // Points are bounded by the file's `points`: poll until a series has all 5.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let body = ureq::get(format!("{url}ui/data.json"))
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let data: serde_json::Value = serde_json::from_str(&body).unwrap();
        let longest = data["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["points"].as_array().unwrap().len())
            .max()
            .unwrap_or(0);
        assert!(longest <= 5, "more points than the file allows: {longest}");
        if longest == 5 && data["sequence"].as_u64() > Some(6) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the page's data did not fill: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    bg.signal(libc::SIGTERM);
    assert_eq!(bg.wait_exit(Duration::from_secs(15)).code(), Some(0));
}

#[test]
fn r13_remote_write_and_otlp_new_keys_are_accepted_and_bad_values_said_with_where() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "rw.toml",
        "[[exporter]]\nkind = \"remote-write\"\ntimings = \"native\"\nstaleness_markers = false\n\
         [[exporter]]\nkind = \"remote-write\"\nname = \"both\"\ntimings = \"both\"\n",
    );
    let done = run_to_end(&["check", &good]);
    assert!(done.status.success(), "{}", done.stderr);
    assert!(done.stdout.contains("timings: Native"), "{}", done.stdout);
    assert!(
        done.stdout.contains("staleness_markers: false"),
        "{}",
        done.stdout
    );
    assert!(done.stdout.contains("timings: Both"), "{}", done.stdout);
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[exporter]]\nkind = \"remote-write\"\ntimings = \"nativ\"\n\
         [[exporter]]\nkind = \"remote-write\"\nname = \"b\"\nstaleness_markers = \"yes\"\n",
    );
    let done = run_to_end(&["check", &bad]);
    assert_eq!(done.status.code(), Some(1));
    let e = &done.stderr;
    assert!(
        e.contains(
            "unknown variant `nativ`, expected one of `classic`, `summary`, `native`, `both`"
        ),
        "{e}"
    );
    assert!(e.contains(&format!("{bad}:3:11")), "{e}");
    assert!(e.contains(&format!("{bad}:7:21")), "{e}");
}
