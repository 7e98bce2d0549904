//! The HTTP endpoint: hyper (HTTP/1.1) on a current-thread tokio runtime that the exporter
//! owns. A scrape clones the cached bytes of the latest exposition; it never encodes (except a
//! first gzip of a variant no scrape asked for before), never harvests unless
//! `harvest_on_scrape` is set, and never waits on the harvest.
//!
//! At most `max_connections` connections are served at once. A connection past the limit is
//! answered `503` at once and closed (lingering a moment to read what the client sent, so the
//! answer is not lost to a reset; at most [`REFUSING`] of those at a time, the rest closed
//! unanswered), so the endpoint holds a bounded number of descriptors whatever its clients do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, ALLOW, CONTENT_ENCODING, CONTENT_TYPE, VARY,
};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::negotiate::{accepts_gzip, negotiate_format};
use crate::Shared;

/// The most refused connections answered at once; more are closed unanswered.
const REFUSING: usize = 16;
/// How long a refused connection is kept to read what the client sent before it is closed.
const REFUSE_LINGER: Duration = Duration::from_millis(250);

/// The running endpoint; dropping it stops the server.
pub(crate) struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub(crate) fn start(
        listener: std::net::TcpListener,
        shared: Arc<Shared>,
    ) -> std::io::Result<Server> {
        listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .thread_name("sampler-prometheus-http")
            .max_blocking_threads(2)
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sampler-prometheus-http".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            log::error!(
                                "prometheus endpoint: failed to register the listener: {e}"
                            );
                            return;
                        }
                    };
                    let accept = tokio::spawn(accept_loop(listener, shared));
                    let _ = rx.await;
                    accept.abort();
                });
                rt.shutdown_timeout(Duration::from_secs(1));
            })?;
        Ok(Server {
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops accepting, drops open connections and joins the server thread.
    pub(crate) fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, shared: Arc<Shared>) {
    let serving = Arc::new(Semaphore::new(shared.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSING));
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("prometheus endpoint: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = serving.clone().try_acquire_owned() else {
            shared
                .stats
                .refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Ok(permit) = refusing.clone().try_acquire_owned() {
                let limit = shared.max_connections;
                tokio::spawn(async move {
                    refuse(stream, limit).await;
                    drop(permit);
                });
            }
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, &shared).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                log::debug!("prometheus endpoint: connection ended: {e}");
            }
        });
    }
}

/// Answers a connection past the limit with `503` and closes it. The answer fits a fresh
/// socket's send buffer, so it is written at once; the request, if any, is read (briefly) so
/// that closing sends no reset, which would discard the answer at the client.
async fn refuse(mut stream: tokio::net::TcpStream, limit: usize) {
    let body = format!("too many connections: the endpoint serves at most {limit} at once\n");
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

/// Routes one request (its body, if any, is never read).
async fn handle(req: Request<Incoming>, shared: &Arc<Shared>) -> Response<Full<Bytes>> {
    let (parts, _body) = req.into_parts();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let path = parts.uri.path();
    if path == shared.path {
        return metrics(&parts, shared).await;
    }
    #[cfg(feature = "ui")]
    if let Some(ui) = &shared.ui {
        if let Some(asset) = ui.respond(path) {
            let mut r = Response::new(Full::new(asset.body));
            let h = r.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
            h.insert(
                "content-security-policy",
                HeaderValue::from_static(sampler_exporter_ui::CONTENT_SECURITY_POLICY),
            );
            h.insert(
                "x-content-type-options",
                HeaderValue::from_static("nosniff"),
            );
            h.insert(
                hyper::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            );
            return r;
        }
    }
    match path {
        "/" => {
            let mut r = Response::new(Full::new(shared.index_html.clone()));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        "/-/healthy" => plain(StatusCode::OK, "Healthy.\n"),
        "/-/ready" => {
            if shared.has_snapshot() {
                plain(StatusCode::OK, "Ready.\n")
            } else {
                plain(StatusCode::SERVICE_UNAVAILABLE, "No harvest yet.\n")
            }
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn metrics(
    parts: &hyper::http::request::Parts,
    shared: &Arc<Shared>,
) -> Response<Full<Bytes>> {
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    let format = negotiate_format(header(ACCEPT), shared.native);
    let gzip = shared.gzip && accepts_gzip(header(ACCEPT_ENCODING));
    if shared.harvest_on_scrape {
        let wait = scrape_wait(parts, shared.harvest_timeout);
        if let Some(rx) = shared.request_harvest() {
            let _ = tokio::time::timeout(wait, rx).await;
        }
    }
    let exposition = shared.current();
    shared.stats.scraped(format);
    let body = if gzip {
        // Scraped with gzip now: the next snapshot is compressed ahead of time.
        shared.want_gzip(format);
        match exposition.gzipped(format) {
            Some(b) => b,
            None => {
                let e = exposition.clone();
                match tokio::task::spawn_blocking(move || e.gzip(format)).await {
                    Ok(b) => b,
                    Err(_) => {
                        return plain(StatusCode::INTERNAL_SERVER_ERROR, "compression failed\n")
                    }
                }
            }
        }
    } else {
        exposition.body(format)
    };
    let mut r = Response::new(Full::new(body));
    let h = r.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    h.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if gzip {
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    r
}

/// How long a scrape waits for its own harvest: the configured timeout, capped at 90 % of the
/// scraper's own timeout when it states one.
fn scrape_wait(parts: &hyper::http::request::Parts, configured: Duration) -> Duration {
    let stated = parts
        .headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s * 0.9).ok());
    stated.map_or(configured, |s| s.min(configured))
}

/// The landing page, linking to the metrics path and the health check.
pub(crate) fn index_html(path: &str, addr: SocketAddr) -> Bytes {
    Bytes::from(format!(
        "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>sampler Prometheus exporter</title></head>\n\
         <body>\n<h1>sampler Prometheus exporter</h1>\n<p>Listening on {addr}.</p>\n<ul>\n\
         <li><a href=\"{path}\">Metrics</a></li>\n<li><a href=\"/-/healthy\">Health</a></li>\n</ul>\n\
         </body>\n</html>\n"
    ))
}
