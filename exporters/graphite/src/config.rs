//! The exporter's settings, as the builder and a config file set them.

use std::time::Duration;

/// The default backend address (carbon's plaintext port; its pickle port is usually 2004).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:2003";
/// The default template (`tags = "template"`): the metric name, then every label value in
/// label-key order.
pub const DEFAULT_TEMPLATE: &str = "name.tags";
/// The default bound of the send buffer: 8 MiB.
pub const DEFAULT_BUFFER: usize = 8 << 20;
/// The default largest UDP datagram: 1432 bytes (a 1500-byte MTU less IPv6 and UDP headers,
/// with room for tunnels).
pub const DEFAULT_MAX_DATAGRAM: usize = 1432;

/// Every setting of the exporter; [`Default`] gives the documented defaults.
///
/// With the `serde` feature it reads from a config file (every key optional):
///
/// ```toml
/// address = "graphite.example.net:2003"
/// protocol = "plaintext"             # or "udp", "pickle"
/// tags = "tagged"                    # or "template"
/// template = "name.tags"             # for tags = "template"
/// prefix = "myapp"
/// counters = "delta"                 # or "cumulative"
/// percentiles = [0.5, 0.9, 0.99]
/// buffer = 8388608                   # bytes kept while the backend is away
/// max_datagram = 1432                # udp only
/// connect_timeout = "2s"             # a number of seconds, or "2s", "500ms"
/// write_timeout = "2s"
/// backoff_initial = "100ms"
/// backoff_max = "30s"
/// ```
///
/// ```
/// use sampler_exporter_graphite::{CounterMode, GraphiteConfig, Protocol, TagStyle};
/// let c = GraphiteConfig::default();
/// assert_eq!(c.address, "127.0.0.1:2003");
/// assert_eq!(c.protocol, Protocol::Plaintext);
/// assert_eq!(c.tags, TagStyle::Tagged);
/// assert_eq!(c.counters, CounterMode::Delta);
/// ```
#[derive(Clone, Debug, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct GraphiteConfig {
    /// The backend, `host:port`; the host name is resolved again on every connection attempt.
    /// Default `127.0.0.1:2003`.
    pub address: String,
    /// The wire protocol. Default plaintext over TCP.
    pub protocol: Protocol,
    /// How labels reach Graphite. Default Graphite 1.1 tagged series.
    pub tags: TagStyle,
    /// The path template for `tags = "template"` (see `spec/graphite.md`). Default `name.tags`.
    pub template: String,
    /// Dotted segments put before every path; empty for none. Default empty.
    pub prefix: String,
    /// How counters are sent. Default per-interval deltas.
    pub counters: CounterMode,
    /// The percentiles sent for each timing, each in `(0, 1)`. Default 0.5, 0.9, 0.99.
    pub percentiles: Vec<f64>,
    /// The most bytes kept while the backend cannot take them; when full, the oldest harvest
    /// is dropped and counted. Default 8 MiB.
    pub buffer: usize,
    /// The largest UDP datagram, in bytes (`protocol = "udp"`). Default 1432.
    pub max_datagram: usize,
    /// How long one connection attempt may take (each resolved address). Default 2 s.
    #[cfg_attr(feature = "serde", serde(with = "sampler_api::duration_serde"))]
    pub connect_timeout: Duration,
    /// How long one write may wait on a backend that does not read. Default 2 s.
    #[cfg_attr(feature = "serde", serde(with = "sampler_api::duration_serde"))]
    pub write_timeout: Duration,
    /// The wait before the second connection attempt; each failure doubles it. Default 0.1 s.
    #[cfg_attr(feature = "serde", serde(with = "sampler_api::duration_serde"))]
    pub backoff_initial: Duration,
    /// The longest wait between connection attempts. Default 30 s.
    #[cfg_attr(feature = "serde", serde(with = "sampler_api::duration_serde"))]
    pub backoff_max: Duration,
}

impl Default for GraphiteConfig {
    fn default() -> Self {
        GraphiteConfig {
            address: DEFAULT_ADDRESS.to_owned(),
            protocol: Protocol::Plaintext,
            tags: TagStyle::Tagged,
            template: DEFAULT_TEMPLATE.to_owned(),
            prefix: String::new(),
            counters: CounterMode::Delta,
            percentiles: vec![0.5, 0.9, 0.99],
            buffer: DEFAULT_BUFFER,
            max_datagram: DEFAULT_MAX_DATAGRAM,
            connect_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(2),
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl GraphiteConfig {
    /// Checks every setting; the message names the key and the value at fault.
    ///
    /// ```
    /// use sampler_exporter_graphite::GraphiteConfig;
    /// let c = GraphiteConfig { percentiles: vec![1.5], ..Default::default() };
    /// assert_eq!(c.validate().unwrap_err(), "percentiles must be between 0 and 1 (exclusive), got 1.5");
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        if !self.address.contains(':') {
            return Err(format!("address must be host:port, got {:?}", self.address));
        }
        if let Some(q) = self
            .percentiles
            .iter()
            .find(|q| !(q.is_finite() && **q > 0.0 && **q < 1.0))
        {
            return Err(format!(
                "percentiles must be between 0 and 1 (exclusive), got {q}"
            ));
        }
        if self.buffer == 0 {
            return Err("buffer must be at least 1 byte".into());
        }
        if !(64..=65_507).contains(&self.max_datagram) {
            return Err(format!(
                "max_datagram must be 64 to 65507 bytes, got {}",
                self.max_datagram
            ));
        }
        for (key, d) in [
            ("connect_timeout", self.connect_timeout),
            ("write_timeout", self.write_timeout),
            ("backoff_initial", self.backoff_initial),
        ] {
            if d.is_zero() {
                return Err(format!("{key} must be more than 0 s"));
            }
        }
        if self.backoff_max < self.backoff_initial {
            return Err(format!(
                "backoff_max ({:?}) must be at least backoff_initial ({:?})",
                self.backoff_max, self.backoff_initial
            ));
        }
        crate::mapping::Template::parse(&self.template)?;
        Ok(())
    }
}

/// The wire protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum Protocol {
    /// `path value timestamp\n` lines over one persistent TCP connection.
    #[default]
    Plaintext,
    /// The same lines packed into UDP datagrams of at most `max_datagram` bytes.
    Udp,
    /// Carbon's pickle protocol over TCP: `!L` length-prefixed pickles (protocol 2) of
    /// `[(path, (timestamp, value)), …]`.
    Pickle,
}

/// How labels reach Graphite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum TagStyle {
    /// Graphite 1.1 tagged series: `path;key=value;…`.
    #[default]
    Tagged,
    /// Label values folded into the path by the `template`.
    Template,
}

/// How counters are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum CounterMode {
    /// The increase since the previous harvest (timings: this interval's observations).
    #[default]
    Delta,
    /// The total since the series started.
    Cumulative,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_settings_are_named() {
        assert_eq!(GraphiteConfig::default().validate(), Ok(()));
        let bad = |c: GraphiteConfig| c.validate().unwrap_err();
        assert_eq!(
            bad(GraphiteConfig {
                address: "localhost".into(),
                ..Default::default()
            }),
            "address must be host:port, got \"localhost\""
        );
        assert_eq!(
            bad(GraphiteConfig {
                max_datagram: 10,
                ..Default::default()
            }),
            "max_datagram must be 64 to 65507 bytes, got 10"
        );
        assert_eq!(
            bad(GraphiteConfig {
                template: "name.bogus-key".into(),
                ..Default::default()
            }),
            "template item \"bogus-key\" is neither name, tags nor a label key"
        );
        assert!(bad(GraphiteConfig {
            percentiles: vec![f64::NAN],
            ..Default::default()
        })
        .starts_with("percentiles"));
        assert!(bad(GraphiteConfig {
            backoff_max: Duration::from_millis(1),
            ..Default::default()
        })
        .starts_with("backoff_max"));
    }
}

#[cfg(all(test, feature = "serde"))]
mod serde_tests {
    use super::*;

    #[test]
    fn reads_every_key_and_rejects_unknown_ones() {
        let c: GraphiteConfig = serde_json::from_str(
            r#"{"address": "g:2004", "protocol": "pickle", "tags": "template",
                "template": "host.name.tags", "prefix": "app", "counters": "cumulative",
                "percentiles": [0.5], "buffer": 1000, "max_datagram": 512,
                "connect_timeout": 0.5, "write_timeout": 1, "backoff_initial": 0.2,
                "backoff_max": 5}"#,
        )
        .unwrap();
        assert_eq!(c.protocol, Protocol::Pickle);
        assert_eq!(c.tags, TagStyle::Template);
        assert_eq!(c.counters, CounterMode::Cumulative);
        assert_eq!(c.connect_timeout, Duration::from_millis(500));
        assert_eq!(c.backoff_max, Duration::from_secs(5));
        assert_eq!(c.validate(), Ok(()));
        let d: GraphiteConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(d, GraphiteConfig::default());
        assert!(serde_json::from_str::<GraphiteConfig>(r#"{"adress": "x"}"#).is_err());
        assert!(serde_json::from_str::<GraphiteConfig>(r#"{"protocol": "http"}"#).is_err());
    }
}
