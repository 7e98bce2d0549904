//! The exporter's settings, as the builder and a config file set them.

use std::collections::BTreeMap;
use std::time::Duration;

use sampler_exporter_prometheus::Buckets;

/// The default receiver: a local Prometheus started with `--web.enable-remote-write-receiver`.
pub const DEFAULT_URL: &str = "http://127.0.0.1:9090/api/v1/write";

/// How timings are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimingMode {
    /// Classic histograms: `_bucket{le}` series (cumulative, `+Inf` last), `_sum`, `_count`.
    #[default]
    Classic,
    /// Only `_sum` and `_count` (the cheapest: two series per timing).
    Summary,
    /// A native histogram (one series named as the family, no suffix): the timing's own
    /// base-2 exponential buckets, lossless for scales -4 to 8. The receiver must accept
    /// native histograms (Prometheus 2.40 on with `--enable-feature=native-histograms`).
    Native,
    /// Both the classic series and the native histogram.
    Both,
}

impl TimingMode {
    /// Whether timings are written as classic `_bucket` series.
    pub fn classic(self) -> bool {
        matches!(self, TimingMode::Classic | TimingMode::Both)
    }

    /// Whether timings are written as native histograms.
    pub fn native(self) -> bool {
        matches!(self, TimingMode::Native | TimingMode::Both)
    }

    /// Whether timings are written as `_sum` and `_count` series.
    pub fn sum_and_count(self) -> bool {
        !matches!(self, TimingMode::Native)
    }
}

/// Every setting of the exporter; [`Default`] gives the documented defaults.
///
/// In a config file (every key optional but `url` in practice):
///
/// ```toml
/// url = "http://127.0.0.1:9090/api/v1/write"
/// headers = { Authorization = "Bearer ${TOKEN}" }
/// timeout = "10s"
/// job = "sampler"
/// instance = "web-1"                 # default: the host name
/// external_labels = { region = "eu" }
/// timings = "classic"                # or "summary", "native", "both"
/// buckets = { scale = 0, min = 0.0009765625, max = 64.0 }
/// max_samples_per_send = 2000
/// max_buffered_samples = 500000
/// min_backoff = "30ms"
/// max_backoff = "5s"
/// metadata = true
/// staleness_markers = true
/// ```
///
/// ```
/// use sampler_exporter_remote_write::RemoteWriteConfig;
/// let c = RemoteWriteConfig::default();
/// assert_eq!(c.url, "http://127.0.0.1:9090/api/v1/write");
/// assert_eq!(c.max_samples_per_send, 2000);
/// ```
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// Where to POST (`http://host:port/path`).
    pub url: String,
    /// Extra request headers (authentication, tenant ids).
    pub headers: BTreeMap<String, String>,
    /// How long one request may take, connect to last byte. Default 10 s.
    #[serde(with = "sampler_api::duration_serde")]
    pub timeout: Duration,
    /// The `job` label of every series; empty leaves it out. Default `sampler`.
    pub job: String,
    /// The `instance` label of every series; empty leaves it out. Default the host name.
    pub instance: String,
    /// More labels for every series (a series' own label of the same name wins).
    pub external_labels: BTreeMap<String, String>,
    /// How timings are written: `classic` (the default), `summary` (`_sum` and `_count`
    /// only), `native` (native histograms) or `both` (classic and native).
    pub timings: TimingMode,
    /// The classic histogram boundaries. Default powers of two from 2^-10 to 2^6.
    pub buckets: Buckets,
    /// Samples per request at most (requests are split above it). Default 2000.
    pub max_samples_per_send: usize,
    /// Samples kept while the receiver is away; past it the oldest are dropped and counted.
    /// Default 500,000.
    pub max_buffered_samples: usize,
    /// The first retry's wait. Default 30 ms.
    #[serde(with = "sampler_api::duration_serde")]
    pub min_backoff: Duration,
    /// The longest wait between retries. Default 5 s.
    #[serde(with = "sampler_api::duration_serde")]
    pub max_backoff: Duration,
    /// Send type, help and unit of each family with the samples. Default true.
    pub metadata: bool,
    /// When a series is gone from a harvest, send the stale marker for it once, so queries
    /// stop returning it at once instead of five minutes later. Default true.
    pub staleness_markers: bool,
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        RemoteWriteConfig {
            url: DEFAULT_URL.to_owned(),
            headers: BTreeMap::new(),
            timeout: Duration::from_secs(10),
            job: "sampler".to_owned(),
            instance: host_name(),
            external_labels: BTreeMap::new(),
            timings: TimingMode::Classic,
            buckets: Buckets::default(),
            max_samples_per_send: 2000,
            max_buffered_samples: 500_000,
            min_backoff: Duration::from_millis(30),
            max_backoff: Duration::from_secs(5),
            metadata: true,
            staleness_markers: true,
        }
    }
}

impl RemoteWriteConfig {
    /// Checks the settings: the reason the first invalid one is invalid.
    pub fn validate(&self) -> Result<(), String> {
        let rest = self
            .url
            .strip_prefix("http://")
            .ok_or_else(|| format!("invalid url {:?}: must start with http://", self.url))?;
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() {
            return Err(format!("invalid url {:?}: no host", self.url));
        }
        if self.max_samples_per_send == 0 {
            return Err("max_samples_per_send must be at least 1".into());
        }
        if self.max_buffered_samples < self.max_samples_per_send {
            return Err(format!(
                "max_buffered_samples ({}) must be at least max_samples_per_send ({})",
                self.max_buffered_samples, self.max_samples_per_send
            ));
        }
        if self.timeout.is_zero() {
            return Err("timeout must be more than 0".into());
        }
        if self.min_backoff > self.max_backoff {
            return Err("min_backoff must not be more than max_backoff".into());
        }
        for k in self.external_labels.keys() {
            if sampler_exporter_prometheus::mapping::label_name(k) != k.as_str()
                || k.starts_with("__")
            {
                return Err(format!("invalid external label name {k:?}"));
            }
        }
        self.buckets.bounds().map(|_| ())
    }
}

/// The host name from the kernel, or `localhost`.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}
