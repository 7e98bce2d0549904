//! The tower service.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{Request, Response};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::groups::Groups;
use crate::hook::{PollScope, RequestHook, RequestStart};
use crate::queue::queue_time;
use crate::state::{method_index, GroupState, Shared};

/// Measures each request passing through to `S` (see the crate documentation for what).
#[derive(Clone, Debug)]
pub struct HttpMetricsService<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
    pub(crate) groups: Arc<Groups>,
    pub(crate) hook: Option<Arc<dyn RequestHook>>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpMetricsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<crate::body::ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let state = self.group_of(&request);
        let mut guard = self.shared.start(state, method_index(request.method()));
        let state = &guard.state;
        if let Some(waited) = queue_time(request.headers(), SystemTime::now) {
            state.queue.record_duration(waited);
        }
        let declared = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(bytes) = declared {
            state.request_bytes.add(bytes);
        }
        if let Some(hook) = &self.hook {
            guard.watch = hook.start(&RequestStart {
                group: &state.name,
                method: request.method(),
                uri: request.uri(),
                headers: request.headers(),
                arrived: guard.start,
            });
        }
        let inner = {
            // Building the inner future may run the handler's first steps already.
            let _poll = PollScope::new(guard.watch.as_deref());
            let _memory = guard.memory_scope();
            self.inner.call(request)
        };
        ResponseFuture::new(inner, guard)
    }
}

impl<S> HttpMetricsService<S> {
    /// The group a request counts in: a prefix rule's, else its matched route's (when
    /// grouping by route), else the default or `unmatched` group.
    fn group_of<B>(&self, request: &Request<B>) -> Arc<GroupState> {
        if let Some(index) = self.groups.rule_of(request.uri().path()) {
            return self.shared.groups[index].clone();
        }
        #[cfg(feature = "axum")]
        if self.groups.by_matched_route() {
            if let Some(state) = request
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .and_then(|matched| self.shared.route_group(matched.as_str()))
            {
                return state;
            }
        }
        self.shared.groups[self.groups.fallback()].clone()
    }
}
