//! Clones of one template: create latency and the disk they use, on a file system that shares
//! extents (XFS with reflink, on a loop device this benchmark makes) beside the data dir's own
//! (a sparse copy per create), in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use wrenn_agent::CapsuleManager;
use wrenn_host::HostApi;

use crate::common::{
    base_template_files, copy_like_create, create, median, mib, ms, open, percentile, VmmMemory,
};

/// One file system's figures.
struct Figures {
    label: String,
    p50: Duration,
    p99: Duration,
    /// Bytes the file system lost to the clones (free space before minus after).
    disk: u64,
    /// Bytes the file system lost to one clone made alone: its own writes (and, where the
    /// file system cannot share extents, its copy of the template).
    one: u64,
    /// Bytes of the template snapshot's memory and disk in use.
    template: u64,
    /// Median time to copy (or clone) the template's memory and disk files alone.
    copy: Duration,
    /// How the files were copied.
    how: &'static str,
    /// Median pause and resume of one clone.
    pause: Duration,
    resume: Duration,
    /// Mean host memory of an idle clone, with all N running.
    idle: VmmMemory,
}

/// An XFS file system with reflink on a loop device; unmounted on drop.
struct Xfs {
    mnt: PathBuf,
    image: PathBuf,
}

impl Xfs {
    fn make(beside: &Path, size_gib: u64) -> anyhow::Result<Xfs> {
        let image = beside.with_extension("xfs.img");
        let mnt = beside.with_extension("xfs");
        let _ = Command::new("umount").arg(&mnt).status();
        let f = std::fs::File::create(&image)?;
        f.set_len(size_gib << 30)?;
        drop(f);
        sh_run(
            "mkfs.xfs",
            &["-q", "-f", "-m", "reflink=1", &image.to_string_lossy()],
        )?;
        std::fs::create_dir_all(&mnt)?;
        sh_run(
            "mount",
            &[
                "-o",
                "loop",
                &image.to_string_lossy(),
                &mnt.to_string_lossy(),
            ],
        )?;
        Ok(Xfs { mnt, image })
    }
}

impl Drop for Xfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mnt).status();
        let _ = std::fs::remove_file(&self.image);
        let _ = std::fs::remove_dir(&self.mnt);
    }
}

fn sh_run(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new(cmd)
        .args(args)
        .status()
        .with_context(|| format!("running {cmd}"))?;
    if !st.success() {
        bail!("{cmd} {args:?} failed");
    }
    Ok(())
}

/// Free bytes of the file system holding `dir`.
fn free_bytes(dir: &Path) -> anyhow::Result<u64> {
    let out = Command::new("stat")
        .args(["-f", "-c", "%a %S"])
        .arg(dir)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text
        .split_whitespace()
        .filter_map(|n| n.parse().ok())
        .collect();
    match v.as_slice() {
        [blocks, size] => Ok(blocks * size),
        _ => bail!("stat -f of {}: {text}", dir.display()),
    }
}

fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .map(|m| m.blocks() * 512)
        .unwrap_or(0)
}

/// Creates `n` clones of a `memory_mb` template on `mgr`, each with a small write of its own,
/// and measures.
async fn measure(
    label: &str,
    mgr: &CapsuleManager,
    data_dir: &Path,
    memory_mb: u32,
    n: usize,
) -> anyhow::Result<Figures> {
    mgr.prepare("minimal", 1, memory_mb).await?;
    let files = base_template_files(mgr, data_dir, memory_mb)?;
    let template = files.iter().map(|f| allocated(f)).sum();
    // The copy step of a create alone, three times.
    let scratch = data_dir.join("bench-copy");
    let (mut copies, mut how) = (Vec::new(), "sparse copy");
    for _ in 0..3 {
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch)?;
        let t = std::time::Instant::now();
        if copy_like_create(&files, &scratch)? {
            how = "clone (FICLONE)";
        }
        copies.push(t.elapsed());
    }
    let _ = std::fs::remove_dir_all(&scratch);
    // One clone alone: what a single create takes of the disk.
    let before = free_bytes(data_dir)?;
    let (id, _) = create(mgr, memory_mb).await?;
    let one = before.saturating_sub(free_bytes(data_dir)?);
    mgr.destroy(&id).await?;
    let before = free_bytes(data_dir)?;
    let (mut ids, mut times) = (Vec::new(), Vec::new());
    let mut made = Ok(());
    for _ in 0..n {
        match create(mgr, memory_mb).await {
            Ok((id, t)) => {
                times.push(t);
                ids.push(id);
            }
            Err(e) => {
                made = Err(e);
                break;
            }
        }
    }
    let disk = before.saturating_sub(free_bytes(data_dir)?);
    let lived = if made.is_ok() {
        lives(mgr, &ids).await
    } else {
        Ok(Default::default())
    };
    // Whatever happened, the clones go.
    for id in ids {
        mgr.destroy(&id).await?;
    }
    made?;
    let (pause, resume, idle) = lived?;
    Ok(Figures {
        label: label.to_owned(),
        p50: percentile(&times, 0.5),
        p99: percentile(&times, 0.99),
        disk,
        one,
        template,
        copy: percentile(&copies, 0.5),
        how,
        pause,
        resume,
        idle,
    })
}

/// How the clones live on this file system: the mean host memory of each while all of them
/// idle, then three pauses and resumes of the first (medians).
async fn lives(
    mgr: &CapsuleManager,
    ids: &[String],
) -> anyhow::Result<(Duration, Duration, VmmMemory)> {
    tokio::time::sleep(Duration::from_secs(10)).await;
    let mut sum = VmmMemory::default();
    for id in ids {
        let pid = mgr.vmm_pid(id).await?.context("no VMM")?;
        sum = sum.plus(VmmMemory::of(pid)?);
    }
    let n = ids.len().max(1) as u64;
    let idle = VmmMemory {
        rss: sum.rss / n,
        anon: sum.anon / n,
        file: sum.file / n,
        pss: sum.pss / n,
    };
    let (mut pauses, mut resumes) = (Vec::new(), Vec::new());
    if let Some(id) = ids.first() {
        for _ in 0..3 {
            let t = std::time::Instant::now();
            mgr.pause(id).await?;
            pauses.push(t.elapsed());
            let t = std::time::Instant::now();
            mgr.resume(id).await?;
            resumes.push(t.elapsed());
        }
    }
    Ok((median(pauses), median(resumes), idle))
}

/// Runs the clones benchmark and prints its table.
pub async fn run(
    mgr: &CapsuleManager,
    data_dir: &Path,
    envd: &Path,
    vcpus_total: Option<u32>,
    memory_mb: u32,
    n: usize,
) -> anyhow::Result<()> {
    println!("accelerator: {}", mgr.vmm().identity().accel);
    eprintln!("== {n} clones on the data dir's file system");
    let copied = measure("data dir (sparse copy)", mgr, data_dir, memory_mb, n).await?;
    eprintln!("== {n} clones on XFS with reflink");
    let xfs = Xfs::make(data_dir, 16)?;
    let xdir = xfs.mnt.join("data");
    std::fs::create_dir_all(&xdir)?;
    // The base images are only read (the overlays' backing files): share them.
    std::os::unix::fs::symlink(data_dir.join("images"), xdir.join("images"))?;
    let figures = {
        let xmgr = open(&xdir, envd, vcpus_total).await?;
        measure("XFS reflink (clone)", &xmgr, &xdir, memory_mb, n).await?
    };
    println!();
    println!("{n} creates from one {memory_mb} MiB template, one after another:");
    println!(
        "{:<24} {:>10} {:>10} {:>16} {:>12} {:>14} {:>16} {:>7} {:>12} {:>7}",
        "file system",
        "create p50",
        "p99",
        "copy step",
        "copy p50",
        "disk, N clones",
        "template in use",
        "ratio",
        "one alone",
        "ratio"
    );
    for f in [&copied, &figures] {
        println!(
            "{:<24} {:>10} {:>10} {:>16} {:>12} {:>14} {:>16} {:>7.2} {:>12} {:>7.2}",
            f.label,
            ms(f.p50),
            ms(f.p99),
            f.how,
            ms(f.copy),
            mib(f.disk),
            mib(f.template),
            f.disk as f64 / (n as f64 * f.template.max(1) as f64),
            mib(f.one),
            f.disk as f64 / (n as f64 * f.one.max(1) as f64)
        );
    }
    println!();
    println!("the same clones living on each file system:");
    println!(
        "{:<24} {:>10} {:>10} {:>14} {:>14} {:>14}",
        "file system", "pause", "resume", "idle RSS", "idle PSS", "anon / file"
    );
    for f in [&copied, &figures] {
        println!(
            "{:<24} {:>10} {:>10} {:>14} {:>14} {:>14}",
            f.label,
            ms(f.pause),
            ms(f.resume),
            mib(f.idle.rss),
            mib(f.idle.pss),
            format!("{} / {}", mib(f.idle.anon), mib(f.idle.file)),
        );
    }
    println!(
        "(copy p50: the template's memory and disk copied alone, the part of a create that \
         grows with the template; ratio: disk the {n} clones took over {n} full copies of the \
         template in use; one alone: the disk one clone made by itself took, and the ratio of the \
         {n} clones over {n} times that, whose aim is at most 1.2 where extents are shared. The XFS here is a loop device on the data dir's file system, which \
         adds its own I/O cost to every create.)"
    );
    Ok(())
}
