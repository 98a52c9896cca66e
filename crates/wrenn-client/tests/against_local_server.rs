//! The client against small local servers speaking the contract: REST paths, the API key
//! header, error bodies, and the PTY WebSocket protocol.

use std::net::SocketAddr;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use wrenn_client::shell::{self, Start};
use wrenn_client::types::{CreateCapsule, ExecRequest};
use wrenn_client::{ApiClient, ApiError};

const KEY: &str = "wrn_0123456789abcdef0123456789abcdef";

fn capsule(id: &str, status: &str) -> Value {
    json!({"id": id, "status": status, "template": "minimal", "vcpus": 1, "memory_mb": 512,
           "timeout_sec": 0, "created_at": "2026-01-01T00:00:00Z", "metadata": {}})
}

// A test handler helper: the large error is an HTTP response handed straight back to axum.
#[allow(clippy::result_large_err)]
fn authorized(h: &HeaderMap) -> Result<(), Response> {
    if h.get("x-api-key").and_then(|v| v.to_str().ok()) == Some(KEY) {
        Ok(())
    } else {
        Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": {"code": "unauthorized", "message": "invalid API key"}})),
        )
            .into_response())
    }
}

async fn pty(h: HeaderMap, Path(id): Path<String>, ws: WebSocketUpgrade) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    if id != "cl-pty" {
        return (
            StatusCode::CONFLICT,
            Json(json!({"error": {"code": "invalid_state", "message": "capsule is paused"}})),
        )
            .into_response();
    }
    ws.on_upgrade(pty_session)
}

/// Expects a start message, pings, waits for the pong, prints, exits with 7.
async fn pty_session(mut ws: WebSocket) {
    let Some(Ok(Message::Text(first))) = ws.recv().await else {
        return;
    };
    let start: Value = serde_json::from_str(first.as_str()).unwrap_or_default();
    let ok = start["type"] == "start"
        && start["cmd"] == "/bin/bash"
        && start["cols"] == 80
        && start["rows"] == 24;
    if !ok {
        let _ = ws
            .send(Message::Text(
                json!({"type":"error","data":format!("bad start {start}"),"fatal":true})
                    .to_string()
                    .into(),
            ))
            .await;
        return;
    }
    let _ = ws
        .send(Message::Text(
            json!({"type":"started","tag":"t1","pid":9})
                .to_string()
                .into(),
        ))
        .await;
    let _ = ws
        .send(Message::Text(json!({"type":"ping"}).to_string().into()))
        .await;
    loop {
        match ws.recv().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("pong") => break,
            Some(Ok(_)) => continue,
            _ => return,
        }
    }
    let _ = ws
        .send(Message::Binary(b"hello from the pty\r\n".to_vec().into()))
        .await;
    let _ = ws
        .send(Message::Text(
            json!({"type":"exit","exit_code":7}).to_string().into(),
        ))
        .await;
}

async fn serve() -> SocketAddr {
    let v1 = Router::new()
        .route(
            "/capsules",
            get(|h: HeaderMap| async move {
                authorized(&h)?;
                Ok::<_, Response>(Json(json!([capsule("cl-a", "running")])))
            })
            .post(|h: HeaderMap, Json(body): Json<Value>| async move {
                authorized(&h)?;
                let mut c = capsule("cl-new", "running");
                c["vcpus"] = body["vcpus"].clone();
                Ok::<_, Response>((StatusCode::CREATED, Json(c)))
            }),
        )
        .route(
            "/capsules/{id}/exec",
            post(|Json(body): Json<Value>| async move {
                Json(
                    json!({"stdout": "/w==", "stderr": "", "exit_code": 3, "encoding": "base64",
                            "echo": body}),
                )
            }),
        )
        .route("/capsules/{id}/pty", get(pty));
    let app = Router::new().nest("/v1", v1.clone()).nest("/api/v1", v1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

#[tokio::test]
async fn rest_calls_work_with_and_without_api_prefix() {
    let addr = serve().await;
    for base in [format!("http://{addr}"), format!("http://{addr}/api/")] {
        let c = ApiClient::new(&base, Some(KEY)).unwrap();
        let list = c.list_capsules().await.unwrap();
        assert_eq!(list[0].id, "cl-a");
        let created = c
            .create_capsule(&CreateCapsule {
                vcpus: Some(2),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!((created.id.as_str(), created.vcpus), ("cl-new", 2));
    }
}

#[tokio::test]
async fn exec_result_is_decoded_and_request_is_contract_shaped() {
    let addr = serve().await;
    let c = ApiClient::new(&format!("http://{addr}"), Some(KEY)).unwrap();
    let req = ExecRequest {
        cmd: "/bin/sh".into(),
        args: vec!["-c".into(), "true".into()],
        cwd: Some("/tmp".into()),
        ..Default::default()
    };
    let r = c.exec("cl-a", &req).await.unwrap();
    assert_eq!(r.stdout_bytes().unwrap(), vec![0xff]);
    assert_eq!(r.exit_code, 3);
    assert_eq!(
        r.extra["echo"],
        json!({"cmd": "/bin/sh", "args": ["-c", "true"], "cwd": "/tmp"})
    );
}

#[tokio::test]
async fn server_errors_carry_code_and_message() {
    let addr = serve().await;
    let c = ApiClient::new(&format!("http://{addr}"), Some("wrn_wrong")).unwrap();
    let e = c.list_capsules().await.unwrap_err();
    assert_eq!(e.to_string(), "unauthorized: invalid API key");
    assert!(matches!(e, ApiError::Api { status: 401, .. }));
}

#[tokio::test]
async fn shell_answers_ping_prints_output_and_returns_the_exit_code() {
    let addr = serve().await;
    let c = ApiClient::new(&format!("http://{addr}/api"), Some(KEY)).unwrap();
    let code = shell::run(&c, "cl-pty", Start::Command { cmd: None })
        .await
        .unwrap();
    assert_eq!(code, 7);
}

#[tokio::test]
async fn shell_refused_upgrade_is_the_server_error() {
    let addr = serve().await;
    let c = ApiClient::new(&format!("http://{addr}"), Some(KEY)).unwrap();
    let e = shell::run(&c, "cl-paused", Start::Command { cmd: None })
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "invalid_state: capsule is paused");
    let c = ApiClient::new(&format!("http://{addr}"), Some("wrn_wrong")).unwrap();
    let e = shell::run(&c, "cl-pty", Start::Command { cmd: None })
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "unauthorized: invalid API key");
}
