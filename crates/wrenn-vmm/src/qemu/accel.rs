//! Choosing the accelerator: KVM only when it can really run our guest, else TCG.
//!
//! `/dev/kvm` existing (or even opening) is not enough: in nested or sandboxed setups KVM
//! may accept the VM but never run the guest. So we boot the given kernel and initramfs
//! under KVM with the console on a pipe and wait (at most [`PROBE_TIMEOUT`]) for the
//! kernel to reach userspace (`Run /init as init process`). The verdict is cached in a JSON
//! file ([`ACCEL_CACHE`] in the driver's state directory) keyed by kernel path + size and
//! QEMU version. `WRENN_ACCEL=kvm|tcg` overrides all.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::VmmError;

/// How long the KVM probe boot may take to reach userspace.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// File name of the cached verdict in the driver's state directory.
pub const ACCEL_CACHE: &str = "accel.json";

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

impl std::str::FromStr for Accel {
    type Err = VmmError;

    /// `kvm` or `tcg`.
    fn from_str(s: &str) -> Result<Accel, VmmError> {
        match s {
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(VmmError::BadAccelOverride(other.to_owned())),
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

/// Decides between KVM and TCG (see the module docs) for the QEMU `qemu` whose version
/// line is `version`. Errors only if the override is invalid or the cache cannot be written.
pub async fn detect_accel(
    qemu: &Path,
    version: &str,
    kernel: &Path,
    initrd: &Path,
    cache_file: &Path,
) -> Result<Accel, VmmError> {
    if let Ok(v) = std::env::var(ACCEL_ENV) {
        if !v.trim().is_empty() {
            return v.trim().parse();
        }
    }
    let size = std::fs::metadata(kernel)
        .map_err(VmmError::io("reading", kernel))?
        .len();
    let key = format!("{}|{size}|{version}", kernel.display());
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
    let text = serde_json::to_string(&Cached { key, accel }).unwrap_or_default();
    wrenn_durable::write_atomic(cache_file, text.as_bytes())
        .map_err(VmmError::io("writing", cache_file))?;
    Ok(accel)
}

fn kvm_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
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
