//! envd's `/files` as E2B's SDK uses it: `GET` streams a file, `POST` writes files from a
//! multipart body (a `file` field per file, its filename the path) or from a raw
//! `application/octet-stream` body. Both stream: nothing holds a whole file. A request may
//! carry a signature (`signature=v1_…`, made from the sandbox's access token) instead of
//! the token itself, as the SDK's download and upload URLs do.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use wrenn_protocol::WriteOptions;

use super::dataplane::{basic_user, check_user, Envd};
use super::error::E2bError;
use super::TokenKind;
use crate::access::same_secret;

/// True when a request carries a signature rather than needing `X-Access-Token`.
pub fn signed(req: &Request) -> bool {
    req.uri().path() == "/files" && query(req, "signature").is_some()
}

fn query(req: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Answers `/files`.
pub async fn call(mut ctx: Envd, req: Request) -> Result<Response, E2bError> {
    let raw_path = query(&req, "path");
    let username = query(&req, "username").filter(|u| !u.is_empty());
    if let Some(u) = &username {
        check_user(u)?;
        ctx.user = u.clone();
    } else if let Some(u) = basic_user(req.headers())? {
        ctx.user = u;
    }
    let operation = match *req.method() {
        Method::GET => "read",
        Method::POST => "write",
        _ => {
            return Err(E2bError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "/files answers GET and POST",
            ))
        }
    };
    if let Some(signature) = query(&req, "signature") {
        let expiration = query(&req, "signature_expiration");
        check_signature(
            &ctx,
            raw_path.as_deref().unwrap_or(""),
            operation,
            username.as_deref().unwrap_or(""),
            &signature,
            expiration.as_deref(),
        )
        .await?;
    }
    if operation == "read" {
        let path = raw_path.ok_or_else(|| E2bError::invalid("missing path"))?;
        read(ctx, &path).await
    } else {
        write(ctx, raw_path, req).await
    }
}

async fn check_signature(
    ctx: &Envd,
    path: &str,
    operation: &str,
    user: &str,
    signature: &str,
    expiration: Option<&str>,
) -> Result<(), E2bError> {
    let unauthorized = |m: &str| E2bError::new(StatusCode::UNAUTHORIZED, m.to_owned());
    let token = ctx.state.e2b_token(&ctx.row.id, TokenKind::Envd).await?;
    let raw = match expiration {
        Some(exp) => {
            let at: i64 = exp
                .parse()
                .map_err(|_| unauthorized("invalid signature_expiration"))?;
            if at < chrono::Utc::now().timestamp() {
                return Err(unauthorized("the signature has expired"));
            }
            format!("{path}:{operation}:{user}:{token}:{exp}")
        }
        None => format!("{path}:{operation}:{user}:{token}"),
    };
    let want = format!(
        "v1_{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(raw.as_bytes()))
    );
    if same_secret(want.as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("invalid signature"))
    }
}

async fn read(ctx: Envd, path: &str) -> Result<Response, E2bError> {
    let path = ctx.path(&ctx.user, path);
    let stream = ctx.guest.read_file(&path).await.map_err(E2bError::of)?;
    let guard = ctx.hold();
    let body = Body::from_stream(stream.map(move |r| {
        let _keep = &guard;
        r.map_err(std::io::Error::other)
    }));
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(resp)
}

/// What a write answers for one file.
fn written(path: &str) -> Value {
    let name = path.rsplit('/').next().unwrap_or(path);
    json!({"name": name, "type": "file", "path": path})
}

/// Streams `chunks` into the guest file `path`, owned by the caller's user.
async fn write_one<S, E>(ctx: &Envd, path: &str, mut chunks: S) -> Result<(), E2bError>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let opts = WriteOptions {
        owner: Some(ctx.user.clone()),
        create_parents: Some(true),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let write = ctx
        .guest
        .write_file(path, opts, ReceiverStream::new(rx).boxed());
    let pump = async move {
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(c) => {
                    if tx.send(Ok(c)).await.is_err() {
                        // The guest stopped reading; its error is the answer.
                        return Ok(());
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other("upload broke"))).await;
                    return Err(E2bError::invalid(format!("upload body: {e}")));
                }
            }
        }
        Ok(())
    };
    let (w, p) = tokio::join!(write, pump);
    p?;
    w.map_err(E2bError::of)?;
    Ok(())
}

async fn write(ctx: Envd, query_path: Option<String>, req: Request) -> Result<Response, E2bError> {
    let _hold = ctx.hold();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if let Some(enc) = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.eq_ignore_ascii_case("identity"))
    {
        return Err(E2bError::invalid(format!(
            "Content-Encoding {enc} is not supported: upload without gzip"
        )));
    }
    let mut done = Vec::new();
    if content_type.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(&content_type)
            .map_err(|e| E2bError::invalid(format!("expected multipart/form-data: {e}")))?;
        let mut multipart = multer::Multipart::new(req.into_body().into_data_stream(), boundary);
        loop {
            let field = multipart
                .next_field()
                .await
                .map_err(|e| E2bError::invalid(format!("malformed multipart body: {e}")))?;
            let Some(mut field) = field else { break };
            if field.name() != Some("file") {
                while field
                    .chunk()
                    .await
                    .map_err(|e| E2bError::invalid(format!("malformed multipart body: {e}")))?
                    .is_some()
                {}
                continue;
            }
            let named = field.file_name().map(str::to_owned);
            let given = match (&query_path, named) {
                (Some(p), _) => p.clone(),
                (None, Some(n)) if !n.is_empty() => n,
                _ => return Err(E2bError::invalid("a file field without a path")),
            };
            let path = ctx.path(&ctx.user, &given);
            write_one(&ctx, &path, &mut field).await?;
            done.push(written(&path));
        }
    } else {
        let given = query_path.ok_or_else(|| E2bError::invalid("missing path"))?;
        let path = ctx.path(&ctx.user, &given);
        write_one(&ctx, &path, req.into_body().into_data_stream()).await?;
        done.push(written(&path));
    }
    if done.is_empty() {
        return Err(E2bError::invalid("the upload holds no file"));
    }
    ctx.state.activity.touch(&ctx.row.id).await;
    Ok((StatusCode::OK, axum::Json(Value::Array(done))).into_response())
}
