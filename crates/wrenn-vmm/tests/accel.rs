//! Accelerator detection on this host.

mod common;

use wrenn_vmm::qemu::{detect_accel, version, Accel};

#[tokio::test]
async fn detects_tcg_here_and_caches_it() {
    // SAFETY of intent: this test binary runs alone in its own process under nextest.
    std::env::remove_var("WRENN_ACCEL");
    let k = common::kernel();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("sub/accel.json");
    let qemu = std::path::Path::new("qemu-system-x86_64");
    let expect = if std::env::var("WRENN_TEST_EXPECT_KVM").as_deref() == Ok("1") {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    let v = version(qemu).await.expect("qemu --version");
    assert!(v.starts_with("QEMU emulator version"), "{v}");
    let accel = detect_accel(qemu, &v, &k.kernel, &k.initrd, &cache)
        .await
        .expect("detect");
    assert_eq!(accel, expect);
    let cached = std::fs::read_to_string(&cache).expect("cache file written");
    assert!(cached.contains(accel.name()), "{cached}");
    // A cached verdict is reused even if it says otherwise (proves the cache is read).
    let flipped = cached.replace(
        &format!("\"{}\"", accel.name()),
        if accel == Accel::Tcg {
            "\"kvm\""
        } else {
            "\"tcg\""
        },
    );
    std::fs::write(&cache, flipped).unwrap();
    let again = detect_accel(qemu, &v, &k.kernel, &k.initrd, &cache)
        .await
        .expect("detect again");
    assert_ne!(again, accel);
}

#[tokio::test]
async fn env_override_wins() {
    std::env::set_var("WRENN_ACCEL", "kvm");
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("none");
    let accel = detect_accel(&missing, "", &missing, &missing, &tmp.path().join("c.json"))
        .await
        .expect("override");
    assert_eq!(accel, Accel::Kvm);
    std::env::set_var("WRENN_ACCEL", "bogus");
    assert!(
        detect_accel(&missing, "", &missing, &missing, &tmp.path().join("c.json"))
            .await
            .is_err()
    );
}
