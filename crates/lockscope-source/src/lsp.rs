//! A pipelined JSON-RPC client for a language server on stdio.
//!
//! Requests are written at once and answered in any order: `request` returns a
//! `Pending` that is waited on later, so many requests can be in flight. A
//! reader thread routes responses to their waiters, answers the server's own
//! requests (progress tokens, configuration, capability registration) and
//! tracks `$/progress` without relying on it ever arriving. When the server
//! exits, every waiter gets `LspError::Died` with the tail of its stderr.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use lsp_types::request::Request;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum LspError {
    #[error("cannot start {}", path.display())]
    Spawn { path: PathBuf, source: std::io::Error },
    #[error("the language server is gone: {0}")]
    Died(String),
    #[error("the language server did not answer {method} within {secs} s (hung?)")]
    Timeout { method: &'static str, secs: u64 },
    #[error("{method} failed: {message} (code {code})")]
    Server { method: &'static str, code: i64, message: String },
    #[error("cannot decode the answer to {method}")]
    Decode { method: &'static str, source: serde_json::Error },
}

impl LspError {
    /// Whether a fresh server might succeed where this one failed.
    pub fn is_fatal_to_server(&self) -> bool {
        matches!(self, LspError::Died(_) | LspError::Timeout { .. })
    }
}

type Reply = Result<Value, LspError>;

const STDERR_TAIL_LINES: usize = 20;

#[derive(Default)]
struct Shared {
    /// Each waiter with the method it asked, to name it in errors.
    pending: Mutex<HashMap<i64, (&'static str, Sender<Reply>)>>,
    /// Set once the server's stdout closes: why it is gone.
    died: Mutex<Option<String>>,
    /// Work-done progress tokens begun and not yet ended.
    progress_active: Mutex<HashMap<String, String>>,
    stderr_tail: Mutex<VecDeque<String>>,
}

impl Shared {
    fn stderr_tail(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap();
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

pub struct LspClient {
    child: Child,
    stdin: Arc<Mutex<ChildStdin>>,
    shared: Arc<Shared>,
    next_id: AtomicI64,
    threads: Vec<JoinHandle<()>>,
}

/// A request in flight; `wait` for its answer.
pub struct Pending<R: Request> {
    rx: Receiver<Reply>,
    _request: PhantomData<R>,
}

impl<R: Request> Pending<R> {
    pub fn wait(self, timeout: Duration) -> Result<R::Result, LspError> {
        let value = match self.rx.recv_timeout(timeout) {
            Ok(reply) => reply?,
            Err(RecvTimeoutError::Timeout) => return Err(LspError::Timeout { method: R::METHOD, secs: timeout.as_secs() }),
            Err(RecvTimeoutError::Disconnected) => return Err(LspError::Died("the reader stopped".into())),
        };
        serde_json::from_value(value).map_err(|source| LspError::Decode { method: R::METHOD, source })
    }
}

impl LspClient {
    /// Starts `program` with `args` in `cwd` and speaks JSON-RPC on its stdio.
    pub fn spawn(program: &Path, args: &[String], cwd: &Path) -> Result<Self, LspError> {
        let mut child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| LspError::Spawn { path: program.to_owned(), source })?;
        let stdin = Arc::new(Mutex::new(child.stdin.take().expect("piped stdin")));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let shared = Arc::new(Shared::default());
        let reader = {
            let (shared, stdin) = (Arc::clone(&shared), Arc::clone(&stdin));
            // Parsing a deeply nested AST recurses once per level: room for that.
            std::thread::Builder::new()
                .name("lsp-reader".into())
                .stack_size(READER_STACK)
                .spawn(move || read_loop(BufReader::new(stdout), &shared, &stdin))
                .map_err(|source| LspError::Spawn { path: program.to_owned(), source })?
        };
        let stderr_reader = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    tracing::debug!(target: "clangd", "{line}");
                    let mut tail = shared.stderr_tail.lock().unwrap();
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            })
        };
        Ok(LspClient { child, stdin, shared, next_id: AtomicI64::new(1), threads: vec![reader, stderr_reader] })
    }

    pub fn request<R: Request>(&self, params: R::Params) -> Pending<R> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.shared.pending.lock().unwrap().insert(id, (R::METHOD, tx.clone()));
        let message = json!({"jsonrpc": "2.0", "id": id, "method": R::METHOD, "params": params});
        if let Err(why) = self.write(&message) {
            self.shared.pending.lock().unwrap().remove(&id);
            let _ = tx.send(Err(why));
        } else if let Some(why) = self.shared.died.lock().unwrap().clone() {
            // The reader may have drained the waiters before this one was added.
            if self.shared.pending.lock().unwrap().remove(&id).is_some() {
                let _ = tx.send(Err(LspError::Died(why)));
            }
        }
        Pending { rx, _request: PhantomData }
    }

    pub fn notify<N: lsp_types::notification::Notification>(&self, params: N::Params) -> Result<(), LspError> {
        self.write(&json!({"jsonrpc": "2.0", "method": N::METHOD, "params": params}))
    }

    /// Work-done progress the server has begun and not ended: each as
    /// "title: latest message (percent)".
    pub fn progress_active(&self) -> Vec<String> {
        self.shared.progress_active.lock().unwrap().values().cloned().collect()
    }

    pub fn is_alive(&self) -> bool {
        self.shared.died.lock().unwrap().is_none()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn write(&self, message: &Value) -> Result<(), LspError> {
        write_frame(&self.stdin, message).map_err(|e| {
            let tail = self.shared.stderr_tail();
            LspError::Died(format!("writing to it failed ({e}); its last words: {tail}"))
        })
    }

    /// Asks the server to exit, then makes sure it has.
    pub fn shutdown(mut self, grace: Duration) {
        if self.is_alive() {
            let _ = self.request::<lsp_types::request::Shutdown>(()).wait(grace);
            let _ = self.notify::<lsp_types::notification::Exit>(());
        }
        self.reap(grace);
    }

    fn reap(&mut self, grace: Duration) {
        let deadline = std::time::Instant::now() + grace;
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for LspClient {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.reap(Duration::ZERO);
        }
    }
}

fn write_frame(stdin: &Mutex<ChildStdin>, message: &Value) -> std::io::Result<()> {
    let body = serde_json::to_vec(message)?;
    let mut stdin = stdin.lock().unwrap();
    write!(stdin, "Content-Length: {}\r\n\r\n", body.len())?;
    stdin.write_all(&body)?;
    stdin.flush()
}

/// The reader thread's stack: parsing recurses once per JSON nesting level.
const READER_STACK: usize = 256 << 20;

/// Reads one `Content-Length` framed message; None at end of stream.
fn read_frame(reader: &mut impl BufRead) -> std::io::Result<Option<Value>> {
    let mut length = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "frame without Content-Length"))?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    // clangd's AST of a long expression (a macro-built initializer, say) nests
    // far deeper than serde_json's default limit of 128.
    let invalid = |e| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let mut parser = serde_json::Deserializer::from_slice(&body);
    parser.disable_recursion_limit();
    let value = Value::deserialize(&mut parser).map_err(invalid)?;
    parser.end().map_err(invalid)?;
    Ok(Some(value))
}

fn read_loop(mut stdout: impl BufRead, shared: &Shared, stdin: &Mutex<ChildStdin>) {
    let end = loop {
        let message = match read_frame(&mut stdout) {
            Ok(Some(m)) => m,
            Ok(None) => break "it closed its output".to_owned(),
            Err(e) => break format!("its output is not JSON-RPC ({e})"),
        };
        match (message.get("id"), message.get("method")) {
            (Some(id), None) => deliver_response(shared, id, message.clone()),
            (Some(id), Some(method)) => answer_server_request(stdin, id, method.as_str().unwrap_or(""), &message),
            (None, Some(method)) if method == "$/progress" => track_progress(shared, &message["params"]),
            _ => {}
        }
    };
    // Give the stderr reader a moment to collect the server's last words.
    std::thread::sleep(Duration::from_millis(50));
    let why = format!("{end}; its last words: {}", shared.stderr_tail());
    *shared.died.lock().unwrap() = Some(why.clone());
    for (_, (_, waiter)) in shared.pending.lock().unwrap().drain() {
        let _ = waiter.send(Err(LspError::Died(why.clone())));
    }
}

fn deliver_response(shared: &Shared, id: &Value, message: Value) {
    let Some(id) = id.as_i64() else { return };
    let Some((method, waiter)) = shared.pending.lock().unwrap().remove(&id) else { return };
    let reply = match message.get("error") {
        Some(error) => Err(LspError::Server {
            method,
            code: error["code"].as_i64().unwrap_or(0),
            message: error["message"].as_str().unwrap_or("").to_owned(),
        }),
        None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
    };
    let _ = waiter.send(reply);
}

fn answer_server_request(stdin: &Mutex<ChildStdin>, id: &Value, method: &str, message: &Value) {
    let reply = match method {
        "workspace/configuration" => {
            let items = message["params"]["items"].as_array().map_or(0, Vec::len);
            json!({"jsonrpc": "2.0", "id": id, "result": vec![Value::Null; items]})
        }
        "window/workDoneProgress/create" | "client/registerCapability" | "client/unregisterCapability" => {
            json!({"jsonrpc": "2.0", "id": id, "result": null})
        }
        _ => json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": format!("{method} is not supported")}}),
    };
    let _ = write_frame(stdin, &reply);
}

fn track_progress(shared: &Shared, params: &Value) {
    let token = params["token"].to_string();
    let value = &params["value"];
    let mut active = shared.progress_active.lock().unwrap();
    match value["kind"].as_str() {
        Some("begin") => {
            active.insert(token, value["title"].as_str().unwrap_or("").to_owned());
        }
        Some("end") => {
            active.remove(&token);
        }
        Some("report") => {
            if let Some(current) = active.get_mut(&token) {
                let title = current.split(':').next().unwrap_or("").to_owned();
                let message = value["message"].as_str().unwrap_or("");
                *current = match value["percentage"].as_u64() {
                    Some(pct) => format!("{title}: {message} ({pct}%)"),
                    None => format!("{title}: {message}"),
                };
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_read_back_whole() {
        let body = br#"{"jsonrpc":"2.0","id":3,"result":{"x":[1,2]}}"#;
        let mut input = format!("Content-Length: {}\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n", body.len()).into_bytes();
        input.extend_from_slice(body);
        input.extend_from_slice(b"Content-Length: 2\r\n\r\n{}");
        let mut reader = std::io::Cursor::new(input);
        let first = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(first["result"]["x"][1], 2);
        assert_eq!(read_frame(&mut reader).unwrap().unwrap(), json!({}));
        assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn a_deeply_nested_answer_is_read() {
        // As clangd's AST of a long macro-built expression: far past serde_json's
        // default 128 levels. Read on a stack like the reader thread's.
        let depth = 1000;
        let body = format!("{}1{}", r#"{"children":["#.repeat(depth), "]}".repeat(depth));
        let mut input = format!("Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        input.extend_from_slice(body.as_bytes());
        let reader = std::thread::Builder::new().stack_size(READER_STACK).spawn(move || {
            let value = read_frame(&mut std::io::Cursor::new(input)).unwrap().unwrap();
            let mut node = &value;
            let mut levels = 0;
            while let Some(child) = node.get("children").and_then(|c| c.get(0)) {
                node = child;
                levels += 1;
            }
            (levels, node.clone())
        });
        assert_eq!(reader.unwrap().join().unwrap(), (depth, json!(1)));
    }

    #[test]
    fn a_frame_without_length_is_an_error() {
        let mut reader = std::io::Cursor::new(b"X-Other: 1\r\n\r\n{}".to_vec());
        assert!(read_frame(&mut reader).is_err());
    }
}
