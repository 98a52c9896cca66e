//! The guest kernel (from Debian's cloud kernel package) and its initramfs, built once.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::deb;
use crate::error::{ImageError, Result};
use crate::fsutil;
use crate::initramfs;
use crate::progress::Step;

/// Bump when the initramfs contents or layout change: forces a rebuild.
const KERNEL_BUILDER_VERSION: u32 = 1;
/// Debian meta package that depends on the current cloud kernel.
const KERNEL_META_PACKAGE: &str = "linux-image-cloud-amd64";
/// Debian package with a statically linked busybox.
const BUSYBOX_PACKAGE: &str = "busybox-static";

/// A bootable kernel and initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelImages {
    /// The kernel (`vmlinuz`, a bzImage).
    pub kernel: PathBuf,
    /// The initramfs (gzip-compressed newc cpio).
    pub initrd: PathBuf,
    /// Kernel release, e.g. `6.1.0-28-cloud-amd64`.
    pub version: String,
}

/// `<images>/kernel/current.json`: which kernel is built and by which builder.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    builder: u32,
    version: String,
    /// Relative to the kernel directory.
    kernel: String,
    /// Relative to the kernel directory.
    initrd: String,
}

/// Returns the cached kernel and initramfs under `dir`, building them first if needed.
pub(crate) fn ensure(dir: &Path) -> Result<KernelImages> {
    if let Some(found) = cached(dir)? {
        return Ok(found);
    }
    fsutil::create_dir_all(dir)?;
    let _lock = fsutil::lock(&dir.join(".lock"))?;
    if let Some(found) = cached(dir)? {
        return Ok(found);
    }
    fsutil::remove_stale_temps(dir, "")?;
    build(dir)
}

fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("current.json")
}

fn cached(dir: &Path) -> Result<Option<KernelImages>> {
    let path = manifest_path(dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImageError::io("read", &path, e)),
    };
    let m: Manifest =
        serde_json::from_str(&text).map_err(|source| ImageError::Manifest { path, source })?;
    let images = KernelImages {
        kernel: dir.join(&m.kernel),
        initrd: dir.join(&m.initrd),
        version: m.version,
    };
    if m.builder == KERNEL_BUILDER_VERSION && images.kernel.is_file() && images.initrd.is_file() {
        Ok(Some(images))
    } else {
        Ok(None)
    }
}

fn build(dir: &Path) -> Result<KernelImages> {
    let work = tempfile::Builder::new()
        .prefix(".tmp-kernel-")
        .tempdir_in(dir)
        .map_err(|e| ImageError::io("create temporary directory in", dir, e))?;
    let downloads = work.path().join("debs");
    fsutil::create_dir_all(&downloads)?;

    let meta = deb::download(KERNEL_META_PACKAGE, &downloads)?;
    let depends = deb::field(&meta, "Depends")?;
    let spec = deb::dependency_with_prefix(&depends, "linux-image-").ok_or_else(|| {
        ImageError::Package {
            package: KERNEL_META_PACKAGE.to_string(),
            problem: format!("no linux-image-* dependency in Depends: {depends:?}"),
        }
    })?;
    let package = spec.split('=').next().unwrap_or(&spec).to_string();
    let version = package.trim_start_matches("linux-image-").to_string();
    let kernel_deb = deb::download(&spec, &downloads)?;
    let busybox_deb = deb::download(BUSYBOX_PACKAGE, &downloads)?;

    let step = Step::start(format!("building initramfs for kernel {version}"));
    let kroot = work.path().join("kernel");
    deb::extract(&kernel_deb, &kroot)?;
    let vmlinuz = kroot.join("boot").join(format!("vmlinuz-{version}"));
    if !vmlinuz.is_file() {
        return Err(ImageError::Package {
            package,
            problem: format!("has no /boot/vmlinuz-{version}"),
        });
    }
    let broot = work.path().join("busybox");
    deb::extract(&busybox_deb, &broot)?;
    let busybox_path = ["bin/busybox", "usr/bin/busybox"]
        .iter()
        .map(|p| broot.join(p))
        .find(|p| p.is_file())
        .ok_or_else(|| ImageError::Package {
            package: BUSYBOX_PACKAGE.to_string(),
            problem: "has no bin/busybox".to_string(),
        })?;
    let busybox =
        std::fs::read(&busybox_path).map_err(|e| ImageError::io("read", &busybox_path, e))?;
    let initrd_bytes = initramfs::build(&kroot, &version, &busybox)?;

    let out_dir = dir.join(&version);
    fsutil::create_dir_all(&out_dir)?;
    let kernel_rel = format!("{version}/vmlinuz");
    let initrd_rel = format!("{version}/initrd-b{KERNEL_BUILDER_VERSION}.img");
    let kernel_bytes = std::fs::read(&vmlinuz).map_err(|e| ImageError::io("read", &vmlinuz, e))?;
    fsutil::write_atomic(&dir.join(&kernel_rel), &kernel_bytes, 0o644)?;
    fsutil::write_atomic(&dir.join(&initrd_rel), &initrd_bytes, 0o644)?;
    let manifest = Manifest {
        builder: KERNEL_BUILDER_VERSION,
        version: version.clone(),
        kernel: kernel_rel.clone(),
        initrd: initrd_rel.clone(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|source| ImageError::Manifest {
        path: manifest_path(dir),
        source,
    })?;
    fsutil::write_atomic(&manifest_path(dir), &json, 0o644)?;
    step.finish();
    Ok(KernelImages {
        kernel: dir.join(kernel_rel),
        initrd: dir.join(initrd_rel),
        version,
    })
}
