//! The `newc` cpio format of Linux initramfs: a writer and a reader.

use crate::error::{ImageError, Result};

const MAGIC: &[u8; 6] = b"070701";
const TRAILER: &str = "TRAILER!!!";
const HEADER_LEN: usize = 110;

/// File type bits of `mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// One archive member as read back by [`parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the archive, without a leading `/`.
    pub name: String,
    /// Full mode (type and permission bits).
    pub mode: u32,
    /// File contents, or the target of a symlink.
    pub data: Vec<u8>,
    /// Device number (major, minor) for device nodes.
    pub rdev: (u32, u32),
}

impl Entry {
    /// True for a regular file.
    pub fn is_file(&self) -> bool {
        self.mode & 0o170000 == S_IFREG
    }
    /// True for a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & 0o170000 == S_IFDIR
    }
    /// True for a symlink.
    pub fn is_symlink(&self) -> bool {
        self.mode & 0o170000 == S_IFLNK
    }
}

/// Builds a `newc` archive in memory. Timestamps and owners are fixed (0) so the same
/// inputs give the same bytes.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    next_ino: u32,
}

impl Writer {
    /// An empty archive.
    pub fn new() -> Self {
        Writer {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    /// Adds a directory.
    pub fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[]);
    }

    /// Adds a regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data);
    }

    /// Adds a symlink pointing at `target`.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes());
    }

    /// Adds a character device node.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[]);
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, 1, (0, 0), &[]);
        self.out
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) {
        let name = name.trim_start_matches('/');
        let ino = if name == TRAILER { 0 } else { self.next_ino };
        self.next_ino += 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(MAGIC);
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

/// Parses a `newc` archive (uncompressed) into its members, up to the trailer.
pub fn parse(bytes: &[u8]) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    loop {
        let header = bytes
            .get(pos..pos + HEADER_LEN)
            .ok_or_else(|| ImageError::Cpio(format!("truncated header at offset {pos}")))?;
        if &header[..6] != MAGIC {
            return Err(ImageError::Cpio(format!("bad magic at offset {pos}")));
        }
        let field = |i: usize| -> Result<u32> {
            let s = std::str::from_utf8(&header[6 + i * 8..14 + i * 8])
                .map_err(|_| ImageError::Cpio(format!("non-ASCII header at offset {pos}")))?;
            u32::from_str_radix(s, 16)
                .map_err(|_| ImageError::Cpio(format!("bad hex field at offset {pos}")))
        };
        let mode = field(1)?;
        let size = field(6)? as usize;
        let rdev = (field(9)?, field(10)?);
        let namesize = field(11)? as usize;
        let name_start = pos + HEADER_LEN;
        let name_bytes = bytes
            .get(name_start..name_start + namesize)
            .ok_or_else(|| ImageError::Cpio(format!("truncated name at offset {pos}")))?;
        let name = String::from_utf8_lossy(name_bytes.strip_suffix(&[0]).unwrap_or(name_bytes))
            .into_owned();
        let data_start = align4(name_start + namesize);
        let data = bytes
            .get(data_start..data_start + size)
            .ok_or_else(|| ImageError::Cpio(format!("truncated data of {name}")))?
            .to_vec();
        pos = align4(data_start + size);
        if name == TRAILER {
            return Ok(entries);
        }
        entries.push(Entry {
            name,
            mode,
            data,
            rdev,
        });
    }
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_archive_reads_back() {
        let mut w = Writer::new();
        w.dir("bin", 0o755);
        w.file("/bin/busybox", 0o755, b"hello");
        w.symlink("bin/sh", "busybox");
        w.char_device("dev/console", 0o600, 5, 1);
        let bytes = w.finish();
        assert_eq!(bytes.len() % 4, 0);
        let entries = parse(&bytes).unwrap();
        assert_eq!(entries.len(), 4);
        assert!(entries[0].is_dir());
        assert_eq!(entries[1].name, "bin/busybox");
        assert!(entries[1].is_file());
        assert_eq!(entries[1].mode & 0o777, 0o755);
        assert_eq!(entries[1].data, b"hello");
        assert!(entries[2].is_symlink());
        assert_eq!(entries[2].data, b"busybox");
        assert_eq!(entries[3].rdev, (5, 1));
    }

    #[test]
    fn truncated_archive_is_an_error() {
        let mut w = Writer::new();
        w.file("a", 0o644, b"0123456789");
        let bytes = w.finish();
        assert!(parse(&bytes[..bytes.len() - 130]).is_err());
        assert!(parse(b"garbage").is_err());
    }
}
