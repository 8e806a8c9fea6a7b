//! Where platform instances are set up: the flags record, stress and study share.

use std::path::PathBuf;

use lockscope_platform::Env;

#[derive(clap::Args)]
pub struct PlatformArgs {
    /// Where instances keep their bundles, root file systems and working
    /// directories, each its own (a disk file system: the file workloads
    /// measure it).
    #[arg(long, default_value_os_t = Env::default_work_root())]
    work_dir: PathBuf,
    /// gVisor's platform (ptrace works everywhere; kvm needs hardware virtualization).
    #[arg(long, default_value = "ptrace")]
    runsc_platform: String,
}

impl PlatformArgs {
    pub fn env(&self) -> anyhow::Result<Env> {
        Ok(Env { runsc_platform: self.runsc_platform.clone(), ..Env::new(&self.work_dir)? })
    }
}
