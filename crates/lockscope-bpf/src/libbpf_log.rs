//! libbpf's own messages: sent to `tracing` (seen with -v) instead of stderr,
//! and the latest kept so an error can say what libbpf said.

use std::sync::{Mutex, Once};

use libbpf_rs::PrintLevel;

static RECENT: Mutex<Vec<String>> = Mutex::new(Vec::new());
const KEPT: usize = 32;

fn print(level: PrintLevel, msg: String) {
    let msg = msg.trim_end().to_owned();
    match level {
        PrintLevel::Warn => tracing::info!(target: "libbpf", "{msg}"),
        _ => tracing::debug!(target: "libbpf", "{msg}"),
    }
    if level == PrintLevel::Warn {
        let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEPT {
            recent.remove(0);
        }
        recent.push(msg);
    }
}

/// Installs the handler (once per process) and forgets earlier messages.
pub fn capture() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        libbpf_rs::set_print(Some((PrintLevel::Debug, print)));
    });
    RECENT.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// The most telling libbpf warning since [`capture`]: the last one that is
/// not the generic "failed to load object/skeleton" epilogue.
pub fn last_warning() -> Option<String> {
    let recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    recent
        .iter()
        .rev()
        .find(|m| !m.contains("failed to load object") && !m.contains("failed to load BPF skeleton") && !m.starts_with("--"))
        .cloned()
}

/// `what` with libbpf's explanation appended, when it gave one.
pub fn explain(what: impl std::fmt::Display) -> String {
    match last_warning() {
        Some(detail) => format!("{what} (libbpf: {})", detail.trim_start_matches("libbpf: ")),
        None => what.to_string(),
    }
}
