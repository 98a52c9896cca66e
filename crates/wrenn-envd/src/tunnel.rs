//! Port tunnels: a TCP connection to a port inside the guest, carried over one HTTP/2
//! stream (request body upstream, response body downstream). The control plane's port
//! proxy uses it for `{port}-{capsule}.domain` URLs.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use wrenn_protocol::ErrorKind;

use crate::error::{ApiError, ApiResult};

/// Connects to `127.0.0.1:port` in the guest and pipes it through the exchange's bodies.
pub async fn open(port: u16, upstream: Body) -> ApiResult<Response> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                ErrorKind::NotFound
            } else {
                ErrorKind::Internal
            };
            ApiError::new(
                kind,
                format!("nothing answers on port {port} in the capsule: {e}"),
            )
        })?;
    let (rd, mut wr) = tcp.into_split();
    tokio::spawn(async move {
        let mut body = upstream.into_data_stream();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    if wr.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = wr.shutdown().await;
    });
    let downstream = tokio_util::io::ReaderStream::with_capacity(rd, 64 * 1024);
    Ok(Body::from_stream(downstream).into_response())
}
