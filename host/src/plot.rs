//! Pictures people would rather look at than tables: training curves and confusion
//! matrices, as SVG (no fonts or system libraries needed).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{HostError, Result};
use crate::train::EpochLog;

pub(crate) fn plot_err(path: &Path, e: impl std::fmt::Display) -> HostError {
    HostError::Export(format!("plot {}: {e}", path.display()))
}

/// A plotters picture of `size` pixels on white: `draw` paints it in memory, then the SVG
/// is written to `path` all-or-nothing.
pub(crate) fn svg_file(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<SVGBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
        draw(&root)?;
        root.present().map_err(|e| plot_err(path, e))?;
    }
    crate::checkpoint::write_atomic(path, svg.as_bytes())
}

/// Training loss and validation accuracy / macro-F1 per epoch.
pub fn training_curves(path: &Path, log: &[EpochLog]) -> Result<()> {
    svg_file(path, (900, 420), |root| {
        let (left, right) = root.split_horizontally(450);
        let epochs = log.len().max(1) as f64;
        let max_loss = log
            .iter()
            .map(|l| l.train_loss)
            .fold(0.0f64, f64::max)
            .max(1e-3)
            * 1.05;

        let mut chart = ChartBuilder::on(&left)
            .caption("training loss", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0.5..epochs + 0.5, 0.0..max_loss)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .draw()
            .map_err(|e| plot_err(path, e))?;
        chart
            .draw_series(LineSeries::new(
                log.iter().map(|l| (l.epoch as f64, l.train_loss)),
                &RED,
            ))
            .map_err(|e| plot_err(path, e))?
            .label("train loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], RED));
        chart
            .draw_series(LineSeries::new(
                log.iter().map(|l| (l.epoch as f64, l.val_loss)),
                &BLUE,
            ))
            .map_err(|e| plot_err(path, e))?
            .label("validation loss")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
        chart
            .configure_series_labels()
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(path, e))?;

        let lo = log
            .iter()
            .map(|l| l.val_accuracy.min(l.val_macro_f1).min(l.train_accuracy))
            .fold(1.0f64, f64::min);
        let mut chart = ChartBuilder::on(&right)
            .caption("accuracy", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(45)
            .build_cartesian_2d(0.5..epochs + 0.5, (lo - 0.02).max(0.0)..1.0)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .draw()
            .map_err(|e| plot_err(path, e))?;
        for (name, color, f) in [
            (
                "train accuracy",
                RED,
                (|l: &EpochLog| l.train_accuracy) as fn(&EpochLog) -> f64,
            ),
            ("validation accuracy", BLUE, |l: &EpochLog| l.val_accuracy),
            ("validation macro-F1", GREEN, |l: &EpochLog| l.val_macro_f1),
        ] {
            chart
                .draw_series(LineSeries::new(
                    log.iter().map(|l| (l.epoch as f64, f(l))),
                    color,
                ))
                .map_err(|e| plot_err(path, e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(path, e))?;
        Ok(())
    })
}

/// Escapes text for SVG.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A confusion-matrix heat map, rows normalised by the gold count (blue: correct share on
/// the diagonal, red: confusions), with the count in each non-empty cell. Written as plain
/// SVG so every label sits exactly on its row and column.
pub fn confusion_matrix(path: &Path, labels: &[String], confusion: &[Vec<usize>]) -> Result<()> {
    let c = labels.len();
    let cell = if c <= 20 { 30.0 } else { 16.0 };
    let font = if c <= 20 { 11.0 } else { 8.0 };
    let label_px =
        labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as f64 * font * 0.62 + 12.0;
    let (x0, y0) = (label_px, 40.0);
    let width = x0 + cell * c as f64 + 20.0;
    let height = y0 + cell * c as f64 + label_px + 10.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"sans-serif\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{x0:.0}\" y=\"20\" font-size=\"13\">confusion matrix (rows: gold, columns: predicted)</text>\n"
    );
    for (g, row) in confusion.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        for (p, &v) in row.iter().enumerate() {
            let share = v as f64 / total;
            let shade = (255.0 * (1.0 - share)).round() as u8;
            let fill = if g == p {
                format!("rgb({shade},{shade},255)")
            } else {
                format!("rgb(255,{shade},{shade})")
            };
            let (x, y) = (x0 + p as f64 * cell, y0 + g as f64 * cell);
            svg += &format!(
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{cell}\" height=\"{cell}\" fill=\"{fill}\" stroke=\"#ddd\"/>\n"
            );
            if v > 0 && c <= 50 {
                let color = if share > 0.5 { "white" } else { "black" };
                svg += &format!(
                    "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{:.0}\" text-anchor=\"middle\" fill=\"{color}\">{v}</text>\n",
                    x + cell / 2.0,
                    y + cell / 2.0 + font / 3.0,
                    font * 0.9
                );
            }
        }
    }
    for (i, l) in labels.iter().enumerate() {
        let l = xml_escape(l);
        let mid = i as f64 * cell + cell / 2.0;
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{font}\" text-anchor=\"end\">{l}</text>\n",
            x0 - 4.0,
            y0 + mid + font / 3.0
        );
        let (tx, ty) = (x0 + mid + font / 3.0, y0 + cell * c as f64 + 4.0);
        svg += &format!(
            "<text x=\"{tx:.1}\" y=\"{ty:.1}\" font-size=\"{font}\" text-anchor=\"end\" transform=\"rotate(-90 {tx:.1} {ty:.1})\">{l}</text>\n"
        );
    }
    svg += "</svg>\n";
    crate::checkpoint::write_atomic(path, svg.as_bytes())
}

/// A named, coloured line.
type Series = (&'static str, RGBColor, Vec<(f64, f64)>);

/// The out-of-scope trade-off: left, in-scope accuracy / oos recall / in-scope rejected
/// share against the threshold (the chosen one as a vertical line); right, in-scope
/// accuracy against oos recall (or, without out-of-scope data, against the in-scope
/// rejected share), the class-only point (threshold 0) and the chosen point marked.
pub fn rejection_curve(
    path: &Path,
    curve: &[crate::rejection::RejectionMetrics],
    chosen: Option<f32>,
    title: &str,
) -> Result<()> {
    let has_oos = curve.iter().any(|m| m.oos_recall.is_some());
    svg_file(path, (900, 420), |root| {
        let titled;
        let root = if title.is_empty() {
            root
        } else {
            titled = root
                .titled(title, ("sans-serif", 14))
                .map_err(|e| plot_err(path, e))?;
            &titled
        };
        let (left, right) = root.split_horizontally(450);
        let t_max = curve
            .iter()
            .map(|m| f64::from(m.threshold))
            .fold(1.0f64, f64::max);

        let mut chart = ChartBuilder::on(&left)
            .caption("rejection threshold", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..t_max, 0.0..1.0)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("threshold on the best in-scope probability")
            .draw()
            .map_err(|e| plot_err(path, e))?;
        let at = |m: &crate::rejection::RejectionMetrics| f64::from(m.threshold);
        let mut series: Vec<Series> = vec![(
            "in-scope accuracy",
            BLUE,
            curve.iter().map(|m| (at(m), m.in_scope_accuracy)).collect(),
        )];
        if has_oos {
            series.push((
                "oos recall",
                RED,
                curve
                    .iter()
                    .map(|m| (at(m), m.oos_recall.unwrap_or(0.0)))
                    .collect(),
            ));
        }
        series.push((
            "in-scope rejected",
            RGBColor(128, 128, 128),
            curve.iter().map(|m| (at(m), m.in_scope_rejected)).collect(),
        ));
        for (name, color, points) in series {
            chart
                .draw_series(LineSeries::new(points, color))
                .map_err(|e| plot_err(path, e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        if let Some(t) = chosen {
            let t = f64::from(t);
            chart
                .draw_series(LineSeries::new(vec![(t, 0.0), (t, 1.0)], BLACK))
                .map_err(|e| plot_err(path, e))?
                .label(format!("chosen {t:.3}"))
                .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::MiddleRight)
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(path, e))?;

        let x_of = |m: &crate::rejection::RejectionMetrics| {
            if has_oos {
                m.oos_recall.unwrap_or(0.0)
            } else {
                m.in_scope_rejected
            }
        };
        let lo = curve
            .iter()
            .map(|m| m.in_scope_accuracy)
            .fold(1.0f64, f64::min);
        let mut chart = ChartBuilder::on(&right)
            .caption("trade-off", ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(45)
            .build_cartesian_2d(0.0..1.0, (lo - 0.02).max(0.0)..1.0)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc(if has_oos {
                "out-of-scope recall"
            } else {
                "in-scope share rejected"
            })
            .y_desc("in-scope accuracy")
            .draw()
            .map_err(|e| plot_err(path, e))?;
        chart
            .draw_series(LineSeries::new(
                curve.iter().map(|m| (x_of(m), m.in_scope_accuracy)),
                &BLUE,
            ))
            .map_err(|e| plot_err(path, e))?;
        if let Some(m) = curve.first() {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (x_of(m), m.in_scope_accuracy),
                    5,
                    RED.filled(),
                )))
                .map_err(|e| plot_err(path, e))?
                .label("class only (threshold 0)")
                .legend(|(x, y)| Circle::new((x + 7, y), 4, RED.filled()));
        }
        if let Some(m) = chosen.and_then(|t| curve.iter().find(|m| m.threshold == t)) {
            chart
                .draw_series(std::iter::once(Circle::new(
                    (x_of(m), m.in_scope_accuracy),
                    5,
                    BLACK.filled(),
                )))
                .map_err(|e| plot_err(path, e))?
                .label(format!("chosen (threshold {:.3})", m.threshold))
                .legend(|(x, y)| Circle::new((x + 7, y), 4, BLACK.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerLeft)
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()
            .map_err(|e| plot_err(path, e))?;
        Ok(())
    })
}
