//! What envd does as the guest's PID 1 before serving: mount the kernel file systems, set the
//! host name and `PATH`, bring up loopback. Every step logs its failure and goes on.

use std::path::Path;

use nix::mount::{mount, MsFlags};

use crate::spawn::DEFAULT_PATH;

fn mount_fs(source: &str, target: &str, fstype: &str, flags: MsFlags, data: Option<&str>) {
    let _ = std::fs::create_dir_all(target);
    match mount(Some(source), target, Some(fstype), flags, data) {
        Ok(()) => {}
        Err(nix::errno::Errno::EBUSY) => {}
        Err(e) => tracing::warn!("mount {fstype} on {target}: {e}"),
    }
}

fn is_mounted(target: &str) -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(target))
}

/// Prepares the guest as its init.
pub fn setup() {
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if !is_mounted("/proc") {
        mount_fs("proc", "/proc", "proc", nosuid, None);
    }
    if !is_mounted("/sys") {
        mount_fs("sysfs", "/sys", "sysfs", nosuid, None);
    }
    if !is_mounted("/dev") {
        mount_fs(
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MsFlags::MS_NOSUID,
            Some("mode=0755"),
        );
    }
    if !is_mounted("/dev/pts") {
        mount_fs(
            "devpts",
            "/dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("ptmxmode=0666,mode=0620,gid=5"),
        );
    }
    if !Path::new("/dev/ptmx").exists() {
        let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        if std::fs::symlink_metadata(link).is_err() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
    if !is_mounted("/dev/shm") {
        mount_fs(
            "tmpfs",
            "/dev/shm",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        );
    }
    if !is_mounted("/tmp") {
        mount_fs(
            "tmpfs",
            "/tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777"),
        );
    }
    if !is_mounted("/run") {
        mount_fs(
            "tmpfs",
            "/run",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=0755"),
        );
    }
    let hostname = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    if let Err(e) = nix::unistd::sethostname(hostname.as_deref().unwrap_or("wrenn")) {
        tracing::warn!("set hostname: {e}");
    }
    crate::net::setup_at_boot();
    std::env::set_var("PATH", DEFAULT_PATH);
    tracing::info!("guest initialised");
}
