//! Choosing the accelerator: KVM only when it can really run our guest, else TCG.
//!
//! `/dev/kvm` existing (or even opening) is not enough: in nested or sandboxed setups KVM
//! may accept the VM but never run the guest. So we boot the given kernel and initramfs
//! under KVM with the console on a pipe and wait (at most [`PROBE_TIMEOUT`]) for the
//! kernel to reach userspace (`Run /init as init process`). The verdict is cached in a JSON
//! file keyed by kernel path + size and QEMU version. `WRENN_ACCEL=kvm|tcg` overrides all.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{fsutil, VmmError};

/// How long the KVM probe boot may take to reach userspace.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Environment variable that forces the accelerator.
pub const ACCEL_ENV: &str = "WRENN_ACCEL";

/// The CPU accelerator QEMU uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// Software emulation (QEMU's tiny code generator).
    Tcg,
}

impl Accel {
    /// `"kvm"` or `"tcg"`.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Cached {
    key: String,
    accel: Accel,
}

/// Decides between KVM and TCG (see the module docs). Errors only if QEMU cannot be run,
/// the override is invalid or the cache cannot be written.
pub async fn detect_accel(
    qemu: &Path,
    kernel: &Path,
    initrd: &Path,
    cache_file: &Path,
) -> Result<Accel, VmmError> {
    if let Ok(v) = std::env::var(ACCEL_ENV) {
        match v.trim() {
            "kvm" => return Ok(Accel::Kvm),
            "tcg" => return Ok(Accel::Tcg),
            "" => {}
            other => return Err(VmmError::BadAccelOverride(other.to_owned())),
        }
    }
    let size = std::fs::metadata(kernel)
        .map_err(VmmError::io("reading", kernel))?
        .len();
    let key = format!("{}|{size}|{}", kernel.display(), qemu_version(qemu).await?);
    if let Ok(text) = std::fs::read_to_string(cache_file) {
        if let Ok(c) = serde_json::from_str::<Cached>(&text) {
            if c.key == key {
                tracing::debug!(accel = %c.accel, "accelerator from cache");
                return Ok(c.accel);
            }
        }
    }
    let accel = if !kvm_opens() {
        tracing::info!("/dev/kvm cannot be opened: using TCG");
        Accel::Tcg
    } else if probe_kvm(qemu, kernel, initrd).await {
        tracing::info!("KVM probe boot reached userspace: using KVM");
        Accel::Kvm
    } else {
        tracing::info!("KVM probe boot did not reach userspace: using TCG");
        Accel::Tcg
    };
    if let Some(parent) = cache_file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(VmmError::io("creating", parent))?;
    }
    let mut tmp = cache_file.as_os_str().to_owned();
    tmp.push(".tmp");
    let text = serde_json::to_string(&Cached { key, accel }).unwrap_or_default();
    fsutil::write_atomic(Path::new(&tmp), cache_file, text.as_bytes())?;
    Ok(accel)
}

fn kvm_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// `qemu --version`, first line.
async fn qemu_version(qemu: &Path) -> Result<String, VmmError> {
    let err = |reason: String| VmmError::QemuVersion {
        qemu: qemu.to_owned(),
        reason,
    };
    let out = tokio::process::Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(format!("exited with {}", out.status)));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned())
}

/// Boots the kernel under KVM without a disk; true if it reaches userspace in time.
async fn probe_kvm(qemu: &Path, kernel: &Path, initrd: &Path) -> bool {
    let spawned = tokio::process::Command::new(qemu)
        .args([
            "-machine",
            "microvm,acpi=on",
            "-global",
            "virtio-mmio.force-legacy=false",
        ])
        .args([
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
        ])
        .args([
            "-accel", "kvm", "-cpu", "host", "-m", "256", "-serial", "stdio",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", "console=ttyS0 reboot=t panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "starting the KVM probe");
            return false;
        }
    };
    let Some(stdout) = child.stdout.take() else {
        return false;
    };
    let mut lines = BufReader::new(stdout).lines();
    let reached = tokio::time::timeout(PROBE_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("Run /init as init process") || line.contains("wrenn-init") {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    let _ = child.kill().await;
    reached
}
