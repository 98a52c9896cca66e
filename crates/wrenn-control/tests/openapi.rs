//! The OpenAPI document and the router agree: every route is documented, every documented
//! route is served (under /v1 and /api/v1).

mod common;

use std::collections::BTreeSet;

use common::fake_host::FakeHost;
use common::{Db, Server};
use reqwest::Method;
use serde_json::json;

fn documented() -> BTreeSet<(String, String)> {
    let doc: serde_yaml::Value = serde_yaml::from_str(wrenn_control::api::system::OPENAPI_YAML)
        .expect("openapi.yaml parses");
    assert_eq!(
        doc["openapi"].as_str().map(|v| &v[..2]),
        Some("3."),
        "OpenAPI 3"
    );
    let mut out = BTreeSet::new();
    for (path, ops) in doc["paths"].as_mapping().expect("paths") {
        for (method, _) in ops.as_mapping().expect("operations") {
            out.insert((
                method.as_str().unwrap().to_owned(),
                path.as_str().unwrap().to_owned(),
            ));
        }
    }
    out
}

#[test]
fn router_and_document_list_the_same_routes() {
    let served: BTreeSet<(String, String)> = wrenn_control::api::routes()
        .into_iter()
        .map(|r| (r.method.to_owned(), r.path))
        .collect();
    let doc = documented();
    let undocumented: Vec<_> = served.difference(&doc).collect();
    let unserved: Vec<_> = doc.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}"
    );
    assert!(
        unserved.is_empty(),
        "documented but not served: {unserved:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_answers() {
    let s = Server::start(Db::Sqlite, FakeHost::new(8)).await;
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    for (method, path) in documented() {
        let concrete = path
            .replace("{id}", &id)
            .replace("{selector}", "1")
            .replace("{name}", "foo");
        let prefixes: &[&str] = if path.starts_with("/v1") {
            &["", "/api"]
        } else {
            &[""]
        };
        for prefix in prefixes {
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = s
                .req(m, &format!("{prefix}{concrete}"))
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            let body = if concrete.ends_with("/events/stream") {
                String::new()
            } else {
                r.text().await.unwrap()
            };
            assert_ne!(status, 405, "{method} {prefix}{path}: {body}");
            assert!(
                !(status == 404 && body.contains("no route")),
                "{method} {prefix}{path} is not routed: {body}"
            );
        }
    }
    let docs = s
        .http
        .get(format!("{}/openapi.yaml", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert_eq!(
        docs.text().await.unwrap(),
        wrenn_control::api::system::OPENAPI_YAML
    );
}

fn schema_properties(name: &str) -> BTreeSet<String> {
    let doc: serde_yaml::Value = serde_yaml::from_str(wrenn_control::api::system::OPENAPI_YAML)
        .expect("openapi.yaml parses");
    doc["components"]["schemas"][name]["properties"]
        .as_mapping()
        .unwrap_or_else(|| panic!("schema {name} has properties"))
        .keys()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().expect("object").keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_schemas_match_the_answers() {
    let s = Server::start(Db::Sqlite, FakeHost::new(8)).await;
    let policy =
        json!({"allow_internet": false, "allow_out": ["1.1.1.1"], "deny_out": ["10.0.0.0/8"]});
    let body = json!({"template": "minimal", "vcpus": 1, "memory_mb": 512, "timeout_sec": 0,
                      "metadata": {"a": "b"}, "network": policy, "ports": "private"});
    // Every documented create field is accepted (the server refuses unknown ones).
    assert_eq!(keys(&body), schema_properties("CreateCapsule"));
    let created = s.create(body).await;
    let capsule = schema_properties("Capsule");
    let undocumented: Vec<_> = keys(&created).difference(&capsule).cloned().collect();
    assert!(
        undocumented.is_empty(),
        "capsule fields missing from openapi.yaml: {undocumented:?}"
    );
    let got = s.get(created["id"].as_str().unwrap()).await;
    assert!(keys(&got).is_subset(&capsule), "{got}");
    assert!(
        keys(&got["network"]).is_subset(&schema_properties("CapsuleNetwork")),
        "{got}"
    );
    assert_eq!(
        keys(&got["network"]["policy"]),
        schema_properties("NetworkPolicy")
    );
}

fn schema(name: &str) -> serde_yaml::Value {
    let doc: serde_yaml::Value = serde_yaml::from_str(wrenn_control::api::system::OPENAPI_YAML)
        .expect("openapi.yaml parses");
    doc["components"]["schemas"][name].clone()
}

async fn create_status(s: &Server, body: serde_json::Value) -> u16 {
    let r = s
        .req(Method::POST, "/v1/capsules")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status == 201 {
        let v: serde_json::Value = r.json().await.unwrap();
        let id = v["id"].as_str().unwrap();
        s.req(Method::DELETE, &format!("/v1/capsules/{id}"))
            .send()
            .await
            .unwrap();
    }
    status
}

/// Every bounded integer of the create body: the documented minimum and maximum pass, one
/// past either is 400. So the document states exactly what the server enforces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_create_limits_are_the_enforced_ones() {
    let mut host = FakeHost::new(64);
    host.memory_mb_total = 1 << 20;
    let s = Server::start(Db::Sqlite, host).await;
    let create = schema("CreateCapsule");
    let mut checked = 0;
    for (field, prop) in create["properties"].as_mapping().unwrap() {
        if prop["type"].as_str() != Some("integer") {
            continue;
        }
        let field = field.as_str().unwrap();
        let min = prop["minimum"]
            .as_i64()
            .unwrap_or_else(|| panic!("{field} has a minimum"));
        let max = prop["maximum"]
            .as_i64()
            .unwrap_or_else(|| panic!("{field} has a maximum"));
        for (v, want) in [(min, 201), (max, 201), (min - 1, 400), (max + 1, 400)] {
            let got = create_status(&s, json!({ field: v })).await;
            assert_eq!(got, want, "{field} = {v}");
        }
        checked += 1;
    }
    assert_eq!(checked, 3, "vcpus, memory_mb, timeout_sec");

    // Metadata: the documented key count and value length pass, one more is 400.
    let meta = &create["properties"]["metadata"];
    let keys = meta["maxProperties"].as_u64().unwrap() as usize;
    let len = meta["additionalProperties"]["maxLength"].as_u64().unwrap() as usize;
    let many = |n: usize| {
        serde_json::Value::Object((0..n).map(|i| (format!("k{i}"), json!("v"))).collect())
    };
    assert_eq!(
        create_status(&s, json!({"metadata": many(keys)})).await,
        201
    );
    assert_eq!(
        create_status(&s, json!({"metadata": many(keys + 1)})).await,
        400
    );
    let long = |n: usize| json!({"metadata": {"k": "x".repeat(n)}});
    assert_eq!(create_status(&s, long(len)).await, 201);
    assert_eq!(create_status(&s, long(len + 1)).await, 400);
    for reserved in meta["propertyNames"]["not"]["enum"].as_sequence().unwrap() {
        let k = reserved.as_str().unwrap();
        assert_eq!(
            create_status(&s, json!({"metadata": {k: "x"}})).await,
            400,
            "{k}"
        );
    }
    // Template names: the documented length is a name (unknown: 404), one more is 400.
    let tlen = create["properties"]["template"]["maxLength"]
        .as_u64()
        .unwrap() as usize;
    assert_eq!(
        create_status(&s, json!({"template": "t".repeat(tlen)})).await,
        404
    );
    assert_eq!(
        create_status(&s, json!({"template": "t".repeat(tlen + 1)})).await,
        400
    );
    // Documented as closed: an unknown field is 400.
    assert_eq!(create["additionalProperties"].as_bool(), Some(false));
    assert_eq!(create_status(&s, json!({"nope": 1})).await, 400);

    // Snapshot create is closed too, and its name limit is the enforced one.
    let snap = schema("CreateSnapshot");
    assert_eq!(snap["additionalProperties"].as_bool(), Some(false));
    let id = s.create(json!({})).await["id"].as_str().unwrap().to_owned();
    let nlen = snap["properties"]["name"]["maxLength"].as_u64().unwrap() as usize;
    for (body, want) in [
        (json!({"sandbox_id": id, "nope": 1}), 400),
        (json!({"sandbox_id": id, "name": "n".repeat(nlen + 1)}), 400),
        (json!({"sandbox_id": id, "name": "n".repeat(nlen)}), 201),
    ] {
        let r = s
            .req(Method::POST, "/v1/snapshots")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "{body}");
    }

    // Usage: to minus from may be 366 days, not 367.
    for (to, want) in [("2025-01-02", 200), ("2025-01-03", 400)] {
        let r = s
            .req(
                Method::GET,
                &format!("/v1/capsules/usage?from=2024-01-02&to={to}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want, "to={to}");
    }
}

/// Documented error statuses of routes whose limits were once left out.
#[test]
fn limit_responses_are_documented() {
    let doc: serde_yaml::Value = serde_yaml::from_str(wrenn_control::api::system::OPENAPI_YAML)
        .expect("openapi.yaml parses");
    let p = &doc["paths"];
    for (path, method, status) in [
        ("/v1/capsules/{id}/ping", "post", "409"),
        ("/v1/capsules/{id}/pause", "post", "409"),
        ("/v1/capsules/{id}/resume", "post", "409"),
        ("/v1/teams", "post", "403"),
        ("/v1/teams/{name}", "delete", "409"),
    ] {
        assert!(
            !p[path][method]["responses"][status].is_null(),
            "{method} {path} documents {status}"
        );
    }
    assert!(schema("ExecRequest")["properties"]["cmd"]["minLength"].as_u64() == Some(1));
    assert!(schema("PathRequest")["properties"]["path"]["minLength"].as_u64() == Some(1));
    let depth = &schema("ListDirRequest")["properties"]["depth"];
    assert_eq!(
        (depth["minimum"].as_i64(), depth["maximum"].as_i64()),
        (Some(1), Some(32))
    );
}
