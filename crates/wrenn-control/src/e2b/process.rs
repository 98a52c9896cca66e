//! `process.Process`: E2B's process service over our envd. A started command is one of
//! envd's background processes (it outlives the stream; `Connect` attaches to it again,
//! replaying its output), a PTY one of envd's PTY sessions; both are named by pid, which is
//! resolved to envd's tag where our API names sessions by tag.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};
use wrenn_protocol::{ExecRequest, ProcessEvent, ProcessInfo, ProcessSelector, PtyEvent, PtyStart};

use super::connect::{self, Code, RpcError};
use super::dataplane::{body_bytes, check_user, Envd};

/// Keepalive interval when the client asks for none (E2B's default).
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(90);
/// Bounds of a keepalive interval a client may ask for.
const KEEPALIVE_RANGE: (u64, u64) = (1, 600);
/// How long after a stream's `Connect-Timeout-Ms` its process is killed: the client's own
/// deadline passes first, so it sees its timeout rather than a killed process.
const KILL_GRACE_MS: u64 = 1000;

/// Answers one call of the service.
pub async fn call(ctx: Envd, method: &str, req: Request) -> Response {
    match method {
        "Start" => start(ctx, req).await,
        "Connect" => connect_to(ctx, req).await,
        "StreamInput" => stream_input(ctx, req).await,
        "List" | "SendInput" | "SendSignal" | "Update" | "CloseStdin" => {
            match unary(ctx, method, req).await {
                Ok(v) => connect::unary(&v),
                Err(e) => e.into_response(),
            }
        }
        other => RpcError::new(
            Code::Unimplemented,
            format!("process.Process/{other} is not implemented"),
        )
        .into_response(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ProcessConfig {
    cmd: String,
    args: Vec<String>,
    envs: BTreeMap<String, String>,
    cwd: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PtySize {
    cols: u16,
    rows: u16,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Pty {
    size: PtySize,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StartRequest {
    process: ProcessConfig,
    pty: Option<Pty>,
    tag: Option<String>,
    stdin: Option<bool>,
}

/// A `ProcessSelector`: `{"pid": n}` or `{"tag": "…"}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Selector {
    pid: Option<u32>,
    tag: Option<String>,
}

impl Selector {
    fn ours(&self) -> Result<ProcessSelector, RpcError> {
        match (self.pid, &self.tag) {
            (Some(pid), _) => Ok(ProcessSelector::Pid(pid)),
            (None, Some(tag)) => Ok(ProcessSelector::Tag(tag.clone())),
            (None, None) => Err(RpcError::invalid("process selector names no pid or tag")),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Target {
    process: Selector,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Input {
    stdin: Option<String>,
    pty: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SendInputRequest {
    process: Selector,
    input: Input,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SendSignalRequest {
    process: Selector,
    signal: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct UpdateRequest {
    process: Selector,
    pty: Option<Pty>,
}

/// The environment a command gets: the sandbox's, then the request's on top.
fn environment(ctx: &Envd, extra: BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut envs = ctx.envs.clone();
    envs.extend(extra);
    envs
}

/// When a stream's process is killed: [`KILL_GRACE_MS`] after its `Connect-Timeout-Ms`
/// (absent or 0 = never), as E2B's envd ends a process with its request.
fn timeout_ms(req: &Request) -> Option<u64> {
    req.headers()
        .get("connect-timeout-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|ms| *ms > 0)
        .map(|ms| ms.saturating_add(KILL_GRACE_MS))
}

/// The keepalive interval a stream asks for (`Keepalive-Ping-Interval`, seconds).
pub fn keepalive(req: &Request) -> Duration {
    req.headers()
        .get("keepalive-ping-interval")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_KEEPALIVE, |s| {
            Duration::from_secs(s.clamp(KEEPALIVE_RANGE.0, KEEPALIVE_RANGE.1))
        })
}

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn unb64(s: &str) -> Result<Vec<u8>, RpcError> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
        .map_err(|_| RpcError::invalid("input is not base64"))
}

/// The events of a process stream, as the Connect messages of `Start`/`Connect`.
enum Out {
    Start(u32),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Pty(Vec<u8>),
    End(i32),
    Failed(RpcError),
}

impl Out {
    fn envelope(&self) -> Bytes {
        let event = match self {
            Out::Start(pid) => json!({"start": {"pid": pid}}),
            Out::Stdout(d) => json!({"data": {"stdout": b64(d)}}),
            Out::Stderr(d) => json!({"data": {"stderr": b64(d)}}),
            Out::Pty(d) => json!({"data": {"pty": b64(d)}}),
            Out::End(code) => json!({"end": {
                "exitCode": code,
                "exited": true,
                "status": format!("exit status {code}"),
            }}),
            Out::Failed(e) => return e.end_stream(),
        };
        connect::envelope(0, &json!({ "event": event }))
    }
}

/// Streams a process's events to the client: `first`, the events, then the end of stream
/// after its `end` (an error end when the events stop short of it), with keepalives while
/// it waits. The capsule counts as active while the stream is open.
fn stream_out(
    ctx: &Envd,
    first: Out,
    events: futures::stream::BoxStream<'static, Out>,
    ping: Duration,
) -> Response {
    let envelopes = futures::stream::once(async move { Some(first) })
        .chain(events.map(Some))
        .chain(futures::stream::once(async { None }))
        .scan(false, |done, ev| {
            let out = if *done {
                None
            } else {
                Some(match ev {
                    Some(Out::Failed(e)) => {
                        *done = true;
                        vec![e.end_stream()]
                    }
                    Some(ev @ Out::End(_)) => {
                        *done = true;
                        vec![ev.envelope(), connect::end_ok()]
                    }
                    Some(ev) => vec![ev.envelope()],
                    None => {
                        *done = true;
                        let e = RpcError::new(
                            Code::Unavailable,
                            "the process stream ended before the process did",
                        );
                        vec![e.end_stream()]
                    }
                })
            };
            std::future::ready(out)
        })
        .flat_map(futures::stream::iter)
        .boxed();
    let keepalive = connect::envelope(0, &json!({"event": {"keepalive": {}}}));
    connect::streaming_with_keepalive(envelopes, keepalive, ping, ctx.hold())
}

fn process_events(
    events: futures::stream::BoxStream<'static, ProcessEvent>,
) -> futures::stream::BoxStream<'static, Out> {
    events
        .filter_map(|ev| async move {
            match ev {
                ProcessEvent::Started { .. } => None,
                ProcessEvent::Stdout { data } => Some(Out::Stdout(data)),
                ProcessEvent::Stderr { data } => Some(Out::Stderr(data)),
                ProcessEvent::Exit { exit_code } => Some(Out::End(exit_code)),
                ProcessEvent::Error { message } => {
                    Some(Out::Failed(RpcError::new(Code::Unavailable, message)))
                }
            }
        })
        .boxed()
}

fn pty_events(
    events: futures::stream::BoxStream<'static, PtyEvent>,
) -> futures::stream::BoxStream<'static, Out> {
    events
        .map(|ev| match ev {
            PtyEvent::Output { data } => Out::Pty(data),
            PtyEvent::Exit { exit_code } => Out::End(exit_code),
        })
        .boxed()
}

/// `Start`: a command, or a PTY when `pty` is given.
async fn start(ctx: Envd, req: Request) -> Response {
    let ping = keepalive(&req);
    let timeout = timeout_ms(&req);
    let body = match body_bytes(req.into_body(), connect::MAX_MESSAGE).await {
        Ok(b) => b,
        Err(e) => return connect::stream_error(e),
    };
    let start: StartRequest = match connect::single_request(&body) {
        Ok(s) => s,
        Err(e) => return connect::stream_error(e),
    };
    match start_inner(&ctx, start, timeout).await {
        Ok((pid, events)) => stream_out(&ctx, Out::Start(pid), events, ping),
        Err(e) => connect::stream_error(e),
    }
}

async fn start_inner(
    ctx: &Envd,
    start: StartRequest,
    timeout: Option<u64>,
) -> Result<(u32, futures::stream::BoxStream<'static, Out>), RpcError> {
    let user = ctx.user.clone();
    check_user(&user).map_err(|e| RpcError::invalid(e.message))?;
    let cwd = start.process.cwd.as_deref().map(|c| ctx.path(&user, c));
    let envs = environment(ctx, start.process.envs);
    if start.process.cmd.is_empty() {
        return Err(RpcError::invalid("process.cmd is empty"));
    }
    if let Some(pty) = start.pty {
        let session = ctx
            .guest
            .pty_start(PtyStart {
                cmd: Some(start.process.cmd),
                args: start.process.args,
                envs,
                cwd,
                user: Some(user),
                cols: pty.size.cols.max(1),
                rows: pty.size.rows.max(1),
                tag: start.tag,
            })
            .await?;
        if let Some(ms) = timeout {
            // envd ends a PTY at its timeout, as E2B's does.
            let (guest, tag) = (ctx.guest.clone(), session.tag.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(ms)).await;
                let _ = guest.pty_kill(&tag).await;
            });
        }
        return Ok((session.pid, pty_events(session.output)));
    }
    let info = ctx
        .guest
        .start_background(ExecRequest {
            cmd: start.process.cmd,
            args: start.process.args,
            envs,
            cwd,
            user: Some(user),
            timeout_ms: timeout,
            tag: start.tag,
            stdin: start.stdin.unwrap_or(false),
        })
        .await?;
    let attached = ctx.guest.attach(ProcessSelector::Tag(info.tag)).await?;
    Ok((info.pid, process_events(attached.events)))
}

/// The tracked process `sel` names, from envd's list.
async fn find(ctx: &Envd, sel: &ProcessSelector) -> Result<ProcessInfo, RpcError> {
    let all = ctx.guest.list_processes().await?;
    all.into_iter()
        .find(|p| match sel {
            ProcessSelector::Pid(pid) => p.pid == *pid,
            ProcessSelector::Tag(tag) => &p.tag == tag,
        })
        .ok_or_else(|| RpcError::new(Code::NotFound, format!("process {sel:?} not found")))
}

/// `Connect`: attaches to a running (or just ended) process again.
async fn connect_to(ctx: Envd, req: Request) -> Response {
    let ping = keepalive(&req);
    let body = match body_bytes(req.into_body(), connect::MAX_MESSAGE).await {
        Ok(b) => b,
        Err(e) => return connect::stream_error(e),
    };
    let result = async {
        let target: Target = connect::single_request(&body)?;
        let sel = target.process.ours()?;
        match find(&ctx, &sel).await {
            Ok(info) if info.pty => {
                let s = ctx.guest.pty_connect(&info.tag).await?;
                Ok((s.pid, pty_events(s.output)))
            }
            Ok(info) => {
                let a = ctx.guest.attach(ProcessSelector::Tag(info.tag)).await?;
                Ok((a.pid, process_events(a.events)))
            }
            // Ended processes are no longer listed; envd still replays their last output.
            Err(_) => {
                let a = ctx.guest.attach(sel).await?;
                Ok::<_, RpcError>((a.pid, process_events(a.events)))
            }
        }
    };
    match result.await {
        Ok((pid, events)) => stream_out(&ctx, Out::Start(pid), events, ping),
        Err(e) => connect::stream_error(e),
    }
}

async fn unary(ctx: Envd, method: &str, req: Request) -> Result<Value, RpcError> {
    let body = body_bytes(req.into_body(), connect::MAX_MESSAGE).await?;
    match method {
        "List" => {
            let list = ctx.guest.list_processes().await?;
            let processes: Vec<Value> = list
                .iter()
                .map(|p| {
                    json!({
                        "config": {"cmd": p.cmd, "args": p.args, "envs": {}},
                        "pid": p.pid,
                        "tag": p.tag,
                    })
                })
                .collect();
            Ok(json!({ "processes": processes }))
        }
        "SendInput" => {
            let r: SendInputRequest = connect::decode(&body)?;
            send_input(&ctx, &r.process, &r.input).await?;
            Ok(json!({}))
        }
        "SendSignal" => {
            let r: SendSignalRequest = connect::decode(&body)?;
            let sig = signal_number(&r.signal)?;
            ctx.guest.signal(r.process.ours()?, sig).await?;
            Ok(json!({}))
        }
        "Update" => {
            let r: UpdateRequest = connect::decode(&body)?;
            if let Some(pty) = r.pty {
                let info = find(&ctx, &r.process.ours()?).await?;
                if !info.pty {
                    return Err(RpcError::invalid("the process is not a PTY"));
                }
                ctx.guest
                    .pty_resize(&info.tag, pty.size.cols.max(1), pty.size.rows.max(1))
                    .await?;
            }
            Ok(json!({}))
        }
        "CloseStdin" => {
            let r: Target = connect::decode(&body)?;
            ctx.guest.close_stdin(r.process.ours()?).await?;
            Ok(json!({}))
        }
        other => Err(RpcError::new(
            Code::Unimplemented,
            format!("process.Process/{other} is not implemented"),
        )),
    }
}

/// Writes input to a process: its stdin pipe, or its PTY.
async fn send_input(ctx: &Envd, process: &Selector, input: &Input) -> Result<(), RpcError> {
    let sel = process.ours()?;
    match (&input.stdin, &input.pty) {
        (Some(data), _) => {
            ctx.guest.send_stdin(sel, Bytes::from(unb64(data)?)).await?;
        }
        (None, Some(data)) => {
            let info = find(ctx, &sel).await?;
            if !info.pty {
                return Err(RpcError::invalid("the process is not a PTY"));
            }
            ctx.guest
                .pty_input(&info.tag, Bytes::from(unb64(data)?))
                .await?;
        }
        (None, None) => {}
    }
    Ok(())
}

/// A `Signal` as proto3 JSON sends it (its name, or its number).
fn signal_number(v: &Value) -> Result<i32, RpcError> {
    match v {
        Value::String(s) => match s.as_str() {
            "SIGNAL_SIGKILL" => Ok(libc::SIGKILL),
            "SIGNAL_SIGTERM" => Ok(libc::SIGTERM),
            other => Err(RpcError::invalid(format!("unsupported signal {other}"))),
        },
        Value::Number(n) => match n.as_i64() {
            Some(9) => Ok(libc::SIGKILL),
            Some(15) => Ok(libc::SIGTERM),
            _ => Err(RpcError::invalid(format!("unsupported signal {n}"))),
        },
        _ => Err(RpcError::invalid("signal is missing")),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StreamInputRequest {
    start: Option<Target>,
    data: Option<StreamData>,
    keepalive: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StreamData {
    input: Input,
}

/// `StreamInput`: a client stream of input for one process (its first message names it).
async fn stream_input(ctx: Envd, req: Request) -> Response {
    let _hold = ctx.hold();
    let mut body = req.into_body().into_data_stream();
    let mut decoder = connect::EnvelopeDecoder::new(connect::MAX_MESSAGE);
    let mut target: Option<Selector> = None;
    let result: Result<(), RpcError> = async {
        loop {
            while let Some(env) = decoder.next_envelope()? {
                if env.flags & connect::END_STREAM != 0 {
                    return Ok(());
                }
                let msg: StreamInputRequest = connect::decode(&env.data)?;
                if let Some(start) = msg.start {
                    target = Some(start.process);
                } else if let Some(data) = msg.data {
                    let sel = target
                        .as_ref()
                        .ok_or_else(|| RpcError::invalid("input before the start message"))?;
                    send_input(&ctx, sel, &data.input).await?;
                } else if msg.keepalive.is_some() {
                    ctx.state.activity.touch(&ctx.row.id).await;
                }
            }
            match body.next().await {
                Some(Ok(chunk)) => decoder.push(&chunk),
                Some(Err(e)) => {
                    return Err(RpcError::new(Code::Canceled, format!("input stream: {e}")))
                }
                None => return Ok(()),
            }
        }
    }
    .await;
    let end = match result {
        Ok(()) => vec![connect::envelope(0, &json!({})), connect::end_ok()],
        Err(e) => vec![e.end_stream()],
    };
    connect::streaming(futures::stream::iter(end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(
            signal_number(&json!("SIGNAL_SIGKILL")).unwrap(),
            libc::SIGKILL
        );
        assert_eq!(signal_number(&json!(15)).unwrap(), libc::SIGTERM);
        assert!(signal_number(&json!("SIGNAL_UNSPECIFIED")).is_err());
        assert!(signal_number(&Value::Null).is_err());
    }

    #[test]
    fn start_requests_decode_as_the_sdk_sends_them() {
        let r: StartRequest = connect::decode(
            br#"{"process":{"cmd":"/bin/bash","args":["-l","-c","echo hi"],"envs":{"A":"1"}},"stdin":false,"future":1}"#,
        )
        .unwrap();
        assert_eq!(r.process.args[2], "echo hi");
        assert_eq!(r.stdin, Some(false));
        assert!(r.pty.is_none());
        let r: StartRequest = connect::decode(
            br#"{"process":{"cmd":"/bin/bash","args":["-i","-l"]},"pty":{"size":{"cols":80,"rows":24}}}"#,
        )
        .unwrap();
        assert_eq!(r.pty.unwrap().size.cols, 80);
        let s: Target = connect::decode(br#"{"process":{"pid":42}}"#).unwrap();
        assert_eq!(s.process.ours().unwrap(), ProcessSelector::Pid(42));
        let s: Target = connect::decode(br#"{"process":{}}"#).unwrap();
        assert!(s.process.ours().is_err());
    }
}
