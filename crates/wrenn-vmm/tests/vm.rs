//! Real QEMU VMs: boot, kill, save, restore, adopt.

mod common;

use common::{assert_consecutive, fixture, ticks, wait_tick};
use wrenn_vmm::qemu::{process_alive, QemuVm};
use wrenn_vmm::{Vm, Vmm, VmmError};

#[tokio::test]
async fn boot_then_kill() {
    let f = fixture();
    let vm = QemuVm::boot(&f.qemu, &f.spec).await.expect("boot");
    let log = vm.console_log();
    wait_tick(&log, 3).await;
    assert!(vm.is_running().await);
    assert!(process_alive(&f.spec.dir));
    assert!(
        vm.agent_socket().exists(),
        "envd socket {}",
        vm.agent_socket().display()
    );
    let pid = vm.pid();
    vm.kill().await.expect("kill");
    assert!(!process_alive(&f.spec.dir));
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "qemu {pid} still running: {stat}"
    );
}

#[tokio::test]
async fn save_kill_restore_continues_where_it_was() {
    let f = fixture();
    let vm = QemuVm::boot(&f.qemu, &f.spec).await.expect("boot");
    let log = vm.console_log();
    wait_tick(&log, 5).await;
    let state = f.tmp.path().join("state");
    vm.save(&state).await.expect("save");
    assert!(state.is_file());
    assert!(!f.tmp.path().join("state.tmp").exists());
    assert!(!vm.is_running().await, "VM must stay stopped after a save");
    let before = ticks(&log);
    let last = *before.last().unwrap();
    vm.kill().await.expect("kill");
    assert!(!process_alive(&f.spec.dir));

    let vm = QemuVm::restore(&f.qemu, &f.spec, &state)
        .await
        .expect("restore");
    assert!(vm.is_running().await);
    let after = wait_tick(&log, last + 5).await;
    assert_consecutive(&after);
    common::assert_booted_once(&log);
    vm.kill().await.expect("kill restored");
}

#[tokio::test]
async fn failed_save_leaves_the_guest_running() {
    let f = fixture();
    let vm = QemuVm::boot(&f.qemu, &f.spec).await.expect("boot");
    let log = vm.console_log();
    wait_tick(&log, 2).await;
    let bad = f.tmp.path().join("missing-dir/state");
    let err = vm
        .save(&bad)
        .await
        .expect_err("save into a missing directory must fail");
    assert!(
        matches!(err, VmmError::Migration { .. } | VmmError::Qmp { .. }),
        "{err:?}"
    );
    assert!(vm.is_running().await);
    let now = *ticks(&log).last().unwrap();
    let t = wait_tick(&log, now + 3).await;
    assert_consecutive(&t);
    vm.kill().await.expect("kill");
}

#[tokio::test]
async fn adopt_after_dropping_the_handle() {
    let f = fixture();
    let vm = QemuVm::boot(&f.qemu, &f.spec).await.expect("boot");
    let log = vm.console_log();
    wait_tick(&log, 2).await;
    let pid = vm.pid();
    drop(vm);
    assert!(process_alive(&f.spec.dir));
    let vm = QemuVm::adopt(&f.spec).await.expect("adopt");
    assert_eq!(vm.pid(), pid);
    assert!(vm.is_running().await);
    let now = ticks(&log).last().copied().unwrap_or(0);
    wait_tick(&log, now + 3).await;
    vm.kill().await.expect("kill");
    assert!(!process_alive(&f.spec.dir));
    assert!(
        QemuVm::adopt(&f.spec).await.is_err(),
        "nothing to adopt after kill"
    );
}

#[tokio::test]
async fn restore_without_state_fails_clearly() {
    let f = fixture();
    let err = QemuVm::restore(&f.qemu, &f.spec, &f.tmp.path().join("nope"))
        .await
        .expect_err("must fail");
    assert!(matches!(err, VmmError::StateMissing(_)), "{err:?}");
    assert!(!process_alive(&f.spec.dir));
}

#[tokio::test]
async fn qemu_start_errors_are_reported() {
    let mut f = fixture();
    f.spec.kernel = f.tmp.path().join("no-such-kernel");
    let err = QemuVm::boot(&f.qemu, &f.spec).await.expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("no-such-kernel"), "{msg}");
    assert!(!process_alive(&f.spec.dir));
}

#[tokio::test]
async fn pause_resume_twice_and_restore_stopped_waits_for_cont() {
    let f = fixture();
    let vm = QemuVm::boot(&f.qemu, &f.spec).await.expect("boot");
    let log = vm.console_log();
    wait_tick(&log, 3).await;
    let state = f.tmp.path().join("state");
    vm.save(&state).await.expect("first save");
    vm.kill().await.expect("kill");

    let vm = QemuVm::restore(&f.qemu, &f.spec, &state)
        .await
        .expect("first restore");
    let now = *ticks(&log).last().unwrap();
    wait_tick(&log, now + 3).await;
    vm.save(&state)
        .await
        .expect("second save over the first state");
    let last = *ticks(&log).last().unwrap();
    vm.kill().await.expect("kill");

    let vm = QemuVm::restore_stopped(&f.qemu, &f.spec, &state)
        .await
        .expect("restore stopped");
    assert!(!vm.is_running().await);
    // Stopped vCPUs print nothing; poll QEMU a few times to give a running guest the chance.
    for _ in 0..5 {
        assert_eq!(vm.status().await.expect("status"), "paused");
    }
    assert_eq!(*ticks(&log).last().unwrap(), last);
    vm.cont().await.expect("cont");
    assert!(vm.is_running().await);
    let t = wait_tick(&log, last + 3).await;
    assert_consecutive(&t);
    vm.kill().await.expect("kill");
}

#[tokio::test]
async fn a_copy_of_the_snapshot_restores_in_another_directory() {
    let f = fixture();
    let vm = QemuVm::boot(&f.qemu, &f.spec).await.expect("boot");
    let log = vm.console_log();
    wait_tick(&log, 3).await;
    let state = f.tmp.path().join("state");
    vm.save(&state).await.expect("save");
    let last = *ticks(&log).last().unwrap();
    vm.kill().await.expect("kill");

    let mut clone = f.spec.clone();
    clone.dir = f.tmp.path().join("clone");
    std::fs::create_dir_all(&clone.dir).unwrap();
    clone.memory_file = clone.dir.join("memory");
    clone.disk = clone.dir.join("disk.qcow2");
    std::fs::copy(&f.spec.memory_file, &clone.memory_file).unwrap();
    std::fs::copy(&f.spec.disk, &clone.disk).unwrap();

    let a = QemuVm::restore(&f.qemu, &f.spec, &state)
        .await
        .expect("restore original");
    let b = QemuVm::restore(&f.qemu, &clone, &state)
        .await
        .expect("restore clone");
    assert_ne!(a.pid(), b.pid());
    wait_tick(&log, last + 3).await;
    let clone_ticks = wait_tick(&b.console_log(), last + 3).await;
    assert_eq!(
        clone_ticks[0],
        last + 1,
        "the clone continues the original's counter"
    );
    assert_consecutive(&ticks(&log));
    a.kill().await.expect("kill original");
    assert!(
        b.is_running().await,
        "killing one VM leaves the other running"
    );
    b.kill().await.expect("kill clone");
}

#[tokio::test]
async fn a_foreign_pid_is_not_our_qemu() {
    let f = fixture();
    std::fs::create_dir_all(&f.spec.dir).unwrap();
    std::fs::write(
        f.spec.dir.join("qemu.pid"),
        format!("{}\n", std::process::id()),
    )
    .unwrap();
    assert!(!process_alive(&f.spec.dir));
    let err = QemuVm::adopt(&f.spec)
        .await
        .expect_err("must not adopt a foreign process");
    assert!(matches!(err, VmmError::NotRunning { .. }), "{err:?}");
}

#[tokio::test]
async fn cont_after_a_successful_save_resumes_the_guest() {
    let f = fixture();
    let vm = QemuVm::boot(&f.qemu, &f.spec).await.expect("boot");
    let log = vm.console_log();
    wait_tick(&log, 2).await;
    vm.save(&f.tmp.path().join("state")).await.expect("save");
    assert!(!vm.is_running().await);
    let last = *ticks(&log).last().unwrap();
    vm.cont().await.expect("cont after save");
    assert!(vm.is_running().await);
    let t = wait_tick(&log, last + 3).await;
    assert_consecutive(&t);
    vm.kill().await.expect("kill");
}

#[tokio::test]
async fn through_the_driver_trait_boot_save_restore_adopt_stop() {
    let f = fixture();
    let vmm: &dyn Vmm = &f.qemu;
    assert_eq!(vmm.identity().driver, "qemu");
    assert_eq!(vmm.identity().accel, f.qemu.accel().name());
    let vm: Box<dyn Vm> = vmm.boot(&f.spec).await.expect("boot");
    let log = f.spec.dir.join("console.log");
    wait_tick(&log, 3).await;
    assert!(vm.is_running().await);
    assert!(vmm.is_alive(&f.spec.dir));
    assert_eq!(vm.agent_socket(), vmm.agent_socket(&f.spec.dir));
    let state = f.tmp.path().join("state");
    vm.save(&state).await.expect("save");
    assert!(!vm.is_running().await);
    let last = *ticks(&log).last().unwrap();
    let pid = vm.pid();
    let ended = vm.exit_watch();
    vm.stop().await.expect("stop");
    tokio::time::timeout(std::time::Duration::from_secs(5), ended.ended())
        .await
        .expect("the exit watch sees the VMM end");
    assert!(!vmm.is_alive(&f.spec.dir));

    let vm = vmm.restore(&f.spec, &state).await.expect("restore");
    assert_ne!(vm.pid(), pid);
    assert!(!vm.is_running().await, "a restore leaves the vCPUs stopped");
    vm.run().await.expect("run");
    assert!(vm.is_running().await);
    let t = wait_tick(&log, last + 3).await;
    assert_consecutive(&t);
    let pid = vm.pid();
    drop(vm);
    let vm = vmm.adopt(&f.spec).await.expect("adopt");
    assert_eq!(vm.pid(), pid);
    drop(vm);
    vmm.kill_orphan(&f.spec.dir).await;
    assert!(!vmm.is_alive(&f.spec.dir));
    vmm.remove_runtime_files(&f.spec.dir);
    assert!(!f.spec.dir.join("qemu.pid").exists());
    assert!(!f.spec.dir.join("qmp.sock").exists());
    assert!(!log.exists());
}

#[tokio::test]
async fn the_driver_makes_overlay_disks() {
    let f = fixture();
    let base = f.tmp.path().join("root.ext4");
    let disk = f.tmp.path().join(f.qemu.disk_name());
    std::fs::remove_file(&disk).unwrap();
    f.qemu.create_disk(&base, &disk).await.expect("overlay");
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&disk)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("\"format\": \"qcow2\""), "{info}");
    assert!(info.contains("root.ext4"), "{info}");
    let err = f
        .qemu
        .create_disk(&f.tmp.path().join("no-base"), &f.tmp.path().join("x.qcow2"))
        .await
        .expect_err("a missing base fails");
    assert!(matches!(err, VmmError::Disk { .. }), "{err:?}");
}
