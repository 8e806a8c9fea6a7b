//! Preparing a source tree for clangd: configure and `make prepare` a kernel
//! tree, then derive compile_commands.json from a dry run of its build.
//! Every step checks for its own output first, so preparing is idempotent and
//! an interrupted run resumes where it stopped.

use std::path::{Path, PathBuf};
use std::process::Command;

use lockscope_trace::DebianKernel;
use serde::Serialize;

pub const COMPILE_COMMANDS: &str = "compile_commands.json";

/// Flags clangd does not understand or that turn warnings into parse failures.
const DROPPED_FLAGS: [&str; 2] = ["-Werror", "-enable-trivial-auto-var-init-zero-knowing-it-will-be-removed-from-clang"];

#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    #[error("{}: no such directory", .0.display())]
    Missing(PathBuf),
    #[error("{}: not a source tree lockscope can prepare (no Makefile and no compile_commands.json)", .0.display())]
    NotATree(PathBuf),
    #[error("`{command}` failed in {}: {tail}", dir.display())]
    Make { command: String, dir: PathBuf, tail: String },
    #[error("cannot run {program}")]
    Spawn { program: String, source: std::io::Error },
    #[error("the dry run of {} compiled no C file: is this a kernel tree?", .0.display())]
    NoCommands(PathBuf),
    #[error("{}: not found; install it with `apt-get install {package}` (./setup.sh does) or pass --kernel-src DIR", tarball.display())]
    NoDebianSource { tarball: PathBuf, package: String },
    #[error("{what}")]
    Io { what: String, source: std::io::Error },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TreeError {
    let what = what.into();
    move |source| TreeError::Io { what, source }
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct CompileCommand {
    pub directory: String,
    pub arguments: Vec<String>,
    pub file: String,
}

#[derive(Debug, Clone)]
pub struct PrepareOptions {
    /// A kernel .config to use instead of the default configuration.
    pub config: Option<PathBuf>,
    /// `make` target that configures an unconfigured kernel tree.
    pub defconfig: String,
    /// The C compiler the dry run names (clangd reads its flags).
    pub cc: String,
    pub jobs: usize,
}

impl Default for PrepareOptions {
    fn default() -> Self {
        PrepareOptions {
            config: None,
            defconfig: "x86_64_defconfig".into(),
            cc: "clang".into(),
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// What `prepare` did, step by step.
#[derive(Debug, Default, Serialize)]
pub struct Prepared {
    pub root: PathBuf,
    pub kernel: bool,
    pub configured: bool,
    pub made_prepare: bool,
    pub compile_commands_written: bool,
    pub files: usize,
}

/// Where `--kernel-src` defaults to: Debian's 6.1 source (the paper's kernel)
/// extracted into lockscope's cache.
pub fn default_kernel_src() -> PathBuf {
    debian_source_dir(DebianKernel::V6_1)
}

/// Where a Debian kernel's source is extracted: lockscope's cache.
pub fn debian_source_dir(kernel: DebianKernel) -> PathBuf {
    lockscope_trace::cache_dir().join(kernel.source_package())
}

/// Extracts `/usr/src/linux-source-<series>.tar.xz` (package `linux-source-<series>`)
/// to `target` unless already there; through a staging directory, so an
/// interrupted extraction is never mistaken for a tree.
pub fn extract_debian_source(target: &Path, kernel: DebianKernel) -> Result<(), TreeError> {
    let package = kernel.source_package();
    let parent = target.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    let _lock = lock_file(&parent.join(format!(".{package}.lock")))?;
    if target.join("Makefile").is_file() {
        return Ok(());
    }
    let tarball = PathBuf::from(format!("/usr/src/{package}.tar.xz"));
    if !tarball.is_file() {
        return Err(TreeError::NoDebianSource { tarball, package });
    }
    let staging = parent.join(format!(".{package}.partial"));
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging).map_err(io(format!("creating {}", staging.display())))?;
    let status = Command::new("tar")
        .arg("xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&staging)
        .status()
        .map_err(|source| TreeError::Spawn { program: "tar".into(), source })?;
    if !status.success() {
        return Err(TreeError::Make { command: format!("tar xf {}", tarball.display()), dir: staging, tail: status.to_string() });
    }
    std::fs::rename(staging.join(&package), target).map_err(io(format!("moving the tree to {}", target.display())))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(())
}

/// Written into a tree when clangd's background index of it is complete.
const INDEXED: &str = ".cache/clangd/lockscope-indexed";

/// Whether clangd's index of the tree is complete (`lockscope source prepare`).
pub fn is_indexed(root: &Path) -> bool {
    root.join(INDEXED).is_file()
}

pub(crate) fn mark_indexed(root: &Path) -> Result<(), TreeError> {
    std::fs::write(root.join(INDEXED), "").map_err(io(format!("marking {} indexed", root.display())))
}

/// Holds an exclusive lock on `path` (created if missing) until dropped:
/// two lockscope processes never extract, configure or index one tree at once.
fn lock_file(path: &Path) -> Result<std::fs::File, TreeError> {
    lockscope_trace::lock_file(path).map_err(io(format!("locking {}", path.display())))
}

/// The lock on a tree's preparation and index.
pub fn lock_tree(root: &Path) -> Result<std::fs::File, TreeError> {
    lock_file(&root.join(".lockscope.lock"))
}

/// A kernel tree has Kconfig and the kbuild scripts next to its Makefile.
pub fn is_kernel_tree(root: &Path) -> bool {
    root.join("Makefile").is_file() && root.join("Kconfig").is_file() && root.join("scripts").is_dir()
}

/// Makes `root` ready for clangd; `step` is told what is about to run.
pub fn prepare(root: &Path, options: &PrepareOptions, mut step: impl FnMut(&str)) -> Result<Prepared, TreeError> {
    if !root.is_dir() {
        return Err(TreeError::Missing(root.to_owned()));
    }
    let root = root.canonicalize().map_err(io(format!("resolving {}", root.display())))?;
    let _lock = lock_tree(&root)?;
    let mut done = Prepared { root: root.clone(), kernel: is_kernel_tree(&root), ..Default::default() };
    let commands_path = root.join(COMPILE_COMMANDS);
    if commands_path.is_file() {
        done.files = read_compile_commands(&root)?.len();
        return Ok(done);
    }
    if !root.join("Makefile").is_file() {
        return Err(TreeError::NotATree(root));
    }
    let cc = format!("CC={}", options.cc);
    if done.kernel {
        if let Some(config) = &options.config {
            step("installing the given .config");
            std::fs::copy(config, root.join(".config")).map_err(io(format!("copying {}", config.display())))?;
            make(&root, &[&cc, "olddefconfig"])?;
            done.configured = true;
        } else if !root.join(".config").is_file() {
            step(&format!("configuring ({})", options.defconfig));
            make(&root, &[&cc, &options.defconfig])?;
            done.configured = true;
        }
        if !root.join("include/generated/autoconf.h").is_file() || done.configured {
            step("make prepare");
            make(&root, &[&cc, &format!("-j{}", options.jobs), "prepare"])?;
            done.made_prepare = true;
        }
    }
    step("listing compile commands (make -n)");
    let dry_run = make(&root, &[&cc, "-n", "-k"])?;
    let mut commands = commands_from_dry_run(&dry_run, &root, &options.cc);
    if commands.is_empty() {
        return Err(TreeError::NoCommands(root));
    }
    let included = included_sources(&root, &commands);
    commands.extend(included);
    write_compile_commands(&root, &commands)?;
    done.compile_commands_written = true;
    done.files = commands.len();
    Ok(done)
}

/// Runs make in `dir`; its stdout. `-k` dry runs exit non-zero on targets that
/// would fail to build: their output is still the listing wanted.
fn make(dir: &Path, args: &[&str]) -> Result<String, TreeError> {
    let output =
        Command::new("make").args(args).current_dir(dir).output().map_err(|source| TreeError::Spawn { program: "make".into(), source })?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() && !args.contains(&"-n") {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
        return Err(TreeError::Make {
            command: format!("make {}", args.join(" ")),
            dir: dir.to_owned(),
            tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
        });
    }
    Ok(stdout)
}

/// Every C compilation in a dry run's output, one per source file.
pub fn commands_from_dry_run(output: &str, root: &Path, cc: &str) -> Vec<CompileCommand> {
    let cc_name = Path::new(cc).file_name().and_then(|n| n.to_str()).unwrap_or(cc).to_owned();
    let mut seen = std::collections::HashSet::new();
    let mut commands = vec![];
    for segment in output.lines().flat_map(shell_segments) {
        let Some(words) = shlex::split(&segment) else { continue };
        let Some(start) = words.iter().position(|w| Path::new(w).file_name().and_then(|n| n.to_str()) == Some(&cc_name)) else {
            continue;
        };
        let words = &words[start..];
        if !words.iter().any(|w| w == "-c") {
            continue;
        }
        let Some(file) = words.iter().rev().find(|w| w.ends_with(".c") && !w.starts_with('-')) else { continue };
        if !seen.insert(file.clone()) {
            continue;
        }
        let arguments = words.iter().filter(|w| !DROPPED_FLAGS.contains(&w.as_str())).cloned().collect();
        commands.push(CompileCommand { directory: root.display().to_string(), arguments, file: file.clone() });
    }
    commands
}

/// Compile commands for .c files that are not compiled alone but #included
/// by one that is (kernel/sched/wait.c by build_utility.c): the includer's
/// flags, plus `-include` of each header it includes first, so clangd parses
/// them as the build does instead of failing on missing declarations.
pub fn included_sources(root: &Path, commands: &[CompileCommand]) -> Vec<CompileCommand> {
    let known: std::collections::HashSet<&str> = commands.iter().map(|c| c.file.as_str()).collect();
    let mut out = vec![];
    for command in commands {
        let Ok(text) = std::fs::read_to_string(root.join(&command.file)) else { continue };
        let dir = Path::new(&command.file).parent().unwrap_or(Path::new(""));
        let mut headers: Vec<String> = vec![];
        let mut conditional_depth = 0;
        for line in text.lines() {
            let line = line.trim_start();
            let Some(directive) = line.strip_prefix('#').map(str::trim_start) else { continue };
            if directive.starts_with("if") {
                conditional_depth += 1;
            } else if directive.starts_with("endif") {
                conditional_depth -= 1;
            }
            let Some(target) = directive.strip_prefix("include").map(str::trim) else { continue };
            if conditional_depth > 0 {
                continue; // configuration-dependent: not safe to force in
            }
            if let Some(quoted) = target.strip_prefix('"').and_then(|t| t.split('"').next()) {
                let path = dir.join(quoted);
                let relative = path.display().to_string();
                if quoted.ends_with(".c") {
                    if !known.contains(relative.as_str()) && root.join(&path).is_file() {
                        out.push(with_prelude(command, &relative, &headers));
                    }
                } else {
                    headers.push(root.join(&path).display().to_string());
                }
            } else if let Some(angled) = target.strip_prefix('<').and_then(|t| t.split('>').next()) {
                headers.push(angled.to_owned());
            }
        }
    }
    out
}

/// `command` compiling `file` instead, with `headers` included first.
fn with_prelude(command: &CompileCommand, file: &str, headers: &[String]) -> CompileCommand {
    let mut arguments: Vec<String> = command.arguments.iter().filter(|a| **a != command.file).cloned().collect();
    for header in headers {
        arguments.push("-include".into());
        arguments.push(header.clone());
    }
    arguments.push(file.to_owned());
    CompileCommand { directory: command.directory.clone(), arguments, file: file.to_owned() }
}

/// Splits a shell line at `;` and `&&` outside quotes.
fn shell_segments(line: &str) -> Vec<String> {
    let mut segments = vec![];
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, ';') => {
                segments.push(std::mem::take(&mut current));
                continue;
            }
            (None, '&') if chars.peek() == Some(&'&') => {
                chars.next();
                segments.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    segments.push(current);
    segments
}

fn write_compile_commands(root: &Path, commands: &[CompileCommand]) -> Result<(), TreeError> {
    let staging = root.join(format!(".{COMPILE_COMMANDS}.partial"));
    let json = serde_json::to_vec_pretty(commands).expect("compile commands serialize");
    std::fs::write(&staging, json).map_err(io(format!("writing {}", staging.display())))?;
    std::fs::rename(&staging, root.join(COMPILE_COMMANDS)).map_err(io("renaming compile_commands.json into place"))
}

pub fn read_compile_commands(root: &Path) -> Result<Vec<CompileCommand>, TreeError> {
    let path = root.join(COMPILE_COMMANDS);
    let text = std::fs::read(&path).map_err(io(format!("reading {}", path.display())))?;
    serde_json::from_slice(&text).map_err(|e| TreeError::Io {
        what: format!("parsing {}", path.display()),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn included_c_files_get_their_includers_flags_and_headers() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("kernel/sched")).unwrap();
        std::fs::write(
            root.path().join("kernel/sched/build.c"),
            "#include <linux/wait.h>\n#include \"sched.h\"\n#ifdef CONFIG_X\n#include \"maybe.h\"\n#include \"optional.c\"\n#endif\n#include \"wait.c\"\n",
        )
        .unwrap();
        std::fs::write(root.path().join("kernel/sched/wait.c"), "").unwrap();
        std::fs::write(root.path().join("kernel/sched/optional.c"), "").unwrap();
        let build = CompileCommand {
            directory: root.path().display().to_string(),
            arguments: vec!["clang".into(), "-DX".into(), "-c".into(), "kernel/sched/build.c".into()],
            file: "kernel/sched/build.c".into(),
        };
        let included = included_sources(root.path(), &[build]);
        assert_eq!(included.len(), 1, "conditional includes are left alone: {included:?}");
        let sched_h = root.path().join("kernel/sched/sched.h").display().to_string();
        assert_eq!(included[0].file, "kernel/sched/wait.c");
        assert_eq!(
            included[0].arguments,
            ["clang", "-DX", "-c", "-include", "linux/wait.h", "-include", sched_h.as_str(), "kernel/sched/wait.c"]
        );
    }

    #[test]
    fn kernel_dry_run_lines_become_compile_commands() {
        let output = r#"  clang -Wp,-MMD,fs/.inode.o.d -nostdinc -Werror -DKBUILD_MODFILE='"fs/inode"' -DKBUILD_BASENAME='"inode"' -c -o fs/inode.o fs/inode.c  ; ./tools/objtool/objtool --hacks=jump_label fs/inode.o
set -e; echo '  CC      fs/namei.o'; clang -nostdinc -c -o fs/namei.o fs/namei.c
clang -E -o foo.i foo.c
  clang -nostdinc -c -o fs/inode.o fs/inode.c"#;
        let commands = commands_from_dry_run(output, Path::new("/src"), "clang");
        let files: Vec<&str> = commands.iter().map(|c| c.file.as_str()).collect();
        assert_eq!(files, ["fs/inode.c", "fs/namei.c"]);
        assert!(commands[0].arguments.contains(&r#"-DKBUILD_MODFILE="fs/inode""#.to_owned()));
        assert!(!commands[0].arguments.iter().any(|a| a == "-Werror" || a.contains("objtool")));
        assert_eq!(commands[0].arguments[0], "clang");
    }
}
