//! Serves the API over the in-memory test host, for poking at it with the Python SDK or curl
//! without VMs: `cargo run -p wrenn-control --example fake_host_server -- 127.0.0.1:8099 /tmp/wrenn-fake`.
//! Prints the admin key on first start. Guest calls answer 409 (the fake host has no envd
//! unless WRENN_ENVD_BIN names one).

#[allow(dead_code)]
#[path = "../tests/common/fake_host.rs"]
mod fake_host;

use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:8099".into())
        .parse()?;
    let dir = std::path::PathBuf::from(args.next().unwrap_or_else(|| "/tmp/wrenn-fake".into()));
    tracing_subscriber_init();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        std::fs::create_dir_all(&dir)?;
        let config = wrenn_control::ControlConfig::new(listen, dir.clone());
        let store = config.open_store().await?;
        wrenn_control::bootstrap_admin(&store, &dir).await?;
        let mut host = fake_host::FakeHost::new(8);
        host.envd_bin = std::env::var_os("WRENN_ENVD_BIN").map(Into::into);
        let host: Arc<dyn wrenn_host::HostApi> = Arc::new(host);
        wrenn_control::serve(config, store, host, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
        Ok(())
    })
}

fn tracing_subscriber_init() {}
