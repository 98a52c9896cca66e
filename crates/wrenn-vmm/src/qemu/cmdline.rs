//! The QEMU command line and the guest kernel command line.
//!
//! ```text
//! qemu-system-x86_64
//!   -machine microvm,acpi=on,memory-backend=mem   # minimal machine; the Debian kernel finds
//!                                                 # the virtio-mmio devices through ACPI
//!   -global virtio-mmio.force-legacy=false        # modern virtio over MMIO
//!   -nodefaults -no-user-config -display none     # nothing we did not ask for
//!   -no-reboot                                    # a guest reboot/poweroff/panic ends QEMU
//!   -accel tcg,thread=multi,tb-size=64 -cpu max   # TCG: the translation cache is bounded
//!   | -accel kvm -cpu host                        # KVM when the host can run guests
//!   -smp N -m M
//!   -object memory-backend-file,id=mem,size=MM,mem-path=<memory_file>,share=on
//!                                                 # guest RAM is a file: pause only saves
//!                                                 # device state (x-ignore-shared)
//!   -kernel K -initrd I -append "<kernel cmdline>"
//!   -drive id=root,file=<disk>,format=qcow2,if=none,cache=writeback
//!   -device virtio-blk-device,drive=root          # /dev/vda
//!   -device virtio-serial-device
//!   -chardev socket,id=envd,path=<dir>/envd.sock,server=on,wait=off
//!   -device virtserialport,chardev=envd,name=wrenn.envd   # the host <-> envd byte stream
//!   [-netdev tap,id=net0,ifname=tap0,script=no,downscript=no]  # QEMU runs in the capsule's
//!                                                 # network namespace, where tap0 is
//!   [-device virtio-net-device,mac=M[,netdev=net0]]  # eth0; no backend: carries nothing
//!   -chardev socket,id=console,path=<dir>/console.sock,server=on,wait=off
//!   -serial chardev:console                       # ttyS0; drained into console.log
//!   -qmp unix:<dir>/qmp.sock,server=on,wait=off   # the monitor we drive
//!   -daemonize -pidfile <dir>/qemu.pid            # own session: survives the agent
//!   -S                                            # vCPUs start stopped; we `cont` once the
//!                                                 # console is drained and QMP is set up
//!   [-incoming defer]                             # restore: load device state via QMP
//! ```
//!
//! Kernel command line: `console=ttyS0 reboot=t panic=-1 tsc_early_khz=<host kHz>
//! root=/dev/vda` followed by the caller's extra arguments. `tsc_early_khz` is mandatory under
//! TCG (see [`super::tsc`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::Accel;
use crate::{NicBackend, VmSpec, VmmError};

/// Size of the TCG translation block cache in MiB: bounds QEMU's host memory per capsule.
pub const TCG_TB_SIZE_MB: u32 = 64;

/// Largest Unix socket path (`sun_path` is 108 bytes including the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// The files QEMU and this driver keep in a VM's directory.
#[derive(Debug, Clone)]
pub struct VmFiles {
    /// The VM directory (absolute).
    pub dir: PathBuf,
}

impl VmFiles {
    /// Files of the VM in `dir`, made absolute (QEMU changes its working directory to `/`
    /// when it daemonizes).
    pub fn new(dir: &Path) -> Result<VmFiles, VmmError> {
        let dir = std::path::absolute(dir).map_err(VmmError::io("resolving", dir))?;
        Ok(VmFiles { dir })
    }
    /// QMP socket.
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    /// Serial console socket (drained into [`VmFiles::console_log`]).
    pub fn console_sock(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
    /// The envd virtio-serial port socket.
    pub fn envd(&self) -> PathBuf {
        self.dir.join("envd.sock")
    }
    /// QEMU's pid file.
    pub fn pid(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    /// Our record of the QEMU process identity: `<pid> <start time in clock ticks>`.
    pub fn identity(&self) -> PathBuf {
        self.dir.join("qemu.id")
    }
    /// QEMU's own stdout/stderr while starting.
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    /// The guest console log (bounded, see `console.rs`).
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }

    /// Fails if any socket path is too long for a Unix socket address.
    pub fn check_socket_paths(&self) -> Result<(), VmmError> {
        for p in [self.qmp(), self.console_sock(), self.envd()] {
            if p.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(VmmError::SocketPathTooLong(p));
            }
        }
        Ok(())
    }
}

/// The guest kernel command line.
pub fn kernel_cmdline(tsc_khz: u64, extra: &str) -> String {
    let mut s = format!("console=ttyS0 reboot=t panic=-1 tsc_early_khz={tsc_khz} root=/dev/vda");
    let extra = extra.trim();
    if !extra.is_empty() {
        s.push(' ');
        s.push_str(extra);
    }
    s
}

/// How QEMU should start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Fresh boot of the kernel.
    Boot,
    /// Wait for device state to be loaded through QMP (`-incoming defer`).
    Incoming,
}

/// Guest RAM actually configured for a requested size. With exactly 2 GiB below 4 GiB,
/// QEMU places the initramfs at the top of RAM (its 2 GiB load limit) on top of the ACPI
/// tables it puts there, and the guest cannot boot; 2 MiB more moves the tables away.
pub fn guest_ram_mb(requested: u32) -> u32 {
    if requested == 2048 {
        requested + 2
    } else {
        requested
    }
}

/// QEMU arguments for `spec` under `accel` (absolute paths in `files`, memory/disk made
/// absolute by the caller).
pub fn qemu_args(
    spec: &VmSpec,
    accel: Accel,
    files: &VmFiles,
    memory_file: &Path,
    disk: &Path,
    tsc_khz: u64,
    mode: StartMode,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(OsString::from(s));
    push("-machine");
    push("microvm,acpi=on,memory-backend=mem");
    push("-global");
    push("virtio-mmio.force-legacy=false");
    push("-nodefaults");
    push("-no-user-config");
    push("-display");
    push("none");
    push("-no-reboot");
    match accel {
        Accel::Tcg => {
            push("-accel");
            push(&format!("tcg,thread=multi,tb-size={TCG_TB_SIZE_MB}"));
            push("-cpu");
            push("max");
        }
        Accel::Kvm => {
            push("-accel");
            push("kvm");
            push("-cpu");
            push("host");
        }
    }
    push("-smp");
    push(&spec.vcpus.max(1).to_string());
    push("-m");
    let ram_mb = guest_ram_mb(spec.memory_mb);
    push(&format!("{ram_mb}M"));
    let mut obj = OsString::from(format!(
        "memory-backend-file,id=mem,size={ram_mb}M,share=on,mem-path="
    ));
    obj.push(qemu_opt_escape(memory_file));
    a.push("-object".into());
    a.push(obj);
    // A restore takes the guest's RAM, kernel included, from the memory file. Given a kernel
    // and initramfs, QEMU would read them into anonymous memory it keeps for a reboot that
    // `-no-reboot` never lets happen: about 15 MiB per VMM and a slower start.
    if mode == StartMode::Boot {
        a.push("-kernel".into());
        a.push(spec.kernel.clone().into_os_string());
        a.push("-initrd".into());
        a.push(spec.initrd.clone().into_os_string());
        a.push("-append".into());
        a.push(kernel_cmdline(tsc_khz, &spec.cmdline_extra).into());
    }
    let mut drive = OsString::from("id=root,format=qcow2,if=none,cache=writeback,file=");
    drive.push(qemu_opt_escape(disk));
    a.push("-drive".into());
    a.push(drive);
    for s in [
        "-device",
        "virtio-blk-device,drive=root",
        "-device",
        "virtio-serial-device",
    ] {
        a.push(s.into());
    }
    if let Some(nic) = &spec.nic {
        let mut dev = format!("virtio-net-device,mac={}", nic.mac);
        if let NicBackend::Tap { tap, .. } = &nic.backend {
            a.push("-netdev".into());
            a.push(format!("tap,id=net0,ifname={tap},script=no,downscript=no").into());
            dev.push_str(",netdev=net0");
        }
        a.push("-device".into());
        a.push(dev.into());
    }
    a.push("-chardev".into());
    a.push(chardev_socket("envd", &files.envd()));
    a.push("-device".into());
    a.push("virtserialport,chardev=envd,name=wrenn.envd".into());
    a.push("-chardev".into());
    a.push(chardev_socket("console", &files.console_sock()));
    a.push("-serial".into());
    a.push("chardev:console".into());
    let mut qmp = OsString::from("unix:");
    qmp.push(qemu_opt_escape(&files.qmp()));
    qmp.push(",server=on,wait=off");
    a.push("-qmp".into());
    a.push(qmp);
    a.push("-daemonize".into());
    a.push("-pidfile".into());
    a.push(files.pid().into_os_string());
    a.push("-S".into());
    if mode == StartMode::Incoming {
        a.push("-incoming".into());
        a.push("defer".into());
    }
    a
}

fn chardev_socket(id: &str, path: &Path) -> OsString {
    let mut s = OsString::from(format!("socket,id={id},server=on,wait=off,path="));
    s.push(qemu_opt_escape(path));
    s
}

/// Escapes a value for QEMU's `key=value,...` option syntax (a comma is written twice).
fn qemu_opt_escape(path: &Path) -> OsString {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let mut out = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        out.push(b);
        if b == b',' {
            out.push(b',');
        }
    }
    OsString::from_vec(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        VmSpec {
            dir: "/d".into(),
            kernel: "/k".into(),
            initrd: "/i".into(),
            cmdline_extra: " wrenn.init=/x ".into(),
            vcpus: 2,
            memory_mb: 256,
            memory_file: "/d/mem".into(),
            disk: "/d/disk,1.qcow2".into(),
            nic: None,
        }
    }

    fn args(accel: Accel, mode: StartMode) -> Vec<String> {
        let s = spec();
        let files = VmFiles::new(Path::new("/d")).unwrap();
        qemu_args(&s, accel, &files, &s.memory_file, &s.disk, 2_300_000, mode)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    fn after<'a>(a: &'a [String], flag: &str) -> &'a str {
        let i = a
            .iter()
            .position(|x| x == flag)
            .unwrap_or_else(|| panic!("{flag} missing in {a:?}"));
        &a[i + 1]
    }

    #[test]
    fn kernel_cmdline_has_tsc_and_extra() {
        assert_eq!(
            kernel_cmdline(2_300_000, " quiet "),
            "console=ttyS0 reboot=t panic=-1 tsc_early_khz=2300000 root=/dev/vda quiet"
        );
        assert!(!kernel_cmdline(1, "").ends_with(' '));
    }

    #[test]
    fn tcg_and_kvm_accelerators() {
        let a = args(Accel::Tcg, StartMode::Boot);
        assert_eq!(after(&a, "-accel"), "tcg,thread=multi,tb-size=64");
        assert_eq!(after(&a, "-cpu"), "max");
        let a = args(Accel::Kvm, StartMode::Boot);
        assert_eq!(after(&a, "-accel"), "kvm");
        assert_eq!(after(&a, "-cpu"), "host");
    }

    #[test]
    fn memory_disk_and_channels() {
        let a = args(Accel::Tcg, StartMode::Boot);
        assert_eq!(
            after(&a, "-object"),
            "memory-backend-file,id=mem,size=256M,share=on,mem-path=/d/mem"
        );
        assert_eq!(
            after(&a, "-drive"),
            "id=root,format=qcow2,if=none,cache=writeback,file=/d/disk,,1.qcow2"
        );
        assert!(after(&a, "-append").contains("tsc_early_khz=2300000"));
        assert!(after(&a, "-append").ends_with("root=/dev/vda wrenn.init=/x"));
        assert_eq!(after(&a, "-qmp"), "unix:/d/qmp.sock,server=on,wait=off");
        assert_eq!(after(&a, "-pidfile"), "/d/qemu.pid");
        assert!(a.contains(&"virtserialport,chardev=envd,name=wrenn.envd".to_string()));
        assert!(a.contains(&"-S".to_string()));
        assert!(!a.contains(&"-incoming".to_string()));
        assert_eq!(after(&a, "-kernel"), "/k");
        let a = args(Accel::Tcg, StartMode::Incoming);
        assert_eq!(after(&a, "-incoming"), "defer");
        // A restore's kernel is in the memory file already.
        for flag in ["-kernel", "-initrd", "-append"] {
            assert!(!a.contains(&flag.to_string()), "{flag} on a restore");
        }
    }

    #[test]
    fn network_device_with_and_without_backend() {
        let files = VmFiles::new(Path::new("/d")).unwrap();
        let mut s = spec();
        let strings = |s: &VmSpec| -> Vec<String> {
            qemu_args(
                s,
                Accel::Tcg,
                &files,
                &s.memory_file,
                &s.disk,
                1,
                StartMode::Boot,
            )
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
        };
        assert!(!strings(&s).iter().any(|a| a.contains("virtio-net")));
        s.nic = Some(crate::NicSpec {
            mac: "02:fc:00:00:00:15".into(),
            backend: NicBackend::None,
        });
        let a = strings(&s);
        assert!(a.contains(&"virtio-net-device,mac=02:fc:00:00:00:15".to_string()));
        assert!(!a.contains(&"-netdev".to_string()));
        s.nic = Some(crate::NicSpec {
            mac: "02:fc:00:00:00:15".into(),
            backend: NicBackend::Tap {
                netns: "/run/netns/x".into(),
                tap: "tap0".into(),
            },
        });
        let a = strings(&s);
        assert_eq!(
            after(&a, "-netdev"),
            "tap,id=net0,ifname=tap0,script=no,downscript=no"
        );
        assert!(a.contains(&"virtio-net-device,mac=02:fc:00:00:00:15,netdev=net0".to_string()));
    }

    #[test]
    fn long_socket_paths_are_refused() {
        let long = format!("/{}", "x".repeat(120));
        let files = VmFiles::new(Path::new(&long)).unwrap();
        assert!(matches!(
            files.check_socket_paths(),
            Err(VmmError::SocketPathTooLong(_))
        ));
        assert!(VmFiles::new(Path::new("/short"))
            .unwrap()
            .check_socket_paths()
            .is_ok());
    }
}
