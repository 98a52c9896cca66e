//! On-disk manifests: one per capsule, one per snapshot. Both are JSON, versioned, and
//! written atomically (temp file, fsync, rename).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wrenn_host::HostStatus;
use wrenn_vmm::VmmIdentity;

use crate::error::{AgentError, Result};
use crate::layout::files;

/// Format version of [`CapsuleManifest`].
pub const CAPSULE_FORMAT: u32 = 1;
/// Format version of [`SnapshotManifest`]. A snapshot of another format is refused.
pub const SNAPSHOT_FORMAT: u32 = 1;

/// Everything the agent must know to re-adopt a capsule after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CapsuleManifest {
    /// [`CAPSULE_FORMAT`].
    pub format: u32,
    /// Capsule id.
    pub id: String,
    /// Template it was created from.
    pub template: String,
    /// The VMM driver its VMM runs under (`qemu`); manifests from before this field are
    /// QEMU's. A restarted agent with another driver leaves such a capsule alone.
    #[serde(default = "legacy_driver")]
    pub driver: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Last stored status.
    pub status: HostStatus,
    /// Why it is in `Error`.
    #[serde(default)]
    pub error: Option<String>,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// Kernel the guest runs (restores must use the same one).
    pub kernel: PathBuf,
    /// Initramfs the guest booted with.
    pub initrd: PathBuf,
    /// Its network: the egress policy (kept across pause, resume and agent restarts), whether
    /// it has a network device, and the host-side slot it holds while it has a VMM.
    #[serde(default)]
    pub network: CapsuleNetwork,
}

/// The network part of a capsule's manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CapsuleNetwork {
    /// Egress policy as the client gave it (validated).
    #[serde(default)]
    pub policy: wrenn_host::NetworkPolicy,
    /// Whether the capsule's snapshot lineage has a network device. Capsules made before
    /// networking existed have none and stay without network.
    #[serde(default)]
    pub nic: bool,
}

impl CapsuleManifest {
    /// Reads a manifest.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(AgentError::io("reading manifest", path))?;
        let m: Self = serde_json::from_slice(&bytes).map_err(|e| AgentError::BadSnapshot {
            path: path.to_owned(),
            reason: format!("manifest is not valid: {e}"),
        })?;
        if m.format != CAPSULE_FORMAT {
            return Err(AgentError::BadSnapshot {
                path: path.to_owned(),
                reason: format!(
                    "capsule manifest format {} (this agent reads {CAPSULE_FORMAT})",
                    m.format
                ),
            });
        }
        Ok(m)
    }

    /// Writes it atomically.
    pub fn store(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| AgentError::Tool(e.to_string()))?;
        wrenn_durable::write_atomic(path, &bytes).map_err(AgentError::io("writing manifest", path))
    }
}

/// Size and checksum of one file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Apparent size in bytes.
    pub size: u64,
    /// SHA-256 hex, for files small enough to check at every load (the device state).
    #[serde(default)]
    pub sha256: Option<String>,
}

/// What a snapshot is and what it needs to be restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotManifest {
    /// [`SNAPSHOT_FORMAT`].
    pub format: u32,
    /// Creation time, unix seconds.
    pub created_at: i64,
    /// vCPUs of the VM (device state is per vCPU).
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// The VMM driver that made it (`qemu`); manifests from before this field are QEMU's.
    /// Another driver cannot read its device state.
    #[serde(default = "legacy_driver")]
    pub driver: String,
    /// What the VMM needs to be: its version as the driver reports it (QEMU: the first
    /// line of `qemu-system-x86_64 --version`).
    pub vmm_version: String,
    /// Accelerator the VM ran under (`kvm`/`tcg`): device state differs between them.
    pub accel: String,
    /// envd protocol the guest speaks.
    pub guest_protocol: u32,
    /// Kernel of the guest.
    pub kernel: PathBuf,
    /// Initramfs of the guest.
    pub initrd: PathBuf,
    /// The device state file.
    pub state: FileRecord,
    /// The guest memory file.
    pub memory: FileRecord,
    /// The disk overlay.
    pub disk: FileRecord,
    /// Whether the VM has a virtio-net device (restores must add the same devices).
    /// Snapshots made before capsule networking have none.
    #[serde(default)]
    pub nic: bool,
}

/// What a snapshot records about the VM it was taken of.
#[derive(Debug, Clone)]
pub struct VmShape {
    /// vCPUs.
    pub vcpus: u32,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Kernel of the guest.
    pub kernel: PathBuf,
    /// Initramfs of the guest.
    pub initrd: PathBuf,
    /// Whether it has a virtio-net device.
    pub nic: bool,
}

impl SnapshotManifest {
    /// File name of the manifest inside a snapshot directory.
    pub const FILE: &'static str = "snapshot.json";
    /// File name of the device state inside a snapshot directory.
    pub const STATE: &'static str = "state";

    /// Reads the manifest of a snapshot directory and checks its format.
    pub fn read(dir: &Path) -> Result<Self> {
        let bad = |reason: String| AgentError::BadSnapshot {
            path: dir.to_owned(),
            reason,
        };
        let path = dir.join(Self::FILE);
        let bytes = std::fs::read(&path).map_err(|e| bad(format!("no manifest: {e}")))?;
        let m: Self =
            serde_json::from_slice(&bytes).map_err(|e| bad(format!("manifest is corrupt: {e}")))?;
        if m.format != SNAPSHOT_FORMAT {
            return Err(bad(format!(
                "snapshot format {} is not supported (this agent reads {SNAPSHOT_FORMAT})",
                m.format
            )));
        }
        Ok(m)
    }

    /// Reads the manifest of a snapshot directory and checks that this agent can restore it
    /// (driver first: another driver's snapshot is refused before anything else is looked
    /// at), that every file is there, the sizes match and the device state's checksum
    /// matches.
    pub fn verify(dir: &Path, memory: &Path, disk: &Path, env: &VmmIdentity) -> Result<Self> {
        let bad = |reason: String| AgentError::BadSnapshot {
            path: dir.to_owned(),
            reason,
        };
        let m = Self::read(dir)?;
        if m.driver != env.driver {
            return Err(bad(format!(
                "made by the {} VMM driver, this host runs the {} driver",
                m.driver, env.driver
            )));
        }
        if m.vmm_version != env.version {
            return Err(bad(format!(
                "made by '{}', this host runs '{}'",
                m.vmm_version, env.version
            )));
        }
        if m.accel != env.accel {
            return Err(bad(format!(
                "made under {}, this host uses {}",
                m.accel, env.accel
            )));
        }
        if m.guest_protocol != wrenn_protocol::PROTOCOL_VERSION {
            return Err(bad(format!(
                "guest speaks envd protocol {}, this agent {}",
                m.guest_protocol,
                wrenn_protocol::PROTOCOL_VERSION
            )));
        }
        for (what, p) in [("kernel", &m.kernel), ("initramfs", &m.initrd)] {
            if !p.exists() {
                return Err(bad(format!("its {what} {} is gone", p.display())));
            }
        }
        let state = dir.join(Self::STATE);
        check_file(&state, &m.state, "device state").map_err(bad)?;
        check_file(memory, &m.memory, "memory file").map_err(bad)?;
        check_file(disk, &m.disk, "disk").map_err(bad)?;
        if let Some(want) = &m.state.sha256 {
            let got = wrenn_durable::sha256_file(&state).map_err(|e| bad(e.to_string()))?;
            if &got != want {
                return Err(bad("device state checksum does not match".into()));
            }
        }
        Ok(m)
    }

    /// Records a snapshot whose device state is in `dir` and whose memory file and disk
    /// (named `disk_name` by the VMM driver) are in `files_dir`, made by the VMM `vmm`, and
    /// writes its manifest into `dir`.
    pub fn write(
        dir: &Path,
        files_dir: &Path,
        disk_name: &str,
        shape: &VmShape,
        vmm: &VmmIdentity,
    ) -> Result<Self> {
        let m = SnapshotManifest {
            format: SNAPSHOT_FORMAT,
            created_at: now_unix(),
            vcpus: shape.vcpus,
            memory_mb: shape.memory_mb,
            driver: vmm.driver.clone(),
            vmm_version: vmm.version.clone(),
            accel: vmm.accel.clone(),
            guest_protocol: wrenn_protocol::PROTOCOL_VERSION,
            kernel: shape.kernel.clone(),
            initrd: shape.initrd.clone(),
            state: record(&dir.join(Self::STATE), true)?,
            memory: record(&files_dir.join(files::MEMORY), false)?,
            disk: record(&files_dir.join(disk_name), false)?,
            nic: shape.nic,
        };
        m.store(dir)?;
        Ok(m)
    }

    /// Writes the manifest into a snapshot directory atomically.
    pub fn store(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| AgentError::Tool(e.to_string()))?;
        let path = dir.join(Self::FILE);
        wrenn_durable::write_atomic(&path, &bytes)
            .map_err(AgentError::io("writing snapshot manifest", path))
    }
}

fn check_file(path: &Path, rec: &FileRecord, what: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if meta.len() != rec.size {
        return Err(format!(
            "{what} is {} bytes, the manifest says {}",
            meta.len(),
            rec.size
        ));
    }
    Ok(())
}

/// Records a file for a manifest; `checksum` computes its SHA-256.
pub fn record(path: &Path, checksum: bool) -> Result<FileRecord> {
    let size = std::fs::metadata(path)
        .map_err(AgentError::io("stat", path))?
        .len();
    let sha256 = if checksum {
        Some(wrenn_durable::sha256_file(path).map_err(AgentError::io("checksum", path))?)
    } else {
        None
    };
    Ok(FileRecord { size, sha256 })
}

/// The driver of manifests written before they named one.
fn legacy_driver() -> String {
    wrenn_vmm::LEGACY_DRIVER.to_owned()
}

/// Current time, unix seconds.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
