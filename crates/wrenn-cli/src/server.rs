//! `wrenn server`: control plane + local host agent + store in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use crate::{envd_path, DataOpts};

/// Arguments of `wrenn server`.
#[derive(clap::Args)]
pub struct ServerArgs {
    /// Address to serve the API on.
    #[arg(long, env = "WRENN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub data: DataOpts,
    /// The static envd binary to bake into guest images.
    #[arg(long, env = "WRENN_ENVD")]
    pub envd: Option<PathBuf>,
    /// Domain of port URLs (`<port>-<capsule>.<domain>`).
    #[arg(long, env = "WRENN_PROXY_DOMAIN")]
    pub proxy_domain: Option<String>,
    /// vCPUs this host hands out to capsules in all (default: 4 per host core).
    #[arg(long, env = "WRENN_VCPUS_TOTAL")]
    pub vcpus_total: Option<u32>,
    /// Memory in MiB this host hands out to capsules in all (default: 80 % of its memory).
    #[arg(long, env = "WRENN_MEMORY_MB_TOTAL")]
    pub memory_mb_total: Option<u64>,
    #[command(flatten)]
    pub network: NetOpts,
    #[command(flatten)]
    pub limits: LimitOpts,
}

/// Bounds of the public API server: what a public service needs against slow, many or greedy
/// clients (see docs/security.md).
#[derive(clap::Args)]
pub struct LimitOpts {
    /// Open client connections at most; past it new ones get 503 and are closed.
    #[arg(long, env = "WRENN_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Open WebSockets (exec streams, terminals) per API key at most; past it 429.
    #[arg(long, env = "WRENN_MAX_WEBSOCKETS_PER_KEY", default_value_t = 32)]
    pub max_websockets_per_key: usize,
    /// Seconds a client has to send a request's headers.
    #[arg(long, env = "WRENN_HEADER_READ_TIMEOUT_SEC", default_value_t = 30)]
    pub header_read_timeout_sec: u64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, env = "WRENN_IDLE_TIMEOUT_SEC", default_value_t = 120)]
    pub idle_timeout_sec: u64,
    /// Capsule creates talking to the host at once; more wait (up to a minute) or get 503.
    #[arg(long, env = "WRENN_MAX_CONCURRENT_CREATES", default_value_t = 4)]
    pub max_concurrent_creates: usize,
}

impl LimitOpts {
    /// Applies the bounds to a control-plane configuration.
    pub fn apply(&self, c: &mut wrenn_control::ControlConfig) {
        c.max_connections = self.max_connections.max(1);
        c.max_websockets_per_key = self.max_websockets_per_key.max(1);
        c.header_read_timeout = std::time::Duration::from_secs(self.header_read_timeout_sec.max(1));
        c.idle_timeout = std::time::Duration::from_secs(self.idle_timeout_sec.max(1));
        c.max_concurrent_creates = self.max_concurrent_creates.max(1);
    }
}

/// Capsule networking options of a host agent.
#[derive(clap::Args)]
pub struct NetOpts {
    /// Run capsules without network (they keep their network device, with nothing behind it).
    #[arg(long, env = "WRENN_NO_NETWORK")]
    pub no_network: bool,
    /// Resolvers the capsules' DNS forwarders ask, comma-separated IPs (default: the host's
    /// /etc/resolv.conf).
    #[arg(long, env = "WRENN_DNS_SERVERS", value_delimiter = ',')]
    pub dns_servers: Vec<std::net::IpAddr>,
    /// Most capsule networks (namespaces) at once on this host; past it creates get 503.
    #[arg(long, env = "WRENN_MAX_NETWORKS", default_value_t = 1024)]
    pub max_networks: u32,
}

impl NetOpts {
    /// Applies the options to an agent configuration.
    pub fn apply(&self, cfg: &mut wrenn_agent::AgentConfig) {
        if self.no_network {
            cfg.network = None;
        }
        if let Some(net) = cfg.network.as_mut() {
            net.max_networks = self.max_networks;
            if !self.dns_servers.is_empty() {
                net.dns_upstreams = self
                    .dns_servers
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, 53))
                    .collect();
            }
        }
    }
}

/// Opens the store named by the options: PostgreSQL when a URL is given, else SQLite in the
/// data dir. `create` (the server's first start) makes the data dir and the SQLite file
/// when missing; the local tools (`wrenn key`, `wrenn team`) only open an existing store, so
/// a mistyped `--data-dir` is an error, not a new empty store.
pub async fn open_store(data: &DataOpts, create: bool) -> anyhow::Result<wrenn_control::Store> {
    let sqlite = data.data_dir.join("wrenn.db");
    if create {
        std::fs::create_dir_all(&data.data_dir)
            .with_context(|| format!("creating data dir {}", data.data_dir.display()))?;
    } else if data.database_url.is_none() {
        let dir = data.data_dir.display();
        if !data.data_dir.is_dir() {
            anyhow::bail!(
                "not_found: data dir {dir} does not exist (check --data-dir or WRENN_DIR; \
                 `wrenn server --data-dir {dir}` creates it at its first start)"
            );
        }
        if !sqlite.is_file() {
            anyhow::bail!(
                "not_found: no Wrenn store in {dir} (no wrenn.db; check --data-dir or \
                 WRENN_DIR, or start `wrenn server --data-dir {dir}` once first)"
            );
        }
    }
    let mode = if create { "rwc" } else { "rw" };
    let url = match &data.database_url {
        Some(u) => u.clone(),
        None => format!("sqlite://{}?mode={mode}", sqlite.display()),
    };
    let store = wrenn_control::Store::open(&url)
        .await
        .context("opening the store")?;
    if data.database_url.is_none() {
        // Keys' hashes and every team's capsules: the owner only (older versions left 0644).
        use std::os::unix::fs::PermissionsExt;
        for suffix in ["", "-wal", "-shm"] {
            let mut p = sqlite.clone().into_os_string();
            p.push(suffix);
            let p = PathBuf::from(p);
            if p.exists() {
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("restricting {}", p.display()))?;
            }
        }
    }
    Ok(store)
}

/// Prepares what is missing, then serves until SIGINT/SIGTERM.
pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    // Everything the server writes (store, guest memory, disks, keys) is its own alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let envd = envd_path::resolve(args.envd)?;
    let data_dir = args.data.data_dir.clone();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating data dir {}", data_dir.display()))?;
    eprintln!(
        "preparing the host in {} (first start builds images: a few minutes)",
        data_dir.display()
    );
    let mut cfg = wrenn_agent::AgentConfig::new(&data_dir, envd);
    args.network.apply(&mut cfg);
    if let Some(v) = args.vcpus_total {
        cfg.vcpus_total = v;
    }
    if let Some(m) = args.memory_mb_total {
        cfg.memory_mb_total = m;
    }
    let agent = wrenn_agent::CapsuleManager::open(cfg)
        .await
        .context("starting the host agent")?;
    agent
        .prepare("minimal", 1, 512)
        .await
        .context("preparing the minimal template")?;
    let store = open_store(&args.data, true).await?;
    wrenn_control::bootstrap_admin(&store, &data_dir)
        .await
        .context("creating the admin key")?;
    let mut config = wrenn_control::ControlConfig {
        listen: args.listen,
        data_dir: data_dir.clone(),
        database_url: args.data.database_url.clone(),
        proxy_domain: args.proxy_domain,
        ..wrenn_control::ControlConfig::default()
    };
    args.limits.apply(&mut config);
    eprintln!("serving the Wrenn API on http://{}", args.listen);
    wrenn_control::serve(config, store, Arc::new(agent), shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("shutting down; capsules keep running and are re-adopted at the next start");
}
