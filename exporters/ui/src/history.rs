//! The page's model: the last harvests of every series, as the charts show them (a counter's
//! rate per second, a gauge's value, a timing's p50 and p99 over each interval).

use std::collections::{HashMap, VecDeque};
use std::time::{SystemTime, UNIX_EPOCH};

use sampler_api::{Distribution, SeriesId, Snapshot, Value};
use serde::Serialize;

/// How many harvests each series keeps by default.
pub const DEFAULT_POINTS: usize = 60;
/// How many series are kept by default; the rest of a harvest is counted, not charted.
pub const DEFAULT_MAX_SERIES: usize = 2000;
/// The most points per series accepted (`points`).
pub const MAX_POINTS: usize = 10_000;

/// The history of the latest harvests: for each series (at most `max_series`, the first of
/// each snapshot in its order) its last `points` readings, turned into what the page charts.
///
/// Memory is bounded by `max_series × points` points of 24 bytes each, plus each kept series'
/// name, labels and last reading (60 points × 2000 series: 2.9 MB of points at most).
///
/// ```
/// use sampler_api::{Descriptor, Harvester, Registry};
/// use sampler_exporter_ui::History;
///
/// static DONE: Descriptor = Descriptor::counter("jobs.done", "1", "jobs done");
/// let registry = Registry::new();
/// let done = registry.counter(&DONE);
/// let harvester = Harvester::builder().registry(registry).self_metrics(false).build();
/// let mut history = History::new(60, 100);
/// history.record(&harvester.harvest_now());
/// done.add(5);
/// history.record(&harvester.harvest_now());
/// let json = history.to_json();
/// assert!(json.contains("\"name\":\"jobs.done\""));
/// ```
#[derive(Debug)]
pub struct History {
    points: usize,
    max_series: usize,
    sequence: u64,
    time: f64,
    interval: f64,
    order: Vec<SeriesId>,
    tracks: HashMap<SeriesId, Track>,
    left_out: usize,
    unknown_kinds: u64,
}

/// One series as kept: what it is, its last cumulative reading and its points.
#[derive(Debug)]
struct Track {
    name: String,
    labels: Vec<(String, String)>,
    kind: &'static str,
    unit: String,
    start: SystemTime,
    last: Last,
    points: VecDeque<Point>,
}

#[derive(Debug)]
enum Last {
    None,
    Counter { raw: u64, time: f64 },
    Timing(Box<Distribution>),
}

/// One chart point: the harvest's time (Unix seconds) and up to two values (NaN: none).
#[derive(Clone, Copy, Debug)]
struct Point {
    t: f64,
    v: [f64; 2],
}

impl History {
    /// An empty history keeping `points` harvests (1 to [`MAX_POINTS`]) of at most
    /// `max_series` series.
    pub fn new(points: usize, max_series: usize) -> Self {
        History {
            points: points.clamp(1, MAX_POINTS),
            max_series,
            sequence: 0,
            time: 0.0,
            interval: 0.0,
            order: Vec::new(),
            tracks: HashMap::new(),
            left_out: 0,
            unknown_kinds: 0,
        }
    }

    /// The sequence of the latest snapshot recorded (0 before the first).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// How many series are kept.
    pub fn len(&self) -> usize {
        self.tracks.len()
    }

    /// Whether no series is kept.
    pub fn is_empty(&self) -> bool {
        self.tracks.is_empty()
    }

    /// How many series of the latest snapshot were past `max_series` and left out.
    pub fn left_out(&self) -> usize {
        self.left_out
    }

    /// Adds a harvest. A snapshot not newer than the latest recorded is ignored; a series absent
    /// from it is forgotten (a snapshot is the whole truth).
    pub fn record(&mut self, snapshot: &Snapshot) {
        if snapshot.sequence != 0 && snapshot.sequence <= self.sequence {
            return;
        }
        self.sequence = snapshot.sequence.max(self.sequence + 1);
        let time = unix_seconds(snapshot.time);
        self.time = time;
        self.interval = snapshot.interval.as_secs_f64();
        let mut order = Vec::with_capacity(snapshot.len().min(self.max_series));
        let mut left_out = 0;
        for s in snapshot.series() {
            if order.len() >= self.max_series {
                left_out += 1;
                continue;
            }
            let kind = match s.value() {
                Value::Counter(_) => "counter",
                Value::Gauge(_) => "gauge",
                Value::Timing(_) => "timing",
                _ => {
                    self.unknown_kinds += 1;
                    continue;
                }
            };
            let track = self.tracks.entry(s.id()).or_insert_with(|| Track {
                name: s.descriptor().name().to_owned(),
                labels: s
                    .labels()
                    .iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                kind,
                unit: s.descriptor().unit().to_owned(),
                start: s.start_time(),
                last: Last::None,
                points: VecDeque::new(),
            });
            if track.start != s.start_time() || track.kind != kind {
                // The source restarted under the same id: its readings start over.
                track.start = s.start_time();
                track.kind = kind;
                track.last = Last::None;
            }
            let v = match s.value() {
                Value::Counter(raw) => {
                    let rate = match track.last {
                        Last::Counter {
                            raw: prev,
                            time: t0,
                        } if time > t0 => {
                            // A total below the previous one is a reset: the delta is the total.
                            let delta = if *raw >= prev { *raw - prev } else { *raw };
                            s.descriptor().counter_value(delta) / (time - t0)
                        }
                        _ => f64::NAN,
                    };
                    track.last = Last::Counter { raw: *raw, time };
                    [rate, f64::NAN]
                }
                Value::Gauge(g) => [*g, f64::NAN],
                Value::Timing(d) => {
                    let interval = match &track.last {
                        Last::Timing(prev) => since(prev, d),
                        _ => None,
                    };
                    let v = match interval {
                        Some(i) => [
                            i.quantile(0.5).unwrap_or(f64::NAN),
                            i.quantile(0.99).unwrap_or(f64::NAN),
                        ],
                        None => [f64::NAN, f64::NAN],
                    };
                    track.last = Last::Timing(d.clone());
                    v
                }
                _ => [f64::NAN, f64::NAN],
            };
            if track.points.len() == self.points {
                track.points.pop_front();
            }
            track.points.push_back(Point { t: time, v });
            order.push(s.id());
        }
        if order.len() != self.tracks.len() {
            let kept: std::collections::HashSet<SeriesId> = order.iter().copied().collect();
            self.tracks.retain(|id, _| kept.contains(id));
        }
        self.order = order;
        self.left_out = left_out;
    }

    /// The page's data: the latest harvest's time, sequence and interval, and every kept series
    /// with its points (`[t, v]` for counters and gauges, `[t, p50, p99]` for timings; `null`
    /// where a harvest gave no value). `links` are shown as the page's links (label, path).
    pub fn to_json_with(&self, links: &[(String, String)]) -> String {
        #[derive(Serialize)]
        struct Data<'a> {
            sequence: u64,
            time: f64,
            interval: f64,
            points: usize,
            max_series: usize,
            left_out: usize,
            links: &'a [(String, String)],
            series: Vec<SeriesOut<'a>>,
        }
        #[derive(Serialize)]
        struct SeriesOut<'a> {
            name: &'a str,
            labels: &'a [(String, String)],
            kind: &'a str,
            unit: &'a str,
            points: Points<'a>,
        }
        let series = self
            .order
            .iter()
            .filter_map(|id| self.tracks.get(id))
            .map(|t| SeriesOut {
                name: &t.name,
                labels: &t.labels,
                kind: t.kind,
                unit: &t.unit,
                points: Points {
                    points: &t.points,
                    two: t.kind == "timing",
                },
            })
            .collect();
        let data = Data {
            sequence: self.sequence,
            time: self.time,
            interval: self.interval,
            points: self.points,
            max_series: self.max_series,
            left_out: self.left_out,
            links,
            series,
        };
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_string(&data).unwrap_or_default()
    }

    /// [`to_json_with`](Self::to_json_with) without links.
    pub fn to_json(&self) -> String {
        self.to_json_with(&[])
    }
}

/// A series' points as JSON arrays, `[t, v]` or `[t, p50, p99]`, written without building them.
struct Points<'a> {
    points: &'a VecDeque<Point>,
    two: bool,
}

impl Serialize for Points<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let finite = |v: f64| v.is_finite().then_some(v);
        let mut seq = s.serialize_seq(Some(self.points.len()))?;
        for p in self.points {
            if self.two {
                seq.serialize_element(&(p.t, finite(p.v[0]), finite(p.v[1])))?;
            } else {
                seq.serialize_element(&(p.t, finite(p.v[0])))?;
            }
        }
        seq.end()
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The observations between two cumulative readings of one timing, or `None` when the later
/// one does not continue the earlier (fewer observations, another scale, a bucket that shrank:
/// a reset) or nothing was observed between them.
///
/// ```
/// use sampler_api::Distribution;
/// use sampler_exporter_ui::since;
/// let mut d = Distribution::new(3);
/// d.record(0.001);
/// let before = d.clone();
/// for _ in 0..99 { d.record(0.3); }
/// let between = since(&before, &d).unwrap();
/// assert_eq!(between.count(), 99);
/// let p50 = between.quantile(0.5).unwrap();
/// assert!((p50 - 0.3).abs() / 0.3 <= Distribution::relative_error(3));
/// ```
pub fn since(earlier: &Distribution, later: &Distribution) -> Option<Distribution> {
    if later.scale() != earlier.scale()
        || later.count() <= earlier.count()
        || later.zero_count() < earlier.zero_count()
    {
        return None;
    }
    let offset = later.offset();
    let mut buckets = later.bucket_counts().to_vec();
    for (i, c) in earlier.bucket_counts().iter().enumerate() {
        if *c == 0 {
            continue;
        }
        let at = i64::from(earlier.offset()) + i as i64 - i64::from(offset);
        let slot = usize::try_from(at).ok().and_then(|a| buckets.get_mut(a))?;
        *slot = slot.checked_sub(*c)?;
    }
    // The interval's values lie within the cumulative minimum and maximum.
    Some(Distribution::from_parts(
        later.scale(),
        later.zero_count() - earlier.zero_count(),
        offset,
        buckets,
        later.sum() - earlier.sum(),
        later.min(),
        later.max(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sampler_api::{Descriptor, Harvester, Registry};

    static REQS: Descriptor = Descriptor::counter("test.requests", "1", "requests");
    static CPU: Descriptor = Descriptor::fractional_counter("test.cpu", "s", 1_000_000, "cpu");
    static LAT: Descriptor = Descriptor::timing("test.latency", "s", "latency");
    static DEPTH: Descriptor = Descriptor::gauge("test.depth", "1", "depth");

    fn json(h: &History) -> serde_json::Value {
        serde_json::from_str(&h.to_json()).unwrap()
    }

    fn series<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
        v["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap()
    }

    fn snapshot(h: &Harvester, seq: u64, secs: u64) -> Snapshot {
        let mut s = (*h.harvest_now()).clone();
        s.sequence = seq;
        s.time = UNIX_EPOCH + std::time::Duration::from_secs(secs);
        s
    }

    #[test]
    fn counters_become_rates_over_the_time_between_harvests() {
        let r = Registry::new();
        let reqs = r.counter(&REQS);
        let cpu = r.counter(&CPU);
        let h = Harvester::builder().registry(r).self_metrics(false).build();
        let mut hist = History::new(10, 100);
        reqs.add(100);
        hist.record(&snapshot(&h, 1, 1000));
        reqs.add(50);
        cpu.add(2_500_000); // 2.5 s of CPU in 10 s
        hist.record(&snapshot(&h, 2, 1010));
        let v = json(&hist);
        let pts = &series(&v, "test.requests")["points"];
        assert_eq!(
            pts[0][1],
            serde_json::Value::Null,
            "no rate before two readings"
        );
        assert_eq!(pts[1][0], 1010.0);
        assert_eq!(pts[1][1], 5.0);
        assert_eq!(series(&v, "test.cpu")["points"][1][1], 0.25);
    }

    #[test]
    fn timings_chart_the_quantiles_of_each_interval_not_of_all_time() {
        let r = Registry::new();
        let lat = r.timing(&LAT);
        let h = Harvester::builder().registry(r).self_metrics(false).build();
        let mut hist = History::new(10, 100);
        for _ in 0..1000 {
            lat.record(0.001);
        }
        hist.record(&snapshot(&h, 1, 1000));
        for _ in 0..10 {
            lat.record(1.5);
        }
        hist.record(&snapshot(&h, 2, 1010));
        hist.record(&snapshot(&h, 3, 1020));
        let v = json(&hist);
        let pts = &series(&v, "test.latency")["points"];
        let p50 = pts[1][1].as_f64().unwrap();
        let p99 = pts[1][2].as_f64().unwrap();
        let err = Distribution::relative_error(3);
        assert!((p50 - 1.5).abs() / 1.5 <= err, "p50 {p50}");
        assert!((p99 - 1.5).abs() / 1.5 <= err, "p99 {p99}");
        assert_eq!(
            pts[2][1],
            serde_json::Value::Null,
            "nothing observed: no quantile"
        );
    }

    #[test]
    fn history_is_bounded_in_points_and_series_and_forgets_absent_series() {
        let r = Registry::new();
        let fam = r.gauge_family(&DEPTH, &["queue"]);
        let h = Harvester::builder().registry(r).self_metrics(false).build();
        let handles: Vec<_> = (0..5).map(|i| fam.get(&[&i.to_string()])).collect();
        let mut hist = History::new(3, 4);
        for seq in 1..=10 {
            hist.record(&snapshot(&h, seq, 1000 + seq));
        }
        assert_eq!(hist.len(), 4);
        assert_eq!(hist.left_out(), 1);
        let v = json(&hist);
        assert_eq!(v["left_out"], 1);
        for s in v["series"].as_array().unwrap() {
            assert_eq!(s["points"].as_array().unwrap().len(), 3);
        }
        // An old snapshot is ignored.
        hist.record(&snapshot(&h, 5, 2000));
        assert_eq!(hist.sequence(), 10);
        // A series absent from a snapshot is forgotten.
        drop(handles);
        for i in 0..3 {
            assert!(fam.remove(&[&i.to_string()]));
        }
        hist.record(&snapshot(&h, 11, 1011));
        assert_eq!((hist.len(), hist.left_out()), (2, 0));
    }

    #[test]
    fn since_treats_a_shrunk_reading_as_a_reset() {
        let mut a = Distribution::new(3);
        a.record(1.0);
        a.record(1.0);
        let mut b = Distribution::new(3);
        b.record(4.0);
        b.record(4.0);
        b.record(4.0);
        assert!(
            since(&a, &b).is_none(),
            "a bucket went down: not a continuation"
        );
        assert!(since(&b, &b).is_none(), "nothing observed between");
        let mut c = b.clone();
        c.record(0.0);
        let d = since(&b, &c).unwrap();
        assert_eq!((d.count(), d.zero_count()), (1, 1));
    }
}
