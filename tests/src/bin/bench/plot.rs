//! The benchmarks' plots (PNG, plotters): what a reader of `docs/BENCHMARKS.md` looks at
//! instead of reading the tables.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

/// The font every label uses (Debian's `fonts-dejavu-core`, installed by `cargo xtask setup`).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

fn register_font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT).map_err(|e| format!("reading {FONT}: {e}"))?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
            .map_err(|_| format!("{FONT} is not a usable font"))
    })
    .clone()
    .map_err(|e| anyhow::anyhow!(e))
}

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// How the x axis is drawn.
#[derive(Clone, Copy)]
pub enum Axis {
    Linear,
    /// Logarithmic (binding counts from 1 to 1M).
    Log,
}

/// 1000 → "1k", 1000000 → "1M", 64 → "64".
fn short(x: f64) -> String {
    if x >= 1e6 && (x / 1e6).fract() == 0.0 {
        format!("{}M", x / 1e6)
    } else if x >= 1e3 && (x / 1e3).fract() == 0.0 {
        format!("{}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(127, 127, 127),
    RGBColor(23, 190, 207),
];

/// A line chart of `series` written to `path` (800×500 PNG). The y axis starts at 0, so
/// lengths compare as ratios.
pub fn lines(
    path: &Path,
    title: &str,
    facts: &str,
    x_label: &str,
    y_label: &str,
    x_axis: Axis,
    series: &[Series],
) -> anyhow::Result<()> {
    register_font()?;
    let points = || series.iter().flat_map(|s| s.points.iter().copied());
    let x_min = points().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = points().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    // Room above the lines for the legend.
    let y_max = points().map(|p| p.1).fold(0.0, f64::max) * 1.45;
    anyhow::ensure!(x_min.is_finite() && y_max > 0.0, "{title}: nothing to plot");
    let root = BitMapBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE)?;
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            let x_desc = format!("{x_label}        ({facts})");
            chart
                .configure_mesh()
                .x_label_formatter(&|x: &f64| short(*x))
                .y_label_formatter(&|y: &f64| {
                    if *y >= 1000.0 {
                        format!("{:.0}k", y / 1000.0)
                    } else {
                        format!("{y:.1}")
                    }
                })
                .x_desc(x_desc)
                .y_desc(y_label)
                .label_style(("sans-serif", 14))
                .draw()?;
            for (i, s) in series.iter().enumerate() {
                let color = COLORS[i % COLORS.len()];
                let pts: Vec<(f64, f64)> = s.points.clone();
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
                    .label(s.name.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 13))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()?;
        }};
    }
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, ("sans-serif", 19))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70);
    // The two axis kinds are different types, so the drawing is a macro over both.
    match x_axis {
        Axis::Linear => body!(builder.build_cartesian_2d(x_min..x_max, 0.0..y_max)?),
        Axis::Log => body!(builder.build_cartesian_2d((x_min..x_max).log_scale(), 0.0..y_max)?),
    }
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
