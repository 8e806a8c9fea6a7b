//! clangd's `textDocument/ast` extension: the clang AST of a range, as nodes
//! with a role, a kind, a short detail and clang's own dump line ("arcana"),
//! which carries the types this analyzer needs.

use lsp_types::request::Request;
use lsp_types::{Range, TextDocumentIdentifier};
use serde::{Deserialize, Serialize};

pub enum AstRequest {}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AstParams {
    #[serde(rename = "textDocument")]
    pub text_document: TextDocumentIdentifier,
    pub range: Range,
}

impl Request for AstRequest {
    type Params = AstParams;
    type Result = Option<AstNode>;
    const METHOD: &'static str = "textDocument/ast";
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AstNode {
    pub role: String,
    pub kind: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub arcana: String,
    /// Absent for nodes that come from a macro's body.
    pub range: Option<Range>,
    #[serde(default)]
    pub children: Vec<AstNode>,
}

impl AstNode {
    pub fn is(&self, role: &str, kind: &str) -> bool {
        self.role == role && self.kind == kind
    }

    /// The node's type as clang prints it first (the sugared spelling), e.g.
    /// `spinlock_t` or `struct fs_struct *`.
    pub fn type_name(&self) -> Option<&str> {
        let start = self.arcana.find('\'')? + 1;
        let len = self.arcana[start..].find('\'')?;
        Some(&self.arcana[start..start + len])
    }

    /// Every node below this one, depth first, this one included.
    pub fn descendants(&self) -> Vec<&AstNode> {
        let mut out = vec![self];
        let mut i = 0;
        while i < out.len() {
            let node = out[i];
            out.extend(node.children.iter());
            i += 1;
        }
        out
    }

    /// Whether the node's range (0-based lines) covers `line`.
    pub fn covers_line(&self, line: u32) -> bool {
        self.range.is_some_and(|r| r.start.line <= line && line <= r.end.line)
    }

    /// Looks through implicit casts and parentheses, which say nothing about
    /// which lock an expression names.
    pub fn strip_implicit(&self) -> &AstNode {
        let mut node = self;
        while matches!(node.kind.as_str(), "ImplicitCast" | "Paren" | "CStyleCast")
            && node.role == "expression"
            && !node.children.is_empty()
        {
            node = node.children.last().unwrap();
        }
        node
    }

    /// For a call: the name of the function called, after macro expansion.
    pub fn callee(&self) -> Option<&str> {
        if !self.is("expression", "Call") {
            return None;
        }
        let callee = self.children.first()?.strip_implicit();
        callee.is("expression", "DeclRef").then_some(callee.detail.as_str())
    }

    /// For a call: its arguments.
    pub fn arguments(&self) -> &[AstNode] {
        self.children.get(1..).unwrap_or(&[])
    }

    /// For a member expression: whether it is `->` (through a pointer).
    pub fn is_arrow(&self) -> bool {
        self.arcana.contains(&format!("->{}", self.detail))
    }

    /// For a reference to a declaration: what it refers to (`ParmVar`, `Var`,
    /// `Function`, `EnumConstant`, …), read from clang's dump line.
    pub fn referenced_kind(&self) -> Option<&str> {
        const KINDS: [&str; 4] = [" ParmVar ", " Var ", " Function ", " EnumConstant "];
        KINDS.iter().find(|k| self.arcana.contains(*k)).map(|k| k.trim())
    }
}

/// `struct fs_struct *` → `fs_struct`; `spinlock_t` → `spinlock_t`: the record
/// or typedef a (pointer) type names, without qualifiers.
pub fn base_type_name(ty: &str) -> String {
    let ty = ty.split("':'").next().unwrap_or(ty).trim();
    // `typeof(spinlock_t)`, as DEFINE_PER_CPU declares: the type inside.
    for typeof_ in ["typeof(", "__typeof__("] {
        if let Some(inner) = ty.strip_prefix(typeof_).and_then(|t| t.strip_suffix(')')) {
            return base_type_name(inner);
        }
    }
    let words: Vec<&str> = ty
        .split(|c: char| c.is_whitespace() || c == '*')
        .filter(|w| !w.is_empty() && !matches!(*w, "const" | "volatile" | "struct" | "union" | "__rcu" | "restrict"))
        .collect();
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: &str, arcana: &str) -> AstNode {
        AstNode {
            role: "expression".into(),
            kind: kind.into(),
            detail: "lock".into(),
            arcana: arcana.into(),
            range: None,
            children: vec![],
        }
    }

    #[test]
    fn types_come_from_the_dump_line() {
        let member = node("Member", "MemberExpr 0x1 <a.c:5:13, col:17> 'spinlock_t':'struct spinlock' lvalue ->lock 0x2");
        assert_eq!(member.type_name(), Some("spinlock_t"));
        assert!(member.is_arrow());
        let dot = node("Member", "MemberExpr 0x1 <a.c:5:13, col:17> 'spinlock_t':'struct spinlock' lvalue .lock 0x2");
        assert!(!dot.is_arrow());
        assert_eq!(base_type_name("struct fs_struct *"), "fs_struct");
        assert_eq!(base_type_name("const struct address_space *const"), "address_space");
        assert_eq!(base_type_name("spinlock_t"), "spinlock_t");
        assert_eq!(base_type_name("typeof(spinlock_t)"), "spinlock_t");
    }

    #[test]
    fn references_say_what_they_name() {
        let param = node("DeclRef", "DeclRefExpr 0x1 <a.c:5:13> 'struct fs_struct *' lvalue ParmVar 0x2 'fs' 'struct fs_struct *'");
        assert_eq!(param.referenced_kind(), Some("ParmVar"));
        let var = node("DeclRef", "DeclRefExpr 0x1 <a.c:5:13> 'rwlock_t' lvalue Var 0x2 'tasklist_lock' 'rwlock_t'");
        assert_eq!(var.referenced_kind(), Some("Var"));
    }
}
