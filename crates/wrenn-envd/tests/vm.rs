//! Checks against an envd running as PID 1 in a VM: set `ENVD_VM_SOCKET` to the VM's agent
//! port socket and run with `--run-ignored only`.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use wrenn_envd_client::EnvdClient;
use wrenn_protocol::{ExecRequest, PtyEvent, PtyStart, RestoreRequest, WriteOptions};

fn sh(script: &str) -> ExecRequest {
    ExecRequest {
        cmd: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        ..Default::default()
    }
}

#[tokio::test]
#[ignore = "needs a VM: set ENVD_VM_SOCKET"]
async fn envd_as_pid1_in_a_vm() {
    let sock = std::env::var("ENVD_VM_SOCKET").expect("ENVD_VM_SOCKET");
    let wait = Duration::from_secs(300);
    let c = EnvdClient::connect(sock.as_ref(), wait).await.unwrap();
    println!(
        "echo round trip {:?}",
        c.echo(Bytes::from_static(b"ping")).await.unwrap()
    );
    let out = c.exec(sh("echo $$ $(cat /proc/1/comm) $(hostname); ls /dev/pts; ip link show lo 2>/dev/null | head -1; mount | grep -c tmpfs")).await.unwrap();
    println!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.exit_code, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("envd"));

    // Orphans are reaped by PID 1 (no zombies left behind).
    let out = c
        .exec(sh(
            "(sleep 0.2 &) ; sleep 1; ps -eo stat,comm 2>/dev/null | grep -c '^Z' || true",
        ))
        .await
        .unwrap();
    println!("zombies: {}", String::from_utf8_lossy(&out.stdout));

    let mut pty = c
        .pty_start(PtyStart {
            tag: Some("t".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    c.pty_input("t", Bytes::from_static(b"echo pty-$((6*7))\n"))
        .await
        .unwrap();
    let mut screen = Vec::new();
    while !String::from_utf8_lossy(&screen).contains("pty-42") {
        match tokio::time::timeout(wait, pty.output.next()).await.unwrap() {
            Some(PtyEvent::Output { data }) => screen.extend(data),
            other => panic!("{other:?}"),
        }
    }
    c.pty_kill("t").await.unwrap();
    // Streams hold the connection open, and QEMU serves one connection at a time.
    drop(pty);

    let size = 16usize << 20;
    let chunk = Bytes::from(vec![0x5au8; 1 << 20]);
    let body =
        futures::stream::iter((0..16).map(move |_| Ok::<_, std::io::Error>(chunk.clone()))).boxed();
    let t = std::time::Instant::now();
    c.write_file("/tmp/x.bin", WriteOptions::default(), body)
        .await
        .unwrap();
    let w = t.elapsed();
    let t = std::time::Instant::now();
    let mut s = c.read_file("/tmp/x.bin").await.unwrap();
    let mut n = 0;
    while let Some(b) = s.next().await {
        n += b.unwrap().len();
    }
    assert_eq!(n, size);
    println!("16 MiB write {w:?}, read {:?}", t.elapsed());

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    c.restore(RestoreRequest {
        unix_time_ns: now,
        entropy: vec![7u8; 64],
        nameservers: vec![],
    })
    .await
    .unwrap();
    println!("metrics {:?}", c.metrics().await.unwrap());

    // A second connection (new session) works, and the first one is gone.
    drop(c);
    let c2 = EnvdClient::connect(sock.as_ref(), wait).await.unwrap();
    assert_eq!(c2.exec(sh("echo again")).await.unwrap().stdout, b"again\n");
}
