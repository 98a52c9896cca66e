//! The Debian mirror the guest root filesystems come from: taken from the host's apt
//! sources when the host uses Debian, else deb.debian.org.

use std::path::Path;

/// Debian release of the guest root filesystems.
pub(crate) const GUEST_SUITE: &str = "bookworm";

const DEFAULT_MIRRORS: &[&str] = &[
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];

/// One-line apt sources (`deb URI SUITE main`) for mmdebstrap, main component only.
pub(crate) fn guest_mirrors() -> Vec<String> {
    let mut found = Vec::new();
    let etc = Path::new("/etc/apt");
    if let Ok(text) = std::fs::read_to_string(etc.join("sources.list")) {
        found.extend(parse_one_line(&text));
    }
    if let Ok(entries) = std::fs::read_dir(etc.join("sources.list.d")) {
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("list") => found.extend(parse_one_line(&text)),
                Some("sources") => found.extend(parse_deb822(&text)),
                _ => {}
            }
        }
    }
    let mut lines: Vec<String> = Vec::new();
    for (uri, suite) in found {
        let line = format!("deb {} {suite} main", uri.trim_end_matches('/'));
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    if !lines
        .iter()
        .any(|l| l.ends_with(&format!(" {GUEST_SUITE} main")))
    {
        return DEFAULT_MIRRORS.iter().map(|s| s.to_string()).collect();
    }
    lines
}

/// Suites the guest uses: the release, its updates and its security suite.
fn wanted_suite(suite: &str) -> bool {
    suite == GUEST_SUITE
        || suite == format!("{GUEST_SUITE}-updates")
        || suite == format!("{GUEST_SUITE}-security")
}

fn parse_one_line(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace().peekable();
        if words.next() != Some("deb") {
            continue;
        }
        if words.peek().is_some_and(|w| w.starts_with('[')) {
            for w in words.by_ref() {
                if w.ends_with(']') {
                    break;
                }
            }
        }
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            continue;
        };
        if wanted_suite(suite) && words.any(|c| c == "main") {
            out.push((uri.to_string(), suite.to_string()));
        }
    }
    out
}

fn parse_deb822(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for para in text.split("\n\n") {
        let field = |name: &str| -> Vec<String> {
            para.lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .find_map(|l| {
                    l.split_once(':')
                        .filter(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                })
                .map(|(_, v)| v.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default()
        };
        if !field("Types").iter().any(|t| t == "deb")
            || field("Enabled").iter().any(|e| e == "no")
            || !field("Components").iter().any(|c| c == "main")
        {
            continue;
        }
        for uri in field("URIs") {
            for suite in field("Suites").iter().filter(|s| wanted_suite(s)) {
                out.push((uri.clone(), suite.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources_are_read() {
        let text = "Types: deb\n# comment\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates bookworm-backports\nComponents: main contrib\n\nTypes: deb-src\nURIs: http://x\nSuites: bookworm\nComponents: main\n";
        assert_eq!(
            parse_deb822(text),
            [
                (
                    "http://m.example/debian".to_string(),
                    "bookworm".to_string()
                ),
                (
                    "http://m.example/debian".to_string(),
                    "bookworm-updates".to_string()
                )
            ]
        );
    }

    #[test]
    fn one_line_sources_are_read() {
        let text = "deb [arch=amd64] http://m/debian bookworm main\ndeb http://m/debian bookworm-backports main\n# deb http://z bookworm main\n";
        assert_eq!(
            parse_one_line(text),
            [("http://m/debian".to_string(), "bookworm".to_string())]
        );
    }
}
