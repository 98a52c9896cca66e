//! Errors: the contract's JSON error shape for HTTP answers, and the crate's library errors.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wrenn_host::HostError;

use crate::store::StoreError;

/// An error answered to an API client as `{"error":{"code","message"}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Contract error code (`invalid_request`, `not_found`…).
    pub code: &'static str,
    /// Human text.
    pub message: String,
}

impl ApiError {
    /// An error with the given status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    /// 401 `unauthorized`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    /// 404 `not_found`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 409 `invalid_state`.
    pub fn invalid_state(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "invalid_state", message)
    }
    /// 409 `conflict`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// 413 `too_large`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", message)
    }
    /// 429 `too_many_requests` (a per-key bound, such as open WebSockets, is reached).
    pub fn too_many(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
    }
    /// 403 `forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    /// 500 `internal_error`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", message)
    }
    /// 502 `agent_error`.
    pub fn agent(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "agent_error", message)
    }
    /// 503 `host_unavailable`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "host_unavailable", message)
    }
    /// The JSON body of this error.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "request failed");
        }
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store error");
        ApiError::internal(format!("store: {e}"))
    }
}

impl From<crate::keys::KeyError> for ApiError {
    fn from(e: crate::keys::KeyError) -> Self {
        use crate::keys::KeyError;
        match e {
            KeyError::Store(s) => s.into(),
            KeyError::WriteKeyFile { .. } => ApiError::internal(e.to_string()),
            KeyError::Invalid(m) => ApiError::invalid(m),
            KeyError::NotFound(m) => ApiError::not_found(m),
            KeyError::Conflict(m) => ApiError::conflict(m),
            KeyError::Forbidden(m) => ApiError::forbidden(m),
        }
    }
}

impl From<HostError> for ApiError {
    fn from(e: HostError) -> Self {
        match &e {
            HostError::NotFound(_) => ApiError::not_found(e.to_string()),
            HostError::InvalidState(_) => ApiError::invalid_state(e.to_string()),
            HostError::Conflict(_) => ApiError::conflict(e.to_string()),
            HostError::InvalidRequest(_) => ApiError::invalid(e.to_string()),
            HostError::Capacity(_) => ApiError::unavailable(e.to_string()),
            HostError::Agent(_) => ApiError::agent(e.to_string()),
            HostError::Internal(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<wrenn_envd_client::EnvdError> for ApiError {
    fn from(e: wrenn_envd_client::EnvdError) -> Self {
        envd_error(&e)
    }
}

/// Maps an envd error to the contract: guest-reported kinds keep their meaning.
fn envd_error(e: &wrenn_envd_client::EnvdError) -> ApiError {
    use wrenn_protocol::ErrorKind;
    match e {
        wrenn_envd_client::EnvdError::Guest(body) => match body.kind {
            ErrorKind::NotFound => ApiError::not_found(body.message.clone()),
            ErrorKind::InvalidArgument | ErrorKind::IsADirectory | ErrorKind::NotADirectory => {
                ApiError::invalid(body.message.clone())
            }
            ErrorKind::AlreadyExists => ApiError::conflict(body.message.clone()),
            ErrorKind::PermissionDenied => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", body.message.clone())
            }
            ErrorKind::Internal => ApiError::agent(body.message.clone()),
        },
        other => ApiError::agent(other.to_string()),
    }
}

/// Errors of [`crate::serve`].
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The listen address could not be bound.
    #[error("bind {addr}: {source}")]
    Bind {
        /// Address.
        addr: std::net::SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("serve: {0}")]
    Serve(std::io::Error),
    /// The store failed during startup.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The host failed during startup reconciliation.
    #[error("host: {0}")]
    Host(#[from] HostError),
}
