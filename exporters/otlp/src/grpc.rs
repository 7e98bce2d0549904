//! OTLP/gRPC: tonic's client on a current-thread tokio runtime that the sender thread owns, so
//! the host needs no runtime of its own.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::transport::Channel;
use tonic::Code;

use crate::config::{Compression, OtlpConfig};
use crate::sender::Attempt;

/// Whether a gRPC status is worth retrying (OTLP/gRPC, "Failures"): CANCELLED,
/// DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS always;
/// RESOURCE_EXHAUSTED only when the server says when to retry (`with_retry_info`).
pub(crate) fn retryable_code(code: Code, with_retry_info: bool) -> bool {
    match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => with_retry_info,
        _ => false,
    }
}

/// `google.rpc.Status`: what a server puts in the `grpc-status-details-bin` trailer.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// The delay of the `google.rpc.RetryInfo` among a status' details (the bytes of its
/// `grpc-status-details-bin`), if there is one: how long the server asks the client to wait
/// before it tries again (OTLP/gRPC, "Throttling"). A negative delay is no wait; bytes that
/// do not decode are no `RetryInfo`.
pub(crate) fn retry_info(details: &[u8]) -> Option<Duration> {
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    let info = status
        .details
        .iter()
        .find(|a| a.type_url.rsplit('/').next() == Some("google.rpc.RetryInfo"))?;
    let delay = RetryInfo::decode(&info.value[..]).ok()?.retry_delay?;
    let nanos = (delay.seconds as i128) * 1_000_000_000 + delay.nanos as i128;
    Some(Duration::from_nanos(nanos.clamp(0, u64::MAX as i128) as u64))
}

pub(crate) struct GrpcClient {
    runtime: tokio::runtime::Runtime,
    client: MetricsServiceClient<Channel>,
    metadata: MetadataMap,
    endpoint: String,
}

impl GrpcClient {
    pub fn new(config: &OtlpConfig) -> Result<GrpcClient, String> {
        let endpoint = config.effective_endpoint().to_owned();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("failed to start the otlp grpc runtime: {e}"))?;
        let channel = {
            let _guard = runtime.enter();
            Channel::from_shared(endpoint.clone())
                .map_err(|e| format!("endpoint {endpoint:?} is not a valid grpc endpoint: {e}"))?
                .connect_timeout(config.timeout)
                .connect_lazy()
        };
        let mut client = MetricsServiceClient::new(channel);
        if config.compression == Compression::Gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        let mut metadata = MetadataMap::new();
        for (k, v) in &config.headers {
            let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                .map_err(|_| format!("header name {k:?} is not valid grpc metadata"))?;
            let value = MetadataValue::try_from(v.as_str())
                .map_err(|_| format!("header {k:?} has a value that is not valid grpc metadata"))?;
            metadata.insert(key, value);
        }
        Ok(GrpcClient {
            runtime,
            client,
            metadata,
            endpoint,
        })
    }

    /// Sends one request (an encoded `ExportMetricsServiceRequest`) within `timeout`.
    pub fn attempt(&mut self, body: &[u8], timeout: Duration) -> Attempt {
        let endpoint = &self.endpoint;
        let message = match ExportMetricsServiceRequest::decode(body) {
            Ok(m) => m,
            Err(e) => return Attempt::Permanent(format!("failed to re-read a request: {e}")),
        };
        let mut request = tonic::Request::new(message);
        *request.metadata_mut() = self.metadata.clone();
        request.set_timeout(timeout);
        let client = &mut self.client;
        let result = self
            .runtime
            .block_on(async { tokio::time::timeout(timeout, client.export(request)).await });
        match result {
            Err(_) => Attempt::Retryable(
                format!("failed to send metrics to {endpoint}: timed out after {timeout:?}"),
                None,
            ),
            Ok(Ok(response)) => Attempt::Sent(crate::sender::rejection(
                response.into_inner().partial_success,
            )),
            Ok(Err(status)) => {
                let error = format!(
                    "metrics endpoint {endpoint} answered grpc {:?}: {}",
                    status.code(),
                    status.message()
                );
                let after = retry_info(status.details());
                if retryable_code(status.code(), after.is_some()) {
                    // The server's delay replaces the backoff's.
                    Attempt::Retryable(error, after)
                } else {
                    Attempt::Permanent(error)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_codes_are_retried() {
        for c in [
            Code::Cancelled,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::OutOfRange,
            Code::Unavailable,
            Code::DataLoss,
        ] {
            assert!(retryable_code(c, false) && retryable_code(c, true), "{c:?}");
        }
        assert!(retryable_code(Code::ResourceExhausted, true));
        for c in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::Unimplemented,
            Code::Internal,
            Code::Unknown,
        ] {
            assert!(!retryable_code(c, false), "{c:?}");
        }
        assert!(!retryable_code(Code::InvalidArgument, true));
    }

    fn details(type_url: &str, seconds: i64, nanos: i32) -> Vec<u8> {
        RpcStatus {
            code: 14,
            message: "busy".into(),
            details: vec![
                Any {
                    type_url: "type.googleapis.com/google.rpc.DebugInfo".into(),
                    value: vec![1, 2, 3],
                },
                Any {
                    type_url: type_url.into(),
                    value: RetryInfo {
                        retry_delay: Some(ProtoDuration { seconds, nanos }),
                    }
                    .encode_to_vec(),
                },
            ],
        }
        .encode_to_vec()
    }

    #[test]
    fn retry_info_is_read_from_the_status_details() {
        let url = "type.googleapis.com/google.rpc.RetryInfo";
        assert_eq!(
            retry_info(&details(url, 1, 500_000_000)),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(retry_info(&details(url, -3, 0)), Some(Duration::ZERO));
        assert_eq!(
            retry_info(&details("type.googleapis.com/other", 1, 0)),
            None
        );
        assert_eq!(retry_info(&[]), None);
        assert_eq!(retry_info(&[0xff, 0xff, 0xff]), None);
    }
}
