//! Teams: admin-only team and key routes, the rules behind `wrenn team`, and keys scoped to
//! their team (another team's capsules are invisible and untouchable).

mod common;

use common::fake_host::FakeHost;
use common::{assert_error, Db, Server};
use reqwest::Method;
use serde_json::{json, Value};

async fn admin_key(s: &Server) -> String {
    s.key_for(wrenn_control::ADMIN_TEAM).await
}

async fn teams_are_admin_only_and_manage_keys(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let admin = admin_key(&s).await;

    // A key of another team may not call any team route: 403 JSON.
    for (m, p) in [
        (Method::GET, "/v1/teams"),
        (Method::POST, "/v1/teams"),
        (Method::DELETE, "/v1/teams/team-a"),
        (Method::GET, "/v1/teams/team-a/keys"),
        (Method::POST, "/v1/teams/team-a/keys"),
        (Method::DELETE, "/v1/teams/team-a/keys/key-x"),
    ] {
        let r = s
            .req(m.clone(), p)
            .json(&json!({"name": "x"}))
            .send()
            .await
            .unwrap();
        assert_error(r, 403, "forbidden").await;
    }
    // No key at all: 401.
    let r = s
        .http
        .get(format!("{}/v1/teams", s.base))
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;

    // Create, conflict, bad names, unknown fields.
    let r = s
        .req_as(&admin, Method::POST, "/v1/teams")
        .json(&json!({"name": "team-b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["name"], "team-b");
    assert!(t["id"].as_str().unwrap().starts_with("team-"), "{t}");
    assert!(t["created_at"].as_str().unwrap().ends_with('Z'), "{t}");
    let r = s
        .req_as(&admin, Method::POST, "/v1/teams")
        .json(&json!({"name": "team-b"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 409, "conflict").await;
    for bad in [
        json!({"name": "../x"}),
        json!({"name": ""}),
        json!({"name": "a".repeat(65)}),
    ] {
        let r = s
            .req_as(&admin, Method::POST, "/v1/teams")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_error(r, 400, "invalid_request").await;
    }
    let r = s
        .req_as(&admin, Method::POST, "/v1/teams")
        .json(&json!({"name": "ok", "colour": "red"}))
        .send()
        .await
        .unwrap();
    let v = assert_error(r, 400, "invalid_request").await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("colour"),
        "{v}"
    );

    let r = s
        .req_as(&admin, Method::GET, "/v1/teams")
        .send()
        .await
        .unwrap();
    let names: Vec<String> = r
        .json::<Vec<Value>>()
        .await
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"team-a".to_owned()) && names.contains(&"team-b".to_owned()),
        "{names:?}"
    );

    // A key for team-b: shown once, works at once, listed by prefix only.
    let r = s
        .req_as(&admin, Method::POST, "/v1/teams/team-b/keys")
        .json(&json!({"name": "ci"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let k: Value = r.json().await.unwrap();
    let key_b = k["key"].as_str().unwrap().to_owned();
    assert!(wrenn_control::ids::is_api_key(&key_b));
    assert_eq!(k["prefix"], key_b[..10]);
    let r = s
        .req_as(&key_b, Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = s
        .req_as(&admin, Method::GET, "/v1/teams/team-b/keys")
        .send()
        .await
        .unwrap();
    let listed: Vec<Value> = r.json().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].get("key").is_none(), "{listed:?}");
    assert!(!listed[0].to_string().contains(&key_b));
    // Keys of an unknown team: 404.
    let r = s
        .req_as(&admin, Method::POST, "/v1/teams/nope/keys")
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    // Another team's key id under the wrong team: 404; under its team: 204, then refused.
    let id = k["id"].as_str().unwrap();
    let r = s
        .req_as(
            &admin,
            Method::DELETE,
            &format!("/v1/teams/team-a/keys/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    let r = s
        .req_as(
            &admin,
            Method::DELETE,
            &format!("/v1/teams/team-b/keys/{id}"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .req_as(&key_b, Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap();
    assert_error(r, 401, "unauthorized").await;

    // The admin team cannot be removed; an unknown team is 404.
    let r = s
        .req_as(&admin, Method::DELETE, "/v1/teams/admin")
        .send()
        .await
        .unwrap();
    assert_error(r, 403, "forbidden").await;
    let r = s
        .req_as(&admin, Method::DELETE, "/v1/teams/nope")
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
}
both_dbs!(teams_are_admin_only_and_manage_keys);

async fn teams_cannot_see_or_touch_each_other(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let key_b = s.key_for("team-b").await;
    let c = s.create(json!({})).await;
    let id = c["id"].as_str().unwrap();

    let r = s
        .req_as(&key_b, Method::GET, "/v1/capsules")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Vec<Value>>().await.unwrap(), Vec::<Value>::new());
    for (m, p) in [
        (Method::GET, format!("/v1/capsules/{id}")),
        (Method::DELETE, format!("/v1/capsules/{id}")),
        (Method::POST, format!("/v1/capsules/{id}/pause")),
        (Method::POST, format!("/v1/capsules/{id}/resume")),
        (Method::POST, format!("/v1/capsules/{id}/ping")),
        (Method::GET, format!("/v1/capsules/{id}/metrics")),
        (Method::GET, format!("/v1/capsules/{id}/processes")),
    ] {
        let r = s.req_as(&key_b, m.clone(), &p).send().await.unwrap();
        assert_error(r, 404, "not_found").await;
    }
    let r = s
        .req_as(&key_b, Method::POST, "/v1/snapshots")
        .json(&json!({"sandbox_id": id, "name": "stolen"}))
        .send()
        .await
        .unwrap();
    assert_error(r, 404, "not_found").await;
    // Team A's capsule is untouched.
    assert_eq!(s.get(id).await["status"], "running");
}
both_dbs!(teams_cannot_see_or_touch_each_other);

async fn a_team_with_capsules_is_not_removed(db: Db) {
    let s = Server::start(db, FakeHost::new(8)).await;
    let admin = admin_key(&s).await;
    let c = s.create(json!({})).await;
    let id = c["id"].as_str().unwrap();
    let r = s
        .req_as(&admin, Method::DELETE, "/v1/teams/team-a")
        .send()
        .await
        .unwrap();
    let v = assert_error(r, 409, "conflict").await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1 capsule"),
        "{v}"
    );
    // Refused means nothing changed: the team's key still works.
    assert_eq!(s.get(id).await["status"], "running");
    let r = s
        .req(Method::DELETE, &format!("/v1/capsules/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s
        .req_as(&admin, Method::DELETE, "/v1/teams/team-a")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = s.req(Method::GET, "/v1/capsules").send().await.unwrap();
    assert_error(r, 401, "unauthorized").await;
    let r = s
        .req_as(&admin, Method::GET, "/v1/teams")
        .send()
        .await
        .unwrap();
    let teams: Vec<Value> = r.json().await.unwrap();
    assert!(teams.iter().all(|t| t["name"] != "team-a"), "{teams:?}");
}
both_dbs!(a_team_with_capsules_is_not_removed);

async fn team_functions_for_the_cli(db: Db) {
    let s = Server::start(db, FakeHost::new(1)).await;
    use wrenn_control::{create_team, create_team_key, list_teams, remove_team, KeyError};
    create_team(&s.store, "ops").await.unwrap();
    assert!(matches!(
        create_team(&s.store, "ops").await,
        Err(KeyError::Conflict(_))
    ));
    assert!(matches!(
        create_team(&s.store, "a b").await,
        Err(KeyError::Invalid(_))
    ));
    assert!(matches!(
        create_team_key(&s.store, "missing", "k").await,
        Err(KeyError::NotFound(_))
    ));
    let (info, _) = create_team_key(&s.store, "ops", "k").await.unwrap();
    let ops = list_teams(&s.store)
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "ops")
        .unwrap();
    assert_eq!(info.team_id, ops.id);
    assert!(matches!(
        remove_team(&s.store, "admin").await,
        Err(KeyError::Forbidden(_))
    ));
    remove_team(&s.store, "ops").await.unwrap();
    assert!(matches!(
        remove_team(&s.store, "ops").await,
        Err(KeyError::NotFound(_))
    ));
    assert!(wrenn_control::list_keys(&s.store)
        .await
        .unwrap()
        .iter()
        .all(|k| k.team_id != ops.id));
}
both_dbs!(team_functions_for_the_cli);
