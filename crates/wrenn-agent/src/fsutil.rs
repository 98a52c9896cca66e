//! Small file-system helpers of the agent. Crash-safe writes, fsyncs, sparse copies and
//! owner-only files are [`wrenn_durable`]'s.

use std::fs;
use std::io;
use std::path::Path;

/// Removes everything inside a directory, keeping the directory itself (it may be a mount
/// point).
pub fn clear_dir(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            fs::remove_dir_all(e.path())?;
        } else {
            fs::remove_file(e.path())?;
        }
    }
    Ok(())
}

/// Bytes a file really occupies on disk (allocated blocks), not its apparent size.
pub fn allocated_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(fs::metadata(path)?.blocks() * 512)
}

/// Allocated bytes of every file under `dir`, recursively.
pub fn dir_allocated_bytes(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_allocated_bytes(&e.path()),
            Ok(_) => allocated_bytes(&e.path()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Copies a template's file into a capsule's or a template's directory: its extents are
/// shared where the data dir's file system can (XFS with reflink, btrfs), which makes a create
/// O(1) in the template's size; elsewhere a sparse copy, said once per process.
pub fn copy_template_file(src: &Path, dst: &Path) -> io::Result<()> {
    static SAID: std::sync::Once = std::sync::Once::new();
    if let wrenn_durable::CopyHow::Sparse(bytes) = wrenn_durable::clone_or_copy(src, dst)? {
        SAID.call_once(|| {
            tracing::info!(
                file = %src.display(),
                bytes,
                "the data dir's file system cannot share extents: creates copy the template's \
                 memory and disk (XFS with reflink or btrfs makes them O(1); docs/operating.md)"
            );
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_dir_keeps_the_dir_and_counts_allocated_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        fs::create_dir(&sub).unwrap();
        fs::write(sub.join("a"), vec![1u8; 8192]).unwrap();
        fs::write(dir.path().join("b"), b"x").unwrap();
        assert!(dir_allocated_bytes(dir.path()) >= 8192);
        clear_dir(dir.path()).unwrap();
        assert!(dir.path().is_dir());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert_eq!(dir_allocated_bytes(dir.path()), 0);
    }
}
