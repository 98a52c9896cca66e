//! Unauthenticated system routes: health, Prometheus metrics, the OpenAPI document, docs.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::api::error::ApiError;
use crate::state::AppState;

/// The OpenAPI 3 document of the public API.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// `GET /health`: 200 when the store answers.
pub async fn health(State(state): State<AppState>) -> Result<Response, ApiError> {
    state.store.ping().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "host_unavailable",
            format!("database: {e}"),
        )
    })?;
    Ok(Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})).into_response())
}

/// `GET /metrics`: Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.store.count_by_status().await {
        Ok(counts) => state.telemetry.set_capsule_counts(&counts),
        Err(e) => tracing::warn!(error = %e, "could not count capsules for metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.telemetry.encode(),
    )
        .into_response()
}

/// `GET /openapi.yaml`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `GET /docs`: the route list of the OpenAPI document as plain HTML (works offline).
pub async fn docs() -> Html<String> {
    let mut html = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Wrenn API</title>\
         <style>body{font-family:sans-serif;max-width:60em;margin:2em auto}code{background:#eee;padding:0 .3em}\
         td{padding:.2em .6em;vertical-align:top}.m{font-weight:bold;text-transform:uppercase}</style></head><body>\
         <h1>Wrenn API</h1><p>Machine-readable: <a href=\"/openapi.yaml\">/openapi.yaml</a>. \
         Every <code>/v1/…</code> route is also served under <code>/api/v1/…</code>. \
         Authenticate with the <code>X-API-Key</code> header.</p><table>",
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(OPENAPI_YAML).unwrap_or_default();
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_mapping()) {
        for (path, ops) in paths {
            let path = path.as_str().unwrap_or_default();
            if let Some(ops) = ops.as_mapping() {
                for (method, op) in ops {
                    let summary = op
                        .get("summary")
                        .and_then(|s| s.as_str())
                        .unwrap_or_default();
                    html.push_str(&format!(
                        "<tr><td class=\"m\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
                        escape(method.as_str().unwrap_or_default()),
                        escape(path),
                        escape(summary)
                    ));
                }
            }
        }
    }
    html.push_str("</table></body></html>");
    Html(html)
}
