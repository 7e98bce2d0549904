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
use crate::state::{method_index, Shared};

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
        let group = self.groups.index_of(request.uri().path());
        let mut guard = self.shared.start(group, method_index(request.method()));
        let state = &self.shared.groups[group];
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
            });
        }
        let inner = {
            // Building the inner future may run the handler's first steps already.
            let _poll = PollScope::new(guard.watch.as_deref());
            self.inner.call(request)
        };
        ResponseFuture::new(inner, guard)
    }
}
