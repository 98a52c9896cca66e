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
