//! Browser sessions over a fake host: an API key exchanged for a cookie that authenticates
//! REST, SSE and WebSocket routes from this server's own origin only, and dies with sign-out,
//! expiry and the key's revocation. Each scenario runs on SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::fake_host::FakeHost;
use common::{assert_error, Db, Server};
use reqwest::Method;
use serde_json::{json, Value};

/// Signs in with `key`; returns the `Set-Cookie` value and the `name=value` pair to send.
async fn sign_in(s: &Server, key: &str, extra: &[(&str, &str)]) -> (String, String) {
    let mut rb = s
        .http
        .post(format!("{}/v1/sessions", s.base))
        .json(&json!({ "api_key": key }));
    for (k, v) in extra {
        rb = rb.header(*k, *v);
    }
    let r = rb.send().await.unwrap();
    assert_eq!(r.status(), 201);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["team"], "team-a");
    assert!(
        !body.to_string().contains(key),
        "the key must not come back: {body}"
    );
    let pair = set.split(';').next().unwrap().to_owned();
    (set, pair)
}

/// Asserts that a request with `cookie` to `path` is refused as unauthenticated.
async fn refused(s: &Server, cookie: &str, path: &str) {
    let r = with_cookie(s, cookie, Method::GET, path)
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;
}

/// Asserts that a request with `cookie` to `path` is served.
async fn served(s: &Server, cookie: &str, path: &str) {
    let r = with_cookie(s, cookie, Method::GET, path)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
}

fn host_of(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// A request with only the cookie (and the given headers).
fn with_cookie(s: &Server, cookie: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
    s.http
        .request(method, format!("{}{}", s.base, path))
        .header("Cookie", cookie)
}

async fn cookie_authenticates_from_our_origin_only(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let (set, cookie) = sign_in(&s, &s.key, &[]).await;
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let (set_tls, _) = sign_in(&s, &s.key, &[("X-Forwarded-Proto", "https")]).await;
    assert!(set_tls.contains("; Secure"), "{set_tls}");

    // REST: no Origin (same-origin GET) and our own Origin pass; another site's is 403.
    let created = with_cookie(&s, &cookie, Method::POST, "/v1/capsules")
        .header("Origin", format!("http://{}", host_of(&s)))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let list = with_cookie(&s, &cookie, Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let who: Value = with_cookie(&s, &cookie, Method::GET, "/v1/sessions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (who["team"].as_str(), who["admin"].as_bool()),
        (Some("team-a"), Some(false))
    );
    for (name, value) in [
        ("Origin", "http://evil.example"),
        ("Origin", "null"),
        ("Sec-Fetch-Site", "cross-site"),
    ] {
        assert_error(
            with_cookie(&s, &cookie, Method::DELETE, &format!("/v1/capsules/{id}"))
                .header(name, value)
                .send()
                .await
                .unwrap(),
            403,
            "forbidden",
        )
        .await;
    }
    // The SSE stream takes the cookie too.
    let sse = with_cookie(&s, &cookie, Method::GET, "/v1/events/stream")
        .header("Origin", format!("http://{}", host_of(&s)))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    drop(sse);

    // WebSockets: only with our Origin (here the capsule is paused, so passing auth is 409).
    assert_eq!(
        s.req(Method::POST, &format!("/v1/capsules/{id}/pause"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for (origin, want) in [
        (None, 403),
        (Some("http://evil.example".to_owned()), 403),
        (Some(format!("http://{}", host_of(&s))), 409),
    ] {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!(
            "{}/v1/capsules/{id}/pty",
            s.base.replace("http://", "ws://")
        )
        .into_client_request()
        .unwrap();
        req.headers_mut().insert("Cookie", cookie.parse().unwrap());
        if let Some(o) = &origin {
            req.headers_mut().insert("Origin", o.parse().unwrap());
        }
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), want, "origin {origin:?}")
            }
            other => panic!(
                "origin {origin:?}: expected {want}, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    // Without a cookie or a key: 401 as before; a key needs no Origin check.
    assert_error(
        s.http
            .get(format!("{}/v1/capsules", s.base))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let keyed = s
        .req(Method::GET, "/v1/capsules")
        .header("Origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 200);
}
both_dbs!(cookie_authenticates_from_our_origin_only);

async fn sessions_end_with_sign_out_revocation_and_expiry(db: Db) {
    let s = Server::start_with(db, FakeHost::new(8), |c| {
        c.session_ttl = Duration::from_secs(2);
    })
    .await;
    // A key of its own, so revoking it leaves the suite's key alone.
    let key_b = s.key_for("team-a").await;
    let (_, cookie) = sign_in(&s, &key_b, &[]).await;
    served(&s, &cookie, "/v1/capsules").await;

    // Sign-out: the cookie is cleared and refused from then on.
    let out = with_cookie(&s, &cookie, Method::DELETE, "/v1/sessions")
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 204);
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    refused(&s, &cookie, "/v1/capsules").await;

    // Revocation of the key ends its sessions at once.
    let (_, cookie) = sign_in(&s, &key_b, &[]).await;
    let b = s
        .store
        .key_by_hash(&wrenn_control::ids::hash_key(&key_b))
        .await
        .unwrap()
        .expect("the second key");
    assert!(s.store.remove_key(&b.id).await.unwrap());
    refused(&s, &cookie, "/v1/capsules").await;

    // Expiry.
    let (_, cookie) = sign_in(&s, &s.key, &[]).await;
    served(&s, &cookie, "/v1/capsules").await;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    refused(&s, &cookie, "/v1/capsules").await;
}
both_dbs!(sessions_end_with_sign_out_revocation_and_expiry);

async fn sign_in_refuses_bad_keys_bodies_and_other_sites(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let post = |body: Value| s.http.post(format!("{}/v1/sessions", s.base)).json(&body);
    assert_error(
        post(json!({"api_key": "wrn_0000"})).send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        post(json!({"api_key": format!("wrn_{}", "0".repeat(32))}))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    assert_error(
        post(json!({})).send().await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post(json!({"api_key": s.key, "x": 1}))
            .send()
            .await
            .unwrap(),
        400,
        "invalid_request",
    )
    .await;
    assert_error(
        post(json!({"api_key": s.key}))
            .header("Origin", "http://evil.example")
            .send()
            .await
            .unwrap(),
        403,
        "forbidden",
    )
    .await;
    // A cookie of the wrong shape is no session.
    refused(&s, "wrenn_session=wrs_nope", "/v1/capsules").await;
}
both_dbs!(sign_in_refuses_bad_keys_bodies_and_other_sites);
