//! Snapshot template routes: parse, call the core, render.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use super::extract::{ApiJson, ApiQuery, Params};
use super::views;
use crate::api::error::ApiError;
use crate::auth::Auth;
use crate::core::snapshots::{SnapshotRequest, TemplateFilter};
use crate::state::AppState;

/// Body of `POST /v1/snapshots`; unknown fields are refused, as on capsule create.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    sandbox_id: String,
    name: Option<String>,
}

/// Query of `POST /v1/snapshots`.
#[derive(Debug, Deserialize)]
pub struct CreateQuery {
    overwrite: Option<bool>,
}

/// Query of `GET /v1/snapshots`.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
}

/// `POST /v1/snapshots`.
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<CreateQuery>,
    ApiJson(body): ApiJson<CreateBody>,
) -> Result<Response, ApiError> {
    let req = SnapshotRequest {
        capsule_id: body.sandbox_id,
        name: body.name,
        overwrite: q.overwrite.unwrap_or(false),
    };
    let t = state
        .create_snapshot(&auth.team_id, &auth.actor, req)
        .await?;
    Ok((StatusCode::CREATED, Json(views::snapshot_template(&t))).into_response())
}

/// `GET /v1/snapshots`.
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = match q.kind.as_deref() {
        None => TemplateFilter {
            base: true,
            snapshots: true,
        },
        Some("base") => TemplateFilter {
            base: true,
            snapshots: false,
        },
        Some("snapshot") => TemplateFilter {
            base: false,
            snapshots: true,
        },
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "type must be base or snapshot, not {other:?}"
            )))
        }
    };
    let found = state.templates(&auth.team_id, filter).await?;
    let out = found
        .base
        .iter()
        .map(views::base_template)
        .chain(found.built.iter().map(views::built_template))
        .chain(found.snapshots.iter().map(views::snapshot_template))
        .collect();
    Ok(Json(Value::Array(out)))
}

/// `DELETE /v1/snapshots/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let name = params.get("name")?;
    state
        .delete_snapshot(&auth.team_id, &auth.actor, name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
