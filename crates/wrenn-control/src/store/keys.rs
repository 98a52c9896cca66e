//! Teams and API keys.

use serde::Serialize;

use super::{now_ms, QueryContext, Store, StoreError};

/// A team: the unit that owns capsules, keys and snapshots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Team {
    /// `team-…`.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

/// What keeps a team from being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TeamInUse {
    /// Capsules of the team that are not stopped.
    pub capsules: i64,
    /// Snapshots of the team.
    pub snapshots: i64,
}

/// An API key as listed (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyInfo {
    /// `key-…`.
    pub id: String,
    /// Owning team id.
    pub team_id: String,
    /// Human label.
    pub name: String,
    /// First 10 chars of the key (`wrn_` + 6 hex).
    pub prefix: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Last authenticated request, RFC 3339 UTC, if any.
    pub last_used_at: Option<String>,
}

/// A key row as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
struct KeyRow {
    id: String,
    team_id: String,
    name: String,
    key_prefix: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl From<KeyRow> for KeyInfo {
    fn from(r: KeyRow) -> Self {
        KeyInfo {
            id: r.id,
            team_id: r.team_id,
            name: r.name,
            prefix: r.key_prefix,
            created_at: super::rfc3339(r.created_at),
            last_used_at: r.last_used_at.map(super::rfc3339),
        }
    }
}

/// A key found by its hash, with its team's name.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyWithTeam {
    /// Key id.
    pub id: String,
    /// Key name.
    pub name: String,
    /// Team id.
    pub team_id: String,
    /// Team name.
    pub team_name: String,
    /// Unix ms of the last recorded use.
    pub last_used_at: Option<i64>,
}

impl Store {
    /// The team with this name, created if missing.
    pub async fn ensure_team(&self, name: &str) -> Result<Team, StoreError> {
        if let Some(t) = self.team_by_name(name).await? {
            return Ok(t);
        }
        let team = Team {
            id: crate::ids::new_id("team-"),
            name: name.to_owned(),
            created_at: now_ms(),
        };
        let inserted = sqlx::query("INSERT INTO teams (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&team.id)
            .bind(&team.name)
            .bind(team.created_at)
            .execute(self.pool())
            .await;
        match inserted {
            Ok(_) => Ok(team),
            // Lost a race with another creator: read theirs.
            Err(e) => match self.team_by_name(name).await? {
                Some(t) => Ok(t),
                None => Err(StoreError::Query {
                    what: "insert team",
                    source: e,
                }),
            },
        }
    }

    /// The team with this name.
    pub async fn team_by_name(&self, name: &str) -> Result<Option<Team>, StoreError> {
        sqlx::query_as::<_, Team>("SELECT id, name, created_at FROM teams WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .ctx("read team")
    }

    /// Creates a team; `None` when a team of this name exists already.
    pub async fn create_team(&self, name: &str) -> Result<Option<Team>, StoreError> {
        let team = Team {
            id: crate::ids::new_id("team-"),
            name: name.to_owned(),
            created_at: now_ms(),
        };
        let inserted = sqlx::query(
            "INSERT INTO teams (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&team.id)
        .bind(&team.name)
        .bind(team.created_at)
        .execute(self.pool())
        .await
        .ctx("insert team")?;
        Ok((inserted.rows_affected() > 0).then_some(team))
    }

    /// All teams, oldest first.
    pub async fn list_teams(&self) -> Result<Vec<Team>, StoreError> {
        sqlx::query_as::<_, Team>(
            "SELECT id, name, created_at FROM teams ORDER BY created_at, name",
        )
        .fetch_all(self.pool())
        .await
        .ctx("list teams")
    }

    /// Deletes a team with its keys, the rows of its destroyed capsules and its usage
    /// samples, in one transaction, unless it still holds capsules that are not stopped or
    /// snapshots: then nothing changes and the counts are returned as the error
    /// [`TeamInUse`]. False when no team had this id.
    pub async fn delete_team(&self, team_id: &str) -> Result<Result<bool, TeamInUse>, StoreError> {
        let mut tx = self.pool().begin().await.ctx("begin transaction")?;
        // Keys first: no new request of the team authenticates while the rest is checked.
        sqlx::query("DELETE FROM api_keys WHERE team_id = $1")
            .bind(team_id)
            .execute(&mut *tx)
            .await
            .ctx("delete team keys")?;
        let capsules = sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM capsules WHERE team_id = $1 AND status <> $2",
        )
        .bind(team_id)
        .bind(crate::core::status::CapsuleStatus::Stopped.as_str())
        .fetch_one(&mut *tx)
        .await
        .ctx("count team capsules")?;
        let snapshots =
            sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM templates WHERE team_id = $1")
                .bind(team_id)
                .fetch_one(&mut *tx)
                .await
                .ctx("count team snapshots")?;
        if capsules > 0 || snapshots > 0 {
            tx.rollback().await.ctx("roll back")?;
            return Ok(Err(TeamInUse {
                capsules,
                snapshots,
            }));
        }
        for (sql, what) in [
            ("DELETE FROM capsule_metrics WHERE capsule_id IN (SELECT id FROM capsules WHERE team_id = $1)", "delete team metrics"),
            ("DELETE FROM capsules WHERE team_id = $1", "delete team capsules"),
            ("DELETE FROM team_samples WHERE team_id = $1", "delete team samples"),
        ] {
            sqlx::query(sql)
                .bind(team_id)
                .execute(&mut *tx)
                .await
                .ctx(what)?;
        }
        let r = sqlx::query("DELETE FROM teams WHERE id = $1")
            .bind(team_id)
            .execute(&mut *tx)
            .await
            .ctx("delete team")?;
        tx.commit().await.ctx("commit")?;
        Ok(Ok(r.rows_affected() > 0))
    }

    /// Number of teams.
    pub async fn count_teams(&self) -> Result<i64, StoreError> {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM teams")
            .fetch_one(self.pool())
            .await
            .ctx("count teams")
    }

    /// Stores a key by its hash.
    pub async fn insert_key(
        &self,
        team_id: &str,
        name: &str,
        key_prefix: &str,
        key_hash: &str,
    ) -> Result<KeyInfo, StoreError> {
        let row = KeyRow {
            id: crate::ids::new_id("key-"),
            team_id: team_id.to_owned(),
            name: name.to_owned(),
            key_prefix: key_prefix.to_owned(),
            created_at: now_ms(),
            last_used_at: None,
        };
        let info = row.clone();
        sqlx::query(
            "INSERT INTO api_keys (id, team_id, name, key_prefix, key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&info.id)
        .bind(&info.team_id)
        .bind(&info.name)
        .bind(&info.key_prefix)
        .bind(key_hash)
        .bind(info.created_at)
        .execute(self.pool())
        .await
        .ctx("insert api key")?;
        Ok(info.into())
    }

    /// All keys, or a team's keys.
    pub async fn list_keys(&self, team_id: Option<&str>) -> Result<Vec<KeyInfo>, StoreError> {
        let base = "SELECT id, team_id, name, key_prefix, created_at, last_used_at FROM api_keys";
        let rows = match team_id {
            Some(t) => sqlx::query_as::<_, KeyRow>(&format!(
                "{base} WHERE team_id = $1 ORDER BY created_at"
            ))
            .bind(t)
            .fetch_all(self.pool())
            .await
            .ctx("list api keys"),
            None => sqlx::query_as::<_, KeyRow>(&format!("{base} ORDER BY created_at"))
                .fetch_all(self.pool())
                .await
                .ctx("list api keys"),
        }?;
        Ok(rows.into_iter().map(KeyInfo::from).collect())
    }

    /// Deletes a key; false when there was none with this id.
    pub async fn remove_key(&self, id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await
            .ctx("delete api key")?;
        Ok(r.rows_affected() > 0)
    }

    /// The key with this hash.
    pub async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyWithTeam>, StoreError> {
        sqlx::query_as::<_, KeyWithTeam>(
            "SELECT k.id AS id, k.name AS name, k.team_id AS team_id, t.name AS team_name, \
             k.last_used_at AS last_used_at \
             FROM api_keys k JOIN teams t ON t.id = k.team_id WHERE k.key_hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await
        .ctx("read api key")
    }

    /// Records the use of a key.
    pub async fn touch_key(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(self.pool())
            .await
            .ctx("touch api key")?;
        Ok(())
    }
}
