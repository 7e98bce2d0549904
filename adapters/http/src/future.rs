//! The response future.

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http::Response;
use pin_project_lite::pin_project;

use crate::body::ResponseBody;
use crate::hook::PollScope;
use crate::state::RequestGuard;

pin_project! {
    /// The response future of [`HttpMetricsService`](crate::HttpMetricsService): hands the
    /// request's guard on to the response body, or drops it (counting the request as
    /// `cancelled`, or `error` when the service failed) if no response comes.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        guard: Option<RequestGuard>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: F, guard: RequestGuard) -> Self {
        ResponseFuture {
            inner,
            guard: Some(guard),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _poll = PollScope::new(this.guard.as_ref().and_then(|g| g.watch.as_deref()));
            let _memory = this.guard.as_ref().and_then(RequestGuard::memory_scope);
            ready!(this.inner.poll(cx))
        };
        let mut guard = this.guard.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(guard) = guard.as_mut() {
                    guard.status = Some(response.status().as_u16());
                }
                Ok(response.map(|body| ResponseBody::new(body, guard)))
            }
            Err(error) => {
                if let Some(guard) = guard.as_mut() {
                    guard.status = Some(0); // counted as "error"
                }
                Err(error)
            }
        })
    }
}
