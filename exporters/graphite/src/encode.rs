//! Snapshots to Graphite points: paths (cached per series), counter and timing cursors, and
//! the plaintext or pickle bytes of one harvest.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use sampler_api::{Distribution, SeriesId, SeriesRef, Snapshot, Value};

use crate::config::{CounterMode, GraphiteConfig, Protocol, TagStyle};
use crate::mapping::{self, Num, Template};
use crate::pickle::FrameWriter;

/// What one snapshot became.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Encoded {
    /// Points written.
    pub points: u64,
    /// Readings skipped because their value was NaN or infinite.
    pub not_finite: u64,
    /// Readings skipped because their kind is unknown to this exporter.
    pub unknown_kind: u64,
}

/// Per-series state: the path, and the previous reading for deltas.
struct State {
    head: String,
    tail: String,
    last: Last,
    seen: u64,
}

enum Last {
    None,
    Counter {
        raw: u64,
        start: SystemTime,
    },
    Timing {
        dist: Box<Distribution>,
        start: SystemTime,
    },
}

/// Turns snapshots into plaintext lines or pickle frames, keeping per-series cursors.
///
/// ```
/// use sampler_api::{Descriptor, Harvester, Registry};
/// use sampler_exporter_graphite::{Encoder, GraphiteConfig};
///
/// static SENT: Descriptor = Descriptor::counter("mail.sent", "1", "mails sent");
/// let registry = Registry::new();
/// let sent = registry.counter(&SENT);
/// let harvester = Harvester::builder().registry(registry).self_metrics(false).build();
/// let mut enc = Encoder::new(&GraphiteConfig { prefix: "app".into(), ..Default::default() })?;
/// sent.add(5);
/// let mut out = Vec::new();
/// enc.encode(&harvester.harvest_now(), &mut out);
/// sent.add(2);
/// out.clear();
/// let s = harvester.harvest_now();
/// enc.encode(&s, &mut out);
/// let ts = s.time.duration_since(std::time::UNIX_EPOCH)?.as_secs();
/// assert_eq!(String::from_utf8(out)?, format!("app.mail.sent 2 {ts}\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Encoder {
    prefix: String,
    tags: TagStyle,
    template: Template,
    counters: CounterMode,
    percentiles: Vec<(f64, String)>,
    pickle: bool,
    states: HashMap<SeriesId, State>,
    generation: u64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("prefix", &self.prefix)
            .field("series", &self.states.len())
            .finish()
    }
}

impl Encoder {
    /// An encoder for a config's mapping settings (prefix, tags, template, counters,
    /// percentiles, and whether the protocol is pickle).
    pub fn new(config: &GraphiteConfig) -> Result<Encoder, String> {
        config.validate()?;
        let mut prefix = String::new();
        mapping::push_dotted(&mut prefix, &config.prefix);
        Ok(Encoder {
            prefix,
            tags: config.tags,
            template: Template::parse(&config.template)?,
            counters: config.counters,
            percentiles: config
                .percentiles
                .iter()
                .map(|q| (*q, mapping::percentile_suffix(*q)))
                .collect(),
            pickle: config.protocol == Protocol::Pickle,
            states: HashMap::new(),
            generation: 0,
        })
    }

    /// Appends one snapshot's points to `out` (lines, or whole pickle frames) and forgets the
    /// series it no longer holds.
    pub fn encode(&mut self, snapshot: &Snapshot, out: &mut Vec<u8>) -> Encoded {
        self.generation += 1;
        let ts = snapshot
            .time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut w = Out {
            out,
            pickle: if self.pickle {
                Some(FrameWriter::default())
            } else {
                None
            },
            path: String::new(),
            ts,
            enc: Encoded::default(),
        };
        for s in snapshot.series() {
            self.series(s, &mut w);
        }
        if let Some(p) = &mut w.pickle {
            p.finish(w.out);
        }
        let generation = self.generation;
        self.states.retain(|_, st| st.seen == generation);
        w.enc
    }

    fn series(&mut self, s: SeriesRef<'_>, w: &mut Out<'_>) {
        let generation = self.generation;
        let st = self.states.entry(s.id()).or_insert_with(|| {
            let mut head = self.prefix.clone();
            let tail = match self.tags {
                TagStyle::Tagged => {
                    mapping::push_dotted(&mut head, s.descriptor().name());
                    mapping::tag_suffix(s.labels())
                }
                TagStyle::Template => {
                    self.template
                        .render(&mut head, s.descriptor().name(), s.labels());
                    String::new()
                }
            };
            if head.is_empty() {
                head.push('_');
            }
            State {
                head,
                tail,
                last: Last::None,
                seen: 0,
            }
        });
        st.seen = generation;
        let (head, tail) = (&st.head, &st.tail);
        match s.value() {
            Value::Counter(raw) => {
                let raw = *raw;
                let delta = match (&st.last, self.counters) {
                    (_, CounterMode::Cumulative) => raw,
                    (Last::Counter { raw: prev, start }, _)
                        if *start == s.start_time() && raw >= *prev =>
                    {
                        raw - prev
                    }
                    // First reading, or a reset: the new reading counts from zero.
                    _ => raw,
                };
                let v = if s.descriptor().divisor() == 1 {
                    Num::Int(delta)
                } else {
                    Num::Float(s.descriptor().counter_value(delta))
                };
                w.point(head, None, tail, v);
                if self.counters == CounterMode::Delta {
                    st.last = Last::Counter {
                        raw,
                        start: s.start_time(),
                    };
                }
            }
            Value::Gauge(v) => {
                if v.is_finite() {
                    w.point(head, None, tail, Num::Float(*v));
                } else {
                    w.enc.not_finite += 1;
                }
            }
            Value::Timing(d) => {
                let interval = match (&st.last, self.counters) {
                    (_, CounterMode::Cumulative) => None,
                    (Last::Timing { dist, start }, _) if *start == s.start_time() => {
                        interval_of(d, dist)
                    }
                    _ => None,
                };
                let shown: &Distribution = interval.as_ref().unwrap_or(d);
                w.point(head, Some("count"), tail, Num::Int(shown.count()));
                let sum = shown.sum();
                if sum.is_finite() {
                    w.point(head, Some("sum"), tail, Num::Float(sum));
                } else {
                    w.enc.not_finite += 1;
                }
                if shown.count() > 0 {
                    let mut f = |suffix: &str, v: Option<f64>| match v {
                        Some(v) if v.is_finite() => {
                            w.point(head, Some(suffix), tail, Num::Float(v))
                        }
                        _ => w.enc.not_finite += 1,
                    };
                    f("min", Some(shown.min()));
                    f("max", Some(shown.max()));
                    f("mean", shown.mean());
                    for (q, suffix) in &self.percentiles {
                        f(suffix, shown.quantile(*q));
                    }
                }
                if self.counters == CounterMode::Delta {
                    st.last = Last::Timing {
                        dist: d.clone(),
                        start: s.start_time(),
                    };
                }
            }
            _ => w.enc.unknown_kind += 1,
        }
    }
}

/// G11, a timing's interval: the observations between two cumulative readings of one
/// series. Count, sum and buckets are the differences; min (max) is exact when the
/// lifetime min (max) moved in this interval, else the edge of the lowest (highest)
/// non-empty bucket, kept within the lifetime min and max; an interval of one observation
/// takes the exact one for both. `None` when the reading went
/// back (a reset: the reading itself is the interval).
pub fn interval_of(now: &Distribution, prev: &Distribution) -> Option<Distribution> {
    if now.count() < prev.count() {
        return None;
    }
    let mut prev = prev.clone();
    let mut now_scaled;
    let now = if now.scale() < prev.scale() {
        prev.downscale(prev.scale() - now.scale());
        now
    } else if now.scale() > prev.scale() {
        now_scaled = now.clone();
        now_scaled.downscale(now.scale() - prev.scale());
        &now_scaled
    } else {
        now
    };
    let zero = now.zero_count().checked_sub(prev.zero_count())?;
    let offset = now.offset().min(prev.offset());
    let end = (now.offset() + now.bucket_counts().len() as i32)
        .max(prev.offset() + prev.bucket_counts().len() as i32);
    let at = |d: &Distribution, i: i32| -> u64 {
        let k = i - d.offset();
        if k < 0 {
            0
        } else {
            d.bucket_counts().get(k as usize).copied().unwrap_or(0)
        }
    };
    let mut buckets = Vec::with_capacity((end - offset).max(0) as usize);
    for i in offset..end {
        buckets.push(at(now, i).checked_sub(at(&prev, i))?);
    }
    let first = buckets.iter().position(|c| *c > 0);
    let last = buckets.iter().rposition(|c| *c > 0);
    let min = if prev.count() == 0 || now.min() < prev.min() {
        now.min()
    } else if zero > 0 {
        0f64.max(now.min())
    } else {
        match first {
            Some(k) => now.bucket_bounds(offset + k as i32).0.max(now.min()),
            None => now.min(),
        }
    };
    let max = if prev.count() == 0 || now.max() > prev.max() {
        now.max()
    } else {
        match last {
            Some(k) => now.bucket_bounds(offset + k as i32).1.min(now.max()),
            None => 0f64.min(now.max()),
        }
    };
    let count = zero + buckets.iter().sum::<u64>();
    let min_exact = prev.count() == 0 || now.min() < prev.min();
    let max_exact = prev.count() == 0 || now.max() > prev.max();
    // One observation is both the min and the max: take whichever is known exactly.
    let (min, max) = match (count, min_exact, max_exact) {
        (1, false, true) => (max, max),
        (1, true, false) => (min, min),
        _ => (min, max.max(min)),
    };
    Some(Distribution::from_parts(
        now.scale(),
        zero,
        offset,
        buckets,
        now.sum() - prev.sum(),
        min,
        max,
    ))
}

struct Out<'a> {
    out: &'a mut Vec<u8>,
    pickle: Option<FrameWriter>,
    path: String,
    ts: u64,
    enc: Encoded,
}

impl Out<'_> {
    fn point(&mut self, head: &str, suffix: Option<&str>, tail: &str, v: Num) {
        self.enc.points += 1;
        match &mut self.pickle {
            None => mapping::push_line(self.out, head, suffix, tail, v, self.ts),
            Some(p) => {
                self.path.clear();
                self.path.push_str(head);
                if let Some(s) = suffix {
                    self.path.push('.');
                    self.path.push_str(s);
                }
                self.path.push_str(tail);
                p.point(self.out, &self.path, v, self.ts);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sampler_api::{Descriptor, Kind, Labels, Series};
    use std::sync::Arc;
    use std::time::Duration;

    fn series(id: SeriesId, d: &Descriptor, labels: &[(&str, &str)], v: Value) -> Series {
        Series::new(
            id,
            Arc::new(d.clone()),
            Labels::from_pairs(labels).unwrap(),
            UNIX_EPOCH + Duration::from_secs(1000),
            v,
        )
    }

    fn snap(t: u64, series: Vec<Series>) -> Snapshot {
        Snapshot::from_series(
            UNIX_EPOCH + Duration::from_secs(t),
            Duration::from_secs(10),
            1,
            series,
        )
    }

    fn lines(enc: &mut Encoder, s: &Snapshot) -> (String, Encoded) {
        let mut out = Vec::new();
        let e = enc.encode(s, &mut out);
        (String::from_utf8(out).unwrap(), e)
    }

    #[test]
    fn counters_are_deltas_per_series_and_resets_restart_them() {
        let c = Descriptor::owned("jobs.done", Kind::Counter, "1", "");
        let cpu = Descriptor::owned("cpu.time", Kind::Counter, "s", "").with_divisor(1000);
        let (a, b) = (SeriesId::next(), SeriesId::next());
        let mut enc = Encoder::new(&GraphiteConfig::default()).unwrap();
        let s1 = snap(
            2000,
            vec![
                series(a, &c, &[("q", "x")], Value::Counter(10)),
                series(b, &cpu, &[], Value::Counter(1500)),
            ],
        );
        assert_eq!(
            lines(&mut enc, &s1).0,
            "jobs.done;q=x 10 2000\ncpu.time 1.5 2000\n"
        );
        let s2 = snap(
            2010,
            vec![
                series(a, &c, &[("q", "x")], Value::Counter(15)),
                series(b, &cpu, &[], Value::Counter(1250)), // went back: a reset
            ],
        );
        assert_eq!(
            lines(&mut enc, &s2).0,
            "jobs.done;q=x 5 2010\ncpu.time 1.25 2010\n"
        );
        let mut cumulative = Encoder::new(&GraphiteConfig {
            counters: CounterMode::Cumulative,
            ..Default::default()
        })
        .unwrap();
        lines(&mut cumulative, &s1);
        assert_eq!(
            lines(&mut cumulative, &s2).0,
            "jobs.done;q=x 15 2010\ncpu.time 1.25 2010\n"
        );
    }

    #[test]
    fn gauges_skip_non_finite_values_and_count_them() {
        let g = Descriptor::owned("temp", Kind::Gauge, "1", "");
        let mut enc = Encoder::new(&GraphiteConfig {
            prefix: "p".into(),
            tags: TagStyle::Template,
            ..Default::default()
        })
        .unwrap();
        let s = snap(
            5,
            vec![
                series(SeriesId::next(), &g, &[("room", "a b")], Value::Gauge(-2.5)),
                series(
                    SeriesId::next(),
                    &g,
                    &[("room", "c")],
                    Value::Gauge(f64::NAN),
                ),
                series(
                    SeriesId::next(),
                    &g,
                    &[("room", "d")],
                    Value::Gauge(f64::INFINITY),
                ),
            ],
        );
        let (text, e) = lines(&mut enc, &s);
        assert_eq!(text, "p.temp.a_b -2.5 5\n");
        assert_eq!(
            e,
            Encoded {
                points: 1,
                not_finite: 2,
                unknown_kind: 0
            }
        );
    }

    #[test]
    fn timings_send_the_interval_statistics() {
        let t = Descriptor::owned("op.duration", Kind::Timing, "s", "");
        let id = SeriesId::next();
        let mut d = Distribution::new(3);
        for v in [1.0, 2.0, 3.0] {
            d.record(v);
        }
        let mut enc = Encoder::new(&GraphiteConfig {
            percentiles: vec![0.5],
            ..Default::default()
        })
        .unwrap();
        let s1 = snap(
            10,
            vec![series(id, &t, &[], Value::Timing(Box::new(d.clone())))],
        );
        let p50 = d.quantile(0.5).unwrap();
        let p50 = dtoa::Buffer::new().format(p50).to_owned();
        assert_eq!(
            lines(&mut enc, &s1).0,
            format!(
                "op.duration.count 3 10\nop.duration.sum 6.0 10\nop.duration.min 1.0 10\n\
                 op.duration.max 3.0 10\nop.duration.mean 2.0 10\nop.duration.p50 {p50} 10\n"
            )
        );
        d.record(8.0);
        let s2 = snap(
            20,
            vec![series(id, &t, &[], Value::Timing(Box::new(d.clone())))],
        );
        let (text, _) = lines(&mut enc, &s2);
        assert!(
            text.starts_with(
                "op.duration.count 1 20\nop.duration.sum 8.0 20\nop.duration.min 8.0 20\n\
             op.duration.max 8.0 20\nop.duration.mean 8.0 20\nop.duration.p50 8.0 20\n"
            ),
            "{text}"
        );
        // Nothing new: count and sum 0, no statistics of an empty interval.
        let s3 = snap(
            30,
            vec![series(id, &t, &[], Value::Timing(Box::new(d.clone())))],
        );
        assert_eq!(
            lines(&mut enc, &s3).0,
            "op.duration.count 0 30\nop.duration.sum 0.0 30\n"
        );
    }

    #[test]
    fn interval_min_and_max_stay_within_the_lifetime_ones() {
        let mut prev = Distribution::new(3);
        for v in [0.5, 100.0] {
            prev.record(v);
        }
        let mut now = prev.clone();
        for v in [3.0, 4.0] {
            now.record(v);
        }
        let i = interval_of(&now, &prev).unwrap();
        assert_eq!(i.count(), 2);
        assert_eq!(i.sum(), 7.0);
        let err = 1.0 + 2.0 * Distribution::relative_error(3);
        assert!(i.min() <= 3.0 && i.min() * err >= 3.0, "{}", i.min());
        assert!(i.max() >= 4.0 && i.max() <= 4.0 * err, "{}", i.max());
        assert!(interval_of(&prev, &now).is_none());
    }

    #[test]
    fn forgotten_series_lose_their_cursor() {
        let c = Descriptor::owned("n", Kind::Counter, "1", "");
        let id = SeriesId::next();
        let mut enc = Encoder::new(&GraphiteConfig::default()).unwrap();
        lines(
            &mut enc,
            &snap(1, vec![series(id, &c, &[], Value::Counter(4))]),
        );
        lines(&mut enc, &snap(2, vec![]));
        assert_eq!(enc.states.len(), 0);
    }
}
