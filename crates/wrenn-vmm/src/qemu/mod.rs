//! The QEMU driver: `microvm` guests, paused to a snapshot of device state only (guest RAM
//! is a shared file), restored with `-incoming defer`, re-adopted after an agent restart.
//!
//! Files in a VM's directory: `qmp.sock` (monitor), `envd.sock` (virtio-serial port
//! `wrenn.envd`), `console.sock` + `console.log`/`console.log.1` (bounded serial console),
//! `qemu.pid`, `qemu.id` (pid + start time, for identity checks), `qemu.log` (QEMU's own
//! messages while starting). Disks are qcow2 overlays (`disk.qcow2`). The command line is
//! documented in [`cmdline`].

mod accel;
pub mod cmdline;
mod console;
mod disk;
mod process;
pub mod qmp;
pub mod tsc;
mod vm;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;

pub use accel::{detect_accel, Accel, ACCEL_CACHE, ACCEL_ENV, PROBE_TIMEOUT};
pub use console::MAX_LOG_BYTES as CONSOLE_LOG_MAX_BYTES;
pub use vm::{agent_socket_path, process_alive, QemuVm};

use crate::{HostProbe, Vm, VmSpec, Vmm, VmmError, VmmIdentity};

/// Name of this driver in manifests.
pub const NAME: &str = "qemu";

/// File name of a guest disk (a qcow2 overlay) in a VM's directory.
pub const DISK_NAME: &str = "disk.qcow2";

/// The QEMU driver of one host: its binary, version and accelerator.
#[derive(Debug, Clone)]
pub struct Qemu {
    binary: PathBuf,
    accel: Accel,
    identity: VmmIdentity,
}

impl Qemu {
    /// Prepares QEMU on this host: reads `qemu --version` (once: snapshots record it, and
    /// the accelerator cache is keyed by it) and chooses KVM or TCG ([`detect_accel`], its
    /// verdict cached in `probe.state_dir`).
    pub async fn open(binary: &Path, probe: HostProbe<'_>) -> Result<Qemu, VmmError> {
        let version = version(binary).await?;
        let accel = detect_accel(
            binary,
            &version,
            probe.kernel,
            probe.initrd,
            &probe.state_dir.join(ACCEL_CACHE),
        )
        .await?;
        tracing::info!(%accel, %version, "QEMU driver ready");
        Ok(Qemu::new(binary.to_owned(), accel, version))
    }

    /// A driver whose version and accelerator are known already (tests, benchmarks).
    pub fn new(binary: PathBuf, accel: Accel, version: String) -> Qemu {
        let identity = VmmIdentity {
            driver: NAME.to_owned(),
            version,
            accel: accel.name().to_owned(),
        };
        Qemu {
            binary,
            accel,
            identity,
        }
    }

    /// The QEMU binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// KVM or TCG.
    pub fn accel(&self) -> Accel {
        self.accel
    }
}

#[async_trait]
impl Vmm for Qemu {
    fn identity(&self) -> &VmmIdentity {
        &self.identity
    }

    fn disk_name(&self) -> &'static str {
        DISK_NAME
    }

    async fn create_disk(&self, base: &Path, disk: &Path) -> Result<(), VmmError> {
        disk::create_overlay(base, disk).await
    }

    async fn boot(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, VmmError> {
        Ok(Box::new(QemuVm::boot(self, spec).await?))
    }

    async fn restore(&self, spec: &VmSpec, state: &Path) -> Result<Box<dyn Vm>, VmmError> {
        Ok(Box::new(QemuVm::restore_stopped(self, spec, state).await?))
    }

    async fn adopt(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, VmmError> {
        Ok(Box::new(QemuVm::adopt(spec).await?))
    }

    fn is_alive(&self, dir: &Path) -> bool {
        process_alive(dir)
    }

    async fn kill_orphan(&self, dir: &Path) {
        vm::kill_orphan(dir).await
    }

    fn agent_socket(&self, dir: &Path) -> PathBuf {
        agent_socket_path(dir)
    }

    fn remove_runtime_files(&self, dir: &Path) {
        vm::remove_runtime_files(dir)
    }
}

#[async_trait]
impl Vm for QemuVm {
    async fn save(&self, state: &Path) -> Result<(), VmmError> {
        QemuVm::save(self, state).await
    }

    async fn run(&self) -> Result<(), VmmError> {
        self.cont().await
    }

    async fn stop(self: Box<Self>) -> Result<(), VmmError> {
        self.kill().await
    }

    fn pid(&self) -> u32 {
        QemuVm::pid(self)
    }

    async fn is_running(&self) -> bool {
        QemuVm::is_running(self).await
    }

    fn exit_watch(&self) -> crate::ExitWatch {
        QemuVm::exit_watch(self)
    }

    fn agent_socket(&self) -> PathBuf {
        QemuVm::agent_socket(self)
    }
}

/// `qemu --version`, first line.
pub async fn version(qemu: &Path) -> Result<String, VmmError> {
    let err = |reason: String| VmmError::QemuVersion {
        qemu: qemu.to_owned(),
        reason,
    };
    let out = tokio::process::Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| err(format!("{e} (Debian package qemu-system-x86)")))?;
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
