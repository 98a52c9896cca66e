//! The error type of the VMM drivers.

use std::path::PathBuf;

use crate::qemu::qmp::QmpError;

/// Everything that can go wrong while driving a VMM.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    /// A file system operation on one of the VM's files failed.
    #[error("{op} {path}")]
    Io {
        /// What we were doing (`"creating"`, `"fsyncing"`, ...).
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The QEMU binary could not be started at all.
    #[error("starting {qemu}")]
    Spawn {
        /// The QEMU binary.
        qemu: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// QEMU exited with an error before the VM was up.
    #[error("qemu exited with {status} while starting the VM: {log}")]
    QemuFailed {
        /// Exit status of the QEMU launcher process.
        status: String,
        /// The tail of QEMU's own log (`qemu.log`).
        log: String,
    },
    /// QEMU did not finish starting in time.
    #[error("qemu did not finish starting within {secs} s")]
    StartTimeout {
        /// The limit that was hit.
        secs: u64,
    },
    /// A socket path would exceed the 107-byte limit of Unix socket addresses.
    #[error("socket path {0} is too long for a Unix socket (max 107 bytes); use a shorter capsule directory")]
    SocketPathTooLong(PathBuf),
    /// Talking to QEMU's monitor (QMP) failed.
    #[error("QMP {op}")]
    Qmp {
        /// The command or step that failed.
        op: String,
        /// The underlying error.
        #[source]
        source: QmpError,
    },
    /// The migration stream (save or restore of device state) failed.
    #[error("{op} device state {path}: migration status {status}{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
    Migration {
        /// `"saving"` or `"loading"`.
        op: &'static str,
        /// The state file.
        path: PathBuf,
        /// Final migration status reported by QEMU.
        status: String,
        /// QEMU's error description, if any.
        detail: Option<String>,
    },
    /// The saved device state file does not exist.
    #[error("device state file {0} does not exist")]
    StateMissing(PathBuf),
    /// No live QEMU process of this directory was found (pid file missing, process gone, or
    /// the pid now belongs to another process).
    #[error("no running qemu for {dir}: {reason}")]
    NotRunning {
        /// The VM directory.
        dir: PathBuf,
        /// Why it is considered not running.
        reason: String,
    },
    /// A live QEMU already runs for this directory.
    #[error("a qemu (pid {pid}) is already running for {dir}")]
    AlreadyRunning {
        /// The VM directory.
        dir: PathBuf,
        /// Its process id.
        pid: u32,
    },
    /// `WRENN_ACCEL` holds something other than `kvm` or `tcg`.
    #[error("WRENN_ACCEL={0:?} is not one of `kvm`, `tcg`")]
    BadAccelOverride(String),
    /// The QEMU process did not go away after SIGKILL.
    #[error("qemu process {pid} did not exit within {secs} s after SIGKILL")]
    KillTimeout {
        /// The process id.
        pid: u32,
        /// The limit that was hit.
        secs: u64,
    },
    /// Sending a signal to the QEMU process failed.
    #[error("sending SIGKILL to qemu process {pid}")]
    Signal {
        /// The process id.
        pid: u32,
        /// The underlying error.
        #[source]
        source: nix::Error,
    },
    /// Host facts needed to build the command line could not be determined.
    #[error("reading host TSC frequency: {0}")]
    Tsc(String),
    /// Making a guest disk failed.
    #[error("making disk {disk}: {reason}")]
    Disk {
        /// The disk to be made.
        disk: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Running `qemu --version` failed.
    #[error("querying the version of {qemu}: {reason}")]
    QemuVersion {
        /// The QEMU binary.
        qemu: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

impl VmmError {
    /// Shorthand for an [`VmmError::Io`] constructor usable in `map_err`.
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| VmmError::Io { op, path, source }
    }

    /// Shorthand for a [`VmmError::Qmp`] constructor usable in `map_err`.
    pub(crate) fn qmp(op: impl Into<String>) -> impl FnOnce(QmpError) -> Self {
        let op = op.into();
        move |source| VmmError::Qmp { op, source }
    }
}
