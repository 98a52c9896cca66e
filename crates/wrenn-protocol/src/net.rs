//! The network every guest sees. It is the same inside every capsule's network namespace
//! (address, MAC, gateway), so a snapshot, its clones and a resumed capsule need no
//! reconfiguration: only the host side of each namespace differs.

use std::net::Ipv4Addr;

/// The guest's address on `eth0`.
pub const GUEST_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 21);
/// Prefix length of the guest's link (a /30: guest and gateway).
pub const GUEST_PREFIX: u8 = 30;
/// The gateway: the tap device on the host side of the guest's link. It also serves DNS.
pub const GATEWAY_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 0, 22);
/// MAC address of the guest's virtio-net device.
pub const GUEST_MAC: &str = "02:fc:00:00:00:15";
/// MAC address of the gateway (tap) side, fixed so the guest's neighbour cache stays valid
/// across restores.
pub const GATEWAY_MAC: &str = "02:fc:00:00:00:16";
/// Name of the guest's network interface.
pub const GUEST_IFACE: &str = "eth0";

/// The netmask of [`GUEST_PREFIX`].
pub fn guest_netmask() -> Ipv4Addr {
    Ipv4Addr::from(u32::MAX << (32 - u32::from(GUEST_PREFIX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_and_gateway_share_the_link() {
        let mask = u32::from(guest_netmask());
        assert_eq!(guest_netmask(), Ipv4Addr::new(255, 255, 255, 252));
        assert_eq!(u32::from(GUEST_IP) & mask, u32::from(GATEWAY_IP) & mask);
        assert_ne!(GUEST_IP, GATEWAY_IP);
    }
}
