//! Page allocation churn (paper 6.1.1): mmap chunks of SIZE until TOTAL
//! bytes are mapped, write one word in every page, unmap them all, repeat.
//! Every touched page comes from, and returns to, the kernel's page allocator.

use std::time::{Duration, Instant};

use crate::meter::{Meter, Sample};
use crate::{Budget, WorkloadError};

const PAGE: usize = 4096;

pub struct MemChurn {
    /// Bytes per mmap.
    pub chunk: usize,
    /// Bytes mapped before unmapping them all.
    pub total: u64,
}

/// Parses `8k`, `1m`, `2g` or a plain byte count.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_lowercase();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t.as_str(), ""),
    };
    let n: u64 = digits.parse().map_err(|_| format!("{text:?} is not a size (e.g. 8k, 1m, 2g)"))?;
    let unit = match unit.trim_end_matches(['b', 'i']) {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => return Err(format!("{text:?}: unknown unit (use k, m or g)")),
    };
    n.checked_mul(unit).ok_or_else(|| format!("{text:?} is too large"))
}

fn available_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = info.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

impl MemChurn {
    fn validate(&self) -> Result<(), WorkloadError> {
        let bad = |m: String| Err(WorkloadError::InvalidArgument(m));
        if self.chunk == 0 {
            return bad("--size must be at least 1 byte".into());
        }
        if self.total < self.chunk as u64 {
            return bad(format!("--total ({}) must be at least --size ({})", self.total, self.chunk));
        }
        if let Some(avail) = available_memory() {
            if self.total > avail {
                return bad(format!("--total ({} MiB) exceeds available memory ({} MiB)", self.total >> 20, avail >> 20));
            }
        }
        Ok(())
    }

    /// One operation is one chunk mapped, touched and unmapped.
    /// `Budget::Rounds(n)`: n passes over TOTAL.
    pub fn run(&self, budget: Budget, report_every: Option<Duration>) -> Result<Sample, WorkloadError> {
        self.validate()?;
        let chunks = (self.total / self.chunk as u64) as usize;
        let mut mapped: Vec<*mut u8> = Vec::with_capacity(chunks);
        let mut meter = Meter::new("mem", "chunk mapped, touched and unmapped", report_every);
        let start = meter.started();
        let mut rounds = 0u64;
        while !budget.spent(start, rounds) {
            for _ in 0..chunks {
                let t = Instant::now();
                // SAFETY: a fresh anonymous private mapping; checked below.
                let p = unsafe {
                    libc::mmap(
                        std::ptr::null_mut(),
                        self.chunk,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                        -1,
                        0,
                    )
                };
                if p == libc::MAP_FAILED {
                    let source = std::io::Error::last_os_error();
                    unmap_all(&mut mapped, self.chunk);
                    return Err(WorkloadError::Io { what: format!("mapping {} bytes", self.chunk), source });
                }
                let p = p.cast::<u8>();
                for off in (0..self.chunk).step_by(PAGE) {
                    // SAFETY: off < chunk, inside the mapping.
                    unsafe { p.add(off).write_volatile(1) };
                }
                mapped.push(p);
                // Counted chunk by chunk: a pass over a large TOTAL can outlast a report interval.
                meter.add(1, t.elapsed());
            }
            let t = Instant::now();
            unmap_all(&mut mapped, self.chunk);
            meter.add(0, t.elapsed());
            rounds += 1;
        }
        Ok(meter.finish())
    }
}

fn unmap_all(mapped: &mut Vec<*mut u8>, chunk: usize) {
    for p in mapped.drain(..) {
        // SAFETY: p is a mapping of `chunk` bytes made by run().
        unsafe { libc::munmap(p.cast(), chunk) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("8k"), Ok(8192));
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1x").is_err());
        assert!(parse_size("k").is_err());
    }

    #[test]
    fn maps_touches_and_unmaps_every_chunk() {
        let t = MemChurn { chunk: 64 << 10, total: 4 << 20 }.run(Budget::Rounds(3), None).unwrap();
        assert_eq!(t.ops, 3 * 64);
    }

    #[test]
    fn refuses_impossible_sizes() {
        assert!(MemChurn { chunk: 0, total: 1 << 20 }.run(Budget::Rounds(1), None).is_err());
        assert!(MemChurn { chunk: 1 << 20, total: 4096 }.run(Budget::Rounds(1), None).is_err());
        let err = MemChurn { chunk: 1 << 20, total: u64::MAX / 2 }.run(Budget::Rounds(1), None).unwrap_err();
        assert!(err.to_string().contains("exceeds available memory"), "{err}");
    }
}
