//! Guest memory, disks and snapshots are readable by the agent's user only: no other user of
//! the host can read a capsule's RAM or disk.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{create, TestHost};
use wrenn_host::HostApi;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn capsule_files_are_private() {
    let th = TestHost::new();
    let host = th.open().await;
    let c = create(&host, "minimal").await;
    let dir = host.capsule_dir(&c.id);
    assert_eq!(mode(&th.dir.path().join("capsules")), 0o700);
    assert_eq!(mode(&th.dir.path().join("templates")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    for f in ["memory", "disk.qcow2"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    host.pause(&c.id).await.unwrap();
    assert_eq!(mode(&dir.join("memory")), 0o600);
    // A capsule left by an older version with wide modes is narrowed at the next start.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("memory"), std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(host);
    let host = th.open().await;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("memory")), 0o600);
    host.destroy(&c.id).await.unwrap();
}
