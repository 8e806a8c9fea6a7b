//! Return addresses → source lines, with the kernel's debug info: a vmlinux
//! with DWARF and, for frames in modules, the modules' debug objects (Debian's
//! linux-image-*-dbg ships both). Each address gives the line of the call and
//! every function inlined there, innermost first — so `spin_lock(&fs->lock)`
//! in `set_fs_pwd` is found even though `spin_lock` left no frame.
//!
//! Addresses are moved from the running kernel's layout (KASLR, module load
//! addresses) to the debug objects' by symbol: a frame is its function plus an
//! offset, and the function's address in the object is read from its symbol
//! table. The line tables are read by binutils' addr2line.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use object::{Object, ObjectSection, ObjectSymbol};

#[derive(Debug, thiserror::Error)]
pub enum LinesError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not an ELF object with symbols: {source}")]
    NotElf { path: PathBuf, source: object::Error },
    #[error("{0} has no debug info (.debug_info): give the vmlinux of the kernel's -dbg package, not the boot image")]
    NoDwarf(PathBuf),
    #[error("running addr2line: {0} (it comes with the binutils package)")]
    Symbolizer(std::io::Error),
    #[error("addr2line answered {0:?}")]
    Answer(String),
}

/// A running kernel's frame: its function, where the function starts in the
/// running kernel, the return address, and the module it is in.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub function: &'a str,
    pub function_start: u64,
    pub address: u64,
    pub module: Option<&'a str>,
}

/// One function at a code address: the function and the line in it.
#[derive(Debug, Clone, PartialEq)]
pub struct InlinedAt {
    pub function: String,
    /// The source file as the debug info names it (build-directory prefixes and all).
    pub file: String,
    pub line: u32,
}

/// Function symbols of one debug object, by name: their link addresses.
struct Symbols {
    path: PathBuf,
    /// A module: addresses are offsets in .text.
    relocatable: bool,
    by_name: HashMap<String, Vec<u64>>,
}

impl Symbols {
    /// Function symbols of `path`; in a relocatable module only those of
    /// .text, the section addr2line is pointed at.
    fn read(path: &Path) -> Result<Symbols, LinesError> {
        let file = std::fs::File::open(path).map_err(|source| LinesError::Read { path: path.into(), source })?;
        // SAFETY: the debug object is only read, and nothing here writes it.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| LinesError::Read { path: path.into(), source })?;
        let elf = object::File::parse(&*map).map_err(|source| LinesError::NotElf { path: path.into(), source })?;
        if elf.section_by_name(".debug_info").is_none() {
            return Err(LinesError::NoDwarf(path.into()));
        }
        let relocatable = elf.kind() == object::ObjectKind::Relocatable;
        let text = elf.section_by_name(".text").map(|s| s.index());
        let mut by_name: HashMap<String, Vec<u64>> = HashMap::new();
        for symbol in elf.symbols().filter(|s| s.kind() == object::SymbolKind::Text) {
            if relocatable && symbol.section_index() != text {
                continue;
            }
            if let Ok(name) = symbol.name() {
                by_name.entry(name.to_owned()).or_default().push(symbol.address());
            }
        }
        Ok(Symbols { path: path.to_owned(), relocatable, by_name })
    }

    /// The link address of a function with a single definition.
    fn unique(&self, name: &str) -> Option<u64> {
        match self.by_name.get(name).map(Vec::as_slice) {
            Some([one]) => Some(*one),
            _ => None,
        }
    }
}

/// The kernel's debug info: the vmlinux, and where the modules' are.
pub struct DebugInfo {
    vmlinux: Symbols,
    /// Module name (`_` for `-`) → its debug object, under the modules directory.
    module_paths: HashMap<String, PathBuf>,
    modules: HashMap<String, Option<Symbols>>,
}

impl DebugInfo {
    /// `vmlinux` with DWARF; `modules`, a directory searched for the modules'
    /// debug objects (`<name>.ko`, e.g. `/usr/lib/debug/lib/modules/<release>`).
    pub fn open(vmlinux: &Path, modules: Option<&Path>) -> Result<DebugInfo, LinesError> {
        let mut module_paths = HashMap::new();
        if let Some(dir) = modules {
            let mut pending = vec![dir.to_owned()];
            while let Some(dir) = pending.pop() {
                let entries = std::fs::read_dir(&dir).map_err(|source| LinesError::Read { path: dir.clone(), source })?;
                for path in entries.flatten().map(|e| e.path()) {
                    if path.is_dir() {
                        pending.push(path);
                    } else if let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_suffix(".ko")) {
                        module_paths.insert(name.replace('-', "_"), path.clone());
                    }
                }
            }
        }
        Ok(DebugInfo { vmlinux: Symbols::read(vmlinux)?, module_paths, modules: HashMap::new() })
    }

    /// Where the call at each return address was made, innermost inlined
    /// function first; None for a frame the debug info does not cover (a
    /// module without a debug object, a function name it does not know, or a
    /// line table that names another function).
    pub fn locate(&mut self, frames: &[Frame]) -> Result<Vec<Option<Vec<InlinedAt>>>, LinesError> {
        let slide = self.kernel_slide(frames);
        let mut queries: Vec<(usize, PathBuf, u64, bool)> = vec![];
        for (i, frame) in frames.iter().enumerate() {
            let offset = frame.address - frame.function_start;
            let target = match frame.module {
                None => slide.map(|s| (&self.vmlinux, frame.address.wrapping_sub(s))),
                Some(module) => self.module(module)?.and_then(|m| Some((m, m.unique(frame.function)? + offset))),
            };
            if let Some((object, linked)) = target {
                // A return address is the instruction after the call.
                queries.push((i, object.path.clone(), linked.saturating_sub(1), object.relocatable));
            }
        }
        let answers = symbolize(&queries.iter().map(|(_, o, a, r)| (o.as_path(), *a, *r)).collect::<Vec<_>>())?;
        let mut out = vec![None; frames.len()];
        for ((i, _, _, _), chain) in queries.iter().zip(answers) {
            // The outermost function at the address must be the frame's own,
            // or the address was moved to the wrong place.
            let own = chain.last().is_some_and(|f| same_function(&f.function, frames[*i].function));
            if own {
                out[*i] = Some(chain);
            }
        }
        Ok(out)
    }

    /// The running kernel's offset from the vmlinux's link addresses (KASLR):
    /// the most common difference over functions defined once.
    fn kernel_slide(&self, frames: &[Frame]) -> Option<u64> {
        let mut votes: HashMap<u64, usize> = HashMap::new();
        for frame in frames.iter().filter(|f| f.module.is_none()) {
            if let Some(linked) = self.vmlinux.unique(frame.function) {
                *votes.entry(frame.function_start.wrapping_sub(linked)).or_default() += 1;
            }
        }
        votes.into_iter().max_by_key(|&(slide, n)| (n, std::cmp::Reverse(slide))).map(|(slide, _)| slide)
    }

    fn module(&mut self, name: &str) -> Result<Option<&Symbols>, LinesError> {
        let key = name.replace('-', "_");
        if !self.modules.contains_key(&key) {
            let symbols = match self.module_paths.get(&key) {
                Some(path) => Some(Symbols::read(path)?),
                None => None,
            };
            self.modules.insert(key.clone(), symbols);
        }
        Ok(self.modules[&key].as_ref())
    }
}

/// `d_alloc_parallel.cold` is `d_alloc_parallel`; `__mutex_lock.constprop.0` is `__mutex_lock`.
fn same_function(a: &str, b: &str) -> bool {
    let base = |s: &str| s.split('.').next().unwrap_or(s).to_owned();
    base(a) == base(b)
}

/// Asks addr2line for every (object, address), one run per object; one
/// chain per query, empty where the debug info knows no line. Modules'
/// addresses are offsets in their .text: in a relocatable object every
/// section starts at 0, and only addr2line's `-j` keeps them apart
/// (llvm-symbolizer mixes up functions of different sections there).
fn symbolize(queries: &[(&Path, u64, bool)]) -> Result<Vec<Vec<InlinedAt>>, LinesError> {
    let mut answers = vec![vec![]; queries.len()];
    let mut by_object: HashMap<(&Path, bool), Vec<usize>> = HashMap::new();
    for (i, (object, _, relocatable)) in queries.iter().enumerate() {
        by_object.entry((object, *relocatable)).or_default().push(i);
    }
    for ((object, relocatable), indices) in by_object {
        let addresses: Vec<u64> = indices.iter().map(|&i| queries[i].1).collect();
        for (i, chain) in indices.into_iter().zip(addr2line(object, relocatable, &addresses)?) {
            answers[i] = chain;
        }
    }
    Ok(answers)
}

fn addr2line(object: &Path, relocatable: bool, addresses: &[u64]) -> Result<Vec<Vec<InlinedAt>>, LinesError> {
    let mut command = Command::new("addr2line");
    command.args(["--addresses", "--functions", "--inlines", "-e"]).arg(object);
    if relocatable {
        command.args(["-j", ".text"]);
    }
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().map_err(LinesError::Symbolizer)?;
    let input: String = addresses.iter().map(|a| format!("{a:#x}\n")).collect();
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Written from a thread: the answers fill the other pipe meanwhile.
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    // Each answer: the address, then a function line and a file:line line
    // per function, innermost first.
    let mut chains: Vec<Vec<InlinedAt>> = vec![];
    let mut function: Option<String> = None;
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line.map_err(LinesError::Symbolizer)?;
        if line.starts_with("0x") && function.is_none() {
            chains.push(vec![]);
        } else if let Some(name) = function.take() {
            let chain = chains.last_mut().ok_or_else(|| LinesError::Answer(line.clone()))?;
            if let Some((file, number)) = source_line(&line).filter(|_| name != "??") {
                chain.push(InlinedAt { function: name, file, line: number });
            }
        } else {
            function = Some(line);
        }
    }
    writer.join().expect("writer thread").map_err(LinesError::Symbolizer)?;
    child.wait().map_err(LinesError::Symbolizer)?;
    if chains.len() != addresses.len() {
        return Err(LinesError::Answer(format!("{} answers to {} addresses from {}", chains.len(), addresses.len(), object.display())));
    }
    Ok(chains)
}

/// `fs/pipe.c:102 (discriminator 3)` → (`fs/pipe.c`, 102); None for `??:0`.
fn source_line(text: &str) -> Option<(String, u32)> {
    let text = text.split(" (discriminator").next()?;
    let (file, line) = text.rsplit_once(':')?;
    let line: u32 = line.parse().ok().filter(|&l| l > 0)?;
    (file != "??").then(|| (file.to_owned(), line))
}

/// The file of the source tree at `root` that a debug-info file name means:
/// the longest tail of its path that exists in the tree
/// (`debian/build/build_amd64_none_amd64/fs/pipe.c` → `fs/pipe.c`).
pub fn in_tree(root: &Path, file: &str) -> Option<String> {
    let parts: Vec<&str> = file.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    (0..parts.len()).map(|i| parts[i..].join("/")).find(|tail| root.join(tail).is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_info_paths_are_found_in_the_tree() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("fs")).unwrap();
        std::fs::write(root.path().join("fs/pipe.c"), "").unwrap();
        assert_eq!(in_tree(root.path(), "debian/build/build_amd64_none_amd64/fs/pipe.c").as_deref(), Some("fs/pipe.c"));
        assert_eq!(in_tree(root.path(), "/build/linux/./fs/pipe.c").as_deref(), Some("fs/pipe.c"));
        assert_eq!(in_tree(root.path(), "fs/super.c"), None);
    }

    /// A module-like object built with clang: `spin_lock` inlined into
    /// `set_fs_pwd`, and the return address of its call.
    fn built_object(dir: &Path) -> (PathBuf, u64) {
        let source = dir.join("lockuser.c");
        std::fs::write(
            &source,
            "void _raw_spin_lock(int *lock);\nint counter;\nint the_lock;\n\n\
             static inline __attribute__((always_inline)) void spin_lock(int *lock)\n{\n\t_raw_spin_lock(lock);\n}\n\n\
             void set_fs_pwd(void)\n{\n\tspin_lock(&the_lock);\n\tcounter++;\n}\n",
        )
        .unwrap();
        let object = dir.join("lockuser.ko");
        let built = Command::new("clang").args(["-g", "-O2", "-c"]).arg(&source).arg("-o").arg(&object).status().unwrap();
        assert!(built.success());
        let listing = Command::new("llvm-objdump").args(["-d", "--no-show-raw-insn"]).arg(&object).output().unwrap();
        let listing = String::from_utf8(listing.stdout).unwrap();
        let lines: Vec<&str> = listing.lines().collect();
        let call = lines.iter().position(|l| l.contains("call")).expect("a call in set_fs_pwd");
        let after = lines[call + 1].split(':').next().unwrap().trim();
        (object, u64::from_str_radix(after, 16).unwrap())
    }

    #[test]
    fn a_return_address_gives_the_line_through_inlined_functions() {
        let dir = tempfile::tempdir().unwrap();
        let (object, return_offset) = built_object(dir.path());
        // Loaded at some address, as a module or a KASLR kernel would be.
        let start = 0xffff_ffff_c001_0000;
        let frame = Frame { function: "set_fs_pwd", function_start: start, address: start + return_offset, module: None };
        let expected = vec![
            InlinedAt { function: "spin_lock".into(), file: object.with_extension("c").display().to_string(), line: 7 },
            InlinedAt { function: "set_fs_pwd".into(), file: object.with_extension("c").display().to_string(), line: 12 },
        ];

        let mut as_kernel = DebugInfo::open(&object, None).unwrap();
        assert_eq!(as_kernel.locate(&[frame]).unwrap(), vec![Some(expected.clone())]);

        let mut as_module = DebugInfo::open(&object, Some(dir.path())).unwrap();
        let in_module = Frame { module: Some("lockuser"), ..frame };
        let unknown_module = Frame { module: Some("ext4"), ..frame };
        let misnamed = Frame { function: "set_fs_root", ..frame };
        assert_eq!(as_module.locate(&[in_module, unknown_module, misnamed]).unwrap(), vec![Some(expected), None, None]);
    }

    #[test]
    fn an_object_without_dwarf_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (object, _) = built_object(dir.path());
        let stripped = dir.path().join("stripped");
        assert!(Command::new("llvm-objcopy").arg("--strip-debug").arg(&object).arg(&stripped).status().unwrap().success());
        assert!(matches!(DebugInfo::open(&stripped, None), Err(LinesError::NoDwarf(_))));
        assert!(matches!(DebugInfo::open(&dir.path().join("lockuser.c"), None), Err(LinesError::NotElf { .. })));
    }

    #[test]
    fn addr2line_locations_are_read() {
        assert_eq!(source_line("fs/pipe.c:102 (discriminator 3)"), Some(("fs/pipe.c".into(), 102)));
        assert_eq!(source_line("??:0"), None);
        assert_eq!(source_line("fs/pipe.c:?"), None);
    }

    #[test]
    fn compiler_suffixes_name_the_same_function() {
        assert!(same_function("d_alloc_parallel.cold", "d_alloc_parallel"));
        assert!(!same_function("d_alloc", "d_alloc_parallel"));
    }
}
