//! The status of a capsule as the control plane stores and shows it.

use wrenn_host::HostStatus;

/// Lifecycle status of a capsule. Stored by [`CapsuleStatus::as_str`]; the same names are
/// the contract's `status` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CapsuleStatus {
    /// The host is making it.
    Starting,
    /// Its VM runs and envd answers.
    Running,
    /// A pause is in progress.
    Pausing,
    /// Its full state is on disk; no VM process.
    Paused,
    /// A resume is in progress.
    Resuming,
    /// A snapshot template is being made from it.
    Snapshotting,
    /// A destroy is in progress.
    Stopping,
    /// Destroyed; the row stays for usage history.
    Stopped,
    /// The host no longer holds it.
    Missing,
    /// Broken: its VM died, or an operation failed and left it unusable.
    Error,
}

impl CapsuleStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [CapsuleStatus; 10] = [
        CapsuleStatus::Starting,
        CapsuleStatus::Running,
        CapsuleStatus::Pausing,
        CapsuleStatus::Paused,
        CapsuleStatus::Resuming,
        CapsuleStatus::Snapshotting,
        CapsuleStatus::Stopping,
        CapsuleStatus::Stopped,
        CapsuleStatus::Missing,
        CapsuleStatus::Error,
    ];

    /// The stored and shown name.
    pub const fn as_str(self) -> &'static str {
        match self {
            CapsuleStatus::Starting => "starting",
            CapsuleStatus::Running => "running",
            CapsuleStatus::Pausing => "pausing",
            CapsuleStatus::Paused => "paused",
            CapsuleStatus::Resuming => "resuming",
            CapsuleStatus::Snapshotting => "snapshotting",
            CapsuleStatus::Stopping => "stopping",
            CapsuleStatus::Stopped => "stopped",
            CapsuleStatus::Missing => "missing",
            CapsuleStatus::Error => "error",
        }
    }

    /// The status of a stored name.
    pub fn parse(name: &str) -> Option<CapsuleStatus> {
        CapsuleStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// True for statuses an operation passes through (pausing, resuming…): only the
    /// operation that set one may move the capsule on.
    pub const fn is_transitional(self) -> bool {
        matches!(
            self,
            CapsuleStatus::Starting
                | CapsuleStatus::Pausing
                | CapsuleStatus::Resuming
                | CapsuleStatus::Snapshotting
                | CapsuleStatus::Stopping
        )
    }

    /// True when the capsule is dead for good (its VM gone or broken, or destroyed).
    pub const fn is_dead(self) -> bool {
        matches!(
            self,
            CapsuleStatus::Stopped | CapsuleStatus::Missing | CapsuleStatus::Error
        )
    }
}

impl From<HostStatus> for CapsuleStatus {
    fn from(s: HostStatus) -> Self {
        match s {
            HostStatus::Starting => CapsuleStatus::Starting,
            HostStatus::Running => CapsuleStatus::Running,
            HostStatus::Pausing => CapsuleStatus::Pausing,
            HostStatus::Paused => CapsuleStatus::Paused,
            HostStatus::Resuming => CapsuleStatus::Resuming,
            HostStatus::Snapshotting => CapsuleStatus::Snapshotting,
            HostStatus::Stopping => CapsuleStatus::Stopping,
            HostStatus::Error => CapsuleStatus::Error,
        }
    }
}

impl std::fmt::Display for CapsuleStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for CapsuleStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        CapsuleStatus::parse(&s).ok_or_else(|| format!("unknown capsule status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in CapsuleStatus::ALL {
            assert_eq!(CapsuleStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CapsuleStatus::parse("hibernated"), None);
    }
}
