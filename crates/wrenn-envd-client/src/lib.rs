//! Host-side client of envd, the guest agent.
//!
//! An [`EnvdClient`] speaks envd's routes over a guest channel ([`wrenn_host::GuestChannel`]):
//! either one it opens itself on this host with [`EnvdClient::connect`] (an HTTP/2 connection
//! over the capsule's virtio-serial Unix socket), or one a host hands out
//! ([`EnvdClient::over`]). It is cheap to clone; every call is a separate request, so calls
//! run concurrently. A local channel closes when the last clone and the last stream it handed
//! out are dropped; QEMU serves one connection per agent port at a time, so drop them before
//! connecting again to the same VM.
//!
//! Transport of the local channel: the link layer of `wrenn_protocol::link` (HELLO/ACK
//! session, DATA frames) under HTTP/2; routes and encodings are described in
//! docs/envd-protocol.md.

mod conn;
pub mod ndjson;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use http::Method;
use http_body_util::{BodyExt, StreamBody};
use wrenn_protocol::routes;
use wrenn_protocol::{
    EntryInfo, EnvdErrorBody, ExecOutput, ExecRequest, FsEvent, Health, Metrics, MoveRequest,
    ProcessEvent, ProcessInfo, ProcessSelector, PtyEvent, PtyResize, PtyStart, RestoreRequest,
    SignalRequest, WatchRequest, WatcherInfo, WriteOptions, HEADER_PID, HEADER_TAG,
};

pub use conn::LinkChannel;
use conn::{empty, enc, json_body, ndjson, raw};
use wrenn_host::SharedChannel;

/// What can go wrong talking to envd.
#[derive(Debug, thiserror::Error)]
pub enum EnvdError {
    /// envd answered with an error (not found, bad argument…).
    #[error(transparent)]
    Guest(#[from] EnvdErrorBody),
    /// The channel could not be opened or broke.
    #[error("agent channel: {0}")]
    Channel(String),
    /// No answer in time.
    #[error("envd did not answer within {0:?}")]
    Timeout(Duration),
    /// envd answered something this client does not understand.
    #[error("bad answer from envd: {0}")]
    Protocol(String),
}

/// A stream of file bytes.
pub type ByteStream = BoxStream<'static, Result<Bytes, EnvdError>>;

/// A running process's output, as a stream of events ending with `Exit` (or `Error`).
pub struct ProcessStream {
    /// Guest pid of the process.
    pub pid: u32,
    /// Its events; the first `Started` has already been consumed into `pid`.
    pub events: BoxStream<'static, ProcessEvent>,
}

/// An attached PTY session.
pub struct PtySession {
    /// Tag to reattach by.
    pub tag: String,
    /// Guest pid of the session's process.
    pub pid: u32,
    /// Terminal output, then `Exit`.
    pub output: BoxStream<'static, PtyEvent>,
}

/// Client of one envd.
#[derive(Clone, Debug)]
pub struct EnvdClient {
    channel: SharedChannel,
}

fn selector(sel: &ProcessSelector) -> String {
    match sel {
        ProcessSelector::Pid(p) => p.to_string(),
        ProcessSelector::Tag(t) => enc(t),
    }
}

fn process_error(message: String) -> Option<ProcessEvent> {
    Some(ProcessEvent::Error { message })
}

fn watch_error(message: String) -> Option<FsEvent> {
    tracing::debug!("watch stream ended: {message}");
    None
}

fn pty_error(message: String) -> Option<PtyEvent> {
    tracing::debug!("pty stream ended: {message}");
    None
}

/// Refuses an envd that speaks another protocol than this host.
pub fn check_protocol(health: &Health) -> Result<(), EnvdError> {
    if health.protocol != wrenn_protocol::PROTOCOL_VERSION {
        return Err(EnvdError::Protocol(format!(
            "envd {} speaks protocol {}, this host speaks {}",
            health.version,
            health.protocol,
            wrenn_protocol::PROTOCOL_VERSION
        )));
    }
    Ok(())
}

impl EnvdClient {
    /// Connects to envd through a Unix socket (the VMM's agent-port socket, or envd's
    /// `--listen-unix` socket in tests), retrying until `timeout`, and checks its health.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, EnvdError> {
        let deadline = Instant::now() + timeout;
        let client = Self::open(socket, timeout).await?;
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let health = tokio::time::timeout(left, client.health())
            .await
            .map_err(|_| EnvdError::Timeout(timeout))??;
        check_protocol(&health)?;
        Ok(client)
    }

    /// Connects like [`EnvdClient::connect`] without the health check: for a host whose
    /// first request answers the same (a restore), which then calls [`check_protocol`].
    pub async fn open(socket: &Path, timeout: Duration) -> Result<Self, EnvdError> {
        let link = LinkChannel::open(socket, timeout).await?;
        Ok(Self { channel: link })
    }

    /// A client over a channel a host handed out (no health check: the host checked).
    pub fn over(channel: SharedChannel) -> Self {
        Self { channel }
    }

    /// The channel under this client, to hand out through a host API.
    pub fn channel(&self) -> SharedChannel {
        self.channel.clone()
    }

    /// True once the channel under this client broke (reconnect with [`EnvdClient::connect`]).
    pub fn is_closed(&self) -> bool {
        self.channel.is_closed()
    }

    /// A raw round trip over the channel (on a local link an ECHO frame, no HTTP/2): the
    /// baseline latency.
    pub async fn echo(&self, payload: Bytes) -> Result<Duration, EnvdError> {
        let t = Instant::now();
        let back = self
            .channel
            .echo(payload.clone())
            .await
            .map_err(|e| EnvdError::Channel(e.to_string()))?;
        if back != payload {
            return Err(EnvdError::Protocol("echo came back different".into()));
        }
        Ok(t.elapsed())
    }

    /// Health and version.
    pub async fn health(&self) -> Result<Health, EnvdError> {
        conn::json(&*self.channel, Method::GET, routes::HEALTH, None::<&()>).await
    }

    /// Runs a command to completion and collects its output: at most
    /// [`wrenn_protocol::EXEC_OUTPUT_LIMIT`] bytes per stream, with `stdout_truncated` /
    /// `stderr_truncated` set when the guest dropped the rest ([`EnvdClient::exec_stream`]
    /// gets everything). An answer larger than two full streams is refused, so one call holds
    /// a bounded amount of memory on the host.
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, EnvdError> {
        conn::json_limited(
            &*self.channel,
            Method::POST,
            routes::EXEC,
            Some(&req),
            conn::exec_answer_max(),
        )
        .await
    }

    async fn process_stream(
        &self,
        method: Method,
        path: &str,
        body: conn::ReqBody,
    ) -> Result<ProcessStream, EnvdError> {
        let resp = conn::send(&*self.channel, method, path, body).await?;
        let mut events = ndjson(resp.into_body(), self.channel.clone(), process_error);
        match events.next().await {
            Some(ProcessEvent::Started { pid }) => Ok(ProcessStream { pid, events }),
            Some(ProcessEvent::Error { message }) => Err(EnvdError::Channel(message)),
            other => Err(EnvdError::Protocol(format!(
                "{path}: expected a started event, got {other:?}"
            ))),
        }
    }

    /// Runs a command and streams its output; dropping the stream kills the process group.
    pub async fn exec_stream(&self, req: ExecRequest) -> Result<ProcessStream, EnvdError> {
        self.process_stream(Method::POST, routes::EXEC_STREAM, json_body(Some(&req))?)
            .await
    }

    /// Starts a background process (output buffered in the guest for later attach).
    pub async fn start_background(&self, req: ExecRequest) -> Result<ProcessInfo, EnvdError> {
        conn::json(&*self.channel, Method::POST, routes::PROCESSES, Some(&req)).await
    }

    /// Background processes and PTY sessions still running.
    pub async fn list_processes(&self) -> Result<Vec<ProcessInfo>, EnvdError> {
        conn::json(&*self.channel, Method::GET, routes::PROCESSES, None::<&()>).await
    }

    /// Sends a signal (e.g. `libc::SIGTERM`) to a tracked process's group.
    pub async fn signal(&self, target: ProcessSelector, signal: i32) -> Result<(), EnvdError> {
        let path = routes::fill(routes::PROCESS_SIGNAL, &selector(&target));
        conn::unit(
            &*self.channel,
            Method::POST,
            &path,
            json_body(Some(&SignalRequest { signal }))?,
        )
        .await
    }

    /// Attaches to a background process: replays buffered output, then follows it.
    /// Dropping the stream does not kill the process.
    pub async fn attach(&self, target: ProcessSelector) -> Result<ProcessStream, EnvdError> {
        let path = routes::fill(routes::PROCESS_ATTACH, &selector(&target));
        self.process_stream(Method::GET, &path, empty()).await
    }

    /// Writes bytes to the stdin pipe of a background process started with `stdin`.
    pub async fn send_stdin(&self, target: ProcessSelector, data: Bytes) -> Result<(), EnvdError> {
        let path = routes::fill(routes::PROCESS_STDIN, &selector(&target));
        conn::unit(&*self.channel, Method::POST, &path, raw(data)).await
    }

    /// Closes the stdin pipe of a background process (it reads end of file).
    pub async fn close_stdin(&self, target: ProcessSelector) -> Result<(), EnvdError> {
        let path = routes::fill(routes::PROCESS_STDIN_CLOSE, &selector(&target));
        conn::unit(&*self.channel, Method::POST, &path, empty()).await
    }

    async fn pty_stream(
        &self,
        method: Method,
        path: &str,
        body: conn::ReqBody,
    ) -> Result<PtySession, EnvdError> {
        let resp = conn::send(&*self.channel, method, path, body).await?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let tag = header(HEADER_TAG)
            .ok_or_else(|| EnvdError::Protocol(format!("{path}: no {HEADER_TAG} header")))?;
        let pid = header(HEADER_PID)
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| EnvdError::Protocol(format!("{path}: no {HEADER_PID} header")))?;
        let output = ndjson(resp.into_body(), self.channel.clone(), pty_error);
        Ok(PtySession { tag, pid, output })
    }

    /// Starts a PTY session and attaches to it.
    pub async fn pty_start(&self, req: PtyStart) -> Result<PtySession, EnvdError> {
        self.pty_stream(Method::POST, routes::PTY, json_body(Some(&req))?)
            .await
    }

    /// Reattaches to a PTY session by tag (recent output is replayed).
    pub async fn pty_connect(&self, tag: &str) -> Result<PtySession, EnvdError> {
        self.pty_stream(
            Method::GET,
            &routes::fill(routes::PTY_CONNECT, &enc(tag)),
            empty(),
        )
        .await
    }

    /// Sends keystrokes to a PTY session.
    pub async fn pty_input(&self, tag: &str, data: Bytes) -> Result<(), EnvdError> {
        conn::unit(
            &*self.channel,
            Method::POST,
            &routes::fill(routes::PTY_INPUT, &enc(tag)),
            raw(data),
        )
        .await
    }

    /// Resizes a PTY session's terminal.
    pub async fn pty_resize(&self, tag: &str, cols: u16, rows: u16) -> Result<(), EnvdError> {
        let body = json_body(Some(&PtyResize { cols, rows }))?;
        conn::unit(
            &*self.channel,
            Method::POST,
            &routes::fill(routes::PTY_RESIZE, &enc(tag)),
            body,
        )
        .await
    }

    /// Kills a PTY session's process.
    pub async fn pty_kill(&self, tag: &str) -> Result<(), EnvdError> {
        conn::unit(
            &*self.channel,
            Method::POST,
            &routes::fill(routes::PTY_KILL, &enc(tag)),
            empty(),
        )
        .await
    }

    /// Streams a file's bytes.
    pub async fn read_file(&self, path: &str) -> Result<ByteStream, EnvdError> {
        let resp = conn::send(
            &*self.channel,
            Method::GET,
            &format!("{}?path={}", routes::FILES, enc(path)),
            empty(),
        )
        .await?;
        Ok(conn::byte_stream(resp.into_body(), self.channel.clone()))
    }

    /// Writes a file from a stream of bytes (created or truncated; parents created).
    pub async fn write_file(
        &self,
        path: &str,
        opts: WriteOptions,
        body: BoxStream<'static, Result<Bytes, std::io::Error>>,
    ) -> Result<EntryInfo, EnvdError> {
        let mut q = format!("{}?path={}", routes::FILES, enc(path));
        if let Some(m) = opts.mode {
            q.push_str(&format!("&mode={m}"));
        }
        if let Some(o) = &opts.owner {
            q.push_str(&format!("&owner={}", enc(o)));
        }
        if let Some(t) = opts.modified_at {
            q.push_str(&format!("&modified_at={t}"));
        }
        if let Some(c) = opts.create_parents {
            q.push_str(&format!("&create_parents={c}"));
        }
        let body = BodyExt::boxed_unsync(StreamBody::new(
            body.map(|r| r.map(hyper::body::Frame::data)),
        ));
        let resp = conn::send(&*self.channel, Method::PUT, &q, body).await?;
        let bytes = conn::collect_limited(
            resp.into_body(),
            conn::JSON_ANSWER_MAX,
            &format!("write {path}"),
        )
        .await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| EnvdError::Protocol(format!("write {path}: {e}")))
    }

    /// Opens a TCP connection to `port` inside the guest, tunnelled over one HTTP/2 stream.
    /// The returned stream carries the connection's bytes both ways; dropping it closes it.
    /// `NotFound` when nothing listens on the port.
    pub async fn connect_port(&self, port: u16) -> Result<tokio::io::DuplexStream, EnvdError> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (ours, theirs) = tokio::io::duplex(256 * 1024);
        let (mut from_caller, mut to_caller) = tokio::io::split(theirs);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
        let upstream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
        let body = BodyExt::boxed_unsync(StreamBody::new(
            upstream.map(|r| r.map(hyper::body::Frame::data)),
        ));
        let resp = conn::send(
            &*self.channel,
            Method::POST,
            &routes::fill(routes::PORT_TUNNEL, &port.to_string()),
            body,
        )
        .await?;
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match from_caller.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx
                            .send(Ok(Bytes::copy_from_slice(&buf[..n])))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            }
        });
        tokio::spawn(async move {
            let mut body = resp.into_body();
            while let Some(frame) = body.frame().await {
                let Ok(frame) = frame else { break };
                if let Ok(data) = frame.into_data() {
                    if to_caller.write_all(&data).await.is_err() {
                        return;
                    }
                }
            }
            let _ = to_caller.shutdown().await;
        });
        Ok(ours)
    }

    /// Stat of one path (symlinks not followed).
    pub async fn stat(&self, path: &str) -> Result<EntryInfo, EnvdError> {
        conn::json(
            &*self.channel,
            Method::GET,
            &format!("{}?path={}", routes::FILES_STAT, enc(path)),
            None::<&()>,
        )
        .await
    }

    /// Entries under a directory, down to `depth` levels (1 = direct children).
    pub async fn list(&self, path: &str, depth: u32) -> Result<Vec<EntryInfo>, EnvdError> {
        conn::json(
            &*self.channel,
            Method::GET,
            &format!("{}?path={}&depth={depth}", routes::FILES_LIST, enc(path)),
            None::<&()>,
        )
        .await
    }

    /// Creates a directory and its parents; `AlreadyExists` when it exists.
    pub async fn mkdir(&self, path: &str) -> Result<EntryInfo, EnvdError> {
        self.mkdir_owned(path, None).await
    }

    /// [`Self::mkdir`], the directories it makes owned by `owner` (a user name or uid).
    pub async fn mkdir_owned(
        &self,
        path: &str,
        owner: Option<&str>,
    ) -> Result<EntryInfo, EnvdError> {
        let mut route = format!("{}?path={}", routes::FILES_MKDIR, enc(path));
        if let Some(o) = owner {
            route.push_str(&format!("&owner={}", enc(o)));
        }
        conn::json(&*self.channel, Method::POST, &route, None::<&()>).await
    }

    /// Renames a file or directory; answers the entry at its new path.
    pub async fn rename(&self, source: &str, destination: &str) -> Result<EntryInfo, EnvdError> {
        let req = MoveRequest {
            source: source.to_owned(),
            destination: destination.to_owned(),
        };
        conn::json(&*self.channel, Method::POST, routes::FILES_MOVE, Some(&req)).await
    }

    /// The events of a directory (and its subdirectories when `recursive`) until the stream
    /// is dropped. Errors of the watch itself (no such directory) come before the stream.
    pub async fn watch(
        &self,
        path: &str,
        recursive: bool,
    ) -> Result<BoxStream<'static, FsEvent>, EnvdError> {
        let route = format!(
            "{}?path={}&recursive={recursive}",
            routes::FILES_WATCH,
            enc(path)
        );
        let resp = conn::send(&*self.channel, Method::GET, &route, empty()).await?;
        Ok(ndjson(resp.into_body(), self.channel.clone(), watch_error))
    }

    /// Starts a watcher envd keeps; its events are polled with [`Self::watcher_events`].
    pub async fn create_watcher(&self, req: &WatchRequest) -> Result<WatcherInfo, EnvdError> {
        conn::json(
            &*self.channel,
            Method::POST,
            routes::FILES_WATCHERS,
            Some(req),
        )
        .await
    }

    /// The events of a kept watcher since the last call.
    pub async fn watcher_events(&self, id: &str) -> Result<Vec<FsEvent>, EnvdError> {
        let route = routes::fill(routes::FILES_WATCHER_EVENTS, &enc(id));
        conn::json(&*self.channel, Method::GET, &route, None::<&()>).await
    }

    /// Stops a kept watcher.
    pub async fn remove_watcher(&self, id: &str) -> Result<(), EnvdError> {
        let route = routes::fill(routes::FILES_WATCHER, &enc(id));
        conn::unit(&*self.channel, Method::DELETE, &route, empty()).await
    }

    /// Removes a file or a directory tree.
    pub async fn remove(&self, path: &str) -> Result<(), EnvdError> {
        conn::unit(
            &*self.channel,
            Method::DELETE,
            &format!("{}?path={}", routes::FILES, enc(path)),
            empty(),
        )
        .await
    }

    /// CPU, memory and disk use.
    pub async fn metrics(&self) -> Result<Metrics, EnvdError> {
        conn::json(&*self.channel, Method::GET, routes::METRICS, None::<&()>).await
    }

    /// After a restore: sets the clock, re-seeds the random pool and sets the nameservers;
    /// answers envd's health (its version and protocol).
    pub async fn restore(&self, req: RestoreRequest) -> Result<Health, EnvdError> {
        let resp = conn::send(
            &*self.channel,
            Method::POST,
            routes::RESTORE,
            json_body(Some(&req))?,
        )
        .await?;
        let answer = conn::collect_limited(resp.into_body(), 64 << 10, routes::RESTORE).await?;
        if answer.is_empty() {
            // An older envd answers a restore without a body (a snapshot keeps the envd it
            // was made with): ask for its health.
            return self.health().await;
        }
        serde_json::from_slice(&answer)
            .map_err(|e| EnvdError::Protocol(format!("{}: {e}", routes::RESTORE)))
    }
}
