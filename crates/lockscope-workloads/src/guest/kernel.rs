//! Debian's 6.1 kernel package, fetched with apt and unpacked into a cache.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{io, run_tool, GuestError};

pub struct GuestKernel {
    pub release: String,
    pub vmlinuz: PathBuf,
    /// lib/modules/<release> of the unpacked package.
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
        std::fs::create_dir_all(&download).map_err(io("creating the download directory"))?;
        run_tool(Command::new("apt-get").args(["download", "-q", &package]).current_dir(&download))?;
        let deb = std::fs::read_dir(&download)
            .map_err(io("listing downloads"))?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
            .ok_or_else(|| GuestError::Setup(format!("apt-get download {package} left no .deb")))?;
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
        let vmlinuz = boot.flatten().map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-"))
        })?;
        let release = vmlinuz.file_name()?.to_str()?.trim_start_matches("vmlinuz-").to_owned();
        let modules = root.join("lib/modules").join(&release);
        modules.is_dir().then_some(GuestKernel { release, vmlinuz, modules })
    }
}
