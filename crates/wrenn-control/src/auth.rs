//! API key authentication: the `X-API-Key` header, checked against stored SHA-256 hashes.

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
        let key = parts
            .headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .ok_or_else(|| ApiError::unauthorized("missing X-API-Key header"))?;
        authenticate(state, key).await
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
    Ok(Auth {
        team_id: found.team_id,
        team_name: found.team_name,
        actor: Actor {
            kind: "api_key",
            id: found.id,
            name: found.name,
        },
    })
}
