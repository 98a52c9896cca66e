//! `clone_or_copy` on a file system that shares extents (XFS with reflink, on a loop device
//! this test makes) and on one that does not (the test data dir's): the same bytes either
//! way, no data written when cloned, and copy and source independent after writes on each
//! side.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use wrenn_durable::{clone_or_copy, CopyHow};

const MIB: u64 = 1 << 20;

/// An XFS file system with reflink on a loop device, mounted on a temp dir; unmounted and
/// removed on drop.
struct Xfs {
    mnt: tempfile::TempDir,
    image: PathBuf,
}

impl Xfs {
    /// `None` (a skip, refused under CI) when the host cannot make one.
    fn make() -> Option<Xfs> {
        let why = if !Path::new("/usr/sbin/mkfs.xfs").exists() && !on_path("mkfs.xfs") {
            Some("mkfs.xfs is not installed (xfsprogs; scripts/setup-host installs it)")
        } else if !nix_is_root() {
            Some("mounting a loop device needs root")
        } else {
            None
        };
        if let Some(why) = why {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "cannot run under CI: {why}"
            );
            eprintln!("NOTICE: reflink test skipped: {why}");
            return None;
        }
        let image = std::env::temp_dir().join(format!("wrenn-xfs-{}.img", std::process::id()));
        let f = File::create(&image).unwrap();
        f.set_len(512 * MIB).unwrap();
        drop(f);
        run(
            "mkfs.xfs",
            &["-q", "-f", "-m", "reflink=1", image.to_str().unwrap()],
        );
        let mnt = tempfile::tempdir().unwrap();
        run(
            "mount",
            &[
                "-o",
                "loop",
                image.to_str().unwrap(),
                mnt.path().to_str().unwrap(),
            ],
        );
        Some(Xfs { mnt, image })
    }

    fn path(&self) -> &Path {
        self.mnt.path()
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mnt.path()).status();
        let _ = std::fs::remove_file(&self.image);
    }
}

fn on_path(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?} failed");
}

/// A 64 MiB file with data in its first and last 8 MiB and a hole between.
fn sparse_source(dir: &Path) -> PathBuf {
    let p = dir.join("memory");
    let f = File::create(&p).unwrap();
    f.set_len(64 * MIB).unwrap();
    let chunk: Vec<u8> = (0..MIB as usize).map(|i| (i % 251) as u8).collect();
    for at in (0..8).chain(56..64) {
        f.write_all_at(&chunk, at * MIB).unwrap();
    }
    f.sync_all().unwrap();
    p
}

fn read_all(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(p).unwrap().read_to_end(&mut v).unwrap();
    v
}

fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("stat")
        .args(["-f", "-c", "%a %S", dir.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace().map(|n| n.parse::<u64>().unwrap());
    it.next().unwrap() * it.next().unwrap()
}

fn poke(p: &Path, at: u64, byte: u8) {
    let mut f = OpenOptions::new().write(true).open(p).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[byte; 4096]).unwrap();
    f.sync_all().unwrap();
}

/// After writes on each side, each keeps its own bytes.
fn check_independent(src: &Path, dst: &Path) {
    let before = read_all(src);
    poke(dst, 0, 0xAA);
    poke(src, 60 * MIB, 0xBB);
    let (s, d) = (read_all(src), read_all(dst));
    assert_eq!(
        &s[..4096],
        &before[..4096],
        "a write to the copy reached the source"
    );
    assert_eq!(&d[..4096], &[0xAA; 4096][..]);
    assert_eq!(
        &d[60 * MIB as usize..60 * MIB as usize + 4096],
        &before[60 * MIB as usize..60 * MIB as usize + 4096],
        "a write to the source reached the copy"
    );
}

#[test]
fn clones_share_extents_on_xfs() {
    let Some(xfs) = Xfs::make() else { return };
    let src = sparse_source(xfs.path());
    let dst = xfs.path().join("clone");
    let free = free_bytes(xfs.path());
    assert_eq!(clone_or_copy(&src, &dst).unwrap(), CopyHow::Cloned);
    assert_eq!(read_all(&src), read_all(&dst));
    let used = free.saturating_sub(free_bytes(xfs.path()));
    assert!(
        used < 2 * MIB,
        "a clone of 16 MiB of data used {used} bytes"
    );
    assert_eq!(
        std::fs::metadata(&dst).unwrap().len(),
        64 * MIB,
        "same apparent size"
    );
    check_independent(&src, &dst);
    // Two clones of one template are independent of each other as well.
    let (a, b) = (xfs.path().join("a"), xfs.path().join("b"));
    assert_eq!(clone_or_copy(&src, &a).unwrap(), CopyHow::Cloned);
    assert_eq!(clone_or_copy(&src, &b).unwrap(), CopyHow::Cloned);
    check_independent(&a, &b);
}

#[test]
fn elsewhere_it_falls_back_to_a_sparse_copy() {
    // tmpfs shares no extents.
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let src = sparse_source(dir.path());
    let dst = dir.path().join("copy");
    assert_eq!(
        clone_or_copy(&src, &dst).unwrap(),
        CopyHow::Sparse(16 * MIB)
    );
    assert_eq!(read_all(&src), read_all(&dst));
    check_independent(&src, &dst);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    clone_or_copy(&src, &a).unwrap();
    clone_or_copy(&src, &b).unwrap();
    check_independent(&a, &b);
}
