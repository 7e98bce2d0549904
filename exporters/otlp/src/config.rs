//! The exporter's settings, as the builder and a config file set them.

use std::collections::BTreeMap;
use std::time::Duration;

/// The default endpoint: a collector on this machine, OTLP/HTTP.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318/v1/metrics";

/// The longest request timeout and retry delay accepted: one day.
const MAX_DELAY: Duration = Duration::from_secs(86_400);

/// The default endpoint of OTLP/gRPC: a collector on this machine.
pub const DEFAULT_GRPC_ENDPOINT: &str = "http://127.0.0.1:4317";

/// The default largest request body, before compression: 4 MiB, the default message limit of
/// gRPC servers and well under the 20 MiB the OTLP specification asks receivers to accept.
pub const DEFAULT_MAX_REQUEST_SIZE: usize = 4 << 20;

/// Every setting of the exporter; [`Default`] gives the documented defaults.
///
/// With the `serde` feature it reads from a config file (every key optional):
///
/// ```toml
/// protocol = "http/protobuf"           # or "grpc" (cargo feature `grpc`)
/// endpoint = "http://127.0.0.1:4318/v1/metrics"
/// headers = { authorization = "Bearer secret" }
/// timeout = "10s"                       # per request (a number of seconds works too)
/// compression = "gzip"                  # or "none"
/// temporality = "cumulative"            # or "delta"
/// histogram = "exponential"             # or "explicit", with `buckets`
/// buckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
/// resource = { "service.name" = "checkout", "service.instance.id" = "pod-7", "deployment.environment.name" = "prod" }
/// scope_name = "sampler"
/// scope_version = "0.1.0"
/// queue_size = 64                       # requests waiting to be sent
/// max_request_size = 4194304            # bytes, before compression
/// retry = { enabled = true, initial = 1.0, max = 30.0, max_elapsed = 60.0 }
/// ```
///
/// ```
/// use sampler_exporter_otlp::{Compression, HistogramMode, OtlpConfig, Temporality};
/// let c = OtlpConfig::default();
/// assert_eq!(c.endpoint, "http://127.0.0.1:4318/v1/metrics");
/// assert_eq!(c.compression, Compression::Gzip);
/// assert_eq!(c.temporality, Temporality::Cumulative);
/// assert_eq!(c.histogram, HistogramMode::Exponential);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct OtlpConfig {
    /// OTLP/HTTP with protobuf bodies, or OTLP/gRPC. Default `http/protobuf`.
    pub protocol: Protocol,
    /// The full URL requests are posted to. Default `http://127.0.0.1:4318/v1/metrics`; with
    /// `protocol = "grpc"` the default is `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Extra request headers (an API key, a tenant id).
    pub headers: BTreeMap<String, String>,
    /// How long one request may take, connect to last byte of the answer. Default 10 s.
    #[cfg_attr(feature = "serde", serde(with = "sampler_api::duration_serde"))]
    pub timeout: Duration,
    /// Request body compression. Default gzip.
    pub compression: Compression,
    /// Cumulative (the snapshot's totals) or delta (the change since the previous harvest)
    /// counters and histograms. Default cumulative.
    pub temporality: Temporality,
    /// How timings are sent. Default exponential histograms, lossless.
    pub histogram: HistogramMode,
    /// Upper bounds of the explicit-bucket histograms (`histogram = "explicit"`), strictly
    /// increasing and finite; `+Inf` is implied. Default the OpenTelemetry HTTP duration
    /// buckets in seconds.
    pub buckets: Vec<f64>,
    /// Resource attributes. `service.name` defaults to `unknown_service:<executable>` when not
    /// given; `service.instance.id` and any others are sent as given.
    pub resource: BTreeMap<String, String>,
    /// The instrumentation scope's name. Default `sampler`.
    pub scope_name: String,
    /// The instrumentation scope's version. Default this crate's version.
    pub scope_version: String,
    /// How many requests may wait to be sent; past it the oldest is dropped and counted.
    /// Default 64 (with one request per harvest, about ten minutes at a 10 s interval).
    pub queue_size: usize,
    /// The largest request body before compression; a harvest is split into requests under
    /// it. Default 4 MiB.
    pub max_request_size: usize,
    /// When and how often a failed request is tried again.
    pub retry: RetryConfig,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            protocol: Protocol::HttpProtobuf,
            endpoint: DEFAULT_ENDPOINT.to_owned(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            compression: Compression::Gzip,
            temporality: Temporality::Cumulative,
            histogram: HistogramMode::Exponential,
            buckets: default_buckets(),
            resource: BTreeMap::new(),
            scope_name: "sampler".to_owned(),
            scope_version: env!("CARGO_PKG_VERSION").to_owned(),
            queue_size: 64,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            retry: RetryConfig::default(),
        }
    }
}

/// The OpenTelemetry semantic conventions' advisory buckets for HTTP durations, in seconds.
pub fn default_buckets() -> Vec<f64> {
    vec![
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    ]
}

impl OtlpConfig {
    /// The endpoint to use: the configured one, or with gRPC and the endpoint left at the
    /// HTTP default, the gRPC default.
    pub fn effective_endpoint(&self) -> &str {
        if self.protocol == Protocol::Grpc && self.endpoint == DEFAULT_ENDPOINT {
            DEFAULT_GRPC_ENDPOINT
        } else {
            &self.endpoint
        }
    }

    /// Checks the settings; the message names the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.protocol == Protocol::Grpc && !cfg!(feature = "grpc") {
            return Err("protocol \"grpc\" needs a build with the cargo feature `grpc`".to_owned());
        }
        let scheme_ok = self.endpoint.starts_with("http://")
            || (self.endpoint.starts_with("https://") && cfg!(feature = "tls"));
        if !scheme_ok {
            return Err(if self.endpoint.starts_with("https://") {
                format!(
                    "endpoint {:?} needs https, which this build lacks (cargo feature `tls`)",
                    self.endpoint
                )
            } else {
                format!(
                    "endpoint {:?} must be an http:// or https:// URL",
                    self.endpoint
                )
            });
        }
        if self.protocol == Protocol::Grpc && self.endpoint.starts_with("https://") {
            return Err(format!(
                "endpoint {:?}: grpc over https is not built in; use http/protobuf for https",
                self.endpoint
            ));
        }
        if let Err(e) = self.endpoint.parse::<ureq::http::Uri>() {
            return Err(format!(
                "endpoint {:?} is not a valid URL: {e}",
                self.endpoint
            ));
        }
        for (k, v) in &self.headers {
            if ureq::http::HeaderName::from_bytes(k.as_bytes()).is_err() {
                return Err(format!("header name {k:?} is not a valid HTTP header name"));
            }
            if ureq::http::HeaderValue::from_str(v).is_err() {
                return Err(format!(
                    "header {k:?} has a value that is not valid in HTTP"
                ));
            }
        }
        if self.timeout.is_zero() || self.timeout > MAX_DELAY {
            return Err(format!(
                "timeout must be more than zero and at most a day, got {:?}",
                self.timeout
            ));
        }
        if self.histogram == HistogramMode::Explicit {
            if let Some(b) = self.buckets.iter().find(|b| !b.is_finite()) {
                return Err(format!(
                    "bucket bounds must be finite (+Inf is implied), got {b}"
                ));
            }
            if let Some(w) = self.buckets.windows(2).find(|w| w[0] >= w[1]) {
                return Err(format!(
                    "bucket bounds must be strictly increasing, got {} after {}",
                    w[1], w[0]
                ));
            }
        }
        if self.queue_size == 0 {
            return Err("queue_size must be at least 1".to_owned());
        }
        if self.max_request_size < 1024 {
            return Err(format!(
                "max_request_size must be at least 1024 bytes, got {}",
                self.max_request_size
            ));
        }
        self.retry.validate()
    }
}

/// The OTLP transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
pub enum Protocol {
    /// OTLP/HTTP, protobuf bodies (`http/protobuf`).
    #[default]
    #[cfg_attr(feature = "serde", serde(rename = "http/protobuf"))]
    HttpProtobuf,
    /// OTLP/gRPC (`grpc`), with the cargo feature `grpc`.
    #[cfg_attr(feature = "serde", serde(rename = "grpc"))]
    Grpc,
}

/// Request body compression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Compression {
    /// gzip (`Content-Encoding: gzip`), which every OTLP receiver accepts.
    #[default]
    Gzip,
    /// Plain protobuf.
    None,
}

/// The aggregation temporality of counters and histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Temporality {
    /// Totals since each series' start time, as the snapshot holds them.
    #[default]
    Cumulative,
    /// The change since the previous harvest, derived per series.
    Delta,
}

/// How timings are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum HistogramMode {
    /// `ExponentialHistogram`: the timing's own buckets, scale and zero bucket, lossless.
    #[default]
    Exponential,
    /// `Histogram` with the configured explicit bounds.
    Explicit,
}

/// Retries of requests that failed in a way worth retrying (a network error, or HTTP 429,
/// 502, 503, 504): exponential backoff with jitter, or the receiver's `Retry-After`.
///
/// ```
/// use sampler_exporter_otlp::RetryConfig;
/// let r = RetryConfig::default();
/// assert!(r.enabled);
/// assert_eq!(r.initial.as_secs(), 1);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RetryConfig {
    /// Whether to retry at all. Default true.
    pub enabled: bool,
    /// The first delay; each next one doubles, up to `max`. Default 1 s.
    #[cfg_attr(feature = "serde", serde(with = "sampler_api::duration_serde"))]
    pub initial: Duration,
    /// The longest delay between attempts. Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "sampler_api::duration_serde"))]
    pub max: Duration,
    /// How long one request is tried before it is dropped and counted. Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "sampler_api::duration_serde"))]
    pub max_elapsed: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: true,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(60),
        }
    }
}

impl RetryConfig {
    fn validate(&self) -> Result<(), String> {
        if self.initial.is_zero() || self.initial > self.max || self.max > MAX_DELAY {
            return Err(format!(
                "retry delays must satisfy 0 < initial <= max <= 1 day, got initial {:?}, max {:?}",
                self.initial, self.max
            ));
        }
        Ok(())
    }

    /// The delay before attempt `retry` (0 for the first retry): `initial * 2^retry` capped
    /// at `max`, then a random factor from 0.5 to 1.5 so many exporters do not retry in step.
    ///
    /// ```
    /// use sampler_exporter_otlp::RetryConfig;
    /// use std::time::Duration;
    /// let r = RetryConfig::default();
    /// let d = r.backoff(3, 0.5); // jitter 0.5 is the middle: no change
    /// assert_eq!(d, Duration::from_secs(8));
    /// assert_eq!(r.backoff(30, 0.5), Duration::from_secs(30));
    /// ```
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let base = self
            .initial
            .saturating_mul(1u32 << retry.min(20))
            .min(self.max);
        base.mul_f64(0.5 + jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(OtlpConfig::default().validate(), Ok(()));
    }

    #[test]
    fn bad_settings_name_the_key() {
        let bad = |f: &dyn Fn(&mut OtlpConfig)| {
            let mut c = OtlpConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(
            bad(&|c| c.endpoint = "127.0.0.1:4318".into()),
            "endpoint \"127.0.0.1:4318\" must be an http:// or https:// URL"
        );
        assert!(bad(&|c| c.endpoint = "http://a b/".into()).contains("not a valid URL"));
        assert!(bad(&|c| {
            c.headers.insert("bad header".into(), "x".into());
        })
        .contains("bad header"));
        assert!(bad(&|c| {
            c.histogram = HistogramMode::Explicit;
            c.buckets = vec![1.0, 0.5];
        })
        .contains("strictly increasing, got 0.5 after 1"));
        assert_eq!(bad(&|c| c.queue_size = 0), "queue_size must be at least 1");
        assert!(bad(&|c| c.retry.initial = Duration::ZERO).starts_with("retry delays"));
        assert!(bad(&|c| c.retry.max = Duration::MAX).starts_with("retry delays"));
        assert!(bad(&|c| c.timeout = Duration::MAX).starts_with("timeout must be"));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_inside_half_to_one_and_a_half() {
        let r = RetryConfig::default();
        assert_eq!(r.backoff(0, 0.5), Duration::from_secs(1));
        assert_eq!(r.backoff(1, 0.5), Duration::from_secs(2));
        assert_eq!(r.backoff(0, 0.0), Duration::from_millis(500));
        assert_eq!(r.backoff(0, 1.0), Duration::from_millis(1500));
        assert_eq!(r.backoff(u32::MAX, 1.0), Duration::from_secs(45));
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;

    #[test]
    fn reads_every_key_and_rejects_unknown_ones() {
        let c: OtlpConfig = serde_json::from_str(
            r#"{"protocol": "http/protobuf", "endpoint": "http://collector:4318/v1/metrics", "headers": {"x-tenant": "a"},
                "timeout": 2.5, "compression": "none", "temporality": "delta",
                "histogram": "explicit", "buckets": [0.1, 1.0],
                "resource": {"service.name": "svc"}, "scope_name": "s", "scope_version": "1",
                "queue_size": 3, "max_request_size": 65536,
                "retry": {"enabled": false, "initial": 0.5, "max": 4.0, "max_elapsed": 10.0}}"#,
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.compression, Compression::None);
        assert_eq!(c.temporality, Temporality::Delta);
        assert_eq!(c.histogram, HistogramMode::Explicit);
        assert!(!c.retry.enabled);
        assert_eq!(c.retry.initial, Duration::from_millis(500));
        assert_eq!(c.validate(), Ok(()));
        let d: OtlpConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, OtlpConfig::default());
        assert!(serde_json::from_str::<OtlpConfig>(r#"{"endpiont": "x"}"#).is_err());
    }
}
