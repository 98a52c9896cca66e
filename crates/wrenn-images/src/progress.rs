//! Progress of long steps for a person: a spinner on a terminal, one line otherwise.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// One long step (download, debootstrap, mke2fs). Shows a spinner with the latest output
/// line when stderr is a terminal; otherwise prints a single line when the step starts.
pub(crate) struct Step {
    bar: Option<ProgressBar>,
    name: String,
    started: Instant,
}

impl Step {
    /// Announces the step.
    pub fn start(name: impl Into<String>) -> Step {
        let name = name.into();
        tracing::info!(step = %name, "image step started");
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            let style =
                ProgressStyle::with_template("{spinner:.cyan} {prefix} [{elapsed}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.set_prefix(name.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            Some(bar)
        } else {
            eprintln!("wrenn: {name}");
            None
        };
        Step {
            bar,
            name,
            started: Instant::now(),
        }
    }

    /// Shows `msg` (e.g. the command's latest output line) next to the spinner.
    pub fn message(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            let msg: String = msg.chars().take(100).collect();
            bar.set_message(msg);
        }
    }

    /// Marks the step done.
    pub fn finish(self) {
        let secs = self.started.elapsed().as_secs_f64();
        tracing::info!(step = %self.name, seconds = secs, "image step done");
        if let Some(bar) = &self.bar {
            bar.set_style(
                ProgressStyle::with_template("✓ {prefix} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.finish_with_message(format!("({secs:.1}s)"));
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}
