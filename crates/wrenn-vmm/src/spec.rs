//! What a VM is made of, independent of the driver that runs it.

use std::path::PathBuf;

/// What is needed to start (or find) a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The VM's directory: the driver keeps its sockets, pid file and console log here.
    pub dir: PathBuf,
    /// Guest kernel (bzImage).
    pub kernel: PathBuf,
    /// Guest initramfs.
    pub initrd: PathBuf,
    /// Appended to the driver's kernel command line.
    pub cmdline_extra: String,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// Guest RAM in MiB.
    pub memory_mb: u32,
    /// Guest RAM file (shared with the VMM); created sparse if missing.
    pub memory_file: PathBuf,
    /// Root disk in the driver's disk format ([`crate::Vmm::create_disk`]), `/dev/vda`.
    pub disk: PathBuf,
    /// The guest's network device, if it has one.
    pub nic: Option<NicSpec>,
}

/// A virtio-net device. Its guest-visible part (the MAC) is fixed by the snapshot; the
/// backend may differ between the boot and each restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    /// Guest MAC address.
    pub mac: String,
    /// Where its packets go.
    pub backend: NicBackend,
}

/// The host side of a virtio-net device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicBackend {
    /// No backend: the device exists but carries nothing (template builds, hosts without
    /// networking).
    None,
    /// An existing tap device `tap`, with the VMM started inside the network namespace
    /// whose file is `netns` (`/run/netns/<name>`).
    Tap {
        /// The namespace the VMM runs in.
        netns: PathBuf,
        /// Name of the tap device inside it.
        tap: String,
    },
}
