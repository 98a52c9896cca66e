//! Crash-safe file helpers: atomic writes, directory fsync, sparse copies.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename,
/// fsync of the directory. A crash leaves the old content or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Fsyncs a directory so that renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

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

/// Fsyncs one file.
pub fn sync_file(path: &Path) -> io::Result<()> {
    OpenOptions::new().read(true).open(path)?.sync_all()
}

/// Mode of the files that hold a guest's memory, disk or device state: the owner only.
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of the directories that hold capsules and templates: the owner only.
pub const PRIVATE_DIR: u32 = 0o700;

/// Creates (or truncates) `path` readable and writable by the owner only, also when it
/// existed with a wider mode.
pub fn create_private(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE))?;
    Ok(f)
}

/// Creates `path` (and its parents) and makes it accessible to the owner only. Guest memory
/// and disks live below such directories: no other user of the host may read them.
pub fn private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_DIR))
}

/// Narrows an existing file to the owner only.
pub fn make_private(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_FILE))
}

/// Copies `src` to `dst` keeping holes: only the data extents are copied (SEEK_DATA /
/// SEEK_HOLE + copy_file_range), so a sparse 1 GiB memory file with 100 MiB in use costs
/// 100 MiB of I/O. The copy is fsynced. Returns the bytes copied.
pub fn copy_sparse(src: &Path, dst: &Path) -> io::Result<u64> {
    let input = File::open(src)?;
    let len = input.metadata()?.len();
    let output = create_private(dst)?;
    output.set_len(len)?;
    let (fd_in, fd_out) = (input.as_raw_fd(), output.as_raw_fd());
    let mut copied = 0u64;
    let mut pos: i64 = 0;
    let end = i64::try_from(len).map_err(|_| io::Error::other("file too large"))?;
    while pos < end {
        // SAFETY: plain syscalls on descriptors owned by `input` and `output`.
        let data = unsafe { libc::lseek(fd_in, pos, libc::SEEK_DATA) };
        if data < 0 {
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::ENXIO) {
                break; // only a hole remains
            }
            return Err(err);
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd_in, data, libc::SEEK_HOLE) };
        if hole < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut off_in = data;
        let mut off_out = data;
        while off_in < hole {
            let want = usize::try_from(hole - off_in)
                .unwrap_or(usize::MAX)
                .min(1 << 30);
            // SAFETY: offsets are valid pointers to locals; descriptors are open.
            let n =
                unsafe { libc::copy_file_range(fd_in, &mut off_in, fd_out, &mut off_out, want, 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if n == 0 {
                break;
            }
            copied += n as u64;
        }
        pos = hole;
    }
    output.sync_all()?;
    Ok(copied)
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

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    #[test]
    fn sparse_copy_keeps_data_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let mut f = File::create(&src).unwrap();
        f.set_len(64 << 20).unwrap();
        f.seek(SeekFrom::Start(8 << 20)).unwrap();
        f.write_all(&[7u8; 8192]).unwrap();
        f.seek(SeekFrom::Start((64 << 20) - 5)).unwrap();
        f.write_all(b"tail!").unwrap();
        f.sync_all().unwrap();
        let dst = dir.path().join("dst");
        copy_sparse(&src, &dst).unwrap();
        assert_eq!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
        assert!(
            allocated_bytes(&dst).unwrap() < 4 << 20,
            "copy is not sparse"
        );
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "temp file left"
        );
    }
}
