//! Settings of the control plane.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default limit of a non-streaming file write (`files/write`): 100 MiB. Larger files go
/// through `files/stream/write`, which has no limit.
pub const DEFAULT_MAX_WRITE_BYTES: u64 = 100 * 1024 * 1024;

/// Settings of [`crate::serve`].
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory (SQLite database, `admin.key`).
    pub data_dir: PathBuf,
    /// PostgreSQL URL; `None` = SQLite at `data_dir/wrenn.db`. Used by [`ControlConfig::open_store`].
    pub database_url: Option<String>,
    /// Domain of port URLs (`{port}-{capsule id}.{domain}`).
    pub proxy_domain: Option<String>,
    /// Limit of a non-streaming file write, in bytes ([`DEFAULT_MAX_WRITE_BYTES`]).
    pub max_write_bytes: u64,
    /// How often idle capsules are looked for (inactivity TTL); default 5 s.
    pub ttl_check_interval: Duration,
    /// How often guest metrics and team usage are sampled; default 10 s.
    pub metrics_interval: Duration,
    /// How many creates may talk to the host at once; default 4.
    pub max_concurrent_creates: usize,
    /// How long a create may wait for a create slot before 503; default 60 s.
    pub create_queue_timeout: Duration,
    /// How long the host may take to create, pause or resume a capsule; default 180 s.
    pub host_op_timeout: Duration,
    /// How long `POST /v1/capsules` waits for the host before answering 201 with status
    /// `starting` (the create then finishes in the background; clients poll). Default 25 s,
    /// under the SDK's 30 s request timeout.
    pub create_wait: Duration,
    /// How often a PTY WebSocket is sent `{"type":"ping"}`; default 20 s.
    pub pty_ping_interval: Duration,
    /// How often the event stream sends a keep-alive comment when nothing happens.
    pub sse_keepalive: Duration,
    /// How long a client may take to send a request's headers (for a kept-alive connection:
    /// how long it may wait before the next request) before it is disconnected; default 30 s.
    pub header_read_timeout: Duration,
    /// How long a connection may sit with no request in flight and no traffic before it is
    /// closed; default 120 s.
    pub idle_timeout: Duration,
    /// Connections served at once; past it a new connection gets `503 host_unavailable` and
    /// is closed. Default 1024. Upgraded connections (WebSockets) are bounded per key instead.
    pub max_connections: usize,
    /// WebSockets (exec stream, attach, PTY) one API key may hold open at once; past it the
    /// upgrade is refused with `429 too_many_requests`. Default 32.
    pub max_websockets_per_key: usize,
    /// How long a browser session (`POST /v1/sessions`) lasts. Default 12 hours.
    pub session_ttl: Duration,
}

impl Default for ControlConfig {
    /// Listens on 127.0.0.1:8080 with data in `/var/lib/wrenn`; everything else as in
    /// [`ControlConfig::new`].
    fn default() -> Self {
        Self::new(
            SocketAddr::from(([127, 0, 0, 1], 8080)),
            PathBuf::from("/var/lib/wrenn"),
        )
    }
}

impl ControlConfig {
    /// Settings with defaults for everything but the address and the data directory.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            listen,
            data_dir,
            database_url: None,
            proxy_domain: None,
            max_write_bytes: DEFAULT_MAX_WRITE_BYTES,
            ttl_check_interval: Duration::from_secs(5),
            metrics_interval: Duration::from_secs(10),
            max_concurrent_creates: 4,
            create_queue_timeout: Duration::from_secs(60),
            host_op_timeout: Duration::from_secs(180),
            create_wait: Duration::from_secs(25),
            pty_ping_interval: Duration::from_secs(20),
            sse_keepalive: Duration::from_secs(15),
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(120),
            max_connections: 1024,
            max_websockets_per_key: 32,
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }

    /// Opens the store these settings name: `database_url`, else `data_dir/wrenn.db`.
    pub async fn open_store(&self) -> Result<crate::Store, crate::StoreError> {
        match &self.database_url {
            Some(url) => crate::Store::open(url).await,
            None => {
                std::fs::create_dir_all(&self.data_dir).map_err(|e| {
                    crate::StoreError::Corrupt(format!(
                        "create data dir {}: {e}",
                        self.data_dir.display()
                    ))
                })?;
                crate::Store::open_in(&self.data_dir).await
            }
        }
    }
}
