//! A hook point for code that follows each request through the layer (a slow-request
//! watchdog, per-request accounting): told when a request arrives, each time its future or
//! body is polled (on the polling thread), and when it ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a [`RequestHook`] learns of a request as it arrives.
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestStart<'a> {
    /// The request's route group (shared: a hook keeps it with a reference count, not a copy).
    pub group: &'a Arc<str>,
    /// The request's method.
    pub method: &'a http::Method,
    /// The request's URI.
    pub uri: &'a http::Uri,
    /// The request's headers.
    pub headers: &'a http::HeaderMap,
    /// Its `X-Request-Id` header, if it has one (found with the headers the layer reads).
    pub request_id: Option<&'a http::HeaderValue>,
    /// When the request arrived (the layer's clock reading, the start of its `took`).
    pub arrived: Instant,
}

/// How a request ended, as counted in `http.server.requests`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A response with this status was sent in full.
    Status(u16),
    /// The service failed (no response).
    Error,
    /// The request was dropped before it ended (client gone, timeout, shutdown).
    Cancelled,
}

/// Follows requests through an [`HttpMetrics`](crate::HttpMetrics) layer; set with
/// [`HttpMetrics::hook`](crate::HttpMetrics::hook).
///
/// ```
/// use sampler_adapter_http::{InFlight, Outcome, RequestHook, RequestStart};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// #[derive(Debug)]
/// struct Log;
/// struct Watch(String);
/// impl RequestHook for Log {
///     fn start(&self, request: &RequestStart<'_>) -> Option<Arc<dyn InFlight>> {
///         Some(Arc::new(Watch(request.uri.path().to_string())))
///     }
/// }
/// impl InFlight for Watch {
///     fn enter(&self) {}
///     fn exit(&self) {}
///     fn end(self: Arc<Self>, outcome: Outcome, took: Duration) {
///         println!("{} ended: {outcome:?} after {took:?}", self.0);
///     }
/// }
/// ```
pub trait RequestHook: Send + Sync + std::fmt::Debug + 'static {
    /// A request arrives (called in the service's `call`, on the calling thread); the value
    /// returned follows it until it ends. `None`: this request is not followed.
    ///
    /// It runs on every request's path: keep it cheap (no formatting, no copies of what
    /// `request` lends that a reference count can keep instead).
    fn start(&self, request: &RequestStart<'_>) -> Option<Arc<dyn InFlight>>;
}

/// One request followed by a [`RequestHook`].
pub trait InFlight: Send + Sync {
    /// The request's future or response body is about to be polled on this thread.
    fn enter(&self);
    /// The poll that [`enter`](Self::enter) announced has returned (or unwound).
    fn exit(&self);
    /// The request ended (its response body ended or was dropped, or no response came),
    /// `took` after it arrived.
    fn end(self: Arc<Self>, outcome: Outcome, took: Duration);
}

/// Calls [`InFlight::enter`] now and [`InFlight::exit`] when dropped, so a poll that panics
/// is closed too.
pub(crate) struct PollScope<'a>(Option<&'a dyn InFlight>);

impl<'a> PollScope<'a> {
    pub(crate) fn new(watch: Option<&'a dyn InFlight>) -> Self {
        if let Some(watch) = watch {
            watch.enter();
        }
        PollScope(watch)
    }
}

impl Drop for PollScope<'_> {
    fn drop(&mut self) {
        if let Some(watch) = self.0 {
            watch.exit();
        }
    }
}
