//! Human (table) and machine (CSV) renderings of an [`Analysis`]; JSON is its
//! serde form.

use std::fmt::Write;

use lockscope_trace::{Frame, Mode, RecorderCost, Scope, SourceLine};

use crate::analyze::{Analysis, LockSummary};

/// Stack frames shown under each lock in the table.
const FRAMES_SHOWN: usize = 8;

/// Aligns `rows` under `headers`, two spaces between columns.
pub fn columns(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let text: Vec<String> = cells.zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut out, &mut headers.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

fn duration_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns} ns"),
        10_000..=9_999_999 => format!("{:.1} us", ns as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.1} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}

/// Acquire mode measures how long locks are held; contention mode how long
/// acquirers waited.
fn timing(mode: Mode, u: &crate::analyze::LockUse) -> (u64, u64) {
    match mode {
        Mode::Acquire => (u.hold_total_ns, u.hold_max_ns),
        Mode::Contention => (u.wait_total_ns, u.wait_max_ns),
    }
}

fn lock_headers(mode: Mode) -> [&'static str; 8] {
    let (total, max) = match mode {
        Mode::Acquire => ("HELD", "MAX HELD"),
        Mode::Contention => ("WAIT", "MAX WAIT"),
    };
    ["LOCK", "KIND", "WORKLOAD", "COUNT", "RATE/S", total, max, "CALL SITE"]
}

fn lock_rows(mode: Mode, locks: &[&LockSummary], rows: &mut Vec<Vec<String>>) {
    for l in locks {
        for (i, u) in l.uses.iter().enumerate() {
            let first = i == 0;
            let (total, max) = timing(mode, u);
            rows.push(vec![
                if first { l.label() } else { String::new() },
                if first { l.kind.to_string() } else { String::new() },
                u.workload_name.clone(),
                u.acquisitions.to_string(),
                format!("{:.1}", u.rate_per_sec),
                duration_ns(total),
                duration_ns(max),
                if first { call_site_label(l) } else { String::new() },
            ]);
        }
    }
}

/// The busiest call site, with its source line when the trace is resolved.
fn call_site_label(l: &LockSummary) -> String {
    let Some(c) = l.call_sites.first() else { return String::new() };
    match (&c.site, &c.source) {
        (Some(site), Some(source)) => format!("{site} ({source})"),
        (Some(site), None) => site.to_string(),
        (None, _) => String::new(),
    }
}

fn stacks_section(out: &mut String, locks: &[&LockSummary]) {
    for l in locks {
        let Some(site) = l.call_sites.first() else { continue };
        let _ = writeln!(out, "  {} ({} of {} from here):", l.label(), site.acquisitions, l.acquisitions);
        for f in site.frames.iter().take(FRAMES_SHOWN) {
            let _ = writeln!(out, "      {f}");
        }
        if site.frames.len() > FRAMES_SHOWN {
            let _ = writeln!(out, "      ... {} more", site.frames.len() - FRAMES_SHOWN);
        }
    }
}

/// The report as text: workloads, shared locks, each workload's private locks,
/// the top call stacks, and every drop and filter counter.
pub fn table(a: &Analysis, top: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "mode {} · kernel {} · {:.1} s recorded", a.mode, a.kernel_release, a.duration_secs);
    for note in &a.notes {
        let _ = writeln!(out, "note: {note}");
    }
    if !a.kallsyms_all {
        let _ = writeln!(out, "(kallsyms lists no data symbols on the recording kernel: locks are shown by address)");
    }
    let _ = writeln!(out);

    let rows: Vec<Vec<String>> = a
        .workloads
        .iter()
        .map(|w| {
            vec![
                w.name.clone(),
                w.selector.clone(),
                w.pids.len().to_string(),
                format!("{:.2} s", w.run_time_secs),
                w.acquisitions.to_string(),
                w.locks.to_string(),
                w.private_locks.to_string(),
                w.shared_locks.to_string(),
                w.irq_filtered.to_string(),
                w.exit.clone().unwrap_or_else(|| "running".into()),
            ]
        })
        .collect();
    out += &columns(&["WORKLOAD", "SELECTOR", "PROCS", "RUN TIME", "ACQUIRED", "LOCKS", "PRIVATE", "SHARED", "IRQ LEFT OUT", "END"], &rows);

    let shared: Vec<&LockSummary> = a.locks.iter().filter(|l| l.shared).take(top).collect();
    let _ = writeln!(out, "\nSHARED LOCKS: {} (top {} by acquisitions)", a.shared_locks, shared.len());
    if !shared.is_empty() {
        let mut rows = Vec::new();
        lock_rows(a.mode, &shared, &mut rows);
        out += &columns(&lock_headers(a.mode), &rows);
    }

    for w in &a.workloads {
        let private: Vec<&LockSummary> = a.locks.iter().filter(|l| !l.shared && l.uses[0].workload == w.id).take(top).collect();
        let _ = writeln!(out, "\nPRIVATE LOCKS of {}: {} (top {})", w.name, w.private_locks, private.len());
        if !private.is_empty() {
            let mut rows = Vec::new();
            lock_rows(a.mode, &private, &mut rows);
            out += &columns(&lock_headers(a.mode), &rows);
        }
    }

    if !a.waits_by_holder.is_empty() {
        let _ = writeln!(out, "\nWAITS BY HOLDER (who held the lock each wait was for)");
        for w in &a.waits_by_holder {
            let _ = writeln!(out, "  {}", w.sentence());
        }
        if let Some(why) = crate::holders::unnamed_spinlock_holders(&a.counters) {
            let _ = writeln!(out, "  {why}");
        }
    }

    if !shared.is_empty() {
        let _ = writeln!(out, "\nSTACKS OF SHARED LOCKS (most frequent call site, innermost first)");
        stacks_section(&mut out, &shared);
    }

    let _ = writeln!(out, "\nCOUNTERS");
    let counters: Vec<String> = a.counters.named().iter().map(|(n, v)| format!("{n} {v}")).collect();
    let _ = writeln!(out, "  {}", counters.join(" · "));
    if a.includes_interrupt {
        let _ = writeln!(out, "  acquisitions in interrupt context are included (--include-interrupt)");
    } else {
        let _ = writeln!(out, "  {} acquisitions in interrupt context left out (--include-interrupt counts them)", a.counters.irq_filtered);
    }
    if a.counters.skipped() > 0 {
        let _ = writeln!(
            out,
            "  {} program runs skipped while a lockscope program ran on the CPU (mostly its own map locks; reentered + recursion_misses)",
            a.counters.skipped()
        );
    }
    if a.counters.lost() > 0 {
        let _ = writeln!(out, "  warning: {} events of the workloads were lost (see counters above)", a.counters.lost());
    }
    if let Some(cost) = &a.recorder_cost {
        let _ = writeln!(out, "  {}", recorder_cost_sentence(cost, a.counters.events));
        for p in cost.programs.iter().take(DEAREST_PROGRAMS_SHOWN) {
            let share = 100.0 * p.run_time_ns as f64 / cost.run_time_ns.max(1) as f64;
            let _ = writeln!(
                out,
                "    {:>5.1}%  {}: {} runs, {:.0} ns a run",
                share,
                p.name,
                p.runs,
                p.run_time_ns as f64 / p.runs.max(1) as f64
            );
        }
    }
    out
}

/// The recorder's programs listed under its cost, dearest first.
const DEAREST_PROGRAMS_SHOWN: usize = 5;

/// "the recorder's programs ran 1234 times for 5.6 ms, as the kernel timed them (4540 ns a run, ...)".
fn recorder_cost_sentence(cost: &RecorderCost, events: u64) -> String {
    let per = |n: u64| if n == 0 { "-".to_owned() } else { format!("{:.0} ns", cost.run_time_ns as f64 / n as f64) };
    format!(
        "the recorder's programs ran {} times for {:.1} ms, as the kernel timed them ({} a run, {} per lock event of the workloads)",
        cost.program_runs,
        cost.run_time_ns as f64 / 1e6,
        per(cost.program_runs),
        per(events)
    )
}

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One row per (lock, workload).
pub fn csv(a: &Analysis) -> String {
    let mut out = String::from(
        "lock_addr,generation,global,object,scope,subsystem,kind,shared,workload,acquisitions,rate_per_sec,wait_total_ns,wait_max_ns,hold_total_ns,hold_max_ns,call_site,source\n",
    );
    for l in &a.locks {
        for u in &l.uses {
            let site = l.call_sites.first().and_then(|c| c.site.as_ref()).map(Frame::to_string).unwrap_or_default();
            let source = l.call_sites.first().and_then(|c| c.source.as_ref()).map(SourceLine::to_string).unwrap_or_default();
            let _ = writeln!(
                out,
                "{:#x},{},{},{},{},{},{},{},{},{},{:.6},{},{},{},{},{},{}",
                l.addr,
                l.generation,
                csv_field(l.global.as_deref().unwrap_or("")),
                csv_field(l.object.as_deref().unwrap_or("")),
                l.scope.map_or("", Scope::name),
                csv_field(l.subsystem.as_deref().unwrap_or("")),
                l.kind,
                l.shared,
                csv_field(&u.workload_name),
                u.acquisitions,
                u.rate_per_sec,
                u.wait_total_ns,
                u.wait_max_ns,
                u.hold_total_ns,
                u.hold_max_ns,
                csv_field(&site),
                csv_field(&source),
            );
        }
    }
    out
}

/// A share from 0 to 1 as a whole percentage ("97%"); "-" for none.
pub fn percent(share: Option<f64>) -> String {
    share.map_or("-".into(), |s| format!("{:.0}%", s * 100.0))
}

/// A number as the paper prints them: few digits, more for small values.
pub fn trim_number(v: f64) -> String {
    match v.abs() {
        0.0 => "0".into(),
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 1.0 => format!("{v:.2}").trim_end_matches('0').trim_end_matches('.').to_owned(),
        _ => format!("{v:.2e}"),
    }
}

/// The paper's Table 5: rows workloads, columns platforms, cells
/// "shared count (cumulative rate)"; then lockscope's isolation scores.
pub fn comparison_table(c: &crate::compare::Comparison) -> String {
    let mut headers = vec!["WORKLOAD"];
    headers.extend(c.platforms.iter().map(String::as_str));
    let rows = |cell: &dyn Fn(&crate::compare::Cell) -> String| -> Vec<Vec<String>> {
        c.workloads
            .iter()
            .map(|w| std::iter::once(w.clone()).chain(c.platforms.iter().map(|p| c.cell(w, p).map_or("-".into(), cell))).collect())
            .collect()
    };
    let mut out = String::from("SHARED LOCKS: mean count over runs (cumulative rate, acquisitions/s summed over locks and runs)\n");
    out += &columns(&headers, &rows(&|c| format!("{} ({})", trim_number(c.shared_mean), trim_number(c.cumulative_rate))));
    out += "\nNAMED: share of that rate whose locks are named (object.member or global)\n";
    out += &columns(&headers, &rows(&|c| percent(c.named_share)));
    out += "\nISOLATION SCORE: 100 x (1 - share of a workload's run time lost waiting on locks the other held) [interval]\n";
    out += &columns(&headers, &rows(&|c| c.score_text()));
    if c.cells.iter().any(|c| c.waits_ms_per_s != Default::default()) {
        out += "\nWAITS BY HOLDER: ms per s of run time on locks held by the other instance / its own processes / outside processes / unknown\n";
        out += &columns(&headers, &rows(&|c| c.waits_ms_per_s.columns().join(" / ")));
    }
    if !c.shared_locks.is_empty() {
        out += "\nTOP SHARED LOCKS (cumulative rate over runs)\n";
        let top: Vec<Vec<String>> = c
            .shared_locks
            .iter()
            .take(15)
            .map(|l| {
                vec![
                    l.workload.clone(),
                    l.platform.clone(),
                    l.lock.label(),
                    l.subsystem.clone().unwrap_or_else(|| "-".into()),
                    format!("{}", l.runs),
                    trim_number(l.cumulative_rate),
                ]
            })
            .collect();
        out += &columns(&["WORKLOAD", "PLATFORM", "LOCK", "SUBSYSTEM", "RUNS", "RATE/S"], &top);
    }
    if !c.kernel_changes.is_empty() {
        out += "\nSHARED LOCKS FROM KERNEL TO KERNEL (by name, busiest first)\n";
        let listed = |names: &[String]| match names.len() {
            0 => "-".to_owned(),
            n if n > 5 => format!("{} (+{} more)", names[..5].join(", "), n - 5),
            _ => names.join(", "),
        };
        let rows: Vec<Vec<String>> = c
            .kernel_changes
            .iter()
            .map(|k| vec![k.workload.clone(), format!("{} -> {}", k.from, k.to), listed(&k.appeared), listed(&k.disappeared)])
            .collect();
        out += &columns(&["WORKLOAD", "KERNELS", "APPEARED", "DISAPPEARED"], &rows);
    }
    out
}

/// Table 5 as CSV, one row per cell.
pub fn comparison_csv(c: &crate::compare::Comparison) -> String {
    let mut out = String::from(
        "workload,platform,runs,shared_mean,cumulative_rate,named_share,exposure,isolation_score,score_ci_low,score_ci_high\n",
    );
    for cell in &c.cells {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            csv_field(&cell.workload),
            csv_field(&cell.platform),
            cell.runs,
            cell.shared_mean,
            cell.cumulative_rate,
            cell.named_share.map_or(String::new(), |s| s.to_string()),
            cell.exposure,
            cell.isolation_score,
            cell.score_ci_low,
            cell.score_ci_high
        );
    }
    out
}

/// The shared locks of every experiment as CSV.
pub fn shared_locks_csv(c: &crate::compare::Comparison) -> String {
    let mut out = String::from("workload,platform,lock_name,function,file,kind,scope,subsystem,runs,cumulative_rate\n");
    for l in &c.shared_locks {
        let fields = [&l.workload, &l.platform, &l.lock.name, &l.lock.function, &l.lock.file, l.lock.kind.name()];
        let text: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        let _ = writeln!(
            out,
            "{},{},{},{},{}",
            text.join(","),
            csv_field(l.scope.map_or("", Scope::name)),
            csv_field(l.subsystem.as_deref().unwrap_or("")),
            l.runs,
            l.cumulative_rate
        );
    }
    out
}

/// Shared-lock rate per subsystem of every experiment as CSV.
pub fn subsystems_csv(c: &crate::compare::Comparison) -> String {
    let mut out = String::from("workload,platform,subsystem,cumulative_rate\n");
    for s in &c.subsystems {
        let _ = writeln!(out, "{},{},{},{}", csv_field(&s.workload), csv_field(&s.platform), csv_field(&s.subsystem), s.cumulative_rate);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align() {
        let t = columns(&["A", "BB"], &[vec!["long".into(), "x".into()]]);
        assert_eq!(t, "A     BB\nlong  x\n");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }
}
