//! The error type of every image operation.

use std::path::PathBuf;

/// What went wrong while building or finding a guest image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A program this crate runs is not installed on the host.
    #[error("`{tool}` is not installed on this host (install the Debian package `{package}`)")]
    MissingTool {
        /// The program that was looked for, e.g. `mke2fs`.
        tool: String,
        /// The Debian package that provides it, e.g. `e2fsprogs`.
        package: String,
    },
    /// A program ran but reported failure.
    #[error("{what} failed: `{command}` exited with {status}{}", tail_of(.output))]
    CommandFailed {
        /// What the command was meant to do.
        what: String,
        /// The command line, for a person to re-run.
        command: String,
        /// Exit status as text.
        status: String,
        /// The last lines it printed.
        output: String,
    },
    /// A program could not be started at all.
    #[error("cannot run `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// Why it could not start.
        #[source]
        source: std::io::Error,
    },
    /// A file system operation failed.
    #[error("cannot {what} {}", .path.display())]
    Io {
        /// The operation, e.g. "write".
        what: &'static str,
        /// The file or directory it was done on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A Debian package does not have the shape this crate expects.
    #[error("package {package}: {problem}")]
    Package {
        /// Package name.
        package: String,
        /// What is missing or unexpected.
        problem: String,
    },
    /// A kernel module that the guest needs is neither a module nor built in.
    #[error("kernel {kernel}: module `{module}` is neither in the package nor built in")]
    ModuleNotFound {
        /// Kernel version.
        kernel: String,
        /// Module name.
        module: String,
    },
    /// A cached manifest could not be read or written.
    #[error("bad image manifest {}", .path.display())]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A cpio archive could not be parsed.
    #[error("malformed cpio archive: {0}")]
    Cpio(String),
}

fn tail_of(output: &str) -> String {
    if output.trim().is_empty() {
        String::new()
    } else {
        format!(":\n{}", output.trim_end())
    }
}

impl ImageError {
    /// Shorthand for [`ImageError::Io`].
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;
