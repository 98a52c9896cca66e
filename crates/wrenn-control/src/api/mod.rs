//! The HTTP layer: parses requests, calls the lifecycle and the guest, shapes answers.
//! One file per resource; this module assembles the router.

pub mod builds;
pub mod capsules;
pub mod error;
pub mod exec;
pub mod extract;
pub mod files;
pub mod proxy;
pub mod pty;
pub mod sessions;
pub mod snapshots;
pub mod sse;
pub mod system;
pub mod teams;
pub mod usage;
pub mod utf8;
pub mod views;
pub mod ws;

use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::api::error::ApiError;
use crate::state::AppState;

/// One route of the router: method and path template.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RouteSpec {
    /// Lower-case HTTP method.
    pub method: &'static str,
    /// Path template (`/v1/capsules/{id}`).
    pub path: String,
}

/// Limit of JSON request bodies.
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;

struct Table {
    router: Router<AppState>,
    routes: Vec<RouteSpec>,
}

impl Table {
    fn add(mut self, method: &'static str, path: &str, handler: MethodRouter<AppState>) -> Self {
        self.routes.push(RouteSpec {
            method,
            path: path.to_owned(),
        });
        self.router = self.router.route(path, handler);
        self
    }
}

/// The `/v1` routes (relative paths), with their methods.
fn v1_routes() -> Table {
    let t = Table {
        router: Router::new(),
        routes: Vec::new(),
    };
    // Routes sharing a path are merged by axum; each (method, path) is listed once.
    t.add("post", "/capsules", post(capsules::create))
        .add("get", "/capsules", get(capsules::list))
        .add("get", "/capsules/stats", get(usage::stats))
        .add("get", "/capsules/usage", get(usage::usage))
        .add("get", "/capsules/{id}", get(capsules::get))
        .add("delete", "/capsules/{id}", delete(capsules::delete))
        .add("post", "/capsules/{id}/pause", post(capsules::pause))
        .add("post", "/capsules/{id}/resume", post(capsules::resume))
        .add("post", "/capsules/{id}/ping", post(capsules::ping))
        .add("put", "/capsules/{id}/network", put(capsules::set_network))
        .add("get", "/capsules/{id}/metrics", get(usage::capsule_metrics))
        .add("post", "/capsules/{id}/exec", post(exec::exec))
        .add("get", "/capsules/{id}/exec/stream", get(ws::exec_stream))
        .add("get", "/capsules/{id}/processes", get(exec::list_processes))
        .add(
            "delete",
            "/capsules/{id}/processes/{selector}",
            delete(exec::kill_process),
        )
        .add(
            "get",
            "/capsules/{id}/processes/{selector}/stream",
            get(ws::attach),
        )
        .add("post", "/capsules/{id}/files/write", post(files::write))
        .add("post", "/capsules/{id}/files/read", post(files::read))
        .add("post", "/capsules/{id}/files/list", post(files::list))
        .add("post", "/capsules/{id}/files/mkdir", post(files::mkdir))
        .add("post", "/capsules/{id}/files/remove", post(files::remove))
        .add(
            "post",
            "/capsules/{id}/files/stream/write",
            post(files::stream_write),
        )
        .add(
            "post",
            "/capsules/{id}/files/stream/read",
            post(files::stream_read),
        )
        .add("get", "/capsules/{id}/pty", get(pty::pty))
        .add("post", "/snapshots", post(snapshots::create))
        .add("get", "/snapshots", get(snapshots::list))
        .add("delete", "/snapshots/{name}", delete(snapshots::delete))
        .add("get", "/events/stream", get(sse::stream))
        .add(
            "post",
            "/admin/templates/builds",
            post(builds::create).layer(DefaultBodyLimit::max(builds::BUILD_BODY_LIMIT)),
        )
        .add("get", "/admin/templates/builds", get(builds::list))
        .add("get", "/admin/templates/builds/{id}", get(builds::get))
        .add(
            "post",
            "/admin/templates/builds/{id}/cancel",
            post(builds::cancel),
        )
        .add(
            "get",
            "/admin/templates/builds/{id}/logs",
            get(builds::logs),
        )
        .add("get", "/admin/templates", get(builds::list_templates))
        .add(
            "delete",
            "/admin/templates/{name}",
            delete(builds::delete_template),
        )
        .add("post", "/sessions", post(sessions::create))
        .add("get", "/sessions", get(sessions::show))
        .add("delete", "/sessions", delete(sessions::delete))
        .add("post", "/teams", post(teams::create))
        .add("get", "/teams", get(teams::list))
        .add("delete", "/teams/{name}", delete(teams::delete))
        .add("get", "/teams/{name}/keys", get(teams::list_keys))
        .add("post", "/teams/{name}/keys", post(teams::create_key))
        .add(
            "delete",
            "/teams/{name}/keys/{key_id}",
            delete(teams::delete_key),
        )
}

/// Every route the router serves (the `/v1` ones once, without the `/api` alias).
pub fn routes() -> Vec<RouteSpec> {
    let mut all: Vec<RouteSpec> = v1_routes()
        .routes
        .into_iter()
        .map(|r| RouteSpec {
            method: r.method,
            path: format!("/v1{}", r.path),
        })
        .collect();
    for (m, p) in SYSTEM_ROUTES {
        all.push(RouteSpec {
            method: m,
            path: (*p).to_owned(),
        });
    }
    all.sort();
    all
}

const SYSTEM_ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", "/openapi.yaml"),
    ("get", "/docs"),
];

/// The whole application router.
pub fn router(state: AppState) -> Router {
    let v1 = v1_routes().router;
    Router::new()
        .route("/health", get(system::health))
        .route("/metrics", get(system::metrics))
        .route("/openapi.yaml", get(system::openapi))
        .route("/docs", get(system::docs))
        .nest("/v1", v1.clone())
        .nest("/api/v1", v1)
        .merge(crate::e2b::sandboxes::router())
        .route_layer(middleware::from_fn_with_state(state.clone(), observe))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn(json_errors))
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn_with_state(
            state.clone(),
            proxy::port_proxy,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::e2b::dataplane::data_plane,
        ))
        .with_state(state)
}

async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let resp = next.run(req).await;
    state
        .telemetry
        .observe_request(&method, &route, resp.status().as_u16(), started.elapsed());
    resp
}

/// Longest original error text kept in a rewritten error's message.
const MAX_REWRITTEN_MESSAGE: usize = 512;

/// Gives every error answer the contract's JSON shape: an answer of status >= 400 whose body
/// is not JSON (the rejections of axum's and tower's own extractors and layers, such as a body
/// over the limit) is replaced by `{"error":{"code","message"}}`, its text kept as the message.
async fn json_errors(req: Request, next: Next) -> Response {
    let mut resp = errors_as_json(next.run(req).await).await;
    if resp.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        // The request body was refused unread, so the connection cannot carry another request:
        // say so, or a client reuses it and its next request fails as the server closes it.
        resp.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    resp
}

/// An error answer whose body is not JSON, rewritten in the contract's shape.
async fn errors_as_json(resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let text = match axum::body::to_bytes(resp.into_body(), MAX_REWRITTEN_MESSAGE * 4).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let mut message: String = text.chars().take(MAX_REWRITTEN_MESSAGE).collect();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_owned();
    }
    ApiError::new(status, code_for_status(status), message).into_response()
}

/// The contract's error code for an HTTP status (used when only the status is known).
pub fn code_for_status(status: axum::http::StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        413 | 414 | 431 => "too_large",
        429 => "too_many_requests",
        502 | 504 => "agent_error",
        503 => "host_unavailable",
        400..=499 => "invalid_request",
        _ => "internal_error",
    }
}

async fn not_found(req: Request) -> Response {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request",
        format!(
            "method {} not allowed on {}",
            req.method(),
            req.uri().path()
        ),
    )
    .into_response()
}
