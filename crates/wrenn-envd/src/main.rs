//! `envd`: the guest agent. As PID 1 it initialises the guest and serves on the virtio-serial
//! port `wrenn.envd`; with `--listen-unix PATH` it serves on a Unix socket (tests).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wrenn_envd::api::{self, App};
use wrenn_envd::metrics::Sampler;
use wrenn_envd::procs::Registry;
use wrenn_envd::{init, port, reaper, serve};

enum Mode {
    Port,
    Unix(PathBuf),
}

fn parse_args() -> anyhow::Result<Mode> {
    let mut args = std::env::args().skip(1);
    let mut mode = Mode::Port;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen-unix" => {
                let p = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--listen-unix needs a path"))?;
                mode = Mode::Unix(p.into());
            }
            "--version" => {
                println!("envd {}", env!("CARGO_PKG_VERSION"));
                std::process::exit(0);
            }
            // The kernel passes unknown command-line words to init: ignore them.
            other => eprintln!("envd: ignoring argument {other:?}"),
        }
    }
    Ok(mode)
}

fn main() {
    let is_init = std::process::id() == 1;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ENVD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    std::panic::set_hook(Box::new(|info| tracing::error!("panic: {info}")));
    let mode = match parse_args() {
        Ok(m) => m,
        Err(e) => {
            tracing::error!("{e:#}");
            if !is_init {
                std::process::exit(2);
            }
            Mode::Port
        }
    };
    if is_init {
        init::setup();
    } else {
        // Orphans of our children come back to us, as they would to PID 1.
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    }
    loop {
        let run = std::panic::catch_unwind(|| run(&mode, is_init));
        match run {
            Ok(Ok(())) => tracing::warn!("server ended"),
            Ok(Err(e)) => tracing::error!("server failed: {e:#}"),
            Err(_) => tracing::error!("server panicked"),
        }
        if !is_init {
            std::process::exit(1);
        }
        // PID 1 must never exit: try again.
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn run(mode: &Mode, is_init: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        reaper::start();
        let app = Arc::new(App {
            procs: Registry::default(),
            metrics: Sampler::start(),
            watchers: Default::default(),
            is_init,
        });
        let router = api::router(app);
        match mode {
            Mode::Unix(path) => serve::listen_unix(path, router).await?,
            Mode::Port => {
                let port = port::open(wrenn_protocol::AGENT_PORT_NAME).await?;
                serve::link(port, router).await?;
            }
        }
        Ok(())
    })
}
