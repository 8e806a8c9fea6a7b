//! Kernel symbols from `/proc/kallsyms`: resolving stack frames to
//! `function+offset` and lock addresses to the global variables that hold them,
//! and the snapshot of just the symbols a trace needs.

use std::collections::BTreeSet;

use crate::model::{Frame, Symbol, SymbolKind};

#[derive(Debug, thiserror::Error)]
pub enum KallsymsError {
    #[error("reading /proc/kallsyms: {0}")]
    Io(#[from] std::io::Error),
    #[error("/proc/kallsyms shows no addresses (kernel.kptr_restrict hides them): run as root, or set kernel.kptr_restrict=0")]
    Restricted,
}

/// Below this many data symbols in the kernel image, kallsyms was built
/// without CONFIG_KALLSYMS_ALL (a handful of section markers remain).
const KALLSYMS_ALL_MIN_DATA: usize = 1000;

const LAST_SYMBOL_SIZE: u64 = 4096;

/// Where x86-64 maps the kernel image, with the modules above it
/// (`__START_KERNEL_map`): no heap, per-CPU or stack object lies here.
const KERNEL_IMAGE_START: u64 = 0xffff_ffff_8000_0000;

/// Whether `addr` is in the kernel image or a module: a lock there is a
/// global (or a member of one), named or not by kallsyms.
pub fn in_kernel_image(addr: u64) -> bool {
    addr >= KERNEL_IMAGE_START
}

/// Symbols sorted by address.
#[derive(Clone, Debug, Default)]
pub struct SymbolTable {
    symbols: Vec<Symbol>,
}

impl SymbolTable {
    /// The running kernel's symbols.
    pub fn load() -> Result<Self, KallsymsError> {
        Self::parse(&std::fs::read_to_string("/proc/kallsyms")?)
    }

    /// Parses kallsyms text: `ADDR TYPE NAME [MODULE]` per line.
    pub fn parse(text: &str) -> Result<Self, KallsymsError> {
        let mut symbols = Vec::new();
        let mut any_address = false;
        for line in text.lines() {
            let Some((addr, ty, name, module)) = fields(line) else { continue };
            any_address |= addr != 0;
            let kind = match ty {
                "t" | "T" | "w" | "W" => SymbolKind::Text,
                "d" | "D" | "b" | "B" | "r" | "R" => SymbolKind::Data,
                _ => continue, // absolute, undefined, ...
            };
            let module = module.map(|m| m.trim_matches(|c| c == '[' || c == ']').to_owned());
            symbols.push(Symbol { addr, size: 0, name: name.to_owned(), module, kind });
        }
        if !symbols.is_empty() && !any_address {
            return Err(KallsymsError::Restricted);
        }
        symbols.sort_by_key(|s| s.addr);
        // A symbol extends to the next higher address; aliases (several names
        // at one address) share a size; the last symbol gets a page.
        let (mut next_addr, mut next_size) = (u64::MAX, 0);
        for s in symbols.iter_mut().rev() {
            if s.addr < next_addr {
                s.size = if next_addr == u64::MAX { LAST_SYMBOL_SIZE } else { next_addr - s.addr };
                (next_addr, next_size) = (s.addr, s.size);
            } else {
                s.size = next_size;
            }
        }
        Ok(SymbolTable { symbols })
    }

    /// A table from a trace's snapshot (sizes already known).
    pub fn from_snapshot(mut symbols: Vec<Symbol>) -> Self {
        symbols.sort_by_key(|s| s.addr);
        SymbolTable { symbols }
    }

    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn is_empty(&self) -> bool {
        self.symbols.is_empty()
    }

    /// Whether data symbols are listed, i.e. global locks can be named.
    pub fn has_data_symbols(&self) -> bool {
        self.symbols.iter().filter(|s| s.kind == SymbolKind::Data && s.module.is_none()).count() >= KALLSYMS_ALL_MIN_DATA
    }

    /// The symbol containing `addr`, and the offset into it.
    pub fn lookup(&self, addr: u64) -> Option<(&Symbol, u64)> {
        let idx = self.symbols.partition_point(|s| s.addr <= addr).checked_sub(1)?;
        let sym = &self.symbols[idx];
        let off = addr - sym.addr;
        (off < sym.size.max(1)).then_some((sym, off))
    }

    /// The address of the symbol `name`, if the table has it.
    pub fn address_of(&self, name: &str) -> Option<u64> {
        self.symbols.iter().find(|s| s.name == name).map(|s| s.addr)
    }

    /// The global (data symbol) holding `addr`, if kallsyms lists it.
    pub fn data_symbol(&self, addr: u64) -> Option<(&Symbol, u64)> {
        self.lookup(addr).filter(|(s, _)| s.kind == SymbolKind::Data)
    }

    /// The frame at `addr`: its function and offset, or only the address when unknown.
    pub fn frame(&self, addr: u64) -> Frame {
        match self.lookup(addr) {
            Some((s, offset)) => Frame { addr, function: Some((s.name.clone(), offset)), module: s.module.clone() },
            None => Frame { addr, function: None, module: None },
        }
    }

    /// A stack's frames, symbolized, innermost first.
    pub fn frames(&self, addrs: &[u64]) -> Vec<Frame> {
        addrs.iter().map(|&a| self.frame(a)).collect()
    }

    /// The symbols needed to resolve `addrs`: what a trace keeps.
    pub fn snapshot(&self, addrs: impl IntoIterator<Item = u64>) -> Vec<Symbol> {
        let mut wanted = BTreeSet::new();
        for a in addrs {
            if let Some(idx) = self.symbols.partition_point(|s| s.addr <= a).checked_sub(1) {
                if self.lookup(a).is_some() {
                    wanted.insert(idx);
                }
            }
        }
        wanted.into_iter().map(|i| self.symbols[i].clone()).collect()
    }
}

/// One kallsyms line: `ADDR TYPE NAME [MODULE]`.
fn fields(line: &str) -> Option<(u64, &str, &str, Option<&str>)> {
    let mut fields = line.split_whitespace();
    let (addr, ty, name) = (fields.next()?, fields.next()?, fields.next()?);
    Some((u64::from_str_radix(addr, 16).ok()?, ty, name, fields.next()))
}

/// The variable at `offset` bytes into the data symbol `symbol`, as reports
/// spell it: `inode_hash_lock`, or `mem_hotplug_lock+0x8` inside one.
pub fn variable_at(symbol: &str, offset: u64) -> String {
    match offset {
        0 => symbol.to_owned(),
        _ => format!("{symbol}+{offset:#x}"),
    }
}

/// The data symbols that locate a kernel object's `struct page` (where the
/// direct map and the page array begin, and how many pages there are): the
/// recorder reads a lock's slab from its page where kallsyms lists all three.
pub const PAGE_SYMBOLS: [&str; 3] = ["page_offset_base", "vmemmap_base", "max_pfn"];

/// The addresses of `names` in kallsyms text (0 where absent), without
/// building a table: for the few symbols a BPF program is told before load.
pub fn addresses_of<const N: usize>(text: &str, names: [&str; N]) -> [u64; N] {
    let mut found = [0u64; N];
    for (addr, _, name, _) in text.lines().filter_map(fields) {
        if let Some(i) = names.iter().position(|&n| n == name) {
            found[i] = addr;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
ffffffff81000000 T _stext
ffffffff81000100 t helper
ffffffff81000200 T do_unlinkat
ffffffff82000000 D tasklist_lock
ffffffff82000040 b inode_hash_lock
ffffffffc0000000 t ext4_create\t[ext4]
ffffffffc0000100 t ext4_unlink\t[ext4]
";

    #[test]
    fn addresses_are_found_by_name() {
        assert_eq!(addresses_of(TEXT, ["inode_hash_lock", "missing", "ext4_unlink"]), [0xffffffff82000040, 0, 0xffffffffc0000100]);
    }

    #[test]
    fn resolves_frames_and_globals() {
        let t = SymbolTable::parse(TEXT).unwrap();
        assert_eq!(t.frame(0xffffffff81000210).to_string(), "do_unlinkat+0x10");
        assert_eq!(t.frame(0xffffffffc0000004).to_string(), "ext4_create+0x4 [ext4]");
        assert_eq!(t.data_symbol(0xffffffff82000044).unwrap().0.name, "inode_hash_lock");
        assert!(t.data_symbol(0xffffffff81000100).is_none(), "text is not a lock");
        assert!(t.lookup(0x1000).is_none());
        assert!(!t.has_data_symbols());
    }

    #[test]
    fn snapshot_keeps_only_what_resolves_the_addresses() {
        let t = SymbolTable::parse(TEXT).unwrap();
        let snap = t.snapshot([0xffffffff81000204, 0xffffffff81000208, 0xffffffffc0000104]);
        let names: Vec<_> = snap.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["do_unlinkat", "ext4_unlink"]);
        let again = SymbolTable::from_snapshot(snap);
        assert_eq!(again.frame(0xffffffff81000204).to_string(), "do_unlinkat+0x4");
    }

    #[test]
    fn hidden_addresses_are_an_error() {
        let hidden = "0000000000000000 T _stext\n0000000000000000 T do_unlinkat\n";
        assert!(matches!(SymbolTable::parse(hidden), Err(KallsymsError::Restricted)));
    }
}
