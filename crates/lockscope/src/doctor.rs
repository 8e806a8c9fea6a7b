//! `lockscope doctor`: what this machine allows, found by trying.

use std::collections::BTreeMap;
use std::path::Path;

use lockscope_bpf::{probe_hooks, Hook, HookStatus, Privileges};
use lockscope_platform::{Availability, Env, PlatformKind};
use lockscope_trace::{DebianKernel, SymbolTable};
use serde::Serialize;

use crate::Format;

/// Probe what this machine allows: privileges, BTF, which kernel hooks really
/// attach, KALLSYMS_ALL, cgroups, installed platforms, and so which recording
/// modes work.
#[derive(clap::Args)]
pub struct Args {
    /// table or json (csv is not offered: the result is not a table of rows).
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
}

#[derive(Serialize)]
struct Report {
    kernel_release: String,
    privileges: PrivilegeReport,
    btf: bool,
    hooks: Vec<HookStatus>,
    kallsyms_all: Option<bool>,
    /// Run-time naming: which sources this kernel's BTF allows (None: no BTF).
    naming: Option<lockscope_naming::Sources>,
    cgroup: CgroupReport,
    platforms: BTreeMap<PlatformKind, Availability>,
    modes: Modes,
}

#[derive(Serialize)]
struct PrivilegeReport {
    #[serde(flatten)]
    caps: Privileges,
    can_trace: bool,
}

#[derive(Serialize)]
struct CgroupReport {
    v1: bool,
    v2: bool,
}

#[derive(Serialize)]
struct Modes {
    acquire: ModeStatus,
    contention: ModeStatus,
}

#[derive(Serialize)]
struct ModeStatus {
    available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    hook: Option<Hook>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let report = gather();
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Format::Table | Format::Csv => print!("{}", table(&report)),
    }
    Ok(())
}

fn gather() -> Report {
    let privileges = Privileges::current();
    let can_trace = privileges.can_trace();
    let hooks = if can_trace {
        probe_hooks()
    } else {
        Hook::ALL
            .iter()
            .map(|&hook| HookStatus { hook, available: false, reason: Some(format!("not probed: {}", Privileges::ADVICE)) })
            .collect()
    };
    let status = |h: Hook| hooks.iter().find(|s| s.hook == h).expect("every hook probed");
    let mounts = lockscope_proc::procfs::mounts().unwrap_or_default();
    let fs_types: Vec<&str> = mounts.iter().map(|m| m.fs_type.as_str()).collect();
    let symbols = SymbolTable::load().ok();

    Report {
        kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_owned(),
        privileges: PrivilegeReport { caps: privileges, can_trace },
        btf: Path::new("/sys/kernel/btf/vmlinux").exists(),
        kallsyms_all: symbols.as_ref().map(|t| t.has_data_symbols()),
        naming: lockscope_naming::Btf::vmlinux().ok().map(|btf| lockscope_naming::sources(&btf, &symbols.unwrap_or_default())),
        cgroup: CgroupReport { v1: fs_types.contains(&"cgroup"), v2: fs_types.contains(&"cgroup2") },
        platforms: platforms(),
        modes: Modes {
            acquire: acquire_status(status(Hook::Fentry), status(Hook::Kprobe)),
            contention: contention_status(status(Hook::TpBtf), status(Hook::Tracepoint)),
        },
        hooks,
    }
}

/// Acquire mode runs on fentry/fexit, else on kprobes.
fn acquire_status(fentry: &HookStatus, kprobe: &HookStatus) -> ModeStatus {
    mode_status(fentry, kprobe)
}

/// Contention mode runs on tp_btf, else on the classic tracepoint.
fn contention_status(tp_btf: &HookStatus, tracepoint: &HookStatus) -> ModeStatus {
    mode_status(tp_btf, tracepoint)
}

/// A mode is available on its preferred hook or its fallback.
fn mode_status(preferred: &HookStatus, fallback: &HookStatus) -> ModeStatus {
    match [preferred, fallback].into_iter().find(|h| h.available) {
        Some(h) => ModeStatus { available: true, hook: Some(h.hook), reason: None },
        None => ModeStatus {
            available: false,
            hook: None,
            reason: Some(format!(
                "{:?}: {}; {:?}: {}",
                preferred.hook,
                preferred.reason.as_deref().unwrap_or("?"),
                fallback.hook,
                fallback.reason.as_deref().unwrap_or("?")
            )),
        },
    }
}

/// Which isolation platforms can run workloads here.
pub fn platforms() -> BTreeMap<PlatformKind, Availability> {
    let env = Env::new(Env::default_work_root());
    PlatformKind::ALL
        .into_iter()
        .map(|k| {
            let availability = match &env {
                Ok(env) => k.availability(env),
                Err(e) => Availability { usable: false, detail: e.to_string() },
            };
            (k, availability)
        })
        .collect()
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

fn table(r: &Report) -> String {
    let mut rows: Vec<Vec<String>> = vec![
        vec!["kernel".into(), r.kernel_release.clone()],
        vec![
            "privileges".into(),
            if r.privileges.can_trace {
                format!("can trace (euid {})", r.privileges.caps.euid)
            } else {
                format!("cannot trace: {}", Privileges::ADVICE)
            },
        ],
        vec!["BTF (/sys/kernel/btf/vmlinux)".into(), yes_no(r.btf).into()],
    ];
    for h in &r.hooks {
        rows.push(vec![h.hook.describe().into(), h.reason.clone().map_or("attaches".into(), |why| format!("no: {why}"))]);
    }
    rows.push(vec![
        "KALLSYMS_ALL (global locks named)".into(),
        r.kallsyms_all.map_or("unknown (kallsyms unreadable)".into(), |b| yes_no(b).into()),
    ]);
    let naming = match r.naming {
        Some(s) => format!(
            "slab objects: {} · per-CPU variables: {} · globals: {}",
            s.slab_by
                .map_or("no (needs the bpf_get_kmem_cache kfunc, 6.13+, or KALLSYMS_ALL up to 6.9 and from 6.12)".into(), |by| format!(
                    "yes ({by})"
                )),
            yes_no(s.percpu),
            if s.globals { "yes (kallsyms)" } else { "no (needs KALLSYMS_ALL)" }
        ),
        None => "no: the kernel exposes no BTF".into(),
    };
    rows.push(vec!["locks named at run time".into(), naming]);
    let release = &r.kernel_release;
    let from_source = match (DebianKernel::of_release(release), DebianKernel::nearest(release)) {
        (Some(own), _) => format!("every call site, from {own}'s source (`lockscope source prepare --kernel {own}` indexes it)"),
        (None, Some(nearest)) => format!(
            "those run time cannot name, inferred from {nearest}'s source, the nearest at hand to {release} (`--kernel-src` for its own)"
        ),
        (None, None) => "only with `--kernel-src` (no Debian source near this release)".into(),
    };
    rows.push(vec!["locks named from the source".into(), from_source]);
    rows.push(vec!["cgroup v1 / v2".into(), format!("{} / {}", yes_no(r.cgroup.v1), yes_no(r.cgroup.v2))]);
    for (kind, a) in &r.platforms {
        let text = if a.usable { format!("usable: {}", a.detail) } else { format!("not usable: {}", a.detail) };
        rows.push(vec![format!("platform {kind}"), text]);
    }
    for (name, m) in [("acquire", &r.modes.acquire), ("contention", &r.modes.contention)] {
        let text = if m.available {
            format!("available via {:?}", m.hook.expect("available modes name their hook"))
        } else {
            format!("unavailable: {}", m.reason.as_deref().unwrap_or("?"))
        };
        rows.push(vec![format!("mode {name}"), text]);
    }
    lockscope_analysis::render::columns(&["CHECK", "RESULT"], &rows)
}
