//! Identifiers and secrets: capsule ids, API keys and their hashes, name rules.

use rand::Rng;
use sha2::{Digest, Sha256};

const ALNUM: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

fn random_alnum(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| ALNUM[rng.gen_range(0..ALNUM.len())] as char)
        .collect()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill(&mut buf[..]);
    hex::encode(buf)
}

/// A fresh capsule id: `cl-` + 25 chars of `[0-9a-z]`.
pub fn new_capsule_id() -> String {
    format!("cl-{}", random_alnum(wrenn_host::rules::CAPSULE_ID_RANDOM))
}

pub use wrenn_host::rules::{is_capsule_id, is_template_name};

/// A fresh id with a prefix (`team-`, `key-`…).
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", random_alnum(20))
}

/// A fresh API key: `wrn_` + 32 hex chars.
pub fn new_api_key() -> String {
    format!("wrn_{}", random_hex(16))
}

/// A fresh access token of a capsule's private port URLs: `wrn_at_` + 64 hex chars.
pub fn new_access_token() -> String {
    format!("wrn_at_{}", random_hex(32))
}

/// A fresh browser session token: `wrs_` + 64 hex chars (only its SHA-256 is stored).
pub fn new_session_token() -> String {
    format!("wrs_{}", random_hex(32))
}

/// True when `key` has the shape of an API key.
pub fn is_api_key(key: &str) -> bool {
    key.len() == 36 && key.starts_with("wrn_") && key[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// SHA-256 hex of a key or access token: the only form stored.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// The displayed prefix of a key (first 10 chars).
pub fn key_prefix(key: &str) -> String {
    key.chars().take(10).collect()
}

/// A fresh generated snapshot name.
pub fn new_snapshot_name() -> String {
    format!("snap-{}", random_alnum(12))
}

/// A fresh host-level template name for a snapshot (unique across teams).
pub fn new_host_template_name() -> String {
    format!("tsnap-{}", random_alnum(20))
}

/// A fresh build id: `bld-` + 20 chars of `[0-9a-z]`.
pub fn new_build_id() -> String {
    format!("bld-{}", random_alnum(20))
}

/// True when `id` has the shape of a build id.
pub fn is_build_id(id: &str) -> bool {
    id.len() == 24
        && id.starts_with("bld-")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
}

/// A fresh process tag.
pub fn new_tag() -> String {
    format!("proc-{}", random_alnum(12))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capsule_ids_roundtrip_and_reject_malformed() {
        let id = new_capsule_id();
        assert!(is_capsule_id(&id), "{id}");
        assert!(!is_capsule_id("cl-ABCDEFGHIJKLMNOPQRSTUVWXY"));
        assert!(!is_capsule_id("cl-123"));
        assert!(!is_capsule_id("xx-0123456789abcdefghijklmno"));
        assert!(is_capsule_id("cl-0123456789abcdefghijklmno"));
    }

    #[test]
    fn keys_have_contract_shape() {
        let k = new_api_key();
        assert!(is_api_key(&k));
        assert_eq!(key_prefix(&k).len(), 10);
        assert_eq!(hash_key(&k).len(), 64);
        assert_ne!(hash_key(&k), hash_key(&new_api_key()));
    }

    #[test]
    fn template_names() {
        assert!(is_template_name("foo"));
        assert!(is_template_name("a.b_c-d"));
        assert!(!is_template_name("-foo"));
        assert!(!is_template_name(""));
        assert!(!is_template_name("a/b"));
        assert!(!is_template_name(&"a".repeat(65)));
    }
}
