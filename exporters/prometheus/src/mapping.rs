//! The mapping rules from sampler's data model to Prometheus names, units, labels and numbers,
//! one small function per rule (`spec/prometheus.md` is the table these implement).

use std::fmt::Write as _;

/// Maps a dotted metric name to a Prometheus metric name (`[a-zA-Z_][a-zA-Z0-9_]*`).
///
/// Dots and every other byte outside the allowed set become `_` (colons too: Prometheus keeps
/// them for recording rules); a name that would start with a digit gets a leading `_`.
///
/// ```
/// use sampler_exporter_prometheus::mapping::metric_name;
/// assert_eq!(metric_name("http.server.duration"), "http_server_duration");
/// assert_eq!(metric_name("9lives.x-y:z"), "_9lives_x_y_z");
/// ```
pub fn metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        out.push('_');
    }
    for c in name.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    out
}

/// Maps a label key to a Prometheus label name (`[a-zA-Z_][a-zA-Z0-9_]*`), borrowing when the
/// key is already valid (always, for keys that passed `sampler_api::validate_label_key`).
///
/// ```
/// use sampler_exporter_prometheus::mapping::label_name;
/// assert_eq!(label_name("route"), "route");
/// assert_eq!(label_name("k8s.pod"), "k8s_pod");
/// ```
pub fn label_name(key: &str) -> std::borrow::Cow<'_, str> {
    if is_label_name(key) {
        return std::borrow::Cow::Borrowed(key);
    }
    let b = key.as_bytes();
    let mut out = String::with_capacity(key.len() + 1);
    if b.is_empty() || b[0].is_ascii_digit() {
        out.push('_');
    }
    for c in key.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' {
            c
        } else {
            '_'
        });
    }
    std::borrow::Cow::Owned(out)
}

/// Whether a label key is one Prometheus gives a meaning of its own (`le` of histogram
/// buckets, `quantile` of summaries); such a key of a series is written `exported_<key>`.
#[inline]
pub(crate) fn is_reserved_label(key: &str) -> bool {
    key == "le" || key == "quantile"
}

/// Bytes allowed in a label name (`[a-zA-Z0-9_]`).
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        t[i] = c.is_ascii_alphanumeric() || c == b'_';
        i += 1;
    }
    t
};

/// Whether `key` is a valid Prometheus label name as it is.
#[inline]
pub(crate) fn is_label_name(key: &str) -> bool {
    let b = key.as_bytes();
    !b.is_empty()
        && !b[0].is_ascii_digit()
        && b.iter().fold(true, |ok, c| ok & NAME_BYTE[*c as usize])
}

/// The Prometheus unit suffix for a UCUM-style unit, or `""` for none.
///
/// Dimensionless units (`""`, `"1"`) and annotations in braces (`{request}`) add no suffix;
/// `a/b` becomes `a_per_b`; anything unknown is kept, lower-cased, with invalid bytes as `_`.
///
/// ```
/// use sampler_exporter_prometheus::mapping::unit_suffix;
/// assert_eq!(unit_suffix("s"), "seconds");
/// assert_eq!(unit_suffix("By"), "bytes");
/// assert_eq!(unit_suffix("1"), "");
/// assert_eq!(unit_suffix("{request}"), "");
/// assert_eq!(unit_suffix("By/s"), "bytes_per_second");
/// ```
pub fn unit_suffix(unit: &str) -> String {
    let unit = strip_annotations(unit);
    let unit = unit.trim();
    if let Some((num, den)) = unit.split_once('/') {
        let num = unit_word(num.trim(), false);
        let den = unit_word(den.trim(), true);
        return match (num.is_empty(), den.is_empty()) {
            (_, true) => num,
            (true, false) => format!("per_{den}"),
            (false, false) => format!("{num}_per_{den}"),
        };
    }
    unit_word(unit, false)
}

fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0u32;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

fn unit_word(unit: &str, singular: bool) -> String {
    let (plural, one) = match unit {
        "" | "1" => ("", ""),
        "s" => ("seconds", "second"),
        "ms" => ("milliseconds", "millisecond"),
        "us" => ("microseconds", "microsecond"),
        "ns" => ("nanoseconds", "nanosecond"),
        "min" => ("minutes", "minute"),
        "h" => ("hours", "hour"),
        "d" => ("days", "day"),
        "By" => ("bytes", "byte"),
        "KiBy" => ("kibibytes", "kibibyte"),
        "MiBy" => ("mebibytes", "mebibyte"),
        "GiBy" => ("gibibytes", "gibibyte"),
        "TiBy" => ("tebibytes", "tebibyte"),
        "KBy" => ("kilobytes", "kilobyte"),
        "MBy" => ("megabytes", "megabyte"),
        "GBy" => ("gigabytes", "gigabyte"),
        "TBy" => ("terabytes", "terabyte"),
        "bit" => ("bits", "bit"),
        "%" => ("percent", "percent"),
        "Cel" => ("celsius", "celsius"),
        "K" => ("kelvin", "kelvin"),
        "Hz" => ("hertz", "hertz"),
        "m" => ("meters", "meter"),
        "g" => ("grams", "gram"),
        "J" => ("joules", "joule"),
        "V" => ("volts", "volt"),
        "A" => ("amperes", "ampere"),
        "W" => ("watts", "watt"),
        other => {
            let mut out = String::with_capacity(other.len());
            for c in other.chars() {
                out.push(if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                });
            }
            let trimmed = out.trim_matches('_');
            return trimmed.to_owned();
        }
    };
    if singular { one } else { plural }.to_owned()
}

/// The family name: the mapped metric name with the unit suffix appended once (not when the
/// name already ends with it); for counters a trailing `_total` is removed first, since the
/// encoders add it to the sample name.
///
/// ```
/// use sampler_exporter_prometheus::mapping::family_name;
/// use sampler_api::Kind;
/// assert_eq!(family_name("http.server.duration", Kind::Timing, "seconds"), "http_server_duration_seconds");
/// assert_eq!(family_name("rx.bytes", Kind::Counter, "bytes"), "rx_bytes");
/// assert_eq!(family_name("jobs.total", Kind::Counter, ""), "jobs");
/// ```
pub fn family_name(name: &str, kind: sampler_api::Kind, suffix: &str) -> String {
    let mut base = metric_name(name);
    if kind == sampler_api::Kind::Counter {
        while base.len() > "_total".len() && base.ends_with("_total") {
            base.truncate(base.len() - "_total".len());
        }
    }
    if !suffix.is_empty() {
        let ends = base.len() > suffix.len()
            && base.ends_with(suffix)
            && base.as_bytes()[base.len() - suffix.len() - 1] == b'_';
        if !ends {
            base.push('_');
            base.push_str(suffix);
        }
    }
    base
}

/// A factor values are multiplied by when their unit is converted to a base unit: `mul / div`,
/// kept as two numbers so that milliseconds become seconds by a division (`1234 / 1000` is
/// `1.234` exactly rounded, where `1234 * 0.001` is not).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// Multiplied by.
    pub mul: f64,
    /// Then divided by.
    pub div: f64,
}

impl Scale {
    /// No conversion.
    pub const ONE: Scale = Scale { mul: 1.0, div: 1.0 };

    /// Whether this leaves values as they are.
    pub fn is_one(self) -> bool {
        self.mul == 1.0 && self.div == 1.0
    }

    /// `v * mul / div`.
    ///
    /// ```
    /// use sampler_exporter_prometheus::mapping::Scale;
    /// assert_eq!(Scale { mul: 1.0, div: 1000.0 }.apply(1234.0), 1.234);
    /// ```
    #[inline]
    pub fn apply(self, v: f64) -> f64 {
        if self.is_one() {
            v
        } else {
            v * self.mul / self.div
        }
    }
}

/// The non-base units the mapping converts: UCUM unit, base unit, `mul`, `div`, and the
/// words a metric name may use for the unit (replaced by the base unit's word).
const CONVERSIONS: &[(&str, &str, f64, f64, &[&str])] = &[
    ("ms", "s", 1.0, 1e3, &["ms", "milliseconds", "millisecond"]),
    ("us", "s", 1.0, 1e6, &["us", "microseconds", "microsecond"]),
    ("ns", "s", 1.0, 1e9, &["ns", "nanoseconds", "nanosecond"]),
    ("min", "s", 60.0, 1.0, &["min", "minutes", "minute"]),
    ("h", "s", 3600.0, 1.0, &["h", "hours", "hour"]),
    ("d", "s", 86400.0, 1.0, &["d", "days", "day"]),
    ("KiBy", "By", 1024.0, 1.0, &["kib", "kibibytes", "kibibyte"]),
    (
        "MiBy",
        "By",
        1048576.0,
        1.0,
        &["mib", "mebibytes", "mebibyte"],
    ),
    (
        "GiBy",
        "By",
        1073741824.0,
        1.0,
        &["gib", "gibibytes", "gibibyte"],
    ),
    (
        "TiBy",
        "By",
        1099511627776.0,
        1.0,
        &["tib", "tebibytes", "tebibyte"],
    ),
    ("KBy", "By", 1e3, 1.0, &["kb", "kilobytes", "kilobyte"]),
    ("MBy", "By", 1e6, 1.0, &["mb", "megabytes", "megabyte"]),
    ("GBy", "By", 1e9, 1.0, &["gb", "gigabytes", "gigabyte"]),
    ("TBy", "By", 1e12, 1.0, &["tb", "terabytes", "terabyte"]),
    ("bit", "By", 1.0, 8.0, &["bit", "bits"]),
];

/// The base unit of a UCUM-style unit and the factor that converts values to it: time to
/// seconds, sizes and bits to bytes, in both parts of a rate (`KiBy/ms` → `By/s`, times
/// 1,024,000). Other units are their own base. The third value lists the words a metric name
/// may use for a converted unit.
///
/// ```
/// use sampler_exporter_prometheus::mapping::{base_unit, Scale};
/// assert_eq!(base_unit("ms").0, "s");
/// assert_eq!(base_unit("ms").1, Scale { mul: 1.0, div: 1000.0 });
/// assert_eq!(base_unit("bit/min").0, "By/s");
/// assert_eq!(base_unit("{request}").0, "{request}");
/// ```
pub fn base_unit(unit: &str) -> (String, Scale, &'static [&'static str]) {
    let one = |u: &str| -> Option<(&'static str, f64, f64, &'static [&'static str])> {
        CONVERSIONS
            .iter()
            .find(|c| c.0 == u.trim())
            .map(|c| (c.1, c.2, c.3, c.4))
    };
    if let Some((base, mul, div, words)) = one(unit) {
        return (base.to_owned(), Scale { mul, div }, words);
    }
    if let Some((num, den)) = unit.split_once('/') {
        let (n, nm, nd) = one(num).map_or((num, 1.0, 1.0), |c| (c.0, c.1, c.2));
        let (d, dm, dd) = one(den).map_or((den, 1.0, 1.0), |c| (c.0, c.1, c.2));
        if n != num || d != den {
            return (
                format!("{n}/{d}"),
                Scale {
                    mul: nm * dd,
                    div: nd * dm,
                },
                &[],
            );
        }
    }
    (unit.to_owned(), Scale::ONE, &[])
}

/// How a family shows in Prometheus: its name (without `_total` for counters), the unit
/// OpenMetrics announces (empty for none), and the factor its values are multiplied by.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The family name **F**.
    pub name: String,
    /// The `# UNIT` of OpenMetrics: the unit suffix the name ends with, or empty.
    pub unit: String,
    /// The conversion of values to the base unit.
    pub scale: Scale,
}

/// Maps a descriptor's name, kind and unit to its Prometheus family, by the rules of
/// `spec/prometheus.md` §1, so that `promtool check metrics` finds nothing to say about it:
///
/// 1. the name is mapped by [`metric_name`] and lower-cased; a counter's trailing `_total`s
///    are dropped (the encoders add one to the sample);
/// 2. a non-base unit is converted to its base unit ([`base_unit`]: values are scaled) and
///    the name's words for the old unit become the base unit's (`rtt.ms` in `ms` →
///    `rtt_seconds`);
/// 3. the unit suffix is appended unless the name already ends with it ([`unit_suffix`]);
/// 4. each `_`-separated word promtool would flag is rewritten ([`lint_word`]);
/// 5. a gauge or timing whose name ends in `_count`, `_sum`, `_bucket` or `_total` (names
///    Prometheus keeps for histogram, summary and counter samples) gets `_value` appended.
///
/// ```
/// use sampler_exporter_prometheus::mapping::family;
/// use sampler_api::Kind;
/// assert_eq!(family("process.cpu.time", Kind::Counter, "s").name, "process_cpu_time_seconds");
/// assert_eq!(family("system.cpu.logical.count", Kind::Gauge, "{cpu}").name, "system_cpu_logical_count_value");
/// let rtt = family("net.rtt.ms", Kind::Gauge, "ms");
/// assert_eq!((rtt.name.as_str(), rtt.unit.as_str(), rtt.scale.apply(250.0)), ("net_rtt_seconds", "seconds", 0.25));
/// ```
pub fn family(name: &str, kind: sampler_api::Kind, unit: &str) -> Family {
    let (base, scale, words) = base_unit(unit);
    let suffix = unit_suffix(&base);
    let mut mapped = metric_name(name);
    mapped.make_ascii_lowercase();
    if kind == sampler_api::Kind::Counter {
        while mapped.len() > "_total".len() && mapped.ends_with("_total") {
            mapped.truncate(mapped.len() - "_total".len());
        }
    }
    if !words.is_empty() && !suffix.contains('_') {
        mapped = mapped
            .split('_')
            .map(|w| {
                if words.contains(&w) {
                    suffix.as_str()
                } else {
                    w
                }
            })
            .collect::<Vec<_>>()
            .join("_");
    }
    let mut full = family_name(&mapped, kind, &suffix);
    full = lint_words(&full);
    if kind != sampler_api::Kind::Counter
        && ["_count", "_sum", "_bucket", "_total"]
            .iter()
            .any(|s| full.ends_with(s))
    {
        full.push_str("_value");
    }
    let unit = if !suffix.is_empty()
        && full.len() > suffix.len()
        && full.ends_with(suffix.as_str())
        && full.as_bytes()[full.len() - suffix.len() - 1] == b'_'
    {
        suffix
    } else {
        String::new()
    };
    Family {
        name: full,
        unit,
        scale,
    }
}

/// Promtool's unit words (`prometheus/client_golang`, `testutil/promlint`): each unit and its
/// base unit; a word that is a unit other than its base, or any unit behind a prefix, is
/// flagged ("use base unit").
const LINT_UNITS: &[(&str, &str)] = &[
    ("amperes", "amperes"),
    ("bytes", "bytes"),
    ("celsius", "celsius"),
    ("grams", "grams"),
    ("joules", "joules"),
    ("kelvin", "kelvin"),
    ("meters", "meters"),
    ("metres", "metres"),
    ("seconds", "seconds"),
    ("volts", "volts"),
    ("minutes", "seconds"),
    ("hours", "seconds"),
    ("days", "seconds"),
    ("weeks", "seconds"),
    ("kelvins", "kelvin"),
    ("fahrenheit", "celsius"),
    ("rankine", "celsius"),
    ("inches", "meters"),
    ("yards", "meters"),
    ("miles", "meters"),
    ("bits", "bytes"),
    ("calories", "joules"),
    ("pounds", "grams"),
    ("ounces", "grams"),
];
const LINT_PREFIXES: &[&str] = &[
    "pico", "nano", "micro", "milli", "centi", "deci", "deca", "hecto", "kilo", "kibi", "mega",
    "mibi", "giga", "gibi", "tera", "tebi", "peta", "pebi",
];
/// Abbreviated units promtool flags, each with its spelled-out singular.
const LINT_ABBREVIATIONS: &[(&str, &str)] = &[
    ("s", "second"),
    ("ms", "millisecond"),
    ("us", "microsecond"),
    ("ns", "nanosecond"),
    ("sec", "second"),
    ("b", "byte"),
    ("kb", "kilobyte"),
    ("mb", "megabyte"),
    ("gb", "gigabyte"),
    ("tb", "terabyte"),
    ("pb", "petabyte"),
    ("m", "meter"),
    ("h", "hour"),
    ("d", "day"),
];
/// Metric types promtool does not want in a name, each with its plural.
const LINT_TYPES: &[(&str, &str)] = &[
    ("counter", "counters"),
    ("gauge", "gauges"),
    ("histogram", "histograms"),
    ("summary", "summaries"),
    ("gaugehistogram", "gaugehistograms"),
];

/// Whether promtool flags `word` as a non-base unit ("use base unit … instead of …").
fn non_base_unit(word: &str) -> bool {
    let base_of = |w: &str| LINT_UNITS.iter().find(|u| u.0 == w).map(|u| u.1);
    if let Some(base) = base_of(word) {
        return base != word;
    }
    LINT_PREFIXES.iter().any(|p| {
        word.strip_prefix(p)
            .is_some_and(|rest| base_of(rest).is_some())
    })
}

/// Whether promtool flags the word at all: a non-base unit anywhere, an abbreviation or a type
/// after an `_` (not as the first word).
fn flagged(word: &str, first: bool) -> bool {
    non_base_unit(word)
        || (!first
            && (LINT_ABBREVIATIONS.iter().any(|a| a.0 == word)
                || LINT_TYPES.iter().any(|t| t.0 == word)))
}

/// The rewrite of one `_`-separated word of a name (not the first: promtool looks for those
/// after an `_`) that promtool would flag, or `None` when it flags nothing: an abbreviated unit is spelled out in the singular (`ms` →
/// `millisecond`), a metric type is put in the plural (`gauge` → `gauges`), and a non-base
/// unit is put in the singular (`minutes` → `minute`, `kilobytes` → `kilobyte`), which
/// promtool reads as no unit. A word with no such spelling (`fahrenheit`) is joined to the
/// word before it by [`lint_words`].
///
/// ```
/// use sampler_exporter_prometheus::mapping::lint_word;
/// assert_eq!(lint_word("ms").as_deref(), Some("millisecond"));
/// assert_eq!(lint_word("milliseconds").as_deref(), Some("millisecond"));
/// assert_eq!(lint_word("gauge").as_deref(), Some("gauges"));
/// assert_eq!(lint_word("seconds"), None);
/// ```
pub fn lint_word(word: &str) -> Option<String> {
    if let Some(a) = LINT_ABBREVIATIONS.iter().find(|a| a.0 == word) {
        return Some(a.1.to_owned());
    }
    if let Some(t) = LINT_TYPES.iter().find(|t| t.0 == word) {
        return Some(t.1.to_owned());
    }
    if non_base_unit(word) {
        let singular = if let Some(w) = word.strip_suffix("ches") {
            format!("{w}ch")
        } else if let Some(w) = word.strip_suffix('s') {
            w.to_owned()
        } else {
            word.to_owned()
        };
        return Some(singular);
    }
    None
}

/// Rewrites every word of a mapped name that promtool would flag ([`lint_word`]); a word whose
/// rewrite is still flagged is joined to the word before it (to the one after, when first).
///
/// ```
/// use sampler_exporter_prometheus::mapping::lint_words;
/// assert_eq!(lint_words("disk_read_kb_total"), "disk_read_kilobyte_total");
/// assert_eq!(lint_words("room_fahrenheit"), "roomfahrenheit");
/// ```
pub fn lint_words(name: &str) -> String {
    let mut words: Vec<String> = name.split('_').map(str::to_owned).collect();
    let mut i = 0;
    while i < words.len() {
        let first = i == 0;
        if let Some(fixed) = lint_word(&words[i]).filter(|_| !first || non_base_unit(&words[i])) {
            words[i] = fixed;
        }
        if flagged(&words[i], first) {
            let w = words.remove(i);
            if words.is_empty() {
                // A name of one flagged word alone: keep it recognisable, but not as a word.
                words.push(format!("{w}x"));
            } else if i > 0 {
                words[i - 1].push_str(&w);
                i -= 1;
                // The joined word is checked again.
                continue;
            } else {
                words[0].insert_str(0, &w);
                continue;
            }
        }
        i += 1;
    }
    words.join("_")
}

/// Whether a label value needs escaping (holds `\`, `"` or a newline).
#[inline]
pub(crate) fn needs_escape(value: &[u8]) -> bool {
    // No early exit: label values are short, and a plain fold vectorises.
    value
        .iter()
        .fold(false, |found, b| found | matches!(b, b'\\' | b'"' | b'\n'))
}

/// Appends a label value escaped for both text formats: `\` → `\\`, `"` → `\"`, newline → `\n`.
///
/// ```
/// use sampler_exporter_prometheus::mapping::escape_label_value;
/// let mut out = Vec::new();
/// escape_label_value(&mut out, "a\"b\\c\nd");
/// assert_eq!(out, br#"a\"b\\c\nd"#);
/// ```
#[inline]
pub fn escape_label_value(out: &mut Vec<u8>, value: &str) {
    let b = value.as_bytes();
    if !needs_escape(b) {
        out.extend_from_slice(b);
        return;
    }
    escape_slow(out, b, true);
}

#[cold]
fn escape_slow(out: &mut Vec<u8>, b: &[u8], quote: bool) {
    let mut last = 0;
    for (i, c) in b.iter().enumerate() {
        let esc: &[u8] = match c {
            b'\\' => b"\\\\",
            b'"' if quote => b"\\\"",
            b'\n' => b"\\n",
            _ => continue,
        };
        out.extend_from_slice(&b[last..i]);
        out.extend_from_slice(esc);
        last = i + 1;
    }
    out.extend_from_slice(&b[last..]);
}

/// Appends HELP text escaped for the Prometheus text format (`\` and newline only).
pub fn escape_help_text(out: &mut Vec<u8>, help: &str) {
    escape_slow(out, help.as_bytes(), false);
}

/// Appends HELP text escaped for OpenMetrics (`\`, `"` and newline).
pub fn escape_help_openmetrics(out: &mut Vec<u8>, help: &str) {
    escape_slow(out, help.as_bytes(), true);
}

/// Appends a sample value as both text formats spell it: the shortest decimal that reads back
/// exactly, and `NaN`, `+Inf`, `-Inf` for the non-finite values.
///
/// ```
/// use sampler_exporter_prometheus::mapping::write_f64;
/// let mut out = Vec::new();
/// for v in [1.0, 0.25, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e21] {
///     write_f64(&mut out, v);
///     out.push(b' ');
/// }
/// assert_eq!(out, b"1.0 0.25 NaN +Inf -Inf 1e21 ");
/// ```
#[inline]
pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(dtoa::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(non_finite(v).as_bytes());
    }
}

/// `NaN`, `+Inf` or `-Inf`.
pub(crate) fn non_finite(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// Appends an unsigned integer.
#[inline]
pub(crate) fn write_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// A bucket bound (`le`) or quantile as the Prometheus text format writes it: Go's shortest
/// `%g` (`1`, `0.25`, `6.103515625e-05`, `1e+06`, `+Inf`), so series match Go clients'.
///
/// ```
/// use sampler_exporter_prometheus::mapping::go_float;
/// assert_eq!(go_float(1.0), "1");
/// assert_eq!(go_float(0.0009765625), "0.0009765625");
/// assert_eq!(go_float(2f64.powi(-14)), "6.103515625e-05");
/// assert_eq!(go_float(1048576.0), "1.048576e+06");
/// assert_eq!(go_float(f64::INFINITY), "+Inf");
/// ```
pub fn go_float(v: f64) -> String {
    if !v.is_finite() {
        return non_finite(v).to_owned();
    }
    if v.fract() == 0.0 && v.abs() < 1e6 {
        return (v as i64).to_string();
    }
    if (1e-4..1e6).contains(&v.abs()) {
        return format!("{v}");
    }
    let sci = format!("{v:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut out = String::with_capacity(sci.len() + 2);
    out.push_str(mantissa);
    out.push('e');
    let _ = write!(
        out,
        "{}{:02}",
        if exp < 0 { '-' } else { '+' },
        exp.unsigned_abs()
    );
    out
}

/// A bucket bound or quantile as OpenMetrics writes it: the shortest decimal that reads back
/// exactly, with a `.0` on whole numbers (`1.0`, `0.25`), or `+Inf`.
///
/// ```
/// use sampler_exporter_prometheus::mapping::om_float;
/// assert_eq!(om_float(1.0), "1.0");
/// assert_eq!(om_float(f64::INFINITY), "+Inf");
/// ```
pub fn om_float(v: f64) -> String {
    let mut out = Vec::new();
    write_f64(&mut out, v);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sampler_api::Kind;

    fn valid_metric_name(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_alphabetic() || b[0] == b'_' || b[0] == b':')
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b':')
    }

    proptest! {
        #[test]
        fn any_name_maps_to_a_valid_name(name in "\\PC{0,40}") {
            prop_assert!(valid_metric_name(&metric_name(&name)), "{:?}", metric_name(&name));
            let l = label_name(&name);
            let b = l.as_bytes();
            prop_assert!(!b.is_empty() && !b[0].is_ascii_digit());
            prop_assert!(b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_'));
        }

        #[test]
        fn escaping_reads_back(value in "\\PC{0,40}|[\\\\\"\n a]{0,12}") {
            let mut out = Vec::new();
            escape_label_value(&mut out, &value);
            let s = String::from_utf8(out).unwrap();
            // Undo the escapes the way a Prometheus parser does.
            let mut back = String::new();
            let mut it = s.chars();
            while let Some(c) = it.next() {
                if c == '\\' {
                    match it.next() {
                        Some('n') => back.push('\n'),
                        Some(o) => back.push(o),
                        None => prop_assert!(false, "dangling escape"),
                    }
                } else {
                    prop_assert!(c != '"' && c != '\n');
                    back.push(c);
                }
            }
            prop_assert_eq!(back, value);
        }

        #[test]
        fn floats_read_back_exactly(v in any::<f64>()) {
            let mut out = Vec::new();
            write_f64(&mut out, v);
            let s = std::str::from_utf8(&out).unwrap();
            let back: f64 = s.parse().unwrap();
            prop_assert!(back == v || (back.is_nan() && v.is_nan()), "{s}");
            let g: f64 = go_float(v).parse().unwrap();
            prop_assert!(g == v || (g.is_nan() && v.is_nan()) || (v == 0.0 && g == 0.0));
        }
    }

    /// What `promtool check metrics` says of a family's name (the name rules of
    /// `client_golang/prometheus/testutil/promlint`, the help aside): empty when clean.
    fn promlint(name: &str, kind: Kind) -> Vec<String> {
        let exposed = match kind {
            Kind::Counter => format!("{name}_total"),
            _ => name.to_owned(),
        };
        let n = exposed.to_ascii_lowercase();
        let mut problems = Vec::new();
        let ends = |s: &str| n.ends_with(s);
        if kind != Kind::Counter && ends("_total") {
            problems.push("non-counter ends with _total".to_owned());
        }
        if kind != Kind::Timing && (ends("_count") || ends("_sum") || ends("_bucket")) {
            problems.push("non-histogram ends with _count, _sum or _bucket".to_owned());
        }
        for w in n.split('_') {
            if non_base_unit(w) {
                problems.push(format!("non-base unit {w}"));
            }
        }
        for (a, _) in LINT_ABBREVIATIONS {
            if n.contains(&format!("_{a}_")) || n.ends_with(&format!("_{a}")) {
                problems.push(format!("abbreviated unit {a}"));
            }
        }
        for t in [
            "counter",
            "gauge",
            "histogram",
            "summary",
            "gauge_histogram",
        ] {
            if n.contains(&format!("_{t}_")) || n.ends_with(&format!("_{t}")) {
                problems.push(format!("type {t} in name"));
            }
        }
        if n.contains(':') {
            problems.push("colon".to_owned());
        }
        if exposed
            .as_bytes()
            .windows(2)
            .any(|w| w[0].is_ascii_lowercase() && w[1].is_ascii_uppercase())
        {
            problems.push("camel case".to_owned());
        }
        problems
    }

    /// Names built of words promtool cares about, units of every kind.
    fn awkward_name() -> impl Strategy<Value = String> {
        let word = prop_oneof![
            "[a-z][a-z0-9]{0,6}",
            prop::sample::select(vec![
                "s",
                "ms",
                "us",
                "ns",
                "sec",
                "b",
                "kb",
                "mb",
                "gb",
                "tb",
                "pb",
                "m",
                "h",
                "d",
                "count",
                "sum",
                "bucket",
                "total",
                "created",
                "counter",
                "gauge",
                "histogram",
                "summary",
                "gaugehistogram",
                "seconds",
                "minutes",
                "hours",
                "days",
                "weeks",
                "milliseconds",
                "microseconds",
                "kilobytes",
                "megabytes",
                "kibibytes",
                "bits",
                "bytes",
                "fahrenheit",
                "rankine",
                "millicelsius",
                "kelvins",
                "inches",
                "miles",
                "kilometers",
                "milligrams",
                "calories",
                "pounds",
                "ounces",
                "millifahrenheit",
                "per",
                "second",
                "byte",
            ])
            .prop_map(str::to_owned),
        ];
        prop::collection::vec((word, prop::bool::ANY), 1..6).prop_map(|ws| {
            let mut out = String::new();
            for (i, (w, dot)) in ws.into_iter().enumerate() {
                if i > 0 {
                    out.push(if dot { '.' } else { '_' });
                }
                out.push_str(&w);
            }
            out
        })
    }

    const UNITS: &[&str] = &[
        "",
        "1",
        "s",
        "ms",
        "us",
        "ns",
        "min",
        "h",
        "d",
        "By",
        "KiBy",
        "MiBy",
        "GiBy",
        "TiBy",
        "KBy",
        "MBy",
        "GBy",
        "TBy",
        "bit",
        "%",
        "Cel",
        "K",
        "Hz",
        "m",
        "g",
        "J",
        "V",
        "A",
        "W",
        "By/s",
        "bit/s",
        "1/s",
        "{packet}/s",
        "KiBy/ms",
        "1/min",
        "{request}",
        "{thread}",
        "kb",
        "sec",
        "minutes",
        "Mbit",
        "mb/s",
        "weird.Unit",
    ];

    proptest! {
        #[test]
        fn r11_no_family_name_is_flagged_by_promlint(
            name in awkward_name(),
            kind in prop::sample::select(vec![Kind::Counter, Kind::Gauge, Kind::Timing]),
            unit in prop::sample::select(UNITS.to_vec()),
        ) {
            let f = family(&name, kind, unit);
            prop_assert!(promlint(&f.name, kind).is_empty(), "{name} ({kind}, {unit}) → {}: {:?}", f.name, promlint(&f.name, kind));
            prop_assert!(valid_metric_name(&f.name), "{}", f.name);
            // The OpenMetrics unit, when announced, is a suffix of the name.
            let announced = f.unit.is_empty() || f.name.ends_with(&format!("_{}", f.unit));
            prop_assert!(announced, "unit {} of {}", f.unit, f.name);
        }
    }

    #[test]
    fn r11_renames_are_the_documented_ones() {
        let f = |n, k, u| family(n, k, u);
        // Base units: values scaled, the name's words for the old unit replaced.
        let rtt = f("http.client.rtt.ms", Kind::Timing, "ms");
        assert_eq!(rtt.name, "http_client_rtt_seconds");
        assert_eq!(
            rtt.scale,
            Scale {
                mul: 1.0,
                div: 1000.0
            }
        );
        assert_eq!(
            f("process.cpu.user", Kind::Counter, "us").name,
            "process_cpu_user_seconds"
        );
        assert_eq!(
            f("cache.size", Kind::Gauge, "KiBy").scale.apply(2.0),
            2048.0
        );
        assert_eq!(
            f("link.speed", Kind::Gauge, "bit/s").name,
            "link_speed_bytes_per_second"
        );
        assert_eq!(
            f("link.speed", Kind::Gauge, "bit/s").scale.apply(800.0),
            100.0
        );
        assert_eq!(
            f("uptime.minutes", Kind::Gauge, "min").name,
            "uptime_seconds"
        );
        assert_eq!(
            f("uptime.minutes", Kind::Gauge, "min").scale.apply(2.0),
            120.0
        );
        // Names reserved for other kinds' samples.
        assert_eq!(
            f("process.thread.count", Kind::Gauge, "{thread}").name,
            "process_thread_count_value"
        );
        assert_eq!(f("jobs.total", Kind::Gauge, "1").name, "jobs_total_value");
        assert_eq!(f("queue.sum", Kind::Timing, "s").name, "queue_sum_seconds");
        assert_eq!(f("queue.count", Kind::Counter, "1").name, "queue_count");
        // Words promtool flags.
        assert_eq!(
            f("disk.read.kb", Kind::Counter, "1").name,
            "disk_read_kilobyte"
        );
        assert_eq!(f("uptime.minutes", Kind::Gauge, "1").name, "uptime_minute");
        assert_eq!(f("queue.gauge", Kind::Gauge, "1").name, "queue_gauges");
        assert_eq!(f("room.fahrenheit", Kind::Gauge, "").name, "roomfahrenheit");
        assert_eq!(f("ms.spent", Kind::Counter, "1").name, "ms_spent");
        // Units promtool takes as base units stay; an unknown one is a word like any other.
        assert_eq!(
            f("room.temperature", Kind::Gauge, "Cel").name,
            "room_temperature_celsius"
        );
        assert_eq!(f("x", Kind::Gauge, "kb").name, "x_kilobyte");
        assert_eq!(f("x", Kind::Gauge, "kb").unit, "");
    }

    #[test]
    fn family_names() {
        assert_eq!(family_name("a.b", Kind::Gauge, ""), "a_b");
        assert_eq!(
            family_name("a.seconds", Kind::Gauge, "seconds"),
            "a_seconds"
        );
        assert_eq!(
            family_name("a.xseconds", Kind::Gauge, "seconds"),
            "a_xseconds_seconds"
        );
        assert_eq!(family_name("a.total", Kind::Gauge, ""), "a_total");
        assert_eq!(
            family_name("a.bytes.total", Kind::Counter, "bytes"),
            "a_bytes"
        );
        assert_eq!(family_name("total", Kind::Counter, ""), "total");
    }

    #[test]
    fn units() {
        assert_eq!(unit_suffix(""), "");
        assert_eq!(unit_suffix("ms"), "milliseconds");
        assert_eq!(unit_suffix("1/s"), "per_second");
        assert_eq!(unit_suffix("{packet}/s"), "per_second");
        assert_eq!(unit_suffix("m/s"), "meters_per_second");
        assert_eq!(unit_suffix("Foo.Bar"), "foo_bar");
        assert_eq!(unit_suffix("{x}"), "");
    }

    #[test]
    fn go_floats() {
        assert_eq!(go_float(0.005), "0.005");
        assert_eq!(go_float(0.0001), "0.0001");
        assert_eq!(go_float(0.00001), "1e-05");
        assert_eq!(go_float(2.5e6), "2.5e+06");
        assert_eq!(go_float(1e21), "1e+21");
        assert_eq!(go_float(-3.0), "-3");
        assert_eq!(go_float(123.5), "123.5");
        assert_eq!(go_float(f64::NAN), "NaN");
        assert_eq!(go_float(f64::NEG_INFINITY), "-Inf");
    }
}
