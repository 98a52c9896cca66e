//! Browser sessions: a cookie's token (its hash) for an API key, until it expires.

use super::{now_ms, KeyWithTeam, QueryContext, Store, StoreError};

impl Store {
    /// Records a session of key `key_id` that ends at `expires_at` (unix ms).
    pub async fn insert_session(
        &self,
        token_hash: &str,
        key_id: &str,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, key_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(key_id)
        .bind(now_ms())
        .bind(expires_at)
        .execute(self.pool())
        .await
        .ctx("insert session")?;
        Ok(())
    }

    /// The key of a live session: `None` when the session is unknown, expired, or its key
    /// was revoked.
    pub async fn session_key(&self, token_hash: &str) -> Result<Option<KeyWithTeam>, StoreError> {
        sqlx::query_as::<_, KeyWithTeam>(
            "SELECT k.id AS id, k.name AS name, k.team_id AS team_id, t.name AS team_name, \
             k.last_used_at AS last_used_at \
             FROM sessions s JOIN api_keys k ON k.id = s.key_id JOIN teams t ON t.id = k.team_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now_ms())
        .fetch_optional(self.pool())
        .await
        .ctx("read session")
    }

    /// Ends a session (signing out); `false` when there was none.
    pub async fn delete_session(&self, token_hash: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(self.pool())
            .await
            .ctx("delete session")?;
        Ok(r.rows_affected() > 0)
    }

    /// Drops sessions that expired, or whose key is gone.
    pub async fn prune_sessions(&self) -> Result<u64, StoreError> {
        let r = sqlx::query(
            "DELETE FROM sessions WHERE expires_at <= $1 \
             OR key_id NOT IN (SELECT id FROM api_keys)",
        )
        .bind(now_ms())
        .execute(self.pool())
        .await
        .ctx("prune sessions")?;
        Ok(r.rows_affected())
    }
}
