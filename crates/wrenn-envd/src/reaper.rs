//! The one place that calls `waitpid`: a SIGCHLD-driven loop that reaps every child (and, as
//! PID 1 or subreaper, every orphan) and hands exit codes of envd's own children to waiters.
//!
//! Children must be started through [`spawn`], which holds the table lock across the fork so
//! the loop cannot reap a child before its waiter is registered.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

type Table = HashMap<i32, oneshot::Sender<i32>>;

fn table() -> &'static Mutex<Table> {
    static TABLE: OnceLock<Mutex<Table>> = OnceLock::new();
    TABLE.get_or_init(Mutex::default)
}

/// Exit code of a child: its status, or `128 + signal`.
pub type ExitRx = oneshot::Receiver<i32>;

/// Spawns `cmd` and registers it; the receiver yields its exit code.
pub fn spawn(cmd: &mut Command) -> std::io::Result<(Child, ExitRx)> {
    register(|| {
        let child = cmd.spawn()?;
        let pid = child.id();
        Ok((child, pid))
    })
}

/// Runs `start`, which starts a child and returns it with its pid, and registers the pid;
/// the receiver yields its exit code. The table stays locked meanwhile, so the loop cannot
/// reap the child before its waiter is there.
pub fn register<C>(
    start: impl FnOnce() -> std::io::Result<(C, u32)>,
) -> std::io::Result<(C, ExitRx)> {
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    let (child, pid) = start()?;
    let (tx, rx) = oneshot::channel();
    t.insert(pid as i32, tx);
    Ok((child, rx))
}

/// Starts the reaping loop (call once, inside the runtime).
pub fn start() {
    tokio::spawn(async {
        let mut sig = match signal(SignalKind::child()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!("cannot watch SIGCHLD ({e}); reaping by polling");
                None
            }
        };
        loop {
            reap_all();
            match sig.as_mut() {
                Some(s) => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), s.recv()).await;
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
}

/// Reaps every exited child now.
fn reap_all() {
    let mut t = table().lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let (pid, code) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid, code),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!("waitpid: {e}");
                return;
            }
        };
        match t.remove(&pid.as_raw()) {
            Some(tx) => {
                let _ = tx.send(code);
            }
            None => tracing::debug!(pid = pid.as_raw(), code, "reaped orphan"),
        }
    }
}
