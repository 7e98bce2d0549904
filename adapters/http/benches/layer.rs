//! Overhead of the layer: an in-process request loop through a trivial service, with and
//! without `HttpMetricsLayer` (request built, called, response body read to the end).

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use sampler_adapter_http::{Groups, HttpMetrics};
use sampler_api::Registry;
use tower::{service_fn, Layer, Service, ServiceExt};

async fn hello(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(
        b"hello, world",
    ))))
}

async fn one<S, B>(svc: &mut S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let request = Request::get("/api/users/42")
        .header("x-request-start", "t=1700000000.123")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = svc.ready().await.unwrap().call(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap();
    std::hint::black_box(body);
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("request");
    let mut bare = service_fn(hello);
    group.bench_function("without_layer", |b| b.iter(|| rt.block_on(one(&mut bare))));
    let registry = Registry::new();
    let metrics = HttpMetrics::new(
        &registry,
        Groups::new()
            .prefix("/api", "api")
            .prefix("/admin", "admin")
            .default_group("web"),
    )
    .capacity(64.0);
    let mut layered = metrics.layer().layer(service_fn(hello));
    group.bench_function("with_layer", |b| b.iter(|| rt.block_on(one(&mut layered))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
