//! Durable state in SQL: teams, API keys, capsules, snapshot templates, samples.
//!
//! One schema for SQLite (the default, WAL mode) and PostgreSQL, reached through sqlx's `Any`
//! driver; queries use `$n` placeholders, which both accept. Times are integers (unix
//! milliseconds for capsules, unix seconds for samples).

mod builds;
mod capsules;
mod keys;
mod samples;
mod secrets;
mod sessions;
mod templates;

use std::path::Path;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Connection};

pub use builds::{BuildRow, BuiltTemplateRow, LogRow};
pub use capsules::{CapsuleRow, NewCapsule};
pub use keys::{KeyInfo, KeyWithTeam, Team, TeamInUse};
pub use samples::{MetricSample, TeamSample};
pub use templates::TemplateRow;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("open database {url}: {source}")]
    Open {
        /// Redacted URL or path.
        url: String,
        /// Cause.
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("migration {version}: {source}")]
    Migrate {
        /// Migration version.
        version: i64,
        /// Cause.
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("{what}: {source}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// Cause.
        source: sqlx::Error,
    },
    /// A stored value could not be read back.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The thing named does not exist.
    #[error("{0} not found")]
    NotFound(String),
}

/// Attaches a description to a sqlx error.
pub(crate) trait QueryContext<T> {
    fn ctx(self, what: &'static str) -> Result<T, StoreError>;
}

impl<T> QueryContext<T> for Result<T, sqlx::Error> {
    fn ctx(self, what: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query { what, source })
    }
}

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_network_ports.sql")),
    (3, include_str!("../../migrations/0003_builds.sql")),
    (4, include_str!("../../migrations/0004_env_on_timeout.sql")),
    (5, include_str!("../../migrations/0005_sessions.sql")),
];

/// Handle on the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
}

impl Store {
    /// Opens (creating if needed) and migrates the database. `url` is a `postgres://` or
    /// `postgresql://` URL, a `sqlite:` URL, or a path to a SQLite file.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let postgres = url.starts_with("postgres://") || url.starts_with("postgresql://");
        let full = if postgres || url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}?mode=rwc")
        };
        let shown = redact(&full);
        let opts: AnyConnectOptions = full.parse().map_err(|source| StoreError::Open {
            url: shown.clone(),
            source,
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres { 10 } else { 4 })
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts)
            .await
            .map_err(|source| StoreError::Open {
                url: shown.clone(),
                source,
            })?;
        if !postgres {
            // WAL is a property of the database file: set once, kept by every connection.
            sqlx::raw_sql("PRAGMA journal_mode=WAL")
                .execute(&pool)
                .await
                .ctx("enable WAL")?;
        }
        let store = Store { pool, postgres };
        store.migrate().await?;
        Ok(store)
    }

    /// Opens the default SQLite database under a data directory (`data_dir/wrenn.db`).
    pub async fn open_in(data_dir: &Path) -> Result<Store, StoreError> {
        Self::open(&data_dir.join("wrenn.db").to_string_lossy()).await
    }

    /// True when backed by PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// Checks the database answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.ctx("acquire connection")?;
        conn.ping().await.ctx("ping database")
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::raw_sql("CREATE TABLE IF NOT EXISTS wrenn_migrations (version BIGINT PRIMARY KEY)")
            .execute(&self.pool)
            .await
            .ctx("create migrations table")?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await.ctx("begin migration")?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM wrenn_migrations WHERE version = $1")
                    .bind(*version)
                    .fetch_optional(&mut *tx)
                    .await
                    .ctx("read migrations")?;
            if done.is_some() {
                continue;
            }
            sqlx::raw_sql(sql)
                .execute(&mut *tx)
                .await
                .map_err(|source| StoreError::Migrate {
                    version: *version,
                    source,
                })?;
            sqlx::query("INSERT INTO wrenn_migrations (version) VALUES ($1)")
                .bind(*version)
                .execute(&mut *tx)
                .await
                .ctx("record migration")?;
            tx.commit().await.ctx("commit migration")?;
            tracing::info!(version, "applied database migration");
        }
        Ok(())
    }
}

/// Hides a password in a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.find(':') {
                Some(c) => format!("{}{}:***{}", &url[..s + 3], &creds[..c], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Unix ms as RFC 3339 with `Z` (how every timestamp is shown).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Now in unix milliseconds.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
