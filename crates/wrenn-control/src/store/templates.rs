//! Snapshot templates, scoped by team.

use super::{QueryContext, Store, StoreError};

/// A team's snapshot template.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TemplateRow {
    /// Owning team.
    pub team_id: String,
    /// Name within the team.
    pub name: String,
    /// Host-level template name.
    pub host_name: String,
    /// vCPUs of capsules made from it.
    pub vcpus: i64,
    /// MiB of capsules made from it.
    pub memory_mb: i64,
    /// Bytes on disk.
    pub size_bytes: i64,
    /// Unix ms.
    pub created_at: i64,
}

const COLS: &str = "team_id, name, host_name, vcpus, memory_mb, size_bytes, created_at";

impl Store {
    /// A team's template by name.
    pub async fn template(
        &self,
        team_id: &str,
        name: &str,
    ) -> Result<Option<TemplateRow>, StoreError> {
        sqlx::query_as::<_, TemplateRow>(&format!(
            "SELECT {COLS} FROM templates WHERE team_id = $1 AND name = $2"
        ))
        .bind(team_id)
        .bind(name)
        .fetch_optional(self.pool())
        .await
        .ctx("read template")
    }

    /// A team's templates.
    pub async fn list_templates(&self, team_id: &str) -> Result<Vec<TemplateRow>, StoreError> {
        sqlx::query_as::<_, TemplateRow>(&format!(
            "SELECT {COLS} FROM templates WHERE team_id = $1 ORDER BY created_at"
        ))
        .bind(team_id)
        .fetch_all(self.pool())
        .await
        .ctx("list templates")
    }

    /// Inserts or replaces a team's template.
    pub async fn upsert_template(&self, t: &TemplateRow) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await.ctx("begin template upsert")?;
        sqlx::query("DELETE FROM templates WHERE team_id = $1 AND name = $2")
            .bind(&t.team_id)
            .bind(&t.name)
            .execute(&mut *tx)
            .await
            .ctx("replace template")?;
        sqlx::query(&format!(
            "INSERT INTO templates ({COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&t.team_id)
        .bind(&t.name)
        .bind(&t.host_name)
        .bind(t.vcpus)
        .bind(t.memory_mb)
        .bind(t.size_bytes)
        .bind(t.created_at)
        .execute(&mut *tx)
        .await
        .ctx("insert template")?;
        tx.commit().await.ctx("commit template")
    }

    /// Deletes a team's template; false when missing.
    pub async fn delete_template(&self, team_id: &str, name: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM templates WHERE team_id = $1 AND name = $2")
            .bind(team_id)
            .bind(name)
            .execute(self.pool())
            .await
            .ctx("delete template")?;
        Ok(r.rows_affected() > 0)
    }
}
