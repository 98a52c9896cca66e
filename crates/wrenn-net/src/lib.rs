//! Capsule networking on the host.
//!
//! Every capsule with a network device gets its own network namespace
//! `wr-<agent tag>-<capsule id>` holding:
//! - `tap0`, the backend of QEMU's virtio-net (QEMU is started inside the namespace), with the
//!   gateway address and MAC that every guest sees ([`wrenn_protocol::net`]);
//! - `veth0`, the namespace end of a veth pair whose host end is `wrn<slot>` (see [`slots`]);
//! - the capsule table of [`rules`]: DNS to the gateway, egress policy, source NAT;
//! - a DNS forwarder on the gateway address, held by the agent ([`dns`]).
//!
//! The host table of [`rules`] isolates every capsule from the host, the link-local range
//! and the other capsules, and masquerades the pool towards the outside.
//!
//! Links, addresses and routes are made with `ip -batch` and rules with `nft -f`: one
//! process and one transaction per step (see docs/decisions/0003-capsule-networking.md).

pub mod cmd;
pub mod dns;
mod error;
pub mod rules;
pub mod slots;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use wrenn_host::EgressRules;
use wrenn_protocol::net::{GATEWAY_IP, GATEWAY_MAC, GUEST_PREFIX};

pub use error::{NetError, Result};
pub use slots::{Pool, SlotAddrs, Slots};

/// Where `ip netns` keeps its namespace files.
pub const NETNS_DIR: &str = "/run/netns";

/// How the host's capsule networking is set up.
#[derive(Debug, Clone)]
pub struct NetConfig {
    /// Slot files (shared by every agent on the host): `/run/wrenn/net` by default.
    pub state_dir: PathBuf,
    /// Host-side address pool; every agent on a host must use the same one.
    pub pool: Pool,
    /// Most capsule networks this agent holds at once.
    pub max_networks: u32,
    /// Short tag naming this agent's namespaces (`wr-<tag>-…`), so that several agents on
    /// one host only ever sweep their own.
    pub tag: String,
    /// Where the DNS forwarders send queries.
    pub dns_upstreams: Vec<SocketAddr>,
}

impl NetConfig {
    /// Defaults: pool `10.11.0.0/16`, 1024 networks, the resolvers of `/etc/resolv.conf`.
    pub fn new(tag: impl Into<String>) -> Self {
        let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Self {
            state_dir: PathBuf::from("/run/wrenn/net"),
            pool: Pool::new(std::net::Ipv4Addr::new(10, 11, 0, 0), 16)
                .expect("the default pool is valid"),
            max_networks: 1024,
            tag: tag.into(),
            dns_upstreams: dns::parse_resolv_conf(&text),
        }
    }
}

/// The host's capsule networking: creates, adopts, changes and removes capsule networks.
pub struct HostNetwork {
    cfg: NetConfig,
    slots: Slots,
    dns: Mutex<HashMap<String, JoinHandle<()>>>,
    /// Serialises counting this agent's slots and claiming one.
    claiming: Mutex<()>,
}

impl std::fmt::Debug for HostNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostNetwork")
            .field("cfg", &self.cfg)
            .finish()
    }
}

impl Drop for HostNetwork {
    /// Ends the DNS forwarders (their sockets close); the namespaces stay, for the next
    /// agent process to adopt.
    fn drop(&mut self) {
        for (_, task) in lock(&self.dns).drain() {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NetError::Policy(format!("network task failed: {e}")))?
}

impl HostNetwork {
    /// Installs the host table and turns on IPv4 forwarding. Fails on a host where this
    /// process may not manage networking (no CAP_NET_ADMIN, no `ip` or `nft`).
    pub async fn start(cfg: NetConfig) -> Result<HostNetwork> {
        let slots = Slots::new(&cfg.state_dir, cfg.pool.capacity())?;
        let table = rules::host_table(&cfg.pool);
        blocking(move || {
            cmd::nft(&table, None)?;
            let fwd = Path::new("/proc/sys/net/ipv4/ip_forward");
            std::fs::write(fwd, "1").map_err(NetError::io("enabling", fwd))?;
            Ok(())
        })
        .await?;
        tracing::info!(pool = %cfg.pool.cidr(), max = cfg.max_networks, upstreams = ?cfg.dns_upstreams, "capsule networking ready");
        Ok(HostNetwork {
            cfg,
            slots,
            dns: Mutex::new(HashMap::new()),
            claiming: Mutex::new(()),
        })
    }

    /// Name of the namespace of a capsule.
    pub fn netns_name(&self, capsule: &str) -> String {
        format!("wr-{}-{capsule}", self.cfg.tag)
    }

    /// Path of the namespace of a capsule (what QEMU is started in).
    pub fn netns_path(&self, capsule: &str) -> PathBuf {
        Path::new(NETNS_DIR).join(self.netns_name(capsule))
    }

    /// The name servers a guest should use: the forwarder on its gateway.
    pub fn guest_nameservers(&self) -> Vec<String> {
        vec![GATEWAY_IP.to_string()]
    }

    /// Makes a capsule's network (removing a stale one of the same name first) with the
    /// policy `rules`, and starts its DNS forwarder. On failure nothing of it is left.
    pub async fn create(&self, capsule: &str, rules: &EgressRules) -> Result<SlotAddrs> {
        let name = self.netns_name(capsule);
        self.remove(capsule).await?;
        let n = self.claim(&name)?;
        let addrs = self.cfg.pool.slot(n);
        let made = {
            let (name, addrs, table) = (name.clone(), addrs.clone(), rules::capsule_table(rules));
            let path = self.netns_path(capsule);
            blocking(move || build(&name, &path, &addrs, &table)).await
        };
        if let Err(e) = made.and_then(|()| self.start_dns(capsule)) {
            tracing::warn!(capsule, error = %e, "capsule network setup failed; removing it");
            let _ = self.remove(capsule).await;
            return Err(e);
        }
        tracing::debug!(capsule, slot = n, ns = %addrs.ns, "capsule network made");
        Ok(addrs)
    }

    /// Re-attaches to the network of a capsule whose VMM survived an agent restart: the
    /// namespace must exist; the policy is applied again and the DNS forwarder restarted.
    pub async fn adopt(&self, capsule: &str, rules: &EgressRules) -> Result<()> {
        let path = self.netns_path(capsule);
        if !path.exists() || self.slots.find(&self.netns_name(capsule))?.is_none() {
            return Err(NetError::Io {
                op: "adopting",
                path,
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        let table = rules::capsule_table(rules);
        let p = path.clone();
        blocking(move || cmd::nft(&table, Some(&p))).await?;
        self.start_dns(capsule)
    }

    /// Replaces the egress policy of a live capsule network in one transaction.
    pub async fn set_policy(&self, capsule: &str, rules: &EgressRules) -> Result<()> {
        let script = rules::policy_update(rules);
        let path = self.netns_path(capsule);
        blocking(move || cmd::nft(&script, Some(&path))).await
    }

    /// Removes a capsule's network: DNS forwarder, namespace (with its veth, tap and rules),
    /// a leftover host veth, and its slot. Idempotent.
    pub async fn remove(&self, capsule: &str) -> Result<()> {
        if let Some(task) = lock(&self.dns).remove(capsule) {
            task.abort();
        }
        let name = self.netns_name(capsule);
        let slot = self.slots.find(&name)?;
        let veth = slot.map(|n| self.cfg.pool.slot(n).host_veth);
        let path = self.netns_path(capsule);
        blocking(move || teardown(&name, &path, veth.as_deref())).await?;
        if let Some(n) = slot {
            self.slots.release(n)?;
        }
        Ok(())
    }

    /// Removes every network of this agent whose capsule is not in `keep`, and frees slots
    /// of this agent whose namespace is gone. Returns the capsules whose network was removed.
    pub async fn sweep(&self, keep: &HashSet<String>) -> Result<Vec<String>> {
        let prefix = format!("wr-{}-", self.cfg.tag);
        let mut found: HashSet<String> = HashSet::new();
        if let Ok(rd) = std::fs::read_dir(NETNS_DIR) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if let Some(id) = n.strip_prefix(&prefix) {
                    found.insert(id.to_owned());
                }
            }
        }
        for (_, owner) in self.slots.claimed()? {
            if let Some(id) = owner.strip_prefix(&prefix) {
                found.insert(id.to_owned());
            }
        }
        let mut removed = Vec::new();
        for id in found {
            if !keep.contains(&id) {
                self.remove(&id).await?;
                removed.push(id);
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// Capsules of this agent that have a namespace now (for diagnostics and tests).
    pub fn namespaces(&self) -> Vec<String> {
        let prefix = format!("wr-{}-", self.cfg.tag);
        let mut out: Vec<String> = std::fs::read_dir(NETNS_DIR)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_prefix(&prefix)
                    .map(str::to_owned)
            })
            .collect();
        out.sort();
        out
    }

    /// Claims a slot unless this agent already holds `max_networks` of them.
    fn claim(&self, name: &str) -> Result<u32> {
        let _one_at_a_time = lock(&self.claiming);
        let prefix = format!("wr-{}-", self.cfg.tag);
        let held = self
            .slots
            .claimed()?
            .iter()
            .filter(|(_, o)| o.starts_with(&prefix))
            .count();
        if held >= self.cfg.max_networks as usize {
            return Err(NetError::Exhausted {
                max: self.cfg.max_networks,
            });
        }
        self.slots.claim(name)
    }

    fn start_dns(&self, capsule: &str) -> Result<()> {
        let socket = dns::bind_udp_in(
            &self.netns_path(capsule),
            SocketAddr::new(GATEWAY_IP.into(), 53),
        )?;
        let task = tokio::spawn(dns::serve(socket, Arc::new(self.cfg.dns_upstreams.clone())));
        if let Some(old) = lock(&self.dns).insert(capsule.to_owned(), task) {
            old.abort();
        }
        Ok(())
    }
}

/// Creates the namespace, the veth pair, the tap, addresses, routes and the capsule table.
fn build(name: &str, path: &Path, a: &SlotAddrs, table: &str) -> Result<()> {
    cmd::run("ip", &["netns", "add", name], "", None)?;
    let (veth, host, ns) = (&a.host_veth, a.host, a.ns);
    let ns_veth = rules::NS_VETH;
    cmd::ip_batch(
        &format!(
            "link add {veth} type veth peer name {ns_veth} netns {name}\n\
             addr add {host}/30 dev {veth}\n\
             link set {veth} up\n"
        ),
        None,
    )?;
    let tap = rules::TAP;
    cmd::ip_batch(
        &format!(
            "link set lo up\n\
             tuntap add dev {tap} mode tap\n\
             link set {tap} address {GATEWAY_MAC}\n\
             addr add {GATEWAY_IP}/{GUEST_PREFIX} dev {tap}\n\
             link set {tap} up\n\
             addr add {ns}/30 dev {ns_veth}\n\
             link set {ns_veth} up\n\
             route add default via {host}\n"
        ),
        Some(path),
    )?;
    cmd::run("sysctl", &["-qw", "net.ipv4.ip_forward=1"], "", Some(path))?;
    cmd::nft(table, Some(path))
}

/// Deletes the namespace (its links and rules go with it) and a leftover host veth.
fn teardown(name: &str, path: &Path, host_veth: Option<&str>) -> Result<()> {
    if path.exists() {
        cmd::run("ip", &["netns", "del", name], "", None)?;
    }
    if let Some(veth) = host_veth {
        if Path::new("/sys/class/net").join(veth).exists() {
            // Gone with the namespace unless a process still holds it.
            let _ = cmd::run("ip", &["link", "del", veth], "", None);
        }
    }
    Ok(())
}
