//! Capsule rows.

use super::{now_ms, QueryContext, Store, StoreError};
use crate::core::status::CapsuleStatus;

/// A capsule as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CapsuleRow {
    /// `cl-…`.
    pub id: String,
    /// Owning team.
    pub team_id: String,
    /// Lifecycle status.
    #[sqlx(try_from = "String")]
    pub status: CapsuleStatus,
    /// Template name as the client gave it.
    pub template: String,
    /// Host-level template name it was created from.
    pub host_template: String,
    /// vCPUs.
    pub vcpus: i64,
    /// Memory in MiB.
    pub memory_mb: i64,
    /// Inactivity TTL in seconds (0 = never).
    pub timeout_sec: i64,
    /// JSON object of labels.
    pub metadata: String,
    /// Why it is in `error`.
    pub error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms when it first ran.
    pub started_at: Option<i64>,
    /// Unix ms of the last activity.
    pub last_active_at: i64,
    /// Unix ms of the last change.
    pub last_updated: i64,
    /// The egress policy as JSON (`{}` = all egress).
    pub network_policy: String,
    /// Port-URL access: `public` or `private`.
    pub ports: String,
    /// SHA-256 hex of the private port-URL access token.
    pub access_token_hash: Option<String>,
    /// Whether the host reported a working network (1/0; NULL until it reported).
    pub network_enabled: Option<i64>,
    /// Why the host reported no network.
    pub network_reason: Option<String>,
    /// JSON object of environment variables every command gets (E2B's `envVars`).
    pub envs: String,
    /// What the inactivity TTL does: `pause` or `kill`.
    pub on_timeout: String,
}

/// What a new capsule row needs.
#[derive(Debug, Clone)]
pub struct NewCapsule {
    /// `cl-…`.
    pub id: String,
    /// Owning team.
    pub team_id: String,
    /// Initial status.
    pub status: CapsuleStatus,
    /// Template name as given.
    pub template: String,
    /// Host template name.
    pub host_template: String,
    /// vCPUs.
    pub vcpus: i64,
    /// MiB.
    pub memory_mb: i64,
    /// TTL seconds.
    pub timeout_sec: i64,
    /// JSON labels.
    pub metadata: String,
    /// The egress policy as JSON.
    pub network_policy: String,
    /// `public` or `private`.
    pub ports: String,
    /// SHA-256 hex of the access token of private port URLs.
    pub access_token_hash: Option<String>,
    /// JSON object of environment variables.
    pub envs: String,
    /// `pause` or `kill`.
    pub on_timeout: String,
}

const COLS: &str = "id, team_id, status, template, host_template, vcpus, memory_mb, timeout_sec, \
                    metadata, error, created_at, started_at, last_active_at, last_updated, \
                    network_policy, ports, access_token_hash, network_enabled, network_reason, \
                    envs, on_timeout";

impl Store {
    /// Inserts a new capsule.
    pub async fn insert_capsule(&self, c: &NewCapsule) -> Result<CapsuleRow, StoreError> {
        let now = now_ms();
        sqlx::query(&format!(
            "INSERT INTO capsules ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, $10, NULL, $11, $12, \
             $13, $14, $15, NULL, NULL, $16, $17)"
        ))
        .bind(&c.id)
        .bind(&c.team_id)
        .bind(c.status.as_str())
        .bind(&c.template)
        .bind(&c.host_template)
        .bind(c.vcpus)
        .bind(c.memory_mb)
        .bind(c.timeout_sec)
        .bind(&c.metadata)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(&c.network_policy)
        .bind(&c.ports)
        .bind(&c.access_token_hash)
        .bind(&c.envs)
        .bind(&c.on_timeout)
        .execute(self.pool())
        .await
        .ctx("insert capsule")?;
        self.capsule(&c.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(c.id.clone()))
    }

    /// A capsule by id, any team.
    pub async fn capsule(&self, id: &str) -> Result<Option<CapsuleRow>, StoreError> {
        sqlx::query_as::<_, CapsuleRow>(&format!("SELECT {COLS} FROM capsules WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .ctx("read capsule")
    }

    /// A team's capsule by id.
    pub async fn team_capsule(
        &self,
        team_id: &str,
        id: &str,
    ) -> Result<Option<CapsuleRow>, StoreError> {
        sqlx::query_as::<_, CapsuleRow>(&format!(
            "SELECT {COLS} FROM capsules WHERE id = $1 AND team_id = $2"
        ))
        .bind(id)
        .bind(team_id)
        .fetch_optional(self.pool())
        .await
        .ctx("read capsule")
    }

    /// A team's capsules, leaving out stopped and error ones.
    pub async fn list_team_capsules(&self, team_id: &str) -> Result<Vec<CapsuleRow>, StoreError> {
        sqlx::query_as::<_, CapsuleRow>(&format!(
            "SELECT {COLS} FROM capsules WHERE team_id = $1 AND status NOT IN ($2, $3) \
             ORDER BY created_at"
        ))
        .bind(team_id)
        .bind(CapsuleStatus::Stopped.as_str())
        .bind(CapsuleStatus::Error.as_str())
        .fetch_all(self.pool())
        .await
        .ctx("list capsules")
    }

    /// Every capsule not stopped, all teams.
    pub async fn list_live_capsules(&self) -> Result<Vec<CapsuleRow>, StoreError> {
        sqlx::query_as::<_, CapsuleRow>(&format!(
            "SELECT {COLS} FROM capsules WHERE status <> $1 ORDER BY created_at"
        ))
        .bind(CapsuleStatus::Stopped.as_str())
        .fetch_all(self.pool())
        .await
        .ctx("list live capsules")
    }

    /// Sets the status (and the error text; `None` clears it).
    pub async fn set_status(
        &self,
        id: &str,
        status: CapsuleStatus,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE capsules SET status = $1, error = $2, last_updated = $3 WHERE id = $4")
            .bind(status.as_str())
            .bind(error)
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await
            .ctx("update capsule status")?;
        Ok(())
    }

    /// Sets the status only if it currently is `from`; true when it changed.
    pub async fn transition(
        &self,
        id: &str,
        from: CapsuleStatus,
        to: CapsuleStatus,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE capsules SET status = $1, error = NULL, last_updated = $2 WHERE id = $3 AND status = $4",
        )
        .bind(to.as_str())
        .bind(now_ms())
        .bind(id)
        .bind(from.as_str())
        .execute(self.pool())
        .await
        .ctx("transition capsule status")?;
        Ok(r.rows_affected() > 0)
    }

    /// Marks a capsule running (sets `started_at` the first time) and active now.
    pub async fn mark_running(&self, id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE capsules SET status = $5, error = NULL, last_updated = $1, \
             last_active_at = $2, started_at = COALESCE(started_at, $3) WHERE id = $4",
        )
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(CapsuleStatus::Running.as_str())
        .execute(self.pool())
        .await
        .ctx("mark capsule running")?;
        Ok(())
    }

    /// `starting` → `running` (setting `started_at` and activity); false when the capsule is
    /// no longer `starting` (deleted meanwhile).
    pub async fn start_if_starting(&self, id: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        let r = sqlx::query(
            "UPDATE capsules SET status = $5, error = NULL, last_updated = $1, \
             last_active_at = $2, started_at = COALESCE(started_at, $3) \
             WHERE id = $4 AND status = $6",
        )
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(id)
        .bind(CapsuleStatus::Running.as_str())
        .bind(CapsuleStatus::Starting.as_str())
        .execute(self.pool())
        .await
        .ctx("mark capsule started")?;
        Ok(r.rows_affected() > 0)
    }

    /// Sets status `to` with an error text, only if the status is `from`.
    pub async fn transition_err(
        &self,
        id: &str,
        from: CapsuleStatus,
        to: CapsuleStatus,
        error: &str,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE capsules SET status = $1, error = $2, last_updated = $3 WHERE id = $4 AND status = $5",
        )
        .bind(to.as_str())
        .bind(error)
        .bind(now_ms())
        .bind(id)
        .bind(from.as_str())
        .execute(self.pool())
        .await
        .ctx("transition capsule status")?;
        Ok(r.rows_affected() > 0)
    }

    /// `running` → `to` (`pausing` or `stopping`) only if the capsule has a TTL and was idle
    /// for it at `now`: the first step of the TTL's pause or kill.
    pub async fn leave_running_if_idle(
        &self,
        id: &str,
        now: i64,
        to: CapsuleStatus,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE capsules SET status = $4, error = NULL, last_updated = $1 \
             WHERE id = $2 AND status = $5 AND timeout_sec > 0 \
             AND last_active_at + timeout_sec * 1000 <= $3",
        )
        .bind(now_ms())
        .bind(id)
        .bind(now)
        .bind(to.as_str())
        .bind(CapsuleStatus::Running.as_str())
        .execute(self.pool())
        .await
        .ctx("start idle transition")?;
        Ok(r.rows_affected() > 0)
    }

    /// Sets the inactivity TTL (seconds, 0 = never) and counts now as activity, so the
    /// capsule lives `timeout_sec` from now.
    pub async fn set_timeout(&self, id: &str, timeout_sec: i64) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query(
            "UPDATE capsules SET timeout_sec = $1, last_active_at = $2, last_updated = $2 \
             WHERE id = $3",
        )
        .bind(timeout_sec)
        .bind(now)
        .bind(id)
        .execute(self.pool())
        .await
        .ctx("set capsule timeout")?;
        Ok(())
    }

    /// Replaces the stored egress policy (JSON) and the network state the host reported.
    pub async fn set_network_policy(
        &self,
        id: &str,
        policy_json: &str,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE capsules SET network_policy = $1, network_enabled = $2, network_reason = $3, \
             last_updated = $4 WHERE id = $5",
        )
        .bind(policy_json)
        .bind(i64::from(enabled))
        .bind(reason)
        .bind(now_ms())
        .bind(id)
        .execute(self.pool())
        .await
        .ctx("update capsule network policy")?;
        Ok(())
    }

    /// Stores the network state the host reported (whether it has one, and why not).
    pub async fn set_network_state(
        &self,
        id: &str,
        enabled: bool,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE capsules SET network_enabled = $1, network_reason = $2 WHERE id = $3")
            .bind(i64::from(enabled))
            .bind(reason)
            .bind(id)
            .execute(self.pool())
            .await
            .ctx("update capsule network state")?;
        Ok(())
    }

    /// Records activity on a capsule now.
    pub async fn touch_capsule(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE capsules SET last_active_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await
            .ctx("touch capsule")?;
        Ok(())
    }

    /// Running capsules with a TTL whose last activity is before `now - timeout_sec`.
    pub async fn idle_capsules(&self, now: i64) -> Result<Vec<CapsuleRow>, StoreError> {
        sqlx::query_as::<_, CapsuleRow>(&format!(
            "SELECT {COLS} FROM capsules WHERE status = $2 AND timeout_sec > 0 \
             AND last_active_at + timeout_sec * 1000 <= $1"
        ))
        .bind(now)
        .bind(CapsuleStatus::Running.as_str())
        .fetch_all(self.pool())
        .await
        .ctx("list idle capsules")
    }

    /// Capsules in one status, all teams.
    pub async fn capsules_in(&self, status: CapsuleStatus) -> Result<Vec<CapsuleRow>, StoreError> {
        sqlx::query_as::<_, CapsuleRow>(&format!("SELECT {COLS} FROM capsules WHERE status = $1"))
            .bind(status.as_str())
            .fetch_all(self.pool())
            .await
            .ctx("list capsules by status")
    }

    /// Counts of capsules by status, all teams.
    pub async fn count_by_status(&self) -> Result<Vec<(String, i64)>, StoreError> {
        sqlx::query_as::<_, (String, i64)>("SELECT status, COUNT(*) FROM capsules GROUP BY status")
            .fetch_all(self.pool())
            .await
            .ctx("count capsules")
    }
}
