//! The build context: a tar archive (optionally gzip-compressed) of the files `COPY` takes,
//! read once into memory with every path checked, then resolved per `COPY` into the files to
//! write in the capsule.

use std::collections::BTreeMap;
use std::io::Read;

/// Largest archive accepted, in bytes (compressed or not).
pub const MAX_ARCHIVE_BYTES: usize = 64 * 1024 * 1024;
/// Largest total of file contents once unpacked.
pub const MAX_UNPACKED_BYTES: u64 = 256 * 1024 * 1024;
/// Most entries one archive may hold.
pub const MAX_ENTRIES: usize = 10_000;

/// Why an archive was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ContextError {
    /// Over one of the limits.
    #[error("build context: {0}")]
    TooLarge(String),
    /// Not a tar (or tar.gz) archive, or a damaged one.
    #[error("build context is not a readable tar archive: {0}")]
    Unreadable(String),
    /// An entry whose path leaves the context or cannot be written.
    #[error("build context entry {path:?}: {why}")]
    BadEntry {
        /// The path as archived.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `COPY` source the archive lacks.
    #[error("line {line}: COPY source {source_path:?} is not in the build context")]
    Missing {
        /// Line of the `COPY`.
        line: usize,
        /// The source.
        source_path: String,
    },
}

/// What one context entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symbolic link and its target (as archived, not followed).
    Symlink(String),
}

/// One entry: its kind and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// Permission bits (`0o7777` at most).
    pub mode: u32,
}

/// The context: normalised relative path → entry (directories implied by deeper entries
/// need no entry of their own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildContext {
    entries: BTreeMap<String, Entry>,
}

/// One thing to make in the capsule for a `COPY`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement<'a> {
    /// Absolute path in the capsule.
    pub dest: String,
    /// The entry to put there.
    pub entry: &'a Entry,
}

impl BuildContext {
    /// Reads an archive (plain tar, or gzip-compressed tar).
    pub fn from_archive(bytes: &[u8]) -> Result<BuildContext, ContextError> {
        if bytes.len() > MAX_ARCHIVE_BYTES {
            return Err(ContextError::TooLarge(format!(
                "the archive has {} bytes, more than {MAX_ARCHIVE_BYTES}",
                bytes.len()
            )));
        }
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let limited = flate2::read::GzDecoder::new(bytes).take(MAX_UNPACKED_BYTES * 2);
            Self::read_tar(limited)
        } else {
            Self::read_tar(bytes)
        }
    }

    fn read_tar(reader: impl Read) -> Result<BuildContext, ContextError> {
        let unreadable = |e: std::io::Error| ContextError::Unreadable(e.to_string());
        let mut archive = tar::Archive::new(reader);
        let mut entries = BTreeMap::new();
        let mut total: u64 = 0;
        for (n, item) in archive.entries().map_err(unreadable)?.enumerate() {
            if n >= MAX_ENTRIES {
                return Err(ContextError::TooLarge(format!(
                    "more than {MAX_ENTRIES} entries"
                )));
            }
            let mut item = item.map_err(unreadable)?;
            let raw = String::from_utf8_lossy(&item.path_bytes()).into_owned();
            let Some(path) = normalise(&raw) else {
                return Err(ContextError::BadEntry {
                    path: raw,
                    why: "absolute, or leaves the context with ..",
                });
            };
            let mode = item.header().mode().map_err(unreadable)? & 0o7777;
            let kind = match item.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    total += item.size();
                    if total > MAX_UNPACKED_BYTES {
                        return Err(ContextError::TooLarge(format!(
                            "files of more than {MAX_UNPACKED_BYTES} bytes in all"
                        )));
                    }
                    let mut data = Vec::with_capacity(item.size().min(1 << 20) as usize);
                    item.read_to_end(&mut data).map_err(unreadable)?;
                    EntryKind::File(data)
                }
                tar::EntryType::Directory => EntryKind::Dir,
                tar::EntryType::Symlink => {
                    let target = item
                        .link_name_bytes()
                        .map(|b| String::from_utf8_lossy(&b).into_owned())
                        .unwrap_or_default();
                    if target.is_empty() || target.contains('\0') {
                        return Err(ContextError::BadEntry {
                            path: raw,
                            why: "a symbolic link without a target",
                        });
                    }
                    EntryKind::Symlink(target)
                }
                // Metadata records of the tar formats themselves.
                tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink => continue,
                _ => {
                    return Err(ContextError::BadEntry {
                        path: raw,
                        why: "only files, directories and symbolic links can be copied",
                    })
                }
            };
            if path == "." && kind != EntryKind::Dir {
                return Err(ContextError::BadEntry {
                    path: raw,
                    why: "the context root must be a directory",
                });
            }
            entries.insert(path, Entry { kind, mode });
        }
        Ok(BuildContext { entries })
    }

    /// An empty context (no archive given).
    pub fn empty() -> BuildContext {
        BuildContext::default()
    }

    /// Whether `source` (a normalised relative path, `.` for everything) is in the context.
    pub fn contains(&self, source: &str) -> bool {
        source == "." && !self.entries.is_empty()
            || self.entries.contains_key(source)
            || self.under(source).next().is_some()
    }

    fn under<'a>(&'a self, dir: &str) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        let prefix = if dir == "." {
            String::new()
        } else {
            format!("{dir}/")
        };
        self.entries
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(|(k, _)| k.as_str() != ".")
    }

    /// What a `COPY` of `sources` to `dest` puts where, parents before children. A file
    /// source goes to `dest` itself unless `dest_is_dir` (then into it, under its own name);
    /// a directory source's contents go into `dest`.
    pub fn placements(
        &self,
        sources: &[String],
        dest: &str,
        dest_is_dir: bool,
    ) -> Vec<Placement<'_>> {
        let mut out = Vec::new();
        for source in sources {
            match self.entries.get(source.as_str()) {
                Some(entry) if !matches!(entry.kind, EntryKind::Dir) => {
                    let target = if dest_is_dir {
                        join(dest, source.rsplit('/').next().unwrap_or(source))
                    } else {
                        dest.to_owned()
                    };
                    out.push(Placement {
                        dest: target,
                        entry,
                    });
                }
                _ => {
                    let skip = if source == "." { 0 } else { source.len() + 1 };
                    for (path, entry) in self.under(source) {
                        out.push(Placement {
                            dest: join(dest, &path[skip..]),
                            entry,
                        });
                    }
                }
            }
        }
        out
    }
}

fn join(dir: &str, rel: &str) -> String {
    if dir.ends_with('/') {
        format!("{dir}{rel}")
    } else {
        format!("{dir}/{rel}")
    }
}

/// A normalised relative path (`a/b`), `.` for the root; `None` for one that is absolute or
/// climbs out with `..`, or holds a NUL (the recipe's rule for `COPY` sources).
fn normalise(raw: &str) -> Option<String> {
    if raw.contains('\0') {
        return None;
    }
    wrenn_recipe::context_path(raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut h = tar::Header::new_gnu();
            match data {
                Some(d) => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(d.len() as u64);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, *d).unwrap();
                }
                None => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_size(0);
                    h.set_mode(0o755);
                    b.append_data(&mut h, path, &[][..]).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn copies_resolve_like_a_user_expects() {
        let ctx = BuildContext::from_archive(&archive(&[
            ("./app/", None),
            ("./app/main.py", Some(b"print(1)")),
            ("./app/lib/util.py", Some(b"x = 1")),
            ("./notes.txt", Some(b"hi")),
        ]))
        .unwrap();
        assert!(ctx.contains("app") && ctx.contains("notes.txt") && ctx.contains("."));
        assert!(!ctx.contains("missing") && !ctx.contains("ap"));
        let dests = |p: Vec<Placement<'_>>| p.into_iter().map(|p| p.dest).collect::<Vec<_>>();
        assert_eq!(
            dests(ctx.placements(&["notes.txt".into()], "/etc/n.txt", false)),
            ["/etc/n.txt"]
        );
        assert_eq!(
            dests(ctx.placements(&["notes.txt".into()], "/etc", true)),
            ["/etc/notes.txt"]
        );
        assert_eq!(
            dests(ctx.placements(&["app".into()], "/srv/app", false)),
            ["/srv/app/lib/util.py", "/srv/app/main.py"]
        );
        assert_eq!(dests(ctx.placements(&[".".into()], "/", true)).len(), 4);
    }

    #[test]
    fn gzip_archives_are_read_too() {
        use std::io::Write;
        let plain = archive(&[("a.txt", Some(b"hello"))]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let ctx = BuildContext::from_archive(&gz.finish().unwrap()).unwrap();
        let p = ctx.placements(&["a.txt".into()], "/x", false);
        assert_eq!(p[0].entry.kind, EntryKind::File(b"hello".to_vec()));
        assert_eq!(p[0].entry.mode, 0o755);
    }

    #[test]
    fn escaping_and_garbage_archives_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`; write the name into the header directly.
        h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../evil.x");
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let err = BuildContext::from_archive(&b.into_inner().unwrap()).unwrap_err();
        assert!(matches!(err, ContextError::BadEntry { .. }), "{err}");
        let err =
            BuildContext::from_archive(b"this is not a tar archive at all, just text").unwrap_err();
        assert!(matches!(err, ContextError::Unreadable(_)), "{err}");
        assert_eq!(normalise("a/../../b"), None);
        assert_eq!(normalise("./a//b/./c/"), Some("a/b/c".into()));
    }
}
