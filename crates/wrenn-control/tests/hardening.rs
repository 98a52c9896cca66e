//! Connection hardening and error-shape guarantees: header-read and idle timeouts
//! (slowloris), the connection bound, the per-key WebSocket bound, and JSON bodies on every
//! rejection (oversized bodies and URLs, unknown fields, a pause of a dead VM).

mod common;

use std::time::{Duration, Instant};

use common::fake_host::FakeHost;
use common::{assert_error, Db, Server};
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

fn addr(s: &Server) -> String {
    s.base.trim_start_matches("http://").to_owned()
}

/// Reads until the peer closes (`Ok(bytes)`) or `within` passes (`Err`).
async fn read_to_close(c: &mut TcpStream, within: Duration) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Err(_) => return Err(format!("still open after {within:?}; got {got:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Status and JSON body of a raw HTTP/1.1 answer.
fn parse_answer(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head: {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "not JSON: {text:?}"
    );
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("non-JSON body: {text:?}"));
    (status, body)
}

async fn slow_headers_are_cut_off(db: Db) {
    let s = Server::start_with(db, FakeHost::new(4), |c| {
        c.header_read_timeout = Duration::from_millis(300);
    })
    .await;
    // Half a header, then nothing: closed after the timeout.
    let mut half = TcpStream::connect(addr(&s)).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Nothing at all: closed too.
    let mut silent = TcpStream::connect(addr(&s)).await.unwrap();
    let started = Instant::now();
    read_to_close(&mut half, Duration::from_secs(5))
        .await
        .unwrap();
    read_to_close(&mut silent, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    // A kept-alive connection that sends no next request is closed as well.
    let mut kept = TcpStream::connect(addr(&s)).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_to_close(&mut kept, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{got:?}"
    );
    // Prompt clients are served as before.
    let r = s
        .http
        .get(format!("{}/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
both_dbs!(slow_headers_are_cut_off);

async fn idle_connections_are_closed(db: Db) {
    let s = Server::start_with(db, FakeHost::new(4), |c| {
        c.idle_timeout = Duration::from_millis(300);
    })
    .await;
    let mut c = TcpStream::connect(addr(&s)).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // Header-read timeout is 30 s: the close within 5 s comes from the idle timeout.
    let got = read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"),
        "{got:?}"
    );
}
both_dbs!(idle_connections_are_closed);

async fn connections_past_the_bound_get_503_json(db: Db) {
    const MAX: usize = 6;
    let s = Server::start_with(db, FakeHost::new(4), |c| c.max_connections = MAX).await;
    let mut held = Vec::new();
    let mut refused = None;
    for _ in 0..MAX + 2 {
        let mut c = TcpStream::connect(addr(&s)).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf))
            .await
            .expect("every connection is answered quickly")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with("HTTP/1.1 503") {
            refused = Some(buf[..n].to_vec());
            // And it is closed, not left hanging.
            read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
            break;
        }
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        held.push(c);
    }
    let refused = refused.expect("a connection past the bound is refused");
    let (status, body) = parse_answer(&refused);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("host_unavailable"))
    );
    // The test client's pooled connection may hold one slot.
    assert!(
        held.len() >= MAX - 1,
        "served {} before refusing",
        held.len()
    );
    // Freed slots serve again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = reqwest::Client::new()
        .get(format!("{}/health", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
both_dbs!(connections_past_the_bound_get_503_json);

async fn oversized_bodies_and_urls_get_json_errors(db: Db) {
    let s = Server::start(db, FakeHost::new(4)).await;
    // A create body over the 1 MiB JSON limit.
    let big = format!(
        r#"{{"template":"minimal","metadata":{{"a":"{}"}}}}"#,
        "x".repeat(1_100_000)
    );
    let r = s
        .req(Method::POST, "/v1/capsules")
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .unwrap();
    // The body was refused unread: the answer says the connection ends, so no client reuses
    // it for a request that would then fail.
    assert_eq!(
        r.headers().get("connection").and_then(|v| v.to_str().ok()),
        Some("close")
    );
    assert_error(r, 413, "too_large").await;
    // The next request on the same client goes through.
    let after = s.req(Method::GET, "/v1/capsules").send().await.unwrap();
    assert_eq!(after.status(), 200);
    // A 100 KB URL: hyper refuses it before routing; the answer is still JSON.
    let mut c = TcpStream::connect(addr(&s)).await.unwrap();
    let req = format!(
        "GET /v1/capsules?x={} HTTP/1.1\r\nHost: x\r\nX-API-Key: {}\r\n\r\n",
        "a".repeat(100_000),
        s.key
    );
    c.write_all(req.as_bytes()).await.unwrap();
    let got = read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
    let (status, body) = parse_answer(&got);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (414, Some("too_large")),
        "{body}"
    );
    // Headers over hyper's limit: 431 JSON.
    let mut c = TcpStream::connect(addr(&s)).await.unwrap();
    let mut req = String::from("GET /health HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        req.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(2000)));
    }
    req.push_str("\r\n");
    let _ = c.write_all(req.as_bytes()).await;
    let got = read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
    let (status, body) = parse_answer(&got);
    assert_eq!(
        body["error"]["code"],
        if status == 431 {
            "too_large"
        } else {
            "invalid_request"
        }
    );
    // Garbage instead of HTTP: 400 JSON.
    let mut c = TcpStream::connect(addr(&s)).await.unwrap();
    c.write_all(b"NOT HTTP AT ALL\r\n\r\n").await.unwrap();
    let got = read_to_close(&mut c, Duration::from_secs(5)).await.unwrap();
    let (status, body) = parse_answer(&got);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
}
both_dbs!(oversized_bodies_and_urls_get_json_errors);

async fn unknown_fields_are_refused_everywhere(db: Db) {
    let s = Server::start(db, FakeHost::new(4)).await;
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    for (path, body) in [
        (
            "/v1/capsules",
            json!({"template": "minimal", "bogus_field": 1}),
        ),
        ("/v1/snapshots", json!({"sandbox_id": id, "bogus_field": 1})),
    ] {
        let r = s.req(Method::POST, path).json(&body).send().await.unwrap();
        let v = assert_error(r, 400, "invalid_request").await;
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("bogus_field"),
            "{path}: {v}"
        );
    }
}
both_dbs!(unknown_fields_are_refused_everywhere);

async fn pausing_a_dead_vm_is_invalid_state(db: Db) {
    let s = Server::start(db, FakeHost::new(4)).await;
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    s.host.crash(&id);
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id}/pause"))
        .send()
        .await
        .unwrap();
    let v = assert_error(r, 409, "invalid_state").await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("error"),
        "{v}"
    );
    assert_eq!(s.get(&id).await["status"], "error");
    // An injected transient failure on a live VM stays a server error.
    let id2 = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    s.host
        .fail_pause
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id2}/pause"))
        .send()
        .await
        .unwrap();
    assert_error(r, 500, "internal_error").await;
}
both_dbs!(pausing_a_dead_vm_is_invalid_state);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_are_bounded_per_key() {
    let Some(bin) = common::envd().await else {
        return;
    };
    let mut host = FakeHost::new(8);
    host.envd_bin = Some(bin);
    let s = Server::start_with(Db::Sqlite, host, |c| c.max_websockets_per_key = 2).await;
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    let connect = |key: String| {
        let url = format!(
            "{}/v1/capsules/{id}/pty",
            s.base.replace("http://", "ws://")
        );
        async move {
            let mut req = url.into_client_request().unwrap();
            req.headers_mut().insert("X-API-Key", key.parse().unwrap());
            tokio_tungstenite::connect_async(req).await
        }
    };
    let a = connect(s.key.clone()).await.expect("first");
    let _b = connect(s.key.clone()).await.expect("second");
    match connect(s.key.clone()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let body: Value =
                serde_json::from_slice(resp.body().as_deref().unwrap_or(b"")).unwrap();
            assert_eq!(body["error"]["code"], "too_many_requests", "{body}");
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    // Another key has its own allowance; closing one frees a slot.
    let other = s.key_for("team-a").await;
    let _c = connect(other).await.expect("another key");
    drop(a);
    let mut ok = false;
    for _ in 0..50 {
        if connect(s.key.clone()).await.is_ok() {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "a closed WebSocket frees its slot");
}
