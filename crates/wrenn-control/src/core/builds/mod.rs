//! Template builds from recipes. A build boots a capsule from the recipe's base template, runs
//! its steps, starts its `START` processes, waits for its healthcheck and snapshots the
//! capsule into a template that every team sees as a base template; capsules made from it
//! start with those processes running. A failed, cancelled or interrupted build leaves no
//! template and no capsule behind, and its whole log stays readable.
//!
//! - [`context`]: the archive `COPY` takes files from.
//! - [`log`]: the numbered, stored and followable log.
//! - [`run`]: the runner of one build.
//! - [`shipped`]: the recipes that come with Wrenn (`code-runner-beta`).

pub mod context;
pub mod log;
pub mod run;
pub mod shipped;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use wrenn_host::{rules, HostError};

use crate::core::error::BuildError;
use crate::core::events::Actor;
use crate::core::Core;
use crate::ids;
use crate::store::{now_ms, BuildRow, BuiltTemplateRow};
use context::BuildContext;
use log::BuildLog;

/// Where a build is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BuildStatus {
    /// Waiting for a build slot.
    Queued,
    /// Running its steps.
    Running,
    /// The template is made.
    Succeeded,
    /// A step, the healthcheck or the snapshot failed (or the server stopped during it).
    Failed,
    /// Cancelled.
    Cancelled,
}

impl BuildStatus {
    /// Every status.
    pub const ALL: [BuildStatus; 5] = [
        BuildStatus::Queued,
        BuildStatus::Running,
        BuildStatus::Succeeded,
        BuildStatus::Failed,
        BuildStatus::Cancelled,
    ];

    /// Name in the store and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Queued => "queued",
            BuildStatus::Running => "running",
            BuildStatus::Succeeded => "succeeded",
            BuildStatus::Failed => "failed",
            BuildStatus::Cancelled => "cancelled",
        }
    }

    /// True once the build has ended.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            BuildStatus::Succeeded | BuildStatus::Failed | BuildStatus::Cancelled
        )
    }
}

impl std::fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for BuildStatus {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        BuildStatus::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| format!("unknown build status {s:?}"))
    }
}

/// A request to build a template.
#[derive(Debug, Clone)]
pub struct BuildSpec {
    /// Name of the template to make (replaces an earlier built one of that name).
    pub name: String,
    /// The recipe text; `None` builds the recipe Wrenn ships under `name`.
    pub recipe: Option<String>,
    /// vCPUs of the build capsule and of capsules made from the template.
    pub vcpus: Option<u32>,
    /// MiB of the build capsule and of capsules made from the template.
    pub memory_mb: Option<u32>,
    /// The build context archive (tar or tar.gz); for a shipped recipe, its own files.
    pub context: Option<Vec<u8>>,
}

/// vCPUs of a build when the request names none.
pub const DEFAULT_BUILD_VCPUS: u32 = 2;
/// Memory of a build when the request names none.
pub const DEFAULT_BUILD_MEMORY_MB: u32 = 1024;
/// Builds that run at once; more wait as `queued`.
pub const MAX_RUNNING_BUILDS: usize = 2;
/// Metadata key naming the build on its capsule.
pub const BUILD_LABEL: &str = "wrenn.build";

/// The builds this control plane runs now.
pub struct Builds {
    running: Mutex<HashMap<String, RunningBuild>>,
    slots: Arc<tokio::sync::Semaphore>,
}

/// Handles of a build in progress.
#[derive(Clone)]
pub struct RunningBuild {
    /// Its name (one build per name at a time).
    pub name: String,
    /// Cancels it.
    pub cancel: CancellationToken,
    /// Its log.
    pub log: BuildLog,
}

impl Default for Builds {
    fn default() -> Self {
        Self::new()
    }
}

impl Builds {
    /// No builds yet.
    pub fn new() -> Self {
        Self {
            running: Mutex::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(MAX_RUNNING_BUILDS)),
        }
    }

    /// The handles of a build in progress.
    pub fn get(&self, id: &str) -> Option<RunningBuild> {
        self.lock().get(id).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunningBuild>> {
        // A panic while holding the map leaves it usable: entries are plain handles.
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a build unless one of the same name runs; false then.
    fn register(&self, id: &str, build: RunningBuild) -> bool {
        let mut map = self.lock();
        if map.values().any(|b| b.name == build.name) {
            return false;
        }
        map.insert(id.to_owned(), build);
        true
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub(crate) fn slots(&self) -> Arc<tokio::sync::Semaphore> {
        self.slots.clone()
    }
}

/// A template listed to every team as a base template, built from a recipe.
pub type BuiltTemplate = BuiltTemplateRow;

impl Core {
    /// Starts a build; answers at once with the queued build (follow it with
    /// [`Core::build`] and [`Core::follow_build_log`]).
    pub async fn start_build(
        &self,
        team_id: &str,
        actor: &Actor,
        spec: BuildSpec,
    ) -> Result<BuildRow, BuildError> {
        if !rules::is_template_name(&spec.name) {
            return Err(BuildError::InvalidName(spec.name));
        }
        if self.is_host_base_template(&spec.name).await? {
            return Err(BuildError::BaseName(spec.name));
        }
        let (text, archive) = match (spec.recipe, shipped::recipe(&spec.name)) {
            (Some(text), _) => (text, spec.context),
            (None, Some(shipped)) => (shipped.recipe.to_owned(), Some(shipped.context()?)),
            (None, None) => return Err(BuildError::NoRecipe(spec.name)),
        };
        let recipe = wrenn_recipe::parse(&text).map_err(BuildError::Recipe)?;
        let vcpus = spec.vcpus.unwrap_or(DEFAULT_BUILD_VCPUS);
        let memory_mb = spec.memory_mb.unwrap_or(DEFAULT_BUILD_MEMORY_MB);
        rules::check_shape(i64::from(vcpus), i64::from(memory_mb))
            .map_err(BuildError::InvalidShape)?;
        let context = match &archive {
            Some(bytes) => BuildContext::from_archive(bytes)?,
            None => BuildContext::empty(),
        };
        for step in &recipe.steps {
            if let wrenn_recipe::StepKind::Copy { sources, .. } = &step.kind {
                if let Some(missing) = sources.iter().find(|s| !context.contains(s)) {
                    return Err(context::ContextError::Missing {
                        line: step.line,
                        source_path: missing.clone(),
                    }
                    .into());
                }
            }
        }
        let base = recipe.base().to_owned();
        if !self.is_host_base_template(&base).await? && self.built(&base).await?.is_none() {
            return Err(BuildError::BaseNotFound(base));
        }
        let row = BuildRow {
            id: ids::new_build_id(),
            name: spec.name.clone(),
            status: BuildStatus::Queued,
            recipe: text,
            base,
            vcpus: i64::from(vcpus),
            memory_mb: i64::from(memory_mb),
            step: 0,
            steps: run::step_count(&recipe),
            phase: "queued".into(),
            capsule_id: None,
            host_template: None,
            error: None,
            created_at: now_ms(),
            started_at: None,
            finished_at: None,
        };
        let handles = RunningBuild {
            name: spec.name.clone(),
            cancel: CancellationToken::new(),
            log: BuildLog::new(&row.id, self.store.clone()),
        };
        if !self.builds.register(&row.id, handles.clone()) {
            return Err(BuildError::Busy(spec.name));
        }
        if let Err(e) = self.store.insert_build(&row).await {
            self.builds.remove(&row.id);
            return Err(e.into());
        }
        tracing::info!(build = %row.id, template = %row.name, "build queued");
        let runner = run::Runner {
            core: self.clone(),
            build: row.clone(),
            recipe,
            context,
            team_id: team_id.to_owned(),
            actor: actor.clone(),
            handles,
        };
        let core = self.clone();
        let id = row.id.clone();
        tokio::spawn(async move {
            runner.run().await;
            core.builds.remove(&id);
        });
        Ok(row)
    }

    /// One build.
    pub async fn build(&self, id: &str) -> Result<BuildRow, BuildError> {
        if !ids::is_build_id(id) {
            return Err(BuildError::NotFound(id.to_owned()));
        }
        self.store
            .build(id)
            .await?
            .ok_or_else(|| BuildError::NotFound(id.to_owned()))
    }

    /// The latest builds, newest first.
    pub async fn list_builds(&self, limit: i64) -> Result<Vec<BuildRow>, BuildError> {
        Ok(self.store.list_builds(limit).await?)
    }

    /// Asks a build to stop; it then cleans up and ends `cancelled`. A build that has ended
    /// is `InvalidState`.
    pub async fn cancel_build(&self, id: &str) -> Result<BuildRow, BuildError> {
        let row = self.build(id).await?;
        match self.builds.get(id) {
            Some(b) if !row.status.is_final() => {
                b.cancel.cancel();
                Ok(row)
            }
            _ => Err(BuildError::Ended {
                id: id.to_owned(),
                status: row.status,
            }),
        }
    }

    /// The log of a build: entries so far, and a live receiver while it runs.
    pub async fn follow_build_log(&self, id: &str) -> Result<BuildLogView, BuildError> {
        let row = self.build(id).await?;
        if let Some(b) = self.builds.get(id) {
            let f = b.log.follow().await?;
            return Ok(BuildLogView {
                past: f.past,
                live: Some(f.live),
            });
        }
        Ok(BuildLogView {
            past: log::read_stored(&self.store, &row.id, 0, i64::MAX).await?,
            live: None,
        })
    }

    /// A built template by name.
    pub async fn built(&self, name: &str) -> Result<Option<BuiltTemplate>, BuildError> {
        Ok(self.store.built_template(name).await?)
    }

    /// Every built template.
    pub async fn built_templates(&self) -> Result<Vec<BuiltTemplate>, BuildError> {
        Ok(self.store.list_built_templates().await?)
    }

    /// Deletes a built template (capsules made from it keep running).
    pub async fn delete_built_template(&self, name: &str) -> Result<(), BuildError> {
        let Some(row) = self.store.built_template(name).await? else {
            return Err(BuildError::TemplateNotFound(name.to_owned()));
        };
        match self.host.delete_template(&row.host_name).await {
            Ok(()) | Err(HostError::NotFound(_)) => {}
            Err(e) => return Err(BuildError::Host(e)),
        }
        self.store.delete_built_template(name).await?;
        tracing::info!(template = %name, "built template deleted");
        Ok(())
    }

    /// After a restart: every build that had not ended failed with the server; its capsule
    /// and a template it was making are removed.
    pub async fn recover_builds(&self) -> Result<(), BuildError> {
        for b in self.store.unfinished_builds().await? {
            tracing::warn!(build = %b.id, template = %b.name, "build interrupted by a restart");
            let log = BuildLog::new(&b.id, self.store.clone());
            // Numbering goes on after what the earlier run stored.
            let stored = log::read_stored(&self.store, &b.id, 0, i64::MAX).await?;
            log.resume_at(stored.last().map_or(0, |r| r.seq + 1)).await;
            run::clean_up(self, &b, &log).await;
            let why = "the server stopped during the build";
            log.push(b.step, log::LogStream::Error, why).await;
            log.flush().await?;
            self.store
                .finish_build(&b.id, BuildStatus::Failed, Some(why), now_ms())
                .await?;
        }
        Ok(())
    }

    /// A create asked for `name`, which no template has: when Wrenn ships a recipe of that
    /// name, its build is started (as the admin team) unless one runs or failed lately, and
    /// the create is told to come back ([`FirstUse`]). `None` for any other name.
    ///
    /// Boxed: a build creates a capsule, and a create may start a build; the box breaks that
    /// cycle of future types.
    pub fn build_on_first_use<'a>(
        &'a self,
        name: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<Option<FirstUse>, BuildError>> {
        Box::pin(self.first_use_build(name))
    }

    async fn first_use_build(&self, name: &str) -> Result<Option<FirstUse>, BuildError> {
        if shipped::recipe(name).is_none() {
            return Ok(None);
        }
        if let Some(last) = self.store.latest_build(name).await? {
            if !last.status.is_final() {
                return Ok(Some(FirstUse::Building(last.id)));
            }
            let recent = now_ms() - last.finished_at.unwrap_or(0) < FIRST_USE_RETRY_AFTER_MS;
            if last.status == BuildStatus::Failed && recent {
                return Ok(Some(FirstUse::Failed {
                    id: last.id,
                    error: last.error.unwrap_or_default(),
                }));
            }
        }
        let Some(admin) = self.store.team_by_name(crate::keys::ADMIN_TEAM).await? else {
            return Err(BuildError::Internal("the admin team is missing".into()));
        };
        let spec = BuildSpec {
            name: name.to_owned(),
            recipe: None,
            vcpus: None,
            memory_mb: None,
            context: None,
        };
        match self
            .start_build(&admin.id, &Actor::system("first use"), spec)
            .await
        {
            Ok(row) => Ok(Some(FirstUse::Building(row.id))),
            // Another create started it a moment ago.
            Err(BuildError::Busy(_)) => match self.store.latest_build(name).await? {
                Some(b) => Ok(Some(FirstUse::Building(b.id))),
                None => Err(BuildError::Busy(name.to_owned())),
            },
            Err(e) => Err(e),
        }
    }

    /// True when `name` is one of the host's own base templates (`minimal`, `python`).
    pub(crate) async fn is_host_base_template(&self, name: &str) -> Result<bool, HostError> {
        Ok(self
            .host
            .templates()
            .await?
            .iter()
            .any(|t| t.kind == wrenn_host::TemplateKind::Base && t.name == name))
    }
}

/// How long after a failed first-use build a create reports that failure instead of starting
/// another build.
pub const FIRST_USE_RETRY_AFTER_MS: i64 = 10 * 60 * 1000;

/// What a create of a shipped template that is not built yet learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FirstUse {
    /// Its build runs (this one started it, or another did).
    Building(String),
    /// Its latest build failed a short while ago.
    Failed {
        /// The build.
        id: String,
        /// Why.
        error: String,
    },
}

/// A build's log as [`Core::follow_build_log`] gives it.
pub struct BuildLogView {
    /// Entries so far.
    pub past: Vec<crate::store::LogRow>,
    /// Later entries while the build runs; `None` once it has ended.
    pub live: Option<tokio::sync::broadcast::Receiver<crate::store::LogRow>>,
}
