//! Lock wrappers: functions that take a lock reached through one of their
//! arguments and return still holding it (`mmap_write_lock(mm)`,
//! `inode_lock(inode)`). A kernel stack that ends in a wrapper names the
//! caller's lock, so wrappers are where stack completion stops.
//!
//! Found from clangd's index by incoming calls: every caller of an acquisition
//! primitive (then of every wrapper found, to `MAX_ROUNDS`) whose lock
//! argument mentions a parameter and which has no release of that lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use lsp_types::request::{CallHierarchyIncomingCalls, CallHierarchyPrepare};
use lsp_types::{
    CallHierarchyIncomingCallsParams, CallHierarchyItem, CallHierarchyPrepareParams, PartialResultParams, Position, SymbolKind,
    TextDocumentIdentifier, TextDocumentPositionParams, WorkDoneProgressParams,
};
use serde::Serialize;

use crate::clangd::{file_uri, uri_path, Clangd, ClangdError};
use crate::primitives::acquisition;
use crate::resolve::first_argument;

/// Wrappers of wrappers are followed this many levels.
const MAX_ROUNDS: usize = 3;

/// The functions whose callers are examined first: the acquisition
/// primitives as the kernel defines them (inline functions, and the
/// out-of-line functions the locking macros expand to).
pub const PRIMITIVES: [&str; 33] = [
    "spin_lock",
    "spin_lock_bh",
    "spin_lock_irq",
    "spin_trylock",
    "_raw_spin_lock",
    "_raw_spin_lock_bh",
    "_raw_spin_lock_irq",
    "_raw_spin_lock_irqsave",
    "_raw_spin_trylock",
    "_raw_read_lock",
    "_raw_read_lock_bh",
    "_raw_read_lock_irq",
    "_raw_read_lock_irqsave",
    "_raw_write_lock",
    "_raw_write_lock_bh",
    "_raw_write_lock_irq",
    "_raw_write_lock_irqsave",
    "mutex_lock",
    "mutex_lock_interruptible",
    "mutex_lock_killable",
    "mutex_trylock",
    "down_read",
    "down_read_killable",
    "down_read_trylock",
    "down_write",
    "down_write_killable",
    "down_write_trylock",
    "down",
    "down_interruptible",
    "down_trylock",
    "percpu_down_read",
    "percpu_down_write",
    "rt_mutex_lock",
];

#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Wrapper {
    pub function: String,
    pub file: String,
    pub line: u32,
    /// What it calls to take the lock (a primitive or another wrapper).
    pub calls: String,
    /// The lock argument as written, and the parameter it goes through.
    pub lock_expr: String,
    pub parameter: String,
}

/// Every wrapper the index shows; `progress` sees each function examined.
pub fn find_wrappers(clangd: &mut Clangd, mut progress: impl FnMut(&str)) -> Result<Vec<Wrapper>, ClangdError> {
    let mut sources = SourceCache::default();
    let mut found: BTreeMap<String, Wrapper> = BTreeMap::new();
    let mut frontier: Vec<String> = PRIMITIVES.iter().map(|s| s.to_string()).collect();
    let mut examined: HashSet<String> = HashSet::new();
    for _ in 0..MAX_ROUNDS {
        let mut next = vec![];
        for callee in frontier.drain(..) {
            if !examined.insert(callee.clone()) {
                continue;
            }
            progress(&callee);
            for (caller, sites) in incoming_calls(clangd, &callee)? {
                if acquisition(&caller.name).is_some() || found.contains_key(&caller.name) {
                    continue;
                }
                let Some(path) = uri_path(&caller.uri) else { continue };
                let Some(text) = sources.get(&path) else { continue };
                if let Some(wrapper) = as_wrapper(clangd.root(), &path, text, &caller, &callee, &sites) {
                    next.push(wrapper.function.clone());
                    found.insert(wrapper.function.clone(), wrapper);
                }
            }
        }
        if next.is_empty() {
            break;
        }
        frontier = next;
    }
    Ok(found.into_values().collect())
}

/// The callers of the function named `name`, each with the positions of its calls.
fn incoming_calls(clangd: &mut Clangd, name: &str) -> Result<Vec<(CallHierarchyItem, Vec<Position>)>, ClangdError> {
    let symbols = clangd.workspace_symbols(name)?;
    let Some(symbol) = symbols.iter().find(|s| s.name == name && s.kind == SymbolKind::FUNCTION) else { return Ok(vec![]) };
    let Some(path) = uri_path(&symbol.location.uri) else { return Ok(vec![]) };
    let position = symbol.location.range.start;
    let items = clangd.ask::<CallHierarchyPrepare>(Some(&path), |_| CallHierarchyPrepareParams {
        text_document_position_params: TextDocumentPositionParams {
            text_document: TextDocumentIdentifier { uri: file_uri(&path) },
            position,
        },
        work_done_progress_params: WorkDoneProgressParams::default(),
    })?;
    let Some(item) = items.and_then(|i| i.into_iter().next()) else { return Ok(vec![]) };
    let calls = clangd.ask::<CallHierarchyIncomingCalls>(None, |_| CallHierarchyIncomingCallsParams {
        item: item.clone(),
        work_done_progress_params: WorkDoneProgressParams::default(),
        partial_result_params: PartialResultParams::default(),
    })?;
    Ok(calls.unwrap_or_default().into_iter().map(|c| (c.from, c.from_ranges.into_iter().map(|r| r.start).collect())).collect())
}

/// `caller` is a wrapper if one of its calls to `callee` locks through a
/// parameter and its body releases nothing reached through that parameter.
fn as_wrapper(root: &Path, path: &Path, text: &str, caller: &CallHierarchyItem, callee: &str, sites: &[Position]) -> Option<Wrapper> {
    let lines: Vec<&str> = text.lines().collect();
    let body = function_text(&lines, caller.selection_range.start.line as usize)?;
    let params = parameter_names(&body, &caller.name);
    let released = released_expressions(&body);
    for site in sites {
        let line = lines.get(site.line as usize)?;
        let call = line.get(site.character as usize..)?;
        let Some(lock_expr) = first_argument(call) else { continue };
        let Some(parameter) = identifiers(&lock_expr).into_iter().find(|id| params.contains(id)) else { continue };
        // A release of anything reached through the same parameter: the
        // function gives back what it took (directly or via a wrapper's pair).
        if released.iter().any(|r| identifiers(r).contains(&parameter)) {
            continue;
        }
        return Some(Wrapper {
            function: caller.name.clone(),
            file: path.strip_prefix(root).unwrap_or(path).display().to_string(),
            line: caller.selection_range.start.line + 1,
            calls: callee.to_owned(),
            lock_expr,
            parameter,
        });
    }
    None
}

/// The function whose name is on line `start`: its signature and its body up
/// to the matching brace (the index gives only the name's position).
fn function_text(lines: &[&str], start: usize) -> Option<String> {
    let mut text = String::new();
    let mut depth = 0;
    let mut opened = false;
    for line in lines.get(start..)? {
        text.push_str(line);
        text.push('\n');
        for c in line.chars() {
            match c {
                '{' => {
                    depth += 1;
                    opened = true;
                }
                '}' => depth -= 1,
                ';' if !opened => return None, // a declaration, not a definition
                _ => {}
            }
        }
        if opened && depth <= 0 {
            return Some(text);
        }
    }
    None
}

/// The parameter names in the signature `name(type a, struct b *c)`.
fn parameter_names(function_text: &str, name: &str) -> Vec<String> {
    let Some(at) = function_text.find(&format!("{name}(")) else { return vec![] };
    let Some(list) = arguments(&function_text[at + name.len()..]) else { return vec![] };
    list.iter().filter_map(|p| identifiers(p).pop()).filter(|p| p != "void").collect()
}

/// The top-level arguments of the first parenthesized list in `text`.
fn arguments(text: &str) -> Option<Vec<String>> {
    let open = text.find('(')?;
    let (mut args, mut current, mut depth) = (vec![], String::new(), 0);
    for c in text[open + 1..].chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth > 0 => depth -= 1,
            ')' => {
                args.push(current.trim().to_owned());
                return Some(args);
            }
            ',' if depth == 0 => {
                args.push(std::mem::take(&mut current).trim().to_owned());
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    None
}

/// The lock expressions the body passes to a release (unlock, up_*).
fn released_expressions(body: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for (at, _) in body.match_indices('(') {
        let name: String =
            body[..at].chars().rev().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<Vec<_>>().into_iter().rev().collect();
        let is_release = name.contains("unlock") || name == "up" || name.starts_with("up_") || name.starts_with("percpu_up_");
        if is_release {
            if let Some(arg) = first_argument(&body[at - name.len()..]) {
                out.insert(arg.chars().filter(|c| !c.is_whitespace()).collect());
            }
        }
    }
    out
}

fn identifiers(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty() && !w.starts_with(|c: char| c.is_ascii_digit()))
        .map(str::to_owned)
        .collect()
}

#[derive(Default)]
struct SourceCache {
    files: HashMap<PathBuf, Option<String>>,
}

impl SourceCache {
    fn get(&mut self, path: &Path) -> Option<&str> {
        self.files.entry(path.to_owned()).or_insert_with(|| std::fs::read_to_string(path).ok()).as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_from_the_signature() {
        let text = "static inline void mmap_write_lock(struct mm_struct *mm,\n\t\tunsigned long flags)\n{";
        assert_eq!(parameter_names(text, "mmap_write_lock"), ["mm", "flags"]);
        assert!(parameter_names("void f(void) {", "f").is_empty());
    }

    #[test]
    fn releases_are_found_by_name_and_argument() {
        let body = "{\n\tspin_lock(&fs->lock);\n\tfoo(x);\n\tspin_unlock( &fs->lock );\n\tup_write(&mm->mmap_lock);\n}";
        let released = released_expressions(body);
        assert!(released.contains("&fs->lock"));
        assert!(released.contains("&mm->mmap_lock"));
        assert!(!released.contains("x"));
    }
}
