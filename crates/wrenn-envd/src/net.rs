//! The guest side of capsule networking: at boot, `lo` and `eth0` come up with the fixed
//! guest address and a default route through the gateway (see [`wrenn_protocol::net`]);
//! `/etc/resolv.conf` names the gateway's DNS forwarder at boot and whatever the host
//! sends after each restore. Interfaces are configured with plain ioctls, so any image works.

use std::net::Ipv4Addr;

use wrenn_protocol::net::{guest_netmask, GATEWAY_IP, GUEST_IFACE, GUEST_IP};

/// Path of the resolver configuration.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// A datagram socket used for interface ioctls, closed on drop.
struct IoctlSocket(libc::c_int);

impl IoctlSocket {
    fn new() -> std::io::Result<Self> {
        // SAFETY: plain socket(2); the fd is owned by the returned value.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(fd))
    }

    fn ioctl<T>(&self, request: libc::c_ulong, arg: &mut T) -> std::io::Result<()> {
        // SAFETY: `arg` is the structure the request expects (ifreq or rtentry), owned by
        // the caller for the duration of the call.
        let r = unsafe { libc::ioctl(self.0, request as _, arg as *mut T) };
        if r < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for IoctlSocket {
    fn drop(&mut self) {
        // SAFETY: closes the fd this value owns.
        unsafe {
            libc::close(self.0);
        }
    }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in name.bytes().take(libc::IFNAMSIZ - 1).enumerate() {
        req.ifr_name[i] = b as libc::c_char;
    }
    req
}

fn sockaddr_in(ip: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size; the kernel reads it as AF_INET.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

/// Sets IFF_UP (and IFF_RUNNING) on an interface.
pub fn link_up(name: &str) -> std::io::Result<()> {
    let sock = IoctlSocket::new()?;
    let mut req = ifreq(name);
    sock.ioctl(libc::SIOCGIFFLAGS, &mut req)?;
    // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
    unsafe {
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    }
    sock.ioctl(libc::SIOCSIFFLAGS, &mut req)
}

/// Whether the guest has a network device (`eth0`).
pub fn has_nic() -> bool {
    std::path::Path::new("/sys/class/net")
        .join(GUEST_IFACE)
        .exists()
}

/// Gives `eth0` the guest address, brings it up and routes everything through the gateway.
pub fn configure_eth0() -> std::io::Result<()> {
    let sock = IoctlSocket::new()?;
    let mut req = ifreq(GUEST_IFACE);
    req.ifr_ifru.ifru_addr = sockaddr_in(GUEST_IP);
    sock.ioctl(libc::SIOCSIFADDR, &mut req)?;
    let mut req = ifreq(GUEST_IFACE);
    req.ifr_ifru.ifru_netmask = sockaddr_in(guest_netmask());
    sock.ioctl(libc::SIOCSIFNETMASK, &mut req)?;
    link_up(GUEST_IFACE)?;
    // SAFETY: rtentry is plain old data; all-zero is a valid value.
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_genmask = sockaddr_in(Ipv4Addr::UNSPECIFIED);
    rt.rt_gateway = sockaddr_in(GATEWAY_IP);
    rt.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
    match sock.ioctl(libc::SIOCADDRT, &mut rt) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// The text of a resolv.conf naming `servers`.
pub fn resolv_conf(servers: &[String]) -> String {
    let mut s = String::from("# written by envd\n");
    for ns in servers {
        s.push_str("nameserver ");
        s.push_str(ns);
        s.push('\n');
    }
    s
}

/// Writes `/etc/resolv.conf` (under `root`) atomically. Only valid IP addresses are written:
/// the list comes from the host, and nothing else may end up in the file.
pub fn write_resolv_conf(root: &std::path::Path, servers: &[String]) -> std::io::Result<()> {
    let valid: Vec<String> = servers
        .iter()
        .filter(|s| s.parse::<std::net::IpAddr>().is_ok())
        .take(3)
        .cloned()
        .collect();
    if valid.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "no valid name server address",
        ));
    }
    let path = root.join(RESOLV_CONF.trim_start_matches('/'));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("wrenn-tmp");
    std::fs::write(&tmp, resolv_conf(&valid))?;
    // A symlink (systemd-resolved style) is replaced by the file.
    std::fs::rename(&tmp, &path)
}

/// Boot-time setup: `lo`, and `eth0` with DNS through the gateway when there is a NIC.
pub fn setup_at_boot() {
    if let Err(e) = link_up("lo") {
        tracing::warn!("bring up lo: {e}");
    }
    if !has_nic() {
        tracing::info!("no network device");
        return;
    }
    match configure_eth0() {
        Ok(()) => tracing::info!(ip = %GUEST_IP, gateway = %GATEWAY_IP, "eth0 configured"),
        Err(e) => tracing::warn!("configure {GUEST_IFACE}: {e}"),
    }
    if let Err(e) = write_resolv_conf(std::path::Path::new("/"), &[GATEWAY_IP.to_string()]) {
        tracing::warn!("write {RESOLV_CONF}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_keeps_only_addresses() {
        let dir = tempfile::tempdir().unwrap();
        write_resolv_conf(
            dir.path(),
            &[
                "169.254.0.22".into(),
                "evil\nsearch attacker".into(),
                "fd00::1".into(),
            ],
        )
        .unwrap();
        let text = std::fs::read_to_string(dir.path().join("etc/resolv.conf")).unwrap();
        assert_eq!(
            text,
            "# written by envd\nnameserver 169.254.0.22\nnameserver fd00::1\n"
        );
        assert!(write_resolv_conf(dir.path(), &["nonsense".into()]).is_err());
    }
}
