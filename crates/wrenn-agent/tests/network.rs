//! Capsule networking at the agent: a capsule gets its namespace at create and resume, loses
//! it at pause and destroy, and a snapshot made before capsule networking (no network device)
//! still restores, without network, and says so.

mod common;

use common::{create, network_leftovers, sh_ok, TestHost};
use wrenn_agent::manifest::{record, SnapshotManifest, SNAPSHOT_FORMAT};
use wrenn_envd_client::EnvdClient;
use wrenn_host::{CreateCapsule, HostApi, HostStatus, NetworkPolicy};
use wrenn_images::BaseTemplate;
use wrenn_vmm::VmSpec;

#[tokio::test(flavor = "multi_thread")]
async fn namespace_follows_the_vmm_and_policy_is_kept() {
    let th = TestHost::new();
    let host = th.open().await;
    let c = create(&host, "minimal").await;
    assert!(c.network.enabled, "{:?}", c.network);
    assert_eq!(
        network_leftovers(th.dir.path()).len(),
        2,
        "a namespace and a slot"
    );
    let envd = host.guest(&c.id).await.map(EnvdClient::over).unwrap();
    assert_eq!(
        sh_ok(&envd, "cat /sys/class/net/eth0/address").await,
        wrenn_protocol::net::GUEST_MAC
    );
    let policy = NetworkPolicy {
        deny_out: vec!["198.18.0.0/15".into()],
        ..Default::default()
    };
    let info = host.set_network(&c.id, policy.clone()).await.unwrap();
    assert_eq!(info.network.policy, policy);
    let bad = NetworkPolicy {
        allow_out: vec!["nope".into()],
        ..Default::default()
    };
    assert!(matches!(
        host.set_network(&c.id, bad).await,
        Err(wrenn_host::HostError::InvalidRequest(m)) if m.contains("nope")
    ));

    host.pause(&c.id).await.unwrap();
    assert!(
        network_leftovers(th.dir.path()).is_empty(),
        "paused: no namespace"
    );
    drop(host);
    // A restarted agent keeps the policy of the paused capsule and applies it at resume.
    let host = th.open().await;
    assert_eq!(host.get(&c.id).await.unwrap().network.policy, policy);
    host.resume(&c.id).await.unwrap();
    assert_eq!(network_leftovers(th.dir.path()).len(), 2);
    host.destroy(&c.id).await.unwrap();
    assert!(network_leftovers(th.dir.path()).is_empty());
}

/// Writes the kind of snapshot template an agent made before capsule networking: booted
/// without a network device, its manifest without the `nic` field.
async fn old_template(th: &TestHost, host: &wrenn_agent::CapsuleManager, name: &str) {
    let data = th.dir.path();
    let images = wrenn_images::ImageStore::new(data);
    let kernel = images.ensure_kernel().unwrap();
    let rootfs = images
        .ensure_rootfs(BaseTemplate::Minimal, &common::envd_binary())
        .unwrap();
    let dir = data.join("capsules").join(".old");
    std::fs::create_dir_all(&dir).unwrap();
    let disk = dir.join("disk.qcow2");
    let ok = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(std::fs::canonicalize(&rootfs.path).unwrap())
        .arg(&disk)
        .status()
        .unwrap();
    assert!(ok.success());
    let spec = VmSpec {
        dir: dir.clone(),
        kernel: kernel.kernel.clone(),
        initrd: kernel.initrd.clone(),
        cmdline_extra: String::new(),
        vcpus: 1,
        memory_mb: 256,
        memory_file: dir.join("memory"),
        disk,
        nic: None,
    };
    let vm = host.vmm().boot(&spec).await.unwrap();
    let envd = wrenn_envd_client::EnvdClient::connect(
        &vm.agent_socket(),
        std::time::Duration::from_secs(300),
    )
    .await
    .unwrap();
    assert_eq!(sh_ok(&envd, "ls /sys/class/net").await, "lo");
    drop(envd);
    vm.save(&dir.join("state")).await.unwrap();
    vm.stop().await.unwrap();
    let version = std::process::Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .unwrap();
    let m = SnapshotManifest {
        format: SNAPSHOT_FORMAT,
        created_at: 0,
        vcpus: 1,
        memory_mb: 256,
        driver: host.vmm().identity().driver.clone(),
        vmm_version: String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .unwrap()
            .trim()
            .to_owned(),
        accel: host.vmm().identity().accel.clone(),
        guest_protocol: wrenn_protocol::PROTOCOL_VERSION,
        kernel: kernel.kernel.clone(),
        initrd: kernel.initrd.clone(),
        state: record(&dir.join("state"), true).unwrap(),
        memory: record(&dir.join("memory"), false).unwrap(),
        disk: record(&dir.join("disk.qcow2"), false).unwrap(),
        nic: false,
    };
    let mut json = serde_json::to_value(&m).unwrap();
    // Nor did manifests name their VMM driver then.
    json.as_object_mut().unwrap().remove("nic");
    json.as_object_mut().unwrap().remove("driver");
    std::fs::write(
        dir.join("snapshot.json"),
        serde_json::to_vec(&json).unwrap(),
    )
    .unwrap();
    for f in ["qemu.pid", "qemu.id", "qemu.log", "console.log"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    std::fs::rename(&dir, data.join("templates").join(name)).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_from_before_networking_restores_without_network() {
    let th = TestHost::new();
    let host = th.open().await;
    let name = format!("pre-net-{}", &common::new_id()[3..15]);
    old_template(&th, &host, &name).await;
    let result = async {
        let c = host
            .create(CreateCapsule {
                id: common::new_id(),
                template: name.clone(),
                vcpus: 1,
                memory_mb: 256,
                network: Default::default(),
            })
            .await
            .unwrap();
        assert_eq!(c.status, HostStatus::Running);
        assert!(!c.network.enabled);
        assert!(
            c.network
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("no network device"),
            "{:?}",
            c.network
        );
        assert!(
            network_leftovers(th.dir.path()).is_empty(),
            "no namespace for it"
        );
        let envd = host.guest(&c.id).await.map(EnvdClient::over).unwrap();
        assert_eq!(sh_ok(&envd, "ls /sys/class/net").await, "lo");
        host.pause(&c.id).await.unwrap();
        let c2 = host.resume(&c.id).await.unwrap();
        assert!(!c2.network.enabled);
        let envd = host.guest(&c.id).await.map(EnvdClient::over).unwrap();
        assert_eq!(sh_ok(&envd, "echo still here").await, "still here");
        host.destroy(&c.id).await.unwrap();
    };
    result.await;
    let _ = host.delete_template(&name).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn past_the_network_limit_create_is_a_capacity_error() {
    let th = TestHost::new();
    let mut cfg = th.config();
    if let Some(net) = cfg.network.as_mut() {
        net.max_networks = 1;
    }
    let host = wrenn_agent::CapsuleManager::open(cfg).await.unwrap();
    let first = create(&host, "minimal").await;
    let second = common::new_id();
    let err = host
        .create(CreateCapsule {
            id: second.clone(),
            template: "minimal".into(),
            vcpus: 1,
            memory_mb: 512,
            network: Default::default(),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(&err, wrenn_host::HostError::Capacity(m) if m.contains("limit is 1")),
        "{err:?}"
    );
    assert!(matches!(
        host.get(&second).await,
        Err(wrenn_host::HostError::NotFound(_))
    ));
    assert!(!host.capsule_dir(&second).exists());
    host.destroy(&first.id).await.unwrap();
    assert!(network_leftovers(th.dir.path()).is_empty());
}
