//! The bench's latency picture: histograms of the round trip and of the device-reported
//! inference time on one axis, with the wire-time lower bound marked.

use std::path::Path;

use plotters::prelude::*;

use crate::error::Result;
use crate::plot::{plot_err, svg_file};

/// Writes an SVG with one histogram per series (`(name, values in µs)`), in milliseconds,
/// clipped at the largest series' 99.5th percentile so one outlier does not squash the
/// picture; `marker` draws a labelled vertical line (e.g. the wire-time lower bound).
pub fn latency_histogram(
    path: &Path,
    title: &str,
    series: &[(&str, &[u64])],
    marker: Option<(&str, u64)>,
) -> Result<()> {
    const BINS: usize = 50;
    let mut hi_us = 1u64;
    for (_, v) in series {
        let mut s = v.to_vec();
        s.sort_unstable();
        hi_us = hi_us.max(super::percentile(&s, 99.5));
    }
    if let Some((_, m)) = marker {
        hi_us = hi_us.max(m + m / 10);
    }
    let hi_ms = hi_us as f64 / 1000.0 * 1.05;
    let width = hi_ms / BINS as f64;
    let counts: Vec<Vec<usize>> = series
        .iter()
        .map(|(_, v)| {
            let mut c = vec![0usize; BINS];
            for &us in v.iter() {
                let b = ((us as f64 / 1000.0) / width) as usize;
                c[b.min(BINS - 1)] += 1;
            }
            c
        })
        .collect();
    let top = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * 1.1;

    svg_file(path, (900, 480), |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..hi_ms, 0.0..top)
            .map_err(|e| plot_err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("latency (ms); last bin holds everything beyond")
            .y_desc("requests")
            .draw()
            .map_err(|e| plot_err(path, e))?;
        let colors = [BLUE.mix(0.5), RED.mix(0.5), GREEN.mix(0.5)];
        for (k, ((name, _), c)) in series.iter().zip(&counts).enumerate() {
            let color = colors[k % colors.len()];
            chart
                .draw_series(c.iter().enumerate().filter(|(_, &n)| n > 0).map(|(b, &n)| {
                    let x0 = b as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, n as f64)], color.filled())
                }))
                .map_err(|e| plot_err(path, e))?
                .label(*name)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
        }
        if let Some((name, us)) = marker {
            let x = us as f64 / 1000.0;
            chart
                .draw_series(LineSeries::new([(x, 0.0), (x, top)], BLACK.stroke_width(2)))
                .map_err(|e| plot_err(path, e))?
                .label(name)
                .legend(|(x, y)| PathElement::new([(x, y), (x + 12, y)], BLACK.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|e| plot_err(path, e))?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.svg");
        let rtt: Vec<u64> = (0..500).map(|i| 1000 + i * 7).collect();
        let dev: Vec<u64> = (0..500).map(|i| 300 + i).collect();
        latency_histogram(
            &p,
            "t",
            &[("rtt", &rtt), ("device", &dev)],
            Some(("wire", 900)),
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("rect"));
        // Empty series do not fail.
        latency_histogram(&p, "t", &[("rtt", &[])], None).unwrap();
    }
}
