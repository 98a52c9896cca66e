//! Who may use a capsule's port URLs.
//!
//! A capsule's ports are `public` (anyone who knows the URL reaches them, like Wrenn's) or
//! `private`: then a request needs the owning team's API key or the capsule's access token
//! (a random secret shown once in the create answer; only its SHA-256 is stored). A key of
//! another team is answered as if the capsule did not exist, in either mode: a request that
//! carries an `X-API-Key` is always checked (401 for an invalid one).

use serde::{Deserialize, Serialize};

use crate::api::error::ApiError;
use crate::auth::authenticate;
use crate::ids;
use crate::state::AppState;
use crate::store::CapsuleRow;

/// Access mode of a capsule's port URLs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortsMode {
    /// No credential needed.
    #[default]
    Public,
    /// The owning team's API key or the capsule's access token.
    Private,
}

impl PortsMode {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            PortsMode::Public => "public",
            PortsMode::Private => "private",
        }
    }

    /// The mode of a stored name; anything but `public` is treated as private.
    pub fn from_stored(s: &str) -> PortsMode {
        if s == "public" {
            PortsMode::Public
        } else {
            PortsMode::Private
        }
    }
}

/// The credentials a port-URL request carries.
#[derive(Debug, Clone, Default)]
pub struct PortCredentials {
    /// `X-API-Key`.
    pub api_key: Option<String>,
    /// `X-Access-Token` header or `access_token` query parameter.
    pub access_token: Option<String>,
}

/// Compares two byte strings in time independent of where they differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// True when `token` is the capsule's access token.
fn token_matches(row: &CapsuleRow, token: &str) -> bool {
    row.access_token_hash
        .as_deref()
        .is_some_and(|h| same_secret(h.as_bytes(), ids::hash_key(token).as_bytes()))
}

impl AppState {
    /// Whether a request with `creds` may reach the ports of `row`: `Ok` for public capsules
    /// and for the owning team's key or the capsule's token; 401 without a valid credential;
    /// 404 (as for an unknown capsule) for another team's key.
    pub async fn authorize_port(
        &self,
        row: &CapsuleRow,
        creds: &PortCredentials,
    ) -> Result<(), ApiError> {
        let public = PortsMode::from_stored(&row.ports) == PortsMode::Public;
        if !public {
            if let Some(token) = &creds.access_token {
                if token_matches(row, token) {
                    return Ok(());
                }
            }
        }
        // A key that comes along is checked even where none is needed: a client (the SDK's
        // code runner sends its key) never reaches another team's capsule by its URL.
        if let Some(key) = &creds.api_key {
            let auth = authenticate(self, key).await?;
            if auth.team_id == row.team_id {
                return Ok(());
            }
            return Err(ApiError::not_found(format!("capsule {} not found", row.id)));
        }
        if public {
            return Ok(());
        }
        if creds.access_token.is_some() {
            return Err(ApiError::unauthorized(format!(
                "invalid access token for the ports of capsule {}",
                row.id
            )));
        }
        Err(ApiError::unauthorized(format!(
            "the ports of capsule {} are private: send the team's X-API-Key, or its access \
             token as X-Access-Token or ?access_token=",
            row.id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_round_trip() {
        assert_eq!(
            serde_json::from_str::<PortsMode>("\"private\"").unwrap(),
            PortsMode::Private
        );
        assert!(serde_json::from_str::<PortsMode>("\"open\"").is_err());
        assert_eq!(PortsMode::from_stored("public"), PortsMode::Public);
        assert_eq!(PortsMode::from_stored("private"), PortsMode::Private);
        assert_eq!(PortsMode::from_stored("?"), PortsMode::Private);
    }

    #[test]
    fn constant_time_compare() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
