//! Admin routes: teams and their API keys. Only keys of the admin team may call them
//! (403 `forbidden` otherwise); the rules live in [`crate::keys`], shared with the CLI.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::extract::{ApiJson, Params};
use crate::api::error::ApiError;
use crate::auth::AdminAuth;
use crate::keys;
use crate::state::AppState;
use crate::store::{KeyInfo, Team};

/// Body of `POST /v1/teams`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    name: String,
}

/// Body of `POST /v1/teams/{name}/keys`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    name: Option<String>,
}

fn team_view(t: &Team) -> Value {
    json!({"id": t.id, "name": t.name, "created_at": super::views::rfc3339(t.created_at)})
}

fn key_view(k: &KeyInfo) -> Value {
    json!({
        "id": k.id,
        "team_id": k.team_id,
        "name": k.name,
        "prefix": k.prefix,
        "created_at": k.created_at,
        "last_used_at": k.last_used_at,
    })
}

/// `POST /v1/teams`: 201 team; 409 `conflict` when the name is taken.
pub async fn create(
    State(state): State<AppState>,
    AdminAuth(auth): AdminAuth,
    ApiJson(body): ApiJson<CreateTeam>,
) -> Result<Response, ApiError> {
    let team = keys::create_team(&state.store, &body.name).await?;
    tracing::info!(team = %team.name, by = %auth.actor.id, "team created");
    Ok((StatusCode::CREATED, Json(team_view(&team))).into_response())
}

/// `GET /v1/teams`.
pub async fn list(State(state): State<AppState>, _: AdminAuth) -> Result<Json<Value>, ApiError> {
    let teams = keys::list_teams(&state.store).await?;
    Ok(Json(Value::Array(teams.iter().map(team_view).collect())))
}

/// `DELETE /v1/teams/{name}`: 204; 409 `conflict` while it has capsules or snapshots.
pub async fn delete(
    State(state): State<AppState>,
    AdminAuth(auth): AdminAuth,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let name = params.get("name")?;
    keys::remove_team(&state.store, name).await?;
    tracing::info!(team = %name, by = %auth.actor.id, "team removed");
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/teams/{name}/keys`: the team's keys (prefixes only).
pub async fn list_keys(
    State(state): State<AppState>,
    _: AdminAuth,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let keys = keys::existing_team_keys(&state.store, params.get("name")?).await?;
    Ok(Json(Value::Array(keys.iter().map(key_view).collect())))
}

/// `POST /v1/teams/{name}/keys`: 201 with the plain key in `key`, shown only this once.
pub async fn create_key(
    State(state): State<AppState>,
    _: AdminAuth,
    params: Params,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let body: CreateKey = super::capsules::optional_json(&body)?;
    let name = body.name.unwrap_or_else(|| "api".into());
    let (info, key) = keys::create_team_key(&state.store, params.get("name")?, &name).await?;
    let mut view = key_view(&info);
    view["key"] = Value::String(key);
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `DELETE /v1/teams/{name}/keys/{key_id}`: 204; 404 when the team has no such key.
pub async fn delete_key(
    State(state): State<AppState>,
    _: AdminAuth,
    params: Params,
) -> Result<StatusCode, ApiError> {
    keys::remove_team_key(&state.store, params.get("name")?, params.get("key_id")?).await?;
    Ok(StatusCode::NO_CONTENT)
}
