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
