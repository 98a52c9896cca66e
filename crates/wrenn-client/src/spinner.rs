//! A spinner on stderr while a long call runs (hidden when stderr is not a terminal).

use std::future::Future;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Runs `fut` while a spinner with `message` turns; clears it when done.
pub async fn with_spinner<F: Future>(message: String, fut: F) -> F::Output {
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        pb.set_style(style);
    }
    pb.set_message(message);
    pb.enable_steady_tick(Duration::from_millis(100));
    let out = fut.await;
    pb.finish_and_clear();
    out
}
