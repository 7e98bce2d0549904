//! Numbers in readable form: `1.2 GiB`, `35 ms`, `0.52`.
//!
//! ```
//! use sampler_exporter_console::human;
//! assert_eq!(human::bytes(1.25 * 1024.0 * 1024.0 * 1024.0), "1.2 GiB");
//! assert_eq!(human::seconds(0.035), "35 ms");
//! assert_eq!(human::value(4096.0, "By"), "4.0 KiB");
//! assert_eq!(human::value(35_000.0, "us"), "35 ms");
//! assert_eq!(human::value(0.52, "1"), "0.52");
//! assert_eq!(human::rate(1536.0, "By"), "1.5 KiB/s");
//! ```

/// How a unit reads: bytes, durations, or a plain number with the unit after it.
enum Scale {
    Bytes(f64),
    Seconds(f64),
    Plain,
}

fn scale(unit: &str) -> Scale {
    match unit {
        "By" => Scale::Bytes(1.0),
        "KiBy" => Scale::Bytes(1024.0),
        "MiBy" => Scale::Bytes(1024.0 * 1024.0),
        "GiBy" => Scale::Bytes(1024.0 * 1024.0 * 1024.0),
        "s" => Scale::Seconds(1.0),
        "ms" => Scale::Seconds(1e-3),
        "us" => Scale::Seconds(1e-6),
        "ns" => Scale::Seconds(1e-9),
        _ => Scale::Plain,
    }
}

/// A value in `unit` (UCUM: `By`, `s`, `ms`, `us`, `ns`, `1`, …) in readable form.
/// Units it does not know follow the number (`21.5 Cel`); `1`, the empty unit and annotations
/// (`{request}`) add nothing.
pub fn value(v: f64, unit: &str) -> String {
    match scale(unit) {
        Scale::Bytes(k) => bytes(v * k),
        Scale::Seconds(k) => seconds(v * k),
        Scale::Plain => with_unit(number(v), unit),
    }
}

/// A rate per second of a value in `unit`: `1.5 KiB/s`, `12 ms/s`, `4.5/s`.
pub fn rate(per_second: f64, unit: &str) -> String {
    match scale(unit) {
        Scale::Bytes(k) => format!("{}/s", bytes(per_second * k)),
        Scale::Seconds(k) => format!("{}/s", seconds(per_second * k)),
        Scale::Plain if dimensionless(unit) => format!("{}/s", number(per_second)),
        Scale::Plain => format!("{} {unit}/s", number(per_second)),
    }
}

fn dimensionless(unit: &str) -> bool {
    unit.is_empty() || unit == "1" || (unit.starts_with('{') && unit.ends_with('}'))
}

fn with_unit(n: String, unit: &str) -> String {
    if dimensionless(unit) {
        n
    } else {
        format!("{n} {unit}")
    }
}

/// Bytes in binary multiples with one decimal: `512 B`, `4.0 KiB`, `1.2 GiB`.
pub fn bytes(v: f64) -> String {
    if !v.is_finite() {
        return format!("{} B", number(v));
    }
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if v.abs() < 1024.0 {
        return format!("{} B", number(v));
    }
    let mut x = v / 1024.0;
    let mut i = 0;
    // Rounding to one decimal may carry to 1024.0: move up a unit then.
    while (x.abs() * 10.0).round() / 10.0 >= 1024.0 && i + 1 < UNITS.len() {
        x /= 1024.0;
        i += 1;
    }
    format!("{x:.1} {}", UNITS[i])
}

/// Seconds as `ns`, `µs`, `ms` or `s` with up to three significant digits: `35 ms`, `1.25 s`.
pub fn seconds(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{} s", number(v));
    }
    let a = v.abs();
    // Pick the unit after rounding, so 999.6 µs reads `1 ms`, not `1000 µs`.
    for (k, unit) in [(1e-9, "ns"), (1e-6, "µs"), (1e-3, "ms")] {
        if round3(a / k) < 1000.0 {
            return format!("{} {unit}", sig3(v / k));
        }
    }
    format!("{} s", sig3(v))
}

/// A plain number: integers whole, others with three significant digits.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.to_owned();
    }
    if v.fract() == 0.0 && v.abs() < 1e15 {
        return format!("{}", v as i64);
    }
    sig3(v)
}

/// `v` rounded to three significant digits.
fn round3(v: f64) -> f64 {
    if v == 0.0 {
        return 0.0;
    }
    let d = decimals(v);
    let p = 10f64.powi(d as i32);
    (v * p).round() / p
}

fn decimals(v: f64) -> usize {
    let mag = v.abs().log10().floor() as i32;
    (2 - mag).clamp(0, 9) as usize
}

/// Three significant digits, trailing zeros dropped: `35`, `1.25`, `0.00123`, `12346`.
fn sig3(v: f64) -> String {
    if v == 0.0 {
        return "0".to_owned();
    }
    let s = format!("{:.*}", decimals(v), v);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(0.0), "0 B");
        assert_eq!(bytes(1023.0), "1023 B");
        assert_eq!(bytes(1024.0), "1.0 KiB");
        assert_eq!(bytes(1048575.0), "1.0 MiB");
        assert_eq!(bytes(12.5 * 1048576.0), "12.5 MiB");
        assert_eq!(bytes(-2048.0), "-2.0 KiB");
        assert_eq!(bytes(f64::NAN), "NaN B");
    }

    #[test]
    fn durations() {
        assert_eq!(seconds(0.0), "0 s");
        assert_eq!(seconds(850e-9), "850 ns");
        assert_eq!(seconds(12.5e-6), "12.5 µs");
        assert_eq!(seconds(0.035), "35 ms");
        assert_eq!(seconds(0.0009996), "1 ms");
        assert_eq!(seconds(1.25), "1.25 s");
        assert_eq!(seconds(1_764_000_000.0), "1764000000 s");
        assert_eq!(seconds(1e-12), "0.001 ns");
    }

    #[test]
    fn numbers_and_units() {
        assert_eq!(number(42.0), "42");
        assert_eq!(number(0.52), "0.52");
        assert_eq!(number(0.001234), "0.00123");
        assert_eq!(number(12345.6), "12346");
        assert_eq!(number(f64::INFINITY), "inf");
        assert_eq!(value(3.0, "{request}"), "3");
        assert_eq!(value(21.5, "Cel"), "21.5 Cel");
        assert_eq!(value(2.0, "MiBy"), "2.0 MiB");
        assert_eq!(rate(4.5, "1"), "4.5/s");
        assert_eq!(rate(12_000.0, "us"), "12 ms/s");
        assert_eq!(rate(2.0, "Cel"), "2 Cel/s");
    }
}
