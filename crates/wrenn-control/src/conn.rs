//! Serving connections: the accept loop behind [`crate::serve_on`].
//!
//! What it bounds (numbers in [`crate::ControlConfig`]):
//! - a connection must deliver a request's headers within `header_read_timeout` (the first
//!   request counted from accept, later ones from the end of the previous response, so this is
//!   also the keep-alive idle limit); a slow or silent client is disconnected;
//! - a connection with no request in flight and no bytes moving for `idle_timeout` is closed;
//! - at most `max_connections` connections are served at once; past that a connection gets an
//!   immediate `503 host_unavailable` JSON answer and is closed, never left waiting;
//! - the answers hyper writes itself for requests it cannot parse (400, 414 URI too long,
//!   431 headers too large) are given the contract's JSON error body.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, Response};
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

use crate::api::error::ApiError;

/// Limits of connection handling.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
    /// Time a connection may sit with no request in flight and no traffic.
    pub idle_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `stop` becomes true; then stops accepting, lets open
/// connections finish their requests and returns once all have closed.
pub async fn run(
    listener: TcpListener,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let max = limits.max_connections.max(1);
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                let app = app.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    serve_one(stream, app, limits, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                tracing::warn!(%peer, max, "connection limit reached; answering 503");
                tokio::spawn(refuse(stream));
            }
        }
    }
    // Every connection holds a permit: all permits back means all connections closed.
    let _ = slots.acquire_many(max as u32).await;
}

/// Answers a connection over the limit with 503 JSON and closes it, without reading.
async fn refuse(mut stream: TcpStream) {
    let body = ApiError::unavailable("too many connections to the server; retry shortly")
        .body()
        .to_string();
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    );
    let write = async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(Duration::from_secs(2), write)
        .await
        .unwrap_or_else(|_| Err(io::ErrorKind::TimedOut.into()))
    {
        tracing::debug!(error = %e, "could not answer a refused connection");
    }
}

/// What the watchdog of a connection knows.
struct ConnState {
    started: Instant,
    /// Requests whose response body is not finished yet.
    in_flight: AtomicUsize,
    /// Requests handed to the application so far.
    served: AtomicUsize,
    /// Milliseconds after `started` of the last byte read or written.
    last_io_ms: AtomicU64,
}

impl ConnState {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
            last_io_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_io_ms.store(ms, Ordering::Relaxed);
    }

    fn idle_for(&self) -> Duration {
        self.started.elapsed().saturating_sub(Duration::from_millis(
            self.last_io_ms.load(Ordering::Relaxed),
        ))
    }
}

async fn serve_one(
    stream: TcpStream,
    app: Router,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        state: state.clone(),
        pending: Vec::new(),
    });
    let service = Tracked {
        app,
        state: state.clone(),
    };
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().enable_connect_protocol();
    let conn = builder.serve_connection_with_upgrades(io, service);
    let mut conn = std::pin::pin!(conn);
    let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    let mut stopping = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = ticker.tick() => {
                let busy = state.in_flight.load(Ordering::Relaxed) > 0;
                if state.served.load(Ordering::Relaxed) == 0
                    && state.started.elapsed() >= limits.header_read_timeout
                {
                    tracing::debug!("no request headers within the header-read timeout; closing");
                    return;
                }
                if !busy && state.idle_for() >= limits.idle_timeout {
                    tracing::debug!("connection idle; closing");
                    return;
                }
            }
        }
    }
}

/// The application as a hyper service that counts requests in flight until their response
/// body is done.
#[derive(Clone)]
struct Tracked {
    app: Router,
    state: Arc<ConnState>,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        self.state.served.fetch_add(1, Ordering::Relaxed);
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(self.state.clone());
        let app = self.app.clone();
        Box::pin(async move {
            let resp = app.oneshot(req.map(Body::new)).await?;
            Ok(resp.map(|inner| {
                Body::new(Guarded {
                    inner,
                    _guard: guard,
                })
            }))
        })
    }
}

struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A response body that keeps its request counted as in flight.
struct Guarded {
    inner: Body,
    _guard: InFlight,
}

impl hyper::body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The TCP stream, recording traffic for the idle check and giving hyper's own error answers
/// a JSON body.
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
    /// Bytes still to write in place of a rewritten answer.
    pending: Vec<u8>,
}

impl Watched {
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
            self.state.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.touch();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        std::task::ready!(self.drain(cx))?;
        // Only hyper writes while no request is with the application: its automatic answers
        // to requests it could not parse.
        if self.state.in_flight.load(Ordering::Relaxed) == 0 {
            if let Some(json) = json_parse_error_answer(buf) {
                self.pending = json;
                std::task::ready!(self.drain(cx))?;
                return Poll::Ready(Ok(buf.len()));
            }
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.state.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// When `buf` is one of hyper's automatic answers to an unparsable request (an HTTP/1.1
/// 400, 414 or 431 head with an empty body), the same answer with a JSON error body.
fn json_parse_error_answer(buf: &[u8]) -> Option<Vec<u8>> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if head_end != buf.len() {
        return None;
    }
    let head = std::str::from_utf8(buf).ok()?.to_ascii_lowercase();
    if !head.contains("\r\ncontent-length: 0\r\n") || head.contains("\r\ncontent-type:") {
        return None;
    }
    let (status, message) = match head.get(..13)? {
        "http/1.1 400 " => ("400 Bad Request", "malformed HTTP request"),
        "http/1.1 414 " => ("414 URI Too Long", "request URI too long"),
        "http/1.1 431 " => (
            "431 Request Header Fields Too Large",
            "request headers too large",
        ),
        _ => return None,
    };
    let code = if status.starts_with("400") {
        "invalid_request"
    } else {
        "too_large"
    };
    let body = serde_json::json!({"error": {"code": code, "message": message}}).to_string();
    Some(
        format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::json_parse_error_answer;

    #[test]
    fn rewrites_only_hypers_empty_error_heads() {
        let auto = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(json_parse_error_answer(auto).unwrap()).unwrap();
        assert!(out.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(out.ends_with(r#"{"error":{"code":"too_large","message":"request URI too long"}}"#));
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        assert!(json_parse_error_answer(ok).is_none());
        let app = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(json_parse_error_answer(app).is_none());
        let with_body = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nxx";
        assert!(json_parse_error_answer(with_body).is_none());
    }
}
