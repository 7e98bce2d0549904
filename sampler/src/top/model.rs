//! What `sampler top` shows, apart from drawing it: the rows sorted and filtered, the
//! processes table, sparklines and numbers as text, and what each key does. Pure, so it is
//! tested without a terminal.
//!
//! ```
//! use sampler::top::model::{App, Key, Sort};
//! let mut app = App::new("test".into(), 10);
//! assert_eq!(app.sort, Sort::Name);
//! app.key(Key::Char('v'));
//! assert_eq!(app.sort, Sort::Value);
//! assert!(!app.key(Key::Char('q'))); // false: quit
//! ```

use std::cmp::Ordering;

use super::summary::{Frame, Row, RowKind, Tracker};

/// The column rows are sorted by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sort {
    /// By name and labels, A to Z.
    Name,
    /// By value, largest first: a counter's rate, a gauge's value, a timing's p99.
    Value,
    /// By p99, largest first (timings first).
    P99,
}

impl Sort {
    /// How the header names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Value => "value",
            Sort::P99 => "p99",
        }
    }

    fn next(self) -> Sort {
        match self {
            Sort::Name => Sort::Value,
            Sort::Value => Sort::P99,
            Sort::P99 => Sort::Name,
        }
    }
}

/// A key press, as the model sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A character.
    Char(char),
    /// Enter.
    Enter,
    /// Escape.
    Esc,
    /// Backspace.
    Backspace,
    /// Ctrl-C.
    Interrupt,
    /// Up arrow.
    Up,
    /// Down arrow.
    Down,
}

/// How many frames a notice stays on the header line.
pub const NOTICE_FRAMES: u64 = 5;

/// The state of the view: the latest rows, how they are sorted and filtered, paused or not.
#[derive(Debug)]
pub struct App {
    /// Where the harvest comes from, for the header.
    pub source: String,
    /// The sort column.
    pub sort: Sort,
    /// The name filter (case-insensitive substring of `name{labels}`); empty for none.
    pub filter: String,
    /// The filter being typed after `/`, until Enter or Esc.
    pub editing: Option<String>,
    /// Paused: frames are still followed (so rates stay right) but the screen keeps the rows
    /// it had.
    pub paused: bool,
    /// The rows of the latest frame shown.
    pub rows: Vec<Row>,
    /// Frames received.
    pub frames: u64,
    /// The last notice (a failed scrape, a process gone), shown for [`NOTICE_FRAMES`] frames
    /// after it came.
    pub error: Option<String>,
    error_at: u64,
    /// The first row shown (scrolling).
    pub offset: usize,
    tracker: Tracker,
}

impl App {
    /// A view of `source`, keeping `history` points per series.
    pub fn new(source: String, history: usize) -> App {
        App {
            source,
            sort: Sort::Name,
            filter: String::new(),
            editing: None,
            paused: false,
            rows: Vec::new(),
            frames: 0,
            error: None,
            error_at: 0,
            offset: 0,
            tracker: Tracker::new(history),
        }
    }

    /// Takes a new frame.
    pub fn frame(&mut self, frame: &Frame) {
        let rows = self.tracker.update(frame);
        self.frames += 1;
        if self.frames >= self.error_at + NOTICE_FRAMES {
            self.error = None;
        }
        if !self.paused {
            self.rows = rows;
        }
    }

    /// Shows a notice on the header line.
    pub fn note(&mut self, text: String) {
        self.error = Some(text);
        self.error_at = self.frames;
    }

    /// Handles a key; `false` means quit.
    pub fn key(&mut self, key: Key) -> bool {
        if key == Key::Interrupt {
            return false;
        }
        if let Some(text) = &mut self.editing {
            match key {
                Key::Enter => {
                    self.filter = std::mem::take(text);
                    self.editing = None;
                    self.offset = 0;
                }
                Key::Esc => self.editing = None,
                Key::Backspace => {
                    text.pop();
                }
                Key::Char(c) if !c.is_control() => text.push(c),
                _ => {}
            }
            return true;
        }
        match key {
            Key::Char('q') => return false,
            Key::Char('/') => self.editing = Some(self.filter.clone()),
            Key::Esc => self.filter.clear(),
            Key::Char(' ') => self.paused = !self.paused,
            Key::Char('n') => self.sort = Sort::Name,
            Key::Char('v') => self.sort = Sort::Value,
            Key::Char('p') => self.sort = Sort::P99,
            Key::Char('s') => self.sort = self.sort.next(),
            Key::Down | Key::Char('j') => self.offset = self.offset.saturating_add(1),
            Key::Up | Key::Char('k') => self.offset = self.offset.saturating_sub(1),
            _ => {}
        }
        true
    }

    /// The rows to show, filtered and sorted.
    pub fn visible(&self) -> Vec<&Row> {
        table(&self.rows, self.sort, &self.filter)
    }

    /// The watched processes among the rows.
    pub fn processes(&self) -> Vec<Process> {
        processes(&self.rows)
    }
}

/// `rows` whose `name{labels}` contains `filter` (ignoring case), sorted by `sort`; rows
/// without the sorted value come last, ties by name.
///
/// ```
/// use sampler::top::model::{table, Sort};
/// # use sampler::top::summary::{Row, RowKind};
/// # let row = |key: &str, v: f64| Row { key: key.into(), name: key.into(), labels: vec![],
/// #     unit: "1".into(), kind: RowKind::Gauge, value: v, rate: None, p50: None, p99: None,
/// #     history: vec![] };
/// let rows = vec![row("a.small", 1.0), row("b.big", 9.0), row("c.other", 5.0)];
/// let keys = |s, f| table(&rows, s, f).iter().map(|r| r.key.clone()).collect::<Vec<_>>();
/// assert_eq!(keys(Sort::Value, ""), ["b.big", "c.other", "a.small"]);
/// assert_eq!(keys(Sort::Name, "B"), ["b.big"]);
/// ```
pub fn table<'a>(rows: &'a [Row], sort: Sort, filter: &str) -> Vec<&'a Row> {
    let needle = filter.to_lowercase();
    let mut out: Vec<&Row> = rows
        .iter()
        .filter(|r| needle.is_empty() || r.key.to_lowercase().contains(&needle))
        .collect();
    let by = |r: &Row| -> Option<f64> {
        match sort {
            Sort::Name => None,
            Sort::Value => r.headline(),
            Sort::P99 => r.p99,
        }
        .filter(|v| !v.is_nan())
    };
    out.sort_by(|a, b| {
        let primary = match (by(a), by(b)) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        primary.then_with(|| a.key.cmp(&b.key))
    });
    out
}

/// One watched process: from its series' `pid` label (none: the process serving the harvest).
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    /// Its pid, or `-` for the process serving the series.
    pub pid: String,
    /// Its name (the `name` label), when known.
    pub name: String,
    /// Resident memory in bytes.
    pub rss: Option<f64>,
    /// CPU use in cores (1.0 = one core busy), from the CPU time counter's rate.
    pub cpu: Option<f64>,
}

/// The names of resident memory and CPU time, in this project's two namings and in the
/// Prometheus client libraries' (as an endpoint serves them).
const RSS: [&str; 4] = [
    "process.memory.usage",
    "process.resident_memory",
    "process_resident_memory_bytes",
    "process_memory_usage_bytes",
];
const CPU: [&str; 4] = [
    "process.cpu.time",
    "process.cpu.seconds",
    "process_cpu_seconds_total",
    "process_cpu_time_seconds_total",
];

/// The processes the rows are about, by pid, with RSS and CPU (CPU time summed over modes).
///
/// ```
/// use sampler::top::model::processes;
/// # use sampler::top::summary::{Row, RowKind};
/// # let row = |name: &str, kind, v: f64, rate| Row { key: name.into(), name: name.into(),
/// #     labels: vec![("pid".into(), "42".into()), ("name".into(), "worker".into())],
/// #     unit: "".into(), kind, value: v, rate, p50: None, p99: None, history: vec![] };
/// let rows = vec![
///     row("process.memory.usage", RowKind::Gauge, 1048576.0, None),
///     row("process.cpu.time", RowKind::Counter, 10.0, Some(0.25)),
/// ];
/// let p = &processes(&rows)[0];
/// assert_eq!((p.pid.as_str(), p.name.as_str(), p.rss, p.cpu), ("42", "worker", Some(1048576.0), Some(0.25)));
/// ```
pub fn processes(rows: &[Row]) -> Vec<Process> {
    let mut out: Vec<Process> = Vec::new();
    for r in rows {
        let rss = RSS.contains(&r.name.as_str());
        let cpu = CPU.contains(&r.name.as_str());
        if !rss && !cpu {
            continue;
        }
        let label = |k: &str| r.labels.iter().find(|(key, _)| key == k).map(|(_, v)| v);
        let pid = label("pid").cloned().unwrap_or_else(|| "-".into());
        let i = match out.iter().position(|p| p.pid == pid) {
            Some(i) => i,
            None => {
                out.push(Process {
                    pid: pid.clone(),
                    name: label("name").cloned().unwrap_or_default(),
                    rss: None,
                    cpu: None,
                });
                out.len() - 1
            }
        };
        let p = &mut out[i];
        if rss {
            p.rss = Some(r.value);
        } else if let Some(rate) = r.rate {
            p.cpu = Some(p.cpu.unwrap_or(0.0) + rate);
        }
    }
    out
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` points as a sparkline, scaled from the least to the most of them (a flat
/// line when they are all equal); empty with no points.
///
/// ```
/// use sampler::top::model::sparkline;
/// assert_eq!(sparkline(&[0.0, 1.0, 2.0, 3.0], 3), "▁▅█");
/// assert_eq!(sparkline(&[5.0, 5.0], 8), "▁▁");
/// ```
pub fn sparkline(points: &[f64], width: usize) -> String {
    let points = &points[points.len().saturating_sub(width)..];
    let (lo, hi) = points
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    points
        .iter()
        .map(|&v| {
            if !v.is_finite() || hi <= lo {
                BARS[0]
            } else {
                let i = ((v - lo) / (hi - lo) * 7.0).round() as usize;
                BARS[i.min(7)]
            }
        })
        .collect()
}

/// A number in its unit for people: bytes in KiB/MiB/GiB, seconds in ms/µs, others with SI
/// prefixes; `-` for none.
///
/// ```
/// use sampler::top::model::human;
/// assert_eq!(human(Some(1536.0), "By"), "1.5 KiB");
/// assert_eq!(human(Some(0.0123), "s"), "12.3 ms");
/// assert_eq!(human(Some(2_500_000.0), "1"), "2.50 M");
/// assert_eq!(human(Some(42.0), ""), "42");
/// assert_eq!(human(None, "s"), "-");
/// ```
pub fn human(v: Option<f64>, unit: &str) -> String {
    let Some(v) = v else {
        return "-".into();
    };
    if !v.is_finite() {
        return format!("{v}");
    }
    let a = v.abs();
    match unit {
        "By" | "bytes" => {
            const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
            let mut x = v;
            let mut i = 0;
            while x.abs() >= 1024.0 && i < UNITS.len() - 1 {
                x /= 1024.0;
                i += 1;
            }
            if i == 0 {
                format!("{x:.0} B")
            } else {
                format!("{x:.1} {}", UNITS[i])
            }
        }
        "s" | "seconds" => {
            if a == 0.0 {
                "0 s".into()
            } else if a < 1e-3 {
                format!("{:.1} µs", v * 1e6)
            } else if a < 1.0 {
                format!("{:.1} ms", v * 1e3)
            } else {
                format!("{v:.2} s")
            }
        }
        _ => {
            let (x, p) = if a >= 1e9 {
                (v / 1e9, " G")
            } else if a >= 1e6 {
                (v / 1e6, " M")
            } else if a >= 1e4 {
                (v / 1e3, " k")
            } else {
                (v, "")
            };
            if p.is_empty() && x.fract() == 0.0 {
                format!("{x:.0}")
            } else if p.is_empty() {
                format!("{x:.3}")
            } else {
                format!("{x:.2}{p}")
            }
        }
    }
}

/// The unit a Prometheus name implies (`_bytes`, `_seconds`), so an endpoint's series read as
/// well as this project's.
pub fn unit_of(row: &Row) -> &str {
    if !row.unit.is_empty() {
        return &row.unit;
    }
    let n = row.name.trim_end_matches("_total");
    if n.ends_with("_bytes") {
        "By"
    } else if n.ends_with("_seconds") {
        "s"
    } else {
        ""
    }
}

/// The value column of a row: a counter's rate per second, a gauge's value, a timing's
/// observations per second.
pub fn value_text(row: &Row) -> String {
    let unit = unit_of(row);
    match row.kind {
        RowKind::Gauge => human(Some(row.value), unit),
        RowKind::Counter => match row.rate {
            Some(_) => format!("{}/s", human(row.rate, unit)),
            None => human(Some(row.value), unit),
        },
        RowKind::Timing => match row.rate {
            Some(_) => format!("{}/s", human(row.rate, "")),
            None => format!("{} obs", human(Some(row.value), "")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &str, kind: RowKind, value: f64, rate: Option<f64>, p99: Option<f64>) -> Row {
        Row {
            key: key.into(),
            name: key.into(),
            labels: vec![],
            unit: "1".into(),
            kind,
            value,
            rate,
            p50: None,
            p99,
            history: vec![],
        }
    }

    #[test]
    fn sorting_by_each_column_and_missing_values_last() {
        let rows = vec![
            row("b.gauge", RowKind::Gauge, 5.0, None, None),
            row("a.counter", RowKind::Counter, 1e9, Some(100.0), None),
            row("c.counter", RowKind::Counter, 1.0, None, None),
            row("d.timing", RowKind::Timing, 3.0, Some(1.0), Some(0.5)),
            row("e.timing", RowKind::Timing, 3.0, Some(1.0), Some(2.0)),
        ];
        let keys = |s, f: &str| -> Vec<String> {
            table(&rows, s, f).iter().map(|r| r.key.clone()).collect()
        };
        assert_eq!(
            keys(Sort::Name, ""),
            ["a.counter", "b.gauge", "c.counter", "d.timing", "e.timing"]
        );
        // A counter by its rate, not its total; no rate goes last.
        assert_eq!(
            keys(Sort::Value, ""),
            ["a.counter", "b.gauge", "e.timing", "d.timing", "c.counter"]
        );
        assert_eq!(
            keys(Sort::P99, ""),
            ["e.timing", "d.timing", "a.counter", "b.gauge", "c.counter"]
        );
        assert_eq!(keys(Sort::Name, "TIMING"), ["d.timing", "e.timing"]);
        assert!(keys(Sort::Name, "nothing").is_empty());
    }

    #[test]
    fn keys_sort_filter_pause_and_quit() {
        let mut app = App::new("t".into(), 4);
        let frame = |v| super::super::summary::Frame {
            time: std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(v as u64),
            readings: vec![super::super::summary::Reading::new(
                "g",
                &[],
                "1",
                super::super::summary::Sample::Gauge(v),
            )],
        };
        app.frame(&frame(1.0));
        assert_eq!(app.rows[0].value, 1.0);
        assert!(app.key(Key::Char(' ')));
        app.frame(&frame(2.0));
        assert_eq!(app.rows[0].value, 1.0, "paused keeps the rows");
        assert_eq!(app.frames, 2);
        app.key(Key::Char(' '));
        app.frame(&frame(3.0));
        assert_eq!(app.rows[0].history, vec![1.0, 2.0, 3.0]);
        for (k, s) in [('p', Sort::P99), ('n', Sort::Name), ('s', Sort::Value)] {
            app.key(Key::Char(k));
            assert_eq!(app.sort, s);
        }
        app.key(Key::Char('/'));
        for c in "cpux".chars() {
            app.key(Key::Char(c));
        }
        app.key(Key::Backspace);
        // While typing, `q` is text.
        assert!(app.key(Key::Char('q')));
        app.key(Key::Backspace);
        assert_eq!(app.filter, "");
        app.key(Key::Enter);
        assert_eq!(app.filter, "cpu");
        app.key(Key::Char('/'));
        app.key(Key::Char('!'));
        app.key(Key::Esc);
        assert_eq!(app.filter, "cpu", "Esc while typing keeps the filter");
        app.key(Key::Esc);
        assert_eq!(app.filter, "");
        assert!(!app.key(Key::Char('q')));
        assert!(!app.key(Key::Interrupt));
        app.note("failed to scrape".into());
        for i in 0..NOTICE_FRAMES {
            assert!(app.error.is_some(), "{i}");
            app.frame(&frame(10.0 + i as f64));
        }
        assert_eq!(app.error, None);
    }

    #[test]
    fn processes_by_pid_with_cpu_summed_over_modes() {
        let mut user = row("process.cpu.time", RowKind::Counter, 1.0, Some(0.5), None);
        user.labels = vec![("cpu_mode".into(), "user".into())];
        let mut system = user.clone();
        system.rate = Some(0.25);
        let rss = row("process.memory.usage", RowKind::Gauge, 4096.0, None, None);
        let mut other = row(
            "process_resident_memory_bytes",
            RowKind::Gauge,
            1.0,
            None,
            None,
        );
        other.labels = vec![("pid".into(), "7".into()), ("name".into(), "w".into())];
        let p = processes(&[user, system, rss, other]);
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].pid.as_str(), p[0].cpu, p[0].rss),
            ("-", Some(0.75), Some(4096.0))
        );
        assert_eq!((p[1].pid.as_str(), p[1].name.as_str()), ("7", "w"));
    }

    #[test]
    fn sparklines_scale_to_their_points_and_width() {
        assert_eq!(sparkline(&[], 5), "");
        assert_eq!(
            sparkline(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0], 8),
            "▁▂▃▄▅▆▇█"
        );
        assert_eq!(sparkline(&[9.0, 0.0, 1.0], 2), "▁█");
        assert_eq!(sparkline(&[f64::NAN, 1.0, 2.0], 3), "▁▁█");
    }

    #[test]
    fn numbers_in_their_units() {
        assert_eq!(human(Some(3.0 * 1024.0 * 1024.0 * 1024.0), "By"), "3.0 GiB");
        assert_eq!(human(Some(512.0), "By"), "512 B");
        assert_eq!(human(Some(0.000_25), "s"), "250.0 µs");
        assert_eq!(human(Some(2.5), "s"), "2.50 s");
        assert_eq!(human(Some(0.5), "1"), "0.500");
        assert_eq!(human(Some(f64::INFINITY), "1"), "inf");
        let mut r = row("x_seconds_total", RowKind::Counter, 10.0, Some(0.25), None);
        r.unit = String::new();
        assert_eq!(value_text(&r), "250.0 ms/s");
    }
}
