//! First-start admin bootstrap and API key management (`wrenn key create|list|rm`).

use std::io::Write;
use std::path::Path;

use crate::ids;
use crate::store::{KeyInfo, Store, StoreError};

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
