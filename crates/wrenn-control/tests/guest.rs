//! Guest calls through a real envd (`envd --listen-unix`, one per capsule, on this host):
//! exec, processes, files (limits and streaming), exec/attach/PTY WebSockets, and an open
//! stream keeping a capsule alive. Skipped with a notice until the envd binary and client work
//! (build it with `cargo build -p wrenn-envd`).

mod common;

use std::time::Duration;

use base64::Engine;
use common::fake_host::FakeHost;
use common::{assert_error, Db, Server};
use futures::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

async fn server() -> Option<(Server, String)> {
    let bin = common::envd().await?;
    let mut host = FakeHost::new(64);
    host.envd_bin = Some(bin);
    let s = Server::start(Db::Sqlite, host).await;
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    Some((s, id))
}

async fn exec(s: &Server, id: &str, body: Value) -> (u16, Value) {
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id}/exec"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

fn sh(cmd: &str) -> Value {
    json!({"cmd": "/bin/sh", "args": ["-c", cmd], "background": false, "timeout_sec": 60})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_foreground_background_timeout_base64() {
    let Some((s, id)) = server().await else {
        return;
    };
    let (st, v) = exec(&s, &id, sh("echo hi; echo err >&2; exit 3")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["stdout"], "hi\n");
    assert_eq!(v["stderr"], "err\n");
    assert_eq!(v["exit_code"], 3);
    assert_eq!(v["encoding"], "utf-8");
    assert_eq!(v["sandbox_id"], id.as_str());
    assert!(v["duration_ms"].is_u64());

    let (_, v) = exec(&s, &id, sh("printf '\\377\\376'")).await;
    assert_eq!(v["encoding"], "base64", "{v}");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(v["stdout"].as_str().unwrap())
        .unwrap();
    assert_eq!(raw, vec![0xff, 0xfe]);

    let (st, v) = exec(
        &s,
        &id,
        json!({"cmd": "/bin/sh", "args": ["-c", "sleep 600"], "timeout_sec": 1}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_ne!(v["exit_code"], 0, "a timed-out command exits non-zero: {v}");

    let (st, v) = exec(&s, &id, json!({"cmd": "/bin/sh", "args": ["-c", "sleep 600"], "background": true, "tag": "sleeper"})).await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["tag"], "sleeper");
    assert!(v["pid"].as_u64().unwrap() > 0);
    let list: Value = s
        .req(Method::GET, &format!("/v1/capsules/{id}/processes"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        list["processes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["tag"] == "sleeper"),
        "{list}"
    );
    let k = s
        .req(
            Method::DELETE,
            &format!("/v1/capsules/{id}/processes/sleeper?signal=SIGKILL"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(k.status(), 204);
    // Once it is reaped, it is gone.
    let mut last = 0;
    for _ in 0..300 {
        last = s
            .req(
                Method::DELETE,
                &format!("/v1/capsules/{id}/processes/sleeper"),
            )
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if last == 404 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(last, 404);
    let (_, v) = exec(
        &s,
        &id,
        json!({"cmd": "/bin/sh", "args": ["-c", "sleep 600"], "background": true}),
    )
    .await;
    assert!(
        v["tag"].as_str().is_some_and(|t| !t.is_empty()),
        "generated tag: {v}"
    );
    let pid = v["pid"].as_u64().unwrap();
    let k = s
        .req(
            Method::DELETE,
            &format!("/v1/capsules/{id}/processes/{pid}?signal=SIGTERM"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(k.status(), 204);
}

fn form(path: &str, data: Vec<u8>) -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .text("path", path.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(data).file_name("upload"),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_roundtrip_limits_and_streaming() {
    let Some((s, id)) = server().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_string_lossy().into_owned();
    let f = format!("{base}/a/hello.txt");
    let w = s
        .req(Method::POST, &format!("/v1/capsules/{id}/files/write"))
        .multipart(form(&f, b"hello".to_vec()))
        .send()
        .await
        .unwrap();
    assert!(w.status().as_u16() < 400, "{}", w.status());
    let r = s
        .req(Method::POST, &format!("/v1/capsules/{id}/files/read"))
        .json(&json!({"path": f}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"hello");
    let l: Value = s
        .req(Method::POST, &format!("/v1/capsules/{id}/files/list"))
        .json(&json!({"path": format!("{base}/a"), "depth": 1}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let e = &l["entries"][0];
    assert_eq!(e["name"], "hello.txt");
    assert_eq!(e["type"], "file");
    assert_eq!(e["size"], 5);
    let m = s
        .req(Method::POST, &format!("/v1/capsules/{id}/files/mkdir"))
        .json(&json!({"path": format!("{base}/newdir")}))
        .send()
        .await
        .unwrap();
    assert_eq!(m.status(), 200);
    assert_eq!(
        m.json::<Value>().await.unwrap()["entry"]["type"],
        "directory"
    );
    assert_error(
        s.req(Method::POST, &format!("/v1/capsules/{id}/files/mkdir"))
            .json(&json!({"path": format!("{base}/newdir")}))
            .send()
            .await
            .unwrap(),
        409,
        "conflict",
    )
    .await;
    assert_eq!(
        s.req(Method::POST, &format!("/v1/capsules/{id}/files/remove"))
            .json(&json!({"path": f}))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_error(
        s.req(Method::POST, &format!("/v1/capsules/{id}/files/read"))
            .json(&json!({"path": f}))
            .send()
            .await
            .unwrap(),
        404,
        "not_found",
    )
    .await;

    // Over the (test) 64 KiB limit, sent chunked without a length: 413.
    let big: Vec<u8> = (0..(1024 * 1024u32)).map(|i| (i % 251) as u8).collect();
    let chunks = || -> Vec<Result<Vec<u8>, std::io::Error>> {
        big.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect()
    };
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(futures::stream::iter(
        chunks(),
    )))
    .file_name("upload");
    let form_big = reqwest::multipart::Form::new()
        .text("path", format!("{base}/big"))
        .part("file", part);
    assert_error(
        s.req(Method::POST, &format!("/v1/capsules/{id}/files/write"))
            .header("connection", "close")
            .multipart(form_big)
            .send()
            .await
            .unwrap(),
        413,
        "too_large",
    )
    .await;

    // The streaming routes take it and give it back.
    let part = reqwest::multipart::Part::stream(reqwest::Body::wrap_stream(futures::stream::iter(
        chunks(),
    )))
    .file_name("upload");
    let form_big = reqwest::multipart::Form::new()
        .text("path", format!("{base}/big"))
        .part("file", part);
    let w = s
        .req(
            Method::POST,
            &format!("/v1/capsules/{id}/files/stream/write"),
        )
        .multipart(form_big)
        .send()
        .await
        .unwrap();
    assert!(w.status().as_u16() < 400, "{}", w.status());
    let r = s
        .req(
            Method::POST,
            &format!("/v1/capsules/{id}/files/stream/read"),
        )
        .json(&json!({"path": format!("{base}/big")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut got = Vec::new();
    let mut body = r.bytes_stream();
    while let Some(c) = body.next().await {
        got.extend_from_slice(&c.unwrap());
    }
    assert_eq!(got.len(), big.len());
    assert!(got == big, "streamed bytes differ");
}

async fn ws(
    s: &Server,
    path: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let mut req = format!("{}{}", s.base.replace("http://", "ws://"), path)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("X-API-Key", s.key.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket")
        .0
}

async fn next_json<S>(ws: &mut S) -> Option<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next())
            .await
            .expect("message in time")
        {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_stream_and_attach() {
    let Some((s, id)) = server().await else {
        return;
    };
    let mut w = ws(&s, &format!("/v1/capsules/{id}/exec/stream")).await;
    w.send(Message::Text(json!({"type": "start", "cmd": "/bin/sh", "args": ["-c", "echo hello; echo oops >&2; exit 2"]}).to_string().into())).await.unwrap();
    let mut events = Vec::new();
    while let Some(v) = next_json(&mut w).await {
        events.push(v);
    }
    assert_eq!(events[0]["type"], "start", "{events:?}");
    assert!(events[0]["pid"].as_u64().unwrap() > 0);
    let out: String = events
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    let err: String = events
        .iter()
        .filter(|e| e["type"] == "stderr")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(out, "hello\n");
    assert_eq!(err, "oops\n");
    assert_eq!(events.last().unwrap()["type"], "exit");
    assert_eq!(events.last().unwrap()["exit_code"], 2);

    let (_, v) = exec(&s, &id, json!({"cmd": "/bin/sh", "args": ["-c", "for i in 1 2 3; do echo $i; sleep 0.2; done"], "background": true, "tag": "counter"})).await;
    let pid = v["pid"].as_u64().unwrap();
    let mut a = ws(&s, &format!("/v1/capsules/{id}/processes/{pid}/stream")).await;
    let mut events = Vec::new();
    while let Some(v) = next_json(&mut a).await {
        events.push(v);
    }
    let out: String = events
        .iter()
        .filter(|e| e["type"] == "stdout")
        .map(|e| e["data"].as_str().unwrap())
        .collect();
    assert_eq!(out, "1\n2\n3\n", "{events:?}");
    assert_eq!(events.last().unwrap()["exit_code"], 0);
    // Unknown process: 404 before any upgrade.
    let mut req = format!(
        "{}/v1/capsules/{id}/processes/no-such-tag/stream",
        s.base.replace("http://", "ws://")
    )
    .into_client_request()
    .unwrap();
    req.headers_mut()
        .insert("X-API-Key", s.key.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 404),
        other => panic!("expected 404, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pty_session_binary_frames_reattach_and_keepalive() {
    let Some((s, id)) = server().await else {
        return;
    };
    // Make the capsule idle-eligible: an open PTY must keep it running.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", s.db_url))
        .await
        .unwrap();
    sqlx::query("UPDATE capsules SET timeout_sec = 60")
        .execute(&pool)
        .await
        .unwrap();

    let mut w = ws(&s, &format!("/v1/capsules/{id}/pty")).await;
    w.send(Message::Text(
        json!({"type": "start", "cmd": "/bin/sh", "cols": 80, "rows": 24})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let started = next_json(&mut w).await.unwrap();
    assert_eq!(started["type"], "started", "{started}");
    let tag = started["tag"].as_str().unwrap().to_owned();
    w.send(Message::Binary(b"echo pty-$((40+2))\n".to_vec().into()))
        .await
        .unwrap();
    // Older text input form.
    let b64 = base64::engine::general_purpose::STANDARD.encode(b"echo text-$((1+1))\n");
    w.send(Message::Text(
        json!({"type": "input", "data": b64}).to_string().into(),
    ))
    .await
    .unwrap();
    w.send(Message::Text(
        json!({"type": "resize", "cols": 100, "rows": 30})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut screen = Vec::new();
    let mut pinged = false;
    while !(String::from_utf8_lossy(&screen).contains("pty-42")
        && String::from_utf8_lossy(&screen).contains("text-2")
        && pinged)
    {
        match tokio::time::timeout(Duration::from_secs(60), w.next())
            .await
            .expect("pty output in time")
        {
            Some(Ok(Message::Binary(b))) => screen.extend_from_slice(&b),
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_ne!(v["fatal"], true, "{v}");
                if v["type"] == "ping" {
                    pinged = true;
                    w.send(Message::Text(json!({"type": "pong"}).to_string().into()))
                        .await
                        .unwrap();
                }
            }
            other => panic!("pty ended early: {other:?}"),
        }
    }
    // Idle by the clock, but the open socket keeps it running through many TTL passes.
    sqlx::query("UPDATE capsules SET last_active_at = last_active_at - 120000")
        .execute(&pool)
        .await
        .unwrap();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(s.get(&id).await["status"], "running");
    }
    drop(w);
    // The session outlives the socket: reconnect by tag, then kill it.
    let mut w2 = ws(&s, &format!("/v1/capsules/{id}/pty")).await;
    w2.send(Message::Text(
        json!({"type": "connect", "tag": tag}).to_string().into(),
    ))
    .await
    .unwrap();
    let again = next_json(&mut w2).await.unwrap();
    assert_eq!(again["type"], "started", "{again}");
    assert_eq!(again["tag"], tag.as_str());
    w2.send(Message::Text(json!({"type": "kill"}).to_string().into()))
        .await
        .unwrap();
    let mut exit = None;
    while let Some(v) = next_json(&mut w2).await {
        if v["type"] == "exit" {
            exit = Some(v);
            break;
        }
    }
    assert!(exit.is_some(), "no exit after kill");
    // Unknown tag: a fatal error.
    let mut w3 = ws(&s, &format!("/v1/capsules/{id}/pty")).await;
    w3.send(Message::Text(
        json!({"type": "connect", "tag": "nope"}).to_string().into(),
    ))
    .await
    .unwrap();
    let err = next_json(&mut w3).await.unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["fatal"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampler_records_guest_metrics() {
    let Some((s, id)) = server().await else {
        return;
    };
    let mut last = Value::Null;
    for _ in 0..600 {
        last = s
            .req(Method::GET, &format!("/v1/capsules/{id}/metrics?range=5m"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if last["points"].as_array().is_some_and(|p| !p.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let p = &last["points"][0];
    assert!(
        p["timestamp_unix"].as_i64().unwrap() > 1_600_000_000,
        "{last}"
    );
    assert!(p["mem_bytes"].as_u64().unwrap() > 0, "{last}");
    assert!(p["cpu_pct"].as_f64().unwrap() >= 0.0, "{last}");
    assert!(p["disk_bytes"].is_u64(), "{last}");
}
