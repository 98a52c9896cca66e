//! Crash-safe file helpers shared by the host crates (agent, VMM drivers, images).
//!
//! - [`write_atomic`]: a temp file in the same directory, fsync, rename, fsync of the
//!   directory. A crash leaves the old content or the new one, never a mix.
//! - [`sync_file`], [`sync_dir`], [`sync_parent`]: make data and directory entries durable.
//! - [`copy_sparse`], [`ensure_sparse`]: guest memory and disks are sparse; copies keep holes.
//! - [`sha256_file`]: checksums recorded in manifests.
//! - [`private_dir`], [`create_private`], [`make_private`]: guest memory, disks and device
//!   state are readable by the owner only.
//!
//! Errors are plain [`std::io::Error`]s; callers add the path and what they were doing.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Mode of files that hold a guest's memory, disk or device state: the owner only.
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of directories that hold capsules and templates: the owner only.
pub const PRIVATE_DIR: u32 = 0o700;

/// The directory a path lives in; `.` for a bare file name (whose parent is empty).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A temporary name next to `target`: `.tmp-<name>-<pid>-<n>`, unique within this process
/// and across processes, so concurrent writers never share one. Leftovers of a crash start
/// with `.tmp-<name>` and can be swept by whoever owns the directory.
pub fn temp_sibling(target: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    parent_dir(target).join(format!(".tmp-{name}-{}-{n}", std::process::id()))
}

/// Writes `bytes` to `path` atomically with the default mode (0o666 less the umask).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_inner(path, bytes, None)
}

/// Like [`write_atomic`], the new file getting `mode`.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_inner(path, bytes, Some(mode))
}

fn write_atomic_inner(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    if path.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no file name",
        ));
    }
    let tmp = temp_sibling(path);
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        if let Some(mode) = mode {
            f.set_permissions(fs::Permissions::from_mode(mode))?;
        }
        f.write_all(bytes)?;
        // The data is on disk before the name points at it.
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    // The rename is on disk once the directory is.
    sync_parent(path)
}

/// Fsyncs an existing file or directory. Opened read-only: fsync flushes the whole inode's
/// dirty pages, also those written through another process's shared mapping (guest RAM).
pub fn sync_file(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Fsyncs a directory so that creations, renames and removals in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Fsyncs the directory containing `path` (`.` for a bare file name).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    sync_dir(parent_dir(path))
}

/// Renames `from` to `to` and fsyncs the directory of `to`.
pub fn rename_durable(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_parent(to)
}

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

/// Creates `path` (and its parents) and makes it accessible to the owner only.
pub fn private_dir(path: &Path) -> io::Result<()> {
    fs::create_dir_all(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_DIR))
}

/// Narrows an existing file to the owner only.
pub fn make_private(path: &Path) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_FILE))
}

/// Creates `path` as an owner-only sparse file of `len` bytes if it does not exist yet
/// (durably: the file and its directory entry are fsynced). An existing file is left as is.
pub fn ensure_sparse(path: &Path, len: u64) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE)
        .open(path)
    {
        Ok(f) => {
            f.set_len(len)?;
            f.sync_all()?;
            sync_parent(path)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Copies `src` to `dst` (created owner-only) keeping holes: only the data extents are
/// copied (`SEEK_DATA`/`SEEK_HOLE` + `copy_file_range`), so a sparse 1 GiB memory file with
/// 100 MiB in use costs 100 MiB of I/O. The copy is fsynced. Returns the bytes copied.
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
            // SAFETY: the offsets point to locals; the descriptors are open.
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

/// How [`clone_or_copy`] made its copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyHow {
    /// The copy shares the source's extents copy-on-write (`FICLONE`): no data was written,
    /// whatever the file's size.
    Cloned,
    /// The file system cannot share extents: a sparse copy of this many data bytes.
    Sparse(u64),
}

/// Copies `src` to `dst` (created owner-only), sharing its extents where the file system can
/// (XFS with reflink, btrfs): the copy takes no time or space until one side writes. Elsewhere
/// (ext4, tmpfs) it falls back to [`copy_sparse`]. Either way the copy is fsynced and
/// independent of `src` from then on.
pub fn clone_or_copy(src: &Path, dst: &Path) -> io::Result<CopyHow> {
    {
        let input = File::open(src)?;
        let output = create_private(dst)?;
        // SAFETY: FICLONE takes the source descriptor as its argument; both are open.
        let r = unsafe {
            libc::ioctl(
                output.as_raw_fd(),
                libc::FICLONE as _,
                input.as_raw_fd() as libc::c_long,
            )
        };
        if r == 0 {
            output.sync_all()?;
            return Ok(CopyHow::Cloned);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            // Not supported here, or across file systems: copy instead.
            Some(libc::EOPNOTSUPP)
            | Some(libc::ENOTTY)
            | Some(libc::EXDEV)
            | Some(libc::EINVAL)
            | Some(libc::ENOSYS) => {}
            _ => return Err(err),
        }
    }
    copy_sparse(src, dst).map(CopyHow::Sparse)
}

/// SHA-256 of a file's content, lowercase hex.
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
    use std::os::unix::fs::MetadataExt;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["m.json"]);
    }

    #[test]
    fn atomic_write_never_touches_the_old_file_in_place() {
        // The new content goes to a new inode that is renamed over the old name: a reader
        // holding the old file (here a hard link) still sees the old content whole.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_atomic(&p, b"old content").unwrap();
        let old_ino = fs::metadata(&p).unwrap().ino();
        let link = dir.path().join("held");
        fs::hard_link(&p, &link).unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read(&link).unwrap(), b"old content");
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_ne!(fs::metadata(&p).unwrap().ino(), old_ino);
    }

    #[test]
    fn a_failed_atomic_write_keeps_the_old_state_and_removes_its_temp() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename fails after the data was written.
        let target = dir.path().join("busy");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"x").unwrap();
        assert!(write_atomic(&target, b"data").is_err());
        assert!(target.is_dir());
        assert_eq!(names(dir.path()), ["busy"]);
        // A missing parent fails before anything is created.
        assert!(write_atomic(&dir.path().join("no/such/file"), b"x").is_err());
        assert_eq!(names(dir.path()), ["busy"]);
    }

    #[test]
    fn atomic_write_of_a_bare_file_name_uses_the_working_directory() {
        // The only test of this crate that changes the working directory.
        let dir = tempfile::tempdir().unwrap();
        let before = std::env::current_dir().unwrap();
        std::env::set_current_dir(dir.path()).unwrap();
        let result = write_atomic(Path::new("bare.json"), b"{}");
        let result_mode = write_atomic_mode(Path::new("bare2.json"), b"{}", 0o640);
        std::env::set_current_dir(before).unwrap();
        result.unwrap();
        result_mode.unwrap();
        assert_eq!(fs::read(dir.path().join("bare.json")).unwrap(), b"{}");
        let mode = fs::metadata(dir.path().join("bare2.json")).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert_eq!(names(dir.path()), ["bare.json", "bare2.json"]);
        assert_eq!(parent_dir(Path::new("bare.json")), Path::new("."));
    }

    #[test]
    fn temp_names_are_unique_siblings() {
        let a = temp_sibling(Path::new("/x/y/state"));
        let b = temp_sibling(Path::new("/x/y/state"));
        assert_ne!(a, b);
        assert_eq!(a.parent(), Some(Path::new("/x/y")));
        assert!(a
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".tmp-state-"));
    }

    #[test]
    fn sync_helpers_work_on_files_dirs_and_bare_names() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        sync_file(&f).unwrap();
        sync_dir(dir.path()).unwrap();
        sync_parent(&f).unwrap();
        sync_parent(Path::new("relative-name")).unwrap();
        assert!(sync_file(&dir.path().join("missing")).is_err());
        let g = dir.path().join("g");
        rename_durable(&f, &g).unwrap();
        assert!(g.exists() && !f.exists());
    }

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
        let copied = copy_sparse(&src, &dst).unwrap();
        assert!(copied < 4 << 20, "copied {copied} bytes");
        assert_eq!(fs::read(&src).unwrap(), fs::read(&dst).unwrap());
        let meta = fs::metadata(&dst).unwrap();
        assert!(meta.blocks() * 512 < 4 << 20, "copy is not sparse");
        assert_eq!(meta.mode() & 0o777, PRIVATE_FILE);
    }

    #[test]
    fn sparse_copy_of_an_all_hole_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        File::create(&src).unwrap().set_len(1 << 20).unwrap();
        let dst = dir.path().join("dst");
        assert_eq!(copy_sparse(&src, &dst).unwrap(), 0);
        assert_eq!(fs::metadata(&dst).unwrap().len(), 1 << 20);
    }

    #[test]
    fn ensure_sparse_creates_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("memory");
        ensure_sparse(&p, 16 << 20).unwrap();
        let meta = fs::metadata(&p).unwrap();
        assert_eq!(meta.len(), 16 << 20);
        assert_eq!(meta.blocks(), 0);
        assert_eq!(meta.mode() & 0o777, PRIVATE_FILE);
        fs::write(&p, b"kept").unwrap();
        ensure_sparse(&p, 16 << 20).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"kept");
    }

    #[test]
    fn checksum_of_known_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("abc");
        fs::write(&p, b"abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        fs::write(&p, b"").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o777, PRIVATE_DIR);
        let f = d.join("f");
        fs::write(&f, b"x").unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        make_private(&f).unwrap();
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, PRIVATE_FILE);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
        drop(create_private(&f).unwrap());
        assert_eq!(fs::metadata(&f).unwrap().mode() & 0o777, PRIVATE_FILE);
        assert_eq!(fs::read(&f).unwrap(), b"");
    }
}
