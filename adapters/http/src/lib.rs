//! A tower [`Layer`](tower_layer::Layer) that measures an HTTP service per route group, for
//! [`sampler_api`]; works with axum 0.8 (`Router::layer`) and hyper 1 (any
//! `Service<Request<B>>` returning `Response<B2>`).
//!
//! Requests count in **route groups** chosen by [`Groups`] rules (path prefix → group, a
//! default group; a path that matches no rule counts in one `unmatched` group: raw paths never
//! become labels), or by axum's matched route template ([`Groups::matched_route`], feature
//! `axum`, on by default). Per group (label `group`):
//!
//! | series | kind | unit | what |
//! |---|---|---|---|
//! | `http.server.requests{group,method,status_class}` | counter | `1` | completed requests; `status_class` is `1xx`…`5xx`, `error` (the service failed) or `cancelled` (dropped before a response); methods outside the nine standard ones count as `_OTHER` |
//! | `http.server.duration{group}` | timing | `s` | arrival to the end of the response body (or its drop) |
//! | `http.server.active_requests{group}` | gauge | `1` | in flight: a guard lives until the response body ends or is dropped, so a cancelled request cannot leave it high |
//! | `http.server.request.body.size{group}` | counter | `By` | request body bytes as declared by `Content-Length` (bodies without it are not counted: the layer keeps the request body type, so that it fits `Router::layer`) |
//! | `http.server.response.body.size{group}` | counter | `By` | response body bytes sent |
//! | `http.server.busy{group}` | gauge | `1` | busy time of requests in the interval ÷ the interval: the average number of requests in progress; a long request counts in each interval for the part of it that falls there |
//! | `http.server.capacity.utilization{group}` | gauge | `1` | `busy` ÷ the configured [`capacity`](HttpMetrics::capacity) (concurrent requests the service can serve), when set |
//! | `http.server.queue_time{group}` | timing | `s` | now − the front proxy's `X-Request-Start` / `X-Queue-Start` ([`parse_request_start`]) |
//! | `http.server.request.memory.allocated{group}` | timing | `By` | bytes one request allocated, recorded when its response ends (with the counting allocator only, below) |
//! | `http.server.request.memory.peak{group}` | timing | `By` | peak live bytes of one request (idem) |
//!
//! **Per-request memory**: when the program's global allocator is
//! `sampler_adapter_alloc::CountingAllocator`, each request gets an
//! [`Account`](sampler_adapter_alloc::Account) and every poll of its response future and of
//! its response body (and the inner service's `call`) runs inside a scope of it, so its
//! allocations are counted to it on whichever runtime thread it is polled; the two memory
//! timings then show which route group needs much transient memory. Without that allocator
//! they are not registered. [`HttpMetrics::count_memory`] turns them off.
//!
//! The interval of `busy` is the time since this layer's previous harvest (since its creation
//! for the first).
//!
//! A [`RequestHook`] set with [`HttpMetrics::hook`] is told of each request's arrival, of
//! every poll of its future and body (on the polling thread) and of its end
//! (`spec/http.md` §1); `sampler-adapter-watchdog` uses it.
//!
//! # Example
//!
//! ```
//! use sampler_adapter_http::{Groups, HttpMetrics};
//! use sampler_api::Registry;
//!
//! let registry = Registry::new();
//! let metrics = HttpMetrics::new(
//!     &registry,
//!     Groups::new().prefix("/api", "api").prefix("/admin", "admin").default_group("web"),
//! )
//! .capacity(64.0);
//! let layer = metrics.layer();
//! // axum:  Router::new().route("/api/users", get(users)).layer(layer)
//! // tower: ServiceBuilder::new().layer(layer).service(service)
//! # let _ = layer;
//! ```
//!
//! With prefix rules only, wrapping the whole router costs less per request than
//! `Router::layer`, which boxes the layer around every route and clones that box for each
//! request (`examples/web-service` does this; grouping by matched route needs
//! `Router::layer`, since the route is known only inside the router):
//!
//! ```
//! use axum::{body::Body, response::Response, routing::get, Router};
//! use sampler_adapter_http::{Groups, HttpMetrics};
//! use tower::ServiceBuilder;
//!
//! let registry = sampler_api::Registry::new();
//! let metrics = HttpMetrics::new(&registry, Groups::new().prefix("/api", "api"));
//! let router: Router = Router::new().route("/api/hello", get(|| async { "hello" }));
//! let service = ServiceBuilder::new()
//!     .map_response(|response: Response<sampler_adapter_http::ResponseBody<Body>>| {
//!         response.map(Body::new)
//!     })
//!     .layer(metrics.layer())
//!     .service(router);
//! // axum::serve(listener, axum::ServiceExt::into_make_service(service))
//! # let _ = service;
//! // Keep `metrics` alive as long as the service: it holds the `busy` sampler's registration.
//! ```

#![deny(missing_docs)]
#![warn(missing_debug_implementations)]

mod body;
mod future;
mod groups;
mod headers;
mod hook;
mod layer;
mod queue;
mod service;
mod state;

use std::sync::Arc;

use sampler_api::{Registration, Registry};

pub use body::ResponseBody;
pub use future::ResponseFuture;
pub use groups::{Groups, UNMATCHED};
pub use hook::{InFlight, Outcome, RequestHook, RequestStart};
pub use layer::HttpMetricsLayer;
pub use queue::parse_request_start;
pub use service::HttpMetricsService;

use state::Shared;

/// The instruments of one HTTP service, registered in a [`Registry`]; hands out the
/// [`layer`](Self::layer).
///
/// ```
/// use sampler_adapter_http::{Groups, HttpMetrics};
/// use sampler_api::{Harvester, Registry};
///
/// let registry = Registry::new();
/// let metrics = HttpMetrics::new(&registry, Groups::new().prefix("/api", "api"));
/// let snapshot = Harvester::builder().registry(registry).build().harvest_now();
/// assert!(snapshot.find("http.server.busy", &[("group", "api")]).is_some());
/// # drop(metrics);
/// ```
#[derive(Debug)]
pub struct HttpMetrics {
    registry: Registry,
    groups: Arc<Groups>,
    shared: Arc<Shared>,
    hook: Option<Arc<dyn RequestHook>>,
    capacity: Option<f64>,
    _busy: Registration,
}

impl HttpMetrics {
    /// Instruments for the groups of `groups`, registered in `registry`.
    ///
    /// Per-request memory is counted when the global allocator is
    /// `sampler_adapter_alloc::CountingAllocator` (checked here, once).
    pub fn new(registry: &Registry, groups: Groups) -> Self {
        let memory = sampler_adapter_alloc::is_counting();
        let shared = Shared::new(registry, groups.names(), None, memory);
        HttpMetrics {
            registry: registry.clone(),
            _busy: shared.register_busy(registry),
            groups: Arc::new(groups),
            shared,
            hook: None,
            capacity: None,
        }
    }

    /// How many requests the service can serve at once (its workers, or a concurrency
    /// limit): adds `http.server.capacity.utilization`, the fraction of it in use. A value
    /// that is not a positive finite number is ignored.
    ///
    /// ```
    /// use sampler_adapter_http::{Groups, HttpMetrics};
    /// let metrics = HttpMetrics::new(&sampler_api::Registry::new(), Groups::new()).capacity(8.0);
    /// # drop(metrics);
    /// ```
    pub fn capacity(self, capacity: f64) -> Self {
        let memory = self.shared.counts_memory();
        self.rebuild(Some(capacity), memory)
    }

    /// Whether to record per-request memory (`http.server.request.memory.*`): on by default
    /// when the counting allocator is installed; `true` has no effect without it.
    ///
    /// ```
    /// use sampler_adapter_http::{Groups, HttpMetrics};
    /// let metrics = HttpMetrics::new(&sampler_api::Registry::new(), Groups::new()).count_memory(false);
    /// # drop(metrics);
    /// ```
    pub fn count_memory(self, yes: bool) -> Self {
        let memory = yes && sampler_adapter_alloc::is_counting();
        let capacity = self.capacity;
        self.rebuild(capacity, memory)
    }

    fn rebuild(self, capacity: Option<f64>, memory: bool) -> Self {
        let HttpMetrics {
            registry,
            groups,
            shared,
            hook,
            _busy,
            ..
        } = self;
        // The old instruments go first, so the new ones never stand beside them.
        drop(_busy);
        drop(shared);
        let shared = Shared::new(&registry, groups.names(), capacity, memory);
        HttpMetrics {
            _busy: shared.register_busy(&registry),
            registry,
            groups,
            shared,
            hook,
            capacity,
        }
    }

    /// Follows every request with `hook` (told of each request's arrival, polls and end;
    /// see [`RequestHook`]), for layers made after this call.
    ///
    /// ```
    /// use sampler_adapter_http::{Groups, HttpMetrics, InFlight, RequestHook, RequestStart};
    /// #[derive(Debug)]
    /// struct Nothing;
    /// impl RequestHook for Nothing {
    ///     fn start(&self, _: &RequestStart<'_>) -> Option<std::sync::Arc<dyn InFlight>> {
    ///         None
    ///     }
    /// }
    /// let registry = sampler_api::Registry::new();
    /// let metrics = HttpMetrics::new(&registry, Groups::new()).hook(std::sync::Arc::new(Nothing));
    /// # drop(metrics);
    /// ```
    pub fn hook(mut self, hook: Arc<dyn RequestHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    /// The layer recording into these instruments (clone it freely).
    pub fn layer(&self) -> HttpMetricsLayer {
        HttpMetricsLayer {
            context: Arc::new(layer::LayerContext {
                shared: self.shared.clone(),
                groups: self.groups.clone(),
                hook: self.hook.clone(),
            }),
        }
    }
}
