//! A harvest as people read it: each series with its current value, a counter's rate, a
//! timing's p50 and p99 over the last interval, and a short history of each, whatever the
//! harvest came from (this process's harvester, a shared-memory directory, a Prometheus
//! endpoint). Pure: frames in, rows out; no terminal, no clock.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use sampler::top::summary::{Frame, Reading, Sample, Tracker};
//!
//! let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
//! let requests = |raw| Reading::new("http.requests", &[], "1", Sample::Counter { raw, divisor: 1 });
//! let mut tracker = Tracker::new(60);
//! tracker.update(&Frame { time: t0, readings: vec![requests(100)] });
//! let rows = tracker.update(&Frame { time: t0 + Duration::from_secs(2), readings: vec![requests(160)] });
//! assert_eq!(rows[0].rate, Some(30.0)); // 60 more in 2 s
//! assert_eq!(rows[0].history, vec![30.0]);
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::SystemTime;

use sampler_api::{Snapshot, Value};

/// One harvest: when, and every series in it.
#[derive(Clone, Debug, PartialEq)]
pub struct Frame {
    /// The harvest's time (a scrape's, for an endpoint).
    pub time: SystemTime,
    /// Every series.
    pub readings: Vec<Reading>,
}

/// One series in a frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    /// The metric's name.
    pub name: String,
    /// Its labels, sorted by key.
    pub labels: Vec<(String, String)>,
    /// Its unit (`s`, `By`, `1`; empty when the source does not say).
    pub unit: String,
    /// The reading.
    pub sample: Sample,
}

impl Reading {
    /// A reading; the labels are sorted by key.
    pub fn new(name: &str, labels: &[(&str, &str)], unit: &str, sample: Sample) -> Reading {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        labels.sort();
        Reading {
            name: name.to_owned(),
            labels,
            unit: unit.to_owned(),
            sample,
        }
    }

    /// `name{k="v",…}`, the series' key and how it is shown.
    pub fn key(&self) -> String {
        series_key(&self.name, &self.labels)
    }
}

/// `name{k="v",…}` (just `name` without labels).
pub fn series_key(name: &str, labels: &[(String, String)]) -> String {
    let mut s = name.to_owned();
    if !labels.is_empty() {
        s.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "{k}={v:?}");
        }
        s.push('}');
    }
    s
}

/// What a series reads.
#[derive(Clone, Debug, PartialEq)]
pub enum Sample {
    /// A cumulative total in whole `1/divisor` parts of the unit (this project's counters).
    Counter {
        /// The recorded total.
        raw: u64,
        /// Parts per unit (1 for most).
        divisor: u64,
    },
    /// A cumulative total in the unit (a Prometheus endpoint's counters).
    FloatCounter(f64),
    /// An instantaneous value.
    Gauge(f64),
    /// A cumulative distribution.
    Timing(Buckets),
}

/// A cumulative distribution as buckets: each upper bound with the count of values at most it,
/// and, from a Prometheus summary, the quantiles its client computed.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Buckets {
    /// Values observed.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The smallest and largest value, when known.
    pub range: Option<(f64, f64)>,
    /// `(upper bound, cumulative count)`, bounds ascending (the last may be infinite).
    pub bounds: Vec<(f64, u64)>,
    /// `(q, value)` given by the source (a summary); when present they are shown as they are.
    pub quantiles: Vec<(f64, f64)>,
}

impl Buckets {
    /// The cumulative count at `bound`: the count of the highest bucket whose upper bound is
    /// at most `bound` (exact when `bound` is one of the bounds).
    fn count_at(&self, bound: f64) -> u64 {
        let i = self
            .bounds
            .partition_point(|&(b, _)| b <= bound * (1.0 + 1e-12));
        if i == 0 {
            0
        } else {
            self.bounds[i - 1].1
        }
    }

    /// The buckets of the values observed since `earlier` (same series, taken before):
    /// cumulative counts less `earlier`'s at the same bounds. `None` after a reset.
    pub fn since(&self, earlier: &Buckets) -> Option<Buckets> {
        if self.count < earlier.count {
            return None;
        }
        let bounds = self
            .bounds
            .iter()
            .map(|&(b, c)| (b, c.saturating_sub(earlier.count_at(b))))
            .collect();
        Some(Buckets {
            count: self.count - earlier.count,
            sum: self.sum - earlier.sum,
            range: self.range,
            bounds,
            quantiles: self.quantiles.clone(),
        })
    }

    /// The `q`-quantile, interpolated linearly in its bucket as Prometheus's
    /// `histogram_quantile` does (the first bucket from 0; in the infinite bucket, the highest
    /// finite bound), clamped to the range when known; `None` with no values.
    ///
    /// ```
    /// use sampler::top::summary::Buckets;
    /// let b = Buckets { count: 100, sum: 0.0, range: None,
    ///     bounds: vec![(0.1, 50), (0.2, 100), (f64::INFINITY, 100)], quantiles: vec![] };
    /// assert_eq!(b.quantile(0.5), Some(0.1));
    /// assert!((b.quantile(0.99).unwrap() - 0.198).abs() < 1e-9);
    /// ```
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if let Some(&(_, v)) = self.quantiles.iter().find(|(x, _)| (x - q).abs() < 1e-9) {
            return v.is_finite().then_some(v);
        }
        let total = self.bounds.last().map_or(self.count, |&(_, c)| c);
        if total == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for &(upper, cum) in &self.bounds {
            if cum as f64 >= rank && cum > below {
                let v = if upper.is_infinite() {
                    lower
                } else {
                    let lo = if lower > upper { 0.0 } else { lower };
                    lo + (upper - lo) * (rank - below as f64) / (cum - below) as f64
                };
                return Some(match self.range {
                    Some((min, max)) if min <= max => v.clamp(min, max),
                    _ => v,
                });
            }
            below = cum;
            lower = upper;
        }
        None
    }
}

/// What kind of series a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RowKind {
    /// A cumulative total, shown as a rate.
    Counter,
    /// An instantaneous value.
    Gauge,
    /// A distribution, shown as p50 and p99.
    Timing,
}

impl RowKind {
    /// `counter`, `gauge` or `timing`.
    pub fn as_str(self) -> &'static str {
        match self {
            RowKind::Counter => "counter",
            RowKind::Gauge => "gauge",
            RowKind::Timing => "timing",
        }
    }
}

/// One series as shown; serializes to JSON for a page or a script (`null` for a number that
/// is not there or not finite).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Row {
    /// `name{k="v",…}`.
    pub key: String,
    /// The metric's name.
    pub name: String,
    /// Its labels, sorted by key.
    pub labels: Vec<(String, String)>,
    /// Its unit.
    pub unit: String,
    /// Its kind.
    pub kind: RowKind,
    /// A gauge's value; a counter's total in its unit; a timing's count.
    pub value: f64,
    /// A counter's increase per second (a timing's observations per second) since the frame
    /// before; `None` on its first frame and after a reset.
    pub rate: Option<f64>,
    /// A timing's median over the last interval (since its start on its first frame).
    pub p50: Option<f64>,
    /// A timing's 99th percentile, likewise.
    pub p99: Option<f64>,
    /// The last values of what the row is sorted by as "value" (a gauge's value, a counter's
    /// rate, a timing's p99), oldest first, at most the tracker's history length.
    pub history: Vec<f64>,
}

impl Row {
    /// What "value" means for sorting and the sparkline: a counter's rate, a gauge's value, a
    /// timing's p99.
    pub fn headline(&self) -> Option<f64> {
        match self.kind {
            RowKind::Counter => self.rate,
            RowKind::Gauge => Some(self.value),
            RowKind::Timing => self.p99,
        }
    }
}

struct Track {
    sample: Sample,
    time: SystemTime,
    history: VecDeque<f64>,
    seen: u64,
}

/// Follows frames: keeps each series' previous reading and history, and turns each frame into
/// rows (in the frame's order).
pub struct Tracker {
    tracks: HashMap<String, Track>,
    history: usize,
    frames: u64,
}

impl std::fmt::Debug for Tracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("series", &self.tracks.len())
            .field("frames", &self.frames)
            .finish()
    }
}

impl Tracker {
    /// A tracker keeping the last `history` points of each series (at least 1).
    pub fn new(history: usize) -> Tracker {
        Tracker {
            tracks: HashMap::new(),
            history: history.max(1),
            frames: 0,
        }
    }

    /// Frames seen.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The rows of a frame; series no longer in it are forgotten.
    pub fn update(&mut self, frame: &Frame) -> Vec<Row> {
        self.frames += 1;
        let round = self.frames;
        let mut rows = Vec::with_capacity(frame.readings.len());
        for r in &frame.readings {
            let key = r.key();
            let prev = self.tracks.get(&key).filter(|t| t.time < frame.time);
            let secs = prev
                .and_then(|p| frame.time.duration_since(p.time).ok())
                .map(|d| d.as_secs_f64())
                .filter(|s| *s > 0.0);
            let (kind, value, rate, p50, p99) = match (&r.sample, prev.map(|p| &p.sample)) {
                (Sample::Counter { raw, divisor }, prev) => {
                    let d = (*divisor).max(1) as f64;
                    // Deltas on the raw totals first, then divided.
                    let rate = match (prev, secs) {
                        (Some(Sample::Counter { raw: p, .. }), Some(s)) if raw >= p => {
                            Some((raw - p) as f64 / d / s)
                        }
                        _ => None,
                    };
                    (RowKind::Counter, *raw as f64 / d, rate, None, None)
                }
                (Sample::FloatCounter(v), prev) => {
                    let rate = match (prev, secs) {
                        (Some(Sample::FloatCounter(p)), Some(s)) if v >= p => Some((v - p) / s),
                        _ => None,
                    };
                    (RowKind::Counter, *v, rate, None, None)
                }
                (Sample::Gauge(v), _) => (RowKind::Gauge, *v, None, None, None),
                (Sample::Timing(b), prev) => {
                    let (window, rate) = match (prev, secs) {
                        (Some(Sample::Timing(p)), Some(s)) => match b.since(p) {
                            Some(w) => {
                                let rate = w.count as f64 / s;
                                (Some(w), Some(rate))
                            }
                            None => (None, None),
                        },
                        _ => (Some(b.clone()), None),
                    };
                    let q = |x| window.as_ref().and_then(|w| w.quantile(x));
                    (RowKind::Timing, b.count as f64, rate, q(0.5), q(0.99))
                }
            };
            let mut row = Row {
                key: key.clone(),
                name: r.name.clone(),
                labels: r.labels.clone(),
                unit: r.unit.clone(),
                kind,
                value,
                rate,
                p50,
                p99,
                history: Vec::new(),
            };
            let track = self.tracks.entry(key).or_insert_with(|| Track {
                sample: r.sample.clone(),
                time: frame.time,
                history: VecDeque::new(),
                seen: round,
            });
            if let Some(h) = row.headline().filter(|h| h.is_finite()) {
                if track.history.len() == self.history {
                    track.history.pop_front();
                }
                track.history.push_back(h);
            }
            track.sample = r.sample.clone();
            track.time = frame.time;
            track.seen = round;
            row.history = track.history.iter().copied().collect();
            rows.push(row);
        }
        self.tracks.retain(|_, t| t.seen == round);
        rows
    }
}

/// The frame of a snapshot of this project's harvester: counters with their divisor, timings
/// with their exponential buckets (a value kind this version does not know is left out).
///
/// ```
/// use sampler::top::summary::{from_snapshot, Sample};
/// use sampler_api::{Descriptor, Harvester, Registry};
///
/// static CPU: Descriptor = Descriptor::fractional_counter("cpu.time", "s", 1_000_000, "cpu");
/// let registry = Registry::new();
/// let cpu = registry.counter(&CPU);
/// cpu.add(2_500_000);
/// let frame = from_snapshot(&Harvester::builder().registry(registry).self_metrics(false).build().harvest_now());
/// assert_eq!(frame.readings[0].sample, Sample::Counter { raw: 2_500_000, divisor: 1_000_000 });
/// ```
pub fn from_snapshot(snap: &Snapshot) -> Frame {
    let mut readings = Vec::with_capacity(snap.len());
    for s in snap.series() {
        let sample = match s.value() {
            Value::Counter(raw) => Sample::Counter {
                raw: *raw,
                divisor: s.descriptor().divisor(),
            },
            Value::Gauge(v) => Sample::Gauge(*v),
            Value::Timing(d) => {
                let mut bounds = Vec::new();
                let mut cum = d.zero_count();
                if cum > 0 {
                    bounds.push((0.0, cum));
                }
                for (_, hi, c) in d.buckets() {
                    cum += c;
                    bounds.push((hi, cum));
                }
                Sample::Timing(Buckets {
                    count: d.count(),
                    sum: d.sum(),
                    range: (d.count() > 0).then(|| (d.min(), d.max())),
                    bounds,
                    quantiles: Vec::new(),
                })
            }
            _ => continue,
        };
        let labels: Vec<(&str, &str)> = s.labels().iter().collect();
        readings.push(Reading::new(
            s.descriptor().name(),
            &labels,
            s.descriptor().unit(),
            sample,
        ));
    }
    Frame {
        time: snap.time,
        readings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000 + s)
    }

    fn counter(raw: u64, divisor: u64) -> Reading {
        Reading::new("c", &[], "s", Sample::Counter { raw, divisor })
    }

    #[test]
    fn counter_rates_take_raw_deltas_then_divide_and_stop_at_a_reset() {
        let mut t = Tracker::new(3);
        let f = |s, raw| Frame {
            time: at(s),
            readings: vec![counter(raw, 1_000_000)],
        };
        assert_eq!(t.update(&f(0, 1_000_000))[0].rate, None);
        let r = &t.update(&f(2, 2_000_000))[0];
        assert_eq!(r.rate, Some(0.5));
        assert_eq!(r.value, 2.0);
        // A reset: no rate, and the next one counts from it.
        assert_eq!(t.update(&f(4, 10))[0].rate, None);
        let r = &t.update(&f(5, 1_000_010))[0];
        assert_eq!(r.rate, Some(1.0));
        assert_eq!(r.history, vec![0.5, 1.0]);
    }

    #[test]
    fn history_is_bounded_and_gone_series_forgotten() {
        let mut t = Tracker::new(2);
        for s in 0..5 {
            t.update(&Frame {
                time: at(s),
                readings: vec![Reading::new("g", &[], "1", Sample::Gauge(s as f64))],
            });
        }
        let rows = t.update(&Frame {
            time: at(5),
            readings: vec![Reading::new("g", &[], "1", Sample::Gauge(5.0))],
        });
        assert_eq!(rows[0].history, vec![4.0, 5.0]);
        t.update(&Frame {
            time: at(6),
            readings: vec![],
        });
        let rows = t.update(&Frame {
            time: at(7),
            readings: vec![Reading::new("g", &[], "1", Sample::Gauge(7.0))],
        });
        assert_eq!(rows[0].history, vec![7.0]);
    }

    #[test]
    fn timing_quantiles_are_over_the_last_interval() {
        let b = |n_fast: u64, n_slow: u64| Buckets {
            count: n_fast + n_slow,
            sum: 0.0,
            range: None,
            bounds: vec![
                (0.01, n_fast),
                (1.0, n_fast + n_slow),
                (f64::INFINITY, n_fast + n_slow),
            ],
            quantiles: vec![],
        };
        let mut t = Tracker::new(10);
        let f = |s, buckets| Frame {
            time: at(s),
            readings: vec![Reading::new("t", &[], "s", Sample::Timing(buckets))],
        };
        let r = &t.update(&f(0, b(1000, 0)))[0];
        assert!(r.p99.unwrap() <= 0.01);
        // Then only slow ones: the interval's p50 is slow though most since start are fast.
        let r = &t.update(&f(1, b(1000, 100)))[0];
        assert!(r.p50.unwrap() > 0.01, "{r:?}");
        assert_eq!(r.rate, Some(100.0));
        // No observations in an interval: no quantile.
        let r = &t.update(&f(2, b(1000, 100)))[0];
        assert_eq!(r.p50, None);
    }

    #[test]
    fn quantiles_of_exponential_buckets_whose_range_grew() {
        // The earlier reading had fewer buckets (the dense range grows at either end).
        let earlier = Buckets {
            count: 2,
            sum: 0.0,
            range: Some((0.5, 1.0)),
            bounds: vec![(0.5, 1), (1.0, 2)],
            quantiles: vec![],
        };
        let now = Buckets {
            count: 4,
            sum: 0.0,
            range: Some((0.25, 2.0)),
            bounds: vec![(0.25, 1), (0.5, 2), (1.0, 3), (2.0, 4)],
            quantiles: vec![],
        };
        let w = now.since(&earlier).unwrap();
        assert_eq!(w.bounds, vec![(0.25, 1), (0.5, 1), (1.0, 1), (2.0, 2)]);
        assert_eq!(w.count, 2);
        assert!(w.quantile(0.99).unwrap() > 1.0);
        assert!(now
            .since(&Buckets {
                count: 9,
                ..earlier
            })
            .is_none());
    }

    #[test]
    fn summaries_show_their_own_quantiles() {
        let b = Buckets {
            count: 10,
            sum: 1.0,
            range: None,
            bounds: vec![],
            quantiles: vec![(0.5, 0.1), (0.99, 0.7)],
        };
        assert_eq!(b.quantile(0.5), Some(0.1));
        assert_eq!(b.quantile(0.99), Some(0.7));
        assert_eq!(Buckets::default().quantile(0.5), None);
    }

    #[test]
    fn a_snapshot_becomes_a_frame() {
        use sampler_api::{Descriptor, Harvester, Registry};
        static T: Descriptor = Descriptor::timing("op.duration", "s", "ops");
        static G: Descriptor = Descriptor::gauge("queue.depth", "1", "jobs");
        let registry = Registry::new();
        let timing = registry.timing(&T);
        for v in [0.001, 0.002, 0.004, 0.5] {
            timing.record(v);
        }
        let queues = registry.gauge_family(&G, &["queue"]);
        queues.set(&["mail"], 7.0);
        let h = Harvester::builder()
            .registry(registry)
            .self_metrics(false)
            .build();
        let frame = from_snapshot(&h.harvest_now());
        let mut t = Tracker::new(5);
        let rows = t.update(&frame);
        let op = rows.iter().find(|r| r.name == "op.duration").unwrap();
        assert_eq!(op.kind, RowKind::Timing);
        assert_eq!(op.value, 4.0);
        let p99 = op.p99.unwrap();
        assert!((p99 - 0.5).abs() / 0.5 < 0.1, "{p99}");
        let q = rows.iter().find(|r| r.name == "queue.depth").unwrap();
        assert_eq!(q.key, "queue.depth{queue=\"mail\"}");
        assert_eq!(q.headline(), Some(7.0));
        let json = serde_json::to_value(q).unwrap();
        assert_eq!(json["kind"], "gauge");
        assert_eq!(json["labels"], serde_json::json!([["queue", "mail"]]));
        assert_eq!(json["rate"], serde_json::Value::Null);
    }
}
