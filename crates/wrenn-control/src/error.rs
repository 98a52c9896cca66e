//! The crate's library errors (of serving and startup). Errors answered to API clients are
//! [`crate::api::error::ApiError`].

use wrenn_host::HostError;

use crate::store::StoreError;

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
