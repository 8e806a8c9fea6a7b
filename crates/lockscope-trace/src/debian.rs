//! Debian 12's kernel series: the kernels lockscope boots as guests (acquire
//! mode where the host refuses it) and whose source and debug info it
//! resolves traces against. Each series' package names are here and nowhere
//! else.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DebianKernel {
    /// 6.1, Debian 12's own kernel and the paper's.
    V6_1,
    /// 6.12, Debian 12's newer kernel (from its security archive).
    V6_12,
}

impl DebianKernel {
    pub const ALL: [DebianKernel; 2] = [DebianKernel::V6_1, DebianKernel::V6_12];

    /// `6.1`: the kernel's version, as columns (`host@6.1`) show it.
    pub fn series(self) -> &'static str {
        match self {
            DebianKernel::V6_1 => "6.1",
            DebianKernel::V6_12 => "6.12",
        }
    }

    /// `debian-6.1`: how users name it (`--kernel debian-6.1`).
    pub fn name(self) -> String {
        format!("debian-{}", self.series())
    }

    pub fn parse(name: &str) -> Option<DebianKernel> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The series whose kernel `uname -r` says `release` is
    /// (`6.1.0-57-amd64`, `6.12.117+deb12-amd64`).
    pub fn of_release(release: &str) -> Option<DebianKernel> {
        Self::ALL.into_iter().find(|k| release_in_series(release, k.series()))
    }

    /// The series whose source is nearest to kernel `release` (`6.18.44`
    /// → 6.12): where the traced kernel's own is not at hand, the source
    /// that has changed least from it. None for a release that does not parse.
    pub fn nearest(release: &str) -> Option<DebianKernel> {
        // Releases in order: a major version has had about 20 minor ones.
        let ordinal = |s: &str| -> Option<i64> {
            let mut parts = s.split(|c: char| !c.is_ascii_digit());
            Some(parts.next()?.parse::<i64>().ok()? * 20 + parts.next()?.parse::<i64>().ok()?)
        };
        let traced = ordinal(release)?;
        Self::ALL.into_iter().min_by_key(|k| (ordinal(k.series()).expect("series are versions") - traced).abs())
    }

    /// The package of its source (`/usr/src/<package>.tar.xz`, which
    /// unpacks into a directory of the same name).
    pub fn source_package(self) -> String {
        format!("linux-source-{}", self.series())
    }

    /// `apt-cache search` pattern of its kernel image packages, one per
    /// upload (`linux-image-6.1.0-57-amd64`, `linux-image-6.12.117+deb12-amd64`);
    /// the debug info of each is `<package>-dbg`.
    pub fn image_package_pattern(self) -> &'static str {
        match self {
            DebianKernel::V6_1 => r"^linux-image-6\.1\.0-[0-9]+-amd64$",
            DebianKernel::V6_12 => r"^linux-image-6\.12\.[0-9]+\+deb12-amd64$",
        }
    }
}

/// Whether a kernel release (`uname -r`: `6.1.0-57-amd64`) is of a series
/// (`6.1`, as a source tree's Makefile gives VERSION.PATCHLEVEL): `6.10.2`
/// is not of `6.1`.
pub fn release_in_series(release: &str, series: &str) -> bool {
    release.strip_prefix(series).is_some_and(|rest| rest.starts_with('.') || rest.starts_with('-'))
}

impl fmt::Display for DebianKernel {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_release_belongs_to_its_series_only() {
        assert_eq!(DebianKernel::of_release("6.1.0-57-amd64"), Some(DebianKernel::V6_1));
        assert_eq!(DebianKernel::of_release("6.12.117+deb12-amd64"), Some(DebianKernel::V6_12));
        assert_eq!(DebianKernel::of_release("6.18.44"), None);
        assert_eq!(DebianKernel::nearest("6.18.44"), Some(DebianKernel::V6_12));
        assert_eq!(DebianKernel::nearest("6.5.0-1-amd64"), Some(DebianKernel::V6_1));
        assert_eq!(DebianKernel::nearest("5.15.0"), Some(DebianKernel::V6_1));
        assert_eq!(DebianKernel::nearest("6.1.0-57-amd64"), Some(DebianKernel::V6_1));
        assert_eq!(DebianKernel::nearest("unknown"), None);
        assert_eq!(DebianKernel::of_release("6.10.2"), None);
        assert_eq!(DebianKernel::parse("debian-6.12"), Some(DebianKernel::V6_12));
        assert_eq!(DebianKernel::parse("6.12"), None);
    }
}
