//! Builds (or finds cached) guest images by hand:
//! `cargo run -p wrenn-images --example build-images -- [DATA_DIR] [ENVD] [TEMPLATE...]`.
//! Without ENVD only the kernel and initramfs are built.

use std::path::PathBuf;

use wrenn_images::{default_data_dir, BaseTemplate, ImageStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let data = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(default_data_dir);
    let store = ImageStore::new(&data);
    let kernel = store.ensure_kernel()?;
    println!("kernel {} {}", kernel.version, kernel.kernel.display());
    println!("initrd {}", kernel.initrd.display());
    let Some(envd) = args.next().map(PathBuf::from) else {
        return Ok(());
    };
    let templates: Vec<BaseTemplate> =
        match args.map(|a| a.parse()).collect::<Result<Vec<_>, _>>()? {
            t if t.is_empty() => BaseTemplate::all().to_vec(),
            t => t,
        };
    for template in templates {
        let image = store.ensure_rootfs(template, &envd)?;
        println!("rootfs {} {}", image.id, image.path.display());
    }
    Ok(())
}
