//! Content negotiation: which format and encoding a scrape gets, from its `Accept` and
//! `Accept-Encoding` headers. Parsing allocates nothing.

use crate::encode::Format;

/// Picks the format for an `Accept` header value (`None` when absent).
///
/// The media ranges are weighed by `q` (default 1; `q=0` refuses), and the first of the
/// heaviest that this endpoint serves wins: `application/openmetrics-text` → OpenMetrics,
/// `text/plain` (or `*/*`, `text/*`) → text 0.0.4, and the delimited
/// `application/vnd.google.protobuf` with `proto=io.prometheus.client.MetricFamily` →
/// protobuf, when `protobuf` is offered. Anything else gets text 0.0.4.
///
/// ```
/// use sampler_exporter_prometheus::{negotiate_format, Format};
/// let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// assert_eq!(negotiate_format(Some(prom), false), Format::OpenMetrics);
/// assert_eq!(negotiate_format(Some("text/plain"), false), Format::Text);
/// assert_eq!(negotiate_format(None, true), Format::Text);
/// ```
pub fn negotiate_format(accept: Option<&str>, protobuf: bool) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut best: Option<(f64, Format)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let mut q = 1.0f64;
        let mut proto_ok = false;
        let mut delimited = false;
        let mut version_ok = true;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            if k.eq_ignore_ascii_case("q") {
                q = v.parse().unwrap_or(0.0);
            } else if k.eq_ignore_ascii_case("proto") {
                proto_ok = v == "io.prometheus.client.MetricFamily";
            } else if k.eq_ignore_ascii_case("encoding") {
                delimited = v == "delimited";
            } else if k.eq_ignore_ascii_case("version") && media.eq_ignore_ascii_case("text/plain")
            {
                version_ok = v == "0.0.4";
            }
        }
        if q <= 0.0 || q.is_nan() {
            continue;
        }
        let format = if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Some(Format::OpenMetrics)
        } else if media.eq_ignore_ascii_case("application/vnd.google.protobuf") {
            (protobuf && proto_ok && delimited).then_some(Format::Protobuf)
        } else if (media.eq_ignore_ascii_case("text/plain") && version_ok)
            || media == "*/*"
            || media.eq_ignore_ascii_case("text/*")
        {
            Some(Format::Text)
        } else {
            None
        };
        if let Some(f) = format {
            if best.map_or(true, |(bq, _)| q > bq) {
                best = Some((q, f));
            }
        }
    }
    best.map_or(Format::Text, |(_, f)| f)
}

/// Whether an `Accept-Encoding` header value accepts gzip (`gzip` or `*` with `q > 0`, and
/// gzip not refused by name).
///
/// ```
/// use sampler_exporter_prometheus::accepts_gzip;
/// assert!(accepts_gzip(Some("gzip")));
/// assert!(accepts_gzip(Some("br;q=1.0, gzip;q=0.8, *;q=0.1")));
/// assert!(!accepts_gzip(Some("gzip;q=0")));
/// assert!(!accepts_gzip(Some("identity")));
/// assert!(!accepts_gzip(None));
/// ```
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(v) = accept_encoding else {
        return false;
    };
    let mut star = false;
    for item in v.split(',') {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let mut q = 1.0f64;
        for p in parts {
            if let Some((k, val)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = val.trim().parse().unwrap_or(0.0);
                }
            }
        }
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            return q > 0.0;
        }
        if coding == "*" {
            star = q > 0.0;
        }
    }
    star
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_with_native_histograms_gets_protobuf() {
        let a = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate_format(Some(a), true), Format::Protobuf);
        assert_eq!(negotiate_format(Some(a), false), Format::OpenMetrics);
    }

    #[test]
    fn weights_and_refusals() {
        assert_eq!(
            negotiate_format(
                Some("application/openmetrics-text;q=0.2, text/plain;q=0.9"),
                false
            ),
            Format::Text
        );
        assert_eq!(
            negotiate_format(Some("application/openmetrics-text;q=0"), false),
            Format::Text
        );
        assert_eq!(
            negotiate_format(Some("application/json"), false),
            Format::Text
        );
        assert_eq!(
            negotiate_format(
                Some("application/vnd.google.protobuf;proto=other;encoding=delimited"),
                true
            ),
            Format::Text
        );
        assert_eq!(negotiate_format(Some(""), false), Format::Text);
        assert_eq!(negotiate_format(Some(";;,=,q=;"), false), Format::Text);
    }

    #[test]
    fn star_encoding() {
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("*, gzip;q=0")));
        assert!(!accepts_gzip(Some("*;q=0")));
    }
}
