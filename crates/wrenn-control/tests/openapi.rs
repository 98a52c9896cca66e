//! The OpenAPI document and the router agree: every route is documented, every documented
//! route is served (under /v1 and /api/v1).

mod common;

use std::collections::BTreeSet;

use common::fake_host::FakeHost;
use common::{Db, Server};
use reqwest::Method;
use serde_json::{json, Value};

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

/// A validator for the subset of JSON Schema (OpenAPI 3.0 flavour) that openapi.yaml uses:
/// `$ref`, `allOf`, `not`, `type`, `nullable`, `enum`, `properties`, `required`,
/// `additionalProperties`, `items`, `maxItems`, `maxProperties`, `propertyNames`,
/// `minLength`/`maxLength`, `pattern`, `minimum`/`maximum` and the formats `date-time` and
/// `date`. Answers are checked closed: an object whose schema lists `properties` and says
/// nothing of `additionalProperties` may carry no other key (an undocumented field is a
/// mismatch too).
struct Validator {
    doc: serde_json::Value,
}

impl Validator {
    fn new() -> Validator {
        let doc: serde_json::Value =
            serde_yaml::from_str(wrenn_control::api::system::OPENAPI_YAML).expect("parses");
        Validator { doc }
    }

    fn resolve<'a>(&'a self, s: &'a serde_json::Value) -> &'a serde_json::Value {
        match s.get("$ref").and_then(|r| r.as_str()) {
            Some(r) => {
                let ptr = r.strip_prefix('#').expect("local $ref");
                self.resolve(self.doc.pointer(ptr).unwrap_or_else(|| panic!("$ref {r}")))
            }
            None => s,
        }
    }

    /// The mismatches of `v` against `schema`, each naming its place in `v`.
    fn check(&self, schema: &serde_json::Value, v: &serde_json::Value, at: &str) -> Vec<String> {
        let mut errs = Vec::new();
        self.walk(schema, v, at, &mut errs);
        errs
    }

    fn walk(
        &self,
        schema: &serde_json::Value,
        v: &serde_json::Value,
        at: &str,
        errs: &mut Vec<String>,
    ) {
        use serde_json::Value;
        let s = self.resolve(schema);
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            // The parts of an allOf are one object: keys documented by any part are known.
            let mut merged = serde_json::Map::new();
            let mut required = Vec::new();
            for part in all {
                let part = self.resolve(part);
                if let Some(p) = part.get("properties").and_then(Value::as_object) {
                    merged.extend(p.clone());
                }
                if let Some(r) = part.get("required").and_then(Value::as_array) {
                    required.extend(r.clone());
                }
            }
            let one = json!({"type": "object", "properties": merged, "required": required});
            return self.walk(&one, v, at, errs);
        }
        if v.is_null() {
            if s.get("nullable").and_then(Value::as_bool) != Some(true) && s.get("type").is_some() {
                errs.push(format!("{at}: null but not nullable"));
            }
            return;
        }
        if let Some(not) = s.get("not") {
            if self.check(not, v, at).is_empty() {
                errs.push(format!("{at}: {v} matches a `not` schema"));
            }
        }
        if let Some(values) = s.get("enum").and_then(Value::as_array) {
            if !values.contains(v) {
                errs.push(format!("{at}: {v} not in {values:?}"));
            }
        }
        let ty = s.get("type").and_then(Value::as_str);
        let type_ok = match ty {
            None => true,
            Some("object") => v.is_object(),
            Some("array") => v.is_array(),
            Some("string") => v.is_string(),
            Some("boolean") => v.is_boolean(),
            Some("number") => v.is_number(),
            Some("integer") => v.is_i64() || v.is_u64(),
            Some(other) => panic!("type {other} in openapi.yaml"),
        };
        if !type_ok {
            errs.push(format!("{at}: {v} is not of type {}", ty.unwrap_or("?")));
            return;
        }
        if let Some(text) = v.as_str() {
            let len = text.chars().count() as u64;
            if s.get("minLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len < m)
            {
                errs.push(format!("{at}: {v} shorter than minLength"));
            }
            if s.get("maxLength")
                .and_then(Value::as_u64)
                .is_some_and(|m| len > m)
            {
                errs.push(format!("{at}: {v} longer than maxLength"));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                let re = regex_automata::meta::Regex::new(p)
                    .unwrap_or_else(|e| panic!("pattern {p}: {e}"));
                if !re.is_match(text) {
                    errs.push(format!("{at}: {v} does not match {p}"));
                }
            }
            match s.get("format").and_then(Value::as_str) {
                Some("date-time") if chrono::DateTime::parse_from_rfc3339(text).is_err() => {
                    errs.push(format!("{at}: {v} is not an RFC 3339 date-time"))
                }
                Some("date") if chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_err() => {
                    errs.push(format!("{at}: {v} is not a date"))
                }
                _ => {}
            }
        }
        if let Some(n) = v.as_f64() {
            if s.get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n < m)
            {
                errs.push(format!("{at}: {v} below minimum"));
            }
            if s.get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n > m)
            {
                errs.push(format!("{at}: {v} above maximum"));
            }
        }
        if let Some(items) = v.as_array() {
            if s.get("maxItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| items.len() as u64 > m)
            {
                errs.push(format!("{at}: more than maxItems"));
            }
            if let Some(item) = s.get("items") {
                for (i, x) in items.iter().enumerate() {
                    self.walk(item, x, &format!("{at}[{i}]"), errs);
                }
            }
        }
        if let Some(obj) = v.as_object() {
            let props = s.get("properties").and_then(Value::as_object);
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let r = r.as_str().unwrap();
                if !obj.contains_key(r) {
                    errs.push(format!("{at}: required field {r} missing"));
                }
            }
            if s.get("maxProperties")
                .and_then(Value::as_u64)
                .is_some_and(|m| obj.len() as u64 > m)
            {
                errs.push(format!("{at}: more than maxProperties"));
            }
            for (k, x) in obj {
                let here = format!("{at}.{k}");
                if let Some(names) = s.get("propertyNames") {
                    self.walk(names, &json!(k), &format!("{here} (name)"), errs);
                }
                match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                    (Some(p), _) => self.walk(p, x, &here, errs),
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(Value::Bool(false))) => {
                        errs.push(format!("{here}: not allowed (additionalProperties: false)"))
                    }
                    (None, Some(extra)) => self.walk(extra, x, &here, errs),
                    (None, None) if props.is_some() => {
                        errs.push(format!("{here}: undocumented field"))
                    }
                    (None, None) => {}
                }
            }
        }
    }

    /// The documented schema of the answer `status` of `method path` (a path template of
    /// the document), `None` when it documents no JSON body; panics when the status is not
    /// documented for the route.
    fn response(&self, method: &str, path: &str, status: u16) -> Option<&serde_json::Value> {
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let r = &op["responses"][status.to_string()];
        assert!(
            !r.is_null(),
            "{method} {path} answered {status}, which openapi.yaml does not document"
        );
        let r = self.resolve(r);
        let schema = &r["content"]["application/json"]["schema"];
        (!schema.is_null()).then_some(schema)
    }
}

#[test]
fn the_validator_finds_what_is_wrong() {
    let v = Validator::new();
    let capsule = json!({"$ref": "#/components/schemas/Capsule"});
    let good = json!({"id": "cl-0123456789abcdefghijklmno", "status": "running",
        "template": "minimal", "vcpus": 1, "memory_mb": 512, "timeout_sec": 0,
        "created_at": "2026-01-01T00:00:00.000Z", "started_at": "2026-01-01T00:00:00.000Z",
        "last_active_at": "2026-01-01T00:00:00.000Z", "last_updated": "2026-01-01T00:00:00.000Z",
        "metadata": {}, "ports": "public", "error": null,
        "network": {"enabled": false, "policy": {"allow_out": [], "deny_out": []}}});
    assert_eq!(v.check(&capsule, &good, "$"), Vec::<String>::new());
    for (field, bad) in [
        ("status", json!("asleep")),
        ("vcpus", json!("1")),
        ("vcpus", json!(1.5)),
        ("created_at", json!("yesterday")),
        ("ports", json!(null)),
        ("surprise", json!(1)),
        ("metadata", json!({"k": 1})),
        ("network", json!({"policy": {}})),
    ] {
        let mut b = good.clone();
        b[field] = bad.clone();
        assert!(
            !v.check(&capsule, &b, "$").is_empty(),
            "{field} = {bad} passed"
        );
    }
    let mut b = good.clone();
    b.as_object_mut().unwrap().remove("id");
    assert!(
        !v.check(&capsule, &b, "$").is_empty(),
        "a missing id passed"
    );
    let key = json!({"$ref": "#/components/schemas/CreatedApiKey"});
    let k = json!({"id": "key-1", "team_id": "t", "name": "n", "prefix": "wrn_012345",
        "created_at": "2026-01-01T00:00:00Z", "last_used_at": null,
        "key": "wrn_0123456789abcdef0123456789abcdef"});
    assert_eq!(v.check(&key, &k, "$"), Vec::<String>::new());
    let mut b = k.clone();
    b["key"] = json!("wrn_short");
    assert!(!v.check(&key, &b, "$").is_empty());
}

/// The document's name of a method.
fn method_name(m: &Method) -> &'static str {
    match *m {
        Method::GET => "get",
        Method::POST => "post",
        Method::PUT => "put",
        Method::DELETE => "delete",
        _ => panic!("{m} is not used by the API"),
    }
}

/// Sends `req`, checks that its status is documented for `method path` and that its JSON
/// body conforms to the documented schema; returns status and body.
async fn conforming(
    v: &Validator,
    req: reqwest::RequestBuilder,
    method: &str,
    path: &str,
) -> (u16, serde_json::Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let json_body = r
        .headers()
        .get("content-type")
        .and_then(|c| c.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let text = r.text().await.unwrap();
    let body: serde_json::Value = if text.is_empty() {
        serde_json::Value::Null
    } else if json_body {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    } else {
        serde_json::Value::String(text)
    };
    match v.response(method, path, status) {
        Some(schema) => {
            assert!(json_body, "{method} {path} {status}: not JSON: {body}");
            let errs = v.check(schema, &body, "$");
            assert!(
                errs.is_empty(),
                "{method} {path} {status} does not conform to openapi.yaml:\n{}\n{body}",
                errs.join("\n")
            );
        }
        None => assert!(
            !json_body || body.is_null(),
            "{method} {path} {status}: a JSON body the document does not describe: {body}"
        ),
    }
    (status, body)
}

/// Real answers of the main routes (the server over the fake host; guest routes over a real
/// `envd --listen-unix` when it is built) validated against the document's response schemas,
/// success and error answers alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_answers_conform_to_the_documented_schemas() {
    let v = Validator::new();
    let mut host = FakeHost::new(8);
    host.envd_bin = common::envd().await;
    let guest = host.envd_bin.is_some();
    let s = Server::start(Db::Sqlite, host).await;
    let admin = s.key_for(wrenn_control::ADMIN_TEAM).await;
    let with =
        |key: &str, m: Method, concrete: &str, template: &'static str, body: Option<Value>| {
            let req = s.req_as(key, m.clone(), concrete);
            let req = match body {
                Some(b) => req.json(&b),
                None => req,
            };
            conforming(&v, req, method_name(&m), template)
        };
    let call = |m, concrete: &str, template, body| with(&s.key, m, concrete, template, body);

    let (st, health) = conforming(
        &v,
        s.http.get(format!("{}/health", s.base)),
        "get",
        "/health",
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(health["version"], env!("CARGO_PKG_VERSION"));
    let (st, _) = conforming(
        &v,
        s.http.get(format!("{}/v1/capsules", s.base)),
        "get",
        "/v1/capsules",
    )
    .await;
    assert_eq!(st, 401);

    let policy = json!({"allow_internet": true, "allow_out": ["1.1.1.1"], "deny_out": []});
    let body = json!({"metadata": {"k": "v"}, "network": policy, "ports": "private"});
    let (st, created) = call(Method::POST, "/v1/capsules", "/v1/capsules", Some(body)).await;
    assert_eq!(st, 201);
    assert!(created["access_token"].is_string(), "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let cap = format!("/v1/capsules/{id}");
    let at = |suffix: &str| format!("{cap}{suffix}");
    let unknown = "/v1/capsules/cl-0000000000000000000000000".to_owned();
    let big = json!({"sandbox_id": id, "metadata": {"k": "x".repeat(2 << 20)}});
    let mut table: Vec<(Method, String, &'static str, Option<Value>, u16)> = vec![
        (
            Method::GET,
            "/v1/capsules".into(),
            "/v1/capsules",
            None,
            200,
        ),
        (Method::GET, cap.clone(), "/v1/capsules/{id}", None, 200),
        (
            Method::GET,
            "/v1/capsules/stats?range=1h".into(),
            "/v1/capsules/stats",
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/capsules/usage".into(),
            "/v1/capsules/usage",
            None,
            200,
        ),
        (
            Method::GET,
            at("/metrics"),
            "/v1/capsules/{id}/metrics",
            None,
            200,
        ),
        (
            Method::PUT,
            at("/network"),
            "/v1/capsules/{id}/network",
            Some(json!({})),
            200,
        ),
        (
            Method::POST,
            at("/ping"),
            "/v1/capsules/{id}/ping",
            None,
            204,
        ),
        (
            Method::GET,
            "/v1/snapshots".into(),
            "/v1/snapshots",
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/snapshots?type=base".into(),
            "/v1/snapshots",
            None,
            200,
        ),
        // Errors: unknown capsule, bad id, bad query and body, wrong status, forbidden.
        (Method::GET, unknown, "/v1/capsules/{id}", None, 404),
        (
            Method::GET,
            "/v1/capsules/nope".into(),
            "/v1/capsules/{id}",
            None,
            400,
        ),
        (
            Method::GET,
            "/v1/capsules/stats?range=7y".into(),
            "/v1/capsules/stats",
            None,
            400,
        ),
        (
            Method::POST,
            "/v1/capsules".into(),
            "/v1/capsules",
            Some(json!({"vcpus": 0})),
            400,
        ),
        (
            Method::POST,
            "/v1/capsules".into(),
            "/v1/capsules",
            Some(json!({"template": "nope"})),
            404,
        ),
        // Bodies over 1 MiB: 413 JSON, from create and snapshot alike.
        (
            Method::POST,
            "/v1/capsules".into(),
            "/v1/capsules",
            Some(big.clone()),
            413,
        ),
        (
            Method::POST,
            "/v1/snapshots".into(),
            "/v1/snapshots",
            Some(big),
            413,
        ),
        (
            Method::POST,
            at("/resume"),
            "/v1/capsules/{id}/resume",
            None,
            409,
        ),
        (
            Method::DELETE,
            "/v1/snapshots/minimal".into(),
            "/v1/snapshots/{name}",
            None,
            403,
        ),
        (Method::GET, "/v1/teams".into(), "/v1/teams", None, 403),
    ];
    if guest {
        let dir = format!("/tmp/openapi-{}", std::process::id());
        let sh = json!({"cmd": "/bin/sh", "args": ["-c", "echo hi; echo err >&2; exit 3"]});
        let bg = json!({"cmd": "/bin/sleep", "args": ["30"], "background": true, "tag": "sleeper"});
        table.extend([
            (
                Method::POST,
                at("/exec"),
                "/v1/capsules/{id}/exec",
                Some(sh),
                200,
            ),
            (
                Method::POST,
                at("/exec"),
                "/v1/capsules/{id}/exec",
                Some(bg),
                202,
            ),
            (
                Method::GET,
                at("/processes"),
                "/v1/capsules/{id}/processes",
                None,
                200,
            ),
            (
                Method::POST,
                at("/files/mkdir"),
                "/v1/capsules/{id}/files/mkdir",
                Some(json!({"path": dir})),
                200,
            ),
            (
                Method::POST,
                at("/files/list"),
                "/v1/capsules/{id}/files/list",
                Some(json!({"path": "/tmp", "depth": 2})),
                200,
            ),
            (
                Method::POST,
                at("/files/list"),
                "/v1/capsules/{id}/files/list",
                Some(json!({"path": "/no/such/dir"})),
                404,
            ),
            (
                Method::POST,
                at("/files/remove"),
                "/v1/capsules/{id}/files/remove",
                Some(json!({"path": "/"})),
                400,
            ),
            (
                Method::DELETE,
                at("/processes/sleeper"),
                "/v1/capsules/{id}/processes/{selector}",
                None,
                204,
            ),
        ]);
    }
    let snap = json!({"sandbox_id": id, "name": "conform"});
    table.extend([
        (
            Method::POST,
            "/v1/snapshots".into(),
            "/v1/snapshots",
            Some(snap.clone()),
            201,
        ),
        (
            Method::POST,
            "/v1/snapshots".into(),
            "/v1/snapshots",
            Some(snap),
            409,
        ),
        (
            Method::POST,
            at("/pause"),
            "/v1/capsules/{id}/pause",
            None,
            200,
        ),
        (
            Method::POST,
            at("/resume"),
            "/v1/capsules/{id}/resume",
            None,
            200,
        ),
        (
            Method::DELETE,
            "/v1/snapshots/conform".into(),
            "/v1/snapshots/{name}",
            None,
            204,
        ),
        (Method::DELETE, cap.clone(), "/v1/capsules/{id}", None, 204),
    ]);
    for (m, concrete, template, body, want) in table {
        let (st, answer) = call(m.clone(), &concrete, template, body).await;
        assert_eq!(st, want, "{m} {concrete}: {answer}");
        if template.ends_with("/exec") && want == 200 {
            assert_eq!(answer["exit_code"], 3, "{answer}");
        }
        if template.ends_with("/processes") {
            assert!(
                answer["processes"]
                    .as_array()
                    .is_some_and(|p| !p.is_empty()),
                "{answer}"
            );
        }
    }

    // Admin routes: teams and keys.
    let admin_call = |m, concrete: &str, template, body| with(&admin, m, concrete, template, body);
    let team = json!({"name": "conform"});
    for (m, concrete, template, body, want) in [
        (
            Method::POST,
            "/v1/teams",
            "/v1/teams",
            Some(team.clone()),
            201,
        ),
        (Method::POST, "/v1/teams", "/v1/teams", Some(team), 409),
        (Method::GET, "/v1/teams", "/v1/teams", None, 200),
        (
            Method::GET,
            "/v1/teams/conform/keys",
            "/v1/teams/{name}/keys",
            None,
            200,
        ),
        (
            Method::GET,
            "/v1/teams/nope/keys",
            "/v1/teams/{name}/keys",
            None,
            404,
        ),
    ] {
        let (st, body) = admin_call(m, concrete, template, body).await;
        assert_eq!(st, want, "{concrete}: {body}");
    }
    let keys = "/v1/teams/conform/keys";
    let (st, key) = admin_call(
        Method::POST,
        keys,
        "/v1/teams/{name}/keys",
        Some(json!({"name": "ci"})),
    )
    .await;
    assert_eq!(st, 201, "{key}");
    let one_key = format!("{keys}/{}", key["id"].as_str().unwrap());
    let (st, _) = admin_call(
        Method::DELETE,
        &one_key,
        "/v1/teams/{name}/keys/{key_id}",
        None,
    )
    .await;
    assert_eq!(st, 204);
    let (st, _) = admin_call(
        Method::DELETE,
        "/v1/teams/conform",
        "/v1/teams/{name}",
        None,
    )
    .await;
    assert_eq!(st, 204);
}
