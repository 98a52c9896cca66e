//! Accelerator detection on this host, checked against what the host can really do.
//!
//! The oracle is independent of the probe in `detect_accel`: a real VM booted through the
//! driver under KVM (the ticker disk of `common`) that must print ticks from its userspace
//! within [`KVM_BOOT_WAIT`], three times the probe's own deadline. Where KVM can run that
//! guest, detection must choose KVM and the KVM path (boot, save, restore) is exercised;
//! where it cannot, detection must choose TCG and the KVM path test says why it is skipped.
//! The reason is always found on this host (a `/dev/kvm` that does not open, or a guest that
//! never reaches userspace under KVM), never assumed from an environment variable, so a
//! skip under `CI=true` is a measured fact about the host, not a hidden failure.

mod common;

use std::time::Duration;

use common::{assert_consecutive, fixture_with, ticks, wait_tick, Fixture};
use wrenn_vmm::qemu::{detect_accel, version, Accel, Qemu, QemuVm, PROBE_TIMEOUT};
use wrenn_vmm::Vmm;

/// How long a guest under KVM gets to print its first ticks before we conclude that KVM
/// cannot run a guest on this host (a working KVM boots the ticker in about a second).
const KVM_BOOT_WAIT: Duration = Duration::from_secs(3 * PROBE_TIMEOUT.as_secs());

/// Boots the ticker guest under KVM through the driver. `Err` says, from what was observed,
/// why KVM cannot run a guest here.
async fn boot_under_kvm() -> Result<(Fixture, QemuVm), String> {
    if let Err(e) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return Err(format!("/dev/kvm cannot be opened: {e}"));
    }
    let f = fixture_with(Accel::Kvm);
    assert_eq!(f.qemu.accel(), Accel::Kvm);
    let vm = match QemuVm::boot(&f.qemu, &f.spec).await {
        Ok(vm) => vm,
        Err(e) => return Err(format!("QEMU does not start a guest under KVM: {e}")),
    };
    let log = vm.console_log();
    let deadline = tokio::time::Instant::now() + KVM_BOOT_WAIT;
    while tokio::time::Instant::now() < deadline {
        if ticks(&log).len() >= 3 {
            return Ok((f, vm));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let console = std::fs::read(&log).unwrap_or_default();
    let _ = vm.kill().await;
    Err(format!(
        "/dev/kvm opens, but a guest booted under KVM did not reach userspace in \
         {KVM_BOOT_WAIT:?} ({} bytes of console output)",
        console.len()
    ))
}

#[tokio::test]
async fn detection_matches_what_the_host_can_do_and_is_cached() {
    // This test binary runs alone in its own process under nextest.
    std::env::remove_var("WRENN_ACCEL");
    let oracle = match boot_under_kvm().await {
        Ok((_f, vm)) => {
            vm.kill().await.expect("kill the KVM guest");
            Ok(())
        }
        Err(why) => Err(why),
    };
    let expect = if oracle.is_ok() {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    eprintln!("this host: {expect} ({oracle:?})");

    let k = common::kernel();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("sub/accel.json");
    let qemu = std::path::Path::new("qemu-system-x86_64");
    let v = version(qemu).await.expect("qemu --version");
    assert!(v.starts_with("QEMU emulator version"), "{v}");
    let accel = detect_accel(qemu, &v, &k.kernel, &k.initrd, &cache)
        .await
        .expect("detect");
    assert_eq!(
        accel, expect,
        "detection disagrees with a real boot under KVM: {oracle:?}"
    );
    let cached = std::fs::read_to_string(&cache).expect("cache file written");
    assert!(cached.contains(accel.name()), "{cached}");

    // The driver as the agent opens it makes the same choice (from the same cache).
    let probe = wrenn_vmm::HostProbe {
        kernel: &k.kernel,
        initrd: &k.initrd,
        state_dir: &tmp.path().join("sub"),
    };
    let driver = Qemu::open(qemu, probe).await.expect("open the driver");
    assert_eq!(driver.accel(), expect);
    assert_eq!(driver.identity().accel, expect.name());

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
async fn the_kvm_path_boots_saves_and_restores_where_kvm_works() {
    let (f, vm) = match boot_under_kvm().await {
        Ok(booted) => booted,
        Err(why) => {
            eprintln!("NOTICE: KVM path skipped: KVM cannot run a guest on this host: {why}");
            return;
        }
    };
    let log = vm.console_log();
    wait_tick(&log, 5).await;
    let state = f.tmp.path().join("state");
    vm.save(&state).await.expect("save under KVM");
    let last = *ticks(&log).last().unwrap();
    vm.kill().await.expect("kill");
    let vm = QemuVm::restore(&f.qemu, &f.spec, &state)
        .await
        .expect("restore under KVM");
    let after = wait_tick(&log, last + 5).await;
    assert_consecutive(&after);
    common::assert_booted_once(&log);
    vm.kill().await.expect("kill restored");
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
