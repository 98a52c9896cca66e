//! WebSocket exec stream (`…/exec/stream`) and attach (`…/processes/{selector}/stream`).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use wrenn_envd_client::ProcessStream;
use wrenn_protocol::{ExecRequest, ProcessEvent};

use super::exec::selector;
use super::extract::Params;
use super::utf8::Utf8Decoder;
use crate::api::error::ApiError;
use crate::auth::Auth;
use crate::core::activity::StreamGuard;
use crate::state::AppState;

/// Client messages of the exec stream.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMsg {
    Start {
        cmd: String,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        envs: BTreeMap<String, String>,
        cwd: Option<String>,
    },
    Stop,
}

/// The upgrade extractor with a contract-shaped rejection.
pub struct Upgrade(pub WebSocketUpgrade);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(Upgrade)
            .map_err(|e| {
                ApiError::invalid(format!("WebSocket upgrade required: {}", e.body_text()))
            })
    }
}

async fn send_json(ws: &mut WebSocket, v: Value) -> bool {
    ws.send(Message::Text(v.to_string().into())).await.is_ok()
}

/// `GET /v1/capsules/{id}/exec/stream`.
pub async fn exec_stream(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    Upgrade(ws): Upgrade,
) -> Result<Response, ApiError> {
    let id = params.capsule_id()?.to_owned();
    let (_, guest) = state.running_guest(&auth, &id).await?;
    let slot = state.ws_slots.acquire(&auth.actor.id)?;
    let guard = state.activity.open_stream(&id);
    let stopped = state.stopped();
    Ok(ws.on_upgrade(move |socket| async move {
        let _guard: StreamGuard = guard;
        let _slot = slot;
        tokio::select! {
            _ = exec_session(socket, guest) => {}
            _ = stopped => {}
        }
    }))
}

async fn exec_session(mut socket: WebSocket, guest: wrenn_envd_client::EnvdClient) {
    {
        let start =
            tokio::time::timeout(Duration::from_secs(60), next_client_msg(&mut socket)).await;
        let Ok(Some(ClientMsg::Start {
            cmd,
            args,
            envs,
            cwd,
        })) = start
        else {
            let _ = send_json(
                &mut socket,
                json!({"type": "error", "data": "expected a start message"}),
            )
            .await;
            let _ = socket.close().await;
            return;
        };
        let req = ExecRequest {
            cmd,
            args,
            envs,
            cwd,
            ..Default::default()
        };
        match guest.exec_stream(req).await {
            Ok(stream) => pump_process(socket, stream, true).await,
            Err(e) => {
                let _ =
                    send_json(&mut socket, json!({"type": "error", "data": e.to_string()})).await;
                let _ = socket.close().await;
            }
        }
    }
}

/// `GET /v1/capsules/{id}/processes/{selector}/stream`.
pub async fn attach(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    Upgrade(ws): Upgrade,
) -> Result<Response, ApiError> {
    let id = params.capsule_id()?.to_owned();
    let target = selector(params.get("selector")?)?;
    let (_, guest) = state.running_guest(&auth, &id).await?;
    // Attach before upgrading so an unknown process is a 404, not a closed socket.
    let stream = guest.attach(target).await?;
    let slot = state.ws_slots.acquire(&auth.actor.id)?;
    let guard = state.activity.open_stream(&id);
    let stopped = state.stopped();
    Ok(ws.on_upgrade(move |socket| async move {
        let _guard: StreamGuard = guard;
        let _slot = slot;
        tokio::select! {
            _ = pump_process(socket, stream, false) => {}
            _ = stopped => {}
        }
    }))
}

async fn next_client_msg(socket: &mut WebSocket) -> Option<ClientMsg> {
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Text(t) => return serde_json::from_str(t.as_str()).ok(),
            Message::Binary(b) => return serde_json::from_slice(&b).ok(),
            Message::Close(_) => return None,
            _ => continue,
        }
    }
    None
}

/// Forwards process events as text frames until exit; a `stop` from the client (when
/// `stoppable`) or a closed socket ends the stream.
async fn pump_process(socket: WebSocket, stream: ProcessStream, stoppable: bool) {
    let (mut tx, mut rx) = socket.split();
    let mut events: BoxStream<'static, ProcessEvent> = stream.events;
    let mut out = Utf8Decoder::default();
    let mut err = Utf8Decoder::default();
    if tx
        .send(Message::Text(
            json!({"type": "start", "pid": stream.pid})
                .to_string()
                .into(),
        ))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            ev = events.next() => {
                let msg = match ev {
                    Some(ProcessEvent::Started { pid }) => json!({"type": "start", "pid": pid}),
                    Some(ProcessEvent::Stdout { data }) => json!({"type": "stdout", "data": out.push(&data)}),
                    Some(ProcessEvent::Stderr { data }) => json!({"type": "stderr", "data": err.push(&data)}),
                    Some(ProcessEvent::Exit { exit_code }) => {
                        for (kind, dec) in [("stdout", &mut out), ("stderr", &mut err)] {
                            let rest = dec.finish();
                            if !rest.is_empty() {
                                let _ = tx.send(Message::Text(json!({"type": kind, "data": rest}).to_string().into())).await;
                            }
                        }
                        let _ = tx.send(Message::Text(json!({"type": "exit", "exit_code": exit_code}).to_string().into())).await;
                        break;
                    }
                    Some(ProcessEvent::Error { message }) => {
                        let _ = tx.send(Message::Text(json!({"type": "error", "data": message}).to_string().into())).await;
                        break;
                    }
                    None => {
                        let _ = tx.send(Message::Text(json!({"type": "error", "data": "process stream ended without an exit"}).to_string().into())).await;
                        break;
                    }
                };
                if tx.send(Message::Text(msg.to_string().into())).await.is_err() {
                    break;
                }
            }
            msg = rx.next() => {
                match msg {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                    Some(Ok(Message::Text(t))) if stoppable => {
                        if matches!(serde_json::from_str::<ClientMsg>(t.as_str()), Ok(ClientMsg::Stop)) {
                            // Dropping the exec stream kills the process group.
                            drop(events);
                            let _ = tx.send(Message::Text(json!({"type": "error", "data": "stopped by client"}).to_string().into())).await;
                            let _ = tx.close().await;
                            return;
                        }
                    }
                    Some(Ok(_)) => {}
                }
            }
        }
    }
    let _ = tx.close().await;
}
