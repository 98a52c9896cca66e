//! Errors of the core's operations: one enum per operation, each variant naming what failed.
//! The API maps them to the contract's status codes (`api::error`).

use std::time::Duration;

use wrenn_host::HostError;

use crate::core::status::CapsuleStatus;
use crate::store::StoreError;

/// A capsule or template lookup by a team.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// No such capsule (or not the team's).
    #[error("capsule {0} not found")]
    NotFound(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why admission refused a create.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    /// Too many creates wait for the host already.
    #[error("too many capsule creates in progress; retry later")]
    Busy,
    /// The host has no room.
    #[error("{0}")]
    NoRoom(String),
    /// Asking the host failed.
    #[error(transparent)]
    Host(#[from] HostError),
}

/// Errors of [`crate::core::Core::create_capsule`].
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The egress policy does not validate.
    #[error("network: {0}")]
    InvalidPolicy(String),
    /// No base template or team snapshot of that name.
    #[error("template {0} not found")]
    TemplateNotFound(String),
    /// The template is one Wrenn ships a recipe for, and it is not built yet: its build runs.
    #[error(
        "template {template} is being built from the recipe Wrenn ships (build {build_id}); \
         creates of it work once the build succeeds (follow it: wrenn template logs {build_id})"
    )]
    TemplateBuilding {
        /// Template name.
        template: String,
        /// The build.
        build_id: String,
    },
    /// The template's first-use build failed a short while ago.
    #[error(
        "template {template} is not built: its build {build_id} failed ({error}); \
         retry with wrenn template build {template}"
    )]
    TemplateBuildFailed {
        /// Template name.
        template: String,
        /// The build.
        build_id: String,
        /// Why it failed.
        error: String,
    },
    /// Starting the template's build failed.
    #[error("template {template} could not be built: {source}")]
    FirstUseBuild {
        /// Template name.
        template: String,
        /// Why.
        source: Box<BuildError>,
    },
    /// Admission refused it.
    #[error(transparent)]
    Admission(#[from] AdmissionError),
    /// It was destroyed before the host finished making it.
    #[error("capsule {id} was {status} before it finished starting")]
    Overtaken {
        /// Capsule id.
        id: String,
        /// Its status then.
        status: CapsuleStatus,
    },
    /// The host did not finish in time (the capsule is cleaned up).
    #[error("host did not create the capsule within {0:?}")]
    Timeout(Duration),
    /// The host refused or failed.
    #[error(transparent)]
    Host(HostError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task that ran the create ended abnormally.
    #[error("create task failed: {0}")]
    Task(String),
}

impl From<LookupError> for CreateError {
    /// A row gone while its create ran was destroyed meanwhile.
    fn from(e: LookupError) -> Self {
        match e {
            LookupError::Store(s) => CreateError::Store(s),
            LookupError::NotFound(id) => CreateError::Overtaken {
                id,
                status: CapsuleStatus::Stopped,
            },
        }
    }
}

/// Errors of [`crate::core::Core::pause_capsule`] and [`crate::core::Core::resume_capsule`].
#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    /// The capsule is not in the status the operation starts from.
    #[error("capsule {id} is {status}, not {needs}")]
    InvalidState {
        /// Capsule id.
        id: String,
        /// Its status.
        status: CapsuleStatus,
        /// The status the operation needs.
        needs: CapsuleStatus,
    },
    /// The operation found the capsule dead (its VM gone or broken); it is stored so.
    #[error("cannot {op} capsule {id}: it is {status} ({cause})")]
    Dead {
        /// `pause` or `resume`.
        op: &'static str,
        /// Capsule id.
        id: String,
        /// Its status now.
        status: CapsuleStatus,
        /// What the host said.
        cause: HostError,
    },
    /// The host did not finish in time.
    #[error("{op} did not finish within {after:?}")]
    Timeout {
        /// `pause` or `resume`.
        op: &'static str,
        /// The bound.
        after: Duration,
    },
    /// The host refused or failed.
    #[error(transparent)]
    Host(HostError),
    /// The capsule row went away.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task that ran the operation ended abnormally.
    #[error("task failed: {0}")]
    Task(String),
}

/// Errors of [`crate::core::Core::destroy_capsule`].
#[derive(Debug, thiserror::Error)]
pub enum DestroyError {
    /// The host failed to destroy it.
    #[error(transparent)]
    Host(HostError),
    /// The capsule row went away.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task that ran the destroy ended abnormally.
    #[error("destroy task failed: {0}")]
    Task(String),
    /// A TTL destroy found the capsule active again (or no longer running).
    #[error("capsule {0} is no longer idle")]
    NoLongerIdle(String),
}

/// Errors of [`crate::core::Core::set_network`].
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The policy does not validate.
    #[error("network: {0}")]
    InvalidPolicy(String),
    /// The capsule is neither running nor paused.
    #[error(
        "capsule {id} is {status}; its network policy can change while it is running or paused"
    )]
    InvalidState {
        /// Capsule id.
        id: String,
        /// Its status.
        status: CapsuleStatus,
    },
    /// The host did not apply it in time.
    #[error("host did not apply the network policy of {id} within {after:?}")]
    Timeout {
        /// Capsule id.
        id: String,
        /// The bound.
        after: Duration,
    },
    /// The host refused or failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The capsule row went away.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors of [`crate::core::Core::create_snapshot`].
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The capsule id is malformed.
    #[error("malformed capsule id {0:?}")]
    InvalidId(String),
    /// The name breaks the template name rule.
    #[error("invalid snapshot name {0:?}: must match ^[a-zA-Z0-9][a-zA-Z0-9._-]{{0,63}}$")]
    InvalidName(String),
    /// The name is a base template's.
    #[error("{0} is a base template name")]
    BaseName(String),
    /// The team has a snapshot of that name and overwrite was not asked.
    #[error("snapshot {0} exists; pass overwrite=true to replace it")]
    Exists(String),
    /// The capsule is not running.
    #[error("capsule {id} is {status}, not running")]
    NotRunning {
        /// Capsule id.
        id: String,
        /// Its status.
        status: CapsuleStatus,
    },
    /// The host refused or failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The capsule row went away.
    #[error(transparent)]
    Lookup(#[from] LookupError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The task that made the snapshot ended abnormally.
    #[error("snapshot task failed: {0}")]
    Task(String),
}

/// Errors of [`crate::core::Core::delete_snapshot`].
#[derive(Debug, thiserror::Error)]
pub enum DeleteSnapshotError {
    /// The name breaks the template name rule.
    #[error("invalid snapshot name {0:?}")]
    InvalidName(String),
    /// Base templates cannot be deleted.
    #[error("{0} is a protected base template")]
    Protected(String),
    /// The team has no snapshot of that name.
    #[error("snapshot {0} not found")]
    NotFound(String),
    /// The host failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors of [`crate::core::Core::templates`].
#[derive(Debug, thiserror::Error)]
pub enum ListTemplatesError {
    /// The host could not list its base templates.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Errors of template builds ([`crate::core::builds`]).
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The template name breaks the naming rule.
    #[error(
        "bad template name {0:?}: lowercase letters, digits, '.', '_' and '-', 1 to 64 characters"
    )]
    InvalidName(String),
    /// The name is one of the host's own base templates.
    #[error("{0} is a built-in base template and cannot be rebuilt")]
    BaseName(String),
    /// No recipe given and none shipped under the name.
    #[error("no recipe given, and Wrenn ships none named {0}")]
    NoRecipe(String),
    /// The recipe does not parse.
    #[error("the recipe has errors:\n{0}")]
    Recipe(wrenn_recipe::RecipeErrors),
    /// The build context is unusable or lacks a `COPY` source.
    #[error(transparent)]
    Context(#[from] crate::core::builds::context::ContextError),
    /// vCPUs or memory out of range.
    #[error("{0}")]
    InvalidShape(String),
    /// The recipe's `FROM` names no base or built template.
    #[error("base template {0} not found")]
    BaseNotFound(String),
    /// A build of that name runs already.
    #[error("a build of {0} is already running")]
    Busy(String),
    /// No such build.
    #[error("build {0} not found")]
    NotFound(String),
    /// The build has ended (nothing to cancel).
    #[error("build {id} has already ended ({status})")]
    Ended {
        /// Build id.
        id: String,
        /// How it ended.
        status: crate::core::builds::BuildStatus,
    },
    /// No built template of that name.
    #[error("built template {0} not found")]
    TemplateNotFound(String),
    /// The host refused or failed.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Something that should not fail did.
    #[error("{0}")]
    Internal(String),
}

/// Errors that arise from a template-name lookup (host or store) become the caller's own.
macro_rules! from_template_lookup {
    ($($target:ident),*) => {$(
        impl From<ListTemplatesError> for $target {
            fn from(e: ListTemplatesError) -> Self {
                match e {
                    ListTemplatesError::Host(h) => $target::Host(h),
                    ListTemplatesError::Store(s) => $target::Store(s),
                }
            }
        }
    )*};
}
from_template_lookup!(SnapshotError, DeleteSnapshotError);
