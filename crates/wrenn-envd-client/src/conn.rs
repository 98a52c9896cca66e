//! The local guest channel (one HTTP/2 connection over one link session on the capsule's
//! Unix socket), and the plumbing of requests and answers over any [`GuestChannel`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::task::JoinHandle;
use wrenn_host::{ChannelError, GuestBody, GuestChannel};
use wrenn_protocol::link::host::{self, HostLink};
use wrenn_protocol::routes::{H2_CONN_WINDOW, H2_MAX_FRAME, H2_STREAM_WINDOW};
use wrenn_protocol::EnvdErrorBody;

use crate::ndjson::NdjsonDecoder;
use crate::EnvdError;

/// Request body type.
pub(crate) type ReqBody = GuestBody;

/// Largest error body read.
const ERROR_BODY_MAX: usize = 64 * 1024;
/// Largest JSON answer read for any call but exec (a `list` of
/// 100 000 entries with long paths stays below it).
pub(crate) const JSON_ANSWER_MAX: usize = 128 << 20;

/// Largest answer of `POST /exec`: both streams at [`wrenn_protocol::EXEC_OUTPUT_LIMIT`],
/// base64-encoded, plus room for the other fields.
pub(crate) const fn exec_answer_max() -> usize {
    2 * (wrenn_protocol::EXEC_OUTPUT_LIMIT.div_ceil(3) * 4) + 64 * 1024
}

/// The guest channel of a capsule on this host: one HTTP/2 connection over one link session.
/// Dropping the last reference closes it.
pub struct LinkChannel {
    send: SendRequest<ReqBody>,
    link: HostLink,
    driver: JoinHandle<()>,
}

impl std::fmt::Debug for LinkChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkChannel")
            .field("session", &self.link.session())
            .finish()
    }
}

impl Drop for LinkChannel {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl LinkChannel {
    /// Connects the socket, opens a link session and an HTTP/2 connection over it.
    pub(crate) async fn open(socket: &Path, timeout: Duration) -> Result<Arc<Self>, EnvdError> {
        let started = tokio::time::Instant::now();
        let deadline = started + timeout;
        let stream = loop {
            match tokio::net::UnixStream::connect(socket).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(EnvdError::Channel(format!(
                        "connect {}: {e}",
                        socket.display()
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let socket_ms = started.elapsed().as_secs_f64() * 1000.0;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (link, io) = host::connect(stream, left.max(Duration::from_millis(100)))
            .await
            .map_err(|e| match e {
                wrenn_protocol::link::LinkError::NoAck(_) => EnvdError::Timeout(timeout),
                e => EnvdError::Channel(e.to_string()),
            })?;
        let link_ms = started.elapsed().as_secs_f64() * 1000.0;
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .initial_connection_window_size(H2_CONN_WINDOW)
            .max_frame_size(H2_MAX_FRAME)
            .handshake::<_, ReqBody>(TokioIo::new(io))
            .await
            .map_err(|e| EnvdError::Channel(format!("http/2 handshake: {e}")))?;
        tracing::debug!(
            socket_ms,
            link_ms,
            http2_ms = started.elapsed().as_secs_f64() * 1000.0,
            "agent channel open"
        );
        let driver = tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("envd connection ended: {e}");
            }
        });
        Ok(Arc::new(Self { send, link, driver }))
    }

    /// The link session's id.
    pub fn session(&self) -> u64 {
        self.link.session()
    }
}

#[async_trait::async_trait]
impl GuestChannel for LinkChannel {
    async fn send(&self, req: Request<GuestBody>) -> Result<Response<GuestBody>, ChannelError> {
        let mut send = self.send.clone();
        send.ready()
            .await
            .map_err(|e| ChannelError::Closed(e.to_string()))?;
        let path = req.uri().path().to_owned();
        let resp = send
            .send_request(req)
            .await
            .map_err(|e| ChannelError::Closed(format!("{path}: {e}")))?;
        Ok(resp.map(|body| body.map_err(std::io::Error::other).boxed_unsync()))
    }

    /// An ECHO frame of the link layer (no HTTP/2).
    async fn echo(&self, payload: Bytes) -> Result<Bytes, ChannelError> {
        self.link
            .echo(&payload)
            .await
            .map_err(|e| ChannelError::Closed(e.to_string()))
    }

    fn is_closed(&self) -> bool {
        self.link.is_closed()
    }
}

/// Sends a request over `channel`; non-2xx answers become [`EnvdError::Guest`].
pub(crate) async fn send(
    channel: &dyn GuestChannel,
    method: Method,
    path: &str,
    body: ReqBody,
) -> Result<Response<GuestBody>, EnvdError> {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://envd{path}"))
        .body(body)
        .map_err(|e| EnvdError::Protocol(format!("build request {path}: {e}")))?;
    let resp = channel.send(req).await.map_err(|e| match e {
        ChannelError::Closed(m) => EnvdError::Channel(m),
        ChannelError::Request(m) => EnvdError::Protocol(m),
    })?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    Err(error_of(resp, path).await)
}

/// A JSON request and a JSON answer of at most [`JSON_ANSWER_MAX`] bytes.
pub(crate) async fn json<T: DeserializeOwned>(
    channel: &dyn GuestChannel,
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
) -> Result<T, EnvdError> {
    json_limited(channel, method, path, body, JSON_ANSWER_MAX).await
}

/// A JSON request and a JSON answer of at most `limit` bytes.
pub(crate) async fn json_limited<T: DeserializeOwned>(
    channel: &dyn GuestChannel,
    method: Method,
    path: &str,
    body: Option<&impl Serialize>,
    limit: usize,
) -> Result<T, EnvdError> {
    let resp = send(channel, method, path, json_body(body)?).await?;
    let bytes = collect_limited(resp.into_body(), limit, path).await?;
    serde_json::from_slice(&bytes).map_err(|e| EnvdError::Protocol(format!("{path}: {e}")))
}

/// A request whose answer has no body worth reading (drained, not kept).
pub(crate) async fn unit(
    channel: &dyn GuestChannel,
    method: Method,
    path: &str,
    body: ReqBody,
) -> Result<(), EnvdError> {
    let resp = send(channel, method, path, body).await?;
    let mut body = resp.into_body();
    while let Some(Ok(_)) = body.frame().await {}
    Ok(())
}

/// Reads a whole body, refusing one longer than `limit` bytes (the guest decides what it
/// sends; the host never holds more than `limit` for it).
pub(crate) async fn collect_limited<B>(
    mut body: B,
    limit: usize,
    path: &str,
) -> Result<Bytes, EnvdError>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| EnvdError::Channel(format!("{path}: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(EnvdError::Protocol(format!(
                    "{path}: answer longer than {limit} bytes"
                )));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Encodes an optional JSON body.
pub(crate) fn json_body(body: Option<&impl Serialize>) -> Result<ReqBody, EnvdError> {
    match body {
        Some(b) => {
            let v = serde_json::to_vec(b)
                .map_err(|e| EnvdError::Protocol(format!("encode request: {e}")))?;
            Ok(Full::new(Bytes::from(v))
                .map_err(|never| match never {})
                .boxed_unsync())
        }
        None => Ok(empty()),
    }
}

/// An empty body.
pub(crate) fn empty() -> ReqBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// A raw body.
pub(crate) fn raw(bytes: Bytes) -> ReqBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

async fn error_of(resp: Response<GuestBody>, path: &str) -> EnvdError {
    let status = resp.status();
    let mut body = resp.into_body();
    let mut buf = BytesMut::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
        if buf.len() > ERROR_BODY_MAX {
            break;
        }
    }
    match serde_json::from_slice::<EnvdErrorBody>(&buf) {
        Ok(e) => EnvdError::Guest(e),
        Err(_) if status == StatusCode::NOT_FOUND => {
            EnvdError::Protocol(format!("{path}: no such route in this envd"))
        }
        Err(_) => EnvdError::Protocol(format!(
            "{path}: HTTP {status}: {}",
            String::from_utf8_lossy(&buf)
        )),
    }
}

/// The body's data frames as a stream of bytes; `keep` lives as long as the stream.
pub(crate) fn byte_stream<K: Send + Sync + 'static>(
    body: GuestBody,
    keep: K,
) -> BoxStream<'static, Result<Bytes, EnvdError>> {
    futures::stream::unfold((body, keep), |(mut body, keep)| async move {
        loop {
            match body.frame().await? {
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        return Some((Ok(data), (body, keep)));
                    }
                }
                Err(e) => return Some((Err(EnvdError::Channel(e.to_string())), (body, keep))),
            }
        }
    })
    .boxed()
}

/// Parses an NDJSON body into events; a broken stream, a bad line or a line longer than
/// [`wrenn_protocol::NDJSON_LINE_MAX`] yields `on_error(msg)` and ends.
pub(crate) fn ndjson<T, K>(
    body: GuestBody,
    keep: K,
    on_error: fn(String) -> Option<T>,
) -> BoxStream<'static, T>
where
    T: DeserializeOwned + Send + 'static,
    K: Send + Sync + 'static,
{
    ndjson_events(byte_stream(body, keep), on_error)
}

/// The events of an NDJSON byte stream (see [`ndjson`]).
pub(crate) fn ndjson_events<T>(
    bytes: BoxStream<'static, Result<Bytes, EnvdError>>,
    on_error: fn(String) -> Option<T>,
) -> BoxStream<'static, T>
where
    T: DeserializeOwned + Send + 'static,
{
    futures::stream::unfold(
        (bytes, NdjsonDecoder::default(), false),
        move |(mut bytes, mut dec, done)| async move {
            if done {
                return None;
            }
            loop {
                match dec.next_event::<T>() {
                    Some(Ok(ev)) => return Some((ev, (bytes, dec, false))),
                    Some(Err(e)) => {
                        return on_error(e.to_string()).map(|ev| (ev, (bytes, dec, true)))
                    }
                    None => {}
                }
                match bytes.next().await {
                    Some(Ok(data)) => dec.push(&data),
                    Some(Err(e)) => {
                        return on_error(e.to_string()).map(|ev| (ev, (bytes, dec, true)))
                    }
                    None => return None,
                }
            }
        },
    )
    .boxed()
}

/// Percent-encodes a query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrenn_protocol::ProcessEvent;

    fn err_event(message: String) -> Option<ProcessEvent> {
        Some(ProcessEvent::Error { message })
    }

    #[tokio::test]
    async fn an_endless_line_ends_the_stream_with_an_error() {
        // 64 MiB without a newline: the old reader buffered all of it.
        let chunks = futures::stream::iter(
            (0..64).map(|_| Ok::<_, EnvdError>(Bytes::from(vec![b'A'; 1 << 20]))),
        )
        .boxed();
        let events: Vec<ProcessEvent> = ndjson_events(chunks, err_event).collect().await;
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            matches!(&events[0], ProcessEvent::Error { message } if message.contains("longer than")),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_refused() {
        let body = Full::new(Bytes::from(vec![b' '; 1001]));
        let err = collect_limited(body, 1000, "/x").await.unwrap_err();
        assert!(matches!(err, EnvdError::Protocol(_)), "{err:?}");
        let ok = collect_limited(Full::new(Bytes::from_static(b"{}")), 1000, "/x").await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"{}"));
    }

    #[test]
    fn the_exec_answer_limit_fits_two_full_streams() {
        let full = wrenn_protocol::ExecOutput {
            stdout: vec![0xff; wrenn_protocol::EXEC_OUTPUT_LIMIT],
            stderr: vec![0xfe; wrenn_protocol::EXEC_OUTPUT_LIMIT],
            exit_code: -1,
            duration_ms: u64::MAX,
            timed_out: true,
            stdout_truncated: true,
            stderr_truncated: true,
        };
        let n = serde_json::to_vec(&full).unwrap().len();
        assert!(n <= exec_answer_max(), "{n} > {}", exec_answer_max());
    }
}
