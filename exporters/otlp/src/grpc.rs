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
/// DEADLINE_EXCEEDED, ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS. RESOURCE_EXHAUSTED is
/// retryable only with a `RetryInfo`, which this client does not read, so it is final here.
pub(crate) fn retryable_code(code: Code) -> bool {
    matches!(
        code,
        Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unavailable
            | Code::DataLoss
    )
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
                if retryable_code(status.code()) {
                    Attempt::Retryable(error, None)
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
        assert!(retryable_code(Code::Unavailable) && retryable_code(Code::DeadlineExceeded));
        for c in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::ResourceExhausted,
            Code::Unimplemented,
            Code::Internal,
        ] {
            assert!(!retryable_code(c), "{c:?}");
        }
    }
}
