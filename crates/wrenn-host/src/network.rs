//! Egress policy of a capsule: the wire object of the create body and of
//! `PUT /v1/capsules/{id}/network`, and its validation into address ranges.
//!
//! Semantics (the same as E2B's, so that front ends map onto it one to one):
//! - no fields: all egress is allowed;
//! - `allow_out` alone is an allow list: everything else is denied;
//! - `deny_out` lists ranges that are denied; an address matched by `allow_out` is allowed
//!   even when `deny_out` matches it too (allow takes precedence);
//! - `allow_internet: false` is `deny_out: ["0.0.0.0/0"]`.
//!
//! Isolation (the host, link-local metadata, other capsules) is not part of a policy: it
//! holds whatever the policy says.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// Most entries one list of a policy may hold.
pub const MAX_POLICY_ENTRIES: usize = 256;

/// The egress policy as clients send it and `GET` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicy {
    /// `false` denies all egress except `allow_out`; absent or `true` changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_internet: Option<bool>,
    /// CIDRs or IPv4 addresses that are always allowed.
    #[serde(default)]
    pub allow_out: Vec<String>,
    /// CIDRs or IPv4 addresses that are denied unless `allow_out` matches too.
    #[serde(default)]
    pub deny_out: Vec<String>,
}

/// An IPv4 range: network address and prefix length (the address has no host bits set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Range {
    /// Network address.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix: u8,
}

impl Ipv4Range {
    /// Every IPv4 address.
    pub const ANY: Ipv4Range = Ipv4Range {
        addr: Ipv4Addr::UNSPECIFIED,
        prefix: 0,
    };

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let mask = prefix_mask(self.prefix);
        u32::from(ip) & mask == u32::from(self.addr)
    }
}

impl std::fmt::Display for Ipv4Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

fn prefix_mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    }
}

/// A policy turned into the ranges the packet filter enforces: a destination in `allow` is
/// accepted, else one in `deny` is dropped, else it is accepted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressRules {
    /// Ranges accepted before `deny` is looked at.
    pub allow: Vec<Ipv4Range>,
    /// Ranges dropped unless `allow` matched.
    pub deny: Vec<Ipv4Range>,
}

impl EgressRules {
    /// Whether a packet to `ip` may leave (isolation aside).
    pub fn allows(&self, ip: Ipv4Addr) -> bool {
        self.allow.iter().any(|r| r.contains(ip)) || !self.deny.iter().any(|r| r.contains(ip))
    }
}

/// Parses one entry: `a.b.c.d` or `a.b.c.d/n`. The message names the offending value.
pub fn parse_range(entry: &str) -> Result<Ipv4Range, String> {
    let s = entry.trim();
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    if addr.contains(':') {
        return Err(format!(
            "{entry:?}: IPv6 ranges are not supported (capsules have IPv4 networking only)"
        ));
    }
    let ip: Ipv4Addr = match addr.parse() {
        Ok(ip) => ip,
        Err(_) if addr.chars().any(|c| c.is_ascii_alphabetic()) => {
            return Err(format!(
                "{entry:?}: host names are not supported in egress rules yet; give an IPv4 address or CIDR"
            ))
        }
        Err(_) => return Err(format!("{entry:?} is not an IPv4 address or CIDR")),
    };
    let prefix = match prefix {
        None => 32,
        Some(p) => match p.parse::<u8>() {
            Ok(n) if n <= 32 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(format!("{entry:?}: prefix length must be 0..=32")),
        },
    };
    let masked = Ipv4Addr::from(u32::from(ip) & prefix_mask(prefix));
    if masked != ip {
        return Err(format!(
            "{entry:?} has host bits set (the network is {masked}/{prefix})"
        ));
    }
    Ok(Ipv4Range { addr: ip, prefix })
}

fn parse_list(field: &str, list: &[String]) -> Result<Vec<Ipv4Range>, String> {
    if list.len() > MAX_POLICY_ENTRIES {
        return Err(format!(
            "{field} has {} entries (at most {MAX_POLICY_ENTRIES})",
            list.len()
        ));
    }
    let mut out: Vec<Ipv4Range> = list
        .iter()
        .map(|e| parse_range(e).map_err(|m| format!("{field}: {m}")))
        .collect::<Result<_, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

impl NetworkPolicy {
    /// Validates the policy and turns it into the ranges the packet filter enforces. The
    /// error message names the offending field and value.
    pub fn rules(&self) -> Result<EgressRules, String> {
        let allow = parse_list("allow_out", &self.allow_out)?;
        let mut deny = parse_list("deny_out", &self.deny_out)?;
        let allow_list_alone = !allow.is_empty() && deny.is_empty();
        if self.allow_internet == Some(false) || allow_list_alone {
            deny = vec![Ipv4Range::ANY];
        }
        Ok(EgressRules { allow, deny })
    }
}

/// The network of a capsule as `GET` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Whether the capsule has a network device with egress (false: no network at all).
    pub enabled: bool,
    /// Why it has none, when it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The egress policy in force (stored and applied again at resume).
    #[serde(default)]
    pub policy: NetworkPolicy,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn policy(allow_internet: Option<bool>, allow: &[&str], deny: &[&str]) -> EgressRules {
        NetworkPolicy {
            allow_internet,
            allow_out: allow.iter().map(|s| s.to_string()).collect(),
            deny_out: deny.iter().map(|s| s.to_string()).collect(),
        }
        .rules()
        .unwrap()
    }

    #[test]
    fn empty_policy_allows_everything() {
        let r = policy(None, &[], &[]);
        assert!(r.allows(ip("1.2.3.4")));
        assert!(r.allows(ip("198.18.0.1")));
        assert_eq!(r, EgressRules::default());
    }

    #[test]
    fn allow_out_alone_is_an_allow_list() {
        let r = policy(None, &["198.18.0.0/24"], &[]);
        assert!(r.allows(ip("198.18.0.9")));
        assert!(!r.allows(ip("198.18.1.1")));
        assert!(!r.allows(ip("8.8.8.8")));
    }

    #[test]
    fn allow_takes_precedence_over_deny() {
        let r = policy(None, &["198.18.0.1"], &["198.18.0.0/24"]);
        assert!(r.allows(ip("198.18.0.1")));
        assert!(!r.allows(ip("198.18.0.2")));
        assert!(r.allows(ip("8.8.8.8")), "outside deny_out stays allowed");
    }

    #[test]
    fn allow_internet_false_denies_all_but_allow_out() {
        let r = policy(Some(false), &["198.18.0.1"], &[]);
        assert!(r.allows(ip("198.18.0.1")));
        assert!(!r.allows(ip("198.18.0.2")));
        let r = policy(Some(false), &[], &[]);
        assert!(!r.allows(ip("1.1.1.1")));
        let r = policy(Some(true), &[], &["10.0.0.0/8"]);
        assert!(!r.allows(ip("10.1.1.1")));
        assert!(r.allows(ip("11.1.1.1")));
    }

    #[test]
    fn bad_entries_name_the_value() {
        for (entry, needle) in [
            ("1.2.3.4/33", "prefix length"),
            ("1.2.3.4/", "prefix length"),
            ("1.2.3.4/+8", "prefix length"),
            ("300.1.1.1", "not an IPv4"),
            ("", "not an IPv4"),
            ("example.com", "host names"),
            ("::1/128", "IPv6"),
            ("10.0.0.1/8", "host bits"),
        ] {
            let e = NetworkPolicy {
                deny_out: vec![entry.into()],
                ..Default::default()
            }
            .rules()
            .unwrap_err();
            assert!(e.contains(needle), "{entry}: {e}");
            assert!(e.contains("deny_out"), "{entry}: {e}");
            assert!(e.contains(&format!("{entry:?}")), "{entry}: {e}");
        }
    }

    #[test]
    fn too_many_entries_are_refused() {
        let p = NetworkPolicy {
            allow_out: (0..=MAX_POLICY_ENTRIES)
                .map(|i| format!("10.0.{}.{}", i / 256, i % 256))
                .collect(),
            ..Default::default()
        };
        assert!(p.rules().unwrap_err().contains("at most"));
    }

    #[test]
    fn wire_shape() {
        let p: NetworkPolicy =
            serde_json::from_str(r#"{"allow_internet":false,"allow_out":["1.2.3.4"]}"#).unwrap();
        assert_eq!(p.allow_internet, Some(false));
        assert!(serde_json::from_str::<NetworkPolicy>(r#"{"allow":[]}"#).is_err());
        let back = serde_json::to_value(&p).unwrap();
        assert_eq!(back["allow_out"][0], "1.2.3.4");
        assert_eq!(back["deny_out"], serde_json::json!([]));
    }
}
