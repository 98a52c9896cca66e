//! File operations: stat, list, mkdir, remove, and streaming read/write. Writes go to a temp
//! file in the same directory, are fsynced and renamed into place.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use wrenn_protocol::{EntryInfo, EntryKind, ErrorKind, WriteOptions};

use crate::error::{ApiError, ApiResult};
use crate::users::{self, Names};

/// Largest number of entries one `list` returns.
pub const LIST_LIMIT: usize = 100_000;

/// Checks that `path` is absolute.
pub fn absolute(path: &str) -> ApiResult<PathBuf> {
    if !path.starts_with('/') {
        return Err(ApiError::invalid(format!(
            "path {path:?}: not an absolute path"
        )));
    }
    Ok(PathBuf::from(path))
}

/// Lexical normal form of an absolute path: `//` and `.` collapse, `..` removes the component
/// before it (`/..` is `/`), a trailing slash goes. Nothing on disk is looked at and no
/// symlink is followed (`/a/link/..` is `/a` whatever `link` points to), like `realpath -s`.
pub fn normalize(path: &str) -> ApiResult<PathBuf> {
    use std::path::Component;
    let p = absolute(path)?;
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                parts.pop();
            }
            Component::Normal(n) => parts.push(n),
        }
    }
    let mut out = PathBuf::from("/");
    out.extend(parts);
    Ok(out)
}

/// The path `remove` deletes: `path` normalised lexically ([`normalize`]). The root is
/// refused in every spelling (`/`, `//`, `/.`, `/..`, `/a/..`, …): the check is made on the
/// normal form and the normal form is what gets removed, so a `..` after a symlink cannot
/// lead the removal somewhere the check did not look.
pub fn removal_target(path: &str) -> ApiResult<PathBuf> {
    let p = normalize(path)?;
    if p == Path::new("/") {
        return Err(ApiError::invalid(format!(
            "remove {path:?}: that is the root directory; refusing to remove it"
        )));
    }
    Ok(p)
}

/// Stat of one path (symlinks not followed).
pub fn stat(path: &str) -> ApiResult<EntryInfo> {
    let p = absolute(path)?;
    let meta =
        std::fs::symlink_metadata(&p).map_err(|e| ApiError::io(format!("stat {path}"), e))?;
    Ok(entry(&p, &meta, &Names::load()))
}

fn entry(p: &Path, meta: &std::fs::Metadata, names: &Names) -> EntryInfo {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        EntryKind::Directory
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::File
    };
    let mode = meta.mode();
    EntryInfo {
        name: p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "/".into()),
        path: p.to_string_lossy().into_owned(),
        kind,
        size: meta.len(),
        mode: mode & 0o7777,
        permissions: permissions(kind, mode),
        owner: names.user(meta.uid()),
        group: names.group(meta.gid()),
        modified_at: meta.mtime(),
        symlink_target: ft
            .is_symlink()
            .then(|| {
                std::fs::read_link(p)
                    .ok()
                    .map(|t| t.to_string_lossy().into_owned())
            })
            .flatten(),
    }
}

fn permissions(kind: EntryKind, mode: u32) -> String {
    let mut s = String::with_capacity(10);
    s.push(match kind {
        EntryKind::Directory => 'd',
        EntryKind::Symlink => 'l',
        EntryKind::File => '-',
    });
    for shift in [6u32, 3, 0] {
        let b = (mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// Entries under directory `path` down to `depth` levels, sorted by path.
pub fn list(path: &str, depth: u32) -> ApiResult<Vec<EntryInfo>> {
    let root = absolute(path)?;
    let meta = std::fs::metadata(&root).map_err(|e| ApiError::io(format!("list {path}"), e))?;
    if !meta.is_dir() {
        return Err(ApiError::new(
            ErrorKind::NotADirectory,
            format!("list {path}: not a directory"),
        ));
    }
    let names = Names::load();
    let mut out = Vec::new();
    let mut todo = vec![(root, 1u32)];
    while let Some((dir, level)) = todo.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if level == 1 => return Err(ApiError::io(format!("list {path}"), e)),
            Err(_) => continue,
        };
        for ent in rd.flatten() {
            let p = ent.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() && level < depth.max(1) {
                todo.push((p.clone(), level + 1));
            }
            out.push(entry(&p, &meta, &names));
            if out.len() >= LIST_LIMIT {
                return Err(ApiError::invalid(format!(
                    "list {path}: more than {LIST_LIMIT} entries; use a smaller depth"
                )));
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Creates `path` and its parents; `AlreadyExists` when it exists.
pub fn mkdir(path: &str, owner: Option<&str>) -> ApiResult<EntryInfo> {
    let p = absolute(path)?;
    let owner = owner
        .filter(|o| !o.is_empty())
        .map(users::resolve)
        .transpose()?;
    if let Ok(meta) = std::fs::symlink_metadata(&p) {
        let what = if meta.is_dir() {
            "directory"
        } else {
            "non-directory"
        };
        return Err(ApiError::new(
            ErrorKind::AlreadyExists,
            format!("mkdir {path}: a {what} exists there"),
        ));
    }
    create_dirs(&p, owner.as_ref()).map_err(|e| ApiError::io(format!("mkdir {path}"), e))?;
    stat(path)
}

/// Creates `dir` and its missing parents; those it creates belong to `owner` when given (a
/// directory that already existed keeps its owner).
pub fn create_dirs(dir: &Path, owner: Option<&users::User>) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.exists() {
            break;
        }
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    std::fs::create_dir_all(dir)?;
    if let Some(u) = owner {
        for d in missing.iter().rev() {
            std::os::unix::fs::chown(d, Some(u.uid), Some(u.gid))?;
        }
    }
    Ok(())
}

/// The mount points of envd's mount namespace (`/proc/self/mountinfo`, field 5, with the
/// kernel's octal escapes of space, tab, newline and backslash undone).
fn mount_points() -> Vec<PathBuf> {
    std::fs::read("/proc/self/mountinfo")
        .map(|info| parse_mountinfo(&info))
        .unwrap_or_default()
}

fn parse_mountinfo(info: &[u8]) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    info.split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| {
            let mut out = Vec::with_capacity(field.len());
            let mut i = 0;
            while i < field.len() {
                let oct = field
                    .get(i + 1..i + 4)
                    .filter(|o| field[i] == b'\\' && o.iter().all(|c| (b'0'..=b'7').contains(c)));
                match oct {
                    Some(o) => {
                        out.push(o.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                        i += 4;
                    }
                    None => {
                        out.push(field[i]);
                        i += 1;
                    }
                }
            }
            PathBuf::from(std::ffi::OsString::from_vec(out))
        })
        .collect()
}

/// Refuses to remove `p` (resolved through the symlinks of its parent, not itself) when it is
/// a mount point or has one below it. The kernel refuses to remove a mount point (EBUSY), but
/// only after a recursive removal emptied the file system mounted there: removing `/dev`
/// deleted every device node before it failed. Checked first, so nothing is deleted.
fn refuse_mounts(path: &str, p: &Path, meta: &std::fs::Metadata) -> ApiResult<()> {
    if meta.file_type().is_symlink() {
        return Ok(()); // only the link goes
    }
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return Ok(());
    };
    let Ok(parent) = std::fs::canonicalize(parent) else {
        return Ok(());
    };
    let target = parent.join(name);
    let Some(m) = mount_points().into_iter().find(|m| m.starts_with(&target)) else {
        return Ok(());
    };
    let why = if m == target {
        "a mount point".to_string()
    } else {
        format!("{} is mounted below it", m.display())
    };
    Err(ApiError::invalid(format!(
        "remove {path}: {why}; unmount it first (nothing was removed)"
    )))
}

/// Removes a file, symlink or directory tree at [`removal_target`]`(path)`; never the root,
/// never a mount point or a tree holding one.
pub fn remove(path: &str) -> ApiResult<()> {
    let p = removal_target(path)?;
    let meta =
        std::fs::symlink_metadata(&p).map_err(|e| ApiError::io(format!("remove {path}"), e))?;
    refuse_mounts(path, &p, &meta)?;
    let r = if meta.is_dir() {
        std::fs::remove_dir_all(&p)
    } else {
        std::fs::remove_file(&p)
    };
    r.map_err(|e| ApiError::io(format!("remove {path}"), e))
}

/// Renames `source` to `destination` (both absolute; the root and mount points are refused
/// as by [`remove`]) and answers the stat of the destination. A file or empty directory at
/// the destination is replaced, as rename(2) does; across file systems it fails.
pub fn rename(source: &str, destination: &str) -> ApiResult<EntryInfo> {
    let from = removal_target(source)?;
    let to = removal_target(destination)?;
    let meta =
        std::fs::symlink_metadata(&from).map_err(|e| ApiError::io(format!("move {source}"), e))?;
    refuse_mounts(source, &from, &meta)?;
    std::fs::rename(&from, &to).map_err(|e| {
        if e.raw_os_error() == Some(libc::EXDEV) {
            ApiError::invalid(format!(
                "move {source} to {destination}: they are on different file systems"
            ))
        } else {
            ApiError::io(format!("move {source} to {destination}"), e)
        }
    })?;
    stat(&to.to_string_lossy())
}

/// What a read or write refuses at `path`: a character or block device. A device is not a
/// file with an end: `/dev/zero` and `/dev/urandom` never end, `/dev/mem` or a tty block,
/// others fail in their driver (`/dev/hpet` is busy), and opening one runs its driver. Devices
/// are read with a command through exec (`head -c 4096 /dev/urandom`). FIFOs stay readable:
/// their writer ends them. Sockets cannot be opened at all (ENXIO, see [`ApiError::io`]).
fn refuse_device(op: &str, path: &str, meta: &std::fs::Metadata) -> ApiResult<()> {
    use std::os::unix::fs::FileTypeExt;
    let ft = meta.file_type();
    let what = if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else {
        return Ok(());
    };
    Err(ApiError::invalid(format!(
        "{op} {path}: {what}, not a file; use a command through exec for devices \
         (e.g. head -c 4096 {path})"
    )))
}

/// Opens `path` for a streamed read; errors (missing, directory, device) come before any
/// byte. Returns the file and its size on disk, which is only a hint: `/proc` and `/sys` files
/// report 0 or 4096, FIFOs 0, and a file can grow or shrink while it is read.
/// The body is therefore sent without a Content-Length, up to the end of file that the read
/// finds (docs/envd-protocol.md).
pub async fn open_read(path: &str) -> ApiResult<(std::fs::File, u64)> {
    let p = absolute(path)?;
    // Looked at before the open, so no device driver is opened; checked again on the open
    // file in case the path changed in between.
    let meta = tokio::fs::metadata(&p)
        .await
        .map_err(|e| ApiError::io(format!("read {path}"), e))?;
    refuse_device("read", path, &meta)?;
    let file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY)
        .open(&p)
        .await
        .map_err(|e| ApiError::io(format!("read {path}"), e))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| ApiError::io(format!("read {path}"), e))?;
    if meta.is_dir() {
        return Err(ApiError::new(
            ErrorKind::IsADirectory,
            format!("read {path}: is a directory"),
        ));
    }
    refuse_device("read", path, &meta)?;
    Ok((file.into_std().await, meta.len()))
}

/// Removes the temp file unless the write completed.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The error of creating the temp file of a write in `dir`. "No such file" while `dir` exists
/// means the file system does not let files be created there (`/proc`, `/sys`): that is a
/// refusal, not a missing path.
fn temp_error(path: &str, dir: &Path, e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::NotFound && dir.is_dir() {
        return ApiError::new(
            ErrorKind::PermissionDenied,
            format!(
                "write {path}: {} does not allow creating files (a virtual file system such \
                 as /proc or /sys?); writes go through a new file renamed into place",
                dir.display()
            ),
        );
    }
    ApiError::io(format!("write {path}"), e)
}

/// Writes `body` to `path` (temp file + fsync + rename), applying `opts`.
pub async fn write<S, E>(path: &str, opts: &WriteOptions, mut body: S) -> ApiResult<EntryInfo>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let p = absolute(path)?;
    let (Some(dir), Some(name)) = (p.parent(), p.file_name()) else {
        return Err(ApiError::invalid(format!("write {path}: not a file path")));
    };
    let existing = std::fs::metadata(&p).ok();
    if existing.as_ref().is_some_and(|m| m.is_dir()) {
        return Err(ApiError::new(
            ErrorKind::IsADirectory,
            format!("write {path}: is a directory"),
        ));
    }
    // A write renames a new file into place: over a device it would replace the device node
    // (a write to /dev/null would leave a regular file there).
    if let Some(m) = &existing {
        refuse_device("write", path, m)?;
    }
    let owner = match opts.owner.as_deref().filter(|o| !o.is_empty()) {
        Some(o) => Some(users::resolve(o)?),
        None => None,
    };
    if opts.create_parents.unwrap_or(true) {
        let (dir, owner) = (dir.to_owned(), owner.clone());
        tokio::task::spawn_blocking(move || create_dirs(&dir, owner.as_ref()))
            .await
            .map_err(|e| ApiError::internal(format!("create parents of {path}: {e}")))?
            .map_err(|e| ApiError::io(format!("create parents of {path}"), e))?;
    }
    let tmp = dir.join(format!(
        ".{}.wrenn-{:08x}",
        name.to_string_lossy(),
        rand::random::<u32>()
    ));
    let mut guard = TempGuard(Some(tmp.clone()));
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .await
        .map_err(|e| temp_error(path, dir, e))?
        .into_std()
        .await;
    let mut writer = crate::filestream::Writer::new(file).await;
    while let Some(chunk) = body.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid(format!("write {path}: request body: {e}")))?;
        writer
            .write(chunk)
            .await
            .map_err(|e| ApiError::io(format!("write {path}"), e))?;
    }
    let file = writer
        .finish()
        .await
        .map_err(|e| ApiError::io(format!("write {path}"), e))?;
    let mode = opts
        .mode
        .or(existing.as_ref().map(|m| m.mode() & 0o7777))
        .unwrap_or(0o644);
    let mtime = opts
        .modified_at
        .map(|t| std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.max(0) as u64));
    let (path_owned, tmp_owned, target, dir_owned) =
        (path.to_owned(), tmp.clone(), p.clone(), dir.to_owned());
    // Metadata, fsync, rename and the directory's fsync block: off the async workers.
    tokio::task::spawn_blocking(move || -> ApiResult<()> {
        let path = path_owned;
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| ApiError::io(format!("chmod {path}"), e))?;
        if let Some(u) = owner {
            std::os::unix::fs::chown(&tmp_owned, Some(u.uid), Some(u.gid))
                .map_err(|e| ApiError::io(format!("chown {path}"), e))?;
        }
        if let Some(t) = mtime {
            file.set_modified(t)
                .map_err(|e| ApiError::io(format!("set mtime of {path}"), e))?;
        }
        file.sync_all()
            .map_err(|e| ApiError::io(format!("fsync {path}"), e))?;
        std::fs::rename(&tmp_owned, &target)
            .map_err(|e| ApiError::io(format!("rename into {path}"), e))?;
        if let Ok(d) = std::fs::File::open(&dir_owned) {
            let _ = d.sync_all();
        }
        Ok(())
    })
    .await
    .map_err(|e| ApiError::internal(format!("write {path}: {e}")))??;
    guard.0 = None;
    stat(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_is_lexical() {
        for (given, want) in [
            ("/", "/"),
            ("//", "/"),
            ("///", "/"),
            ("/.", "/"),
            ("/./", "/"),
            ("/..", "/"),
            ("/../..", "/"),
            ("/a/..", "/"),
            ("/a/b/../..", "/"),
            ("/a/./b/../../", "/"),
            ("/tmp/../..", "/"),
            ("/a/b/..", "/a"),
            ("/a//b/./c/", "/a/b/c"),
            ("/../etc", "/etc"),
            ("/a/../b", "/b"),
            ("/a/...", "/a/..."),
        ] {
            assert_eq!(normalize(given).unwrap(), Path::new(want), "{given:?}");
        }
        assert_eq!(
            normalize("a/..").unwrap_err().kind,
            ErrorKind::InvalidArgument
        );
    }

    #[test]
    fn mountinfo_mount_points_are_unescaped() {
        let info = b"22 1 0:21 / / rw,relatime - ext4 /dev/vda rw\n\
            23 22 0:5 / /dev rw,nosuid - devtmpfs devtmpfs rw,mode=755\n\
            40 22 0:33 / /tmp/a\\040b\\134c rw - tmpfs tmpfs rw\n";
        assert_eq!(
            parse_mountinfo(info),
            [
                PathBuf::from("/"),
                PathBuf::from("/dev"),
                PathBuf::from("/tmp/a b\\c")
            ]
        );
    }

    #[test]
    fn the_root_cannot_be_removed_in_any_spelling() {
        for root in [
            "/",
            "//",
            "/.",
            "/./",
            "/..",
            "/../",
            "/a/..",
            "/a/b/../../",
            "/tmp/../..",
            "/./.",
            "/.//..//",
        ] {
            let e = removal_target(root).unwrap_err();
            assert_eq!(e.kind, ErrorKind::InvalidArgument, "{root:?}");
            assert!(e.message.contains("root"), "{root:?}: {}", e.message);
        }
        assert_eq!(removal_target("/a/b/..").unwrap(), Path::new("/a"));
    }
}
