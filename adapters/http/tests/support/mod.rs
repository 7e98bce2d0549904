//! An axum server on loopback for the tests: started on a free port, stopped when dropped.

use std::net::SocketAddr;

use axum::Router;

pub struct Server {
    pub addr: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Serves `app` on 127.0.0.1 (a free port) from a runtime of `workers` threads.
pub fn serve(app: Router, workers: usize) -> Server {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    runtime.spawn(async move { axum::serve(listener, app).await });
    Server {
        addr,
        runtime: Some(runtime),
    }
}
