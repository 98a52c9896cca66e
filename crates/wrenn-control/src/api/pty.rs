//! PTY WebSocket (`GET /v1/capsules/{id}/pty`): binary frames both ways, control as JSON text.
//! A session outlives its socket; a client reattaches by tag.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use axum::extract::State;
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use wrenn_envd_client::{EnvdClient, PtySession};
use wrenn_protocol::{PtyEvent, PtyStart};

use super::extract::Params;
use super::ws::Upgrade;
use crate::api::error::ApiError;
use crate::auth::Auth;
use crate::core::activity::StreamGuard;
use crate::state::AppState;

/// Client text messages.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMsg {
    Start {
        cmd: Option<String>,
        #[serde(default)]
        args: Vec<String>,
        #[serde(default)]
        envs: BTreeMap<String, String>,
        cwd: Option<String>,
        cols: Option<u16>,
        rows: Option<u16>,
        tag: Option<String>,
    },
    Connect {
        tag: String,
    },
    Input {
        data: String,
    },
    Resize {
        cols: u16,
        rows: u16,
    },
    Kill,
    Pong,
}

fn text(v: Value) -> Message {
    Message::Text(v.to_string().into())
}

fn error_msg(data: impl std::fmt::Display, fatal: bool) -> Message {
    text(json!({"type": "error", "data": data.to_string(), "fatal": fatal}))
}

/// `GET /v1/capsules/{id}/pty`.
pub async fn pty(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    Upgrade(ws): Upgrade,
) -> Result<Response, ApiError> {
    let id = params.capsule_id()?.to_owned();
    let (_, guest) = state.running_guest(&auth, &id).await?;
    let slot = state.ws_slots.acquire(&auth.actor.id)?;
    let guard = state.activity.open_stream(&id);
    let ping_every = state.config.pty_ping_interval;
    let stopped = state.stopped();
    Ok(ws.on_upgrade(move |socket| async move {
        let _guard: StreamGuard = guard;
        let _slot = slot;
        // The session itself survives a server shutdown; only the socket ends.
        tokio::select! {
            _ = run(socket, guest, ping_every) => {}
            _ = stopped => {}
        }
    }))
}

async fn first_message(socket: &mut WebSocket) -> Option<Result<ClientMsg, String>> {
    while let Some(Ok(msg)) = socket.recv().await {
        match msg {
            Message::Text(t) => {
                return Some(serde_json::from_str(t.as_str()).map_err(|e| e.to_string()))
            }
            Message::Close(_) => return None,
            _ => continue,
        }
    }
    None
}

async fn open_session(guest: &EnvdClient, msg: ClientMsg) -> Result<PtySession, String> {
    match msg {
        ClientMsg::Start {
            cmd,
            args,
            envs,
            cwd,
            cols,
            rows,
            tag,
        } => {
            let req = PtyStart {
                cmd,
                args,
                envs,
                cwd,
                user: None,
                cols: cols.filter(|c| *c > 0).unwrap_or(80),
                rows: rows.filter(|r| *r > 0).unwrap_or(24),
                tag,
            };
            guest.pty_start(req).await.map_err(|e| e.to_string())
        }
        ClientMsg::Connect { tag } => guest.pty_connect(&tag).await.map_err(|e| e.to_string()),
        _ => Err("first message must be start or connect".into()),
    }
}

async fn run(mut socket: WebSocket, guest: EnvdClient, ping_every: Duration) {
    let first = tokio::time::timeout(Duration::from_secs(60), first_message(&mut socket)).await;
    let msg = match first {
        Ok(Some(Ok(m))) => m,
        Ok(Some(Err(e))) => {
            let _ = socket
                .send(error_msg(format!("bad message: {e}"), true))
                .await;
            let _ = socket.close().await;
            return;
        }
        Ok(None) => return,
        Err(_) => {
            let _ = socket
                .send(error_msg("no start message within 60 s", true))
                .await;
            let _ = socket.close().await;
            return;
        }
    };
    let session = match open_session(&guest, msg).await {
        Ok(s) => s,
        Err(e) => {
            let _ = socket.send(error_msg(e, true)).await;
            let _ = socket.close().await;
            return;
        }
    };
    let tag = session.tag.clone();
    if socket
        .send(text(
            json!({"type": "started", "tag": tag, "pid": session.pid}),
        ))
        .await
        .is_err()
    {
        return;
    }
    let (mut tx, mut rx) = socket.split();
    let mut output = session.output;
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    loop {
        tokio::select! {
            ev = output.next() => match ev {
                Some(PtyEvent::Output { data }) => {
                    if tx.send(Message::Binary(Bytes::from(data))).await.is_err() {
                        break;
                    }
                }
                Some(PtyEvent::Exit { exit_code }) => {
                    let _ = tx.send(text(json!({"type": "exit", "exit_code": exit_code}))).await;
                    break;
                }
                None => {
                    let _ = tx.send(error_msg("terminal session stream ended", true)).await;
                    break;
                }
            },
            msg = rx.next() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Binary(b))) => {
                    if let Err(e) = guest.pty_input(&tag, b).await {
                        let _ = tx.send(error_msg(e, false)).await;
                    }
                }
                Some(Ok(Message::Text(t))) => {
                    let reply = match serde_json::from_str::<ClientMsg>(t.as_str()) {
                        Ok(ClientMsg::Input { data }) => {
                            match base64::engine::general_purpose::STANDARD.decode(data.as_bytes()) {
                                Ok(bytes) => guest.pty_input(&tag, Bytes::from(bytes)).await.map_err(|e| e.to_string()),
                                Err(e) => Err(format!("input data is not base64: {e}")),
                            }
                        }
                        Ok(ClientMsg::Resize { cols, rows }) => {
                            if cols == 0 || rows == 0 {
                                Err("cols and rows must be positive".to_string())
                            } else {
                                guest.pty_resize(&tag, cols, rows).await.map_err(|e| e.to_string())
                            }
                        }
                        Ok(ClientMsg::Kill) => guest.pty_kill(&tag).await.map_err(|e| e.to_string()),
                        Ok(ClientMsg::Pong) => Ok(()),
                        Ok(ClientMsg::Start { .. } | ClientMsg::Connect { .. }) => {
                            Err("session already started".to_string())
                        }
                        Err(e) => Err(format!("bad message: {e}")),
                    };
                    if let Err(e) = reply {
                        if tx.send(error_msg(e, false)).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if tx.send(text(json!({"type": "ping"}))).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.close().await;
}
