//! The exporter's settings, as the builder and a config file set them.

use std::collections::BTreeMap;
use std::time::Duration;

/// The default listen address.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9464";
/// The default metrics path.
pub const DEFAULT_PATH: &str = "/metrics";

/// Every setting of the exporter: the endpoint's (`address`, `path`, `harvest_on_scrape`,
/// `harvest_timeout`, `gzip`) and the encoding ones, which [`EncoderConfig`] holds alone;
/// [`Default`] gives the documented defaults.
///
/// With the `serde` feature it reads from a config file (every key optional):
///
/// ```toml
/// address = "0.0.0.0:9464"
/// path = "/metrics"
/// harvest_on_scrape = false
/// timings = "histogram"             # or "summary"
/// buckets = { scale = 0, min = 0.0009765625, max = 64.0 }   # or a list: [0.005, 0.01, 0.1]
/// quantiles = [0.5, 0.9, 0.99]      # for timings = "summary"
/// native_histograms = false
/// openmetrics_created = true
/// gzip = true
/// max_connections = 256
/// ui = true                         # the live page at /
/// ```
///
/// ```
/// use sampler_exporter_prometheus::{Buckets, PrometheusConfig, TimingMode};
/// let c = PrometheusConfig::default();
/// assert_eq!(c.address, "127.0.0.1:9464");
/// assert_eq!(c.path, "/metrics");
/// assert_eq!(c.timings, TimingMode::Histogram);
/// assert!(matches!(c.buckets, Buckets::Exponential { scale: 0, .. }));
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PrometheusConfig {
    /// Where to listen (`host:port`; port 0 picks a free port). Default `127.0.0.1:9464`.
    pub address: String,
    /// The path that serves the metrics. Default `/metrics`.
    pub path: String,
    /// Harvest on each scrape instead of serving the latest periodic harvest (needs the
    /// exporter to run inside a `Harvester`). A scrape waits at most `harvest_timeout` for it,
    /// then gets the latest snapshot. Default false.
    pub harvest_on_scrape: bool,
    /// How long a scrape waits for its own harvest when `harvest_on_scrape` is set (capped by
    /// the scraper's `X-Prometheus-Scrape-Timeout-Seconds`). Default 1 s.
    #[cfg_attr(feature = "serde", serde(with = "sampler_api::duration_serde"))]
    pub harvest_timeout: Duration,
    /// How timings are exposed in the text formats. Default classic histograms.
    pub timings: TimingMode,
    /// The classic histogram bucket boundaries. Default powers of two from 2^-10 to 2^6.
    pub buckets: Buckets,
    /// Bucket boundaries for particular metrics, by dotted name.
    pub bucket_overrides: BTreeMap<String, Buckets>,
    /// The quantiles of summaries (`timings = "summary"`). Default 0.5, 0.9, 0.99.
    pub quantiles: Vec<f64>,
    /// Offer the protobuf exposition with native histograms to scrapers that ask for it.
    /// Default false.
    pub native_histograms: bool,
    /// Add `_created` samples (the series' start time) to OpenMetrics counters, histograms
    /// and summaries. Default true.
    pub openmetrics_created: bool,
    /// Compress responses with gzip when the scraper accepts it. Default true.
    pub gzip: bool,
    /// The most connections served at once (at least 1). Past it a connection is answered
    /// `503 Service Unavailable` and closed at once, so that idle or hostile clients cannot use
    /// up the process's file descriptors. Default [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Serve the live page at `/` (every series of the last 60 harvests as small charts, from
    /// `/ui/data.json`; needs the `ui` feature, on by default). When false, `/` is a plain page
    /// linking to the metrics. Default true.
    pub ui: bool,
}

/// The default most connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

/// The encoding settings alone: what [`Encoder`](crate::Encoder) needs to turn a snapshot
/// into an exposition, without the endpoint's HTTP settings (available without the `server`
/// feature). [`Default`] gives the documented defaults; a [`PrometheusConfig`] converts into
/// one.
///
/// ```
/// use sampler_exporter_prometheus::{EncoderConfig, TimingMode};
/// let c = EncoderConfig { timings: TimingMode::Summary, ..EncoderConfig::default() };
/// assert!(c.openmetrics_created);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct EncoderConfig {
    /// How timings are exposed in the text formats. Default classic histograms.
    pub timings: TimingMode,
    /// The classic histogram bucket boundaries. Default powers of two from 2^-10 to 2^6.
    pub buckets: Buckets,
    /// Bucket boundaries for particular metrics, by dotted name.
    pub bucket_overrides: BTreeMap<String, Buckets>,
    /// The quantiles of summaries (`timings = "summary"`). Default 0.5, 0.9, 0.99.
    pub quantiles: Vec<f64>,
    /// Write timings as native histograms in the protobuf exposition (needs the `protobuf`
    /// feature). Default false.
    pub native_histograms: bool,
    /// Add `_created` samples (the series' start time) to OpenMetrics counters, histograms
    /// and summaries. Default true.
    pub openmetrics_created: bool,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            timings: TimingMode::Histogram,
            buckets: Buckets::default(),
            bucket_overrides: BTreeMap::new(),
            quantiles: vec![0.5, 0.9, 0.99],
            native_histograms: false,
            openmetrics_created: true,
        }
    }
}

impl From<&EncoderConfig> for EncoderConfig {
    fn from(c: &EncoderConfig) -> Self {
        c.clone()
    }
}

impl From<&PrometheusConfig> for EncoderConfig {
    /// The encoding settings of an exporter's config.
    fn from(c: &PrometheusConfig) -> Self {
        EncoderConfig {
            timings: c.timings,
            buckets: c.buckets.clone(),
            bucket_overrides: c.bucket_overrides.clone(),
            quantiles: c.quantiles.clone(),
            native_histograms: c.native_histograms,
            openmetrics_created: c.openmetrics_created,
        }
    }
}

impl From<PrometheusConfig> for EncoderConfig {
    fn from(c: PrometheusConfig) -> Self {
        EncoderConfig::from(&c)
    }
}

impl Default for PrometheusConfig {
    fn default() -> Self {
        PrometheusConfig {
            address: DEFAULT_ADDRESS.to_owned(),
            path: DEFAULT_PATH.to_owned(),
            harvest_on_scrape: false,
            harvest_timeout: Duration::from_secs(1),
            timings: TimingMode::Histogram,
            buckets: Buckets::default(),
            bucket_overrides: BTreeMap::new(),
            quantiles: vec![0.5, 0.9, 0.99],
            native_histograms: false,
            openmetrics_created: true,
            gzip: true,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            ui: true,
        }
    }
}

/// How timings appear in the text formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum TimingMode {
    /// Classic histograms (`_bucket{le=…}`, `_sum`, `_count`): aggregatable across series.
    #[default]
    Histogram,
    /// Summaries with the configured quantiles, `_sum` and `_count`.
    Summary,
}

/// Classic histogram bucket boundaries.
///
/// Exponential boundaries are bucket boundaries of the timings' own base-2 exponential
/// buckets (`2^(k / 2^scale)`), so the cumulative count at each `le` is exact whenever the
/// timing's scale is at least `scale`. Explicit boundaries are allowed too: a count then
/// includes a timing bucket only when that bucket lies wholly below the boundary.
///
/// ```
/// use sampler_exporter_prometheus::Buckets;
/// let b = Buckets::Exponential { scale: 0, min: 0.25, max: 4.0 };
/// assert_eq!(b.bounds().unwrap(), vec![0.25, 0.5, 1.0, 2.0, 4.0]);
/// assert!(Buckets::Explicit(vec![2.0, 1.0]).bounds().is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum Buckets {
    /// Every boundary `2^(k / 2^scale)` from `min` to `max` (both rounded outwards to a
    /// boundary). `scale` is 0 to 8.
    Exponential {
        /// Boundaries per power of two: `2^scale`.
        scale: i8,
        /// The lowest boundary (rounded down to a boundary).
        min: f64,
        /// The highest finite boundary (rounded up to a boundary).
        max: f64,
    },
    /// These boundaries, strictly increasing and finite (`+Inf` is always added).
    Explicit(Vec<f64>),
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets::Exponential {
            scale: 0,
            min: 2f64.powi(-10),
            max: 64.0,
        }
    }
}

/// At most this many finite boundaries per histogram.
pub const MAX_BUCKETS: usize = 1000;

impl Buckets {
    /// The finite boundaries, in increasing order, or why the setting is invalid.
    pub fn bounds(&self) -> Result<Vec<f64>, String> {
        match self {
            Buckets::Exponential { scale, min, max } => {
                if !(0..=8).contains(scale) {
                    return Err(format!("bucket scale must be 0 to 8, got {scale}"));
                }
                if !(min.is_finite() && max.is_finite() && *min > 0.0 && min <= max) {
                    return Err(format!(
                        "bucket range must satisfy 0 < min <= max (finite), got min {min}, max {max}"
                    ));
                }
                let lo = first_exponent(*min, *scale);
                let hi = (max.log2() * (1i64 << scale) as f64 - 1e-9).ceil() as i64;
                if hi - lo + 1 > MAX_BUCKETS as i64 {
                    return Err(format!(
                        "bucket range {min}..{max} at scale {scale} gives {} buckets, more than {MAX_BUCKETS}",
                        hi - lo + 1
                    ));
                }
                Ok((lo..=hi).map(|k| exp_bound(k, *scale)).collect())
            }
            Buckets::Explicit(v) => {
                if v.len() > MAX_BUCKETS {
                    return Err(format!("at most {MAX_BUCKETS} buckets, got {}", v.len()));
                }
                if let Some(b) = v.iter().find(|b| !b.is_finite()) {
                    return Err(format!(
                        "bucket boundaries must be finite (+Inf is always added), got {b}"
                    ));
                }
                if let Some(w) = v.windows(2).find(|w| w[0] >= w[1]) {
                    return Err(format!(
                        "bucket boundaries must be strictly increasing, got {} after {}",
                        w[1], w[0]
                    ));
                }
                Ok(v.clone())
            }
        }
    }

    /// For exponential boundaries, their scale and the exponent index of the first one.
    pub(crate) fn exponential_index(&self) -> Option<(i8, i64)> {
        match self {
            Buckets::Exponential { scale, min, .. } => Some((*scale, first_exponent(*min, *scale))),
            Buckets::Explicit(_) => None,
        }
    }
}

/// The exponent `k` of the highest boundary `2^(k / 2^scale)` at or below `min` (`scale` 0 to 8).
fn first_exponent(min: f64, scale: i8) -> i64 {
    (min.log2() * (1i64 << scale) as f64 + 1e-9).floor() as i64
}

/// `2^(k / 2^scale)`, exact at powers of two.
pub(crate) fn exp_bound(k: i64, scale: i8) -> f64 {
    let per = 1i64 << scale;
    if k % per == 0 {
        2f64.powi((k / per) as i32)
    } else {
        sampler_api::distribution::bucket_lower_bound(k as i32, scale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bounds_are_powers_of_two() {
        let b = Buckets::default().bounds().unwrap();
        assert_eq!(b.len(), 17);
        assert_eq!(b[0], 2f64.powi(-10));
        assert_eq!(*b.last().unwrap(), 64.0);
        assert!(b.windows(2).all(|w| w[1] == w[0] * 2.0));
    }

    #[test]
    fn exponential_bounds_match_distribution_boundaries() {
        let b = Buckets::Exponential {
            scale: 2,
            min: 0.3,
            max: 3.0,
        }
        .bounds()
        .unwrap();
        for (i, v) in b.iter().enumerate() {
            let k = Buckets::Exponential {
                scale: 2,
                min: 0.3,
                max: 3.0,
            }
            .exponential_index()
            .unwrap()
            .1 + i as i64;
            assert_eq!(
                *v,
                sampler_api::distribution::bucket_lower_bound(k as i32, 2)
            );
        }
        assert!(b[0] <= 0.3 && *b.last().unwrap() >= 3.0);
    }

    #[test]
    fn bad_settings_are_rejected() {
        assert!(Buckets::Exponential {
            scale: 9,
            min: 1.0,
            max: 2.0
        }
        .bounds()
        .is_err());
        assert!(Buckets::Exponential {
            scale: 0,
            min: 0.0,
            max: 2.0
        }
        .bounds()
        .is_err());
        assert!(Buckets::Exponential {
            scale: 8,
            min: 1e-300,
            max: 1e300
        }
        .bounds()
        .is_err());
        assert!(Buckets::Explicit(vec![1.0, f64::INFINITY])
            .bounds()
            .is_err());
        // The message names the boundary at fault.
        assert_eq!(
            Buckets::Explicit(vec![1.0, 2.0, 2.0]).bounds().unwrap_err(),
            "bucket boundaries must be strictly increasing, got 2 after 2"
        );
        assert_eq!(
            Buckets::Explicit(vec![1.0, f64::NAN]).bounds().unwrap_err(),
            "bucket boundaries must be finite (+Inf is always added), got NaN"
        );
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;

    #[test]
    fn reads_every_key_and_rejects_unknown_ones() {
        let c: PrometheusConfig = serde_json::from_str(
            r#"{"address": ":9464", "path": "/m", "harvest_on_scrape": true, "harvest_timeout": 0.5,
                "timings": "summary", "buckets": [0.1, 1.0], "quantiles": [0.5],
                "bucket_overrides": {"http.response.size": {"scale": 0, "min": 64.0, "max": 1048576.0}},
                "native_histograms": true, "openmetrics_created": false, "gzip": false,
                "max_connections": 8}"#,
        )
        .unwrap();
        assert_eq!(c.harvest_timeout, Duration::from_millis(500));
        assert_eq!(c.max_connections, 8);
        assert_eq!(c.timings, TimingMode::Summary);
        assert_eq!(c.buckets, Buckets::Explicit(vec![0.1, 1.0]));
        assert!(matches!(
            c.bucket_overrides["http.response.size"],
            Buckets::Exponential { scale: 0, .. }
        ));
        let d: PrometheusConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, PrometheusConfig::default());
        assert!(serde_json::from_str::<PrometheusConfig>(r#"{"adress": "x"}"#).is_err());
    }
}
