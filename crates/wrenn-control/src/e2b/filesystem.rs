//! `filesystem.Filesystem`: E2B's file service over our envd (stat, make a directory, move,
//! list, remove). Watchers are not implemented and say so.

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use wrenn_protocol::{EntryInfo, EntryKind};

use super::connect::{self, Code, RpcError};
use super::dataplane::{body_bytes, Envd};

/// Deepest listing a client may ask for.
const MAX_DEPTH: u32 = 16;

/// Answers one call of the service.
pub async fn call(ctx: Envd, method: &str, req: Request) -> Response {
    let result = async {
        let body = body_bytes(req.into_body(), connect::MAX_MESSAGE).await?;
        unary(&ctx, method, &body).await
    };
    match result.await {
        Ok(v) => connect::unary(&v),
        Err(e) => {
            if method == "WatchDir" {
                connect::stream_error(e)
            } else {
                e.into_response()
            }
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PathRequest {
    path: String,
    depth: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MoveRequest {
    source: String,
    destination: String,
}

async fn unary(ctx: &Envd, method: &str, body: &[u8]) -> Result<Value, RpcError> {
    let user = ctx.user.as_str();
    match method {
        "Stat" => {
            let r: PathRequest = connect::decode(body)?;
            let e = ctx.guest.stat(&ctx.path(user, &r.path)).await?;
            Ok(json!({ "entry": entry(&e) }))
        }
        "MakeDir" => {
            let r: PathRequest = connect::decode(body)?;
            let e = ctx.guest.mkdir(&ctx.path(user, &r.path)).await?;
            Ok(json!({ "entry": entry(&e) }))
        }
        "Move" => {
            let r: MoveRequest = connect::decode(body)?;
            let e = ctx
                .guest
                .rename(&ctx.path(user, &r.source), &ctx.path(user, &r.destination))
                .await?;
            Ok(json!({ "entry": entry(&e) }))
        }
        "ListDir" => {
            let r: PathRequest = connect::decode(body)?;
            let depth = r.depth.unwrap_or(1).clamp(1, MAX_DEPTH);
            let list = ctx.guest.list(&ctx.path(user, &r.path), depth).await?;
            let entries: Vec<Value> = list.iter().map(entry).collect();
            Ok(json!({ "entries": entries }))
        }
        "Remove" => {
            let r: PathRequest = connect::decode(body)?;
            ctx.guest.remove(&ctx.path(user, &r.path)).await?;
            Ok(json!({}))
        }
        other => Err(RpcError::new(
            Code::Unimplemented,
            format!("filesystem.Filesystem/{other} is not implemented by this server"),
        )),
    }
}

/// An `EntryInfo` in proto3 JSON (int64 as a string, the timestamp as RFC 3339).
fn entry(e: &EntryInfo) -> Value {
    let kind = match e.kind {
        EntryKind::Directory => "FILE_TYPE_DIRECTORY",
        EntryKind::Symlink => "FILE_TYPE_SYMLINK",
        _ => "FILE_TYPE_FILE",
    };
    let mut v = json!({
        "name": e.name,
        "type": kind,
        "path": e.path,
        "size": e.size.to_string(),
        "mode": e.mode,
        "permissions": e.permissions,
        "owner": e.owner,
        "group": e.group,
        "modifiedTime": crate::store::rfc3339(e.modified_at.saturating_mul(1000)),
        "isSymlink": e.kind == EntryKind::Symlink,
    });
    if let Some(t) = &e.symlink_target {
        v["symlinkTarget"] = json!(t);
    }
    v
}
