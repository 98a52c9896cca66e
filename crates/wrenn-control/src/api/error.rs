//! The contract's JSON error shape for HTTP answers, and how every error of the core, the
//! store, the host and the guest maps to a status and a code. The one home of that mapping.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use wrenn_host::HostError;

use crate::core::builds::context::ContextError;
use crate::core::error::{
    AdmissionError, BuildError, CreateError, DeleteSnapshotError, DestroyError, ListTemplatesError,
    LookupError, NetworkError, SnapshotError, TransitionError,
};
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

impl From<LookupError> for ApiError {
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::NotFound(_) => ApiError::not_found(e.to_string()),
            LookupError::Store(s) => s.into(),
        }
    }
}

impl From<AdmissionError> for ApiError {
    fn from(e: AdmissionError) -> Self {
        match e {
            AdmissionError::Busy | AdmissionError::NoRoom(_) => {
                ApiError::unavailable(e.to_string())
            }
            AdmissionError::Host(h) => h.into(),
        }
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> Self {
        match e {
            CreateError::InvalidPolicy(_) => ApiError::invalid(e.to_string()),
            CreateError::TemplateNotFound(_) => ApiError::not_found(e.to_string()),
            CreateError::TemplateBuilding { .. }
            | CreateError::TemplateBuildFailed { .. }
            | CreateError::FirstUseBuild { .. } => ApiError::unavailable(e.to_string()),
            CreateError::Admission(a) => a.into(),
            CreateError::Overtaken { .. } => ApiError::invalid_state(e.to_string()),
            CreateError::Timeout(_) => ApiError::unavailable(e.to_string()),
            CreateError::Host(h) => h.into(),
            CreateError::Store(s) => s.into(),
            CreateError::Task(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        match e {
            TransitionError::InvalidState { .. } | TransitionError::Dead { .. } => {
                ApiError::invalid_state(e.to_string())
            }
            TransitionError::Timeout { .. } | TransitionError::Task(_) => {
                ApiError::internal(e.to_string())
            }
            TransitionError::Host(h) => h.into(),
            TransitionError::Lookup(l) => l.into(),
            TransitionError::Store(s) => s.into(),
        }
    }
}

impl From<DestroyError> for ApiError {
    fn from(e: DestroyError) -> Self {
        match e {
            DestroyError::Host(h) => h.into(),
            DestroyError::Lookup(l) => l.into(),
            DestroyError::Store(s) => s.into(),
            DestroyError::Task(_) => ApiError::internal(e.to_string()),
            DestroyError::NoLongerIdle(_) => ApiError::invalid_state(e.to_string()),
        }
    }
}

impl From<NetworkError> for ApiError {
    fn from(e: NetworkError) -> Self {
        match e {
            NetworkError::InvalidPolicy(_) => ApiError::invalid(e.to_string()),
            NetworkError::InvalidState { .. } => ApiError::invalid_state(e.to_string()),
            NetworkError::Timeout { .. } => ApiError::unavailable(e.to_string()),
            NetworkError::Host(h) => h.into(),
            NetworkError::Lookup(l) => l.into(),
            NetworkError::Store(s) => s.into(),
        }
    }
}

impl From<BuildError> for ApiError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::InvalidName(_)
            | BuildError::NoRecipe(_)
            | BuildError::Recipe(_)
            | BuildError::InvalidShape(_)
            | BuildError::BaseNotFound(_) => ApiError::invalid(e.to_string()),
            BuildError::Context(ContextError::TooLarge(_)) => ApiError::too_large(e.to_string()),
            BuildError::Context(_) => ApiError::invalid(e.to_string()),
            BuildError::BaseName(_) | BuildError::Busy(_) => ApiError::conflict(e.to_string()),
            BuildError::NotFound(_) | BuildError::TemplateNotFound(_) => {
                ApiError::not_found(e.to_string())
            }
            BuildError::Ended { .. } => ApiError::invalid_state(e.to_string()),
            BuildError::Host(h) => h.into(),
            BuildError::Store(s) => s.into(),
            BuildError::Internal(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<SnapshotError> for ApiError {
    fn from(e: SnapshotError) -> Self {
        match e {
            SnapshotError::InvalidId(_) | SnapshotError::InvalidName(_) => {
                ApiError::invalid(e.to_string())
            }
            SnapshotError::BaseName(_) | SnapshotError::Exists(_) => {
                ApiError::conflict(e.to_string())
            }
            SnapshotError::NotRunning { .. } => ApiError::invalid_state(e.to_string()),
            SnapshotError::Host(h) => h.into(),
            SnapshotError::Lookup(l) => l.into(),
            SnapshotError::Store(s) => s.into(),
            SnapshotError::Task(_) => ApiError::internal(e.to_string()),
        }
    }
}

impl From<DeleteSnapshotError> for ApiError {
    fn from(e: DeleteSnapshotError) -> Self {
        match e {
            DeleteSnapshotError::InvalidName(_) => ApiError::invalid(e.to_string()),
            DeleteSnapshotError::Protected(_) => ApiError::forbidden(e.to_string()),
            DeleteSnapshotError::NotFound(_) => ApiError::not_found(e.to_string()),
            DeleteSnapshotError::Host(h) => h.into(),
            DeleteSnapshotError::Store(s) => s.into(),
        }
    }
}

impl From<ListTemplatesError> for ApiError {
    fn from(e: ListTemplatesError) -> Self {
        match e {
            ListTemplatesError::Host(h) => h.into(),
            ListTemplatesError::Store(s) => s.into(),
        }
    }
}
