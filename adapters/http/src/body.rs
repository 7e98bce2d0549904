//! The response body.

use std::pin::Pin;
use std::task::{ready, Context, Poll};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::hook::PollScope;
use crate::state::RequestGuard;

pin_project! {
    /// The response body of [`HttpMetricsService`](crate::HttpMetricsService): counts the
    /// bytes sent and holds the request's guard until the body ends or is dropped (a client
    /// that goes away mid-body drops it), so the request leaves the in-flight count then.
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        guard: Option<RequestGuard>,
    }
}

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody").finish_non_exhaustive()
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, guard: Option<RequestGuard>) -> Self {
        ResponseBody { inner, guard }
    }
}

impl<B: Body> Body for ResponseBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = {
            let _poll = PollScope::new(this.guard.as_ref().and_then(|g| g.watch.as_deref()));
            let _memory = this.guard.as_ref().and_then(RequestGuard::memory_scope);
            ready!(this.inner.poll_frame(cx))
        };
        match &frame {
            Some(Ok(frame)) => {
                if let (Some(data), Some(guard)) = (frame.data_ref(), this.guard.as_mut()) {
                    guard.response_bytes += bytes::Buf::remaining(data) as u64;
                }
            }
            // End of body or a body error: the request is over.
            None | Some(Err(_)) => {
                this.guard.take();
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
