//! Background processes and PTY sessions: they outlive streams and connections.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use wrenn_envd_client::EnvdClient;
use wrenn_protocol::{ErrorKind, ExecRequest, ProcessEvent, ProcessSelector, PtyEvent, PtyStart};

/// Reads stdout events until `needle` shows up; returns everything seen.
async fn stdout_until(
    events: &mut futures::stream::BoxStream<'static, ProcessEvent>,
    needle: &str,
) -> String {
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains(needle) {
        match tokio::time::timeout(WAIT, events.next()).await {
            Ok(Some(ProcessEvent::Stdout { data })) => seen.extend(data),
            Ok(Some(ProcessEvent::Stderr { .. })) => {}
            other => panic!(
                "stream ended before {needle:?}: {other:?}; saw {:?}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

async fn pty_until(c: &EnvdClient, tag: &str, needle: &str) {
    let mut s = c.pty_connect(tag).await.unwrap();
    let mut screen = Vec::new();
    while !String::from_utf8_lossy(&screen).contains(needle) {
        match tokio::time::timeout(WAIT, s.output.next()).await {
            Ok(Some(PtyEvent::Output { data })) => screen.extend(data),
            other => panic!("pty output ended before {needle:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn background_start_list_attach_replays_and_signal() {
    let envd = Envd::start();
    let c = envd.client().await;
    let marker = envd.dir.path().join("late");
    let script = format!(
        "echo early; while [ ! -e {} ]; do sleep 0.05; done; echo late; sleep 600",
        marker.display()
    );
    let info = c
        .start_background(ExecRequest {
            tag: Some("worker".into()),
            ..sh(&script)
        })
        .await
        .unwrap();
    assert_eq!(info.tag, "worker");
    assert!(!info.pty);

    // A second live process with the same tag is refused.
    let e = c
        .start_background(ExecRequest {
            tag: Some("worker".into()),
            ..sh("true")
        })
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::AlreadyExists);

    // Output produced before the attach is replayed.
    let mut first = c
        .attach(ProcessSelector::Tag("worker".into()))
        .await
        .unwrap();
    assert_eq!(first.pid, info.pid);
    stdout_until(&mut first.events, "early").await;
    drop(first);

    let listed = c.list_processes().await.unwrap();
    assert!(
        listed
            .iter()
            .any(|p| p.tag == "worker" && p.pid == info.pid),
        "{listed:?}"
    );

    let mut attached = c.attach(ProcessSelector::Pid(info.pid)).await.unwrap();
    std::fs::write(&marker, b"").unwrap();
    let seen = stdout_until(&mut attached.events, "late").await;
    assert!(seen.starts_with("early\n"), "{seen:?}");

    c.signal(ProcessSelector::Tag("worker".into()), libc::SIGTERM)
        .await
        .unwrap();
    let exit = loop {
        match tokio::time::timeout(WAIT, attached.events.next())
            .await
            .unwrap()
        {
            Some(ProcessEvent::Exit { exit_code }) => break exit_code,
            Some(_) => {}
            None => panic!("stream ended without exit"),
        }
    };
    assert_eq!(exit, 128 + libc::SIGTERM);
    assert!(!c
        .list_processes()
        .await
        .unwrap()
        .iter()
        .any(|p| p.tag == "worker"));

    // Attach after the exit replays, then reports the exit.
    let mut after = c
        .attach(ProcessSelector::Tag("worker".into()))
        .await
        .unwrap();
    let mut text = Vec::new();
    let mut code = None;
    while let Some(ev) = tokio::time::timeout(WAIT, after.events.next())
        .await
        .unwrap()
    {
        match ev {
            ProcessEvent::Stdout { data } => text.extend(data),
            ProcessEvent::Exit { exit_code } => code = Some(exit_code),
            _ => {}
        }
    }
    assert_eq!(
        (String::from_utf8_lossy(&text).as_ref(), code),
        ("early\nlate\n", Some(128 + libc::SIGTERM))
    );

    // The tag is free again once the process ended.
    c.start_background(ExecRequest {
        tag: Some("worker".into()),
        ..sh("true")
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn unknown_process_is_not_found() {
    let envd = Envd::start();
    let c = envd.client().await;
    let e = c
        .signal(ProcessSelector::Tag("no-such-tag".into()), 15)
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::NotFound);
    let e = c
        .signal(ProcessSelector::Pid(999_999), 15)
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::NotFound);
    assert_eq!(
        kind(
            c.attach(ProcessSelector::Tag("nope".into()))
                .await
                .err()
                .unwrap()
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(c.pty_connect("nope").await.err().unwrap()),
        ErrorKind::NotFound
    );
    let gen = c.start_background(sh("sleep 600")).await.unwrap();
    assert!(!gen.tag.is_empty(), "a tag is generated");
    c.signal(ProcessSelector::Tag(gen.tag), 9).await.unwrap();
}

#[tokio::test]
async fn a_new_connection_keeps_background_processes_and_ptys() {
    let envd = Envd::start();
    let c = envd.client().await;
    let bg = c
        .start_background(ExecRequest {
            tag: Some("keep".into()),
            ..sh("echo kept; sleep 600")
        })
        .await
        .unwrap();
    let _pty = c
        .pty_start(PtyStart {
            tag: Some("term".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    drop(c);
    let c2 = envd.client().await;
    let listed = c2.list_processes().await.unwrap();
    assert!(
        listed.iter().any(|p| p.tag == "keep" && p.pid == bg.pid),
        "{listed:?}"
    );
    assert!(
        listed.iter().any(|p| p.tag == "term" && p.pty),
        "{listed:?}"
    );
    let mut a = c2
        .attach(ProcessSelector::Tag("keep".into()))
        .await
        .unwrap();
    stdout_until(&mut a.events, "kept").await;
    c2.signal(ProcessSelector::Pid(bg.pid), 9).await.unwrap();
    c2.pty_kill("term").await.unwrap();
}

#[tokio::test]
async fn pty_type_drop_reconnect_resize_kill() {
    let envd = Envd::start();
    let c = envd.client().await;
    let mut s = c
        .pty_start(PtyStart {
            cmd: Some("/bin/bash".into()),
            cols: 80,
            rows: 24,
            tag: Some("shell".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(s.tag, "shell");
    c.pty_input("shell", Bytes::from_static(b"echo hi-$((40+2)) $TERM\n"))
        .await
        .unwrap();
    let mut screen = Vec::new();
    while !String::from_utf8_lossy(&screen).contains("hi-42 xterm-256color") {
        match tokio::time::timeout(WAIT, s.output.next()).await {
            Ok(Some(PtyEvent::Output { data })) => screen.extend(data),
            other => panic!("pty ended: {other:?}"),
        }
    }
    let pid = s.pid;
    drop(s);
    // The client went away: the session lives on, and replays its recent output.
    c.pty_input("shell", Bytes::from_static(b"echo still-$((6*7))\n"))
        .await
        .unwrap();
    pty_until(&c, "shell", "still-42").await;
    assert!(pid_alive(pid));

    c.pty_resize("shell", 100, 30).await.unwrap();
    c.pty_input("shell", Bytes::from_static(b"echo size=$(stty size)\n"))
        .await
        .unwrap();
    pty_until(&c, "shell", "size=30 100").await;

    let mut s = c.pty_connect("shell").await.unwrap();
    c.pty_kill("shell").await.unwrap();
    let code = loop {
        match tokio::time::timeout(WAIT, s.output.next()).await.unwrap() {
            Some(PtyEvent::Exit { exit_code }) => break exit_code,
            Some(_) => {}
            None => panic!("no exit event"),
        }
    };
    assert_eq!(code, 128 + 9);
    assert!(eventually(|| async { !pid_alive(pid) }).await);
    // envd records the exit before it sends the exit event, so the session refuses input
    // from the moment the event arrived: no wait in between.
    assert_eq!(
        kind(
            c.pty_input("shell", Bytes::from_static(b"x"))
                .await
                .unwrap_err()
        ),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn tags_are_restricted_to_a_safe_charset_and_length() {
    let envd = Envd::start();
    let c = envd.client().await;
    let bg = |tag: &str| ExecRequest {
        cmd: "/bin/sleep".into(),
        args: vec!["30".into()],
        tag: Some(tag.into()),
        ..Default::default()
    };
    let long = "x".repeat(10_000);
    for bad in [
        "a/b",
        "nul\0tag",
        "..",
        "-rf",
        "with space",
        "ünï",
        "123",
        &long,
    ] {
        let e = c.start_background(bg(bad)).await.unwrap_err();
        assert_eq!(kind(e), ErrorKind::InvalidArgument, "{bad:?}");
        let e = c
            .pty_start(PtyStart {
                tag: Some(bad.into()),
                ..Default::default()
            })
            .await
            .err()
            .expect("refused");
        assert_eq!(kind(e), ErrorKind::InvalidArgument, "pty {bad:?}");
    }
    assert!(c.list_processes().await.unwrap().is_empty());
    let ok = c.start_background(bg("job.v2_a-1")).await.unwrap();
    assert_eq!(ok.tag, "job.v2_a-1");
    c.signal(ProcessSelector::Tag(ok.tag), 9).await.unwrap();
}

#[tokio::test]
async fn stdin_pipe_feeds_a_background_process_until_closed() {
    let envd = Envd::start();
    let c = envd.client().await;
    let info = c
        .start_background(ExecRequest {
            stdin: true,
            ..sh("while read line; do echo \"got $line\"; done; echo eof")
        })
        .await
        .unwrap();
    let sel = ProcessSelector::Pid(info.pid);
    let attached = c.attach(sel.clone()).await.unwrap();
    assert_eq!(attached.pid, info.pid);
    let mut events = attached.events;
    c.send_stdin(sel.clone(), Bytes::from_static(b"one\ntwo\n"))
        .await
        .unwrap();
    let seen = stdout_until(&mut events, "got two").await;
    assert!(seen.contains("got one\n"), "{seen:?}");
    c.close_stdin(sel.clone()).await.unwrap();
    // Closing again is no error; writing after the close is refused.
    c.close_stdin(sel.clone()).await.unwrap();
    stdout_until(&mut events, "eof").await;
    loop {
        match tokio::time::timeout(WAIT, events.next()).await.unwrap() {
            Some(ProcessEvent::Exit { exit_code }) => {
                assert_eq!(exit_code, 0);
                break;
            }
            Some(_) => {}
            None => panic!("stream ended without an exit"),
        }
    }
    let e = c
        .send_stdin(sel, Bytes::from_static(b"late\n"))
        .await
        .unwrap_err();
    assert!(
        matches!(kind(e), ErrorKind::NotFound | ErrorKind::InvalidArgument),
        "write after the end"
    );
}

#[tokio::test]
async fn a_process_started_without_stdin_reads_eof_and_refuses_input() {
    let envd = Envd::start();
    let c = envd.client().await;
    let info = c
        .start_background(sh("cat; echo cat-ended; sleep 600"))
        .await
        .unwrap();
    let sel = ProcessSelector::Pid(info.pid);
    let mut events = c.attach(sel.clone()).await.unwrap().events;
    stdout_until(&mut events, "cat-ended").await;
    let e = c
        .send_stdin(sel.clone(), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(kind(e), ErrorKind::InvalidArgument);
    c.signal(sel, libc::SIGKILL).await.unwrap();
}
