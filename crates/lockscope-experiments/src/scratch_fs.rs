//! A private, quiet file system for an experiment: ext4 on an image in
//! memory (/dev/shm), loop-mounted. Nothing else on the machine writes to
//! it, so no other writer shares its journal and no disk's latency varies
//! its operations: what the experiment's workloads share on it is all that
//! is shared.

use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct ScratchFsError {
    what: String,
    detail: String,
}

/// The size of a stress experiment's private file system (sparse: only
/// what is written takes memory).
pub const STRESS_FS_MIB: u64 = 2048;

/// A mounted ext4 file system, unmounted and deleted when dropped.
pub struct ScratchFs {
    image: PathBuf,
    mount_point: PathBuf,
}

impl ScratchFs {
    /// Makes an ext4 file system of `size_mib` (sparse: only what is
    /// written takes memory) and mounts it at `mount_point` (created).
    pub fn create(name: &str, mount_point: &Path, size_mib: u64) -> Result<ScratchFs, ScratchFsError> {
        let image = PathBuf::from(format!("/dev/shm/lockscope-{}-{name}.img", std::process::id()));
        let failed = |what: String| move |detail: String| ScratchFsError { what, detail };
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(size_mib << 20))
            .map_err(|e| failed(format!("creating {}", image.display()))(e.to_string()))?;
        // Half-made, it is still removed: the Drop below runs from here on.
        let fs = ScratchFs { image, mount_point: mount_point.to_owned() };
        std::fs::create_dir_all(mount_point).map_err(|e| failed(format!("creating {}", mount_point.display()))(e.to_string()))?;
        // Inode tables and journal written now: lazy initialisation would
        // run a kernel thread writing to the file system during the experiment.
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"]).arg(&fs.image))
            .map_err(failed(format!("making an ext4 file system on {}", fs.image.display())))?;
        run(Command::new("mount").args(["-o", "loop"]).arg(&fs.image).arg(mount_point))
            .map_err(failed(format!("loop-mounting {} (needs root and loop devices)", fs.image.display())))?;
        Ok(fs)
    }

    pub fn path(&self) -> &Path {
        &self.mount_point
    }

    fn mounted(&self) -> bool {
        lockscope_proc::procfs::mounts().unwrap_or_default().iter().any(|m| m.dir == self.mount_point)
    }
}

impl Drop for ScratchFs {
    fn drop(&mut self) {
        // `mount -o loop` marks its loop device to be freed at unmount.
        if self.mounted() {
            if let Err(e) = run(Command::new("umount").arg(&self.mount_point)) {
                tracing::warn!("unmounting {}: {e}", self.mount_point.display());
                return; // Keep the image of a file system still mounted.
            }
        }
        let _ = std::fs::remove_dir(&self.mount_point);
        let _ = std::fs::remove_file(&self.image);
    }
}

/// Runs a command to its end; its standard error when it fails.
fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("running {:?}: {e}", cmd.get_program()))?;
    match out.status.success() {
        true => Ok(()),
        false => Err(format!("{} ({})", String::from_utf8_lossy(&out.stderr).trim(), out.status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// Needs root and loop devices, as the calibration does.
    #[test]
    fn a_scratch_file_system_is_its_own_and_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let point = tmp.path().join("fs");
        let fs = ScratchFs::create("unit", &point, 64).unwrap();
        let image = fs.image.clone();
        assert_ne!(std::fs::metadata(fs.path()).unwrap().dev(), std::fs::metadata(tmp.path()).unwrap().dev(), "a file system of its own");
        std::fs::write(fs.path().join("f"), b"x").unwrap();
        drop(fs);
        assert!(!point.exists() && !image.exists(), "unmounted and removed");
    }
}
