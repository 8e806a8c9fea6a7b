//! The comparison's tables as Parquet, for fleet-scale analysis (DuckDB,
//! Spark, pandas). Schemas (one row each):
//!
//! * `table5.parquet`: workload, platform, runs, shared_mean,
//!   cumulative_rate, named_share, exposure, isolation_score, score_ci_low, score_ci_high — one per experiment;
//! * `shared_locks.parquet`: workload, platform, lock_name, function, file,
//!   kind, scope, subsystem, runs, cumulative_rate — one per shared lock
//!   identity of an experiment;
//! * `subsystems.parquet`: workload, platform, subsystem, cumulative_rate.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, StringArray, UInt64Array};
use lockscope_trace::{write_table, Scope, TraceError};

use crate::compare::Comparison;

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(values))
}

fn floats(values: impl Iterator<Item = f64>) -> ArrayRef {
    Arc::new(Float64Array::from_iter_values(values))
}

/// Writes the three tables into `dir` (which must not hold them yet).
pub fn write_parquet(c: &Comparison, dir: &Path) -> Result<(), TraceError> {
    let cells = &c.cells;
    write_table(
        &dir.join("table5.parquet"),
        vec![
            ("workload", strings(cells.iter().map(|x| x.workload.as_str()))),
            ("platform", strings(cells.iter().map(|x| x.platform.as_str()))),
            ("runs", Arc::new(UInt64Array::from_iter_values(cells.iter().map(|x| x.runs as u64)))),
            ("shared_mean", floats(cells.iter().map(|x| x.shared_mean))),
            ("cumulative_rate", floats(cells.iter().map(|x| x.cumulative_rate))),
            ("named_share", Arc::new(Float64Array::from_iter(cells.iter().map(|x| x.named_share))) as ArrayRef),
            ("exposure", floats(cells.iter().map(|x| x.exposure))),
            ("isolation_score", floats(cells.iter().map(|x| x.isolation_score))),
            ("score_ci_low", floats(cells.iter().map(|x| x.score_ci_low))),
            ("score_ci_high", floats(cells.iter().map(|x| x.score_ci_high))),
        ],
    )?;
    let locks = &c.shared_locks;
    write_table(
        &dir.join("shared_locks.parquet"),
        vec![
            ("workload", strings(locks.iter().map(|l| l.workload.as_str()))),
            ("platform", strings(locks.iter().map(|l| l.platform.as_str()))),
            ("lock_name", strings(locks.iter().map(|l| l.lock.name.as_str()))),
            ("function", strings(locks.iter().map(|l| l.lock.function.as_str()))),
            ("file", strings(locks.iter().map(|l| l.lock.file.as_str()))),
            ("kind", strings(locks.iter().map(|l| l.lock.kind.name()))),
            ("scope", strings(locks.iter().map(|l| l.scope.map_or("", Scope::name)))),
            ("subsystem", strings(locks.iter().map(|l| l.subsystem.as_deref().unwrap_or("")))),
            ("runs", Arc::new(UInt64Array::from_iter_values(locks.iter().map(|l| l.runs as u64)))),
            ("cumulative_rate", floats(locks.iter().map(|l| l.cumulative_rate))),
        ],
    )?;
    let subs = &c.subsystems;
    write_table(
        &dir.join("subsystems.parquet"),
        vec![
            ("workload", strings(subs.iter().map(|s| s.workload.as_str()))),
            ("platform", strings(subs.iter().map(|s| s.platform.as_str()))),
            ("subsystem", strings(subs.iter().map(|s| s.subsystem.as_str()))),
            ("cumulative_rate", floats(subs.iter().map(|s| s.cumulative_rate))),
        ],
    )?;
    Ok(())
}
