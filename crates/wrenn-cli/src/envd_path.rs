//! Finding the static envd binary to bake into guest images.

use std::path::PathBuf;

use anyhow::{bail, Context};

/// The envd binary: the given path, else `envd` next to this executable, else the static
/// build in the workspace's `target/x86_64-unknown-linux-gnu/release/`.
pub fn resolve(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        if !p.is_file() {
            bail!(
                "envd binary {} does not exist (build it with scripts/build-envd)",
                p.display()
            );
        }
        return Ok(p);
    }
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        candidates.push(dir.join("envd-static"));
        // target/debug/wrenn -> target/x86_64-unknown-linux-gnu/release/envd
        if let Some(target) = dir.parent() {
            candidates.push(target.join("x86_64-unknown-linux-gnu/release/envd"));
        }
    }
    for c in &candidates {
        if c.is_file() {
            return Ok(c.clone());
        }
    }
    bail!(
        "no static envd binary found (looked at {}); build it with scripts/build-envd or pass --envd",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
    )
}
