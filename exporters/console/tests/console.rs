//! The table against its golden file, JSON lines parsed back, and output to a file through a
//! real harvester.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use sampler_api::{
    Descriptor, Distribution, Harvester, Kind, Labels, Registry, Series, SeriesId, Snapshot, Value,
};
use sampler_exporter_console::{json_lines, ConsoleExporter, Format, TableRenderer};

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600;

struct Fixture {
    specs: Vec<(Arc<Descriptor>, Labels, SeriesId)>,
}

impl Fixture {
    fn new() -> Self {
        let d = |name: &'static str, kind, unit: &'static str| {
            Arc::new(Descriptor::owned(name, kind, unit, ""))
        };
        let l = |pairs: &[(&str, &str)]| Labels::from_pairs(pairs).unwrap();
        let specs = vec![
            (
                d("http.server.requests", Kind::Counter, "1"),
                l(&[("method", "GET"), ("route", "/api")]),
            ),
            (d("net.rx", Kind::Counter, "By"), l(&[])),
            (d("process.cpu.user", Kind::Counter, "us"), l(&[])),
            (
                d("worker.restarts", Kind::Counter, "1"),
                l(&[("job", "nightly backup")]),
            ),
            (d("process.memory.rss", Kind::Gauge, "By"), l(&[])),
            (d("host.memory.total", Kind::Gauge, "By"), l(&[])),
            (d("host.load", Kind::Gauge, "1"), l(&[("period", "1m")])),
            (d("process.start_time", Kind::Gauge, "s"), l(&[])),
            (
                d("http.server.duration", Kind::Timing, "s"),
                l(&[("route", "/api")]),
            ),
            (d("queue.wait", Kind::Timing, "s"), l(&[])),
        ];
        Fixture {
            specs: specs
                .into_iter()
                .map(|(d, l)| (d, l, SeriesId::next()))
                .collect(),
        }
    }

    /// The snapshot at `T0 + 10 * (sequence - 1)` seconds; counters move between the two.
    fn snapshot(&self, sequence: u64) -> Snapshot {
        let second = sequence > 1;
        let mut latency = Distribution::new(3);
        for v in [0.010, 0.012, 0.030, 0.045, 0.250] {
            latency.record(v);
        }
        if second {
            latency.record(0.020);
        }
        let values = [
            Value::Counter(if second { 1250 } else { 1000 }),
            Value::Counter(if second { 6 << 20 } else { 1 << 20 }),
            Value::Counter(if second { 2_120_000 } else { 2_000_000 }),
            // A reset between the two: no rate.
            Value::Counter(if second { 2 } else { 5 }),
            Value::Gauge(12.5 * 1024.0 * 1024.0),
            Value::Gauge(16.0 * 1024.0 * 1024.0 * 1024.0),
            Value::Gauge(0.52),
            Value::Gauge(1_767_000_000.0),
            Value::Timing(Box::new(latency)),
            Value::Timing(Box::new(Distribution::new(3))),
        ];
        let start = UNIX_EPOCH + Duration::from_secs(T0 - 3600);
        Snapshot::from_series(
            UNIX_EPOCH + Duration::from_secs(T0 + 10 * (sequence - 1)),
            Duration::from_secs(10),
            sequence,
            self.specs
                .iter()
                .zip(values)
                .map(|((d, l, id), value)| Series::new(*id, d.clone(), l.clone(), start, value)),
        )
    }
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares `actual` with a golden file; `UPDATE_GOLDEN=1` rewrites the file instead.
fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "failed to read golden file {}: {e}; run with UPDATE_GOLDEN=1 to write it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "table differs from {} (UPDATE_GOLDEN=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn table_matches_golden_file() {
    let fixture = Fixture::new();
    let mut table = TableRenderer::new();
    let mut text = table.render(&fixture.snapshot(1));
    text.push_str(&table.render(&fixture.snapshot(2)));
    assert_golden("table.txt", &text);
}

#[test]
fn table_rates_use_the_snapshot_times() {
    let fixture = Fixture::new();
    let mut table = TableRenderer::new();
    let first = table.render(&fixture.snapshot(1));
    assert!(!first.contains("/s"), "no rate without a previous harvest");
    let second = table.render(&fixture.snapshot(2));
    let row = |name: &str| {
        second
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap()
            .to_owned()
    };
    assert!(row("http.server.requests").ends_with("25/s"));
    assert!(row("net.rx").ends_with("512.0 KiB/s"));
    assert!(row("process.cpu.user").ends_with("12 ms/s"));
    assert!(!row("worker.restarts").contains("/s"));
}

#[test]
fn every_json_line_parses_and_carries_every_series() {
    let fixture = Fixture::new();
    let snapshot = fixture.snapshot(2);
    let text = json_lines(&snapshot);
    let mut seen = BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line does not parse: {e}: {line}"));
        assert_eq!(v["time"], "2026-01-01T00:00:10.000Z");
        let labels: Vec<(String, String)> = v["labels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect();
        assert!(seen.insert((v["name"].as_str().unwrap().to_owned(), labels)));
        match v["kind"].as_str().unwrap() {
            "counter" => assert!(v["value"].is_u64()),
            "gauge" => assert!(v["value"].is_f64()),
            "timing" => {
                for k in ["count", "sum", "min", "max", "mean", "p50", "p90", "p99"] {
                    assert!(v["value"].get(k).is_some(), "{k} missing in {line}");
                }
            }
            other => panic!("unknown kind {other}"),
        }
    }
    let want: BTreeSet<_> = snapshot
        .series()
        .map(|s| {
            let labels = s
                .labels()
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<Vec<_>>();
            (s.descriptor().name().to_owned(), labels)
        })
        .collect();
    assert_eq!(seen, want);

    let named = |name: &str| {
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["name"] == name)
            .unwrap()
    };
    let timing = named("http.server.duration");
    assert_eq!(timing["value"]["count"], 6);
    assert_eq!(timing["value"]["max"], 0.25);
    let empty = named("queue.wait");
    assert_eq!(empty["value"]["count"], 0);
    assert!(empty["value"]["p50"].is_null() && empty["value"]["min"].is_null());
}

/// A writer whose bytes the test reads back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

static JOBS: Descriptor = Descriptor::counter("jobs.done", "1", "jobs done");
static QUEUE: Descriptor = Descriptor::gauge("jobs.queue", "1", "jobs waiting");

#[test]
fn exporter_writes_each_harvest_through_a_harvester() {
    let registry = Registry::new();
    let jobs = registry.counter(&JOBS);
    let queue = registry.gauge(&QUEUE);
    queue.set(3.0);
    let out = Shared::default();
    let harvester = Harvester::builder()
        .registry(registry)
        .exporter(ConsoleExporter::writer(Format::Table, out.clone()))
        .build();
    jobs.add(5);
    harvester.harvest_now();
    jobs.add(5);
    // The last harvest is exported and flushed before shutdown returns.
    harvester.shutdown(Duration::from_secs(5)).unwrap();
    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    assert_eq!(text.matches("# harvest ").count(), 2, "{text}");
    assert!(text.contains("sampler.harvest.count"));
    let last = text.rsplit("# harvest ").next().unwrap();
    let row = last.lines().find(|l| l.starts_with("jobs.done")).unwrap();
    assert!(row.contains("10"), "{row}");
    assert!(row.ends_with("/s"), "a rate on the second harvest: {row}");
}

#[test]
fn json_to_a_file_appends_one_line_per_series() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let registry = Registry::new();
    let jobs = registry.counter(&JOBS);
    jobs.add(2);
    let harvester = Harvester::builder()
        .registry(registry)
        .exporter(ConsoleExporter::file(&path, Format::Json).unwrap())
        .build();
    let first = harvester.harvest_now();
    harvester.shutdown(Duration::from_secs(5)).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Two harvests; the second has at least as many series (exporter self-metrics).
    assert!(lines.len() >= 2 * first.len(), "{text}");
    let jobs: Vec<_> = lines.iter().filter(|v| v["name"] == "jobs.done").collect();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|v| v["value"] == 2));
}
