//! The host-side address pool and the slots handed out of it.
//!
//! Each capsule network holds one slot `n` of the pool: the /30 at `pool + 4n`, with the
//! host's veth end at `+1` and the namespace's end at `+2`, and the host veth name
//! `wrn<n>`. A slot is claimed by creating the file `<state dir>/slot-<n>` exclusively; it
//! holds the name of the namespace that owns it. The files are the allocator's state: they
//! survive an agent restart (also after `kill -9`), are shared by every agent on the host
//! (no two capsules get one slot), and live under `/run`, which a reboot clears together
//! with the namespaces themselves.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::error::{NetError, Result};

/// An IPv4 block that capsule slots are cut from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    base: Ipv4Addr,
    prefix: u8,
}

impl Pool {
    /// A pool; the base must be the network address of a /8../28 block.
    pub fn new(base: Ipv4Addr, prefix: u8) -> Result<Pool> {
        if !(8..=28).contains(&prefix) {
            return Err(NetError::Policy(format!(
                "address pool prefix /{prefix} must be between /8 and /28"
            )));
        }
        let mask = u32::MAX << (32 - u32::from(prefix));
        if u32::from(base) & !mask != 0 {
            return Err(NetError::Policy(format!(
                "address pool {base}/{prefix} has host bits set"
            )));
        }
        Ok(Pool { base, prefix })
    }

    /// `a.b.c.d/n`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.base, self.prefix)
    }

    /// How many /30 slots the pool holds.
    pub fn capacity(&self) -> u32 {
        1u32 << (32 - u32::from(self.prefix) - 2)
    }

    /// Addresses of slot `n`.
    pub fn slot(&self, n: u32) -> SlotAddrs {
        let block = u32::from(self.base) + 4 * n;
        SlotAddrs {
            host: Ipv4Addr::from(block + 1),
            ns: Ipv4Addr::from(block + 2),
            host_veth: format!("{}{n}", crate::rules::HOST_VETH_PREFIX),
        }
    }
}

/// The host side of one capsule network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotAddrs {
    /// Address of the host's veth end (the namespace's default gateway).
    pub host: Ipv4Addr,
    /// Address of the namespace's veth end (guest traffic leaves with it).
    pub ns: Ipv4Addr,
    /// Name of the host's veth end.
    pub host_veth: String,
}

/// The slot files of a host.
#[derive(Debug, Clone)]
pub struct Slots {
    dir: PathBuf,
    max: u32,
}

impl Slots {
    /// Slots `0..max` recorded in `dir`.
    pub fn new(dir: impl Into<PathBuf>, max: u32) -> Result<Slots> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(NetError::io("creating", &dir))?;
        Ok(Slots { dir, max })
    }

    fn file(&self, n: u32) -> PathBuf {
        self.dir.join(format!("slot-{n}"))
    }

    /// Claims the lowest free slot for namespace `owner`.
    pub fn claim(&self, owner: &str) -> Result<u32> {
        for n in 0..self.max {
            let path = self.file(n);
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(owner.as_bytes())
                        .and_then(|_| f.sync_all())
                        .map_err(NetError::io("writing", &path))?;
                    return Ok(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(NetError::io("creating", &path)(e)),
            }
        }
        Err(NetError::Exhausted { max: self.max })
    }

    /// Gives a slot back.
    pub fn release(&self, n: u32) -> Result<()> {
        let path = self.file(n);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(NetError::io("removing", &path)(e)),
        }
    }

    /// Every claimed slot with the namespace that owns it.
    pub fn claimed(&self) -> Result<Vec<(u32, String)>> {
        let rd = std::fs::read_dir(&self.dir).map_err(NetError::io("reading", &self.dir))?;
        let mut out = Vec::new();
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(n) = name
                .strip_prefix("slot-")
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let owner = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.push((n, owner.trim().to_owned()));
        }
        out.sort();
        Ok(out)
    }

    /// The slot owned by namespace `owner`, if any.
    pub fn find(&self, owner: &str) -> Result<Option<u32>> {
        Ok(self
            .claimed()?
            .into_iter()
            .find(|(_, o)| o == owner)
            .map(|(n, _)| n))
    }

    /// The directory of the slot files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_addresses() {
        let p = Pool::new("10.11.0.0".parse().unwrap(), 16).unwrap();
        assert_eq!(p.capacity(), 16384);
        let s = p.slot(3);
        assert_eq!(s.host, "10.11.0.13".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.ns, "10.11.0.14".parse::<Ipv4Addr>().unwrap());
        assert_eq!(s.host_veth, "wrn3");
        assert!(Pool::new("10.11.0.1".parse().unwrap(), 16).is_err());
        assert!(Pool::new("10.0.0.0".parse().unwrap(), 30).is_err());
    }

    #[test]
    fn claims_are_exclusive_bounded_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let slots = Slots::new(dir.path(), 2).unwrap();
        assert_eq!(slots.claim("a").unwrap(), 0);
        assert_eq!(slots.claim("b").unwrap(), 1);
        assert!(matches!(
            slots.claim("c"),
            Err(NetError::Exhausted { max: 2 })
        ));
        let again = Slots::new(dir.path(), 2).unwrap();
        assert_eq!(again.find("b").unwrap(), Some(1));
        assert_eq!(
            again.claimed().unwrap(),
            vec![(0, "a".to_owned()), (1, "b".to_owned())]
        );
        again.release(0).unwrap();
        again.release(0).unwrap();
        assert_eq!(slots.claim("c").unwrap(), 0);
    }
}
