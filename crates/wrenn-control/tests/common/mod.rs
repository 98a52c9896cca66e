//! Test harness: a real `serve_on` over a fake host, on SQLite or PostgreSQL.
#![allow(dead_code)]

pub mod fake_host;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fake_host::FakeHost;
use sqlx::Connection;
use tokio::sync::oneshot;
use wrenn_control::{create_key, ControlConfig, Store};

/// Which database a test runs against.
#[derive(Debug, Clone, Copy)]
pub enum Db {
    /// SQLite file in a temp dir.
    Sqlite,
    /// A fresh database on the server named by WRENN_TEST_DATABASE_URL.
    Postgres,
}

/// Generates `sqlite` and `postgres` variants of `async fn name(db: Db)`.
#[macro_export]
macro_rules! both_dbs {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::common::postgres_available() {
                    super::$name($crate::common::Db::Postgres).await
                }
            }
        }
    };
}

/// True when WRENN_TEST_DATABASE_URL is set; panics under CI=true when it is not.
pub fn postgres_available() -> bool {
    if std::env::var("WRENN_TEST_DATABASE_URL").is_ok() {
        return true;
    }
    if std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
    {
        panic!("WRENN_TEST_DATABASE_URL is not set; run: eval \"$(scripts/postgres-test-env)\"");
    }
    eprintln!("NOTICE: PostgreSQL variant skipped: WRENN_TEST_DATABASE_URL not set (eval \"$(scripts/postgres-test-env)\")");
    false
}

/// A fresh, empty database on the test PostgreSQL server.
pub async fn fresh_pg_url() -> String {
    let url = std::env::var("WRENN_TEST_DATABASE_URL").expect("WRENN_TEST_DATABASE_URL");
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&url)
        .await
        .expect("connect to test postgres");
    let name = format!("wrenn_t_{}", wrenn_control::ids::new_id("").to_lowercase());
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = url
        .rsplit_once('/')
        .map(|(b, _)| b)
        .expect("url has a database");
    format!("{base}/{name}")
}

/// A running control plane.
pub struct Server {
    /// `http://127.0.0.1:port`.
    pub base: String,
    /// API key of team `team-a`.
    pub key: String,
    /// The store the server uses.
    pub store: Store,
    /// Database URL (for reopening).
    pub db_url: String,
    /// The host.
    pub host: Arc<FakeHost>,
    /// The HTTP client.
    pub http: reqwest::Client,
    /// Data dir.
    pub dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Settings for tests: quick background passes.
pub fn test_config(dir: &std::path::Path) -> ControlConfig {
    let mut c = ControlConfig::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
    c.ttl_check_interval = Duration::from_millis(100);
    c.metrics_interval = Duration::from_millis(200);
    c.pty_ping_interval = Duration::from_millis(500);
    c.max_write_bytes = 64 * 1024;
    c
}

impl Server {
    /// Starts a server over `host`.
    pub async fn start(db: Db, host: FakeHost) -> Server {
        Self::start_with(db, host, |_| {}).await
    }

    /// Starts a server, letting the test adjust the settings.
    pub async fn start_with(
        db: Db,
        host: FakeHost,
        adjust: impl FnOnce(&mut ControlConfig),
    ) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db_url = match db {
            Db::Sqlite => dir.path().join("wrenn.db").to_string_lossy().into_owned(),
            Db::Postgres => fresh_pg_url().await,
        };
        let store = Store::open(&db_url).await.expect("open store");
        let (_, key) = create_key(&store, Some("team-a"), "test").await.unwrap();
        let host = Arc::new(host);
        let mut s = Server {
            base: String::new(),
            key,
            store,
            db_url,
            host,
            http: reqwest::Client::new(),
            dir,
            shutdown: None,
            task: None,
        };
        s.launch(adjust).await;
        s
    }

    async fn launch(&mut self, adjust: impl FnOnce(&mut ControlConfig)) {
        let mut config = test_config(self.dir.path());
        adjust(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel();
        let host: Arc<dyn wrenn_host::HostApi> = self.host.clone();
        let store = self.store.clone();
        self.task = Some(tokio::spawn(async move {
            wrenn_control::serve_on(listener, config, store, host, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        }));
        self.shutdown = Some(tx);
        // Ready when /health answers.
        for _ in 0..600 {
            if let Ok(r) = self.http.get(format!("{}/health", self.base)).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not become healthy");
    }

    /// Stops and starts the server again over the same store and host.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.launch(|_| {}).await;
    }

    /// Signals shutdown and waits until `serve_on` has returned.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("serve task");
        }
    }

    /// A key for another team.
    pub async fn key_for(&self, team: &str) -> String {
        create_key(&self.store, Some(team), "test").await.unwrap().1
    }

    /// A request with the team-a key.
    pub fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .header("X-API-Key", &self.key)
    }

    /// A request with a given key.
    pub fn req_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{}", self.base, path))
            .header("X-API-Key", key)
    }

    /// Creates a capsule with `body`, asserting 201; returns its JSON.
    pub async fn create(&self, body: serde_json::Value) -> serde_json::Value {
        let r = self
            .req(reqwest::Method::POST, "/v1/capsules")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 201, "create: {v}");
        v
    }

    /// GET a capsule's JSON.
    pub async fn get(&self, id: &str) -> serde_json::Value {
        self.req(reqwest::Method::GET, &format!("/v1/capsules/{id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Opens the caller's event stream and waits for its `connected` event.
    pub async fn events(&self) -> EventReader {
        let resp = self
            .req(reqwest::Method::GET, "/v1/events/stream")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut r = EventReader {
            body: Box::pin(resp.bytes_stream()),
            buf: String::new(),
            ready: Vec::new(),
        };
        let first = r
            .next(Duration::from_secs(30))
            .await
            .expect("connected event");
        assert_eq!(first["event"], "connected");
        r
    }

    /// Polls GET until the capsule has `status` (up to 60 s).
    pub async fn wait_status(&self, id: &str, status: &str) -> serde_json::Value {
        let mut last = serde_json::Value::Null;
        for _ in 0..600 {
            last = self.get(id).await;
            if last["status"] == status {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("capsule {id} never became {status}: {last}");
    }
}

/// Asserts an error response: status, contract code, JSON shape.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> serde_json::Value {
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("non-JSON error body ({got}): {text:?}"));
    assert_eq!(got, status, "body: {v}");
    assert_eq!(v["error"]["code"], code, "body: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v
}

/// True under CI (`CI=true` or `CI=1`).
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Skips a guest test with a notice locally; under CI=true a missing envd is a failure.
pub fn skip(why: String) -> Option<PathBuf> {
    assert!(!in_ci(), "guest tests cannot run under CI: {why}");
    eprintln!("NOTICE: guest tests skipped: {why}");
    None
}

/// The envd binary (WRENN_ENVD_BIN, WRENN_ENVD, else target/debug/envd), checked to talk to
/// its client; `None` (a skip, refused under CI) only when it is not built.
pub async fn envd() -> Option<PathBuf> {
    let bin = std::env::var_os("WRENN_ENVD_BIN")
        .or_else(|| std::env::var_os("WRENN_ENVD"))
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/envd")
        });
    if !bin.exists() {
        return skip(format!(
            "{} not built (cargo build -p wrenn-envd)",
            bin.display()
        ));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("probe.sock");
    let mut child = tokio::process::Command::new(&bin)
        .arg("--listen-unix")
        .arg(&sock)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let probe = tokio::spawn(async move {
        wrenn_envd_client::EnvdClient::connect(&sock, Duration::from_secs(30))
            .await
            .is_ok()
    })
    .await;
    let _ = child.kill().await;
    // A built envd that its client cannot talk to is a broken handshake: a failure, never a
    // skipped test.
    match probe {
        Ok(true) => Some(bin),
        _ => panic!("the envd client cannot talk to {}", bin.display()),
    }
}

/// The parsed `data:` payloads of an SSE stream.
pub struct EventReader {
    body: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
    ready: Vec<serde_json::Value>,
}

impl EventReader {
    /// The next event, or `None` when none comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<serde_json::Value> {
        use futures::StreamExt;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if !self.ready.is_empty() {
                return Some(self.ready.remove(0));
            }
            let chunk = tokio::time::timeout_at(deadline, self.body.next())
                .await
                .ok()??
                .ok()?;
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                for line in frame.lines() {
                    if let Some(data) = line.strip_prefix("data:") {
                        self.ready.push(serde_json::from_str(data.trim()).unwrap());
                    }
                }
            }
        }
    }

    /// Reads events until one satisfies `want` (panics after `within`).
    pub async fn until(
        &mut self,
        within: Duration,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(ev) if want(&ev) => return ev,
                Some(_) => {}
                None => panic!("the expected event did not come within {within:?}"),
            }
        }
    }
}
