//! The stress experiment's figure, in the style of the paper's Figures 4-6:
//! the worker's throughput over time, one line per platform, its baseline
//! dashed, and the stressed windows shaded (darker with more trashers,
//! labelled with their count). SVG and PNG.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::stress::StressResult;

/// The font figures are drawn with (fonts-dejavu-core).
pub const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (960, 540);

#[derive(Debug, thiserror::Error)]
pub enum FigureError {
    #[error("cannot read the font {FONT}: {0} (apt-get install fonts-dejavu-core)")]
    Font(std::io::Error),
    #[error("nothing to plot: no throughput samples were taken")]
    Empty,
    #[error("drawing {path}: {message}")]
    Draw { path: String, message: String },
}

/// plotters draws text with a font it is given; register one once.
fn ensure_font() -> Result<(), FigureError> {
    static FONT_BYTES: std::sync::OnceLock<Result<&'static [u8], String>> = std::sync::OnceLock::new();
    let bytes = FONT_BYTES.get_or_init(|| {
        let bytes = std::fs::read(FONT).map_err(|e| e.to_string())?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        register_font("sans-serif", FontStyle::Normal, bytes).map_err(|_| "not a usable TrueType font".to_owned())?;
        Ok(bytes)
    });
    bytes.as_ref().map(|_| ()).map_err(|e| FigureError::Font(std::io::Error::other(e.clone())))
}

/// Writes the figure as SVG and PNG (`stem`.svg, `stem`.png).
pub fn write(result: &StressResult, stem: &Path) -> Result<(), FigureError> {
    ensure_font()?;
    if result.series.iter().all(|s| s.points.is_empty()) {
        return Err(FigureError::Empty);
    }
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let err = |path: &Path| {
        let path = path.display().to_string();
        move |e: Box<dyn std::error::Error>| FigureError::Draw { path: path.clone(), message: e.to_string() }
    };
    draw(SVGBackend::new(&svg, SIZE).into_drawing_area(), result).map_err(err(&svg))?;
    draw(BitMapBackend::new(&png, SIZE).into_drawing_area(), result).map_err(err(&png))?;
    Ok(())
}

fn draw<DB: DrawingBackend>(area: DrawingArea<DB, Shift>, r: &StressResult) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let points = r.series.iter().flat_map(|s| s.points.iter());
    let t_max = points.clone().map(|p| p.t).fold(r.window_secs, f64::max);
    let values: Vec<f64> = points.map(|p| p.ops_per_sec).chain(r.series.iter().map(|s| s.baseline)).collect();
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    // As in the paper, the y axis does not start at zero: the change is the point.
    let pad = ((hi - lo) * 0.1).max(hi.abs() * 0.02).max(1.0);
    let unit = r.series.first().map_or("op", |s| s.unit.as_str());
    let mut chart = ChartBuilder::on(&area)
        .caption(format!("{} alone and beside trashers ({}), windows of {}s", r.worker, r.trasher, r.window_secs), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..t_max * 1.02, (lo - pad).max(0.0)..hi + pad)?;
    chart
        .configure_mesh()
        .x_desc("time since the worker started (s)")
        .y_desc(format!("throughput ({unit} / s)"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style(("sans-serif", 14))
        .draw()?;
    let y_range = ((lo - pad).max(0.0), hi + pad);
    if let Some(first) = r.series.first() {
        let most = first.windows.iter().map(|w| w.trashers).max().unwrap_or(1).max(1) as f64;
        for w in first.windows.iter().filter(|w| w.trashers > 0 || w.control) {
            let (shade, label) = match w.control {
                true => (BLUE.mix(0.12), "control".to_owned()),
                false => (BLACK.mix(0.05 + 0.15 * w.trashers as f64 / most), format!("+{}", w.trashers)),
            };
            chart.draw_series(std::iter::once(Rectangle::new([(w.start, y_range.0), (w.end, y_range.1)], shade.filled())))?;
            chart.draw_series(std::iter::once(Text::new(label, (w.start, y_range.1), ("sans-serif", 13))))?;
        }
    }
    for (i, series) in r.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let line = series.points.iter().map(|p| (p.t, p.ops_per_sec));
        chart
            .draw_series(LineSeries::new(line, color.stroke_width(2)))?
            .label(format!("{} (baseline {:.0})", series.platform, series.baseline))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(DashedLineSeries::new([(0.0, series.baseline), (t_max, series.baseline)], 6, 4, color.stroke_width(1)))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).label_font(("sans-serif", 14)).draw()?;
    area.present()?;
    Ok(())
}
