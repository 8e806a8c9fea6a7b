//! `lockscope source`: the static analyzer over a kernel source tree.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use lockscope_source::clangd::{ready_tree, Clangd, SourceTree};
use lockscope_source::tree::{self, PrepareOptions};
use lockscope_source::{Resolver, Site};
use lockscope_trace::DebianKernel;

use lockscope_analysis::render::csv_field;

use crate::progress::spinner;
use crate::Format;

#[derive(Subcommand)]
#[command(about = "Map lock acquisitions to source lines and kernel objects with clangd over the kernel source")]
pub enum Source {
    /// Get a kernel tree ready: configure, make prepare, compile_commands.json, clangd's index.
    ///
    /// Without --kernel-src, Debian's linux-source-6.1 (/usr/src/linux-source-6.1.tar.xz)
    /// is extracted into ~/.cache/lockscope/linux-source-6.1; with --kernel
    /// debian-6.12, linux-source-6.12 likewise. Every step is skipped
    /// when its output is already there, so running it again resumes or does
    /// nothing. An existing compile_commands.json is used as it is. Indexing the
    /// defconfig tree takes about 5 minutes on 2 cores for 6.1, well over half
    /// an hour for 6.12; without a complete index, resolution still works
    /// within each call site's own file.
    Prepare(PrepareArgs),
    /// Resolve lock acquisition sites (FILE:LINE, relative to the tree) to the lock they take.
    ///
    /// For each site: the function, the primitive as written, the lock
    /// expression, and where the lock lives: `global` (a variable), `member`
    /// (object = the struct, member = its field, dotted where nested) or
    /// `local`; `reason` says why when it could not be resolved. Locks are
    /// followed through macros, inline helpers returning a lock, local pointers
    /// and wrapper functions.
    ///
    /// Example: lockscope source resolve fs/fs_struct.c:20 kernel/exit.c:224
    Resolve(ResolveArgs),
    /// Every lock member of every struct and union: the lock-to-object map.
    ///
    /// One row per (object, lock): the struct (or typedef name), the lock's
    /// type and its field, dotted through anonymous and embedded structs
    /// (`inode.i_data.i_pages.xa_lock`), with the file and line of the field.
    /// Scans every .c and .h of the tree (all configurations) in seconds.
    Locks(InventoryArgs),
    /// Every global lock definition: DEFINE_SPINLOCK/MUTEX/RWLOCK/…,
    /// DECLARE_RWSEM, DEFINE_PER_CPU of a lock type, and file-scope lock variables.
    Globals(InventoryArgs),
    /// Lock wrappers: functions that take a lock reached through an argument
    /// and return holding it (mmap_write_lock, inode_lock, …).
    ///
    /// Found from clangd's index (run `lockscope source prepare` first): the
    /// callers of every acquisition primitive, then of every wrapper found,
    /// whose lock argument goes through a parameter and which release nothing
    /// reached through it. Stack completion stops at them.
    Wrappers(WrapperArgs),
}

#[derive(clap::Args)]
pub struct WrapperArgs {
    #[command(flatten)]
    tree: TreeArgs,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::Args)]
pub struct InventoryArgs {
    /// The kernel source tree [default: ~/.cache/lockscope/linux-source-6.1].
    #[arg(long, value_name = "DIR")]
    kernel_src: Option<PathBuf>,
    /// Directories (relative to the tree) not to scan; repeatable.
    #[arg(long, value_name = "DIR", default_values_t = ["arch".to_owned(), "tools".to_owned(), "Documentation".to_owned(), "samples".to_owned()])]
    skip: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

#[derive(clap::Args)]
pub struct TreeArgs {
    /// The kernel source tree [default: ~/.cache/lockscope/linux-source-6.1].
    #[arg(long, value_name = "DIR")]
    kernel_src: Option<PathBuf>,
    /// Debian's source of this kernel instead (debian-6.1 or debian-6.12),
    /// extracted into `~/.cache/lockscope/linux-source-<series>`.
    #[arg(long, value_parser = crate::guest::parse_kernel, conflicts_with = "kernel_src")]
    kernel: Option<DebianKernel>,
    /// The clangd binary [default: $LOCKSCOPE_CLANGD, else the one ./setup.sh installs].
    #[arg(long, value_name = "PATH")]
    clangd: Option<PathBuf>,
}

impl TreeArgs {
    pub(crate) fn tree(&self) -> SourceTree {
        let kernel_src = self.kernel_src.clone().or_else(|| self.kernel.map(tree::debian_source_dir));
        SourceTree { kernel_src, clangd: self.clangd.clone() }
    }

    /// The Debian source package the tree is extracted from, unless a tree is given.
    fn debian(&self) -> Option<DebianKernel> {
        match self.kernel_src {
            Some(_) => None,
            None => Some(self.kernel.unwrap_or(DebianKernel::V6_1)),
        }
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.tree().root()
    }
}

#[derive(clap::Args)]
pub struct PrepareArgs {
    #[command(flatten)]
    tree: TreeArgs,
    /// Use this kernel .config instead of the default configuration.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The make target that configures an unconfigured tree.
    #[arg(long, default_value = "x86_64_defconfig")]
    defconfig: String,
    /// Stop after compile_commands.json; build no index.
    #[arg(long)]
    no_index: bool,
}

#[derive(clap::Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    tree: TreeArgs,
    /// Sites as FILE:LINE, FILE relative to the tree.
    #[arg(required = true, value_name = "FILE:LINE")]
    sites: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,
}

pub fn run(command: Source) -> Result<()> {
    match command {
        Source::Prepare(args) => prepare(args),
        Source::Resolve(args) => resolve(args),
        Source::Locks(args) => inventory(args, true),
        Source::Globals(args) => inventory(args, false),
        Source::Wrappers(args) => wrappers(args),
    }
}

fn wrappers(args: WrapperArgs) -> Result<()> {
    let mut clangd = open_tree(&args.tree)?;
    let bar = spinner("{spinner} {elapsed} callers of {msg}");
    let found = lockscope_source::wrappers::find_wrappers(&mut clangd, |callee| bar.set_message(callee.to_owned()))?;
    bar.finish_and_clear();
    clangd.shutdown();
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&found)?),
        Format::Csv => {
            println!("function,calls,lock_expr,parameter,defined_at");
            for w in &found {
                let row = [&w.function, &w.calls, &w.lock_expr, &w.parameter, &format!("{}:{}", w.file, w.line)];
                println!("{}", row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            }
        }
        Format::Table => {
            for w in &found {
                println!("{}  {}({})  {}:{}", w.function, w.calls, w.lock_expr, w.file, w.line);
            }
            eprintln!("{} wrappers", found.len());
        }
    }
    Ok(())
}

fn inventory(args: InventoryArgs, members: bool) -> Result<()> {
    let root = args.kernel_src.unwrap_or_else(tree::default_kernel_src);
    if !root.is_dir() {
        bail!("{}: no such directory (run `lockscope source prepare`, or pass --kernel-src DIR)", root.display());
    }
    let bar = spinner("{spinner} scanning {pos} files {msg}");
    let skip: Vec<&str> = args.skip.iter().map(String::as_str).collect();
    let found = lockscope_source::inventory::scan_tree(&root, &skip, |n| bar.set_position(n as u64))?;
    bar.finish_and_clear();
    let rows: Vec<Vec<String>> = if members {
        found
            .members
            .iter()
            .map(|m| vec![m.object.clone(), m.lock_name.clone(), m.lock_type.name().to_owned(), format!("{}:{}", m.file, m.line)])
            .collect()
    } else {
        found
            .globals
            .iter()
            .map(|g| vec![g.name.clone(), g.lock_type.name().to_owned(), g.defined_by.clone(), format!("{}:{}", g.file, g.line)])
            .collect()
    };
    match args.format {
        Format::Json if members => println!("{}", serde_json::to_string_pretty(&found.members)?),
        Format::Json => println!("{}", serde_json::to_string_pretty(&found.globals)?),
        Format::Csv => {
            println!("{}", if members { "object,lock_name,lock_type,defined_at" } else { "name,lock_type,defined_by,defined_at" });
            for row in rows {
                println!("{}", row.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            }
        }
        Format::Table => {
            for row in &rows {
                println!("{}", row.join("  "));
            }
            let what = if members { "lock members" } else { "global locks" };
            eprintln!("{} {what} in {} files", rows.len(), found.files_scanned);
        }
    }
    Ok(())
}

fn prepare(args: PrepareArgs) -> Result<()> {
    let bar = spinner("{spinner} {elapsed} {msg}");
    let options = PrepareOptions { config: args.config, defconfig: args.defconfig, ..Default::default() };
    let start = Instant::now();
    let ready = ready_tree(&args.tree.root(), args.tree.debian(), &options, args.tree.clangd.as_deref(), !args.no_index, |step| {
        bar.set_message(step.to_owned())
    })?;
    bar.finish_and_clear();
    eprintln!("{}: {} files in compile_commands.json", ready.prepared.root.display(), ready.prepared.files);
    if let Some(size) = ready.index_bytes {
        eprintln!("ready in {:.0} s; clangd's index {:.0} MB", start.elapsed().as_secs_f64(), size as f64 / 1e6);
    }
    Ok(())
}

fn parse_site(text: &str) -> Result<(PathBuf, u32)> {
    let Some((file, line)) = text.rsplit_once(':') else { bail!("{text}: expected FILE:LINE") };
    let line: u32 = line.parse().with_context(|| format!("{text}: the line must be a number"))?;
    if line == 0 {
        bail!("{text}: lines count from 1");
    }
    Ok((PathBuf::from(file), line))
}

/// A clangd session over a prepared tree, with a spinner while its index loads.
pub(crate) fn open_tree(args: &TreeArgs) -> Result<Clangd> {
    let bar = spinner("{spinner} loading clangd's index {msg}");
    let clangd = args.tree().open(|active| bar.set_message(active.join(", ")))?;
    bar.finish_and_clear();
    Ok(clangd)
}

fn resolve(args: ResolveArgs) -> Result<()> {
    let sites: Vec<(PathBuf, u32)> = args.sites.iter().map(|s| parse_site(s)).collect::<Result<_>>()?;
    let mut clangd = open_tree(&args.tree)?;
    let bar = spinner("{spinner} resolving {pos}/{len} {msg}");
    bar.set_length(sites.len() as u64);
    let mut resolved: Vec<Site> = vec![];
    let mut failure = None;
    for (file, line) in &sites {
        bar.set_message(format!("{}:{line}", file.display()));
        match Resolver::new(&mut clangd).resolve(file, *line) {
            Ok(found) => resolved.extend(found),
            // Keep what was resolved; report what stopped the rest.
            Err(e) => {
                failure = Some(anyhow::Error::from(e).context(format!("resolving {}:{line}", file.display())));
                break;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    clangd.shutdown();
    print_sites(&resolved, args.format)?;
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn print_sites(sites: &[Site], format: Format) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(sites)?),
        Format::Csv => {
            println!("file,line,function,primitive,lock_expr,scope,object,member,variable,lock_type,defined_at,reason");
            for s in sites {
                println!("{}", site_fields(s).iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            }
        }
        Format::Table => {
            for s in sites {
                let (Some(function), Some(primitive)) = (&s.function, &s.primitive) else {
                    println!("{}:{} → unresolved: {}", s.file, s.line, s.reason.as_deref().unwrap_or(""));
                    continue;
                };
                let lock = match s.lock_name() {
                    Some(name) => format!(
                        "{} {name} ({}, defined at {})",
                        s.scope.name(),
                        s.lock_type.map_or("?", |t| t.name()),
                        s.defined_at.as_deref().unwrap_or("?")
                    ),
                    None => format!("unresolved: {}", s.reason.as_deref().unwrap_or("")),
                };
                let via = if s.via.is_empty() { String::new() } else { format!(" via {}", s.via.join(" → ")) };
                let lock_expr = s.lock_expr.as_deref().unwrap_or("");
                println!("{}:{} in {function}: {primitive}({lock_expr}){via} → {lock}", s.file, s.line);
            }
        }
    }
    Ok(())
}

fn site_fields(s: &Site) -> [String; 12] {
    let opt = |o: &Option<String>| o.clone().unwrap_or_default();
    [
        s.file.clone(),
        s.line.to_string(),
        opt(&s.function),
        opt(&s.primitive),
        opt(&s.lock_expr),
        s.scope.name().to_owned(),
        opt(&s.object),
        opt(&s.member),
        opt(&s.variable),
        s.lock_type.map(|t| t.name().to_owned()).unwrap_or_default(),
        opt(&s.defined_at),
        opt(&s.reason),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_are_file_colon_line() {
        assert_eq!(parse_site("fs/inode.c:42").unwrap(), (PathBuf::from("fs/inode.c"), 42));
        assert!(parse_site("fs/inode.c").is_err());
        assert!(parse_site("fs/inode.c:x").is_err());
        assert!(parse_site("fs/inode.c:0").is_err());
    }
}
