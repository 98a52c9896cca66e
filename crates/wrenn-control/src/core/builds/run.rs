//! The runner of one build: queue, capsule, steps, healthcheck, snapshot, clean-up.
//!
//! Everything the build holds on the host (its capsule, the template being made) is recorded
//! in its row before it is made, so a failure, a cancel or a restart can remove it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tokio::task::JoinHandle;
use wrenn_envd_client::EnvdClient;
use wrenn_host::HostError;
use wrenn_protocol::{ExecRequest, ProcessEvent, ProcessSelector, WriteOptions};
use wrenn_recipe::{Context, Healthcheck, Recipe, StepKind};

use super::context::{BuildContext, EntryKind};
use super::log::{BuildLog, LogStream, FLUSH_INTERVAL};
use super::{BuildStatus, RunningBuild, BUILD_LABEL};
use crate::access::PortsMode;
use crate::core::events::Actor;
use crate::core::lifecycle::CreateSpec;
use crate::core::status::CapsuleStatus;
use crate::core::Core;
use crate::ids;
use crate::store::{now_ms, BuildRow, BuiltTemplateRow};

/// Steps a build reports: the recipe's instructions, the healthcheck if any, the snapshot.
pub fn step_count(recipe: &Recipe) -> i64 {
    (recipe.steps.len() + usize::from(recipe.healthcheck.is_some()) + 1) as i64
}

/// How long the build capsule may take to start (a first boot of a base template under
/// emulation takes minutes).
const CAPSULE_START_TIMEOUT: Duration = Duration::from_secs(900);
/// Grace on top of a step's own timeout before the runner gives up on the guest.
const STEP_GRACE: Duration = Duration::from_secs(30);
/// Pause after the last START process before the snapshot, so their output settles.
const SETTLE: Duration = Duration::from_millis(500);

/// Why the steps stopped.
enum Stop {
    Cancelled,
    Failed(String),
}

impl From<HostError> for Stop {
    fn from(e: HostError) -> Self {
        Stop::Failed(format!("host: {e}"))
    }
}

impl From<wrenn_envd_client::EnvdError> for Stop {
    fn from(e: wrenn_envd_client::EnvdError) -> Self {
        Stop::Failed(format!("capsule: {e}"))
    }
}

impl From<crate::store::StoreError> for Stop {
    fn from(e: crate::store::StoreError) -> Self {
        Stop::Failed(format!("store: {e}"))
    }
}

/// One build, ready to run.
pub struct Runner {
    /// The core.
    pub core: Core,
    /// Its row as queued.
    pub build: BuildRow,
    /// The parsed recipe.
    pub recipe: Recipe,
    /// Files `COPY` takes.
    pub context: BuildContext,
    /// Team that owns the build capsule.
    pub team_id: String,
    /// Who asked.
    pub actor: Actor,
    /// Cancel token and log.
    pub handles: RunningBuild,
}

/// What the build holds on the host.
#[derive(Default)]
struct Held {
    capsule: Option<String>,
    host_template: Option<String>,
    /// Output forwarders of the START processes.
    forwarders: Vec<JoinHandle<()>>,
}

impl Runner {
    fn log(&self) -> &BuildLog {
        &self.handles.log
    }

    /// Runs the build to its end and records how it ended.
    pub async fn run(self) {
        let log = self.log().clone();
        let flusher = {
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(FLUSH_INTERVAL).await;
                    if let Err(e) = log.flush().await {
                        tracing::warn!(error = %e, "could not store build log entries");
                    }
                }
            })
        };
        let mut held = Held::default();
        let outcome = self.steps(&mut held).await;
        for f in held.forwarders.drain(..) {
            f.abort();
        }
        let (status, error) = match &outcome {
            Ok(()) => (BuildStatus::Succeeded, None),
            Err(Stop::Cancelled) => (BuildStatus::Cancelled, Some("cancelled".to_owned())),
            Err(Stop::Failed(why)) => (BuildStatus::Failed, Some(why.clone())),
        };
        let last_step = self.current_step().await;
        match &error {
            Some(why) => log.push(last_step, LogStream::Error, why).await,
            None => {
                let text = format!("template {} is ready", self.build.name);
                log.push(last_step, LogStream::Info, &text).await
            }
        }
        // On success the template is recorded: only the capsule goes.
        if outcome.is_ok() {
            held.host_template = None;
        }
        let row = BuildRow {
            capsule_id: held.capsule.clone(),
            host_template: held.host_template.clone(),
            ..self.build.clone()
        };
        clean_up(&self.core, &row, &log).await;
        flusher.abort();
        if let Err(e) = log.flush().await {
            tracing::warn!(build = %self.build.id, error = %e, "could not store the build log");
        }
        match self
            .core
            .store
            .finish_build(&self.build.id, status, error.as_deref(), now_ms())
            .await
        {
            Ok(_) => {
                tracing::info!(build = %self.build.id, template = %self.build.name, %status, "build ended")
            }
            Err(e) => {
                tracing::error!(build = %self.build.id, error = %e, "could not record the end of a build")
            }
        }
    }

    async fn current_step(&self) -> i64 {
        match self.core.store.build(&self.build.id).await {
            Ok(Some(b)) => b.step,
            _ => 0,
        }
    }

    /// Waits for `fut` unless the build is cancelled first.
    async fn guard<T>(&self, fut: impl std::future::Future<Output = T>) -> Result<T, Stop> {
        tokio::select! {
            v = fut => Ok(v),
            _ = self.handles.cancel.cancelled() => Err(Stop::Cancelled),
        }
    }

    async fn begin_step(&self, step: i64, phase: &str) -> Result<(), Stop> {
        let shown: String = phase.chars().take(200).collect();
        self.core
            .store
            .set_build_step(&self.build.id, step, &shown)
            .await?;
        let total = self.build.steps;
        self.log()
            .push(step, LogStream::Step, &format!("[{step}/{total}] {phase}"))
            .await;
        Ok(())
    }

    async fn steps(&self, held: &mut Held) -> Result<(), Stop> {
        let slots = self.core.builds.slots();
        let _permit = self
            .guard(slots.acquire_owned())
            .await?
            .map_err(|_| Stop::Failed("the build queue is closed".into()))?;
        self.core
            .store
            .start_build(&self.build.id, now_ms())
            .await?;
        let envd = self.boot(held).await?;
        let plan = self.recipe.plan();
        // ENV values with `$NAME` expanded, as the steps so far left them.
        let mut env = BTreeMap::new();
        for (i, planned) in plan.iter().enumerate() {
            let step = i as i64 + 1;
            let kind = &planned.step.kind;
            self.begin_step(step, &describe(kind)).await?;
            let ctx = &Context {
                env: env.clone(),
                ..planned.context.clone()
            };
            match kind {
                StepKind::Run { command, timeout } => {
                    self.run_command(&envd, step, command, ctx, *timeout)
                        .await?
                }
                StepKind::Env { key, value } => {
                    let expanded = expand_vars(value, &env);
                    env.insert(key.clone(), expanded);
                }
                StepKind::User { name } => self.check_user(&envd, name).await?,
                StepKind::Workdir { dir } => self.make_workdir(&envd, dir, ctx).await?,
                StepKind::Copy {
                    sources,
                    dest,
                    dest_is_dir,
                } => {
                    self.copy(&envd, step, sources, dest, *dest_is_dir, ctx)
                        .await?
                }
                StepKind::Start { command } => {
                    let f = self.start(&envd, step, command, ctx).await?;
                    held.forwarders.push(f);
                }
            }
            self.check_started(&envd, step).await?;
        }
        let final_ctx = Context {
            env,
            ..self.recipe.final_context()
        };
        let mut step = self.recipe.steps.len() as i64;
        if let Some(hc) = &self.recipe.healthcheck {
            step += 1;
            self.begin_step(step, &format!("HEALTHCHECK {}", hc.command))
                .await?;
            self.healthcheck(&envd, step, hc, &final_ctx).await?;
        }
        step += 1;
        self.begin_step(step, "snapshot").await?;
        self.guard(tokio::time::sleep(SETTLE)).await?;
        self.check_started(&envd, step).await?;
        for f in held.forwarders.drain(..) {
            f.abort();
        }
        self.write_template_env(&envd, &final_ctx.env).await?;
        self.sync_disk(&envd).await?;
        drop(envd);
        self.snapshot(held).await
    }

    /// Creates the build capsule and waits until it runs.
    async fn boot(&self, held: &mut Held) -> Result<EnvdClient, Stop> {
        self.begin_step(0, &format!("boot a capsule from {}", self.build.base))
            .await?;
        let spec = CreateSpec {
            template: self.build.base.clone(),
            vcpus: u32::try_from(self.build.vcpus).unwrap_or(1),
            memory_mb: u32::try_from(self.build.memory_mb).unwrap_or(512),
            timeout_sec: 0,
            metadata: BTreeMap::from([(BUILD_LABEL.to_owned(), self.build.id.clone())]),
            network: Default::default(),
            ports: PortsMode::Private,
            envs: BTreeMap::new(),
            on_timeout: Default::default(),
        };
        // Not cancellable: the create answers within `create_wait`, and its id is needed to
        // remove the capsule after a cancel.
        let created = self
            .core
            .create_capsule(&self.team_id, &self.actor, spec)
            .await
            .map_err(|e| Stop::Failed(format!("creating the build capsule: {e}")))?;
        let id = created.row.id.clone();
        held.capsule = Some(id.clone());
        self.core
            .store
            .set_build_holdings(&self.build.id, Some(&id), None)
            .await?;
        self.log()
            .push(0, LogStream::Info, &format!("capsule {id}"))
            .await;
        let deadline = Instant::now() + CAPSULE_START_TIMEOUT;
        loop {
            let row = self.core.store.capsule(&id).await?;
            match row.as_ref().map(|r| r.status) {
                Some(CapsuleStatus::Running) => break,
                Some(CapsuleStatus::Starting) if Instant::now() < deadline => {
                    self.guard(tokio::time::sleep(Duration::from_millis(250)))
                        .await?
                }
                other => {
                    let why = row.and_then(|r| r.error).unwrap_or_default();
                    return Err(Stop::Failed(format!(
                        "the build capsule did not start ({}) {why}",
                        other.map_or("gone".into(), |s| s.to_string())
                    )));
                }
            }
        }
        let channel = self.guard(self.core.host.guest(&id)).await??;
        Ok(EnvdClient::over(channel))
    }

    async fn run_command(
        &self,
        envd: &EnvdClient,
        step: i64,
        command: &str,
        ctx: &Context,
        timeout: Duration,
    ) -> Result<(), Stop> {
        let started = Instant::now();
        let req = shell(command, ctx, Some(timeout), None);
        let mut stream = self.guard(envd.exec_stream(req)).await??;
        let mut out = Utf8Carry::default();
        let mut err = Utf8Carry::default();
        let code = loop {
            let next = tokio::time::timeout(timeout + STEP_GRACE, stream.events.next());
            match self.guard(next).await? {
                Err(_) => {
                    return Err(Stop::Failed(format!(
                        "RUN did not end within {}",
                        human(timeout)
                    )))
                }
                Ok(Some(ProcessEvent::Stdout { data })) => {
                    let text = out.push(&data);
                    self.log().push(step, LogStream::Stdout, &text).await
                }
                Ok(Some(ProcessEvent::Stderr { data })) => {
                    let text = err.push(&data);
                    self.log().push(step, LogStream::Stderr, &text).await
                }
                Ok(Some(ProcessEvent::Exit { exit_code })) => break exit_code,
                Ok(Some(ProcessEvent::Started { .. })) => {}
                Ok(Some(ProcessEvent::Error { message })) => {
                    return Err(Stop::Failed(format!("RUN output stream failed: {message}")))
                }
                Ok(None) => return Err(Stop::Failed("RUN output stream ended early".into())),
            }
        };
        if code == 0 {
            return Ok(());
        }
        if started.elapsed() >= timeout {
            return Err(Stop::Failed(format!(
                "step {step}: RUN timed out after {} (killed)",
                human(timeout)
            )));
        }
        Err(Stop::Failed(format!(
            "step {step}: RUN exited with code {code}"
        )))
    }

    async fn check_user(&self, envd: &EnvdClient, name: &str) -> Result<(), Stop> {
        let out = self
            .guard(envd.exec(shell(
                &format!("id -u -- {name}"),
                &Context::default(),
                Some(Duration::from_secs(30)),
                None,
            )))
            .await??;
        if out.exit_code != 0 {
            return Err(Stop::Failed(format!(
                "USER {name}: no such user in the capsule (create it with RUN useradd first)"
            )));
        }
        Ok(())
    }

    async fn make_workdir(&self, envd: &EnvdClient, dir: &str, ctx: &Context) -> Result<(), Stop> {
        let mut args = vec![dir.to_owned()];
        let mut script = "mkdir -p -- \"$1\"".to_owned();
        if let Some(user) = &ctx.user {
            script.push_str(" && chown -- \"$2\" \"$1\"");
            args.push(user.clone());
        }
        self.root_script(envd, &script, args, "WORKDIR").await
    }

    /// Runs `script` as root with positional `args`; a non-zero exit fails `what`.
    async fn root_script(
        &self,
        envd: &EnvdClient,
        script: &str,
        args: Vec<String>,
        what: &str,
    ) -> Result<(), Stop> {
        let mut all = vec!["-c".to_owned(), script.to_owned(), "sh".to_owned()];
        all.extend(args);
        let req = ExecRequest {
            cmd: "/bin/sh".into(),
            args: all,
            envs: BTreeMap::new(),
            cwd: Some("/".into()),
            user: None,
            timeout_ms: Some(120_000),
            tag: None,
            stdin: false,
        };
        let out = self.guard(envd.exec(req)).await??;
        if out.exit_code != 0 {
            return Err(Stop::Failed(format!(
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    async fn copy(
        &self,
        envd: &EnvdClient,
        step: i64,
        sources: &[String],
        dest: &str,
        dest_is_dir: bool,
        ctx: &Context,
    ) -> Result<(), Stop> {
        let placements = self.context.placements(sources, dest, dest_is_dir);
        // Directories and links first (one shell), then the files.
        let mut script_args = Vec::new();
        if dest_is_dir || placements.len() != 1 {
            script_args.extend(["d".to_owned(), dest.to_owned()]);
        }
        let mut files = 0usize;
        let mut bytes = 0usize;
        for p in &placements {
            match &p.entry.kind {
                EntryKind::Dir => script_args.extend(["d".to_owned(), p.dest.clone()]),
                EntryKind::Symlink(target) => {
                    script_args.extend(["l".to_owned(), target.clone(), p.dest.clone()])
                }
                EntryKind::File(_) => {}
            }
        }
        if !script_args.is_empty() {
            let script = "set -e; owner=\"$1\"; shift; while [ $# -gt 0 ]; do case \"$1\" in \
                 d) mkdir -p -- \"$2\"; [ -z \"$owner\" ] || chown -- \"$owner\" \"$2\"; shift 2;; \
                 l) mkdir -p -- \"$(dirname -- \"$3\")\"; ln -sfn -- \"$2\" \"$3\"; \
                    [ -z \"$owner\" ] || chown -h -- \"$owner\" \"$3\"; shift 3;; \
                 *) echo \"bad placement $1\" >&2; exit 2;; esac; done";
            let mut args = vec![ctx.user.clone().unwrap_or_default()];
            args.extend(script_args);
            self.root_script(envd, script, args, "COPY").await?;
        }
        for p in &placements {
            if let EntryKind::File(data) = &p.entry.kind {
                let opts = WriteOptions {
                    mode: Some(p.entry.mode),
                    owner: ctx.user.clone(),
                    modified_at: None,
                    create_parents: Some(true),
                };
                self.guard(envd.write_file(&p.dest, opts, one_chunk(data.clone())))
                    .await?
                    .map_err(|e| Stop::Failed(format!("COPY to {}: {e}", p.dest)))?;
                files += 1;
                bytes += data.len();
            }
        }
        self.log()
            .push(
                step,
                LogStream::Info,
                &format!("copied {files} files ({bytes} bytes) to {dest}\n"),
            )
            .await;
        Ok(())
    }

    /// Starts a START process and forwards its output to the log until the snapshot.
    async fn start(
        &self,
        envd: &EnvdClient,
        step: i64,
        command: &str,
        ctx: &Context,
    ) -> Result<JoinHandle<()>, Stop> {
        let tag = start_tag(step);
        let info = self
            .guard(envd.start_background(shell(command, ctx, None, Some(tag.clone()))))
            .await??;
        self.log()
            .push(
                step,
                LogStream::Info,
                &format!("started pid {} (tag {tag})\n", info.pid),
            )
            .await;
        let mut stream = self.guard(envd.attach(ProcessSelector::Tag(tag))).await??;
        let log = self.log().clone();
        Ok(tokio::spawn(async move {
            let (mut out, mut err) = (Utf8Carry::default(), Utf8Carry::default());
            while let Some(ev) = stream.events.next().await {
                match ev {
                    ProcessEvent::Stdout { data } => {
                        log.push(step, LogStream::Stdout, &out.push(&data)).await
                    }
                    ProcessEvent::Stderr { data } => {
                        log.push(step, LogStream::Stderr, &err.push(&data)).await
                    }
                    ProcessEvent::Exit { exit_code } => {
                        let text = format!("START process exited with code {exit_code}\n");
                        log.push(step, LogStream::Info, &text).await;
                        break;
                    }
                    _ => {}
                }
            }
        }))
    }

    /// Fails when a START process of the steps up to `step` has exited: its template would
    /// lack it.
    async fn check_started(&self, envd: &EnvdClient, step: i64) -> Result<(), Stop> {
        let starts: Vec<i64> = self
            .recipe
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s.kind, StepKind::Start { .. }))
            .map(|(i, _)| i as i64 + 1)
            .collect();
        if starts.is_empty() {
            return Ok(());
        }
        let running = self.guard(envd.list_processes()).await??;
        for s in starts.into_iter().filter(|s| *s <= step) {
            let tag = start_tag(s);
            if !running.iter().any(|p| p.tag == tag) {
                return Err(Stop::Failed(format!(
                    "the START process of step {s} is no longer running (see its output above)"
                )));
            }
        }
        Ok(())
    }

    async fn healthcheck(
        &self,
        envd: &EnvdClient,
        step: i64,
        hc: &Healthcheck,
        ctx: &Context,
    ) -> Result<(), Stop> {
        let started = Instant::now();
        let mut failures = 0u32;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let out = self
                .guard(envd.exec(shell(&hc.command, ctx, Some(hc.timeout), None)))
                .await??;
            if out.exit_code == 0 {
                let text = format!(
                    "healthy after {tries} tries ({})\n",
                    human(started.elapsed())
                );
                self.log().push(step, LogStream::Info, &text).await;
                return Ok(());
            }
            let why = if out.timed_out {
                format!("timed out after {}", human(hc.timeout))
            } else {
                format!("exit code {}", out.exit_code)
            };
            let grace = started.elapsed() < hc.start_period;
            if !grace {
                failures += 1;
            }
            let tail: String = String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .rev()
                .take(300)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            let text = format!(
                "try {tries}: {why}{}{}\n",
                if grace { " (start period)" } else { "" },
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(": {tail}")
                }
            );
            self.log().push(step, LogStream::Info, &text).await;
            if failures >= hc.retries {
                return Err(Stop::Failed(format!(
                    "healthcheck failed {failures} times in a row after the start period ({why})"
                )));
            }
            self.check_started(envd, step).await?;
            self.guard(tokio::time::sleep(hc.interval)).await?;
        }
    }

    /// Writes the recipe's environment where envd reads it for every process of the
    /// template's capsules.
    async fn write_template_env(
        &self,
        envd: &EnvdClient,
        env: &BTreeMap<String, String>,
    ) -> Result<(), Stop> {
        if env.is_empty() {
            return Ok(());
        }
        let text: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
        let opts = WriteOptions {
            mode: Some(0o644),
            owner: None,
            modified_at: None,
            create_parents: Some(true),
        };
        self.guard(envd.write_file(wrenn_protocol::TEMPLATE_ENV_PATH, opts, one_chunk(text)))
            .await??;
        Ok(())
    }

    async fn sync_disk(&self, envd: &EnvdClient) -> Result<(), Stop> {
        self.root_script(envd, "sync", Vec::new(), "sync before the snapshot")
            .await
    }

    async fn snapshot(&self, held: &mut Held) -> Result<(), Stop> {
        let Some(capsule) = held.capsule.clone() else {
            return Err(Stop::Failed("no build capsule".into()));
        };
        let host_name = ids::new_host_template_name();
        held.host_template = Some(host_name.clone());
        self.core
            .store
            .set_build_holdings(&self.build.id, Some(&capsule), Some(&host_name))
            .await?;
        if !self
            .core
            .store
            .transition(
                &capsule,
                CapsuleStatus::Running,
                CapsuleStatus::Snapshotting,
            )
            .await?
        {
            return Err(Stop::Failed(
                "the build capsule is no longer running".into(),
            ));
        }
        // Not cancellable: the host finishes a snapshot it started whatever its caller does,
        // so a cancel is honoured once the snapshot is there to be removed (below).
        let after = self.core.config.host_op_timeout;
        let made =
            tokio::time::timeout(after, self.core.host.snapshot(&capsule, &host_name, false)).await;
        let _ = self
            .core
            .store
            .set_status(&capsule, CapsuleStatus::Running, None)
            .await;
        let info = match made {
            Ok(r) => r?,
            Err(_) => {
                return Err(Stop::Failed(format!(
                    "the snapshot did not finish within {}",
                    human(after)
                )))
            }
        };
        if self.handles.cancel.is_cancelled() {
            return Err(Stop::Cancelled);
        }
        let row = BuiltTemplateRow {
            name: self.build.name.clone(),
            host_name: host_name.clone(),
            build_id: self.build.id.clone(),
            vcpus: i64::from(info.vcpus),
            memory_mb: i64::from(info.memory_mb),
            size_bytes: i64::try_from(info.size_bytes).unwrap_or(i64::MAX),
            created_at: now_ms(),
        };
        let replaced = self.core.store.upsert_built_template(&row).await?;
        if let Some(old) = replaced {
            match self.core.host.delete_template(&old.host_name).await {
                Ok(()) | Err(HostError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(template = %old.host_name, error = %e, "could not delete the replaced build")
                }
            }
        }
        let text = format!(
            "snapshot {} MiB on disk\n",
            info.size_bytes.div_ceil(1 << 20)
        );
        self.log()
            .push(self.build.steps, LogStream::Info, &text)
            .await;
        Ok(())
    }
}

/// Removes what `row` says a build holds: its capsule, and a template that no built template
/// names. Failures are logged; the health pass deals with a capsule left over.
pub async fn clean_up(core: &Core, row: &BuildRow, log: &BuildLog) {
    if let Some(id) = &row.capsule_id {
        match core.store.capsule(id).await {
            Ok(Some(capsule)) => {
                if let Err(e) = core
                    .destroy_capsule(&capsule, &Actor::system("build"))
                    .await
                {
                    tracing::warn!(build = %row.id, capsule = %id, error = %e, "could not remove the build capsule");
                    log.push(
                        row.step,
                        LogStream::Info,
                        &format!("could not remove capsule {id}: {e}\n"),
                    )
                    .await;
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(build = %row.id, error = %e, "could not read the build capsule")
            }
        }
    }
    if let Some(host_name) = &row.host_template {
        let recorded = core
            .store
            .list_built_templates()
            .await
            .map(|all| all.iter().any(|t| &t.host_name == host_name))
            .unwrap_or(true);
        if !recorded {
            match core.host.delete_template(host_name).await {
                Ok(()) | Err(HostError::NotFound(_)) => {}
                Err(e) => {
                    tracing::warn!(build = %row.id, template = %host_name, error = %e, "could not remove a half-made template")
                }
            }
        }
    }
}

/// A file body of one chunk, for [`EnvdClient::write_file`].
fn one_chunk(
    bytes: impl Into<Bytes>,
) -> futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>> {
    futures::stream::once(futures::future::ready(Ok(bytes.into()))).boxed()
}

/// Tag of the START process of `step`.
fn start_tag(step: i64) -> String {
    format!("start-{step}")
}

/// An exec of `command` by `/bin/sh -c` in `ctx`.
fn shell(
    command: &str,
    ctx: &Context,
    timeout: Option<Duration>,
    tag: Option<String>,
) -> ExecRequest {
    ExecRequest {
        cmd: "/bin/sh".into(),
        args: vec!["-c".into(), command.to_owned()],
        envs: ctx.env.clone(),
        cwd: Some(ctx.workdir.clone()),
        user: ctx.user.clone(),
        timeout_ms: timeout.map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        tag,
        stdin: false,
    }
}

/// One line naming a step, as the log and the build's `phase` show it.
fn describe(kind: &StepKind) -> String {
    match kind {
        StepKind::Run { command, .. } => format!("RUN {command}"),
        StepKind::Env { key, .. } => format!("ENV {key}"),
        StepKind::Workdir { dir } => format!("WORKDIR {dir}"),
        StepKind::User { name } => format!("USER {name}"),
        StepKind::Copy { sources, dest, .. } => format!("COPY {} {dest}", sources.join(" ")),
        StepKind::Start { command } => format!("START {command}"),
    }
}

/// `value` with `$NAME` and `${NAME}` replaced by the variable from `env` (`PATH` falls back
/// to envd's default; an unknown one is empty) and `\$` by a plain `$`.
fn expand_vars(value: &str, env: &BTreeMap<String, String>) -> String {
    let lookup = |name: &str| -> String {
        match env.get(name) {
            Some(v) => v.clone(),
            None if name == "PATH" => wrenn_protocol::DEFAULT_PATH.to_owned(),
            None => String::new(),
        }
    };
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(value.len());
    let mut chars = value.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' if value[i + 1..].starts_with('$') => {
                out.push('$');
                chars.next();
            }
            '$' => {
                let rest = &value[i + 1..];
                if let Some(inner) = rest.strip_prefix('{') {
                    match inner.find('}') {
                        Some(end) if inner[..end].chars().all(is_name) && end > 0 => {
                            out.push_str(&lookup(&inner[..end]));
                            for _ in 0..end + 2 {
                                chars.next();
                            }
                        }
                        _ => out.push('$'),
                    }
                } else {
                    let len = rest
                        .char_indices()
                        .find(|(j, ch)| !(is_name(*ch) && !(*j == 0 && ch.is_ascii_digit())))
                        .map_or(rest.len(), |(j, _)| j);
                    if len == 0 {
                        out.push('$');
                    } else {
                        out.push_str(&lookup(&rest[..len]));
                        for _ in 0..len {
                            chars.next();
                        }
                    }
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// `1m30s`-style text of a duration.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, 0) => format!("{}ms", d.as_millis()),
        (0, 0, sec) => format!("{sec}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// Decodes a byte stream as UTF-8 across chunk borders: a character split between two
/// chunks is kept back until its end arrives; invalid bytes become U+FFFD.
#[derive(Default)]
struct Utf8Carry {
    tail: Vec<u8>,
}

impl Utf8Carry {
    fn push(&mut self, data: &[u8]) -> String {
        let mut buf = std::mem::take(&mut self.tail);
        buf.extend_from_slice(data);
        let mut out = String::with_capacity(buf.len());
        let mut rest: &[u8] = &buf;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // The prefix was just validated.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            rest = &bad[n..];
                        }
                        None => {
                            self.tail = bad.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_kept_whole() {
        let mut c = Utf8Carry::default();
        let bytes = "é✓".as_bytes();
        assert_eq!(c.push(&bytes[..1]), "");
        assert_eq!(c.push(&bytes[1..3]), "é");
        assert_eq!(c.push(&bytes[3..]), "✓");
        assert_eq!(c.push(b"a\xffb"), "a\u{FFFD}b");
    }

    #[test]
    fn env_values_expand_earlier_variables() {
        let env = BTreeMap::from([("VENV".to_owned(), "/opt/venv".to_owned())]);
        assert_eq!(
            expand_vars("$VENV/bin:$PATH", &env),
            format!("/opt/venv/bin:{}", wrenn_protocol::DEFAULT_PATH)
        );
        assert_eq!(expand_vars("${VENV}x", &env), "/opt/venvx");
        assert_eq!(
            expand_vars("a\\$VENV $ ${} $1x $UNSET.", &env),
            "a$VENV $ ${} $1x ."
        );
        assert_eq!(expand_vars("café $VENV", &env), "café /opt/venv");
    }

    #[test]
    fn durations_read_like_the_recipe_format() {
        assert_eq!(human(Duration::from_secs(90)), "1m30s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
        assert_eq!(human(Duration::from_secs(7260)), "2h1m");
    }
}
