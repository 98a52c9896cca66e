//! [`ImageStore`]: the images directory and the entry points that fill it.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::kernel::{self, KernelImages};
use crate::rootfs::{self, RootfsImage};
use crate::template::BaseTemplate;

/// Where images live: `<data_dir>/images/`.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// The store under `<data_dir>/images/` (created on first build).
    pub fn new(data_dir: &Path) -> Self {
        ImageStore {
            root: data_dir.join("images"),
        }
    }

    /// The images directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Kernel + initramfs; built once, cached (a second call only reads a small manifest).
    /// The paths are canonical: snapshots record them, and a data dir whose `images/` is a
    /// link to a shared store must record where the files really are.
    pub fn ensure_kernel(&self) -> Result<KernelImages> {
        let mut k = kernel::ensure(&self.root.join("kernel"))?;
        for p in [&mut k.kernel, &mut k.initrd] {
            *p = std::fs::canonicalize(&*p)
                .map_err(|e| crate::error::ImageError::io("resolving", p.clone(), e))?;
        }
        Ok(k)
    }

    /// Root filesystem of a base template with the given envd binary baked in at
    /// `/usr/local/bin/envd`. Cached by content id.
    pub fn ensure_rootfs(&self, template: BaseTemplate, envd: &Path) -> Result<RootfsImage> {
        rootfs::ensure(&self.root.join("rootfs"), template, envd)
    }

    /// The id the root filesystem of `template` with `envd` baked in has (or will have once
    /// [`ImageStore::ensure_rootfs`] built it); nothing is built.
    pub fn rootfs_id(&self, template: BaseTemplate, envd: &Path) -> Result<String> {
        rootfs::id(template, envd)
    }

    /// A root filesystem built earlier, by its id (as found in [`RootfsImage::id`]).
    pub fn rootfs_by_id(&self, id: &str) -> Option<RootfsImage> {
        rootfs::by_id(&self.root.join("rootfs"), id)
    }
}

/// The default data directory: `$WRENN_DIR`, else `/var/lib/wrenn` for root, else
/// `~/.local/share/wrenn`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("WRENN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/wrenn");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/wrenn"),
        None => PathBuf::from("/var/lib/wrenn"),
    }
}
