//! Extractors whose rejections are contract JSON errors, and the lookups every capsule route
//! starts with.

use std::collections::HashMap;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use wrenn_envd_client::EnvdClient;

use crate::api::error::ApiError;
use crate::auth::Auth;
use crate::ids;
use crate::state::AppState;
use crate::store::CapsuleRow;

/// A JSON body; malformed or mistyped bodies are 400, oversized 413.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large("request body too large")
    } else {
        ApiError::invalid(e.body_text())
    }
}

/// A query string; bad values are 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    ApiError::invalid(e.body_text())
}

/// Path parameters by name (percent-decoded).
pub struct Params(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::invalid(e.body_text()))?;
        Ok(Params(
            raw.iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ))
    }
}

impl Params {
    /// A parameter that the route always has.
    pub fn get(&self, name: &str) -> Result<&str, ApiError> {
        self.0
            .get(name)
            .map(String::as_str)
            .ok_or_else(|| ApiError::invalid(format!("missing path parameter {name}")))
    }

    /// The `{id}` parameter, checked to be a well-formed capsule id.
    pub fn capsule_id(&self) -> Result<&str, ApiError> {
        let id = self.get("id")?;
        if ids::is_capsule_id(id) {
            Ok(id)
        } else {
            Err(ApiError::invalid(format!(
                "malformed capsule id {id:?}: expected cl- and 25 chars of [0-9a-z]"
            )))
        }
    }
}

impl AppState {
    /// The caller's capsule `id` (404 for unknown ids and other teams' capsules).
    pub async fn team_capsule(&self, auth: &Auth, id: &str) -> Result<CapsuleRow, ApiError> {
        self.store
            .team_capsule(&auth.team_id, id)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("capsule {id} not found")))
    }

    /// The caller's running capsule and its guest client; 409 `invalid_state` unless running.
    /// Records activity.
    pub async fn running_guest(
        &self,
        auth: &Auth,
        id: &str,
    ) -> Result<(CapsuleRow, EnvdClient), ApiError> {
        let row = self.team_capsule(auth, id).await?;
        if row.status != crate::core::status::CapsuleStatus::Running {
            return Err(ApiError::invalid_state(format!(
                "capsule {id} is {}, not running",
                row.status
            )));
        }
        let client = EnvdClient::over(self.host.guest(id).await?);
        self.activity.touch(id).await;
        Ok((row, client))
    }
}

/// Checks a guest path from a client: absolute, no NUL bytes, not empty.
pub fn guest_path(path: &str) -> Result<&str, ApiError> {
    if path.is_empty() {
        return Err(ApiError::invalid("path must not be empty"));
    }
    if path.contains('\0') {
        return Err(ApiError::invalid("path must not contain NUL bytes"));
    }
    if !path.starts_with('/') {
        return Err(ApiError::invalid(format!("path {path:?} must be absolute")));
    }
    if path.len() > 4096 {
        return Err(ApiError::invalid("path longer than 4096 bytes"));
    }
    Ok(path)
}
