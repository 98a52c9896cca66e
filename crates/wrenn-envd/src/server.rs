//! envd's HTTP API (served over HTTP/2 on the link; see docs/envd-protocol.md).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use wrenn_protocol::{
    ExecOutput, ExecRequest, Health, ProcessEvent, ProcessSelector, PtyEvent, PtyStart, RestoreRequest,
    WriteOptions,
};

use crate::error::{ApiError, ApiResult};
use crate::process::{new_tag, Processes, Stdio3, Tracked};
use crate::{files, pty, system};

/// Shared state of the handlers.
#[derive(Clone, Default)]
pub struct AppState {
    procs: Arc<Processes>,
}

/// The router of envd's API.
pub fn router() -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/exec", post(exec))
        .route("/exec/stream", post(exec_stream))
        .route("/processes", post(start_background).get(list_processes))
        .route("/processes/signal", post(signal))
        .route("/processes/attach", post(attach))
        .route("/pty", post(pty_start))
        .route("/pty/connect", post(pty_connect))
        .route("/pty/input", post(pty_input))
        .route("/pty/resize", post(pty_resize))
        .route("/pty/kill", post(pty_kill))
        .route("/files/read", post(read_file))
        .route("/files/write", post(write_file))
        .route("/files/stat", post(stat))
        .route("/files/list", post(list))
        .route("/files/mkdir", post(mkdir))
        .route("/files/remove", post(remove))
        .route("/metrics", get(metrics))
        .route("/restore", post(restore))
        .with_state(AppState::default())
}

async fn health() -> Json<Health> {
    Json(Health { version: env!("CARGO_PKG_VERSION").into(), protocol: wrenn_protocol::PROTOCOL_VERSION })
}

/// Kills a process group when dropped before the process exited.
struct KillOnDrop(Arc<Tracked>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.exit_code().is_none() {
            let _ = self.0.signal(libc::SIGKILL);
        }
    }
}

fn ndjson<T: serde::Serialize>(events: impl Stream<Item = T> + Send + 'static) -> Body {
    Body::from_stream(events.map(|ev| {
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    }))
}

async fn exec(State(s): State<AppState>, Json(req): Json<ExecRequest>) -> ApiResult<Json<ExecOutput>> {
    let started = Instant::now();
    let t = s.procs.spawn(&req, false, new_tag("exec"), Stdio3::Pipes)?;
    let guard = KillOnDrop(t.clone());
    let mut events = Box::pin(t.attach());
    let mut out = ExecOutput::default();
    let deadline = req.timeout_ms.map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms));
    loop {
        let next = match deadline {
            Some(d) if !out.timed_out => match tokio::time::timeout_at(d, events.next()).await {
                Ok(ev) => ev,
                Err(_) => {
                    out.timed_out = true;
                    let _ = t.signal(libc::SIGKILL);
                    continue;
                }
            },
            _ => events.next().await,
        };
        match next {
            Some(ProcessEvent::Stdout { data }) => out.stdout.extend(data),
            Some(ProcessEvent::Stderr { data }) => out.stderr.extend(data),
            Some(ProcessEvent::Exit { exit_code }) => {
                out.exit_code = exit_code;
                break;
            }
            Some(_) => {}
            None => {
                out.exit_code = t.exit_code().unwrap_or(-1);
                break;
            }
        }
    }
    drop(guard);
    if out.timed_out && out.exit_code == 0 {
        out.exit_code = 137;
    }
    out.duration_ms = started.elapsed().as_millis() as u64;
    Ok(Json(out))
}

async fn exec_stream(State(s): State<AppState>, Json(req): Json<ExecRequest>) -> ApiResult<Response> {
    let t = s.procs.spawn(&req, false, new_tag("exec"), Stdio3::Pipes)?;
    let guard = KillOnDrop(t.clone());
    let events = t.attach().map(move |ev| {
        let _keep = &guard;
        ev
    });
    Ok(ndjson(events).into_response())
}

async fn start_background(State(s): State<AppState>, Json(req): Json<ExecRequest>) -> ApiResult<Response> {
    let tag = req.tag.clone().unwrap_or_else(|| new_tag("bg"));
    let t = s.procs.spawn(&req, true, tag, Stdio3::Pipes)?;
    Ok((StatusCode::CREATED, Json(t.info())).into_response())
}

async fn list_processes(State(s): State<AppState>) -> Json<Vec<wrenn_protocol::ProcessInfo>> {
    Json(s.procs.list())
}

#[derive(Deserialize)]
struct SignalReq {
    target: ProcessSelector,
    signal: i32,
}

async fn signal(State(s): State<AppState>, Json(req): Json<SignalReq>) -> ApiResult<StatusCode> {
    if !(1..=64).contains(&req.signal) {
        return Err(ApiError::invalid(format!("bad signal {}", req.signal)));
    }
    s.procs.find(&req.target)?.signal(req.signal)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct Target {
    target: ProcessSelector,
}

async fn attach(State(s): State<AppState>, Json(req): Json<Target>) -> ApiResult<Response> {
    let t = s.procs.find(&req.target)?;
    Ok(ndjson(t.attach()).into_response())
}

fn pty_response(t: &Arc<Tracked>) -> Response {
    let events = t.attach().filter_map(|ev| async move {
        match ev {
            ProcessEvent::Stdout { data } | ProcessEvent::Stderr { data } => Some(PtyEvent::Output { data }),
            ProcessEvent::Exit { exit_code } => Some(PtyEvent::Exit { exit_code }),
            _ => None,
        }
    });
    let mut resp = ndjson(events).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = t.tag.parse() {
        h.insert("x-pty-tag", v);
    }
    if let Ok(v) = t.pid.to_string().parse() {
        h.insert("x-pty-pid", v);
    }
    resp
}

async fn pty_start(State(s): State<AppState>, Json(req): Json<PtyStart>) -> ApiResult<Response> {
    let t = pty::start(&s.procs, &req)?;
    Ok(pty_response(&t))
}

#[derive(Deserialize)]
struct TagReq {
    tag: String,
}

async fn pty_connect(State(s): State<AppState>, Json(req): Json<TagReq>) -> ApiResult<Response> {
    Ok(pty_response(&pty::find(&s.procs, &req.tag)?))
}

async fn pty_input(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> ApiResult<StatusCode> {
    let tag = header_text(&headers, "x-pty-tag")?;
    let t = pty::find(&s.procs, &tag)?;
    pty::input(&t, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ResizeReq {
    tag: String,
    cols: u16,
    rows: u16,
}

async fn pty_resize(State(s): State<AppState>, Json(req): Json<ResizeReq>) -> ApiResult<StatusCode> {
    let t = pty::find(&s.procs, &req.tag)?;
    pty::resize(&t, req.cols, req.rows)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn pty_kill(State(s): State<AppState>, Json(req): Json<TagReq>) -> ApiResult<StatusCode> {
    pty::find(&s.procs, &req.tag)?.signal(libc::SIGKILL)?;
    Ok(StatusCode::NO_CONTENT)
}

fn header_text(headers: &HeaderMap, name: &str) -> ApiResult<String> {
    let raw = headers.get(name).ok_or_else(|| ApiError::invalid(format!("missing header {name}")))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(raw.as_bytes())
        .map_err(|_| ApiError::invalid(format!("header {name} is not base64")))?;
    String::from_utf8(bytes).map_err(|_| ApiError::invalid(format!("header {name} is not UTF-8")))
}

#[derive(Deserialize)]
struct PathReq {
    path: String,
    #[serde(default)]
    depth: Option<u32>,
}

async fn read_file(Json(req): Json<PathReq>) -> ApiResult<Response> {
    let f = files::open_read(&req.path).await?;
    let stream = tokio_util::io::ReaderStream::with_capacity(f, 256 * 1024);
    Ok(Body::from_stream(stream).into_response())
}

#[derive(Deserialize)]
struct WriteReq {
    path: String,
    #[serde(default)]
    options: WriteOptions,
}

async fn write_file(headers: HeaderMap, body: Body) -> ApiResult<Json<wrenn_protocol::EntryInfo>> {
    let req: WriteReq = serde_json::from_str(&header_text(&headers, "x-wrenn-write")?)
        .map_err(|e| ApiError::invalid(format!("bad write request: {e}")))?;
    let stream = body.into_data_stream();
    Ok(Json(files::write(&req.path, &req.options, stream).await?))
}

async fn stat(Json(req): Json<PathReq>) -> ApiResult<Json<wrenn_protocol::EntryInfo>> {
    Ok(Json(files::stat(&req.path)?))
}

async fn list(Json(req): Json<PathReq>) -> ApiResult<Json<Vec<wrenn_protocol::EntryInfo>>> {
    let path = req.path.clone();
    let depth = req.depth.unwrap_or(1);
    let v = tokio::task::spawn_blocking(move || files::list(&path, depth))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(v))
}

async fn mkdir(Json(req): Json<PathReq>) -> ApiResult<Json<wrenn_protocol::EntryInfo>> {
    Ok(Json(files::mkdir(&req.path)?))
}

async fn remove(Json(req): Json<PathReq>) -> ApiResult<StatusCode> {
    let path = req.path.clone();
    tokio::task::spawn_blocking(move || files::remove(&path))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(StatusCode::NO_CONTENT)
}

async fn metrics() -> Json<wrenn_protocol::Metrics> {
    Json(system::metrics().await)
}

async fn restore(Json(req): Json<RestoreRequest>) -> ApiResult<StatusCode> {
    system::restore(&req)?;
    Ok(StatusCode::NO_CONTENT)
}
