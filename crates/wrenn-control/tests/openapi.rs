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
