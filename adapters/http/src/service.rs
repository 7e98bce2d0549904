//! The tower service.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::SystemTime;

use http::{Request, Response};
use tower_service::Service;

use crate::future::ResponseFuture;
use crate::headers::Read;
use crate::hook::{PollScope, RequestStart};
use crate::layer::LayerContext;
use crate::queue::queue_time;
use crate::state::{method_index, GroupState};

/// Measures each request passing through to `S` (see the crate documentation for what).
#[derive(Clone, Debug)]
pub struct HttpMetricsService<S> {
    pub(crate) inner: S,
    pub(crate) context: Arc<LayerContext>,
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
        let mut guard = self
            .context
            .shared
            .start(state, method_index(request.method()));
        let state = &guard.state;
        let read = Read::of(request.headers());
        if let Some(waited) = queue_time(read.request_start, SystemTime::now) {
            state.queue.record_duration(waited);
        }
        if let Some(bytes) = read.content_length() {
            state.request_bytes.add(bytes);
        }
        if let Some(hook) = &self.context.hook {
            guard.watch = hook.start(&RequestStart {
                group: &state.name,
                method: request.method(),
                uri: request.uri(),
                headers: request.headers(),
                request_id: read.request_id,
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
        let LayerContext { shared, groups, .. } = &*self.context;
        if let Some(index) = groups.rule_of(request.uri().path()) {
            return shared.groups[index].clone();
        }
        #[cfg(feature = "axum")]
        if groups.by_matched_route() {
            if let Some(state) = request
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .and_then(|matched| shared.route_group(matched.as_str()))
            {
                return state;
            }
        }
        shared.groups[groups.fallback()].clone()
    }
}
