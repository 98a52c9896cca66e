//! File operations, metrics, reconnects and the link under a real envd.

mod common;

use bytes::Bytes;
use common::*;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wrenn_protocol::link::{Frame, FrameDecoder, FrameKind};
use wrenn_protocol::{EntryKind, ErrorKind, WriteOptions};

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn big_file_round_trip_with_bounded_memory() {
    let envd = Envd::start();
    let c = envd.client().await;
    let path = envd.dir.path().join("sub/dir/big.bin");
    let path = path.to_str().unwrap();
    let chunk: Vec<u8> = (0..1usize << 20).map(|i| (i * 7 + 3) as u8).collect();
    let mut want = Sha256::new();
    for _ in 0..64 {
        want.update(&chunk);
    }
    let chunk = Bytes::from(chunk);
    let body =
        futures::stream::iter((0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone()))).boxed();
    let info = c
        .write_file(
            path,
            WriteOptions {
                mode: Some(0o600),
                ..Default::default()
            },
            body,
        )
        .await
        .unwrap();
    assert_eq!(
        (info.size, info.mode, info.kind),
        (64 << 20, 0o600, EntryKind::File)
    );

    let mut got = Sha256::new();
    let mut n = 0usize;
    let mut s = c.read_file(path).await.unwrap();
    while let Some(b) = s.next().await {
        let b = b.unwrap();
        n += b.len();
        got.update(&b);
    }
    assert_eq!(n, 64 << 20);
    assert_eq!(got.finalize(), want.finalize());
    let hwm = vm_hwm_kib(envd.pid());
    assert!(
        hwm < 40 * 1024,
        "envd's peak RSS {hwm} KiB: a 64 MiB file was buffered"
    );
    // No temp files left behind.
    let names: Vec<String> = c
        .list(&path[..path.len() - "/big.bin".len()], 1)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, vec!["big.bin".to_string()]);
}

#[tokio::test]
async fn write_options_stat_list_mkdir_remove() {
    let envd = Envd::start();
    let c = envd.client().await;
    let root = envd.dir.path().to_str().unwrap().to_owned();
    let one = |b: &'static [u8]| {
        futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b))]).boxed()
    };
    let f = format!("{root}/a/b.txt");
    let info = c
        .write_file(
            &f,
            WriteOptions {
                owner: Some("nobody".into()),
                modified_at: Some(1_000_000_000),
                ..Default::default()
            },
            one(b"hello"),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            info.owner.as_str(),
            info.modified_at,
            info.size,
            info.permissions.as_str()
        ),
        ("nobody", 1_000_000_000, 5, "-rw-r--r--")
    );
    let st = c.stat(&f).await.unwrap();
    assert_eq!((st.name.as_str(), st.path.as_str()), ("b.txt", f.as_str()));

    let d = c.mkdir(&format!("{root}/a/c/d")).await.unwrap();
    assert_eq!(d.kind, EntryKind::Directory);
    assert_eq!(
        kind(c.mkdir(&format!("{root}/a/c")).await.unwrap_err()),
        ErrorKind::AlreadyExists
    );

    let depth1: Vec<String> = c
        .list(&format!("{root}/a"), 1)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(
        depth1,
        vec![format!("{root}/a/b.txt"), format!("{root}/a/c")]
    );
    let depth2: Vec<String> = c
        .list(&format!("{root}/a"), 2)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.path)
        .collect();
    assert_eq!(
        depth2,
        vec![
            format!("{root}/a/b.txt"),
            format!("{root}/a/c"),
            format!("{root}/a/c/d")
        ]
    );

    c.remove(&format!("{root}/a")).await.unwrap();
    assert_eq!(kind(c.stat(&f).await.unwrap_err()), ErrorKind::NotFound);
    assert_eq!(
        kind(c.remove(&format!("{root}/a")).await.unwrap_err()),
        ErrorKind::NotFound
    );
}

#[tokio::test]
async fn file_errors_have_the_right_kind() {
    let envd = Envd::start();
    let c = envd.client().await;
    let read_err = |r: Result<wrenn_envd_client::ByteStream, wrenn_envd_client::EnvdError>| {
        kind(r.err().expect("an error"))
    };
    assert_eq!(
        read_err(c.read_file("/no/such/file").await),
        ErrorKind::NotFound
    );
    assert_eq!(read_err(c.read_file("/etc").await), ErrorKind::IsADirectory);
    assert_eq!(
        read_err(c.read_file("relative/path").await),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(c.stat("etc/passwd").await.unwrap_err()),
        ErrorKind::InvalidArgument
    );
    let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]).boxed();
    assert_eq!(
        kind(
            c.write_file("/etc", WriteOptions::default(), body)
                .await
                .unwrap_err()
        ),
        ErrorKind::IsADirectory
    );
}

#[tokio::test]
async fn metrics_are_sane() {
    let envd = Envd::start();
    let c = envd.client().await;
    let m = c.metrics().await.unwrap();
    assert!(
        m.mem_total_bytes > 0 && m.mem_bytes > 0 && m.mem_bytes <= m.mem_total_bytes,
        "{m:?}"
    );
    assert!(
        m.disk_total_bytes > 0 && m.disk_bytes <= m.disk_total_bytes,
        "{m:?}"
    );
    assert!(m.cpu_pct >= 0.0, "{m:?}");
}

#[tokio::test]
async fn echo_and_link_resync_after_garbage() {
    let envd = Envd::start();
    let c = envd.client().await;
    assert!(c.echo(Bytes::from_static(b"ping")).await.is_ok());

    // Raw link: garbage, a truncated stale frame, a fake magic, then HELLO: the guest resyncs.
    let mut sock = tokio::net::UnixStream::connect(&envd.sock).await.unwrap();
    let mut wire = b"garbage WRN1 more".to_vec();
    let stale = Frame {
        kind: FrameKind::Data,
        session: 5,
        payload: Bytes::from(vec![1u8; 1000]),
    }
    .to_bytes();
    wire.extend_from_slice(&stale[..500]);
    wire.extend_from_slice(&vec![0u8; 200 * 1024]);
    wire.extend_from_slice(&Frame::control(FrameKind::Hello, 77).to_bytes());
    wire.extend_from_slice(
        &Frame {
            kind: FrameKind::Echo,
            session: 77,
            payload: Bytes::from_static(b"12345678abc"),
        }
        .to_bytes(),
    );
    sock.write_all(&wire).await.unwrap();
    let mut dec = FrameDecoder::new();
    let mut buf = vec![0u8; 65536];
    let mut kinds = Vec::new();
    while kinds.len() < 2 {
        let n = tokio::time::timeout(WAIT, sock.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "envd closed the link");
        dec.push(&buf[..n]);
        while let Some(f) = dec.next_frame() {
            // The session's HTTP/2 server speaks first (SETTINGS) in DATA frames.
            if f.kind != FrameKind::Data {
                kinds.push((f.kind, f.session, f.payload));
            }
        }
    }
    assert_eq!(kinds[0], (FrameKind::Ack, 77, Bytes::new()));
    assert_eq!(
        kinds[1],
        (FrameKind::EchoReply, 77, Bytes::from_static(b"12345678abc"))
    );

    // The regular client still works.
    assert_eq!(run(&c, "echo fine").await.stdout, b"fine\n");
}

async fn read_all(c: &wrenn_envd_client::EnvdClient, path: &str) -> Vec<u8> {
    let mut s = c.read_file(path).await.expect("read starts");
    let mut out = Vec::new();
    while let Some(b) = s.next().await {
        out.extend_from_slice(&b.expect("read body"));
    }
    out
}

#[tokio::test]
async fn proc_files_and_fifos_are_read_whole() {
    let envd = Envd::start();
    let c = envd.client().await;
    // /proc files say size 0 on disk: a Content-Length from it cut the body to nothing.
    let want = std::fs::read("/proc/version").unwrap();
    assert!(!want.is_empty());
    assert_eq!(read_all(&c, "/proc/version").await, want);
    let cpuinfo = String::from_utf8(read_all(&c, "/proc/cpuinfo").await).unwrap();
    let local = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    assert!(cpuinfo.contains("processor"), "{cpuinfo:?}");
    assert_eq!(cpuinfo.lines().count(), local.lines().count());

    // A FIFO: no size at all, bytes arrive over time until the writer closes.
    let fifo = envd.dir.path().join("pipe");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let chunk: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let writer = {
        let (fifo, chunk) = (fifo.clone(), chunk.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut w = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            for _ in 0..3 {
                w.write_all(&chunk).unwrap();
                w.flush().unwrap();
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        })
    };
    let got = read_all(&c, fifo.to_str().unwrap()).await;
    writer.join().unwrap();
    assert_eq!(got.len(), 3 * chunk.len());
    assert_eq!(got, chunk.repeat(3));
}

#[tokio::test]
async fn remove_refuses_the_root_spelled_with_dot_dot() {
    let envd = Envd::start();
    let c = envd.client().await;
    // Spellings of "/" that are safe to try even against an envd without the fix: the
    // directory does not exist, so the kernel cannot resolve them (an old envd answered
    // "not found"; it would have removed the root for "/tmp/..").
    let missing = format!("/wrenn-test-missing-{}", std::process::id());
    assert!(!std::path::Path::new(&missing).exists());
    for root in [
        format!("{missing}/.."),
        format!("{missing}/../"),
        format!("{missing}//x/../..//"),
        format!("{missing}/./../{missing}/.."),
    ] {
        let e = c.remove(&root).await.unwrap_err();
        assert_eq!(kind(e), ErrorKind::InvalidArgument, "{root}");
    }
    assert!(std::path::Path::new("/etc").is_dir());

    // `..` is resolved lexically: the path removed is the one named.
    let root = envd.dir.path().to_str().unwrap().to_owned();
    for d in ["keep", "gone/sub"] {
        c.mkdir(&format!("{root}/{d}")).await.unwrap();
    }
    c.remove(&format!("{root}/keep/../gone/")).await.unwrap();
    assert!(envd.dir.path().join("keep").is_dir());
    assert!(!envd.dir.path().join("gone").exists());
}

#[tokio::test]
async fn symlink_loops_and_virtual_files_get_clear_errors() {
    let envd = Envd::start();
    let c = envd.client().await;
    let dir = envd.dir.path();
    std::os::unix::fs::symlink(dir.join("b"), dir.join("a")).unwrap();
    std::os::unix::fs::symlink(dir.join("a"), dir.join("b")).unwrap();
    let a = dir.join("a");
    let a = a.to_str().unwrap();
    let e = c.read_file(a).await.err().expect("a loop cannot be read");
    assert_eq!(kind(e), ErrorKind::InvalidArgument);
    let e = c.list(&format!("{a}/x"), 1).await.unwrap_err();
    assert_eq!(kind(e), ErrorKind::InvalidArgument);

    // /proc cannot hold the temp file a write goes through: a refusal, not "not found".
    let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]).boxed();
    let e = c
        .write_file("/proc/version", WriteOptions::default(), body)
        .await
        .unwrap_err();
    match e {
        wrenn_envd_client::EnvdError::Guest(b) => {
            assert_eq!(b.kind, ErrorKind::PermissionDenied, "{}", b.message);
            assert!(b.message.contains("/proc"), "{}", b.message);
        }
        other => panic!("{other:?}"),
    }

    // A Unix socket cannot be opened like a file (ENXIO): a bad path, not an envd failure.
    let sock = dir.join("listener.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let e = c
        .read_file(sock.to_str().unwrap())
        .await
        .err()
        .expect("a socket cannot be read");
    assert_eq!(kind(e), ErrorKind::InvalidArgument);
}

#[tokio::test]
async fn devices_are_refused_for_read_and_write() {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    use std::os::unix::fs::FileTypeExt;
    let envd = Envd::start();
    let c = envd.client().await;
    let refused = |r: Result<wrenn_envd_client::ByteStream, wrenn_envd_client::EnvdError>| match r {
        Err(wrenn_envd_client::EnvdError::Guest(b)) => {
            assert_eq!(b.kind, ErrorKind::InvalidArgument, "{}", b.message);
            assert!(b.message.contains("device"), "{}", b.message);
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a device was streamed"),
    };
    // Endless devices: a read never ended (/dev/zero, /dev/urandom) or blocked.
    for dev in ["/dev/zero", "/dev/urandom", "/dev/null"] {
        let r = tokio::time::timeout(WAIT, c.read_file(dev))
            .await
            .expect(dev);
        refused(r);
    }
    // Device nodes of our own (needs root): a block device, and a /dev/null whose node a
    // write would have replaced by a regular file.
    let dir = envd.dir.path();
    let null = dir.join("null");
    let block = dir.join("loop");
    let made = mknod(
        &null,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .and_then(|_| {
        mknod(
            &block,
            SFlag::S_IFBLK,
            Mode::from_bits_truncate(0o600),
            makedev(7, 0),
        )
    });
    match made {
        Err(nix::errno::Errno::EPERM) => {
            eprintln!("not root: device nodes of the test not made, their checks skipped");
            return;
        }
        other => other.unwrap(),
    }
    refused(c.read_file(block.to_str().unwrap()).await);
    let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]).boxed();
    match c
        .write_file(null.to_str().unwrap(), WriteOptions::default(), body)
        .await
        .unwrap_err()
    {
        wrenn_envd_client::EnvdError::Guest(b) => {
            assert_eq!(b.kind, ErrorKind::InvalidArgument, "{}", b.message)
        }
        other => panic!("{other:?}"),
    }
    let ft = std::fs::symlink_metadata(&null).unwrap().file_type();
    assert!(ft.is_char_device(), "the device node was replaced: {ft:?}");
    // No temp file left behind.
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("wrenn-"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// Unmounts (lazily) on drop, so a failed test leaves no mount behind.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn remove_refuses_mount_points_before_deleting_anything() {
    let envd = Envd::start();
    let c = envd.client().await;
    let tree = envd.dir.path().join("tree");
    let mnt = tree.join("sub/mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    std::fs::write(tree.join("sub/outside"), b"x").unwrap();
    let flags = nix::mount::MsFlags::empty();
    match nix::mount::mount(Some("tmpfs"), &mnt, Some("tmpfs"), flags, Some("size=1m")) {
        Err(nix::errno::Errno::EPERM) => {
            eprintln!("not root: no tmpfs mounted, the test skipped");
            return;
        }
        other => other.unwrap(),
    }
    let _guard = Mounted(mnt.clone());
    let inside = mnt.join("kept");
    std::fs::write(&inside, b"y").unwrap();
    // The mount point itself (/dev answered 502 after its device nodes were gone) and a tree
    // holding it, spelled through `..` and a symlinked parent.
    std::os::unix::fs::symlink(tree.join("sub"), envd.dir.path().join("link")).unwrap();
    for p in [
        mnt.clone(),
        tree.clone(),
        tree.join("sub/x/.."),
        envd.dir.path().join("link/mnt"),
    ] {
        let e = c.remove(p.to_str().unwrap()).await.unwrap_err();
        match e {
            wrenn_envd_client::EnvdError::Guest(b) => {
                assert_eq!(b.kind, ErrorKind::InvalidArgument, "{p:?}: {}", b.message);
                assert!(b.message.contains("mount"), "{p:?}: {}", b.message);
            }
            other => panic!("{p:?}: {other:?}"),
        }
    }
    assert!(inside.is_file(), "the mounted file system was emptied");
    assert!(
        tree.join("sub/outside").is_file(),
        "part of the tree was removed"
    );
    // The symlink itself is not a mount point: removing it removes only the link.
    c.remove(envd.dir.path().join("link").to_str().unwrap())
        .await
        .unwrap();
    assert!(inside.is_file());
}

#[tokio::test]
async fn rename_moves_files_and_directories_and_refuses_the_root() {
    let envd = Envd::start();
    let c = envd.client().await;
    let root = envd.dir.path().display().to_string();
    let body = |b: &'static [u8]| {
        futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b))]).boxed()
    };
    let (a, b) = (format!("{root}/a.txt"), format!("{root}/b.txt"));
    c.write_file(&a, WriteOptions::default(), body(b"hello"))
        .await
        .unwrap();
    let moved = c.rename(&a, &b).await.unwrap();
    assert_eq!((moved.path.as_str(), moved.size), (b.as_str(), 5));
    assert_eq!(kind(c.stat(&a).await.unwrap_err()), ErrorKind::NotFound);

    let (d, e) = (format!("{root}/d"), format!("{root}/e"));
    c.mkdir(&format!("{d}/inner")).await.unwrap();
    let moved = c.rename(&d, &e).await.unwrap();
    assert_eq!(moved.kind, EntryKind::Directory);
    assert_eq!(
        c.stat(&format!("{e}/inner")).await.unwrap().kind,
        EntryKind::Directory
    );

    assert_eq!(
        kind(c.rename(&a, &b).await.unwrap_err()),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(c.rename("/", &format!("{root}/x")).await.unwrap_err()),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        kind(c.rename("relative", &b).await.unwrap_err()),
        ErrorKind::InvalidArgument
    );
}

#[tokio::test]
async fn watchers_report_creates_writes_renames_and_removes() {
    use wrenn_protocol::{FsEvent, FsEventKind, WatchRequest};
    let envd = Envd::start();
    let c = envd.client().await;
    let root = envd.dir.path().join("watched");
    std::fs::create_dir(&root).unwrap();
    let root_s = root.display().to_string();

    // A kept watcher, polled; not recursive: events below a subdirectory are not its own.
    let w = c
        .create_watcher(&WatchRequest {
            path: root_s.clone(),
            recursive: false,
        })
        .await
        .unwrap();
    // A stream, recursive: a directory made after the start is watched too.
    let mut stream = c.watch(&root_s, true).await.unwrap();
    std::fs::write(root.join("a.txt"), b"1").unwrap();
    std::fs::rename(root.join("a.txt"), root.join("b.txt")).unwrap();
    std::fs::create_dir(root.join("sub")).unwrap();
    // Give the stream a moment to watch the new directory before writing in it.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    std::fs::write(root.join("sub/deep.txt"), b"2").unwrap();
    std::fs::remove_file(root.join("b.txt")).unwrap();

    let want = [
        ("a.txt", FsEventKind::Create),
        ("a.txt", FsEventKind::Rename),
        ("b.txt", FsEventKind::Create),
        ("sub", FsEventKind::Create),
        ("sub/deep.txt", FsEventKind::Create),
        ("b.txt", FsEventKind::Remove),
    ];
    let mut seen: Vec<FsEvent> = Vec::new();
    while !want
        .iter()
        .all(|(n, k)| seen.iter().any(|e| e.name == *n && e.kind == *k))
    {
        match tokio::time::timeout(WAIT, stream.next()).await {
            Ok(Some(ev)) => seen.push(ev),
            other => panic!("watch stream ended: {other:?}; saw {seen:?}"),
        }
    }
    assert!(seen
        .iter()
        .any(|e| e.name == "a.txt" && e.kind == FsEventKind::Write));

    let polled = c.watcher_events(&w.id).await.unwrap();
    assert!(polled
        .iter()
        .any(|e| e.name == "b.txt" && e.kind == FsEventKind::Remove));
    assert!(
        !polled.iter().any(|e| e.name.starts_with("sub/")),
        "{polled:?}"
    );
    // Drained: a second poll has only what happened since.
    assert!(c.watcher_events(&w.id).await.unwrap().is_empty());
    c.remove_watcher(&w.id).await.unwrap();
    assert_eq!(
        kind(c.watcher_events(&w.id).await.unwrap_err()),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            c.watch("/no/such/dir", false)
                .await
                .err()
                .expect("an error")
        ),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(
            c.create_watcher(&WatchRequest {
                path: format!("{root_s}/sub/deep.txt"),
                recursive: false
            })
            .await
            .unwrap_err()
        ),
        ErrorKind::NotADirectory
    );
}

#[tokio::test]
async fn directories_made_for_an_owner_belong_to_it() {
    use std::os::unix::fs::MetadataExt;
    let envd = Envd::start();
    let c = envd.client().await;
    let root = envd.dir.path().display().to_string();
    let nobody = 65534;
    c.mkdir_owned(&format!("{root}/m1/m2"), Some("nobody"))
        .await
        .unwrap();
    for d in ["m1", "m1/m2"] {
        assert_eq!(
            std::fs::metadata(envd.dir.path().join(d)).unwrap().uid(),
            nobody,
            "{d}"
        );
    }
    // The directory that was there keeps its owner.
    assert_eq!(std::fs::metadata(envd.dir.path()).unwrap().uid(), 0);
    let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"x"))]).boxed();
    let opts = WriteOptions {
        owner: Some("nobody".into()),
        ..Default::default()
    };
    c.write_file(&format!("{root}/w1/w2/f.txt"), opts, body)
        .await
        .unwrap();
    for d in ["w1", "w1/w2", "w1/w2/f.txt"] {
        assert_eq!(
            std::fs::metadata(envd.dir.path().join(d)).unwrap().uid(),
            nobody,
            "{d}"
        );
    }
    assert_eq!(
        kind(
            c.mkdir_owned(&format!("{root}/x"), Some("no-such-user"))
                .await
                .unwrap_err()
        ),
        ErrorKind::InvalidArgument
    );
}
