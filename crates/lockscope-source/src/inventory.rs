//! The lock inventory of a source tree: every lock member of every struct or
//! union (the lock-to-object map, the paper's Table 4) and every global lock
//! definition.
//!
//! This is a declaration scanner over the whole tree, not clangd: the map must
//! cover every struct of every configuration (clangd sees only the files one
//! configuration compiles) and take seconds, not hours. It reads C at the
//! level kernel declarations need: comments, strings and preprocessor lines
//! dropped, braces tracked, struct/union bodies, declarators, the DEFINE_*
//! macros. Both branches of an `#ifdef` are read.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::primitives::{is_lock_internal_type, LockType};

/// Embedded structs are followed this deep for nested locks.
const MAX_NESTING: usize = 4;

/// One lock member of a struct or union (a row of the lock-to-object map).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct LockMember {
    pub file: String,
    pub line: u32,
    /// The struct or union (or its typedef name when anonymous).
    pub object: String,
    pub lock_type: LockType,
    /// The lock's field, dotted through anonymous and embedded structs.
    pub lock_name: String,
    /// Whether the lock is inside an embedded struct of `object`.
    pub nested: bool,
}

/// One global lock definition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GlobalLock {
    pub file: String,
    pub line: u32,
    pub name: String,
    pub lock_type: LockType,
    /// How it is defined: the macro (`DEFINE_SPINLOCK`, `DEFINE_PER_CPU`, …) or `declaration`.
    pub defined_by: String,
    pub per_cpu: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct Inventory {
    pub files_scanned: usize,
    pub members: Vec<LockMember>,
    pub globals: Vec<GlobalLock>,
}

/// A struct body as scanned: its direct lock members and embedded structs.
#[derive(Debug, Clone, Default)]
struct StructBody {
    name: Option<String>,
    /// (path, type, line) of each lock directly in the body (anonymous members included).
    locks: Vec<(String, LockType, u32)>,
    /// (struct name, member path) of each struct embedded by value.
    embeds: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String, u32),
    Punct(char, u32),
    /// A struct/union body already scanned, standing where it was.
    Body(usize),
}

impl Token {
    fn ident(&self) -> Option<&str> {
        match self {
            Token::Ident(s, _) => Some(s),
            _ => None,
        }
    }
    fn is(&self, c: char) -> bool {
        matches!(self, Token::Punct(p, _) if *p == c)
    }
}

/// Splits C source into identifiers/numbers and punctuation, dropping
/// comments, string and character literals and preprocessor lines.
fn tokenize(source: &str) -> Vec<Token> {
    let bytes = source.as_bytes();
    let mut tokens = vec![];
    let (mut i, mut line, mut line_start) = (0, 1u32, true);
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\n' => {
                line += 1;
                line_start = true;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\x0c' => {
                i += 1;
                continue;
            }
            b'#' if line_start => {
                // A preprocessor line, with its continuations.
                while i < bytes.len() && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' && bytes.get(i + 1) == Some(&b'\n') {
                        line += 1;
                        i += 1;
                    } else if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        let (ni, nl) = skip_block_comment(bytes, i, line);
                        i = ni;
                        line = nl;
                        continue;
                    }
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let (ni, nl) = skip_block_comment(bytes, i, line);
                i = ni;
                line = nl;
                continue;
            }
            b'"' | b'\'' => {
                i += 1;
                while i < bytes.len() && bytes[i] != c && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' => {
                let start = i;
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                tokens.push(Token::Ident(source[start..i].to_owned(), line));
            }
            _ => {
                tokens.push(Token::Punct(c as char, line));
                i += 1;
            }
        }
        line_start = false;
    }
    tokens
}

fn skip_block_comment(bytes: &[u8], mut i: usize, mut line: u32) -> (usize, u32) {
    i += 2;
    while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
        if bytes[i] == b'\n' {
            line += 1;
        }
        i += 1;
    }
    (i + 2, line)
}

/// The lock type a declaration's leading tokens name, and how many tokens it takes.
fn lock_type_at(tokens: &[Token]) -> Option<(LockType, usize)> {
    let first = tokens.first()?.ident()?;
    if first == "struct" {
        let name = tokens.get(1)?.ident()?;
        return LockType::from_type(&format!("struct {name}")).filter(|_| name != "spinlock" && name != "raw_spinlock").map(|t| (t, 2));
    }
    match first {
        "spinlock_t" | "raw_spinlock_t" | "rwlock_t" | "seqlock_t" => LockType::from_type(first).map(|t| (t, 1)),
        _ => None,
    }
}

const QUALIFIERS: [&str; 8] = ["static", "const", "volatile", "__read_mostly", "__initdata", "extern", "register", "__maybe_unused"];

/// Kernel attribute macros written where a declarator's name could be
/// (`} __randomize_layout;`, `lock ____cacheline_aligned;`).
fn is_attribute(name: &str, next: Option<&Token>) -> bool {
    const MARKS: [&str; 9] = ["aligned", "layout", "packed", "rcu", "percpu", "cacheline", "attribute", "read_mostly", "guarded"];
    name.starts_with("__") && (next.is_some_and(|t| t.is('(')) || MARKS.iter().any(|m| name.contains(m)))
}

/// The declared names of `type a, b[3] __aligned(8), *p` (pointers skipped),
/// with their lines.
fn declarators(tokens: &[Token]) -> Vec<(String, u32)> {
    let mut names = vec![];
    let mut depth = 0;
    let mut current: Option<(String, u32)> = None;
    let mut pointer = false;
    for (i, t) in tokens.iter().enumerate() {
        match t {
            Token::Punct('(' | '[', _) => depth += 1,
            Token::Punct(')' | ']', _) => depth -= 1,
            Token::Punct(',', _) if depth == 0 => {
                names.extend(current.take().filter(|_| !pointer));
                pointer = false;
            }
            Token::Punct('*', _) if depth == 0 => pointer = true,
            Token::Punct('=' | ':', _) if depth == 0 => {
                names.extend(current.take().filter(|_| !pointer));
                return names;
            }
            Token::Ident(name, line)
                if depth == 0 && current.is_none() && !QUALIFIERS.contains(&name.as_str()) && !is_attribute(name, tokens.get(i + 1)) =>
            {
                current = Some((name.clone(), *line));
            }
            _ => {}
        }
    }
    names.extend(current.filter(|_| !pointer));
    names
}

struct Scanner {
    bodies: Vec<StructBody>,
    globals: Vec<(String, u32, LockType, String, bool)>,
}

impl Scanner {
    /// Scans tokens[start..] up to the `}` closing this scope (or the end);
    /// returns the index after it. `body` is Some when the scope is a struct body.
    fn scope(&mut self, tokens: &[Token], mut i: usize, mut body: Option<&mut StructBody>, top: bool) -> usize {
        let mut statement: Vec<Token> = vec![];
        while i < tokens.len() {
            let t = &tokens[i];
            i += 1;
            match t {
                Token::Punct('{', _) => {
                    let is_record = statement_opens_record(&statement);
                    if is_record {
                        let mut inner = StructBody { name: record_name(&statement), ..Default::default() };
                        i = self.scope(tokens, i, Some(&mut inner), false);
                        let index = self.bodies.len();
                        self.bodies.push(inner);
                        statement.push(Token::Body(index));
                    } else {
                        let in_function = statement.last().is_some_and(|t| t.is(')'));
                        i = self.scope(tokens, i, None, false);
                        if in_function && top {
                            statement.clear(); // a function definition ends at its `}`
                        }
                    }
                }
                Token::Punct('}', _) => {
                    self.statement(&statement, body.as_deref_mut(), top);
                    return i;
                }
                Token::Punct(';', _) => {
                    self.statement(&statement, body.as_deref_mut(), top);
                    statement.clear();
                }
                _ => statement.push(t.clone()),
            }
        }
        self.statement(&statement, body, top);
        i
    }

    fn statement(&mut self, statement: &[Token], body: Option<&mut StructBody>, top: bool) {
        if statement.is_empty() {
            return;
        }
        self.define_macros(statement, top);
        let nested = statement.iter().position(|t| matches!(t, Token::Body(_)));
        match (body, nested) {
            (Some(body), Some(at)) => {
                let Token::Body(index) = statement[at] else { unreachable!() };
                let inner = self.bodies[index].clone();
                let names = declarators(&statement[at + 1..]);
                if names.is_empty() {
                    // An anonymous struct/union member: its fields are the outer's.
                    body.locks.extend(inner.locks.iter().cloned());
                    body.embeds.extend(inner.embeds.iter().cloned());
                }
                for (name, _) in names {
                    body.locks.extend(inner.locks.iter().map(|(p, t, l)| (format!("{name}.{p}"), *t, *l)));
                    body.embeds.extend(inner.embeds.iter().map(|(s, p)| (s.clone(), format!("{name}.{p}"))));
                }
            }
            (Some(body), None) => {
                let start = statement.iter().position(|t| !t.ident().is_some_and(|s| QUALIFIERS.contains(&s))).unwrap_or(0);
                let rest = &statement[start..];
                if let Some((ty, len)) = lock_type_at(rest) {
                    for (name, line) in declarators(&rest[len..]) {
                        body.locks.push((name, ty, line));
                    }
                } else if rest.first().and_then(Token::ident).is_some_and(|s| s == "struct" || s == "union") {
                    if let Some(inner) = rest.get(1).and_then(Token::ident) {
                        for (name, _) in declarators(&rest[2..]) {
                            body.embeds.push((inner.to_owned(), name));
                        }
                    }
                }
            }
            (None, Some(at)) => {
                // `typedef struct { … } name_t;` names an anonymous body.
                let Token::Body(index) = statement[at] else { unreachable!() };
                if self.bodies[index].name.is_none() && statement.first().and_then(Token::ident) == Some("typedef") {
                    self.bodies[index].name = declarators(&statement[at + 1..]).pop().map(|(n, _)| n);
                }
            }
            (None, None) if top => self.file_scope_declaration(statement),
            (None, None) => {}
        }
    }

    /// `static spinlock_t foo;` at file scope (not `extern`, not a pointer or function).
    fn file_scope_declaration(&mut self, statement: &[Token]) {
        if statement.iter().any(|t| t.ident() == Some("extern") || t.ident() == Some("typedef")) {
            return;
        }
        let start = statement.iter().position(|t| !t.ident().is_some_and(|s| QUALIFIERS.contains(&s))).unwrap_or(0);
        let rest = &statement[start..];
        let Some((ty, len)) = lock_type_at(rest) else { return };
        // A function returning a lock type has `(` right after its name.
        if rest.get(len + 1).is_some_and(|t| t.is('(')) {
            return;
        }
        for (name, line) in declarators(&rest[len..]) {
            self.globals.push((name, line, ty, "declaration".into(), false));
        }
    }

    /// DEFINE_SPINLOCK(x), DECLARE_RWSEM(x), DEFINE_PER_CPU(spinlock_t, x), …
    /// anywhere at file scope, or `static` inside a function.
    fn define_macros(&mut self, statement: &[Token], top: bool) {
        let is_static = statement.iter().any(|t| t.ident() == Some("static"));
        if !top && !is_static {
            return;
        }
        for (at, t) in statement.iter().enumerate() {
            let Some(macro_name) = t.ident() else { continue };
            if !statement.get(at + 1).is_some_and(|t| t.is('(')) {
                continue;
            }
            let args = &statement[at + 2..];
            if let Some(ty) = define_macro_type(macro_name) {
                if let Some(Token::Ident(name, line)) = args.first() {
                    self.globals.push((name.clone(), *line, ty, macro_name.to_owned(), false));
                }
            } else if macro_name.starts_with("DEFINE_PER_CPU") {
                let comma = args.iter().position(|t| t.is(','));
                let Some((ty, _)) = comma.and_then(|c| lock_type_at(&args[..c]).map(|t| (t, c))) else { continue };
                if let Some(Token::Ident(name, line)) = args.get(comma.unwrap() + 1) {
                    self.globals.push((name.clone(), *line, ty.0, macro_name.to_owned(), true));
                }
            }
        }
    }
}

fn define_macro_type(name: &str) -> Option<LockType> {
    Some(match name {
        "DEFINE_SPINLOCK" => LockType::Spinlock,
        "DEFINE_RAW_SPINLOCK" => LockType::RawSpinlock,
        "DEFINE_RWLOCK" => LockType::Rwlock,
        "DEFINE_SEQLOCK" => LockType::Seqlock,
        "DEFINE_MUTEX" => LockType::Mutex,
        "DEFINE_RT_MUTEX" => LockType::RtMutex,
        "DECLARE_RWSEM" => LockType::RwSemaphore,
        "DEFINE_SEMAPHORE" => LockType::Semaphore,
        "DEFINE_STATIC_PERCPU_RWSEM" | "DEFINE_PERCPU_RWSEM" => LockType::PercpuRwSemaphore,
        _ => return None,
    })
}

/// `struct name {`, `union {`, `typedef struct name __attribute__((x)) {`…
/// but not `struct x y = {` nor `struct x fn(void) {`.
fn statement_opens_record(statement: &[Token]) -> bool {
    let Some(at) = statement.iter().rposition(|t| matches!(t.ident(), Some("struct" | "union"))) else { return false };
    let (mut depth, mut names) = (0, 0);
    for t in &statement[at + 1..] {
        match t {
            Token::Punct('(', _) => depth += 1,
            Token::Punct(')', _) => depth -= 1,
            Token::Ident(name, _) if depth == 0 && !name.starts_with("__") => names += 1,
            Token::Ident(..) => {}
            _ if depth == 0 => return false,
            _ => {}
        }
    }
    names <= 1
}

fn record_name(statement: &[Token]) -> Option<String> {
    let at = statement.iter().rposition(|t| matches!(t.ident(), Some("struct" | "union")))?;
    statement[at + 1..]
        .iter()
        .filter_map(Token::ident)
        .find(|n| !n.starts_with("__") && !matches!(*n, "aligned" | "packed"))
        .map(str::to_owned)
}

/// What one file holds: its struct bodies and globals.
fn scan_file(source: &str) -> Scanner {
    let tokens = tokenize(source);
    let mut scanner = Scanner { bodies: vec![], globals: vec![] };
    scanner.scope(&tokens, 0, None, true);
    scanner
}

/// Scans every .c and .h file under `root` except the directories in `skip`
/// (relative to root); `progress` sees the count of files done.
pub fn scan_tree(root: &Path, skip: &[&str], mut progress: impl FnMut(usize)) -> std::io::Result<Inventory> {
    let mut files = vec![];
    collect_sources(root, root, skip, &mut files)?;
    files.sort();
    let mut inventory = Inventory::default();
    // Struct name → its bodies (a name may be defined in several files).
    let mut structs: HashMap<String, Vec<(String, StructBody)>> = HashMap::new();
    for (n, path) in files.iter().enumerate() {
        let Ok(bytes) = std::fs::read(path) else { continue };
        let source = String::from_utf8_lossy(&bytes);
        let shown = path.strip_prefix(root).unwrap_or(path).display().to_string();
        let scanned = scan_file(&source);
        for (name, line, lock_type, defined_by, per_cpu) in scanned.globals {
            inventory.globals.push(GlobalLock { file: shown.clone(), line, name, lock_type, defined_by, per_cpu });
        }
        for body in scanned.bodies {
            if let Some(name) = body.name.clone().filter(|n| !is_lock_internal_type(n) && !is_lock_internal_type(&format!("struct {n}"))) {
                structs.entry(name).or_default().push((shown.clone(), body));
            }
        }
        progress(n + 1);
    }
    inventory.files_scanned = files.len();
    inventory.members = lock_members(&structs);
    inventory.globals.sort();
    inventory.globals.dedup();
    Ok(inventory)
}

fn collect_sources(root: &Path, dir: &Path, skip: &[&str], out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)?.flatten() {
        let path = entry.path();
        let relative = path.strip_prefix(root).unwrap_or(&path);
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && !skip.iter().any(|s| relative == Path::new(s)) {
                collect_sources(root, &path, skip, out)?;
            }
        } else if kind.is_file() && path.extension().is_some_and(|e| e == "c" || e == "h") {
            out.push(path);
        }
    }
    Ok(())
}

/// The lock-to-object map: each struct's own locks, then those of the structs
/// it embeds by value (to MAX_NESTING levels).
fn lock_members(structs: &HashMap<String, Vec<(String, StructBody)>>) -> Vec<LockMember> {
    let mut members = BTreeMap::new();
    for (name, definitions) in structs {
        for (file, body) in definitions {
            let mut found = vec![];
            nested_locks(structs, body, "", 0, &mut found);
            for (path, lock_type, line, nested) in found {
                let member = LockMember { file: file.clone(), line, object: name.clone(), lock_type, lock_name: path, nested };
                members.insert((member.object.clone(), member.lock_name.clone(), member.file.clone()), member);
            }
        }
    }
    members.into_values().collect()
}

fn nested_locks(
    structs: &HashMap<String, Vec<(String, StructBody)>>,
    body: &StructBody,
    prefix: &str,
    depth: usize,
    out: &mut Vec<(String, LockType, u32, bool)>,
) {
    for (path, ty, line) in &body.locks {
        out.push((format!("{prefix}{path}"), *ty, *line, depth > 0));
    }
    if depth >= MAX_NESTING {
        return;
    }
    for (inner_name, path) in &body.embeds {
        // The first definition of an embedded struct stands for it.
        if let Some((_, inner)) = structs.get(inner_name).and_then(|d| d.first()) {
            nested_locks(structs, inner, &format!("{prefix}{path}."), depth + 1, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn globals(source: &str) -> Vec<(String, LockType, String)> {
        scan_file(source).globals.into_iter().map(|(n, _, t, by, _)| (n, t, by)).collect()
    }

    #[test]
    fn global_definitions_in_all_their_forms() {
        let source = r#"
#define DEFINE_SPINLOCK(x) spinlock_t x = __SPIN_LOCK_UNLOCKED(x)
static DEFINE_SPINLOCK(a_lock);
DEFINE_MUTEX(b_mutex);
static DECLARE_RWSEM(c_sem);
static spinlock_t d_lock, *not_a_lock;
struct mutex e_mutex __cacheline_aligned;
extern spinlock_t declared_elsewhere;
spinlock_t *pointer_lock;
spinlock_t returns_a_lock(void);
DEFINE_PER_CPU(raw_spinlock_t, f_lock);
/* DEFINE_MUTEX(commented); */
static const char *s = "DEFINE_MUTEX(in_a_string)";
void fn(void) {
	static DEFINE_MUTEX(g_mutex);
	DEFINE_MUTEX(on_the_stack);
	spinlock_t local;
}
"#;
        let found = globals(source);
        let names: Vec<&str> = found.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["a_lock", "b_mutex", "c_sem", "d_lock", "e_mutex", "f_lock", "g_mutex"]);
        assert_eq!(found[2].1, LockType::RwSemaphore);
        assert_eq!(found[3].2, "declaration");
        assert_eq!(found[5], ("f_lock".into(), LockType::RawSpinlock, "DEFINE_PER_CPU".into()));
    }

    #[test]
    fn struct_members_through_anonymous_and_embedded_structs() {
        let source = r#"
struct xarray { spinlock_t xa_lock; void *head; };
struct address_space {
	struct xarray i_pages;
	struct rw_semaphore i_mmap_rwsem;
	struct xarray *pointer_only;
};
struct inode {
	spinlock_t i_lock, i_other;
	union {
		struct mutex i_mutex;
		int x;
	};
	struct {
		seqlock_t seq;
	} i_stats __aligned(8);
	struct mutex i_rwsem ____cacheline_aligned_in_smp;
	struct address_space i_data;
	int (*fn)(spinlock_t *lock);
} __randomize_layout;
typedef struct { raw_spinlock_t raw; } my_lock_holder_t;
"#;
        let scanned = scan_file(source);
        let mut structs: HashMap<String, Vec<(String, StructBody)>> = HashMap::new();
        for body in scanned.bodies {
            if let Some(name) = body.name.clone() {
                structs.entry(name).or_default().push(("x.h".into(), body));
            }
        }
        let members: Vec<(String, String, LockType, bool)> =
            lock_members(&structs).into_iter().map(|m| (m.object, m.lock_name, m.lock_type, m.nested)).collect();
        let expect = |o: &str, n: &str, t: LockType, nested: bool| (o.to_owned(), n.to_owned(), t, nested);
        assert_eq!(
            members,
            [
                expect("address_space", "i_mmap_rwsem", LockType::RwSemaphore, false),
                expect("address_space", "i_pages.xa_lock", LockType::Spinlock, true),
                expect("inode", "i_data.i_mmap_rwsem", LockType::RwSemaphore, true),
                expect("inode", "i_data.i_pages.xa_lock", LockType::Spinlock, true),
                expect("inode", "i_lock", LockType::Spinlock, false),
                expect("inode", "i_mutex", LockType::Mutex, false),
                expect("inode", "i_other", LockType::Spinlock, false),
                expect("inode", "i_rwsem", LockType::Mutex, false),
                expect("inode", "i_stats.seq", LockType::Seqlock, false),
                expect("my_lock_holder_t", "raw", LockType::RawSpinlock, false),
                expect("xarray", "xa_lock", LockType::Spinlock, false),
            ]
        );
    }
}
