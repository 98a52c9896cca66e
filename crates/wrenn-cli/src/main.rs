//! `wrenn`: the one binary. `wrenn server` runs the control plane and a local host agent;
//! the other subcommands manage templates and keys locally or drive a server as a client.

mod envd_path;
mod server;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use wrenn_client::table::{render, short_time};

/// Wrenn: microVM capsules you can pause and resume.
#[derive(Parser)]
#[command(name = "wrenn", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where local state lives.
#[derive(clap::Args, Clone)]
pub struct DataOpts {
    /// Data dir (images, templates, capsules, the SQLite store).
    #[arg(long, global = true, env = "WRENN_DIR", default_value_os_t = wrenn_images::default_data_dir())]
    pub data_dir: PathBuf,
    /// PostgreSQL URL for the store (default: SQLite in the data dir).
    #[arg(long, global = true, env = "WRENN_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Control plane + local host agent + store, on this machine.
    Server(server::ServerArgs),
    /// Templates: builds from recipes on a server, and local base images.
    Template {
        #[command(flatten)]
        opts: wrenn_client::ClientOpts,
        #[command(subcommand)]
        command: TemplateCommand,
    },
    /// API keys in the local store.
    Key {
        #[command(flatten)]
        data: DataOpts,
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Teams in the local store (each team's capsules, snapshots and keys are its own).
    Team {
        #[command(flatten)]
        data: DataOpts,
        #[command(subcommand)]
        command: TeamCommand,
    },
    /// Capsules on a server.
    Capsule {
        #[command(flatten)]
        opts: wrenn_client::ClientOpts,
        #[command(subcommand)]
        command: wrenn_client::CapsuleCommand,
    },
    /// Snapshot templates on a server.
    Snapshot {
        #[command(flatten)]
        opts: wrenn_client::ClientOpts,
        #[command(subcommand)]
        command: wrenn_client::SnapshotCommand,
    },
    /// Prints the team's events as they happen (creates, pauses, …) until Ctrl-C.
    Events {
        #[command(flatten)]
        opts: wrenn_client::ClientOpts,
    },
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Prepares base templates on this machine: their images and boot snapshots (cached: a
    /// second run does nothing). `wrenn server` does the same on first use.
    Prepare {
        #[command(flatten)]
        data: DataOpts,
        /// The static envd binary to bake in (default: found next to this binary or in target/).
        #[arg(long, env = "WRENN_ENVD")]
        envd: Option<PathBuf>,
        /// vCPUs of the template snapshot.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Memory of the template snapshot in MiB.
        #[arg(long, default_value_t = 512)]
        memory_mb: u32,
        /// Templates to prepare (`minimal`, `python`); all when none.
        templates: Vec<String>,
    },
    #[command(flatten)]
    Server(wrenn_client::TemplateCommand),
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Creates a key (printed once).
    Create {
        /// A name to recognise it by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// The team the key belongs to (must exist: `wrenn team create`); default: admin.
        #[arg(long)]
        team: Option<String>,
    },
    /// Lists keys (prefixes only).
    #[command(visible_alias = "ls")]
    List {
        /// Only the keys of this team.
        #[arg(long)]
        team: Option<String>,
    },
    /// Removes a key by id.
    #[command(visible_alias = "delete")]
    Rm {
        /// Key id (`key-…`).
        id: String,
    },
}

#[derive(Subcommand)]
enum TeamCommand {
    /// Creates a team (give it keys with `wrenn key create --team NAME`).
    Create {
        /// Team name (`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`).
        name: String,
    },
    /// Lists teams.
    #[command(visible_alias = "ls")]
    List,
    /// Removes a team and its keys; refused while it has capsules or snapshots.
    #[command(visible_alias = "delete")]
    Rm {
        /// Team name.
        name: String,
    },
}

/// Prints a key-management error as `error: <code>: <message>` and gives the exit code.
fn key_error(e: wrenn_control::KeyError) -> anyhow::Result<i32> {
    let api = wrenn_control::ApiError::from(e);
    if api.status.is_server_error() {
        return Err(anyhow::anyhow!("{api}"));
    }
    eprintln!("error: {api}");
    Ok(1)
}

/// Opens the store of an existing data dir for `wrenn key` / `wrenn team`; prints why not
/// and exits 1 when there is none.
async fn existing_store(data: &DataOpts) -> wrenn_control::Store {
    match server::open_store(data, false).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e:#}");
            exit(1)
        }
    }
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WRENN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("WRENN_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Server(args) => {
            init_logs();
            server::run(args).await?;
            0
        }
        Command::Template {
            opts,
            command: TemplateCommand::Server(command),
        } => wrenn_client::run_template(&opts, command).await?,
        Command::Template {
            opts: _,
            command:
                TemplateCommand::Prepare {
                    data,
                    envd,
                    vcpus,
                    memory_mb,
                    templates,
                },
        } => {
            init_logs();
            let envd = envd_path::resolve(envd)?;
            // Building templates makes no capsule networks.
            let mut cfg = wrenn_agent::AgentConfig::new(&data.data_dir, envd);
            cfg.network = None;
            let mgr = wrenn_agent::CapsuleManager::open(cfg).await?;
            let names: Vec<String> = if templates.is_empty() {
                wrenn_images::BaseTemplate::all()
                    .iter()
                    .map(|b| b.name().to_owned())
                    .collect()
            } else {
                templates
            };
            for name in names {
                eprintln!("template {name}: {vcpus} vCPU, {memory_mb} MiB");
                mgr.prepare(&name, vcpus, memory_mb).await?;
            }
            eprintln!("templates ready in {}", data.data_dir.display());
            0
        }
        Command::Key { data, command } => {
            let store = existing_store(&data).await;
            match command {
                KeyCommand::Create { name, team } => {
                    let made = match &team {
                        Some(t) => wrenn_control::create_team_key(&store, t, &name).await,
                        None => wrenn_control::create_key(&store, None, &name).await,
                    };
                    match made {
                        Ok((info, key)) => {
                            println!("{key}");
                            eprintln!("key {} created; it is shown only this once", info.id);
                            0
                        }
                        Err(e) => key_error(e)?,
                    }
                }
                KeyCommand::List { team } => {
                    let listed = match &team {
                        Some(t) => wrenn_control::existing_team_keys(&store, t).await,
                        None => wrenn_control::list_keys(&store).await,
                    };
                    let keys = match listed {
                        Ok(k) => k,
                        Err(e) => exit(key_error(e)?),
                    };
                    let rows: Vec<Vec<String>> = keys
                        .into_iter()
                        .map(|k| vec![k.id, k.prefix, k.name, short_time(&k.created_at)])
                        .collect();
                    print!("{}", render(&["ID", "PREFIX", "NAME", "CREATED"], &rows));
                    0
                }
                KeyCommand::Rm { id } => {
                    if wrenn_control::remove_key(&store, &id).await? {
                        eprintln!("key {id} removed");
                        0
                    } else {
                        eprintln!("error: not_found: no API key with id {id}");
                        1
                    }
                }
            }
        }
        Command::Team { data, command } => {
            let store = existing_store(&data).await;
            match command {
                TeamCommand::Create { name } => {
                    match wrenn_control::create_team(&store, &name).await {
                        Ok(t) => {
                            println!("{}", t.id);
                            eprintln!(
                                "team {name} created; give it a key with: wrenn key create --team {name}"
                            );
                            0
                        }
                        Err(e) => key_error(e)?,
                    }
                }
                TeamCommand::List => {
                    let teams = match wrenn_control::list_teams(&store).await {
                        Ok(t) => t,
                        Err(e) => exit(key_error(e)?),
                    };
                    let rows: Vec<Vec<String>> = teams
                        .into_iter()
                        .map(|t| {
                            let at = wrenn_control::api::views::rfc3339(t.created_at);
                            vec![t.id, t.name, short_time(&at)]
                        })
                        .collect();
                    print!("{}", render(&["ID", "NAME", "CREATED"], &rows));
                    0
                }
                TeamCommand::Rm { name } => match wrenn_control::remove_team(&store, &name).await {
                    Ok(()) => {
                        eprintln!("team {name} removed");
                        0
                    }
                    Err(e) => key_error(e)?,
                },
            }
        }
        Command::Capsule { opts, command } => wrenn_client::run_capsule(&opts, command).await?,
        Command::Snapshot { opts, command } => wrenn_client::run_snapshot(&opts, command).await?,
        Command::Events { opts } => wrenn_client::run_events(&opts).await?,
    };
    exit(code)
}

fn exit(code: i32) -> ! {
    std::process::exit(code)
}
