//! Host tools the agent runs: `qemu-img` and the VMM's version.

use std::path::Path;

use crate::error::{AgentError, Result};

/// Makes a qcow2 overlay over a read-only raw base image.
pub async fn create_overlay(base: &Path, overlay: &Path) -> Result<()> {
    let out = tokio::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base)
        .arg(overlay)
        .output()
        .await
        .map_err(|e| AgentError::Tool(format!("qemu-img (Debian package qemu-utils): {e}")))?;
    if !out.status.success() {
        return Err(AgentError::Tool(format!(
            "qemu-img create {}: {}",
            overlay.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// First line of `qemu --version`: snapshots record it and refuse another VMM.
pub async fn vmm_version(qemu: &Path) -> Result<String> {
    let out = tokio::process::Command::new(qemu)
        .arg("--version")
        .output()
        .await
        .map_err(|e| {
            AgentError::Tool(format!(
                "{} (Debian package qemu-system-x86): {e}",
                qemu.display()
            ))
        })?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_owned())
}
