//! Port URLs: `{port}-{capsule id}.{domain}` hosts. The host API has no port forwarding yet,
//! so such requests get 502 `agent_error` with a clear message.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

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
pub async fn port_proxy(req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host());
    if let Some((port, id)) = host.and_then(port_host) {
        return ApiError::agent(format!(
            "port forwarding to port {port} of capsule {id} is not supported yet by this host"
        ))
        .into_response();
    }
    next.run(req).await
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
