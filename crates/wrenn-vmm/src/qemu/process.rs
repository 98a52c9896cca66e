//! Finding, identifying and ending the QEMU process of a VM directory.
//!
//! QEMU daemonizes and writes `<dir>/qemu.pid`. A pid alone is not proof: after a host
//! reboot or a long time it may belong to another process. A process counts as *our* QEMU
//! when its command line names this directory's QMP socket and, if we recorded it
//! (`<dir>/qemu.id`), its start time matches. A zombie counts as gone (the daemonized QEMU
//! is re-parented to PID 1, which may not reap it promptly).

use std::time::Duration;

use super::cmdline::VmFiles;
use crate::VmmError;

/// How long `kill` waits for the process to disappear.
pub const KILL_TIMEOUT: Duration = Duration::from_secs(30);

/// Identity of a live QEMU process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuProcess {
    /// Process id.
    pub pid: u32,
    /// Start time (clock ticks since boot, field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
}

/// State letter and start time of a process, from `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/<pid>/stat`: the comm field may contain spaces and parentheses, so split
/// after the last `)`.
fn parse_stat(text: &str) -> Option<(char, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

fn read_pid(files: &VmFiles) -> Result<u32, String> {
    let path = files.pid();
    let text =
        std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|_| format!("{} holds no pid: {:?}", path.display(), text.trim()))
}

/// Finds the live QEMU process of `files.dir`, checking its identity.
pub fn find(files: &VmFiles) -> Result<QemuProcess, VmmError> {
    let not_running = |reason: String| VmmError::NotRunning {
        dir: files.dir.clone(),
        reason,
    };
    let pid = read_pid(files).map_err(not_running)?;
    let (state, start_time) =
        proc_stat(pid).ok_or_else(|| not_running(format!("process {pid} is gone")))?;
    if state == 'Z' || state == 'X' {
        return Err(not_running(format!("process {pid} has exited")));
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let qmp = files.qmp();
    let needle = qmp.as_os_str().as_encoded_bytes();
    if !cmdline.windows(needle.len()).any(|w| w == needle) {
        return Err(not_running(format!(
            "process {pid} is not the qemu of this directory"
        )));
    }
    if let Ok(text) = std::fs::read_to_string(files.identity()) {
        let recorded: Vec<u64> = text
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
        if recorded.len() == 2 && (recorded[0] != u64::from(pid) || recorded[1] != start_time) {
            return Err(not_running(format!(
                "process {pid} is not the qemu that was started here (start time differs)"
            )));
        }
    }
    Ok(QemuProcess { pid, start_time })
}

/// Records the identity of a freshly started QEMU (crash-safe write).
pub fn record_identity(files: &VmFiles, p: QemuProcess) -> Result<(), VmmError> {
    let path = files.identity();
    wrenn_durable::write_atomic(&path, format!("{} {}\n", p.pid, p.start_time).as_bytes())
        .map_err(VmmError::io("writing", &path))
}

/// Reads the pid file once QEMU has daemonized and returns the process identity.
pub fn started(files: &VmFiles) -> Result<QemuProcess, VmmError> {
    let pid = read_pid(files).map_err(|reason| VmmError::NotRunning {
        dir: files.dir.clone(),
        reason,
    })?;
    let (_, start_time) = proc_stat(pid).ok_or_else(|| VmmError::NotRunning {
        dir: files.dir.clone(),
        reason: format!("qemu process {pid} exited right after starting"),
    })?;
    Ok(QemuProcess { pid, start_time })
}

/// Whether `p` is still the same live process.
pub fn same_alive(p: QemuProcess) -> bool {
    matches!(proc_stat(p.pid), Some((state, start)) if state != 'Z' && state != 'X' && start == p.start_time)
}

/// Sends SIGKILL to `p` (if it is still that process) and waits until it is gone.
pub async fn kill(p: QemuProcess) -> Result<(), VmmError> {
    if same_alive(p) {
        let pid = nix::unistd::Pid::from_raw(p.pid as i32);
        match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(source) => return Err(VmmError::Signal { pid: p.pid, source }),
        }
    }
    let deadline = tokio::time::Instant::now() + KILL_TIMEOUT;
    while same_alive(p) {
        if tokio::time::Instant::now() >= deadline {
            return Err(VmmError::KillTimeout {
                pid: p.pid,
                secs: KILL_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let s = "1234 (qemu (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 5 6 0 0 20 0 3 0 987654 1000 10 18446744073709551615";
        assert_eq!(parse_stat(s), Some(('S', 987654)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive() {
        assert!(matches!(
            proc_stat(std::process::id()),
            Some(('R' | 'S', _))
        ));
        assert_eq!(proc_stat(u32::MAX), None);
    }
}
