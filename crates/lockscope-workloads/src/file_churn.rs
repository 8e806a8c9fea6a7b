//! File metadata churn: create N small files in a directory, then delete them,
//! round after round. Stresses the file system's metadata paths (dentry and
//! inode caches, the journal).

use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::meter::{Meter, Sample};
use crate::{io_error, Budget, WorkloadError};

pub struct FileChurn<'a> {
    pub dir: &'a Path,
    pub files: u32,
    /// Bytes written to each file.
    pub file_size: usize,
}

impl FileChurn<'_> {
    /// Runs until the budget is spent; one operation is one create or one delete.
    pub fn run(&self, budget: Budget, report_every: Option<Duration>) -> Result<Sample, WorkloadError> {
        if self.files == 0 {
            return Err(WorkloadError::InvalidArgument("--files must be at least 1".into()));
        }
        fs::create_dir_all(self.dir).map_err(io_error(format!("creating {}", self.dir.display())))?;
        let data = vec![0x5au8; self.file_size];
        let mut meter = Meter::new("file-churn", "file created or deleted", report_every);
        let start = meter.started();
        let mut rounds = 0u64;
        while !budget.spent(start, rounds) {
            let t = Instant::now();
            for i in 0..self.files {
                let path = self.dir.join(format!("f{i}"));
                let mut f = fs::File::create(&path).map_err(io_error(format!("creating {}", path.display())))?;
                f.write_all(&data).map_err(io_error(format!("writing {}", path.display())))?;
            }
            for i in 0..self.files {
                let path = self.dir.join(format!("f{i}"));
                fs::remove_file(&path).map_err(io_error(format!("deleting {}", path.display())))?;
            }
            meter.add(2 * self.files as u64, t.elapsed());
            rounds += 1;
        }
        Ok(meter.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_deletes_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = FileChurn { dir: dir.path(), files: 50, file_size: 16 }.run(Budget::Rounds(3), None).unwrap();
        assert_eq!(t.ops, 300);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn rejects_zero_files_and_unwritable_dirs() {
        let dir = tempfile::tempdir().unwrap();
        assert!(FileChurn { dir: dir.path(), files: 0, file_size: 0 }.run(Budget::Rounds(1), None).is_err());
        let file = dir.path().join("plain");
        fs::write(&file, b"x").unwrap();
        let err = FileChurn { dir: &file.join("sub"), files: 1, file_size: 0 }.run(Budget::Rounds(1), None).unwrap_err();
        assert!(err.to_string().contains("creating"), "{err}");
    }
}
