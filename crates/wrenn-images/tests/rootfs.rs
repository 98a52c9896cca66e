//! Root filesystems: real mmdebstrap + mke2fs builds, cached by content.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use wrenn_images::{BaseTemplate, ImageStore};

/// A fake envd: a copy of /bin/true, with `extra` appended to make its content unique.
fn fake_envd(dir: &Path, name: &str, extra: &[u8]) -> PathBuf {
    let mut bytes = std::fs::read("/bin/true").unwrap();
    bytes.extend_from_slice(extra);
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new("debugfs")
        .args(["-R", request])
        .arg(image)
        .output()
        .expect("run debugfs (e2fsprogs)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Directory entries of the cached trees, with their inode numbers.
fn trees(data: &Path) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut v: Vec<_> = std::fs::read_dir(data.join("images/rootfs/trees"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().ino(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn minimal_rootfs_contains_envd_and_is_cached_by_content() {
    let data = common::data_dir();
    let store = ImageStore::new(&data);
    let tmp = tempfile::tempdir().unwrap();
    let envd = fake_envd(tmp.path(), "envd", b"");

    let image = store
        .ensure_rootfs(BaseTemplate::Minimal, &envd)
        .expect("build minimal rootfs");
    assert!(image.id.starts_with("minimal-"), "{}", image.id);
    assert!(image
        .path
        .file_name()
        .unwrap()
        .to_string_lossy()
        .contains(&image.id));
    let stat = debugfs(&image.path, "stat /usr/local/bin/envd");
    assert!(stat.contains("Type: regular"), "{stat}");
    assert!(
        stat.contains("Mode:  0755") || stat.contains("Mode:  00755"),
        "{stat}"
    );
    assert!(
        stat.contains(&format!(
            "Size: {}",
            std::fs::metadata(&envd).unwrap().len()
        )),
        "{stat}"
    );
    let passwd = debugfs(&image.path, "cat /etc/passwd");
    assert!(passwd.contains("user:x:1000:1000:"), "{passwd}");
    assert_eq!(debugfs(&image.path, "cat /etc/hostname").trim(), "wrenn");
    // The resolver is the gateway, where each capsule's DNS forwarder answers.
    assert_eq!(
        debugfs(&image.path, "cat /etc/resolv.conf"),
        format!("nameserver {}\n", wrenn_protocol::net::GATEWAY_IP)
    );
    // The id is known without building.
    assert_eq!(
        store.rootfs_id(BaseTemplate::Minimal, &envd).unwrap(),
        image.id
    );
    assert!(debugfs(&image.path, "stat /usr/bin/curl").contains("Type: regular"));

    // Same inputs: same image, untouched.
    let mtime = std::fs::metadata(&image.path).unwrap().modified().unwrap();
    let again = store.ensure_rootfs(BaseTemplate::Minimal, &envd).unwrap();
    assert_eq!(again, image);
    assert_eq!(
        std::fs::metadata(&image.path).unwrap().modified().unwrap(),
        mtime
    );
    assert_eq!(store.rootfs_by_id(&image.id), Some(image.clone()));

    // Only envd changes: new id, the cached tree is reused as is, the old image stays.
    let before = trees(&data);
    let unique = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let envd2 = fake_envd(tmp.path(), "envd2", unique.as_bytes());
    let changed = store
        .ensure_rootfs(BaseTemplate::Minimal, &envd2)
        .expect("rebuild with new envd");
    assert_ne!(changed.id, image.id);
    assert_eq!(trees(&data), before, "tree cache must be reused");
    assert!(image.path.is_file());
    let stat = debugfs(&changed.path, "stat /usr/local/bin/envd");
    assert!(
        stat.contains(&format!(
            "Size: {}",
            std::fs::metadata(&envd2).unwrap().len()
        )),
        "{stat}"
    );
    std::fs::remove_file(&changed.path).unwrap();
}

#[test]
fn missing_envd_is_a_clear_error() {
    let store = ImageStore::new(&common::data_dir());
    let err = store
        .ensure_rootfs(BaseTemplate::Minimal, Path::new("/nonexistent/envd"))
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/envd"), "{err}");
}
