//! Template builds, their logs, and the templates they made.

use super::{QueryContext, Store, StoreError};
use crate::core::builds::BuildStatus;

/// One build of a template from a recipe.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BuildRow {
    /// `bld-…`.
    pub id: String,
    /// Name of the template it makes.
    pub name: String,
    /// Where it is.
    #[sqlx(try_from = "String")]
    pub status: BuildStatus,
    /// The recipe text as submitted.
    pub recipe: String,
    /// The template its capsule boots from.
    pub base: String,
    /// vCPUs of the build capsule (and of capsules made from the template).
    pub vcpus: i64,
    /// MiB of the build capsule (and of capsules made from the template).
    pub memory_mb: i64,
    /// The step being run, from 1 (0 before the first).
    pub step: i64,
    /// Steps in all: the recipe's instructions, plus the healthcheck and the snapshot.
    pub steps: i64,
    /// What the current step does (`RUN apt-get …`, `snapshot`).
    pub phase: String,
    /// The build capsule while one exists.
    pub capsule_id: Option<String>,
    /// The host template being made, once the snapshot starts.
    pub host_template: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// Unix ms.
    pub created_at: i64,
    /// Unix ms, when it left the queue.
    pub started_at: Option<i64>,
    /// Unix ms, when it ended.
    pub finished_at: Option<i64>,
}

/// One entry of a build log.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LogRow {
    /// Position in the log, from 0.
    pub seq: i64,
    /// Unix ms.
    pub at: i64,
    /// Step it belongs to (0: the build itself).
    pub step: i64,
    /// `step` (a step begins), `stdout`, `stderr`, `info` or `error`.
    pub stream: String,
    /// The text (output as it came, lossily decoded).
    pub text: String,
}

/// A template made by a build, shown to every team as a base template.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BuiltTemplateRow {
    /// Public name.
    pub name: String,
    /// Host-level template name.
    pub host_name: String,
    /// The build that made it.
    pub build_id: String,
    /// vCPUs of capsules made from it.
    pub vcpus: i64,
    /// MiB of capsules made from it.
    pub memory_mb: i64,
    /// Bytes on disk.
    pub size_bytes: i64,
    /// Unix ms.
    pub created_at: i64,
}

const BUILD_COLS: &str = "id, name, status, recipe, base, vcpus, memory_mb, step, steps, phase, \
     capsule_id, host_template, error, created_at, started_at, finished_at";
const BUILT_COLS: &str = "name, host_name, build_id, vcpus, memory_mb, size_bytes, created_at";

impl Store {
    /// Stores a new build.
    pub async fn insert_build(&self, b: &BuildRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO builds ({BUILD_COLS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        ))
        .bind(&b.id)
        .bind(&b.name)
        .bind(b.status.as_str())
        .bind(&b.recipe)
        .bind(&b.base)
        .bind(b.vcpus)
        .bind(b.memory_mb)
        .bind(b.step)
        .bind(b.steps)
        .bind(&b.phase)
        .bind(&b.capsule_id)
        .bind(&b.host_template)
        .bind(&b.error)
        .bind(b.created_at)
        .bind(b.started_at)
        .bind(b.finished_at)
        .execute(self.pool())
        .await
        .ctx("insert build")?;
        Ok(())
    }

    /// One build.
    pub async fn build(&self, id: &str) -> Result<Option<BuildRow>, StoreError> {
        sqlx::query_as::<_, BuildRow>(&format!("SELECT {BUILD_COLS} FROM builds WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .ctx("read build")
    }

    /// Builds, newest first.
    pub async fn list_builds(&self, limit: i64) -> Result<Vec<BuildRow>, StoreError> {
        sqlx::query_as::<_, BuildRow>(&format!(
            "SELECT {BUILD_COLS} FROM builds ORDER BY created_at DESC, id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .ctx("list builds")
    }

    /// The newest build of a template name.
    pub async fn latest_build(&self, name: &str) -> Result<Option<BuildRow>, StoreError> {
        sqlx::query_as::<_, BuildRow>(&format!(
            "SELECT {BUILD_COLS} FROM builds WHERE name = $1 ORDER BY created_at DESC, id LIMIT 1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .ctx("read latest build")
    }

    /// Builds that have not ended (queued or running).
    pub async fn unfinished_builds(&self) -> Result<Vec<BuildRow>, StoreError> {
        sqlx::query_as::<_, BuildRow>(&format!(
            "SELECT {BUILD_COLS} FROM builds WHERE status IN ('queued', 'running') ORDER BY created_at"
        ))
        .fetch_all(self.pool())
        .await
        .ctx("list unfinished builds")
    }

    /// Marks a queued build running.
    pub async fn start_build(&self, id: &str, at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE builds SET status = 'running', started_at = $2 WHERE id = $1")
            .bind(id)
            .bind(at)
            .execute(self.pool())
            .await
            .ctx("start build")?;
        Ok(())
    }

    /// Records the step a build is at.
    pub async fn set_build_step(&self, id: &str, step: i64, phase: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE builds SET step = $2, phase = $3 WHERE id = $1")
            .bind(id)
            .bind(step)
            .bind(phase)
            .execute(self.pool())
            .await
            .ctx("set build step")?;
        Ok(())
    }

    /// Records what a build holds on the host (its capsule, the template being made).
    pub async fn set_build_holdings(
        &self,
        id: &str,
        capsule_id: Option<&str>,
        host_template: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE builds SET capsule_id = $2, host_template = $3 WHERE id = $1")
            .bind(id)
            .bind(capsule_id)
            .bind(host_template)
            .execute(self.pool())
            .await
            .ctx("set build holdings")?;
        Ok(())
    }

    /// Ends a build; false when it had ended already.
    pub async fn finish_build(
        &self,
        id: &str,
        status: BuildStatus,
        error: Option<&str>,
        at: i64,
    ) -> Result<bool, StoreError> {
        let r = sqlx::query(
            "UPDATE builds SET status = $2, error = $3, finished_at = $4 \
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(error)
        .bind(at)
        .execute(self.pool())
        .await
        .ctx("finish build")?;
        Ok(r.rows_affected() > 0)
    }

    /// Appends entries to a build log in one transaction.
    pub async fn append_build_log(
        &self,
        build_id: &str,
        rows: &[LogRow],
    ) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await.ctx("begin build log")?;
        for r in rows {
            sqlx::query(
                "INSERT INTO build_log (build_id, seq, at, step, stream, text) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(build_id)
            .bind(r.seq)
            .bind(r.at)
            .bind(r.step)
            .bind(&r.stream)
            .bind(&r.text)
            .execute(&mut *tx)
            .await
            .ctx("append build log")?;
        }
        tx.commit().await.ctx("commit build log")
    }

    /// Entries of a build log from `from_seq` on, at most `limit`.
    pub async fn build_log(
        &self,
        build_id: &str,
        from_seq: i64,
        limit: i64,
    ) -> Result<Vec<LogRow>, StoreError> {
        sqlx::query_as::<_, LogRow>(
            "SELECT seq, at, step, stream, text FROM build_log \
             WHERE build_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
        )
        .bind(build_id)
        .bind(from_seq)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .ctx("read build log")
    }

    /// A built template by name.
    pub async fn built_template(&self, name: &str) -> Result<Option<BuiltTemplateRow>, StoreError> {
        sqlx::query_as::<_, BuiltTemplateRow>(&format!(
            "SELECT {BUILT_COLS} FROM built_templates WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .ctx("read built template")
    }

    /// Every built template, by name.
    pub async fn list_built_templates(&self) -> Result<Vec<BuiltTemplateRow>, StoreError> {
        sqlx::query_as::<_, BuiltTemplateRow>(&format!(
            "SELECT {BUILT_COLS} FROM built_templates ORDER BY name"
        ))
        .fetch_all(self.pool())
        .await
        .ctx("list built templates")
    }

    /// Inserts or replaces a built template; returns the one it replaced.
    pub async fn upsert_built_template(
        &self,
        t: &BuiltTemplateRow,
    ) -> Result<Option<BuiltTemplateRow>, StoreError> {
        let mut tx = self.pool().begin().await.ctx("begin built template")?;
        let old = sqlx::query_as::<_, BuiltTemplateRow>(&format!(
            "SELECT {BUILT_COLS} FROM built_templates WHERE name = $1"
        ))
        .bind(&t.name)
        .fetch_optional(&mut *tx)
        .await
        .ctx("read built template")?;
        sqlx::query("DELETE FROM built_templates WHERE name = $1")
            .bind(&t.name)
            .execute(&mut *tx)
            .await
            .ctx("replace built template")?;
        sqlx::query(&format!(
            "INSERT INTO built_templates ({BUILT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&t.name)
        .bind(&t.host_name)
        .bind(&t.build_id)
        .bind(t.vcpus)
        .bind(t.memory_mb)
        .bind(t.size_bytes)
        .bind(t.created_at)
        .execute(&mut *tx)
        .await
        .ctx("insert built template")?;
        tx.commit().await.ctx("commit built template")?;
        Ok(old)
    }

    /// Deletes a built template; the row it was, if any.
    pub async fn delete_built_template(
        &self,
        name: &str,
    ) -> Result<Option<BuiltTemplateRow>, StoreError> {
        let old = self.built_template(name).await?;
        sqlx::query("DELETE FROM built_templates WHERE name = $1")
            .bind(name)
            .execute(self.pool())
            .await
            .ctx("delete built template")?;
        Ok(old)
    }
}
