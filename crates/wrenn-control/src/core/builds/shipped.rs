//! Recipes that come with Wrenn, built by name (`wrenn template build code-runner-beta`): their
//! text and context files live in the repository's `templates/<name>/` and are compiled in.

use crate::core::error::BuildError;

/// A recipe shipped with Wrenn.
pub struct Shipped {
    /// Template name.
    pub name: &'static str,
    /// Recipe text.
    pub recipe: &'static str,
    /// Its build context: (path, contents, mode).
    files: &'static [(&'static str, &'static str, u32)],
}

macro_rules! context_file {
    ($template:literal, $file:literal, $mode:literal) => {
        (
            $file,
            include_str!(concat!("../../../../../templates/", $template, "/", $file)),
            $mode,
        )
    };
}

/// Every shipped recipe.
pub const SHIPPED: &[Shipped] = &[Shipped {
    name: "code-runner-beta",
    recipe: include_str!("../../../../../templates/code-runner-beta/recipe"),
    files: &[
        context_file!("code-runner-beta", "kernel.json", 0o644),
        context_file!("code-runner-beta", "jupyter_server_config.py", 0o644),
        context_file!("code-runner-beta", "wrenn_code_runner.py", 0o644),
        context_file!("code-runner-beta", "00-wrenn.py", 0o644),
        context_file!("code-runner-beta", "warm_kernel.py", 0o644),
        context_file!("code-runner-beta", "e2b_interpreter.py", 0o644),
    ],
}];

/// The shipped recipe of that name.
pub fn recipe(name: &str) -> Option<&'static Shipped> {
    SHIPPED.iter().find(|s| s.name == name)
}

impl Shipped {
    /// Its context as a tar archive.
    pub fn context(&self) -> Result<Vec<u8>, BuildError> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, text, mode) in self.files {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(text.len() as u64);
            header.set_mode(*mode);
            tar.append_data(&mut header, path, text.as_bytes())
                .map_err(|e| BuildError::Internal(format!("packing {path}: {e}")))?;
        }
        tar.into_inner()
            .map_err(|e| BuildError::Internal(format!("packing the context: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::builds::context::BuildContext;

    #[test]
    fn shipped_recipes_parse_and_their_copies_are_in_their_context() {
        for s in SHIPPED {
            let recipe =
                wrenn_recipe::parse(s.recipe).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            let ctx = BuildContext::from_archive(&s.context().unwrap()).unwrap();
            for src in recipe.copy_sources() {
                assert!(ctx.contains(src), "{}: {src} missing", s.name);
            }
        }
    }
}
