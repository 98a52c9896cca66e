//! Capsules that run: create from a template, exec, processes, PTY and files through envd,
//! bad input, destroy, and an agent restart that keeps a capsule alive.

mod common;

use std::time::Duration;
use wrenn_envd_client::EnvdClient;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use wrenn_envd_client::EnvdError;
use wrenn_host::{HostApi, HostError, HostStatus};
use wrenn_protocol::{ErrorKind, ExecRequest, ProcessSelector, PtyEvent, PtyStart, WriteOptions};

fn guest_kind(e: EnvdError) -> ErrorKind {
    match e {
        EnvdError::Guest(body) => body.kind,
        other => panic!("expected an error from envd, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn create_exec_files_pty_destroy() {
    let th = TestHost::new();
    let host = th.open().await;
    let cap = create(&host, "minimal").await;
    assert_eq!(cap.status, HostStatus::Running);
    assert_eq!(host.list().await.unwrap().len(), 1);
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();

    // Exec with args, env, cwd and user.
    let out = envd
        .exec(ExecRequest {
            cmd: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "echo $GREETING; pwd; id -un; echo err >&2; exit 3".into(),
            ],
            envs: [("GREETING".to_string(), "hello".to_string())].into(),
            cwd: Some("/tmp".into()),
            user: Some("nobody".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "hello\n/tmp\nnobody\n"
    );
    assert_eq!(out.stderr, b"err\n");
    assert_eq!(out.exit_code, 3);

    // Output that is not UTF-8 survives byte for byte.
    let out = sh(&envd, r"printf '\377\376\000ok'").await;
    assert_eq!(out.stdout, b"\xff\xfe\x00ok");

    // A timeout kills the whole process group.
    let out = envd
        .exec(ExecRequest {
            cmd: "/bin/sh".into(),
            args: vec!["-c".into(), "sleep 300 & echo $! > /tmp/child; wait".into()],
            timeout_ms: Some(2_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        out.timed_out && out.exit_code != 0,
        "timeout not reported: {out:?}"
    );
    let child = sh_ok(&envd, "cat /tmp/child").await;
    let gone = eventually(20, || {
        let envd = envd.clone();
        let child = child.clone();
        async move { (sh(&envd, &format!("kill -0 {child}")).await.exit_code != 0).then_some(()) }
    })
    .await;
    assert!(gone.is_some(), "the timed-out command's child survived");

    // Bad input gets clear errors.
    let e = envd
        .exec(ExecRequest {
            cmd: "/bin/true".into(),
            cwd: Some("/no/such/dir".into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(guest_kind(e), ErrorKind::InvalidArgument);
    let e = envd.read_file("/no/such/file").await;
    let e = match e {
        Err(e) => e,
        Ok(mut s) => s
            .next()
            .await
            .expect("an item")
            .expect_err("reading a missing file"),
    };
    assert_eq!(guest_kind(e), ErrorKind::NotFound);
    let e = envd
        .signal(ProcessSelector::Tag("no-such-tag".into()), 15)
        .await
        .unwrap_err();
    assert_eq!(guest_kind(e), ErrorKind::NotFound);
    let e = match envd.read_file("/etc").await {
        Err(e) => e,
        Ok(mut s) => s
            .next()
            .await
            .expect("an item")
            .expect_err("reading a directory"),
    };
    assert_eq!(guest_kind(e), ErrorKind::IsADirectory);

    // Background process: output before the attach is not lost.
    let bg = envd
        .start_background(ExecRequest {
            cmd: "/bin/sh".into(),
            args: vec![
                "-c".into(),
                "echo early; sleep 1; echo late; sleep 600".into(),
            ],
            tag: Some("worker".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let listed = envd.list_processes().await.unwrap();
    assert!(listed.iter().any(|p| p.tag == "worker" && p.pid == bg.pid));
    let mut attached = envd
        .attach(ProcessSelector::Tag("worker".into()))
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("late") {
        match tokio::time::timeout(Duration::from_secs(60), attached.events.next()).await {
            Ok(Some(wrenn_protocol::ProcessEvent::Stdout { data })) => seen.extend(data),
            Ok(Some(_)) => {}
            other => panic!("attach ended early: {:?}", other.map(|o| o.is_some())),
        }
    }
    assert!(String::from_utf8_lossy(&seen).starts_with("early"));
    drop(attached);
    envd.signal(ProcessSelector::Pid(bg.pid), 9).await.unwrap();

    // PTY: start, type, see output, reattach after the client went away, kill.
    let pty = envd
        .pty_start(PtyStart {
            cmd: Some("/bin/bash".into()),
            cols: 80,
            rows: 24,
            tag: Some("term".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    drop(pty);
    envd.pty_input("term", Bytes::from_static(b"echo pty-$((6*7))\n"))
        .await
        .unwrap();
    let mut again = envd.pty_connect("term").await.unwrap();
    let mut screen = Vec::new();
    while !String::from_utf8_lossy(&screen).contains("pty-42") {
        match tokio::time::timeout(Duration::from_secs(60), again.output.next()).await {
            Ok(Some(PtyEvent::Output { data })) => screen.extend(data),
            other => panic!("pty output ended: {:?}", other.map(|o| o.is_some())),
        }
    }
    envd.pty_resize("term", 100, 30).await.unwrap();
    envd.pty_kill("term").await.unwrap();

    // Files: a 64 MiB round trip, stat, list, mkdir, remove.
    let size = 64usize << 20;
    let chunk: Vec<u8> = (0..1 << 20).map(|i: usize| (i * 7 + 3) as u8).collect();
    let chunk = Bytes::from(chunk);
    let body =
        futures::stream::iter((0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone()))).boxed();
    let entry = envd
        .write_file("/home/big.bin", WriteOptions::default(), body)
        .await
        .unwrap();
    assert_eq!(entry.size, size as u64);
    let mut read = envd.read_file("/home/big.bin").await.unwrap();
    let mut total = 0usize;
    let mut ok = true;
    while let Some(b) = read.next().await {
        let b = b.unwrap();
        for (i, byte) in b.iter().enumerate() {
            let pos = (total + i) % (1 << 20);
            ok &= *byte == (pos * 7 + 3) as u8;
        }
        total += b.len();
    }
    assert_eq!(total, size);
    assert!(ok, "file content changed in the round trip");
    envd.mkdir("/home/d/e/f").await.unwrap();
    let e = envd.mkdir("/home/d/e/f").await.unwrap_err();
    assert_eq!(guest_kind(e), ErrorKind::AlreadyExists);
    let listed = envd.list("/home", 2).await.unwrap();
    assert!(listed.iter().any(|e| e.path == "/home/big.bin"));
    assert!(listed.iter().any(|e| e.path == "/home/d/e"));
    envd.remove("/home/d").await.unwrap();
    let e = envd.stat("/home/d").await.unwrap_err();
    assert_eq!(guest_kind(e), ErrorKind::NotFound);

    // Destroy leaves nothing behind.
    let dir = host.capsule_dir(&cap.id);
    let pid = host.vmm_pid(&cap.id).await.unwrap().expect("a VMM pid");
    host.destroy(&cap.id).await.unwrap();
    assert!(!dir.exists(), "capsule directory left behind");
    assert!(!pid_alive(pid), "VMM process left behind");
    assert!(matches!(
        host.get(&cap.id).await,
        Err(HostError::NotFound(_))
    ));
    assert!(host.list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_create_requests_are_refused_cleanly() {
    let th = TestHost::new();
    // A host that hands out 4 GiB, whatever this machine has.
    let mut cfg = th.config();
    cfg.memory_mb_total = 4096;
    let host = wrenn_agent::CapsuleManager::open(cfg).await.unwrap();
    let bad = |id: &str, template: &str, vcpus, memory_mb| wrenn_host::CreateCapsule {
        id: id.into(),
        template: template.into(),
        vcpus,
        memory_mb,
        network: Default::default(),
    };
    assert!(matches!(
        host.create(bad(&new_id(), "no-such-template", 1, 512))
            .await,
        Err(HostError::NotFound(_))
    ));
    assert!(matches!(
        host.create(bad("../escape", "minimal", 1, 512)).await,
        Err(HostError::InvalidRequest(_))
    ));
    assert!(matches!(
        host.create(bad(&new_id(), "minimal", 0, 512)).await,
        Err(HostError::InvalidRequest(_))
    ));
    assert!(matches!(
        host.create(bad(&new_id(), "minimal", 1, 1_000_000)).await,
        Err(HostError::InvalidRequest(_))
    ));
    assert!(matches!(
        host.create(bad(&new_id(), "minimal", 1, 8192)).await,
        Err(HostError::Capacity(_))
    ));
    assert!(
        host.list().await.unwrap().is_empty(),
        "a refused create left a capsule"
    );
    let leftovers = std::fs::read_dir(th.dir.path().join("capsules"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "a refused create left files");
}

/// Run in a child process by `agent_killed_with_sigkill_readopts_its_capsules`.
#[tokio::test(flavor = "multi_thread")]
async fn crash_child_create_then_die() {
    let Ok(dir) = std::env::var("WRENN_CRASH_CHILD_DIR") else {
        return;
    };
    let mut cfg = wrenn_agent::AgentConfig::new(&dir, envd_binary());
    cfg.faults = Default::default();
    let host = wrenn_agent::CapsuleManager::open(cfg).await.unwrap();
    let cap = create(&host, "minimal").await;
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    sh_ok(
        &envd,
        "echo before-crash > /root/mark; (while true; do sleep 1; done) >/dev/null 2>&1 &",
    )
    .await;
    std::fs::write(format!("{dir}/child-capsule"), &cap.id).unwrap();
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_restarts_keep_capsules_alive_and_usable() {
    let th = TestHost::new();
    // A graceful restart.
    let host = th.open().await;
    let cap = create(&host, "minimal").await;
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    let bg = envd
        .start_background(ExecRequest {
            cmd: "/bin/sleep".into(),
            args: vec!["3600".into()],
            tag: Some("keeper".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let pid = host.vmm_pid(&cap.id).await.unwrap().unwrap();
    host.release_channels();
    drop(envd);
    drop(host);
    let host = th.open().await;
    let info = host.get(&cap.id).await.unwrap();
    assert_eq!(info.status, HostStatus::Running);
    assert_eq!(
        host.vmm_pid(&cap.id).await.unwrap(),
        Some(pid),
        "the VMM was replaced, not re-adopted"
    );
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    assert!(envd
        .list_processes()
        .await
        .unwrap()
        .iter()
        .any(|p| p.pid == bg.pid && p.tag == "keeper"));

    // kill -9 of an agent process: a child test process creates a capsule and SIGKILLs itself.
    // (One agent per data dir at a time: this one lets go first.)
    drop(envd);
    host.release_channels();
    drop(host);
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child_create_then_die", "--nocapture"])
        .env("WRENN_CRASH_CHILD_DIR", th.dir.path())
        .status()
        .unwrap();
    assert!(
        !status.success(),
        "the crash child was expected to die by SIGKILL"
    );
    let child_id = std::fs::read_to_string(th.dir.path().join("child-capsule")).unwrap();
    let host = th.open().await;
    for id in [&cap.id, &child_id] {
        let info = host.get(id).await.unwrap();
        assert_eq!(
            info.status,
            HostStatus::Running,
            "capsule {id} after the restart"
        );
    }
    let envd = host.guest(&child_id).await.map(EnvdClient::over).unwrap();
    assert_eq!(sh_ok(&envd, "cat /root/mark").await, "before-crash");

    // A VMM that died while the agent was away is reported as error, never as running.
    let dead = host.vmm_pid(&cap.id).await.unwrap().unwrap();
    drop(envd);
    host.release_channels();
    drop(host);
    unsafe { libc::kill(dead as i32, libc::SIGKILL) };
    assert!(
        eventually(20, || async { (!pid_alive(dead)).then_some(()) })
            .await
            .is_some()
    );
    let host = th.open().await;
    assert_eq!(host.get(&cap.id).await.unwrap().status, HostStatus::Error);
    host.destroy(&cap.id).await.unwrap();
    host.destroy(&child_id).await.unwrap();
}
