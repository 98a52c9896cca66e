//! Guest disks: qcow2 overlays over a read-only raw base image, made with `qemu-img`.

use std::path::Path;

use crate::VmmError;

/// Makes a qcow2 overlay at `overlay` over the raw image `base` (≈10 ms: only metadata).
pub async fn create_overlay(base: &Path, overlay: &Path) -> Result<(), VmmError> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base)
        .arg(overlay)
        .output()
        .await
        .map_err(|e| VmmError::Disk {
            disk: overlay.to_owned(),
            reason: format!("running qemu-img (Debian package qemu-utils): {e}"),
        })?;
    if !out.status.success() {
        return Err(VmmError::Disk {
            disk: overlay.to_owned(),
            reason: format!(
                "qemu-img create: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(())
}
