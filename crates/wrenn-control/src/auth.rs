//! Authentication: the `X-API-Key` header, or a browser session's cookie (made by
//! `POST /v1/sessions`), each checked against stored SHA-256 hashes.
//!
//! A cookie is sent by the browser on its own, so a request it authenticates must come from
//! this server's own pages: one with a foreign `Origin` (or `Sec-Fetch-Site: cross-site`) is
//! 403, and a WebSocket upgrade must carry an `Origin`, and ours. A key in a header cannot be
//! sent by another site's page, so key requests need no such check.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::api::error::ApiError;
use crate::core::events::Actor;
use crate::ids;
use crate::state::AppState;

/// An authenticated caller: the team its key belongs to.
#[derive(Debug, Clone)]
pub struct Auth {
    /// Team id.
    pub team_id: String,
    /// Team name.
    pub team_name: String,
    /// The key, as an event actor.
    pub actor: Actor,
}

impl Auth {
    /// True for keys of the admin team ([`crate::ADMIN_TEAM`]).
    pub fn is_admin(&self) -> bool {
        self.team_name == crate::ADMIN_TEAM
    }

    /// `Ok` for keys of the admin team, else 403 `forbidden`.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "only keys of the admin team may manage teams and keys",
            ))
        }
    }
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(key) = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
        {
            return authenticate(state, key).await;
        }
        let Some(token) = session_token(&parts.headers) else {
            return Err(ApiError::unauthorized(
                "missing X-API-Key header (or a session cookie from POST /v1/sessions)",
            ));
        };
        check_origin(&parts.headers, is_websocket(&parts.headers))?;
        authenticate_session(state, &token).await
    }
}

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "wrenn_session";

/// The session token of the request's cookie, if it has one of the right shape.
pub fn session_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|t| {
            t.len() == 68 && t.starts_with("wrs_") && t[4..].bytes().all(|b| b.is_ascii_hexdigit())
        })
}

fn is_websocket(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// `Ok` unless the request comes from another site's page: a foreign `Origin` (anything but
/// this server's own scheme and host, `null` included) or `Sec-Fetch-Site: cross-site`.
/// `require` (WebSocket upgrades, which browsers always send with an `Origin`) refuses a
/// request without one too.
pub fn check_origin(headers: &axum::http::HeaderMap, require: bool) -> Result<(), ApiError> {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    if cross_site {
        return Err(ApiError::forbidden(
            "a cross-site request cannot use the session cookie",
        ));
    }
    let origin = headers
        .get(axum::http::header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok());
    match (origin, host) {
        (None, _) if !require => Ok(()),
        (None, _) => Err(ApiError::forbidden(
            "a WebSocket with the session cookie must carry this server's Origin",
        )),
        (Some(origin), Some(host)) if same_origin(origin, host) => Ok(()),
        (Some(origin), _) => Err(ApiError::forbidden(format!(
            "origin {origin} may not use the session cookie of this server"
        ))),
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the host the request was sent to.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host.trim())
}

/// Checks a session token: the team of its key, or 401 `unauthorized` (unknown, expired,
/// signed out, or its key revoked).
pub async fn authenticate_session(state: &AppState, token: &str) -> Result<Auth, ApiError> {
    let found = state
        .store
        .session_key(&ids::hash_key(token))
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized("the session has ended (expired, signed out or its key revoked)")
        })?;
    Ok(Auth::from(found))
}

impl From<crate::store::KeyWithTeam> for Auth {
    /// The caller a stored key stands for.
    fn from(found: crate::store::KeyWithTeam) -> Self {
        Auth {
            team_id: found.team_id,
            team_name: found.team_name,
            actor: Actor {
                kind: "api_key",
                id: found.id,
                name: found.name,
            },
        }
    }
}

/// An authenticated caller of the admin team. As an extractor it refuses others (401 without
/// a valid key, 403 `forbidden` with another team's) before the request body is read, so a
/// non-admin learns nothing from how its body would have been judged.
pub struct AdminAuth(pub Auth);

impl FromRequestParts<AppState> for AdminAuth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = Auth::from_request_parts(parts, state).await?;
        auth.require_admin()?;
        Ok(AdminAuth(auth))
    }
}

/// Checks an API key against the store: the team it belongs to, or 401 `unauthorized`.
/// Records the key's use (at most once a minute, off the request path).
pub async fn authenticate(state: &AppState, key: &str) -> Result<Auth, ApiError> {
    if !ids::is_api_key(key) {
        return Err(ApiError::unauthorized("invalid API key"));
    }
    let found = state
        .store
        .key_by_hash(&ids::hash_key(key))
        .await?
        .ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
    if found
        .last_used_at
        .is_none_or(|t| crate::store::now_ms() - t > 60_000)
    {
        let store = state.store.clone();
        let id = found.id.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_key(&id).await {
                tracing::warn!(key = %id, error = %e, "could not record key use");
            }
        });
    }
    Ok(Auth::from(found))
}
