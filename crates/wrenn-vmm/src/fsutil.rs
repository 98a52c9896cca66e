//! Crash-safe file helpers.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use crate::VmmError;

/// Writes `data` to `tmp`, fsyncs it, renames it to `path` and fsyncs the directory.
pub fn write_atomic(tmp: &Path, path: &Path, data: &[u8]) -> Result<(), VmmError> {
    let mut f = File::create(tmp).map_err(VmmError::io("creating", tmp))?;
    f.write_all(data).map_err(VmmError::io("writing", tmp))?;
    f.sync_all().map_err(VmmError::io("fsyncing", tmp))?;
    std::fs::rename(tmp, path).map_err(VmmError::io("renaming into place", path))?;
    sync_parent(path)
}

/// Fsyncs an existing file (opened read-only: fsync flushes the whole inode's dirty pages,
/// including those written through another process's shared mapping).
pub fn sync_file(path: &Path) -> Result<(), VmmError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(VmmError::io("fsyncing", path))
}

/// Fsyncs the directory containing `path`.
pub fn sync_parent(path: &Path) -> Result<(), VmmError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    sync_file(dir)
}

/// Creates `path` as a sparse file of `len` bytes if it does not exist yet.
pub fn ensure_sparse(path: &Path, len: u64) -> Result<(), VmmError> {
    use std::os::unix::fs::OpenOptionsExt;
    // Guest RAM: readable by the owner only.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => {
            f.set_len(len).map_err(VmmError::io("sizing", path))?;
            f.sync_all().map_err(VmmError::io("fsyncing", path))?;
            sync_parent(path)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(VmmError::io("creating", path)(e)),
    }
}
