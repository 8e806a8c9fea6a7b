//! Where each kernel function is defined, by name: a quick scan of the .c
//! files for definitions in kernel style (the name's line at column 0, the
//! body's `{` opening a later line at column 0). It places a stack's call
//! site in a subsystem when the source is not the traced kernel's version:
//! clangd's exact answer would then be about different code, but functions
//! rarely change directory between versions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::stacks::subsystem_of;

/// Cached in the tree: a line per definition, `function<TAB>file`.
const CACHE: &str = ".lockscope-functions.tsv";

pub struct FunctionIndex {
    files: HashMap<String, Vec<String>>,
}

impl FunctionIndex {
    /// Scans `root` (once; later calls read the cache).
    pub fn load(root: &Path) -> std::io::Result<FunctionIndex> {
        let cache = root.join(CACHE);
        let text = match std::fs::read_to_string(&cache) {
            Ok(text) => text,
            Err(_) => {
                let text = scan(root)?;
                let partial = cache.with_extension("tmp");
                std::fs::write(&partial, &text)?;
                std::fs::rename(&partial, &cache)?;
                text
            }
        };
        Ok(FunctionIndex::from_definitions(text.lines().filter_map(|l| l.split_once('\t'))))
    }

    /// An index of the given (function, file) definitions.
    pub fn from_definitions<'a>(definitions: impl IntoIterator<Item = (&'a str, &'a str)>) -> FunctionIndex {
        let mut files: HashMap<String, Vec<String>> = HashMap::new();
        for (name, file) in definitions {
            files.entry(name.to_owned()).or_default().push(file.to_owned());
        }
        FunctionIndex { files }
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files defining `function` (static functions may share a name).
    pub fn files(&self, function: &str) -> &[String] {
        self.files.get(function).map_or(&[], Vec::as_slice)
    }

    /// The subsystem of `function`, when every definition of the name agrees.
    pub fn subsystem(&self, function: &str) -> Option<String> {
        let mut subsystems = self.files(function).iter().map(|f| subsystem_of(f));
        let first = subsystems.next()?;
        subsystems.all(|s| s == first).then_some(first)
    }
}

fn scan(root: &Path) -> std::io::Result<String> {
    let mut files = vec![];
    collect_c_files(root, root, &mut files)?;
    files.sort();
    let mut out = String::new();
    for path in files {
        let Ok(bytes) = std::fs::read(&path) else { continue };
        let shown = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        for name in definitions(&String::from_utf8_lossy(&bytes)) {
            out.push_str(&format!("{name}\t{shown}\n"));
        }
    }
    Ok(out)
}

fn collect_c_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_dir() && !name.starts_with('.') && !matches!(name.as_ref(), "tools" | "Documentation" | "samples" | "scripts") {
            // Other architectures' code never runs here.
            let foreign_arch = path.parent() == Some(&root.join("arch")) && name != "x86";
            if !foreign_arch {
                collect_c_files(root, &path, out)?;
            }
        } else if kind.is_file() && name.ends_with(".c") {
            out.push(path);
        }
    }
    Ok(())
}

const NOT_FUNCTIONS: &[&str] = &["if", "while", "for", "switch", "return", "sizeof", "__attribute__", "typeof", "defined"];

/// The functions a C file defines, kernel style. SYSCALL_DEFINEn(name, ...)
/// defines the system call's entry points as they appear on stacks.
pub fn definitions(source: &str) -> Vec<String> {
    let mut found = vec![];
    let mut pending: Option<String> = None;
    for line in source.lines() {
        let first = line.chars().next();
        if first == Some('{') {
            if let Some(name) = pending.take() {
                match name.strip_prefix("SYSCALL:") {
                    Some(call) => found.extend(["__x64_sys_", "__se_sys_", "__do_sys_"].map(|p| format!("{p}{call}"))),
                    None => found.push(name),
                }
            }
        } else if first.is_some_and(|c| c.is_ascii_alphabetic() || c == '_') {
            pending = if line.trim_end().ends_with(';') || line.starts_with("typedef") { None } else { declared_name(line) };
        } else if matches!(first, Some('}' | '#')) {
            pending = None;
        }
    }
    found
}

/// The function a declaration line names: the identifier before its first `(`.
fn declared_name(line: &str) -> Option<String> {
    let open = line.find('(')?;
    if line[..open].contains('=') {
        return None; // an initializer, not a declaration
    }
    let head = line[..open].trim_end();
    let start = head.rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
    let name = &head[start..];
    if name.is_empty() || name.chars().next().is_some_and(|c| c.is_ascii_digit()) || NOT_FUNCTIONS.contains(&name) {
        return None;
    }
    if name.starts_with("SYSCALL_DEFINE") || name.starts_with("COMPAT_SYSCALL_DEFINE") {
        let call = line[open + 1..].split([',', ')']).next()?.trim();
        return Some(format!("SYSCALL:{call}"));
    }
    Some(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_kernel_style_definitions_only() {
        let source = "\
static DEFINE_SPINLOCK(inode_hash_lock);
static int ext4_foo(struct inode *inode,
\t\t    int x)
{
\treturn 0;
}
int ext4_bar(void);
void __insert_inode_hash(struct inode *inode, unsigned long hashval)
{
}
static struct file_operations ops = init_ops(1);
struct x {
\tint (*fn)(void);
};
SYSCALL_DEFINE3(openat, int, dfd, const char __user *, filename, int, flags)
{
}
#define FOO(x) (x)
{
";
        assert_eq!(definitions(source), ["ext4_foo", "__insert_inode_hash", "__x64_sys_openat", "__se_sys_openat", "__do_sys_openat"]);
    }

    #[test]
    fn a_name_with_definitions_in_two_subsystems_has_none() {
        let index = FunctionIndex::from_definitions([("evict", "fs/inode.c"), ("init", "mm/a.c"), ("init", "kernel/b.c")]);
        assert_eq!(index.subsystem("evict").as_deref(), Some("fs"));
        assert_eq!(index.subsystem("init"), None);
        assert_eq!(index.subsystem("missing"), None);
    }
}
