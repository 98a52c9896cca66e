//! Shared helpers of the integration tests.

use std::path::PathBuf;

/// Shared data dir so other crates' tests reuse the built images.
pub fn data_dir() -> PathBuf {
    std::env::var_os("WRENN_TEST_DATA_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/wrenn-test"))
}
