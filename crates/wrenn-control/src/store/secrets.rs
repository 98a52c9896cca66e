//! Secrets of the server, shared by every replica through the store.

use super::{QueryContext, Store, StoreError};

impl Store {
    /// The secret called `name`; the first caller anywhere stores `fresh()` and every caller
    /// after it, on any replica, reads that same value.
    pub async fn server_secret(
        &self,
        name: &str,
        fresh: impl FnOnce() -> String,
    ) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(fresh())
            .execute(self.pool())
            .await
            .ctx("store server secret")?;
        let (value,): (String,) =
            sqlx::query_as("SELECT value FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(self.pool())
                .await
                .ctx("read server secret")?;
        Ok(value)
    }
}
