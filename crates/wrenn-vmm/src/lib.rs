//! VMM drivers of Wrenn: one trait for what the host agent needs of a virtual machine
//! monitor, and QEMU `microvm` as its first driver.
//!
//! - [`Vmm`]: a driver, one per host. It boots VMs, restores them from a snapshot, re-adopts
//!   them after an agent restart, knows the files a VMM leaves in a VM's directory, makes
//!   guest disks, and names itself and its accelerator for snapshot manifests
//!   ([`VmmIdentity`]).
//! - [`Vm`]: one running VMM process: save a snapshot, run the vCPUs, stop the VMM, and the
//!   facts the agent watches (pid, vCPUs running, exit).
//! - [`VmmConfig::open`] picks and prepares the driver the configuration names.
//!
//! Everything QEMU-specific (QMP, the command line, KVM/TCG, qcow2, pid files) lives in
//! [`qemu`].

mod driver;
mod error;
mod exit;
pub mod qemu;
mod spec;

pub use driver::{HostProbe, Vm, Vmm, VmmConfig, VmmIdentity, LEGACY_DRIVER};
pub use error::VmmError;
pub use exit::ExitWatch;
pub use spec::{NicBackend, NicSpec, VmSpec};
