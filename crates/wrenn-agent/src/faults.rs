//! Fault injection for crash-safety tests: die (as if `kill -9`) or kill the VMM at a named
//! step of a lifecycle operation. Off unless a test sets it.

use std::sync::Arc;

/// A step of pause, resume, create, snapshot or destroy at which a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// Pause: status `pausing` stored, nothing saved yet.
    PauseStarted,
    /// Pause: device state saved and snapshot directory in place, VMM still alive.
    PauseSaved,
    /// Pause: VMM ended, status not yet stored as paused.
    PauseVmmEnded,
    /// Resume: status `resuming` stored, no VMM yet.
    ResumeStarted,
    /// Resume: VMM restored (vCPUs stopped), snapshot not yet consumed.
    ResumeRestored,
    /// Resume: vCPUs running, envd not yet re-synced.
    ResumeRunning,
    /// Create: manifest (`starting`) and copied files in place, no VMM yet.
    CreateCopied,
    /// Create: VMM restored and guest synced, status not yet stored as running.
    CreateRestored,
    /// Snapshot as template: the capsule is paused, the template not yet copied.
    SnapshotPaused,
    /// Snapshot as template: the template is in place, the capsule not yet resumed.
    SnapshotPublished,
    /// Destroy: status `stopping` stored, the VMM still running.
    DestroyStarted,
    /// Destroy: the VMM ended, its directory and network still there.
    DestroyVmmEnded,
}

impl FaultPoint {
    /// The points of create.
    pub const CREATE: [FaultPoint; 2] = [FaultPoint::CreateCopied, FaultPoint::CreateRestored];
    /// The points of snapshot-as-template.
    pub const SNAPSHOT: [FaultPoint; 2] =
        [FaultPoint::SnapshotPaused, FaultPoint::SnapshotPublished];

    /// The points of destroy.
    pub const DESTROY: [FaultPoint; 2] = [FaultPoint::DestroyStarted, FaultPoint::DestroyVmmEnded];

    /// Every point of pause and resume, in the order an operation passes them.
    pub const ALL: [FaultPoint; 6] = [
        FaultPoint::PauseStarted,
        FaultPoint::PauseSaved,
        FaultPoint::PauseVmmEnded,
        FaultPoint::ResumeStarted,
        FaultPoint::ResumeRestored,
        FaultPoint::ResumeRunning,
    ];
}

/// What to do at a fault point.
#[derive(Clone)]
pub enum FaultAction {
    /// End this process at once with SIGKILL, like `kill -9` of the agent.
    KillAgent,
    /// Run a hook (a test kills the VMM from it).
    Hook(Arc<dyn Fn() + Send + Sync>),
}

/// Installed faults (none by default).
#[derive(Clone, Default)]
pub struct Faults {
    at: Option<(FaultPoint, FaultAction)>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faults")
            .field("at", &self.at.as_ref().map(|a| a.0))
            .finish()
    }
}

impl Faults {
    /// Injects `action` at `point`.
    pub fn at(point: FaultPoint, action: FaultAction) -> Self {
        Self {
            at: Some((point, action)),
        }
    }

    /// Called by the manager at each point.
    pub(crate) fn hit(&self, point: FaultPoint) {
        let Some((p, action)) = &self.at else { return };
        if *p != point {
            return;
        }
        match action {
            FaultAction::KillAgent => {
                tracing::warn!(?point, "fault injection: killing the agent");
                // SAFETY: sending SIGKILL to ourselves.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
            }
            FaultAction::Hook(f) => f(),
        }
    }
}
