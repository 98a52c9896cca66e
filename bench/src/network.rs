//! Capsule networking: TCP throughput guest → test host beside host → test host, and the time
//! networking adds to create and to resume (networking on vs off, same templates, same run).
//!
//! The test host is a network namespace this benchmark makes (198.18.1.1, routed by the host
//! through a veth pair), with a TCP sink bound inside it; no traffic leaves the machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use wrenn_agent::CapsuleManager;
use wrenn_host::HostApi;

use crate::common::{self, median, ms};

const NETNS: &str = "wrenn-bench-testhost";
const HOST_VETH: &str = "wbth0";
const TEST_HOST: &str = "198.18.1.1";
const HOST_SIDE: &str = "198.18.1.254";
const SINK_PORT: u16 = 5001;

fn cmd(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        bail!(
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct TestHost;

impl TestHost {
    fn start() -> anyhow::Result<TestHost> {
        let _ = cmd(&["ip", "netns", "del", NETNS]);
        let _ = cmd(&["ip", "link", "del", HOST_VETH]);
        cmd(&["ip", "netns", "add", NETNS])?;
        let th = TestHost;
        cmd(&[
            "ip", "link", "add", HOST_VETH, "type", "veth", "peer", "name", "eth0", "netns", NETNS,
        ])?;
        cmd(&[
            "ip",
            "addr",
            "add",
            &format!("{HOST_SIDE}/24"),
            "dev",
            HOST_VETH,
        ])?;
        cmd(&["ip", "link", "set", HOST_VETH, "up"])?;
        for step in [
            vec!["link", "set", "lo", "up"],
            vec!["addr", "add", "198.18.1.1/24", "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["route", "add", "default", "via", HOST_SIDE],
        ] {
            let mut a = vec!["ip", "-n", NETNS];
            a.extend(step);
            cmd(&a)?;
        }
        let route = cmd(&["ip", "route", "get", TEST_HOST])?;
        if !route.contains(&format!("dev {HOST_VETH}")) {
            bail!("the route to the test host is not local: {route}");
        }
        Ok(th)
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let _ = cmd(&["ip", "netns", "del", NETNS]);
        let _ = cmd(&["ip", "link", "del", HOST_VETH]);
    }
}

/// A TCP sink inside the test host: for each connection, the bytes read and the time from
/// accept to end of stream.
async fn sink() -> anyhow::Result<mpsc::Receiver<(u64, Duration)>> {
    let ns = PathBuf::from(wrenn_net::NETNS_DIR).join(NETNS);
    let listener = wrenn_net::cmd::in_netns(&ns, || {
        let l = std::net::TcpListener::bind((TEST_HOST, SINK_PORT))?;
        l.set_nonblocking(true)?;
        Ok(l)
    })?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let mut buf = vec![0u8; 1 << 16];
                let mut n = 0u64;
                while let Ok(k) = s.read(&mut buf).await {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                let _ = tx.send((n, t.elapsed())).await;
            });
        }
    });
    Ok(rx)
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64().max(1e-9)
}

async fn host_to_test_host(mib: usize) -> anyhow::Result<()> {
    let mut s = tokio::net::TcpStream::connect((TEST_HOST, SINK_PORT)).await?;
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..mib {
        s.write_all(&chunk).await?;
    }
    s.shutdown().await?;
    Ok(())
}

/// Median create and resume times of `reps` capsules.
async fn lifecycle_times(
    mgr: &CapsuleManager,
    reps: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let (mut creates, mut resumes) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let (id, took) = common::create(mgr, 256).await?;
        creates.push(took);
        mgr.pause(&id).await?;
        let t = Instant::now();
        mgr.resume(&id).await?;
        common::sh(
            &wrenn_envd_client::EnvdClient::over(mgr.guest(&id).await?),
            "true",
        )
        .await?;
        resumes.push(t.elapsed());
        mgr.destroy(&id).await?;
    }
    Ok((median(creates), median(resumes)))
}

/// Runs the network benchmark.
pub async fn run(
    mgr: &CapsuleManager,
    data_dir: &Path,
    envd: &Path,
    mib: usize,
    reps: usize,
) -> anyhow::Result<()> {
    let _th = TestHost::start()?;
    let mut results = sink().await?;
    mgr.prepare("minimal", 1, 256).await?;

    // Throughput: the same transfer from the host, then from a guest.
    host_to_test_host(mib).await?;
    let (host_bytes, host_t) = results.recv().await.context("sink result")?;
    let (id, _) = common::create(mgr, 256).await?;
    let guest = wrenn_envd_client::EnvdClient::over(mgr.guest(&id).await?);
    common::sh(
        &guest,
        &format!("bash -c 'head -c {mib}M /dev/zero > /dev/tcp/{TEST_HOST}/{SINK_PORT}'"),
    )
    .await?;
    let (guest_bytes, guest_t) = results.recv().await.context("sink result")?;
    mgr.destroy(&id).await?;
    if guest_bytes != host_bytes {
        bail!("the guest sent {guest_bytes} bytes, the host {host_bytes}");
    }

    let (create_on, resume_on) = lifecycle_times(mgr, reps).await?;
    let nonet = common::open_without_network(data_dir, envd).await?;
    let (create_off, resume_off) = lifecycle_times(&nonet, reps).await?;

    println!("## Network ({mib} MiB over TCP to a test host; median of {reps} creates and resumes at 256 MiB)\n");
    println!("| measure | with networking | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    let g = mib_s(guest_bytes, guest_t);
    let h = mib_s(host_bytes, host_t);
    println!(
        "| TCP throughput to the test host | guest {g:.1} MiB/s | host {h:.1} MiB/s | {:.3} |",
        g / h
    );
    println!(
        "| create from template | {} | networking off {} | +{} |",
        ms(create_on),
        ms(create_off),
        ms(create_on.saturating_sub(create_off))
    );
    println!(
        "| resume (envd answers) | {} | networking off {} | +{} |",
        ms(resume_on),
        ms(resume_off),
        ms(resume_on.saturating_sub(resume_off))
    );
    Ok(())
}
