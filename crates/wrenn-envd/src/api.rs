//! The HTTP routes: each handler parses its request, calls the module that does the work and
//! encodes the answer. Streams are NDJSON (one event per line, bytes base64); file bodies are
//! raw bytes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wrenn_protocol::routes;
use wrenn_protocol::{
    ExecRequest, Health, MoveRequest, ProcessSelector, PtyResize, PtyStart, RestoreRequest,
    SignalRequest, WatchRequest, WriteOptions, HEADER_PID, HEADER_TAG,
};

use crate::error::{ApiError, ApiResult};
use crate::metrics::Sampler;
use crate::procs::{spec_of, Registry, Tracked};
use crate::{exec, files, restore};

/// Everything the handlers share.
#[derive(Debug)]
pub struct App {
    /// Background processes and PTY sessions.
    pub procs: Registry,
    /// CPU sampler.
    pub metrics: Sampler,
    /// Directory watchers kept for polling.
    pub watchers: crate::watch::Watchers,
    /// True when envd is the guest's init (may set the clock).
    pub is_init: bool,
}

/// Shared application state.
pub type AppState = Arc<App>;

/// The router of envd's API.
pub fn router(app: AppState) -> Router {
    Router::new()
        .route(routes::HEALTH, get(health))
        .route(routes::EXEC, post(exec_collect))
        .route(routes::EXEC_STREAM, post(exec_stream))
        .route(
            routes::PROCESSES,
            get(list_processes).post(start_background),
        )
        .route(routes::PROCESS_SIGNAL, post(signal))
        .route(routes::PROCESS_ATTACH, get(attach))
        .route(routes::PROCESS_STDIN, post(stdin_write))
        .route(routes::PROCESS_STDIN_CLOSE, post(stdin_close))
        .route(routes::PTY, post(pty_start))
        .route(routes::PTY_CONNECT, get(pty_connect))
        .route(routes::PTY_INPUT, post(pty_input))
        .route(routes::PTY_RESIZE, post(pty_resize))
        .route(routes::PTY_KILL, post(pty_kill))
        .route(routes::FILES, get(read_file).put(write_file).delete(remove))
        .route(routes::FILES_STAT, get(stat))
        .route(routes::FILES_LIST, get(list))
        .route(routes::FILES_MKDIR, post(mkdir))
        .route(routes::FILES_MOVE, post(move_entry))
        .route(routes::FILES_WATCH, get(watch_stream))
        .route(routes::FILES_WATCHERS, post(watcher_create))
        .route(routes::FILES_WATCHER_EVENTS, get(watcher_events))
        .route(routes::FILES_WATCHER, axum::routing::delete(watcher_remove))
        .route(routes::METRICS, get(metrics))
        .route(routes::RESTORE, post(restore_state))
        .route(routes::PORT_TUNNEL, post(port_tunnel))
        .with_state(app)
}

fn json<T: DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::invalid(format!("request body: {e}")))
}

/// Encodes a stream of events as NDJSON.
fn ndjson<S, T>(events: S) -> Body
where
    S: Stream<Item = T> + Send + 'static,
    T: Serialize,
{
    Body::from_stream(events.map(|ev| {
        let mut line = serde_json::to_vec(&ev).unwrap_or_default();
        line.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(line))
    }))
}

async fn health() -> Json<Health> {
    Json(this_envd())
}

/// The version and protocol of this envd.
fn this_envd() -> Health {
    Health {
        version: env!("CARGO_PKG_VERSION").into(),
        protocol: wrenn_protocol::PROTOCOL_VERSION,
    }
}

async fn exec_collect(body: Bytes) -> ApiResult<Response> {
    let req: ExecRequest = json(&body)?;
    let out = exec::collect(&spec_of(&req), req.timeout_ms.map(Duration::from_millis)).await?;
    Ok(Json(out).into_response())
}

async fn exec_stream(body: Bytes) -> ApiResult<Response> {
    let req: ExecRequest = json(&body)?;
    let (_pid, rx) = exec::stream(&spec_of(&req), req.timeout_ms.map(Duration::from_millis))?;
    let events = futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|ev| (ev, rx)) },
    );
    Ok(ndjson(events).into_response())
}

async fn start_background(State(app): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let req: ExecRequest = json(&body)?;
    Ok(Json(app.procs.start_background(req)?).into_response())
}

async fn list_processes(State(app): State<AppState>) -> Response {
    Json(app.procs.list()).into_response()
}

async fn signal(
    State(app): State<AppState>,
    Path(sel): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: SignalRequest = json(&body)?;
    app.procs
        .signal(&ProcessSelector::parse(&sel), req.signal)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn attach(State(app): State<AppState>, Path(sel): Path<String>) -> ApiResult<Response> {
    let t = app.procs.find(&ProcessSelector::parse(&sel))?;
    Ok(ndjson(t.events()).into_response())
}

async fn stdin_write(
    State(app): State<AppState>,
    Path(sel): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    app.procs
        .write_stdin(&ProcessSelector::parse(&sel), &body)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn stdin_close(
    State(app): State<AppState>,
    Path(sel): Path<String>,
) -> ApiResult<StatusCode> {
    app.procs.close_stdin(&ProcessSelector::parse(&sel)).await?;
    Ok(StatusCode::NO_CONTENT)
}

fn pty_response(t: Arc<Tracked>) -> Response {
    let (tag, pid) = (t.tag.clone(), t.pid);
    let mut resp = ndjson(t.pty_events()).into_response();
    if let Ok(v) = HeaderValue::from_str(&tag) {
        resp.headers_mut().insert(HEADER_TAG, v);
    }
    resp.headers_mut()
        .insert(HEADER_PID, HeaderValue::from(pid));
    resp
}

async fn pty_start(State(app): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let req: PtyStart = json(&body)?;
    Ok(pty_response(app.procs.start_pty(req)?))
}

async fn pty_connect(State(app): State<AppState>, Path(tag): Path<String>) -> ApiResult<Response> {
    Ok(pty_response(app.procs.find_pty(&tag)?))
}

async fn pty_input(
    State(app): State<AppState>,
    Path(tag): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let t = app.procs.find_pty(&tag)?;
    if !t.running() {
        return Err(ApiError::not_found(format!("pty {tag}: session ended")));
    }
    if let Some(m) = t.pty.as_ref() {
        m.write_all(&body)
            .await
            .map_err(|e| ApiError::io(format!("pty {tag}: input"), e))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn pty_resize(
    State(app): State<AppState>,
    Path(tag): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let req: PtyResize = json(&body)?;
    let t = app.procs.find_pty(&tag)?;
    if let Some(m) = t.pty.as_ref() {
        m.resize(req.cols, req.rows)
            .map_err(|e| ApiError::io(format!("pty {tag}: resize"), e))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn pty_kill(State(app): State<AppState>, Path(tag): Path<String>) -> ApiResult<StatusCode> {
    let t = app.procs.find_pty(&tag)?;
    app.procs
        .signal(&ProcessSelector::Tag(t.tag.clone()), libc::SIGKILL)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `?path=`.
#[derive(Debug, Deserialize)]
struct PathQuery {
    path: String,
    #[serde(default)]
    depth: Option<u32>,
}

/// Query of `PUT /files`.
#[derive(Debug, Deserialize)]
struct WriteQuery {
    path: String,
    mode: Option<u32>,
    owner: Option<String>,
    modified_at: Option<i64>,
    create_parents: Option<bool>,
}

/// `GET /files`: the file's bytes up to the end of file the read finds, without a
/// Content-Length (the size on disk is wrong for `/proc`, `/sys`, devices, FIFOs and files
/// that change while read; a wrong length cut the body short). A read error after the first
/// byte resets the stream, so a client sees an error, never a silently short body.
async fn read_file(Query(q): Query<PathQuery>) -> ApiResult<Response> {
    let (file, _size_hint) = files::open_read(&q.path).await?;
    Ok(Body::from_stream(crate::filestream::reader(file).await).into_response())
}

async fn write_file(Query(q): Query<WriteQuery>, body: Body) -> ApiResult<Response> {
    let opts = WriteOptions {
        mode: q.mode,
        owner: q.owner,
        modified_at: q.modified_at,
        create_parents: q.create_parents,
    };
    let info = files::write(&q.path, &opts, body.into_data_stream()).await?;
    Ok(Json(info).into_response())
}

async fn remove(Query(q): Query<PathQuery>) -> ApiResult<StatusCode> {
    tokio::task::spawn_blocking(move || files::remove(&q.path))
        .await
        .map_err(|e| ApiError::internal(format!("remove: {e}")))??;
    Ok(StatusCode::NO_CONTENT)
}

async fn stat(Query(q): Query<PathQuery>) -> ApiResult<Response> {
    Ok(Json(files::stat(&q.path)?).into_response())
}

async fn list(Query(q): Query<PathQuery>) -> ApiResult<Response> {
    let depth = q.depth.unwrap_or(1);
    let entries = tokio::task::spawn_blocking(move || files::list(&q.path, depth))
        .await
        .map_err(|e| ApiError::internal(format!("list: {e}")))??;
    Ok(Json(entries).into_response())
}

/// Query of `POST /files/mkdir`.
#[derive(Debug, Deserialize)]
struct MkdirQuery {
    path: String,
    owner: Option<String>,
}

async fn mkdir(Query(q): Query<MkdirQuery>) -> ApiResult<Response> {
    let info = tokio::task::spawn_blocking(move || files::mkdir(&q.path, q.owner.as_deref()))
        .await
        .map_err(|e| ApiError::internal(format!("mkdir: {e}")))??;
    Ok(Json(info).into_response())
}

async fn move_entry(body: Bytes) -> ApiResult<Response> {
    let req: MoveRequest = json(&body)?;
    let info = tokio::task::spawn_blocking(move || files::rename(&req.source, &req.destination))
        .await
        .map_err(|e| ApiError::internal(format!("move: {e}")))??;
    Ok(Json(info).into_response())
}

/// Query of `GET /files/watch`.
#[derive(Debug, Deserialize)]
struct WatchQuery {
    path: String,
    #[serde(default)]
    recursive: bool,
}

async fn watch_stream(Query(q): Query<WatchQuery>) -> ApiResult<Response> {
    let events = crate::watch::watch(&WatchRequest {
        path: q.path,
        recursive: q.recursive,
    })?;
    Ok(ndjson(events).into_response())
}

async fn watcher_create(State(app): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let req: WatchRequest = json(&body)?;
    Ok(Json(app.watchers.create(&req)?).into_response())
}

async fn watcher_events(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(app.watchers.drain(&id)?).into_response())
}

async fn watcher_remove(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    app.watchers.remove(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn metrics(State(app): State<AppState>) -> Response {
    Json(app.metrics.read()).into_response()
}

/// Applies the host's clock, entropy and nameservers after a restore, and answers what
/// `health` does, so a host that just restored the guest needs one request, not two.
async fn restore_state(State(app): State<AppState>, body: Bytes) -> ApiResult<Json<Health>> {
    let req: RestoreRequest = json(&body)?;
    restore::apply(&req, app.is_init)?;
    Ok(Json(this_envd()))
}

async fn port_tunnel(Path(port): Path<u16>, body: Body) -> ApiResult<Response> {
    crate::tunnel::open(port, body).await
}
