//! The control-plane core called directly (no HTTP) over a fake host and a real SQLite
//! store: every lifecycle rule, the errors each operation answers, and the events it emits.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use common::fake_host::FakeHost;
use wrenn_control::access::PortsMode;
use wrenn_control::core::background;
use wrenn_control::core::error::{
    AdmissionError, CreateError, DeleteSnapshotError, DestroyError, NetworkError, SnapshotError,
    TransitionError,
};
use wrenn_control::core::events::{Actor, CapsuleAction, EventKind};
use wrenn_control::core::lifecycle::{CreateSpec, OnTimeout};
use wrenn_control::core::snapshots::{SnapshotRequest, TemplateFilter};
use wrenn_control::core::status::CapsuleStatus;
use wrenn_control::core::Core;
use wrenn_control::store::CapsuleRow;
use wrenn_control::Store;
use wrenn_host::{HostApi, HostStatus, NetworkPolicy, TemplateKind};

struct Fixture {
    core: Core,
    host: Arc<FakeHost>,
    team: String,
    _dir: tempfile::TempDir,
}

async fn fixture_with(host: FakeHost) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("wrenn.db").to_string_lossy())
        .await
        .unwrap();
    let team = store.ensure_team("team-a").await.unwrap().id;
    let host = Arc::new(host);
    let dyn_host: Arc<dyn HostApi> = host.clone();
    let core = Core::new(common::test_config(dir.path()), store, dyn_host);
    Fixture {
        core,
        host,
        team,
        _dir: dir,
    }
}

async fn fixture() -> Fixture {
    fixture_with(FakeHost::new(8)).await
}

fn actor() -> Actor {
    Actor::system("test")
}

fn spec(template: &str) -> CreateSpec {
    CreateSpec {
        template: template.into(),
        vcpus: 1,
        memory_mb: 512,
        timeout_sec: 0,
        metadata: BTreeMap::new(),
        network: NetworkPolicy::default(),
        ports: PortsMode::Public,
        envs: BTreeMap::new(),
        on_timeout: Default::default(),
    }
}

impl Fixture {
    async fn running(&self) -> CapsuleRow {
        let c = self
            .core
            .create_capsule(&self.team, &actor(), spec("minimal"))
            .await
            .unwrap();
        assert_eq!(c.row.status, CapsuleStatus::Running);
        assert!(c.access_token.is_none());
        c.row
    }

    async fn status(&self, row: &CapsuleRow) -> CapsuleStatus {
        self.core.reload(row).await.unwrap().status
    }
}

#[tokio::test]
async fn create_runs_capsules_from_base_templates_and_refuses_the_rest() {
    let f = fixture().await;
    let row = f.running().await;
    assert_eq!(f.host.status(&row.id), Some(HostStatus::Running));

    let mut private = spec("python");
    private.ports = PortsMode::Private;
    let c = f
        .core
        .create_capsule(&f.team, &actor(), private)
        .await
        .unwrap();
    assert!(c.access_token.is_some(), "private ports get a token");

    let e = f
        .core
        .create_capsule(&f.team, &actor(), spec("nope"))
        .await
        .unwrap_err();
    assert!(
        matches!(e, CreateError::TemplateNotFound(ref n) if n == "nope"),
        "{e:?}"
    );

    let mut bad = spec("minimal");
    bad.network = serde_json::from_value(serde_json::json!({"allow_out": ["not-an-ip"]})).unwrap();
    let e = f
        .core
        .create_capsule(&f.team, &actor(), bad)
        .await
        .unwrap_err();
    assert!(matches!(e, CreateError::InvalidPolicy(_)), "{e:?}");

    let mut big = spec("minimal");
    big.vcpus = 64;
    let e = f
        .core
        .create_capsule(&f.team, &actor(), big)
        .await
        .unwrap_err();
    assert!(
        matches!(e, CreateError::Admission(AdmissionError::NoRoom(_))),
        "{e:?}"
    );
    assert_eq!(
        f.host.list_len(),
        2,
        "refused creates left nothing on the host"
    );
}

#[tokio::test]
async fn pause_and_resume_move_only_from_their_starting_status() {
    let f = fixture().await;
    let row = f.running().await;
    let e = f.core.resume_capsule(&row, &actor()).await.unwrap_err();
    assert!(
        matches!(
            e,
            TransitionError::InvalidState {
                status: CapsuleStatus::Running,
                needs: CapsuleStatus::Paused,
                ..
            }
        ),
        "{e:?}"
    );
    let paused = f.core.pause_capsule(&row, &actor()).await.unwrap();
    assert_eq!(paused.status, CapsuleStatus::Paused);
    assert_eq!(f.host.status(&row.id), Some(HostStatus::Paused));
    let e = f.core.pause_capsule(&paused, &actor()).await.unwrap_err();
    assert!(
        matches!(
            e,
            TransitionError::InvalidState {
                status: CapsuleStatus::Paused,
                needs: CapsuleStatus::Running,
                ..
            }
        ),
        "{e:?}"
    );
    let running = f.core.resume_capsule(&paused, &actor()).await.unwrap();
    assert_eq!(running.status, CapsuleStatus::Running);
    assert!(running.started_at.is_some());
}

#[tokio::test]
async fn a_failed_pause_stores_what_the_host_says() {
    let f = fixture().await;
    // The host fails but the VM still runs: the capsule stays running.
    let row = f.running().await;
    f.host.fail_pause.store(true, Ordering::SeqCst);
    let e = f.core.pause_capsule(&row, &actor()).await.unwrap_err();
    assert!(matches!(e, TransitionError::Host(_)), "{e:?}");
    assert_eq!(f.status(&row).await, CapsuleStatus::Running);

    // The VM died: the pause finds it dead and the capsule is stored as error.
    f.host.crash(&row.id);
    let row = f.core.reload(&row).await.unwrap();
    let e = f.core.pause_capsule(&row, &actor()).await.unwrap_err();
    assert!(
        matches!(
            e,
            TransitionError::Dead {
                op: "pause",
                status: CapsuleStatus::Error,
                ..
            }
        ),
        "{e:?}"
    );
    let now = f.core.reload(&row).await.unwrap();
    assert_eq!(now.status, CapsuleStatus::Error);
    assert!(now.error.is_some_and(|m| m.contains("VMM exited")));
}

#[tokio::test]
async fn destroy_ends_any_capsule_once() {
    let f = fixture().await;
    let a = f.running().await;
    let b = f.running().await;
    let b = f.core.pause_capsule(&b, &actor()).await.unwrap();
    for row in [&a, &b] {
        f.core.destroy_capsule(row, &actor()).await.unwrap();
        assert_eq!(f.status(row).await, CapsuleStatus::Stopped);
        assert_eq!(f.host.status(&row.id), None);
    }
    // A stopped capsule: nothing to do, no error.
    let stopped = f.core.reload(&a).await.unwrap();
    f.core.destroy_capsule(&stopped, &actor()).await.unwrap();
    // A capsule the host lost: destroy still ends it.
    let c = f.running().await;
    f.host.forget(&c.id);
    f.core.destroy_capsule(&c, &actor()).await.unwrap();
    assert_eq!(f.status(&c).await, CapsuleStatus::Stopped);
}

#[tokio::test]
async fn snapshots_need_a_running_capsule_and_a_free_name() {
    let f = fixture().await;
    let row = f.running().await;
    let req = |name: &str, overwrite: bool| SnapshotRequest {
        capsule_id: row.id.clone(),
        name: Some(name.into()),
        overwrite,
    };
    let t = f
        .core
        .create_snapshot(&f.team, &actor(), req("snap", false))
        .await
        .unwrap();
    assert_eq!((t.name.as_str(), t.vcpus, t.memory_mb), ("snap", 1, 512));
    assert_eq!(
        f.status(&row).await,
        CapsuleStatus::Running,
        "keeps running"
    );

    let e = f
        .core
        .create_snapshot(&f.team, &actor(), req("snap", false))
        .await
        .unwrap_err();
    assert!(matches!(e, SnapshotError::Exists(_)), "{e:?}");
    let e = f
        .core
        .create_snapshot(&f.team, &actor(), req("minimal", false))
        .await
        .unwrap_err();
    assert!(matches!(e, SnapshotError::BaseName(_)), "{e:?}");
    let e = f
        .core
        .create_snapshot(&f.team, &actor(), req("../x", false))
        .await
        .unwrap_err();
    assert!(matches!(e, SnapshotError::InvalidName(_)), "{e:?}");

    // Overwrite replaces the host template: the old one is deleted.
    let t2 = f
        .core
        .create_snapshot(&f.team, &actor(), req("snap", true))
        .await
        .unwrap();
    assert_ne!(t.host_name, t2.host_name);
    let host_snaps: Vec<String> = f
        .host
        .templates()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == TemplateKind::Snapshot)
        .map(|t| t.name)
        .collect();
    assert_eq!(host_snaps, vec![t2.host_name.clone()]);

    // A capsule from the snapshot gets its shape; a paused capsule cannot be snapshotted.
    let c = f
        .core
        .create_capsule(&f.team, &actor(), spec("snap"))
        .await
        .unwrap();
    assert_eq!(c.row.template, "snap");
    assert_eq!(c.row.host_template, t2.host_name);
    let paused = f.core.pause_capsule(&c.row, &actor()).await.unwrap();
    let e = f
        .core
        .create_snapshot(
            &f.team,
            &actor(),
            SnapshotRequest {
                capsule_id: paused.id.clone(),
                name: None,
                overwrite: false,
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            SnapshotError::NotRunning {
                status: CapsuleStatus::Paused,
                ..
            }
        ),
        "{e:?}"
    );

    // Another team sees neither the capsule nor the snapshot.
    let other = f.core.store.ensure_team("team-b").await.unwrap().id;
    let e = f
        .core
        .create_snapshot(&other, &actor(), req("theirs", false))
        .await
        .unwrap_err();
    assert!(matches!(e, SnapshotError::Lookup(_)), "{e:?}");
    let listed = f
        .core
        .templates(
            &other,
            TemplateFilter {
                base: false,
                snapshots: true,
            },
        )
        .await
        .unwrap();
    assert!(listed.snapshots.is_empty());

    // Deleting: base templates are protected, unknown names are not found.
    let e = f
        .core
        .delete_snapshot(&f.team, &actor(), "minimal")
        .await
        .unwrap_err();
    assert!(matches!(e, DeleteSnapshotError::Protected(_)), "{e:?}");
    let e = f
        .core
        .delete_snapshot(&f.team, &actor(), "nope")
        .await
        .unwrap_err();
    assert!(matches!(e, DeleteSnapshotError::NotFound(_)), "{e:?}");
    f.core
        .delete_snapshot(&f.team, &actor(), "snap")
        .await
        .unwrap();
    assert!(f
        .host
        .templates()
        .await
        .unwrap()
        .iter()
        .all(|t| t.kind == TemplateKind::Base));
}

#[tokio::test]
async fn network_policy_changes_only_while_running_or_paused() {
    let f = fixture().await;
    let row = f.running().await;
    let deny: NetworkPolicy =
        serde_json::from_value(serde_json::json!({"deny_out": ["10.0.0.0/8"]})).unwrap();
    let changed = f.core.set_network(&row, deny.clone()).await.unwrap();
    assert!(changed.network_policy.contains("10.0.0.0/8"));
    let bad: NetworkPolicy =
        serde_json::from_value(serde_json::json!({"deny_out": ["nonsense"]})).unwrap();
    let e = f.core.set_network(&row, bad).await.unwrap_err();
    assert!(matches!(e, NetworkError::InvalidPolicy(_)), "{e:?}");
    f.core.destroy_capsule(&row, &actor()).await.unwrap();
    let stopped = f.core.reload(&row).await.unwrap();
    let e = f.core.set_network(&stopped, deny).await.unwrap_err();
    assert!(
        matches!(
            e,
            NetworkError::InvalidState {
                status: CapsuleStatus::Stopped,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn the_ttl_pauses_only_capsules_idle_for_their_timeout() {
    let f = fixture().await;
    let mut short = spec("minimal");
    short.timeout_sec = 60;
    let idle = f
        .core
        .create_capsule(&f.team, &actor(), short)
        .await
        .unwrap()
        .row;
    let forever = f.running().await;
    let mut events = f.core.events.subscribe();
    let now = wrenn_control::store::now_ms();
    // Not idle long enough yet, and no TTL at all: both refused, both still running.
    for (row, at) in [(&idle, now + 30_000), (&forever, now + 86_400_000)] {
        let e = f.core.pause_idle_capsule(row, at).await.unwrap_err();
        assert!(
            matches!(
                e,
                TransitionError::InvalidState {
                    status: CapsuleStatus::Running,
                    ..
                }
            ),
            "{e:?}"
        );
        assert_eq!(f.status(row).await, CapsuleStatus::Running);
    }
    // A minute and a bit later it is idle: paused, and announced as a TTL pause.
    let paused = f
        .core
        .pause_idle_capsule(&idle, now + 61_000)
        .await
        .unwrap();
    assert_eq!(paused.status, CapsuleStatus::Paused);
    let mut saw = false;
    while let Ok(ev) = events.try_recv() {
        if let EventKind::Capsule {
            action: CapsuleAction::Pause,
            capsule,
            reason,
        } = &ev.kind
        {
            if capsule.id == idle.id && ev.outcome == Some(Ok(())) {
                assert_eq!(reason.as_deref(), Some("ttl_expired"));
                assert_eq!(ev.actor.name, "ttl");
                saw = true;
            }
        }
    }
    assert!(saw, "no TTL pause event");
}

#[tokio::test]
async fn a_capsule_killed_at_its_timeout_is_destroyed_only_when_idle() {
    let f = fixture().await;
    let mut kill = spec("minimal");
    kill.timeout_sec = 60;
    kill.on_timeout = OnTimeout::Kill;
    let row = f
        .core
        .create_capsule(&f.team, &actor(), kill)
        .await
        .unwrap()
        .row;
    assert_eq!(row.on_timeout, "kill");
    let now = wrenn_control::store::now_ms();
    let e = f
        .core
        .destroy_idle_capsule(&row, now + 30_000)
        .await
        .unwrap_err();
    assert!(matches!(e, DestroyError::NoLongerIdle(_)), "{e:?}");
    assert_eq!(f.status(&row).await, CapsuleStatus::Running);
    // A new timeout counts from now: a minute after the create is not enough any more.
    let row = f.core.set_timeout(&row, 120).await.unwrap();
    assert_eq!(row.timeout_sec, 120);
    let later = wrenn_control::store::now_ms();
    assert!(f
        .core
        .destroy_idle_capsule(&row, later + 61_000)
        .await
        .is_err());
    // Idle for its whole new timeout: destroyed.
    f.core
        .destroy_idle_capsule(&row, later + 121_000)
        .await
        .unwrap();
    assert_eq!(f.status(&row).await, CapsuleStatus::Stopped);
}

#[tokio::test]
async fn health_and_reconcile_bring_the_store_in_line_with_the_host() {
    let f = fixture().await;
    let lost = f.running().await;
    let crashed = f.running().await;
    let fine = f.running().await;
    f.host.forget(&lost.id);
    f.host.crash(&crashed.id);
    let mut events = f.core.events.subscribe();
    background::health_pass(&f.core).await;
    assert_eq!(f.status(&lost).await, CapsuleStatus::Missing);
    assert_eq!(f.status(&crashed).await, CapsuleStatus::Error);
    assert_eq!(f.status(&fine).await, CapsuleStatus::Running);
    let mut changes = Vec::new();
    while let Ok(ev) = events.try_recv() {
        if let EventKind::StateChanged { capsule, from, to } = ev.kind {
            changes.push((capsule.id, from, to));
        }
    }
    changes.sort_by(|a, b| a.0.cmp(&b.0));
    let mut want = vec![
        (
            lost.id.clone(),
            CapsuleStatus::Running,
            CapsuleStatus::Missing,
        ),
        (
            crashed.id.clone(),
            CapsuleStatus::Running,
            CapsuleStatus::Error,
        ),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(changes, want);

    // A destroy interrupted by a restart (row left `stopping`) is finished at startup.
    f.core
        .store
        .set_status(&fine.id, CapsuleStatus::Stopping, None)
        .await
        .unwrap();
    background::reconcile(&f.core).await.unwrap();
    assert_eq!(f.status(&fine).await, CapsuleStatus::Stopped);
    assert_eq!(f.host.status(&fine.id), None);
}
