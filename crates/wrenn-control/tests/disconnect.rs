//! A client that goes away in the middle of pause, resume, snapshot or destroy (its request
//! cut off at several points while the host works) leaves no capsule in a transitional
//! status and no host template that no snapshot row names: the core finishes each operation.

mod common;

use std::time::Duration;

use common::fake_host::FakeHost;
use common::{Db, Server};
use reqwest::Method;
use serde_json::json;
use wrenn_host::{HostApi, TemplateKind};

/// How long each host operation of the fake takes.
const HOST_OP: Duration = Duration::from_millis(600);

/// Sends a request and gives up after `cut`, closing the connection; asserts it was cut off.
async fn cut_off(
    s: &Server,
    method: Method,
    path: &str,
    body: Option<serde_json::Value>,
    cut: Duration,
) {
    let mut req = s.req(method, path).timeout(cut);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await;
    assert!(
        r.as_ref().is_err_and(|e| e.is_timeout()),
        "{path} answered before the cut at {cut:?}: {r:?}"
    );
}

/// Every snapshot template the host holds is named by a stored row, and the other way round.
async fn no_orphan_templates(s: &Server) {
    let mut on_host: Vec<String> = s
        .host
        .templates()
        .await
        .unwrap()
        .into_iter()
        .filter(|t| t.kind == TemplateKind::Snapshot)
        .map(|t| t.name)
        .collect();
    let team = s.store.team_by_name("team-a").await.unwrap().unwrap();
    let mut stored: Vec<String> = s
        .store
        .list_templates(&team.id)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.host_name)
        .collect();
    on_host.sort();
    stored.sort();
    assert_eq!(on_host, stored, "host templates and snapshot rows differ");
}

async fn disconnects_do_not_strand_capsules(db: Db) {
    let mut host = FakeHost::new(16);
    host.op_delay = HOST_OP;
    let s = Server::start(db, host).await;
    // Early (before the host is asked), while the host works, and just before it is done.
    let cuts = [
        Duration::from_millis(20),
        HOST_OP / 2,
        HOST_OP - Duration::from_millis(30),
    ];
    for (n, cut) in cuts.into_iter().enumerate() {
        let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
        let base = format!("/v1/capsules/{id}");

        cut_off(&s, Method::POST, &format!("{base}/pause"), None, cut).await;
        s.wait_status(&id, "paused").await;

        cut_off(&s, Method::POST, &format!("{base}/resume"), None, cut).await;
        s.wait_status(&id, "running").await;

        let name = format!("cut-{n}");
        cut_off(
            &s,
            Method::POST,
            "/v1/snapshots",
            Some(json!({"sandbox_id": id, "name": name})),
            cut,
        )
        .await;
        s.wait_status(&id, "running").await;
        // The snapshot was finished and stored under its name.
        let mut listed = false;
        for _ in 0..100 {
            let list: Vec<serde_json::Value> = s
                .req(Method::GET, "/v1/snapshots?type=snapshot")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if list.iter().any(|t| t["name"] == name.as_str()) {
                listed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            listed,
            "snapshot {name} cut off at {cut:?} was never stored"
        );
        no_orphan_templates(&s).await;

        cut_off(&s, Method::DELETE, &base, None, cut).await;
        s.wait_status(&id, "stopped").await;
        assert_eq!(s.host.status(&id), None, "host still holds {id}");
    }
    no_orphan_templates(&s).await;
}
both_dbs!(disconnects_do_not_strand_capsules);

async fn a_create_cut_off_still_ends_running(db: Db) {
    let mut host = FakeHost::new(4);
    host.create_delay = HOST_OP;
    let s = Server::start(db, host).await;
    // While the host is making it (a cut before the request reaches the host may leave no
    // capsule at all, which is as correct and not what this checks).
    for cut in [HOST_OP / 2, HOST_OP - Duration::from_millis(30)] {
        let before = s.host.list_len();
        cut_off(&s, Method::POST, "/v1/capsules", Some(json!({})), cut).await;
        // The capsule is made anyway, listed and running; nothing is left half made.
        let mut running = None;
        for _ in 0..100 {
            let list: Vec<serde_json::Value> = s
                .req(Method::GET, "/v1/capsules")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if list.len() == before + 1 && list.iter().all(|c| c["status"] == "running") {
                running = list.last().cloned();
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let c = running.unwrap_or_else(|| panic!("create cut off at {cut:?} never ran"));
        assert_eq!(s.host.list_len(), before + 1, "{c}");
    }
}
both_dbs!(a_create_cut_off_still_ends_running);

async fn host_operations_past_their_bound_answer_and_settle(db: Db) {
    let mut host = FakeHost::new(8);
    host.op_delay = Duration::from_secs(5);
    let s = Server::start_with(db, host, |c| {
        c.host_op_timeout = Duration::from_millis(300);
        c.max_concurrent_creates = 1;
        c.create_queue_timeout = Duration::from_millis(100);
    })
    .await;
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    // The host does not finish the pause in time: 500 naming the bound, and the capsule is
    // stored as the host holds it (still running), not left pausing.
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id}/pause"))
        .send()
        .await
        .unwrap();
    let body = common::assert_error(r, 500, "internal_error").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("did not finish within"),
        "{body}"
    );
    assert_eq!(s.get(&id).await["status"], "running");
}
both_dbs!(host_operations_past_their_bound_answer_and_settle);

async fn creates_that_wait_too_long_for_a_slot_get_503(db: Db) {
    let mut host = FakeHost::new(8);
    host.create_delay = Duration::from_secs(2);
    let s = Server::start_with(db, host, |c| {
        c.max_concurrent_creates = 1;
        c.create_queue_timeout = Duration::from_millis(200);
    })
    .await;
    let first = s.req(Method::POST, "/v1/capsules").json(&json!({})).send();
    let first = tokio::spawn(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = s
        .req(Method::POST, "/v1/capsules")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body = common::assert_error(r, 503, "host_unavailable").await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("too many capsule creates"),
        "{body}"
    );
    assert_eq!(first.await.unwrap().unwrap().status(), 201);
}
both_dbs!(creates_that_wait_too_long_for_a_slot_get_503);
