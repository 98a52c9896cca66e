//! Shared helpers of the VMM integration tests: a real kernel + initramfs from
//! `wrenn-images`, and a tiny root disk whose "envd" prints `tick N` every 100 ms.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use wrenn_vmm::qemu::{Accel, Qemu};
use wrenn_vmm::VmSpec;

/// Generous: TCG boots on a loaded 2-core host can take long.
pub const WAIT: Duration = Duration::from_secs(240);

/// Shared data dir so all crates' tests reuse the built images.
pub fn data_dir() -> PathBuf {
    std::env::var_os("WRENN_TEST_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/wrenn-test"))
}

/// The guest kernel and initramfs (built once, cached in the data dir).
pub fn kernel() -> wrenn_images::KernelImages {
    wrenn_images::ImageStore::new(&data_dir())
        .ensure_kernel()
        .expect("guest kernel and initramfs")
}

const TICKER: &str = "#!/bin/busybox sh\ni=0\nwhile true; do echo \"tick $i\"; i=$((i+1)); /bin/busybox usleep 100000; done\n";

/// Makes a qcow2 root disk in `dir` whose `/usr/local/bin/envd` prints `tick N` lines.
pub fn ticker_disk(dir: &Path, kernel: &wrenn_images::KernelImages) -> PathBuf {
    let entries = wrenn_images::initramfs::read(&kernel.initrd).expect("read initramfs");
    let busybox = entries
        .iter()
        .find(|e| e.name.trim_start_matches("./") == "bin/busybox")
        .expect("busybox in the initramfs");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("usr/local/bin")).unwrap();
    for d in ["dev", "proc", "sys"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    write_exec(&root.join("bin/busybox"), &busybox.data);
    write_exec(&root.join("usr/local/bin/envd"), TICKER.as_bytes());
    let raw = dir.join("root.ext4");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-d"])
        .arg(&root)
        .arg(&raw)
        .arg("32M"));
    let disk = dir.join("disk.qcow2");
    run(Command::new("qemu-img")
        .args(["convert", "-q", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&disk));
    disk
}

fn write_exec(path: &Path, data: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, data).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A VM directory with a ticker disk, the spec to run it and the QEMU driver to run it
/// under TCG (or `WRENN_ACCEL`).
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub qemu: Qemu,
    pub spec: VmSpec,
}

pub fn fixture() -> Fixture {
    let accel = match std::env::var("WRENN_ACCEL").as_deref() {
        Ok("kvm") => Accel::Kvm,
        _ => Accel::Tcg,
    };
    fixture_with(accel)
}

/// [`fixture`] under the given accelerator.
pub fn fixture_with(accel: Accel) -> Fixture {
    let k = kernel();
    let tmp = tempfile::Builder::new()
        .prefix("vmm")
        .tempdir_in("/var/tmp")
        .unwrap();
    let disk = ticker_disk(tmp.path(), &k);
    let dir = tmp.path().join("vm");
    let binary = PathBuf::from("qemu-system-x86_64");
    let version = std::process::Command::new(&binary)
        .arg("--version")
        .output()
        .expect("qemu --version");
    let version = String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let qemu = Qemu::new(binary, accel, version);
    let spec = VmSpec {
        dir: dir.clone(),
        kernel: k.kernel,
        initrd: k.initrd,
        cmdline_extra: String::new(),
        vcpus: 1,
        memory_mb: 128,
        memory_file: dir.join("memory"),
        disk,
        nic: None,
    };
    Fixture { tmp, qemu, spec }
}

/// Tick numbers printed so far, in log order.
pub fn ticks(log: &Path) -> Vec<u64> {
    let text = String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
    // A kernel message on the same serial console can land in front of a tick on its line.
    text.lines()
        .filter_map(|l| {
            let (_, rest) = l.trim_end_matches('\r').rsplit_once("tick ")?;
            rest.trim().parse().ok()
        })
        .collect()
}

/// Waits until the guest has printed a tick >= `n`; returns all ticks.
pub async fn wait_tick(log: &Path, n: u64) -> Vec<u64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let t = ticks(log);
        if t.last().is_some_and(|&last| last >= n) {
            return t;
        }
        if tokio::time::Instant::now() >= deadline {
            let text =
                String::from_utf8_lossy(&std::fs::read(log).unwrap_or_default()).into_owned();
            panic!("no tick {n} within {WAIT:?}; console:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts the ticks count 0, 1, 2, ... without restarting or skipping.
pub fn assert_consecutive(t: &[u64]) {
    for (i, &n) in t.iter().enumerate() {
        assert_eq!(n, i as u64, "tick sequence broken at index {i}: {t:?}");
    }
}

/// Asserts the console shows one boot only (a restored guest went on, it did not reboot).
pub fn assert_booted_once(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    assert_eq!(
        text.matches("Linux version").count(),
        1,
        "the guest rebooted:\n{text}"
    );
}
