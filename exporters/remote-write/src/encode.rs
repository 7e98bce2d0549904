//! From a snapshot to remote write requests: names and labels as in `spec/prometheus.md`,
//! counters and gauges as one sample each at the harvest time, timings as classic histogram
//! series; requests split at `max_samples_per_send`.

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use sampler_api::{Kind, Series, Snapshot, Value};
use sampler_exporter_prometheus::mapping::{family_name, label_name, unit_suffix};

use crate::config::TimingMode;
use crate::proto::{
    Label, MetricMetadata, Sample, TimeSeries, WriteRequest, COUNTER, GAUGE, HISTOGRAM,
};

/// Turns snapshots into requests; keeps what does not change from one harvest to the next.
#[derive(Debug)]
pub struct Encoder {
    timings: TimingMode,
    bounds: Vec<f64>,
    /// `job`, `instance` and the external labels, sorted; a series' own label wins.
    extra: Vec<Label>,
    max_samples: usize,
    metadata: bool,
}

impl Encoder {
    /// An encoder; `extra` are labels added to every series unless it has its own.
    pub fn new(
        timings: TimingMode,
        bounds: Vec<f64>,
        extra: BTreeMap<String, String>,
        max_samples: usize,
        metadata: bool,
    ) -> Self {
        Encoder {
            timings,
            bounds,
            extra: extra
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(name, value)| Label { name, value })
                .collect(),
            max_samples: max_samples.max(1),
            metadata,
        }
    }

    /// The requests for one snapshot, each with at most `max_samples` samples, in series
    /// order; family metadata rides in the first.
    pub fn encode(&self, snapshot: &Snapshot) -> Vec<WriteRequest> {
        let ms = snapshot
            .time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let mut out = Vec::new();
        let mut cur = WriteRequest::default();
        let mut metadata: BTreeMap<String, MetricMetadata> = BTreeMap::new();
        for s in &snapshot.series {
            let kind = s.descriptor.kind();
            let suffix = unit_suffix(s.descriptor.unit());
            let family = family_name(s.descriptor.name(), kind, &suffix);
            let (ty, base) = match (kind, &s.value) {
                (Kind::Counter, Value::Counter(raw)) => {
                    let name = format!("{family}_total");
                    self.push(
                        &mut cur,
                        &mut out,
                        s,
                        &name,
                        None,
                        s.descriptor.counter_value(*raw),
                        ms,
                    );
                    (COUNTER, family)
                }
                (Kind::Gauge, Value::Gauge(v)) => {
                    self.push(&mut cur, &mut out, s, &family, None, *v, ms);
                    (GAUGE, family)
                }
                (Kind::Timing, Value::Timing(d)) => {
                    if self.timings == TimingMode::Classic {
                        let bucket = format!("{family}_bucket");
                        for &b in &self.bounds {
                            let le = sampler_exporter_prometheus::mapping::go_float(b);
                            let c = d.count_at_most(b) as f64;
                            self.push(&mut cur, &mut out, s, &bucket, Some(&le), c, ms);
                        }
                        self.push(
                            &mut cur,
                            &mut out,
                            s,
                            &bucket,
                            Some("+Inf"),
                            d.count() as f64,
                            ms,
                        );
                    }
                    self.push(
                        &mut cur,
                        &mut out,
                        s,
                        &format!("{family}_sum"),
                        None,
                        d.sum(),
                        ms,
                    );
                    self.push(
                        &mut cur,
                        &mut out,
                        s,
                        &format!("{family}_count"),
                        None,
                        d.count() as f64,
                        ms,
                    );
                    (HISTOGRAM, family)
                }
                // A kind added to the standard later has no remote write form here.
                _ => continue,
            };
            if self.metadata && !metadata.contains_key(&base) {
                metadata.insert(
                    base.clone(),
                    MetricMetadata {
                        r#type: ty,
                        metric_family_name: base,
                        help: s.descriptor.description().to_owned(),
                        unit: suffix,
                    },
                );
            }
        }
        if !cur.timeseries.is_empty() {
            out.push(cur);
        }
        if let Some(first) = out.first_mut() {
            first.metadata = metadata.into_values().collect();
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &self,
        cur: &mut WriteRequest,
        out: &mut Vec<WriteRequest>,
        s: &Series,
        name: &str,
        le: Option<&str>,
        value: f64,
        ms: i64,
    ) {
        if cur.timeseries.len() >= self.max_samples {
            out.push(std::mem::take(cur));
        }
        let mut labels = Vec::with_capacity(s.labels.len() + self.extra.len() + 2);
        labels.push(Label {
            name: "__name__".into(),
            value: name.to_owned(),
        });
        for (k, v) in s.labels.iter() {
            labels.push(Label {
                name: label_name(k).into_owned(),
                value: v.to_owned(),
            });
        }
        if let Some(le) = le {
            labels.push(Label {
                name: "le".into(),
                value: le.to_owned(),
            });
        }
        for e in &self.extra {
            if s.labels.get(&e.name).is_none() && e.name != "le" {
                labels.push(e.clone());
            }
        }
        // Remote write wants label names sorted; `__name__` sorts first of the ASCII names.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels.dedup_by(|a, b| a.name == b.name);
        cur.timeseries.push(TimeSeries {
            labels,
            samples: vec![Sample {
                value,
                timestamp: ms,
            }],
        });
    }
}

/// The number of samples in a request.
pub fn samples(r: &WriteRequest) -> usize {
    r.timeseries.iter().map(|t| t.samples.len()).sum()
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
        let e = Encoder::new(
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
}
