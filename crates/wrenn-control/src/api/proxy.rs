//! Port URLs: requests whose Host is `{port}-{capsule id}.{domain}` are forwarded to that
//! port inside the capsule, through a tunnel over the capsule's agent channel. WebSocket
//! upgrades are forwarded too. While nothing listens on the port the answer is 502
//! `agent_error`; a capsule that is not running gets 503 `host_unavailable`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use crate::error::ApiError;
use crate::state::AppState;

/// Parses `^(\d+)-(cl-[0-9a-z]+)\.` from a Host header value.
pub fn port_host(host: &str) -> Option<(u16, &str)> {
    let (port, rest) = host.split_once('-')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    let (id, _) = rest.split_once('.')?;
    let tail = id.strip_prefix("cl-")?;
    if tail.is_empty()
        || !tail
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
    {
        return None;
    }
    Some((port, id))
}

/// Middleware answering port-URL requests before routing.
pub async fn port_proxy(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host())
        .and_then(port_host)
        .map(|(port, id)| (port, id.to_owned()));
    match host {
        Some((port, id)) => forward(&state, port, &id, req)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        None => next.run(req).await,
    }
}

async fn forward(
    state: &AppState,
    port: u16,
    id: &str,
    mut req: Request,
) -> Result<Response, ApiError> {
    let row = state
        .store
        .capsule(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("capsule {id} not found")))?;
    if row.status != "running" {
        return Err(ApiError::unavailable(format!(
            "capsule {id} is {}; port {port} answers only while it runs",
            row.status
        )));
    }
    let guest = state.host.guest(id).await?;
    let tunnel = guest.connect_port(port).await.map_err(|e| {
        ApiError::agent(format!(
            "port {port} of capsule {id} does not answer yet: {e}"
        ))
    })?;
    state.activity.touch(id).await;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Body>(TokioIo::new(tunnel))
        .await
        .map_err(|e| ApiError::agent(format!("port {port} of capsule {id}: {e}")))?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let client_upgrade = hyper::upgrade::on(&mut req);
    let mut resp = sender
        .send_request(req)
        .await
        .map_err(|e| ApiError::agent(format!("port {port} of capsule {id}: {e}")))?;
    if resp.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
        let server_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            if let (Ok(client), Ok(server)) = (client_upgrade.await, server_upgrade.await) {
                let _ = tokio::io::copy_bidirectional(
                    &mut TokioIo::new(client),
                    &mut TokioIo::new(server),
                )
                .await;
            }
        });
    }
    Ok(resp.map(Body::new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_port_hosts() {
        assert_eq!(
            port_host("8080-cl-abc123.example.com"),
            Some((8080, "cl-abc123"))
        );
        assert_eq!(port_host("127.0.0.1:8080"), None);
        assert_eq!(port_host("api.example.com"), None);
        assert_eq!(port_host("80-cl-ABC.example.com"), None);
    }
}
