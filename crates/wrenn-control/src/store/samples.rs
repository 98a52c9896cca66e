//! Time series: per-capsule guest metrics and per-team reservation samples.

use super::{QueryContext, Store, StoreError};

/// One guest metrics sample.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MetricSample {
    /// Unix seconds.
    pub ts: i64,
    /// CPU percent.
    pub cpu_pct: f64,
    /// Memory in use.
    pub mem_bytes: i64,
    /// Disk in use.
    pub disk_bytes: i64,
    /// Memory the guest has (0 in samples older than this column).
    pub mem_total_bytes: i64,
    /// Size of the guest's root file system (0 in samples older than this column).
    pub disk_total_bytes: i64,
}

/// One sample of what a team holds.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TeamSample {
    /// Unix seconds.
    pub ts: i64,
    /// Seconds this sample stands for.
    pub interval_sec: i64,
    /// Running capsules.
    pub running: i64,
    /// vCPUs of running capsules.
    pub vcpus: i64,
    /// MiB of running capsules.
    pub memory_mb: i64,
}

impl Store {
    /// Records a guest metrics sample.
    pub async fn insert_metric(
        &self,
        capsule_id: &str,
        s: &MetricSample,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO capsule_metrics (capsule_id, ts, cpu_pct, mem_bytes, disk_bytes, \
             mem_total_bytes, disk_total_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(capsule_id)
        .bind(s.ts)
        .bind(s.cpu_pct)
        .bind(s.mem_bytes)
        .bind(s.disk_bytes)
        .bind(s.mem_total_bytes)
        .bind(s.disk_total_bytes)
        .execute(self.pool())
        .await
        .ctx("insert metric sample")?;
        Ok(())
    }

    /// A capsule's samples since `since` (unix s), oldest first.
    pub async fn metrics_since(
        &self,
        capsule_id: &str,
        since: i64,
    ) -> Result<Vec<MetricSample>, StoreError> {
        sqlx::query_as::<_, MetricSample>(
            "SELECT ts, cpu_pct, mem_bytes, disk_bytes, mem_total_bytes, disk_total_bytes \
             FROM capsule_metrics WHERE capsule_id = $1 AND ts >= $2 ORDER BY ts",
        )
        .bind(capsule_id)
        .bind(since)
        .fetch_all(self.pool())
        .await
        .ctx("read metric samples")
    }

    /// A capsule's newest sample.
    pub async fn latest_metric(
        &self,
        capsule_id: &str,
    ) -> Result<Option<MetricSample>, StoreError> {
        sqlx::query_as::<_, MetricSample>(
            "SELECT ts, cpu_pct, mem_bytes, disk_bytes, mem_total_bytes, disk_total_bytes \
             FROM capsule_metrics WHERE capsule_id = $1 ORDER BY ts DESC LIMIT 1",
        )
        .bind(capsule_id)
        .fetch_optional(self.pool())
        .await
        .ctx("read newest metric sample")
    }

    /// Records a team sample.
    pub async fn insert_team_sample(
        &self,
        team_id: &str,
        s: &TeamSample,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO team_samples (team_id, ts, interval_sec, running, vcpus, memory_mb) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(team_id)
        .bind(s.ts)
        .bind(s.interval_sec)
        .bind(s.running)
        .bind(s.vcpus)
        .bind(s.memory_mb)
        .execute(self.pool())
        .await
        .ctx("insert team sample")?;
        Ok(())
    }

    /// A team's samples in `[from, to)` (unix s), oldest first.
    pub async fn team_samples(
        &self,
        team_id: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<TeamSample>, StoreError> {
        sqlx::query_as::<_, TeamSample>(
            "SELECT ts, interval_sec, running, vcpus, memory_mb FROM team_samples \
             WHERE team_id = $1 AND ts >= $2 AND ts < $3 ORDER BY ts",
        )
        .bind(team_id)
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .ctx("read team samples")
    }

    /// All team ids.
    pub async fn team_ids(&self) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar::<_, String>("SELECT id FROM teams")
            .fetch_all(self.pool())
            .await
            .ctx("list teams")
    }

    /// Drops samples older than `before` (unix s).
    pub async fn prune_samples(&self, before: i64) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM capsule_metrics WHERE ts < $1")
            .bind(before)
            .execute(self.pool())
            .await
            .ctx("prune metric samples")?;
        sqlx::query("DELETE FROM team_samples WHERE ts < $1")
            .bind(before)
            .execute(self.pool())
            .await
            .ctx("prune team samples")?;
        Ok(())
    }
}
