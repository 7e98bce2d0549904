//! The exporter's settings, as the builder and a config file set them.

use std::time::Duration;

/// The default daemon address.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8125";
/// The default largest datagram payload: an Ethernet MTU of 1500 bytes less the IPv6 (40) and
/// UDP (8) headers and some room for tunnels, the value DogStatsD clients use.
pub const DEFAULT_MAX_PAYLOAD: usize = 1432;
/// The default number of lines one timing series may send per harvest.
pub const DEFAULT_TIMING_LINES: usize = 100;
/// The largest `max_payload` accepted: a UDP datagram's payload limit over IPv4.
pub const MAX_PAYLOAD_LIMIT: usize = 65_507;

/// Every setting of the exporter; [`Default`] gives the documented defaults.
///
/// With the `serde` feature it reads from a config file (every key optional):
///
/// ```toml
/// address = "127.0.0.1:8125"   # host:port, or a socket path for transport = "unix"
/// transport = "udp"            # or "tcp", "unix" (a Unix datagram socket)
/// max_payload = 1432           # bytes per datagram (per write over TCP)
/// prefix = "myapp"             # prepended to every name, with a dot
/// tags = "none"                # or "dogstatsd": labels as |#key:value
/// timings = "buckets"          # or "distribution": DogStatsD |d lines
/// timing_lines = 100           # at most this many lines per timing series per harvest
/// resolve_every = 60.0         # seconds between DNS look-ups of the address (0: every send)
/// ```
///
/// ```
/// use sampler_exporter_statsd::{StatsdConfig, TagStyle, TimingMode, Transport};
/// let c = StatsdConfig::default();
/// assert_eq!(c.address, "127.0.0.1:8125");
/// assert_eq!(c.transport, Transport::Udp);
/// assert_eq!(c.max_payload, 1432);
/// assert_eq!(c.tags, TagStyle::None);
/// assert_eq!(c.timings, TimingMode::Buckets);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct StatsdConfig {
    /// The daemon: `host:port` (a name is looked up again every `resolve_every`), or for
    /// `transport = "unix"` the path of its datagram socket. Default `127.0.0.1:8125`.
    pub address: String,
    /// How lines travel. Default UDP.
    pub transport: Transport,
    /// The largest payload of one datagram in bytes (over TCP: of one write). A line longer
    /// than this is dropped and counted. Default 1432.
    pub max_payload: usize,
    /// Prepended to every metric name with a dot (`myapp` → `myapp.http.requests`). Default
    /// none.
    pub prefix: String,
    /// How labels travel. Default: folded into the name.
    pub tags: TagStyle,
    /// How timings travel. Default: weighted `|ms` lines any StatsD daemon reads.
    pub timings: TimingMode,
    /// At most this many lines per timing series per harvest (at least 2). Up to this many
    /// observations go out one line each, so every statistic of the daemon is exact; above it
    /// lines carry a sample rate. Default 100.
    pub timing_lines: usize,
    /// How often the daemon's name is looked up again (a datagram sender never notices a moved
    /// daemon otherwise); zero looks it up before every harvest's send. Default 60 s.
    #[cfg_attr(feature = "serde", serde(with = "sampler_api::duration_serde"))]
    pub resolve_every: Duration,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        StatsdConfig {
            address: DEFAULT_ADDRESS.to_owned(),
            transport: Transport::Udp,
            max_payload: DEFAULT_MAX_PAYLOAD,
            prefix: String::new(),
            tags: TagStyle::None,
            timings: TimingMode::Buckets,
            timing_lines: DEFAULT_TIMING_LINES,
            resolve_every: Duration::from_secs(60),
        }
    }
}

impl StatsdConfig {
    /// Why these settings cannot work, if they cannot.
    ///
    /// ```
    /// use sampler_exporter_statsd::StatsdConfig;
    /// let c = StatsdConfig { max_payload: 10, ..StatsdConfig::default() };
    /// assert_eq!(c.check().unwrap_err(), "max_payload must be 64 to 65507 bytes, got 10");
    /// ```
    pub fn check(&self) -> Result<(), String> {
        if !(64..=MAX_PAYLOAD_LIMIT).contains(&self.max_payload) {
            return Err(format!(
                "max_payload must be 64 to {MAX_PAYLOAD_LIMIT} bytes, got {}",
                self.max_payload
            ));
        }
        if self.timing_lines < 2 {
            return Err(format!(
                "timing_lines must be at least 2, got {}",
                self.timing_lines
            ));
        }
        if self.address.is_empty() {
            return Err("address must not be empty".to_owned());
        }
        if self.timings == TimingMode::Distribution && self.tags != TagStyle::DogStatsd {
            // |d is a DogStatsD type; a plain daemon would count it as a counter.
            return Err("timings = \"distribution\" needs tags = \"dogstatsd\"".to_owned());
        }
        Ok(())
    }
}

/// How lines travel to the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Transport {
    /// Datagrams of up to `max_payload` bytes, lines separated by newlines.
    #[default]
    Udp,
    /// One connection, every line newline-terminated, reconnected with backoff.
    Tcp,
    /// Datagrams on a Unix datagram socket (DogStatsD's `dogstatsd_socket`).
    Unix,
}

/// How labels reach the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum TagStyle {
    /// Label values become further name segments, in label order
    /// (`http.requests.get.200`): what a plain StatsD daemon can store.
    #[default]
    None,
    /// DogStatsD tags: `name:1|c|#method:get,code:200` (Etsy StatsD 0.9 reads them too).
    #[cfg_attr(feature = "serde", serde(rename = "dogstatsd"))]
    DogStatsd,
}

/// How timings reach the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum TimingMode {
    /// `|ms` lines, each a value from one histogram bucket, with a sample rate when a line
    /// stands for several observations (`spec/statsd.md`, "Timings").
    #[default]
    Buckets,
    /// DogStatsD distributions: one `|d` line per non-empty bucket weighted by its count.
    Distribution,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_bad_settings_are_named() {
        assert_eq!(StatsdConfig::default().check(), Ok(()));
        let bad = |c: StatsdConfig| c.check().unwrap_err();
        let d = StatsdConfig::default;
        assert_eq!(
            bad(StatsdConfig {
                timing_lines: 1,
                ..d()
            }),
            "timing_lines must be at least 2, got 1"
        );
        assert_eq!(
            bad(StatsdConfig {
                max_payload: 70_000,
                ..d()
            }),
            "max_payload must be 64 to 65507 bytes, got 70000"
        );
        assert_eq!(
            bad(StatsdConfig {
                address: String::new(),
                ..d()
            }),
            "address must not be empty"
        );
        assert_eq!(
            bad(StatsdConfig {
                timings: TimingMode::Distribution,
                ..d()
            }),
            "timings = \"distribution\" needs tags = \"dogstatsd\""
        );
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;

    #[test]
    fn reads_every_key_and_rejects_unknown_ones() {
        let c: StatsdConfig = serde_json::from_str(
            r#"{"address": "localhost:8125", "transport": "tcp", "max_payload": 8192,
                "prefix": "app", "tags": "dogstatsd", "timings": "distribution",
                "timing_lines": 10, "resolve_every": 2.5}"#,
        )
        .unwrap();
        assert_eq!(c.transport, Transport::Tcp);
        assert_eq!(c.tags, TagStyle::DogStatsd);
        assert_eq!(c.timings, TimingMode::Distribution);
        assert_eq!(c.resolve_every, Duration::from_millis(2500));
        assert_eq!(c.max_payload, 8192);
        let d: StatsdConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, StatsdConfig::default());
        assert!(serde_json::from_str::<StatsdConfig>(r#"{"adress": "x"}"#).is_err());
        assert!(serde_json::from_str::<StatsdConfig>(r#"{"transport": "sctp"}"#).is_err());
    }
}
