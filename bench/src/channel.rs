//! `channel`: the host↔guest channel. A raw echo frame over the same virtio-serial port is the
//! baseline for an envd request; the time the guest itself takes to spawn and reap
//! `/bin/true` (measured inside the guest) plus three echoes is the floor of an exec; bulk
//! bytes streamed through the port each way with nothing but link framing on top (the guest's
//! link drops or produces them) are the floor of file throughput, and a `cat` pipe on the
//! host is shown beside it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use wrenn_agent::CapsuleManager;
use wrenn_host::HostApi;
use wrenn_protocol::{ExecRequest, WriteOptions};

use crate::common::{create, median, ms};

/// The file of the throughput figures, on the guest's tmpfs.
const BENCH_FILE: &str = "/dev/shm/bench.bin";

/// Transfers per direction for the throughput figures (the median is shown).
const TRANSFERS: usize = 3;

/// Runs the channel benchmark and prints its table.
pub async fn run(mgr: &CapsuleManager, rounds: usize, file_mib: usize) -> anyhow::Result<()> {
    mgr.prepare("minimal", 1, 512).await?;
    let (id, _) = create(mgr, 512).await?;
    let envd = wrenn_envd_client::EnvdClient::over(mgr.guest(&id).await?);
    let mut echo = Vec::new();
    let mut health = Vec::new();
    let mut exec = Vec::new();
    let mut in_guest = Vec::new();
    for _ in 0..rounds {
        echo.push(envd.echo(Bytes::from_static(b"ping")).await?);
        let t = Instant::now();
        envd.health().await?;
        health.push(t.elapsed());
        let t = Instant::now();
        let out = envd
            .exec(ExecRequest {
                cmd: "/bin/true".into(),
                ..Default::default()
            })
            .await?;
        exec.push(t.elapsed());
        in_guest.push(Duration::from_millis(out.duration_ms));
    }
    let size = file_mib << 20;
    // Transfers are noisy under emulation: the median of three each way. The file is on tmpfs
    // so that the figure is the channel's, not the guest's disk (a write is fsynced).
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    for _ in 0..TRANSFERS {
        let chunk = Bytes::from(vec![0x5au8; 1 << 20]);
        let body = futures::stream::iter(
            (0..file_mib).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
        )
        .boxed();
        let t = Instant::now();
        envd.write_file(BENCH_FILE, WriteOptions::default(), body)
            .await?;
        writes.push(t.elapsed());
        let t = Instant::now();
        let mut stream = envd.read_file(BENCH_FILE).await?;
        let mut got = 0usize;
        while let Some(b) = stream.next().await {
            got += b?.len();
        }
        reads.push(t.elapsed());
        anyhow::ensure!(got == size, "read {got} of {size} bytes");
    }
    let (write, read) = (median(writes), median(reads));
    let cat = cat_pipe(size).await?;
    let spawn = guest_spawn_time(&envd).await?;
    drop(envd);
    mgr.release_channels();
    let socket = mgr.vmm().agent_socket(&mgr.capsule_dir(&id));
    let (raw_in, raw_out) =
        tokio::time::timeout(Duration::from_secs(600), raw_port_rates(&socket, size))
            .await
            .map_err(|_| anyhow::anyhow!("the raw port transfers took over 10 minutes"))??;
    mgr.destroy(&id).await?;

    let rate = |d: Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let (e, h, x) = (median(echo), median(health), median(exec));
    println!(
        "{:<40} {:>14} {:>14} {:>8}",
        "measure (median)", "value", "baseline", "ratio"
    );
    println!(
        "{:<40} {:>14} {:>14} {:>8}",
        "raw echo over virtio-serial",
        ms(e),
        "-",
        "1.00"
    );
    println!(
        "{:<40} {:>14} {:>14} {:>8.2}",
        "envd request (health)",
        ms(h),
        ms(e),
        h.as_secs_f64() / e.as_secs_f64()
    );
    println!(
        "{:<40} {:>14} {:>14} {:>8.2}",
        "exec /bin/true round trip",
        ms(x),
        ms(e),
        x.as_secs_f64() / e.as_secs_f64()
    );
    println!(
        "{:<40} {:>14} {:>14} {:>8}",
        "  of which envd start to exit (in guest)",
        ms(median(in_guest)),
        "-",
        "-"
    );
    let floor = spawn + 3 * e;
    println!(
        "{:<40} {:>14} {:>14} {:>8.2}",
        "exec vs guest spawn + 3 echoes",
        ms(x),
        ms(floor),
        x.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "{:<40} {:>14} {:>14} {:>8}",
        "  guest spawn+reap /bin/true (in guest)",
        ms(spawn),
        "-",
        "-"
    );
    println!(
        "{:<40} {:>10.1} MiB/s {:>8.1} MiB/s {:>8.3}",
        format!("file write {file_mib} MiB (tmpfs)"),
        rate(write),
        rate(cat),
        rate(write) / rate(cat)
    );
    println!(
        "{:<40} {:>10.1} MiB/s {:>8.1} MiB/s {:>8.3}",
        format!("file read {file_mib} MiB (tmpfs)"),
        rate(read),
        rate(cat),
        rate(read) / rate(cat)
    );
    println!(
        "{:<40} {:>10.1} MiB/s {:>8.1} MiB/s {:>8.3}",
        "file write vs raw port to the guest",
        rate(write),
        raw_in,
        rate(write) / raw_in
    );
    println!(
        "{:<40} {:>10.1} MiB/s {:>8.1} MiB/s {:>8.3}",
        "file read vs raw port to the host",
        rate(read),
        raw_out,
        rate(read) / raw_out
    );
    Ok(())
}

/// How long the guest itself takes to spawn and reap `/bin/true`, timed inside the guest
/// over 200 runs (a shell loop: a fork and exec each, as envd does).
async fn guest_spawn_time(envd: &wrenn_envd_client::EnvdClient) -> anyhow::Result<Duration> {
    let script = "a=$(date +%s%N); i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done; \
                  b=$(date +%s%N); echo $(( (b - a) / 200 ))";
    let out = crate::common::sh(envd, script).await?;
    let ns: u64 = out
        .trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("guest timing {out:?}: {e}"))?;
    Ok(Duration::from_nanos(ns))
}

/// MiB/s the port carries raw, towards the guest and towards the host: bulk DISCARD frames
/// through a link session of the benchmark's own (the guest's link drops or produces them;
/// nothing but framing on top, no HTTP/2, no file). The manager's channel must be released
/// first: the VMM serves one connection on the socket at a time.
async fn raw_port_rates(socket: &std::path::Path, size: usize) -> anyhow::Result<(f64, f64)> {
    let stream = tokio::net::UnixStream::connect(socket).await?;
    let (link, _io) = wrenn_protocol::link::host::connect(stream, Duration::from_secs(60)).await?;
    let (mut to_guest, mut to_host) = (Vec::new(), Vec::new());
    for _ in 0..TRANSFERS {
        let t = Instant::now();
        link.discard(size).await?;
        to_guest.push(t.elapsed());
        let t = Instant::now();
        link.fill(size as u64).await?;
        to_host.push(t.elapsed());
    }
    let rate = |d: Duration| size as f64 / (1 << 20) as f64 / d.as_secs_f64();
    let (to_guest, to_host) = (rate(median(to_guest)), rate(median(to_host)));
    Ok((to_guest, to_host))
}

/// Time to push `size` bytes through `cat` on the host.
async fn cat_pipe(size: usize) -> anyhow::Result<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdin"))?;
    let mut stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let t = Instant::now();
    let writer = tokio::spawn(async move {
        let chunk = vec![0x5au8; 1 << 20];
        for _ in 0..size >> 20 {
            stdin.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(())
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0;
    while got < size {
        let n = stdout.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    writer.await??;
    let took = t.elapsed();
    child.kill().await.ok();
    Ok(took)
}
