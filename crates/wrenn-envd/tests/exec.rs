//! Foreground and streamed commands through a real envd.

mod common;

use std::collections::BTreeMap;

use common::*;
use futures::StreamExt;
use wrenn_protocol::{ErrorKind, ExecRequest, ProcessEvent};

#[tokio::test]
async fn health_and_exec_with_args_env_cwd() {
    let envd = Envd::start();
    let c = envd.client().await;
    let h = c.health().await.unwrap();
    assert_eq!(h.protocol, wrenn_protocol::PROTOCOL_VERSION);

    let out = c
        .exec(ExecRequest {
            cmd: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "echo \"$1 $GREETING $(pwd)\"; echo err >&2; exit 3".into(),
                "sh".into(),
                "arg1".into(),
            ],
            envs: BTreeMap::from([("GREETING".into(), "hello".into())]),
            cwd: Some("/tmp".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "arg1 hello /tmp\n");
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_code, 3);
    assert!(!out.timed_out);

    // PATH lookup and a killed process reports 128 + signal.
    let out = c
        .exec(ExecRequest {
            cmd: "sh".into(),
            args: vec!["-c".into(), "kill -9 $$".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(out.exit_code, 128 + 9);
}

#[tokio::test]
async fn exec_as_another_user() {
    let envd = Envd::start();
    let c = envd.client().await;
    let out = c
        .exec(ExecRequest {
            user: Some("nobody".into()),
            ..sh("id -un; id -u")
        })
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "nobody\n65534\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c
        .exec(ExecRequest {
            user: Some("65534".into()),
            ..sh("id -u")
        })
        .await
        .unwrap();
    assert_eq!(out.stdout, b"65534\n");
}

#[tokio::test]
async fn binary_output_survives_byte_exact() {
    let envd = Envd::start();
    let c = envd.client().await;
    let out = run(&c, "printf '\\000\\377\\376abc\\200'; printf '\\377' >&2").await;
    assert_eq!(out.stdout, b"\x00\xff\xfeabc\x80");
    assert_eq!(out.stderr, b"\xff");
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let envd = Envd::start();
    let c = envd.client().await;
    let marker = envd.dir.path().join("child.pid");
    let out = c
        .exec(ExecRequest {
            timeout_ms: Some(1_000),
            ..sh(&format!("sleep 300 & echo $! > {}; wait", marker.display()))
        })
        .await
        .unwrap();
    assert!(out.timed_out, "{out:?}");
    assert_eq!(out.exit_code, 128 + 9);
    let child: u32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        eventually(|| async { !pid_alive(child) }).await,
        "the shell's child sleep {child} survived the timeout"
    );
}

#[tokio::test]
async fn bad_input_gets_the_right_error_kind() {
    let envd = Envd::start();
    let c = envd.client().await;
    let e = c
        .exec(ExecRequest {
            cwd: Some("/no/such/dir".into()),
            ..sh("true")
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("/no/such/dir"), "{e}");
    assert_eq!(kind(e), ErrorKind::InvalidArgument);
    let e = c
        .exec(ExecRequest {
            cmd: "/no/such/program".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::NotFound);
    let e = c
        .exec(ExecRequest {
            user: Some("no-such-user".into()),
            ..sh("true")
        })
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn streamed_exec_and_dropping_the_stream_kills_the_group() {
    let envd = Envd::start();
    let c = envd.client().await;
    let mut s = c
        .exec_stream(sh("echo one; echo two >&2; exit 4"))
        .await
        .unwrap();
    assert!(s.pid > 0);
    let (mut out, mut err, mut code) = (Vec::new(), Vec::new(), None);
    while let Some(ev) = s.events.next().await {
        match ev {
            ProcessEvent::Stdout { data } => out.extend(data),
            ProcessEvent::Stderr { data } => err.extend(data),
            ProcessEvent::Exit { exit_code } => code = Some(exit_code),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        (out.as_slice(), err.as_slice(), code),
        (&b"one\n"[..], &b"two\n"[..], Some(4))
    );

    let marker = envd.dir.path().join("child.pid");
    let mut s = c
        .exec_stream(sh(&format!(
            "sleep 300 & echo $! > {}; echo ready; wait",
            marker.display()
        )))
        .await
        .unwrap();
    let shell = s.pid;
    match s.events.next().await {
        Some(ProcessEvent::Stdout { data }) => assert_eq!(data, b"ready\n"),
        other => panic!("expected output, got {other:?}"),
    }
    let child: u32 = std::fs::read_to_string(&marker)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    drop(s);
    assert!(
        eventually(|| async { !pid_alive(child) && !pid_alive(shell) }).await,
        "dropping the stream left the group alive"
    );
    // The connection still works after the reset stream.
    assert_eq!(run(&c, "echo ok").await.stdout, b"ok\n");
}

#[tokio::test]
async fn many_concurrent_requests() {
    let envd = Envd::start();
    let c = envd.client().await;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move { run(&c, &format!("echo {i}")).await })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap().stdout, format!("{i}\n").into_bytes());
    }
}

#[tokio::test]
async fn output_past_the_limit_is_drained_and_flagged() {
    let envd = Envd::start();
    let c = envd.client().await;
    let limit = wrenn_protocol::EXEC_OUTPUT_LIMIT;
    // More than the limit on both streams; the process must not block on a full pipe, and
    // what it does after the flood still counts.
    let script = format!(
        "head -c {} /dev/zero; head -c {} /dev/zero >&2; echo done; exit 3",
        limit + 5_000_000,
        limit + 1
    );
    let out = run(&c, &script).await;
    assert_eq!(out.exit_code, 3);
    assert!(!out.timed_out);
    assert_eq!(out.stdout.len(), limit);
    assert_eq!(out.stderr.len(), limit);
    assert!(out.stdout_truncated && out.stderr_truncated);
    assert!(out.stdout.iter().all(|b| *b == 0));

    let small = run(&c, "echo hi; echo ho >&2").await;
    assert_eq!(
        (&small.stdout[..], &small.stderr[..]),
        (&b"hi\n"[..], &b"ho\n"[..])
    );
    assert!(!small.stdout_truncated && !small.stderr_truncated);

    // Exactly the limit is not truncated.
    let exact = run(&c, &format!("head -c {limit} /dev/zero")).await;
    assert_eq!(exact.stdout.len(), limit);
    assert!(!exact.stdout_truncated);
}

#[tokio::test]
async fn a_restore_answers_with_envd_health() {
    // A host that just restored a guest makes one request; its answer is what /health says.
    let envd = Envd::start();
    let client = envd.client().await;
    let health = client
        .restore(wrenn_protocol::RestoreRequest {
            unix_time_ns: 0,
            entropy: Vec::new(),
            nameservers: Vec::new(),
        })
        .await
        .unwrap();
    assert_eq!(health, client.health().await.unwrap());
    assert_eq!(health.protocol, wrenn_protocol::PROTOCOL_VERSION);
}

#[tokio::test]
async fn a_command_starts_with_no_signal_blocked_or_ignored() {
    // envd ignores SIGPIPE; its commands must not inherit that (`yes | head` has to end).
    let envd = Envd::start();
    let c = envd.client().await;
    let out = c
        .exec(ExecRequest {
            cmd: "grep".into(),
            args: vec![
                "-E".into(),
                "^Sig(Blk|Ign)".into(),
                "/proc/self/status".into(),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mask = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    assert_eq!(mask("SigBlk:"), 0, "{text}");
    let sigpipe = 1u64 << (libc::SIGPIPE - 1);
    assert_eq!(mask("SigIgn:") & sigpipe, 0, "{text}");
    let out = c.exec(sh("yes | head -c 4")).await.unwrap();
    assert_eq!((out.exit_code, out.stdout.as_slice()), (0, &b"y\ny\n"[..]));
}

#[tokio::test]
async fn a_program_is_looked_up_in_the_commands_own_path() {
    let envd = Envd::start();
    let c = envd.client().await;
    let bin = envd.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let tool = bin.join("wrenn-test-tool");
    std::fs::write(&tool, "#!/bin/sh\necho found $0\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!("/nonexistent:{}:/usr/bin:/bin", bin.display());
    let out = c
        .exec(ExecRequest {
            cmd: "wrenn-test-tool".into(),
            envs: BTreeMap::from([("PATH".into(), path)]),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("found {}", tool.display())
    );
    // Not in that PATH (nor in envd's own): not found, named.
    let e = c
        .exec(ExecRequest {
            cmd: "wrenn-test-tool".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::NotFound);
}

#[tokio::test]
async fn a_script_without_an_interpreter_line_runs_with_the_shell() {
    // As execvp does: a file the kernel cannot run (no `#!`) is handed to /bin/sh.
    let envd = Envd::start();
    let c = envd.client().await;
    let script = envd.dir.path().join("plain-script");
    std::fs::write(&script, "echo plain $1\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = c
        .exec(ExecRequest {
            cmd: script.to_string_lossy().into_owned(),
            args: vec!["works".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        (out.exit_code, String::from_utf8_lossy(&out.stdout).trim()),
        (0, "plain works")
    );
}

#[tokio::test]
async fn a_program_found_but_not_executable_is_permission_denied() {
    let envd = Envd::start();
    let c = envd.client().await;
    let bin = envd.dir.path().join("noexec");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("wrenn-not-executable"), "#!/bin/sh\n").unwrap();
    let e = c
        .exec(ExecRequest {
            cmd: "wrenn-not-executable".into(),
            envs: BTreeMap::from([("PATH".into(), bin.display().to_string())]),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::PermissionDenied);
}
