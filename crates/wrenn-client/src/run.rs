//! Running the client commands: call the API, print for people or as JSON, pick the exit code.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::api::ApiClient;
use crate::cli::{command_line, env_map, CapsuleCommand, ClientOpts, SnapshotCommand};
use crate::error::{chain, ApiError};
use crate::spinner::with_spinner;
use crate::types::{Capsule, CreateCapsule, CreateSnapshot, ExecRequest};
use crate::{cp, events, shell, table};

/// How long `pause`/`resume` wait for a capsule that is still in a transitional status.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `create` waits for a capsule that is still `starting` (the server gives up on a
/// host call after 180 s).
const CREATE_TIMEOUT: Duration = Duration::from_secs(300);
/// `exec`'s exit code when the command was killed at its timeout (as GNU `timeout`).
pub const TIMEOUT_EXIT_CODE: i32 = 124;

/// Runs `wrenn capsule …`; returns the process exit code. Errors are printed as
/// `error: <code>: <message>` and give exit code 1.
pub async fn run_capsule(opts: &ClientOpts, cmd: CapsuleCommand) -> anyhow::Result<i32> {
    Ok(report(capsule(opts, cmd).await))
}

/// Runs `wrenn snapshot …`; returns the process exit code. Errors are printed as
/// `error: <code>: <message>` and give exit code 1.
pub async fn run_snapshot(opts: &ClientOpts, cmd: SnapshotCommand) -> anyhow::Result<i32> {
    Ok(report(snapshot(opts, cmd).await))
}

/// Runs a `wrenn template …` command of a server (build, list, rm, builds, logs, cancel).
pub async fn run_template(
    opts: &ClientOpts,
    cmd: crate::templates::TemplateCommand,
) -> anyhow::Result<i32> {
    let r = async {
        let api = client(opts)?;
        Ok::<_, CommandError>(crate::templates::run(&api, opts.json, cmd).await?)
    };
    Ok(report(r.await))
}

/// Runs `wrenn events`: prints the live event stream until Ctrl-C (exit code 0).
pub async fn run_events(opts: &ClientOpts) -> anyhow::Result<i32> {
    let r = async {
        let api = client(opts)?;
        Ok::<_, CommandError>(events::run(&api, opts.json).await?)
    };
    Ok(report(r.await))
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Shell(#[from] shell::ShellError),
    #[error(transparent)]
    Output(#[from] crate::types::OutputDecodeError),
    #[error(transparent)]
    Cp(#[from] cp::CpError),
    #[error(transparent)]
    Events(#[from] events::EventsError),
    #[error(transparent)]
    Template(#[from] crate::templates::TemplateError),
    #[error("create: capsule {id} is {status}: {reason}")]
    CreateFailed {
        id: String,
        status: String,
        reason: String,
    },
    #[error("output: writing to the terminal failed")]
    Io(#[from] std::io::Error),
    #[error("timeout: capsule {id} is still {status} after {secs} s")]
    Settle {
        id: String,
        status: String,
        secs: u64,
    },
}

fn report(r: Result<i32, CommandError>) -> i32 {
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            1
        }
    }
}

fn client(opts: &ClientOpts) -> Result<ApiClient, ApiError> {
    ApiClient::with_ca_cert(
        &opts.base_url,
        opts.api_key.as_deref(),
        opts.ca_cert.as_deref(),
    )
}

fn print_json(v: &impl Serialize) -> Result<(), CommandError> {
    let text = serde_json::to_string_pretty(v).map_err(std::io::Error::other)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

fn print(text: &str) -> Result<(), CommandError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Polls until the capsule leaves `transitional` or the wait times out.
async fn settle(api: &ApiClient, c: Capsule, transitional: &str) -> Result<Capsule, CommandError> {
    settle_within(api, c, transitional, SETTLE_TIMEOUT).await
}

async fn settle_within(
    api: &ApiClient,
    mut c: Capsule,
    transitional: &str,
    timeout: Duration,
) -> Result<Capsule, CommandError> {
    let deadline = tokio::time::Instant::now() + timeout;
    while c.status == transitional {
        if tokio::time::Instant::now() > deadline {
            return Err(CommandError::Settle {
                id: c.id,
                status: c.status,
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        c = api.get_capsule(&c.id).await?;
    }
    Ok(c)
}

/// Creates a capsule; with `wait`, polls a `starting` one until it runs (a create the server
/// could not finish in its answer time) and turns any other end into an error with the
/// server's reason.
async fn create(
    api: &ApiClient,
    req: &CreateCapsule,
    wait: bool,
    timeout: Duration,
) -> Result<Capsule, CommandError> {
    let c = api.create_capsule(req).await?;
    if !wait {
        return Ok(c);
    }
    let c = settle_within(api, c, "starting", timeout).await?;
    if c.status != "running" {
        let reason = c
            .extra
            .get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("no reason given")
            .to_string();
        return Err(CommandError::CreateFailed {
            id: c.id,
            status: c.status,
            reason,
        });
    }
    Ok(c)
}

fn show_capsule(opts: &ClientOpts, c: &Capsule) -> Result<(), CommandError> {
    if opts.json {
        print_json(c)
    } else {
        print(&table::capsule_detail(c))
    }
}

async fn capsule(opts: &ClientOpts, cmd: CapsuleCommand) -> Result<i32, CommandError> {
    let api = client(opts)?;
    match cmd {
        CapsuleCommand::Create {
            template,
            vcpus,
            memory_mb,
            timeout_sec,
            no_wait,
        } => {
            let req = CreateCapsule {
                template: Some(template.clone()),
                vcpus: Some(vcpus),
                memory_mb: Some(memory_mb),
                timeout_sec: Some(timeout_sec),
            };
            let c = with_spinner(
                format!("creating a capsule from {template}"),
                create(&api, &req, !no_wait, CREATE_TIMEOUT),
            )
            .await?;
            if opts.json {
                print_json(&c)?;
            } else {
                print(&format!("{}\n", c.id))?;
            }
        }
        CapsuleCommand::List => {
            let list = api.list_capsules().await?;
            if opts.json {
                print_json(&list)?;
            } else {
                print(&table::capsules(&list))?;
            }
        }
        CapsuleCommand::Get { id } => {
            let c = api.get_capsule(&id).await?;
            show_capsule(opts, &c)?;
        }
        CapsuleCommand::Exec {
            id,
            timeout_sec,
            background,
            tag,
            cwd,
            env,
            command,
        } => {
            let req = ExecRequest {
                cmd: "/bin/sh".into(),
                args: vec!["-c".into(), command_line(&command)],
                timeout_sec,
                envs: env_map(&env),
                cwd,
                tag,
            };
            if background {
                let started = api.exec_background(&id, &req).await?;
                if opts.json {
                    print_json(&started)?;
                } else {
                    print(&format!(
                        "{} {}\n",
                        started.pid,
                        started.tag.as_deref().unwrap_or("-")
                    ))?;
                }
                return Ok(0);
            }
            let r = api.exec(&id, &req).await?;
            let timed_out = r.timed_out(timeout_sec);
            if opts.json {
                print_json(&r)?;
            } else {
                let stdout = r.stdout_bytes()?;
                let stderr = r.stderr_bytes()?;
                let mut out = std::io::stdout().lock();
                out.write_all(&stdout)?;
                out.flush()?;
                let mut err = std::io::stderr().lock();
                err.write_all(&stderr)?;
                for (cut, stream) in [
                    (r.stdout_truncated, "stdout"),
                    (r.stderr_truncated, "stderr"),
                ] {
                    if cut == Some(true) {
                        writeln!(
                            err,
                            "wrenn: {stream} was cut at the server's limit (32 MiB); \
                             write the output to a file and `wrenn capsule cp` it"
                        )?;
                    }
                }
                if timed_out {
                    writeln!(
                        err,
                        "wrenn: command timed out after {} s and was killed (exit code {})",
                        timeout_sec.unwrap_or_default(),
                        r.exit_code
                    )?;
                }
                err.flush()?;
            }
            return Ok(if timed_out {
                TIMEOUT_EXIT_CODE
            } else {
                r.exit_code
            });
        }
        CapsuleCommand::Shell { id, attach, cmd } => {
            let start = match attach {
                Some(tag) => shell::Start::Attach { tag },
                None => shell::Start::Command { cmd },
            };
            return Ok(shell::run(&api, &id, start).await?);
        }
        CapsuleCommand::Pause { id } => {
            let c = with_spinner(format!("pausing {id}"), async {
                let c = api.pause_capsule(&id).await?;
                settle(&api, c, "pausing").await
            })
            .await?;
            if opts.json {
                print_json(&c)?;
            } else {
                print(&format!("{} {}\n", c.id, c.status))?;
            }
        }
        CapsuleCommand::Resume { id } => {
            let c = with_spinner(format!("resuming {id}"), async {
                let c = api.resume_capsule(&id).await?;
                settle(&api, c, "resuming").await
            })
            .await?;
            if opts.json {
                print_json(&c)?;
            } else {
                print(&format!("{} {}\n", c.id, c.status))?;
            }
        }
        CapsuleCommand::Rm { id } => {
            let mut failed = 0;
            for one in id {
                match with_spinner(format!("destroying {one}"), api.destroy_capsule(&one)).await {
                    Ok(()) => {
                        if !opts.json {
                            print(&format!("{one} destroyed\n"))?;
                        }
                    }
                    Err(e) => {
                        eprintln!("error: {one}: {}", chain(&e));
                        failed += 1;
                    }
                }
            }
            return Ok(if failed == 0 { 0 } else { 1 });
        }
        CapsuleCommand::Cp { src, dst } => cp::run(&api, &src, &dst).await?,
        CapsuleCommand::Ps { id } => {
            let list = api.list_processes(&id).await?;
            if opts.json {
                print_json(&list)?;
            } else {
                print(&table::processes(&list))?;
            }
        }
        CapsuleCommand::Kill { id, target, signal } => {
            api.kill_process(&id, &target, signal.as_deref()).await?;
            if !opts.json {
                let sig = signal.as_deref().unwrap_or("KILL").to_ascii_uppercase();
                let sig = sig.strip_prefix("SIG").unwrap_or(&sig);
                print(&format!("sent SIG{sig} to {target}\n"))?;
            }
        }
        CapsuleCommand::Metrics { id, range, rows } => {
            let m = api.metrics(&id, &range).await?;
            if opts.json {
                print_json(&m)?;
            } else {
                // The memory chart is scaled to the capsule's memory when it can be read.
                let total = api
                    .get_capsule(&id)
                    .await
                    .ok()
                    .map(|c| c.memory_mb * 1024 * 1024);
                print(&table::metrics(&m, rows, total))?;
            }
        }
    }
    Ok(0)
}

async fn snapshot(opts: &ClientOpts, cmd: SnapshotCommand) -> Result<i32, CommandError> {
    let api = client(opts)?;
    match cmd {
        SnapshotCommand::Create {
            capsule_id,
            name,
            overwrite,
        } => {
            let req = CreateSnapshot {
                sandbox_id: capsule_id.clone(),
                name,
            };
            let t = with_spinner(
                format!("snapshotting {capsule_id}"),
                api.create_snapshot(&req, overwrite),
            )
            .await?;
            if opts.json {
                print_json(&t)?;
            } else {
                print(&format!("{}\n", t.name))?;
            }
        }
        SnapshotCommand::List { kind } => {
            let list = api.list_snapshots(kind.as_deref()).await?;
            if opts.json {
                print_json(&list)?;
            } else {
                print(&table::templates(&list))?;
            }
        }
        SnapshotCommand::Rm { name } => {
            api.delete_snapshot(&name).await?;
            if !opts.json {
                print(&format!("{name} deleted\n"))?;
            }
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::extract::State;
    use axum::routing::{get, post};
    use axum::{Json, Router};
    use serde_json::{json, Value};

    /// A server whose create answers `starting` and whose GET answers `starting` twice,
    /// then `end` (with `error` as the reason).
    async fn slow_create_api(end: &'static str) -> (ApiClient, Arc<AtomicUsize>) {
        let gets = Arc::new(AtomicUsize::new(0));
        let capsule = |status: &str| {
            json!({"id": "cl-slow", "status": status, "template": "minimal",
                   "error": if status == "error" { json!("boot failed") } else { Value::Null }})
        };
        let app = Router::new()
            .route(
                "/v1/capsules",
                post(move || async move { Json(capsule("starting")) }),
            )
            .route(
                "/v1/capsules/{id}",
                get(move |State(n): State<Arc<AtomicUsize>>| async move {
                    let seen = n.fetch_add(1, Ordering::SeqCst);
                    Json(capsule(if seen < 2 { "starting" } else { end }))
                }),
            )
            .with_state(gets.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let api = ApiClient::new(&format!("http://{addr}"), Some("wrn_x")).unwrap();
        (api, gets)
    }

    async fn try_create(
        api: &ApiClient,
        wait: bool,
        timeout: Duration,
    ) -> Result<Capsule, CommandError> {
        create(api, &CreateCapsule::default(), wait, timeout).await
    }

    #[tokio::test]
    async fn create_waits_through_starting() {
        let (api, gets) = slow_create_api("running").await;
        let c = try_create(&api, true, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(c.status, "running");
        assert_eq!(gets.load(Ordering::SeqCst), 3);
        // Without waiting the `starting` answer is taken as it is.
        let c = try_create(&api, false, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(c.status, "starting");
    }

    #[tokio::test]
    async fn a_create_that_ends_in_error_says_why() {
        let (api, _) = slow_create_api("error").await;
        let err = try_create(&api, true, Duration::from_secs(30))
            .await
            .unwrap_err();
        assert_eq!(chain(&err), "create: capsule cl-slow is error: boot failed");
    }

    #[tokio::test]
    async fn a_create_still_starting_at_the_deadline_times_out() {
        let (api, _) = slow_create_api("running").await;
        let err = try_create(&api, true, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(chain(&err).starts_with("timeout: capsule cl-slow is still starting"));
    }
}
