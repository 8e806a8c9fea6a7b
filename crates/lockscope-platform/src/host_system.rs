//! The host's programs and libraries as runc, gVisor and the microVM give
//! them to a workload: /usr and /etc read-only, and each top-level directory
//! of a merged /usr (bin, lib, ...) as the same symlink, or shared itself
//! where the host's is a directory of its own. So an application workload
//! finds Debian's Python and its packages on every platform.

use std::path::{Path, PathBuf};

/// Where the workload sees lockscope, beside the host's /usr.
pub(crate) const LOCKSCOPE: &str = "/opt/lockscope/lockscope";

/// `PATH` inside: lockscope first, then the host's usual directories.
pub(crate) const PATH: &str = "PATH=/opt/lockscope:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

/// The workload's host name.
pub(crate) const HOSTNAME: &str = "lockscope";

/// The workload's /etc/hosts, in place of the host's, as Docker and Podman
/// write one: its own name resolves (Java asks for it, and Spark with it)
/// with no network beside loopback.
pub(crate) fn hosts_file() -> String {
    format!("127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n")
}

/// The layout of the host's system, read from its root directory.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct HostSystem {
    /// Directories shared read-only at the same path.
    pub shared: Vec<PathBuf>,
    /// Top-level symlinks made the same inside: (name, target), as ("bin", "usr/bin").
    pub links: Vec<(String, PathBuf)>,
}

impl HostSystem {
    pub fn of_this_host() -> HostSystem {
        HostSystem::of(Path::new("/"))
    }

    fn of(root: &Path) -> HostSystem {
        let mut system = HostSystem { shared: vec![PathBuf::from("/usr"), PathBuf::from("/etc")], links: vec![] };
        for top in ["bin", "sbin", "lib", "lib32", "lib64", "libx32"] {
            let host = root.join(top);
            match std::fs::read_link(&host) {
                Ok(target) => system.links.push((top.to_owned(), target)),
                Err(_) if host.is_dir() => system.shared.push(Path::new("/").join(top)),
                Err(_) => {}
            }
        }
        system
    }

    /// Makes its links in `root` (a root file system being built).
    pub fn make_links(&self, root: &Path) -> std::io::Result<()> {
        for (name, target) in &self.links {
            std::os::unix::fs::symlink(target, root.join(name))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_directories_are_linked_and_the_others_shared() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.path().join("bin")).unwrap();
        std::fs::create_dir(root.path().join("lib32")).unwrap();
        let system = HostSystem::of(root.path());
        assert_eq!(system.shared, ["/usr", "/etc", "/lib32"].map(PathBuf::from));
        assert_eq!(system.links, [("bin".to_owned(), PathBuf::from("usr/bin"))]);

        let inside = tempfile::tempdir().unwrap();
        system.make_links(inside.path()).unwrap();
        assert_eq!(std::fs::read_link(inside.path().join("bin")).unwrap(), Path::new("usr/bin"));
    }
}
