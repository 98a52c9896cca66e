//! Parser of template recipes.
//!
//! A template is a snapshot of a booted capsule. A *recipe* is the plain-text file that says how
//! to build one from a base template: the build boots a capsule from the base, runs the steps in
//! file order (`START` processes start at their place in that order and keep running), waits
//! for the `HEALTHCHECK` to pass, then snapshots the capsule. This crate only turns the text
//! into a [`Recipe`] (and back, with [`Recipe::to_text`]); it does no I/O. The full reference is
//! `docs/templates.md`, "Recipe format"; in short:
//!
//! ```
//! let recipe: wrenn_recipe::Recipe = r#"
//! ## Comments are whole lines whose first non-blank character is `#`.
//! FROM minimal
//! ENV APP_HOME=/srv/app
//! WORKDIR /srv/app
//! USER root
//! ## Sources are relative to the build context; the destination is last.
//! COPY app.py "static files" ./
//! ## A line ending in a backslash continues on the next one.
//! RUN --timeout=5m pip install flask \
//!     gunicorn
//! START gunicorn --bind 0.0.0.0:8000 app:app
//! HEALTHCHECK --interval=2s --retries=10 curl -fs http://localhost:8000/
//! "#.parse()?;
//! assert_eq!(recipe.steps.len(), 6);
//! # Ok::<(), wrenn_recipe::RecipeErrors>(())
//! ```
//!
//! * Blank lines and comment lines are ignored. A `#` later in a line is not a comment: it
//!   belongs to the arguments. A line ending in `\` continues on the next line: the backslash
//!   and the newline become one space (the next line is taken as it is, even blank or starting
//!   with `#`).
//! * Keywords are case-insensitive; options come right after the keyword, each
//!   `--name=value`; `--` alone ends the options (for a command that itself starts with `--`).
//! * Durations are whole numbers with a unit, `ms`, `s`, `m` or `h`, and may be combined:
//!   `500ms`, `30s`, `1m30s`, `2h`.
//! * `COPY` and `WORKDIR` split their arguments like a shell: blanks separate words, `'...'` is
//!   literal, `"..."` knows the escapes `\"` and `\\`, and `\` outside quotes escapes the next
//!   character. `RUN`, `START` and `HEALTHCHECK` commands are kept verbatim for `/bin/sh -c`.
//! * Paths are stored resolved and normalised: [`StepKind::Workdir`] and [`StepKind::Copy`]'s
//!   destination are absolute, `COPY` sources are relative to the build context.
//!
//! [`parse`] reports every error of a recipe at once, each with the line where its
//! instruction starts:
//!
//! ```
//! let errors = wrenn_recipe::parse("RUN\nFROB x\n").unwrap_err();
//! assert_eq!(
//!     errors.to_string(),
//!     "line 1: RUN needs a command\n\
//!      line 2: unknown instruction `FROB` (known: FROM, RUN, ENV, WORKDIR, USER, COPY, START, HEALTHCHECK)"
//! );
//!
//! let recipe = wrenn_recipe::parse("WORKDIR /srv\nCOPY app ./\nRUN make -C app")?;
//! assert_eq!(recipe.base(), "minimal");
//! assert_eq!(recipe.copy_sources().collect::<Vec<_>>(), ["app"]);
//! // The build engine gets each step with the environment, directory and user it runs in.
//! let run = &recipe.plan()[2];
//! assert_eq!(run.context.workdir, "/srv");
//! # Ok::<(), wrenn_recipe::RecipeErrors>(())
//! ```

#![warn(missing_docs)]

mod duration;
mod error;
mod parse;
mod path;
mod text;
mod words;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use error::{ErrorKind, RecipeError, RecipeErrors};
pub use parse::parse;
pub use path::context_path;

/// The largest recipe accepted, in bytes (1 MiB).
pub const MAX_RECIPE_BYTES: usize = 1 << 20;
/// The most instructions a recipe may have (`FROM` and `HEALTHCHECK` count).
pub const MAX_INSTRUCTIONS: usize = 1000;
/// The longest instruction accepted, in bytes, after its continuation lines are joined (64 KiB).
pub const MAX_INSTRUCTION_BYTES: usize = 64 << 10;
/// The base template of a recipe without `FROM`.
pub const DEFAULT_BASE: &str = "minimal";
/// The longest duration any option accepts (2 h).
pub const MAX_DURATION: Duration = Duration::from_secs(2 * 3600);
/// `RUN`'s timeout without `--timeout` (10 min).
pub const DEFAULT_RUN_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// `HEALTHCHECK`'s time between two tries without `--interval` (5 s).
pub const DEFAULT_HEALTHCHECK_INTERVAL: Duration = Duration::from_secs(5);
/// `HEALTHCHECK`'s limit on one try without `--timeout` (5 s).
pub const DEFAULT_HEALTHCHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// `HEALTHCHECK`'s grace period without `--start-period` (60 s).
pub const DEFAULT_HEALTHCHECK_START_PERIOD: Duration = Duration::from_secs(60);
/// `HEALTHCHECK`'s failures allowed after the grace period without `--retries`.
pub const DEFAULT_HEALTHCHECK_RETRIES: u32 = 5;

/// A parsed recipe: the base template, the steps in file order and the optional healthcheck.
///
/// Build one with [`parse`] (or `text.parse::<Recipe>()`); [`Recipe::to_text`] writes it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipe {
    /// The template named by `FROM`, `None` without `FROM` (see [`Recipe::base`]).
    pub from: Option<String>,
    /// Every instruction but `FROM` and `HEALTHCHECK`, in file order.
    pub steps: Vec<Step>,
    /// The `HEALTHCHECK`, if any. It runs after all the steps, in [`Recipe::final_context`],
    /// wherever it stands in the file.
    pub healthcheck: Option<Healthcheck>,
}

/// One step of a recipe and the line where its instruction starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// What the step does.
    pub kind: StepKind,
}

/// What a step does. Paths are resolved: `Workdir::dir` and `Copy::dest` are absolute and
/// normalised, `Copy::sources` are normalised paths relative to the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// `RUN`: run `command` with `/bin/sh -c` in the step's context; the step (and the build)
    /// fails if it exits non-zero or is still running after `timeout`.
    Run {
        /// The shell command, verbatim (continuations joined), never empty.
        command: String,
        /// `--timeout`, [`DEFAULT_RUN_TIMEOUT`] when absent; in `(0, MAX_DURATION]`.
        timeout: Duration,
    },
    /// `ENV`: set `key` to `value` for the later steps and in the template.
    Env {
        /// The variable name, `[A-Za-z_][A-Za-z0-9_]*`.
        key: String,
        /// The value, quotes removed; may be empty.
        value: String,
    },
    /// `WORKDIR`: the working directory of the later steps (and relative `COPY` destinations).
    Workdir {
        /// Absolute and normalised: no `.`, `..`, empty component or trailing slash.
        dir: String,
    },
    /// `USER`: the user the later steps run as.
    User {
        /// A user name, `[a-z_][a-z0-9_-]{0,31}`.
        name: String,
    },
    /// `COPY`: copy files or directories of the build context into the capsule.
    Copy {
        /// Normalised paths relative to the build context (`.` is the context itself); never
        /// absolute, never outside the context.
        sources: Vec<String>,
        /// Absolute, normalised destination (no trailing slash but for `/` itself).
        dest: String,
        /// The destination was written as a directory (ending in `/`, or `.`/`..` as its last
        /// component): each source is copied *into* it. Always true with several sources.
        dest_is_dir: bool,
    },
    /// `START`: start `command` with `/bin/sh -c` in the step's context, in the background; it
    /// keeps running and is part of the snapshot.
    Start {
        /// The shell command, verbatim, never empty.
        command: String,
    },
}

/// The `HEALTHCHECK` of a recipe: what the build waits for before it snapshots.
///
/// The build runs `command` every `interval`, each try limited to `timeout`, until one exits 0.
/// Failures in the first `start_period` do not count; after it, the build fails once `retries`
/// tries in a row have failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthcheck {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// The shell command, verbatim, never empty.
    pub command: String,
    /// Time between two tries, `--interval`; in `(0, MAX_DURATION]`.
    pub interval: Duration,
    /// Limit on one try, `--timeout`; in `(0, MAX_DURATION]`.
    pub timeout: Duration,
    /// Grace period whose failures do not count, `--start-period`; in `[0, MAX_DURATION]`.
    pub start_period: Duration,
    /// Failed tries in a row, after the grace period, that fail the build, `--retries`; >= 1.
    pub retries: u32,
}

impl Healthcheck {
    /// A healthcheck of `command` with every option at its default, at line 0.
    pub fn new(command: impl Into<String>) -> Healthcheck {
        Healthcheck {
            line: 0,
            command: command.into(),
            interval: DEFAULT_HEALTHCHECK_INTERVAL,
            timeout: DEFAULT_HEALTHCHECK_TIMEOUT,
            start_period: DEFAULT_HEALTHCHECK_START_PERIOD,
            retries: DEFAULT_HEALTHCHECK_RETRIES,
        }
    }
}

/// The environment, working directory and user in force at some point of a recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Variables set by `ENV` so far (a later `ENV` of the same key replaces the value).
    pub env: BTreeMap<String, String>,
    /// The working directory, absolute; `/` before any `WORKDIR`.
    pub workdir: String,
    /// The user set by `USER`; `None` before any, meaning the capsule's default (root).
    pub user: Option<String>,
}

impl Default for Context {
    fn default() -> Context {
        Context {
            env: BTreeMap::new(),
            workdir: "/".to_string(),
            user: None,
        }
    }
}

impl Context {
    fn apply(&mut self, kind: &StepKind) {
        match kind {
            StepKind::Env { key, value } => {
                self.env.insert(key.clone(), value.clone());
            }
            StepKind::Workdir { dir } => self.workdir = dir.clone(),
            StepKind::User { name } => self.user = Some(name.clone()),
            StepKind::Run { .. } | StepKind::Copy { .. } | StepKind::Start { .. } => {}
        }
    }
}

/// A step with the context it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedStep<'a> {
    /// The step.
    pub step: &'a Step,
    /// What the steps before it set (an `ENV`, `WORKDIR` or `USER` step's own change is not
    /// in it: it applies from the next step on).
    pub context: Context,
}

impl Recipe {
    /// The template to boot: the `FROM` template, or [`DEFAULT_BASE`].
    pub fn base(&self) -> &str {
        self.from.as_deref().unwrap_or(DEFAULT_BASE)
    }

    /// Every `COPY` source, in file order (duplicates kept), relative to the build context.
    pub fn copy_sources(&self) -> impl Iterator<Item = &str> + '_ {
        self.steps.iter().flat_map(|step| {
            match &step.kind {
                StepKind::Copy { sources, .. } => sources.as_slice(),
                _ => &[],
            }
            .iter()
            .map(String::as_str)
        })
    }

    /// Each step with the context it runs in, in order.
    pub fn plan(&self) -> Vec<PlannedStep<'_>> {
        let mut context = Context::default();
        let mut planned = Vec::with_capacity(self.steps.len());
        for step in &self.steps {
            planned.push(PlannedStep {
                step,
                context: context.clone(),
            });
            context.apply(&step.kind);
        }
        planned
    }

    /// The context after the last step: the healthcheck's, and the template's environment.
    pub fn final_context(&self) -> Context {
        let mut context = Context::default();
        for step in &self.steps {
            context.apply(&step.kind);
        }
        context
    }

    /// The recipe in canonical text: `FROM` (if any), one line per step, the `HEALTHCHECK`
    /// last, options only where they differ from the defaults, words quoted where needed.
    ///
    /// For any recipe [`parse`] returned, parsing this text gives the same recipe but for the
    /// line numbers. A recipe built by hand must keep to what `parse` can produce (e.g. no
    /// newline in a value, commands without surrounding blanks, resolved paths).
    pub fn to_text(&self) -> String {
        text::to_text(self)
    }
}

impl FromStr for Recipe {
    type Err = RecipeErrors;

    fn from_str(text: &str) -> Result<Recipe, RecipeErrors> {
        parse(text)
    }
}

/// An instruction keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// `FROM <template>`.
    From,
    /// `RUN [--timeout=DUR] <command>`.
    Run,
    /// `ENV KEY=VALUE`.
    Env,
    /// `WORKDIR <dir>`.
    Workdir,
    /// `USER <name>`.
    User,
    /// `COPY <src>... <dst>`.
    Copy,
    /// `START <command>`.
    Start,
    /// `HEALTHCHECK [--interval=DUR] [--timeout=DUR] [--start-period=DUR] [--retries=N] <command>`.
    Healthcheck,
}

impl Keyword {
    /// Every keyword, in the order the documentation lists them.
    pub const ALL: [Keyword; 8] = [
        Keyword::From,
        Keyword::Run,
        Keyword::Env,
        Keyword::Workdir,
        Keyword::User,
        Keyword::Copy,
        Keyword::Start,
        Keyword::Healthcheck,
    ];

    /// The keyword in upper case, as written in the documentation.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::From => "FROM",
            Keyword::Run => "RUN",
            Keyword::Env => "ENV",
            Keyword::Workdir => "WORKDIR",
            Keyword::User => "USER",
            Keyword::Copy => "COPY",
            Keyword::Start => "START",
            Keyword::Healthcheck => "HEALTHCHECK",
        }
    }

    /// The keyword spelled `word`, in any case.
    pub fn from_word(word: &str) -> Option<Keyword> {
        Keyword::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(word))
    }

    /// The options the instruction takes, with their leading `--`.
    pub fn options(self) -> &'static [&'static str] {
        match self {
            Keyword::Run => &["--timeout"],
            Keyword::Healthcheck => &["--interval", "--timeout", "--start-period", "--retries"],
            _ => &[],
        }
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
