//! Debian's 6.1 kernel package, fetched with apt and unpacked into a cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{io, run_tool, GuestError};

pub struct GuestKernel {
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the unpacked package.
    pub modules: PathBuf,
}

impl GuestKernel {
    /// The newest linux-image-6.1.0-N-amd64 Debian offers, downloaded once.
    pub fn fetch(cache: &Path) -> Result<GuestKernel, GuestError> {
        std::fs::create_dir_all(cache).map_err(io(format!("creating {}", cache.display())))?;
        if let Some(k) = Self::cached(cache) {
            return Ok(k);
        }
        let listing = run_tool(Command::new("apt-cache").args(["search", "--names-only", r"^linux-image-6\.1\.0-[0-9]+-amd64$"]))?;
        let package = listing
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .max_by_key(|p| p.trim_start_matches("linux-image-6.1.0-").trim_end_matches("-amd64").parse::<u32>().unwrap_or(0))
            .ok_or_else(|| GuestError::Setup("apt offers no linux-image-6.1.0-*-amd64 package (Debian 12 sources needed)".into()))?
            .to_owned();
        let download = cache.join("download");
        let deb = apt_download(&package, &download)?;
        let unpacked = cache.join("unpacked.tmp");
        let _ = std::fs::remove_dir_all(&unpacked);
        run_tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
        std::fs::rename(&unpacked, cache.join("kernel")).map_err(io("moving the unpacked kernel into place"))?;
        let _ = std::fs::remove_dir_all(&download);
        Self::cached(cache).ok_or_else(|| GuestError::Setup(format!("{package} holds no vmlinuz")))
    }

    /// Whether the kernel is already in the cache (no download needed).
    pub fn is_cached(cache: &Path) -> bool {
        Self::cached(cache).is_some()
    }

    fn cached(cache: &Path) -> Option<GuestKernel> {
        let root = cache.join("kernel");
        let boot = std::fs::read_dir(root.join("boot")).ok()?;
        let vmlinuz =
            boot.flatten().map(|e| e.path()).find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))?;
        let release = vmlinuz.file_name()?.to_str()?.trim_start_matches("vmlinuz-").to_owned();
        let modules = root.join("lib/modules").join(&release);
        modules.is_dir().then_some(GuestKernel { release, vmlinuz, modules })
    }
}

/// Downloads `package` into `dir` (emptied first); the .deb's path.
fn apt_download(package: &str, dir: &Path) -> Result<PathBuf, GuestError> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(io("creating the download directory"))?;
    run_tool(Command::new("apt-get").args(["download", "-q", package]).current_dir(dir))?;
    std::fs::read_dir(dir)
        .map_err(io("listing downloads"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| GuestError::Setup(format!("apt-get download {package} left no .deb")))
}

/// The guest kernel's debug info from Debian's `linux-image-<release>-dbg`:
/// the vmlinux with DWARF, and the debug objects of the modules the guest
/// loads (`lockscope resolve --vmlinux --modules` read them).
pub struct GuestDebugInfo {
    pub vmlinux: PathBuf,
    /// Holds `<module>.ko` debug objects, in the kernel's directory layout.
    pub modules: PathBuf,
}

impl GuestDebugInfo {
    /// Downloaded (~860 MB) and unpacked once: only the vmlinux and the
    /// guest's modules are kept (~650 MB).
    pub fn fetch(cache: &Path, release: &str) -> Result<GuestDebugInfo, GuestError> {
        if let Some(found) = Self::cached(cache, release) {
            return Ok(found);
        }
        let download = cache.join("download-dbg");
        let deb = apt_download(&format!("linux-image-{release}-dbg"), &download)?;
        let unpacked = cache.join("debug.tmp");
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::create_dir_all(&unpacked).map_err(io("creating the debug-info directory"))?;
        let mut wanted = vec![format!("./usr/lib/debug/boot/vmlinux-{release}")];
        wanted.extend(super::initramfs::MODULES.iter().map(|m| format!("./usr/lib/debug/lib/modules/{release}/kernel/{m}")));
        // Only what is wanted is written; the package's other 5 GB are not.
        let script = format!("dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" {}", wanted.join(" "));
        run_tool(Command::new("sh").arg("-c").arg(script).arg("sh").arg(&deb).arg(&unpacked))?;
        let target = cache.join("debug").join(release);
        std::fs::create_dir_all(target.parent().unwrap()).map_err(io("creating the debug-info directory"))?;
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&unpacked, &target).map_err(io("moving the debug info into place"))?;
        let _ = std::fs::remove_dir_all(&download);
        Self::cached(cache, release).ok_or_else(|| GuestError::Setup(format!("linux-image-{release}-dbg holds no vmlinux")))
    }

    pub fn cached(cache: &Path, release: &str) -> Option<GuestDebugInfo> {
        let root = cache.join("debug").join(release).join("usr/lib/debug");
        let vmlinux = root.join("boot").join(format!("vmlinux-{release}"));
        let modules = root.join("lib/modules").join(release);
        (vmlinux.is_file() && modules.is_dir()).then_some(GuestDebugInfo { vmlinux, modules })
    }
}
