//! Benchmarks of Wrenn on this host, each figure beside a baseline measured in the same run.
//!
//! - `lifecycle`: per memory size, cold boot vs create from template, pause vs QEMU's classic
//!   migration to a file, resume vs classic `-incoming` restore, bytes on disk vs pages touched;
//!   and the host memory an idle 512 MiB capsule costs.
//! - `channel`: raw echo over the virtio-serial port vs an envd request, exec round trip, file
//!   throughput over the channel vs a plain `cat` pipe on the host.
//! - `clones`: N creates from one template on XFS with reflink (extents shared) beside the
//!   data dir's file system (a sparse copy each): latency and the disk the clones take.
//! - `scaling`: create latency with 0, 5 and 10 capsules running, create to first exec step by
//!   step, N creates at once, host memory of N idle capsules from one template vs N × one.
//! - `network`: TCP throughput guest → test host vs host → test host; create and resume with
//!   networking on vs off.

mod channel;
mod clones;
mod common;
mod lifecycle;
mod network;
mod scaling;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Wrenn benchmarks")]
struct Args {
    /// Data dir for images, templates and the benchmark's capsules.
    #[arg(long, env = "WRENN_BENCH_DIR", default_value = "/var/tmp/wrenn-bench")]
    data_dir: std::path::PathBuf,
    /// Static envd binary (default: target/x86_64-unknown-linux-gnu/release/envd).
    #[arg(long, env = "WRENN_ENVD")]
    envd: Option<std::path::PathBuf>,
    /// vCPUs the benchmark's host hands out (default: 4 per core; raise it to hold many idle
    /// capsules at once, as `clones` does).
    #[arg(long, env = "WRENN_VCPUS_TOTAL")]
    vcpus_total: Option<u32>,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Create, pause, resume per memory size, with QEMU's classic migration as baseline.
    Lifecycle {
        /// Memory sizes in MiB.
        #[arg(long, value_delimiter = ',', default_value = "256,1024,2048")]
        sizes: Vec<u32>,
        /// Repetitions of pause/resume per size (the median is shown).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// The host↔guest channel: round trips and throughput.
    Channel {
        /// Round trips per measurement.
        #[arg(long, default_value_t = 50)]
        rounds: usize,
        /// File size for throughput, MiB.
        #[arg(long, default_value_t = 64)]
        file_mib: usize,
    },
    /// Creates from one template: clones sharing extents (XFS reflink) vs sparse copies.
    Clones {
        /// Memory of the template, MiB.
        #[arg(long, default_value_t = 1024)]
        memory_mb: u32,
        /// Clones per file system.
        #[arg(long, default_value_t = 10)]
        count: usize,
    },
    /// Cost as the work grows: creates under load, first exec, creates at once, idle memory.
    Scaling {
        /// Capsules running at the highest load level, created at once, and held idle.
        #[arg(long, default_value_t = 10)]
        count: usize,
        /// Creates per load level and create-to-first-exec runs (p50/p99 and medians).
        #[arg(long, default_value_t = 10)]
        reps: usize,
    },
    /// Capsule networking: throughput to a test host, and what it adds to create and resume.
    Network {
        /// MiB sent over TCP.
        #[arg(long, default_value_t = 64)]
        mib: usize,
        /// Creates and resumes per mode (the median is shown).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WRENN_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let args = Args::parse();
    let envd = common::envd_binary(args.envd)?;
    let mgr = common::open(&args.data_dir, &envd, args.vcpus_total).await?;
    match args.what {
        What::Lifecycle { sizes, reps } => {
            lifecycle::run(&mgr, &args.data_dir, &envd, &sizes, reps).await
        }
        What::Channel { rounds, file_mib } => channel::run(&mgr, rounds, file_mib).await,
        What::Clones { memory_mb, count } => {
            clones::run(
                &mgr,
                &args.data_dir,
                &envd,
                args.vcpus_total,
                memory_mb,
                count,
            )
            .await
        }
        What::Scaling { count, reps } => scaling::run(&mgr, count, reps).await,
        What::Network { mib, reps } => network::run(&mgr, &args.data_dir, &envd, mib, reps).await,
    }
}
