//! Root filesystems: an mmdebstrap tree per template (cached by package list), then an ext4
//! image per (tree, envd binary), made with `mke2fs -d`.

use std::fs::OpenOptions;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{ImageError, Result};
use crate::fsutil;
use crate::progress::Step;
use crate::sources::{self, GUEST_SUITE};
use crate::template::BaseTemplate;
use crate::tools::{self, CP, MKE2FS, MMDEBSTRAP};

/// Bump when the tree recipe changes (options, hooks, files written into it).
const TREE_BUILDER_VERSION: u32 = 1;
/// Bump when the ext4 recipe changes.
const IMAGE_BUILDER_VERSION: u32 = 3;
/// Free space left in every image on top of its contents: room for a recipe build or a
/// user's installs. The image is sparse and capsules write into overlays, so unused space
/// costs nothing.
const FREE_SPACE: u64 = 4 << 30;
/// Where envd goes inside the guest.
const ENVD_PATH: &str = "usr/local/bin/envd";
/// Guest host name.
const HOSTNAME: &str = "wrenn";

/// A root filesystem image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsImage {
    /// The ext4 file; never modified after creation (use it as a read-only base).
    pub path: PathBuf,
    /// Short content id, e.g. `minimal-3f2a9c0d1e4b`: changes whenever the package list,
    /// the envd binary or the builder changes. The file is `<id>.ext4`.
    pub id: String,
}

/// The image built earlier under `dir` with this id, if any.
pub(crate) fn by_id(dir: &Path, id: &str) -> Option<RootfsImage> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        return None;
    }
    let path = dir.join(format!("{id}.ext4"));
    path.is_file().then(|| RootfsImage {
        path,
        id: id.to_string(),
    })
}

/// The content id of the image of `template` with `envd` baked in (built or not).
pub(crate) fn id(template: BaseTemplate, envd: &Path) -> Result<String> {
    let envd_hash = fsutil::sha256_file(envd)?;
    let tree_key = tree_key(template, &sources::guest_mirrors());
    Ok(format!(
        "{}-{}",
        template.name(),
        &fsutil::sha256_str(&format!(
            "image-v{IMAGE_BUILDER_VERSION}\n{tree_key}\n{envd_hash}"
        ))[..12]
    ))
}

/// Returns the image of `template` with `envd` baked in, building what is missing.
pub(crate) fn ensure(dir: &Path, template: BaseTemplate, envd: &Path) -> Result<RootfsImage> {
    let mirrors = sources::guest_mirrors();
    let tree_key = tree_key(template, &mirrors);
    let id = id(template, envd)?;
    if let Some(found) = by_id(dir, &id) {
        return Ok(found);
    }
    let trees = dir.join("trees");
    fsutil::create_dir_all(&trees)?;
    let _lock = fsutil::lock(&dir.join(format!(".{}.lock", template.name())))?;
    if let Some(found) = by_id(dir, &id) {
        return Ok(found);
    }
    fsutil::remove_stale_temps(dir, &format!("{}-", template.name()))?;
    fsutil::remove_stale_temps(&trees, &format!("{}-", template.name()))?;
    let tree = ensure_tree(&trees, template, &tree_key, &mirrors)?;
    let path = dir.join(format!("{id}.ext4"));
    build_image(&tree, envd, &path, &id)?;
    Ok(RootfsImage { path, id })
}

/// Key of the mmdebstrap tree: changes with the package list, mirrors and recipe.
fn tree_key(template: BaseTemplate, mirrors: &[String]) -> String {
    let recipe = format!(
        "tree-v{TREE_BUILDER_VERSION}\n{GUEST_SUITE}\n{}\n{}\n{:?}\n",
        template.packages().join(","),
        mirrors.join("\n"),
        mmdebstrap_options(template),
    );
    fsutil::sha256_str(&recipe)[..12].to_string()
}

fn mmdebstrap_options(template: BaseTemplate) -> Vec<String> {
    let mut o = vec![
        "--mode=root".to_string(),
        "--variant=minbase".to_string(),
        format!("--include={}", template.packages().join(",")),
        "--aptopt=Acquire::Languages \"none\"".to_string(),
    ];
    for excluded in [
        "/usr/share/man/*",
        "/usr/share/info/*",
        "/usr/share/locale/*",
        "/usr/share/doc/*",
    ] {
        o.push(format!("--dpkgopt=path-exclude={excluded}"));
    }
    o.push("--dpkgopt=path-include=/usr/share/doc/*/copyright".to_string());
    o.push("--dpkgopt=path-include=/usr/share/locale/locale.alias".to_string());
    o.push(
        "--customize-hook=chroot \"$1\" useradd --create-home --uid 1000 --user-group --shell /bin/bash user"
            .to_string(),
    );
    if template == BaseTemplate::Python {
        // `user` may use sudo without a password, as in E2B's base template.
        o.push(
            "--customize-hook=echo 'user ALL=(ALL:ALL) NOPASSWD: ALL' > \"$1/etc/sudoers.d/user\" && chmod 0440 \"$1/etc/sudoers.d/user\""
                .to_string(),
        );
    }
    o
}

/// The cached tree `trees/<template>-<key>`, built with mmdebstrap if missing.
fn ensure_tree(
    trees: &Path,
    template: BaseTemplate,
    key: &str,
    mirrors: &[String],
) -> Result<PathBuf> {
    let tree = trees.join(format!("{}-{key}", template.name()));
    if tree.is_dir() {
        tracing::debug!(tree = %tree.display(), "reusing cached root tree");
        return Ok(tree);
    }
    let tmp = fsutil::temp_sibling(&tree);
    fsutil::remove_any(&tmp)?;
    let step = Step::start(format!("debootstrap {} ({GUEST_SUITE})", template.name()));
    let mut cmd = MMDEBSTRAP.command()?;
    cmd.args(mmdebstrap_options(template))
        .arg(GUEST_SUITE)
        .arg(&tmp)
        .args(mirrors);
    tools::run_with_progress(
        &mut cmd,
        &format!("building the {} root tree", template.name()),
        &step,
    )?;
    write_guest_files(&tmp)?;
    sync_fs(&tmp)?;
    fsutil::rename_durable(&tmp, &tree)?;
    step.finish();
    Ok(tree)
}

/// Files every guest has: host name, hosts, envd's directory (the resolver is written per
/// image, [`fill_image`]).
fn write_guest_files(root: &Path) -> Result<()> {
    let etc = root.join("etc");
    let files = [
        ("hostname", format!("{HOSTNAME}\n")),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
        ),
    ];
    for (name, content) in files {
        let path = etc.join(name);
        fsutil::remove_any(&path)?;
        std::fs::write(&path, content).map_err(|e| ImageError::io("write", &path, e))?;
    }
    fsutil::create_dir_all(&root.join("usr/local/bin"))
}

fn sync_fs(path: &Path) -> Result<()> {
    let f = std::fs::File::open(path).map_err(|e| ImageError::io("open", path, e))?;
    nix::unistd::syncfs(std::os::fd::AsRawFd::as_raw_fd(&f))
        .map_err(|e| ImageError::io("sync file system of", path, e.into()))
}

/// Makes `<path>` (ext4) from `tree` plus `envd`, via a hard-linked staging copy.
fn build_image(tree: &Path, envd: &Path, path: &Path, id: &str) -> Result<()> {
    let step = Step::start(format!("mke2fs {id}"));
    let staging = fsutil::temp_sibling(&path.with_extension("d"));
    fsutil::remove_any(&staging)?;
    let mut cp = CP.command()?;
    cp.arg("-al").arg(tree).arg(&staging);
    tools::run(&mut cp, "staging the root tree")?;
    let result = fill_image(&staging, envd, path, &step);
    fsutil::remove_any(&staging)?;
    result?;
    step.finish();
    Ok(())
}

fn fill_image(staging: &Path, envd: &Path, path: &Path, step: &Step) -> Result<()> {
    let target = staging.join(ENVD_PATH);
    // A fresh file, never written through a hard link into the cached tree.
    fsutil::remove_any(&target)?;
    std::fs::copy(envd, &target).map_err(|e| ImageError::io("copy envd to", &target, e))?;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
        .map_err(|e| ImageError::io("chmod", &target, e))?;
    // The capsule's DNS forwarder at the gateway: envd writes the same at boot when the guest
    // has a network device and whatever the host says after each restore; this is what a
    // guest booted from the image sees before that.
    let resolv = staging.join("etc/resolv.conf");
    fsutil::remove_any(&resolv)?;
    let text = format!("nameserver {}\n", wrenn_protocol::net::GATEWAY_IP);
    std::fs::write(&resolv, text).map_err(|e| ImageError::io("write", &resolv, e))?;

    let size = (fsutil::tree_size(staging)? * 11 / 10 + FREE_SPACE).div_ceil(1 << 20) << 20;
    let tmp = fsutil::temp_sibling(path);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| ImageError::io("create", &tmp, e))?;
    file.set_len(size)
        .map_err(|e| ImageError::io("size", &tmp, e))?;
    drop(file);
    step.message(&format!("{} MiB", size >> 20));
    let mut cmd = MKE2FS.command()?;
    cmd.args([
        "-q",
        "-F",
        "-t",
        "ext4",
        "-m",
        "0",
        "-L",
        "wrenn-root",
        "-d",
    ])
    .arg(staging)
    .arg(&tmp);
    if let Err(e) = tools::run(&mut cmd, "making the ext4 image") {
        fsutil::remove_any(&tmp)?;
        return Err(e);
    }
    fsutil::fsync_file(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444))
        .map_err(|e| ImageError::io("chmod", &tmp, e))?;
    fsutil::rename_durable(&tmp, path)
}
