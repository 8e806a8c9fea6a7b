//! The guest's initramfs: busybox, lockscope and its shared libraries, the
//! modules for a virtio ext4 disk, and an init that runs the command.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::kernel::GuestKernel;
use super::{io, run_tool, GuestError};
use crate::host_system::{self, HostSystem, HOSTNAME, LOCKSCOPE};

/// Modules (relative to lib/modules/<release>/kernel) for a virtio ext4 disk,
/// each after those it needs; a kernel may have some built in (6.12: virtio).
pub(crate) const MODULES: &[&str] = &[
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
    "lib/crc16.ko",
    "lib/libcrc32c.ko",
    "crypto/crc32c_generic.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "fs/ext4/ext4.ko",
];

/// Modules for the host's directories shared over virtio-9p (with what
/// they depend on, which differs between series).
const HOST_SYSTEM_MODULES: &[&str] = &["net/9p/9pnet_virtio.ko", "fs/9p/9p.ko"];

/// Where the guest mounts the host's system ([`HostSystem`]), lockscope
/// beside it, and the disk at /work: the root the command runs in.
const SYSROOT: &str = "/sysroot";

const BUSYBOX_APPLETS: &[&str] = &[
    "sh", "mount", "umount", "mkdir", "cat", "ls", "poweroff", "modprobe", "tar", "sync", "echo", "sleep", "rm", "cp", "mv", "date",
    "mkfifo", "pidof", "uname", "dmesg", "grep", "head", "tail", "true", "false", "env", "ps", "kill", "seq", "touch", "wc", "dd",
    "chroot", "dirname", "ip", "hostname", "ln",
];

/// The init script, after a prologue that sets `SYSROOT`, `LOCKSCOPE`,
/// `SYSTEM_PATH` and `SYSTEM_HOSTNAME`. With the host's system shared, the
/// command runs in it (chrooted, the disk as its working directory /work,
/// as in runc and gVisor); else in the initramfs, in /mnt/disk.
const INIT: &str = r#"
export PATH=/bin:/usr/bin:/sbin TERM=dumb
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
# What udev would add: bash's process substitution reads /dev/fd (Spark's
# launcher uses it), Python's multiprocessing /dev/shm.
ln -s /proc/self/fd /dev/fd
mkdir -p /dev/shm && mount -t tmpfs shm /dev/shm
mount -t tmpfs tmp /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up
for m in $(cat /modules.load); do modprobe $m || echo "lockscope-guest: modprobe $m failed"; done
mkdir -p /mnt/disk /out
for i in $(seq 100); do [ -b /dev/vdb ] && break; sleep 0.1; done
mount -t ext4 /dev/vda /mnt/disk || echo "lockscope-guest: no ext4 disk"
if [ -s /host-shares ]; then
  while read tag dir; do
    mkdir -p $SYSROOT$dir
    mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose $tag $SYSROOT$dir || echo "lockscope-guest: mounting the host's $dir failed"
  done < /host-shares
  for d in proc sys dev tmp; do mkdir -p $SYSROOT/$d; mount -o rbind /$d $SYSROOT/$d; done
  mkdir -p $SYSROOT/work $SYSROOT/out $SYSROOT$(dirname $LOCKSCOPE)
  mount -o bind /mnt/disk $SYSROOT/work
  mount -o bind /out $SYSROOT/out
  touch $SYSROOT$LOCKSCOPE
  mount -o bind /usr/bin/lockscope $SYSROOT$LOCKSCOPE
  mount -o bind /hosts $SYSROOT/etc/hosts || echo "lockscope-guest: no /etc/hosts to cover"
  hostname $SYSTEM_HOSTNAME
  cp /cmd.sh $SYSROOT/cmd.sh
fi
cd /mnt/disk
echo "lockscope-guest: running"
if [ -s /host-shares ]; then
  chroot $SYSROOT /usr/bin/env --chdir=/work $SYSTEM_PATH HOME=/work /bin/sh /cmd.sh > /out/stdout 2> /dev/console
else
  sh /cmd.sh > /out/stdout 2> /dev/console
fi
echo $? > /out/exit-code
echo "lockscope-guest: done, exit $(cat /out/exit-code)"
cd /
umount /mnt/disk 2>/dev/null
tar -cf /dev/vdb -C /out .
sync
poweroff -f
"#;

/// The qemu mount tag of the `i`th shared directory.
pub(crate) fn share_tag(i: usize) -> String {
    format!("host{i}")
}

/// Assembles the tree at `root` and packs it as a gzip'd newc cpio at `out`.
/// `binaries` go to /usr/bin under their own names, with their libraries;
/// `files` to their own paths; with `host`, its directories are mounted at
/// [`SYSROOT`] by the tags of [`share_tag`].
pub fn build(
    kernel: &GuestKernel,
    binaries: &[&Path],
    files: &[PathBuf],
    command: &str,
    host: Option<&HostSystem>,
    root: &Path,
    out: &Path,
) -> Result<(), GuestError> {
    for dir in ["bin", "usr/bin", "sbin", "proc", "sys", "dev", "tmp", "mnt", "lib", "lib64"] {
        std::fs::create_dir_all(root.join(dir)).map_err(io(format!("creating {dir}")))?;
    }
    copy(Path::new("/bin/busybox"), &root.join("bin/busybox"))
        .map_err(|_| GuestError::Setup("/bin/busybox missing: install busybox-static".into()))?;
    for applet in BUSYBOX_APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).map_err(io(format!("linking {applet}")))?;
    }
    // The kernel asks /sbin/modprobe for modules it needs (e.g. crypto-crc32c).
    std::os::unix::fs::symlink("../bin/busybox", root.join("sbin/modprobe")).map_err(io("linking modprobe"))?;
    for binary in binaries {
        let name = binary.file_name().ok_or_else(|| GuestError::Setup(format!("{} is not a file", binary.display())))?;
        copy_without_debug_info(binary, &root.join("usr/bin").join(name))?;
        for lib in shared_libraries(binary)? {
            copy(Path::new(&lib), &root.join(lib.trim_start_matches('/')))?;
        }
    }

    for file in files {
        copy(file, &root.join(file.strip_prefix("/").unwrap_or(file)))?;
    }

    let host_modules = match host {
        Some(_) => kernel.with_dependencies(HOST_SYSTEM_MODULES)?,
        None => vec![],
    };
    let mut wanted = MODULES.to_vec();
    wanted.extend(host_modules.iter().map(String::as_str).filter(|m| !MODULES.contains(m)));
    if let Some(host) = host {
        let sysroot = root.join(SYSROOT.trim_start_matches('/'));
        std::fs::create_dir_all(&sysroot).map_err(io(format!("creating {}", sysroot.display())))?;
        host.make_links(&sysroot).map_err(io("linking the host's directories"))?;
        let shares: String = host.shared.iter().enumerate().map(|(i, dir)| format!("{} {}\n", share_tag(i), dir.display())).collect();
        std::fs::write(root.join("host-shares"), shares).map_err(io("writing host-shares"))?;
        std::fs::write(root.join("hosts"), host_system::hosts_file()).map_err(io("writing hosts"))?;
    }
    let modules = root.join("lib/modules").join(&kernel.release);
    let loadable = kernel.loadable_modules(&wanted)?;
    for (m, packaged) in &loadable {
        let to = modules.join("kernel").join(m);
        if packaged.extension().is_some_and(|e| e == "xz") {
            // busybox's modprobe reads uncompressed modules only.
            std::fs::create_dir_all(to.parent().unwrap()).map_err(io(format!("creating {}", to.display())))?;
            let unpacked = std::fs::File::create(&to).map_err(io(format!("creating {}", to.display())))?;
            run_tool(Command::new("xz").arg("-dc").arg(packaged).stdout(unpacked))?;
        } else {
            copy(packaged, &to)?;
        }
    }
    let names: Vec<&str> = loadable.iter().filter_map(|(m, _)| Path::new(m).file_stem()?.to_str()).collect();
    std::fs::write(root.join("modules.load"), names.join("\n") + "\n").map_err(io("writing modules.load"))?;
    for f in ["modules.builtin", "modules.builtin.modinfo", "modules.order"] {
        copy(&kernel.modules.join(f), &modules.join(f))?;
    }
    run_tool(Command::new("depmod").arg("-b").arg(root).arg(&kernel.release))?;

    let prologue = format!("SYSROOT={SYSROOT} LOCKSCOPE={LOCKSCOPE} SYSTEM_PATH={} SYSTEM_HOSTNAME={HOSTNAME}", host_system::PATH);
    write_exec(&root.join("init"), &format!("#!/bin/sh\n{prologue}{INIT}"))?;
    write_exec(&root.join("cmd.sh"), &format!("{command}\n"))?;
    let pack = format!("cd '{}' && find . | cpio -o -H newc --quiet | gzip -1 > '{}'", root.display(), out.display());
    run_tool(Command::new("sh").arg("-c").arg(pack))?;
    Ok(())
}

/// The shared libraries (and loader) a dynamically linked binary needs.
pub(crate) fn shared_libraries(binary: &Path) -> Result<Vec<String>, GuestError> {
    let listing = run_tool(Command::new("ldd").arg(binary))?;
    Ok(listing
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            match l.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => l.split_whitespace().next().filter(|p| p.starts_with('/')),
            }
        })
        .filter(|p| p.starts_with('/'))
        .map(str::to_owned)
        .collect())
}

fn copy(from: &Path, to: &Path) -> Result<(), GuestError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    std::fs::copy(from, to).map(|_| ()).map_err(io(format!("copying {}", from.display())))
}

/// Copies a program without its debug sections: lockscope's release build
/// keeps line tables (160 MB), which the guest's kernel would otherwise
/// unpack from the initramfs, under emulation, on every boot. A plain copy
/// where objcopy (binutils) is missing or fails.
fn copy_without_debug_info(from: &Path, to: &Path) -> Result<(), GuestError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    let stripped = Command::new("objcopy").arg("--strip-debug").arg(from).arg(to).stderr(std::process::Stdio::null()).status();
    match stripped {
        Ok(status) if status.success() => Ok(()),
        _ => copy(from, to),
    }
}

fn write_exec(path: &Path, text: &str) -> Result<(), GuestError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io(format!("chmod {}", path.display())))
}
