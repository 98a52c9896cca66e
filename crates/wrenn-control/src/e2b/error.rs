//! E2B's error body on its REST routes and on envd's HTTP routes: `{"code": <status>,
//! "message"}`. The status of each of our errors is decided once, by [`ApiError`]'s
//! conversions; this only changes the shape.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::error::ApiError;

/// An error answered in E2B's shape.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct E2bError {
    /// HTTP status (also the body's `code`).
    pub status: StatusCode,
    /// Human text.
    pub message: String,
    /// Send `Should-Retry: false` (failed creates: the SDK retries 429/502/503/504 creates,
    /// which would make duplicates).
    pub no_retry: bool,
}

impl E2bError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            no_retry: false,
        }
    }

    /// 400.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 for a sandbox id that names no capsule of the team.
    pub fn sandbox_not_found(sandbox_id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("sandbox {sandbox_id} was not found"),
        )
    }

    /// A feature this server does not have: 400 with a message that says so.
    pub fn unsupported(what: &str) -> Self {
        Self::invalid(format!("{what} is not supported by this server (Wrenn)"))
    }

    /// The error of a core, store, host or guest call, its status decided by [`ApiError`]'s
    /// conversions (the one home of that mapping).
    pub fn of(e: impl Into<ApiError>) -> Self {
        e.into().into()
    }

    /// The same error, marked not to be retried.
    pub fn final_answer(mut self) -> Self {
        self.no_retry = true;
        self
    }
}

impl From<ApiError> for E2bError {
    fn from(e: ApiError) -> Self {
        Self::new(e.status, e.message)
    }
}

impl From<crate::store::StoreError> for E2bError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for E2bError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.status.as_u16(), "message": self.message});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.no_retry {
            resp.headers_mut()
                .insert("should-retry", HeaderValue::from_static("false"));
        }
        resp
    }
}
