//! The paper's file-metadata workloads (6.1.2, after Filebench's metadata
//! personalities), each in the workload's own directory: list a large
//! directory, create files, delete files. Only the measured phase is timed;
//! setting up (populating, cleaning) is not.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::meter::{Meter, Sample};

use crate::{io_error, Budget, DutyCycle, WorkloadError};

/// Which metadata operation is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp {
    /// One operation: list every entry of a directory of FILES files.
    List,
    /// One operation: create (write SIZE bytes, close) one file.
    Create,
    /// One operation: delete one file.
    Delete,
}

pub struct FileOps<'a> {
    pub op: FileOp,
    pub dir: &'a Path,
    pub files: u32,
    /// Bytes written to each created file (paper: 4 KiB).
    pub file_size: usize,
    /// The directory may hold other workloads' files: this one's are named
    /// by its process id.
    pub shared: bool,
    /// The share of the time spent working, in percent (100: all of it).
    pub duty: u32,
}

impl FileOps<'_> {
    fn path(&self, i: u32) -> PathBuf {
        match self.shared {
            true => self.dir.join(format!("f{}-{i}", std::process::id())),
            false => self.dir.join(format!("f{i}")),
        }
    }

    fn create(&self, i: u32, data: &[u8]) -> Result<(), WorkloadError> {
        let p = self.path(i);
        let mut f = fs::File::create(&p).map_err(io_error(format!("creating {}", p.display())))?;
        f.write_all(data).map_err(io_error(format!("writing {}", p.display())))
    }

    fn remove(&self, i: u32) -> Result<(), WorkloadError> {
        let p = self.path(i);
        fs::remove_file(&p).map_err(io_error(format!("deleting {}", p.display())))
    }

    fn populate(&self, data: &[u8]) -> Result<(), WorkloadError> {
        (0..self.files).try_for_each(|i| self.create(i, data))
    }

    fn remove_all(&self) -> Result<(), WorkloadError> {
        (0..self.files).try_for_each(|i| self.remove(i))
    }

    /// Runs rounds until the budget is spent. A round is one listing (list)
    /// or FILES creations or deletions; with `report_every`, one throughput
    /// line per interval is printed.
    pub fn run(&self, budget: Budget, report_every: Option<Duration>) -> Result<Sample, WorkloadError> {
        if self.files == 0 {
            return Err(WorkloadError::InvalidArgument("--files must be at least 1".into()));
        }
        let mut duty = DutyCycle::new(self.duty)?;
        fs::create_dir_all(self.dir).map_err(io_error(format!("creating {}", self.dir.display())))?;
        if !self.shared && fs::read_dir(self.dir).map_err(io_error(format!("reading {}", self.dir.display())))?.next().is_some() {
            return Err(WorkloadError::InvalidArgument(format!(
                "{} is not empty; give the workload a directory of its own, or pass --shared",
                self.dir.display()
            )));
        }
        let mut pace = || {
            if let Some(d) = duty.as_mut() {
                d.pace()
            }
        };
        let data = vec![0x5au8; self.file_size];
        if self.op != FileOp::Create {
            self.populate(&data)?;
        }
        let (name, unit) = match self.op {
            FileOp::List => ("file-list", "listing of the whole directory"),
            FileOp::Create => ("file-create", "file created"),
            FileOp::Delete => ("file-delete", "file deleted"),
        };
        let mut meter = Meter::new(name, unit, report_every);
        let start = meter.started();
        let mut rounds = 0u64;
        while !budget.spent(start, rounds) {
            match self.op {
                FileOp::List => {
                    pace();
                    let t = Instant::now();
                    let n = fs::read_dir(self.dir).map_err(io_error(format!("listing {}", self.dir.display())))?.count();
                    meter.add(1, t.elapsed());
                    debug_assert_eq!(n as u32, self.files);
                }
                // The directory holds FILES entries throughout (steady state:
                // a growing or draining directory would make the rate drift
                // over the run): each slot's file is replaced, untimed for
                // the operation not measured, and names are reused so the
                // dentry cache does not grow either.
                FileOp::Create => {
                    for i in 0..self.files {
                        pace();
                        if rounds > 0 {
                            self.remove(i)?;
                        }
                        let t = Instant::now();
                        self.create(i, &data)?;
                        meter.add(1, t.elapsed());
                    }
                }
                FileOp::Delete => {
                    for i in 0..self.files {
                        pace();
                        let t = Instant::now();
                        self.remove(i)?;
                        meter.add(1, t.elapsed());
                        self.create(i, &data)?;
                    }
                }
            }
            rounds += 1;
        }
        if self.op != FileOp::Create || rounds > 0 {
            self.remove_all()?;
        }
        Ok(meter.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(op: FileOp, dir: &Path) -> Sample {
        FileOps { op, dir, files: 100, file_size: 4096, shared: false, duty: 100 }.run(Budget::Rounds(2), None).unwrap()
    }

    #[test]
    fn each_operation_counts_what_it_did_and_leaves_the_directory_empty() {
        let tmp = tempfile::tempdir().unwrap();
        for (op, ops) in [(FileOp::List, 2), (FileOp::Create, 200), (FileOp::Delete, 200)] {
            let dir = tmp.path().join(format!("{op:?}"));
            assert_eq!(run(op, &dir).ops, ops, "{op:?}");
            assert_eq!(fs::read_dir(&dir).unwrap().count(), 0, "{op:?}");
        }
    }

    #[test]
    fn refuses_a_shared_or_unusable_directory() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("other"), b"x").unwrap();
        let err = FileOps { op: FileOp::Create, dir: tmp.path(), files: 1, file_size: 0, shared: false, duty: 100 }
            .run(Budget::Rounds(1), None)
            .unwrap_err();
        assert!(err.to_string().contains("not empty"), "{err}");
        // Shared: the other files stay, this workload's own go.
        let shared = FileOps { op: FileOp::Create, dir: tmp.path(), files: 10, file_size: 0, shared: true, duty: 100 };
        assert_eq!(shared.run(Budget::Rounds(2), None).unwrap().ops, 20);
        let left: Vec<_> = fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, ["other"]);
        let err = FileOps { op: FileOp::List, dir: &tmp.path().join("other/sub"), files: 1, file_size: 0, shared: false, duty: 100 }
            .run(Budget::Rounds(1), None)
            .unwrap_err();
        assert!(err.to_string().contains("creating"), "{err}");
    }

    #[test]
    fn a_duty_cycle_idles_once_its_share_of_the_period_is_worked() {
        assert!(DutyCycle::new(0).is_err() && DutyCycle::new(101).is_err());
        // Refused before anything is made.
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("never");
        let refused =
            FileOps { op: FileOp::Create, dir: &dir, files: 3, file_size: 0, shared: false, duty: 0 }.run(Budget::Rounds(1), None);
        assert!(refused.unwrap_err().to_string().contains("--duty must be 1 to 100"));
        assert!(!dir.exists());
        assert!(DutyCycle::new(100).unwrap().is_none());
        let mut half = DutyCycle::new(50).unwrap().unwrap();
        std::thread::sleep(DutyCycle::PERIOD / 2);
        let t = Instant::now();
        half.pace();
        assert!(t.elapsed() >= DutyCycle::PERIOD / 2);
        // A workload at 1% still does what its budget asks.
        let sample = FileOps { op: FileOp::Create, dir: tmp.path(), files: 3, file_size: 0, shared: false, duty: 1 };
        assert_eq!(sample.run(Budget::Rounds(2), None).unwrap().ops, 6);
    }
}
