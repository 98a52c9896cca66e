//! Browser sessions: `POST /v1/sessions` exchanges an API key for a cookie (HttpOnly,
//! SameSite=Strict, Secure when the request came over TLS), `GET` shows the session,
//! `DELETE` signs out. The key itself never goes back to the browser; the cookie holds a
//! random token whose SHA-256 is all the store keeps. How a cookie authenticates a request,
//! and the Origin rule that comes with it, is [`crate::auth`]'s.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use crate::api::error::ApiError;
use crate::auth::{authenticate, check_origin, session_token, Auth, SESSION_COOKIE};
use crate::ids;
use crate::state::AppState;

/// Body of `POST /v1/sessions`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    api_key: String,
}

/// Whether the client reached us over TLS (a TLS-terminating proxy in front says so).
fn over_tls(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get("forwarded")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("proto=https"));
    forwarded_proto || forwarded
}

fn cookie(value: &str, max_age: u64, secure: bool) -> Result<HeaderValue, ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .map_err(|e| ApiError::internal(format!("session cookie: {e}")))
}

/// `POST /v1/sessions`: 201 with the session, and its cookie.
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // A page of another site must not sign a browser in (to a key of its choosing).
    check_origin(&headers, false)?;
    let req: SignIn = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("invalid JSON body: {e}")))?;
    let auth = authenticate(&state, req.api_key.trim()).await?;
    let token = ids::new_session_token();
    let ttl = state.config.session_ttl;
    let expires_at = crate::store::now_ms() + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    state
        .store
        .insert_session(&ids::hash_key(&token), &auth.actor.id, expires_at)
        .await?;
    let mut resp = (
        StatusCode::CREATED,
        Json(json!({
            "team": auth.team_name,
            "key_id": auth.actor.id,
            "key_name": auth.actor.name,
            "expires_at": crate::store::rfc3339(expires_at),
        })),
    )
        .into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        cookie(&token, ttl.as_secs(), over_tls(&headers))?,
    );
    Ok(resp)
}

/// `GET /v1/sessions`: who the caller is (a session or a key).
pub async fn show(auth: Auth) -> Json<serde_json::Value> {
    Json(json!({
        "team": auth.team_name,
        "key_id": auth.actor.id,
        "key_name": auth.actor.name,
        "admin": auth.is_admin(),
    }))
}

/// `DELETE /v1/sessions`: ends the cookie's session (if any) and clears the cookie; 204.
pub async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_origin(&headers, false)?;
    if let Some(token) = session_token(&headers) {
        state.store.delete_session(&ids::hash_key(&token)).await?;
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, cookie("", 0, over_tls(&headers))?);
    Ok(resp)
}
