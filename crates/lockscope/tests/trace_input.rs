//! What lockscope makes of the traces it is given. Real traces (two file
//! churns recorded in contention mode on this kind of machine, in
//! fixtures/): one of format 1, which still reads, and one of the current
//! format, damaged 1,000 ways — bytes flipped, ranges overwritten, files cut
//! short, grown or removed — each read by `lockscope report` or `lockscope
//! compare`: each a clear error naming the damaged file, never a panic. The
//! corruptions come from a fixed seed: every run makes the same ones.

use std::path::{Path, PathBuf};

mod common;
use common::{lockscope, ok, stderr};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/file-churn.trace");
const FIXTURE_V1: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/file-churn-v1.trace");
const CORRUPTIONS: usize = 1000;

/// xorshift64*: small, and the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// A byte other than zero: XORed in, it always changes what it lands on.
    fn nonzero_byte(&mut self) -> u8 {
        1 + self.below(255) as u8
    }
}

#[derive(Debug)]
enum Damage {
    FlipBytes(usize),
    Overwrite { at: usize, len: usize },
    Truncate(usize),
    Append(usize),
    Remove,
}

/// Damages `file` (non-empty) in one of the ways storage and copies do.
fn damage(file: &Path, rng: &mut Rng) -> Damage {
    let mut bytes = std::fs::read(file).unwrap();
    let damage = match rng.below(5) {
        0 => Damage::FlipBytes(1 + rng.below(8)),
        1 => {
            let at = rng.below(bytes.len());
            Damage::Overwrite { at, len: 1 + rng.below((bytes.len() - at).min(64)) }
        }
        2 => Damage::Truncate(rng.below(bytes.len())),
        3 => Damage::Append(1 + rng.below(64)),
        _ => Damage::Remove,
    };
    match damage {
        Damage::FlipBytes(n) => {
            for _ in 0..n {
                let at = rng.below(bytes.len());
                bytes[at] ^= rng.nonzero_byte();
            }
        }
        Damage::Overwrite { at, len } => {
            for b in &mut bytes[at..at + len] {
                *b ^= rng.nonzero_byte();
            }
        }
        Damage::Truncate(len) => bytes.truncate(len),
        Damage::Append(n) => bytes.extend((0..n).map(|_| rng.next() as u8)),
        Damage::Remove => {
            std::fs::remove_file(file).unwrap();
            return damage;
        }
    }
    std::fs::write(file, bytes).unwrap();
    damage
}

fn copy_trace(to: &Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(FIXTURE).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn files(trace: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(trace).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    files
}

#[test]
fn the_fixtures_are_intact_traces_of_both_formats() {
    for (fixture, version) in [(FIXTURE, 2), (FIXTURE_V1, 1)] {
        let meta: serde_json::Value = common::json(&Path::new(fixture).join("trace.json"));
        assert_eq!(meta["version"], version, "{fixture}");
        let out = ok(lockscope(&["report", fixture, "--format", "json"]));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let locks = report["locks"].as_array().unwrap();
        assert!(!locks.is_empty(), "{fixture} holds locks");
        assert!(locks.iter().all(|l| l["kind"] == "spinlock"), "{fixture}: file churn contends on spinlocks");
        assert_eq!(files(Path::new(fixture)).len(), 4, "trace.json and three tables");
    }
}

#[test]
fn every_damage_is_a_clear_error_naming_the_damaged_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x10c5_c09e_2026_1201);
    for i in 0..CORRUPTIONS {
        let trace = tmp.path().join(format!("t{i}"));
        copy_trace(&trace);
        let all = files(&trace);
        let file = &all[rng.below(all.len())];
        let name = file.file_name().unwrap().to_str().unwrap().to_owned();
        let damage = damage(file, &mut rng);
        // compare reads several traces; the damaged one must be named among them.
        let command: &[&str] = match i % 2 {
            0 => &["report", trace.to_str().unwrap()],
            _ => &["compare", FIXTURE, trace.to_str().unwrap()],
        };
        let out = lockscope(command);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "#{i} {name} {damage:?}: lockscope panicked:\n{err}");
        assert_eq!(out.status.code(), Some(1), "#{i} {name} {damage:?}: not refused:\n{err}");
        assert!(err.starts_with("lockscope: error:"), "#{i} {name} {damage:?}: {err}");
        assert!(err.contains(&name), "#{i} {name} {damage:?}: the error does not name {name}:\n{err}");
        std::fs::remove_dir_all(&trace).unwrap();
    }
}
