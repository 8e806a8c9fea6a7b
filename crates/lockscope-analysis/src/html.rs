//! The study's report as one self-contained HTML page: Table 5, isolation
//! scores against measured slowdown, the top shared locks with their objects
//! and subsystems, per-subsystem bar charts (inline SVG, drawn here), and
//! the stress figures. No script, no external resource.

use std::fmt::Write;

use serde::Serialize;

use crate::compare::Comparison;
use crate::render::trim_number;

/// What the page shows besides the comparison.
pub struct Page<'a> {
    pub title: &'a str,
    /// How the study was made (mode, kernel, durations, what was skipped).
    pub notes: &'a [String],
    pub comparison: &'a Comparison,
    pub stress: &'a [StressFigure],
    pub correlations: &'a [Correlation],
}

/// One stress experiment, summarized, with its figure.
#[derive(Clone, Debug, Serialize)]
pub struct StressFigure {
    pub workload: String,
    pub platform: String,
    pub baseline: f64,
    pub unit: String,
    /// With the most trashers measured: the share of throughput lost, with its interval.
    #[serde(flatten)]
    pub slowdown: crate::stats::Slowdown,
    pub trashers: u32,
    /// The share of the worker's run time lost waiting on locks its trashers
    /// held, in the stress runs themselves (median over runs; 100 − the
    /// score of the pair measured); None where the runs were not recorded.
    pub exposure: Option<f64>,
    /// Beside the lock-free control, where one ran: its slowdown, and one
    /// trasher's beyond it, cycle by cycle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<crate::stats::Slowdown>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub beyond_control: Option<crate::stats::Slowdown>,
    /// The figure (an SVG document), inlined.
    #[serde(skip)]
    pub svg: String,
}

/// How well a sharing measure ranks the measured slowdowns.
#[derive(Clone, Debug, Serialize)]
pub struct Correlation {
    pub measure: String,
    /// What the measure is ranked against.
    pub against: Against,
    /// The kernel whose experiments it ranks (`running`, `debian-6.1`):
    /// modes and emulation differ between kernels, so each has its own.
    pub kernel: String,
    /// Spearman's rho; None when there were too few experiments or one
    /// side did not vary ([`Correlation::rho_text`] says which).
    pub rho: Option<f64>,
    /// Its 95% interval; None below 4 experiments.
    pub rho_ci: Option<(f64, f64)>,
    pub experiments: usize,
    /// Of those, the ones whose stress interval supports a slowdown (a
    /// positive one): with few, the slowdowns ranked are mostly noise,
    /// whatever rho's value.
    pub with_slowdown: usize,
}

/// The slowdown a correlation ranks a measure against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Against {
    /// The worker's slowdown beside its trasher.
    Slowdown,
    /// One trasher's slowdown less the lock-free control's, cycle by cycle.
    BeyondControl,
}

impl std::fmt::Display for Against {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Against::Slowdown => "slowdown",
            Against::BeyondControl => "slowdown beyond the control",
        })
    }
}

impl Correlation {
    /// Rho to two places, or why there is none.
    pub fn rho_text(&self) -> String {
        match self.rho {
            Some(rho) => format!("{rho:.2}"),
            None if self.experiments < 3 => "n/a (fewer than 3 experiments)".into(),
            None => "n/a (the measure, or the slowdown, is the same in every experiment)".into(),
        }
    }
}

/// Where the score's ranking is checked on pairs whose interference is known.
pub const CALIBRATION_HINT: &str = "`lockscope calibrate` checks the score's ranking on pairs whose interference is known in order";

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;max-width:1200px;color:#222}\
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}\
th:first-child,td:first-child{text-align:left}td.text{text-align:left}caption{text-align:left;font-weight:bold;margin-bottom:.3em}\
figure{display:inline-block;margin:1em 1em 1em 0;vertical-align:top}figcaption{font-size:90%}.note{color:#555;font-size:90%}";

/// Colors for subsystems and platforms, in order.
const PALETTE: [&str; 10] = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

pub fn render(page: &Page) -> String {
    let c = page.comparison;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head><body>\n",
        escape(page.title)
    );
    let _ = writeln!(out, "<h1>{}</h1>", escape(page.title));
    out += "<ul class=\"note\">";
    for n in page.notes {
        let _ = write!(out, "<li>{}</li>", escape(n));
    }
    out += "</ul>\n";

    out += "<h2 id=\"table5\">Shared locks per workload and platform (Table 5)</h2>\n\
        <p class=\"note\">Each cell: locks acquired by both instances, mean over runs, and in parentheses the cumulative rate \
        (acquisitions per second of each instance's run time, summed over the shared locks and the runs).</p>\n";
    out += &matrix(c, "shared (rate)", |cell| format!("{} ({})", trim_number(cell.shared_mean), trim_number(cell.cumulative_rate)));
    out += "<p class=\"note\">The share of that rate whose locks are named (object.member or global), not only located by call site:</p>\n";
    out += &matrix(c, "named", |cell| crate::render::percent(cell.named_share));

    out += "<h2 id=\"isolation\">Isolation score</h2>\n<p class=\"note\">100 × (1 − the share of an instance's run time lost \
        waiting on locks the other held: measured and attributed to the holder in contention mode, expected from hold times in acquire mode), \
        the median over both instances and every run, with its interval: 100 is perfect isolation.</p>\n";
    out += &matrix(c, "score", |cell| cell.score_text());
    if c.cells.iter().any(|cell| cell.waits_ms_per_s != Default::default()) {
        out += "<table><caption>Who made whom wait: ms of waiting per s of run time, by the holder of the lock</caption>\
            <tr><th>workload</th><th>platform</th><th>the other instance</th><th>its own processes</th><th>outside processes</th><th>holder unknown (spinlocks)</th></tr>";
        for cell in &c.cells {
            let [other, own, outside, unknown] = cell.waits_ms_per_s.columns();
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"text\">{}</td><td>{other}</td><td>{own}</td><td>{outside}</td><td>{unknown}</td></tr>",
                escape(&cell.workload),
                escape(&cell.platform)
            );
        }
        out += "</table>\n";
    }
    if !page.correlations.is_empty() {
        let _ = write!(
            out,
            "<table><caption>Does sharing predict slowdown? Spearman's rho against the measured slowdown, each experiment's median ({})</caption><tr><th>measure</th><th>against</th><th>kernel</th><th>rho</th><th>95% interval</th><th>experiments</th><th>with a supported slowdown</th></tr>",
            escape(CALIBRATION_HINT)
        );
        for k in page.correlations {
            let rho = k.rho_text();
            let ci = k.rho_ci.map_or("–".into(), |(lo, hi)| format!("[{lo:.2}, {hi:.2}]"));
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{rho}</td><td>{ci}</td><td>{}</td><td>{}</td></tr>",
                escape(&k.measure),
                k.against,
                escape(&k.kernel),
                k.experiments,
                k.with_slowdown
            );
        }
        out += "</table>\n";
    }

    out += "<h2 id=\"locks\">Top shared locks</h2>\n<table><tr><th>workload</th><th>platform</th><th>lock</th><th>scope</th><th>subsystem</th><th>function</th><th>file</th><th>type</th><th>runs</th><th>rate/s</th></tr>";
    for l in c.shared_locks.iter().take(25) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td>{}</td><td>{}</td></tr>",
            escape(&l.workload),
            escape(&l.platform),
            escape(if l.lock.is_named() { &l.lock.name } else { "–" }),
            l.scope.map_or("–", |s| s.name()),
            escape(l.subsystem.as_deref().unwrap_or("unresolved")),
            escape(&l.lock.function),
            escape(&l.lock.file),
            l.lock.kind,
            l.runs,
            trim_number(l.cumulative_rate)
        );
    }
    out += "</table>\n";

    if !c.kernel_changes.is_empty() {
        out +=
            "<h2 id=\"kernels\">Shared locks from kernel to kernel</h2>\n<p class=\"note\">One platform in two kernels: the shared locks, \
            by name, that one kernel has and the other not, busiest first.</p>\n<table><tr><th>workload</th><th>from</th><th>to</th>\
            <th>appeared</th><th>disappeared</th></tr>";
        for k in &c.kernel_changes {
            let listed = |names: &[String]| if names.is_empty() { "–".to_owned() } else { escape(&names.join(", ")) };
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{}</td></tr>",
                escape(&k.workload),
                escape(&k.from),
                escape(&k.to),
                listed(&k.appeared),
                listed(&k.disappeared)
            );
        }
        out += "</table>\n";
    }

    out += "<h2 id=\"subsystems\">Shared-lock rate by kernel subsystem (Figures 2 and 3)</h2>\n";
    for w in &c.workloads {
        let _ = write!(out, "<figure>{}<figcaption>{}</figcaption></figure>", subsystem_chart(c, w), escape(w));
    }

    if !page.stress.is_empty() {
        let controlled = page.stress.iter().any(|s| s.control.is_some());
        let _ = write!(
            out,
            "\n<h2 id=\"stress\">Interference: throughput beside trashers (Figures 4 to 6)</h2>\n<p class=\"note\">Baseline and stressed windows alternate; \
            each stressed window is compared with the baselines either side. The slowdown is the median over every run's windows, \
            with a 95% interval over the runs' medians (from one run: the median over its windows and their interval); where the interval \
            holds zero, none is claimed. Where a lock-free control ran (a core busy with memory traffic, in windows of its own), its \
            slowdown and one trasher's beyond it, cycle by cycle, follow: what the trasher's locks, not its presence, can explain.</p>\n\
            <table><tr><th>workload</th><th>platform</th><th>baseline</th><th>trashers</th><th>slowdown</th>\
            <th>time lost to the trashers' locks (recorded in the same runs)</th>{}</tr>",
            if controlled { "<th>beside the control</th><th>one trasher beyond the control</th>" } else { "" }
        );
        for s in page.stress {
            let describe = |d: &Option<crate::stats::Slowdown>| d.as_ref().map_or("–".into(), |d| d.describe());
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"text\">{}</td><td>{} {}/s</td><td>{}</td><td>{}</td><td>{}</td>{}</tr>",
                escape(&s.workload),
                escape(&s.platform),
                trim_number(s.baseline),
                escape(&s.unit),
                s.trashers,
                s.slowdown.describe(),
                s.exposure.map_or("–".into(), |e| format!("{}%", trim_number(100.0 * e))),
                if controlled {
                    format!("<td>{}</td><td>{}</td>", describe(&s.control), describe(&s.beyond_control))
                } else {
                    String::new()
                }
            );
        }
        out += "</table>\n";
        for s in page.stress {
            let _ = write!(
                out,
                "<figure>{}<figcaption>{} on {}</figcaption></figure>",
                inline_svg(&s.svg),
                escape(&s.workload),
                escape(&s.platform)
            );
        }
    }
    out += "\n</body></html>\n";
    out
}

/// A workloads × platforms table of one value per cell.
fn matrix(c: &Comparison, what: &str, value: impl Fn(&crate::compare::Cell) -> String) -> String {
    let mut out = format!("<table><tr><th>workload ({})</th>", escape(what));
    for p in &c.platforms {
        let _ = write!(out, "<th>{}</th>", escape(p));
    }
    out += "</tr>";
    for w in &c.workloads {
        let _ = write!(out, "<tr><td>{}</td>", escape(w));
        for p in &c.platforms {
            let _ = write!(out, "<td>{}</td>", c.cell(w, p).map_or("–".into(), &value));
        }
        out += "</tr>";
    }
    out + "</table>\n"
}

/// An SVG document without its XML prolog, scaled to fit the page.
fn inline_svg(svg: &str) -> String {
    let start = svg.find("<svg").unwrap_or(0);
    svg[start..].replacen("<svg", "<svg style=\"max-width:100%;height:auto\"", 1)
}

/// One workload's shared-lock rate per platform, stacked by subsystem.
pub fn subsystem_chart(c: &Comparison, workload: &str) -> String {
    let (width, height, left, bottom, top) = (460.0, 300.0, 70.0, 40.0, 20.0);
    let rows: Vec<_> = c.subsystems.iter().filter(|s| s.workload == workload).collect();
    // One color per subsystem across every chart of the page.
    let mut all: Vec<&str> = c.subsystems.iter().map(|s| s.subsystem.as_str()).collect();
    all.sort();
    all.dedup();
    let color = |sub: &str| PALETTE[all.iter().position(|s| *s == sub).unwrap_or(0) % PALETTE.len()];
    let subsystems: Vec<&str> = all.iter().copied().filter(|sub| rows.iter().any(|r| r.subsystem == *sub)).collect();
    let total = |p: &str| rows.iter().filter(|s| s.platform == p).map(|s| s.cumulative_rate).sum::<f64>();
    let max = c.platforms.iter().map(|p| total(p)).fold(0.0, f64::max).max(1e-9);
    let plot_h = height - bottom - top;
    let slot = (width - left - 130.0) / c.platforms.len().max(1) as f64;
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" font-family=\"sans-serif\" font-size=\"11\">");
    let _ = write!(svg, "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"#333\"/>", height - bottom);
    for i in 0..=4 {
        let v = max * i as f64 / 4.0;
        let y = height - bottom - plot_h * i as f64 / 4.0;
        let _ = write!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text><line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#eee\"/>",
            left - 4.0,
            y + 4.0,
            trim_number(v),
            width - 130.0
        );
    }
    let _ = write!(
        svg,
        "<text x=\"12\" y=\"{}\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">acquisitions/s</text>",
        top + plot_h / 2.0,
        top + plot_h / 2.0
    );
    for (i, p) in c.platforms.iter().enumerate() {
        let x = left + slot * i as f64 + slot * 0.2;
        let mut y = height - bottom;
        for sub in &subsystems {
            let rate: f64 = rows.iter().filter(|s| s.platform == *p && s.subsystem == *sub).map(|s| s.cumulative_rate).sum();
            let h = plot_h * rate / max;
            if h > 0.0 {
                y -= h;
                let _ = write!(
                    svg,
                    "<rect class=\"bar\" x=\"{x:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{} on {}: {} {}/s</title></rect>",
                    slot * 0.6,
                    color(sub),
                    escape(workload),
                    escape(p),
                    escape(sub),
                    trim_number(rate)
                );
            }
        }
        let _ =
            write!(svg, "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>", x + slot * 0.3, height - bottom + 15.0, escape(p));
    }
    for (k, sub) in subsystems.iter().enumerate() {
        let y = top + 16.0 * k as f64;
        let _ = write!(
            svg,
            "<rect x=\"{}\" y=\"{y}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            width - 120.0,
            color(sub),
            width - 105.0,
            y + 9.0,
            escape(sub)
        );
    }
    svg + "</svg>"
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::analyze;
    use crate::compare::{compare, Run};
    use crate::fixtures::{trace, OPTIONS};

    #[test]
    fn a_missing_rho_says_why() {
        let k = |rho, experiments, with_slowdown| Correlation {
            measure: "exposure".into(),
            against: Against::Slowdown,
            kernel: "running".into(),
            rho,
            rho_ci: None,
            experiments,
            with_slowdown,
        };
        assert_eq!(k(Some(0.456), 15, 4).rho_text(), "0.46");
        assert_eq!(k(None, 2, 2).rho_text(), "n/a (fewer than 3 experiments)");
        assert_eq!(k(None, 15, 3).rho_text(), "n/a (the measure, or the slowdown, is the same in every experiment)");
    }

    #[test]
    fn the_page_holds_the_tables_and_a_bar_per_platform_and_subsystem() {
        let a = analyze(&trace(), &OPTIONS);
        let c = compare(&[
            Run { workload: "mem-8k".into(), platform: "host".into(), analysis: &a },
            Run { workload: "mem-8k".into(), platform: "runc".into(), analysis: &a },
        ]);
        let notes = ["made <here>".to_owned()];
        let html = render(&Page { title: "t", notes: &notes, comparison: &c, stress: &[], correlations: &[] });
        assert!(html.contains("made &lt;here&gt;"), "notes are escaped");
        assert!(html.contains("<td>1 (22)</td>"), "Table 5 cell: {html}");
        assert_eq!(html.matches("class=\"bar\"").count(), 2, "one stacked segment per platform (one subsystem)");
        assert!(!html.contains("<script"), "self-contained, no script");
    }
}
