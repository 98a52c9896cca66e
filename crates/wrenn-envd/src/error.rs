//! The error every API operation returns: an [`ErrorKind`] and a message naming what failed,
//! sent as a JSON [`EnvdErrorBody`].

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use wrenn_protocol::{EnvdErrorBody, ErrorKind};

/// An API error: kind plus human message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// Machine-readable kind.
    pub kind: ErrorKind,
    /// What failed.
    pub message: String,
}

/// Result of an API operation.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// `NotFound`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// `InvalidArgument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// `Internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    /// An I/O error while doing `what` (e.g. "open /etc/x"), kind from the OS error.
    pub fn io(what: impl std::fmt::Display, e: std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        if e.raw_os_error() == Some(libc::ELOOP) {
            // A symlink loop (or a path through too many links) is a bad path, not a failure
            // of envd.
            return Self::new(
                ErrorKind::InvalidArgument,
                format!("{what}: too many levels of symbolic links"),
            );
        }
        if matches!(
            e.raw_os_error(),
            Some(libc::ENXIO | libc::ENODEV | libc::EOPNOTSUPP)
        ) {
            // A socket, a device without a driver or a special file that cannot be opened
            // that way (e.g. /dev/fd/N of a socket): the path names nothing readable.
            return Self::new(
                ErrorKind::InvalidArgument,
                format!("{what}: not a file that can be opened this way ({e})"),
            );
        }
        if e.raw_os_error() == Some(libc::EBUSY) {
            // A mount point (renamed over, removed) or a file the kernel holds: the request
            // names something that cannot be changed that way, envd did not fail.
            return Self::new(
                ErrorKind::InvalidArgument,
                format!("{what}: busy (a mount point or in use by the kernel)"),
            );
        }
        if e.raw_os_error() == Some(libc::EROFS) {
            return Self::new(
                ErrorKind::PermissionDenied,
                format!("{what}: read-only file system"),
            );
        }
        let kind = match e.kind() {
            K::NotFound => ErrorKind::NotFound,
            K::PermissionDenied => ErrorKind::PermissionDenied,
            K::AlreadyExists => ErrorKind::AlreadyExists,
            K::IsADirectory => ErrorKind::IsADirectory,
            K::NotADirectory => ErrorKind::NotADirectory,
            K::InvalidInput | K::InvalidFilename => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        };
        Self::new(kind, format!("{what}: {e}"))
    }

    /// The JSON body.
    pub fn body(&self) -> EnvdErrorBody {
        EnvdErrorBody {
            kind: self.kind,
            message: self.message.clone(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::InvalidArgument | ErrorKind::IsADirectory | ErrorKind::NotADirectory => {
                StatusCode::BAD_REQUEST
            }
            ErrorKind::AlreadyExists => StatusCode::CONFLICT,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, axum::Json(self.body())).into_response()
    }
}
