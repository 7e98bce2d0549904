//! Encoding a snapshot into the Prometheus text format 0.0.4, OpenMetrics 1.0 text and the
//! delimited protobuf exposition.
//!
//! A snapshot is first *planned*: its series are grouped into families (one `# HELP` and
//! `# TYPE` each, however the samplers interleaved them), names are mapped once per family,
//! and families whose names collide after mapping are set aside and reported. Each format then
//! writes the plan into a pre-sized `Vec<u8>`, formatting numbers with `itoa`/`dtoa`.
//!
//! The text output is byte-for-byte what `prometheus-client` writes for the same series (the
//! tests check it), except where that crate departs from the formats: OpenMetrics `_created`
//! samples (which it cannot write), `+Inf`/`-Inf` in OpenMetrics sample values (it writes
//! `inf`), and escaping in OpenMetrics `# HELP` text (it escapes nothing).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use sampler_api::distribution::{MAX_SCALE, MIN_SCALE};
use sampler_api::{
    Descriptor, Distribution, Kind, LabelsRef, SeriesRef, SeriesRun, Snapshot, Value,
};

use crate::config::{Buckets, EncoderConfig, TimingMode};
use crate::mapping::{
    self, escape_help_openmetrics, escape_help_text, escape_label_value, label_name, non_finite,
    write_f64, write_u64, Scale,
};

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// The delimited protobuf exposition (`io.prometheus.client.MetricFamily`), which carries
    /// native histograms.
    Protobuf,
}

impl Format {
    /// Every format, in index order.
    pub const ALL: [Format; 3] = [Format::Text, Format::OpenMetrics, Format::Protobuf];

    /// The `Content-Type` a response in this format carries.
    ///
    /// ```
    /// use sampler_exporter_prometheus::Format;
    /// assert_eq!(Format::Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    /// ```
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
        }
    }

    /// A short name for logs and the `format` label of self-metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Text => "text",
            Format::OpenMetrics => "openmetrics",
            Format::Protobuf => "protobuf",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            Format::Text => 0,
            Format::OpenMetrics => 1,
            Format::Protobuf => 2,
        }
    }
}

/// Two families whose Prometheus names collide: the first one (in snapshot order) is exposed,
/// the other is left out and reported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Collision {
    /// The Prometheus name both would use.
    pub name: String,
    /// The dotted name (and kind) of the family that kept it.
    pub kept: String,
    /// The dotted name (and kind) of the family left out.
    pub dropped: String,
    /// How many series were left out.
    pub series: u64,
}

impl std::fmt::Display for Collision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "prometheus name {} of {} collides with {}; {} series of {} left out",
            self.name, self.dropped, self.kept, self.series, self.dropped
        )
    }
}

/// Classic bucket boundaries with their spellings, and per-scale thresholds.
#[derive(Debug)]
struct BucketSet {
    bounds: Vec<f64>,
    /// `le` as the text format writes it (Go's `%g`), `+Inf` last.
    text: Vec<String>,
    /// `le` as OpenMetrics writes it, `+Inf` last.
    om: Vec<String>,
    /// Scale and exponent index of the first boundary, for exponential boundaries.
    exp: Option<(i8, i64)>,
    /// Per distribution scale (slot `scale - MIN_SCALE`): the highest bucket index counted at
    /// each bound.
    thresholds: Vec<std::sync::OnceLock<Box<[i64]>>>,
}

impl BucketSet {
    fn new(b: &Buckets) -> Result<Self, String> {
        let bounds = b.bounds()?;
        let mut text: Vec<String> = bounds.iter().map(|v| mapping::go_float(*v)).collect();
        let mut om: Vec<String> = bounds.iter().map(|v| mapping::om_float(*v)).collect();
        text.push("+Inf".to_owned());
        om.push("+Inf".to_owned());
        Ok(BucketSet {
            bounds,
            text,
            om,
            exp: b.exponential_index(),
            thresholds: (MIN_SCALE..=MAX_SCALE)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        })
    }

    /// For each finite bound: the highest bucket index (at `scale`) whose upper bound is at
    /// most the bound.
    fn thresholds(&self, scale: i8) -> &[i64] {
        let slot = (scale.clamp(MIN_SCALE, MAX_SCALE) - MIN_SCALE) as usize;
        self.thresholds[slot].get_or_init(|| {
            let s = scale as i64;
            self.bounds
                .iter()
                .enumerate()
                .map(|(j, bound)| match self.exp {
                    Some((cs, first)) => {
                        let k = first + j as i64;
                        let cs = cs as i64;
                        if s >= cs {
                            (k << (s - cs)) - 1
                        } else {
                            k.div_euclid(1 << (cs - s)) - 1
                        }
                    }
                    None => {
                        if *bound <= 0.0 {
                            i64::MIN
                        } else {
                            let k = sampler_api::distribution::bucket_index(*bound, scale) as i64;
                            let upper =
                                sampler_api::distribution::bucket_lower_bound(k as i32 + 1, scale);
                            if upper <= *bound {
                                k
                            } else {
                                k - 1
                            }
                        }
                    }
                })
                .collect()
        })
    }

    /// Cumulative counts at each finite bound, written into `out` (cleared first).
    fn cumulative(&self, d: &Distribution, out: &mut Vec<u64>) {
        out.clear();
        let th = self.thresholds(d.scale());
        let counts = d.bucket_counts();
        let offset = d.offset() as i64;
        let mut acc = d.zero_count();
        let mut next = 0usize; // next dense bucket not yet added
        for (j, bound) in self.bounds.iter().enumerate() {
            if *bound < 0.0 {
                out.push(0);
                continue;
            }
            if *bound >= d.max() {
                out.push(d.count());
                continue;
            }
            let limit = th[j];
            while next < counts.len() && offset + next as i64 <= limit {
                acc += counts[next];
                next += 1;
            }
            out.push(acc);
        }
    }
}

/// A summary quantile with its spellings.
#[derive(Debug)]
struct Quantile {
    q: f64,
    text: String,
    om: String,
}

/// One family of a planned snapshot.
#[derive(Debug)]
pub(crate) struct PlannedFamily<'s> {
    pub(crate) descriptor: &'s Descriptor,
    pub(crate) kind: Kind,
    /// The family name (without `_total` for counters).
    pub(crate) name: String,
    /// The unit suffix the name ends with (the OpenMetrics `# UNIT`), or empty.
    pub(crate) unit: String,
    /// The conversion of values to the base unit the name shows.
    pub(crate) scale: Scale,
    /// The bucket set index for timings.
    pub(crate) buckets: usize,
    /// Range into `Plan::order`: the family's runs.
    pub(crate) range: Range<usize>,
    /// How many series the family has (in all its runs).
    pub(crate) series: usize,
    pub(crate) dropped: bool,
}

impl PlannedFamily<'_> {
    pub(crate) fn help(&self) -> &str {
        let d = self.descriptor.description();
        if d.is_empty() {
            self.descriptor.name()
        } else {
            d
        }
    }
}

/// A snapshot grouped into families, ready for any format.
#[derive(Debug)]
pub struct Plan<'s> {
    pub(crate) families: Vec<PlannedFamily<'s>>,
    /// The snapshot's runs of the exposed families, grouped by family (`PlannedFamily::range`),
    /// each family's in snapshot order.
    runs: Vec<SeriesRun<'s>>,
    /// How many series the plan exposes.
    exposed: usize,
    /// Families left out because their names collide with an earlier family's.
    pub collisions: Vec<Collision>,
}

impl<'s> Plan<'s> {
    /// How many series the plan exposes.
    pub fn series(&self) -> usize {
        self.exposed
    }

    /// The series of family `f`, in snapshot order: one lookup per run, none per series
    /// (`for_each` and `fold` walk each run in a loop of its own).
    #[inline]
    pub(crate) fn family_series<'p>(
        &'p self,
        f: &PlannedFamily<'_>,
    ) -> impl Iterator<Item = SeriesRef<'s>> + 'p {
        self.runs[f.range.clone()].iter().flat_map(|r| r.series())
    }

    /// How many series were left out because of name collisions.
    pub fn dropped_series(&self) -> u64 {
        self.collisions.iter().map(|c| c.series).sum()
    }
}

/// Encodes snapshots; keeps the bucket boundaries, quantiles, buffers' size hints and each
/// series' label text (`k="v",…`, rendered once per [`SeriesId`](sampler_api::SeriesId) and
/// reused while the series keeps its place) between harvests. Keep one encoder for the
/// snapshots of one harvester: its memory is about the label text of one exposition.
///
/// ```
/// use sampler_api::{Descriptor, Harvester, Registry};
/// use sampler_exporter_prometheus::{Encoder, EncoderConfig, Format};
///
/// static HITS: Descriptor = Descriptor::counter("cache.hits", "1", "cache hits");
/// let registry = Registry::new();
/// let hits = registry.counter(&HITS); // registered while the handle lives
/// hits.add(3);
/// let snapshot = Harvester::builder().registry(registry).self_metrics(false).build().harvest_now();
///
/// let mut encoder = Encoder::new(EncoderConfig::default())?;
/// let plan = encoder.plan(&snapshot);
/// let mut out = Vec::new();
/// encoder.encode(&plan, Format::Text, &mut out);
/// assert_eq!(
///     String::from_utf8(out)?,
///     "# HELP cache_hits_total cache hits\n# TYPE cache_hits_total counter\ncache_hits_total 3\n"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Encoder {
    timings: TimingMode,
    created: bool,
    native: bool,
    quantiles: Vec<Quantile>,
    sets: Vec<Arc<BucketSet>>,
    /// Bucket sets taken to the recorded unit of converted timings, by set and scale.
    scaled: HashMap<(usize, u64, u64), Arc<BucketSet>>,
    overrides: HashMap<String, usize>,
    hint: [usize; 3],
    /// Each exposed series' label list as the text formats write it, kept between encodings.
    labels: LabelTexts,
    scratch_counts: Vec<u64>,
}

impl Encoder {
    /// An encoder for these settings (an [`EncoderConfig`], or the exporter's
    /// `&PrometheusConfig`), or why they are invalid.
    pub fn new(config: impl Into<EncoderConfig>) -> Result<Self, String> {
        let config: EncoderConfig = config.into();
        if config.native_histograms && !cfg!(feature = "protobuf") {
            return Err(
                "native histograms need the protobuf feature of sampler-exporter-prometheus"
                    .to_owned(),
            );
        }
        let mut sets = vec![Arc::new(BucketSet::new(&config.buckets)?)];
        let mut overrides = HashMap::new();
        for (name, b) in &config.bucket_overrides {
            let set = BucketSet::new(b).map_err(|e| format!("buckets for {name}: {e}"))?;
            overrides.insert(name.clone(), sets.len());
            sets.push(Arc::new(set));
        }
        let mut quantiles = Vec::new();
        for q in &config.quantiles {
            if !(0.0..=1.0).contains(q) {
                return Err(format!("quantiles must be within 0 and 1, got {q}"));
            }
            quantiles.push(Quantile {
                q: *q,
                text: mapping::go_float(*q),
                om: mapping::om_float(*q),
            });
        }
        Ok(Encoder {
            timings: config.timings,
            created: config.openmetrics_created,
            native: config.native_histograms,
            quantiles,
            sets,
            scaled: HashMap::new(),
            overrides,
            hint: [0; 3],
            labels: LabelTexts::default(),
            scratch_counts: Vec::new(),
        })
    }

    /// Whether timings are written as native histograms in the protobuf exposition.
    pub fn native_histograms(&self) -> bool {
        self.native
    }

    /// Groups a snapshot's series into families and resolves name collisions.
    pub fn plan<'s>(&self, snapshot: &'s Snapshot) -> Plan<'s> {
        let mut families: Vec<PlannedFamily<'s>> = Vec::new();
        // Runs of series of one family, in snapshot order, with their family.
        let mut runs: Vec<(u32, SeriesRun<'s>)> = Vec::new();
        let mut lookup: HashMap<(&'s str, Kind, &'s str), u32> = HashMap::new();
        let mut prev: Option<(&'s Descriptor, u32)> = None;
        // A run of the snapshot shares one descriptor and key set, and its values are all of
        // the descriptor's kind or none is: one check per run, not per series.
        for r in snapshot.runs() {
            let d: &'s Descriptor = r.descriptor();
            if r.series().next().map(|s| s.value().kind()) != Some(d.kind()) {
                continue;
            }
            let idx = match prev {
                // A family's runs usually follow one another.
                Some((p, i))
                    if std::ptr::eq(p, d)
                        || (p.kind() == d.kind()
                            && p.name() == d.name()
                            && p.unit() == d.unit()) =>
                {
                    i
                }
                _ => *lookup
                    .entry((d.name(), d.kind(), d.unit()))
                    .or_insert_with(|| {
                        families.push(self.family(d));
                        (families.len() - 1) as u32
                    }),
            };
            prev = Some((d, idx));
            families[idx as usize].series += r.len();
            runs.push((idx, r));
        }

        // Names: the first family to claim a name keeps it.
        let mut taken: HashMap<String, u32> = HashMap::with_capacity(families.len() * 3);
        let mut collisions = Vec::new();
        for i in 0..families.len() {
            let names = self.claimed_names(&families[i]);
            if let Some((name, owner)) = names
                .iter()
                .find_map(|n| taken.get(n).map(|o| (n.clone(), *o)))
            {
                let f = &families[owner as usize];
                let g = &families[i];
                collisions.push(Collision {
                    name,
                    kept: format!("{} ({})", f.descriptor.name(), f.kind),
                    dropped: format!("{} ({})", g.descriptor.name(), g.kind),
                    series: g.series as u64,
                });
                families[i].dropped = true;
                continue;
            }
            for n in names {
                taken.insert(n, i as u32);
            }
        }

        // Group the runs by family (a stable sort keeps snapshot order within each; families
        // are numbered in order of first appearance): the encoders walk a family's series run
        // by run, never looking one up by its index.
        runs.retain(|(f, _)| !families[*f as usize].dropped);
        runs.sort_by_key(|(f, _)| *f);
        let mut exposed = 0;
        let mut start = 0;
        for (i, f) in families.iter_mut().enumerate() {
            let n = runs[start..]
                .iter()
                .take_while(|(g, _)| *g as usize == i)
                .count();
            f.range = start..start + n;
            start += n;
            if !f.dropped {
                exposed += f.series;
            }
        }
        let runs = runs.into_iter().map(|(_, r)| r).collect();
        Plan {
            families,
            runs,
            exposed,
            collisions,
        }
    }

    fn family<'s>(&self, d: &'s Descriptor) -> PlannedFamily<'s> {
        let mapping::Family { name, unit, scale } = mapping::family(d.name(), d.kind(), d.unit());
        let buckets = self.overrides.get(d.name()).copied().unwrap_or(0);
        PlannedFamily {
            descriptor: d,
            kind: d.kind(),
            name,
            unit,
            scale,
            buckets,
            range: 0..0,
            series: 0,
            // A kind this encoder does not know (one added to the standard later) is left out.
            dropped: !matches!(d.kind(), Kind::Counter | Kind::Gauge | Kind::Timing),
        }
    }

    fn claimed_names(&self, f: &PlannedFamily<'_>) -> Vec<String> {
        let n = &f.name;
        let mut v = vec![n.clone()];
        let suffixes: &[&str] = match (f.kind, self.timings) {
            (Kind::Counter, _) => &["_total", "_created"],
            (Kind::Gauge, _) => &[],
            (Kind::Timing, TimingMode::Histogram) => &["_bucket", "_sum", "_count", "_created"],
            (Kind::Timing, TimingMode::Summary) if self.native => {
                &["_bucket", "_sum", "_count", "_created"]
            }
            (Kind::Timing, TimingMode::Summary) => &["_sum", "_count", "_created"],
            _ => &[],
        };
        v.extend(suffixes.iter().map(|s| format!("{n}{s}")));
        v
    }

    /// Writes the plan in `format`, appending to `out` (reserving the last size seen).
    pub fn encode(&mut self, plan: &Plan<'_>, format: Format, out: &mut Vec<u8>) {
        let start = out.len();
        out.reserve(self.hint[format.index()] + self.hint[format.index()] / 8);
        match format {
            Format::Text => self.encode_text(plan, out),
            Format::OpenMetrics => self.encode_openmetrics(plan, out),
            #[cfg(feature = "protobuf")]
            Format::Protobuf => crate::proto::encode(self, plan, out),
            // Without the protobuf feature the format is never offered.
            #[cfg(not(feature = "protobuf"))]
            Format::Protobuf => {}
        }
        self.hint[format.index()] = out.len() - start;
    }

    fn encode_text(&mut self, plan: &Plan<'_>, out: &mut Vec<u8>) {
        self.encode_lines(plan, out, false);
    }

    fn encode_openmetrics(&mut self, plan: &Plan<'_>, out: &mut Vec<u8>) {
        self.encode_lines(plan, out, true);
        out.extend_from_slice(b"# EOF\n");
    }

    /// The two text formats, which differ only where `om` says: OpenMetrics names a counter
    /// family without `_total`, adds `# UNIT`, `_created` lines and its own escaping of help.
    fn encode_lines(&mut self, plan: &Plan<'_>, out: &mut Vec<u8>, om: bool) {
        let created = om && self.created;
        let mut texts = std::mem::take(&mut self.labels);
        texts.begin();
        for f in plan.families.iter().filter(|f| !f.dropped) {
            let name = f.name.as_bytes();
            let counter = f.kind == Kind::Counter;
            out.extend_from_slice(b"# HELP ");
            out.extend_from_slice(name);
            if counter && !om {
                out.extend_from_slice(b"_total");
            }
            out.push(b' ');
            if om {
                escape_help_openmetrics(out, f.help());
            } else {
                escape_help_text(out, f.help());
            }
            out.extend_from_slice(b"\n# TYPE ");
            out.extend_from_slice(name);
            out.extend_from_slice(match (f.kind, self.timings) {
                (Kind::Counter, _) if om => b" counter\n".as_slice(),
                (Kind::Counter, _) => b"_total counter\n",
                (Kind::Gauge, _) => b" gauge\n",
                (Kind::Timing, TimingMode::Histogram) => b" histogram\n",
                (Kind::Timing, TimingMode::Summary) => b" summary\n",
                _ => b" unknown\n",
            });
            if om && !f.unit.is_empty() {
                out.extend_from_slice(b"# UNIT ");
                out.extend_from_slice(name);
                out.push(b' ');
                out.extend_from_slice(f.unit.as_bytes());
                out.push(b'\n');
            }
            let mut kept = texts.family(f.descriptor as *const Descriptor as usize, f.series);
            // Each arm walks the family with `for_each`, which loops over each run's series
            // without a lookup per series.
            let series = plan.family_series(f).enumerate();
            match (f.kind, self.timings) {
                (Kind::Counter, _) => {
                    let total = [name, b"_total"].concat();
                    let created_name = [name, b"_created"].concat();
                    // Series of a family often share a start time: format it once, then copy
                    // it from where it was written.
                    let mut last: Option<(u64, Range<usize>)> = None;
                    // A counter counting parts of its unit, or converted to a base unit, is
                    // written as a float.
                    let whole = f.descriptor.divisor() == 1 && f.scale.is_one();
                    if whole && !created {
                        // The common case, one line per series written at once.
                        series.for_each(|(j, s)| {
                            if let Value::Counter(v) = *s.value() {
                                let mut digits = itoa::Buffer::new();
                                let v = digits.format(v).as_bytes();
                                line::sample_line(out, &total, kept.get(j, s), v);
                            }
                        });
                    } else {
                        series.for_each(|(j, s)| {
                            if let Value::Counter(v) = *s.value() {
                                out.extend_from_slice(&total);
                                let l0 = out.len();
                                braced(out, kept.get(j, s));
                                let l1 = out.len();
                                out.push(b' ');
                                if whole {
                                    write_u64(out, v);
                                } else {
                                    write_f64(out, f.scale.apply(s.descriptor().counter_value(v)));
                                }
                                out.push(b'\n');
                                if created {
                                    out.extend_from_slice(&created_name);
                                    out.extend_from_within(l0..l1);
                                    out.push(b' ');
                                    let start = s.start_unix_nanos();
                                    match &last {
                                        Some((t, text)) if *t == start => {
                                            out.extend_from_within(text.clone())
                                        }
                                        _ => {
                                            let at = out.len();
                                            write_created(out, start);
                                            last = Some((start, at..out.len()));
                                        }
                                    }
                                    out.push(b'\n');
                                }
                            }
                        });
                    }
                }
                (Kind::Gauge, _) => {
                    series.for_each(|(j, s)| {
                        if let Value::Gauge(v) = *s.value() {
                            // As `write_f64` writes it, with the line written at once.
                            let v = f.scale.apply(v);
                            let mut digits = dtoa::Buffer::new();
                            let v = if v.is_finite() {
                                digits.format_finite(v).as_bytes()
                            } else {
                                non_finite(v).as_bytes()
                            };
                            line::sample_line(out, name, kept.get(j, s), v);
                        }
                    });
                }
                (Kind::Timing, TimingMode::Histogram) => {
                    let set = self.bucket_set(f);
                    series.for_each(|(j, s)| {
                        if let Value::Timing(d) = s.value() {
                            let c = created.then(|| s.start_unix_nanos());
                            let lb = kept.get(j, s);
                            self.histogram(out, name, lb, d, &set, f.scale, om, c);
                        }
                    });
                }
                (Kind::Timing, TimingMode::Summary) => {
                    series.for_each(|(j, s)| {
                        if let Value::Timing(d) = s.value() {
                            let c = created.then(|| s.start_unix_nanos());
                            let lb = kept.get(j, s);
                            self.summary(out, name, lb, d, f.scale, om, c);
                        }
                    });
                }
                _ => {}
            }
        }
        texts.end();
        self.labels = texts;
    }

    /// A classic histogram's samples. OpenMetrics writes `_sum` and `_count` first and `le`
    /// before the series' labels (as `prometheus-client` does), then `_created` when wanted.
    #[allow(clippy::too_many_arguments)]
    fn histogram(
        &mut self,
        out: &mut Vec<u8>,
        name: &[u8],
        lb: &[u8],
        d: &Distribution,
        set: &BucketSet,
        scale: Scale,
        om: bool,
        created: Option<u64>,
    ) {
        let mut cum = std::mem::take(&mut self.scratch_counts);
        set.cumulative(d, &mut cum);
        if om {
            write_sum_count(out, name, lb, d, scale);
        }
        let les = if om { &set.om } else { &set.text };
        for (j, le) in les.iter().enumerate() {
            write_sample_start(out, name, b"_bucket", lb, b"le", le, om);
            write_u64(out, cum.get(j).copied().unwrap_or(d.count()));
            out.push(b'\n');
        }
        if !om {
            write_sum_count(out, name, lb, d, scale);
        }
        if let Some(c) = created {
            write_created_line(out, name, lb, c);
        }
        self.scratch_counts = cum;
    }

    /// A summary's samples; `created` is the OpenMetrics `_created` value (the start time in
    /// nanoseconds since the Unix epoch) when wanted.
    #[allow(clippy::too_many_arguments)]
    fn summary(
        &mut self,
        out: &mut Vec<u8>,
        name: &[u8],
        lb: &[u8],
        d: &Distribution,
        scale: Scale,
        om: bool,
        created: Option<u64>,
    ) {
        for q in &self.quantiles {
            let spelled = if om { &q.om } else { &q.text };
            write_sample_start(out, name, b"", lb, b"quantile", spelled, false);
            write_f64(out, scale.apply(d.quantile(q.q).unwrap_or(f64::NAN)));
            out.push(b'\n');
        }
        write_sum_count(out, name, lb, d, scale);
        if let Some(c) = created {
            write_created_line(out, name, lb, c);
        }
    }

    /// The classic buckets of a timing as `(upper bound, cumulative count)`, finite bounds only
    /// (the `+Inf` bucket's count is the timing's count).
    #[cfg_attr(not(feature = "protobuf"), allow(dead_code))]
    pub(crate) fn classic_buckets(
        &mut self,
        family: &PlannedFamily<'_>,
        d: &Distribution,
    ) -> Vec<(f64, u64)> {
        let set = self.bucket_set(family);
        let mut cum = std::mem::take(&mut self.scratch_counts);
        set.cumulative(d, &mut cum);
        // The bounds as written: in the base unit.
        let v = self.sets[family.buckets]
            .bounds
            .iter()
            .copied()
            .zip(cum.iter().copied())
            .collect();
        self.scratch_counts = cum;
        v
    }

    /// The bucket set that counts a family's timings: the configured one, or for a timing
    /// converted to a base unit, the configured boundaries (in the base unit) taken back to
    /// the recorded unit, spelled as configured. Made once per set and scale.
    fn bucket_set(&mut self, f: &PlannedFamily<'_>) -> Arc<BucketSet> {
        let set = &self.sets[f.buckets];
        if f.scale.is_one() {
            return set.clone();
        }
        let key = (f.buckets, f.scale.mul.to_bits(), f.scale.div.to_bits());
        if let Some(s) = self.scaled.get(&key) {
            return s.clone();
        }
        let recorded: Vec<f64> = set
            .bounds
            .iter()
            .map(|b| b * f.scale.div / f.scale.mul)
            .collect();
        let scaled = Arc::new(BucketSet {
            bounds: recorded,
            text: set.text.clone(),
            om: set.om.clone(),
            exp: None,
            thresholds: (MIN_SCALE..=MAX_SCALE)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
        });
        self.scaled.insert(key, scaled.clone());
        scaled
    }

    #[cfg_attr(not(feature = "protobuf"), allow(dead_code))]
    pub(crate) fn timings(&self) -> TimingMode {
        self.timings
    }

    #[cfg_attr(not(feature = "protobuf"), allow(dead_code))]
    pub(crate) fn created(&self) -> bool {
        self.created
    }

    #[cfg_attr(not(feature = "protobuf"), allow(dead_code))]
    pub(crate) fn quantile_values(&self) -> Vec<f64> {
        self.quantiles.iter().map(|q| q.q).collect()
    }
}

/// `F<suffix>{labels,key="value"} `: the start of a sample with a label of its own (`le`,
/// `quantile`) besides the series' `labels` (already written, without braces); `own_first`
/// puts it before them.
#[inline]
fn write_sample_start(
    out: &mut Vec<u8>,
    name: &[u8],
    suffix: &[u8],
    labels: &[u8],
    key: &[u8],
    value: &str,
    own_first: bool,
) {
    out.extend_from_slice(name);
    out.extend_from_slice(suffix);
    out.push(b'{');
    if !own_first && !labels.is_empty() {
        out.extend_from_slice(labels);
        out.push(b',');
    }
    out.extend_from_slice(key);
    out.extend_from_slice(b"=\"");
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
    if own_first && !labels.is_empty() {
        out.push(b',');
        out.extend_from_slice(labels);
    }
    out.extend_from_slice(b"} ");
}

/// `F_sum{labels} <sum>` and `F_count{labels} <count>`, as histograms and summaries end.
fn write_sum_count(out: &mut Vec<u8>, name: &[u8], labels: &[u8], d: &Distribution, scale: Scale) {
    out.extend_from_slice(name);
    out.extend_from_slice(b"_sum");
    braced(out, labels);
    out.push(b' ');
    write_f64(out, scale.apply(d.sum()));
    out.push(b'\n');
    out.extend_from_slice(name);
    out.extend_from_slice(b"_count");
    braced(out, labels);
    out.push(b' ');
    write_u64(out, d.count());
    out.push(b'\n');
}

/// `F_created{labels} <start>` (OpenMetrics), from the start in nanoseconds since the Unix
/// epoch.
fn write_created_line(out: &mut Vec<u8>, name: &[u8], labels: &[u8], t: u64) {
    out.extend_from_slice(name);
    out.extend_from_slice(b"_created");
    braced(out, labels);
    out.push(b' ');
    write_created(out, t);
    out.push(b'\n');
}

/// A `_created` value: the start time (`unix_nanos`, nanoseconds since the Unix epoch, as a
/// snapshot keeps it) in seconds, written exactly (the decimal digits of the nanoseconds,
/// trailing zeros trimmed).
#[inline]
fn write_created(out: &mut Vec<u8>, unix_nanos: u64) {
    write_u64(out, unix_nanos / 1_000_000_000);
    let mut nanos = (unix_nanos % 1_000_000_000) as u32;
    if nanos == 0 {
        out.extend_from_slice(b".0");
        return;
    }
    let mut digits = [b'0'; 9];
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (nanos % 10) as u8;
        nanos /= 10;
    }
    let len = 9 - digits.iter().rev().take_while(|b| **b == b'0').count();
    out.push(b'.');
    out.extend_from_slice(&digits[..len]);
}

/// The label list of every exposed series as the text formats write it (`k="v",…`: keys
/// mapped, values escaped), kept between encodings so that a series' labels are rendered once,
/// not at every scrape. A series is found again by its family, its place among the family's
/// series and its `SeriesId`, which names one label set for as long as the process runs
/// (`spec/sampler-api.md` §2): while a family keeps its series in order (it does while none of
/// its label sets comes or goes), each place finds its text, whatever other families and
/// samplers do; a place whose series changed renders the new one.
#[derive(Debug, Default)]
struct LabelTexts {
    /// Per family, by the address of its descriptor (a hint only: every place is checked
    /// by id), the places of its series.
    families: HashMap<usize, Places>,
    text: Vec<u8>,
    /// Bytes of `text` that some place still names.
    live: usize,
    /// Counts encodings, so that families no longer encoded are forgotten.
    round: u64,
}

/// One family's series in the plan's order: the id of the series rendered at each place (0:
/// none; ids start at 1) and where its text is in `LabelTexts::text`.
#[derive(Debug, Default)]
struct Places {
    at: Vec<(u64, u32, u32)>,
    /// The encoding that last used these places.
    round: u64,
}

/// Forgets `at`'s texts in `live`.
fn unname(live: &mut usize, at: &[(u64, u32, u32)]) {
    for &(id, _, len) in at {
        if id != 0 {
            *live -= len as usize;
        }
    }
}

impl LabelTexts {
    /// Text no place names may grow to this (or to the named text's size, if larger)
    /// before it is compacted.
    const SLACK: usize = 1 << 16;

    /// Readies the texts for an encoding, compacting them when most of the text is no
    /// longer named.
    fn begin(&mut self) {
        self.round += 1;
        if self.text.len() <= 2 * self.live + Self::SLACK {
            return;
        }
        let mut text = Vec::with_capacity(self.live + self.live / 4);
        for places in self.families.values_mut() {
            for (id, start, len) in &mut places.at {
                if *id == 0 {
                    continue;
                }
                let from = *start as usize;
                // Below `u32::MAX` in all: it is at most `live`, which every kept text fits.
                *start = text.len() as u32;
                text.extend_from_slice(&self.text[from..from + *len as usize]);
            }
        }
        self.text = text;
    }

    /// The places of the family whose descriptor is `key`, `n` of them.
    fn family(&mut self, key: usize, n: usize) -> FamilyTexts<'_> {
        let places = self.families.entry(key).or_default();
        places.round = self.round;
        if places.at.len() > n {
            unname(&mut self.live, &places.at[n..]);
        }
        places.at.resize(n, (0, 0, 0));
        FamilyTexts {
            at: &mut places.at,
            text: &mut self.text,
            live: &mut self.live,
        }
    }

    /// Forgets the families this encoding did not write.
    fn end(&mut self) {
        let (round, live) = (self.round, &mut self.live);
        self.families.retain(|_, places| {
            let keep = places.round == round;
            if !keep {
                unname(live, &places.at);
            }
            keep
        });
    }
}

/// One family's kept label texts during an encoding.
struct FamilyTexts<'a> {
    at: &'a mut [(u64, u32, u32)],
    text: &'a mut Vec<u8>,
    live: &'a mut usize,
}

impl FamilyTexts<'_> {
    /// The label list of series `s` at place `j` of its family (`j < n` of
    /// `LabelTexts::family`), rendered now unless that place holds it already.
    #[inline]
    fn get(&mut self, j: usize, s: SeriesRef<'_>) -> &[u8] {
        let id = s.id().get();
        let (held, start, len) = self.at[j];
        if held == id {
            return &self.text[start as usize..start as usize + len as usize];
        }
        if held != 0 {
            *self.live -= len as usize;
        }
        let from = self.text.len();
        write_label_list(self.text, s.labels());
        let len = self.text.len() - from;
        // A text whose place `u32` cannot hold is written but not kept.
        self.at[j] = match u32::try_from(from + len) {
            Ok(_) => {
                *self.live += len;
                (id, from as u32, len as u32)
            }
            Err(_) => (0, 0, 0),
        };
        &self.text[from..]
    }
}

/// `k="v",…` without braces; a key `le` or `quantile` (the labels of histogram buckets and
/// summary quantiles) is written as `exported_<key>`, whatever the kind.
#[inline]
fn write_label_list(out: &mut Vec<u8>, labels: LabelsRef<'_>) {
    for (n, (k, v)) in labels.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        if mapping::is_reserved_label(k) {
            out.extend_from_slice(b"exported_");
        }
        if mapping::is_label_name(k) {
            out.extend_from_slice(k.as_bytes());
        } else {
            out.extend_from_slice(label_name(k).as_bytes());
        }
        out.extend_from_slice(b"=\"");
        escape_label_value(out, v);
        out.push(b'"');
    }
}

#[inline]
fn braced(out: &mut Vec<u8>, list: &[u8]) {
    if !list.is_empty() {
        out.push(b'{');
        out.extend_from_slice(list);
        out.push(b'}');
    }
}

mod line;

#[cfg(test)]
mod tests;
