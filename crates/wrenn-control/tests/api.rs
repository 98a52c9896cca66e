//! HTTP API behaviour over a fake host: auth, capsule lifecycle, TTL, snapshots, events,
//! admission, bad input, system routes. Each scenario runs on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::fake_host::FakeHost;
use common::{assert_error, Db, Server};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};

fn is_zoned(ts: &Value) -> bool {
    ts.as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .is_some()
        && ts.as_str().is_some_and(|s| s.ends_with('Z'))
}

async fn capsule_lifecycle(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let c = s.create(json!({})).await;
    let id = c["id"].as_str().unwrap().to_owned();
    assert!(wrenn_control::ids::is_capsule_id(&id), "{c}");
    assert_eq!(c["status"], "running");
    assert_eq!(c["template"], "minimal");
    assert_eq!(c["vcpus"], 1);
    assert_eq!(c["memory_mb"], 512);
    assert_eq!(c["timeout_sec"], 0);
    for k in ["created_at", "started_at", "last_active_at", "last_updated"] {
        assert!(is_zoned(&c[k]), "{k} not a zoned timestamp: {c}");
    }
    let c2 = s.create(json!({"template": "python", "vcpus": 2, "memory_mb": 1024, "timeout_sec": 5, "metadata": {"owner": "me"}})).await;
    assert_eq!(c2["timeout_sec"], 60, "positive TTL under 60 is raised");
    assert_eq!(c2["metadata"]["owner"], "me");

    // Both prefixes serve the same list.
    for prefix in ["/v1", "/api/v1"] {
        let list: Vec<Value> = s
            .req(Method::GET, &format!("{prefix}/capsules"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(list.len(), 2, "{prefix}");
    }

    // Pause / resume with 409s.
    let p = s
        .req(Method::POST, &format!("/v1/capsules/{id}/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(p.status(), 200);
    assert_eq!(p.json::<Value>().await.unwrap()["status"], "paused");
    assert_error(
        s.req(Method::POST, &format!("/v1/capsules/{id}/pause"))
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
    )
    .await;
    assert_error(
        s.req(Method::POST, &format!("/v1/capsules/{id}/exec"))
            .json(&json!({"cmd": "true"}))
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
    )
    .await;
    assert_error(
        s.req(Method::POST, &format!("/v1/capsules/{id}/files/read"))
            .json(&json!({"path": "/etc/hostname"}))
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
    )
    .await;
    for ws_path in ["pty", "exec/stream", "processes/1/stream"] {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!(
            "{}/v1/capsules/{id}/{ws_path}",
            s.base.replace("http://", "ws://")
        )
        .into_client_request()
        .unwrap();
        req.headers_mut()
            .insert("X-API-Key", s.key.parse().unwrap());
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 409, "{ws_path} on a paused capsule")
            }
            other => panic!("{ws_path}: expected 409, got {:?}", other.map(|_| ())),
        }
    }
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id}/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "running");
    assert_error(
        s.req(Method::POST, &format!("/v1/capsules/{id}/resume"))
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
    )
    .await;

    // Ping.
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id}/ping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);

    // A failed pause leaves it running.
    s.host
        .fail_pause
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id}/pause"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_server_error());
    assert_eq!(s.get(&id).await["status"], "running");

    // Delete in paused state works; stopped is left out of the list.
    let id2 = c2["id"].as_str().unwrap();
    s.req(Method::POST, &format!("/v1/capsules/{id2}/pause"))
        .send()
        .await
        .unwrap();
    let d = s
        .req(Method::DELETE, &format!("/v1/capsules/{id2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 204);
    assert_eq!(s.get(id2).await["status"], "stopped");
    assert!(
        s.host.status(id2).is_none(),
        "host still holds the destroyed capsule"
    );
    let list: Vec<Value> = s
        .req(Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());

    // Unknown template.
    assert_error(
        s.req(Method::POST, "/v1/capsules")
            .json(&json!({"template": "nope"}))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
}
both_dbs!(capsule_lifecycle);

async fn auth_everywhere(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    let other = s.key_for("team-b").await;
    for route in wrenn_control::api::routes() {
        if !route.path.starts_with("/v1") {
            continue;
        }
        // Signing in takes its key in the body, signing out needs none (tests/sessions.rs).
        if route.path == "/v1/sessions" && matches!(route.method, "post" | "delete") {
            continue;
        }
        let path = route
            .path
            .replace("{id}", &id)
            .replace("{selector}", "1")
            .replace("{name}", "foo");
        for prefix in ["", "/api"] {
            let url = format!("{}{prefix}{path}", s.base);
            let m = Method::from_bytes(route.method.to_uppercase().as_bytes()).unwrap();
            let none = s.http.request(m.clone(), &url).send().await.unwrap();
            assert_error(none, 401, "unauthorized").await;
            let wrong = s
                .http
                .request(m.clone(), &url)
                .header("X-API-Key", "wrn_00000000000000000000000000000000")
                .send()
                .await
                .unwrap();
            assert_error(wrong, 401, "unauthorized").await;
            let junk = s
                .http
                .request(m, &url)
                .header("X-API-Key", "hello")
                .send()
                .await
                .unwrap();
            assert_error(junk, 401, "unauthorized").await;
        }
    }
    // A WebSocket upgrade without a key is refused too.
    let ws_url = format!("{}/v1/capsules/{id}/pty", s.base.replace("http", "ws"));
    let err = tokio_tungstenite::connect_async(ws_url)
        .await
        .expect_err("upgrade without key");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 401),
        e => panic!("unexpected error {e}"),
    }
    // Another team's capsule does not exist for them.
    for (m, p) in [
        (Method::GET, format!("/v1/capsules/{id}")),
        (Method::DELETE, format!("/v1/capsules/{id}")),
        (Method::POST, format!("/v1/capsules/{id}/pause")),
        (Method::POST, format!("/v1/capsules/{id}/ping")),
        (Method::GET, format!("/v1/capsules/{id}/metrics")),
    ] {
        assert_error(
            s.req_as(&other, m, &p).send().await.unwrap(),
            404,
            "not_found",
        )
        .await;
    }
    assert_error(
        s.req_as(&other, Method::POST, &format!("/v1/capsules/{id}/exec"))
            .json(&json!({"cmd": "id"}))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    let theirs: Vec<Value> = s
        .req_as(&other, Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(theirs.is_empty());
    assert_eq!(
        s.get(&id).await["status"],
        "running",
        "other team's calls changed nothing"
    );
}
both_dbs!(auth_everywhere);

async fn bad_input(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    let post = |p: &str| s.req(Method::POST, p);
    // Malformed JSON, wrong types, unknown fields.
    assert_error(
        post("/v1/capsules")
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post("/v1/capsules")
            .json(&json!({"vcpus": "two"}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post("/v1/capsules")
            .json(&json!({"vcpus": 0}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post("/v1/capsules")
            .json(&json!({"timeout_sec": -5}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post("/v1/capsules")
            .json(&json!({"bogus": 1}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post("/v1/capsules")
            .json(&json!([1, 2]))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post("/v1/capsules")
            .json(&json!({"template": "../../etc"}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    // Malformed ids.
    for bad in [
        "cl-short",
        "cl-ABCDEFGHIJKLMNOPQRSTUVWXY",
        "xx-0123456789abcdefghijklmno",
        "cl-0123456789abcdefghijklmn%2F",
    ] {
        assert_error(
            s.req(Method::GET, &format!("/v1/capsules/{bad}"))
                .send()
                .await
                .unwrap(),
            400,
            "invalid_request",
        )
        .await;
    }
    // Well-formed unknown id.
    assert_error(
        s.req(Method::GET, "/v1/capsules/cl-0123456789abcdefghijklmno")
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    // Exec bodies.
    let exec = format!("/v1/capsules/{id}/exec");
    assert_error(
        post(&exec).json(&json!({})).send().await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post(&exec).json(&json!({"cmd": 5})).send().await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post(&exec).json(&json!({"cmd": ""})).send().await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post(&exec)
            .json(&json!({"cmd": "a\u{0}b"}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    // File path tricks.
    for path in ["relative/path", "", "/etc/\u{0}passwd"] {
        for route in ["read", "list", "mkdir", "remove", "stream/read"] {
            assert_error(
                post(&format!("/v1/capsules/{id}/files/{route}"))
                    .json(&json!({"path": path}))
                    .send()
                    .await
                    .unwrap(),
                400,
                "invalid_request",
            )
            .await;
        }
        let form = reqwest::multipart::Form::new()
            .text("path", path.to_owned())
            .part("file", reqwest::multipart::Part::bytes(b"x".to_vec()));
        assert_error(
            post(&format!("/v1/capsules/{id}/files/write"))
                .multipart(form)
                .send()
                .await
                .unwrap(),
            400,
            "invalid_request",
        )
        .await;
    }
    assert_error(
        post(&format!("/v1/capsules/{id}/files/write"))
            .body("plain")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    // Oversized bodies.
    let big = "x".repeat(2 * 1024 * 1024);
    assert_error(
        post(&exec)
            .header("connection", "close")
            .header("content-type", "application/json")
            .body(format!("{{\"cmd\":\"{big}\"}}"))
            .send()
            .await
            .unwrap(),
        413,
        "too_large",
    )
    .await;
    let form = reqwest::multipart::Form::new()
        .text("path", "/tmp/big")
        .part(
            "file",
            reqwest::multipart::Part::bytes(vec![0u8; 200 * 1024]),
        );
    assert_error(
        post(&format!("/v1/capsules/{id}/files/write"))
            .header("connection", "close")
            .multipart(form)
            .send()
            .await
            .unwrap(),
        413,
        "too_large",
    )
    .await;
    // Unknown routes and methods are JSON too.
    assert_error(
        s.req(Method::GET, "/v1/nope").send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_error(
        s.req(Method::GET, "/nope").send().await.unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_error(
        s.req(Method::PUT, "/v1/capsules").send().await.unwrap(),
        405,
        "invalid_request",
    )
    .await;
    // Bad queries.
    assert_error(
        s.req(Method::GET, &format!("/v1/capsules/{id}/metrics?range=7m"))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        s.req(Method::GET, "/v1/capsules/stats?range=2d")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        s.req(Method::GET, "/v1/capsules/usage?from=yesterday")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        s.req(Method::GET, "/v1/snapshots?type=other")
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        s.req(Method::POST, "/v1/snapshots?overwrite=maybe")
            .json(&json!({"sandbox_id": id}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        s.req(
            Method::DELETE,
            &format!("/v1/capsules/{id}/processes/1?signal=SIGNOPE"),
        )
        .send()
        .await
        .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    // The capsule survived all of it.
    assert_eq!(s.get(&id).await["status"], "running");
}
both_dbs!(bad_input);

async fn ttl_pauses_idle_capsules(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let idle = s.create(json!({"timeout_sec": 60})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forever = s.create(json!({"timeout_sec": 0})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut events = s.events().await;
    // Pretend both were last active two minutes ago.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&db_url_for_pool(&s.db_url))
        .await
        .unwrap();
    sqlx::query("UPDATE capsules SET last_active_at = last_active_at - 120000")
        .execute(&pool)
        .await
        .unwrap();
    let paused = s.wait_status(&idle, "paused").await;
    assert_eq!(paused["timeout_sec"], 60);
    // The pause is announced as the system's, for the TTL.
    let ev = events
        .until(Duration::from_secs(30), |e| {
            e["event"] == "capsule.pause" && e["resource"]["id"] == idle.as_str()
        })
        .await;
    assert_eq!(ev["outcome"], "success", "{ev}");
    assert_eq!(ev["actor"]["type"], "system", "{ev}");
    assert_eq!(ev["actor"]["name"], "ttl", "{ev}");
    assert_eq!(ev["metadata"]["reason"], "ttl_expired", "{ev}");
    assert_eq!(ev["sandbox"]["status"], "paused", "{ev}");
    // Ten TTL passes later (one each 100 ms), the TTL-less capsule still runs.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(s.get(&forever).await["status"], "running");
    // Resuming makes it active again: it is not paused right away.
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{idle}/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(s.get(&idle).await["status"], "running");
}
both_dbs!(ttl_pauses_idle_capsules);

fn db_url_for_pool(url: &str) -> String {
    if url.starts_with("postgres") {
        url.to_owned()
    } else {
        format!("sqlite://{url}")
    }
}

async fn snapshots_are_team_scoped(db: Db) {
    let s = Server::start(db, FakeHost::new(16)).await;
    let b = s.key_for("team-b").await;
    let a_cap = s.create(json!({"vcpus": 2})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b_cap: Value = s
        .req_as(&b, Method::POST, "/v1/capsules")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b_cap = b_cap["id"].as_str().unwrap().to_owned();
    // Both teams may own "foo".
    let ra = s
        .req(Method::POST, "/v1/snapshots")
        .json(&json!({"sandbox_id": a_cap, "name": "foo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ra.status(), 201);
    let ta: Value = ra.json().await.unwrap();
    assert_eq!(ta["name"], "foo");
    assert_eq!(ta["type"], "snapshot");
    assert_eq!(ta["vcpus"], 2);
    assert!(is_zoned(&ta["created_at"]));
    let rb = s
        .req_as(&b, Method::POST, "/v1/snapshots")
        .json(&json!({"sandbox_id": b_cap, "name": "foo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(rb.status(), 201);
    // Existing name: 409 unless overwrite.
    assert_error(
        s.req(Method::POST, "/v1/snapshots")
            .json(&json!({"sandbox_id": a_cap, "name": "foo"}))
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
    let ro = s
        .req(Method::POST, "/v1/snapshots?overwrite=true")
        .json(&json!({"sandbox_id": a_cap, "name": "foo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ro.status(), 201);
    // Another team's capsule cannot be snapshotted.
    assert_error(
        s.req(Method::POST, "/v1/snapshots")
            .json(&json!({"sandbox_id": b_cap, "name": "x"}))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    // Bad names.
    assert_error(
        s.req(Method::POST, "/v1/snapshots")
            .json(&json!({"sandbox_id": a_cap, "name": "-x"}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    // Generated name.
    let gen: Value = s
        .req(Method::POST, "/v1/snapshots")
        .json(&json!({"sandbox_id": a_cap}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        gen["name"]
            .as_str()
            .is_some_and(wrenn_control::ids::is_template_name),
        "{gen}"
    );
    assert_eq!(
        s.get(&a_cap).await["status"],
        "running",
        "a snapshot leaves the capsule running"
    );
    // Lists.
    let all: Vec<Value> = s
        .req(Method::GET, "/v1/snapshots")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = all.iter().filter_map(|t| t["name"].as_str()).collect();
    assert!(
        names.contains(&"minimal") && names.contains(&"python") && names.contains(&"foo"),
        "{names:?}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("tsnap-")),
        "host names leak: {names:?}"
    );
    let snaps: Vec<Value> = s
        .req(Method::GET, "/v1/snapshots?type=snapshot")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(snaps.len(), 2);
    assert!(snaps
        .iter()
        .all(|t| t["type"] == "snapshot" && t["platform"] == false));
    let bases: Vec<Value> = s
        .req(Method::GET, "/v1/snapshots?type=base")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(bases
        .iter()
        .all(|t| t["type"] == "base" && t["protected"] == true));
    let b_list: Vec<Value> = s
        .req_as(&b, Method::GET, "/v1/snapshots?type=snapshot")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b_list.len(), 1);
    // A capsule from the snapshot resolves within the team.
    let from = s.create(json!({"template": "foo"})).await;
    assert_eq!(from["template"], "foo");
    assert_eq!(from["vcpus"], 2, "a snapshot fixes the capsule's size");
    let used = s.host.created_from.lock().unwrap().last().cloned().unwrap();
    assert!(used.starts_with("tsnap-"), "{used}");
    assert_error(
        s.req_as(&b, Method::POST, "/v1/capsules")
            .json(&json!({"template": gen["name"]}))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    // Delete: own only; base ones are protected.
    assert_eq!(
        s.req(Method::DELETE, "/v1/snapshots/foo")
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_error(
        s.req(Method::DELETE, "/v1/snapshots/foo")
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert_error(
        s.req(Method::DELETE, "/v1/snapshots/minimal")
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    let b_list: Vec<Value> = s
        .req_as(&b, Method::GET, "/v1/snapshots?type=snapshot")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b_list.len(), 1, "deleting team-a's foo left team-b's alone");
}
both_dbs!(snapshots_are_team_scoped);

async fn capacity_burst(db: Db) {
    let mut host = FakeHost::new(4);
    host.create_delay = Duration::from_millis(200);
    let s = Server::start(db, host).await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let req = s.req(Method::POST, "/v1/capsules").json(&json!({}));
        tasks.push(tokio::spawn(async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let body: Value = r.json().await.unwrap();
            (status, body)
        }));
    }
    let mut created = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            201 => {
                created += 1;
                assert_eq!(body["status"], "running");
            }
            503 => assert_eq!(body["error"]["code"], "host_unavailable", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(created, 4, "a 4-vCPU host holds four 1-vCPU capsules");
    let list: Vec<Value> = s
        .req(Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 4);
    assert!(
        list.iter().all(|c| c["status"] == "running"),
        "half-made capsules: {list:?}"
    );
    assert_eq!(s.host.list_len(), 4);
}
both_dbs!(capacity_burst);

async fn events_stream(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let resp = s
        .req(Method::GET, "/v1/events/stream")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    let mut events: Vec<Value> = Vec::new();
    let mut created = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            for line in frame.lines() {
                if let Some(data) = line.strip_prefix("data:") {
                    events.push(serde_json::from_str(data.trim()).unwrap());
                }
            }
        }
        if !created && !events.is_empty() {
            created = true;
            s.create(json!({})).await;
        }
        if events.iter().any(|e| e["event"] == "capsule.create") {
            break;
        }
    }
    assert_eq!(events[0]["event"], "connected");
    let ev = events
        .iter()
        .find(|e| e["event"] == "capsule.create")
        .expect("capsule.create event");
    assert_eq!(ev["outcome"], "success");
    assert_eq!(ev["resource"]["type"], "capsule");
    assert_eq!(ev["actor"]["type"], "api_key");
    assert_eq!(ev["sandbox"]["status"], "running");
    assert!(is_zoned(&ev["timestamp"]));
}
both_dbs!(events_stream);

async fn reconcile_marks_missing(db: Db) {
    let mut s = Server::start(db, FakeHost::new(8)).await;
    let gone = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    let kept = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    s.host.forget(&gone);
    s.restart().await;
    assert_eq!(s.get(&gone).await["status"], "missing");
    assert_eq!(s.get(&kept).await["status"], "running");
    // A missing capsule can still be deleted.
    assert_eq!(
        s.req(Method::DELETE, &format!("/v1/capsules/{gone}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(s.get(&gone).await["status"], "stopped");
}
both_dbs!(reconcile_marks_missing);

async fn stats_usage_metrics(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let id = s.create(json!({"vcpus": 2, "memory_mb": 256})).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Wait for the sampler to record the team's reservation.
    let mut stats = Value::Null;
    for _ in 0..300 {
        stats = s
            .req(Method::GET, "/v1/capsules/stats?range=5m")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if stats["series"]["vcpus"]
            .as_array()
            .is_some_and(|l| l.iter().any(|v| v.as_i64() == Some(2)))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats["current"]["running_count"], 1, "{stats}");
    assert_eq!(stats["current"]["vcpus_reserved"], 2);
    assert_eq!(stats["current"]["memory_mb_reserved"], 256);
    assert!(stats["peaks"]["vcpus"].as_i64().unwrap() >= 2);
    let labels = stats["series"]["labels"].as_array().unwrap();
    assert!(!labels.is_empty() && labels.iter().all(is_zoned), "{stats}");
    assert_eq!(
        labels.len(),
        stats["series"]["vcpus"].as_array().unwrap().len()
    );
    let today = chrono::Utc::now().date_naive().to_string();
    let mut usage = Value::Null;
    for _ in 0..300 {
        usage = s
            .req(
                Method::GET,
                &format!("/v1/capsules/usage?from={today}&to={today}"),
            )
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if usage["points"][0]["cpu_minutes"]
            .as_f64()
            .is_some_and(|m| m > 0.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(usage["from"], today.as_str());
    assert_eq!(usage["points"].as_array().unwrap().len(), 1);
    assert!(
        usage["points"][0]["cpu_minutes"].as_f64().unwrap() > 0.0,
        "{usage}"
    );
    let m: Value = s
        .req(Method::GET, &format!("/v1/capsules/{id}/metrics?range=5m"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["sandbox_id"], id.as_str());
    assert_eq!(m["range"], "5m");
    // Samples inside the range are shown with their values, older ones are not. (The fake
    // host has no guest, so the only samples are these.)
    let now = chrono::Utc::now().timestamp();
    for (ts, cpu) in [(now - 60, 12.5), (now - 600, 99.0)] {
        s.store
            .insert_metric(
                &id,
                &wrenn_control::store::MetricSample {
                    ts,
                    cpu_pct: cpu,
                    mem_bytes: 1 << 20,
                    disk_bytes: 2 << 20,
                    mem_total_bytes: 512 << 20,
                    disk_total_bytes: 1 << 30,
                },
            )
            .await
            .unwrap();
    }
    let m: Value = s
        .req(Method::GET, &format!("/v1/capsules/{id}/metrics?range=5m"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        m["points"],
        json!([{"timestamp_unix": now - 60, "cpu_pct": 12.5, "mem_bytes": 1 << 20, "disk_bytes": 2 << 20}]),
        "{m}"
    );
    let m: Value = s
        .req(Method::GET, &format!("/v1/capsules/{id}/metrics?range=1h"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["points"].as_array().map(Vec::len), Some(2), "{m}");
}
both_dbs!(stats_usage_metrics);

async fn system_routes(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let h = s
        .http
        .get(format!("{}/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    s.create(json!({})).await;
    let m = s
        .http
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(m.contains("wrenn_http_requests_total{"), "{m}");
    assert!(m.contains("route=\"/v1/capsules\""), "{m}");
    assert!(m.contains("wrenn_capsules{status=\"running\"} 1"), "{m}");
    assert!(
        m.contains("wrenn_capsule_create_duration_seconds_count"),
        "{m}"
    );
    let docs = s
        .http
        .get(format!("{}/docs", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(docs.contains("/v1/capsules/{id}/exec"));
    // Port URLs are recognised: an unknown capsule's is a clear JSON 404.
    let r = s
        .http
        .get(format!("{}/", s.base))
        .header("Host", "8080-cl-0123456789abcdefghijklmno.wrenn.local")
        .send()
        .await
        .unwrap();
    let v = assert_error(r, 404, "not_found").await;
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("cl-0123456789abcdefghijklmno"));
}
both_dbs!(system_routes);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_open_event_streams() {
    let mut s = Server::start(Db::Sqlite, FakeHost::new(8)).await;
    let resp = s
        .req(Method::GET, "/v1/events/stream")
        .send()
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(30), body.next())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&first.unwrap().unwrap()).contains("connected"));
    tokio::time::timeout(Duration::from_secs(120), s.stop())
        .await
        .expect("serve returns while an SSE client is connected");
    // The stream ends instead of hanging.
    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(_)) = body.next().await {}
    })
    .await;
    assert!(rest.is_ok(), "event stream still open after shutdown");
}

async fn slow_create_answers_starting(db: Db) {
    let mut host = FakeHost::new(8);
    host.create_delay = Duration::from_secs(2);
    let s = Server::start_with(db, host, |c| c.create_wait = Duration::from_millis(100)).await;
    let c = s.create(json!({})).await;
    assert_eq!(c["status"], "starting", "{c}");
    let id = c["id"].as_str().unwrap().to_owned();
    let running = s.wait_status(&id, "running").await;
    assert!(is_zoned(&running["started_at"]));
    // Deleted while starting: it ends stopped and the host does not keep it.
    let c = s.create(json!({})).await;
    let id2 = c["id"].as_str().unwrap().to_owned();
    assert_eq!(c["status"], "starting");
    let d = s
        .req(Method::DELETE, &format!("/v1/capsules/{id2}"))
        .send()
        .await
        .unwrap();
    assert_eq!(d.status(), 204);
    for _ in 0..600 {
        if s.host.status(&id2).is_none() && s.get(&id2).await["status"] == "stopped" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Past the create delay, nothing brings it back.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s.get(&id2).await["status"], "stopped");
    assert!(
        s.host.status(&id2).is_none(),
        "host kept a capsule deleted during create"
    );
    let list: Vec<Value> = s
        .req(Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
}
both_dbs!(slow_create_answers_starting);

async fn lost_capsules_are_noticed(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    s.host.forget(&id);
    let v = s.wait_status(&id, "missing").await;
    assert_eq!(v["id"], id.as_str());
    assert_error(
        s.req(Method::POST, &format!("/v1/capsules/{id}/exec"))
            .json(&json!({"cmd": "true"}))
            .send()
            .await
            .unwrap(),
        409,
        "invalid_state",
    )
    .await;
    assert_eq!(
        s.req(Method::DELETE, &format!("/v1/capsules/{id}"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
}
both_dbs!(lost_capsules_are_noticed);
