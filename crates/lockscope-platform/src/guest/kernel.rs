//! Debian's kernel packages, fetched with apt and unpacked into a cache,
//! one directory per series.

use std::path::{Path, PathBuf};
use std::process::Command;

use lockscope_trace::DebianKernel;

use super::{io, run_tool, GuestError};

pub struct GuestKernel {
    pub release: String,
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>` of the unpacked package.
    pub modules: PathBuf,
}

impl GuestKernel {
    /// The newest image of the series Debian offers, downloaded once.
    pub fn fetch(cache: &Path, kernel: DebianKernel) -> Result<GuestKernel, GuestError> {
        let dir = kernel_dir(cache, kernel);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let _lock = lockscope_trace::lock_file(&dir.join(".lock")).map_err(io(format!("locking {}", dir.display())))?;
        if let Some(k) = Self::cached(&dir) {
            return Ok(k);
        }
        let listing = run_tool(Command::new("apt-cache").args(["search", "--names-only", kernel.image_package_pattern()]))?;
        let package = newest(listing.lines().filter_map(|l| l.split_whitespace().next()))
            .ok_or_else(|| GuestError::Setup(format!("apt offers no {kernel} kernel image (Debian 12 sources needed)")))?
            .to_owned();
        let download = dir.join("download");
        let deb = apt_download(&package, &download)?;
        let unpacked = dir.join("unpacked.tmp");
        let _ = std::fs::remove_dir_all(&unpacked);
        run_tool(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;
        std::fs::rename(&unpacked, dir.join("kernel")).map_err(io("moving the unpacked kernel into place"))?;
        let _ = std::fs::remove_dir_all(&download);
        Self::cached(&dir).ok_or_else(|| GuestError::Setup(format!("{package} holds no vmlinuz")))
    }

    /// Whether the series' kernel is already in the cache (no download needed).
    pub fn is_cached(cache: &Path, kernel: DebianKernel) -> bool {
        Self::cached(&kernel_dir(cache, kernel)).is_some()
    }

    fn cached(dir: &Path) -> Option<GuestKernel> {
        let root = dir.join("kernel");
        let boot = std::fs::read_dir(root.join("boot")).ok()?;
        let vmlinuz =
            boot.flatten().map(|e| e.path()).find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")))?;
        let release = vmlinuz.file_name()?.to_str()?.trim_start_matches("vmlinuz-").to_owned();
        let modules = root.join("lib/modules").join(&release);
        modules.is_dir().then_some(GuestKernel { release, vmlinuz, modules })
    }

    /// `wanted` (paths under `kernel/`, as `fs/9p/9p.ko`) preceded by the
    /// modules they depend on, each once, in an order they load in. Which
    /// those are differs between series (6.1's 9p needs fscache, 6.12's has
    /// none), so they are read from each module's own `depends`.
    pub(crate) fn with_dependencies(&self, wanted: &[&str]) -> Result<Vec<String>, GuestError> {
        let mut by_name = std::collections::HashMap::new();
        index_modules(&self.modules.join("kernel"), Path::new(""), &mut by_name)?;
        let mut order = vec![];
        for m in wanted {
            self.add_with_dependencies(m, &by_name, &mut order)?;
        }
        Ok(order)
    }

    fn add_with_dependencies(
        &self,
        module: &str,
        by_name: &std::collections::HashMap<String, String>,
        order: &mut Vec<String>,
    ) -> Result<(), GuestError> {
        if order.iter().any(|m| m == module) {
            return Ok(());
        }
        let plain = self.modules.join("kernel").join(module);
        let file = [plain.with_extension("ko.xz"), plain].into_iter().find(|f| f.is_file());
        // One not packaged is built in, or missing: loadable_modules tells which.
        if let Some(file) = file {
            let depends = run_tool(Command::new("modinfo").args(["-F", "depends"]).arg(&file))?;
            // A dependency not packaged as a module is built into the kernel.
            for dep in depends.trim().split(',').filter_map(|d| by_name.get(&d.replace('-', "_"))) {
                self.add_with_dependencies(dep, by_name, order)?;
            }
        }
        order.push(module.to_owned());
        Ok(())
    }

    /// Where each of `wanted` (paths under `kernel/`, as `fs/ext4/ext4.ko`)
    /// is in the package, as it is or xz-compressed (6.12); None for one
    /// built into the kernel, an error for one it has not at all.
    pub(crate) fn loadable_modules<'a>(&self, wanted: &[&'a str]) -> Result<Vec<(&'a str, PathBuf)>, GuestError> {
        let builtin = std::fs::read_to_string(self.modules.join("modules.builtin")).unwrap_or_default();
        let mut found = vec![];
        for &m in wanted {
            let plain = self.modules.join("kernel").join(m);
            let compressed = plain.with_extension("ko.xz");
            if plain.is_file() {
                found.push((m, plain));
            } else if compressed.is_file() {
                found.push((m, compressed));
            } else if !builtin.lines().any(|l| l.strip_prefix("kernel/") == Some(m)) {
                return Err(GuestError::Setup(format!("kernel {} has no module {m}, loadable or built in", self.release)));
            }
        }
        Ok(found)
    }
}

/// Every module under `dir` by its name (`-` read as `_`, as the kernel
/// does): its path relative to the package's `kernel/`, ending `.ko`.
fn index_modules(dir: &Path, relative: &Path, by_name: &mut std::collections::HashMap<String, String>) -> Result<(), GuestError> {
    for entry in std::fs::read_dir(dir).map_err(io(format!("listing {}", dir.display())))? {
        let entry = entry.map_err(io(format!("listing {}", dir.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = relative.join(&name);
        if entry.file_type().map_err(io(format!("reading {}", entry.path().display())))?.is_dir() {
            index_modules(&entry.path(), &path, by_name)?;
        } else if let Some(stem) = name.strip_suffix(".ko.xz").or_else(|| name.strip_suffix(".ko")) {
            by_name.insert(stem.replace('-', "_"), relative.join(format!("{stem}.ko")).display().to_string());
        }
    }
    Ok(())
}

/// Where a series' kernel is unpacked.
fn kernel_dir(cache: &Path, kernel: DebianKernel) -> PathBuf {
    cache.join(kernel.name())
}

/// The package of the newest upload, by the numbers in its name.
fn newest<'a>(packages: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let numbers = |p: &str| -> Vec<u32> { p.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect() };
    packages.max_by_key(|p| numbers(p))
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
    pub fn fetch(cache: &Path, kernel: &GuestKernel) -> Result<GuestDebugInfo, GuestError> {
        let release = &kernel.release;
        // One at a time: every release is downloaded and unpacked in the same places.
        let _lock = lockscope_trace::lock_file(&cache.join(".debug.lock")).map_err(io("locking the debug-info cache"))?;
        if let Some(found) = Self::cached(cache, release) {
            return Ok(found);
        }
        let download = cache.join("download-dbg");
        let deb = apt_download(&format!("linux-image-{release}-dbg"), &download)?;
        let unpacked = cache.join("debug.tmp");
        let _ = std::fs::remove_dir_all(&unpacked);
        std::fs::create_dir_all(&unpacked).map_err(io("creating the debug-info directory"))?;
        let mut wanted = vec![format!("./usr/lib/debug/boot/vmlinux-{release}")];
        let modules = kernel.loadable_modules(super::initramfs::MODULES)?;
        wanted.extend(modules.iter().map(|(m, _)| format!("./usr/lib/debug/lib/modules/{release}/kernel/{m}")));
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_newest_upload_is_chosen_by_its_numbers() {
        let six_one = ["linux-image-6.1.0-9-amd64", "linux-image-6.1.0-57-amd64", "linux-image-6.1.0-10-amd64"];
        assert_eq!(super::newest(six_one.into_iter()), Some("linux-image-6.1.0-57-amd64"));
        let six_twelve = ["linux-image-6.12.117+deb12-amd64", "linux-image-6.12.99+deb12-amd64"];
        assert_eq!(super::newest(six_twelve.into_iter()), Some("linux-image-6.12.117+deb12-amd64"));
    }
}
