//! `wrenn`: the one binary. `wrenn server` runs the control plane and a local host agent;
//! the other subcommands manage templates and keys locally or drive a server as a client.

mod envd_path;
mod server;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

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
    /// Build guest images and template snapshots.
    Template {
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
}

#[derive(Subcommand)]
enum TemplateCommand {
    /// Builds the images of base templates and their snapshots (cached: a second run does nothing).
    Build {
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
        /// Templates to build (`minimal`, `python`); all when none.
        templates: Vec<String>,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Creates a key (printed once).
    Create {
        /// A name to recognise it by.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// Lists keys (prefixes only).
    List,
    /// Removes a key by id.
    Rm {
        /// Key id (`key-…`).
        id: String,
    },
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
            command:
                TemplateCommand::Build {
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
            let store = server::open_store(&data).await?;
            match command {
                KeyCommand::Create { name } => {
                    let (info, key) = wrenn_control::create_key(&store, None, &name).await?;
                    println!("{key}");
                    eprintln!("key {} created; it is shown only this once", info.id);
                    0
                }
                KeyCommand::List => {
                    println!("{:<32} {:<12} {:<20} CREATED", "ID", "PREFIX", "NAME");
                    for k in wrenn_control::list_keys(&store).await? {
                        println!(
                            "{:<32} {:<12} {:<20} {}",
                            k.id, k.prefix, k.name, k.created_at
                        );
                    }
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
        Command::Capsule { opts, command } => wrenn_client::run_capsule(&opts, command).await?,
        Command::Snapshot { opts, command } => wrenn_client::run_snapshot(&opts, command).await?,
    };
    std::process::exit(code);
}
