//! First-start bootstrap and key management, as `wrenn server` and `wrenn key` use them.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Db, Server};
use wrenn_control::{bootstrap_admin, create_key, list_keys, list_team_keys, remove_key, Store};

async fn open(db: Db, dir: &std::path::Path) -> Store {
    match db {
        Db::Sqlite => Store::open_in(dir).await.unwrap(),
        Db::Postgres => {
            // A server gives us a fresh database; reuse its URL.
            let s = Server::start(db, common::fake_host::FakeHost::new(1)).await;
            let url = s.db_url.clone();
            // Start from no teams.
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&url).await.unwrap();
            sqlx::query("DELETE FROM api_keys")
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query("DELETE FROM teams")
                .execute(&pool)
                .await
                .unwrap();
            Store::open(&url).await.unwrap()
        }
    }
}

async fn bootstrap_and_keys(db: Db) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(db, dir.path()).await;
    let key = bootstrap_admin(&store, dir.path())
        .await
        .unwrap()
        .expect("first start makes a key");
    assert!(wrenn_control::ids::is_api_key(&key), "{key}");
    let file = dir.path().join("admin.key");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), key);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        bootstrap_admin(&store, dir.path()).await.unwrap().is_none(),
        "only once"
    );

    let (info, plain) = create_key(&store, Some("ci"), "runner").await.unwrap();
    assert_eq!(info.prefix, &plain[..10]);
    assert!(chrono::DateTime::parse_from_rfc3339(&info.created_at).is_ok());
    let all = list_keys(&store).await.unwrap();
    assert_eq!(all.len(), 2);
    let ci = list_team_keys(&store, Some("ci")).await.unwrap();
    assert_eq!(ci.len(), 1);
    assert_eq!(ci[0].name, "runner");
    // The key is found by its SHA-256, the only form stored (the table itself is checked by
    // `only_hashes_are_stored_and_removed_keys_stop_working`); a near miss finds nothing.
    let stored = store
        .key_by_hash(&wrenn_control::ids::hash_key(&plain))
        .await
        .unwrap();
    assert_eq!(stored.map(|k| k.id), Some(info.id.clone()));
    let other = format!("{}0", &plain[..plain.len() - 1]);
    let other = if other == plain {
        format!("{}1", &plain[..plain.len() - 1])
    } else {
        other
    };
    assert!(store
        .key_by_hash(&wrenn_control::ids::hash_key(&other))
        .await
        .unwrap()
        .is_none());
    assert!(remove_key(&store, &info.id).await.unwrap());
    assert!(!remove_key(&store, &info.id).await.unwrap());
    assert_eq!(list_team_keys(&store, Some("ci")).await.unwrap().len(), 0);
}
both_dbs!(bootstrap_and_keys);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_hashes_are_stored_and_removed_keys_stop_working() {
    let s = Server::start(Db::Sqlite, common::fake_host::FakeHost::new(1)).await;
    let (info, plain) = create_key(&s.store, Some("team-a"), "temp").await.unwrap();
    let pool = sqlx::AnyPool::connect(&format!("sqlite://{}", s.db_url))
        .await
        .unwrap();
    let stored: Vec<(String,)> = sqlx::query_as("SELECT key_hash FROM api_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(stored
        .iter()
        .all(|(h,)| h.len() == 64 && !h.contains(&plain[4..])));
    let ok = s
        .req_as(&plain, reqwest::Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // Its use is recorded.
    let mut used = None;
    for _ in 0..300 {
        used = list_keys(&s.store)
            .await
            .unwrap()
            .into_iter()
            .find(|k| k.id == info.id)
            .and_then(|k| k.last_used_at);
        if used.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(used.is_some(), "last_used_at not recorded");
    assert!(remove_key(&s.store, &info.id).await.unwrap());
    let gone = s
        .req_as(&plain, reqwest::Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap();
    common::assert_error(gone, 401, "unauthorized").await;
}
