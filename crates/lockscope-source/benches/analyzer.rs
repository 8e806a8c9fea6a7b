//! The static analyzer's costs on the default kernel tree (Debian's
//! linux-source-6.1, defconfig): preparing and indexing it, scanning the lock
//! inventory, and resolving every acquisition site written in fs/, mm/ and
//! kernel/. Prints figures; asserts nothing.
//!
//!   cargo bench -p lockscope-source --bench analyzer
//!
//! LOCKSCOPE_BENCH_SITES=N resolves only the first N sites (a quick run).
//! For the cost of a first preparation, remove the tree's
//! compile_commands.json and .cache/clangd before running.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lockscope_source::clangd::{build_index, locate, Clangd, ClangdOptions};
use lockscope_source::inventory::scan_tree;
use lockscope_source::primitives::line_calls_an_acquisition;
use lockscope_source::tree::{default_kernel_src, extract_debian_source, prepare, read_compile_commands, PrepareOptions};
use lockscope_source::{Resolver, Scope};
use lockscope_trace::DebianKernel;

const DIRECTORIES: [&str; 3] = ["fs/", "mm/", "kernel/"];

fn main() {
    let root = default_kernel_src();
    let clangd_binary = locate(None).expect("clangd: run ./setup.sh");

    let start = Instant::now();
    extract_debian_source(&root, DebianKernel::V6_1).expect("linux-source-6.1: run ./setup.sh");
    let prepared = prepare(&root, &PrepareOptions::default(), |_| {}).expect("prepare");
    let prepare_time = start.elapsed();
    let start = Instant::now();
    let index_bytes = build_index(&root, clangd_binary.clone(), |_| {}).expect("index");
    let index_time = start.elapsed();
    println!(
        "prepare: {:.1} s ({} compile commands); index: {:.1} s ({:.0} MB)",
        secs(prepare_time),
        prepared.files,
        secs(index_time),
        index_bytes as f64 / 1e6
    );

    let start = Instant::now();
    let inventory = scan_tree(&root, &["arch", "tools", "Documentation", "samples"], |_| {}).expect("scan");
    println!(
        "inventory: {} files, {} lock members, {} globals in {:.1} s",
        inventory.files_scanned,
        inventory.members.len(),
        inventory.globals.len(),
        secs(start.elapsed())
    );

    let root = root.canonicalize().unwrap();
    let mut sites = acquisition_sites(&root);
    if let Some(limit) = std::env::var("LOCKSCOPE_BENCH_SITES").ok().and_then(|n| n.parse().ok()) {
        sites.truncate(limit);
    }
    let start = Instant::now();
    let mut clangd = Clangd::start_indexed(&root, ClangdOptions::new(clangd_binary, root.clone()), |_| {}).expect("clangd");
    let load_time = start.elapsed();
    let clangd_pid = clangd.pid();
    let start = Instant::now();
    let (mut resolved, mut found) = (0, 0);
    let mut unresolved: std::collections::BTreeMap<String, usize> = Default::default();
    let mut resolver = Resolver::new(&mut clangd);
    for (file, line) in &sites {
        for site in resolver.resolve(file, *line).expect("resolve") {
            found += 1;
            match site.scope {
                Scope::Unknown => *unresolved.entry(site.reason.unwrap_or_default()).or_default() += 1,
                _ => resolved += 1,
            }
        }
    }
    let resolve_time = start.elapsed();
    let clangd_peak = clangd_pid.and_then(peak_memory_kb).unwrap_or(0);
    clangd.shutdown();
    println!(
        "resolve: {} lines in {} (index loaded in {:.1} s): {} acquisitions, {} resolved ({:.1}%), {:.1} s, {:.1} sites/s",
        sites.len(),
        DIRECTORIES.join(" "),
        secs(load_time),
        found,
        resolved,
        100.0 * resolved as f64 / found.max(1) as f64,
        secs(resolve_time),
        sites.len() as f64 / secs(resolve_time)
    );
    let mut reasons: Vec<_> = unresolved.into_iter().collect();
    reasons.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
    for (why, n) in reasons.iter().take(6) {
        println!("  unresolved {n:>5}: {why}");
    }
    println!(
        "peak memory: lockscope {:.0} MB, clangd {:.0} MB",
        peak_memory_kb(std::process::id()).unwrap_or(0) as f64 / 1024.0,
        clangd_peak as f64 / 1024.0
    );
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Every line of the compiled .c files of DIRECTORIES that calls an
/// acquisition primitive, grouped by file as written.
fn acquisition_sites(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut sites = vec![];
    let commands = read_compile_commands(root).expect("compile commands");
    for command in commands.iter().filter(|c| DIRECTORIES.iter().any(|d| c.file.starts_with(d))) {
        let Ok(text) = std::fs::read_to_string(root.join(&command.file)) else { continue };
        for (index, line) in text.lines().enumerate() {
            if line_calls_an_acquisition(line) {
                sites.push((PathBuf::from(&command.file), index as u32 + 1));
            }
        }
    }
    sites
}

/// VmHWM of a process, in kB.
fn peak_memory_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}
