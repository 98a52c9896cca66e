//! Upgrading Wrenn over an existing database: a store made by the first release's schema
//! (migration 1 only), with a team, a key and capsules in it, is migrated at open and keeps
//! everything; the capsules read with the defaults of the columns added since.

mod common;

use common::fake_host::FakeHost;
use common::{Db, Server};
use reqwest::Method;
use wrenn_control::core::status::CapsuleStatus;
use wrenn_control::Store;

/// A SQLite database as the first release left it.
async fn first_release_db(path: &std::path::Path, key_hash: &str) {
    sqlx::any::install_default_drivers();
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE wrenn_migrations (version BIGINT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(include_str!("../migrations/0001_init.sql"))
        .execute(&pool)
        .await
        .unwrap();
    let now = 1_780_000_000_000i64;
    for sql in [
        "INSERT INTO wrenn_migrations (version) VALUES (1)".to_owned(),
        format!("INSERT INTO teams (id, name, created_at) VALUES ('team-old', 'team-a', {now})"),
        format!(
            "INSERT INTO api_keys (id, team_id, name, key_prefix, key_hash, created_at) \
             VALUES ('key-old', 'team-old', 'old', 'wrn_0000', '{key_hash}', {now})"
        ),
        format!(
            "INSERT INTO capsules (id, team_id, status, template, host_template, vcpus, memory_mb, \
             timeout_sec, metadata, error, created_at, started_at, last_active_at, last_updated) \
             VALUES ('cl-0000000000000000000000old', 'team-old', 'paused', 'minimal', 'minimal', 1, 512, \
             300, '{{\"owner\":\"me\"}}', NULL, {now}, {now}, {now}, {now})"
        ),
        format!(
            "INSERT INTO templates (team_id, name, host_name, vcpus, memory_mb, size_bytes, created_at) \
             VALUES ('team-old', 'snap', 'tsnap-old', 1, 512, 4096, {now})"
        ),
    ] {
        sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
    }
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_release_database_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wrenn.db");
    let key = "wrn_00000000000000000000000000000abc";
    first_release_db(&db, &wrenn_control::ids::hash_key(key)).await;

    let store = Store::open(&db.to_string_lossy()).await.unwrap();
    let row = store
        .capsule("cl-0000000000000000000000old")
        .await
        .unwrap()
        .expect("the old capsule");
    assert_eq!(row.status, CapsuleStatus::Paused);
    assert_eq!(row.timeout_sec, 300);
    assert_eq!(row.metadata, r#"{"owner":"me"}"#);
    // Columns added by migration 2 read with their defaults.
    assert_eq!(row.network_policy, "{}");
    assert_eq!(row.ports, "public");
    assert_eq!(row.access_token_hash, None);
    assert_eq!(row.network_enabled, None);
    let t = store
        .template("team-old", "snap")
        .await
        .unwrap()
        .expect("the old snapshot");
    assert_eq!(t.host_name, "tsnap-old");
    let k = store
        .key_by_hash(&wrenn_control::ids::hash_key(key))
        .await
        .unwrap()
        .expect("the old key");
    assert_eq!(k.id, "key-old");
    // Opening again migrates nothing twice.
    drop(store);
    let again = Store::open(&db.to_string_lossy()).await.unwrap();
    assert!(again
        .capsule("cl-0000000000000000000000old")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_over_a_migrated_database_serves_the_old_key_and_capsule() {
    // The server's own store is fresh; point a second store at an upgraded copy and serve it.
    let s = Server::start(Db::Sqlite, FakeHost::new(8)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wrenn.db");
    let key = "wrn_00000000000000000000000000000def";
    first_release_db(&db, &wrenn_control::ids::hash_key(key)).await;
    let store = Store::open(&db.to_string_lossy()).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let host: std::sync::Arc<dyn wrenn_host::HostApi> = s.host.clone();
    let config = common::test_config(dir.path());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(wrenn_control::serve_on(
        listener,
        config,
        store,
        host,
        async {
            let _ = rx.await;
        },
    ));
    let http = reqwest::Client::new();
    let mut answer = None;
    for _ in 0..100 {
        if let Ok(r) = http
            .request(
                Method::GET,
                format!("{base}/v1/capsules/cl-0000000000000000000000old"),
            )
            .header("X-API-Key", key)
            .send()
            .await
        {
            answer = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = answer.expect("the upgraded server answers");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    // The host does not hold it: startup reconciliation calls it missing, and says why.
    assert_eq!(v["status"], "missing", "{v}");
    assert_eq!(v["metadata"]["owner"], "me");
    assert_eq!(
        v["network"]["policy"],
        serde_json::json!({"allow_out": [], "deny_out": []})
    );
    let _ = tx.send(());
    let _ = task.await;
}
