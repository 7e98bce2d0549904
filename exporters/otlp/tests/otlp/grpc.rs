//! OTLP/gRPC throttling: a loopback gRPC receiver (tonic's server, the generated
//! `MetricsService`) that answers as scripted, with `google.rpc.RetryInfo` in its status
//! details.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prost::Message;
use sampler_api::Exporter;
use sampler_exporter_otlp::proto::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use sampler_exporter_otlp::proto::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use sampler_exporter_otlp::{OtlpExporter, Protocol, RetryConfig};
use tonic::codec::CompressionEncoding;
use tonic::{Code, Request, Response, Status};

use crate::support::Events;
use crate::{deadline, self_metric, Fixture};

/// `google.rpc.Status`, written here from `google/rpc/status.proto` (the exporter's own
/// reader is not used to write what it reads).
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

/// `google.rpc.RetryInfo` (`google/rpc/error_details.proto`).
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

/// What the receiver answers to one call (the last repeats).
#[derive(Clone, Copy, Debug)]
enum Answer {
    Ok,
    /// This code, with a `RetryInfo` of this delay when given.
    Fail(Code, Option<Duration>),
}

fn status(code: Code, delay: Option<Duration>) -> Status {
    let Some(delay) = delay else {
        return Status::new(code, "scripted failure");
    };
    let details = RpcStatus {
        code: code as i32,
        message: "scripted failure".into(),
        details: vec![Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: RetryInfo {
                retry_delay: Some(ProtoDuration {
                    seconds: delay.as_secs() as i64,
                    nanos: delay.subsec_nanos() as i32,
                }),
            }
            .encode_to_vec(),
        }],
    }
    .encode_to_vec();
    Status::with_details(code, "scripted failure", details.into())
}

/// One call as the receiver saw it.
#[derive(Clone)]
struct Call {
    at: Instant,
    answered: Code,
    request: ExportMetricsServiceRequest,
}

struct Scripted {
    script: Vec<Answer>,
    calls: Arc<Mutex<Vec<Call>>>,
}

#[tonic::async_trait]
impl MetricsService for Scripted {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut calls = self.calls.lock().unwrap();
        let answer = self.script[calls.len().min(self.script.len() - 1)];
        let code = match answer {
            Answer::Ok => Code::Ok,
            Answer::Fail(c, _) => c,
        };
        calls.push(Call {
            at: Instant::now(),
            answered: code,
            request: request.into_inner(),
        });
        match answer {
            Answer::Ok => Ok(Response::new(ExportMetricsServiceResponse::default())),
            Answer::Fail(code, delay) => Err(status(code, delay)),
        }
    }
}

/// A gRPC receiver on a loopback port of its own, served by a runtime on its own thread
/// until dropped.
struct GrpcReceiver {
    port: u16,
    calls: Arc<Mutex<Vec<Call>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GrpcReceiver {
    fn start(script: Vec<Answer>) -> GrpcReceiver {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let service = Scripted {
            script,
            calls: calls.clone(),
        };
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the receiver");
            rt.block_on(async move {
                let incoming =
                    tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().unwrap())
                        .expect("bind a loopback port");
                port_tx.send(incoming.local_addr().unwrap().port()).unwrap();
                let svc =
                    MetricsServiceServer::new(service).accept_compressed(CompressionEncoding::Gzip);
                tonic::transport::Server::builder()
                    .serve_with_incoming_shutdown(svc, incoming, async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("the receiver runs");
            });
        });
        let port = port_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the receiver's port");
        GrpcReceiver {
            port,
            calls,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Drop for GrpcReceiver {
    /// Stops accepting; the server's thread ends once the exporter's connection closes (a
    /// graceful shutdown waits for open connections, so it is not joined here).
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        drop(self.thread.take());
    }
}

/// An exporter whose own backoff would retry within 50 to 200 ms.
fn exporter(rx: &GrpcReceiver, events: &Events) -> OtlpExporter {
    OtlpExporter::builder()
        .protocol(Protocol::Grpc)
        .endpoint(format!("http://127.0.0.1:{}", rx.port))
        .retry(RetryConfig {
            enabled: true,
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            max_elapsed: Duration::from_secs(60),
        })
        .resource("service.name", "grpc-retry")
        .on_event(events.handler())
        .build()
        .expect("the grpc exporter")
}

/// Sends one harvest, waits until it is delivered or given up, and returns the calls.
fn send_one(script: Vec<Answer>) -> (Vec<Call>, OtlpExporter, usize) {
    let rx = GrpcReceiver::start(script);
    let events = Events::default();
    let mut e = exporter(&rx, &events);
    let fx = Fixture::new();
    let snap = fx.harvest();
    e.export(snap.clone()).unwrap();
    let _ = e.flush(deadline(15));
    let calls = rx.calls();
    (calls, e, snap.len())
}

fn stat(e: &OtlpExporter, name: &str, result: &str) -> u64 {
    self_metric(e, name, &[("result", result)])
}

fn points(r: &ExportMetricsServiceRequest) -> usize {
    use sampler_exporter_otlp::proto::metrics::v1::metric::Data;
    r.resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .map(|m| match &m.data {
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn r13_grpc_unavailable_with_retry_info_is_retried_after_its_delay_and_arrives_once() {
    let (calls, mut e, series) = send_one(vec![
        Answer::Fail(Code::Unavailable, Some(Duration::from_secs(1))),
        Answer::Ok,
    ]);
    let codes: Vec<Code> = calls.iter().map(|c| c.answered).collect();
    assert_eq!(codes, [Code::Unavailable, Code::Ok]);
    let waited = calls[1].at - calls[0].at;
    // Our own backoff would have come back within 200 ms.
    assert!(
        waited >= Duration::from_secs(1),
        "retried after {waited:?}, before the server's delay"
    );
    assert!(waited < Duration::from_secs(5), "retried after {waited:?}");
    assert_eq!(calls[0].request, calls[1].request, "the same request again");
    assert_eq!(points(&calls[1].request), series, "every series, once");
    assert_eq!(stat(&e, "sampler.exporter.otlp.requests", "sent"), 1);
    assert_eq!(self_metric(&e, "sampler.exporter.otlp.retries", &[]), 1);
    assert_eq!(stat(&e, "sampler.exporter.otlp.points", "dropped"), 0);
    e.shutdown(deadline(5)).unwrap();
}

#[test]
fn r13_grpc_resource_exhausted_is_retried_only_with_retry_info() {
    let (calls, mut e, _) = send_one(vec![
        Answer::Fail(Code::ResourceExhausted, Some(Duration::from_millis(1200))),
        Answer::Ok,
    ]);
    let codes: Vec<Code> = calls.iter().map(|c| c.answered).collect();
    assert_eq!(codes, [Code::ResourceExhausted, Code::Ok]);
    assert!(calls[1].at - calls[0].at >= Duration::from_millis(1200));
    assert_eq!(stat(&e, "sampler.exporter.otlp.requests", "sent"), 1);
    e.shutdown(deadline(5)).unwrap();

    // Without RetryInfo it is final: one call, the request dropped and counted.
    let (calls, mut e, series) = send_one(vec![Answer::Fail(Code::ResourceExhausted, None)]);
    assert_eq!(calls.len(), 1);
    assert_eq!(stat(&e, "sampler.exporter.otlp.requests", "failed"), 1);
    assert_eq!(
        stat(&e, "sampler.exporter.otlp.points", "dropped"),
        series as u64
    );
    assert_eq!(self_metric(&e, "sampler.exporter.otlp.retries", &[]), 0);
    let _ = e.shutdown(deadline(5));
}

#[test]
fn r13_grpc_non_retryable_codes_are_final_even_with_retry_info() {
    for code in [
        Code::InvalidArgument,
        Code::PermissionDenied,
        Code::Unauthenticated,
        Code::Unimplemented,
    ] {
        let (calls, mut e, _) = send_one(vec![Answer::Fail(code, Some(Duration::from_millis(10)))]);
        assert_eq!(calls.len(), 1, "{code:?} sent once");
        assert_eq!(stat(&e, "sampler.exporter.otlp.requests", "failed"), 1);
        assert_eq!(self_metric(&e, "sampler.exporter.otlp.retries", &[]), 0);
        let _ = e.shutdown(deadline(5));
    }
}
