//! `lifecycle`: cold boot, create from template, pause, resume and bytes on disk per memory
//! size, beside QEMU's classic migration (all of RAM to a file) and `-incoming` restore of the
//! same VM; then the host memory of idle 512 MiB capsules.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use wrenn_agent::fsutil::{allocated_bytes, dir_allocated_bytes};
use wrenn_agent::manifest::CapsuleManifest;
use wrenn_agent::CapsuleManager;
use wrenn_envd_client::EnvdClient;
use wrenn_host::HostApi;
use wrenn_images::{BaseTemplate, ImageStore};
use wrenn_vmm::qemu::{Qemu, QemuVm};
use wrenn_vmm::VmSpec;

use crate::common::{
    base_template_files, copy_like_create, create, median, mib, ms, open_without_network, sh,
    VmmMemory,
};

struct Row {
    mem: u32,
    cold: Duration,
    create: Duration,
    pause: Duration,
    resume: Duration,
    classic_save: Duration,
    classic_restore: Duration,
    touched: u64,
    on_disk: u64,
    classic_bytes: u64,
    /// QEMU restoring the paused capsule alone, until QMP answers (no wait for the guest).
    resume_floor: Duration,
    /// The template's files copied (or cloned) the way a create does.
    copy: Duration,
}

/// Runs the lifecycle benchmark and prints its table.
pub async fn run(
    mgr: &CapsuleManager,
    data_dir: &Path,
    envd: &Path,
    sizes: &[u32],
    reps: usize,
) -> anyhow::Result<()> {
    println!("accelerator: {}", mgr.vmm().identity().accel);
    // The baselines restore the capsule's state with QEMU alone, which needs a state saved
    // without a network backend; what networking adds is the `network` benchmark's figure.
    let mgr = &open_without_network(data_dir, envd).await?;
    println!("networking: off (see `wrenn-bench network` for what it adds)");
    let mut rows = Vec::new();
    for &mem in sizes {
        eprintln!("== {mem} MiB: preparing the template snapshot");
        mgr.prepare("minimal", 1, mem).await?;
        eprintln!("== {mem} MiB: cold boot");
        let cold = cold_boot(mgr, data_dir, envd, mem).await?;
        eprintln!("== {mem} MiB: create, pause, resume");
        let (id, create_t) = create(mgr, mem).await?;
        let guest = wrenn_envd_client::EnvdClient::over(mgr.guest(&id).await?);
        // A working set: a quarter of RAM of non-zero data in tmpfs (zero pages would be
        // skipped by the classic migration and flatter it).
        let fill = format!(
            "yes wrenn-working-set | head -c {}M > /dev/shm/fill",
            mem / 4
        );
        sh(&guest, &fill).await?;
        let (mut pauses, mut resumes) = (Vec::new(), Vec::new());
        let (mut touched, mut on_disk) = (0, 0);
        for rep in 0..reps {
            let t = Instant::now();
            mgr.pause(&id).await?;
            pauses.push(t.elapsed());
            if rep == 0 {
                let dir = mgr.capsule_dir(&id);
                touched = allocated_bytes(&dir.join("memory"))?
                    + allocated_bytes(&dir.join("disk.qcow2"))?;
                on_disk = dir_allocated_bytes(&dir);
            }
            let t = Instant::now();
            mgr.resume(&id).await?;
            resumes.push(t.elapsed());
        }
        mgr.pause(&id).await?;
        eprintln!("== {mem} MiB: floors of resume and create");
        let resume_floor = restore_floor(mgr, &id, mem, reps).await?;
        let copy = copy_step(mgr, data_dir, mem)?;
        eprintln!("== {mem} MiB: classic migration baseline");
        let (classic_save, classic_restore, classic_bytes) =
            classic_baseline(mgr, &id, mem).await?;
        mgr.destroy(&id).await?;
        rows.push(Row {
            mem,
            cold,
            create: create_t,
            pause: median(pauses),
            resume: median(resumes),
            classic_save,
            classic_restore,
            touched,
            on_disk,
            classic_bytes,
            resume_floor,
            copy,
        });
    }
    println!();
    println!(
        "{:>8} | {:>10} {:>10} {:>6} | {:>9} {:>12} {:>6} | {:>9} {:>12} | {:>11} {:>11} {:>6} {:>12}",
        "memory", "cold boot", "create", "ratio", "pause", "classic save", "ratio", "resume", "classic rest", "touched", "on disk", "ratio", "classic file"
    );
    for r in &rows {
        println!(
            "{:>5} MiB | {:>10} {:>10} {:>6.3} | {:>9} {:>12} {:>6.3} | {:>9} {:>12} | {:>11} {:>11} {:>6.3} {:>12}",
            r.mem,
            ms(r.cold),
            ms(r.create),
            r.create.as_secs_f64() / r.cold.as_secs_f64(),
            ms(r.pause),
            ms(r.classic_save),
            r.pause.as_secs_f64() / r.classic_save.as_secs_f64(),
            ms(r.resume),
            ms(r.classic_restore),
            mib(r.touched),
            mib(r.on_disk),
            r.on_disk as f64 / r.touched.max(1) as f64,
            mib(r.classic_bytes),
        );
    }
    println!();
    println!("floors: QEMU alone restoring the state until QMP answers (the guest not waited for); create's floor adds the template's files copied as a create does");
    println!(
        "{:>8} | {:>9} {:>12} {:>6} | {:>10} {:>10} {:>12} {:>6} | {:>12}",
        "memory",
        "resume",
        "floor",
        "ratio",
        "create",
        "copy step",
        "floor",
        "ratio",
        "create/cold"
    );
    for r in &rows {
        let create_floor = r.copy + r.resume_floor;
        println!(
            "{:>5} MiB | {:>9} {:>12} {:>6.2} | {:>10} {:>10} {:>12} {:>6.2} | {:>12.3}",
            r.mem,
            ms(r.resume),
            ms(r.resume_floor),
            r.resume.as_secs_f64() / r.resume_floor.as_secs_f64(),
            ms(r.create),
            ms(r.copy),
            ms(create_floor),
            r.create.as_secs_f64() / create_floor.as_secs_f64(),
            r.create.as_secs_f64() / r.cold.as_secs_f64(),
        );
    }
    println!(
        "(aims: resume and create at most 1.5 x their floors, create at most 0.05 of a cold boot)"
    );
    if let (Some(small), Some(big)) = (rows.first(), rows.last()) {
        println!(
            "resume at {} MiB / resume at {} MiB: {:.2}",
            big.mem,
            small.mem,
            big.resume.as_secs_f64() / small.resume.as_secs_f64()
        );
    }
    idle_memory(mgr).await
}

/// Boots the minimal root filesystem from scratch until envd answers.
async fn cold_boot(
    mgr: &CapsuleManager,
    data_dir: &Path,
    envd: &Path,
    mem: u32,
) -> anyhow::Result<Duration> {
    let images = ImageStore::new(data_dir);
    let kernel = images.ensure_kernel()?;
    let rootfs = images.ensure_rootfs(BaseTemplate::Minimal, envd)?;
    let dir = data_dir.join(format!("bench-cold-{mem}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let disk = dir.join("disk.qcow2");
    let st = std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&rootfs.path)
        .arg(&disk)
        .status()?;
    anyhow::ensure!(st.success(), "qemu-img create failed");
    let spec = VmSpec {
        dir: dir.clone(),
        kernel: kernel.kernel,
        initrd: kernel.initrd,
        cmdline_extra: String::new(),
        vcpus: 1,
        memory_mb: mem,
        memory_file: dir.join("memory"),
        disk,
        nic: None,
    };
    let t = Instant::now();
    let vm = mgr.vmm().boot(&spec).await?;
    let client = EnvdClient::connect(&vm.agent_socket(), Duration::from_secs(300)).await?;
    client.health().await?;
    let took = t.elapsed();
    drop(client);
    vm.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(took)
}

/// QEMU and the VM spec of paused capsule `id`, for baselines that drive QEMU directly.
fn direct_qemu(mgr: &CapsuleManager, id: &str, mem: u32) -> anyhow::Result<(Qemu, VmSpec)> {
    let dir = mgr.capsule_dir(id);
    let manifest = CapsuleManifest::load(&dir.join("capsule.json"))?;
    let ident = mgr.vmm().identity();
    let qemu = Qemu::new(
        "qemu-system-x86_64".into(),
        ident.accel.parse()?,
        ident.version.clone(),
    );
    let spec = VmSpec {
        dir: dir.clone(),
        kernel: manifest.kernel,
        initrd: manifest.initrd,
        cmdline_extra: String::new(),
        vcpus: 1,
        memory_mb: mem,
        memory_file: dir.join("memory"),
        disk: dir.join("disk.qcow2"),
        nic: manifest.network.nic.then(|| wrenn_vmm::NicSpec {
            mac: wrenn_protocol::net::GUEST_MAC.into(),
            backend: wrenn_vmm::NicBackend::None,
        }),
    };
    Ok((qemu, spec))
}

/// The floor of a resume: QEMU started with `-incoming defer`, the device state of paused
/// capsule `id` loaded, until QMP answers; the guest is neither run nor waited for (its vCPUs
/// stay stopped, so the memory file is untouched). Median of `reps`.
async fn restore_floor(
    mgr: &CapsuleManager,
    id: &str,
    mem: u32,
    reps: usize,
) -> anyhow::Result<Duration> {
    let (qemu, spec) = direct_qemu(mgr, id, mem)?;
    let state = spec.dir.join("snapshot/state");
    let mut times = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let vm = QemuVm::restore_stopped(&qemu, &spec, &state).await?;
        vm.status().await?;
        times.push(t.elapsed());
        vm.kill().await?;
    }
    Ok(median(times))
}

/// The copy step of a create alone: the template's memory and disk copied (or cloned) into a
/// scratch dir on the data dir's file system, median of 3.
fn copy_step(mgr: &CapsuleManager, data_dir: &Path, mem: u32) -> anyhow::Result<Duration> {
    let files = base_template_files(mgr, data_dir, mem)?;
    let scratch = data_dir.join("bench-copy");
    let mut times = Vec::new();
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        let t = Instant::now();
        copy_like_create(&files, &scratch)?;
        times.push(t.elapsed());
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(median(times))
}

/// The same (paused) capsule restored by the benchmark, saved with QEMU's classic migration
/// (every RAM page into the file) and restored from it with `-incoming`.
async fn classic_baseline(
    mgr: &CapsuleManager,
    id: &str,
    mem: u32,
) -> anyhow::Result<(Duration, Duration, u64)> {
    let (qemu, spec) = direct_qemu(mgr, id, mem)?;
    let dir = spec.dir.clone();
    let vm = QemuVm::restore(&qemu, &spec, &dir.join("snapshot/state"))
        .await
        .context("restoring for the baseline")?;
    let client = EnvdClient::connect(&vm.agent_socket(), Duration::from_secs(120)).await?;
    client.health().await?;
    drop(client);
    let file = dir.join("classic.migration");
    let t = Instant::now();
    vm.save_classic(&file).await?;
    let save = t.elapsed();
    vm.kill().await?;
    let bytes = allocated_bytes(&file)?;
    let t = Instant::now();
    let vm = QemuVm::restore_classic(&qemu, &spec, &file).await?;
    let client = EnvdClient::connect(&vm.agent_socket(), Duration::from_secs(120)).await?;
    client.health().await?;
    let restore = t.elapsed();
    drop(client);
    vm.kill().await?;
    let _ = std::fs::remove_file(&file);
    Ok((save, restore, bytes))
}

/// Host memory of idle 512 MiB capsules (RSS of their VMM processes).
async fn idle_memory(mgr: &CapsuleManager) -> anyhow::Result<()> {
    const N: usize = 3;
    let mut ids = Vec::new();
    for _ in 0..N {
        ids.push(create(mgr, 512).await?.0);
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    println!();
    println!("idle 512 MiB capsules: host memory per VMM process");
    println!(
        "{:>28} {:>11} {:>11} {:>14}",
        "capsule", "RSS", "anon", "file-backed"
    );
    let mut total = 0;
    for id in &ids {
        let pid = mgr.vmm_pid(id).await?.context("no VMM")?;
        let VmmMemory {
            rss, anon, file, ..
        } = VmmMemory::of(pid)?;
        total += rss;
        println!(
            "{id:>28} {:>11} {:>11} {:>14}",
            mib(rss),
            mib(anon),
            mib(file)
        );
    }
    println!(
        "mean RSS per idle 512 MiB capsule: {} (aim: at most 64 MiB)",
        mib(total / N as u64)
    );
    println!("(anon: QEMU itself, TCG translation cache included; file-backed: guest RAM pages of the memory file in the page cache, and QEMU's binaries)");
    for id in ids {
        mgr.destroy(&id).await?;
    }
    Ok(())
}
