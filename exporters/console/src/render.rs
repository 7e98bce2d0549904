//! The two renderings of a snapshot: an aligned table and JSON lines.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sampler_api::{Distribution, LabelsRef, SeriesId, Snapshot, Value};

use crate::human;

/// A snapshot's time as RFC 3339 in UTC with milliseconds: `2026-01-02T03:04:05.000Z`.
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// Renders snapshots as an aligned table: name, labels, value and, for counters, the rate per
/// second since the previous snapshot this renderer saw. Timings show count, mean, p50, p90,
/// p99 and max. Values are in readable units (`1.2 GiB`, `35 ms`).
///
/// ```
/// use sampler_api::{Descriptor, Harvester, Registry};
/// use sampler_exporter_console::TableRenderer;
/// static RSS: Descriptor = Descriptor::gauge("app.memory", "By", "memory");
/// let registry = Registry::new();
/// let rss = registry.gauge(&RSS);
/// rss.set(3.0 * 1024.0 * 1024.0);
/// let snapshot = Harvester::builder().registry(registry).self_metrics(false).build().harvest_now();
/// let table = TableRenderer::new().render(&snapshot);
/// assert!(table.contains("app.memory"));
/// assert!(table.contains("3.0 MiB"));
/// ```
#[derive(Debug, Default)]
pub struct TableRenderer {
    /// Per counter series: the total and the snapshot time it was last seen at.
    cursors: HashMap<SeriesId, (u64, SystemTime)>,
}

impl TableRenderer {
    /// A renderer with no history (the first table has no rates).
    pub fn new() -> Self {
        Self::default()
    }

    /// Renders one snapshot, ending with a blank line, and remembers its counters for the
    /// next rates.
    pub fn render(&mut self, snapshot: &Snapshot) -> String {
        // Rows of timings carry their summary in the value cell, which is long: it runs past
        // the value column (timings have no rate) instead of widening it for every row.
        let mut rows: Vec<([String; 4], bool)> = Vec::with_capacity(snapshot.len());
        let mut cursors = HashMap::with_capacity(self.cursors.len());
        for s in snapshot.series() {
            let unit = s.descriptor().unit();
            let (value, rate) = match s.value() {
                Value::Counter(total) => {
                    let rate = self.cursors.get(&s.id()).and_then(|&(prev, at)| {
                        let dt = snapshot.time.duration_since(at).ok()?.as_secs_f64();
                        // No rate across a reset or between two readings at one instant.
                        (dt > 0.0 && *total >= prev).then(|| {
                            human::rate(s.descriptor().counter_value(total - prev) / dt, unit)
                        })
                    });
                    cursors.insert(s.id(), (*total, snapshot.time));
                    let shown = s.descriptor().counter_value(*total);
                    (human::value(shown, unit), rate.unwrap_or_default())
                }
                Value::Gauge(v) => {
                    let text = point_in_time(s.descriptor().name(), unit, *v)
                        .unwrap_or_else(|| human::value(*v, unit));
                    (text, String::new())
                }
                Value::Timing(d) => (timing_summary(d, unit), String::new()),
                // A kind added to the standard later: shown by name, without a value.
                _ => (format!("({})", s.descriptor().kind()), String::new()),
            };
            let timing = matches!(s.value(), Value::Timing(_));
            rows.push((
                [
                    s.descriptor().name().to_owned(),
                    labels_text(s.labels()),
                    value,
                    rate,
                ],
                timing,
            ));
        }
        self.cursors = cursors;

        let mut out = format!(
            "# harvest {} (sequence {}, {} series)\n",
            rfc3339(snapshot.time),
            snapshot.sequence,
            snapshot.len()
        );
        let header = (["NAME", "LABELS", "VALUE", "RATE"].map(String::from), false);
        let all = || std::iter::once(&header).chain(&rows);
        let width = |i: usize| {
            all()
                .filter(|(_, timing)| i < 2 || !timing)
                .map(|(r, _)| r[i].chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths = [width(0), width(1), width(2)];
        let mut line = String::new();
        for (row, timing) in all() {
            line.clear();
            for (i, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if i < 3 && !(i == 2 && *timing) {
                    let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out.push('\n');
        out
    }
}

/// A gauge in seconds whose last word is `time` or `timestamp` (`process.start_time`, not
/// `process.uptime`) holds a point in time, in Unix seconds: people read it as a date
/// (`2026-01-02T03:04:05Z`).
fn point_in_time(name: &str, unit: &str, v: f64) -> Option<String> {
    // Year 10000 and later has no RFC 3339 spelling.
    const MAX: f64 = 253_402_300_800.0;
    let last = name.rsplit(['.', '_']).next().unwrap_or(name);
    if unit != "s" || !matches!(last, "time" | "timestamp") {
        return None;
    }
    if !(v > 0.0 && v < MAX) {
        return None;
    }
    let t = UNIX_EPOCH + Duration::from_secs(v as u64);
    Some(humantime::format_rfc3339_seconds(t).to_string())
}

/// `count 6, mean 12.5 ms, p50 10.2 ms, p90 40.1 ms, p99 40.1 ms, max 41 ms`.
fn timing_summary(d: &Distribution, unit: &str) -> String {
    if d.count() == 0 {
        return "count 0".to_owned();
    }
    let v = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| human::value(x, unit));
    format!(
        "count {}, mean {}, p50 {}, p90 {}, p99 {}, max {}",
        d.count(),
        v(d.mean()),
        v(d.quantile(0.5)),
        v(d.quantile(0.9)),
        v(d.quantile(0.99)),
        v(Some(d.max())),
    )
}

/// `key=value` pairs joined by commas; values with spaces, commas, `=`, quotes or control
/// characters (or empty ones) are quoted and escaped.
fn labels_text(labels: LabelsRef<'_>) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let plain = !v.is_empty()
            && !v
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '=' | '"'));
        if plain {
            let _ = write!(out, "{k}={v}");
        } else {
            let _ = write!(out, "{k}={v:?}");
        }
    }
    out
}

/// Renders a snapshot as JSON lines: one object per series, each with the harvest time.
///
/// `{"time":"2026-01-02T03:04:05.000Z","name":"process.memory.usage","kind":"gauge","unit":"By",
/// "labels":{"pid":"42"},"value":1234}` (one line). A counter's value is its cumulative
/// total; a timing's is an object with `count`, `sum`, `min`, `max`, `mean`, `p50`, `p90` and
/// `p99` (`null` where a timing has no values). Non-finite gauges are `null`.
///
/// ```
/// use sampler_api::{Descriptor, Harvester, Registry};
/// static JOBS: Descriptor = Descriptor::counter("jobs.done", "1", "jobs done");
/// let registry = Registry::new();
/// let jobs = registry.counter(&JOBS);
/// jobs.add(3);
/// let snapshot = Harvester::builder().registry(registry).self_metrics(false).build().harvest_now();
/// let text = sampler_exporter_console::json_lines(&snapshot);
/// let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap())?;
/// assert_eq!(line["name"], "jobs.done");
/// assert_eq!(line["value"], 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn json_lines(snapshot: &Snapshot) -> String {
    let time = json_str(&rfc3339(snapshot.time));
    let mut out = String::with_capacity(snapshot.len() * 160);
    for s in snapshot.series() {
        let _ = write!(
            out,
            "{{\"time\":{time},\"name\":{},\"kind\":\"{}\",\"unit\":{},\"labels\":{{",
            json_str(s.descriptor().name()),
            s.descriptor().kind().as_str(),
            json_str(s.descriptor().unit()),
        );
        for (i, (k, v)) in s.labels().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{}:{}", json_str(k), json_str(v));
        }
        out.push_str("},\"value\":");
        match s.value() {
            Value::Counter(n) if s.descriptor().divisor() == 1 => {
                let _ = write!(out, "{n}");
            }
            Value::Counter(n) => out.push_str(&json_f64(s.descriptor().counter_value(*n))),
            Value::Gauge(v) => out.push_str(&json_f64(*v)),
            Value::Timing(d) => {
                // An empty timing's min and max are +inf and -inf: `null`, as for the others.
                let _ = write!(
                    out,
                    "{{\"count\":{},\"sum\":{},\"min\":{},\"max\":{},\"mean\":{},\"p50\":{},\"p90\":{},\"p99\":{}}}",
                    d.count(),
                    json_f64(d.sum()),
                    json_f64(d.min()),
                    json_f64(d.max()),
                    json_opt(d.mean()),
                    json_opt(d.quantile(0.5)),
                    json_opt(d.quantile(0.9)),
                    json_opt(d.quantile(0.99)),
                );
            }
            _ => out.push_str("null"),
        }
        out.push_str("}\n");
    }
    out
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// A JSON number, or `null` for NaN and infinities (JSON has no spelling for them).
fn json_f64(v: f64) -> String {
    serde_json::Value::from(v).to_string()
}

fn json_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "null".to_owned(), json_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sampler_api::Labels;

    #[test]
    fn label_quoting() {
        let l =
            Labels::from_pairs(&[("a", "x"), ("b", "two words"), ("c", ""), ("d", "q\"")]).unwrap();
        assert_eq!(labels_text(l.view()), r#"a=x,b="two words",c="",d="q\"""#);
    }

    #[test]
    fn points_in_time() {
        let p = |n, u, v| point_in_time(n, u, v);
        assert_eq!(
            p("process.start_time", "s", 1_767_225_600.5).as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
        assert_eq!(p("job.last_run_timestamp", "s", 0.0), None);
        assert_eq!(p("job.last_run_timestamp", "s", f64::NAN), None);
        assert_eq!(p("job.last_run_timestamp", "s", 1e300), None);
        assert_eq!(p("http.server.duration", "s", 1e9), None);
        assert_eq!(p("process.start_time", "ms", 1e9), None);
        assert_eq!(p("process.uptime", "s", 1e9), None);
        assert_eq!(
            p("job.last.timestamp", "s", 1e9).as_deref(),
            Some("2001-09-09T01:46:40Z")
        );
    }

    #[test]
    fn json_numbers() {
        assert_eq!(json_f64(f64::NAN), "null");
        assert_eq!(json_f64(1.5), "1.5");
        assert_eq!(json_str("a\"b\n"), r#""a\"b\n""#);
    }
}
