//! The base templates a root filesystem can be built from.

use std::fmt;
use std::str::FromStr;

/// A base root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BaseTemplate {
    /// Debian minbase with a shell, core tools, networking tools and curl.
    Minimal,
    /// `Minimal` plus Python 3 (with pip and venv).
    Python,
}

impl BaseTemplate {
    /// Every template.
    pub fn all() -> &'static [BaseTemplate] {
        &[BaseTemplate::Minimal, BaseTemplate::Python]
    }

    /// Name used in file names, the API and the CLI: `minimal`, `python`.
    pub fn name(&self) -> &'static str {
        match self {
            BaseTemplate::Minimal => "minimal",
            BaseTemplate::Python => "python",
        }
    }

    /// Debian packages installed on top of `mmdebstrap --variant=minbase`.
    pub fn packages(&self) -> Vec<&'static str> {
        let mut p = vec![
            "bash",
            "coreutils",
            "procps",
            "util-linux",
            "iproute2",
            "less",
            "ca-certificates",
            "curl",
            "git",
            "netbase",
            "passwd",
        ];
        if *self == BaseTemplate::Python {
            // E2B's `base` resolves to this template: Python 3, git, curl and `user` with sudo.
            p.extend(["python3", "python3-pip", "python3-venv", "sudo"]);
        }
        p
    }
}

impl fmt::Display for BaseTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a known template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown base template `{0}` (known: minimal, python)")]
pub struct UnknownTemplate(pub String);

impl FromStr for BaseTemplate {
    type Err = UnknownTemplate;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BaseTemplate::all()
            .iter()
            .copied()
            .find(|t| t.name() == s)
            .ok_or_else(|| UnknownTemplate(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in BaseTemplate::all() {
            assert_eq!(t.name().parse::<BaseTemplate>().unwrap(), *t);
        }
        assert!("ubuntu"
            .parse::<BaseTemplate>()
            .unwrap_err()
            .to_string()
            .contains("ubuntu"));
    }

    #[test]
    fn python_extends_minimal() {
        let min = BaseTemplate::Minimal.packages();
        let py = BaseTemplate::Python.packages();
        assert!(min.iter().all(|p| py.contains(p)));
        assert!(py.contains(&"python3"));
    }
}
