//! Reading a Prometheus endpoint: the text exposition format 0.0.4 (what every Prometheus
//! client serves by default) into readings for a [`Frame`](super::summary::Frame), so
//! `sampler top --url` watches any service.
//!
//! Counters become [`Sample::FloatCounter`], gauges and untyped samples [`Sample::Gauge`],
//! histograms (`_bucket{le}`, `_sum`, `_count`) and summaries (`{quantile}`, `_sum`, `_count`)
//! [`Sample::Timing`]. Label values are unescaped (`\\`, `\"`, `\n`). A line that cannot be
//! read is skipped and counted; nothing here panics on any input.
//!
//! ```
//! use sampler::top::scrape::parse_text;
//! use sampler::top::summary::Sample;
//!
//! let text = "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\"} 1027\n";
//! let (readings, skipped) = parse_text(text);
//! assert_eq!(skipped, 0);
//! assert_eq!(readings[0].key(), "http_requests_total{code=\"200\"}");
//! assert_eq!(readings[0].sample, Sample::FloatCounter(1027.0));
//! ```

use std::collections::HashMap;

use super::summary::{Buckets, Reading, Sample};

/// A sample line: name, labels (in the order written), value.
#[derive(Debug, PartialEq)]
struct Line {
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

/// Parses a value as the format writes it (`+Inf`, `-Inf`, `NaN`, Go's floats).
fn value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && c.is_ascii_digit())
}

/// One sample line, or `None` when it is not one.
fn sample_line(line: &str) -> Option<Line> {
    let line = line.trim_start();
    let end = line
        .char_indices()
        .find(|&(i, c)| !is_name_char(c, i == 0))
        .map_or(line.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &line[..end];
    let mut rest = line[end..].trim_start();
    let mut labels = Vec::new();
    if let Some(r) = rest.strip_prefix('{') {
        rest = r;
        loop {
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix('}') {
                rest = r;
                break;
            }
            let kend = rest
                .char_indices()
                .find(|&(i, c)| !is_name_char(c, i == 0))
                .map_or(rest.len(), |(i, _)| i);
            if kend == 0 {
                return None;
            }
            let key = &rest[..kend];
            rest = rest[kend..].trim_start().strip_prefix('=')?.trim_start();
            rest = rest.strip_prefix('"')?;
            let mut v = String::new();
            let mut chars = rest.char_indices();
            let close = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()? {
                        (_, 'n') => v.push('\n'),
                        (_, c) => v.push(c),
                    },
                    (_, c) => v.push(c),
                }
            };
            labels.push((key.to_owned(), v));
            rest = rest[close + 1..].trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r;
            } else if !rest.starts_with('}') {
                return None;
            }
        }
    }
    let mut fields = rest.split_whitespace();
    let v = value(fields.next()?)?;
    // An optional timestamp; anything more is not a sample line.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Line {
        name: name.to_owned(),
        labels,
        value: v,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Type {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// A histogram or summary being gathered from its lines.
#[derive(Default)]
struct Dist {
    order: usize,
    name: String,
    labels: Vec<(String, String)>,
    count: Option<f64>,
    sum: f64,
    bounds: Vec<(f64, f64)>,
    quantiles: Vec<(f64, f64)>,
}

/// Histograms and summaries being gathered, by name and labels (without `le`, `quantile`).
type Dists = HashMap<(String, Vec<(String, String)>), Dist>;

/// Parses an exposition in the text format: the readings in the order first seen, and how many
/// lines were skipped as unreadable.
pub fn parse_text(text: &str) -> (Vec<Reading>, usize) {
    let mut types: HashMap<String, Type> = HashMap::new();
    let mut skipped = 0;
    // Each reading or distribution keeps its first position, so the order is the endpoint's.
    let mut plain: Vec<(usize, Reading)> = Vec::new();
    let mut dists: Dists = HashMap::new();
    let mut order = 0;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE") {
                if let (Some(name), Some(t)) = (words.next(), words.next()) {
                    let t = match t {
                        "counter" => Type::Counter,
                        "gauge" => Type::Gauge,
                        "histogram" => Type::Histogram,
                        "summary" => Type::Summary,
                        _ => Type::Untyped,
                    };
                    types.insert(name.to_owned(), t);
                }
            }
            continue;
        }
        let Some(mut l) = sample_line(line) else {
            skipped += 1;
            continue;
        };
        order += 1;
        // The family a suffixed line belongs to.
        let family = |suffix: &str| -> Option<(String, Type)> {
            let base = l.name.strip_suffix(suffix)?;
            match types.get(base) {
                Some(t @ (Type::Histogram | Type::Summary)) => Some((base.to_owned(), *t)),
                _ => None,
            }
        };
        let take = |labels: &mut Vec<(String, String)>, key: &str| -> Option<String> {
            let i = labels.iter().position(|(k, _)| k == key)?;
            Some(labels.remove(i).1)
        };
        if let Some((base, Type::Histogram)) = family("_bucket") {
            let Some(le) = take(&mut l.labels, "le").and_then(|s| value(&s)) else {
                skipped += 1;
                continue;
            };
            l.labels.sort();
            let d = dist(&mut dists, base, l.labels, order);
            d.bounds.push((le, l.value));
        } else if let Some((base, _)) = family("_sum") {
            l.labels.sort();
            dist(&mut dists, base, l.labels, order).sum = l.value;
        } else if let Some((base, _)) = family("_count") {
            l.labels.sort();
            dist(&mut dists, base, l.labels, order).count = Some(l.value);
        } else if family("_created").is_some() {
            continue;
        } else if types.get(&l.name) == Some(&Type::Summary) {
            let Some(q) = take(&mut l.labels, "quantile").and_then(|s| value(&s)) else {
                skipped += 1;
                continue;
            };
            l.labels.sort();
            let base = l.name.clone();
            dist(&mut dists, base, l.labels, order)
                .quantiles
                .push((q, l.value));
        } else {
            let counter = types.get(&l.name) == Some(&Type::Counter)
                || l.name
                    .strip_suffix("_total")
                    .is_some_and(|b| types.get(b) == Some(&Type::Counter));
            if l.name.ends_with("_created") && !types.contains_key(&l.name) {
                continue;
            }
            let sample = if counter {
                Sample::FloatCounter(l.value)
            } else {
                Sample::Gauge(l.value)
            };
            let labels: Vec<(&str, &str)> = l
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            plain.push((order, Reading::new(&l.name, &labels, "", sample)));
        }
    }
    for (_, d) in dists {
        let mut bounds = d.bounds;
        bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = d
            .count
            .or_else(|| bounds.last().map(|b| b.1))
            .unwrap_or(0.0);
        let counts = |v: f64| {
            if v.is_finite() && v > 0.0 {
                v as u64
            } else {
                0
            }
        };
        let buckets = Buckets {
            count: counts(count),
            sum: d.sum,
            range: None,
            bounds: bounds.into_iter().map(|(b, c)| (b, counts(c))).collect(),
            quantiles: d.quantiles,
        };
        let labels: Vec<(&str, &str)> = d
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        plain.push((
            d.order,
            Reading::new(&d.name, &labels, "", Sample::Timing(buckets)),
        ));
    }
    plain.sort_by_key(|(o, _)| *o);
    (plain.into_iter().map(|(_, r)| r).collect(), skipped)
}

fn dist(dists: &mut Dists, name: String, labels: Vec<(String, String)>, order: usize) -> &mut Dist {
    dists
        .entry((name.clone(), labels.clone()))
        .or_insert_with(|| Dist {
            order,
            name,
            labels,
            ..Dist::default()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_with_commas_equals_quotes_and_newlines() {
        let l =
            sample_line(r#"up{job="a,b=c",msg="say \"hi\"\nbye",path="C:\\x"} 1 1700000000000"#)
                .unwrap();
        assert_eq!(
            l.labels,
            vec![
                ("job".into(), "a,b=c".into()),
                ("msg".into(), "say \"hi\"\nbye".into()),
                ("path".into(), "C:\\x".into())
            ]
        );
        assert_eq!(l.value, 1.0);
        assert_eq!(sample_line("x{} +Inf").unwrap().value, f64::INFINITY);
        assert!(sample_line("x{a=\"1\",} 2").is_some());
        assert!(sample_line("x{a=\"1\" 2").is_none());
        assert!(sample_line("x{a=1} 2").is_none());
        assert!(sample_line("x 2 3 4").is_none());
        assert!(sample_line("x two").is_none());
        assert!(sample_line("{a=\"1\"} 2").is_none());
    }

    #[test]
    fn histograms_summaries_counters_and_gauges() {
        let text = "\
# HELP rpc_seconds rpc latency
# TYPE rpc_seconds histogram
rpc_seconds_bucket{op=\"get\",le=\"0.1\"} 90
rpc_seconds_bucket{op=\"get\",le=\"1\"} 99
rpc_seconds_bucket{op=\"get\",le=\"+Inf\"} 100
rpc_seconds_sum{op=\"get\"} 12.5
rpc_seconds_count{op=\"get\"} 100
# TYPE gc_seconds summary
gc_seconds{quantile=\"0.5\"} 0.002
gc_seconds{quantile=\"0.99\"} 0.04
gc_seconds_sum 1.5
gc_seconds_count 300
# TYPE jobs_total counter
jobs_total 7
# TYPE queue_depth gauge
queue_depth 3
mystery 4
garbage line here
";
        let (r, skipped) = parse_text(text);
        assert_eq!(skipped, 1);
        let names: Vec<String> = r.iter().map(|r| r.key()).collect();
        assert_eq!(
            names,
            vec![
                "rpc_seconds{op=\"get\"}",
                "gc_seconds",
                "jobs_total",
                "queue_depth",
                "mystery"
            ]
        );
        let Sample::Timing(h) = &r[0].sample else {
            panic!("{:?}", r[0])
        };
        assert_eq!(h.count, 100);
        assert_eq!(h.bounds, vec![(0.1, 90), (1.0, 99), (f64::INFINITY, 100)]);
        assert_eq!(h.quantile(0.5), Some(0.1 * 50.0 / 90.0));
        let Sample::Timing(s) = &r[1].sample else {
            panic!("{:?}", r[1])
        };
        assert_eq!(s.quantile(0.99), Some(0.04));
        assert_eq!(s.count, 300);
        assert_eq!(r[2].sample, Sample::FloatCounter(7.0));
        assert_eq!(r[3].sample, Sample::Gauge(3.0));
        assert_eq!(r[4].sample, Sample::Gauge(4.0));
    }

    proptest::proptest! {
        #[test]
        fn any_text_never_panics(s in "\\PC*|[#{}=\",\\\\ a-z_0-9.+\n-]*") {
            let _ = parse_text(&s);
        }

        #[test]
        fn label_values_and_numbers_round_trip(v in "\\PC*", n in -1e12f64..1e12) {
            let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
            let text = format!("# TYPE g gauge\ng{{k=\"{escaped}\",z=\"\"}} {n}\n");
            let (r, skipped) = parse_text(&text);
            proptest::prop_assert_eq!(skipped, 0);
            proptest::prop_assert_eq!(&r[0].labels[0].1, &v);
            proptest::prop_assert_eq!(&r[0].sample, &Sample::Gauge(n));
        }
    }

    #[test]
    fn any_bytes_never_panic() {
        // Every prefix of a valid exposition, and some hostile lines.
        let text = "# TYPE h histogram\nh_bucket{le=\"0.5\",a=\"\\\"x\"} 1\nh_bucket{le=\"x\"} 1\nh_count 1e400\nh_sum NaN\n";
        for i in 0..=text.len() {
            if text.is_char_boundary(i) {
                let _ = parse_text(&text[..i]);
            }
        }
        for bad in [
            "{",
            "a{",
            "a{b",
            "a{b=",
            "a{b=\"",
            "a{b=\"\\",
            "é 1",
            "a{é=\"1\"} 1",
        ] {
            let (r, skipped) = parse_text(bad);
            assert!(r.is_empty() && skipped == 1, "{bad}");
        }
    }
}
