//! The E2B front end: E2B's REST API beside Wrenn's on the same listener, and its sandbox
//! data plane (envd's Connect RPCs and HTTP routes on port 49983, other ports through the
//! port proxy), so the published `e2b` SDK works unchanged against this server.
//!
//! A sandbox is a capsule: its E2B id is the capsule id without `cl-`. The translation from
//! E2B's envd protocol to ours lives here, on the control plane (decision 0010): the guest
//! keeps one protocol, and the E2B SDK's requests become calls of [`wrenn_envd_client`].
//!
//! One file per concern: [`sandboxes`] (REST), [`views`] (its JSON), [`dataplane`] (routing
//! and credentials of sandbox requests), [`process`] and [`filesystem`] (the RPC services),
//! [`files`] (`/files`), [`connect`] (the Connect framing), [`error`] (E2B's error body).

pub mod connect;
pub mod dataplane;
pub mod error;
pub mod files;
pub mod filesystem;
pub mod process;
pub mod sandboxes;
pub mod views;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::state::AppState;
use crate::store::StoreError;

/// The port envd answers on in an E2B sandbox.
pub const ENVD_PORT: u16 = 49983;
/// The port of E2B's code-interpreter API (`code-interpreter-v1`); its `/execute` needs the
/// sandbox's access token, as the SDK sends it.
pub const CODE_INTERPRETER_PORT: u16 = 49999;

/// The envd version we report: the SDK turns features on by it. Everything its gates up to
/// this version need is implemented (recursive watch 0.1.4, stdin flag 0.3.0, default user
/// 0.4.0, close stdin 0.5.2, octet-stream uploads 0.5.7); file metadata (0.6.2), watch
/// entries (0.6.3) and network-mount watches (0.6.4) are not.
pub const ENVD_VERSION: &str = "0.5.7";

/// The user commands run as and files belong to when the SDK names none (E2B's templates
/// have that user; so do ours).
pub const DEFAULT_USER: &str = "user";

/// Name of the stored secret the sandboxes' access tokens are derived from.
const TOKEN_SECRET: &str = "e2b_access_token_key";

/// The E2B id of a capsule: its id without `cl-`.
pub fn sandbox_id(capsule_id: &str) -> &str {
    capsule_id.strip_prefix("cl-").unwrap_or(capsule_id)
}

/// The capsule id of an E2B sandbox id, when it has the shape of one.
pub fn capsule_id(sandbox_id: &str) -> Option<String> {
    let id = format!("cl-{sandbox_id}");
    crate::ids::is_capsule_id(&id).then_some(id)
}

/// What the E2B front end keeps between requests.
#[derive(Debug, Default)]
pub struct Shared {
    token_key: tokio::sync::OnceCell<Vec<u8>>,
}

/// The two tokens of a sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// `envdAccessToken`: required by the data plane's envd routes (`X-Access-Token`).
    Envd,
    /// `trafficAccessToken`: required by the other ports of a sandbox without public traffic
    /// (`E2B-Traffic-Access-Token`).
    Traffic,
}

impl AppState {
    /// A sandbox's token: an HMAC of its id under the server's secret, so every replica and
    /// every later `connect` answers the same token without storing it.
    pub async fn e2b_token(&self, capsule_id: &str, kind: TokenKind) -> Result<String, StoreError> {
        let key = self
            .e2b
            .token_key
            .get_or_try_init(|| async {
                let hex_key = self
                    .store
                    .server_secret(TOKEN_SECRET, || {
                        let mut k = [0u8; 32];
                        rand::Rng::fill(&mut rand::thread_rng(), &mut k[..]);
                        hex::encode(k)
                    })
                    .await?;
                hex::decode(hex_key.trim())
                    .map_err(|e| StoreError::Corrupt(format!("server secret {TOKEN_SECRET}: {e}")))
            })
            .await?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
            .map_err(|e| StoreError::Corrupt(format!("server secret {TOKEN_SECRET}: {e}")))?;
        let label = match kind {
            TokenKind::Envd => "envd",
            TokenKind::Traffic => "traffic",
        };
        mac.update(label.as_bytes());
        mac.update(b":");
        mac.update(capsule_id.as_bytes());
        Ok(format!("ea_{}", hex::encode(mac.finalize().into_bytes())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_map_both_ways_and_refuse_other_shapes() {
        let cap = crate::ids::new_capsule_id();
        let sb = sandbox_id(&cap);
        assert!(!sb.contains('-'));
        assert_eq!(capsule_id(sb).as_deref(), Some(cap.as_str()));
        for bad in ["", "cl-x", "UPPER", "a.b", &"a".repeat(40)] {
            assert_eq!(capsule_id(bad), None, "{bad:?}");
        }
    }
}
