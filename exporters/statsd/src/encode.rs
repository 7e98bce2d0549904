//! From snapshots to StatsD lines: names, tags, counter deltas, gauges and timing lines, as
//! `spec/statsd.md` writes them down.

use std::collections::HashMap;

use sampler_api::{Distribution, Kind, SeriesId, SeriesRef, Snapshot, Value};

use crate::config::{StatsdConfig, TagStyle, TimingMode};

/// Writes the sanitised form of `text` (spec: "Names and tags"): each of `: | @ # , ;`, every
/// whitespace and every control character becomes `_`; with `dots` a `.` does too (a label
/// value folded into a name stays one segment). Empty text becomes `_`.
///
/// ```
/// use sampler_exporter_statsd::sanitize;
/// let mut out = String::new();
/// sanitize(&mut out, "a:b|c@d#e,f;g h\ni.j", false);
/// assert_eq!(out, "a_b_c_d_e_f_g_h_i.j");
/// out.clear();
/// sanitize(&mut out, "v1.2", true);
/// assert_eq!(out, "v1_2");
/// ```
pub fn sanitize(out: &mut String, text: &str, dots: bool) {
    if text.is_empty() {
        out.push('_');
        return;
    }
    for c in text.chars() {
        let bad = matches!(c, ':' | '|' | '@' | '#' | ',' | ';')
            || c.is_whitespace()
            || c.is_control()
            || (dots && c == '.');
        out.push(if bad { '_' } else { c });
    }
}

/// Whether a line weighted `w` (sample rate `1/w`, written as the shortest decimal that reads
/// back as `1.0 / w`) makes a daemon computing `1 / rate` count exactly `w` again.
///
/// ```
/// use sampler_exporter_statsd::exact_weight;
/// assert!(exact_weight(1) && exact_weight(3) && exact_weight(1 << 40));
/// assert!(!exact_weight(49)); // 1 / (1 / 49.0) == 49.00000000000001
/// ```
pub fn exact_weight(w: u64) -> bool {
    let w = w as f64;
    1.0 / (1.0 / w) == w
}

/// The largest weight at most `w` (>= 1) that [`exact_weight`] accepts.
fn exact_at_most(w: u64) -> u64 {
    let mut g = w.max(1);
    while !exact_weight(g) {
        g -= 1;
    }
    g
}

/// One timing line: a value standing for `weight` observations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TimingLine {
    /// The value written on the line.
    pub value: f64,
    /// How many observations it stands for (the line's sample rate is `1 / weight`).
    pub weight: u64,
}

/// The observations of one interval, as the difference of two cumulative distributions.
#[derive(Clone, Debug, PartialEq)]
pub struct Interval {
    /// How many observations.
    pub count: u64,
    /// Their sum.
    pub sum: f64,
    /// The least, exact when `exact_min`.
    pub min: f64,
    /// The greatest, exact when `exact_max`.
    pub max: f64,
    /// `(lower, upper, count)` of each non-empty bucket in increasing order; the zero bucket
    /// is `(0, 0, n)`.
    pub buckets: Vec<(f64, f64, u64)>,
}

impl Interval {
    /// What `current` added to `previous` (both cumulative for one series); `None` when no
    /// observation was added. Without `previous`, or when `current` holds fewer observations
    /// (a reset), the whole of `current`.
    ///
    /// The interval's min is exact when it is the series' first, or when the cumulative min
    /// fell in it; otherwise it is the estimate of its lowest bucket (likewise the max).
    pub fn between(current: &Distribution, previous: Option<&Distribution>) -> Option<Interval> {
        let previous = previous.filter(|p| p.count() <= current.count());
        let Some(prev) = previous else {
            return Interval::whole(current);
        };
        if current.count() == prev.count() {
            return None;
        }
        let (mut cur, mut prev) = (current.clone(), prev.clone());
        if cur.scale() > prev.scale() {
            cur.downscale(cur.scale() - prev.scale());
        } else if prev.scale() > cur.scale() {
            prev.downscale(prev.scale() - cur.scale());
        }
        let mut buckets = Vec::new();
        let zero = cur.zero_count().saturating_sub(prev.zero_count());
        if zero > 0 {
            buckets.push((0.0, 0.0, zero));
        }
        let prev_counts = prev.bucket_counts();
        for (i, c) in cur.bucket_counts().iter().enumerate() {
            let index = cur.offset() + i as i32;
            let k = index as i64 - prev.offset() as i64;
            let before = if k >= 0 {
                prev_counts.get(k as usize).copied().unwrap_or(0)
            } else {
                0
            };
            let d = c.saturating_sub(before);
            if d > 0 {
                let (lo, hi) = cur.bucket_bounds(index);
                buckets.push((lo, hi, d));
            }
        }
        let count: u64 = buckets.iter().map(|b| b.2).sum();
        if count == 0 {
            return None;
        }
        let (first, last) = (buckets[0], buckets[buckets.len() - 1]);
        let min = if current.min() < prev.min() {
            current.min()
        } else {
            within(estimate(first.0, first.1), current.min(), current.max())
        };
        let max = if current.max() > prev.max() {
            current.max()
        } else {
            within(estimate(last.0, last.1), current.min(), current.max())
        };
        Some(Interval {
            count,
            sum: (current.sum() - prev.sum()).max(0.0),
            min,
            max: max.max(min),
            buckets,
        })
    }

    fn whole(d: &Distribution) -> Option<Interval> {
        let mut buckets = Vec::new();
        if d.zero_count() > 0 {
            buckets.push((0.0, 0.0, d.zero_count()));
        }
        buckets.extend(d.buckets());
        let count: u64 = buckets.iter().map(|b| b.2).sum();
        (count > 0).then(|| Interval {
            count,
            sum: d.sum(),
            min: d.min(),
            max: d.max(),
            buckets,
        })
    }

    /// The lines that carry this interval (`spec/statsd.md`, "Timings").
    ///
    /// Every bucket's lines hold values inside the bucket (and inside `[min, max]`), the first
    /// line is `min` and the last `max`, and the weights sum to `count`. In `Buckets` mode, up
    /// to `budget` observations go out one line each; above that each bucket gets lines in
    /// proportion to its count, and the values are moved within their buckets so that their
    /// plain mean is the interval's mean (a StatsD daemon averages lines, not weights). In
    /// `Distribution` mode each bucket is one line weighted by its count, and the values are
    /// moved so that the weighted sum is the interval's sum.
    ///
    /// ```
    /// use sampler_api::Distribution;
    /// use sampler_exporter_statsd::{Interval, TimingMode};
    /// let mut d = Distribution::new(3);
    /// for v in [1.0, 2.0, 3.0, 40.0] { d.record(v); }
    /// let lines = Interval::between(&d, None).unwrap().lines(TimingMode::Buckets, 100);
    /// let values: Vec<f64> = lines.iter().map(|l| l.value).collect();
    /// assert_eq!((values[0], values[3]), (1.0, 40.0));
    /// assert_eq!(values.iter().sum::<f64>(), 46.0);
    /// assert!(lines.iter().all(|l| l.weight == 1));
    /// ```
    pub fn lines(&self, mode: TimingMode, budget: usize) -> Vec<TimingLine> {
        // (value, weight, lo, hi, pinned)
        let mut lines: Vec<(f64, u64, f64, f64, bool)> = Vec::new();
        // Inconsistent input (a sampler's own distribution) must not panic: fall back to the
        // outer bucket bounds.
        let (first, last) = (self.buckets[0], self.buckets[self.buckets.len() - 1]);
        let min = if self.min.is_finite() {
            self.min
        } else {
            first.0
        };
        let max = if self.max.is_finite() {
            self.max.max(min)
        } else {
            last.1.max(min)
        };
        let n = self.count;
        let budget = budget.max(2) as u64;
        let bounds = |&(lo, hi, _): &(f64, f64, u64)| {
            let (lo, hi) = (within(lo, min, max), within(hi, min, max));
            (within(estimate(lo, hi), lo, hi), lo, hi)
        };
        if mode == TimingMode::Distribution {
            for b in &self.buckets {
                let (rep, lo, hi) = bounds(b);
                lines.push((rep, b.2, lo, hi, false));
            }
            // The extremes ride on lines of their own, weight 1.
            pin(&mut lines, 0, min);
            let last = lines.len() - 1;
            if last > 0 || n == 1 {
                pin(&mut lines, last, max);
            }
        } else {
            // Equal blocks of consecutive ranks, one line each, valued in the bucket that holds
            // the block's middle rank: the lines are a stratified sample of the interval, so
            // the daemon's percentiles over them land in the right buckets.
            let weights = if n <= budget {
                vec![1; n as usize]
            } else {
                split_weights(n, budget)
            };
            let mut buckets = self.buckets.iter();
            let mut current = buckets.next().map(|b| (b, b.2));
            let mut before = 0u64;
            for w in weights {
                let middle = before + w.div_ceil(2);
                while let Some((b, end)) = current {
                    if end >= middle {
                        break;
                    }
                    current = buckets
                        .next()
                        .map(|n| (n, end + n.2))
                        .or(Some((b, u64::MAX)));
                }
                let (rep, lo, hi) = current.map(|(b, _)| bounds(b)).unwrap_or((min, min, max));
                lines.push((rep, w, lo, hi, false));
                before += w;
            }
            let last = lines.len() - 1;
            lines[0] = (min, lines[0].1, min, min, true);
            lines[last] = (max, lines[last].1, max, max, true);
        }
        let weighted = mode == TimingMode::Distribution;
        let target = if weighted {
            self.sum
        } else {
            self.sum * lines.len() as f64 / n as f64
        };
        spread(&mut lines, target, weighted);
        lines
            .into_iter()
            .map(|(value, weight, ..)| TimingLine { value, weight })
            .collect()
    }
}

/// `x` held to `[lo, hi]` without panicking on inconsistent bounds.
fn within(x: f64, lo: f64, hi: f64) -> f64 {
    x.max(lo).min(hi)
}

/// The bucket estimate `2·lo·hi/(lo+hi)` (0 for the zero bucket).
fn estimate(lo: f64, hi: f64) -> f64 {
    if lo <= 0.0 || hi <= 0.0 {
        lo.max(0.0)
    } else {
        2.0 * lo * hi / (lo + hi)
    }
}

/// `count` split into about `lines` weights that each count exactly ([`exact_weight`]).
fn split_weights(count: u64, lines: u64) -> Vec<u64> {
    if count == 0 {
        return Vec::new();
    }
    let lines = lines.clamp(1, count);
    let g = exact_at_most(count / lines);
    let mut out = vec![g; (lines - 1) as usize];
    let mut rest = count - g * (lines - 1);
    while rest > 0 {
        let w = exact_at_most(rest);
        out.push(w);
        rest -= w;
    }
    out
}

/// Gives line `at` the value `v` with weight 1, splitting one observation off a heavier line.
fn pin(lines: &mut Vec<(f64, u64, f64, f64, bool)>, at: usize, v: f64) {
    let (value, w, lo, hi, pinned) = lines[at];
    if pinned {
        return;
    }
    if w == 1 {
        lines[at] = (v, 1, lo, hi, true);
        return;
    }
    let rest = split_weights(w - 1, 1);
    let mut replace: Vec<_> = rest.iter().map(|&r| (value, r, lo, hi, false)).collect();
    if at == 0 {
        replace.insert(0, (v, 1, lo, hi, true));
    } else {
        replace.push((v, 1, lo, hi, true));
    }
    lines.splice(at..=at, replace);
}

/// Moves the unpinned values within their bounds, each the same fraction of its room, so
/// that their (weighted) sum reaches `target`, or as near as the bounds allow.
fn spread(lines: &mut [(f64, u64, f64, f64, bool)], target: f64, weighted: bool) {
    let wt = |w: u64| if weighted { w as f64 } else { 1.0 };
    let have: f64 = lines.iter().map(|l| l.0 * wt(l.1)).sum();
    let need = target - have;
    if need == 0.0 || !need.is_finite() {
        return;
    }
    let room: f64 = lines
        .iter()
        .filter(|l| !l.4)
        .map(|l| wt(l.1) * if need > 0.0 { l.3 - l.0 } else { l.0 - l.2 })
        .sum();
    if room <= 0.0 {
        return;
    }
    let f = (need.abs() / room).min(1.0);
    for l in lines.iter_mut().filter(|l| !l.4) {
        let moved = if need > 0.0 {
            l.0 + f * (l.3 - l.0)
        } else {
            l.0 - f * (l.0 - l.2)
        };
        l.0 = within(moved, l.2, l.3);
    }
}

/// What the encoder remembers of one series between harvests.
struct Cursor {
    /// The series' start time, in nanoseconds since the Unix epoch.
    start: u64,
    seen: u64,
    /// The name part of every line (prefix, name, folded labels) and the tag part.
    key: Box<str>,
    tags: Box<str>,
    last: Last,
}

enum Last {
    None,
    Counter(u64),
    Timing(Box<Distribution>),
}

/// Counts of what an encoding left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Gauges that were NaN or infinite (StatsD has no spelling for them).
    pub unrepresentable: u64,
    /// Readings of a kind this exporter does not know.
    pub unknown_kind: u64,
}

/// Turns snapshots into StatsD lines, keeping each series' cursor for deltas.
///
/// ```
/// use sampler_api::{Descriptor, Harvester, Registry};
/// use sampler_exporter_statsd::{Encoder, StatsdConfig};
/// static HITS: Descriptor = Descriptor::counter("cache.hits", "1", "cache hits");
/// let registry = Registry::new();
/// let hits = registry.counter(&HITS);
/// let harvester = Harvester::builder().registry(registry.clone()).self_metrics(false).build();
/// let mut encoder = Encoder::new(&StatsdConfig::default());
/// let mut lines = Vec::new();
/// hits.add(3);
/// encoder.encode(&harvester.harvest_now(), |p| lines.push(String::from_utf8(p.to_vec()).unwrap()));
/// hits.add(2);
/// encoder.encode(&harvester.harvest_now(), |p| lines.push(String::from_utf8(p.to_vec()).unwrap()));
/// assert_eq!(lines, ["cache.hits:3|c", "cache.hits:2|c"]);
/// ```
pub struct Encoder {
    prefix: String,
    tags: TagStyle,
    timings: TimingMode,
    timing_lines: usize,
    cursors: HashMap<SeriesId, Cursor>,
    generation: u64,
    line: Vec<u8>,
    dtoa: dtoa::Buffer,
    itoa: itoa::Buffer,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("prefix", &self.prefix)
            .field("series", &self.cursors.len())
            .finish()
    }
}

impl Encoder {
    /// An encoder for these settings.
    pub fn new(config: &StatsdConfig) -> Self {
        let mut prefix = String::new();
        if !config.prefix.is_empty() {
            sanitize(&mut prefix, &config.prefix, false);
            prefix.push('.');
        }
        Encoder {
            prefix,
            tags: config.tags,
            timings: config.timings,
            timing_lines: config.timing_lines,
            cursors: HashMap::new(),
            generation: 0,
            line: Vec::with_capacity(256),
            dtoa: dtoa::Buffer::new(),
            itoa: itoa::Buffer::new(),
        }
    }

    /// Writes the snapshot's points to `out`, one call per point: a point is one line, or the
    /// two lines of a negative gauge (`0|g` first, so the daemon sets rather than subtracts),
    /// which must travel in one datagram. Series gone from the snapshot are forgotten.
    pub fn encode(&mut self, snapshot: &Snapshot, mut out: impl FnMut(&[u8])) -> Skipped {
        self.generation += 1;
        let mut skipped = Skipped::default();
        for series in snapshot.series() {
            self.series(series, &mut out, &mut skipped);
        }
        let g = self.generation;
        self.cursors.retain(|_, c| c.seen == g);
        skipped
    }

    fn cursor(&mut self, s: SeriesRef<'_>) -> &mut Cursor {
        let generation = self.generation;
        let (prefix, tags) = (&self.prefix, self.tags);
        let c = self.cursors.entry(s.id()).or_insert_with(|| {
            let mut key = String::with_capacity(prefix.len() + s.descriptor().name().len() + 16);
            key.push_str(prefix);
            sanitize(&mut key, s.descriptor().name(), false);
            let mut t = String::new();
            match tags {
                TagStyle::None => {
                    for (_, v) in s.labels().iter() {
                        key.push('.');
                        sanitize(&mut key, v, true);
                    }
                }
                TagStyle::DogStatsd => {
                    for (i, (k, v)) in s.labels().iter().enumerate() {
                        t.push_str(if i == 0 { "|#" } else { "," });
                        sanitize(&mut t, k, false);
                        t.push(':');
                        sanitize(&mut t, v, false);
                    }
                }
            }
            Cursor {
                start: s.start_unix_nanos(),
                seen: generation,
                key: key.into(),
                tags: t.into(),
                last: Last::None,
            }
        });
        if c.start != s.start_unix_nanos() {
            c.start = s.start_unix_nanos();
            c.last = Last::None;
        }
        c.seen = generation;
        c
    }

    fn series(&mut self, s: SeriesRef<'_>, out: &mut impl FnMut(&[u8]), skipped: &mut Skipped) {
        match s.value() {
            Value::Counter(raw) => {
                let c = self.cursor(s);
                let prev = match c.last {
                    Last::Counter(p) if p <= *raw => p,
                    _ => 0,
                };
                c.last = Last::Counter(*raw);
                let delta = raw - prev;
                if delta == 0 {
                    return;
                }
                let (key, tags) = (c.key.clone(), c.tags.clone());
                let divisor = s.descriptor().divisor();
                self.line.clear();
                self.line.extend_from_slice(key.as_bytes());
                self.line.push(b':');
                if divisor == 1 {
                    self.line
                        .extend_from_slice(self.itoa.format(delta).as_bytes());
                } else {
                    let v = s.descriptor().counter_value(delta);
                    self.line.extend_from_slice(self.dtoa.format(v).as_bytes());
                }
                self.line.extend_from_slice(b"|c");
                self.line.extend_from_slice(tags.as_bytes());
                out(&self.line);
            }
            Value::Gauge(v) => {
                if !v.is_finite() {
                    skipped.unrepresentable += 1;
                    return;
                }
                let v = if *v == 0.0 { 0.0 } else { *v };
                let c = self.cursor(s);
                let (key, tags) = (c.key.clone(), c.tags.clone());
                self.line.clear();
                if v < 0.0 {
                    // A signed value changes a gauge by that much; a stored 0 is taken as
                    // "no value", so `0|g` then `-5|g` leaves -5.
                    self.line.extend_from_slice(key.as_bytes());
                    self.line.extend_from_slice(b":0|g");
                    self.line.extend_from_slice(tags.as_bytes());
                    self.line.push(b'\n');
                }
                self.line.extend_from_slice(key.as_bytes());
                self.line.push(b':');
                self.line.extend_from_slice(self.dtoa.format(v).as_bytes());
                self.line.extend_from_slice(b"|g");
                self.line.extend_from_slice(tags.as_bytes());
                out(&self.line);
            }
            Value::Timing(d) => {
                let (mode, budget) = (self.timings, self.timing_lines);
                let c = self.cursor(s);
                let prev = match &c.last {
                    Last::Timing(p) => Some(&**p),
                    _ => None,
                };
                let interval = Interval::between(d, prev);
                c.last = Last::Timing(d.clone());
                let Some(interval) = interval else { return };
                let (key, tags) = (c.key.clone(), c.tags.clone());
                // Durations are recorded in seconds; StatsD timers are milliseconds.
                let scale = if s.descriptor().unit() == "s" && mode == TimingMode::Buckets {
                    1000.0
                } else {
                    1.0
                };
                let kind: &[u8] = match mode {
                    TimingMode::Distribution => b"|d",
                    _ => b"|ms",
                };
                for l in interval.lines(mode, budget) {
                    self.line.clear();
                    self.line.extend_from_slice(key.as_bytes());
                    self.line.push(b':');
                    let v = l.value * scale;
                    self.line.extend_from_slice(self.dtoa.format(v).as_bytes());
                    self.line.extend_from_slice(kind);
                    if l.weight > 1 {
                        // `Display` never uses an exponent: daemons read rates as digits and
                        // dots only.
                        use std::io::Write;
                        let _ = write!(self.line, "|@{}", 1.0 / l.weight as f64);
                    }
                    self.line.extend_from_slice(tags.as_bytes());
                    out(&self.line);
                }
            }
            _ => {
                debug_assert!(!matches!(
                    s.descriptor().kind(),
                    Kind::Counter | Kind::Gauge | Kind::Timing
                ));
                skipped.unknown_kind += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sampler_api::{Descriptor, Labels};
    use std::sync::Arc;
    use std::time::SystemTime;

    fn snapshot(series: Vec<(Kind, String, f64)>) -> Snapshot {
        let series = series
            .into_iter()
            .map(|(kind, label, v)| {
                let value = match kind {
                    Kind::Counter => Value::Counter(v.abs() as u64),
                    Kind::Gauge => Value::Gauge(v),
                    _ => {
                        let mut d = Distribution::new(3);
                        d.record(v.abs());
                        d.record(v.abs() * 3.0 + 1.0);
                        Value::Timing(Box::new(d))
                    }
                };
                sampler_api::Series::new(
                    SeriesId::next(),
                    Arc::new(Descriptor::owned("p.metric", kind, "s", "")),
                    Labels::from_pairs(&[("k", label.as_str()), ("route", "x")]).unwrap(),
                    SystemTime::UNIX_EPOCH,
                    value,
                )
            })
            .collect::<Vec<_>>();
        Snapshot::from_series(
            SystemTime::UNIX_EPOCH,
            std::time::Duration::from_secs(1),
            1,
            series,
        )
    }

    /// How Etsy StatsD 0.9 and DogStatsD split a line: tags after `|#`, the key before the
    /// first `:`, then `value|type[|@rate]`.
    fn check_line(line: &str, dog: bool) -> Result<(), TestCaseError> {
        prop_assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
        let (body, tags) = match line.split_once("|#") {
            Some((b, t)) => (b, Some(t)),
            None => (line, None),
        };
        prop_assert_eq!(tags.is_some(), dog, "{:?}", line);
        let (key, rest) = body.split_once(':').expect("a key");
        prop_assert!(!key.is_empty());
        prop_assert!(
            !key.chars()
                .any(|c| ":|@#,; ".contains(c) || c.is_whitespace() || c.is_control()),
            "{key:?}"
        );
        let fields: Vec<&str> = rest.split('|').collect();
        prop_assert!(fields.len() == 2 || fields.len() == 3, "{line:?}");
        prop_assert!(fields[0].parse::<f64>().is_ok(), "{line:?}");
        prop_assert!(["c", "g", "ms", "d"].contains(&fields[1]), "{line:?}");
        if let Some(rate) = fields.get(2) {
            let r = rate.strip_prefix('@').expect("a rate");
            prop_assert!(
                r.chars().all(|c| c.is_ascii_digit() || c == '.'),
                "{line:?}"
            );
        }
        if let Some(tags) = tags {
            for tag in tags.split(',') {
                let (k, v) = tag.split_once(':').expect("key:value");
                prop_assert!(
                    !k.is_empty() && !v.is_empty() && !v.contains(':'),
                    "{line:?}"
                );
                prop_assert!(!tag.contains('|') && !tag.contains('#') && !tag.contains('@'));
                prop_assert!(!tag.chars().any(char::is_whitespace));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

        /// Whatever the label values and prefix hold, every line has one key, one value, one
        /// type and well-formed tags.
        #[test]
        fn lines_always_parse(
            prefix in "\\PC{0,12}",
            dog in any::<bool>(),
            series in proptest::collection::vec(
                (prop_oneof![Just(Kind::Counter), Just(Kind::Gauge), Just(Kind::Timing)],
                 "\\PC{0,16}|[:|@#,; \n\r\t.]{0,6}",
                 -1e12f64..1e12),
                1..20),
        ) {
            let config = StatsdConfig {
                prefix,
                tags: if dog { TagStyle::DogStatsd } else { TagStyle::None },
                ..StatsdConfig::default()
            };
            let mut e = Encoder::new(&config);
            let mut points = Vec::new();
            e.encode(&snapshot(series), |p| points.push(String::from_utf8(p.to_vec()).unwrap()));
            for p in &points {
                let lines: Vec<&str> = p.split('\n').collect();
                prop_assert!(lines.len() <= 2);
                if lines.len() == 2 {
                    prop_assert!(lines[0].contains(":0|g") && lines[1].contains(":-"));
                }
                for l in lines {
                    check_line(l, dog)?;
                }
            }
        }
    }

    fn one(kind: Kind, divisor: u64, value: Value, id: SeriesId, start: u64) -> Snapshot {
        let d = Descriptor::owned("a.b", kind, "1", "").with_divisor(divisor);
        Snapshot::from_series(
            SystemTime::UNIX_EPOCH,
            std::time::Duration::from_secs(1),
            1,
            vec![sampler_api::Series::new(
                id,
                Arc::new(d),
                Labels::from_pairs(&[("route", "/a b")]).unwrap(),
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(start),
                value,
            )],
        )
    }

    fn lines(e: &mut Encoder, s: &Snapshot) -> (Vec<String>, Skipped) {
        let mut out = Vec::new();
        let skipped = e.encode(s, |p| out.push(String::from_utf8(p.to_vec()).unwrap()));
        (out, skipped)
    }

    #[test]
    fn counter_deltas_resets_fractions_and_gauges() {
        let mut e = Encoder::new(&StatsdConfig {
            prefix: "my app".into(),
            ..StatsdConfig::default()
        });
        let id = SeriesId::next();
        let c = |v, start| one(Kind::Counter, 1, Value::Counter(v), id, start);
        assert_eq!(lines(&mut e, &c(10, 0)).0, ["my_app.a.b./a_b:10|c"]);
        assert_eq!(lines(&mut e, &c(10, 0)).0, Vec::<String>::new());
        assert_eq!(lines(&mut e, &c(15, 0)).0, ["my_app.a.b./a_b:5|c"]);
        // Lower than before: a reset, the new reading is the delta.
        assert_eq!(lines(&mut e, &c(4, 0)).0, ["my_app.a.b./a_b:4|c"]);
        // A new start time: a reset too.
        assert_eq!(lines(&mut e, &c(9, 1)).0, ["my_app.a.b./a_b:9|c"]);
        // A fraction of the unit: the delta of raw totals, divided.
        let id2 = SeriesId::next();
        let f = |v| one(Kind::Counter, 1000, Value::Counter(v), id2, 0);
        lines(&mut e, &f(1500));
        assert_eq!(lines(&mut e, &f(4250)).0, ["my_app.a.b./a_b:2.75|c"]);
        let g = |v| one(Kind::Gauge, 1, Value::Gauge(v), SeriesId::next(), 0);
        assert_eq!(lines(&mut e, &g(2.5)).0, ["my_app.a.b./a_b:2.5|g"]);
        assert_eq!(lines(&mut e, &g(-0.0)).0, ["my_app.a.b./a_b:0.0|g"]);
        assert_eq!(
            lines(&mut e, &g(-5.0)).0,
            ["my_app.a.b./a_b:0|g\nmy_app.a.b./a_b:-5.0|g"]
        );
        let (out, skipped) = lines(&mut e, &g(f64::NAN));
        assert!(out.is_empty());
        assert_eq!(skipped.unrepresentable, 1);
        // Series gone from the snapshot are forgotten.
        assert_eq!(e.cursors.len(), 0);
    }

    #[test]
    fn timing_lines_are_milliseconds_with_rates_or_distributions() {
        let mut d = Distribution::new(3);
        for i in 0..1000 {
            d.record(0.001 * (1 + i % 50) as f64);
        }
        let s = one(
            Kind::Timing,
            1,
            Value::Timing(Box::new(d)),
            SeriesId::next(),
            0,
        );
        let mut buckets = Encoder::new(&StatsdConfig {
            timing_lines: 10,
            ..StatsdConfig::default()
        });
        // Unit "1" here: values as they are. With unit "s" they are multiplied by 1000.
        let (out, _) = lines(&mut buckets, &s);
        assert!(out.len() >= 10 && out.len() <= 13, "{out:?}");
        assert!(out
            .iter()
            .all(|l| l.starts_with("a.b./a_b:") && l.contains("|ms")));
        assert!(out[0].starts_with("a.b./a_b:0.001|ms|@0.01"), "{}", out[0]);
        let mut dist = Encoder::new(&StatsdConfig {
            tags: TagStyle::DogStatsd,
            timings: TimingMode::Distribution,
            ..StatsdConfig::default()
        });
        let (out, _) = lines(&mut dist, &s);
        assert!(out
            .iter()
            .all(|l| l.starts_with("a.b:") && l.contains("|d") && l.ends_with("|#route:/a_b")));
        assert_eq!(out[0], "a.b:0.001|d|#route:/a_b");
    }

    fn dist(values: &[f64]) -> Distribution {
        let mut d = Distribution::new(3);
        for v in values {
            d.record(*v);
        }
        d
    }

    #[test]
    fn weights_count_exactly() {
        for c in [1u64, 2, 49, 97, 1000, 12_345, 1 << 33] {
            for m in [1u64, 2, 3, 7, 100] {
                let w = split_weights(c, m);
                assert_eq!(w.iter().sum::<u64>(), c, "{c} in {m}");
                assert!(w.iter().all(|&w| exact_weight(w)));
                // A daemon adds 1/rate per line: exact.
                let daemon: f64 = w.iter().map(|&w| 1.0 / (1.0 / w as f64)).sum();
                assert_eq!(daemon, c as f64);
                assert!(w.len() as u64 <= m.min(c) + 3, "{c} in {m}: {}", w.len());
            }
        }
    }

    #[test]
    fn few_observations_go_one_line_each_with_exact_statistics() {
        let values = [0.0013, 0.002, 0.0021, 0.05, 0.051, 0.7, 3.3];
        let d = dist(&values);
        let iv = Interval::between(&d, None).unwrap();
        let lines = iv.lines(TimingMode::Buckets, 100);
        assert_eq!(lines.len(), values.len());
        let v: Vec<f64> = lines.iter().map(|l| l.value).collect();
        assert_eq!(v[0], 0.0013);
        assert_eq!(v[6], 3.3);
        let sum: f64 = v.iter().sum();
        assert!((sum - values.iter().sum::<f64>()).abs() < 1e-12);
        // Each value stays in its own bucket.
        for (got, want) in v.iter().zip(values) {
            assert_eq!(
                sampler_api::distribution::bucket_index(*got, 3),
                sampler_api::distribution::bucket_index(want, 3)
            );
        }
    }

    #[test]
    fn many_observations_keep_count_extremes_and_mean() {
        let mut d = Distribution::new(3);
        let mut exact = Vec::new();
        for i in 0..10_000u64 {
            let v = 0.001 * (1.0 + (i % 997) as f64) + if i % 1000 == 0 { 2.0 } else { 0.0 };
            d.record(v);
            exact.push(v);
        }
        let iv = Interval::between(&d, None).unwrap();
        let lines = iv.lines(TimingMode::Buckets, 100);
        assert!(lines.len() <= 100 + iv.buckets.len() + 3, "{}", lines.len());
        let count: f64 = lines.iter().map(|l| 1.0 / (1.0 / l.weight as f64)).sum();
        assert_eq!(count, 10_000.0);
        assert_eq!(lines[0].value, d.min());
        assert_eq!(lines.last().unwrap().value, d.max());
        let plain_mean = lines.iter().map(|l| l.value).sum::<f64>() / lines.len() as f64;
        let mean = d.sum() / 10_000.0;
        assert!(
            (plain_mean - mean).abs() / mean < 1e-9,
            "{plain_mean} vs {mean}"
        );
    }

    #[test]
    fn distribution_lines_weigh_to_the_sum() {
        let d = dist(&[1.0, 1.1, 1.2, 5.0, 5.5, 9.0]);
        let lines = Interval::between(&d, None)
            .unwrap()
            .lines(TimingMode::Distribution, 2);
        let w: u64 = lines.iter().map(|l| l.weight).sum();
        let s: f64 = lines.iter().map(|l| l.value * l.weight as f64).sum();
        assert_eq!(w, 6);
        assert!((s - d.sum()).abs() < 1e-12);
        assert_eq!(lines[0].value, 1.0);
        assert_eq!(lines.last().unwrap().value, 9.0);
    }

    #[test]
    fn intervals_are_differences_and_resets_start_over() {
        let mut d = dist(&[1.0, 2.0]);
        let first = d.clone();
        assert_eq!(Interval::between(&d, Some(&first)), None);
        d.record(0.5);
        d.record(3.0);
        let iv = Interval::between(&d, Some(&first)).unwrap();
        assert_eq!(iv.count, 2);
        assert_eq!((iv.min, iv.max), (0.5, 3.0));
        assert!((iv.sum - 3.5).abs() < 1e-12);
        // Fewer observations than before: a reset.
        let iv = Interval::between(&first, Some(&d)).unwrap();
        assert_eq!(iv.count, 2);
        // Same extremes as before: estimated within their buckets.
        let mut e = d.clone();
        e.record(1.5);
        let iv = Interval::between(&e, Some(&d)).unwrap();
        assert_eq!(iv.count, 1);
        let err = Distribution::relative_error(3);
        assert!((iv.min - 1.5).abs() / 1.5 <= err && (iv.max - 1.5).abs() / 1.5 <= err);
    }

    #[test]
    fn single_observation_is_one_exact_line() {
        let d = dist(&[0.25]);
        let l = Interval::between(&d, None)
            .unwrap()
            .lines(TimingMode::Buckets, 100);
        assert_eq!(
            l,
            vec![TimingLine {
                value: 0.25,
                weight: 1
            }]
        );
    }
}
