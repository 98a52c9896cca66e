//! Guest images built from Debian packages by our own code, kept under `<data_dir>/images/`:
//!
//! - a kernel from Debian's cloud kernel package and an initramfs (busybox, the virtio
//!   modules, an `/init` that mounts `/dev/vda` and starts `/usr/local/bin/envd` as PID 1);
//! - ext4 root filesystems of the base templates, made with `mmdebstrap` and `mke2fs -d`.
//!
//! Everything is cached, written crash-safely and guarded by file locks across processes.

pub mod cpio;
mod deb;
mod error;
mod fsutil;
pub mod initramfs;
mod kernel;
mod modules;
mod progress;
mod rootfs;
mod sources;
mod store;
mod template;
mod tools;

pub use error::{ImageError, Result};
pub use kernel::KernelImages;
pub use rootfs::RootfsImage;
pub use store::{default_data_dir, ImageStore};
pub use template::{BaseTemplate, UnknownTemplate};
