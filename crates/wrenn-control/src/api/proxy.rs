//! Port URLs: requests whose Host is `{port}-{capsule id}.{domain}` are forwarded to that
//! port inside the capsule, through a tunnel over the capsule's agent channel. WebSocket
//! upgrades are forwarded too. While nothing listens on the port the answer is 502
//! `agent_error`; a capsule that is not running gets 503 `host_unavailable`.
//!
//! Private capsules need a credential (see [`crate::access`]). Whatever the mode, the
//! caller's credentials never reach the guest: [`strip_credentials`] removes them.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

use crate::access::{PortCredentials, PortsMode};
use crate::api::error::ApiError;
use crate::state::AppState;

/// Request headers that carry the caller's credentials to us, removed before forwarding.
/// (Of the `Cookie` header only our session cookie is removed: the rest is the guest's.)
pub const STRIPPED_HEADERS: &[&str] = &[
    "x-api-key",
    "authorization",
    "proxy-authorization",
    "x-access-token",
];

/// The query parameter that may carry a private capsule's access token.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The value of `access_token` in a query string (first occurrence).
fn query_token(query: Option<&str>) -> Option<String> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(ACCESS_TOKEN_PARAM)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// The credentials of a port-URL request.
pub fn credentials(req: &Request) -> PortCredentials {
    PortCredentials {
        api_key: header_str(req.headers(), "x-api-key"),
        access_token: header_str(req.headers(), "x-access-token")
            .or_else(|| query_token(req.uri().query())),
    }
}

/// `uri` without its `access_token` query parameters.
fn without_token_param(uri: &Uri) -> Result<Uri, ApiError> {
    let Some(query) = uri.query() else {
        return Ok(uri.clone());
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').map_or(*pair, |(k, _)| k) != ACCESS_TOKEN_PARAM)
        .collect();
    let path_and_query = if kept.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), kept.join("&"))
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|e| ApiError::invalid(format!("invalid request target: {e}")))?,
    );
    Uri::from_parts(parts).map_err(|e| ApiError::invalid(format!("invalid request target: {e}")))
}

/// Removes the caller's credentials from a request bound for the guest: the headers of
/// [`STRIPPED_HEADERS`], and for private capsules the `access_token` query parameter.
pub fn strip_credentials(req: &mut Request, mode: PortsMode) -> Result<(), ApiError> {
    for name in STRIPPED_HEADERS {
        req.headers_mut().remove(*name);
    }
    strip_session_cookie(req.headers_mut());
    if mode == PortsMode::Private {
        *req.uri_mut() = without_token_param(req.uri())?;
    }
    Ok(())
}

/// Removes our session cookie from the `Cookie` headers (the guest's own cookies stay).
fn strip_session_cookie(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| {
            !pair.is_empty()
                && pair.split_once('=').map_or(*pair, |(k, _)| k) != crate::auth::SESSION_COOKIE
        })
        .map(str::to_owned)
        .collect();
    headers.remove(axum::http::header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = axum::http::HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(axum::http::header::COOKIE, v);
        }
    }
}

/// Splits a port-URL Host `{port}-{name}.{rest}` into the port and the name, when `rest` is
/// `domain` (any case, an optional `:port` after it; any rest when no domain is set). The
/// one parser of Wrenn's port URLs and E2B's sandbox hosts, which differ in the name.
pub fn port_label<'a>(host: &'a str, domain: Option<&str>) -> Option<(u16, &'a str)> {
    let (port, rest) = host.split_once('-')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let port: u16 = port.parse().ok()?;
    let (name, after) = rest.split_once('.')?;
    if let Some(domain) = domain {
        let host_name = after.rsplit_once(':').map_or(after, |(n, _)| n);
        if !host_name
            .trim_end_matches('.')
            .eq_ignore_ascii_case(domain.trim_end_matches('.'))
        {
            return None;
        }
    }
    Some((port, name))
}

/// Parses `^(\d+)-(cl-[0-9a-z]+)\.` from a Host header value. With a `domain`
/// (`--proxy-domain`), the rest must be exactly that domain (any case, an optional `:port`
/// after it): `8000-cl-….sandbox.example.com` is a port URL of domain `sandbox.example.com`,
/// `8000-cl-….elsewhere.org` is not and goes to the API routes.
pub fn port_host<'a>(host: &'a str, domain: Option<&str>) -> Option<(u16, &'a str)> {
    let (port, id) = port_label(host, domain)?;
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
        .and_then(|h| port_host(h, state.config.proxy_domain.as_deref()))
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
    state.authorize_port(&row, &credentials(&req)).await?;
    strip_credentials(&mut req, PortsMode::from_stored(&row.ports))?;
    tunnel(state, port, &row, req).await
}

/// Forwards an authorized request (credentials already stripped) to `port` of the running
/// capsule `row`, through a tunnel over its agent channel; WebSocket upgrades included.
pub async fn tunnel(
    state: &AppState,
    port: u16,
    row: &crate::store::CapsuleRow,
    mut req: Request,
) -> Result<Response, ApiError> {
    let id = row.id.as_str();
    if row.status != crate::core::status::CapsuleStatus::Running {
        return Err(ApiError::unavailable(format!(
            "capsule {id} is {}; port {port} answers only while it runs",
            row.status
        )));
    }
    let guest = wrenn_envd_client::EnvdClient::over(state.host.guest(id).await?);
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
            port_host("8080-cl-abc123.example.com", None),
            Some((8080, "cl-abc123"))
        );
        assert_eq!(port_host("127.0.0.1:8080", None), None);
        assert_eq!(port_host("api.example.com", None), None);
        assert_eq!(port_host("80-cl-ABC.example.com", None), None);
    }

    #[test]
    fn a_proxy_domain_limits_port_hosts_to_it() {
        let d = Some("sandbox.example.com");
        for host in [
            "8000-cl-abc.sandbox.example.com",
            "8000-cl-abc.Sandbox.Example.COM",
            "8000-cl-abc.sandbox.example.com:443",
            "8000-cl-abc.sandbox.example.com.",
        ] {
            assert_eq!(port_host(host, d), Some((8000, "cl-abc")), "{host}");
        }
        for host in [
            "8000-cl-abc.elsewhere.org",
            "8000-cl-abc.x.sandbox.example.com",
            "8000-cl-abc.sandbox.example.com.evil.org",
            "8000-cl-abc.localhost:8080",
            "sandbox.example.com",
        ] {
            assert_eq!(port_host(host, d), None, "{host}");
        }
        assert_eq!(
            port_host("8000-cl-abc.localhost:8080", Some("localhost")),
            Some((8000, "cl-abc"))
        );
    }

    #[test]
    fn finds_and_strips_the_token_parameter() {
        assert_eq!(
            query_token(Some("a=1&access_token=wrn_at_x&b=2")).as_deref(),
            Some("wrn_at_x")
        );
        assert_eq!(query_token(Some("access_tokens=1")), None);
        assert_eq!(query_token(None), None);
        let strip = |u: &str| {
            without_token_param(&u.parse().unwrap())
                .unwrap()
                .to_string()
        };
        assert_eq!(strip("/p?a=1&access_token=t&b=2"), "/p?a=1&b=2");
        assert_eq!(strip("/p?access_token=t"), "/p");
        assert_eq!(strip("/p?access_token"), "/p");
        assert_eq!(strip("/p?access_tokens=1"), "/p?access_tokens=1");
        assert_eq!(strip("/p"), "/p");
    }

    #[test]
    fn strips_credential_headers_and_keeps_the_rest() {
        let mut req = Request::builder()
            .uri("/x?access_token=t&q=1")
            .header("X-API-Key", "wrn_0")
            .header("Authorization", "Bearer b")
            .header("X-Access-Token", "t")
            .header("Cookie", "theme=dark; wrenn_session=wrs_secret")
            .header("X-Other", "kept")
            .body(Body::empty())
            .unwrap();
        strip_credentials(&mut req, PortsMode::Private).unwrap();
        let h = req.headers();
        for name in STRIPPED_HEADERS {
            assert!(h.get(*name).is_none(), "{name}");
        }
        assert_eq!(h["cookie"], "theme=dark");
        assert_eq!(h["x-other"], "kept");
        assert_eq!(req.uri().to_string(), "/x?q=1");
    }
}
