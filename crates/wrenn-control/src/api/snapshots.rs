//! Snapshot templates: team-scoped names mapped to unique host template names.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use wrenn_host::HostError;

use super::extract::{ApiJson, ApiQuery, Params};
use super::views;
use crate::auth::Auth;
use crate::error::ApiError;
use crate::events::EventBody;
use crate::ids;
use crate::state::AppState;
use crate::store::TemplateRow;

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
    if !ids::is_capsule_id(&body.sandbox_id) {
        return Err(ApiError::invalid(format!(
            "malformed capsule id {:?}",
            body.sandbox_id
        )));
    }
    let name = body.name.unwrap_or_else(ids::new_snapshot_name);
    if !ids::is_template_name(&name) {
        return Err(ApiError::invalid(format!(
            "invalid snapshot name {name:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{{0,63}}$"
        )));
    }
    let overwrite = q.overwrite.unwrap_or(false);
    let row = state.team_capsule(&auth, &body.sandbox_id).await?;
    let base = state.host.templates().await?;
    if base.iter().any(|t| views::is_base(t) && t.name == name) {
        return Err(ApiError::conflict(format!(
            "{name} is a base template name"
        )));
    }
    let existing = state.store.template(&auth.team_id, &name).await?;
    if existing.is_some() && !overwrite {
        return Err(ApiError::conflict(format!(
            "snapshot {name} exists; pass overwrite=true to replace it"
        )));
    }
    if !state
        .store
        .transition(&row.id, "running", "snapshotting")
        .await?
    {
        let now = state.reload(&row).await?;
        return Err(ApiError::invalid_state(format!(
            "capsule {} is {}, not running",
            row.id, now.status
        )));
    }
    state.state_changed(&row, "running", "snapshotting");
    let host_name = ids::new_host_template_name();
    let made = state.host.snapshot(&row.id, &host_name, false).await;
    let snap_row = state.reload(&row).await?;
    let result = match made {
        Ok(info) => {
            state.set_status(&snap_row, "running", None).await?;
            let t = TemplateRow {
                team_id: auth.team_id.clone(),
                name: name.clone(),
                host_name,
                vcpus: i64::from(info.vcpus),
                memory_mb: i64::from(info.memory_mb),
                size_bytes: i64::try_from(info.size_bytes).unwrap_or(i64::MAX),
                created_at: crate::store::now_ms(),
            };
            state.store.upsert_template(&t).await?;
            if let Some(old) = existing {
                match state.host.delete_template(&old.host_name).await {
                    Ok(()) | Err(HostError::NotFound(_)) => {}
                    Err(e) => {
                        tracing::warn!(template = %old.host_name, error = %e, "could not delete replaced snapshot")
                    }
                }
            }
            Ok(t)
        }
        Err(e) => {
            let status = match state.host.get(&row.id).await {
                Ok(info) => views::host_status(info.status),
                Err(_) => "error",
            };
            state.set_status(&snap_row, status, None).await?;
            Err(ApiError::from(e))
        }
    };
    state.events.emit(
        &auth.team_id,
        &auth.actor,
        EventBody {
            event: "template.snapshot.create",
            outcome: Some(if result.is_ok() { "success" } else { "error" }),
            resource_id: name.clone(),
            resource_type: "template",
            metadata: vec![("sandbox_id", row.id.clone())],
            error: result.as_ref().err().map(|e| e.message.clone()),
            sandbox: None,
        },
    );
    let t = result?;
    Ok((StatusCode::CREATED, Json(views::snapshot_template(&t))).into_response())
}

/// `GET /v1/snapshots`.
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let (bases, snaps) = match q.kind.as_deref() {
        None => (true, true),
        Some("base") => (true, false),
        Some("snapshot") => (false, true),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "type must be base or snapshot, not {other:?}"
            )))
        }
    };
    let mut out = Vec::new();
    if bases {
        for t in state
            .host
            .templates()
            .await?
            .iter()
            .filter(|t| views::is_base(t))
        {
            out.push(views::base_template(t));
        }
    }
    if snaps {
        for t in state.store.list_templates(&auth.team_id).await? {
            out.push(views::snapshot_template(&t));
        }
    }
    Ok(Json(Value::Array(out)))
}

/// `DELETE /v1/snapshots/{name}`.
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let name = params.get("name")?;
    if !ids::is_template_name(name) {
        return Err(ApiError::invalid(format!("invalid snapshot name {name:?}")));
    }
    let Some(t) = state.store.template(&auth.team_id, name).await? else {
        let base = state.host.templates().await?;
        if base.iter().any(|t| views::is_base(t) && t.name == name) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{name} is a protected base template"),
            ));
        }
        return Err(ApiError::not_found(format!("snapshot {name} not found")));
    };
    match state.host.delete_template(&t.host_name).await {
        Ok(()) | Err(HostError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    state.store.delete_template(&auth.team_id, name).await?;
    state.events.emit(
        &auth.team_id,
        &auth.actor,
        EventBody {
            event: "template.snapshot.delete",
            outcome: Some("success"),
            resource_id: name.to_owned(),
            resource_type: "template",
            ..Default::default()
        },
    );
    Ok(StatusCode::NO_CONTENT)
}
