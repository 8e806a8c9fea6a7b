//! lockscope's static analyzer: drives clangd over a kernel source tree to
//! turn a lock acquisition (a file and line, or a kernel stack) into the lock
//! it takes — a global variable or a member of a kernel object.
//!
//! - `tree`: prepares a tree for clangd (configure, `make prepare`,
//!   compile_commands.json from a dry run of the build);
//! - `lsp` and `clangd`: a pipelined LSP client and one clangd session;
//! - `ast`: clangd's AST extension;
//! - `primitives`: the lock types and the functions that acquire them;
//! - `resolve`: from a source line to the lock it acquires;
//! - `stacks`: from a recorded kernel stack to the lock it took;
//! - `lines`: return addresses to source lines, with the kernel's debug info;
//! - `functions`: which file defines a function, by name (subsystems across versions);
//! - `inventory`: every lock member of every struct, and every global lock;
//! - `wrappers`: functions that take their argument's lock and return holding it.

pub mod ast;
pub mod clangd;
pub mod functions;
pub mod inventory;
pub mod lines;
pub mod lsp;
pub mod primitives;
pub mod resolve;
pub mod stacks;
pub mod tree;
pub mod wrappers;

pub use clangd::{Clangd, ClangdError, ClangdOptions, SourceTree};
pub use primitives::LockType;
pub use resolve::{Resolver, Scope, Site};
