//! Learns which kernel hooks this machine really allows, by loading and
//! attaching an empty program on each (never by reading the config).

use std::mem::MaybeUninit;

use libbpf_rs::skel::{OpenSkel, SkelBuilder};

use crate::libbpf_log;
use crate::probe_skel::ProbeSkelBuilder;
use lockscope_proc::procfs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// BPF trampoline on a kernel function (acquire mode).
    Fentry,
    /// kprobe on a kernel function (acquire mode fallback).
    Kprobe,
    /// BTF-typed `lock:contention_begin` (contention mode).
    TpBtf,
    /// Classic `lock:contention_begin` tracepoint (contention mode fallback).
    Tracepoint,
}

impl Hook {
    pub const ALL: [Hook; 4] = [Hook::Fentry, Hook::Kprobe, Hook::TpBtf, Hook::Tracepoint];

    /// Whether it serves acquire mode (every acquisition), else contention mode.
    pub fn acquires(self) -> bool {
        matches!(self, Hook::Fentry | Hook::Kprobe)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Hook::Fentry => "fentry on mutex_lock",
            Hook::Kprobe => "kprobe on mutex_lock",
            Hook::TpBtf => "tp_btf lock:contention_begin",
            Hook::Tracepoint => "tracepoint lock:contention_begin",
        }
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct HookStatus {
    pub hook: Hook,
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Tries every hook in turn.
pub fn probe_hooks() -> Vec<HookStatus> {
    Hook::ALL
        .iter()
        .map(|&hook| match try_hook(hook) {
            Ok(()) => HookStatus { hook, available: true, reason: None },
            Err(reason) => HookStatus { hook, available: false, reason: Some(reason) },
        })
        .collect()
}

/// Loads and attaches an empty program on `hook`; Err says why the kernel refused.
pub(crate) fn try_hook(hook: Hook) -> Result<(), String> {
    libbpf_log::capture();
    if hook == Hook::Tracepoint {
        procfs::ensure_tracefs().map_err(|e| format!("tracefs unavailable: {e}"))?;
    }
    let mut object = MaybeUninit::uninit();
    let mut open = ProbeSkelBuilder::default().open(&mut object).map_err(|e| format!("open: {e}"))?;
    let progs = &mut open.progs;
    progs.lks_probe_fentry.set_autoload(hook == Hook::Fentry);
    progs.lks_probe_kprobe.set_autoload(hook == Hook::Kprobe);
    progs.lks_probe_tpbtf.set_autoload(hook == Hook::TpBtf);
    progs.lks_probe_tp.set_autoload(hook == Hook::Tracepoint);
    let skel = open.load().map_err(|e| libbpf_log::explain(format!("load refused: {e}")))?;
    let prog = match hook {
        Hook::Fentry => &skel.progs.lks_probe_fentry,
        Hook::Kprobe => &skel.progs.lks_probe_kprobe,
        Hook::TpBtf => &skel.progs.lks_probe_tpbtf,
        Hook::Tracepoint => &skel.progs.lks_probe_tp,
    };
    let link = prog.attach().map_err(|e| libbpf_log::explain(format!("attach refused: {e}")))?;
    drop(link);
    Ok(())
}
