//! `filesystem.Filesystem`: E2B's file service over our envd: stat, make a directory, move,
//! list, remove, and directory watchers (a `WatchDir` stream, or a watcher envd keeps that
//! `GetWatcherEvents` polls).

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
    if method == "WatchDir" {
        return watch_dir(ctx, req).await;
    }
    let result = async {
        let body = body_bytes(req.into_body(), connect::MAX_MESSAGE).await?;
        unary(&ctx, method, &body).await
    };
    match result.await {
        Ok(v) => connect::unary(&v),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PathRequest {
    path: String,
    depth: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WatchRequest {
    path: String,
    recursive: bool,
    include_entry: bool,
    allow_network_mounts: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct WatcherRequest {
    watcher_id: String,
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
            let e = ctx
                .guest
                .mkdir_owned(&ctx.path(user, &r.path), Some(user))
                .await?;
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
        "CreateWatcher" => {
            let r: WatchRequest = connect::decode(body)?;
            let w = ctx.guest.create_watcher(&ours(ctx, r)?).await?;
            Ok(json!({ "watcherId": w.id }))
        }
        "GetWatcherEvents" => {
            let r: WatcherRequest = connect::decode(body)?;
            let events = ctx.guest.watcher_events(&r.watcher_id).await?;
            let events: Vec<Value> = events.iter().map(event).collect();
            Ok(json!({ "events": events }))
        }
        "RemoveWatcher" => {
            let r: WatcherRequest = connect::decode(body)?;
            ctx.guest.remove_watcher(&r.watcher_id).await?;
            Ok(json!({}))
        }
        other => Err(RpcError::new(
            Code::Unimplemented,
            format!("filesystem.Filesystem/{other} is not implemented by this server"),
        )),
    }
}

/// Our watch request for E2B's; the options of envd versions above ours are refused.
fn ours(ctx: &Envd, r: WatchRequest) -> Result<wrenn_protocol::WatchRequest, RpcError> {
    if r.include_entry || r.allow_network_mounts {
        return Err(RpcError::new(
            Code::Unimplemented,
            "includeEntry and allowNetworkMounts are not supported by this server",
        ));
    }
    Ok(wrenn_protocol::WatchRequest {
        path: ctx.path(&ctx.user, &r.path),
        recursive: r.recursive,
    })
}

/// `WatchDir`: the directory's events as a stream, until the client goes away.
async fn watch_dir(ctx: Envd, req: Request) -> Response {
    use futures::StreamExt;
    let ping = super::process::keepalive(&req);
    let result = async {
        let body = body_bytes(req.into_body(), connect::MAX_MESSAGE).await?;
        let r: WatchRequest = connect::single_request(&body)?;
        let ours = ours(&ctx, r)?;
        Ok::<_, RpcError>(ctx.guest.watch(&ours.path, ours.recursive).await?)
    };
    match result.await {
        Ok(events) => {
            let start = connect::envelope(0, &json!({"start": {}}));
            let envelopes = futures::stream::once(async move { start })
                .chain(events.map(|e| connect::envelope(0, &json!({ "filesystem": event(&e) }))))
                // The guest's stream ended (the capsule paused or went away).
                .chain(futures::stream::once(async {
                    RpcError::new(Code::Unavailable, "the watch ended").end_stream()
                }))
                .boxed();
            let keepalive = connect::envelope(0, &json!({"keepalive": {}}));
            connect::streaming_with_keepalive(envelopes, keepalive, ping, ctx.hold())
        }
        Err(e) => connect::stream_error(e),
    }
}

/// A `FilesystemEvent` in proto3 JSON.
fn event(e: &wrenn_protocol::FsEvent) -> Value {
    use wrenn_protocol::FsEventKind;
    let kind = match e.kind {
        FsEventKind::Create => "EVENT_TYPE_CREATE",
        FsEventKind::Write => "EVENT_TYPE_WRITE",
        FsEventKind::Remove => "EVENT_TYPE_REMOVE",
        FsEventKind::Rename => "EVENT_TYPE_RENAME",
        FsEventKind::Chmod => "EVENT_TYPE_CHMOD",
    };
    json!({"name": e.name, "type": kind})
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
