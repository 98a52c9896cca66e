//! Errors of the host agent.

use std::path::PathBuf;

use wrenn_host::HostError;

/// What can go wrong in the capsule manager.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No capsule with this id.
    #[error("capsule {0} not found")]
    CapsuleNotFound(String),
    /// No template with this name.
    #[error("template {0} not found")]
    TemplateNotFound(String),
    /// A capsule with this id exists already.
    #[error("capsule {0} exists already")]
    CapsuleExists(String),
    /// A template with this name exists already.
    #[error("template {0} exists already")]
    TemplateExists(String),
    /// The capsule's status does not allow the operation.
    #[error("capsule {id} is {status}; {op} needs it {needs}")]
    InvalidState {
        /// Capsule id.
        id: String,
        /// Its current status.
        status: String,
        /// The operation asked for.
        op: &'static str,
        /// The status it needs.
        needs: &'static str,
    },
    /// Bad parameters.
    #[error("{0}")]
    InvalidRequest(String),
    /// Not enough host memory or vCPUs.
    #[error("{0}")]
    Capacity(String),
    /// A snapshot on disk cannot be restored.
    #[error("snapshot {path} cannot be restored: {reason}")]
    BadSnapshot {
        /// Snapshot directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// File system error on a named path.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The VMM failed.
    #[error(transparent)]
    Vmm(#[from] wrenn_vmm::VmmError),
    /// Building images failed.
    #[error(transparent)]
    Images(#[from] wrenn_images::ImageError),
    /// The guest agent failed.
    #[error(transparent)]
    Envd(#[from] wrenn_envd_client::EnvdError),
    /// Capsule networking failed.
    #[error(transparent)]
    Net(#[from] wrenn_net::NetError),
    /// A task of the agent died, or a manifest could not be serialised.
    #[error("{0}")]
    Tool(String),
}

impl AgentError {
    /// Wraps an I/O error with what was done and where.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| AgentError::Io { what, path, source }
    }
}

impl From<AgentError> for HostError {
    fn from(e: AgentError) -> Self {
        match e {
            AgentError::CapsuleNotFound(id) => HostError::NotFound(format!("capsule {id}")),
            AgentError::TemplateNotFound(n) => HostError::NotFound(format!("template {n}")),
            AgentError::CapsuleExists(_) | AgentError::TemplateExists(_) => {
                HostError::Conflict(e.to_string())
            }
            AgentError::InvalidState { .. } => HostError::InvalidState(e.to_string()),
            AgentError::InvalidRequest(m) => HostError::InvalidRequest(m),
            AgentError::Capacity(m) => HostError::Capacity(m),
            AgentError::Net(wrenn_net::NetError::Exhausted { .. }) => {
                HostError::Capacity(e.to_string())
            }
            AgentError::Envd(err) => HostError::Agent(err.to_string()),
            other => HostError::Internal(other.to_string()),
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;
