//! E2B's REST API over a fake host: the shapes the `e2b` SDK parses, its error body, tokens
//! that stay the same across connects and restarts, list pages, and the TTL's kill or
//! pause. (The data plane needs a guest: tests/e2e/test_e2b.py drives it with the real SDK.)
//! Each scenario runs on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::fake_host::FakeHost;
use common::{Db, Server};
use reqwest::Method;
use serde_json::{json, Value};

impl Server {
    /// A request to an E2B route with the team-a key, as the SDK sends it.
    fn e2b(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .header("X-API-KEY", &self.key)
    }

    /// Sends an E2B request, with a JSON body when given.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut rb = self.e2b(method, path);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        rb.send().await.unwrap()
    }

    async fn sandbox(&self, body: Value) -> Value {
        let r = self
            .e2b(Method::POST, "/v2/sandboxes")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        r.json().await.unwrap()
    }
}

/// Asserts E2B's error body: `{"code": status, "message"}`.
async fn e2b_error(r: reqwest::Response, status: u16) -> (reqwest::header::HeaderMap, Value) {
    assert_eq!(r.status().as_u16(), status);
    let headers = r.headers().clone();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], status, "{body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    (headers, body)
}

async fn create_get_connect_kill(db: Db) {
    let mut s = Server::start(db, FakeHost::new(8)).await;
    let sb = s
        .sandbox(
            json!({"templateID": "base", "metadata": {"userID": "u 1"}, "envVars": {"A": "1"}}),
        )
        .await;
    let id = sb["sandboxID"].as_str().unwrap().to_owned();
    assert!(!id.contains('-') && !id.contains('.'), "{sb}");
    assert!(sb["envdVersion"].as_str().unwrap() >= "0.4.0");
    let token = sb["envdAccessToken"].as_str().unwrap().to_owned();
    assert!(token.len() > 32);
    assert_eq!(sb["trafficAccessToken"], Value::Null);

    // The same capsule through Wrenn's API: E2B's defaults (300 s, killed at the timeout).
    let cap = s.get(&format!("cl-{id}")).await;
    assert_eq!(
        (cap["template"].as_str(), cap["timeout_sec"].as_i64()),
        (Some("python"), Some(300))
    );
    assert_eq!(cap["metadata"]["userID"], "u 1");

    let info: Value = s
        .e2b(Method::GET, &format!("/sandboxes/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for k in [
        "templateID",
        "sandboxID",
        "clientID",
        "startedAt",
        "endAt",
        "cpuCount",
        "memoryMB",
        "diskSizeMB",
        "envdVersion",
    ] {
        assert!(!info[k].is_null(), "{k} missing: {info}");
    }
    assert_eq!(info["state"], "running");
    assert_eq!(info["lifecycle"]["onTimeout"], "kill");
    assert_eq!(info["envdAccessToken"], token.as_str());

    // connect of a running sandbox: 200 and the same token, also after a restart.
    let r = s
        .e2b(Method::POST, &format!("/v2/sandboxes/{id}/connect"))
        .json(&json!({"timeout": 120}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["envdAccessToken"],
        token.as_str()
    );
    assert_eq!(s.get(&format!("cl-{id}")).await["timeout_sec"], 120);
    s.restart().await;
    let r = s
        .e2b(Method::POST, &format!("/sandboxes/{id}/connect"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["envdAccessToken"],
        token.as_str()
    );

    // pause: 204, then 409; connect resumes it (201).
    let r = s
        .e2b(Method::POST, &format!("/sandboxes/{id}/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    e2b_error(
        s.call(Method::POST, &format!("/sandboxes/{id}/pause"), None)
            .await,
        409,
    )
    .await;
    let info: Value = s
        .e2b(Method::GET, &format!("/sandboxes/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["state"], "paused");
    let r = s
        .e2b(Method::POST, &format!("/v2/sandboxes/{id}/connect"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(s.get(&format!("cl-{id}")).await["status"], "running");

    // timeout: 204; out of range: 400.
    let r = s
        .e2b(Method::POST, &format!("/sandboxes/{id}/timeout"))
        .json(&json!({"timeout": 900}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(s.get(&format!("cl-{id}")).await["timeout_sec"], 900);
    e2b_error(
        s.call(
            Method::POST,
            &format!("/sandboxes/{id}/timeout"),
            Some(json!({"timeout": -1})),
        )
        .await,
        400,
    )
    .await;

    // kill: 204, then 404 for everything about it.
    assert_eq!(
        s.call(Method::DELETE, &format!("/sandboxes/{id}"), None)
            .await
            .status(),
        204
    );
    e2b_error(
        s.call(Method::DELETE, &format!("/sandboxes/{id}"), None)
            .await,
        404,
    )
    .await;
    e2b_error(
        s.call(Method::GET, &format!("/sandboxes/{id}"), None).await,
        404,
    )
    .await;
    e2b_error(
        s.call(Method::POST, &format!("/v2/sandboxes/{id}/connect"), None)
            .await,
        404,
    )
    .await;
    // Ids of other shapes, and another team's sandbox, are not found either.
    e2b_error(s.call(Method::GET, "/sandboxes/cl-x", None).await, 404).await;
    let other = s.sandbox(json!({})).await;
    let key_b = s.key_for("team-b").await;
    let r = s
        .http
        .get(format!(
            "{}/sandboxes/{}",
            s.base,
            other["sandboxID"].as_str().unwrap()
        ))
        .header("X-API-KEY", key_b)
        .send()
        .await
        .unwrap();
    e2b_error(r, 404).await;
}
both_dbs!(create_get_connect_kill);

async fn errors_and_unsupported_features(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let r = s
        .http
        .post(format!("{}/v2/sandboxes", s.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    e2b_error(r, 401).await;
    let (headers, body) = e2b_error(
        s.call(
            Method::POST,
            "/v2/sandboxes",
            Some(json!({"templateID": "nope"})),
        )
        .await,
        404,
    )
    .await;
    assert_eq!(
        headers["should-retry"], "false",
        "a failed create must not be retried: {body}"
    );
    for (field, value) in [
        ("mcp", json!({"x": {}})),
        ("volumeMounts", json!([{"name": "v", "path": "/data"}])),
        ("autoResume", json!({"enabled": true})),
        ("iam", json!({"tokens": []})),
    ] {
        let (_, body) = e2b_error(
            s.call(Method::POST, "/v2/sandboxes", Some(json!({ field: value })))
                .await,
            400,
        )
        .await;
        assert!(
            body["message"].as_str().unwrap().contains("not supported"),
            "{field}: {body}"
        );
    }
    e2b_error(
        s.e2b(Method::POST, "/v2/sandboxes")
            .body("{not json")
            .send()
            .await
            .unwrap(),
        400,
    )
    .await;
    e2b_error(
        s.call(
            Method::POST,
            "/v2/sandboxes",
            Some(json!({"metadata": {"": "x"}})),
        )
        .await,
        400,
    )
    .await;
    e2b_error(
        s.call(
            Method::POST,
            "/v2/sandboxes",
            Some(json!({"envVars": {"A=B": "x"}})),
        )
        .await,
        400,
    )
    .await;
    e2b_error(
        s.call(
            Method::POST,
            "/v2/sandboxes",
            Some(json!({"network": {"allowOut": ["not-a-cidr"]}})),
        )
        .await,
        400,
    )
    .await;
    let sb = s.sandbox(json!({})).await;
    let id = sb["sandboxID"].as_str().unwrap();
    let (_, body) = e2b_error(
        s.call(Method::POST, &format!("/sandboxes/{id}/fork"), None)
            .await,
        400,
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("not supported"));
    // Private traffic: a traffic token, different from the envd token.
    let private = s
        .sandbox(json!({"network": {"allowPublicTraffic": false}}))
        .await;
    let traffic = private["trafficAccessToken"].as_str().unwrap();
    assert_ne!(traffic, private["envdAccessToken"].as_str().unwrap());
}
both_dbs!(errors_and_unsupported_features);

async fn lists_filter_and_page(db: Db) {
    let s = Server::start(db, FakeHost::new(16)).await;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(
            s.sandbox(json!({"metadata": {"grp": "a b"}})).await["sandboxID"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    s.sandbox(json!({"metadata": {"grp": "other"}})).await;
    let paused = made[0].clone();
    assert_eq!(
        s.call(Method::POST, &format!("/sandboxes/{paused}/pause"), None)
            .await
            .status(),
        204
    );

    let mut seen = Vec::new();
    let mut token = String::new();
    for page in 0.. {
        let mut url = "/v2/sandboxes?metadata=grp%3Da%2520b&limit=2".to_owned();
        if !token.is_empty() {
            url.push_str(&format!("&nextToken={token}"));
        }
        let r = s.call(Method::GET, &url, None).await;
        assert_eq!(r.status(), 200);
        token = r.headers()["x-next-token"].to_str().unwrap().to_owned();
        let items: Vec<Value> = r.json().await.unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|i| i["sandboxID"].as_str().unwrap().to_owned()),
        );
        if token.is_empty() {
            assert_eq!(page, 2);
            break;
        }
    }
    let mut want = made.clone();
    want.reverse();
    assert_eq!(seen, want, "newest first, each once");

    let r = s
        .e2b(
            Method::GET,
            "/v2/sandboxes?metadata=grp%3Da%2520b&state=paused",
        )
        .send()
        .await
        .unwrap();
    let items: Vec<Value> = r.json().await.unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(
        (items[0]["sandboxID"].as_str(), items[0]["state"].as_str()),
        (Some(paused.as_str()), Some("paused"))
    );
    // The list before /v2 shows running sandboxes only.
    let old: Vec<Value> = s
        .e2b(Method::GET, "/sandboxes?metadata=grp%3Da%2520b")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(old.len(), 4);
    e2b_error(
        s.call(Method::GET, "/v2/sandboxes?nextToken=garbage", None)
            .await,
        400,
    )
    .await;
    e2b_error(
        s.call(Method::GET, "/v2/sandboxes?state=dead", None).await,
        400,
    )
    .await;
}
both_dbs!(lists_filter_and_page);

async fn the_timeout_kills_or_pauses(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let kill = s.sandbox(json!({"timeout": 1})).await;
    let pause = s.sandbox(json!({"timeout": 1, "autoPause": true})).await;
    let kill_id = format!("cl-{}", kill["sandboxID"].as_str().unwrap());
    let pause_id = format!("cl-{}", pause["sandboxID"].as_str().unwrap());
    s.wait_status(&kill_id, "stopped").await;
    s.wait_status(&pause_id, "paused").await;
    // A paused sandbox is listed as paused; a killed one is gone.
    let info = s
        .e2b(
            Method::GET,
            &format!("/sandboxes/{}", pause["sandboxID"].as_str().unwrap()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        info.json::<Value>().await.unwrap()["lifecycle"]["onTimeout"],
        "pause"
    );
    e2b_error(
        s.call(
            Method::GET,
            &format!("/sandboxes/{}", kill["sandboxID"].as_str().unwrap()),
            None,
        )
        .await,
        404,
    )
    .await;
}
both_dbs!(the_timeout_kills_or_pauses);
