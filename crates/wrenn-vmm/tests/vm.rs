//! Real QEMU VMs: boot, kill, save, restore, adopt.

mod common;

use common::{assert_consecutive, fixture, ticks, wait_tick};
use wrenn_vmm::{process_alive, Vm, VmmError};

#[tokio::test]
async fn boot_then_kill() {
    let f = fixture();
    let vm = Vm::boot(&f.spec).await.expect("boot");
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
    let vm = Vm::boot(&f.spec).await.expect("boot");
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

    let vm = Vm::restore(&f.spec, &state).await.expect("restore");
    assert!(vm.is_running().await);
    let after = wait_tick(&log, last + 5).await;
    assert_consecutive(&after);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("Linux version").count(),
        1,
        "the guest rebooted:\n{text}"
    );
    vm.kill().await.expect("kill restored");
}

#[tokio::test]
async fn failed_save_leaves_the_guest_running() {
    let f = fixture();
    let vm = Vm::boot(&f.spec).await.expect("boot");
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
    let vm = Vm::boot(&f.spec).await.expect("boot");
    let log = vm.console_log();
    wait_tick(&log, 2).await;
    let pid = vm.pid();
    drop(vm);
    assert!(process_alive(&f.spec.dir));
    let vm = Vm::adopt(&f.spec).await.expect("adopt");
    assert_eq!(vm.pid(), pid);
    assert!(vm.is_running().await);
    let now = ticks(&log).last().copied().unwrap_or(0);
    wait_tick(&log, now + 3).await;
    vm.kill().await.expect("kill");
    assert!(!process_alive(&f.spec.dir));
    assert!(
        Vm::adopt(&f.spec).await.is_err(),
        "nothing to adopt after kill"
    );
}

#[tokio::test]
async fn restore_without_state_fails_clearly() {
    let f = fixture();
    let err = Vm::restore(&f.spec, &f.tmp.path().join("nope"))
        .await
        .expect_err("must fail");
    assert!(matches!(err, VmmError::StateMissing(_)), "{err:?}");
    assert!(!process_alive(&f.spec.dir));
}

#[tokio::test]
async fn qemu_start_errors_are_reported() {
    let mut f = fixture();
    f.spec.kernel = f.tmp.path().join("no-such-kernel");
    let err = Vm::boot(&f.spec).await.expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("no-such-kernel"), "{msg}");
    assert!(!process_alive(&f.spec.dir));
}

#[tokio::test]
async fn pause_resume_twice_and_restore_stopped_waits_for_cont() {
    let f = fixture();
    let vm = Vm::boot(&f.spec).await.expect("boot");
    let log = vm.console_log();
    wait_tick(&log, 3).await;
    let state = f.tmp.path().join("state");
    vm.save(&state).await.expect("first save");
    vm.kill().await.expect("kill");

    let vm = Vm::restore(&f.spec, &state).await.expect("first restore");
    let now = *ticks(&log).last().unwrap();
    wait_tick(&log, now + 3).await;
    vm.save(&state)
        .await
        .expect("second save over the first state");
    let last = *ticks(&log).last().unwrap();
    vm.kill().await.expect("kill");

    let vm = Vm::restore_stopped(&f.spec, &state)
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
    let vm = Vm::boot(&f.spec).await.expect("boot");
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

    let a = Vm::restore(&f.spec, &state)
        .await
        .expect("restore original");
    let b = Vm::restore(&clone, &state).await.expect("restore clone");
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
    let err = Vm::adopt(&f.spec)
        .await
        .expect_err("must not adopt a foreign process");
    assert!(matches!(err, VmmError::NotRunning { .. }), "{err:?}");
}

#[tokio::test]
async fn cont_after_a_successful_save_resumes_the_guest() {
    let f = fixture();
    let vm = Vm::boot(&f.spec).await.expect("boot");
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
