//! First-start admin bootstrap, teams and API key management: the rules shared by the CLI
//! (`wrenn team …`, `wrenn key …`, which open the store directly) and the admin API routes.

use std::io::Write;
use std::path::Path;

use crate::ids;
use crate::store::{KeyInfo, Store, StoreError, Team, TeamInUse};

/// Name of the team made on first start.
pub const ADMIN_TEAM: &str = "admin";

/// Errors of key management.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Writing the admin key file failed.
    #[error("write {path}: {source}")]
    WriteKeyFile {
        /// File path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A bad argument (empty name…).
    #[error("{0}")]
    Invalid(String),
    /// The team or key named does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The name is taken, or the team still holds capsules or snapshots.
    #[error("{0}")]
    Conflict(String),
    /// The operation is never allowed (removing the admin team).
    #[error("{0}")]
    Forbidden(String),
}

/// Checks a team name: the template name pattern, `^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`.
pub fn check_team_name(name: &str) -> Result<(), KeyError> {
    if ids::is_template_name(name) {
        Ok(())
    } else {
        Err(KeyError::Invalid(format!(
            "invalid team name {name:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{{0,63}}$"
        )))
    }
}

/// Checks a key name: 1 to 64 characters, no control characters.
pub fn check_key_name(name: &str) -> Result<(), KeyError> {
    let n = name.chars().count();
    if n == 0 || n > 64 || name.chars().any(char::is_control) {
        return Err(KeyError::Invalid(
            "key name must be 1 to 64 characters without control characters".into(),
        ));
    }
    Ok(())
}

/// Creates a team; 409-style [`KeyError::Conflict`] when the name is taken.
pub async fn create_team(store: &Store, name: &str) -> Result<Team, KeyError> {
    check_team_name(name)?;
    store
        .create_team(name)
        .await?
        .ok_or_else(|| KeyError::Conflict(format!("team {name} exists already")))
}

/// Lists every team.
pub async fn list_teams(store: &Store) -> Result<Vec<Team>, KeyError> {
    Ok(store.list_teams().await?)
}

/// Removes a team and its keys. Refused for the admin team, and while the team has capsules
/// that are not stopped or snapshots (destroy or delete them first, with the team's key).
pub async fn remove_team(store: &Store, name: &str) -> Result<(), KeyError> {
    if name == ADMIN_TEAM {
        return Err(KeyError::Forbidden(
            "the admin team cannot be removed".into(),
        ));
    }
    let team = existing_team(store, name).await?;
    match store.delete_team(&team.id).await? {
        Ok(true) => Ok(()),
        Ok(false) => Err(KeyError::NotFound(format!("no team named {name}"))),
        Err(TeamInUse {
            capsules,
            snapshots,
        }) => Err(KeyError::Conflict(format!(
            "team {name} still has {capsules} capsule(s) and {snapshots} snapshot(s); \
             destroy its capsules and delete its snapshots first"
        ))),
    }
}

/// Creates a key in an existing team (unlike [`create_key`], which makes the team).
pub async fn create_team_key(
    store: &Store,
    team: &str,
    name: &str,
) -> Result<(KeyInfo, String), KeyError> {
    check_key_name(name)?;
    let team = existing_team(store, team).await?;
    create_key(store, Some(&team.name), name).await
}

/// Lists the keys of an existing team.
pub async fn existing_team_keys(store: &Store, team: &str) -> Result<Vec<KeyInfo>, KeyError> {
    let team = existing_team(store, team).await?;
    Ok(store.list_keys(Some(&team.id)).await?)
}

/// Deletes key `id` of team `team`; [`KeyError::NotFound`] when the team has no such key.
pub async fn remove_team_key(store: &Store, team: &str, id: &str) -> Result<(), KeyError> {
    let team = existing_team(store, team).await?;
    if !store
        .list_keys(Some(&team.id))
        .await?
        .iter()
        .any(|k| k.id == id)
    {
        return Err(KeyError::NotFound(format!(
            "team {} has no API key {id}",
            team.name
        )));
    }
    store.remove_key(id).await?;
    Ok(())
}

async fn existing_team(store: &Store, name: &str) -> Result<Team, KeyError> {
    store
        .team_by_name(name)
        .await?
        .ok_or_else(|| KeyError::NotFound(format!("no team named {name}")))
}

/// First start: when no team exists, creates the `admin` team and an API key, prints the key
/// once to stdout and writes it to `data_dir/admin.key` (mode 0600, written crash-safely).
/// Returns the key when it was created, `None` when teams existed already.
pub async fn bootstrap_admin(store: &Store, data_dir: &Path) -> Result<Option<String>, KeyError> {
    if store.count_teams().await? > 0 {
        return Ok(None);
    }
    let (_, key) = create_key(store, Some(ADMIN_TEAM), "admin").await?;
    write_secret_file(&data_dir.join("admin.key"), &format!("{key}\n"))?;
    println!(
        "Created admin API key (shown once, also saved to {}/admin.key):",
        data_dir.display()
    );
    println!("{key}");
    tracing::info!(team = ADMIN_TEAM, "created admin team and API key");
    Ok(Some(key))
}

/// Creates an API key for `team` (default [`ADMIN_TEAM`]; the team is created if missing).
/// Returns its listing and the plain key, which is not stored and cannot be shown again.
pub async fn create_key(
    store: &Store,
    team: Option<&str>,
    name: &str,
) -> Result<(KeyInfo, String), KeyError> {
    let team_name = team.unwrap_or(ADMIN_TEAM);
    if team_name.is_empty() || name.is_empty() {
        return Err(KeyError::Invalid(
            "team and key name must not be empty".into(),
        ));
    }
    let team = store.ensure_team(team_name).await?;
    let key = ids::new_api_key();
    let info = store
        .insert_key(&team.id, name, &ids::key_prefix(&key), &ids::hash_key(&key))
        .await?;
    Ok((info, key))
}

/// Lists every key of every team.
pub async fn list_keys(store: &Store) -> Result<Vec<KeyInfo>, KeyError> {
    Ok(store.list_keys(None).await?)
}

/// Lists keys, all or those of the team named `team`.
pub async fn list_team_keys(store: &Store, team: Option<&str>) -> Result<Vec<KeyInfo>, KeyError> {
    match team {
        None => Ok(store.list_keys(None).await?),
        Some(name) => match store.team_by_name(name).await? {
            Some(t) => Ok(store.list_keys(Some(&t.id)).await?),
            None => Ok(Vec::new()),
        },
    }
}

/// Deletes a key by id; false when no key had this id.
pub async fn remove_key(store: &Store, id: &str) -> Result<bool, KeyError> {
    Ok(store.remove_key(id).await?)
}

/// Writes a secret: temp file with mode 0600, fsync, rename, fsync of the directory.
fn write_secret_file(path: &Path, content: &str) -> Result<(), KeyError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| KeyError::WriteKeyFile {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = path.with_extension("key.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(content.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(err)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(())
}
