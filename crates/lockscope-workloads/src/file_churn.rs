//! File metadata churn: create N small files in a directory, then delete them,
//! round after round. Stresses the file system's metadata paths (dentry and
//! inode caches, the journal).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use crate::{io_error, Budget, Throughput, WorkloadError};

pub struct FileChurn<'a> {
    pub dir: &'a Path,
    pub files: u32,
    /// Bytes written to each file.
    pub file_size: usize,
}

impl FileChurn<'_> {
    /// Runs until the budget is spent; one operation is one create or one delete.
    pub fn run(&self, budget: Budget) -> Result<Throughput, WorkloadError> {
        if self.files == 0 {
            return Err(WorkloadError::InvalidArgument("--files must be at least 1".into()));
        }
        fs::create_dir_all(self.dir).map_err(io_error(format!("creating {}", self.dir.display())))?;
        let data = vec![0x5au8; self.file_size];
        let start = Instant::now();
        let (mut ops, mut rounds) = (0u64, 0u64);
        while !budget.spent(start, rounds) {
            for i in 0..self.files {
                let path = self.dir.join(format!("f{i}"));
                let mut f = fs::File::create(&path).map_err(io_error(format!("creating {}", path.display())))?;
                f.write_all(&data).map_err(io_error(format!("writing {}", path.display())))?;
                ops += 1;
            }
            for i in 0..self.files {
                let path = self.dir.join(format!("f{i}"));
                fs::remove_file(&path).map_err(io_error(format!("deleting {}", path.display())))?;
                ops += 1;
            }
            rounds += 1;
        }
        Ok(Throughput::new("file-churn", "file created or deleted", ops, start.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_deletes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = FileChurn { dir: dir.path(), files: 50, file_size: 16 }.run(Budget::Rounds(3)).unwrap();
        assert_eq!(t.ops, 300);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn rejects_zero_files_and_unwritable_dirs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(FileChurn { dir: dir.path(), files: 0, file_size: 0 }.run(Budget::Rounds(1)).is_err());
        let file = dir.path().join("plain");
        fs::write(&file, b"x").unwrap();
        let err = FileChurn { dir: &file.join("sub"), files: 1, file_size: 0 }.run(Budget::Rounds(1)).unwrap_err();
        assert!(err.to_string().contains("creating"), "{err}");
    }
}
