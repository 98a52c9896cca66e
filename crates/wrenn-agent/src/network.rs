//! How the capsule manager uses host networking: which capsules get a network, the VMM's
//! network device, and what `GET` says about it.

use wrenn_host::{EgressRules, NetworkInfo, NetworkPolicy};
use wrenn_net::HostNetwork;
use wrenn_vmm::{NicBackend, NicSpec};

use crate::error::{AgentError, Result};
use crate::manifest::CapsuleManifest;

/// The host's networking as the manager sees it.
pub(crate) enum Networking {
    /// Capsule networks are made.
    On(HostNetwork),
    /// Off, and why (configuration, or no rights to manage networking).
    Off(String),
}

impl Networking {
    /// Starts host networking from the configuration; a host that cannot do it runs
    /// without, and says so once.
    pub(crate) async fn start(cfg: Option<wrenn_net::NetConfig>) -> Networking {
        let Some(cfg) = cfg else {
            return Networking::Off("capsule networking is turned off in the configuration".into());
        };
        match HostNetwork::start(cfg).await {
            Ok(n) => Networking::On(n),
            Err(e) => {
                let why = format!("this host cannot manage capsule networks ({e})");
                tracing::warn!("capsule networking is off: {why}");
                Networking::Off(why)
            }
        }
    }

    /// The host network when it is on.
    pub(crate) fn host(&self) -> Option<&HostNetwork> {
        match self {
            Networking::On(n) => Some(n),
            Networking::Off(_) => None,
        }
    }

    /// Makes the network of a capsule about to get a VMM (create, resume), if it has one.
    pub(crate) async fn attach(&self, m: &CapsuleManifest) -> Result<()> {
        if let Some(net) = self.serves(m) {
            net.create(&m.id, &rules(&m.network.policy)?).await?;
        }
        Ok(())
    }

    /// Removes the network of a capsule whose VMM has ended (pause, destroy, failures).
    pub(crate) async fn detach(&self, id: &str) {
        if let Some(net) = self.host() {
            if let Err(e) = net.remove(id).await {
                tracing::warn!(capsule = %id, error = %e, "removing the capsule network");
            }
        }
    }

    /// Whether a capsule of this manifest has (or gets, when its VMM runs) a network.
    pub(crate) fn serves(&self, m: &CapsuleManifest) -> Option<&HostNetwork> {
        self.host().filter(|_| m.network.nic)
    }

    /// The virtio-net device of a capsule's VMM: none for capsules made before networking,
    /// a tap in its namespace when networking is on, else a device without a backend.
    pub(crate) fn nic(&self, m: &CapsuleManifest) -> Option<NicSpec> {
        if !m.network.nic {
            return None;
        }
        let backend = match self.host() {
            Some(n) => NicBackend::Tap {
                netns: n.netns_path(&m.id),
                tap: wrenn_net::rules::TAP.to_owned(),
            },
            None => NicBackend::None,
        };
        Some(nic_spec(backend))
    }

    /// Name servers the guest is told after a restore (none without a network).
    pub(crate) fn nameservers(&self, m: &CapsuleManifest) -> Vec<String> {
        self.serves(m)
            .map(HostNetwork::guest_nameservers)
            .unwrap_or_default()
    }

    /// What `GET` shows about a capsule's network.
    pub(crate) fn info(&self, m: &CapsuleManifest) -> NetworkInfo {
        let reason = if !m.network.nic {
            Some(
                "made from a snapshot that has no network device (from before capsule networking)"
                    .into(),
            )
        } else if let Networking::Off(why) = self {
            Some(why.clone())
        } else {
            None
        };
        NetworkInfo {
            enabled: reason.is_none(),
            reason,
            policy: m.network.policy.clone(),
        }
    }
}

/// The guest's virtio-net device with `backend`.
pub(crate) fn nic_spec(backend: NicBackend) -> NicSpec {
    NicSpec {
        mac: wrenn_protocol::net::GUEST_MAC.to_owned(),
        backend,
    }
}

/// Validates a policy into the rules the packet filter enforces.
pub(crate) fn rules(policy: &NetworkPolicy) -> Result<EgressRules> {
    policy.rules().map_err(AgentError::InvalidRequest)
}
