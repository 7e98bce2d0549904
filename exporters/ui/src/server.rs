//! [`UiExporter`]: the page on its own listener, hyper (HTTP/1.1) on a current-thread tokio
//! runtime the exporter owns, as the Prometheus exporter's endpoint.

use std::convert::Infallible;
use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sampler_api::{ExportError, Exporter, Snapshot};
use tokio::sync::Semaphore;

use crate::{Ui, UiConfig, CONTENT_SECURITY_POLICY};

/// The most connections served at once; past it a connection is closed unanswered, so clients
/// cannot take the process's file descriptors.
const MAX_CONNECTIONS: usize = 64;

/// Why the page's server could not start.
#[derive(Debug)]
pub enum Error {
    /// The listen address could not be bound.
    Bind {
        /// The address as configured.
        address: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A setting is invalid.
    Config(String),
    /// The server thread or runtime could not start.
    Start(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Bind { address, source } => {
                write!(f, "failed to bind the ui page at {address}: {source}")
            }
            Error::Config(why) => write!(f, "invalid ui setting: {why}"),
            Error::Start(e) => write!(f, "failed to start the ui page's server: {e}"),
        }
    }
}

/// The cause is part of the message, so the error has no separate `source`.
impl std::error::Error for Error {}

/// The live page as an exporter: keeps the history of each harvest and serves the page on its
/// own address until it is shut down or dropped.
///
/// ```
/// use sampler_exporter_ui::UiExporter;
/// let ui = UiExporter::builder().listen("127.0.0.1:0").points(120).build()?;
/// assert_ne!(ui.local_addr().port(), 0);
/// assert!(ui.url().starts_with("http://127.0.0.1:"));
/// # Ok::<(), sampler_exporter_ui::Error>(())
/// ```
pub struct UiExporter {
    ui: Ui,
    server: Option<Server>,
    local_addr: SocketAddr,
}

impl fmt::Debug for UiExporter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UiExporter")
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl UiExporter {
    /// A builder with the defaults of [`UiConfig`].
    pub fn builder() -> UiExporterBuilder {
        UiExporterBuilder {
            config: UiConfig::default(),
        }
    }

    /// Binds and starts the page from a config.
    pub fn from_config(config: UiConfig) -> Result<Self, Error> {
        UiExporterBuilder { config }.build()
    }

    /// The address the page is served on (with the real port when port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The page's URL, such as `http://127.0.0.1:9466/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr)
    }

    /// The history and routes this exporter serves.
    pub fn ui(&self) -> &Ui {
        &self.ui
    }
}

impl Exporter for UiExporter {
    fn name(&self) -> &str {
        "ui"
    }

    fn export(&mut self, snapshot: Arc<Snapshot>) -> Result<(), ExportError> {
        self.ui.record(&snapshot);
        Ok(())
    }

    fn shutdown(&mut self, _deadline: Instant) -> Result<(), ExportError> {
        self.server.take();
        Ok(())
    }
}

/// Configures a [`UiExporter`]; [`build`](Self::build) binds the address.
#[derive(Clone, Debug)]
pub struct UiExporterBuilder {
    config: UiConfig,
}

impl UiExporterBuilder {
    /// Where to listen: `host:port` (default `127.0.0.1:9466`), or `:port` for every interface.
    pub fn listen(mut self, address: impl fmt::Display) -> Self {
        self.config.listen = address.to_string();
        self
    }

    /// Harvests kept per series (default 60).
    pub fn points(mut self, n: usize) -> Self {
        self.config.points = n;
        self
    }

    /// Series kept (default 2000).
    pub fn max_series(mut self, n: usize) -> Self {
        self.config.max_series = n;
        self
    }

    /// Checks the settings, binds the address and starts the server.
    pub fn build(self) -> Result<UiExporter, Error> {
        let c = self.config;
        c.check().map_err(Error::Config)?;
        let address = if c.listen.starts_with(':') {
            format!("0.0.0.0{}", c.listen)
        } else {
            c.listen.clone()
        };
        let bind_error = |source| Error::Bind {
            address: c.listen.clone(),
            source,
        };
        let listener = TcpListener::bind(address.as_str()).map_err(bind_error)?;
        let local_addr = listener.local_addr().map_err(bind_error)?;
        let ui = Ui::new(c.points, c.max_series);
        let server = Server::start(listener, ui.clone()).map_err(Error::Start)?;
        Ok(UiExporter {
            ui,
            server: Some(server),
            local_addr,
        })
    }
}

/// The running server; dropping it stops it and joins its thread.
struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(listener: TcpListener, ui: Ui) -> std::io::Result<Server> {
        listener.set_nonblocking(true)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sampler-ui-http".into())
            .spawn(move || {
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            log::error!("ui page: failed to register the listener: {e}");
                            return;
                        }
                    };
                    let accept = tokio::spawn(accept_loop(listener, ui));
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
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn accept_loop(listener: tokio::net::TcpListener, ui: Ui) {
    let serving = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                log::warn!("ui page: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = serving.clone().try_acquire_owned() else {
            continue; // dropped: closed unanswered
        };
        let ui = ui.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let r = respond(&ui, req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                log::debug!("ui page: connection ended: {e}");
            }
        });
    }
}

/// Answers one request with the page's routes: what a server mounting [`Ui`] with hyper does
/// (the Prometheus exporter answers the same way).
pub(crate) fn respond(ui: &Ui, method: &Method, path: &str) -> Response<Full<Bytes>> {
    if method != Method::GET && method != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let Some(asset) = ui.respond(path) else {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    };
    let mut r = Response::new(Full::new(asset.body));
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(asset.content_type));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
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
