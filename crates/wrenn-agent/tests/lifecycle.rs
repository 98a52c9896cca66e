//! Pause, resume and snapshot templates: full-state snapshots, crash safety, fault injection.

mod common;

use std::sync::Arc;
use std::time::Duration;
use wrenn_envd_client::EnvdClient;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use wrenn_agent::faults::{FaultAction, FaultPoint, Faults};
use wrenn_agent::{AgentConfig, CapsuleManager};
use wrenn_host::{HostApi, HostError, HostStatus, TemplateKind};
use wrenn_protocol::{ExecRequest, PtyEvent, PtyStart};

/// Starts a counter process whose value lives only in its memory and is written to a tmpfs
/// file every 100 ms, and a marker in a tmpfs file.
async fn start_stateful_work(envd: &EnvdClient) -> u32 {
    sh_ok(envd, "echo kept-in-tmpfs > /tmp/marker").await;
    envd.start_background(ExecRequest {
        cmd: "/bin/bash".into(),
        args: vec![
            "-c".into(),
            "n=0; while true; do n=$((n+1)); echo $n > /tmp/counter; sleep 0.1; done".into(),
        ],
        tag: Some("counter".into()),
        ..Default::default()
    })
    .await
    .expect("start the counter")
    .pid
}

async fn counter(envd: &EnvdClient) -> u64 {
    let v = eventually(30, || async {
        sh_ok(envd, "cat /tmp/counter 2>/dev/null || true")
            .await
            .parse::<u64>()
            .ok()
    })
    .await;
    v.expect("the counter file")
}

/// Checks the capsule's state after a restore: the same counter process, still counting from
/// where it was (its memory survived), the tmpfs marker, a clock close to the host's.
async fn check_state(envd: &EnvdClient, pid: u32, at_least: u64) -> u64 {
    let procs = envd.list_processes().await.expect("list processes");
    assert!(
        procs.iter().any(|p| p.pid == pid && p.tag == "counter"),
        "the counter process is gone: {procs:?}"
    );
    assert_eq!(sh_ok(envd, "cat /tmp/marker").await, "kept-in-tmpfs");
    let first = counter(envd).await;
    assert!(
        first >= at_least,
        "counter went back: {first} < {at_least} (memory not restored)"
    );
    let later = eventually(60, || async {
        let v = counter(envd).await;
        (v > first).then_some(v)
    })
    .await;
    later.expect("the counter does not advance after the restore")
}

async fn guest_clock_skew(envd: &EnvdClient) -> i64 {
    let guest: i64 = sh_ok(envd, "date +%s").await.parse().unwrap();
    let host = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    (guest - host).abs()
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_and_resume_keep_processes_files_memory_and_ptys() {
    let th = TestHost::new();
    let host = th.open().await;
    let cap = create(&host, "minimal").await;
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    let pid = start_stateful_work(&envd).await;
    let pty = envd
        .pty_start(PtyStart {
            cmd: Some("/bin/bash".into()),
            cols: 80,
            rows: 24,
            tag: Some("shell".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let pty_pid = pty.pid;
    drop(pty);
    envd.pty_input("shell", Bytes::from_static(b"secret=$((40+2))\n"))
        .await
        .unwrap();
    let before = counter(&envd).await;
    let vmm = host.vmm_pid(&cap.id).await.unwrap().unwrap();

    let paused = host.pause(&cap.id).await.unwrap();
    assert_eq!(paused.status, HostStatus::Paused);
    assert!(!pid_alive(vmm), "pause must end the VMM process");
    assert!(host
        .capsule_dir(&cap.id)
        .join("snapshot/snapshot.json")
        .exists());
    assert!(matches!(
        host.guest(&cap.id).await,
        Err(HostError::InvalidState(_))
    ));
    assert!(matches!(
        host.pause(&cap.id).await,
        Err(HostError::InvalidState(_))
    ));

    // Paused long enough for the guest clock to fall behind.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let resumed = host.resume(&cap.id).await.unwrap();
    assert_eq!(resumed.status, HostStatus::Running);
    assert!(matches!(
        host.resume(&cap.id).await,
        Err(HostError::InvalidState(_))
    ));
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    assert!(
        guest_clock_skew(&envd).await <= 3,
        "guest clock not corrected after resume"
    );
    check_state(&envd, pid, before).await;
    // The PTY's shell kept its variable.
    let mut term = envd.pty_connect("shell").await.unwrap();
    assert_eq!(term.pid, pty_pid);
    envd.pty_input("shell", Bytes::from_static(b"echo value=$secret\n"))
        .await
        .unwrap();
    let mut screen = Vec::new();
    while !String::from_utf8_lossy(&screen).contains("value=42") {
        match tokio::time::timeout(Duration::from_secs(60), term.output.next()).await {
            Ok(Some(PtyEvent::Output { data })) => screen.extend(data),
            other => panic!("pty ended: {:?}", other.map(|o| o.is_some())),
        }
    }
    host.destroy(&cap.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_capsule_survives_100_pause_resume_cycles() {
    let th = TestHost::new();
    let host = th.open().await;
    let cap = create(&host, "minimal").await;
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    let pid = start_stateful_work(&envd).await;
    let mut last = counter(&envd).await;
    for cycle in 1..=100u32 {
        let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
        sh_ok(&envd, &format!("echo {cycle} > /root/cycle")).await;
        host.pause(&cap.id)
            .await
            .unwrap_or_else(|e| panic!("pause {cycle}: {e}"));
        host.resume(&cap.id)
            .await
            .unwrap_or_else(|e| panic!("resume {cycle}: {e}"));
        let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
        assert_eq!(
            sh_ok(&envd, "cat /root/cycle").await,
            cycle.to_string(),
            "cycle {cycle}"
        );
        let procs = envd.list_processes().await.unwrap();
        assert!(
            procs.iter().any(|p| p.pid == pid),
            "cycle {cycle}: counter process gone"
        );
        let now = counter(&envd).await;
        assert!(
            now >= last,
            "cycle {cycle}: counter went back from {last} to {now}"
        );
        last = now;
    }
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    check_state(&envd, pid, last).await;
    host.destroy(&cap.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn clones_of_one_template_do_not_share_randomness() {
    let th = TestHost::new();
    let host = th.open().await;
    let a = create(&host, "minimal").await;
    let b = create(&host, "minimal").await;
    let read = |id: String| {
        let host = host.clone();
        async move {
            let envd = host.guest(&id).await.map(EnvdClient::over).unwrap();
            sh_ok(
                &envd,
                "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'",
            )
            .await
        }
    };
    let (ra, rb) = (read(a.id.clone()).await, read(b.id.clone()).await);
    assert_eq!(ra.len(), 64, "od output: {ra:?}");
    assert_ne!(
        ra, rb,
        "two clones of one snapshot produced the same random bytes"
    );
    // And a capsule resumed twice from... itself keeps producing fresh bytes.
    host.pause(&a.id).await.unwrap();
    host.resume(&a.id).await.unwrap();
    let again = read(a.id.clone()).await;
    assert_ne!(again, ra);
    host.destroy(&a.id).await.unwrap();
    host.destroy(&b.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_templates_carry_files_and_processes_and_outlive_deletion() {
    let th = TestHost::new();
    let host = th.open().await;
    let src = create(&host, "minimal").await;
    let envd = host.guest(&src.id).await.map(EnvdClient::over).unwrap();
    sh_ok(&envd, "echo from-template > /root/file").await;
    let bg = envd
        .start_background(ExecRequest {
            cmd: "/bin/sleep".into(),
            args: vec!["3600".into()],
            tag: Some("sleeper".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let name = format!("t-{}", &new_id()[3..12]);
    let t = host.snapshot(&src.id, &name, false).await.unwrap();
    assert_eq!(t.kind, TemplateKind::Snapshot);
    assert!(t.size_bytes > 0);
    // The source keeps running.
    assert_eq!(host.get(&src.id).await.unwrap().status, HostStatus::Running);
    let envd = host.guest(&src.id).await.map(EnvdClient::over).unwrap();
    assert_eq!(sh_ok(&envd, "cat /root/file").await, "from-template");
    // An existing name is a conflict unless overwrite.
    assert!(matches!(
        host.snapshot(&src.id, &name, false).await,
        Err(HostError::Conflict(_))
    ));
    host.snapshot(&src.id, &name, true).await.unwrap();
    assert!(host
        .templates()
        .await
        .unwrap()
        .iter()
        .any(|x| x.name == name));

    let clone = create(&host, &name).await;
    let cenv = host.guest(&clone.id).await.map(EnvdClient::over).unwrap();
    assert_eq!(sh_ok(&cenv, "cat /root/file").await, "from-template");
    assert!(cenv
        .list_processes()
        .await
        .unwrap()
        .iter()
        .any(|p| p.pid == bg.pid && p.tag == "sleeper"));

    host.delete_template(&name).await.unwrap();
    assert!(matches!(
        host.delete_template(&name).await,
        Err(HostError::NotFound(_))
    ));
    assert!(matches!(
        host.delete_template("minimal").await,
        Err(HostError::InvalidRequest(_))
    ));
    // The clone does not depend on the deleted template.
    sh_ok(&cenv, "echo still-here > /root/after").await;
    host.pause(&clone.id).await.unwrap();
    host.resume(&clone.id).await.unwrap();
    let cenv = host.guest(&clone.id).await.map(EnvdClient::over).unwrap();
    assert_eq!(
        sh_ok(&cenv, "cat /root/file /root/after").await,
        "from-template\nstill-here"
    );
    host.destroy(&clone.id).await.unwrap();
    host.destroy(&src.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_or_incompatible_snapshots_are_refused_and_stay_paused() {
    let th = TestHost::new();
    let host = th.open().await;
    let cap = create(&host, "minimal").await;
    host.pause(&cap.id).await.unwrap();
    let snap = host.capsule_dir(&cap.id).join("snapshot");
    let state = snap.join("state");
    let good = std::fs::read(&state).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&state, &bad).unwrap();
    let e = host.resume(&cap.id).await.unwrap_err().to_string();
    assert!(e.contains("checksum"), "unexpected error: {e}");
    assert_eq!(host.get(&cap.id).await.unwrap().status, HostStatus::Paused);
    std::fs::write(&state, &good).unwrap();

    let manifest = snap.join("snapshot.json");
    let original = std::fs::read_to_string(&manifest).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v["vmm_version"] = "QEMU emulator version 1.0".into();
    std::fs::write(&manifest, v.to_string()).unwrap();
    let e = host.resume(&cap.id).await.unwrap_err().to_string();
    assert!(
        e.contains("QEMU emulator version 1.0"),
        "unexpected error: {e}"
    );
    std::fs::write(&manifest, "{ not json").unwrap();
    let e = host.resume(&cap.id).await.unwrap_err().to_string();
    assert!(e.contains("corrupt"), "unexpected error: {e}");
    assert_eq!(host.get(&cap.id).await.unwrap().status, HostStatus::Paused);

    std::fs::write(&manifest, original).unwrap();
    host.resume(&cap.id).await.unwrap();
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    sh_ok(&envd, "true").await;
    host.destroy(&cap.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_during_pause_leaves_the_capsule_running() {
    let th = TestHost::new();
    let host = th.open().await;
    let cap = create(&host, "minimal").await;
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    let pid = start_stateful_work(&envd).await;
    // The snapshot is written into a file system with 16 KiB of room.
    let target = host.capsule_dir(&cap.id).join("snapshot.new");
    std::fs::create_dir_all(&target).unwrap();
    common::mount_tiny_fs(&target, "16k");
    let err = host.pause(&cap.id).await;
    common::unmount(&target);
    let err = err.expect_err("pause onto a full disk must fail");
    assert!(!err.to_string().is_empty());
    assert_eq!(host.get(&cap.id).await.unwrap().status, HostStatus::Running);
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    let before = counter(&envd).await;
    check_state(&envd, pid, before).await;
    // With room again, pause works.
    host.pause(&cap.id).await.unwrap();
    host.resume(&cap.id).await.unwrap();
    host.destroy(&cap.id).await.unwrap();
}

/// Run in a child process: pause or resume with the agent killed (SIGKILL) at one step.
#[tokio::test(flavor = "multi_thread")]
async fn crash_child_lifecycle_step() {
    let Ok(dir) = std::env::var("WRENN_CRASH_CHILD_DIR") else {
        return;
    };
    let point = std::env::var("WRENN_CRASH_POINT").unwrap();
    let point = FaultPoint::ALL
        .into_iter()
        .find(|p| format!("{p:?}") == point)
        .unwrap();
    let id = std::fs::read_to_string(format!("{dir}/capsule")).unwrap();
    let mut cfg = AgentConfig::new(&dir, envd_binary());
    cfg.faults = Faults::at(point, FaultAction::KillAgent);
    let host = CapsuleManager::open(cfg).await.unwrap();
    let is_resume = format!("{point:?}").starts_with("Resume");
    if host.get(&id).await.unwrap().status == HostStatus::Running && is_resume {
        host.pause(&id).await.unwrap();
    }
    if is_resume {
        host.resume(&id).await.unwrap();
    } else {
        host.pause(&id).await.unwrap();
    }
    panic!("the fault at {point:?} did not fire");
}

/// After a crash: the capsule is running, or paused with a loadable snapshot; either way it
/// resumes to the same state.
async fn assert_running_or_cleanly_paused(
    host: &CapsuleManager,
    id: &str,
    pid: u32,
    at_least: u64,
    what: &str,
) {
    let status = host.get(id).await.unwrap().status;
    match status {
        HostStatus::Running => {}
        HostStatus::Paused => {
            host.resume(id)
                .await
                .unwrap_or_else(|e| panic!("{what}: paused but not loadable: {e}"));
        }
        other => panic!("{what}: capsule is {other:?}"),
    }
    let envd = host.guest(id).await.map(EnvdClient::over).unwrap();
    check_state(&envd, pid, at_least).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_agent_at_any_step_leaves_a_running_or_cleanly_paused_capsule() {
    let th = TestHost::new();
    let host = th.open().await;
    let cap = create(&host, "minimal").await;
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
    let pid = start_stateful_work(&envd).await;
    std::fs::write(th.dir.path().join("capsule"), &cap.id).unwrap();
    drop(envd);
    host.release_channels();
    drop(host);
    let mut last = 0;
    for point in FaultPoint::ALL {
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child_lifecycle_step", "--nocapture"])
            .env("WRENN_CRASH_CHILD_DIR", th.dir.path())
            .env("WRENN_CRASH_POINT", format!("{point:?}"))
            .status()
            .unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{point:?}: the child did not die at the fault"
        );
        let host = th.open().await;
        assert_running_or_cleanly_paused(
            &host,
            &cap.id,
            pid,
            last,
            &format!("agent killed at {point:?}"),
        )
        .await;
        last = counter(&host.guest(&cap.id).await.map(EnvdClient::over).unwrap()).await;
        host.release_channels();
        drop(host);
    }
    let host = th.open().await;
    host.destroy(&cap.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_vmm_during_pause_or_resume_never_leaves_a_lie() {
    let th = TestHost::new();
    for point in FaultPoint::ALL {
        // The hook kills whatever VMM runs in this test's capsule directory.
        let capsules = th.dir.path().join("capsules");
        let hook = Arc::new(move || {
            for e in std::fs::read_dir(&capsules).into_iter().flatten().flatten() {
                if let Ok(pid) = std::fs::read_to_string(e.path().join("qemu.pid")) {
                    if let Ok(pid) = pid.trim().parse::<i32>() {
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                        while std::path::Path::new(&format!("/proc/{pid}/exe")).exists() {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                    }
                }
            }
        });
        let mut cfg = th.config();
        cfg.faults = Faults::at(point, FaultAction::Hook(hook));
        let host = CapsuleManager::open(cfg).await.unwrap();
        let cap = create(&host, "minimal").await;
        let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();
        let pid = start_stateful_work(&envd).await;
        let before = counter(&envd).await;
        let is_resume = format!("{point:?}").starts_with("Resume");
        if is_resume {
            host.pause(&cap.id).await.unwrap();
            let _ = host.resume(&cap.id).await;
        } else {
            let _ = host.pause(&cap.id).await;
        }
        // Whatever happened, a restarted agent never reports a dead VMM as running, and a
        // paused capsule has a loadable snapshot.
        host.release_channels();
        drop(host);
        let host = th.open().await;
        let status = host.get(&cap.id).await.unwrap().status;
        let what = format!("VMM killed at {point:?}");
        match point {
            // The VM was running and nothing was saved yet, or it had already run on from
            // its snapshot: its state died with the process.
            FaultPoint::PauseStarted | FaultPoint::ResumeRunning => {
                assert_eq!(status, HostStatus::Error, "{what}");
            }
            _ => assert_running_or_cleanly_paused(&host, &cap.id, pid, before, &what).await,
        }
        host.destroy(&cap.id).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_built_base_template_is_listed_with_its_size_and_build_time() {
    let th = TestHost::new();
    let host = th.open().await;
    // A create makes sure the root filesystem and the 1 vCPU / 512 MiB snapshot exist.
    let cap = create(&host, "minimal").await;
    let listed = host.templates().await.unwrap();
    let minimal = listed
        .iter()
        .find(|t| t.name == "minimal" && t.kind == TemplateKind::Base)
        .expect("minimal listed");
    // Its current image: the one built with this envd.
    let store = wrenn_images::ImageStore::new(th.dir.path());
    let id = store
        .rootfs_id(wrenn_images::BaseTemplate::Minimal, &envd_binary())
        .unwrap();
    let image = store
        .rootfs_by_id(&id)
        .expect("the current minimal image")
        .path;
    let meta = std::fs::metadata(&image).unwrap();
    let built = meta
        .modified()
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(minimal.created_at, built, "{minimal:?}");
    use std::os::unix::fs::MetadataExt;
    // The image's blocks plus at least one booted snapshot (its memory and device state).
    assert!(
        minimal.size_bytes > meta.blocks() * 512 + (1 << 20),
        "{minimal:?} vs image {} bytes allocated",
        meta.blocks() * 512
    );
    assert_eq!((minimal.vcpus, minimal.memory_mb), (1, 512));
    host.destroy(&cap.id).await.unwrap();
}
