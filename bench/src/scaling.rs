//! `scaling`: what a create costs as the work around it grows. Create latency with 0, 5 and 10
//! capsules already running; the time from a create to its first exec answered, step by step
//! (each first call beside the same call warm); N creates from one template at once beside
//! the same creates one after another; host memory of N idle capsules from one template
//! beside N times one idle capsule alone.

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use wrenn_agent::CapsuleManager;
use wrenn_envd_client::EnvdClient;
use wrenn_host::HostApi;
use wrenn_protocol::ExecRequest;

use crate::common::{create, median, mib, ms, percentile, VmmMemory};

/// Memory of every capsule of this benchmark, MiB.
const MEMORY_MB: u32 = 512;

/// Runs the scaling benchmark and prints its tables.
pub async fn run(mgr: &CapsuleManager, count: usize, reps: usize) -> anyhow::Result<()> {
    let need = u32::try_from(count * 2 + 1).unwrap_or(u32::MAX);
    anyhow::ensure!(
        mgr.capacity().await?.vcpus_total >= need,
        "scaling holds up to {need} capsules of 1 vCPU at once: run it with --vcpus-total {need} or more"
    );
    println!("accelerator: {}", mgr.vmm().identity().accel);
    mgr.prepare("minimal", 1, MEMORY_MB).await?;
    // One create first, so that the template's files are in the page cache for every level.
    let (warm, _) = create(mgr, MEMORY_MB).await?;
    mgr.destroy(&warm).await?;

    let levels = [0, count / 2, count];
    let mut under_load = Vec::new();
    let mut running: Vec<String> = Vec::new();
    let mut outcome = Ok(());
    for &level in &levels {
        eprintln!("== {reps} creates with {level} capsules running");
        while running.len() < level {
            match create(mgr, MEMORY_MB).await {
                Ok((id, _)) => running.push(id),
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if outcome.is_err() {
            break;
        }
        match creates_one_by_one(mgr, reps).await {
            Ok(times) => under_load.push((level, times)),
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    for id in running.drain(..) {
        mgr.destroy(&id).await?;
    }
    outcome?;

    eprintln!("== create to first exec, {reps} times");
    let steps = first_exec(mgr, reps).await?;
    eprintln!("== {count} creates at once");
    let together = creates_at_once(mgr, count).await?;
    eprintln!("== host memory: 1 idle capsule alone, then {count} idle capsules");
    let (one, many) = idle_memory(mgr, count).await?;

    println!();
    println!(
        "create latency with capsules already running ({reps} creates each, {MEMORY_MB} MiB):"
    );
    println!(
        "{:>10} | {:>10} {:>10} | {:>16}",
        "running", "p50", "p99", "p50 / p50 at 0"
    );
    let base = under_load
        .first()
        .map(|(_, t)| percentile(t, 0.5))
        .unwrap_or_default();
    for (level, times) in &under_load {
        let p50 = percentile(times, 0.5);
        println!(
            "{:>10} | {:>10} {:>10} | {:>16.2}",
            level,
            ms(p50),
            ms(percentile(times, 0.99)),
            p50.as_secs_f64() / base.as_secs_f64()
        );
    }

    println!();
    println!("from a create to its first exec answered (median of {reps}); each first call beside the same call warm:");
    println!(
        "{:<44} {:>10} {:>10} {:>8}",
        "step", "first", "warm", "ratio"
    );
    println!(
        "{:<44} {:>10} {:>10} {:>8}",
        "create",
        ms(steps.create),
        "-",
        "-"
    );
    for (name, cold, warm) in [
        ("raw echo over the port", steps.echo, steps.echo_warm),
        ("envd request (health)", steps.health, steps.health_warm),
        ("exec /bin/true", steps.exec, steps.exec_warm),
    ] {
        println!(
            "{:<44} {:>10} {:>10} {:>8.1}",
            name,
            ms(cold),
            ms(warm),
            cold.as_secs_f64() / warm.as_secs_f64()
        );
    }
    println!(
        "{:<44} {:>10} {:>10} {:>8}",
        "create + first exec (exec sent at once)",
        ms(steps.create_then_exec),
        "-",
        "-"
    );

    println!();
    println!(
        "{count} creates from one template at once, beside the same creates one after another:"
    );
    let alone = under_load
        .first()
        .map(|(_, t)| t.clone())
        .unwrap_or_default();
    println!("{:<28} {:>10} {:>10} {:>12}", "", "p50", "p99", "all done");
    println!(
        "{:<28} {:>10} {:>10} {:>12}",
        format!("{count} at once ({} ok)", together.ok),
        ms(percentile(&together.times, 0.5)),
        ms(percentile(&together.times, 0.99)),
        ms(together.wall)
    );
    let serial: Duration = percentile(&alone, 0.5) * count as u32;
    println!(
        "{:<28} {:>10} {:>10} {:>12}",
        "one after another",
        ms(percentile(&alone, 0.5)),
        ms(percentile(&alone, 0.99)),
        format!("{} (p50 x {count})", ms(serial))
    );

    println!();
    println!("host memory of idle {MEMORY_MB} MiB capsules (VMM processes, after 10 s idle):");
    println!(
        "{:<34} {:>11} {:>11} {:>11} {:>11}",
        "", "RSS", "PSS", "anon", "file-backed"
    );
    let row = |name: &str, m: VmmMemory| {
        println!(
            "{:<34} {:>11} {:>11} {:>11} {:>11}",
            name,
            mib(m.rss),
            mib(m.pss),
            mib(m.anon),
            mib(m.file)
        );
    };
    row("one capsule alone", one);
    row(&format!("{count} x one alone"), scale(one, count));
    row(&format!("{count} from one template"), many);
    println!(
        "ratio ({count} from one template / {count} x one): RSS {:.2}, PSS {:.2}",
        many.rss as f64 / (one.rss * count as u64).max(1) as f64,
        many.pss as f64 / (one.pss * count as u64).max(1) as f64
    );
    println!(
        "(PSS divides pages shared between the processes, such as QEMU's binaries, among them)"
    );
    Ok(())
}

/// `reps` creates one after another, each destroyed after; their latencies.
async fn creates_one_by_one(mgr: &CapsuleManager, reps: usize) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    for _ in 0..reps {
        let (id, t) = create(mgr, MEMORY_MB).await?;
        times.push(t);
        mgr.destroy(&id).await?;
    }
    Ok(times)
}

/// Medians of the steps from a create to its first exec.
struct FirstExec {
    create: Duration,
    echo: Duration,
    echo_warm: Duration,
    health: Duration,
    health_warm: Duration,
    exec: Duration,
    exec_warm: Duration,
    create_then_exec: Duration,
}

/// Per rep: a create, then a raw echo, a health request and an exec, each once cold and once
/// warm; and another create with an exec sent at once, timed together.
async fn first_exec(mgr: &CapsuleManager, reps: usize) -> anyhow::Result<FirstExec> {
    let mut v: [Vec<Duration>; 8] = Default::default();
    for _ in 0..reps {
        let (id, t) = create(mgr, MEMORY_MB).await?;
        v[0].push(t);
        let steps = async {
            let envd = EnvdClient::over(mgr.guest(&id).await?);
            for i in 0..2 {
                v[1 + i].push(envd.echo(Bytes::from_static(b"ping")).await?);
            }
            for i in 0..2 {
                let t = Instant::now();
                envd.health().await?;
                v[3 + i].push(t.elapsed());
            }
            for i in 0..2 {
                let t = Instant::now();
                true_exec(&envd).await?;
                v[5 + i].push(t.elapsed());
            }
            anyhow::Ok(())
        }
        .await;
        mgr.destroy(&id).await?;
        steps?;

        let t = Instant::now();
        let (id, _) = create(mgr, MEMORY_MB).await?;
        let answered = async {
            let envd = EnvdClient::over(mgr.guest(&id).await?);
            true_exec(&envd).await
        }
        .await;
        v[7].push(t.elapsed());
        mgr.destroy(&id).await?;
        answered?;
    }
    let [create, echo, echo_warm, health, health_warm, exec, exec_warm, create_then_exec] =
        v.map(median);
    Ok(FirstExec {
        create,
        echo,
        echo_warm,
        health,
        health_warm,
        exec,
        exec_warm,
        create_then_exec,
    })
}

/// Runs `/bin/true`, failing unless it exits 0.
async fn true_exec(envd: &EnvdClient) -> anyhow::Result<()> {
    let out = envd
        .exec(ExecRequest {
            cmd: "/bin/true".into(),
            ..Default::default()
        })
        .await?;
    anyhow::ensure!(out.exit_code == 0, "/bin/true exited {}", out.exit_code);
    Ok(())
}

/// Creates started together.
struct AtOnce {
    /// Latency of each create that succeeded.
    times: Vec<Duration>,
    /// How many succeeded.
    ok: usize,
    /// From the start until the last one answered.
    wall: Duration,
}

/// `n` creates from one template started at once; all must succeed.
async fn creates_at_once(mgr: &CapsuleManager, n: usize) -> anyhow::Result<AtOnce> {
    let start = Instant::now();
    let results = futures::future::join_all((0..n).map(|_| create(mgr, MEMORY_MB))).await;
    let wall = start.elapsed();
    let (mut times, mut failures) = (Vec::new(), Vec::new());
    for r in results {
        match r {
            Ok((id, t)) => {
                times.push(t);
                mgr.destroy(&id).await?;
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{} of {n} concurrent creates failed: {}",
        failures.len(),
        failures.join("; ")
    );
    Ok(AtOnce {
        ok: times.len(),
        times,
        wall,
    })
}

/// Host memory of one idle capsule alone, then the sum over `n` idle capsules from the same
/// template running together.
async fn idle_memory(mgr: &CapsuleManager, n: usize) -> anyhow::Result<(VmmMemory, VmmMemory)> {
    let (id, _) = create(mgr, MEMORY_MB).await?;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let one = read(mgr, &id).await;
    mgr.destroy(&id).await?;
    let one = one?;
    let mut ids = Vec::new();
    let mut made = Ok(());
    for _ in 0..n {
        match create(mgr, MEMORY_MB).await {
            Ok((id, _)) => ids.push(id),
            Err(e) => {
                made = Err(e);
                break;
            }
        }
    }
    let mut total = VmmMemory::default();
    if made.is_ok() {
        tokio::time::sleep(Duration::from_secs(10)).await;
        for id in &ids {
            match read(mgr, id).await {
                Ok(m) => total = total.plus(m),
                Err(e) => {
                    made = Err(e);
                    break;
                }
            }
        }
    }
    for id in ids {
        mgr.destroy(&id).await?;
    }
    made?;
    Ok((one, total))
}

async fn read(mgr: &CapsuleManager, id: &str) -> anyhow::Result<VmmMemory> {
    let pid = mgr.vmm_pid(id).await?.context("no VMM")?;
    VmmMemory::of(pid)
}

fn scale(m: VmmMemory, n: usize) -> VmmMemory {
    let n = n as u64;
    VmmMemory {
        rss: m.rss * n,
        anon: m.anon * n,
        file: m.file * n,
        pss: m.pss * n,
    }
}
