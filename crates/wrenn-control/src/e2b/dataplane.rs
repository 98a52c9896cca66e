//! Requests for a sandbox rather than for the API: those with `E2b-Sandbox-Id` (and
//! `E2b-Sandbox-Port`, envd's 49983 when absent), and those whose Host is
//! `{port}-{sandbox id}.{domain}`. Port 49983 is envd, answered here by translating E2B's
//! envd protocol to ours (it needs the sandbox's `X-Access-Token`); any other port goes to
//! the port proxy (it needs the traffic token when the sandbox's traffic is not public).

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use wrenn_envd_client::EnvdClient;

use super::error::E2bError;
use super::{capsule_id, TokenKind, CODE_INTERPRETER_PORT, DEFAULT_USER, ENVD_PORT};
use crate::access::{same_secret, PortsMode};
use crate::core::activity::StreamGuard;
use crate::core::status::CapsuleStatus;
use crate::state::AppState;
use crate::store::CapsuleRow;

/// Header naming the sandbox of a data-plane request.
pub const SANDBOX_ID_HEADER: &str = "e2b-sandbox-id";
/// Header naming its port.
pub const SANDBOX_PORT_HEADER: &str = "e2b-sandbox-port";
/// Header of the envd access token.
pub const ACCESS_TOKEN_HEADER: &str = "x-access-token";
/// Header of the traffic token (ports of sandboxes without public traffic).
pub const TRAFFIC_TOKEN_HEADER: &str = "e2b-traffic-access-token";

/// Middleware answering sandbox requests before routing.
pub async fn data_plane(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match target(&req, state.config.proxy_domain.as_deref()) {
        Some((sandbox, port)) => serve(state, sandbox, port, req)
            .await
            .unwrap_or_else(IntoResponse::into_response),
        None => next.run(req).await,
    }
}

/// The sandbox id and port a request is for, if it is a data-plane request.
fn target(req: &Request, domain: Option<&str>) -> Option<(String, u16)> {
    let headers = req.headers();
    if let Some(id) = header(headers, SANDBOX_ID_HEADER) {
        let port = match header(headers, SANDBOX_PORT_HEADER) {
            Some(p) => p.parse().unwrap_or(0),
            None => ENVD_PORT,
        };
        return Some((id, port));
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().host())?;
    sandbox_host(host, domain).map(|(port, id)| (id.to_owned(), port))
}

/// Parses `{port}-{sandbox id}.{rest}` (a sandbox id has no `-`, which tells it from
/// Wrenn's `{port}-cl-{id}`); with a `domain`, the rest must be exactly that domain.
pub fn sandbox_host<'a>(host: &'a str, domain: Option<&str>) -> Option<(u16, &'a str)> {
    let (port, id) = crate::api::proxy::port_label(host, domain)?;
    capsule_id(id)?;
    Some((port, id))
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The proxy's answer for a sandbox that is not there (the SDK reads "was not found" as
/// "killed or timed out").
fn not_found(sandbox: &str) -> E2bError {
    E2bError::new(
        StatusCode::BAD_GATEWAY,
        format!("The sandbox {sandbox} was not found"),
    )
}

async fn serve(
    state: AppState,
    sandbox: String,
    port: u16,
    req: Request,
) -> Result<Response, E2bError> {
    let id = capsule_id(&sandbox).ok_or_else(|| not_found(&sandbox))?;
    let row = state
        .store
        .capsule(&id)
        .await?
        .ok_or_else(|| not_found(&sandbox))?;
    if row.status != CapsuleStatus::Running {
        return Err(E2bError::new(
            StatusCode::BAD_GATEWAY,
            format!("The sandbox {sandbox} was not found: it is {}", row.status),
        ));
    }
    if port == 0 {
        return Err(E2bError::invalid(format!(
            "invalid {SANDBOX_PORT_HEADER} header"
        )));
    }
    if port == CODE_INTERPRETER_PORT && req.uri().path() == "/execute" {
        check_access_token(&state, &row, req.headers()).await?;
    }
    if port != ENVD_PORT {
        return forward(&state, port, row, req).await;
    }
    if !super::files::signed(&req) {
        check_access_token(&state, &row, req.headers()).await?;
    }
    let ctx = Envd::open(&state, row, req.headers()).await?;
    let path = req.uri().path().to_owned();
    if let Some(method) = path.strip_prefix("/process.Process/") {
        let method = method.to_owned();
        return Ok(super::process::call(ctx, &method, req).await);
    }
    if let Some(method) = path.strip_prefix("/filesystem.Filesystem/") {
        let method = method.to_owned();
        return Ok(super::filesystem::call(ctx, &method, req).await);
    }
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/health") => Ok(StatusCode::NO_CONTENT.into_response()),
        (_, "/files") => super::files::call(ctx, req).await,
        (_, "/health") => Err(E2bError::new(StatusCode::METHOD_NOT_ALLOWED, "GET only")),
        (m, p) => Err(E2bError::new(
            StatusCode::NOT_FOUND,
            format!("envd has no route {m} {p}"),
        )),
    }
}

/// `Ok` when the request carries the sandbox's envd access token.
async fn check_access_token(
    state: &AppState,
    row: &CapsuleRow,
    headers: &HeaderMap,
) -> Result<(), E2bError> {
    let token = header(headers, ACCESS_TOKEN_HEADER)
        .ok_or_else(|| E2bError::new(StatusCode::UNAUTHORIZED, "missing X-Access-Token"))?;
    let want = state.e2b_token(&row.id, TokenKind::Envd).await?;
    if same_secret(token.as_bytes(), want.as_bytes()) {
        Ok(())
    } else {
        Err(E2bError::new(
            StatusCode::UNAUTHORIZED,
            "invalid X-Access-Token for this sandbox",
        ))
    }
}

/// Forwards a request for another port of the sandbox through the port proxy.
async fn forward(
    state: &AppState,
    port: u16,
    row: CapsuleRow,
    mut req: Request,
) -> Result<Response, E2bError> {
    if PortsMode::from_stored(&row.ports) == PortsMode::Private {
        let ok = match header(req.headers(), TRAFFIC_TOKEN_HEADER) {
            Some(t) => {
                let want = state.e2b_token(&row.id, TokenKind::Traffic).await?;
                same_secret(t.as_bytes(), want.as_bytes())
            }
            None => {
                let creds = crate::api::proxy::credentials(&req);
                state.authorize_port(&row, &creds).await.is_ok() && creds.api_key.is_some()
            }
        };
        if !ok {
            return Err(E2bError::new(
                StatusCode::UNAUTHORIZED,
                format!(
                    "the ports of sandbox {} need its traffic access token",
                    super::sandbox_id(&row.id)
                ),
            ));
        }
    }
    req.headers_mut().remove(TRAFFIC_TOKEN_HEADER);
    req.headers_mut().remove(SANDBOX_ID_HEADER);
    req.headers_mut().remove(SANDBOX_PORT_HEADER);
    crate::api::proxy::strip_credentials(&mut req, PortsMode::Private)?;
    crate::api::proxy::tunnel(state, port, &row, req)
        .await
        .map_err(|e| {
            if e.status == StatusCode::BAD_GATEWAY {
                E2bError::new(
                    StatusCode::BAD_GATEWAY,
                    format!(
                        "The sandbox is running but port {port} is not open: {}",
                        e.message
                    ),
                )
            } else {
                e.into()
            }
        })
}

/// A data-plane request's view of the sandbox's envd: the guest, the caller's user, and the
/// environment every command gets.
pub struct Envd {
    /// The state.
    pub state: AppState,
    /// The capsule.
    pub row: CapsuleRow,
    /// Its guest.
    pub guest: EnvdClient,
    /// The user commands run as and files belong to.
    pub user: String,
    /// The environment given at create.
    pub envs: BTreeMap<String, String>,
}

impl Envd {
    async fn open(
        state: &AppState,
        row: CapsuleRow,
        headers: &HeaderMap,
    ) -> Result<Self, E2bError> {
        let user = basic_user(headers)?.unwrap_or_else(|| DEFAULT_USER.to_owned());
        let guest = EnvdClient::over(state.host.guest(&row.id).await.map_err(E2bError::of)?);
        state.activity.touch(&row.id).await;
        let envs = serde_json::from_str(&row.envs).unwrap_or_default();
        Ok(Self {
            state: state.clone(),
            row,
            guest,
            user,
            envs,
        })
    }

    /// Keeps the capsule from its TTL while a stream is open.
    pub fn hold(&self) -> StreamGuard {
        self.state.activity.open_stream(&self.row.id)
    }

    /// The home directory of a user.
    pub fn home(user: &str) -> String {
        if user == "root" || user == "0" {
            "/root".to_owned()
        } else {
            format!("/home/{user}")
        }
    }

    /// An absolute guest path: relative ones are taken from the user's home.
    pub fn path(&self, user: &str, path: &str) -> String {
        if path.starts_with('/') {
            path.to_owned()
        } else if path.is_empty() || path == "~" {
            Self::home(user)
        } else {
            let rest = path.strip_prefix("~/").unwrap_or(path);
            format!("{}/{rest}", Self::home(user))
        }
    }
}

/// The user of `Authorization: Basic base64("<user>:")`, checked to be a plain name.
pub fn basic_user(headers: &HeaderMap) -> Result<Option<String>, E2bError> {
    let Some(v) = header(headers, "authorization") else {
        return Ok(None);
    };
    let bad = || E2bError::invalid("Authorization must be Basic base64(\"<user>:\")");
    let b64 = v.strip_prefix("Basic ").ok_or_else(bad)?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    if user.is_empty() {
        return Ok(None);
    }
    check_user(user)?;
    Ok(Some(user.to_owned()))
}

/// A user name as Debian's `adduser` allows it (or a numeric uid).
pub fn check_user(user: &str) -> Result<(), E2bError> {
    let ok = !user.is_empty()
        && user.len() <= 32
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !user.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(E2bError::invalid(format!("invalid user name {user:?}")))
    }
}

/// The body of a request, bounded.
pub async fn body_bytes(
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, super::connect::RpcError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        super::connect::RpcError::new(
            super::connect::Code::ResourceExhausted,
            format!("request body: {e}"),
        )
    })
}

impl From<wrenn_envd_client::EnvdError> for super::connect::RpcError {
    /// How our guest's errors read in E2B's envd protocol.
    fn from(e: wrenn_envd_client::EnvdError) -> Self {
        use super::connect::{Code, RpcError};
        use wrenn_envd_client::EnvdError;
        use wrenn_protocol::ErrorKind;
        match e {
            EnvdError::Guest(body) => {
                let code = match body.kind {
                    ErrorKind::NotFound => Code::NotFound,
                    ErrorKind::AlreadyExists => Code::AlreadyExists,
                    ErrorKind::PermissionDenied => Code::PermissionDenied,
                    ErrorKind::InvalidArgument
                    | ErrorKind::IsADirectory
                    | ErrorKind::NotADirectory => Code::InvalidArgument,
                    ErrorKind::Internal => Code::Internal,
                };
                RpcError::new(code, body.message)
            }
            EnvdError::Channel(_) | EnvdError::Timeout(_) => {
                RpcError::new(Code::Unavailable, e.to_string())
            }
            EnvdError::Protocol(_) => RpcError::new(Code::Internal, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_hosts_are_told_from_wrenn_port_urls() {
        let id = super::super::sandbox_id(&crate::ids::new_capsule_id()).to_owned();
        let host = format!("3000-{id}.localhost:8080");
        assert_eq!(sandbox_host(&host, None), Some((3000, id.as_str())));
        assert_eq!(
            sandbox_host(&host, Some("localhost")),
            Some((3000, id.as_str()))
        );
        assert_eq!(sandbox_host(&host, Some("example.com")), None);
        assert_eq!(sandbox_host(&format!("3000-cl-{id}.localhost"), None), None);
        assert_eq!(sandbox_host("api.example.com", None), None);
        assert_eq!(sandbox_host("127.0.0.1:8080", None), None);
    }

    #[test]
    fn basic_users_and_relative_paths() {
        let mut h = HeaderMap::new();
        assert_eq!(basic_user(&h).unwrap(), None);
        h.insert("authorization", "Basic cm9vdDo=".parse().unwrap());
        assert_eq!(basic_user(&h).unwrap().as_deref(), Some("root"));
        h.insert("authorization", "Basic Li4vZXRjOg==".parse().unwrap());
        assert!(basic_user(&h).is_err());
        h.insert("authorization", "Bearer x".parse().unwrap());
        assert!(basic_user(&h).is_err());
        assert_eq!(Envd::home("user"), "/home/user");
        assert_eq!(Envd::home("root"), "/root");
    }
}
