//! Running the client commands: call the API, print for people or as JSON, pick the exit code.

use std::io::Write;
use std::time::Duration;

use serde::Serialize;

use crate::api::ApiClient;
use crate::cli::{command_line, env_map, CapsuleCommand, ClientOpts, SnapshotCommand};
use crate::error::{chain, ApiError};
use crate::spinner::with_spinner;
use crate::types::{Capsule, CreateCapsule, CreateSnapshot, ExecRequest};
use crate::{shell, table};

/// How long `pause`/`resume` wait for a capsule that is still in a transitional status.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

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

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Shell(#[from] shell::ShellError),
    #[error(transparent)]
    Output(#[from] crate::types::OutputDecodeError),
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
    ApiClient::new(&opts.base_url, opts.api_key.as_deref())
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
async fn settle(
    api: &ApiClient,
    mut c: Capsule,
    transitional: &str,
) -> Result<Capsule, CommandError> {
    let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
    while c.status == transitional {
        if tokio::time::Instant::now() > deadline {
            return Err(CommandError::Settle {
                id: c.id,
                status: c.status,
                secs: SETTLE_TIMEOUT.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        c = api.get_capsule(&c.id).await?;
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
        } => {
            let req = CreateCapsule {
                template: Some(template.clone()),
                vcpus: Some(vcpus),
                memory_mb: Some(memory_mb),
                timeout_sec: Some(timeout_sec),
            };
            let c = with_spinner(
                format!("creating a capsule from {template}"),
                api.create_capsule(&req),
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
            };
            let r = api.exec(&id, &req).await?;
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
                err.flush()?;
            }
            return Ok(r.exit_code);
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
