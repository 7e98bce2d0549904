//! The sending side: a bounded queue of encoded requests and the thread that posts them, with
//! the retry rules of the OTLP specification.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use prost::Message;

use crate::config::{Compression, OtlpConfig, RetryConfig};
use sampler_push_support::retry_after;

/// Something the operator should hear about, once per change.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A request failed after the last one went through (or as the first one).
    Failing {
        /// The endpoint.
        endpoint: String,
        /// What went wrong.
        error: String,
    },
    /// A request went through after failures.
    Recovered {
        /// The endpoint.
        endpoint: String,
        /// How many attempts failed in between.
        failed_attempts: u64,
    },
    /// The receiver accepted a request but rejected some of its data points (OTLP partial
    /// success). Reported when its message changes, counted always.
    Rejected {
        /// The endpoint.
        endpoint: String,
        /// Data points rejected by this request.
        points: u64,
        /// The receiver's explanation.
        message: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Failing { endpoint, error } => {
                write!(f, "otlp export to {endpoint} is failing: {error}")
            }
            Event::Recovered {
                endpoint,
                failed_attempts,
            } => write!(
                f,
                "otlp export to {endpoint} recovered after {failed_attempts} failed attempts"
            ),
            Event::Rejected {
                endpoint,
                points,
                message,
            } => write!(
                f,
                "otlp receiver at {endpoint} rejected {points} data points: {message}"
            ),
        }
    }
}

/// Receives [`Event`]s.
pub(crate) type EventHandler = Arc<dyn Fn(&Event) + Send + Sync>;

/// Logs an event through the `log` crate.
pub(crate) fn log_event(e: &Event) {
    match e {
        Event::Recovered { .. } => log::info!("{e}"),
        _ => log::warn!("{e}"),
    }
}

/// One request, encoded and compressed, waiting to be sent.
pub(crate) struct Pending {
    pub body: Vec<u8>,
    pub points: u64,
}

/// Counters of the exporter, read by its self-metrics sampler.
#[derive(Default)]
pub(crate) struct Stats {
    pub requests_sent: AtomicU64,
    pub requests_failed: AtomicU64,
    pub requests_expired: AtomicU64,
    pub requests_dropped: AtomicU64,
    pub retries: AtomicU64,
    pub points_sent: AtomicU64,
    pub points_rejected: AtomicU64,
    pub points_dropped: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub skipped: AtomicU64,
    pub encode_nanos: AtomicU64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Pending>,
    in_flight: bool,
    /// Set by shutdown: the sender sends what it can until then, and stops.
    closing: Option<Instant>,
    stopped: bool,
}

/// What the exporter and its sender thread share.
pub(crate) struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    pub stats: Stats,
    pub endpoint: String,
    capacity: usize,
}

impl Shared {
    pub fn new(endpoint: String, capacity: usize) -> Self {
        Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stats: Stats::default(),
            endpoint,
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a request; when the queue is full the oldest waiting one is dropped and
    /// counted. Returns how many data points were dropped.
    pub fn push(&self, p: Pending) -> u64 {
        let mut st = self.lock();
        let mut dropped = 0;
        while st.queue.len() >= self.capacity {
            if let Some(old) = st.queue.pop_front() {
                dropped += old.points;
                self.stats.requests_dropped.fetch_add(1, Relaxed);
                self.stats.points_dropped.fetch_add(old.points, Relaxed);
            }
        }
        st.queue.push_back(p);
        drop(st);
        self.changed.notify_all();
        dropped
    }

    pub fn queued(&self) -> usize {
        let st = self.lock();
        st.queue.len() + st.in_flight as usize
    }

    /// Waits until every queued request is sent or given up, or `deadline` passes; returns
    /// how many are still waiting.
    pub fn wait_idle(&self, deadline: Instant) -> usize {
        let mut st = self.lock();
        loop {
            if (st.queue.is_empty() && !st.in_flight) || st.stopped {
                return st.queue.len() + st.in_flight as usize;
            }
            let now = Instant::now();
            if now >= deadline {
                return st.queue.len() + st.in_flight as usize;
            }
            st = self
                .changed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Tells the sender to finish by `deadline`.
    pub fn close(&self, deadline: Instant) {
        let mut st = self.lock();
        st.closing = Some(st.closing.map_or(deadline, |d| d.min(deadline)));
        drop(st);
        self.changed.notify_all();
    }

    /// The next request, or `None` once closing and the queue is empty.
    fn next(&self) -> Option<Pending> {
        let mut st = self.lock();
        loop {
            if let Some(p) = st.queue.pop_front() {
                st.in_flight = true;
                return Some(p);
            }
            if st.closing.is_some() {
                return None;
            }
            st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn done_with_one(&self) {
        self.lock().in_flight = false;
        self.changed.notify_all();
    }

    fn closing(&self) -> Option<Instant> {
        self.lock().closing
    }

    /// Sleeps until `until`, or until the shutdown deadline if that comes first; returns
    /// whether `until` was reached.
    fn pause_until(&self, until: Instant) -> bool {
        let mut st = self.lock();
        loop {
            let limit = st.closing.map_or(until, |d| d.min(until));
            let now = Instant::now();
            if now >= limit {
                return st.closing.map_or(true, |d| until <= d);
            }
            st = self
                .changed
                .wait_timeout(st, limit - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Drops what is left (the sender has stopped) and counts it.
    fn stop(&self) {
        let mut st = self.lock();
        for p in st.queue.drain(..) {
            self.stats.requests_expired.fetch_add(1, Relaxed);
            self.stats.points_dropped.fetch_add(p.points, Relaxed);
        }
        st.in_flight = false;
        st.stopped = true;
        drop(st);
        self.changed.notify_all();
    }
}

/// How one attempt ended.
pub(crate) enum Attempt {
    Sent(Option<(u64, String)>),
    Retryable(String, Option<Duration>),
    Permanent(String),
}

/// The rejected points and message of a partial success, when it reports any.
pub(crate) fn rejection(partial: Option<ExportMetricsPartialSuccess>) -> Option<(u64, String)> {
    partial
        .filter(|ps| ps.rejected_data_points > 0 || !ps.error_message.is_empty())
        .map(|ps| {
            (
                ps.rejected_data_points.max(0) as u64,
                if ps.error_message.is_empty() {
                    "(no message)".to_owned()
                } else {
                    ps.error_message
                },
            )
        })
}

/// Whether an HTTP status is worth retrying: 429, 502, 503 and 504 (OTLP/HTTP, "Retryable
/// Response Codes"). Any other failure status is final.
///
/// ```
/// use sampler_exporter_otlp::retryable_status;
/// assert!(retryable_status(503) && retryable_status(429));
/// assert!(!retryable_status(400) && !retryable_status(500) && !retryable_status(501));
/// ```
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// Posts queued requests, one at a time and in order, on its own thread.
pub(crate) struct Sender {
    shared: Arc<Shared>,
    agent: ureq::Agent,
    #[cfg(feature = "grpc")]
    grpc: Option<crate::grpc::GrpcClient>,
    headers: Vec<(String, String)>,
    gzip: bool,
    timeout: Duration,
    retry: RetryConfig,
    on_event: EventHandler,
    failed_attempts: u64,
    last_rejection: Option<String>,
}

impl Sender {
    pub fn new(
        config: &OtlpConfig,
        shared: Arc<Shared>,
        on_event: EventHandler,
    ) -> Result<Self, String> {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .user_agent(concat!("sampler-exporter-otlp/", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        Ok(Sender {
            shared,
            agent,
            #[cfg(feature = "grpc")]
            grpc: match config.protocol {
                crate::config::Protocol::Grpc => Some(crate::grpc::GrpcClient::new(config)?),
                _ => None,
            },
            headers: config
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            gzip: config.compression == Compression::Gzip,
            timeout: config.timeout,
            retry: config.retry.clone(),
            on_event,
            failed_attempts: 0,
            last_rejection: None,
        })
    }

    pub fn run(mut self) {
        while let Some(p) = self.shared.next() {
            self.deliver(&p);
            self.shared.done_with_one();
        }
        self.shared.stop();
    }

    fn deliver(&mut self, p: &Pending) {
        let shared = self.shared.clone();
        let stats = &shared.stats;
        let first = Instant::now();
        let mut retry = 0u32;
        loop {
            let closing = self.shared.closing();
            let now = Instant::now();
            let mut timeout = self.timeout;
            if let Some(d) = closing {
                if now >= d {
                    stats.requests_expired.fetch_add(1, Relaxed);
                    stats.points_dropped.fetch_add(p.points, Relaxed);
                    return;
                }
                timeout = timeout.min(d - now);
            }
            match self.attempt(p, timeout) {
                Attempt::Sent(rejected) => {
                    if self.failed_attempts > 0 {
                        (self.on_event)(&Event::Recovered {
                            endpoint: self.shared.endpoint.clone(),
                            failed_attempts: self.failed_attempts,
                        });
                        self.failed_attempts = 0;
                    }
                    let rejected_points = rejected.as_ref().map_or(0, |r| r.0);
                    stats.requests_sent.fetch_add(1, Relaxed);
                    stats.bytes_sent.fetch_add(p.body.len() as u64, Relaxed);
                    stats
                        .points_sent
                        .fetch_add(p.points.saturating_sub(rejected_points), Relaxed);
                    if let Some((points, message)) = rejected {
                        stats.points_rejected.fetch_add(points, Relaxed);
                        if self.last_rejection.as_ref() != Some(&message) {
                            (self.on_event)(&Event::Rejected {
                                endpoint: self.shared.endpoint.clone(),
                                points,
                                message: message.clone(),
                            });
                            self.last_rejection = Some(message);
                        }
                    }
                    return;
                }
                Attempt::Permanent(error) => {
                    self.failed(error);
                    stats.requests_failed.fetch_add(1, Relaxed);
                    stats.points_dropped.fetch_add(p.points, Relaxed);
                    return;
                }
                Attempt::Retryable(error, after) => {
                    self.failed(error);
                    if !self.retry.enabled {
                        stats.requests_failed.fetch_add(1, Relaxed);
                        stats.points_dropped.fetch_add(p.points, Relaxed);
                        return;
                    }
                    let delay = after.unwrap_or_else(|| self.retry.backoff(retry, fastrand::f64()));
                    // Checked: a Retry-After of years must not overflow an Instant.
                    let at = Instant::now().checked_add(delay);
                    let limit = first.checked_add(self.retry.max_elapsed);
                    let too_late = match (at, limit) {
                        (None, _) => true,
                        (Some(at), Some(limit)) => at > limit,
                        (Some(_), None) => false,
                    };
                    if too_late || !at.is_some_and(|at| self.shared.pause_until(at)) {
                        stats.requests_expired.fetch_add(1, Relaxed);
                        stats.points_dropped.fetch_add(p.points, Relaxed);
                        return;
                    }
                    retry = retry.saturating_add(1);
                    stats.retries.fetch_add(1, Relaxed);
                }
            }
        }
    }

    fn failed(&mut self, error: String) {
        if self.failed_attempts == 0 {
            (self.on_event)(&Event::Failing {
                endpoint: self.shared.endpoint.clone(),
                error,
            });
        }
        self.failed_attempts += 1;
    }

    fn attempt(&mut self, p: &Pending, timeout: Duration) -> Attempt {
        #[cfg(feature = "grpc")]
        if let Some(grpc) = &mut self.grpc {
            return grpc.attempt(&p.body, timeout);
        }
        let endpoint = &self.shared.endpoint;
        let mut req = self
            .agent
            .post(endpoint)
            .header("content-type", "application/x-protobuf");
        if self.gzip {
            req = req.header("content-encoding", "gzip");
        }
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req.config().timeout_global(Some(timeout)).build();
        let mut resp = match req.send(&p.body[..]) {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retryable(
                    format!("failed to send metrics to {endpoint}: {e}"),
                    None,
                )
            }
        };
        let status = resp.status();
        if status.is_success() {
            let body = resp
                .body_mut()
                .with_config()
                .limit(1 << 20)
                .read_to_vec()
                .unwrap_or_default();
            let partial = ExportMetricsServiceResponse::decode(&body[..])
                .ok()
                .and_then(|r| r.partial_success);
            return Attempt::Sent(rejection(partial));
        }
        let error = format!(
            "metrics endpoint {endpoint} answered HTTP {}{}",
            status.as_u16(),
            status
                .canonical_reason()
                .map(|r| format!(" {r}"))
                .unwrap_or_default()
        );
        if retryable_status(status.as_u16()) {
            let after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, SystemTime::now()));
            Attempt::Retryable(error, after)
        } else {
            Attempt::Permanent(error)
        }
    }
}
