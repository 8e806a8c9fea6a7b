//! What every integration test of the lockscope binary uses: running it,
//! reading what it wrote, and taking turns on the machine.
#![allow(dead_code)] // each test binary uses its own part

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

pub const LOCKSCOPE: &str = env!("CARGO_BIN_EXE_lockscope");

/// Recordings attach system-wide and leftover checks look at the whole
/// machine: the tests of one binary take turns.
static MACHINE: Mutex<()> = Mutex::new(());

pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    MACHINE.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn lockscope(args: &[&str]) -> Output {
    Command::new(LOCKSCOPE).args(args).output().expect("lockscope runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The output, once it is known to have succeeded.
pub fn ok(out: Output) -> Output {
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

pub fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// `lockscope workload ARGS` as a command line.
pub fn workload(args: &str) -> String {
    format!("{LOCKSCOPE} workload {args}")
}
