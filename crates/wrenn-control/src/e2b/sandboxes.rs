//! E2B's REST routes: create, connect (resumes a paused sandbox), get, list, kill, timeout,
//! pause, metrics, snapshots, network; the `/v2` paths of SDK 2.51 and later and the older
//! ones. Every call maps onto the core's capsule lifecycle.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Query, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::Value;

use wrenn_host::NetworkPolicy;

use super::error::E2bError;
use super::views::{self, Tokens};
use super::{capsule_id, sandbox_id, TokenKind};
use crate::access::PortsMode;
use crate::auth::Auth;
use crate::core::lifecycle::{CreateSpec, OnTimeout};
use crate::core::snapshots::SnapshotRequest;
use crate::core::status::CapsuleStatus;
use crate::state::AppState;
use crate::store::CapsuleRow;

/// E2B's routes, to merge into the application router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/sandboxes", post(create).get(list))
        .route("/sandboxes", post(create).get(list_running))
        .route("/v2/sandboxes/{id}/connect", post(connect))
        .route("/sandboxes/{id}/connect", post(connect))
        .route("/sandboxes/{id}/resume", post(connect))
        .route("/sandboxes/{id}", get(get_info).delete(kill))
        .route("/sandboxes/{id}/timeout", post(set_timeout))
        .route("/sandboxes/{id}/refreshes", post(refresh))
        .route("/sandboxes/{id}/pause", post(pause))
        .route("/sandboxes/{id}/metrics", get(metrics))
        .route("/sandboxes/{id}/snapshots", post(snapshot))
        .route(
            "/sandboxes/{id}/network",
            axum::routing::put(update_network),
        )
        .route("/sandboxes/{id}/fork", post(fork))
}

/// The caller, authenticated by `X-API-KEY` (the same keys and teams as Wrenn's routes);
/// its rejection is E2B's error body.
pub struct E2bAuth(pub Auth);

impl FromRequestParts<AppState> for E2bAuth {
    type Rejection = E2bError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, E2bError> {
        Auth::from_request_parts(parts, state)
            .await
            .map(E2bAuth)
            .map_err(E2bError::from)
    }
}

/// The `{id}` of a sandbox route, as its capsule (404 in E2B's shape for anything else).
struct Sandbox(String);

impl<S: Send + Sync> FromRequestParts<S> for Sandbox {
    type Rejection = E2bError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, E2bError> {
        let axum::extract::Path(id) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| E2bError::invalid(e.body_text()))?;
        capsule_id(&id)
            .map(Sandbox)
            .ok_or_else(|| E2bError::sandbox_not_found(&id))
    }
}

impl AppState {
    /// The team's capsule behind a sandbox id, if E2B would show it (running or paused).
    async fn e2b_capsule(&self, auth: &Auth, capsule: &str) -> Result<CapsuleRow, E2bError> {
        let row = self
            .store
            .team_capsule(&auth.team_id, capsule)
            .await?
            .filter(|r| views::state(r.status).is_some())
            .ok_or_else(|| E2bError::sandbox_not_found(sandbox_id(capsule)))?;
        Ok(row)
    }

    /// The tokens a `Sandbox` answer carries.
    async fn e2b_tokens(&self, row: &CapsuleRow) -> Result<Tokens, E2bError> {
        let envd = self.e2b_token(&row.id, TokenKind::Envd).await?;
        let traffic = if PortsMode::from_stored(&row.ports) == PortsMode::Private {
            Some(self.e2b_token(&row.id, TokenKind::Traffic).await?)
        } else {
            None
        };
        Ok(Tokens { envd, traffic })
    }

    /// The `domain` of sandbox answers: `--proxy-domain`, else the name the client reached us
    /// by (when it is a name, not an address), so `get_host(port)` gives a working port URL.
    fn e2b_domain(&self, headers: &HeaderMap) -> Option<String> {
        if let Some(d) = &self.config.proxy_domain {
            return Some(d.clone());
        }
        let host = headers.get(axum::http::header::HOST)?.to_str().ok()?;
        let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
        (name.parse::<std::net::IpAddr>().is_err() && !name.starts_with('['))
            .then(|| host.to_owned())
    }
}

/// Longest E2B timeout: a year, as Wrenn's.
const MAX_TIMEOUT: i64 = 31_536_000;
/// The SDK's default when it sends none.
const DEFAULT_TIMEOUT: i64 = 300;

fn check_timeout(t: i64) -> Result<u32, E2bError> {
    if !(0..=MAX_TIMEOUT).contains(&t) {
        return Err(E2bError::invalid(format!(
            "timeout must be between 0 and {MAX_TIMEOUT} seconds"
        )));
    }
    Ok(t as u32)
}

/// E2B's network options of a create.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkBody {
    allow_out: Option<Vec<String>>,
    deny_out: Option<Vec<String>>,
    allow_public_traffic: Option<bool>,
    #[serde(flatten)]
    other: BTreeMap<String, Value>,
}

/// The create body, of `/v2/sandboxes` and of the older `/sandboxes`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBody {
    #[serde(rename = "templateID")]
    template_id: Option<String>,
    timeout: Option<i64>,
    auto_pause: Option<bool>,
    auto_resume: Option<Value>,
    metadata: Option<BTreeMap<String, String>>,
    env_vars: Option<BTreeMap<String, String>>,
    #[serde(rename = "allow_internet_access")]
    allow_internet_access: Option<bool>,
    network: Option<NetworkBody>,
    mcp: Option<Value>,
    iam: Option<Value>,
    volume_mounts: Option<Vec<Value>>,
}

/// The name of our template for an E2B template id: E2B's `base` is our `python`, its
/// `code-interpreter-v1` our `code-runner-beta` (which serves E2B's code-interpreter API);
/// any other id is a template of ours by that name.
fn template_of(template_id: Option<&str>) -> String {
    match template_id.unwrap_or("base") {
        "base" => "python".to_owned(),
        "code-interpreter-v1" => "code-runner-beta".to_owned(),
        other => other.to_owned(),
    }
}

fn check_metadata(m: &BTreeMap<String, String>) -> Result<(), E2bError> {
    if m.len() > 32 {
        return Err(E2bError::invalid("metadata has more than 32 keys"));
    }
    for (k, v) in m {
        if k.is_empty() || k.len() > 64 || k.chars().any(char::is_control) {
            return Err(E2bError::invalid(format!("invalid metadata key {k:?}")));
        }
        if v.len() > 512 || v.chars().any(char::is_control) {
            return Err(E2bError::invalid(format!(
                "metadata value of {k:?} is longer than 512 bytes or has control characters"
            )));
        }
    }
    Ok(())
}

fn check_envs(m: &BTreeMap<String, String>) -> Result<(), E2bError> {
    if m.len() > 256 {
        return Err(E2bError::invalid("envVars has more than 256 variables"));
    }
    let total: usize = m.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > 128 * 1024 {
        return Err(E2bError::invalid("envVars are larger than 128 KiB"));
    }
    for k in m.keys() {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(E2bError::invalid(format!(
                "invalid environment variable name {k:?}"
            )));
        }
    }
    if m.values().any(|v| v.contains('\0')) {
        return Err(E2bError::invalid("environment values must not contain NUL"));
    }
    Ok(())
}

fn spec_of(body: CreateBody) -> Result<CreateSpec, E2bError> {
    if body.mcp.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(E2bError::unsupported("MCP"));
    }
    if body.iam.as_ref().is_some_and(|v| !v.is_null()) {
        return Err(E2bError::unsupported("IAM"));
    }
    if body.volume_mounts.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(E2bError::unsupported("volumes"));
    }
    if body
        .auto_resume
        .as_ref()
        .and_then(|v| v.get("enabled"))
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(E2bError::unsupported("auto-resume"));
    }
    let template = template_of(body.template_id.as_deref());
    if !crate::ids::is_template_name(&template) {
        return Err(E2bError::new(
            StatusCode::NOT_FOUND,
            format!("template {template:?} was not found"),
        ));
    }
    let timeout_sec = check_timeout(body.timeout.unwrap_or(DEFAULT_TIMEOUT))?;
    let metadata = body.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    let envs = body.env_vars.unwrap_or_default();
    check_envs(&envs)?;
    let network = body.network.unwrap_or_default();
    if let Some(k) = network.other.keys().find(|k| {
        !network.other[*k].is_null() && !matches!(k.as_str(), "maskRequestHost" | "httpsPorts")
    }) {
        return Err(E2bError::unsupported(&format!("network option {k}")));
    }
    let policy = NetworkPolicy {
        allow_internet: body.allow_internet_access,
        allow_out: network.allow_out.unwrap_or_default(),
        deny_out: network.deny_out.unwrap_or_default(),
    };
    policy.rules().map_err(E2bError::invalid)?;
    Ok(CreateSpec {
        template,
        vcpus: 2,
        memory_mb: 512,
        timeout_sec,
        metadata,
        network: policy,
        ports: if network.allow_public_traffic == Some(false) {
            PortsMode::Private
        } else {
            PortsMode::Public
        },
        envs,
        on_timeout: if body.auto_pause == Some(true) {
            OnTimeout::Pause
        } else {
            OnTimeout::Kill
        },
    })
}

/// Parses an optional JSON body (empty = all defaults).
fn body_of<T: Default + serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, E2bError> {
    crate::api::capsules::optional_json(body).map_err(E2bError::from)
}

/// `POST /v2/sandboxes`, `POST /sandboxes`: 201 with the sandbox.
async fn create(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, E2bError> {
    let answer = async {
        let spec = spec_of(body_of(&body)?)?;
        let created = state
            .create_capsule(&auth.team_id, &auth.actor, spec)
            .await
            .map_err(E2bError::of)?;
        let row = wait_running(&state, created.row).await?;
        let tokens = state.e2b_tokens(&row).await?;
        let domain = state.e2b_domain(&headers);
        Ok::<_, E2bError>(
            (
                StatusCode::CREATED,
                Json(views::sandbox(&row, &tokens, domain.as_deref())),
            )
                .into_response(),
        )
    };
    answer.await.map_err(E2bError::final_answer)
}

/// Waits for a capsule that answered `starting` (a slow create) to run: E2B's create
/// answers a usable sandbox.
async fn wait_running(state: &AppState, row: CapsuleRow) -> Result<CapsuleRow, E2bError> {
    let row = wait_while(state, row, CapsuleStatus::Starting).await?;
    match row.status {
        CapsuleStatus::Running => Ok(row),
        CapsuleStatus::Starting => Err(E2bError::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("sandbox {} did not start in time", sandbox_id(&row.id)),
        )),
        other => Err(E2bError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "sandbox {} did not start: it is {other}{}",
                sandbox_id(&row.id),
                row.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
        )),
    }
}

/// The capsule once it is no longer in `status`, or as it is when the host timeout passes.
/// Subscribes to the events before it reads the row, so a change between the two is seen.
async fn wait_while(
    state: &AppState,
    row: CapsuleRow,
    status: CapsuleStatus,
) -> Result<CapsuleRow, E2bError> {
    let deadline = tokio::time::Instant::now() + state.config.host_op_timeout;
    let mut events = state.events.subscribe();
    let reload = |row: &CapsuleRow| {
        let (state, row) = (state.clone(), row.clone());
        async move { state.reload(&row).await.map_err(E2bError::of) }
    };
    let mut row = reload(&row).await?;
    while row.status == status {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Err(_) => break,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Ok(_) => {}
        }
        row = reload(&row).await?;
    }
    Ok(row)
}

/// Body of connect.
#[derive(Debug, Default, Deserialize)]
struct ConnectBody {
    timeout: Option<i64>,
}

/// `POST /v2/sandboxes/{id}/connect` (and the older `/sandboxes/{id}/connect`, `/resume`):
/// resumes a paused sandbox (201) or answers a running one (200); a given timeout counts
/// from now.
async fn connect(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    Sandbox(id): Sandbox,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, E2bError> {
    let req: ConnectBody = body_of(&body)?;
    let mut row = state.e2b_capsule(&auth, &id).await?;
    if row.status == CapsuleStatus::Pausing {
        row = wait_while(&state, row, CapsuleStatus::Pausing).await?;
    }
    let mut status = StatusCode::OK;
    if row.status == CapsuleStatus::Paused {
        row = state
            .resume_capsule(&row, &auth.actor)
            .await
            .map_err(E2bError::of)?;
        status = StatusCode::CREATED;
    }
    if let Some(t) = req.timeout {
        row = state
            .set_timeout(&row, check_timeout(t)?)
            .await
            .map_err(E2bError::of)?;
    } else {
        state.activity.touch(&row.id).await;
    }
    let tokens = state.e2b_tokens(&row).await?;
    let domain = state.e2b_domain(&headers);
    Ok((
        status,
        Json(views::sandbox(&row, &tokens, domain.as_deref())),
    )
        .into_response())
}

/// `GET /sandboxes/{id}`.
async fn get_info(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    Sandbox(id): Sandbox,
    headers: HeaderMap,
) -> Result<Json<Value>, E2bError> {
    let row = state.e2b_capsule(&auth, &id).await?;
    let tokens = state.e2b_tokens(&row).await?;
    let disk = disk_mb(&state, &row).await?;
    let domain = state.e2b_domain(&headers);
    Ok(Json(views::detail(&row, &tokens, disk, domain.as_deref())))
}

/// The size of a capsule's disk as its guest last reported it (0 before the first sample).
async fn disk_mb(state: &AppState, row: &CapsuleRow) -> Result<i64, E2bError> {
    Ok(state
        .store
        .latest_metric(&row.id)
        .await?
        .map_or(0, |s| s.disk_total_bytes >> 20))
}

/// `DELETE /sandboxes/{id}`: 204.
async fn kill(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    Sandbox(id): Sandbox,
) -> Result<StatusCode, E2bError> {
    let row = state.e2b_capsule(&auth, &id).await?;
    state
        .destroy_capsule(&row, &auth.actor)
        .await
        .map_err(E2bError::of)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `timeout`.
#[derive(Debug, Deserialize)]
struct TimeoutBody {
    timeout: i64,
}

/// `POST /sandboxes/{id}/timeout`: the sandbox lives `timeout` seconds from now.
async fn set_timeout(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    Sandbox(id): Sandbox,
    body: Bytes,
) -> Result<StatusCode, E2bError> {
    let req: TimeoutBody = serde_json::from_slice(&body)
        .map_err(|e| E2bError::invalid(format!("invalid JSON body: {e}")))?;
    let row = state.e2b_capsule(&auth, &id).await?;
    state
        .set_timeout(&row, check_timeout(req.timeout)?)
        .await
        .map_err(E2bError::of)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/refreshes`: counts as activity.
async fn refresh(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    Sandbox(id): Sandbox,
) -> Result<StatusCode, E2bError> {
    let row = state.e2b_capsule(&auth, &id).await?;
    state.activity.touch(&row.id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/pause`: 204; 409 when it is not running.
async fn pause(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    Sandbox(id): Sandbox,
) -> Result<StatusCode, E2bError> {
    let row = state.e2b_capsule(&auth, &id).await?;
    if row.status != CapsuleStatus::Running {
        return Err(E2bError::new(
            StatusCode::CONFLICT,
            format!(
                "sandbox {} is {}, not running",
                sandbox_id(&row.id),
                row.status
            ),
        ));
    }
    state
        .pause_capsule(&row, &auth.actor)
        .await
        .map_err(E2bError::of)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of metrics.
#[derive(Debug, Deserialize)]
struct MetricsQuery {
    start: Option<i64>,
    end: Option<i64>,
}

/// `GET /sandboxes/{id}/metrics?start=&end=` (unix seconds; the last 10 minutes by
/// default).
async fn metrics(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    Sandbox(id): Sandbox,
    Query(q): Query<MetricsQuery>,
) -> Result<Json<Value>, E2bError> {
    let row = state.e2b_capsule(&auth, &id).await?;
    let now = chrono::Utc::now().timestamp();
    let end = q.end.unwrap_or(now);
    let start = q.start.unwrap_or(end - 600);
    let points: Vec<Value> = state
        .store
        .metrics_since(&row.id, start)
        .await?
        .iter()
        .filter(|s| s.ts <= end)
        .map(|s| views::metric(&row, s))
        .collect();
    Ok(Json(Value::Array(points)))
}

/// Body of snapshots.
#[derive(Debug, Default, Deserialize)]
struct SnapshotBody {
    name: Option<String>,
}

/// `POST /sandboxes/{id}/snapshots`: a snapshot template of the running sandbox; creates
/// from its `snapshotID` start from it.
async fn snapshot(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    Sandbox(id): Sandbox,
    body: Bytes,
) -> Result<Response, E2bError> {
    let req: SnapshotBody = body_of(&body)?;
    let row = state.e2b_capsule(&auth, &id).await?;
    let made = state
        .create_snapshot(
            &auth.team_id,
            &auth.actor,
            SnapshotRequest {
                capsule_id: row.id.clone(),
                name: req.name,
                overwrite: false,
            },
        )
        .await
        .map_err(E2bError::of)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"snapshotID": made.name, "names": [made.name]})),
    )
        .into_response())
}

/// Body of a network update.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NetworkUpdate {
    allow_out: Option<Vec<String>>,
    deny_out: Option<Vec<String>>,
    allow_internet_access: Option<bool>,
}

/// `PUT /sandboxes/{id}/network`: replaces the egress policy.
async fn update_network(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    Sandbox(id): Sandbox,
    body: Bytes,
) -> Result<StatusCode, E2bError> {
    let req: NetworkUpdate = body_of(&body)?;
    let row = state.e2b_capsule(&auth, &id).await?;
    let policy = NetworkPolicy {
        allow_internet: req.allow_internet_access,
        allow_out: req.allow_out.unwrap_or_default(),
        deny_out: req.deny_out.unwrap_or_default(),
    };
    state
        .set_network(&row, policy)
        .await
        .map_err(E2bError::of)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /sandboxes/{id}/fork`: not a feature of this server yet.
async fn fork(E2bAuth(_auth): E2bAuth) -> E2bError {
    E2bError::unsupported("fork")
}

/// Query of the lists (`metadata` is itself URL-encoded `k=v&k2=v2`).
#[derive(Debug, Default)]
struct ListQuery {
    metadata: Option<String>,
    limit: Option<usize>,
    next_token: Option<String>,
}

/// Largest page of a list.
const MAX_PAGE: usize = 100;

/// `GET /v2/sandboxes`: running and paused sandboxes (or the `state`s asked for), newest
/// first, filtered by metadata, in pages (`x-next-token`).
async fn list(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, E2bError> {
    list_page(&state, &auth, raw.as_deref(), &["running", "paused"]).await
}

/// `GET /sandboxes` (before `/v2`): the running ones unless `state` says otherwise.
async fn list_running(
    State(state): State<AppState>,
    E2bAuth(auth): E2bAuth,
    RawQuery(raw): RawQuery,
) -> Result<Response, E2bError> {
    list_page(&state, &auth, raw.as_deref(), &["running"]).await
}

/// Parses a list query: `state` may come as `a,b` or repeated.
fn parse_list_query(raw: Option<&str>) -> Result<(ListQuery, Vec<String>), E2bError> {
    let mut q = ListQuery::default();
    let mut states = Vec::new();
    for (k, v) in form_urlencoded(raw.unwrap_or("")) {
        match k.as_str() {
            "metadata" => q.metadata = Some(v),
            "state" => states.extend(v.split(',').filter(|s| !s.is_empty()).map(str::to_owned)),
            "limit" => {
                q.limit = Some(
                    v.parse()
                        .map_err(|_| E2bError::invalid(format!("invalid limit {v:?}")))?,
                )
            }
            "nextToken" => q.next_token = Some(v).filter(|t| !t.is_empty()),
            _ => {}
        }
    }
    Ok((q, states))
}

/// Decodes `application/x-www-form-urlencoded` pairs.
fn form_urlencoded(s: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(s.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

async fn list_page(
    state: &AppState,
    auth: &Auth,
    raw: Option<&str>,
    default_states: &[&str],
) -> Result<Response, E2bError> {
    let (q, mut states) = parse_list_query(raw)?;
    if states.is_empty() {
        states = default_states.iter().map(|s| (*s).to_owned()).collect();
    }
    if let Some(bad) = states
        .iter()
        .find(|s| !matches!(s.as_str(), "running" | "paused"))
    {
        return Err(E2bError::invalid(format!(
            "invalid state {bad:?}: expected running or paused"
        )));
    }
    let wanted: BTreeMap<String, String> = q
        .metadata
        .as_deref()
        .map(form_urlencoded)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let limit = q.limit.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let mut rows: Vec<CapsuleRow> = state
        .store
        .list_team_capsules(&auth.team_id)
        .await?
        .into_iter()
        .filter(|r| views::state(r.status).is_some_and(|s| states.iter().any(|w| w == s)))
        .filter(|r| {
            let meta: BTreeMap<String, String> =
                serde_json::from_str(&r.metadata).unwrap_or_default();
            wanted.iter().all(|(k, v)| meta.get(k) == Some(v))
        })
        .collect();
    // Newest first; the token is the position after which the next page starts.
    rows.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    if let Some(token) = &q.next_token {
        let (at, id) = page_key(token)?;
        rows.retain(|r| (r.created_at, r.id.as_str()) < (at, id.as_str()));
    }
    let more = rows.len() > limit;
    rows.truncate(limit);
    let next = match (more, rows.last()) {
        (true, Some(last)) => page_token(last),
        _ => String::new(),
    };
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        items.push(views::listed(r, disk_mb(state, r).await?));
    }
    let mut resp = Json(Value::Array(items)).into_response();
    if let Ok(v) = HeaderValue::from_str(&next) {
        resp.headers_mut().insert("x-next-token", v);
    }
    Ok(resp)
}

fn page_token(row: &CapsuleRow) -> String {
    format!("{}.{}", row.created_at, sandbox_id(&row.id))
}

fn page_key(token: &str) -> Result<(i64, String), E2bError> {
    let bad = || E2bError::invalid(format!("invalid nextToken {token:?}"));
    let (at, id) = token.split_once('.').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        capsule_id(id).ok_or_else(bad)?,
    ))
}
