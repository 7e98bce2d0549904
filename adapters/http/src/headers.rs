//! The request headers the layer reads, found in one walk over a small header map.

use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH};

static REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");
static QUEUE_START: HeaderName = HeaderName::from_static("x-queue-start");
static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Up to this many headers a walk comparing names costs less than the four hashed lookups
/// (each hashes its name; a comparison with a header of another kind is one branch).
const WALK_UP_TO: usize = 12;

/// The values of the headers the layer reads (the first of each name).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Read<'a> {
    /// `X-Request-Start`, else `X-Queue-Start`: when a front proxy saw the request.
    pub(crate) request_start: Option<&'a HeaderValue>,
    /// `Content-Length`.
    pub(crate) content_length: Option<&'a HeaderValue>,
    /// `X-Request-Id`, for a request hook.
    pub(crate) request_id: Option<&'a HeaderValue>,
}

impl<'a> Read<'a> {
    pub(crate) fn of(headers: &'a HeaderMap) -> Read<'a> {
        if headers.len() > WALK_UP_TO {
            return Read {
                request_start: headers
                    .get(&REQUEST_START)
                    .or_else(|| headers.get(&QUEUE_START)),
                content_length: headers.get(CONTENT_LENGTH),
                request_id: headers.get(&REQUEST_ID),
            };
        }
        let mut read = Read::default();
        let mut queue_start = None;
        for (name, value) in headers {
            if *name == CONTENT_LENGTH {
                read.content_length.get_or_insert(value);
            } else if *name == REQUEST_START {
                read.request_start.get_or_insert(value);
            } else if *name == QUEUE_START {
                queue_start.get_or_insert(value);
            } else if *name == REQUEST_ID {
                read.request_id.get_or_insert(value);
            }
        }
        read.request_start = read.request_start.or(queue_start);
        read
    }

    /// The declared request body size.
    pub(crate) fn content_length(&self) -> Option<u64> {
        self.content_length?.to_str().ok()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walk finds what the hashed lookups find, for maps on both sides of the bound.
    #[test]
    fn the_walk_and_the_lookups_agree() {
        for extra in [0, 3, WALK_UP_TO - 2, WALK_UP_TO, WALK_UP_TO + 5] {
            for (start, queue, length, id) in [
                (true, true, true, true),
                (false, true, false, true),
                (true, false, true, false),
                (false, false, true, true),
                (false, false, false, false),
            ] {
                let mut headers = HeaderMap::new();
                for i in 0..extra {
                    headers.insert(
                        HeaderName::from_bytes(format!("x-other-{i}").as_bytes()).unwrap(),
                        HeaderValue::from_static("v"),
                    );
                }
                if queue {
                    headers.insert(&QUEUE_START, HeaderValue::from_static("t=2"));
                }
                if start {
                    headers.insert(&REQUEST_START, HeaderValue::from_static("t=1"));
                    headers.append(&REQUEST_START, HeaderValue::from_static("t=9"));
                }
                if length {
                    headers.insert(CONTENT_LENGTH, HeaderValue::from_static("42"));
                }
                if id {
                    headers.insert(&REQUEST_ID, HeaderValue::from_static("req-7"));
                }
                let read = Read::of(&headers);
                let want_start = headers
                    .get(&REQUEST_START)
                    .or_else(|| headers.get(&QUEUE_START));
                assert_eq!(read.request_start, want_start, "{headers:?}");
                assert_eq!(read.content_length, headers.get(CONTENT_LENGTH));
                assert_eq!(read.content_length(), length.then_some(42));
                assert_eq!(read.request_id, headers.get(&REQUEST_ID));
            }
        }
    }
}
