//! The clap arguments of `wrenn capsule …` and `wrenn snapshot …`.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where the server is and how to authenticate; shared by the client commands.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientOpts {
    /// Base URL of the Wrenn API, with or without `/api`.
    #[arg(
        long,
        global = true,
        env = "WRENN_BASE_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub base_url: String,
    /// API key (`wrn_…`); `wrenn server` prints one at its first start and saves it to
    /// `<data dir>/admin.key`.
    #[arg(long, global = true, env = "WRENN_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Print the server's JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    pub json: bool,
    /// PEM file of CA certificates to trust for an `https://` base URL, besides the
    /// public roots (a server behind a private CA or a self-signed certificate).
    #[arg(long, global = true, env = "WRENN_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// `wrenn capsule …`.
#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum CapsuleCommand {
    /// Creates a capsule and prints its id.
    Create {
        /// Template or snapshot name.
        #[arg(long, short, default_value = "minimal")]
        template: String,
        /// Virtual CPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Memory in MiB.
        #[arg(long = "memory-mb", visible_alias = "memory", default_value_t = 512)]
        memory_mb: u64,
        /// Pause the capsule after this many idle seconds (0 = never).
        #[arg(long = "timeout-sec", visible_alias = "timeout", default_value_t = 0)]
        timeout_sec: u64,
        /// Print the id at once, also while the capsule is still `starting`.
        #[arg(long)]
        no_wait: bool,
    },
    /// Lists capsules.
    #[command(visible_alias = "ls")]
    List,
    /// Shows one capsule.
    Get {
        /// Capsule id (`cl-…`).
        id: String,
    },
    /// Runs a command and prints its output; exits with its exit code.
    ///
    /// One argument is run by `/bin/sh -c` as written (pipes work); several are quoted and
    /// run as one command line. A command killed at `--timeout-sec` says so and exits 124.
    Exec {
        /// Capsule id (`cl-…`).
        id: String,
        /// Kill the command after this many seconds.
        #[arg(
            long = "timeout-sec",
            visible_alias = "timeout",
            conflicts_with = "background"
        )]
        timeout_sec: Option<u64>,
        /// Start the command in the background and print its pid and tag (see `ps`, `kill`).
        #[arg(long, short = 'd')]
        background: bool,
        /// Tag of a background command (default: one the server makes).
        #[arg(long, requires = "background")]
        tag: Option<String>,
        /// Working directory inside the capsule.
        #[arg(long)]
        cwd: Option<String>,
        /// Environment variable `KEY=VALUE` (repeatable).
        #[arg(long, short = 'e', value_parser = parse_env)]
        env: Vec<(String, String)>,
        /// The command and its arguments (after `--`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Opens an interactive terminal in the capsule.
    Shell {
        /// Capsule id (`cl-…`).
        id: String,
        /// Reattach to the terminal session with this tag instead of starting one.
        #[arg(long, conflicts_with = "cmd")]
        attach: Option<String>,
        /// Command line to run instead of `/bin/bash` (run by `/bin/sh -c`).
        cmd: Option<String>,
    },
    /// Pauses a capsule (snapshot to disk; processes keep their state).
    Pause {
        /// Capsule id (`cl-…`).
        id: String,
    },
    /// Resumes a paused capsule.
    Resume {
        /// Capsule id (`cl-…`).
        id: String,
    },
    /// Destroys capsules.
    #[command(visible_alias = "destroy", visible_alias = "delete")]
    Rm {
        /// Capsule ids (`cl-…`).
        #[arg(required = true)]
        id: Vec<String>,
    },
    /// Copies files or directories between this machine and a capsule.
    ///
    /// One side is `CAPSULE_ID:/absolute/path`. Like `docker cp`: a directory is copied with
    /// everything in it; copied into an existing directory it keeps its name there, else it
    /// takes the destination's name. `-` as the local side is stdout/stdin (one file).
    Cp {
        /// Source: a local path or `cl-…:/path`.
        src: String,
        /// Destination: a local path or `cl-…:/path`.
        dst: String,
    },
    /// Lists the processes started through the API (pid, tag, command).
    Ps {
        /// Capsule id (`cl-…`).
        id: String,
    },
    /// Sends a signal (default SIGKILL) to a process by pid or tag.
    Kill {
        /// Capsule id (`cl-…`).
        id: String,
        /// Process pid or tag.
        target: String,
        /// Signal: `TERM`, `SIGINT`, `HUP`, `KILL`, … or a number.
        #[arg(long, short)]
        signal: Option<String>,
    },
    /// Shows CPU and memory charts and the latest samples of a capsule.
    Metrics {
        /// Capsule id (`cl-…`).
        id: String,
        /// How far back.
        #[arg(long, default_value = "10m",
              value_parser = ["5m", "10m", "1h", "2h", "6h", "12h", "24h"])]
        range: String,
        /// How many of the latest samples the table lists.
        #[arg(long, short = 'n', default_value_t = 10)]
        rows: usize,
    },
}

/// `wrenn snapshot …`.
#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum SnapshotCommand {
    /// Saves a capsule (files, memory, running processes) as a template.
    Create {
        /// Capsule to snapshot (`cl-…`).
        capsule_id: String,
        /// Template name (`[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}`); the server picks one if absent.
        #[arg(long, short)]
        name: Option<String>,
        /// Replace an existing template of that name.
        #[arg(long)]
        overwrite: bool,
    },
    /// Lists templates and snapshots.
    #[command(visible_alias = "ls")]
    List {
        /// Only `base` templates or only `snapshot`s.
        #[arg(long = "type", value_parser = ["base", "snapshot"])]
        kind: Option<String>,
    },
    /// Deletes a snapshot template.
    #[command(visible_alias = "delete")]
    Rm {
        /// Template name.
        name: String,
    },
}

/// Parses `KEY=VALUE`.
pub fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// The environment pairs as a map (later values win).
pub fn env_map(pairs: &[(String, String)]) -> BTreeMap<String, String> {
    pairs.iter().cloned().collect()
}

/// The `/bin/sh -c` command line of `exec`'s arguments: one argument as written, several
/// each shell-quoted and joined by spaces.
pub fn command_line(args: &[String]) -> String {
    match args {
        [one] => one.clone(),
        many => many
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// Quotes `s` for a POSIX shell (unchanged when it needs no quoting).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'_' | b'.' | b'/' | b',' | b':' | b'=' | b'+' | b'@' | b'%'
                )
        });
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct TestCli {
        #[command(flatten)]
        opts: ClientOpts,
        #[command(subcommand)]
        cmd: Sub,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Sub {
        Capsule {
            #[command(subcommand)]
            c: CapsuleCommand,
        },
        Snapshot {
            #[command(subcommand)]
            s: SnapshotCommand,
        },
    }

    fn capsule(args: &[&str]) -> CapsuleCommand {
        let mut argv = vec!["t", "--api-key", "k", "capsule"];
        argv.extend_from_slice(args);
        match TestCli::try_parse_from(argv).unwrap().cmd {
            Sub::Capsule { c } => c,
            Sub::Snapshot { .. } => unreachable!(),
        }
    }

    #[test]
    fn create_has_contract_defaults() {
        assert_eq!(
            capsule(&["create"]),
            CapsuleCommand::Create {
                template: "minimal".into(),
                vcpus: 1,
                memory_mb: 512,
                timeout_sec: 0,
                no_wait: false,
            }
        );
        assert_eq!(
            capsule(&[
                "create",
                "-t",
                "python",
                "--vcpus",
                "2",
                "--memory-mb",
                "1024",
                "--timeout-sec",
                "300"
            ]),
            CapsuleCommand::Create {
                template: "python".into(),
                vcpus: 2,
                memory_mb: 1024,
                timeout_sec: 300,
                no_wait: false,
            }
        );
    }

    #[test]
    fn exec_takes_trailing_command_with_hyphens() {
        let c = capsule(&[
            "exec", "cl-a", "-e", "A=1", "--cwd", "/tmp", "--", "ls", "-la", "/",
        ]);
        assert_eq!(
            c,
            CapsuleCommand::Exec {
                id: "cl-a".into(),
                timeout_sec: None,
                background: false,
                tag: None,
                cwd: Some("/tmp".into()),
                env: vec![("A".into(), "1".into())],
                command: vec!["ls".into(), "-la".into(), "/".into()],
            }
        );
        // Without `--` too.
        match capsule(&["exec", "cl-a", "uname", "-a"]) {
            CapsuleCommand::Exec { command, .. } => assert_eq!(command, vec!["uname", "-a"]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exec_needs_a_command_and_valid_env() {
        let r = TestCli::try_parse_from(["t", "capsule", "exec", "cl-a"]);
        assert!(r.is_err());
        let r = TestCli::try_parse_from(["t", "capsule", "exec", "cl-a", "-e", "NOEQUALS", "true"]);
        assert!(r.is_err());
    }

    #[test]
    fn rm_takes_several_ids_and_list_has_alias() {
        assert_eq!(
            capsule(&["rm", "cl-a", "cl-b"]),
            CapsuleCommand::Rm {
                id: vec!["cl-a".into(), "cl-b".into()]
            }
        );
        assert_eq!(capsule(&["ls"]), CapsuleCommand::List);
    }

    #[test]
    fn aliases_are_listed_in_help() {
        use clap::CommandFactory;
        let mut cmd = TestCli::command();
        let capsule = cmd.find_subcommand_mut("capsule").unwrap();
        let help = capsule.render_help().to_string();
        assert!(help.contains("Lists capsules [alias: ls]"), "{help}");
        assert!(help.contains("[aliases: destroy, delete]"), "{help}");
    }

    #[test]
    fn kill_metrics_and_background_exec() {
        assert_eq!(
            capsule(&["kill", "cl-a", "job", "-s", "TERM"]),
            CapsuleCommand::Kill {
                id: "cl-a".into(),
                target: "job".into(),
                signal: Some("TERM".into())
            }
        );
        assert_eq!(
            capsule(&["metrics", "cl-a"]),
            CapsuleCommand::Metrics {
                id: "cl-a".into(),
                range: "10m".into(),
                rows: 10
            }
        );
        assert!(
            TestCli::try_parse_from(["t", "capsule", "metrics", "cl-a", "--range", "3m"]).is_err()
        );
        match capsule(&["exec", "-d", "--tag", "job", "cl-a", "sleep", "100"]) {
            CapsuleCommand::Exec {
                background, tag, ..
            } => {
                assert!(background);
                assert_eq!(tag.as_deref(), Some("job"));
            }
            other => panic!("{other:?}"),
        }
        // A tag only means something in the background; a timeout only in the foreground.
        assert!(
            TestCli::try_parse_from(["t", "capsule", "exec", "--tag", "x", "cl-a", "true"])
                .is_err()
        );
        assert!(TestCli::try_parse_from([
            "t",
            "capsule",
            "exec",
            "-d",
            "--timeout-sec",
            "1",
            "cl-a",
            "true"
        ])
        .is_err());
    }

    #[test]
    fn shell_attach_conflicts_with_cmd() {
        assert_eq!(
            capsule(&["shell", "cl-a", "--attach", "t1"]),
            CapsuleCommand::Shell {
                id: "cl-a".into(),
                attach: Some("t1".into()),
                cmd: None
            }
        );
        let r = TestCli::try_parse_from(["t", "capsule", "shell", "cl-a", "--attach", "t", "top"]);
        assert!(r.is_err());
    }

    #[test]
    fn snapshot_list_type_is_checked() {
        let p =
            TestCli::try_parse_from(["t", "--json", "snapshot", "list", "--type", "base"]).unwrap();
        assert!(p.opts.json);
        match p.cmd {
            Sub::Snapshot { s } => assert_eq!(
                s,
                SnapshotCommand::List {
                    kind: Some("base".into())
                }
            ),
            Sub::Capsule { .. } => unreachable!(),
        }
        assert!(TestCli::try_parse_from(["t", "snapshot", "list", "--type", "other"]).is_err());
    }

    #[test]
    fn command_line_quotes_only_when_needed() {
        assert_eq!(command_line(&["echo hi | wc -c".into()]), "echo hi | wc -c");
        assert_eq!(
            command_line(&[
                "echo".into(),
                "a b".into(),
                "it's".into(),
                "".into(),
                "-n".into()
            ]),
            r#"echo 'a b' 'it'\''s' '' -n"#
        );
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert_eq!(parse_env("A=").unwrap(), ("A".into(), "".into()));
        assert!(parse_env("=x").is_err());
        let m = env_map(&[("A".into(), "1".into()), ("A".into(), "2".into())]);
        assert_eq!(m["A"], "2");
    }
}
