//! envd's duties as the guest's PID 1, checked in a real capsule (the `minimal` template,
//! booted once as a template snapshot and restored): it is PID 1, the kernel file systems
//! are mounted, loopback is up, orphans are reaped (no zombies), the resolver is the
//! gateway's DNS forwarder, terminals work.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use wrenn_envd_client::EnvdClient;
use wrenn_host::HostApi;
use wrenn_protocol::{PtyEvent, PtyStart, WriteOptions};

/// The mounts `envd::init::setup` makes: (mount point, file system type).
const MOUNTS: [(&str, &str); 7] = [
    ("/proc", "proc"),
    ("/sys", "sysfs"),
    ("/dev", "devtmpfs"),
    ("/dev/pts", "devpts"),
    ("/dev/shm", "tmpfs"),
    ("/tmp", "tmpfs"),
    ("/run", "tmpfs"),
];

#[tokio::test(flavor = "multi_thread")]
async fn envd_is_pid1_mounts_loopback_and_reaps_orphans() {
    let th = TestHost::new();
    let host = th.open().await;
    let cap = create(&host, "minimal").await;
    let envd = host.guest(&cap.id).await.map(EnvdClient::over).unwrap();

    // PID 1 is envd; a command runs as some other process.
    assert_eq!(sh_ok(&envd, "cat /proc/1/comm").await, "envd");
    let me: u32 = sh_ok(&envd, "echo $$").await.parse().unwrap();
    assert!(me > 1, "{me}");
    assert_eq!(sh_ok(&envd, "hostname").await, "wrenn");

    // The kernel file systems, each of its type.
    let mounts = sh_ok(&envd, "cat /proc/mounts").await;
    for (target, fstype) in MOUNTS {
        assert!(
            mounts.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1) == Some(&target) && f.get(2) == Some(&fstype)
            }),
            "{target} ({fstype}) not mounted:\n{mounts}"
        );
    }
    assert_eq!(
        sh_ok(
            &envd,
            "readlink /dev/fd; test -c /dev/pts/ptmx && echo ptmx"
        )
        .await,
        "/proc/self/fd\nptmx"
    );

    // Loopback is up: IFF_UP set, 127.0.0.1 on it, and a connection to a closed local
    // port is refused (with lo down it would be "Network is unreachable").
    let flags = sh_ok(&envd, "cat /sys/class/net/lo/flags").await;
    let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is down: flags {flags:#x}");
    assert!(sh_ok(&envd, "ip -4 addr show dev lo")
        .await
        .contains("inet 127.0.0.1/8"));
    let out = sh(&envd, "bash -c 'exec 3<>/dev/tcp/127.0.0.1/9'").await;
    assert_ne!(out.exit_code, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Connection refused"), "{err}");

    // Orphans: 20 background sleeps whose shell exits at once are re-parented to PID 1,
    // and each is reaped when it ends: its /proc entry goes away, no zombie stays.
    let pids = sh_ok(
        &envd,
        "for i in $(seq 20); do sleep 2 </dev/null >/dev/null 2>&1 & echo $!; done",
    )
    .await;
    let pids: Vec<u32> = pids.lines().map(|p| p.parse().unwrap()).collect();
    assert_eq!(pids.len(), 20);
    let ppids = sh_ok(
        &envd,
        &format!(
            "for p in {}; do awk '{{print $4}}' /proc/$p/stat; done",
            pids.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
    .await;
    assert!(
        ppids.lines().all(|p| p == "1") && ppids.lines().count() == 20,
        "orphans not re-parented to PID 1 (or ended too early): {ppids}"
    );
    let list = pids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let gone = eventually(60, || async {
        let left = sh_ok(
            &envd,
            &format!("for p in {list}; do test -e /proc/$p && echo $p; done; true"),
        )
        .await;
        left.is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "orphans not reaped within 60 s");
    let zombies = sh_ok(
        &envd,
        "for s in /proc/[0-9]*/stat; do awk '$3 == \"Z\" {print $1, $2}' $s 2>/dev/null; done; true",
    )
    .await;
    assert_eq!(zombies, "", "zombies left behind");

    // The resolver is the capsule's DNS forwarder at the gateway.
    assert_eq!(
        sh_ok(&envd, "grep ^nameserver /etc/resolv.conf").await,
        format!("nameserver {}", wrenn_protocol::net::GATEWAY_IP)
    );

    // A terminal (devpts) works.
    let mut pty = envd
        .pty_start(PtyStart {
            tag: Some("t".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    envd.pty_input("t", Bytes::from_static(b"echo pty-$((6*7)) $(tty)\n"))
        .await
        .unwrap();
    let mut screen = Vec::new();
    while !String::from_utf8_lossy(&screen).contains("pty-42 /dev/pts/") {
        match tokio::time::timeout(std::time::Duration::from_secs(120), pty.output.next())
            .await
            .expect("pty output")
        {
            Some(PtyEvent::Output { data }) => screen.extend(data),
            other => panic!("{other:?}"),
        }
    }
    envd.pty_kill("t").await.unwrap();
    drop(pty);

    // A file in /tmp (the tmpfs) round-trips.
    let chunk = Bytes::from(vec![0x5au8; 1 << 20]);
    let body =
        futures::stream::iter((0..4).map(move |_| Ok::<_, std::io::Error>(chunk.clone()))).boxed();
    envd.write_file("/tmp/x.bin", WriteOptions::default(), body)
        .await
        .unwrap();
    assert_eq!(
        sh_ok(
            &envd,
            "stat -c %s /tmp/x.bin; df --output=fstype /tmp | tail -1"
        )
        .await,
        "4194304\ntmpfs"
    );

    host.destroy(&cap.id).await.unwrap();
}
