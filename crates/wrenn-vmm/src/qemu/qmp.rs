//! A small asynchronous QMP (QEMU Machine Protocol) client over a Unix socket.
//!
//! QMP is newline-delimited JSON: QEMU greets with `{"QMP": ...}`, the client answers
//! `qmp_capabilities`, then sends `{"execute": .., "arguments": .., "id": n}` and reads lines
//! until the reply carrying the same `id` (`return` or `error`). Asynchronous events
//! (`{"event": ..}`) arriving in between are logged and dropped. Commands are serialised by
//! the caller (the [`super::QemuVm`] holds the client behind a mutex).

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

/// How long one QMP command may take before we give up on it. Generous: under TCG on a
/// loaded host QEMU's main loop can be slow to answer.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Failures of the QMP client.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// Connecting to the socket failed.
    #[error("connecting to {path}")]
    Connect {
        /// The QMP socket.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the socket failed.
    #[error("socket I/O")]
    Io(#[source] std::io::Error),
    /// QEMU closed the connection.
    #[error("QEMU closed the monitor connection")]
    Closed,
    /// QEMU sent something that is not QMP.
    #[error("unexpected message: {0}")]
    Protocol(String),
    /// QEMU did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// QEMU answered with an error.
    #[error("{class}: {desc}")]
    Command {
        /// QMP error class, e.g. `GenericError`.
        class: String,
        /// Human-readable description from QEMU.
        desc: String,
    },
}

/// A connected QMP session, past capability negotiation.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    next_id: u64,
}

impl Qmp {
    /// Connects to `path`, reads the greeting and negotiates capabilities.
    pub async fn connect(path: &Path) -> Result<Qmp, QmpError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| QmpError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let (r, w) = stream.into_split();
        let mut qmp = Qmp {
            reader: BufReader::new(r),
            writer: w,
            next_id: 1,
        };
        let greeting = tokio::time::timeout(COMMAND_TIMEOUT, qmp.read_message())
            .await
            .map_err(|_| QmpError::Timeout(COMMAND_TIMEOUT))??;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "expected greeting, got {greeting}"
            )));
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    /// Runs one command and returns its `return` value.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, QmpError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        tracing::trace!(%line, "qmp send");
        tokio::time::timeout(COMMAND_TIMEOUT, async {
            self.writer
                .write_all(line.as_bytes())
                .await
                .map_err(QmpError::Io)?;
            loop {
                let reply = self.read_message().await?;
                if reply.get("event").is_some() {
                    tracing::debug!(event = %reply, "qmp event");
                    continue;
                }
                if reply.get("id").and_then(Value::as_u64) != Some(id) {
                    tracing::debug!(%reply, "qmp reply to another command ignored");
                    continue;
                }
                if let Some(ret) = reply.get("return") {
                    return Ok(ret.clone());
                }
                if let Some(err) = reply.get("error") {
                    let field =
                        |k: &str| err.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                    return Err(QmpError::Command {
                        class: field("class"),
                        desc: field("desc"),
                    });
                }
                return Err(QmpError::Protocol(reply.to_string()));
            }
        })
        .await
        .map_err(|_| QmpError::Timeout(COMMAND_TIMEOUT))?
    }

    async fn read_message(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .await
            .map_err(QmpError::Io)?;
        if n == 0 {
            return Err(QmpError::Closed);
        }
        tracing::trace!(line = line.trim_end(), "qmp recv");
        serde_json::from_str(&line)
            .map_err(|e| QmpError::Protocol(format!("{e}: {}", line.trim_end())))
    }
}
