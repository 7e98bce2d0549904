//! The mapping rules from sampler's data model to Prometheus names, units, labels and numbers,
//! one small function per rule (`spec/prometheus.md` is the table these implement).

use std::fmt::Write as _;

/// Maps a dotted metric name to a Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
///
/// Dots and every other byte outside the allowed set become `_`; a name that would start with
/// a digit gets a leading `_`.
///
/// ```
/// use sampler_exporter_prometheus::mapping::metric_name;
/// assert_eq!(metric_name("http.server.duration"), "http_server_duration");
/// assert_eq!(metric_name("9lives.x-y"), "_9lives_x_y");
/// ```
pub fn metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.is_empty() || name.as_bytes()[0].is_ascii_digit() {
        out.push('_');
    }
    for c in name.chars() {
        out.push(if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
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

/// Seconds since the Unix epoch, as `_created` samples carry them.
pub(crate) fn unix_seconds(t: std::time::SystemTime) -> f64 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
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
