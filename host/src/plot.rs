//! Pictures people would rather look at than tables: training curves and confusion
//! matrices, as SVG (no fonts or system libraries needed).

use std::path::Path;

use plotters::prelude::*;

use crate::error::{HostError, Result};
use crate::train::EpochLog;

fn plot_err(path: &Path, e: impl std::fmt::Display) -> HostError {
    HostError::Export(format!("plot {}: {e}", path.display()))
}

/// Training loss and validation accuracy / macro-F1 per epoch.
pub fn training_curves(path: &Path, log: &[EpochLog]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
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
        .label("train loss");
    chart
        .draw_series(LineSeries::new(
            log.iter().map(|l| (l.epoch as f64, l.val_loss)),
            &BLUE,
        ))
        .map_err(|e| plot_err(path, e))?
        .label("validation loss");
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
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// A confusion-matrix heat map, rows normalised by the gold count.
pub fn confusion_matrix(path: &Path, labels: &[String], confusion: &[Vec<usize>]) -> Result<()> {
    let c = labels.len();
    let cell = if c <= 20 { 28 } else { 14 };
    let margin = 10 + labels.iter().map(|l| l.chars().count()).max().unwrap_or(4) as u32 * 7;
    let size = margin + cell * c as u32 + 20;
    let root = SVGBackend::new(path, (size, size + 30)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "confusion matrix (rows: gold, columns: predicted)",
            ("sans-serif", 14),
        )
        .margin(5)
        .x_label_area_size(margin)
        .y_label_area_size(margin)
        .build_cartesian_2d(0..c, 0..c)
        .map_err(|e| plot_err(path, e))?;
    let name = |i: &usize| labels.get(*i).cloned().unwrap_or_default();
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(c)
        .y_labels(c)
        .x_label_formatter(&name)
        .y_label_formatter(&|i| name(&(c - 1 - i.min(&(c - 1)))))
        .x_label_style(
            ("sans-serif", 10)
                .into_font()
                .transform(FontTransform::Rotate90),
        )
        .y_label_style(("sans-serif", 10))
        .draw()
        .map_err(|e| plot_err(path, e))?;
    chart
        .draw_series(confusion.iter().enumerate().flat_map(|(g, row)| {
            let total = row.iter().sum::<usize>().max(1) as f64;
            row.iter().enumerate().map(move |(p, &v)| {
                let share = v as f64 / total;
                let shade = (255.0 * (1.0 - share)) as u8;
                let color = if g == p {
                    RGBColor(shade, shade, 255)
                } else {
                    RGBColor(255, shade, shade)
                };
                let y = c - 1 - g;
                Rectangle::new([(p, y), (p + 1, y + 1)], color.filled())
            })
        }))
        .map_err(|e| plot_err(path, e))?;
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}
