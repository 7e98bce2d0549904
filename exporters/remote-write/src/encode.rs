//! From a snapshot to remote write requests: names and labels as in `spec/prometheus.md`,
//! counters and gauges as one sample each at the harvest time, timings as classic histogram
//! series and/or native histograms, a stale marker for each series that went away; requests
//! split at `max_samples_per_send`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::UNIX_EPOCH;

use sampler_api::{Distribution, Kind, SeriesId, SeriesRef, Snapshot, Value};
use sampler_exporter_prometheus::mapping::{family_name, go_float, label_name, unit_suffix};

use crate::config::TimingMode;
use crate::proto::{
    BucketSpan, Histogram, Label, MetricMetadata, Sample, TimeSeries, WriteRequest, COUNTER, GAUGE,
    HISTOGRAM, STALE_NAN,
};

/// The schemas Prometheus native histograms have.
const MIN_SCHEMA: i8 = -4;
const MAX_SCHEMA: i8 = 8;

/// Turns snapshots into requests; keeps what does not change from one harvest to the next,
/// and what each live series was written as (for its stale marker when it goes).
#[derive(Debug)]
pub struct Encoder {
    timings: TimingMode,
    bounds: Vec<f64>,
    /// The bounds as `le` values.
    les: Vec<String>,
    /// `job`, `instance` and the external labels, sorted; a series' own label wins.
    extra: Vec<Label>,
    max_samples: usize,
    metadata: bool,
    staleness: bool,
    /// The label sets each series of the last harvest was written as.
    written: HashMap<SeriesId, Vec<Vec<Label>>>,
}

/// The requests of one harvest under construction.
struct Batch {
    out: Vec<WriteRequest>,
    cur: WriteRequest,
    in_cur: usize,
    max: usize,
}

impl Batch {
    fn push(&mut self, ts: TimeSeries) {
        if self.in_cur >= self.max {
            self.out.push(std::mem::take(&mut self.cur));
            self.in_cur = 0;
        }
        self.in_cur += ts.samples.len() + ts.histograms.len();
        self.cur.timeseries.push(ts);
    }
}

impl Encoder {
    /// An encoder; `extra` are labels added to every series unless it has its own. Stale
    /// markers are on; see [`staleness_markers`](Self::staleness_markers).
    pub fn new(
        timings: TimingMode,
        bounds: Vec<f64>,
        extra: BTreeMap<String, String>,
        max_samples: usize,
        metadata: bool,
    ) -> Self {
        Encoder {
            timings,
            les: bounds.iter().map(|&b| go_float(b)).collect(),
            bounds,
            extra: extra
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(name, value)| Label { name, value })
                .collect(),
            max_samples: max_samples.max(1),
            metadata,
            staleness: true,
            written: HashMap::new(),
        }
    }

    /// Whether a series gone from a harvest gets one stale marker sample
    /// ([`STALE_NAN`](crate::proto::STALE_NAN)) at that harvest's time, for every series it
    /// was written as.
    pub fn staleness_markers(mut self, on: bool) -> Self {
        self.staleness = on;
        self
    }

    /// The requests for one snapshot, each with at most `max_samples` samples (a native
    /// histogram counts as one), in series order, then the stale markers; family metadata
    /// rides in the first.
    pub fn encode(&mut self, snapshot: &Snapshot) -> Vec<WriteRequest> {
        let ms = snapshot
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut batch = Batch {
            out: Vec::new(),
            cur: WriteRequest::default(),
            in_cur: 0,
            max: self.max_samples,
        };
        let mut metadata: BTreeMap<String, MetricMetadata> = BTreeMap::new();
        let mut seen = HashSet::with_capacity(if self.staleness { snapshot.len() } else { 0 });
        for s in snapshot.series() {
            let (id, d) = (s.id(), s.descriptor());
            let kind = d.kind();
            let suffix = unit_suffix(d.unit());
            let family = family_name(d.name(), kind, &suffix);
            let base = self.base_labels(s);
            let remember = self.staleness && !self.written.contains_key(&id);
            let mut sets = Vec::new();
            let mut put = |batch: &mut Batch, labels: Vec<Label>, v: Item| {
                if remember {
                    sets.push(labels.clone());
                }
                let (samples, histograms) = match v {
                    Item::Float(value) => (
                        vec![Sample {
                            value,
                            timestamp: ms,
                        }],
                        Vec::new(),
                    ),
                    Item::Native(h) => (Vec::new(), vec![h]),
                };
                batch.push(TimeSeries {
                    labels,
                    samples,
                    histograms,
                });
            };
            let ty = match (kind, s.value()) {
                (Kind::Counter, Value::Counter(raw)) => {
                    let name = format!("{family}_total");
                    let v = d.counter_value(*raw);
                    put(&mut batch, with_name(&base, &name, None), Item::Float(v));
                    COUNTER
                }
                (Kind::Gauge, Value::Gauge(v)) => {
                    put(&mut batch, with_name(&base, &family, None), Item::Float(*v));
                    GAUGE
                }
                (Kind::Timing, Value::Timing(d)) => {
                    if self.timings.classic() {
                        let bucket = format!("{family}_bucket");
                        for (&b, le) in self.bounds.iter().zip(&self.les) {
                            let c = d.count_at_most(b) as f64;
                            put(
                                &mut batch,
                                with_name(&base, &bucket, Some(le)),
                                Item::Float(c),
                            );
                        }
                        let c = d.count() as f64;
                        put(
                            &mut batch,
                            with_name(&base, &bucket, Some("+Inf")),
                            Item::Float(c),
                        );
                    }
                    if self.timings.sum_and_count() {
                        let sum = format!("{family}_sum");
                        put(
                            &mut batch,
                            with_name(&base, &sum, None),
                            Item::Float(d.sum()),
                        );
                        let count = format!("{family}_count");
                        let c = d.count() as f64;
                        put(&mut batch, with_name(&base, &count, None), Item::Float(c));
                    }
                    if self.timings.native() {
                        let h = native_histogram(d, ms);
                        put(&mut batch, with_name(&base, &family, None), Item::Native(h));
                    }
                    HISTOGRAM
                }
                // A kind added to the standard later has no remote write form here.
                _ => continue,
            };
            if self.staleness {
                seen.insert(id);
                if remember {
                    self.written.insert(id, sets);
                }
            }
            if self.metadata && !metadata.contains_key(&family) {
                metadata.insert(
                    family.clone(),
                    MetricMetadata {
                        r#type: ty,
                        metric_family_name: family,
                        help: d.description().to_owned(),
                        unit: suffix,
                    },
                );
            }
        }
        if self.staleness {
            self.stale_markers(&seen, ms, &mut batch);
        }
        let mut out = batch.out;
        if !batch.cur.timeseries.is_empty() {
            out.push(batch.cur);
        }
        if let Some(first) = out.first_mut() {
            first.metadata = metadata.into_values().collect();
        }
        out
    }

    /// Forgets the series not `seen` in this harvest and writes a stale marker for each of
    /// their label sets, unless a live series is written with the same labels (a series
    /// that was reset comes back under a new id).
    fn stale_markers(&mut self, seen: &HashSet<SeriesId>, ms: i64, batch: &mut Batch) {
        if self.written.len() == seen.len() {
            return; // every remembered series was seen: nothing went away
        }
        let mut gone = Vec::new();
        self.written.retain(|id, sets| {
            let keep = seen.contains(id);
            if !keep {
                gone.append(sets);
            }
            keep
        });
        if gone.is_empty() {
            return;
        }
        let live: HashSet<&Vec<Label>> = self.written.values().flatten().collect();
        let stale = f64::from_bits(STALE_NAN);
        for labels in gone {
            if !live.contains(&labels) {
                batch.push(TimeSeries {
                    labels,
                    samples: vec![Sample {
                        value: stale,
                        timestamp: ms,
                    }],
                    histograms: Vec::new(),
                });
            }
        }
    }

    /// A series' own labels (names mapped) and the extra labels it has none of, sorted by
    /// name, without `__name__`.
    fn base_labels(&self, s: SeriesRef<'_>) -> Vec<Label> {
        let own = s.labels();
        let mut labels = Vec::with_capacity(own.len() + self.extra.len() + 2);
        for (k, v) in own.iter() {
            labels.push(Label {
                name: label_name(k).into_owned(),
                value: v.to_owned(),
            });
        }
        for e in &self.extra {
            if own.get(&e.name).is_none() {
                labels.push(e.clone());
            }
        }
        // Remote write wants label names sorted.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels.dedup_by(|a, b| a.name == b.name);
        labels
    }
}

/// One value of a series.
enum Item {
    Float(f64),
    Native(Histogram),
}

/// `base` with `__name__` (first: it sorts before every other label name) and `le` in place
/// (replacing a label of that name).
fn with_name(base: &[Label], name: &str, le: Option<&str>) -> Vec<Label> {
    let mut labels = Vec::with_capacity(base.len() + 2);
    labels.push(Label {
        name: "__name__".into(),
        value: name.to_owned(),
    });
    match le {
        None => labels.extend(base.iter().cloned()),
        Some(le) => {
            let at = base.partition_point(|l| l.name.as_str() < "le");
            labels.extend(base[..at].iter().cloned());
            labels.push(Label {
                name: "le".into(),
                value: le.to_owned(),
            });
            let rest = &base[at..];
            let skip = rest.first().is_some_and(|l| l.name == "le") as usize;
            labels.extend(rest[skip..].iter().cloned());
        }
    }
    labels
}

/// A timing as a Prometheus native histogram sample at `timestamp` (ms).
///
/// Lossless for scales -4 to 8: the schema is the scale, and the bucket `(b^i, b^(i+1)]` of
/// the distribution is the native bucket `i + 1` (Prometheus numbers a bucket by its upper
/// bound). A scale above 8 is lowered to 8, merging buckets. A scale below -4 is written at
/// schema -4, each bucket's count in the finer bucket that ends where it ends (counts at the
/// original boundaries stay exact). The zero bucket is `[0, 0]`: a timing records values at
/// or below zero there.
///
/// ```
/// use sampler_api::Distribution;
/// use sampler_exporter_remote_write::native_histogram;
/// let mut d = Distribution::new(0);
/// for v in [0.0, 0.75, 1.5, 1.75, 6.0] {
///     d.record(v);
/// }
/// let h = native_histogram(&d, 1000);
/// assert_eq!((h.schema, h.count_int, h.zero_count_int, h.sum), (0, 5, 1, 10.0));
/// // (0.5, 1] is native bucket 0, (1, 2] bucket 1, (4, 8] bucket 3: one span of 4 buckets
/// // with counts 1, 2, 0, 1.
/// assert_eq!((h.positive_spans[0].offset, h.positive_spans[0].length), (0, 4));
/// assert_eq!(h.positive_deltas, [1, 1, -2, 1]);
/// ```
pub fn native_histogram(d: &Distribution, timestamp: i64) -> Histogram {
    let lowered;
    let d = if d.scale() > MAX_SCHEMA {
        let mut c = d.clone();
        c.downscale(d.scale() - MAX_SCHEMA);
        lowered = c;
        &lowered
    } else {
        d
    };
    let schema = d.scale().max(MIN_SCHEMA);
    let shift = (schema - d.scale()) as u32;
    let mut spans: Vec<BucketSpan> = Vec::new();
    let mut deltas = Vec::new();
    let mut prev = 0i64;
    let mut last: Option<i64> = None;
    for (i, &c) in d.bucket_counts().iter().enumerate() {
        if c == 0 {
            continue;
        }
        let index = (d.offset() as i64 + i as i64 + 1) << shift;
        let c = c.min(i64::MAX as u64) as i64;
        match (last, spans.last_mut()) {
            (Some(l), Some(span)) if index - l - 1 <= 2 => {
                // A gap of up to two empty buckets costs less inside the span than a new one.
                for _ in 0..index - l - 1 {
                    deltas.push(-prev);
                    prev = 0;
                }
                span.length += (index - l) as u32;
            }
            (Some(l), _) => spans.push(BucketSpan {
                offset: (index - l - 1).clamp(0, i32::MAX as i64) as i32,
                length: 1,
            }),
            (None, _) => spans.push(BucketSpan {
                offset: index.clamp(i32::MIN as i64, i32::MAX as i64) as i32,
                length: 1,
            }),
        }
        deltas.push(c.wrapping_sub(prev));
        prev = c;
        last = Some(index);
    }
    Histogram {
        count_int: d.count(),
        sum: d.sum(),
        schema: schema as i32,
        zero_threshold: 0.0,
        zero_count_int: d.zero_count(),
        positive_spans: spans,
        positive_deltas: deltas,
        reset_hint: 0,
        timestamp,
    }
}

/// The number of samples in a request (a native histogram counts as one).
pub fn samples(r: &WriteRequest) -> usize {
    r.timeseries
        .iter()
        .map(|t| t.samples.len() + t.histograms.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sampler_api::{Descriptor, Harvester, Registry};

    fn snapshot() -> std::sync::Arc<Snapshot> {
        static REQ: Descriptor = Descriptor::counter("http.requests", "1", "requests");
        static CPU: Descriptor =
            Descriptor::fractional_counter("process.cpu.time", "s", 100, "cpu");
        static LAT: Descriptor = Descriptor::timing("http.duration", "s", "latency");
        static Q: Descriptor = Descriptor::gauge("queue.depth", "1", "depth");
        let r = Registry::new();
        let req = r.counter_family(&REQ, &["path"]);
        req.get(&["/a\"b\\c\nd"]).add(3);
        let cpu = r.counter(&CPU);
        cpu.add(7);
        let lat = r.timing(&LAT);
        lat.record(0.3);
        lat.record(3.0);
        let q = r.gauge(&Q);
        q.set(-2.5);
        let h = Harvester::builder().registry(r).self_metrics(false).build();
        let s = h.harvest_now();
        drop((req, cpu, lat, q));
        s
    }

    fn find<'a>(r: &'a [WriteRequest], name: &str, le: Option<&str>) -> &'a TimeSeries {
        r.iter()
            .flat_map(|w| &w.timeseries)
            .find(|t| {
                t.labels
                    .iter()
                    .any(|l| l.name == "__name__" && l.value == name)
                    && le.map_or(true, |le| {
                        t.labels.iter().any(|l| l.name == "le" && l.value == le)
                    })
            })
            .unwrap_or_else(|| panic!("{name} {le:?} missing"))
    }

    #[test]
    fn maps_names_values_and_labels() {
        let mut e = Encoder::new(
            TimingMode::Classic,
            vec![0.5, 1.0],
            [
                ("job".to_string(), "j".to_string()),
                ("instance".to_string(), String::new()),
            ]
            .into_iter()
            .collect(),
            2000,
            true,
        );
        let s = snapshot();
        let r = e.encode(&s);
        let c = find(&r, "http_requests_total", None);
        assert_eq!(c.samples[0].value, 3.0);
        let names: Vec<&str> = c.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "job", "path"]);
        assert_eq!(c.labels[2].value, "/a\"b\\c\nd");
        assert_eq!(
            find(&r, "process_cpu_time_seconds_total", None).samples[0].value,
            0.07
        );
        assert_eq!(find(&r, "queue_depth", None).samples[0].value, -2.5);
        assert_eq!(
            find(&r, "http_duration_seconds_bucket", Some("0.5")).samples[0].value,
            1.0
        );
        assert_eq!(
            find(&r, "http_duration_seconds_bucket", Some("1")).samples[0].value,
            1.0
        );
        assert_eq!(
            find(&r, "http_duration_seconds_bucket", Some("+Inf")).samples[0].value,
            2.0
        );
        assert_eq!(
            find(&r, "http_duration_seconds_count", None).samples[0].value,
            2.0
        );
        assert_eq!(
            find(&r, "http_duration_seconds_sum", None).samples[0].value,
            3.3
        );
        let ts = s.time.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!(r
            .iter()
            .flat_map(|w| &w.timeseries)
            .all(|t| t.samples[0].timestamp == ts));
        assert_eq!(r[0].metadata.len(), 4);
    }

    #[test]
    fn splits_at_the_sample_limit_and_loses_none() {
        let s = snapshot();
        let all = Encoder::new(
            TimingMode::Classic,
            vec![0.5, 1.0],
            BTreeMap::new(),
            100_000,
            false,
        )
        .encode(&s);
        let total: usize = all.iter().map(samples).sum();
        for limit in 1..=total + 1 {
            let r = Encoder::new(
                TimingMode::Classic,
                vec![0.5, 1.0],
                BTreeMap::new(),
                limit,
                false,
            )
            .encode(&s);
            assert!(r.iter().all(|w| samples(w) <= limit && samples(w) > 0));
            assert_eq!(r.iter().map(samples).sum::<usize>(), total);
        }
    }

    /// The native buckets of `h` as `(upper bound, count)`, decoded from spans and deltas.
    fn native_buckets(h: &Histogram) -> Vec<(f64, u64)> {
        let mut out = Vec::new();
        let (mut index, mut count, mut k) = (0i64, 0i64, 0);
        for (n, span) in h.positive_spans.iter().enumerate() {
            index += span.offset as i64 + if n == 0 { 0 } else { 1 };
            for j in 0..span.length {
                if j > 0 {
                    index += 1;
                }
                count += h.positive_deltas[k];
                k += 1;
                let upper = 2f64.powf(index as f64 / 2f64.powi(h.schema));
                out.push((upper, count as u64));
            }
        }
        assert_eq!(k, h.positive_deltas.len());
        out
    }

    #[test]
    fn r13_native_histograms_keep_every_bucket_at_every_scale() {
        let values = [
            1e-9, 3e-4, 0.001, 0.0011, 0.25, 0.3, 0.3, 1.0, 1.0001, 2.0, 7.5, 1e3, 4e6, 0.0, -1.0,
        ];
        for scale in sampler_api::distribution::MIN_SCALE..=sampler_api::distribution::MAX_SCALE {
            let mut d = Distribution::new(scale);
            for v in values {
                d.record(v);
            }
            let h = native_histogram(&d, 7);
            assert_eq!(h.schema, scale.max(-4) as i32, "scale {scale}");
            assert_eq!((h.count_int, h.zero_count_int, h.sum), (15, 2, d.sum()));
            assert_eq!(h.timestamp, 7);
            let got = native_buckets(&h);
            let total: u64 = got.iter().map(|b| b.1).sum();
            assert_eq!(total + h.zero_count_int, h.count_int, "scale {scale}");
            // Every bucket of the distribution is there with its count and its upper bound
            // (all other native buckets are empty).
            let want: Vec<(f64, u64)> = d.buckets().map(|(_, hi, c)| (hi, c)).collect();
            let nonzero: Vec<(f64, u64)> = got.into_iter().filter(|b| b.1 > 0).collect();
            assert_eq!(nonzero.len(), want.len(), "scale {scale}");
            for (g, w) in nonzero.iter().zip(&want) {
                assert_eq!(g.1, w.1, "scale {scale}");
                assert!(
                    g.0 == w.0 || (g.0 / w.0 - 1.0).abs() < 1e-9,
                    "scale {scale}: {g:?} vs {w:?}"
                );
            }
        }
    }

    #[test]
    fn r13_an_empty_timing_is_an_empty_native_histogram() {
        let h = native_histogram(&Distribution::new(3), 1);
        assert_eq!((h.count_int, h.zero_count_int, h.sum), (0, 0, 0.0));
        assert!(h.positive_spans.is_empty() && h.positive_deltas.is_empty());
    }

    fn markers(r: &[WriteRequest]) -> Vec<String> {
        r.iter()
            .flat_map(|w| &w.timeseries)
            .filter(|t| t.samples.iter().any(|s| s.value.to_bits() == STALE_NAN))
            .map(|t| {
                t.labels
                    .iter()
                    .map(|l| format!("{}={}", l.name, l.value))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }

    #[test]
    fn r13_a_series_that_goes_away_gets_one_stale_marker_per_series_it_was_written_as() {
        static A: Descriptor = Descriptor::counter("stale.a", "1", "a");
        static T: Descriptor = Descriptor::timing("stale.t", "s", "t");
        let r = Registry::new();
        let fam = r.counter_family(&A, &["k"]);
        let keep = fam.get(&["keep"]);
        keep.add(1);
        let gone = fam.get(&["gone"]);
        gone.add(2);
        let tf = r.timing_family(&T, &["k"]);
        let t = tf.get(&["x"]);
        t.record(0.5);
        let h = Harvester::builder().registry(r).self_metrics(false).build();
        let mut e = Encoder::new(TimingMode::Both, vec![1.0], BTreeMap::new(), 3, false);
        assert!(markers(&e.encode(&h.harvest_now())).is_empty());
        assert!(markers(&e.encode(&h.harvest_now())).is_empty());
        drop((gone, t));
        assert!(fam.remove(&["gone"]) && tf.remove(&["x"]));
        let third = h.harvest_now();
        let r3 = e.encode(&third);
        let mut m = markers(&r3);
        m.sort();
        assert_eq!(
            m,
            [
                "__name__=stale_a_total,k=gone",
                "__name__=stale_t_seconds,k=x",
                "__name__=stale_t_seconds_bucket,k=x,le=+Inf",
                "__name__=stale_t_seconds_bucket,k=x,le=1",
                "__name__=stale_t_seconds_count,k=x",
                "__name__=stale_t_seconds_sum,k=x",
            ]
        );
        let ts = third.time.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
        assert!(r3
            .iter()
            .flat_map(|w| &w.timeseries)
            .all(|t| t.samples.iter().all(|s| s.timestamp == ts)));
        // Split like every other sample, and sent once only.
        assert!(r3.iter().all(|w| samples(w) <= 3));
        assert!(markers(&e.encode(&h.harvest_now())).is_empty());
        // Off: none.
        let mut off = Encoder::new(TimingMode::Classic, vec![], BTreeMap::new(), 10, false)
            .staleness_markers(false);
        off.encode(&h.harvest_now());
        keep.add(1);
        drop(keep);
        assert!(fam.remove(&["keep"]));
        assert!(markers(&off.encode(&h.harvest_now())).is_empty());
    }
}
