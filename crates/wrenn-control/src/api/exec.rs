//! `POST /v1/capsules/{id}/exec` and the process routes.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use wrenn_protocol::{ExecRequest, ProcessSelector};

use super::extract::{ApiJson, ApiQuery, Params};
use crate::api::error::ApiError;
use crate::auth::Auth;
use crate::ids;
use crate::state::AppState;

/// Body of `POST …/exec`.
#[derive(Debug, Deserialize)]
pub struct ExecBody {
    cmd: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    background: bool,
    timeout_sec: Option<u64>,
    #[serde(default)]
    envs: BTreeMap<String, String>,
    cwd: Option<String>,
    tag: Option<String>,
}

fn check_command(
    cmd: &str,
    args: &[String],
    envs: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    if cmd.is_empty() {
        return Err(ApiError::invalid("cmd must not be empty"));
    }
    let nul = |s: &str| s.contains('\0');
    if nul(cmd) || args.iter().any(|a| nul(a)) || envs.iter().any(|(k, v)| nul(k) || nul(v)) {
        return Err(ApiError::invalid(
            "command, arguments and environment must not contain NUL bytes",
        ));
    }
    if envs.keys().any(|k| k.is_empty() || k.contains('=')) {
        return Err(ApiError::invalid(
            "environment variable names must be non-empty and contain no '='",
        ));
    }
    Ok(())
}

/// `POST /v1/capsules/{id}/exec`.
pub async fn exec(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    ApiJson(body): ApiJson<ExecBody>,
) -> Result<Response, ApiError> {
    let id = params.capsule_id()?;
    check_command(&body.cmd, &body.args, &body.envs)?;
    if let Some(cwd) = &body.cwd {
        super::extract::guest_path(cwd)?;
    }
    let (_, guest) = state.running_guest(&auth, id).await?;
    let req = ExecRequest {
        cmd: body.cmd.clone(),
        args: body.args.clone(),
        envs: body.envs,
        cwd: body.cwd,
        user: None,
        timeout_ms: if body.background {
            None
        } else {
            body.timeout_sec
                .filter(|t| *t > 0)
                .map(|t| t.saturating_mul(1000))
        },
        tag: if body.background {
            Some(body.tag.unwrap_or_else(ids::new_tag))
        } else {
            body.tag
        },
        stdin: false,
    };
    if body.background {
        let info = guest.start_background(req).await?;
        state.activity.touch(id).await;
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"sandbox_id": id, "cmd": body.cmd, "pid": info.pid, "tag": info.tag})),
        )
            .into_response());
    }
    let out = {
        let _open = state.activity.open_stream(id);
        guest.exec(req).await?
    };
    Ok(Json(exec_answer(json!(id), &body.cmd, out)).into_response())
}

/// The answer of a foreground exec: the contract's fields plus the extension fields
/// `stdout_truncated` / `stderr_truncated`, true when that stream went past
/// [`wrenn_protocol::EXEC_OUTPUT_LIMIT`] and only its first bytes are in the answer (the exec
/// stream gets everything), and `timed_out`, true when the command was killed at its timeout.
fn exec_answer(sandbox_id: Value, cmd: &str, out: wrenn_protocol::ExecOutput) -> Value {
    let exit_code = if out.timed_out && out.exit_code == 0 {
        124
    } else {
        out.exit_code
    };
    let (stdout, stderr, encoding) =
        match (String::from_utf8(out.stdout), String::from_utf8(out.stderr)) {
            (Ok(o), Ok(e)) => (o, e, "utf-8"),
            (o, e) => {
                let b64 = base64::engine::general_purpose::STANDARD;
                let bytes = |r: Result<String, std::string::FromUtf8Error>| match r {
                    Ok(s) => s.into_bytes(),
                    Err(e) => e.into_bytes(),
                };
                (b64.encode(bytes(o)), b64.encode(bytes(e)), "base64")
            }
        };
    json!({
        "sandbox_id": sandbox_id,
        "cmd": cmd,
        "stdout": stdout,
        "stderr": stderr,
        "exit_code": exit_code,
        "duration_ms": out.duration_ms,
        "encoding": encoding,
        "stdout_truncated": out.stdout_truncated,
        "stderr_truncated": out.stderr_truncated,
        "timed_out": out.timed_out,
    })
}

/// `GET /v1/capsules/{id}/processes`.
pub async fn list_processes(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    let (_, guest) = state.running_guest(&auth, params.capsule_id()?).await?;
    let procs = guest.list_processes().await?;
    let list: Vec<Value> = procs
        .iter()
        .map(|p| json!({"pid": p.pid, "tag": p.tag, "cmd": p.cmd, "args": p.args}))
        .collect();
    Ok(Json(json!({ "processes": list })))
}

/// Query of the kill route.
#[derive(Debug, Deserialize)]
pub struct KillQuery {
    signal: Option<String>,
}

/// Parses a signal name (`SIGTERM`, `TERM`) or number; default SIGKILL.
pub fn parse_signal(s: Option<&str>) -> Result<i32, ApiError> {
    let Some(s) = s else { return Ok(libc::SIGKILL) };
    let name = s.trim().to_ascii_uppercase();
    let name = name.strip_prefix("SIG").unwrap_or(&name);
    let sig = match name {
        "KILL" => libc::SIGKILL,
        "TERM" => libc::SIGTERM,
        "INT" => libc::SIGINT,
        "HUP" => libc::SIGHUP,
        "QUIT" => libc::SIGQUIT,
        "USR1" => libc::SIGUSR1,
        "USR2" => libc::SIGUSR2,
        "STOP" => libc::SIGSTOP,
        "CONT" => libc::SIGCONT,
        n => match n.parse::<i32>() {
            Ok(v) if (1..=64).contains(&v) => v,
            _ => return Err(ApiError::invalid(format!("unknown signal {s:?}"))),
        },
    };
    Ok(sig)
}

/// Parses a `{pid or tag}` path segment.
pub fn selector(raw: &str) -> Result<ProcessSelector, ApiError> {
    if raw.is_empty() || raw.len() > 256 || raw.contains('\0') || raw.contains('/') {
        return Err(ApiError::invalid(format!(
            "invalid process pid or tag {raw:?}"
        )));
    }
    Ok(ProcessSelector::parse(raw))
}

/// `DELETE /v1/capsules/{id}/processes/{selector}`.
pub async fn kill_process(
    State(state): State<AppState>,
    auth: Auth,
    params: Params,
    ApiQuery(q): ApiQuery<KillQuery>,
) -> Result<StatusCode, ApiError> {
    let id = params.capsule_id()?;
    let target = selector(params.get("selector")?)?;
    let signal = parse_signal(q.signal.as_deref())?;
    let (_, guest) = state.running_guest(&auth, id).await?;
    guest.signal(target, signal).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_answer_reports_truncation() {
        let out = wrenn_protocol::ExecOutput {
            stdout: b"partial".to_vec(),
            stderr: b"err".to_vec(),
            exit_code: 0,
            duration_ms: 5,
            timed_out: false,
            stdout_truncated: true,
            stderr_truncated: false,
        };
        let v = exec_answer(json!("cl-x"), "yes", out.clone());
        assert_eq!(v["stdout"], "partial");
        assert_eq!(v["stdout_truncated"], true);
        assert_eq!(v["stderr_truncated"], false);
        assert_eq!(v["encoding"], "utf-8");
        let plain = exec_answer(
            json!("cl-x"),
            "true",
            wrenn_protocol::ExecOutput {
                stdout_truncated: false,
                ..out
            },
        );
        assert_eq!(plain["stdout_truncated"], false);
        assert_eq!(plain["timed_out"], false);
        let killed = exec_answer(
            json!("cl-x"),
            "sleep 9",
            wrenn_protocol::ExecOutput {
                timed_out: true,
                exit_code: 0,
                ..plain_out()
            },
        );
        assert_eq!(killed["timed_out"], true);
        assert_eq!(killed["exit_code"], 124);
    }

    fn plain_out() -> wrenn_protocol::ExecOutput {
        wrenn_protocol::ExecOutput {
            stdout: Vec::new(),
            stderr: Vec::new(),
            exit_code: 0,
            duration_ms: 1,
            timed_out: false,
            stdout_truncated: false,
            stderr_truncated: false,
        }
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal(None).unwrap(), libc::SIGKILL);
        assert_eq!(parse_signal(Some("SIGTERM")).unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal(Some("term")).unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal(Some("9")).unwrap(), 9);
        assert!(parse_signal(Some("SIGNOPE")).is_err());
    }
}
