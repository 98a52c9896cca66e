//! Knowing at once when a VMM process ends: a pidfd (Linux 5.3+) becomes readable when the
//! process exits, whoever ended it (a `kill -9`, a guest that powered off, a crash). A VMM is
//! daemonized and not our child, so waiting on it with waitpid is not possible.

use std::os::fd::{FromRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Resolves once a VMM process has ended. Made by [`crate::Vm::exit_watch`].
#[derive(Debug)]
pub struct ExitWatch {
    /// `None`: the process had ended already when the watch was made.
    fd: Option<AsyncFd<OwnedFd>>,
}

impl ExitWatch {
    /// A watch on the process `pid`; a process that is already gone (or whose pid now
    /// belongs to another process: `still_ours` checks that after the pidfd is open)
    /// resolves at once.
    pub fn new(pid: u32, still_ours: impl Fn() -> bool) -> ExitWatch {
        // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if raw < 0 {
            return ExitWatch { fd: None };
        }
        // SAFETY: `raw` is a fresh fd owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        // The pid may have been reused between our identity check and pidfd_open.
        if !still_ours() {
            return ExitWatch { fd: None };
        }
        // SAFETY: the OwnedFd is moved into the AsyncFd, stays open and is the same fd for
        // the AsyncFd's whole life.
        match unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) } {
            Ok(fd) => ExitWatch { fd: Some(fd) },
            Err(e) => {
                let (_, e) = e.into_parts();
                tracing::warn!(pid, error = %e, "cannot watch the VMM process; it counts as ended");
                ExitWatch { fd: None }
            }
        }
    }

    /// Waits until the process has ended.
    pub async fn ended(self) {
        if let Some(fd) = self.fd {
            // A pidfd is readable exactly when its process has terminated.
            let _ = fd.readable().await;
        }
    }
}
