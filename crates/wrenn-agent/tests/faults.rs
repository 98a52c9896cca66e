//! Crash safety of create, destroy and snapshot-as-template: the agent killed (SIGKILL) at
//! each step, and a full disk during create. Each ends in a consistent state: a create that was
//! never acknowledged leaves nothing (no capsule, files, VMM or network); a destroy that was
//! begun is finished at the next start; a snapshot leaves the capsule running or cleanly paused
//! with its state, and the template complete or absent.

mod common;

use std::os::unix::process::ExitStatusExt;
use wrenn_envd_client::EnvdClient;

use common::{create, network_leftovers, new_id, sh_ok, TestHost};
use wrenn_agent::faults::{FaultAction, FaultPoint, Faults};
use wrenn_agent::{AgentConfig, CapsuleManager};
use wrenn_host::{CreateCapsule, HostApi, HostError, HostStatus};

fn request(id: &str, template: &str) -> CreateCapsule {
    CreateCapsule {
        id: id.into(),
        template: template.into(),
        vcpus: 1,
        memory_mb: 512,
        network: Default::default(),
    }
}

/// Run in a child process: create or snapshot with the agent killed at one step.
#[tokio::test(flavor = "multi_thread")]
async fn crash_child_create_or_snapshot() {
    let Ok(dir) = std::env::var("WRENN_FAULT_CHILD_DIR") else {
        return;
    };
    let point = std::env::var("WRENN_FAULT_POINT").unwrap();
    let point = FaultPoint::CREATE
        .into_iter()
        .chain(FaultPoint::SNAPSHOT)
        .chain(FaultPoint::DESTROY)
        .find(|p| format!("{p:?}") == point)
        .unwrap();
    let mut cfg = AgentConfig::new(&dir, common::envd_binary());
    cfg.faults = Faults::at(point, FaultAction::KillAgent);
    let host = CapsuleManager::open(cfg).await.unwrap();
    let id = std::env::var("WRENN_FAULT_ID").unwrap();
    if FaultPoint::CREATE.contains(&point) {
        let _ = host.create(request(&id, "minimal")).await;
    } else if FaultPoint::DESTROY.contains(&point) {
        let _ = host.destroy(&id).await;
    } else {
        let name = std::env::var("WRENN_FAULT_TEMPLATE").unwrap();
        let _ = host.snapshot(&id, &name, false).await;
    }
    panic!("the fault at {point:?} did not fire");
}

fn run_child(th: &TestHost, point: FaultPoint, id: &str, template: &str) {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_create_or_snapshot", "--nocapture"])
        .env("WRENN_FAULT_CHILD_DIR", th.dir.path())
        .env("WRENN_FAULT_POINT", format!("{point:?}"))
        .env("WRENN_FAULT_ID", id)
        .env("WRENN_FAULT_TEMPLATE", template)
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "{point:?}: the child did not die at the fault"
    );
}

fn vmm_alive_in(dir: &std::path::Path) -> bool {
    let out = std::process::Command::new("pgrep")
        .args(["-f", &dir.display().to_string()])
        .output()
        .unwrap();
    !out.stdout.is_empty()
}

/// Asserts the host holds nothing of capsule `id`: unknown to it, no directory, no VMM, no
/// network, no capacity held.
async fn assert_nothing_left(th: &TestHost, host: &CapsuleManager, id: &str, what: &str) {
    assert!(
        matches!(host.get(id).await, Err(HostError::NotFound(_))),
        "{what}: the capsule is still known"
    );
    let dir = host.capsule_dir(id);
    assert!(!dir.exists(), "{what}: {} is left", dir.display());
    assert!(!vmm_alive_in(&dir), "{what}: a VMM is left");
    assert!(
        network_leftovers(th.dir.path()).is_empty(),
        "{what}: a network is left"
    );
    assert_eq!(host.capacity().await.unwrap().vcpus_used, 0, "{what}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_during_create_leaves_nothing() {
    let th = TestHost::new();
    for point in FaultPoint::CREATE {
        let id = new_id();
        run_child(&th, point, &id, "");
        let host = th.open().await;
        assert_nothing_left(
            &th,
            &host,
            &id,
            &format!("{point:?}: a create never acknowledged"),
        )
        .await;
        drop(host);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_during_destroy_finishes_it_at_the_next_start() {
    let th = TestHost::new();
    for point in FaultPoint::DESTROY {
        let host = th.open().await;
        let cap = create(&host, "minimal").await;
        host.release_channels();
        drop(host);
        run_child(&th, point, &cap.id, "");
        let host = th.open().await;
        assert_nothing_left(&th, &host, &cap.id, &format!("{point:?}: a begun destroy")).await;
        drop(host);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_during_snapshot_leaves_the_capsule_and_a_whole_template_or_none() {
    let th = TestHost::new();
    let host = th.open().await;
    let cap = create(&host, "minimal").await;
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    sh_ok(&envd, "echo kept > /root/mark").await;
    drop(envd);
    host.release_channels();
    drop(host);
    for point in FaultPoint::SNAPSHOT {
        let name = format!("fault-{}", &new_id()[3..13]);
        run_child(&th, point, &cap.id, &name);
        let host = th.open().await;
        let status = host.get(&cap.id).await.unwrap().status;
        match status {
            HostStatus::Running => {}
            HostStatus::Paused => {
                host.resume(&cap.id).await.unwrap();
            }
            other => panic!("{point:?}: capsule is {other:?}"),
        }
        let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
        assert_eq!(sh_ok(&envd, "cat /root/mark").await, "kept", "{point:?}");
        let listed = host
            .templates()
            .await
            .unwrap()
            .into_iter()
            .any(|t| t.name == name);
        if listed {
            // A template that exists is whole: a capsule made from it has the capsule's file.
            let clone = host.create(request(&new_id(), &name)).await.unwrap();
            let e = host.guest(&clone.id).await.map(EnvdClient::over).unwrap();
            assert_eq!(sh_ok(&e, "cat /root/mark").await, "kept", "{point:?}");
            host.destroy(&clone.id).await.unwrap();
            host.delete_template(&name).await.unwrap();
        }
        let builds: Vec<String> = std::fs::read_dir(th.dir.path().join("templates"))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // Builds of live processes (other tests share the template store) may run.
            .filter(|n| {
                n.strip_prefix(".build-")
                    .and_then(|r| r.split('-').next())
                    .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
            })
            .collect();
        assert!(
            builds.is_empty(),
            "{point:?}: half-made templates {builds:?}"
        );
        drop(envd);
        host.release_channels();
        drop(host);
    }
    let host = th.open().await;
    host.destroy(&cap.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_during_create_fails_cleanly() {
    let th = TestHost::new();
    let host = th.open().await;
    let capsules = th.dir.path().join("capsules");
    common::mount_tiny_fs(&capsules, "64k");
    let id = new_id();
    let result = host.create(request(&id, "minimal")).await;
    let left: Vec<_> = std::fs::read_dir(&capsules).unwrap().flatten().collect();
    common::unmount(&capsules);
    let err = result.expect_err("create onto a full disk must fail");
    assert!(!err.to_string().is_empty());
    assert!(left.is_empty(), "a failed create left {left:?}");
    assert!(matches!(host.get(&id).await, Err(HostError::NotFound(_))));
    assert!(network_leftovers(th.dir.path()).is_empty());
    assert_eq!(host.capacity().await.unwrap().vcpus_used, 0);
    // With room again, create works.
    let c = create(&host, "minimal").await;
    host.destroy(&c.id).await.unwrap();
}
