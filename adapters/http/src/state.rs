//! Per-group instruments, the request guard, and the utilisation sampler.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::{Duration, Instant};

use crate::hook::{InFlight, Outcome};
use http::Method;
use sampler_adapter_alloc::Account;
use sampler_api::{
    CounterFamily, Descriptor, Gauge, GaugeFamily, Registration, Registry, Sampler, Timing,
    TimingFamily, Writer,
};

static REQUESTS: Descriptor = Descriptor::counter(
    "http.server.requests",
    "1",
    "completed requests by route group, method and status class",
);
static DURATION: Descriptor = Descriptor::timing(
    "http.server.duration",
    "s",
    "time from the request's arrival to the end of its response body",
);
static ACTIVE: Descriptor = Descriptor::gauge(
    "http.server.active_requests",
    "1",
    "requests in flight, until their response body ends or is dropped",
);
static QUEUE: Descriptor = Descriptor::timing(
    "http.server.queue_time",
    "s",
    "time between the front proxy's X-Request-Start / X-Queue-Start and arrival here",
);
static REQUEST_BYTES: Descriptor = Descriptor::counter(
    "http.server.request.body.size",
    "By",
    "request body bytes, as declared by Content-Length",
);
static RESPONSE_BYTES: Descriptor = Descriptor::counter(
    "http.server.response.body.size",
    "By",
    "response body bytes sent",
);
static MEMORY_ALLOCATED: Descriptor = Descriptor::timing(
    "http.server.request.memory.allocated",
    "By",
    "bytes allocated while serving one request (its polls and its response body's), counted by sampler-adapter-alloc's CountingAllocator",
);
static MEMORY_PEAK: Descriptor = Descriptor::timing(
    "http.server.request.memory.peak",
    "By",
    "peak live bytes of one request (allocated minus freed in its polls), counted by sampler-adapter-alloc's CountingAllocator",
);
static BUSY: Descriptor = Descriptor::gauge(
    "http.server.busy",
    "1",
    "busy time of requests in the interval divided by the interval: the average number of requests in progress",
);
static UTILIZATION: Descriptor = Descriptor::gauge(
    "http.server.capacity.utilization",
    "1",
    "http.server.busy divided by the configured capacity (concurrent requests)",
);

/// Methods kept as label values; any other counts as `_OTHER`, so a client cannot make
/// series by inventing methods.
const METHODS: [(Method, &str); 9] = [
    (Method::GET, "GET"),
    (Method::HEAD, "HEAD"),
    (Method::POST, "POST"),
    (Method::PUT, "PUT"),
    (Method::DELETE, "DELETE"),
    (Method::CONNECT, "CONNECT"),
    (Method::OPTIONS, "OPTIONS"),
    (Method::TRACE, "TRACE"),
    (Method::PATCH, "PATCH"),
];
const OTHER_METHOD: usize = METHODS.len();

/// The label of a method index (`_OTHER` past the standard ones).
fn method_label(index: usize) -> &'static str {
    METHODS.get(index).map_or("_OTHER", |m| m.1)
}

/// The index of a method in [`METHODS`], or [`OTHER_METHOD`].
pub(crate) fn method_index(method: &Method) -> usize {
    METHODS
        .iter()
        .position(|m| m.0 == *method)
        .unwrap_or(OTHER_METHOD)
}

/// Status class labels: `error` when the service failed, `cancelled` when no response came.
const CLASSES: [&str; 8] = [
    "1xx",
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "other",
    "error",
    "cancelled",
];

/// The index in [`CLASSES`] of a response status, `error` (status 0 here) or `cancelled`.
fn class_index(status: Option<u16>) -> usize {
    match status {
        Some(100..=199) => 0,
        Some(200..=299) => 1,
        Some(300..=399) => 2,
        Some(400..=499) => 3,
        Some(500..=599) => 4,
        Some(0) => 6,
        Some(_) => 5,
        None => 7,
    }
}

/// One request counter per method and status class, looked up in the family on first use
/// only, so a series appears when first counted and recording hashes nothing afterwards.
const CELLS: usize = (OTHER_METHOD + 1) * CLASSES.len();

/// Busy-time bookkeeping of one group, kept so that a harvest can split a long request
/// between the intervals it spans.
///
/// `clamped_sum` is the sum over requests in flight of `max(start, since)` in nanoseconds
/// from `origin`: the busy time of the requests in flight since the last harvest is then
/// `in_flight · now − clamped_sum`, with no list of requests to walk.
#[derive(Debug)]
struct Busy {
    /// When the current interval began (the last harvest, or the layer's creation).
    since: u64,
    in_flight: u64,
    clamped_sum: u128,
    /// Busy nanoseconds of requests that completed in the current interval.
    completed: u128,
}

pub(crate) struct GroupState {
    pub(crate) name: Arc<str>,
    /// The family of `requests`' counters (made on first use).
    family: CounterFamily,
    requests: Box<[OnceLock<sampler_api::Counter>]>,
    /// The layer's time origin (busy times are nanoseconds from it).
    origin: Instant,
    /// Bytes allocated and peak live bytes per request, when memory is counted.
    memory: Option<(Timing, Timing)>,
    active: Gauge,
    duration: Timing,
    pub(crate) queue: Timing,
    pub(crate) request_bytes: sampler_api::Counter,
    response_bytes: sampler_api::Counter,
    busy: Mutex<Busy>,
}

/// The families the groups' instruments come from (kept to make route groups on first use).
struct Families {
    active: GaugeFamily,
    duration: TimingFamily,
    queue: TimingFamily,
    request_bytes: CounterFamily,
    response_bytes: CounterFamily,
    memory: Option<(TimingFamily, TimingFamily)>,
}

/// At most this many groups are made from matched route templates; requests of further
/// templates count in `unmatched`. A router has a fixed set of templates, so the limit only
/// guards against a misuse (templates made at run time).
pub(crate) const MAX_ROUTE_GROUPS: usize = 1024;

pub(crate) struct Shared {
    pub(crate) groups: Vec<Arc<GroupState>>,
    /// Groups made from axum's matched route templates, on first use.
    routes: RwLock<HashMap<String, Arc<GroupState>>>,
    families: Families,
    requests: CounterFamily,
    origin: Instant,
    capacity: Option<f64>,
    /// When the busy sampler last ran (nanoseconds from `origin`): a route group made later
    /// starts its first interval there.
    last_harvest: AtomicU64,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.groups.iter().map(|g| &*g.name).collect();
        f.debug_struct("Shared")
            .field("groups", &names)
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Shared {
    /// Instruments for the groups `names`; `memory`: record per-request memory (the counting
    /// allocator is installed).
    pub(crate) fn new(
        registry: &Registry,
        names: Vec<String>,
        capacity: Option<f64>,
        memory: bool,
    ) -> Arc<Shared> {
        let requests = registry.counter_family(&REQUESTS, &["group", "method", "status_class"]);
        let origin = Instant::now();
        let families = Families {
            active: registry.gauge_family(&ACTIVE, &["group"]),
            duration: registry.timing_family(&DURATION, &["group"]),
            queue: registry.timing_family(&QUEUE, &["group"]),
            request_bytes: registry.counter_family(&REQUEST_BYTES, &["group"]),
            response_bytes: registry.counter_family(&RESPONSE_BYTES, &["group"]),
            memory: memory.then(|| {
                (
                    registry.timing_family(&MEMORY_ALLOCATED, &["group"]),
                    registry.timing_family(&MEMORY_PEAK, &["group"]),
                )
            }),
        };
        let groups = names
            .into_iter()
            .map(|name| {
                Arc::new(GroupState::new(
                    name.into(),
                    &families,
                    &requests,
                    origin,
                    0,
                ))
            })
            .collect();
        Arc::new(Shared {
            groups,
            routes: RwLock::new(HashMap::new()),
            families,
            requests,
            origin,
            capacity: capacity.filter(|c| c.is_finite() && *c > 0.0),
            last_harvest: AtomicU64::new(0),
        })
    }

    /// Whether requests' memory is counted.
    pub(crate) fn counts_memory(&self) -> bool {
        self.families.memory.is_some()
    }

    /// The group of a matched route `template`, made on first use; `None` past
    /// [`MAX_ROUTE_GROUPS`].
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) fn route_group(&self, template: &str) -> Option<Arc<GroupState>> {
        if let Some(state) = self
            .routes
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(template)
        {
            return Some(state.clone());
        }
        // A rule's group of the same name is that group (one set of series per name).
        if let Some(state) = self.groups.iter().find(|g| &*g.name == template) {
            return Some(state.clone());
        }
        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(state) = routes.get(template) {
            return Some(state.clone());
        }
        if routes.len() >= MAX_ROUTE_GROUPS {
            return None;
        }
        let since = self.last_harvest.load(Ordering::Relaxed);
        let state = Arc::new(GroupState::new(
            template.into(),
            &self.families,
            &self.requests,
            self.origin,
            since,
        ));
        routes.insert(template.to_owned(), state.clone());
        Some(state)
    }

    /// Every group: the rules' groups, then the route groups made so far.
    fn all_groups(&self) -> Vec<Arc<GroupState>> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        self.groups.iter().chain(routes.values()).cloned().collect()
    }

    fn nanos(&self, at: Instant) -> u64 {
        nanos_since(self.origin, at)
    }

    /// Starts counting one request of the group `state`; the guard ends it when dropped.
    pub(crate) fn start(&self, state: Arc<GroupState>, method: usize) -> RequestGuard {
        let start = Instant::now();
        state.active.inc();
        let at = self.nanos(start);
        {
            let mut busy = state.busy.lock().unwrap_or_else(PoisonError::into_inner);
            busy.in_flight += 1;
            busy.clamped_sum += u128::from(at.max(busy.since));
        }
        RequestGuard {
            state,
            start,
            at,
            method,
            status: None,
            response_bytes: 0,
            watch: None,
            memory: self.counts_memory().then(|| Arc::new(Account::new())),
        }
    }

    /// Registers the sampler of `http.server.busy` (and capacity utilisation).
    pub(crate) fn register_busy(self: &Arc<Self>, registry: &Registry) -> Registration {
        registry.register(BusySampler(self.clone()))
    }
}

/// Lives from the request's arrival until its response body ends or is dropped (or the
/// response future is dropped), so a cancelled request cannot leave the in-flight count high.
pub(crate) struct RequestGuard {
    pub(crate) state: Arc<GroupState>,
    pub(crate) start: Instant,
    /// `start` in nanoseconds from the layer's origin (what the busy time adds up).
    at: u64,
    method: usize,
    pub(crate) status: Option<u16>,
    pub(crate) response_bytes: u64,
    /// The request hook's follower, if a hook is set.
    pub(crate) watch: Option<Arc<dyn InFlight>>,
    /// The request's memory account, when memory is counted: its polls (and its response
    /// body's) run inside a scope of it.
    pub(crate) memory: Option<Arc<Account>>,
}

impl RequestGuard {
    /// A scope counting this thread's allocations into the request, if memory is counted.
    pub(crate) fn memory_scope(&self) -> Option<sampler_adapter_alloc::Scope<'_>> {
        self.memory.as_deref().map(Account::enter)
    }
}

/// Nanoseconds from `origin` to `at` (0 before it).
fn nanos_since(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_nanos()).unwrap_or(u64::MAX)
}

impl GroupState {
    fn new(
        name: Arc<str>,
        families: &Families,
        requests: &CounterFamily,
        origin: Instant,
        since: u64,
    ) -> GroupState {
        let v = [&*name];
        GroupState {
            family: requests.clone(),
            origin,
            requests: (0..CELLS).map(|_| OnceLock::new()).collect(),
            memory: families
                .memory
                .as_ref()
                .map(|(allocated, peak)| (allocated.get(&v), peak.get(&v))),
            active: families.active.get(&v),
            duration: families.duration.get(&v),
            queue: families.queue.get(&v),
            request_bytes: families.request_bytes.get(&v),
            response_bytes: families.response_bytes.get(&v),
            busy: Mutex::new(Busy {
                since,
                in_flight: 0,
                clamped_sum: 0,
                completed: 0,
            }),
            name,
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let state = &self.state;
        let end = nanos_since(state.origin, Instant::now()).max(self.at);
        let took = Duration::from_nanos(end - self.at);
        state.duration.record_duration(took);
        state.response_bytes.add(self.response_bytes);
        if let (Some(account), Some((allocated, peak))) = (&self.memory, &state.memory) {
            allocated.record(account.allocated() as f64);
            peak.record(account.peak() as f64);
        }
        let class = class_index(self.status);
        if let Some(watch) = self.watch.take() {
            let outcome = match self.status {
                Some(0) => Outcome::Error,
                Some(status) => Outcome::Status(status),
                None => Outcome::Cancelled,
            };
            watch.end(outcome, took);
        }
        state.requests[self.method * CLASSES.len() + class]
            .get_or_init(|| {
                let values = [&*state.name, method_label(self.method), CLASSES[class]];
                state.family.get(&values)
            })
            .inc();
        let mut busy = state.busy.lock().unwrap_or_else(PoisonError::into_inner);
        let clamped = self.at.max(busy.since);
        busy.in_flight -= 1;
        busy.clamped_sum -= u128::from(clamped);
        busy.completed += u128::from(end.saturating_sub(clamped));
        drop(busy);
        // Last: a harvest that sees the request no longer in flight sees it counted (with the
        // decrement first, one in between saw it in neither).
        state.active.dec();
    }
}

struct BusySampler(Arc<Shared>);

impl Sampler for BusySampler {
    fn sample(&self, out: &mut Writer<'_>) {
        let shared = &self.0;
        let now = shared.nanos(Instant::now());
        shared.last_harvest.store(now, Ordering::Relaxed);
        for state in &shared.all_groups() {
            let mut busy = state.busy.lock().unwrap_or_else(PoisonError::into_inner);
            let interval = now.saturating_sub(busy.since);
            let running = u128::from(busy.in_flight) * u128::from(now) - busy.clamped_sum;
            let busy_nanos = busy.completed + running;
            busy.completed = 0;
            busy.clamped_sum = u128::from(busy.in_flight) * u128::from(now);
            busy.since = now;
            drop(busy);
            let average = if interval == 0 {
                0.0
            } else {
                busy_nanos as f64 / interval as f64
            };
            let labels = [("group", &*state.name)];
            out.gauge(&BUSY, &labels, average);
            if let Some(capacity) = shared.capacity {
                out.gauge(&UTILIZATION, &labels, average / capacity);
            }
        }
    }

    fn name(&self) -> &str {
        "http.server"
    }
}
