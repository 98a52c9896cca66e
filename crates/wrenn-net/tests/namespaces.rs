//! Real namespaces, veths, taps and nftables rules (needs root with CAP_NET_ADMIN).

use std::collections::HashSet;
use std::process::Command;

use wrenn_host::NetworkPolicy;
use wrenn_net::{HostNetwork, NetConfig};

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host-wide slot files are shared by every agent (and test) on the host, as in
/// production: only the tag differs.
async fn network(tag: &str, max: u32) -> HostNetwork {
    let mut cfg = NetConfig::new(tag);
    cfg.max_networks = max;
    HostNetwork::start(cfg).await.expect("host networking")
}

fn policy(deny: &[&str]) -> wrenn_host::EgressRules {
    NetworkPolicy {
        deny_out: deny.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
    .rules()
    .unwrap()
}

#[tokio::test]
async fn create_policy_remove_leaves_nothing() {
    let tag = format!("t{:x}", std::process::id());
    let net = network(&tag, 1024).await;
    let addrs = net
        .create("cl-a", &policy(&["198.18.5.0/24"]))
        .await
        .unwrap();
    let ns = net.netns_name("cl-a");
    assert!(sh("ip netns list").contains(&ns));
    let links = sh(&format!("ip -n {ns} -br link"));
    assert!(links.contains("tap0") && links.contains("veth0"), "{links}");
    assert!(sh("ip -br link").contains(&addrs.host_veth));
    let rules = sh(&format!("ip netns exec {ns} nft list set inet wrenn deny"));
    assert!(rules.contains("198.18.5.0/24"), "{rules}");

    net.set_policy("cl-a", &policy(&["198.18.6.0/24"]))
        .await
        .unwrap();
    let rules = sh(&format!("ip netns exec {ns} nft list set inet wrenn deny"));
    assert!(
        rules.contains("198.18.6.0/24") && !rules.contains("198.18.5.0"),
        "{rules}"
    );

    // A second network gets its own slot; the namespace sees the same gateway.
    let b = net.create("cl-b", &policy(&[])).await.unwrap();
    assert_ne!(b.host_veth, addrs.host_veth);
    let addr_b = sh(&format!(
        "ip -n {} -br addr show tap0",
        net.netns_name("cl-b")
    ));
    assert!(addr_b.contains("169.254.0.22/30"), "{addr_b}");

    // Adopting after a restart works from the slot files alone.
    drop(net);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let again = network(&tag, 1024).await;
    again.adopt("cl-a", &policy(&[])).await.unwrap();
    let removed = again
        .sweep(&HashSet::from(["cl-a".to_owned()]))
        .await
        .unwrap();
    assert_eq!(removed, vec!["cl-b".to_owned()]);
    again.remove("cl-a").await.unwrap();
    again.remove("cl-a").await.unwrap();
    assert!(!sh("ip netns list").contains(&format!("wr-{tag}-")));
    assert!(!sh("ip -br link").contains(&addrs.host_veth));
    assert!(!sh("ip -br link").contains(&b.host_veth));
    let slots = wrenn_net::Slots::new("/run/wrenn/net", 1024).unwrap();
    assert!(
        !slots
            .claimed()
            .unwrap()
            .iter()
            .any(|(_, o)| o.contains(&tag)),
        "slots of this agent are all released"
    );
}

#[tokio::test]
async fn the_limit_is_a_clear_error() {
    let tag = format!("u{:x}", std::process::id());
    let net = network(&tag, 1).await;
    net.create("cl-x", &policy(&[])).await.unwrap();
    let e = net.create("cl-y", &policy(&[])).await.unwrap_err();
    assert!(
        matches!(e, wrenn_net::NetError::Exhausted { max: 1 }),
        "{e}"
    );
    assert!(!sh("ip netns list").contains(&net.netns_name("cl-y")));
    net.remove("cl-x").await.unwrap();
}
