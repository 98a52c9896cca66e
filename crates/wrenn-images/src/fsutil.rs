//! Crash-safe file writes, locks and small file-system helpers.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{ImageError, Result};

/// Creates a directory and its parents.
pub(crate) fn create_dir_all(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| ImageError::io("create directory", path, e))
}

/// Flushes a file's contents to disk.
pub(crate) fn fsync_file(path: &Path) -> Result<()> {
    wrenn_durable::sync_file(path).map_err(|e| ImageError::io("fsync", path, e))
}

/// A temporary sibling name for `target` (see [`wrenn_durable::temp_sibling`]); it starts
/// with `.tmp-<name>`, which [`remove_stale_temps`] sweeps.
pub(crate) fn temp_sibling(target: &Path) -> PathBuf {
    wrenn_durable::temp_sibling(target)
}

/// Writes `data` to `target` with `mode`: temp file, fsync, rename, fsync directory.
pub(crate) fn write_atomic(target: &Path, data: &[u8], mode: u32) -> Result<()> {
    wrenn_durable::write_atomic_mode(target, data, mode)
        .map_err(|e| ImageError::io("write", target, e))
}

/// Renames `from` to `to` and makes the rename durable.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    wrenn_durable::rename_durable(from, to).map_err(|e| ImageError::io("rename into place", to, e))
}

/// Removes a file or directory tree if it exists.
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let res = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    res.map_err(|e| ImageError::io("remove", path, e))
}

/// Removes leftovers of interrupted builds (names starting with `.tmp-<prefix>`) in `dir`.
/// Call only while holding the lock that guards those names.
pub(crate) fn remove_stale_temps(dir: &Path, prefix: &str) -> Result<()> {
    let prefix = format!(".tmp-{prefix}");
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            tracing::info!(path = %entry.path().display(), "removing leftover of an interrupted build");
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// An exclusive lock on a lock file, released on drop.
pub(crate) struct LockGuard {
    _lock: Flock<File>,
}

/// Takes an exclusive `flock` on `path` (created if needed), waiting for other holders.
pub(crate) fn lock(path: &Path) -> Result<LockGuard> {
    if let Some(parent) = path.parent() {
        create_dir_all(parent)?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| ImageError::io("open lock file", path, e))?;
    tracing::debug!(path = %path.display(), "waiting for image lock");
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, errno)| ImageError::io("lock", path, errno.into()))?;
    Ok(LockGuard { _lock: lock })
}

/// Bytes used by a directory tree (allocated blocks; hard links counted once).
pub(crate) fn tree_size(root: &Path) -> Result<u64> {
    let mut seen = std::collections::HashSet::new();
    let mut total = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| ImageError::io("read directory", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("read directory", &dir, e))?;
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| ImageError::io("stat", &path, e))?;
            if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    Ok(total)
}

/// SHA-256 of a file, hex.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    wrenn_durable::sha256_file(path).map_err(|e| ImageError::io("read", path, e))
}

/// SHA-256 of some text, hex.
pub(crate) fn sha256_str(s: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(s.as_bytes()))
}
