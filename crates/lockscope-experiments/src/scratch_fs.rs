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

/// The size of an experiment's private file system (sparse: only what is
/// written takes memory).
pub const PRIVATE_FS_MIB: u64 = 2048;

/// A mounted ext4 file system, unmounted and deleted when dropped.
pub struct ScratchFs {
    image: PathBuf,
    mount_point: PathBuf,
}

impl ScratchFs {
    /// Makes an ext4 file system of `size_mib` (sparse: only what is
    /// written takes memory) and mounts it at `mount_point` (created).
    pub fn create(name: &str, mount_point: &Path, size_mib: u64) -> Result<ScratchFs, ScratchFsError> {
        Self::create_with(name, mount_point, size_mib, &[])
    }

    /// As [`ScratchFs::create`], with more `mkfs.ext4` options.
    fn create_with(name: &str, mount_point: &Path, size_mib: u64, mkfs_options: &[&str]) -> Result<ScratchFs, ScratchFsError> {
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
        run(Command::new("mkfs.ext4").args(["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"]).args(mkfs_options).arg(&fs.image))
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

/// The block device (its kernel name: `vda`, `loop3`) of `path`'s file
/// system (that of its nearest existing ancestor, for a path not yet made)
/// when that is ext4 without a journal. Such an ext4 reuses no inode
/// deleted in the last minute (six while its inode table block is not yet
/// written back), and each inode it allocates walks past every such one
/// (`find_inode_bit` → `recently_deleted`): a workload that deletes and
/// creates files slows with its own deletions and with those of whatever ran
/// there in the minutes before. None: another file system, or a kernel whose
/// ext4 does not say (`journal_task` in sysfs, 5.10 on).
pub fn unjournaled_ext4(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dev = path.ancestors().find_map(|p| std::fs::metadata(p).ok())?.dev();
    let link = std::fs::read_link(format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev))).ok()?;
    let device = link.file_name()?.to_string_lossy().into_owned();
    let journal_task = std::fs::read_to_string(format!("/sys/fs/ext4/{device}/journal_task")).ok()?;
    (journal_task.trim() == "<none>").then_some(device)
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

    #[test]
    fn an_ext4_without_a_journal_is_told_from_one_with() {
        let tmp = tempfile::tempdir().unwrap();
        let journaled = ScratchFs::create("journaled", &tmp.path().join("j"), 64).unwrap();
        let unjournaled = ScratchFs::create_with("unjournaled", &tmp.path().join("u"), 64, &["-O", "^has_journal"]).unwrap();
        assert_eq!(unjournaled_ext4(journaled.path()), None);
        let device = unjournaled_ext4(unjournaled.path()).expect("an ext4 without a journal");
        assert!(device.starts_with("loop"), "{device}");
        assert_eq!(unjournaled_ext4(&unjournaled.path().join("not/yet")), Some(device), "a path to be made");
        assert_eq!(unjournaled_ext4(Path::new("/dev/shm")), None, "tmpfs is no ext4");
    }
}
