//! `wrenn capsule shell`: an interactive terminal over the PTY WebSocket.

use std::io::{Read, Write};

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::api::{error_from_body, ApiClient, API_KEY_HEADER};
use crate::error::ApiError;
use crate::terminal::{self, RawMode, RawModeError};
use crate::urls::segment;

/// How the terminal session begins.
#[derive(Debug, Clone, PartialEq)]
pub enum Start {
    /// A new session running `cmd` through `/bin/sh -c`, or `/bin/bash` when `None`.
    Command {
        /// The command line.
        cmd: Option<String>,
    },
    /// Reattach to the running session with this tag.
    Attach {
        /// The session tag.
        tag: String,
    },
}

/// Why a terminal session failed.
#[derive(Debug, thiserror::Error)]
pub enum ShellError {
    /// Opening or using the WebSocket failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The local terminal could not be set up.
    #[error(transparent)]
    Terminal(#[from] RawModeError),
    /// The server ended the session with an error.
    #[error("pty: {0}")]
    Remote(String),
    /// The connection closed before the remote command exited.
    #[error("pty: connection closed before the session ended")]
    Closed,
    /// Writing terminal output failed.
    #[error("output: writing to the terminal failed")]
    Io(#[from] std::io::Error),
}

/// The first client message of the session.
pub fn start_message(start: &Start, cols: u16, rows: u16) -> Value {
    match start {
        Start::Command { cmd: None } => {
            json!({"type": "start", "cmd": "/bin/bash", "cols": cols, "rows": rows})
        }
        Start::Command { cmd: Some(c) } => json!({
            "type": "start", "cmd": "/bin/sh", "args": ["-c", c], "cols": cols, "rows": rows
        }),
        Start::Attach { tag } => json!({"type": "connect", "tag": tag}),
    }
}

/// What a server text frame asks of the client.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The session runs under this tag.
    Started {
        /// Session tag (for reattaching).
        tag: String,
    },
    /// The remote command exited.
    Exit(i32),
    /// An error; `fatal` ends the session.
    Error {
        /// The server's text.
        message: String,
        /// Whether the session is over.
        fatal: bool,
    },
    /// Keepalive: answer with pong.
    Ping,
    /// Anything else (ignored).
    Other,
}

/// Parses a server text frame.
pub fn parse_event(text: &str) -> ServerEvent {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => return ServerEvent::Other,
    };
    match v.get("type").and_then(Value::as_str) {
        Some("started") => ServerEvent::Started {
            tag: v
                .get("tag")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        },
        Some("exit") => ServerEvent::Exit(
            v.get("exit_code")
                .and_then(Value::as_i64)
                .and_then(|c| i32::try_from(c).ok())
                .unwrap_or(1),
        ),
        Some("error") => ServerEvent::Error {
            message: v
                .get("data")
                .and_then(Value::as_str)
                .unwrap_or("unknown error")
                .to_string(),
            fatal: v.get("fatal").and_then(Value::as_bool).unwrap_or(true),
        },
        Some("ping") => ServerEvent::Ping,
        _ => ServerEvent::Other,
    }
}

fn ws_error(url: &str, e: tokio_tungstenite::tungstenite::Error) -> ApiError {
    use tokio_tungstenite::tungstenite::Error;
    match e {
        Error::Http(resp) => {
            let status = resp.status().as_u16();
            error_from_body(status, resp.body().as_deref().unwrap_or_default())
        }
        other => ApiError::WebSocket {
            url: url.to_string(),
            source: Box::new(other),
        },
    }
}

/// Reads stdin on a plain thread (a blocked read must not hold up runtime shutdown).
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(64);
    let spawned = std::thread::Builder::new()
        .name("wrenn-shell-stdin".into())
        .spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 4096];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.blocking_send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the stdin reader; input is ignored");
    }
    rx
}

/// Opens a terminal session in capsule `id`, connects it to this terminal until the remote
/// command exits, and returns its exit code.
pub async fn run(api: &ApiClient, id: &str, start: Start) -> Result<i32, ShellError> {
    let url = api.base().ws(&format!("/capsules/{}/pty", segment(id)));
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| ws_error(&url, e))?;
    let key = HeaderValue::from_str(api.api_key()).map_err(|_| ApiError::NoApiKey)?;
    req.headers_mut().insert(API_KEY_HEADER, key);
    let tls = tokio_tungstenite::Connector::Rustls(api.ws_tls());
    let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(req, None, false, Some(tls))
        .await
        .map_err(|e| ws_error(&url, e))?;
    let (mut tx, mut rx) = ws.split();
    let (cols, rows) = terminal::size();
    tx.send(Message::Text(
        start_message(&start, cols, rows).to_string().into(),
    ))
    .await
    .map_err(|e| ws_error(&url, e))?;

    let raw = RawMode::enable()?;
    let mut input = spawn_stdin_reader();
    let mut input_open = true;
    let mut winch =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    let mut stdout = std::io::stdout();
    let result = loop {
        tokio::select! {
            msg = rx.next() => match msg {
                None | Some(Ok(Message::Close(_))) => break Err(ShellError::Closed),
                Some(Err(e)) => break Err(ws_error(&url, e).into()),
                Some(Ok(Message::Binary(b))) => {
                    stdout.write_all(&b)?;
                    stdout.flush()?;
                }
                Some(Ok(Message::Text(t))) => match parse_event(t.as_str()) {
                    ServerEvent::Started { tag } => tracing::debug!(%tag, "terminal session started"),
                    ServerEvent::Exit(code) => break Ok(code),
                    ServerEvent::Error { message, fatal: true } => break Err(ShellError::Remote(message)),
                    ServerEvent::Error { message, fatal: false } => {
                        let mut err = std::io::stderr();
                        write!(err, "\r\nwrenn: {message}\r\n")?;
                    }
                    ServerEvent::Ping => {
                        let pong = json!({"type": "pong"}).to_string();
                        if let Err(e) = tx.send(Message::Text(pong.into())).await {
                            break Err(ws_error(&url, e).into());
                        }
                    }
                    ServerEvent::Other => {}
                },
                Some(Ok(_)) => {}
            },
            keys = input.recv(), if input_open => match keys {
                Some(bytes) => {
                    if let Err(e) = tx.send(Message::Binary(bytes.into())).await {
                        break Err(ws_error(&url, e).into());
                    }
                }
                None => input_open = false,
            },
            Some(()) = async { match winch.as_mut() { Some(s) => s.recv().await, None => std::future::pending().await } } => {
                let (cols, rows) = terminal::size();
                let resize = json!({"type": "resize", "cols": cols, "rows": rows}).to_string();
                if let Err(e) = tx.send(Message::Text(resize.into())).await {
                    break Err(ws_error(&url, e).into());
                }
            }
        }
    };
    drop(raw);
    let _ = tx.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_messages() {
        assert_eq!(
            start_message(&Start::Command { cmd: None }, 100, 30),
            json!({"type":"start","cmd":"/bin/bash","cols":100,"rows":30})
        );
        assert_eq!(
            start_message(
                &Start::Command {
                    cmd: Some("top -b".into())
                },
                80,
                24
            ),
            json!({"type":"start","cmd":"/bin/sh","args":["-c","top -b"],"cols":80,"rows":24})
        );
        assert_eq!(
            start_message(&Start::Attach { tag: "t1".into() }, 80, 24),
            json!({"type":"connect","tag":"t1"})
        );
    }

    #[test]
    fn server_events() {
        assert_eq!(
            parse_event(r#"{"type":"started","tag":"a","pid":3}"#),
            ServerEvent::Started { tag: "a".into() }
        );
        assert_eq!(
            parse_event(r#"{"type":"exit","exit_code":7}"#),
            ServerEvent::Exit(7)
        );
        assert_eq!(
            parse_event(r#"{"type":"error","data":"gone","fatal":false}"#),
            ServerEvent::Error {
                message: "gone".into(),
                fatal: false
            }
        );
        assert_eq!(parse_event(r#"{"type":"ping"}"#), ServerEvent::Ping);
        assert_eq!(parse_event("not json"), ServerEvent::Other);
    }
}
