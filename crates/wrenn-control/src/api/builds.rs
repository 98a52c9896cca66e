//! Admin routes of template builds and built templates (`/v1/admin/templates…`). Only keys of
//! the admin team may call them (403 `forbidden` otherwise); the templates they make are listed
//! by `GET /v1/snapshots?type=base` for every team.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{ApiJson, Params};
use super::views::{self, rfc3339};
use crate::api::error::ApiError;
use crate::auth::AdminAuth;
use crate::core::builds::{context, BuildSpec};
use crate::state::AppState;
use crate::store::{BuildRow, LogRow};

/// Largest body of `POST /v1/admin/templates/builds`: the recipe and a base64 context archive.
pub const BUILD_BODY_LIMIT: usize = context::MAX_ARCHIVE_BYTES / 3 * 4 + 2 * 1024 * 1024;
/// Builds listed by `GET /v1/admin/templates/builds`.
const LIST_LIMIT: i64 = 100;

/// Body of `POST /v1/admin/templates/builds`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBuild {
    /// Template name.
    name: String,
    /// Recipe text; absent for a recipe Wrenn ships (`code-runner-beta`).
    recipe: Option<String>,
    vcpus: Option<u32>,
    memory_mb: Option<u32>,
    /// Base64 of a tar or tar.gz archive: the files `COPY` takes.
    context: Option<String>,
}

/// The build object.
pub fn build_view(b: &BuildRow) -> Value {
    json!({
        "id": b.id,
        "name": b.name,
        "status": b.status.as_str(),
        "base": b.base,
        "vcpus": b.vcpus,
        "memory_mb": b.memory_mb,
        "step": b.step,
        "steps": b.steps,
        "phase": b.phase,
        "capsule_id": b.capsule_id,
        "error": b.error,
        "created_at": rfc3339(b.created_at),
        "started_at": b.started_at.map(rfc3339),
        "finished_at": b.finished_at.map(rfc3339),
    })
}

fn log_view(r: &LogRow) -> Value {
    json!({"seq": r.seq, "at": rfc3339(r.at), "step": r.step, "stream": r.stream, "text": r.text})
}

/// `POST /v1/admin/templates/builds`: 202 with the queued build.
pub async fn create(
    State(state): State<AppState>,
    AdminAuth(auth): AdminAuth,
    ApiJson(body): ApiJson<CreateBuild>,
) -> Result<Response, ApiError> {
    let context = match body.context {
        Some(b64) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| ApiError::invalid(format!("context is not base64: {e}")))?,
        ),
        None => None,
    };
    let spec = BuildSpec {
        name: body.name,
        recipe: body.recipe,
        vcpus: body.vcpus,
        memory_mb: body.memory_mb,
        context,
    };
    let row = state.start_build(&auth.team_id, &auth.actor, spec).await?;
    Ok((StatusCode::ACCEPTED, Json(build_view(&row))).into_response())
}

/// `GET /v1/admin/templates/builds`: the latest builds, newest first.
pub async fn list(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
) -> Result<Json<Value>, ApiError> {
    let rows = state.list_builds(LIST_LIMIT).await?;
    Ok(Json(Value::Array(rows.iter().map(build_view).collect())))
}

/// `GET /v1/admin/templates/builds/{id}`.
pub async fn get(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let row = state.build(params.get("id")?).await?;
    Ok(Json(build_view(&row)))
}

/// `POST /v1/admin/templates/builds/{id}/cancel`: 202; the build ends `cancelled` once it has
/// removed its capsule.
pub async fn cancel(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    params: Params,
) -> Result<Response, ApiError> {
    let row = state.cancel_build(params.get("id")?).await?;
    Ok((StatusCode::ACCEPTED, Json(build_view(&row))).into_response())
}

/// `GET /v1/admin/templates/builds/{id}/logs`: Server-Sent Events. Every log entry as a `log`
/// event (`id` = its sequence number; a `Last-Event-ID` header resumes after it), live while
/// the build runs, then one `end` event with the build object.
pub async fn logs(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    params: Params,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let id = params.get("id")?.to_owned();
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .unwrap_or(-1);
    let view = state.follow_build_log(&id).await?;
    let last_past = view.past.last().map_or(-1, |r| r.seq);
    let past = stream::iter(view.past.into_iter().filter(move |r| r.seq > after));
    let live = match view.live {
        Some(rx) => tokio_stream::wrappers::BroadcastStream::new(rx)
            .filter_map(move |m| async move {
                match m {
                    Ok(r) if r.seq > last_past && r.seq > after => Some(r),
                    Ok(_) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "build log follower lagged; entries skipped");
                        None
                    }
                }
            })
            .boxed(),
        None => stream::empty().boxed(),
    };
    let entries = past.chain(live).map(|r| {
        Ok(Event::default()
            .event("log")
            .id(r.seq.to_string())
            .data(log_view(&r).to_string()))
    });
    let end_state = state.clone();
    let end = stream::once(async move {
        let data = match end_state.build(&id).await {
            Ok(row) => build_view(&row),
            Err(e) => json!({"id": id, "error": e.to_string()}),
        };
        Ok(Event::default().event("end").data(data.to_string()))
    });
    let stream = entries.chain(end).take_until(Box::pin(state.stopped()));
    Ok(Sse::new(stream).keep_alive(
        KeepAlive::new()
            .interval(state.config.sse_keepalive)
            .text("keepalive"),
    ))
}

/// `GET /v1/admin/templates`: templates made by builds.
pub async fn list_templates(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
) -> Result<Json<Value>, ApiError> {
    let rows = state.built_templates().await?;
    Ok(Json(Value::Array(
        rows.iter().map(views::built_template).collect(),
    )))
}

/// `DELETE /v1/admin/templates/{name}`: 204; capsules made from it keep running.
pub async fn delete_template(
    State(state): State<AppState>,
    AdminAuth(_): AdminAuth,
    params: Params,
) -> Result<StatusCode, ApiError> {
    state.delete_built_template(params.get("name")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
