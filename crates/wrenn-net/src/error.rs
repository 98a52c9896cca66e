//! Errors of host networking.

use std::path::PathBuf;

/// What can go wrong setting up, changing or removing a capsule's network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A tool (`ip`, `nft`) could not be started.
    #[error("running {tool}: {source}")]
    Spawn {
        /// The tool.
        tool: String,
        /// Why.
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        /// The command line, shortened.
        tool: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// A file of the allocator or a namespace could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// This agent holds as many capsule networks as it may (or the pool is used up).
    #[error("no capsule network free: the limit is {max} on this host")]
    Exhausted {
        /// The limit.
        max: u32,
    },
    /// The egress policy is not valid.
    #[error("{0}")]
    Policy(String),
}

impl NetError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> NetError {
        let path = path.into();
        move |source| NetError::Io { op, path, source }
    }
}

/// Result of this crate.
pub type Result<T, E = NetError> = std::result::Result<T, E>;
