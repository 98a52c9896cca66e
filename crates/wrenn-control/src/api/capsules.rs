//! Capsule routes: create, list, get, delete, pause, resume, ping, network policy.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use wrenn_host::{rules, NetworkPolicy};

use super::extract::{ApiJson, Params};
use super::views;
use crate::access::PortsMode;
use crate::api::error::ApiError;
use crate::auth::Auth;
use crate::core::lifecycle::{CreateSpec, OnTimeout};
use crate::core::status::CapsuleStatus;
use crate::ids;
use crate::state::AppState;

/// Body of `POST /v1/capsules`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    template: Option<String>,
    vcpus: Option<i64>,
    memory_mb: Option<i64>,
    timeout_sec: Option<i64>,
    metadata: Option<BTreeMap<String, String>>,
    /// Extension: egress policy.
    network: Option<NetworkPolicy>,
    /// Extension: access mode of port URLs.
    ports: Option<PortsMode>,
}

const RESERVED_METADATA: &[&str] = &[
    "kernel_version",
    "vmm_version",
    "agent_version",
    "envd_version",
];

/// Parses an optional JSON body: empty is the default value.
pub fn optional_json<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))
}

fn validate(req: CreateRequest) -> Result<CreateSpec, ApiError> {
    let template = req.template.unwrap_or_else(|| "minimal".into());
    if !ids::is_template_name(&template) {
        return Err(ApiError::invalid(format!(
            "invalid template name {template:?}"
        )));
    }
    let vcpus = req.vcpus.unwrap_or(1);
    let memory_mb = req.memory_mb.unwrap_or(512);
    rules::check_shape(vcpus, memory_mb).map_err(ApiError::invalid)?;
    let timeout_sec = req.timeout_sec.unwrap_or(0);
    if !(0..=31_536_000).contains(&timeout_sec) {
        return Err(ApiError::invalid(
            "timeout_sec must be between 0 and 31536000",
        ));
    }
    let timeout_sec = if timeout_sec > 0 && timeout_sec < 60 {
        60
    } else {
        timeout_sec
    };
    let metadata = req.metadata.unwrap_or_default();
    if metadata.len() > 20 {
        return Err(ApiError::invalid("metadata has more than 20 keys"));
    }
    for (k, v) in &metadata {
        if !ids::is_template_name(k) {
            return Err(ApiError::invalid(format!("invalid metadata key {k:?}")));
        }
        if RESERVED_METADATA.contains(&k.as_str()) {
            return Err(ApiError::invalid(format!("metadata key {k:?} is reserved")));
        }
        if v.chars().count() > 64 {
            return Err(ApiError::invalid(format!(
                "metadata value of {k:?} is longer than 64 characters"
            )));
        }
    }
    Ok(CreateSpec {
        template,
        vcpus: vcpus as u32,
        memory_mb: memory_mb as u32,
        timeout_sec: timeout_sec as u32,
        metadata,
        network: req.network.unwrap_or_default(),
        ports: req.ports.unwrap_or_default(),
        envs: BTreeMap::new(),
        on_timeout: OnTimeout::Pause,
    })
}

/// `POST /v1/capsules`.
pub async fn create(
    State(state): State<AppState>,
    auth: Auth,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: CreateRequest = optional_json(&body)?;
    let spec = validate(req)?;
    let created = state
        .create_capsule(&auth.team_id, &auth.actor, spec)
        .await?;
    let mut view = views::capsule(&created.row);
    if let Some(token) = created.access_token {
        view["access_token"] = Value::String(token);
    }
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /v1/capsules`.
pub async fn list(State(state): State<AppState>, auth: Auth) -> Result<Json<Value>, ApiError> {
    let rows = state.store.list_team_capsules(&auth.team_id).await?;
    Ok(Json(Value::Array(
        rows.iter().map(views::capsule).collect(),
    )))
}

/// `GET /v1/capsules/{id}`.
pub async fn get(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let row = state.team_capsule(&auth, params.capsule_id()?).await?;
    let live = state.live_network(&row).await;
    Ok(Json(views::capsule_with_network(&row, live.as_ref())))
}

/// `PUT /v1/capsules/{id}/network`: replaces the egress policy (`{}` allows all egress).
pub async fn set_network(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    ApiJson(policy): ApiJson<NetworkPolicy>,
) -> Result<Json<Value>, ApiError> {
    let row = state.team_capsule(&auth, params.capsule_id()?).await?;
    let row = state.set_network(&row, policy).await?;
    Ok(Json(views::capsule(&row)))
}

/// `DELETE /v1/capsules/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let row = state.team_capsule(&auth, params.capsule_id()?).await?;
    state.destroy_capsule(&row, &auth.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/capsules/{id}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let row = state.team_capsule(&auth, params.capsule_id()?).await?;
    let row = state.pause_capsule(&row, &auth.actor).await?;
    Ok(Json(views::capsule(&row)))
}

/// `POST /v1/capsules/{id}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let row = state.team_capsule(&auth, params.capsule_id()?).await?;
    let row = state.resume_capsule(&row, &auth.actor).await?;
    Ok(Json(views::capsule(&row)))
}

/// `POST /v1/capsules/{id}/ping`: resets the inactivity timer.
pub async fn ping(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
) -> Result<StatusCode, ApiError> {
    let row = state.team_capsule(&auth, params.capsule_id()?).await?;
    if row.status == CapsuleStatus::Stopped {
        return Err(ApiError::invalid_state(format!(
            "capsule {} is stopped",
            row.id
        )));
    }
    state.activity.touch(&row.id).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ttl_floor() {
        let s = validate(CreateRequest::default()).unwrap();
        assert_eq!(
            (s.template.as_str(), s.vcpus, s.memory_mb, s.timeout_sec),
            ("minimal", 1, 512, 0)
        );
        let s = validate(CreateRequest {
            timeout_sec: Some(5),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.timeout_sec, 60);
        let s = validate(CreateRequest {
            timeout_sec: Some(61),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(s.timeout_sec, 61);
    }

    #[test]
    fn rejects_bad_values() {
        assert!(validate(CreateRequest {
            vcpus: Some(0),
            ..Default::default()
        })
        .is_err());
        assert!(validate(CreateRequest {
            memory_mb: Some(1),
            ..Default::default()
        })
        .is_err());
        assert!(validate(CreateRequest {
            timeout_sec: Some(-1),
            ..Default::default()
        })
        .is_err());
        assert!(validate(CreateRequest {
            template: Some("../x".into()),
            ..Default::default()
        })
        .is_err());
        let meta = [("kernel_version".to_string(), "x".to_string())]
            .into_iter()
            .collect();
        assert!(validate(CreateRequest {
            metadata: Some(meta),
            ..Default::default()
        })
        .is_err());
    }
}
