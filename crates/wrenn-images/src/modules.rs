//! Kernel modules the guest needs, resolved with their dependencies from an unpacked
//! kernel package (`modules.dep` when present, else each module's `depends=` field).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{ImageError, Result};
use crate::tools::{self, XZ, ZSTD};

/// A module ready to go into the initramfs.
#[derive(Debug, Clone)]
pub(crate) struct Module {
    /// Normalized name (`-` replaced by `_`).
    pub name: String,
    /// Path relative to `/lib/modules/<version>/`, always ending in plain `.ko`.
    pub rel_path: String,
    /// Uncompressed module bytes.
    pub data: Vec<u8>,
}

/// The modules of one unpacked kernel: `<root>/lib/modules/<version>`.
pub(crate) struct ModuleTree {
    dir: PathBuf,
    version: String,
    /// name -> path relative to `dir` (possibly compressed).
    files: HashMap<String, String>,
    builtin: BTreeSet<String>,
    /// name -> dependency names, from `modules.dep` if the package has one.
    dep_file: Option<HashMap<String, Vec<String>>>,
}

/// Canonical module name of a path like `kernel/drivers/net/virtio_net.ko.xz`.
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

impl ModuleTree {
    /// Indexes `<root>/lib/modules/<version>`.
    pub fn open(root: &Path, version: &str) -> Result<Self> {
        let mut dir = root.join("lib/modules").join(version);
        if !dir.is_dir() {
            dir = root.join("usr/lib/modules").join(version);
        }
        let mut files = HashMap::new();
        let mut stack = vec![dir.join("kernel")];
        while let Some(d) = stack.pop() {
            let entries =
                std::fs::read_dir(&d).map_err(|e| ImageError::io("read directory", &d, e))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&dir) {
                    let rel = rel.to_string_lossy().into_owned();
                    if rel.contains(".ko") {
                        files.insert(module_name(&rel), rel);
                    }
                }
            }
        }
        let builtin = read_optional(&dir.join("modules.builtin"))?
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(module_name)
            .collect();
        let dep_text = read_optional(&dir.join("modules.dep"))?;
        let dep_file = (!dep_text.trim().is_empty()).then(|| parse_modules_dep(&dep_text));
        Ok(ModuleTree {
            dir,
            version: version.to_string(),
            files,
            builtin,
            dep_file,
        })
    }

    /// True if the kernel has `name` built in.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&name.replace('-', "_"))
    }

    /// `wanted` plus everything they depend on, dependencies first, without built-ins.
    /// Names in `optional` are included when present and skipped otherwise.
    pub fn resolve(&self, wanted: &[&str], optional: &[&str]) -> Result<Vec<Module>> {
        let mut order = Vec::new();
        let mut loaded: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut visiting = BTreeSet::new();
        for name in wanted {
            self.visit(
                &name.replace('-', "_"),
                &mut order,
                &mut loaded,
                &mut visiting,
            )?;
        }
        for name in optional {
            let name = name.replace('-', "_");
            if self.files.contains_key(&name) {
                self.visit(&name, &mut order, &mut loaded, &mut visiting)?;
            }
        }
        Ok(order
            .into_iter()
            .map(|name| {
                let rel = self.files.get(&name).cloned().unwrap_or_default();
                let plain = format!("{}.ko", rel.split(".ko").next().unwrap_or(&rel));
                let data = loaded.remove(&name).unwrap_or_default();
                Module {
                    name,
                    rel_path: plain,
                    data,
                }
            })
            .collect())
    }

    fn visit(
        &self,
        name: &str,
        order: &mut Vec<String>,
        loaded: &mut BTreeMap<String, Vec<u8>>,
        visiting: &mut BTreeSet<String>,
    ) -> Result<()> {
        if loaded.contains_key(name) || visiting.contains(name) {
            return Ok(());
        }
        let Some(rel) = self.files.get(name) else {
            if self.is_builtin(name) {
                tracing::debug!(module = name, "built into the kernel");
                return Ok(());
            }
            return Err(ImageError::ModuleNotFound {
                kernel: self.version.clone(),
                module: name.to_string(),
            });
        };
        visiting.insert(name.to_string());
        let data = decompress(&self.dir.join(rel))?;
        let deps = match &self.dep_file {
            Some(map) => map.get(name).cloned().unwrap_or_default(),
            None => modinfo_depends(&data),
        };
        for dep in deps {
            self.visit(&dep, order, loaded, visiting)?;
        }
        visiting.remove(name);
        loaded.insert(name.to_string(), data);
        order.push(name.to_string());
        Ok(())
    }
}

fn read_optional(path: &Path) -> Result<String> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(ImageError::io("read", path, e)),
    }
}

/// Parses `modules.dep` lines `kernel/a.ko: kernel/b.ko kernel/c.ko`.
fn parse_modules_dep(text: &str) -> HashMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(module, deps)| {
            (
                module_name(module.trim()),
                deps.split_whitespace().map(module_name).collect(),
            )
        })
        .collect()
}

/// The `depends=` list of a module's `.modinfo` section.
fn modinfo_depends(data: &[u8]) -> Vec<String> {
    const KEY: &[u8] = b"\0depends=";
    let Some(start) = data.windows(KEY.len()).position(|w| w == KEY) else {
        return Vec::new();
    };
    let value = &data[start + KEY.len()..];
    let end = value.iter().position(|&b| b == 0).unwrap_or(value.len());
    String::from_utf8_lossy(&value[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

/// Reads a module file, decompressing `.ko.xz`, `.ko.zst` and `.ko.gz`.
fn decompress(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    if name.ends_with(".ko.xz") || name.ends_with(".ko.zst") {
        let tool = if name.ends_with(".xz") { XZ } else { ZSTD };
        let mut cmd = tool.command()?;
        cmd.arg("-dc").arg(path);
        return Ok(tools::run(&mut cmd, &format!("decompressing {name}"))?.stdout);
    }
    let raw = std::fs::read(path).map_err(|e| ImageError::io("read", path, e))?;
    if name.ends_with(".ko.gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| ImageError::io("gunzip", path, e))?;
        return Ok(out);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized() {
        assert_eq!(
            module_name("kernel/drivers/char/hw_random/virtio-rng.ko.xz"),
            "virtio_rng"
        );
        assert_eq!(module_name("kernel/fs/ext4/ext4.ko"), "ext4");
    }

    #[test]
    fn modinfo_depends_is_parsed() {
        let data =
            b"\x7fELF junk\0license=GPL\0depends=virtio_ring,virtio,net_failover\0intree=Y\0";
        assert_eq!(
            modinfo_depends(data),
            ["virtio_ring", "virtio", "net_failover"]
        );
        assert!(modinfo_depends(b"\0depends=\0").is_empty());
    }

    #[test]
    fn resolves_dependencies_first_and_skips_builtins() {
        let dir = tempfile::tempdir().unwrap();
        let m = dir.path().join("lib/modules/1.0/kernel");
        std::fs::create_dir_all(&m).unwrap();
        std::fs::write(m.join("a.ko"), b"\0depends=b,c\0").unwrap();
        std::fs::write(m.join("b.ko"), b"\0depends=c\0").unwrap();
        std::fs::write(m.join("c.ko"), b"\0depends=\0").unwrap();
        std::fs::write(
            dir.path().join("lib/modules/1.0/modules.builtin"),
            "kernel/fs/x/x.ko\n",
        )
        .unwrap();
        let tree = ModuleTree::open(dir.path(), "1.0").unwrap();
        let names: Vec<_> = tree
            .resolve(&["a", "x"], &["nope"])
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(names, ["c", "b", "a"]);
        assert!(matches!(
            tree.resolve(&["zz"], &[]),
            Err(ImageError::ModuleNotFound { .. })
        ));
    }
}
