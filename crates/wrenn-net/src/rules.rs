//! The nftables rule sets, rendered as `nft -f` scripts (each one atomic transaction).
//!
//! Two tables, both named `inet wrenn`:
//! - **host** (the root namespace, shared by every capsule): isolation that no policy can
//!   lift: nothing from a capsule's veth reaches the host itself (input), another capsule or
//!   the link-local range (forward); nothing from outside starts a connection into a
//!   capsule; and masquerade of the capsule address pool towards the outside.
//! - **capsule** (inside each capsule's namespace): the guest may reach the gateway's DNS
//!   forwarder and nothing else of the namespace; its egress passes the policy's `allow` and
//!   `deny` interval sets; its source address is rewritten to the namespace's veth address.
//!   Removing the namespace removes this table with it.

use std::fmt::Write;

use wrenn_host::{EgressRules, Ipv4Range};
use wrenn_protocol::net::{GATEWAY_IP, GUEST_IP};

use crate::slots::Pool;

/// Prefix of the host-side veth names (`wrn<slot>`), matched as `wrn*` by the host rules.
pub const HOST_VETH_PREFIX: &str = "wrn";
/// The namespace side of the veth pair.
pub const NS_VETH: &str = "veth0";
/// The tap device QEMU's virtio-net uses, inside the namespace.
pub const TAP: &str = "tap0";

/// The host table: isolation of every capsule and NAT of the pool.
pub fn host_table(pool: &Pool) -> String {
    let p = HOST_VETH_PREFIX;
    format!(
        "add table inet wrenn
flush table inet wrenn
table inet wrenn {{
  chain input {{
    type filter hook input priority -10; policy accept;
    iifname \"{p}*\" counter reject with icmpx admin-prohibited
  }}
  chain forward {{
    type filter hook forward priority -10; policy accept;
    iifname \"{p}*\" oifname \"{p}*\" counter reject with icmpx admin-prohibited
    iifname \"{p}*\" ip daddr {{ 169.254.0.0/16, {pool} }} counter reject with icmpx admin-prohibited
    oifname \"{p}*\" ct state established,related accept
    oifname \"{p}*\" counter drop
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    ip saddr {pool} oifname != \"{p}*\" masquerade
  }}
}}
",
        pool = pool.cidr()
    )
}

fn elements(ranges: &[Ipv4Range]) -> String {
    let mut s = String::new();
    for (i, r) in ranges.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{r}");
    }
    s
}

fn set_elements(set: &str, ranges: &[Ipv4Range]) -> String {
    if ranges.is_empty() {
        return String::new();
    }
    format!("add element inet wrenn {set} {{ {} }}\n", elements(ranges))
}

/// The capsule table, created inside the capsule's namespace, with the policy's sets filled.
pub fn capsule_table(rules: &EgressRules) -> String {
    let mut s = format!(
        "add table inet wrenn
flush table inet wrenn
table inet wrenn {{
  set allow {{ type ipv4_addr; flags interval; auto-merge; }}
  set deny {{ type ipv4_addr; flags interval; auto-merge; }}
  chain input {{
    type filter hook input priority 0; policy drop;
    iifname \"lo\" accept
    iifname \"{TAP}\" ip saddr {GUEST_IP} ip daddr {GATEWAY_IP} udp dport 53 accept
    iifname \"{TAP}\" ip protocol icmp icmp type echo-request ip daddr {GATEWAY_IP} accept
    iifname \"{TAP}\" counter reject with icmpx admin-prohibited
  }}
  chain forward {{
    type filter hook forward priority 0; policy drop;
    iifname \"{TAP}\" oifname \"{NS_VETH}\" ip saddr {GUEST_IP} ip daddr @allow accept
    iifname \"{TAP}\" oifname \"{NS_VETH}\" ip daddr @deny counter reject with icmpx admin-prohibited
    iifname \"{TAP}\" oifname \"{NS_VETH}\" ip saddr {GUEST_IP} accept
    iifname \"{NS_VETH}\" oifname \"{TAP}\" ct state established,related accept
  }}
  chain postrouting {{
    type nat hook postrouting priority 100; policy accept;
    oifname \"{NS_VETH}\" ip saddr {GUEST_IP} masquerade
  }}
}}
"
    );
    s.push_str(&set_elements("allow", &rules.allow));
    s.push_str(&set_elements("deny", &rules.deny));
    s
}

/// Replaces the policy sets of a capsule table in one transaction: no packet sees half of
/// the old policy and half of the new.
pub fn policy_update(rules: &EgressRules) -> String {
    let mut s = String::from("flush set inet wrenn allow\nflush set inet wrenn deny\n");
    s.push_str(&set_elements("allow", &rules.allow));
    s.push_str(&set_elements("deny", &rules.deny));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use wrenn_host::NetworkPolicy;

    fn rules(allow: &[&str], deny: &[&str], internet: Option<bool>) -> EgressRules {
        NetworkPolicy {
            allow_internet: internet,
            allow_out: allow.iter().map(|s| s.to_string()).collect(),
            deny_out: deny.iter().map(|s| s.to_string()).collect(),
        }
        .rules()
        .unwrap()
    }

    #[test]
    fn empty_policy_fills_no_set() {
        let s = capsule_table(&rules(&[], &[], None));
        assert!(!s.contains("add element"));
        assert!(s.contains("policy drop"));
        assert_eq!(
            policy_update(&rules(&[], &[], None)),
            "flush set inet wrenn allow\nflush set inet wrenn deny\n"
        );
    }

    #[test]
    fn allow_list_denies_the_rest() {
        let s = policy_update(&rules(&["198.18.0.1", "10.0.0.0/8"], &[], None));
        assert!(s.contains("add element inet wrenn allow { 10.0.0.0/8, 198.18.0.1/32 }"));
        assert!(s.contains("add element inet wrenn deny { 0.0.0.0/0 }"));
    }

    #[test]
    fn allow_is_checked_before_deny() {
        let s = capsule_table(&rules(&["198.18.0.1"], &["198.18.0.0/24"], None));
        let allow = s.find("@allow accept").unwrap();
        let deny = s.find("@deny").unwrap();
        assert!(allow < deny);
    }

    #[test]
    fn host_table_isolates_the_pool() {
        let pool = Pool::new("10.11.0.0".parse().unwrap(), 16).unwrap();
        let s = host_table(&pool);
        assert!(s.contains("ip daddr { 169.254.0.0/16, 10.11.0.0/16 }"));
        assert!(s.contains("ip saddr 10.11.0.0/16 oifname != \"wrn*\" masquerade"));
        assert!(s.contains("chain input"));
    }
}
