//! Reads criterion's saved estimates and prints the side-by-side tables of the README.
//!
//! Run `cargo bench -p sampler-benches` first, then
//! `cargo run --release -p sampler-benches --bin report`. Criterion keeps its results under
//! `$CARGO_TARGET_DIR/criterion` (default `target/criterion`); a directory given as the first
//! argument overrides that.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

/// The floor's column name.
pub const FLOOR: &str = "floor_atomic";
/// A plain (not atomic) load and store of one cell, timed on one thread only: the least any
/// increment that writes memory costs in the same loop.
pub const PLAIN_FLOOR: &str = "floor_plain";
/// An atomic store through a handle: the cell's address loaded from a struct, then a relaxed
/// store, timed on one thread: the least a gauge set through any shareable handle costs.
pub const HANDLE_FLOOR: &str = "floor_handle";
/// A thread-local histogram with every bucket in place, timed on one thread: the least a
/// timing record costs in the same loop (`crate::floor`).
pub const TIMING_FLOOR: &str = "floor_local";
/// Our column name.
pub const OURS: &str = "sampler";
/// The peers' column names.
pub const PEERS: [&str; 6] = [
    "metrics",
    "prometheus_client",
    "prometheus",
    "opentelemetry",
    "fastmetrics",
    "measured",
];
/// Our encoding alone in the exposition groups (a snapshot harvested once, encoded again).
pub const ENCODE_ONLY: &str = "sampler_encode_only";

/// The benchmark groups, in table order, with the operation each times.
pub const GROUPS: [(&str, &str); 19] = [
    ("counter_inc_1t", "counter increment, 1 thread"),
    (
        "counter_inc_2t",
        "counter increment, 2 threads on one counter",
    ),
    (
        "counter_inc_late_1t",
        "counter increment, a series made after the thread's first record",
    ),
    ("gauge_set_1t", "gauge set"),
    ("timing_record_1t", "timing record, 1 thread"),
    ("timing_record_2t", "timing record, 2 threads on one timing"),
    (
        "timing_record_late_1t",
        "timing record, a series made after the thread's first record",
    ),
    ("lookup_1_1t", "lookup + inc, 1 label set, 1 thread"),
    ("lookup_1_2t", "lookup + inc, 1 label set, 2 threads"),
    (
        "lookup_100_1t",
        "lookup + inc, 100 sets in random order, 1 thread",
    ),
    (
        "lookup_100_2t",
        "lookup + inc, 100 sets in random order, 2 threads",
    ),
    (
        "lookup_10000_1t",
        "lookup + inc, 10,000 sets in random order, 1 thread",
    ),
    (
        "lookup_10000_2t",
        "lookup + inc, 10,000 sets in random order, 2 threads",
    ),
    ("harvest_10k", "harvest 10k series"),
    ("harvest_100k", "harvest 100k series"),
    ("expose_10k", "harvest + encode to text, 10k series"),
    ("expose_100k", "harvest + encode to text, 100k series"),
    ("encode_only_10k", "encode alone (ours: last snapshot), 10k"),
    (
        "encode_only_100k",
        "encode alone (ours: last snapshot), 100k",
    ),
];

/// One target of the README, judged from the results of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// What is compared.
    pub what: String,
    /// The reference: a floor or the fastest peer, with its time.
    pub against: String,
    /// Our time.
    pub ours: f64,
    /// Ours divided by the reference.
    pub ratio: f64,
    /// The highest ratio that meets the target.
    pub goal: f64,
}

impl Target {
    /// Whether the target is met.
    pub fn met(&self) -> bool {
        self.ratio <= self.goal
    }
}

static FASTEST: AtomicBool = AtomicBool::new(false);

/// Makes [`estimate`] read the fastest sample instead of criterion's estimate (`report
/// --fastest`): on a machine whose other work keeps taking the cores, the fastest sample is
/// the least disturbed one, while criterion's slope and mean carry every interruption.
pub fn use_fastest_sample(yes: bool) {
    FASTEST.store(yes, Relaxed);
}

/// The time per iteration of the fastest sample criterion kept for one benchmark, in
/// nanoseconds (its `sample.json`: iterations and total time per sample).
pub fn fastest_sample(dir: &Path, group: &str, id: &str) -> Option<f64> {
    let path = dir.join(group).join(id).join("new").join("sample.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    let iters = v.get("iters")?.as_array()?;
    let times = v.get("times")?.as_array()?;
    iters
        .iter()
        .zip(times)
        .filter_map(|(i, t)| Some(t.as_f64()? / i.as_f64().filter(|&i| i > 0.0)?))
        .min_by(f64::total_cmp)
}

/// The estimated time per iteration of one benchmark, in nanoseconds: criterion's slope
/// estimate when it has one, else its mean (or, after [`use_fastest_sample`], the fastest
/// sample).
pub fn estimate(dir: &Path, group: &str, id: &str) -> Option<f64> {
    // The encode-alone rows: our encoding alone, beside the peers' only path to text.
    if let Some(size) = group.strip_prefix("encode_only_") {
        let group = format!("expose_{size}");
        let id = if id == OURS { ENCODE_ONLY } else { id };
        return estimate(dir, &group, id);
    }
    if FASTEST.load(Relaxed) {
        return fastest_sample(dir, group, id);
    }
    let path = dir.join(group).join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    ["slope", "mean"]
        .iter()
        .find_map(|k| v.get(k)?.get("point_estimate")?.as_f64())
}

/// How many runs of one benchmark never had a core per thread, from the `parallel.txt` the
/// record bench leaves beside criterion's estimates (0 when there is none).
pub fn unclean(dir: &Path, group: &str, id: &str) -> u64 {
    std::fs::read_to_string(dir.join(group).join(id).join("parallel.txt"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("unclean ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// A duration in nanoseconds, in the unit that suits it.
pub fn fmt_ns(ns: f64) -> String {
    if ns < 10.0 {
        format!("{ns:.2} ns")
    } else if ns < 1_000.0 {
        format!("{ns:.1} ns")
    } else if ns < 1_000_000.0 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// `a` against `b` as "N× faster" or "N× slower" (times: lower is better).
pub fn speed(ours: f64, other: f64) -> String {
    if ours <= other {
        format!("{:.1}× faster", other / ours)
    } else {
        format!("{:.1}× slower", ours / other)
    }
}

/// The criterion output directory: the first argument not starting with `--`, else
/// `$CARGO_TARGET_DIR/criterion`,
/// else `target/criterion` at the workspace root.
pub fn criterion_dir() -> PathBuf {
    if let Some(arg) = std::env::args().skip(1).find(|a| !a.starts_with("--")) {
        return PathBuf::from(arg);
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(t).join("criterion");
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("criterion")
}

/// The markdown tables: time per operation for each library, ours against the floor and the
/// fastest peer, and how each library's time grows from one thread to two.
pub fn render(dir: &Path) -> String {
    let mut s = String::new();
    let cols: Vec<&str> = [FLOOR, OURS].into_iter().chain(PEERS).collect();
    let _ = writeln!(
        s,
        "Time per operation (per thread on 2 threads), lower is better; `-`: not measured.\n"
    );
    let _ = writeln!(
        s,
        "| operation | {} | ours vs floor | ours vs fastest peer |",
        cols.join(" | ")
    );
    let _ = writeln!(s, "| --- |{}", " ---: |".repeat(cols.len() + 2));
    let mut flagged = false;
    for (group, label) in GROUPS {
        let v: Vec<Option<f64>> = cols.iter().map(|c| estimate(dir, group, c)).collect();
        let cells: Vec<String> = v
            .iter()
            .zip(&cols)
            .map(|(x, c)| {
                let mark = if unclean(dir, group, c) > 0 {
                    flagged = true;
                    " †"
                } else {
                    ""
                };
                x.map_or("-".to_owned(), |x| format!("{}{mark}", fmt_ns(x)))
            })
            .collect();
        let ours = v[1];
        let floor = v[0];
        let fastest_peer = v[2..]
            .iter()
            .flatten()
            .copied()
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.min(x))));
        let vs = |other: Option<f64>| match (ours, other) {
            (Some(o), Some(x)) => speed(o, x),
            _ => "-".to_owned(),
        };
        let _ = writeln!(
            s,
            "| {label} | {} | {} | {} |",
            cells.join(" | "),
            vs(floor),
            vs(fastest_peer)
        );
    }
    if let Some(plain) = estimate(dir, "counter_inc_1t", PLAIN_FLOOR) {
        let atomic = estimate(dir, "counter_inc_1t", FLOOR);
        let _ = writeln!(
            s,
            "\nA plain load and store of one cell in the same loop (1 thread): {}{}.",
            fmt_ns(plain),
            atomic.map_or(String::new(), |a| format!(
                ", {:.1}× under the atomic floor",
                a / plain
            ))
        );
    }
    if let Some(handle) = estimate(dir, "gauge_set_1t", HANDLE_FLOOR) {
        let _ = writeln!(
            s,
            "\nA relaxed store through a handle (the cell's address loaded from a struct, then the \
             store), in the gauge loop (1 thread): {}.",
            fmt_ns(handle)
        );
    }
    if let Some(local) = estimate(dir, "timing_record_1t", TIMING_FLOOR) {
        let _ = writeln!(
            s,
            "\nA timing record into a thread-local histogram with every bucket in place, found \
             with no lookup, in the same loop (1 thread): {}.",
            fmt_ns(local)
        );
    }
    if flagged {
        let _ = writeln!(
            s,
            "\n† some runs of this benchmark never had a core per thread (another process was \
             busy), so its time is not a clean measurement."
        );
    }
    let _ = writeln!(
        s,
        "\nTwo threads against one (time per operation per thread, 2 threads ÷ 1 thread):\n"
    );
    let _ = writeln!(s, "| operation | {} |", cols.join(" | "));
    let _ = writeln!(s, "| --- |{}", " ---: |".repeat(cols.len()));
    for (op, one, two) in [
        ("counter increment", "counter_inc_1t", "counter_inc_2t"),
        ("timing record", "timing_record_1t", "timing_record_2t"),
        ("lookup + inc, 1 label set", "lookup_1_1t", "lookup_1_2t"),
        (
            "lookup + inc, 100 label sets",
            "lookup_100_1t",
            "lookup_100_2t",
        ),
        (
            "lookup + inc, 10,000 label sets",
            "lookup_10000_1t",
            "lookup_10000_2t",
        ),
    ] {
        let cells: Vec<String> = cols
            .iter()
            .map(|c| match (estimate(dir, one, c), estimate(dir, two, c)) {
                (Some(a), Some(b)) => format!("{:.2}×", b / a),
                _ => "-".to_owned(),
            })
            .collect();
        let _ = writeln!(s, "| {op} | {} |", cells.join(" | "));
    }
    let targets = targets(dir);
    if !targets.is_empty() {
        let _ = writeln!(
            s,
            "\nTargets, against floors and peers measured in the same run:\n\n\
             | target | against | ours | ours ÷ that | goal | |\n| --- | --- | ---: | ---: | ---: | --- |"
        );
        for t in &targets {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {:.2}× | ≤ {:.2}× | {} |",
                t.what,
                t.against,
                fmt_ns(t.ours),
                t.ratio,
                t.goal,
                if t.met() { "met" } else { "**missed**" }
            );
        }
    }
    s
}

/// The fastest peer of a group: `(name, time)`.
pub fn fastest_peer(dir: &Path, group: &str) -> Option<(&'static str, f64)> {
    PEERS
        .iter()
        .filter_map(|p| estimate(dir, group, p).map(|t| (*p, t)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// The README's targets, each judged from this run's results (missing results are left out).
pub fn targets(dir: &Path) -> Vec<Target> {
    let mut out = Vec::new();
    let mut floor = |what: &str, group: &str, floor: &str, goal: f64| {
        if let (Some(f), Some(o)) = (estimate(dir, group, floor), estimate(dir, group, OURS)) {
            out.push(Target {
                what: what.to_owned(),
                against: format!("`{floor}` {}", fmt_ns(f)),
                ours: o,
                ratio: o / f,
                goal,
            });
        }
    };
    floor(
        "counter increment through a shared handle, 1 thread",
        "counter_inc_1t",
        PLAIN_FLOOR,
        1.5,
    );
    floor(
        "counter increment, a series made after the thread's first record",
        "counter_inc_late_1t",
        PLAIN_FLOOR,
        1.5,
    );
    floor(
        "timing record, 1 thread",
        "timing_record_1t",
        TIMING_FLOOR,
        2.0,
    );
    floor(
        "timing record, a series made after the thread's first record",
        "timing_record_late_1t",
        TIMING_FLOOR,
        2.0,
    );
    floor("gauge set", "gauge_set_1t", FLOOR, 1.2);
    floor(
        "gauge set, against a store through a handle",
        "gauge_set_1t",
        HANDLE_FLOOR,
        1.2,
    );
    for sets in ["1", "100", "10000"] {
        for threads in ["1", "2"] {
            let group = format!("lookup_{sets}_{threads}t");
            if let (Some((peer, p)), Some(o)) =
                (fastest_peer(dir, &group), estimate(dir, &group, OURS))
            {
                out.push(Target {
                    what: format!(
                        "lookup + inc, {sets} label set{}, {threads} thread{}: ahead of the fastest peer",
                        if sets == "1" { "" } else { "s" },
                        if threads == "1" { "" } else { "s" }
                    ),
                    against: format!("`{peer}` {}", fmt_ns(p)),
                    ours: o,
                    ratio: o / p,
                    goal: 1.0,
                });
            }
        }
        let (one, two) = (format!("lookup_{sets}_1t"), format!("lookup_{sets}_2t"));
        if let (Some(a), Some(b)) = (estimate(dir, &one, OURS), estimate(dir, &two, OURS)) {
            out.push(Target {
                what: format!("lookup + inc, {sets} label sets: no collapse on 2 threads"),
                against: format!("ours on 1 thread {}", fmt_ns(a)),
                ours: b,
                ratio: b / a,
                goal: 1.5,
            });
        }
    }
    for size in ["10k", "100k"] {
        let group = format!("expose_{size}");
        if let (Some((peer, p)), Some(o)) = (fastest_peer(dir, &group), estimate(dir, &group, OURS))
        {
            out.push(Target {
                what: format!("harvest + encode, {size} series: at least 2× under the fastest"),
                against: format!("`{peer}` {}", fmt_ns(p)),
                ours: o,
                ratio: o / p,
                goal: 0.5,
            });
        }
    }
    out
}

/// The entry point of the `report` binary.
pub fn main() -> std::process::ExitCode {
    let dir = criterion_dir();
    use_fastest_sample(std::env::args().any(|a| a == "--fastest"));
    if !dir.is_dir() {
        eprintln!(
            "no criterion results at {}: run `cargo bench -p sampler-benches` first",
            dir.display()
        );
        return std::process::ExitCode::FAILURE;
    }
    print!("{}", render(&dir));
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_read_both_ways() {
        assert_eq!(speed(1.0, 3.0), "3.0× faster");
        assert_eq!(speed(3.0, 1.5), "2.0× slower");
    }

    #[test]
    fn durations_pick_their_unit() {
        assert_eq!(fmt_ns(4.56), "4.56 ns");
        assert_eq!(fmt_ns(31.0), "31.0 ns");
        assert_eq!(fmt_ns(12_500.0), "12.5 µs");
        assert_eq!(fmt_ns(17_250_000.0), "17.25 ms");
    }

    #[test]
    fn targets_judge_ours_against_the_floor_and_the_fastest_peer() {
        let dir =
            std::env::temp_dir().join(format!("sampler-benches-targets-{}", std::process::id()));
        let put = |group: &str, id: &str, ns: f64| {
            let d = dir.join(group).join(id).join("new");
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("estimates.json"),
                format!(r#"{{"mean":{{"point_estimate":{ns}}},"slope":null}}"#),
            )
            .unwrap();
        };
        put("counter_inc_1t", PLAIN_FLOOR, 0.5);
        put("counter_inc_1t", OURS, 0.7);
        put("lookup_100_1t", OURS, 30.0);
        put("lookup_100_1t", "fastmetrics", 40.0);
        put("lookup_100_1t", "measured", 25.0);
        put("expose_10k", OURS, 1000.0);
        put("expose_10k", ENCODE_ONLY, 400.0);
        put("expose_10k", "measured", 3000.0);
        let t = targets(&dir);
        assert_eq!(t.len(), 3, "{t:?}");
        assert!(t[0].met() && (t[0].ratio - 1.4).abs() < 1e-9);
        assert_eq!(t[1].against, "`measured` 25.0 ns");
        assert!(!t[1].met());
        assert!(t[2].met() && (t[2].ratio - 1.0 / 3.0).abs() < 1e-9);
        assert_eq!(estimate(&dir, "encode_only_10k", OURS), Some(400.0));
        assert_eq!(estimate(&dir, "encode_only_10k", "measured"), Some(3000.0));
        let table = render(&dir);
        assert!(table.contains("| harvest + encode, 10k series: at least 2× under the fastest | `measured` 3.0 µs | 1.0 µs | 0.33× | ≤ 0.50× | met |"), "{table}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn estimates_prefer_the_slope() {
        let dir =
            std::env::temp_dir().join(format!("sampler-benches-report-{}", std::process::id()));
        let d = dir.join("g").join("sampler").join("new");
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("estimates.json"),
            r#"{"mean":{"point_estimate":5.0},"slope":{"point_estimate":4.0}}"#,
        )
        .unwrap();
        assert_eq!(estimate(&dir, "g", "sampler"), Some(4.0));
        std::fs::write(
            d.join("estimates.json"),
            r#"{"mean":{"point_estimate":5.0},"slope":null}"#,
        )
        .unwrap();
        assert_eq!(estimate(&dir, "g", "sampler"), Some(5.0));
        assert_eq!(estimate(&dir, "g", "metrics"), None);
        std::fs::write(
            d.join("sample.json"),
            r#"{"iters":[10.0,20.0,30.0],"times":[50.0,60.0,300.0]}"#,
        )
        .unwrap();
        assert_eq!(fastest_sample(&dir, "g", "sampler"), Some(3.0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
