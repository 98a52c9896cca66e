//! Egress policy (create body, `PUT …/network`, the capsule view) and port-URL access
//! (private ports, credentials never forwarded into the guest), over a fake host. The policy
//! and access scenarios run on SQLite and PostgreSQL; the ones that reach a listener through
//! a real envd (`envd --listen-unix` on this host) are skipped with a notice without it.

mod common;

use std::time::Duration;

use common::fake_host::FakeHost;
use common::{assert_error, Db, Server};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wrenn_host::{HostApi, NetworkPolicy};

fn policy(v: Value) -> NetworkPolicy {
    serde_json::from_value(v).unwrap()
}

async fn put_network(
    s: &Server,
    key: &str,
    prefix: &str,
    id: &str,
    body: Value,
) -> reqwest::Response {
    s.req_as(
        key,
        Method::PUT,
        &format!("{prefix}/v1/capsules/{id}/network"),
    )
    .json(&body)
    .send()
    .await
    .unwrap()
}

async fn create_err(s: &Server, body: Value) -> Value {
    let r = s
        .req(Method::POST, "/v1/capsules")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(r, 400, "invalid_request").await
}

fn message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap()
}

async fn policy_on_create_get_and_put(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;

    // A policy on create is stored, shown and given to the host.
    let p = json!({"allow_internet": false, "allow_out": ["198.18.0.0/24", "1.1.1.1"]});
    let v = s.create(json!({"network": p})).await;
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["ports"], "public");
    assert!(v.get("access_token").is_none(), "{v}");
    let want =
        json!({"allow_internet": false, "allow_out": ["198.18.0.0/24", "1.1.1.1"], "deny_out": []});
    assert_eq!(v["network"]["policy"], want, "{v}");
    let got = s.get(&id).await;
    assert_eq!(got["network"]["policy"], want, "{got}");
    assert_eq!(got["network"]["enabled"], true, "{got}");
    assert!(got["network"].get("reason").is_none(), "{got}");
    assert_eq!(got["ports"], "public");
    assert_eq!(
        s.host.get(&id).await.unwrap().network.policy,
        policy(want.clone())
    );
    let list: Vec<Value> = s
        .req(Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list[0]["network"]["policy"], want);

    // Without a policy: everything allowed, shown as empty lists.
    let plain = s.create(json!({})).await;
    assert_eq!(
        plain["network"]["policy"],
        json!({"allow_out": [], "deny_out": []})
    );

    // Bad entries are 400 naming the value; nothing is created.
    let before = s.host.list_len();
    for (body, needle) in [
        (
            json!({"network": {"deny_out": ["10.0.0.1/33"]}}),
            "10.0.0.1/33",
        ),
        (
            json!({"network": {"allow_out": ["10.0.0.256"]}}),
            "10.0.0.256",
        ),
        (
            json!({"network": {"allow_out": ["example.com"]}}),
            "example.com",
        ),
        (
            json!({"network": {"deny_out": ["2001:db8::/32"]}}),
            "2001:db8::/32",
        ),
        (
            json!({"network": {"deny_out": ["10.0.0.1/8"]}}),
            "10.0.0.1/8",
        ),
    ] {
        let e = create_err(&s, body.clone()).await;
        assert!(message(&e).contains(needle), "{body}: {e}");
    }
    let e = create_err(&s, json!({"network": {"allow_out": ["example.com"]}})).await;
    assert!(message(&e).contains("host names"), "{e}");
    let e = create_err(&s, json!({"network": {"deny_out": ["::1"]}})).await;
    assert!(message(&e).contains("IPv6"), "{e}");
    create_err(&s, json!({"network": {"allow": []}})).await;
    create_err(&s, json!({"network": {"allow_out": "1.1.1.1"}})).await;
    create_err(&s, json!({"ports": "open"})).await;
    assert_eq!(s.host.list_len(), before);

    // PUT replaces the policy (under both prefixes) and the host gets it.
    for prefix in ["", "/api"] {
        let r = put_network(&s, &s.key, prefix, &id, json!({"deny_out": ["10.0.0.0/8"]})).await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["status"], "running");
        assert_eq!(
            v["network"]["policy"],
            json!({"allow_out": [], "deny_out": ["10.0.0.0/8"]}),
            "{v}"
        );
    }
    assert_eq!(
        s.get(&id).await["network"]["policy"],
        json!({"allow_out": [], "deny_out": ["10.0.0.0/8"]})
    );
    assert_eq!(
        s.host.get(&id).await.unwrap().network.policy,
        policy(json!({"deny_out": ["10.0.0.0/8"]}))
    );

    // A bad PUT names the value and changes nothing.
    let e = assert_error(
        put_network(
            &s,
            &s.key,
            "",
            &id,
            json!({"allow_out": ["192.168.1.1/40"]}),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert!(message(&e).contains("192.168.1.1/40"), "{e}");
    let e = assert_error(
        put_network(
            &s,
            &s.key,
            "",
            &id,
            json!({"deny_out": ["metadata.internal"]}),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert!(message(&e).contains("metadata.internal"), "{e}");
    assert_error(
        put_network(&s, &s.key, "", &id, json!({"deny": []})).await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(
        s.get(&id).await["network"]["policy"]["deny_out"],
        json!(["10.0.0.0/8"])
    );

    // `{}` clears it.
    let r = put_network(&s, &s.key, "", &id, json!({})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["network"]["policy"],
        json!({"allow_out": [], "deny_out": []})
    );
    assert_eq!(
        s.host.get(&id).await.unwrap().network.policy,
        NetworkPolicy::default()
    );

    // A paused capsule takes a new policy and keeps it across resume.
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id}/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = put_network(&s, &s.key, "", &id, json!({"allow_internet": false})).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "paused");
    assert_eq!(v["network"]["policy"]["allow_internet"], false);
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id}/resume"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = s.get(&id).await;
    assert_eq!(v["status"], "running");
    assert_eq!(
        v["network"]["policy"],
        json!({"allow_internet": false, "allow_out": [], "deny_out": []})
    );

    // Unknown capsule, another team's, a malformed id, no key.
    let unknown = "cl-0123456789abcdefghijklmno";
    assert_error(
        put_network(&s, &s.key, "", unknown, json!({})).await,
        404,
        "not_found",
    )
    .await;
    let other = s.key_for("team-b").await;
    assert_error(
        put_network(&s, &other, "", &id, json!({})).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        put_network(&s, &s.key, "", "cl-bad", json!({})).await,
        400,
        "invalid_request",
    )
    .await;
    let r = s
        .http
        .put(format!("{}/v1/capsules/{id}/network", s.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;
    assert_eq!(
        s.get(&id).await["network"]["policy"]["allow_internet"],
        false
    );

    // A destroyed capsule's policy no longer changes.
    let r = s
        .req(Method::DELETE, &format!("/v1/capsules/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_error(
        put_network(&s, &s.key, "", &id, json!({})).await,
        409,
        "invalid_state",
    )
    .await;
}
both_dbs!(policy_on_create_get_and_put);

/// A port-URL request to `port` of capsule `id`, through the control plane.
fn port_req(s: &Server, port: u16, id: &str, path: &str) -> reqwest::RequestBuilder {
    s.http
        .get(format!("{}{path}", s.base))
        .header("Host", format!("{port}-{id}.wrenn.local"))
}

async fn private_ports_need_a_credential(db: Db) {
    // The fake host has no guest agent here: a request that passes the access check reaches
    // the guest lookup and gets 409 `invalid_state`; one that does not gets 401 or 404.
    let s = Server::start(db, FakeHost::new(8)).await;
    let v = s.create(json!({"ports": "private"})).await;
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!(v["ports"], "private");
    let token = v["access_token"]
        .as_str()
        .expect("access_token on create")
        .to_owned();
    assert!(token.starts_with("wrn_at_") && token.len() == 71, "{token}");
    // Shown once: not in GET or lists.
    let got = s.get(&id).await;
    assert_eq!(got["ports"], "private");
    assert!(got.get("access_token").is_none(), "{got}");
    assert!(!got.to_string().contains(&token));
    // Only its hash is stored.
    let row = s.store.capsule(&id).await.unwrap().unwrap();
    assert_eq!(
        row.access_token_hash.as_deref(),
        Some(wrenn_control::ids::hash_key(&token).as_str())
    );

    let passed = |r: reqwest::Response| async move {
        assert_error(r, 409, "invalid_state").await;
    };
    // No credential: 401.
    let e = assert_error(
        port_req(&s, 8000, &id, "/").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert!(message(&e).contains("private"), "{e}");
    // A bad token or a bad key: 401.
    assert_error(
        port_req(&s, 8000, &id, "/")
            .header("X-Access-Token", "wrn_at_nope")
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        port_req(&s, 8000, &id, "/?access_token=wrn_at_nope")
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        port_req(&s, 8000, &id, "/")
            .header("X-API-Key", "wrn_00000000000000000000000000000000")
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    // Another team's key: the capsule does not exist for it.
    let other = s.key_for("team-b").await;
    let e = assert_error(
        port_req(&s, 8000, &id, "/")
            .header("X-API-Key", &other)
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;
    assert!(message(&e).contains(&id), "{e}");
    // The owner's key, the token as header or as query parameter: allowed.
    passed(
        port_req(&s, 8000, &id, "/")
            .header("X-API-Key", &s.key)
            .send()
            .await
            .unwrap(),
    )
    .await;
    passed(
        port_req(&s, 8000, &id, "/")
            .header("X-Access-Token", &token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    passed(
        port_req(&s, 8000, &id, &format!("/x?a=1&access_token={token}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    // The token belongs to its capsule only.
    let v2 = s.create(json!({"ports": "private"})).await;
    let id2 = v2["id"].as_str().unwrap();
    assert_error(
        port_req(&s, 8000, id2, "/")
            .header("X-Access-Token", &token)
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    // A public capsule needs nothing.
    let public = s.create(json!({"ports": "public"})).await;
    passed(
        port_req(&s, 8000, public["id"].as_str().unwrap(), "/")
            .send()
            .await
            .unwrap(),
    )
    .await;
    // Access is checked before the status is revealed.
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id}/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_error(
        port_req(&s, 8000, &id, "/").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        port_req(&s, 8000, &id, "/")
            .header("X-API-Key", &s.key)
            .send()
            .await
            .unwrap(),
        503,
        "host_unavailable",
    )
    .await;
}
both_dbs!(private_ports_need_a_credential);

/// An HTTP server on 127.0.0.1 that answers every request with its own request head
/// (request line and headers, lower-cased). Under the fake host envd runs on this host, so
/// a port URL of this port reaches it as it would reach a server in the guest.
async fn echo_server() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = String::from_utf8_lossy(&head).to_lowercase();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(resp.as_bytes()).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    port
}

async fn guest_server() -> Option<Server> {
    let bin = common::envd().await?;
    let mut host = FakeHost::new(16);
    host.envd_bin = Some(bin);
    Some(Server::start(Db::Sqlite, host).await)
}

/// Sends a port-URL request until the tunnel answers 200; returns the echoed head.
async fn echoed(req: impl Fn() -> reqwest::RequestBuilder) -> String {
    let mut last = String::new();
    for _ in 0..100 {
        let r = req().send().await.unwrap();
        let status = r.status();
        last = r.text().await.unwrap();
        if status == 200 {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("port URL never answered 200: {last}");
}

fn assert_no_credentials(head: &str, secrets: &[&str]) {
    for name in [
        "x-api-key",
        "authorization",
        "proxy-authorization",
        "x-access-token",
    ] {
        assert!(
            !head.lines().any(|l| l.starts_with(&format!("{name}:"))),
            "{name} reached the guest:\n{head}"
        );
    }
    for secret in secrets {
        assert!(
            !head.contains(&secret.to_lowercase()),
            "a credential reached the guest:\n{head}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_ports_reach_the_guest_without_credentials() {
    let Some(s) = guest_server().await else {
        return;
    };
    let port = echo_server().await;
    let v = s.create(json!({"ports": "private"})).await;
    let id = v["id"].as_str().unwrap().to_owned();
    let token = v["access_token"].as_str().unwrap().to_owned();

    // The owner's key (with other credentials a visitor might carry).
    let head = echoed(|| {
        port_req(&s, port, &id, "/hello?q=1")
            .header("X-API-Key", &s.key)
            .header("Authorization", "Bearer visitor-secret")
            .header("X-Access-Token", "wrn_at_wrong")
            .header("Cookie", "theme=dark; lang=en")
            .header("X-Custom", "kept")
    })
    .await;
    assert!(head.starts_with("get /hello?q=1 http/1.1"), "{head}");
    assert_no_credentials(&head, &[&s.key, "visitor-secret", "wrn_at_wrong"]);
    assert!(head.contains("cookie: theme=dark; lang=en"), "{head}");
    assert!(head.contains("x-custom: kept"), "{head}");

    // The token as header, then as query parameter (removed from the forwarded target).
    let head = echoed(|| port_req(&s, port, &id, "/").header("X-Access-Token", &token)).await;
    assert_no_credentials(&head, &[&token]);
    let head =
        echoed(|| port_req(&s, port, &id, &format!("/p?a=1&access_token={token}&b=2"))).await;
    assert!(head.starts_with("get /p?a=1&b=2 http/1.1"), "{head}");
    assert_no_credentials(&head, &[&token]);

    // Still refused without a credential, through a working tunnel too.
    assert_error(
        port_req(&s, port, &id, "/").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_ports_do_not_forward_the_callers_key() {
    let Some(s) = guest_server().await else {
        return;
    };
    let port = echo_server().await;
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    let head = echoed(|| {
        port_req(&s, port, &id, "/?access_token=app-owned")
            .header("X-API-Key", &s.key)
            .header("Authorization", "Basic dXNlcjpwYXNz")
            .header("Cookie", "sid=abc")
    })
    .await;
    assert_no_credentials(&head, &[&s.key, "dXNlcjpwYXNz"]);
    assert!(head.contains("cookie: sid=abc"), "{head}");
    // A public capsule has no access token: the parameter belongs to the app and stays.
    assert!(
        head.starts_with("get /?access_token=app-owned http/1.1"),
        "{head}"
    );
}

async fn capsules_of_older_releases_are_public_with_no_policy(db: Db) {
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let (url, conn_url) = match db {
        Db::Sqlite => {
            let path = dir.path().join("wrenn.db").to_string_lossy().into_owned();
            let conn = format!("sqlite://{path}?mode=rwc");
            (path, conn)
        }
        Db::Postgres => {
            let u = common::fresh_pg_url().await;
            (u.clone(), u)
        }
    };
    // A database as the first release left it, with one capsule.
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&conn_url).await.unwrap();
    sqlx::raw_sql(include_str!("../migrations/0001_init.sql"))
        .execute(&mut conn)
        .await
        .unwrap();
    let id = "cl-0123456789abcdefghijklmno";
    sqlx::raw_sql(&format!(
        "CREATE TABLE wrenn_migrations (version BIGINT PRIMARY KEY); \
         INSERT INTO wrenn_migrations (version) VALUES (1); \
         INSERT INTO capsules (id, team_id, status, template, host_template, vcpus, memory_mb, \
         timeout_sec, metadata, error, created_at, started_at, last_active_at, last_updated) \
         VALUES ('{id}', 'team-x', 'paused', 'minimal', 'minimal', 1, 512, 0, '{{}}', NULL, 1, 1, 1, 1)"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();

    let store = wrenn_control::Store::open(&url).await.unwrap();
    let row = store.capsule(id).await.unwrap().unwrap();
    assert_eq!(row.ports, "public");
    assert_eq!(row.network_policy, "{}");
    assert_eq!(row.access_token_hash, None);
    assert_eq!(row.network_enabled, None);
    let v = wrenn_control::api::views::capsule(&row);
    assert_eq!(v["ports"], "public");
    assert_eq!(
        v["network"]["policy"],
        json!({"allow_out": [], "deny_out": []})
    );
    assert_eq!(v["network"]["enabled"], false);
    assert!(v["network"]["reason"].is_string(), "{v}");
}
both_dbs!(capsules_of_older_releases_are_public_with_no_policy);
