//! Where the agent keeps things under its data dir.
//!
//! ```text
//! <data>/images/                   kernels, initramfs, base root filesystems (wrenn-images)
//! <data>/templates/.base/<key>/    booted base templates: snapshot.json, state, memory, disk
//! <data>/templates/<name>/         snapshot templates (same files)
//! <data>/capsules/<id>/            capsule.json, memory, disk, the VMM's runtime files,
//!                                  snapshot/ (while paused: snapshot.json + state)
//! <data>/                          the VMM driver's cached findings (QEMU: accel.json)
//! ```
//!
//! The disk's file name and format are the VMM driver's (QEMU: `disk.qcow2`, a qcow2
//! overlay over the template's root filesystem), as are its runtime files (sockets, pid
//! file, console log).
//!
//! ```text
//! ```

use std::path::{Path, PathBuf};

use wrenn_vmm::{NicSpec, VmSpec, Vmm};

use crate::manifest::VmShape;

/// Paths under one data dir.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// Layout of a data dir.
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_owned(),
        }
    }
    /// `capsules/`.
    pub fn capsules(&self) -> PathBuf {
        self.root.join("capsules")
    }
    /// One capsule's directory.
    pub fn capsule(&self, id: &str) -> PathBuf {
        self.capsules().join(id)
    }
    /// `templates/`.
    pub fn templates(&self) -> PathBuf {
        self.root.join("templates")
    }
    /// A snapshot template's directory.
    pub fn template(&self, name: &str) -> PathBuf {
        self.templates().join(name)
    }
    /// A booted base template's directory.
    pub fn base_template(&self, key: &str) -> PathBuf {
        self.templates().join(".base").join(key)
    }
}

/// Files inside a capsule's (or template's) directory.
pub mod files {
    /// Capsule manifest.
    pub const MANIFEST: &str = "capsule.json";
    /// Guest RAM.
    pub const MEMORY: &str = "memory";
    /// Snapshot of a paused capsule.
    pub const SNAPSHOT: &str = "snapshot";
    /// Snapshot being written.
    pub const SNAPSHOT_NEW: &str = "snapshot.new";
    /// Snapshot whose VM has been restored and started: no longer restorable.
    pub const SNAPSHOT_USED: &str = "snapshot.used";
}

/// The VM spec of a capsule's or template's directory: its memory file, and its disk under
/// the driver's name.
pub(crate) fn vm_spec(vmm: &dyn Vmm, dir: &Path, shape: &VmShape, nic: Option<NicSpec>) -> VmSpec {
    VmSpec {
        dir: dir.to_owned(),
        kernel: shape.kernel.clone(),
        initrd: shape.initrd.clone(),
        cmdline_extra: String::new(),
        vcpus: shape.vcpus,
        memory_mb: shape.memory_mb,
        memory_file: dir.join(files::MEMORY),
        disk: dir.join(vmm.disk_name()),
        nic,
    }
}
