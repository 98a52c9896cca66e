//! A paused capsule holds no vCPUs or memory, so resuming it must fit again: past the host's
//! capacity resume is a capacity error (503 at the API) and the capsule stays paused.

mod common;

use common::{create, TestHost};
use wrenn_envd_client::EnvdClient;
use wrenn_host::{HostApi, HostError, HostStatus};

#[tokio::test(flavor = "multi_thread")]
async fn resume_past_capacity_is_refused_and_stays_paused() {
    let th = TestHost::new();
    let mut cfg = th.config();
    cfg.vcpus_total = 1;
    let host = wrenn_agent::CapsuleManager::open(cfg).await.unwrap();
    let a = create(&host, "minimal").await;
    host.pause(&a.id).await.unwrap();
    let b = create(&host, "minimal").await;
    let err = host.resume(&a.id).await.unwrap_err();
    assert!(
        matches!(&err, HostError::Capacity(m) if m.contains("host is full")),
        "{err:?}"
    );
    assert_eq!(host.get(&a.id).await.unwrap().status, HostStatus::Paused);
    assert_eq!(host.capacity().await.unwrap().vcpus_used, 1);
    host.destroy(&b.id).await.unwrap();
    host.resume(&a.id).await.unwrap();
    let envd = host.guest(&a.id).await.map(EnvdClient::over).unwrap();
    assert_eq!(common::sh_ok(&envd, "echo back").await, "back");
    host.destroy(&a.id).await.unwrap();
}
