//! The seam between the host agent and a VMM: [`Vmm`] (a driver) and [`Vm`] (one VMM
//! process it runs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::{ExitWatch, VmSpec, VmmError};

/// The driver of manifests written before they named one: every VM was QEMU's then.
pub const LEGACY_DRIVER: &str = crate::qemu::NAME;

/// What a snapshot records about the VMM that made it; a snapshot restores only under the
/// same driver, version and accelerator (device state differs between them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmmIdentity {
    /// Driver name (`qemu`).
    pub driver: String,
    /// The VMM's version, as the driver reports it (`QEMU emulator version 10.0.2 ...`).
    pub version: String,
    /// The accelerator guests run under, as the driver names it (`kvm`, `tcg`).
    pub accel: String,
}

/// A VMM driver: everything the agent does with virtual machines, without naming the VMM.
///
/// A VM lives in a directory the agent owns ([`VmSpec::dir`]); the driver decides which of
/// its own files (sockets, pid files, logs) it keeps there.
#[async_trait]
pub trait Vmm: Send + Sync + std::fmt::Debug {
    /// Driver name, version and accelerator, for snapshot manifests.
    fn identity(&self) -> &VmmIdentity;

    /// File name of a guest disk inside a VM's directory (its format is the driver's).
    fn disk_name(&self) -> &'static str;

    /// Makes a guest disk at `disk` that writes over the read-only raw image `base`.
    async fn create_disk(&self, base: &Path, disk: &Path) -> Result<(), VmmError>;

    /// Boots a fresh VM; its vCPUs run when this returns.
    async fn boot(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, VmmError>;

    /// Starts a VMM over the spec's memory file and disk and loads the device state saved
    /// by [`Vm::save`] at `state`. The vCPUs stay stopped until [`Vm::run`].
    async fn restore(&self, spec: &VmSpec, state: &Path) -> Result<Box<dyn Vm>, VmmError>;

    /// Re-attaches to the VMM that runs for `spec.dir` (after an agent restart), after
    /// checking it really is the one started there.
    async fn adopt(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, VmmError>;

    /// Whether a VMM started for `dir` is alive (without a handle to it).
    fn is_alive(&self, dir: &Path) -> bool;

    /// Ends the VMM of `dir` if one is alive, without a handle (recovery, failed starts).
    async fn kill_orphan(&self, dir: &Path);

    /// The Unix socket of the guest agent's byte stream of the VM in `dir`.
    fn agent_socket(&self, dir: &Path) -> PathBuf;

    /// Removes what an ended VMM left in `dir` (sockets, pid file, console log).
    fn remove_runtime_files(&self, dir: &Path);
}

/// One running VMM process. Dropping the handle leaves the VMM running ([`Vmm::adopt`]
/// finds it again); [`Vm::stop`] ends it.
#[async_trait]
pub trait Vm: Send + Sync + std::fmt::Debug {
    /// Pause to snapshot: stops the vCPUs and saves the device state (guest RAM is the
    /// memory file, not part of it) durably at `state`, with the memory file and disk
    /// flushed. On failure the vCPUs run again; on success they stay stopped.
    async fn save(&self, state: &Path) -> Result<(), VmmError>;

    /// Starts (or resumes) the vCPUs.
    async fn run(&self) -> Result<(), VmmError>;

    /// Ends the VMM process and waits until it is gone.
    async fn stop(self: Box<Self>) -> Result<(), VmmError>;

    /// Process id of the VMM.
    fn pid(&self) -> u32;

    /// Whether the vCPUs are running (false also when the VMM does not answer).
    async fn is_running(&self) -> bool;

    /// A future that resolves when the VMM process ends, for whatever reason.
    fn exit_watch(&self) -> ExitWatch;

    /// The Unix socket of the guest agent's byte stream.
    fn agent_socket(&self) -> PathBuf;
}

/// Which VMM the agent drives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmmConfig {
    /// QEMU `microvm` ([`crate::qemu`]).
    Qemu {
        /// `qemu-system-x86_64`, or a path to it.
        binary: PathBuf,
    },
}

impl Default for VmmConfig {
    /// QEMU from `PATH`.
    fn default() -> Self {
        VmmConfig::Qemu {
            binary: PathBuf::from("qemu-system-x86_64"),
        }
    }
}

/// What a driver may use while it opens: a guest to probe the host with, and a directory
/// for what it finds out (cached across agent restarts).
#[derive(Debug, Clone, Copy)]
pub struct HostProbe<'a> {
    /// A bootable guest kernel.
    pub kernel: &'a Path,
    /// Its initramfs.
    pub initrd: &'a Path,
    /// Where the driver keeps its cached findings.
    pub state_dir: &'a Path,
}

impl VmmConfig {
    /// Prepares the configured driver on this host (QEMU: reads its version, chooses KVM
    /// or TCG).
    pub async fn open(&self, probe: HostProbe<'_>) -> Result<Arc<dyn Vmm>, VmmError> {
        match self {
            VmmConfig::Qemu { binary } => {
                Ok(Arc::new(crate::qemu::Qemu::open(binary, probe).await?))
            }
        }
    }
}
