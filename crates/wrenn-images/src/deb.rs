//! Debian packages fetched with the host's apt (no host install) and unpacked with dpkg-deb.

use std::path::{Path, PathBuf};

use crate::error::{ImageError, Result};
use crate::progress::Step;
use crate::tools::{self, APT_GET, DPKG_DEB};

/// Downloads `spec` (`name` or `name=version`) into `dir` and returns the `.deb` path.
/// Runs `apt-get update` once and retries if apt does not know the package yet.
pub(crate) fn download(spec: &str, dir: &Path) -> Result<PathBuf> {
    let step = Step::start(format!("downloading {spec}"));
    let first = apt_download(spec, dir, &step);
    match first {
        Err(ImageError::CommandFailed { ref output, .. }) if lacks_lists(output) => {
            step.message("package lists missing, running apt-get update");
            let mut update = APT_GET.command()?;
            update.args(["update", "-q"]);
            tools::run_with_progress(&mut update, "apt-get update", &step)?;
            apt_download(spec, dir, &step)?;
        }
        other => other?,
    }
    let name = spec.split('=').next().unwrap_or(spec);
    let deb = find_deb(dir, name)?;
    step.finish();
    Ok(deb)
}

fn apt_download(spec: &str, dir: &Path, step: &Step) -> Result<()> {
    let mut cmd = APT_GET.command()?;
    cmd.current_dir(dir)
        .args(["download", "-q", "-o", "APT::Sandbox::User=root", spec]);
    tools::run_with_progress(&mut cmd, &format!("downloading package {spec}"), step)
}

fn lacks_lists(output: &str) -> bool {
    [
        "Unable to locate package",
        "no installation candidate",
        "Can't select",
        "not found",
    ]
    .iter()
    .any(|m| output.contains(m))
}

fn find_deb(dir: &Path, name: &str) -> Result<PathBuf> {
    let prefix = format!("{name}_");
    let entries = std::fs::read_dir(dir).map_err(|e| ImageError::io("read directory", dir, e))?;
    entries
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .ok_or_else(|| ImageError::Package {
            package: name.to_string(),
            problem: format!("apt-get download left no .deb in {}", dir.display()),
        })
}

/// One control field of a `.deb` (e.g. `Depends`), empty if absent.
pub(crate) fn field(deb: &Path, name: &str) -> Result<String> {
    let mut cmd = DPKG_DEB.command()?;
    cmd.arg("-f").arg(deb).arg(name);
    let out = tools::run(&mut cmd, &format!("reading {name} of {}", deb.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Unpacks the files of a `.deb` into `dir` (no maintainer scripts run).
pub(crate) fn extract(deb: &Path, dir: &Path) -> Result<()> {
    let mut cmd = DPKG_DEB.command()?;
    cmd.arg("-x").arg(deb).arg(dir);
    tools::run(&mut cmd, &format!("unpacking {}", deb.display()))?;
    Ok(())
}

/// The first package named in a `Depends` field that starts with `prefix`, with its
/// pinned version if the field has `(= version)`, as an apt-get download spec.
pub(crate) fn dependency_with_prefix(depends: &str, prefix: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .map(str::trim)
        .find(|d| d.starts_with(prefix))
        .map(|d| {
            let name = d.split_whitespace().next().unwrap_or(d);
            match d.split_once("(=") {
                Some((_, rest)) => format!("{name}={}", rest.trim_end_matches(')').trim()),
                None => name.to_string(),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_package_dependency_is_found_with_version() {
        let dep = "linux-image-6.1.0-56-cloud-amd64 (= 6.1.192-2)";
        assert_eq!(
            dependency_with_prefix(dep, "linux-image-").as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64=6.1.192-2")
        );
        assert_eq!(
            dependency_with_prefix("foo, linux-image-6.12.9-cloud-amd64", "linux-image-")
                .as_deref(),
            Some("linux-image-6.12.9-cloud-amd64")
        );
        assert_eq!(dependency_with_prefix("foo, bar", "linux-image-"), None);
    }
}
