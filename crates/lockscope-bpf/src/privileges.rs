//! Whether this process may load and attach tracing programs.

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Privileges {
    pub euid: u32,
    pub cap_sys_admin: bool,
    pub cap_bpf: bool,
    pub cap_perfmon: bool,
}

impl Privileges {
    pub fn current() -> Privileges {
        let effective = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok()))
            .unwrap_or(0);
        let has = |cap: u32| effective & (1u64 << cap) != 0;
        Privileges {
            // SAFETY: geteuid cannot fail.
            euid: unsafe { libc::geteuid() },
            cap_sys_admin: has(CAP_SYS_ADMIN),
            cap_bpf: has(CAP_BPF),
            cap_perfmon: has(CAP_PERFMON),
        }
    }

    /// Tracing programs need CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN.
    pub fn can_trace(&self) -> bool {
        self.cap_sys_admin || (self.cap_bpf && self.cap_perfmon)
    }

    pub const ADVICE: &'static str = "run as root or grant CAP_BPF+CAP_PERFMON (setcap cap_bpf,cap_perfmon+ep $(command -v lockscope))";
}
