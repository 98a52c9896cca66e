//! File routes. Uploads are parsed as a multipart stream and forwarded chunk by chunk to the
//! guest; downloads stream the guest's bytes out. Nothing holds a whole file in memory.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wrenn_protocol::WriteOptions;

use super::extract::{guest_path, ApiJson, Params};
use crate::api::error::ApiError;
use crate::auth::Auth;
use crate::state::AppState;

/// `{path}` bodies.
#[derive(Debug, Deserialize)]
pub struct PathBody {
    path: String,
}

/// `{path, depth}` body of `files/list`.
#[derive(Debug, Deserialize)]
pub struct ListBody {
    path: String,
    depth: Option<u32>,
}

/// `POST …/files/write`: multipart upload limited to `max_write_bytes`.
pub async fn write(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    req: Request,
) -> Result<StatusCode, ApiError> {
    let limit = state.config.max_write_bytes;
    if let Some(len) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        // Multipart framing adds a little; anything well past the limit is refused at once.
        if len > limit.saturating_add(64 * 1024) {
            return Err(too_large(limit));
        }
    }
    upload(state, auth, params, req, Some(limit)).await
}

/// `POST …/files/stream/write`: multipart upload of any size.
pub async fn stream_write(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    req: Request,
) -> Result<StatusCode, ApiError> {
    upload(state, auth, params, req, None).await
}

fn too_large(limit: u64) -> ApiError {
    ApiError::too_large(format!(
        "file larger than the {limit} byte limit of files/write; use files/stream/write"
    ))
}

async fn upload(
    state: AppState,
    auth: Auth,
    params: Params,
    req: Request,
    limit: Option<u64>,
) -> Result<StatusCode, ApiError> {
    let id = params.capsule_id()?.to_owned();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| ApiError::invalid(format!("expected multipart/form-data: {e}")))?;
    // The capsule must exist before the body is read; the guest is asked once the path is known.
    state.team_capsule(&auth, &id).await?;
    let body = req.into_body().into_data_stream();
    let mut multipart = multer::Multipart::new(body, boundary);
    let mut path: Option<String> = None;
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| ApiError::invalid(format!("malformed multipart body: {e}")))?;
        let Some(mut field) = field else {
            return Err(ApiError::invalid("multipart body has no file field"));
        };
        match field.name() {
            Some("path") => {
                let text = field
                    .text()
                    .await
                    .map_err(|e| ApiError::invalid(format!("malformed path field: {e}")))?;
                path = Some(guest_path(&text)?.to_owned());
            }
            Some("file") => {
                let path = path.ok_or_else(|| {
                    ApiError::invalid("multipart field path must come before field file")
                })?;
                let (_, guest) = state.running_guest(&auth, &id).await?;
                let _open = state.activity.open_stream(&id);
                let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
                let write = guest.write_file(
                    &path,
                    WriteOptions::default(),
                    ReceiverStream::new(rx).boxed(),
                );
                let pump = async move {
                    let mut total: u64 = 0;
                    loop {
                        let chunk = match field.chunk().await {
                            Ok(Some(c)) => c,
                            Ok(None) => return Ok(()),
                            Err(e) => {
                                let _ = tx.send(Err(std::io::Error::other("upload broke"))).await;
                                return Err(ApiError::invalid(format!(
                                    "malformed multipart body: {e}"
                                )));
                            }
                        };
                        total += chunk.len() as u64;
                        if let Some(limit) = limit {
                            if total > limit {
                                let _ = tx
                                    .send(Err(std::io::Error::other("upload over the limit")))
                                    .await;
                                return Err(too_large(limit));
                            }
                        }
                        if tx.send(Ok(chunk)).await.is_err() {
                            // The guest stopped reading; its error is the answer.
                            return Ok(());
                        }
                    }
                };
                let (written, pumped) = tokio::join!(write, pump);
                pumped?;
                written?;
                state.activity.touch(&id).await;
                return Ok(StatusCode::NO_CONTENT);
            }
            _ => {
                // Unknown fields are skipped.
                while let Some(_chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| ApiError::invalid(format!("malformed multipart body: {e}")))?
                {
                }
            }
        }
    }
}

async fn read_common(
    state: AppState,
    auth: Auth,
    params: Params,
    body: PathBody,
) -> Result<Response, ApiError> {
    let id = params.capsule_id()?.to_owned();
    let path = guest_path(&body.path)?;
    let (_, guest) = state.running_guest(&auth, &id).await?;
    let stream = guest.read_file(path).await?;
    let guard = state.activity.open_stream(&id);
    let body = Body::from_stream(stream.map(move |r| {
        let _keep = &guard;
        r.map_err(|e| std::io::Error::other(e.to_string()))
    }));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// `POST …/files/read`.
pub async fn read(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    ApiJson(body): ApiJson<PathBody>,
) -> Result<Response, ApiError> {
    read_common(state, auth, params, body).await
}

/// `POST …/files/stream/read`.
pub async fn stream_read(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    ApiJson(body): ApiJson<PathBody>,
) -> Result<Response, ApiError> {
    read_common(state, auth, params, body).await
}

/// `POST …/files/list`.
pub async fn list(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    ApiJson(body): ApiJson<ListBody>,
) -> Result<Json<Value>, ApiError> {
    let id = params.capsule_id()?;
    let path = guest_path(&body.path)?;
    let depth = body.depth.unwrap_or(1);
    if !(1..=32).contains(&depth) {
        return Err(ApiError::invalid("depth must be between 1 and 32"));
    }
    let (_, guest) = state.running_guest(&auth, id).await?;
    let entries = guest.list(path, depth).await?;
    Ok(Json(json!({ "entries": entries })))
}

/// `POST …/files/mkdir`.
pub async fn mkdir(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    ApiJson(body): ApiJson<PathBody>,
) -> Result<Json<Value>, ApiError> {
    let id = params.capsule_id()?;
    let path = guest_path(&body.path)?;
    let (_, guest) = state.running_guest(&auth, id).await?;
    let entry = guest.mkdir(path).await?;
    Ok(Json(json!({ "entry": entry })))
}

/// `POST …/files/remove`.
pub async fn remove(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    ApiJson(body): ApiJson<PathBody>,
) -> Result<StatusCode, ApiError> {
    let id = params.capsule_id()?;
    let path = guest_path(&body.path)?;
    if path.trim_end_matches('/').is_empty() {
        return Err(ApiError::invalid("refusing to remove /"));
    }
    let (_, guest) = state.running_guest(&auth, id).await?;
    guest.remove(path).await?;
    Ok(StatusCode::NO_CONTENT)
}
