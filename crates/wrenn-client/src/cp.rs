//! `wrenn capsule cp`: files and directory trees between this machine and a capsule, over
//! the streaming file routes, with a progress bar of bytes and rate.
//!
//! The rules are `docker cp`'s: a directory is copied with everything in it; a source copied
//! into an existing directory keeps its name there, otherwise it takes the destination's
//! name. `-` as the local side is stdout (download) or stdin (upload) for one file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::api::ApiClient;
use crate::error::ApiError;
use crate::table;
use crate::types::FileEntry;

/// The deepest `files/list` goes in one call.
const LIST_DEPTH: u32 = 32;
/// Bytes read from a local file per upload chunk.
const CHUNK: usize = 256 * 1024;

/// One side of a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A path on this machine (`-`: stdin or stdout).
    Local(PathBuf),
    /// An absolute path in a capsule.
    Remote {
        /// The capsule.
        id: String,
        /// Absolute path, without trailing slashes (except `/` itself).
        path: String,
    },
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    /// An API call failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// A local file or directory could not be read or written.
    #[error("cp: {path}: {source}")]
    Local {
        /// The local path.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The source does not exist in the capsule.
    #[error("not_found: cp: {0}: no such file or directory in the capsule")]
    RemoteMissing(String),
    /// The arguments do not name one local and one capsule side, or a path is unusable.
    #[error("invalid_request: cp: {0}")]
    Usage(String),
}

/// Parses `cl-…:/path` as a capsule side; anything else is a local path.
pub fn parse_location(s: &str) -> Result<Location, CpError> {
    if let Some((id, path)) = s.split_once(':') {
        if id.starts_with("cl-") && !id.contains('/') {
            if !path.starts_with('/') {
                return Err(CpError::Usage(format!(
                    "{s}: the path in a capsule must be absolute ({id}:/…)"
                )));
            }
            return Ok(Location::Remote {
                id: id.to_string(),
                path: normalize(path),
            });
        }
    }
    Ok(Location::Local(PathBuf::from(s)))
}

/// `path` without trailing slashes; `/` stays `/`.
fn normalize(path: &str) -> String {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        "/".into()
    } else {
        t.to_string()
    }
}

/// The last component of a capsule path (empty for `/`).
fn remote_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or_default()
}

fn remote_join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

/// What is at `path` in the capsule: its entry, or `None` when nothing is.
async fn remote_stat(api: &ApiClient, id: &str, path: &str) -> Result<Option<FileEntry>, CpError> {
    if path == "/" {
        return Ok(Some(FileEntry {
            name: "/".into(),
            path: "/".into(),
            kind: "directory".into(),
            ..Default::default()
        }));
    }
    let (parent, name) = match path.rsplit_once('/') {
        Some(("", n)) => ("/", n),
        Some((p, n)) => (p, n),
        None => return Ok(None),
    };
    match api.list_files(id, parent, 1).await {
        Ok(entries) => Ok(entries.into_iter().find(|e| e.name == name)),
        // The parent is missing, or is a file: nothing is at `path`.
        Err(e) if matches!(e.code(), Some("not_found") | Some("invalid_request")) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// What a copy moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Copied {
    /// Regular files copied.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks recreated (downloads only).
    pub links: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

impl Copied {
    /// `2 files, 1 directory, 12.0 KiB`.
    pub fn summary(&self) -> String {
        let plural =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = vec![plural(self.files, "file", "files")];
        if self.dirs > 0 {
            parts.push(plural(self.dirs, "directory", "directories"));
        }
        if self.links > 0 {
            parts.push(plural(self.links, "symlink", "symlinks"));
        }
        parts.push(table::bytes(self.bytes));
        parts.join(", ")
    }
}

/// A bar of `total` bytes on stderr (drawn only on a terminal).
fn progress(total: u64) -> ProgressBar {
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:24} [{wide_bar}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// The last `n` characters of `s`, `…` in front when cut (the bar's file name).
fn tail(s: &str, n: usize) -> String {
    let count = s.chars().count();
    if count <= n {
        return s.to_string();
    }
    let rest: String = s.chars().skip(count - (n - 1)).collect();
    format!("…{rest}")
}

/// `12.0 KiB/s` for `bytes` moved in `elapsed`.
pub fn rate(bytes: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(0.001);
    format!("{}/s", table::bytes((bytes as f64 / secs) as u64))
}

/// Runs `wrenn capsule cp SRC DST`; prints a summary line on stderr.
pub async fn run(api: &ApiClient, src: &str, dst: &str) -> Result<(), CpError> {
    let started = Instant::now();
    let (copied, to) = match (parse_location(src)?, parse_location(dst)?) {
        (Location::Local(from), Location::Remote { id, path }) => {
            let (copied, target) = upload(api, &from, &id, &path).await?;
            (copied, format!("{id}:{target}"))
        }
        (Location::Remote { id, path }, Location::Local(to)) => {
            let (copied, target) = download(api, &id, &path, &to).await?;
            (copied, target.display().to_string())
        }
        (Location::Local(_), Location::Local(_)) => {
            return Err(CpError::Usage(
                "one side must be in a capsule (cl-…:/path)".into(),
            ))
        }
        (Location::Remote { .. }, Location::Remote { .. }) => {
            return Err(CpError::Usage(
                "copying between capsules is not supported; one side must be local".into(),
            ))
        }
    };
    if to != "-" {
        let elapsed = started.elapsed();
        eprintln!(
            "copied {} to {to} in {:.1} s ({})",
            copied.summary(),
            elapsed.as_secs_f64(),
            rate(copied.bytes, elapsed)
        );
    }
    Ok(())
}

fn local_err(path: &Path) -> impl FnOnce(std::io::Error) -> CpError + '_ {
    move |source| CpError::Local {
        path: path.to_path_buf(),
        source,
    }
}

/// A local tree: directories (parents first) and files, relative to the root, and the
/// bytes of all files.
#[derive(Debug, Default)]
struct LocalTree {
    dirs: Vec<PathBuf>,
    files: Vec<(PathBuf, u64)>,
    skipped: Vec<PathBuf>,
    /// Paths whose permission bits differ from what the guest gives new files (0644) and
    /// directories (0755), by mode.
    modes: BTreeMap<u32, Vec<PathBuf>>,
}

/// The mode a new file (`dir` false) or directory gets in the guest.
fn default_mode(dir: bool) -> u32 {
    if dir {
        0o755
    } else {
        0o644
    }
}

impl LocalTree {
    fn note_mode(&mut self, rel: &Path, meta: &std::fs::Metadata) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode != default_mode(meta.is_dir()) {
            self.modes.entry(mode).or_default().push(rel.to_path_buf());
        }
    }
}

fn walk(root: &Path) -> Result<LocalTree, CpError> {
    let mut tree = LocalTree::default();
    let meta = std::fs::metadata(root).map_err(local_err(root))?;
    tree.note_mode(Path::new(""), &meta);
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let dir = root.join(&rel);
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .map_err(local_err(&dir))?
            .collect::<Result<_, _>>()
            .map_err(local_err(&dir))?;
        entries.sort_by_key(|e| e.file_name());
        for ent in entries {
            let path = ent.path();
            let rel = rel.join(ent.file_name());
            let lmeta = std::fs::symlink_metadata(&path).map_err(local_err(&path))?;
            // A symlink is copied as what it points to, unless that is a directory (loops).
            let meta = if lmeta.file_type().is_symlink() {
                match std::fs::metadata(&path) {
                    Ok(m) if m.is_file() => m,
                    _ => {
                        tree.skipped.push(path);
                        continue;
                    }
                }
            } else {
                lmeta
            };
            if meta.is_dir() {
                tree.note_mode(&rel, &meta);
                tree.dirs.push(rel.clone());
                todo.push(rel);
            } else if meta.is_file() {
                tree.note_mode(&rel, &meta);
                tree.files.push((rel, meta.len()));
            } else {
                tree.skipped.push(path);
            }
        }
    }
    tree.dirs.sort();
    Ok(tree)
}

/// `rel` as a `/`-separated capsule path under `base`.
fn remote_under(base: &str, rel: &Path) -> String {
    let mut out = base.to_string();
    for c in rel.components() {
        out = remote_join(&out, &c.as_os_str().to_string_lossy());
    }
    out
}

/// Uploads `from` to `path` (or into it, when it is a directory); returns what was copied
/// and where it went.
async fn upload(
    api: &ApiClient,
    from: &Path,
    id: &str,
    path: &str,
) -> Result<(Copied, String), CpError> {
    let into_dir = matches!(
        remote_stat(api, id, path).await?,
        Some(e) if e.kind == "directory"
    );
    let target_of = |name: &str| {
        if into_dir {
            remote_join(path, name)
        } else {
            path.to_string()
        }
    };
    if from.as_os_str() == "-" {
        if into_dir {
            return Err(CpError::Usage(format!(
                "{id}:{path} is a directory; stdin needs a file name"
            )));
        }
        return Ok((upload_stdin(api, id, path).await?, path.to_string()));
    }
    let meta = std::fs::metadata(from).map_err(local_err(from))?;
    let name = from
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let target = target_of(&name);
    if meta.is_file() {
        let pb = progress(meta.len());
        let r = upload_file(api, id, from, &target, meta.len(), &pb).await;
        pb.finish_and_clear();
        r?;
        let mut tree = LocalTree::default();
        tree.note_mode(Path::new(""), &meta);
        apply_modes(api, id, &target, &tree.modes).await?;
        let copied = Copied {
            files: 1,
            bytes: meta.len(),
            ..Default::default()
        };
        return Ok((copied, target));
    }
    if !meta.is_dir() {
        return Err(CpError::Usage(format!(
            "{}: not a file or directory",
            from.display()
        )));
    }
    if let Some(e) = remote_stat(api, id, &target).await? {
        if e.kind != "directory" {
            return Err(CpError::Usage(format!(
                "{id}:{target} exists and is not a directory"
            )));
        }
    }
    let tree = walk(from)?;
    for s in &tree.skipped {
        eprintln!("cp: skipping {} (not a regular file)", s.display());
    }
    let total: u64 = tree.files.iter().map(|(_, n)| n).sum();
    let mut copied = Copied::default();
    for dir in std::iter::once(PathBuf::new()).chain(tree.dirs.iter().cloned()) {
        match api.mkdir(id, &remote_under(&target, &dir)).await {
            Ok(()) => copied.dirs += 1,
            Err(e) if e.code() == Some("conflict") => {}
            Err(e) => return Err(e.into()),
        }
    }
    let pb = progress(total);
    for (rel, len) in &tree.files {
        let r = upload_file(
            api,
            id,
            &from.join(rel),
            &remote_under(&target, rel),
            *len,
            &pb,
        )
        .await;
        if let Err(e) = r {
            pb.finish_and_clear();
            return Err(e);
        }
        copied.files += 1;
        copied.bytes += len;
    }
    pb.finish_and_clear();
    apply_modes(api, id, &target, &tree.modes).await?;
    Ok((copied, target))
}

/// Gives the uploaded paths their local permission bits (the upload route makes files 0644):
/// one `chmod` per mode and at most 200 paths.
async fn apply_modes(
    api: &ApiClient,
    id: &str,
    target: &str,
    modes: &BTreeMap<u32, Vec<PathBuf>>,
) -> Result<(), CpError> {
    for (mode, paths) in modes {
        for chunk in paths.chunks(200) {
            let mut line = format!("chmod {mode:o}");
            for rel in chunk {
                line.push(' ');
                line.push_str(&crate::cli::shell_quote(&remote_under(target, rel)));
            }
            let req = crate::types::ExecRequest {
                cmd: "/bin/sh".into(),
                args: vec!["-c".into(), line],
                ..Default::default()
            };
            let r = api.exec(id, &req).await?;
            if r.exit_code != 0 {
                let err = String::from_utf8_lossy(&r.stderr_bytes().unwrap_or_default())
                    .trim()
                    .to_string();
                eprintln!("cp: could not set mode {mode:o} in the capsule: {err}");
            }
        }
    }
    Ok(())
}

/// Streams one local file of `len` bytes to `target`, advancing `pb`.
async fn upload_file(
    api: &ApiClient,
    id: &str,
    local: &Path,
    target: &str,
    len: u64,
    pb: &ProgressBar,
) -> Result<(), CpError> {
    pb.set_message(tail(&local.display().to_string(), 24));
    let file = tokio::fs::File::open(local)
        .await
        .map_err(local_err(local))?;
    let reader = file.take(len);
    let bar = pb.clone();
    let stream = futures::stream::unfold(reader, move |mut r| {
        let bar = bar.clone();
        async move {
            let mut buf = vec![0u8; CHUNK];
            match r.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    bar.inc(n as u64);
                    Some((Ok::<_, std::io::Error>(buf), r))
                }
                Err(e) => Some((Err(e), r)),
            }
        }
    });
    api.write_file_stream(id, target, reqwest::Body::wrap_stream(stream), len)
        .await?;
    Ok(())
}

async fn upload_stdin(api: &ApiClient, id: &str, target: &str) -> Result<Copied, CpError> {
    // The multipart part needs its length: stdin is read whole first.
    let mut data = Vec::new();
    tokio::io::stdin()
        .read_to_end(&mut data)
        .await
        .map_err(local_err(Path::new("-")))?;
    let len = data.len() as u64;
    api.write_file_stream(id, target, reqwest::Body::from(data), len)
        .await?;
    Ok(Copied {
        files: 1,
        bytes: len,
        ..Default::default()
    })
}

/// Downloads `path` to `to` (or into it, when it is a directory); returns what was copied
/// and where it went.
async fn download(
    api: &ApiClient,
    id: &str,
    path: &str,
    to: &Path,
) -> Result<(Copied, PathBuf), CpError> {
    let Some(entry) = remote_stat(api, id, path).await? else {
        return Err(CpError::RemoteMissing(format!("{id}:{path}")));
    };
    if to.as_os_str() == "-" {
        if entry.kind == "directory" {
            return Err(CpError::Usage(format!(
                "{id}:{path} is a directory; it cannot go to stdout"
            )));
        }
        let mut out = tokio::io::stdout();
        let n = download_file(api, id, path, &mut out, None).await?;
        out.flush().await.map_err(local_err(to))?;
        let copied = Copied {
            files: 1,
            bytes: n,
            ..Default::default()
        };
        return Ok((copied, to.to_path_buf()));
    }
    let target = if to.is_dir() {
        let name = match remote_name(path) {
            "" => "root",
            n => n,
        };
        to.join(name)
    } else {
        to.to_path_buf()
    };
    if entry.kind != "directory" {
        let pb = progress(entry.size);
        let r = download_to(api, id, &entry, &target, &pb).await;
        pb.finish_and_clear();
        return Ok((r?, target));
    }
    // The whole tree, listed LIST_DEPTH levels at a time.
    let mut entries = Vec::new();
    let mut todo = vec![path.to_string()];
    while let Some(dir) = todo.pop() {
        for e in api.list_files(id, &dir, LIST_DEPTH).await? {
            let below = e.path.strip_prefix(&dir).unwrap_or(&e.path);
            if e.kind == "directory" && below.matches('/').count() >= LIST_DEPTH as usize {
                todo.push(e.path.clone());
            }
            entries.push(e);
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let total = entries
        .iter()
        .filter(|e| e.kind == "file")
        .map(|e| e.size)
        .sum();
    let mut copied = Copied::default();
    std::fs::create_dir_all(&target).map_err(local_err(&target))?;
    copied.dirs += 1;
    let pb = progress(total);
    let mut dir_modes = vec![(target.clone(), entry.mode)];
    for e in &entries {
        let rel = e.path.strip_prefix(path).unwrap_or(&e.path);
        let local = target.join(rel.trim_start_matches('/'));
        match e.kind.as_str() {
            "directory" => {
                std::fs::create_dir_all(&local).map_err(local_err(&local))?;
                dir_modes.push((local, e.mode));
                copied.dirs += 1;
            }
            "symlink" => {
                if let Some(t) = &e.symlink_target {
                    let _ = std::fs::remove_file(&local);
                    std::os::unix::fs::symlink(t, &local).map_err(local_err(&local))?;
                    copied.links += 1;
                }
            }
            _ => {
                let r = download_to(api, id, e, &local, &pb).await;
                match r {
                    Ok(c) => {
                        copied.files += c.files;
                        copied.bytes += c.bytes;
                    }
                    Err(err) => {
                        pb.finish_and_clear();
                        return Err(err);
                    }
                }
            }
        }
    }
    pb.finish_and_clear();
    // Modes last, so a read-only directory does not refuse its own files.
    for (dir, mode) in dir_modes.iter().rev() {
        set_mode(dir, *mode)?;
    }
    Ok((copied, target))
}

fn set_mode(path: &Path, mode: u32) -> Result<(), CpError> {
    use std::os::unix::fs::PermissionsExt;
    if mode == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7777))
        .map_err(local_err(path))
}

/// Downloads the file `entry` to the local path `local`, with its mode.
async fn download_to(
    api: &ApiClient,
    id: &str,
    entry: &FileEntry,
    local: &Path,
    pb: &ProgressBar,
) -> Result<Copied, CpError> {
    pb.set_message(tail(&entry.path, 24));
    let mut file = tokio::fs::File::create(local)
        .await
        .map_err(local_err(local))?;
    let n = download_file(api, id, &entry.path, &mut file, Some(pb)).await?;
    file.flush().await.map_err(local_err(local))?;
    drop(file);
    set_mode(local, entry.mode)?;
    Ok(Copied {
        files: 1,
        bytes: n,
        ..Default::default()
    })
}

/// Streams `path` into `out`; returns the bytes written.
async fn download_file<W: tokio::io::AsyncWrite + Unpin>(
    api: &ApiClient,
    id: &str,
    path: &str,
    out: &mut W,
    pb: Option<&ProgressBar>,
) -> Result<u64, CpError> {
    let resp = api.read_file_stream(id, path).await?;
    let url = api.base().api("/files/stream/read");
    let mut body = resp.bytes_stream();
    let mut n = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ApiError::Stream {
            url: url.clone(),
            source: e.without_url(),
        })?;
        out.write_all(&chunk)
            .await
            .map_err(local_err(Path::new(path)))?;
        n += chunk.len() as u64;
        if let Some(pb) = pb {
            pb.inc(chunk.len() as u64);
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        assert_eq!(
            parse_location("cl-abc:/tmp/x/").unwrap(),
            Location::Remote {
                id: "cl-abc".into(),
                path: "/tmp/x".into()
            }
        );
        assert_eq!(
            parse_location("cl-abc:/").unwrap(),
            Location::Remote {
                id: "cl-abc".into(),
                path: "/".into()
            }
        );
        assert_eq!(
            parse_location("./cl-abc:/x").unwrap(),
            Location::Local("./cl-abc:/x".into())
        );
        assert_eq!(
            parse_location("notes:today").unwrap(),
            Location::Local("notes:today".into())
        );
        let err = parse_location("cl-abc:tmp/x").unwrap_err();
        assert!(err.to_string().contains("must be absolute"), "{err}");
    }

    #[test]
    fn remote_paths() {
        assert_eq!(remote_join("/", "a"), "/a");
        assert_eq!(remote_join("/a", "b"), "/a/b");
        assert_eq!(remote_under("/dst", Path::new("a/b.txt")), "/dst/a/b.txt");
        assert_eq!(remote_name("/a/b"), "b");
        assert_eq!(remote_name("/"), "");
    }

    #[test]
    fn walk_lists_dirs_before_their_files_and_skips_dir_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir(root.join("empty")).unwrap();
        std::fs::write(root.join("top.txt"), b"12345").unwrap();
        std::fs::write(root.join("a/b/deep.bin"), b"xy").unwrap();
        std::os::unix::fs::symlink(root.join("a"), root.join("loop")).unwrap();
        std::os::unix::fs::symlink(root.join("top.txt"), root.join("link.txt")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &str, m: u32| {
            std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(m)).unwrap()
        };
        for d in ["", "a", "a/b"] {
            set(d, 0o755);
        }
        set("empty", 0o700);
        set("a/b/deep.bin", 0o644);
        set("top.txt", 0o755);
        let tree = walk(root).unwrap();
        assert_eq!(
            tree.dirs,
            vec![
                PathBuf::from("a"),
                PathBuf::from("a/b"),
                PathBuf::from("empty")
            ]
        );
        let mut files = tree.files.clone();
        files.sort();
        assert_eq!(
            files,
            vec![
                (PathBuf::from("a/b/deep.bin"), 2),
                (PathBuf::from("link.txt"), 5),
                (PathBuf::from("top.txt"), 5)
            ]
        );
        assert_eq!(tree.skipped, vec![root.join("loop")]);
        // Only what differs from the guest's defaults needs a chmod there (the link is read
        // through, so it has top.txt's mode).
        let expected: BTreeMap<u32, Vec<PathBuf>> = [
            (0o700, vec![PathBuf::from("empty")]),
            (
                0o755,
                vec![PathBuf::from("link.txt"), PathBuf::from("top.txt")],
            ),
        ]
        .into_iter()
        .collect();
        let mut modes = tree.modes.clone();
        modes.values_mut().for_each(|v| v.sort());
        assert_eq!(modes, expected);
    }

    #[test]
    fn summary_and_rate() {
        let c = Copied {
            files: 2,
            dirs: 1,
            links: 0,
            bytes: 12 * 1024,
        };
        assert_eq!(c.summary(), "2 files, 1 directory, 12.0 KiB");
        assert_eq!(rate(2048, Duration::from_secs(2)), "1.0 KiB/s");
        assert_eq!(tail("/tmp/a", 24), "/tmp/a");
        assert_eq!(tail("/very/long/path/to/a/file.txt", 10), "…/file.txt");
    }
}
