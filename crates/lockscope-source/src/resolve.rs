//! Site resolution: from a source line that acquires a lock to the lock itself
//! — a global variable, a member of a kernel object, or a local — read from
//! clangd's AST of the enclosing function.
//!
//! The lock argument is followed through what the kernel does to reach a
//! lock: macros (expanded by clang), members of embedded structs, inline
//! helpers that return a lock pointer, local pointers assigned from an object,
//! and wrappers that take the lock of an object they are given.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use lsp_types::{DocumentSymbol, Position, SymbolKind};
use serde::Serialize;

use crate::ast::{base_type_name, AstNode};
use crate::clangd::{uri_path, Clangd, ClangdError};
use crate::primitives::{acquisition, is_lock_internal_type, LockType};
pub use lockscope_trace::Scope;

/// How far calls are followed (helpers returning a lock, wrappers).
const MAX_CALL_DEPTH: u8 = 3;

/// One lock acquisition at a source line, resolved as far as it goes.
#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub file: String,
    pub line: u32,
    pub function: Option<String>,
    /// The call as written at the line (a macro, an inline function or a wrapper).
    pub primitive: Option<String>,
    /// Functions followed from the line to the acquisition (wrappers, inline helpers).
    pub via: Vec<String>,
    /// The lock argument as written at the line.
    pub lock_expr: Option<String>,
    pub scope: Scope,
    /// The struct or union holding the lock (member scope).
    pub object: Option<String>,
    /// The lock's field in `object`, dotted where nested.
    pub member: Option<String>,
    /// The variable (global or local scope).
    pub variable: Option<String>,
    pub lock_type: Option<LockType>,
    /// file:line of the lock's definition.
    pub defined_at: Option<String>,
    /// Why the site is not (fully) resolved.
    pub reason: Option<String>,
    /// The parameter the lock arrives in, when the function is a lock
    /// wrapper: its caller's argument is the lock.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argument: Option<String>,
}

impl Site {
    fn unresolved(file: &str, line: u32, function: Option<String>, reason: impl Into<String>) -> Site {
        Site {
            file: file.to_owned(),
            line,
            function,
            primitive: None,
            via: vec![],
            lock_expr: None,
            scope: Scope::Unknown,
            object: None,
            member: None,
            variable: None,
            lock_type: None,
            defined_at: None,
            reason: Some(reason.into()),
            argument: None,
        }
    }

    /// `fs_struct.lock`, `tasklist_lock`, …: how the lock is named in reports.
    pub fn lock_name(&self) -> Option<String> {
        match self.scope {
            Scope::Member => Some(format!("{}.{}", self.object.as_deref()?, self.member.as_deref()?)),
            Scope::Global | Scope::Local => self.variable.clone(),
            Scope::Unknown => None,
        }
    }
}

/// Where an expression's lock lives.
#[derive(Debug, Clone, PartialEq)]
enum Place {
    Global {
        variable: String,
        path: Vec<String>,
    },
    Member {
        object: String,
        path: Vec<String>,
    },
    Local {
        variable: String,
        path: Vec<String>,
        line: Option<u32>,
    },
    /// The function's argument `index` (by value), then `path`.
    Param {
        index: usize,
        name: String,
        path: Vec<String>,
    },
    Unknown(String),
}

impl Place {
    /// The place of `member` inside this one; an anonymous struct or union
    /// member (no name) adds nothing to the path.
    fn extended(self, member: &str) -> Place {
        if member.is_empty() {
            return self;
        }
        match self {
            Place::Global { variable, mut path } => {
                path.push(member.to_owned());
                Place::Global { variable, path }
            }
            Place::Member { object, mut path } => {
                path.push(member.to_owned());
                Place::Member { object, path }
            }
            Place::Local { variable, mut path, line } => {
                path.push(member.to_owned());
                Place::Local { variable, path, line }
            }
            Place::Param { index, name, mut path } => {
                path.push(member.to_owned());
                Place::Param { index, name, path }
            }
            unknown => unknown,
        }
    }
}

/// The lock an expression designates: where it lives, its type, and the
/// struct its innermost field is declared in (to find the definition).
#[derive(Debug, Clone)]
struct LockRef {
    place: Place,
    ty: Option<LockType>,
    field_of: Option<String>,
}

impl LockRef {
    fn unknown(why: impl Into<String>) -> LockRef {
        LockRef { place: Place::Unknown(why.into()), ty: None, field_of: None }
    }
}

/// A function's AST with what classification needs from it.
struct Function {
    file: PathBuf,
    name: String,
    node: AstNode,
    params: Vec<String>,
}

impl Function {
    fn new(file: PathBuf, node: AstNode) -> Function {
        let params = node
            .children
            .iter()
            .filter(|c| c.role == "type")
            .flat_map(|proto| proto.children.iter())
            .filter(|c| c.is("declaration", "ParmVar"))
            .map(|p| p.detail.clone())
            .collect();
        Function { file, name: node.detail.clone(), node, params }
    }

    fn local(&self, name: &str) -> Option<&AstNode> {
        self.node.descendants().into_iter().find(|n| n.is("declaration", "Var") && n.detail == name)
    }

    /// Right-hand sides of `name = …` in the function.
    fn assignments_to(&self, name: &str) -> Vec<&AstNode> {
        self.node
            .descendants()
            .into_iter()
            .filter(|n| n.is("expression", "BinaryOperator") && n.detail == "=" && n.children.len() == 2)
            .filter(|n| {
                let lhs = n.children[0].strip_implicit();
                lhs.is("expression", "DeclRef") && lhs.detail == name
            })
            .map(|n| &n.children[1])
            .collect()
    }
}

/// A function's file (relative to the tree) and the acquisitions in it.
pub type FunctionLocks = (String, Vec<Site>);

/// What a [`Resolver`] has learned of one tree. Handed from one resolver to
/// the next over the same tree, so traces resolved one after another ask
/// clangd nothing twice (a study's traces share most of their call sites).
#[derive(Default)]
pub struct Learned {
    /// Function definitions looked up by name (None: not in the tree).
    functions: HashMap<String, Option<Rc<Function>>>,
    /// Definitions of globals and fields, by (name, struct).
    definitions: HashMap<(String, Option<String>), Option<String>>,
    /// `locks_in_function` answers, by (function, follow_calls).
    function_locks: HashMap<(String, bool), Option<FunctionLocks>>,
    /// `resolve` answers, by (absolute file, line): stacks share call sites.
    lines: HashMap<(PathBuf, u32), Vec<Site>>,
}

pub struct Resolver<'c> {
    clangd: &'c mut Clangd,
    learned: Learned,
}

impl<'c> Resolver<'c> {
    pub fn new(clangd: &'c mut Clangd) -> Self {
        Self::resuming(clangd, Learned::default())
    }

    /// A resolver that starts from what an earlier one over the same tree learned.
    pub fn resuming(clangd: &'c mut Clangd, learned: Learned) -> Self {
        Resolver { clangd, learned }
    }

    /// The clangd session it asks.
    pub fn clangd(&mut self) -> &mut Clangd {
        self.clangd
    }

    /// What it learned, for the next resolver over the same tree.
    pub fn into_learned(self) -> Learned {
        self.learned
    }

    /// Every acquisition written in the body of the function `name`, and with
    /// `follow_calls` those in the functions it calls (two levels): what a
    /// stack that stops at `name` may have taken. None when the tree does not
    /// define `name`; the file it is defined in otherwise.
    pub fn locks_in_function(&mut self, name: &str, follow_calls: bool) -> Result<Option<FunctionLocks>, ClangdError> {
        let key = (name.to_owned(), follow_calls);
        if let Some(known) = self.learned.function_locks.get(&key) {
            return Ok(known.clone());
        }
        let found = self.find_locks_in_function(name, follow_calls)?;
        self.learned.function_locks.insert(key, found.clone());
        Ok(found)
    }

    fn find_locks_in_function(&mut self, name: &str, follow_calls: bool) -> Result<Option<FunctionLocks>, ClangdError> {
        let Some(function) = self.function_named(name)? else { return Ok(None) };
        let found = self.sites_of_calls(&function, |resolver, call| {
            if call.callee().and_then(acquisition).is_some() {
                Ok(vec![(vec![], resolver.lock_argument(&function, call, 0)?)])
            } else if follow_calls {
                // A stack that stops here lost an inlined callee's frame.
                resolver.through_callee(&function, call, 1, Some(&function.file))
            } else {
                Ok(vec![])
            }
        })?;
        Ok(Some(found))
    }

    /// A site for each lock `locks_of` finds at a call in `function` (with
    /// the functions it followed to it), at the line the call is written.
    fn sites_of_calls(
        &mut self,
        function: &Function,
        mut locks_of: impl FnMut(&mut Self, &AstNode) -> Result<Vec<(Vec<String>, LockRef)>, ClangdError>,
    ) -> Result<FunctionLocks, ClangdError> {
        let file = self.relative(&function.file);
        let text = std::fs::read_to_string(&function.file).map_err(|source| ClangdError::Read { path: function.file.clone(), source })?;
        let lines: Vec<&str> = text.lines().collect();
        let mut sites = vec![];
        for (call, at) in calls_with_positions(&function.node) {
            let source_line = lines.get(at.line as usize).copied().unwrap_or("");
            for (via, lock) in locks_of(self, &call)? {
                sites.push(self.site(&file, at.line + 1, function, &call, at.character, source_line, via, lock)?);
            }
        }
        Ok((file, sites))
    }

    /// The source tree's root.
    pub fn root(&self) -> &Path {
        self.clangd.root()
    }

    /// The locks `caller` hands to the lock wrapper `wrapper` at each call of
    /// it (`iput` → `_atomic_dec_and_lock(&inode->i_count, &inode->i_lock)`):
    /// what a stack whose call site is the wrapper took. None when the tree
    /// does not define `caller`.
    pub fn locks_handed_to(&mut self, caller: &str, wrapper: &str) -> Result<Option<FunctionLocks>, ClangdError> {
        let Some(function) = self.function_named(caller)? else { return Ok(None) };
        let found = self.sites_of_calls(&function, |resolver, call| match call.callee() == Some(wrapper) {
            true => resolver.through_callee(&function, call, 1, None),
            false => Ok(vec![]),
        })?;
        Ok(Some(found))
    }

    fn relative(&self, path: &Path) -> String {
        path.strip_prefix(self.clangd.root()).unwrap_or(path).display().to_string()
    }

    /// Every lock acquisition at `file`:`line` (1-based). A line without one
    /// gives a single unresolved site that says so.
    pub fn resolve(&mut self, file: &Path, line: u32) -> Result<Vec<Site>, ClangdError> {
        let key = (self.clangd.absolute(file), line);
        if let Some(known) = self.learned.lines.get(&key) {
            return Ok(known.clone());
        }
        let sites = self.resolve_line(&key.0, line)?;
        self.learned.lines.insert(key, sites.clone());
        Ok(sites)
    }

    fn resolve_line(&mut self, path: &Path, line: u32) -> Result<Vec<Site>, ClangdError> {
        let path = path.to_owned();
        let shown = self.relative(&path);
        let text = std::fs::read_to_string(&path).map_err(|source| ClangdError::Read { path: path.clone(), source })?;
        let Some(source_line) = line.checked_sub(1).and_then(|l| text.lines().nth(l as usize)) else {
            return Ok(vec![Site::unresolved(&shown, line, None, format!("{shown} has no line {line}"))]);
        };
        let line0 = line - 1;
        let Some(function) = self.function_at(&path, line0)? else {
            // clangd's AST holds only what this configuration compiles.
            let why = if crate::primitives::line_calls_an_acquisition(source_line) {
                "not in a function this configuration compiles (an #if branch it leaves out, or a macro body)"
            } else {
                "the line is not inside a function"
            };
            return Ok(vec![Site::unresolved(&shown, line, None, why)]);
        };
        let calls = calls_at_line(&function.node, line0);
        let mut sites = vec![];
        for (call, at) in calls.iter().filter(|(c, _)| c.callee().and_then(acquisition).is_some()) {
            let lock = self.lock_argument(&function, call, 0)?;
            sites.push(self.site(&shown, line, &function, call, *at, source_line, vec![], lock)?);
        }
        if sites.is_empty() {
            // No primitive at the line: the acquisition may sit in a callee
            // (a wrapper, or an inline function the stack no longer shows).
            for (call, at) in &calls {
                for (via, lock) in self.through_callee(&function, call, 1, None)? {
                    sites.push(self.site(&shown, line, &function, call, *at, source_line, via, lock)?);
                }
            }
        }
        if sites.is_empty() {
            sites.push(Site::unresolved(&shown, line, Some(function.name), "no lock acquisition at this line"));
        }
        Ok(sites)
    }

    #[allow(clippy::too_many_arguments)]
    fn site(
        &mut self,
        file: &str,
        line: u32,
        function: &Function,
        call: &AstNode,
        written_at: u32,
        source_line: &str,
        via: Vec<String>,
        lock: LockRef,
    ) -> Result<Site, ClangdError> {
        let written = source_line.get(written_at as usize..);
        let mut site = Site::unresolved(file, line, Some(function.name.clone()), "");
        site.reason = None;
        site.primitive = written.and_then(leading_identifier).or_else(|| call.callee().map(str::to_owned));
        site.lock_expr = written.and_then(first_argument);
        site.via = via;
        site.lock_type = lock.ty;
        match lock.place {
            Place::Global { variable, path } => {
                site.scope = Scope::Global;
                site.defined_at = self.definition_of(&variable, None)?;
                site.variable = Some(join_path(&variable, &path));
            }
            Place::Member { object, path } => {
                site.scope = Scope::Member;
                if let (Some(container), Some(field)) = (&lock.field_of, path.last()) {
                    site.defined_at = self.definition_of(field, Some(container))?;
                }
                site.object = Some(object);
                site.member = Some(path.join("."));
            }
            Place::Local { variable, path, line } => {
                site.scope = Scope::Local;
                site.defined_at = line.map(|l| format!("{}:{}", self.relative(&function.file), l + 1));
                site.variable = Some(join_path(&variable, &path));
            }
            Place::Param { name, .. } => {
                site.reason = Some(format!(
                    "the lock is `{name}`, an argument of {}: the function is a lock wrapper; its callers say which lock",
                    function.name
                ));
                site.argument = Some(name);
            }
            Place::Unknown(why) => site.reason = Some(why),
        }
        Ok(site)
    }

    /// The function whose body holds 0-based `line` of `path`, with its AST.
    fn function_at(&mut self, path: &Path, line: u32) -> Result<Option<Function>, ClangdError> {
        let symbols = self.clangd.document_symbols(path)?;
        let Some(symbol) = find_function(&symbols, line) else { return Ok(None) };
        let Some(node) = self.clangd.ast(path, symbol.range)? else { return Ok(None) };
        let node = node.descendants().into_iter().find(|n| n.is("declaration", "Function")).cloned();
        Ok(node.map(|n| Function::new(path.to_owned(), n)))
    }

    /// Whether `name` is defined where it can be inlined into code of `file`:
    /// the same file, or a header (asked of the index, without parsing).
    fn defined_inlinable(&mut self, name: &str, file: &Path) -> Result<bool, ClangdError> {
        let symbols = self.clangd.workspace_symbols(name)?;
        Ok(symbols
            .iter()
            .filter(|s| s.name == name && s.kind == SymbolKind::FUNCTION)
            .filter_map(|s| uri_path(&s.location.uri))
            .any(|p| p == file || p.extension().is_some_and(|e| e == "h")))
    }

    /// The function named `name` as defined in the tree (None if only declared).
    fn function_named(&mut self, name: &str) -> Result<Option<Rc<Function>>, ClangdError> {
        if let Some(known) = self.learned.functions.get(name) {
            return Ok(known.clone());
        }
        let mut found = None;
        let symbols = self.clangd.workspace_symbols(name)?;
        for symbol in symbols.iter().filter(|s| s.name == name && s.kind == SymbolKind::FUNCTION) {
            let Some(path) = uri_path(&symbol.location.uri) else { continue };
            if let Some(f) = self.function_at(&path, symbol.location.range.start.line)? {
                if f.name == name && f.node.children.iter().any(|c| c.is("statement", "Compound")) {
                    found = Some(Rc::new(f));
                    break;
                }
            }
        }
        self.learned.functions.insert(name.to_owned(), found.clone());
        Ok(found)
    }

    fn lock_argument(&mut self, function: &Function, call: &AstNode, depth: u8) -> Result<LockRef, ClangdError> {
        match call.arguments().first() {
            Some(arg) => self.classify(function, arg, depth),
            None => Ok(LockRef::unknown("the call has no lock argument")),
        }
    }

    /// Which lock `expr` (an expression in `function`) designates.
    fn classify(&mut self, function: &Function, expr: &AstNode, depth: u8) -> Result<LockRef, ClangdError> {
        let node = strip_address(expr);
        match node.kind.as_str() {
            "Member" => {
                let Some(base) = node.children.first() else { return Ok(LockRef::unknown("a member without a base")) };
                let base_type = base.type_name().unwrap_or("");
                if inside_lock(base) {
                    // `lock->rlock` inside spin_lock's expansion: the lock is the base.
                    return self.classify(function, base, depth);
                }
                let ty = node.type_name().and_then(LockType::from_type);
                let field_of = Some(base_type_name(base_type)).filter(|t| !t.contains('(') && !t.is_empty());
                let through_address = base.strip_implicit();
                let place = if node.is_arrow() && through_address.is("expression", "UnaryOperator") && through_address.detail == "&" {
                    // `(&x->embedded)->lock` is `x->embedded.lock`: the lock lives in x.
                    self.classify(function, base, depth)?.place.extended(&node.detail)
                } else if node.is_arrow() {
                    Place::Member { object: base_type_name(base_type), path: vec![] }.extended(&node.detail)
                } else {
                    self.classify(function, base, depth)?.place.extended(&node.detail)
                };
                Ok(LockRef { place, ty, field_of })
            }
            "ArraySubscript" => {
                let Some(base) = node.children.first() else { return Ok(LockRef::unknown("an index without a base")) };
                let mut inner = self.classify(function, base, depth)?;
                inner.ty = node.type_name().and_then(LockType::from_type).or(inner.ty);
                Ok(inner)
            }
            "DeclRef" => self.classify_reference(function, node, depth),
            "Call" => self.through_returned_lock(function, node, depth),
            // `((void)(subclass), (lock))`, as raw_spin_lock_nested expands without lockdep.
            "BinaryOperator" if node.detail == "," => match node.children.last() {
                Some(value) => self.classify(function, value, depth),
                None => Ok(LockRef::unknown("a comma expression without operands")),
            },
            // `({ ...; lock; })`: the value of the statement expression's last statement.
            "Stmt" => {
                let value = match node.children.first().and_then(|body| body.children.last()) {
                    Some(value) if value.role == "expression" => self.classify(function, value, depth)?,
                    _ => LockRef::unknown("a statement expression that yields no lock"),
                };
                match (&value.place, only_global_lock(function, node)) {
                    // `per_cpu_ptr(&lock, cpu)`: arithmetic on the address of one per-CPU global.
                    (Place::Unknown(_), Some(global)) => self.classify_reference(function, global, depth),
                    _ => Ok(value),
                }
            }
            // `cond ? &a->lock : &b->lock`: one lock only if both branches agree.
            "ConditionalOperator" => {
                let mut branches = vec![];
                for branch in node.children.iter().skip(1) {
                    branches.push(self.classify(function, branch, depth)?);
                }
                match branches.as_slice() {
                    [a, b] if a.place == b.place => Ok(branches.swap_remove(0)),
                    _ => Ok(LockRef::unknown("the lock is chosen between two by a condition")),
                }
            }
            other => match only_global_lock(function, node) {
                // `per_cpu_ptr(&lock, cpu)` is pointer arithmetic on one per-CPU global.
                Some(global) => self.classify_reference(function, global, depth),
                None => Ok(LockRef::unknown(format!("the lock is reached through a {other} expression"))),
            },
        }
    }

    fn classify_reference(&mut self, function: &Function, node: &AstNode, depth: u8) -> Result<LockRef, ClangdError> {
        let name = node.detail.clone();
        let ty = node.type_name().and_then(LockType::from_type);
        let is_pointer = node.type_name().is_some_and(|t| t.contains('*'));
        match node.referenced_kind() {
            Some("ParmVar") => {
                let index = function.params.iter().position(|p| *p == name).unwrap_or(usize::MAX);
                Ok(LockRef { place: Place::Param { index, name, path: vec![] }, ty, field_of: None })
            }
            Some("Var") => match function.local(&name) {
                Some(decl) if is_pointer => {
                    // A local pointer: the lock is whatever it was set to.
                    let init = decl.children.iter().find(|c| c.role == "expression");
                    let sources: Vec<&AstNode> = init.into_iter().chain(function.assignments_to(&name)).collect();
                    let mut found: Vec<LockRef> = vec![];
                    for source in sources {
                        let lock = self.classify(function, source, depth)?;
                        if !found.iter().any(|f| f.place == lock.place) {
                            found.push(lock);
                        }
                    }
                    match found.len() {
                        0 => Ok(LockRef::unknown(format!("the local pointer `{name}` is never set in {}", function.name))),
                        1 => Ok(found.pop().unwrap()),
                        _ => Ok(LockRef::unknown(format!("the local pointer `{name}` is set to different locks"))),
                    }
                }
                Some(decl) => {
                    let line = decl.range.map(|r| r.start.line);
                    Ok(LockRef { place: Place::Local { variable: name, path: vec![], line }, ty, field_of: None })
                }
                None => Ok(LockRef { place: Place::Global { variable: name, path: vec![] }, ty, field_of: None }),
            },
            _ => Ok(LockRef::unknown(format!("`{name}` is not a variable"))),
        }
    }

    /// `spin_lock(helper(x))`: the lock is what `helper` returns, with its
    /// arguments put in for its parameters.
    fn through_returned_lock(&mut self, function: &Function, call: &AstNode, depth: u8) -> Result<LockRef, ClangdError> {
        let Some(callee) = call.callee().map(str::to_owned) else {
            return Ok(LockRef::unknown("the lock comes from a call through a pointer"));
        };
        if depth >= MAX_CALL_DEPTH {
            return Ok(LockRef::unknown(format!("the lock comes from {callee}, beyond the call depth followed")));
        }
        let Some(helper) = self.function_named(&callee)? else {
            return Ok(LockRef::unknown(format!("the lock comes from {callee}, whose body is not in the tree")));
        };
        let returns: Vec<AstNode> = helper
            .node
            .descendants()
            .into_iter()
            .filter(|n| n.is("statement", "Return"))
            .filter_map(|n| n.children.first().cloned())
            .collect();
        let mut found: Vec<LockRef> = vec![];
        for value in &returns {
            let lock = self.classify(&helper, value, depth + 1)?;
            let lock = self.substitute(function, call, lock, depth)?;
            if !found.iter().any(|f| f.place == lock.place) {
                found.push(lock);
            }
        }
        match found.len() {
            1 => Ok(found.pop().unwrap()),
            0 => Ok(LockRef::unknown(format!("{callee} returns no lock"))),
            _ => Ok(LockRef::unknown(format!("{callee} returns different locks"))),
        }
    }

    /// Puts the caller's argument in for a callee's parameter.
    fn substitute(&mut self, caller: &Function, call: &AstNode, lock: LockRef, depth: u8) -> Result<LockRef, ClangdError> {
        let Place::Param { index, path, .. } = &lock.place else { return Ok(lock) };
        let Some(arg) = call.arguments().get(*index) else {
            return Ok(LockRef::unknown("a lock parameter without an argument"));
        };
        let mut outer = self.classify(caller, arg, depth)?;
        for member in path {
            outer.place = outer.place.extended(member);
        }
        outer.ty = lock.ty.or(outer.ty);
        outer.field_of = lock.field_of.or(outer.field_of);
        Ok(outer)
    }

    /// Acquisitions inside the function `call` calls, seen from the caller:
    /// each with the chain of functions followed. With `inline_into`, only
    /// callees the compiler could have inlined into code of that file are
    /// followed: those in the same file or in a header.
    fn through_callee(
        &mut self,
        caller: &Function,
        call: &AstNode,
        depth: u8,
        inline_into: Option<&Path>,
    ) -> Result<Vec<(Vec<String>, LockRef)>, ClangdError> {
        let Some(callee) = call.callee().map(str::to_owned) else { return Ok(vec![]) };
        if depth > MAX_CALL_DEPTH - 1 {
            return Ok(vec![]);
        }
        if let Some(file) = inline_into {
            if !self.defined_inlinable(&callee, file)? {
                return Ok(vec![]);
            }
        }
        let Some(body) = self.function_named(&callee)? else { return Ok(vec![]) };
        let inner_calls: Vec<AstNode> = body.node.descendants().into_iter().filter(|n| n.callee().is_some()).cloned().collect();
        let mut out = vec![];
        for inner in &inner_calls {
            let found = if inner.callee().and_then(acquisition).is_some() {
                let lock = self.lock_argument(&body, inner, depth)?;
                vec![(vec![callee.clone(), inner.callee().unwrap().to_owned()], lock)]
            } else {
                self.through_callee(&body, inner, depth + 1, inline_into)?
                    .into_iter()
                    .map(|(mut via, lock)| {
                        via.insert(0, callee.clone());
                        (via, lock)
                    })
                    .collect()
            };
            for (via, lock) in found {
                let lock = self.substitute(caller, call, lock, depth)?;
                out.push((via, lock));
            }
        }
        Ok(out)
    }

    /// file:line where `name` is defined: a global variable, or the field
    /// `name` of `container`.
    fn definition_of(&mut self, name: &str, container: Option<&str>) -> Result<Option<String>, ClangdError> {
        let key = (name.to_owned(), container.map(str::to_owned));
        if let Some(known) = self.learned.definitions.get(&key) {
            return Ok(known.clone());
        }
        let found = self.find_definition(name, container)?;
        self.learned.definitions.insert(key, found.clone());
        Ok(found)
    }

    fn find_definition(&mut self, name: &str, container: Option<&str>) -> Result<Option<String>, ClangdError> {
        let query = match container {
            Some(c) => format!("{c}::{name}"),
            None => name.to_owned(),
        };
        let symbols = self.clangd.workspace_symbols(&query)?;
        let hit = symbols.iter().find(|s| {
            s.name == name
                && match container {
                    Some(c) => s.kind == SymbolKind::FIELD && s.container_name.as_deref() == Some(c),
                    None => s.kind == SymbolKind::VARIABLE,
                }
        });
        Ok(hit.and_then(|s| {
            let path = uri_path(&s.location.uri)?;
            Some(format!("{}:{}", self.relative(&path), s.location.range.start.line + 1))
        }))
    }
}

/// Every call in `function`, each with the position where it is written: a
/// call expanded from a macro has no position of its own and is written
/// where the macro is.
fn calls_with_positions(function: &AstNode) -> Vec<(AstNode, Position)> {
    fn walk(node: &AstNode, written: Option<Position>, out: &mut Vec<(AstNode, Position)>) {
        let written = node.range.map(|r| r.start).or(written);
        if let (Some(at), Some(_)) = (written, node.callee()) {
            out.push((node.clone(), at));
        }
        for child in &node.children {
            walk(child, written, out);
        }
    }
    let mut out = vec![];
    walk(function, None, &mut out);
    out
}

/// The calls written at 0-based `line`, with their columns.
fn calls_at_line(function: &AstNode, line: u32) -> Vec<(AstNode, u32)> {
    calls_with_positions(function).into_iter().filter(|(_, at)| at.line == line).map(|(c, at)| (c, at.character)).collect()
}

fn find_function(symbols: &[DocumentSymbol], line: u32) -> Option<&DocumentSymbol> {
    symbols.iter().find_map(|s| {
        let covers = s.range.start.line <= line && line <= s.range.end.line;
        if !covers {
            return None;
        }
        let nested = s.children.as_deref().and_then(|c| find_function(c, line));
        nested.or_else(|| (s.kind == SymbolKind::FUNCTION).then_some(s))
    })
}

/// Whether `base` is (a member of an anonymous union inside) a lock: then a
/// member of it (`lock->rlock`) is part of that lock, not a lock of its own.
fn inside_lock(base: &AstNode) -> bool {
    let mut node = base;
    loop {
        if node.type_name().is_some_and(is_lock_internal_type) {
            return true;
        }
        let stripped = node.strip_implicit();
        match stripped.children.first() {
            Some(inner) if stripped.is("expression", "Member") && stripped.detail.is_empty() => node = inner,
            _ => return false,
        }
    }
}

/// The one global lock variable `expr` names, if it names exactly one.
fn only_global_lock<'a>(function: &Function, expr: &'a AstNode) -> Option<&'a AstNode> {
    let mut globals = expr.descendants().into_iter().filter(|n| {
        n.is("expression", "DeclRef")
            && n.referenced_kind() == Some("Var")
            && n.type_name().and_then(LockType::from_type).is_some()
            && function.local(&n.detail).is_none()
    });
    let first = globals.next()?;
    globals.all(|n| n.detail == first.detail).then_some(first)
}

/// `&x`, `*x`, `(x)` and casts all designate the same lock as `x`.
fn strip_address(expr: &AstNode) -> &AstNode {
    let mut node = expr.strip_implicit();
    while node.is("expression", "UnaryOperator") && matches!(node.detail.as_str(), "&" | "*") && !node.children.is_empty() {
        node = node.children[0].strip_implicit();
    }
    node
}

fn join_path(variable: &str, path: &[String]) -> String {
    std::iter::once(variable).chain(path.iter().map(String::as_str)).collect::<Vec<_>>().join(".")
}

fn leading_identifier(text: &str) -> Option<String> {
    let id: String = text.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
    (!id.is_empty()).then_some(id)
}

/// The first argument of the call that starts `text`, as written.
pub(crate) fn first_argument(text: &str) -> Option<String> {
    let open = text.find('(')?;
    let mut depth = 0;
    for (i, c) in text[open + 1..].char_indices() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' if depth > 0 => depth -= 1,
            ')' | ',' if depth == 0 => return Some(text[open + 1..open + 1 + i].trim().to_owned()),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_call_is_read_from_the_line() {
        assert_eq!(leading_identifier("spin_lock_irqsave(&x->lock, flags);").as_deref(), Some("spin_lock_irqsave"));
        assert_eq!(first_argument("spin_lock_irqsave(&x->lock, flags);").as_deref(), Some("&x->lock"));
        assert_eq!(first_argument("down_write(&EXT4_I(inode)->i_data_sem);").as_deref(), Some("&EXT4_I(inode)->i_data_sem"));
        assert_eq!(first_argument("mutex_lock(&a[f(1, 2)].m)").as_deref(), Some("&a[f(1, 2)].m"));
        assert_eq!(first_argument("spin_lock("), None);
    }
}
