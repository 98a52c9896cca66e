//! Serving the API: HTTP/2 over link sessions, on the virtio-serial port (in a VM) or on each
//! connection of a Unix socket (`--listen-unix`, tests on the host).

use std::path::Path;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use tokio::task::AbortHandle;
use wrenn_protocol::link::guest;
use wrenn_protocol::link::session::SessionIo;

use wrenn_protocol::routes::{H2_CONN_WINDOW, H2_MAX_FRAME, H2_STREAM_WINDOW};

/// Starts an HTTP/2 server for one session; the handle aborts it.
pub fn http2(session: u64, io: SessionIo, app: Router) -> AbortHandle {
    let svc = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .max_frame_size(H2_MAX_FRAME)
        .max_concurrent_streams(1024)
        .serve_connection(TokioIo::new(io), svc);
    tokio::spawn(async move {
        match conn.await {
            Ok(()) => tracing::debug!(session, "http/2 connection ended"),
            Err(e) => tracing::debug!(session, "http/2 connection failed: {e}"),
        }
    })
    .abort_handle()
}

/// Serves the link on any byte stream until it ends.
pub async fn link<T>(transport: T, app: Router) -> Result<(), wrenn_protocol::link::LinkError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    guest::serve(transport, move |session, io| {
        http2(session, io, app.clone())
    })
    .await
}

/// Test mode: listens on a Unix socket; every connection is its own link (and session).
pub async fn listen_unix(path: &Path, app: Router) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    tracing::info!(path = %path.display(), "listening");
    loop {
        let (conn, _) = listener.accept().await?;
        let app = app.clone();
        tokio::spawn(async move {
            if let Err(e) = link(conn, app).await {
                tracing::debug!("link ended: {e}");
            }
        });
    }
}
