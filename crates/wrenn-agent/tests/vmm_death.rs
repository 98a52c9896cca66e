//! A VMM that ends on its own (killed, or the guest powered off) is seen at once: the capsule
//! becomes `error` with the reason, its capacity and network are released, guest calls are
//! refused as invalid state, and the host reports the change as an event.

mod common;

use std::time::{Duration, Instant};
use wrenn_envd_client::EnvdClient;

use common::{create, network_leftovers, TestHost};
use wrenn_host::{HostApi, HostError, HostStatus};

/// Waits (bounded) until the capsule is in `Error`; returns how long it took.
async fn until_error(host: &wrenn_agent::CapsuleManager, id: &str) -> Duration {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if host.get(id).await.unwrap().status == HostStatus::Error {
            return t.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("capsule {id} never became error");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_vmm_turns_the_capsule_to_error_at_once() {
    let th = TestHost::new();
    let host = th.open().await;
    let mut events = host.events().expect("the agent reports changes");
    let c = create(&host, "minimal").await;
    let before = host.capacity().await.unwrap();
    let pid = host.vmm_pid(&c.id).await.unwrap().unwrap();
    // SAFETY: kill(2) of the capsule's own QEMU.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let took = until_error(&host, &c.id).await;
    println!("error status {took:?} after kill -9");
    let info = host.get(&c.id).await.unwrap();
    assert!(info.error.unwrap().contains("VMM process ended"));
    assert!(
        host.capsule_dir(&c.id).join("console.log").exists(),
        "the console log of a dead guest is kept as evidence"
    );
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event")
        .unwrap();
    assert_eq!(
        (ev.capsule.as_str(), ev.status),
        (c.id.as_str(), HostStatus::Error)
    );
    assert!(matches!(
        host.guest(&c.id).await,
        Err(HostError::InvalidState(_))
    ));
    let after = host.capacity().await.unwrap();
    assert_eq!(after.vcpus_used + c.vcpus, before.vcpus_used);
    assert_eq!(
        after.memory_mb_used + u64::from(c.memory_mb),
        before.memory_mb_used
    );
    assert!(
        network_leftovers(th.dir.path()).is_empty(),
        "its network is gone"
    );
    host.destroy(&c.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_powers_off_is_never_running() {
    let th = TestHost::new();
    let host = th.open().await;
    let c = create(&host, "minimal").await;
    let envd = host.guest(&c.id).await.map(EnvdClient::over).unwrap();
    // envd is PID 1: the kernel powers off when asked to (QEMU runs with -no-reboot).
    envd.start_background(wrenn_protocol::ExecRequest {
        cmd: "/bin/sh".into(),
        args: vec![
            "-c".into(),
            "sleep 0.2; echo o > /proc/sysrq-trigger".into(),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    until_error(&host, &c.id).await;
    assert!(matches!(
        host.pause(&c.id).await,
        Err(HostError::InvalidState(_))
    ));
    host.destroy(&c.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn pausing_and_destroying_are_not_mistaken_for_a_death() {
    let th = TestHost::new();
    let host = th.open().await;
    let c = create(&host, "minimal").await;
    host.pause(&c.id).await.unwrap();
    host.resume(&c.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(host.get(&c.id).await.unwrap().status, HostStatus::Running);
    let envd = host.guest(&c.id).await.map(EnvdClient::over).unwrap();
    assert_eq!(common::sh_ok(&envd, "echo alive").await, "alive");
    host.destroy(&c.id).await.unwrap();
}
