//! Manifests written before they named their VMM driver (fixtures written by the agent of
//! that time) still load, as QEMU's, with every field intact; a snapshot of another driver
//! is refused before anything else is checked.

mod common;

use std::path::{Path, PathBuf};

use wrenn_agent::manifest::{
    CapsuleManifest, CapsuleNetwork, FileRecord, SnapshotManifest, CAPSULE_FORMAT, SNAPSHOT_FORMAT,
};
use wrenn_agent::AgentError;
use wrenn_host::{HostApi, HostStatus, NetworkPolicy};
use wrenn_vmm::VmmIdentity;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

const KERNEL: &str = "/var/lib/wrenn/images/kernel/6.1.0-48-cloud-amd64/vmlinuz";
const INITRD: &str = "/var/lib/wrenn/images/kernel/6.1.0-48-cloud-amd64/initrd-b1.img";
const VERSION: &str = "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)";

/// A snapshot directory holding only the given manifest text.
fn snapshot_dir(json: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(SnapshotManifest::FILE), json).unwrap();
    dir
}

#[test]
fn a_snapshot_manifest_from_before_the_driver_field_is_qemus() {
    let json = std::fs::read(fixture("snapshot-v1-before-driver.json")).unwrap();
    assert!(!String::from_utf8_lossy(&json).contains("driver"));
    let dir = snapshot_dir(&json);
    let m = SnapshotManifest::read(dir.path()).expect("an old snapshot manifest loads");
    assert_eq!(
        m,
        SnapshotManifest {
            format: SNAPSHOT_FORMAT,
            created_at: 1796126053,
            vcpus: 2,
            memory_mb: 768,
            driver: "qemu".into(),
            vmm_version: VERSION.into(),
            accel: "tcg".into(),
            guest_protocol: 1,
            kernel: KERNEL.into(),
            initrd: INITRD.into(),
            state: FileRecord {
                size: 233843,
                sha256: Some(
                    "dddb76fd240f14d8fa4dfcae1ce293d4ac4fd2325ca179d40b3c0e0f0e03ceab".into()
                ),
            },
            memory: FileRecord {
                size: 805306368,
                sha256: None,
            },
            disk: FileRecord {
                size: 458752,
                sha256: None,
            },
            nic: true,
        }
    );
    assert_eq!(m.driver, wrenn_vmm::LEGACY_DRIVER);
    // Written again, it names its driver and reads back the same.
    let out = tempfile::tempdir().unwrap();
    m.store(out.path()).unwrap();
    let text = std::fs::read_to_string(out.path().join(SnapshotManifest::FILE)).unwrap();
    assert!(text.contains("\"driver\": \"qemu\""), "{text}");
    assert_eq!(SnapshotManifest::read(out.path()).unwrap(), m);
}

#[test]
fn a_capsule_manifest_from_before_the_driver_field_is_qemus() {
    let path = fixture("capsule-v1-before-driver.json");
    assert!(!std::fs::read_to_string(&path).unwrap().contains("driver"));
    let m = CapsuleManifest::load(&path).expect("an old capsule manifest loads");
    assert_eq!(m.format, CAPSULE_FORMAT);
    assert_eq!(m.id, "cl-q5y3jn7qokch4qtqt375k3ezm");
    assert_eq!(m.template, "minimal");
    assert_eq!(m.driver, "qemu");
    assert_eq!((m.vcpus, m.memory_mb), (2, 768));
    assert_eq!(m.status, HostStatus::Paused);
    assert_eq!(m.error, None);
    assert_eq!(m.created_at, 1796124698);
    assert_eq!(m.kernel, Path::new(KERNEL));
    assert_eq!(m.initrd, Path::new(INITRD));
    let CapsuleNetwork { policy, nic } = &m.network;
    assert!(*nic);
    assert_eq!(
        *policy,
        NetworkPolicy {
            allow_internet: Some(false),
            allow_out: vec!["10.1.0.0/16".into()],
            deny_out: vec!["0.0.0.0/0".into()],
        }
    );
    let out = tempfile::tempdir().unwrap();
    let again = out.path().join("capsule.json");
    m.store(&again).unwrap();
    let m2 = CapsuleManifest::load(&again).unwrap();
    assert_eq!(
        serde_json::to_value(&m2).unwrap(),
        serde_json::to_value(&m).unwrap()
    );
}

#[test]
fn a_snapshot_of_another_driver_is_refused_first() {
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("snapshot-v1-before-driver.json")).unwrap())
            .unwrap();
    json["driver"] = "firecracker".into();
    json["vmm_version"] = "Firecracker v1.12.0".into();
    // No state, memory or disk files: the driver check comes before any of them.
    let dir = snapshot_dir(&serde_json::to_vec(&json).unwrap());
    let here = VmmIdentity {
        driver: "qemu".into(),
        version: VERSION.into(),
        accel: "tcg".into(),
    };
    let err = SnapshotManifest::verify(
        dir.path(),
        &dir.path().join("memory"),
        &dir.path().join("disk.qcow2"),
        &here,
    )
    .expect_err("another driver's snapshot must be refused");
    let AgentError::BadSnapshot { reason, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(
        reason.contains("firecracker") && reason.contains("qemu"),
        "{reason}"
    );
    // The same manifest under its own driver gets past that check (and then misses files).
    let there = VmmIdentity {
        driver: "firecracker".into(),
        version: "Firecracker v1.12.0".into(),
        accel: "tcg".into(),
    };
    let err = SnapshotManifest::verify(
        dir.path(),
        &dir.path().join("memory"),
        &dir.path().join("disk.qcow2"),
        &there,
    )
    .expect_err("its files are missing");
    assert!(!err.to_string().contains("driver"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capsule_of_another_driver_is_reported_and_left_alone() {
    let th = common::TestHost::new();
    let dir = th.dir.path().join("capsules").join("other-driver");
    std::fs::create_dir_all(&dir).unwrap();
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("capsule-v1-before-driver.json")).unwrap())
            .unwrap();
    json["id"] = "other-driver".into();
    json["driver"] = "firecracker".into();
    let text = serde_json::to_vec_pretty(&json).unwrap();
    std::fs::write(dir.join("capsule.json"), &text).unwrap();
    let host = th.open().await;
    let info = host.get("other-driver").await.expect("listed");
    assert_eq!(info.status, HostStatus::Error);
    let why = info.error.unwrap_or_default();
    assert!(why.contains("firecracker") && why.contains("qemu"), "{why}");
    // Neither adopted nor removed nor rewritten.
    assert_eq!(std::fs::read(dir.join("capsule.json")).unwrap(), text);
}

/// An upgrade brings another VMM version: a base template snapshot made by the old one is not
/// restored (its device state may not load) but rebuilt, and creates keep working.
#[tokio::test(flavor = "multi_thread")]
async fn a_base_template_of_another_vmm_version_is_rebuilt() {
    let th = common::TestHost::with_own_templates();
    let host = th.open().await;
    host.prepare("minimal", 1, 512).await.unwrap();
    let base = th.dir.path().join("templates/.base");
    let dir = std::fs::read_dir(&base)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with("-1c512m"))
        .expect("the booted base template");
    let file = dir.join(SnapshotManifest::FILE);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let built_at = m["created_at"].clone();
    m["vmm_version"] = "QEMU emulator version 7.2.0 (an older host)".into();
    std::fs::write(&file, serde_json::to_vec(&m).unwrap()).unwrap();
    drop(host);

    let host = th.open().await;
    let cap = common::create(&host, "minimal").await;
    assert_eq!(cap.status, HostStatus::Running);
    let now: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_ne!(
        now["vmm_version"], m["vmm_version"],
        "the old snapshot was used"
    );
    assert_eq!(
        now["vmm_version"].as_str(),
        Some(host.vmm().identity().version.as_str())
    );
    assert!(now["created_at"].as_i64() >= built_at.as_i64());
    host.destroy(&cap.id).await.unwrap();
}
