//! On-disk format: a directory holding `trace.json` (the metadata document,
//! [`TraceMeta`]) and three Parquet tables:
//!
//! | file | columns |
//! |---|---|
//! | `locks.parquet` | workload u32, tgid u32, lock_addr u64, generation u32, flags u32, kind string, stack_id i32, count u64, wait_total_ns u64, wait_max_ns u64, hold_total_ns u64, hold_max_ns u64, failed_trylocks u64, first_ns u64, in_interrupt bool |
//! | `stacks.parquet` | stack_id i32, frames `list<u64>` (innermost first) |
//! | `symbols.parquet` | addr u64, size u64, name string, module string?, kind string (`text`/`data`) |
//!
//! and, where there is something to hold, `sites.parquet` (call sites in the
//! source), `places.parquet` (where locks live), `names.parquet` (run-time
//! names) and `holders.parquet` (waiter u32, holder_workload u32?,
//! holder_tgid u32?, lock_addr u64, count u64, wait_total_ns u64,
//! in_interrupt bool (absent before it was recorded: false): a workload's
//! waits by the holder of the lock).
//!
//! The directory is written under a temporary name and renamed into place, so
//! a reader never sees half a trace; it is 0700 and its files 0600 because
//! kernel addresses defeat KASLR. `trace.json` lists each table with its
//! size and SHA-256, checked before the table is decoded: a damaged trace is
//! named as such, never fed to the Parquet decoder.
//!
//! Versions: 2 spells lock kinds, scopes and site methods one way
//! (`rwsem_read`, `function_name`) and adds the checksums; version 1 traces
//! (`rwsem:read`, `function name`, no checksums) still read.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder, UInt64Builder};
use arrow_array::{Array, ArrayRef, BooleanArray, Int32Array, ListArray, RecordBatch, StringArray, UInt32Array, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::model::*;

pub const FORMAT_NAME: &str = "lockscope-trace";
pub const FORMAT_VERSION: u32 = 2;
const META_FILE: &str = "trace.json";
const LOCKS_FILE: &str = "locks.parquet";
const STACKS_FILE: &str = "stacks.parquet";
const SYMBOLS_FILE: &str = "symbols.parquet";
const SITES_FILE: &str = "sites.parquet";
const PLACES_FILE: &str = "places.parquet";
const NAMES_FILE: &str = "names.parquet";
const HOLDERS_FILE: &str = "holders.parquet";

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{0}: no such trace")]
    NotFound(PathBuf),
    #[error("{0}: not a lockscope trace (expected a directory holding {META_FILE})")]
    Foreign(PathBuf),
    #[error("{path}: {META_FILE} says trace format {found}, written by a newer lockscope (this build reads up to {FORMAT_VERSION}); upgrade lockscope to read it")]
    Newer { path: PathBuf, found: u32 },
    #[error(
        "{path}: {file} is truncated ({found} bytes, the trace says {expected}); the recording was cut short or the copy is incomplete"
    )]
    Truncated { path: PathBuf, file: String, found: u64, expected: u64 },
    #[error("{path}: {file} is corrupt: {reason}")]
    Corrupt { path: PathBuf, file: String, reason: String },
    #[error("{0}: already exists; choose another output or pass --force to replace it")]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TraceError + '_ {
    move |source| TraceError::Io { path: path.to_owned(), source }
}

/// Writes `trace` to the directory `path`, atomically. An existing trace is
/// replaced only when `force` is set.
pub fn write_trace(path: &Path, trace: &Trace, force: bool) -> Result<(), TraceError> {
    if path.exists() && !force {
        return Err(TraceError::Exists(path.to_owned()));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| TraceError::Foreign(path.to_owned()))?.to_string_lossy().into_owned();
    let staging = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::DirBuilder::new().mode(0o700).create(&staging).map_err(io(&staging))?;

    let result = write_contents(&staging, trace).and_then(|()| {
        if path.exists() {
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            fs::rename(path, &old).map_err(io(path))?;
            fs::rename(&staging, path).map_err(io(path))?;
            fs::remove_dir_all(&old).map_err(io(&old))
        } else {
            fs::rename(&staging, path).map_err(io(path))
        }
    });
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
    }
    result
}

fn write_contents(dir: &Path, trace: &Trace) -> Result<(), TraceError> {
    let mut tables = vec![
        (LOCKS_FILE, locks_batch(&trace.records)),
        (STACKS_FILE, stacks_batch(&trace.stacks)),
        (SYMBOLS_FILE, symbols_batch(&trace.symbols)),
    ];
    // Only a resolved trace has sites; readers treat the table as optional.
    if !trace.sites.is_empty() {
        tables.push((SITES_FILE, sites_batch(&trace.sites)));
    }
    // Only where the kernel tells where locks live (and naming ran).
    if !trace.places.is_empty() {
        tables.push((PLACES_FILE, places_batch(&trace.places)));
    }
    if !trace.names.is_empty() || !trace.unnamed.is_empty() {
        tables.push((NAMES_FILE, names_batch(&trace.names, &trace.unnamed)));
    }
    // Contention mode's waits by holder.
    if !trace.held_waits.is_empty() {
        tables.push((HOLDERS_FILE, holders_batch(&trace.held_waits)));
    }
    let mut meta = trace.meta.clone();
    meta.format = FORMAT_NAME.to_owned();
    meta.version = FORMAT_VERSION;
    meta.files.clear();
    for (file, batch) in tables {
        let path = dir.join(file);
        let bytes = write_parquet(&path, &batch)?;
        let sha256 = Some(sha256_of(&fs::read(&path).map_err(io(&path))?));
        meta.files.push(TraceFile { name: file.to_owned(), bytes, rows: batch.num_rows() as u64, sha256 });
    }
    let json = sealed_document(meta);
    let path = dir.join(META_FILE);
    let mut f = create_private(&path)?;
    f.write_all(&json).and_then(|()| f.sync_all()).map_err(io(&path))
}

/// Where a document's own checksum goes, as serde_json writes the field.
const DOCUMENT_SUM: &[u8] = b"\"document_sha256\": \"";
const SUM_LEN: usize = 64;

/// `meta` as JSON, carrying the SHA-256 of its own bytes (taken with the
/// checksum's place holding zeros).
fn sealed_document(mut meta: TraceMeta) -> Vec<u8> {
    meta.document_sha256 = Some("0".repeat(SUM_LEN));
    let mut json = serde_json::to_vec_pretty(&meta).expect("trace metadata serializes");
    let at = checksum_position(&json).expect("the checksum field is written");
    let sum = sha256_of(&json);
    json[at..at + SUM_LEN].copy_from_slice(sum.as_bytes());
    json
}

/// Where a document's checksum value starts, if it has one.
fn checksum_position(json: &[u8]) -> Option<usize> {
    let at = json.windows(DOCUMENT_SUM.len()).position(|w| w == DOCUMENT_SUM)? + DOCUMENT_SUM.len();
    (json.len() >= at + SUM_LEN).then_some(at)
}

/// Whether the document's bytes are the ones its checksum was taken over;
/// None when it carries no checksum.
fn document_intact(json: &[u8]) -> Option<bool> {
    let at = checksum_position(json)?;
    let mut zeroed = json.to_vec();
    let listed = String::from_utf8_lossy(&json[at..at + SUM_LEN]).into_owned();
    zeroed[at..at + SUM_LEN].fill(b'0');
    Some(sha256_of(&zeroed) == listed)
}

fn sha256_of(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn create_private(path: &Path) -> Result<File, TraceError> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(io(path))
}

fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<u64, TraceError> {
    let file = create_private(path)?;
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let corrupt = |e: parquet::errors::ParquetError| TraceError::Io { path: path.to_owned(), source: std::io::Error::other(e) };
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(corrupt)?;
    writer.write(batch).map_err(corrupt)?;
    let file = writer.into_inner().map_err(corrupt)?;
    file.sync_all().map_err(io(path))?;
    Ok(file.metadata().map_err(io(path))?.len())
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    RecordBatch::try_from_iter(columns).expect("columns of equal length")
}

/// Writes named columns of equal length as a Parquet file (zstd, mode 0600),
/// as the trace's own tables are written; it must not exist yet.
pub fn write_table(path: &Path, columns: Vec<(&str, ArrayRef)>) -> Result<u64, TraceError> {
    write_parquet(path, &batch(columns))
}

fn locks_batch(records: &[LockRecord]) -> RecordBatch {
    let u32s = |f: fn(&LockRecord) -> u32| -> ArrayRef { Arc::new(records.iter().map(f).collect::<UInt32Array>()) };
    let u64s = |f: fn(&LockRecord) -> u64| -> ArrayRef { Arc::new(records.iter().map(f).collect::<UInt64Array>()) };
    batch(vec![
        ("workload", u32s(|r| r.workload)),
        ("tgid", u32s(|r| r.tgid)),
        ("lock_addr", u64s(|r| r.lock_addr)),
        ("generation", u32s(|r| r.generation)),
        ("flags", u32s(|r| r.flags)),
        ("kind", Arc::new(records.iter().map(|r| Some(r.kind().name())).collect::<StringArray>())),
        ("stack_id", Arc::new(records.iter().map(|r| r.stack_id).collect::<Int32Array>())),
        ("count", u64s(|r| r.count)),
        ("wait_total_ns", u64s(|r| r.wait_total_ns)),
        ("wait_max_ns", u64s(|r| r.wait_max_ns)),
        ("hold_total_ns", u64s(|r| r.hold_total_ns)),
        ("hold_max_ns", u64s(|r| r.hold_max_ns)),
        ("failed_trylocks", u64s(|r| r.failed_trylocks)),
        ("first_ns", u64s(|r| r.first_ns)),
        ("in_interrupt", Arc::new(records.iter().map(|r| Some(r.in_interrupt)).collect::<BooleanArray>())),
    ])
}

fn stacks_batch(stacks: &[Stack]) -> RecordBatch {
    let mut frames = ListBuilder::new(UInt64Builder::new());
    for s in stacks {
        frames.values().append_slice(&s.frames);
        frames.append(true);
    }
    batch(vec![("stack_id", Arc::new(stacks.iter().map(|s| s.id).collect::<Int32Array>())), ("frames", Arc::new(frames.finish()))])
}

fn symbols_batch(symbols: &[Symbol]) -> RecordBatch {
    let kind = |s: &Symbol| match s.kind {
        SymbolKind::Text => "text",
        SymbolKind::Data => "data",
    };
    batch(vec![
        ("addr", Arc::new(symbols.iter().map(|s| s.addr).collect::<UInt64Array>())),
        ("size", Arc::new(symbols.iter().map(|s| s.size).collect::<UInt64Array>())),
        ("name", Arc::new(symbols.iter().map(|s| Some(s.name.as_str())).collect::<StringArray>())),
        ("module", Arc::new(symbols.iter().map(|s| s.module.as_deref()).collect::<StringArray>())),
        ("kind", Arc::new(symbols.iter().map(|s| Some(kind(s))).collect::<StringArray>())),
    ])
}

fn sites_batch(sites: &[StackSite]) -> RecordBatch {
    let strings = |f: fn(&StackSite) -> Option<&str>| -> ArrayRef { Arc::new(sites.iter().map(f).collect::<StringArray>()) };
    batch(vec![
        ("stack_id", Arc::new(sites.iter().map(|s| s.stack_id).collect::<Int32Array>())),
        ("function", strings(|s| Some(&s.function))),
        ("file", strings(|s| s.file.as_deref())),
        ("line", Arc::new(sites.iter().map(|s| s.line).collect::<UInt32Array>())),
        ("scope", strings(|s| Some(s.scope.name()))),
        ("object", strings(|s| s.object.as_deref())),
        ("member", strings(|s| s.member.as_deref())),
        ("variable", strings(|s| s.variable.as_deref())),
        ("lock_type", strings(|s| s.lock_type.as_deref())),
        ("subsystem", strings(|s| s.subsystem.as_deref())),
        ("method", strings(|s| Some(s.method.name()))),
        ("candidates", Arc::new(sites.iter().map(|s| s.candidates).collect::<UInt32Array>())),
        ("reason", strings(|s| s.reason.as_deref())),
    ])
}

fn places_batch(places: &[LockPlace]) -> RecordBatch {
    let strings =
        |f: fn(&SlabCache) -> &str| -> ArrayRef { Arc::new(places.iter().map(|p| p.slab.as_ref().map(f)).collect::<StringArray>()) };
    let u32s = |f: fn(&SlabCache) -> u32| -> ArrayRef { Arc::new(places.iter().map(|p| p.slab.as_ref().map(f)).collect::<UInt32Array>()) };
    batch(vec![
        ("lock_addr", Arc::new(places.iter().map(|p| p.lock_addr).collect::<UInt64Array>())),
        ("generation", Arc::new(places.iter().map(|p| p.generation).collect::<UInt32Array>())),
        ("cache", strings(|c| &c.name)),
        ("slot_size", u32s(|c| c.slot_size)),
        ("object_size", u32s(|c| c.object_size)),
        ("red_left_pad", u32s(|c| c.red_left_pad)),
        ("order", u32s(|c| c.order)),
        ("min_order", u32s(|c| c.min_order)),
        ("slab_start", Arc::new(places.iter().map(|p| p.slab_start).collect::<UInt64Array>())),
    ])
}

fn places_from(batch: &RecordBatch) -> Result<Vec<LockPlace>, String> {
    let addr = column::<UInt64Array>(batch, "lock_addr")?;
    let cache = column::<StringArray>(batch, "cache")?;
    let u32s = |n| column::<UInt32Array>(batch, n);
    let (slot, object, pad, order, min_order) =
        (u32s("slot_size")?, u32s("object_size")?, u32s("red_left_pad")?, u32s("order")?, u32s("min_order")?);
    // Not in the first traces that noted places.
    let start = batch.column_by_name("slab_start").map(|_| column::<UInt64Array>(batch, "slab_start")).transpose()?;
    let generation = generations(batch)?;
    Ok((0..batch.num_rows())
        .map(|i| LockPlace {
            lock_addr: addr.value(i),
            generation: generation(i),
            slab_start: start.filter(|s| !s.is_null(i)).map(|s| s.value(i)),
            slab: (!cache.is_null(i)).then(|| SlabCache {
                name: cache.value(i).to_owned(),
                slot_size: slot.value(i),
                object_size: object.value(i),
                red_left_pad: pad.value(i),
                order: order.value(i),
                min_order: min_order.value(i),
            }),
        })
        .collect())
}

/// A holder as two nullable columns: `holder_workload` (a recorded
/// workload's id) or `holder_tgid` (another process); neither: unknown.
fn holders_batch(waits: &[HeldWait]) -> RecordBatch {
    let workload = waits.iter().map(|w| match w.holder {
        Holder::Workload(id) => Some(id),
        _ => None,
    });
    let tgid = waits.iter().map(|w| match w.holder {
        Holder::Other { tgid } => Some(tgid),
        _ => None,
    });
    batch(vec![
        ("waiter", Arc::new(waits.iter().map(|w| w.waiter).collect::<UInt32Array>())),
        ("holder_workload", Arc::new(workload.collect::<UInt32Array>())),
        ("holder_tgid", Arc::new(tgid.collect::<UInt32Array>())),
        ("lock_addr", Arc::new(waits.iter().map(|w| w.lock_addr).collect::<UInt64Array>())),
        ("count", Arc::new(waits.iter().map(|w| w.count).collect::<UInt64Array>())),
        ("wait_total_ns", Arc::new(waits.iter().map(|w| w.wait_total_ns).collect::<UInt64Array>())),
        ("in_interrupt", Arc::new(waits.iter().map(|w| Some(w.in_interrupt)).collect::<BooleanArray>())),
    ])
}

fn holders_from(batch: &RecordBatch) -> Result<Vec<HeldWait>, String> {
    let u32s = |n| column::<UInt32Array>(batch, n);
    let u64s = |n| column::<UInt64Array>(batch, n);
    let (waiter, workload, tgid) = (u32s("waiter")?, u32s("holder_workload")?, u32s("holder_tgid")?);
    let (lock, count, wait) = (u64s("lock_addr")?, u64s("count")?, u64s("wait_total_ns")?);
    let interrupt = batch.column_by_name("in_interrupt").map(|_| column::<BooleanArray>(batch, "in_interrupt")).transpose()?;
    Ok((0..batch.num_rows())
        .map(|i| HeldWait {
            waiter: waiter.value(i),
            holder: match (workload.is_null(i), tgid.is_null(i)) {
                (false, _) => Holder::Workload(workload.value(i)),
                (true, false) => Holder::Other { tgid: tgid.value(i) },
                (true, true) => Holder::Unknown,
            },
            lock_addr: lock.value(i),
            count: count.value(i),
            wait_total_ns: wait.value(i),
            in_interrupt: interrupt.is_some_and(|c| c.value(i)),
        })
        .collect())
}

/// Names and unnamed locks in one table: an unnamed lock's row has only its
/// address and `reason`.
fn names_batch(names: &[LockName], unnamed: &[UnnamedLock]) -> RecordBatch {
    let n = names.len() + unnamed.len();
    let text = |f: fn(&LockName) -> Option<&str>| -> ArrayRef {
        Arc::new(names.iter().map(f).chain(unnamed.iter().map(|_| None)).collect::<StringArray>())
    };
    let strings_of = |f: fn(&LockName) -> &[String]| -> ArrayRef {
        let mut list = ListBuilder::new(StringBuilder::new());
        for name in names {
            for a in f(name) {
                list.values().append_value(a);
            }
            list.append(true);
        }
        for _ in unnamed {
            list.append(true);
        }
        Arc::new(list.finish())
    };
    let addrs = names.iter().map(|n| n.lock_addr).chain(unnamed.iter().map(|u| u.lock_addr));
    let generations = names.iter().map(|n| n.generation).chain(unnamed.iter().map(|u| u.generation));
    let reasons = (0..names.len()).map(|_| None).chain(unnamed.iter().map(|u| Some(u.reason.as_str())));
    debug_assert_eq!(addrs.clone().count(), n);
    batch(vec![
        ("lock_addr", Arc::new(addrs.collect::<UInt64Array>())),
        ("generation", Arc::new(generations.collect::<UInt32Array>())),
        ("by", text(|n| Some(n.by.name()))),
        ("object", text(|n| n.object.as_deref())),
        ("member", text(|n| n.member.as_deref())),
        ("global", text(|n| n.global.as_deref())),
        ("confidence", text(|n| Some(n.confidence.name()))),
        ("alternatives", strings_of(|n| &n.alternatives)),
        ("spellings", strings_of(|n| &n.spellings)),
        ("reason", Arc::new(reasons.collect::<StringArray>())),
    ])
}

fn names_from(batch: &RecordBatch) -> Result<(Vec<LockName>, Vec<UnnamedLock>), String> {
    let addr = column::<UInt64Array>(batch, "lock_addr")?;
    let text = |name| column::<StringArray>(batch, name);
    let (by, object, member, global, confidence) = (text("by")?, text("object")?, text("member")?, text("global")?, text("confidence")?);
    let (alternatives, spellings, reason) =
        (column::<ListArray>(batch, "alternatives")?, column::<ListArray>(batch, "spellings")?, text("reason")?);
    let strings_at = |list: &ListArray, i: usize| -> Result<Vec<String>, String> {
        let values = list.value(i);
        let values = values.as_any().downcast_ref::<StringArray>().ok_or("a list of names is not strings")?;
        Ok(values.iter().flatten().map(str::to_owned).collect())
    };
    let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
    let generation = generations(batch)?;
    let (mut names, mut unnamed) = (vec![], vec![]);
    for i in 0..batch.num_rows() {
        if let Some(reason) = opt(reason, i) {
            unnamed.push(UnnamedLock { lock_addr: addr.value(i), generation: generation(i), reason });
            continue;
        }
        names.push(LockName {
            lock_addr: addr.value(i),
            generation: generation(i),
            by: NameSource::parse(by.value(i)).ok_or_else(|| format!("unknown name source {:?}", by.value(i)))?,
            object: opt(object, i),
            member: opt(member, i),
            global: opt(global, i),
            confidence: Confidence::parse(confidence.value(i)).ok_or_else(|| format!("unknown confidence {:?}", confidence.value(i)))?,
            alternatives: strings_at(alternatives, i)?,
            spellings: strings_at(spellings, i)?,
        });
    }
    Ok((names, unnamed))
}

fn sites_from(batch: &RecordBatch) -> Result<Vec<StackSite>, String> {
    let ids = column::<Int32Array>(batch, "stack_id")?;
    let line = column::<UInt32Array>(batch, "line")?;
    let candidates = column::<UInt32Array>(batch, "candidates")?;
    let text = |name| column::<StringArray>(batch, name);
    let (function, file, scope, object) = (text("function")?, text("file")?, text("scope")?, text("object")?);
    let (member, variable, lock_type, subsystem) = (text("member")?, text("variable")?, text("lock_type")?, text("subsystem")?);
    let (method, reason) = (text("method")?, text("reason")?);
    let opt = |a: &StringArray, i: usize| (!a.is_null(i)).then(|| a.value(i).to_owned());
    (0..batch.num_rows())
        .map(|i| {
            Ok(StackSite {
                stack_id: ids.value(i),
                function: function.value(i).to_owned(),
                file: opt(file, i),
                line: (!line.is_null(i)).then(|| line.value(i)),
                scope: Scope::parse(scope.value(i)).ok_or_else(|| format!("unknown scope {:?}", scope.value(i)))?,
                object: opt(object, i),
                member: opt(member, i),
                variable: opt(variable, i),
                lock_type: opt(lock_type, i),
                subsystem: opt(subsystem, i),
                method: SiteMethod::parse(method.value(i)).ok_or_else(|| format!("unknown site method {:?}", method.value(i)))?,
                candidates: candidates.value(i),
                reason: opt(reason, i),
            })
        })
        .collect()
}

/// Reads a trace written by [`write_trace`], checking that it is complete.
pub fn read_trace(path: &Path) -> Result<Trace, TraceError> {
    if !path.exists() {
        return Err(TraceError::NotFound(path.to_owned()));
    }
    let meta_path = path.join(META_FILE);
    if !path.is_dir() || !meta_path.is_file() {
        return Err(TraceError::Foreign(path.to_owned()));
    }
    let text = fs::read(&meta_path).map_err(io(&meta_path))?;
    let damaged = |reason: String| TraceError::Corrupt { path: path.to_owned(), file: META_FILE.to_owned(), reason };
    // Check identity and version before the full schema, so a newer trace
    // gets "upgrade" rather than a parse error.
    let header: serde_json::Value = serde_json::from_slice(&text).map_err(|e| damaged(format!("not JSON: {e}")))?;
    if header.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
        return Err(TraceError::Foreign(path.to_owned()));
    }
    let version = header.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version > FORMAT_VERSION as u64 {
        return Err(TraceError::Newer { path: path.to_owned(), found: version.min(u32::MAX as u64) as u32 });
    }
    match document_intact(&text) {
        Some(true) => {}
        Some(false) => return Err(damaged("its SHA-256 is not the one it lists: the file was changed or damaged".into())),
        None if version >= 2 => return Err(damaged("it lists no checksum of itself".into())),
        None => {} // version 1 had no checksums
    }
    let meta: TraceMeta = serde_json::from_value(header).map_err(|e| damaged(e.to_string()))?;

    let table = |file: &str| -> Result<Vec<RecordBatch>, TraceError> {
        let expected = meta.files.iter().find(|f| f.name == file).ok_or_else(|| TraceError::Corrupt {
            path: path.to_owned(),
            file: META_FILE.to_owned(),
            reason: format!("does not list {file}"),
        })?;
        let file_path = path.join(file);
        let bytes = fs::read(&file_path).unwrap_or_default();
        let found = bytes.len() as u64;
        if found != expected.bytes {
            return Err(TraceError::Truncated { path: path.to_owned(), file: file.to_owned(), found, expected: expected.bytes });
        }
        let corrupt = |reason: String| TraceError::Corrupt { path: path.to_owned(), file: file.to_owned(), reason };
        match &expected.sha256 {
            Some(sum) if *sum != sha256_of(&bytes) => {
                return Err(corrupt(format!("its SHA-256 is not the one {META_FILE} lists: the file was changed or damaged")))
            }
            Some(_) => {}
            None if meta.version >= 2 => return Err(corrupt(format!("{META_FILE} lists no checksum of it"))),
            None => {} // version 1 had no checksums
        }
        read_parquet(bytes).map_err(corrupt)
    };
    let corrupt = |file: &str| {
        let path = path.to_owned();
        let file = file.to_owned();
        move |reason: String| TraceError::Corrupt { path, file, reason }
    };
    let records = table(LOCKS_FILE)?.iter().map(records_from).collect::<Result<Vec<_>, _>>().map_err(corrupt(LOCKS_FILE))?.concat();
    let stacks = table(STACKS_FILE)?.iter().map(stacks_from).collect::<Result<Vec<_>, _>>().map_err(corrupt(STACKS_FILE))?.concat();
    let symbols = table(SYMBOLS_FILE)?.iter().map(symbols_from).collect::<Result<Vec<_>, _>>().map_err(corrupt(SYMBOLS_FILE))?.concat();
    let optional = |file: &str| meta.files.iter().any(|f| f.name == file);
    let sites = if optional(SITES_FILE) {
        table(SITES_FILE)?.iter().map(sites_from).collect::<Result<Vec<_>, _>>().map_err(corrupt(SITES_FILE))?.concat()
    } else {
        vec![]
    };
    let places = if optional(PLACES_FILE) {
        table(PLACES_FILE)?.iter().map(places_from).collect::<Result<Vec<_>, _>>().map_err(corrupt(PLACES_FILE))?.concat()
    } else {
        vec![]
    };
    let (mut names, mut unnamed) = (vec![], vec![]);
    if optional(NAMES_FILE) {
        for batch in table(NAMES_FILE)? {
            let (n, u) = names_from(&batch).map_err(corrupt(NAMES_FILE))?;
            names.extend(n);
            unnamed.extend(u);
        }
    }
    let held_waits = if optional(HOLDERS_FILE) {
        table(HOLDERS_FILE)?.iter().map(holders_from).collect::<Result<Vec<_>, _>>().map_err(corrupt(HOLDERS_FILE))?.concat()
    } else {
        vec![]
    };
    Ok(Trace { meta, records, stacks, symbols, sites, places, names, unnamed, held_waits })
}

fn read_parquet(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, String> {
    let decode = move || {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).and_then(|b| b.build()).map_err(|e| e.to_string())?;
        reader.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())
    };
    // The decoder can panic on damaged input; checksums keep damage away from
    // it, but version 1 traces have none.
    std::panic::catch_unwind(decode).unwrap_or_else(|_| Err("the Parquet decoder could not read it".into()))
}

/// Each row's lock generation; 0 in traces that noted places per address.
fn generations(batch: &RecordBatch) -> Result<impl Fn(usize) -> u32 + '_, String> {
    let column = batch.column_by_name("generation").map(|_| column::<UInt32Array>(batch, "generation")).transpose()?;
    Ok(move |i| column.map_or(0, |c| c.value(i)))
}

fn column<'a, T: Array + 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
    batch
        .column_by_name(name)
        .ok_or_else(|| format!("missing column {name}"))?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} has type {}", batch.column_by_name(name).unwrap().data_type()))
}

fn records_from(batch: &RecordBatch) -> Result<Vec<LockRecord>, String> {
    let u32s = |n| column::<UInt32Array>(batch, n);
    let u64s = |n| column::<UInt64Array>(batch, n);
    let (workload, tgid, generation, flags) = (u32s("workload")?, u32s("tgid")?, u32s("generation")?, u32s("flags")?);
    let (addr, count) = (u64s("lock_addr")?, u64s("count")?);
    let (wait_total, wait_max) = (u64s("wait_total_ns")?, u64s("wait_max_ns")?);
    let (hold_total, hold_max) = (u64s("hold_total_ns")?, u64s("hold_max_ns")?);
    let (failed, first) = (u64s("failed_trylocks")?, u64s("first_ns")?);
    let stack_id = column::<Int32Array>(batch, "stack_id")?;
    let in_interrupt = column::<BooleanArray>(batch, "in_interrupt")?;
    Ok((0..batch.num_rows())
        .map(|i| LockRecord {
            workload: workload.value(i),
            tgid: tgid.value(i),
            lock_addr: addr.value(i),
            generation: generation.value(i),
            flags: flags.value(i),
            stack_id: stack_id.value(i),
            count: count.value(i),
            wait_total_ns: wait_total.value(i),
            wait_max_ns: wait_max.value(i),
            hold_total_ns: hold_total.value(i),
            hold_max_ns: hold_max.value(i),
            failed_trylocks: failed.value(i),
            first_ns: first.value(i),
            in_interrupt: in_interrupt.value(i),
        })
        .collect())
}

fn stacks_from(batch: &RecordBatch) -> Result<Vec<Stack>, String> {
    let ids = column::<Int32Array>(batch, "stack_id")?;
    let frames = column::<ListArray>(batch, "frames")?;
    (0..batch.num_rows())
        .map(|i| {
            let list = frames.value(i);
            let values = list.as_any().downcast_ref::<UInt64Array>().ok_or("frames are not u64")?;
            Ok(Stack { id: ids.value(i), frames: values.values().to_vec() })
        })
        .collect()
}

fn symbols_from(batch: &RecordBatch) -> Result<Vec<Symbol>, String> {
    let addr = column::<UInt64Array>(batch, "addr")?;
    let size = column::<UInt64Array>(batch, "size")?;
    let name = column::<StringArray>(batch, "name")?;
    let module = column::<StringArray>(batch, "module")?;
    let kind = column::<StringArray>(batch, "kind")?;
    (0..batch.num_rows())
        .map(|i| {
            Ok(Symbol {
                addr: addr.value(i),
                size: size.value(i),
                name: name.value(i).to_owned(),
                module: (!module.is_null(i)).then(|| module.value(i).to_owned()),
                kind: match kind.value(i) {
                    "text" => SymbolKind::Text,
                    "data" => SymbolKind::Data,
                    other => return Err(format!("unknown symbol kind {other:?}")),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn sample() -> Trace {
        Trace {
            meta: TraceMeta {
                format: String::new(),
                version: 0,
                lockscope_version: "test".into(),
                kernel_release: "6.1.0-test".into(),
                hostname: "h".into(),
                mode: Mode::Contention,
                hook: "tp_btf".into(),
                attached: vec!["lock:contention_begin".into()],
                notes: vec![],
                started_unix_ns: 1_000,
                ended_unix_ns: 2_000_001_000,
                end_reason: EndReason::WorkloadsExited,
                kallsyms_all: false,
                workloads: vec![Workload {
                    id: 1,
                    name: "a".into(),
                    selector: Selector::Run { command: "true".into() },
                    pids: vec![42],
                    started_ns: Some(250_000_000),
                    run_time_ns: 2_000_000_000,
                    exit: Some("exit status 0".into()),
                    irq_filtered: 3,
                }],
                counters: Counters { events: 10, irq_filtered: 3, ..Default::default() },
                files: vec![],
                label: None,
                runqueues: vec![],
                sites_from: None,
                recorder_cost: None,
                document_sha256: None,
            },
            records: vec![LockRecord {
                workload: 1,
                tgid: 42,
                lock_addr: 0xffff_8880_0000_1000,
                generation: 0,
                flags: lock_flags::SPIN,
                stack_id: 7,
                count: 5,
                wait_total_ns: 500,
                wait_max_ns: 200,
                hold_total_ns: 0,
                hold_max_ns: 0,
                failed_trylocks: 2,
                first_ns: 77,
                in_interrupt: false,
            }],
            stacks: vec![Stack { id: 7, frames: vec![0xffff_ffff_8100_0010, 0xffff_ffff_8100_2000] }],
            symbols: vec![Symbol {
                addr: 0xffff_ffff_8100_0000,
                size: 0x100,
                name: "do_thing".into(),
                module: Some("ext4".into()),
                kind: SymbolKind::Text,
            }],
            sites: vec![StackSite {
                stack_id: 7,
                function: "do_thing".into(),
                file: Some("fs/fs_struct.c".into()),
                line: Some(40),
                scope: Scope::Member,
                object: Some("fs_struct".into()),
                member: Some("lock".into()),
                variable: None,
                lock_type: Some("spinlock_t".into()),
                subsystem: Some("fs".into()),
                method: SiteMethod::Function,
                candidates: 1,
                reason: None,
            }],
            places: vec![
                LockPlace {
                    lock_addr: 0xffff_8880_0000_1000,
                    generation: 2,
                    slab: Some(SlabCache {
                        name: "bdev_cache".into(),
                        slot_size: 1536,
                        object_size: 1520,
                        red_left_pad: 0,
                        order: 3,
                        min_order: 0,
                    }),
                    slab_start: Some(0xffff_8880_0000_0000),
                },
                LockPlace { lock_addr: 0xffff_ffff_8300_0000, generation: 0, slab: None, slab_start: None },
            ],
            names: vec![LockName {
                lock_addr: 0xffff_8880_0000_1000,
                generation: 2,
                by: NameSource::Slab,
                object: Some("bdev_inode".into()),
                member: Some("vfs_inode.i_data.i_private_lock".into()),
                global: None,
                confidence: Confidence::Inferred,
                alternatives: vec!["block_device.bd_size_lock".into()],
                spellings: vec!["inode.i_data.i_private_lock".into(), "address_space.i_private_lock".into()],
            }],
            unnamed: vec![UnnamedLock { lock_addr: 0xffff_8880_0000_2000, generation: 1, reason: "no struct fits".into() }],
            held_waits: [Holder::Workload(2), Holder::Other { tgid: 77 }, Holder::Unknown]
                .into_iter()
                .enumerate()
                .map(|(i, holder)| HeldWait {
                    waiter: 1,
                    holder,
                    lock_addr: 0xffff_8880_0000_1000,
                    count: i as u64 + 1,
                    wait_total_ns: 500,
                    in_interrupt: i == 1,
                })
                .collect(),
        }
    }

    #[test]
    fn round_trips_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let trace = sample();
        write_trace(&path, &trace, false).unwrap();
        let back = read_trace(&path).unwrap();
        assert_eq!(back.records, trace.records);
        assert_eq!(back.stacks, trace.stacks);
        assert_eq!(back.symbols, trace.symbols);
        assert_eq!(back.sites, trace.sites);
        assert_eq!(back.places, trace.places);
        assert_eq!(back.names, trace.names);
        assert_eq!(back.unnamed, trace.unnamed);
        assert_eq!(back.held_waits, trace.held_waits);
        assert_eq!(back.meta.format, FORMAT_NAME);
        assert_eq!(back.meta.files.len(), 7, "sites, places, names and holders with the other tables");

        // An unresolved trace has no sites table, and reads back without one.
        let unresolved = Trace { sites: vec![], places: vec![], names: vec![], unnamed: vec![], held_waits: vec![], ..sample() };
        write_trace(&path, &unresolved, true).unwrap();
        let back = read_trace(&path).unwrap();
        assert!(back.sites.is_empty());
        assert_eq!(back.meta.files.len(), 3);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        for f in &back.meta.files {
            let mode = fs::metadata(path.join(&f.name)).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", f.name);
        }
    }

    #[test]
    fn refuses_to_overwrite_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        write_trace(&path, &sample(), false).unwrap();
        assert!(matches!(write_trace(&path, &sample(), false), Err(TraceError::Exists(_))));
        let mut changed = sample();
        changed.records[0].count = 99;
        write_trace(&path, &changed, true).unwrap();
        assert_eq!(read_trace(&path).unwrap().records[0].count, 99);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "staging directories are cleaned up");
    }

    #[test]
    fn names_truncation_foreign_and_newer_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        write_trace(&path, &sample(), false).unwrap();

        let locks = path.join(LOCKS_FILE);
        let bytes = fs::read(&locks).unwrap();
        fs::write(&locks, &bytes[..bytes.len() / 2]).unwrap();
        let err = read_trace(&path).unwrap_err();
        assert!(matches!(&err, TraceError::Truncated { file, .. } if file == LOCKS_FILE), "{err}");

        // Same size but garbage: the Parquet reader must reject it.
        fs::write(&locks, vec![0u8; bytes.len()]).unwrap();
        let err = read_trace(&path).unwrap_err();
        assert!(matches!(&err, TraceError::Corrupt { file, .. } if file == LOCKS_FILE), "{err}");

        let meta = path.join(META_FILE);
        let mut doc: serde_json::Value = serde_json::from_slice(&fs::read(&meta).unwrap()).unwrap();
        doc["version"] = (FORMAT_VERSION + 1).into();
        fs::write(&meta, serde_json::to_vec(&doc).unwrap()).unwrap();
        let err = read_trace(&path).unwrap_err();
        assert!(matches!(err, TraceError::Newer { found, .. } if found == FORMAT_VERSION + 1));
        assert!(err.to_string().contains("upgrade"));

        fs::write(&meta, b"{\"format\": \"something-else\"}").unwrap();
        assert!(matches!(read_trace(&path), Err(TraceError::Foreign(_))));
        assert!(matches!(read_trace(dir.path()), Err(TraceError::Foreign(_))));
        assert!(matches!(read_trace(&dir.path().join("nope")), Err(TraceError::NotFound(_))));
    }

    #[test]
    fn damage_to_trace_json_itself_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        write_trace(&path, &sample(), false).unwrap();
        let meta = path.join(META_FILE);
        let text = fs::read_to_string(&meta).unwrap();
        // A changed value that still parses: the document's own checksum tells.
        fs::write(&meta, text.replace("\"hostname\": \"h\"", "\"hostname\": \"x\"")).unwrap();
        let err = read_trace(&path).unwrap_err();
        assert!(matches!(&err, TraceError::Corrupt { file, .. } if file == META_FILE), "{err}");
        fs::write(&meta, &text[..text.len() / 2]).unwrap();
        let err = read_trace(&path).unwrap_err();
        assert!(matches!(&err, TraceError::Corrupt { file, .. } if file == META_FILE), "{err}");
        fs::write(&meta, &text).unwrap();
        assert!(read_trace(&path).is_ok(), "the document as written is intact");
    }

    #[test]
    fn version_1_traces_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        let placed = StackSite { method: SiteMethod::FunctionName, scope: Scope::Unknown, ..sample().sites[0].clone() };
        write_trace(&path, &Trace { sites: vec![placed], ..sample() }, false).unwrap();
        // As version 1 wrote it: old spellings, no checksums.
        let sites = path.join(SITES_FILE);
        let batch = sites_batch(&read_trace(&path).unwrap().sites);
        let schema = batch.schema();
        let columns: Vec<(&str, ArrayRef)> = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| match f.name().as_str() {
                "method" => ("method", Arc::new(StringArray::from(vec!["function name"])) as ArrayRef),
                name => (name, c.clone()),
            })
            .collect();
        fs::remove_file(&sites).unwrap();
        let bytes = write_table(&sites, columns).unwrap();
        let meta_path = path.join(META_FILE);
        let mut meta: TraceMeta = serde_json::from_slice(&fs::read(&meta_path).unwrap()).unwrap();
        meta.version = 1;
        meta.document_sha256 = None;
        for f in &mut meta.files {
            f.sha256 = None;
            if f.name == SITES_FILE {
                f.bytes = bytes;
            }
        }
        fs::write(&meta_path, serde_json::to_vec_pretty(&meta).unwrap()).unwrap();
        let back = read_trace(&path).unwrap();
        assert_eq!(back.sites[0].method, SiteMethod::FunctionName);
        assert_eq!(back.meta.version, 1);
    }
}
