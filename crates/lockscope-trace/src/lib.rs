//! The lockscope trace: what a recording holds, how it is stored on disk, and
//! how the kernel addresses in it are turned back into names.
//!
//! A trace is a directory (`trace.json` plus Parquet tables) so that pandas,
//! DuckDB or Spark can read the tables directly; see `format` for the layout.

pub mod context;
pub mod debian;
pub mod format;
pub mod frames;
pub mod kallsyms;
pub mod model;

pub use debian::{release_in_series, DebianKernel};
pub use format::{read_trace, write_table, write_trace, TraceError, FORMAT_NAME, FORMAT_VERSION};
pub use kallsyms::{KallsymsError, SymbolTable};
pub use model::*;

/// Where lockscope keeps what it downloads or builds once per machine (guest
/// kernels, clangd, kernel indexes): `$XDG_CACHE_HOME/lockscope`, else
/// `~/.cache/lockscope`.
pub fn cache_dir() -> std::path::PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::path::PathBuf::from("/var/cache"))
        .join("lockscope")
}

/// Holds an exclusive lock on `path` (created if missing) until the file is
/// dropped. Whatever fills lockscope's cache takes one, so two at once (two
/// lockscope processes, or a study's preparation beside its guest) wait for
/// each other rather than work over each other.
pub fn lock_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    file.lock()?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_locked_file_is_had_by_one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let first = super::lock_file(&path).unwrap();
        let released = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (path, released) = (path.clone(), Arc::clone(&released));
            // Gets the lock only once the first holder has let it go.
            std::thread::spawn(move || super::lock_file(&path).map(|_| released.load(Ordering::SeqCst)).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(200));
        released.store(true, Ordering::SeqCst);
        drop(first);
        assert!(waiter.join().unwrap(), "the second holder had the lock while the first held it");
    }
}
