//! From [`Recipe`] back to text.

use crate::words::{self, is_blank};
use crate::{
    duration, Recipe, StepKind, DEFAULT_HEALTHCHECK_INTERVAL, DEFAULT_HEALTHCHECK_RETRIES,
    DEFAULT_HEALTHCHECK_START_PERIOD, DEFAULT_HEALTHCHECK_TIMEOUT, DEFAULT_RUN_TIMEOUT,
};

/// See [`Recipe::to_text`].
pub(crate) fn to_text(recipe: &Recipe) -> String {
    let mut out = String::new();
    if let Some(from) = &recipe.from {
        out.push_str("FROM ");
        out.push_str(from);
        out.push('\n');
    }
    for step in &recipe.steps {
        match &step.kind {
            StepKind::Run { command, timeout } => {
                out.push_str("RUN");
                if *timeout != DEFAULT_RUN_TIMEOUT {
                    push_duration(&mut out, "--timeout", *timeout);
                }
                push_command(&mut out, command);
            }
            StepKind::Env { key, value } => {
                out.push_str("ENV ");
                out.push_str(key);
                out.push('=');
                push_env_value(&mut out, value);
            }
            StepKind::Workdir { dir } => {
                out.push_str("WORKDIR ");
                out.push_str(&words::quote(dir));
            }
            StepKind::User { name } => {
                out.push_str("USER ");
                out.push_str(name);
            }
            StepKind::Copy {
                sources,
                dest,
                dest_is_dir,
            } => {
                out.push_str("COPY");
                for source in sources {
                    out.push(' ');
                    out.push_str(&words::quote(source));
                }
                out.push(' ');
                if *dest_is_dir && !dest.ends_with('/') {
                    out.push_str(&words::quote(&format!("{dest}/")));
                } else {
                    out.push_str(&words::quote(dest));
                }
            }
            StepKind::Start { command } => {
                out.push_str("START");
                push_command(&mut out, command);
            }
        }
        out.push('\n');
    }
    if let Some(check) = &recipe.healthcheck {
        out.push_str("HEALTHCHECK");
        if check.interval != DEFAULT_HEALTHCHECK_INTERVAL {
            push_duration(&mut out, "--interval", check.interval);
        }
        if check.timeout != DEFAULT_HEALTHCHECK_TIMEOUT {
            push_duration(&mut out, "--timeout", check.timeout);
        }
        if check.start_period != DEFAULT_HEALTHCHECK_START_PERIOD {
            push_duration(&mut out, "--start-period", check.start_period);
        }
        if check.retries != DEFAULT_HEALTHCHECK_RETRIES {
            out.push_str(&format!(" --retries={}", check.retries));
        }
        push_command(&mut out, &check.command);
        out.push('\n');
    }
    out
}

fn push_duration(out: &mut String, option: &str, value: std::time::Duration) {
    out.push(' ');
    out.push_str(option);
    out.push('=');
    out.push_str(&duration::format(value));
}

/// ` command`, after `-- ` when its first word would be taken for an option, and with a blank
/// after it when it ends in a backslash (which would otherwise continue the line).
fn push_command(out: &mut String, command: &str) {
    out.push(' ');
    if command
        .split(is_blank)
        .next()
        .unwrap_or("")
        .starts_with("--")
    {
        out.push_str("-- ");
    }
    out.push_str(command);
    if command.ends_with('\\') {
        out.push(' ');
    }
}

/// `value` as it is, or in double quotes when it would not read back as it is: when it starts
/// with a quote, or ends in a blank (trimmed) or a backslash (a continuation).
fn push_env_value(out: &mut String, value: &str) {
    let needs_quotes = value.starts_with('"') || value.ends_with(is_blank) || value.ends_with('\\');
    if !needs_quotes {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}
