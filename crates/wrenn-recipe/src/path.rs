//! Resolving and normalising paths.

/// `path` resolved against the absolute directory `base` (ignored when `path` is absolute) and
/// normalised: no empty, `.` or `..` component (`..` at the root stays at the root), no trailing
/// slash but for `/` itself.
pub(crate) fn resolve(base: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let start = if path.starts_with('/') { "" } else { base };
    for part in start.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    format!("/{}", parts.join("/"))
}

/// A `COPY` source normalised as a path relative to the build context (`.` for the context
/// itself), or why it is not one. The rule of every path inside a build context: the entries
/// of a context archive are held to it too.
pub fn context_path(path: &str) -> Result<String, &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.starts_with('/') {
        return Err("is absolute: sources are paths relative to the build context");
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("goes outside the build context (`..`)");
                }
            }
            part => parts.push(part),
        }
    }
    if parts.is_empty() {
        Ok(".".to_string())
    } else {
        Ok(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves() {
        assert_eq!(resolve("/", "a"), "/a");
        assert_eq!(resolve("/a/b", "c/./d/"), "/a/b/c/d");
        assert_eq!(resolve("/a/b", "/x//y/"), "/x/y");
        assert_eq!(resolve("/a/b", ".."), "/a");
        assert_eq!(resolve("/a", "../../.."), "/");
        assert_eq!(resolve("/", "/"), "/");
        assert_eq!(resolve("/a", "."), "/a");
        assert_eq!(resolve("/a", "b/../../c"), "/c");
    }

    #[test]
    fn context_paths() {
        assert_eq!(context_path("a/./b//c/").unwrap(), "a/b/c");
        assert_eq!(context_path(".").unwrap(), ".");
        assert_eq!(context_path("./").unwrap(), ".");
        assert_eq!(context_path("a/..").unwrap(), ".");
        assert_eq!(context_path("a/../b").unwrap(), "b");
        assert!(context_path("").is_err());
        assert!(context_path("/etc").is_err());
        assert!(context_path("..").is_err());
        assert!(context_path("a/../../b").is_err());
    }
}
