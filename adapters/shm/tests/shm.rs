//! The shm adapter end to end: writer processes in Rust and Python, a harvester reading them,
//! killed writers, churn, and hostile files.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sampler_adapter_shm::layout::{self, parse_segment, words_from_bytes, Words};
use sampler_adapter_shm::{read_value, GaugeRule, Reading, Segment, ShmEvent, ShmSampler};
use sampler_api::{Distribution, Harvester, Registry, Snapshot, Value};

fn private_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

struct Harness {
    harvester: Harvester,
    sampler: Arc<ShmSampler>,
    events: Arc<Mutex<Vec<ShmEvent>>>,
    _reg: sampler_api::Registration,
}

fn harness(dir: &Path, rule: GaugeRule, grace: Duration) -> Harness {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e = events.clone();
    let sampler = Arc::new(
        ShmSampler::new(dir)
            .gauges(rule)
            .grace(grace)
            .on_event(move |ev| e.lock().unwrap().push(ev.clone())),
    );
    let registry = Registry::new();
    let reg = registry.register_arc(sampler.clone());
    Harness {
        // A generous budget: these tests check data, and also run under valgrind.
        harvester: Harvester::builder()
            .registry(registry)
            .sampler_budget(Duration::from_secs(30))
            .build(),
        sampler,
        events,
        _reg: reg,
    }
}

fn counter(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    match s.find(name, labels)?.value() {
        Value::Counter(v) => Some(*v),
        _ => None,
    }
}

fn timing(s: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<Distribution> {
    match s.find(name, labels)?.value() {
        Value::Timing(d) => Some((**d).clone()),
        _ => None,
    }
}

fn rust_writer() -> PathBuf {
    // Integration tests run from target/<profile>/deps; `cargo test` builds the examples
    // beside them.
    let exe = std::env::current_exe().unwrap();
    let p = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/shm-writer");
    assert!(
        p.exists(),
        "{} not built: run cargo test -p sampler-adapter-shm",
        p.display()
    );
    p
}

fn python_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("python")
}

fn spawn(
    lang: &str,
    dir: &Path,
    n: u64,
    tag: &str,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut cmd = if lang == "rust" {
        Command::new(rust_writer())
    } else {
        let mut c = Command::new("python3");
        c.arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py_writer.py"))
            .env("PYTHONPATH", python_dir());
        c
    };
    let mut child = cmd
        .arg(dir)
        .arg(n.to_string())
        .arg(tag)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("failed to start the {lang} writer (python3 must be on PATH): {e}")
        });
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.starts_with("ready"), "{lang} writer said {line:?}");
    (child, out)
}

fn expected_latency(n: u64) -> Distribution {
    let mut d = Distribution::new(3);
    for i in 0..n {
        d.record((i % 64 + 1) as f64 / 1024.0);
    }
    d
}

/// Counters keep going up while the writers run; the final totals are exact.
#[test]
fn r15_four_processes_rust_and_python_totals_exact() {
    let dir = private_dir();
    let h = harness(dir.path(), GaugeRule::PerProcess, Duration::ZERO);
    let n = 200_000u64;
    let mut writers = vec![
        spawn("rust", dir.path(), n, "rust"),
        spawn("rust", dir.path(), n, "rust"),
        spawn("python", dir.path(), n, "python"),
        spawn("python", dir.path(), n, "python"),
    ];
    let mut last = 0u64;
    let mut harvests = 0;
    let mut saw_partial = false;
    let mut saw_pid_gauge = false;
    loop {
        let s = h.harvester.harvest_now();
        harvests += 1;
        let total = counter(&s, "test.bytes", &[]).unwrap_or(0);
        assert!(total >= last, "total went back from {last} to {total}");
        last = total;
        if let Some(py) = counter(&s, "test.requests", &[("lang", "python")]) {
            saw_partial |= py > 0 && py < 2 * n;
        }
        if let Some(d) = timing(&s, "test.latency", &[("lang", "rust")]) {
            assert_eq!(
                d.count(),
                d.zero_count() + d.bucket_counts().iter().sum::<u64>()
            );
            let _ = d;
        }
        saw_pid_gauge |= s.series().any(|x| {
            x.descriptor().name() == "test.busy" && x.labels().iter().any(|(k, _)| k == "pid")
        });
        if writers
            .iter_mut()
            .all(|(c, _)| c.try_wait().unwrap().is_some())
        {
            break;
        }
    }
    for (c, out) in &mut writers {
        assert!(c.wait().unwrap().success());
        let done: Vec<String> = out.lines().map(|l| l.unwrap()).collect();
        assert_eq!(done, vec![format!("done {n}")]);
    }
    // Every writer has exited: the next harvests fold their final values (and retire them).
    for _ in 0..3 {
        let s = h.harvester.harvest_now();
        assert_eq!(
            counter(&s, "test.requests", &[("lang", "rust")]),
            Some(2 * n)
        );
        assert_eq!(
            counter(&s, "test.requests", &[("lang", "python")]),
            Some(2 * n)
        );
        assert_eq!(counter(&s, "test.bytes", &[]), Some(4 * (n * (n - 1) / 2)));
        let mut want = expected_latency(n);
        want.merge(&expected_latency(n));
        for lang in ["rust", "python"] {
            let got = timing(&s, "test.latency", &[("lang", lang)]).unwrap();
            assert_eq!(got.count(), want.count(), "{lang}");
            assert_eq!(got.sum(), want.sum(), "{lang}");
            assert_eq!(got.min(), want.min(), "{lang}");
            assert_eq!(got.max(), want.max(), "{lang}");
            assert_eq!(got.offset(), want.offset(), "{lang}");
            assert_eq!(got.bucket_counts(), want.bucket_counts(), "{lang}");
        }
        // Per-process gauges leave with their writers.
        assert!(s.series().all(|x| x.descriptor().name() != "test.busy"));
    }
    assert_eq!(h.sampler.report().live, 0);
    assert_eq!(h.sampler.report().retired, 4);
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
    assert!(
        h.events.lock().unwrap().is_empty(),
        "{:?}",
        h.events.lock().unwrap()
    );
    eprintln!("four writers: {harvests} harvests while writing, partial seen: {saw_partial}, pid gauges seen: {saw_pid_gauge}");
    assert!(saw_pid_gauge);
    assert!(saw_partial, "no harvest ran while the writers wrote");
}

/// The final values in a dead writer's file, as the reader's own parser sees them.
fn file_totals(path: &Path) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap();
    let words = words_from_bytes(&bytes);
    let (_, records) = parse_segment(Words::new(&words)).unwrap();
    let mut requests = 0;
    let mut nbytes = 0;
    for r in &records {
        match (r.name.as_str(), read_value(Words::new(&words), r)) {
            ("test.requests", Some(Reading::Counter(v))) => requests = v,
            ("test.bytes", Some(Reading::Counter(v))) => nbytes = v,
            _ => {}
        }
    }
    (requests, nbytes)
}

/// SIGKILL in the middle of writing: the reader neither crashes nor double counts, and the
/// totals never go back, before and after the dead segment is retired.
#[test]
fn r15_sigkill_mid_write_no_double_count() {
    for lang in ["rust", "python"] {
        let dir = private_dir();
        let h = harness(dir.path(), GaugeRule::Sum, Duration::from_millis(50));
        let (mut child, _out) = spawn(lang, dir.path(), 0, lang);
        let path = std::fs::read_dir(dir.path())
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path();
        let mut last = (0, 0);
        // Harvest until the writer has clearly been writing for a while.
        while last.0 < 50_000 {
            let s = h.harvester.harvest_now();
            let now = (
                counter(&s, "test.requests", &[("lang", lang)]).unwrap_or(0),
                counter(&s, "test.bytes", &[]).unwrap_or(0),
            );
            assert!(now.0 >= last.0 && now.1 >= last.1, "{lang}: went back");
            last = now;
        }
        // SAFETY: kill on our own child's pid.
        assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
        child.wait().unwrap();
        let final_values = file_totals(&path);
        assert!(final_values.0 >= last.0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut retired = false;
        for _ in 0..20 {
            let s = h.harvester.harvest_now();
            let now = (
                counter(&s, "test.requests", &[("lang", lang)]).unwrap(),
                counter(&s, "test.bytes", &[]).unwrap(),
            );
            assert_eq!(now, final_values, "{lang}: after the kill");
            let d = timing(&s, "test.latency", &[("lang", lang)]).unwrap();
            // A kill between the counter and the timing leaves them at most one apart.
            assert!(
                final_values.0 - d.count() <= 1,
                "{lang}: timing {}",
                d.count()
            );
            retired |= !path.exists();
            if retired && h.sampler.report().retired == 1 {
                break;
            }
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(retired, "{lang}: dead segment not retired");
        assert!(h.events.lock().unwrap().is_empty());
    }
}

/// 1,000 writers come and go beside 10 that stay: totals stay exact, and once the dead are
/// retired the reader holds the live writers only (the harvest time is printed for the record;
/// the benchmark measures it).
#[test]
fn r15_thousand_writers_come_and_go() {
    let dir = private_dir();
    let h = harness(dir.path(), GaugeRule::PerProcess, Duration::ZERO);
    let series = 100;
    let names: Vec<String> = (0..series).map(|i| format!("churn.c{i}")).collect();
    let live: Vec<Segment> = (0..10)
        .map(|_| Segment::create(dir.path()).unwrap())
        .collect();
    for seg in &live {
        for n in &names {
            seg.counter(n, &[]).unwrap().add(1);
        }
    }
    let time_harvests = |h: &Harness| {
        let start = Instant::now();
        for _ in 0..20 {
            h.harvester.harvest_now();
        }
        start.elapsed() / 20
    };
    h.harvester.harvest_now();
    let before = time_harvests(&h);
    let mut churned = 0u64;
    for _batch in 0..10 {
        let dead: Vec<Segment> = (0..100)
            .map(|_| Segment::create(dir.path()).unwrap())
            .collect();
        for seg in &dead {
            for n in &names {
                seg.counter(n, &[]).unwrap().add(2);
            }
        }
        h.harvester.harvest_now(); // sees them live
        churned += dead.len() as u64;
        drop(dead);
        h.harvester.harvest_now(); // folds them
        let s = h.harvester.harvest_now(); // retires them
        for n in &names {
            assert_eq!(counter(&s, n, &[]), Some(10 + 2 * churned));
        }
    }
    let after = time_harvests(&h);
    // The same live writers read by a reader that never saw the churn, for comparison.
    let fresh = harness(dir.path(), GaugeRule::PerProcess, Duration::ZERO);
    fresh.harvester.harvest_now();
    let fresh_time = time_harvests(&fresh);
    let after2 = time_harvests(&h);
    let r = h.sampler.report();
    assert_eq!((r.live, r.dead, r.retired), (10, 0, 1000));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 10);
    eprintln!(
        "churn: harvest of 10 live writers x {series} series: {before:?} before, {after:?} / {after2:?} after 1,000 writers came and went, {fresh_time:?} by a reader that never saw them"
    );
}

/// Gauges: per process (a `pid` label), or one series by sum, max, min or last.
#[test]
fn r15_gauge_rules() {
    let dir = private_dir();
    let a = Segment::create(dir.path()).unwrap();
    std::thread::sleep(Duration::from_millis(2));
    let b = Segment::create(dir.path()).unwrap();
    a.gauge("pool.idle", &[("pool", "db")]).unwrap().set(3.0);
    b.gauge("pool.idle", &[("pool", "db")]).unwrap().set(5.0);
    for (rule, want) in [
        (GaugeRule::Sum, 8.0),
        (GaugeRule::Max, 5.0),
        (GaugeRule::Min, 3.0),
        (GaugeRule::Last, 5.0),
    ] {
        let h = harness(dir.path(), rule, Duration::from_secs(60));
        let s = h.harvester.harvest_now();
        assert_eq!(
            *s.find("pool.idle", &[("pool", "db")]).unwrap().value(),
            Value::Gauge(want),
            "{rule:?}"
        );
    }
    let h = harness(dir.path(), GaugeRule::PerProcess, Duration::from_secs(60));
    let s = h.harvester.harvest_now();
    let pid = std::process::id().to_string();
    let n = s
        .series()
        .filter(|x| {
            x.descriptor().name() == "pool.idle"
                && x.labels().iter().any(|(k, v)| k == "pid" && v == pid)
        })
        .count();
    // Both segments are this test process's: one series per segment would clash on `pid`;
    // the second reading of the same series is rejected, the first stands.
    assert_eq!(n, 1);
}

/// A writer adds records past its first 64 KiB after the reader mapped it: the reader maps the
/// grown file and reads old and new records.
#[test]
fn r15_growing_segment_is_remapped() {
    let dir = private_dir();
    let h = harness(dir.path(), GaugeRule::PerProcess, Duration::ZERO);
    let seg = Segment::create(dir.path()).unwrap();
    let first = seg.counter("grow.first", &[]).unwrap();
    first.add(7);
    assert_eq!(
        counter(&h.harvester.harvest_now(), "grow.first", &[]),
        Some(7)
    );
    let more: Vec<_> = (0..3000)
        .map(|i| seg.counter(&format!("grow.c{i}"), &[]).unwrap())
        .collect();
    for (i, c) in more.iter().enumerate() {
        c.add(i as u64);
    }
    first.add(1);
    assert!(std::fs::metadata(seg.path()).unwrap().len() > 64 * 1024);
    let s = h.harvester.harvest_now();
    assert!(
        h.events.lock().unwrap().is_empty(),
        "{:?}",
        h.events.lock().unwrap()
    );
    assert_eq!(counter(&s, "grow.first", &[]), Some(8));
    assert_eq!(counter(&s, "grow.c2999", &[]), Some(2999));
    assert_eq!(h.sampler.report().skipped, 0);
}

/// A directory others can write to is refused (reported once); files that are not 0600 or are
/// symbolic links are skipped and reported.
#[test]
fn r15_untrusted_directory_and_files_refused() {
    let dir = private_dir();
    let seg = Segment::create(dir.path()).unwrap();
    seg.counter("trust.c", &[]).unwrap().add(1);
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let h = harness(dir.path(), GaugeRule::PerProcess, Duration::ZERO);
    for _ in 0..2 {
        let s = h.harvester.harvest_now();
        assert_eq!(counter(&s, "trust.c", &[]), None);
    }
    {
        let ev = h.events.lock().unwrap();
        assert_eq!(ev.len(), 1, "{ev:?}");
        assert!(
            ev[0].to_string().contains("writable by group or others"),
            "{}",
            ev[0]
        );
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(counter(&h.harvester.harvest_now(), "trust.c", &[]), Some(1));
    // A copy readable by others, and a symbolic link.
    let open = dir.path().join("1-1.shm");
    std::fs::copy(seg.path(), &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::os::unix::fs::symlink(seg.path(), dir.path().join("2-2.shm")).unwrap();
    let s = h.harvester.harvest_now();
    assert_eq!(counter(&s, "trust.c", &[]), Some(1));
    let ev = h.events.lock().unwrap();
    let skipped: Vec<String> = ev.iter().skip(1).map(|e| e.to_string()).collect();
    assert_eq!(skipped.len(), 2, "{skipped:?}");
    assert!(
        skipped.iter().any(|e| e.contains("mode 644")),
        "{skipped:?}"
    );
    assert!(
        skipped.iter().any(|e| e.contains("cannot open")),
        "{skipped:?}"
    );
    assert_eq!(h.sampler.report().skipped, 2);
}

/// xorshift64*: a small deterministic generator, so a failing input can be replayed by seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Valid segments of several shapes, written by the real writer.
fn seeds() -> Vec<Vec<u8>> {
    let dir = private_dir();
    let mut out = Vec::new();
    for k in 0..6 {
        let seg = Segment::create(dir.path()).unwrap();
        for i in 0..(k * 5 + 1) {
            seg.counter(&format!("s.c{i}"), &[("k", "v"), ("route", "/x")])
                .unwrap()
                .add(i as u64);
            if i % 2 == 0 {
                seg.timing(&format!("s.t{i}"), &[])
                    .unwrap()
                    .record(0.01 * i as f64);
            }
            seg.gauge(&format!("s.g{i}"), &[]).unwrap().set(i as f64);
        }
        let mut bytes = std::fs::read(seg.path()).unwrap();
        // Keep the published part plus a little: the tail of a fresh file is zeros.
        let used = u64::from_le_bytes(bytes[48..56].try_into().unwrap()) as usize;
        bytes.truncate((layout::HEADER_SIZE + used + 256).min(bytes.len()));
        out.push(bytes);
    }
    out
}

/// One hostile variant of a valid segment.
fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let used = u64::from_le_bytes(b[48..56].try_into().unwrap()) as usize;
    let interesting = [
        0u64,
        1,
        7,
        8,
        63,
        64,
        127,
        128,
        255,
        4096,
        65535,
        u32::MAX as u64,
        u64::MAX,
        1 << 40,
    ];
    for _ in 0..1 + rng.below(4) {
        match rng.below(9) {
            // Flip a bit anywhere.
            0 => {
                if !b.is_empty() {
                    let i = rng.below(b.len());
                    b[i] ^= 1 << rng.below(8);
                }
            }
            // Truncate.
            1 => {
                let n = rng.below(b.len() + 1);
                b.truncate(n);
            }
            // Grow with garbage, and say so in `used` (a writer that lies about its size).
            2 => {
                let extra = 64 * (1 + rng.below(8));
                b.extend((0..extra).map(|_| rng.next() as u8));
                if b.len() >= 56 {
                    let claim = (used + extra) as u64;
                    b[48..56].copy_from_slice(&claim.to_le_bytes());
                }
            }
            // Set `used` to something hostile.
            3 => {
                if b.len() >= 56 {
                    let v = interesting[rng.below(interesting.len())];
                    b[48..56].copy_from_slice(&v.to_le_bytes());
                }
            }
            // Overwrite a record field (kind, lengths, slots, buckets, offset) with an edge value.
            4 => {
                let rec = layout::HEADER_SIZE + 64 * rng.below(used / 64 + 1);
                let field = [0usize, 1, 2, 4, 6, 8, 12, 16][rng.below(8)];
                let v = interesting[rng.below(interesting.len())].to_le_bytes();
                let w = [1usize, 2, 4, 8][rng.below(4)];
                if rec + field + w <= b.len() {
                    b[rec + field..rec + field + w].copy_from_slice(&v[..w]);
                }
            }
            // Overwrite a header field.
            5 => {
                let field = [0usize, 8, 12, 16, 24, 40][rng.below(6)];
                if field + 4 <= b.len() {
                    let v = interesting[rng.below(interesting.len())] as u32;
                    b[field..field + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            // Random bytes over a key (names, NULs, invalid UTF-8).
            6 => {
                if b.len() > layout::HEADER_SIZE + 40 {
                    let i =
                        layout::HEADER_SIZE + 32 + rng.below(b.len() - layout::HEADER_SIZE - 40);
                    for j in 0..1 + rng.below(8) {
                        if i + j < b.len() {
                            b[i + j] =
                                [0u8, 0xff, b'.', b'A', b'_', rng.next() as u8][rng.below(6)];
                        }
                    }
                }
            }
            // Splice another part of the file over itself.
            7 => {
                if b.len() > 128 {
                    let from = rng.below(b.len() - 64);
                    let to = rng.below(b.len() - 64);
                    let chunk = b[from..from + 64].to_vec();
                    b[to..to + 64].copy_from_slice(&chunk);
                }
            }
            // Pure noise of a random length behind a valid magic.
            _ => {
                let n = rng.below(2048);
                b = (0..n).map(|_| rng.next() as u8).collect();
                if b.len() >= 8 && rng.below(2) == 0 {
                    b[..8].copy_from_slice(&layout::MAGIC);
                }
            }
        }
    }
    b
}

/// Reads a whole segment the way the reader does: never panics; every value it reads lies
/// inside the input.
fn check(bytes: &[u8]) -> bool {
    let words = words_from_bytes(bytes);
    let w = Words::new(&words);
    match parse_segment(w) {
        Ok((header, records)) => {
            assert!(layout::HEADER_SIZE as u64 + header.used <= w.len() as u64);
            for r in &records {
                assert!(r.next <= layout::HEADER_SIZE + header.used as usize);
                assert!(r.value_at < r.next);
                let _ = read_value(w, r);
            }
            true
        }
        Err(_) => false,
    }
}

/// ≥ 100,000 corrupt, truncated, growing and hostile segments through the reader's parser, and
/// 2,000 of them as files in a directory the sampler harvests: no panic, no read outside the
/// input, every invalid one skipped and reported.
#[test]
fn r15_fuzz_hostile_segments() {
    let seeds = seeds();
    for s in &seeds {
        assert!(check(s), "a seed is invalid");
    }
    let mut rng = Rng(0x5eed_0015);
    let inputs = 120_000;
    let mut invalid = 0;
    for _ in 0..inputs {
        let seed = &seeds[rng.below(seeds.len())];
        let b = mutate(&mut rng, seed);
        if !check(&b) {
            invalid += 1;
        }
    }
    eprintln!(
        "fuzz: {inputs} inputs through the parser, {invalid} rejected, {} accepted",
        inputs - invalid
    );
    assert!(
        invalid > inputs / 2,
        "mutations too mild: {invalid} rejected"
    );

    // As files: the sampler opens, maps and reads them (no writer holds them: they are read as
    // dead writers' segments, folded once, then retired).
    let dir = private_dir();
    let h = harness(dir.path(), GaugeRule::PerProcess, Duration::from_secs(3600));
    let files = 2000;
    let mut bad = 0;
    for i in 0..files {
        let seed = &seeds[rng.below(seeds.len())];
        let b = mutate(&mut rng, seed);
        let valid = b.len() % 8 == 0 && check(&b);
        if !valid {
            bad += 1;
        }
        let p = dir.path().join(format!("{i}-0.shm"));
        std::fs::write(&p, &b).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    for _ in 0..2 {
        h.harvester.harvest_now();
    }
    let r = h.sampler.report();
    let events = h.events.lock().unwrap();
    eprintln!(
        "fuzz: {files} files, {bad} invalid; reader skipped {} and reported {}",
        r.skipped,
        events.len()
    );
    assert_eq!(r.skipped, bad);
    assert_eq!(events.len(), bad, "each skipped file reported once");
    assert!(events.iter().all(|e| matches!(e, ShmEvent::Skipped { .. })));
    assert_eq!(r.dead, files - bad);
}

/// A timing whose sequence word was left odd (its writer stopped mid-write): while a writer
/// holds the lock the reader keeps its previous copy and counts the busy read; once the writer
/// is gone it reads the frozen fields as they stand.
#[test]
fn r15_timing_left_mid_write() {
    use std::os::unix::io::AsRawFd;
    let src = private_dir();
    let seg = Segment::create(src.path()).unwrap();
    let t = seg.timing("job.time", &[]).unwrap();
    for v in [0.5, 0.25, 0.125] {
        t.record(v);
    }
    let mut bytes = std::fs::read(seg.path()).unwrap();
    let words = words_from_bytes(&bytes);
    let (_, records) = parse_segment(Words::new(&words)).unwrap();
    let at = records[0].value_at;
    // Odd sequence, and a fourth observation half applied: in the sum, not yet in a bucket.
    let seq = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    bytes[at..at + 8].copy_from_slice(&(seq + 1).to_le_bytes());
    let sum = f64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
    bytes[at + 8..at + 16].copy_from_slice(&(sum + 1.0).to_le_bytes());

    let dir = private_dir();
    let path = dir.path().join("4242-1.shm");
    std::fs::write(&path, &bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // A live writer stuck mid-write: this test holds the lock in its place.
    let held = std::fs::File::open(&path).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(unsafe { libc::flock(held.as_raw_fd(), libc::LOCK_EX) }, 0);
    let h = harness(dir.path(), GaugeRule::PerProcess, Duration::from_secs(60));
    let s = h.harvester.harvest_now();
    assert!(timing(&s, "job.time", &[]).is_none(), "no whole copy yet");
    assert_eq!(h.sampler.report().busy, 1);
    drop(held); // the writer dies
    let s = h.harvester.harvest_now();
    let d = timing(&s, "job.time", &[]).unwrap();
    assert_eq!(d.count(), 3);
    assert_eq!(d.sum(), 1.875);
    assert_eq!(h.sampler.report().dead, 1);
}

/// The Python writer puts every value in the bucket the Rust side does, at every scale the
/// layout allows: 4,000 values spread over 2^-70 to 2^70, exact powers and their neighbours
/// included.
#[test]
fn r15_python_buckets_match_rust() {
    let mut rng = Rng(0x00b0_c4e7);
    let mut values: Vec<f64> = (0..3000)
        .map(|_| {
            let e = rng.below(140) as i32 - 70;
            (2f64).powi(e) * (1.0 + (rng.next() >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect();
    for e in -70..70 {
        let p = (2f64).powi(e);
        values.extend([
            p,
            f64::from_bits(p.to_bits() + 1),
            f64::from_bits(p.to_bits() - 1),
        ]);
    }
    let text: String = values
        .iter()
        .map(|v| format!("{}\n", v.to_bits()))
        .collect();
    let script = "import sys, struct, sampler_shm\n\
        vals = [struct.unpack('<d', struct.pack('<Q', int(l)))[0] for l in sys.stdin]\n\
        for s in range(-10, 9):\n\
        \x20   b = sampler_shm._Bounds(s)\n\
        \x20   print(' '.join(str(b.index(v)) for v in vals))\n";
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("PYTHONPATH", python_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 must be on PATH");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), 19);
    for (line, scale) in lines.iter().zip(-10i8..=8) {
        let py: Vec<i32> = line.split(' ').map(|x| x.parse().unwrap()).collect();
        for (v, got) in values.iter().zip(&py) {
            let want = sampler_api::distribution::bucket_index(*v, scale);
            assert_eq!(*got, want, "value {v:e} at scale {scale}");
        }
    }
}
