//! Kernel + initramfs: a real build from Debian packages, cached.

mod common;

use std::collections::HashSet;

use wrenn_images::{initramfs, ImageStore};

#[test]
fn kernel_and_initramfs_are_built_once_and_contain_init_and_modules() {
    let store = ImageStore::new(&common::data_dir());
    let first = store.ensure_kernel().expect("build kernel");
    assert!(first.version.ends_with("-cloud-amd64"), "{}", first.version);
    let kernel_bytes = std::fs::read(&first.kernel).unwrap();
    // bzImage: "HdrS" boot protocol magic at 0x202.
    assert_eq!(&kernel_bytes[0x202..0x206], b"HdrS");

    let mtimes = |k: &wrenn_images::KernelImages| {
        (
            std::fs::metadata(&k.kernel).unwrap().modified().unwrap(),
            std::fs::metadata(&k.initrd).unwrap().modified().unwrap(),
        )
    };
    let before = mtimes(&first);
    let second = store.ensure_kernel().expect("cached kernel");
    assert_eq!(first, second);
    assert_eq!(before, mtimes(&second), "second call must not rebuild");

    let entries = initramfs::read(&first.initrd).expect("parse initramfs");
    let names: HashSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let init = entries.iter().find(|e| e.name == "init").expect("/init");
    assert!(init.is_file() && init.mode & 0o111 != 0);
    let script = String::from_utf8_lossy(&init.data);
    assert!(script.contains("switch_root /newroot"));
    let busybox = entries
        .iter()
        .find(|e| e.name == "bin/busybox")
        .expect("busybox");
    assert!(busybox.data.starts_with(b"\x7fELF"));
    assert!(
        names.contains("bin/sh")
            && names.contains("bin/switch_root")
            && names.contains("dev/console")
    );
    for module in [
        "virtio_mmio",
        "virtio_blk",
        "virtio_console",
        "virtio_net",
        "virtio",
        "virtio_ring",
    ] {
        let entry = entries
            .iter()
            .find(|e| e.name.ends_with(&format!("/{module}.ko")))
            .unwrap_or_else(|| panic!("module {module} missing from initramfs"));
        assert!(
            entry.data.starts_with(b"\x7fELF"),
            "{module} is not an uncompressed ELF"
        );
        assert!(script.contains(&entry.name), "/init does not load {module}");
    }
    // Dependencies are loaded before the modules that need them.
    let pos = |m: &str| script.find(&format!("/{m}.ko")).unwrap();
    assert!(pos("virtio_ring") < pos("virtio_blk"));
    assert!(pos("failover") < pos("net_failover") && pos("net_failover") < pos("virtio_net"));
}

#[test]
fn concurrent_builders_share_one_result_and_clean_up_interrupted_builds() {
    let data = tempfile::tempdir().unwrap();
    let kernel_dir = data.path().join("images/kernel");
    std::fs::create_dir_all(&kernel_dir).unwrap();
    // Left behind by a build that crashed.
    let stale = kernel_dir.join(".tmp-vmlinuz-4242");
    std::fs::write(&stale, b"half a kernel").unwrap();

    let handles: Vec<_> = (0..2)
        .map(|_| {
            let dir = data.path().to_path_buf();
            std::thread::spawn(move || ImageStore::new(&dir).ensure_kernel())
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|h| h.join().unwrap().expect("concurrent build"))
        .collect();
    assert_eq!(results[0], results[1]);
    assert!(
        !stale.exists(),
        "leftover of an interrupted build was not removed"
    );
    let entries = initramfs::read(&results[0].initrd).expect("parse initramfs");
    assert!(entries.iter().any(|e| e.name == "init"));
    let leftovers: Vec<_> = std::fs::read_dir(&kernel_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
