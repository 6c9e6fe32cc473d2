//! `tools eval`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use host::evaluate::{evaluate_with_rejection, Evaluated};

use super::ColumnArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint directory (evaluated with candle) or a bundle directory (with tract).
    #[arg(long, value_name = "CKPT|BUNDLE")]
    model: PathBuf,
    /// Model variant: `float`, `weights-int8` or `int8-compute` (a bundle also takes
    /// `NAME+f16`, `weights-int8+int8-act`). Default: a bundle's manifest default; for a
    /// quantised checkpoint the int8-compute simulation; for a float checkpoint float.
    #[arg(long, value_name = "NAME")]
    variant: Option<String>,
    /// Labelled data to evaluate on (.csv/.tsv/.jsonl).
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Label of out-of-scope examples; when present in the data, in-scope accuracy and
    /// out-of-scope recall are reported as CLINC150 defines them.
    #[arg(long, default_value = "oos", value_name = "LABEL")]
    oos_label: String,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    json: bool,
    /// Write the confusion matrix as CSV here (and a picture beside it, .svg, for ≤ 50 classes).
    /// Default: confusion.csv inside a checkpoint; BUNDLE.confusion.csv beside a bundle (a
    /// bundle directory holds only what its manifest lists).
    #[arg(long, value_name = "FILE")]
    confusion: Option<PathBuf>,
    /// Apply this rejection threshold instead of the model's calibrated rule (with the
    /// out-of-scope class when the model has one).
    #[arg(long, value_name = "T")]
    reject_threshold: Option<f32>,
    /// Where to draw the out-of-scope trade-off curve (threshold sweep on this data), when
    /// the data has out-of-scope examples or the model a rule. Default: beside the
    /// confusion matrix, `rejection_curve.eval.svg` inside a checkpoint,
    /// `BUNDLE.rejection_curve.svg` beside a bundle.
    #[arg(long, value_name = "FILE.svg")]
    curve: Option<PathBuf>,
    #[command(flatten)]
    columns: ColumnArgs,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(c) = &a.confusion {
        // The picture goes beside the CSV as .svg: an .svg name would be overwritten.
        anyhow::ensure!(
            c.extension().is_none_or(|e| e != "svg"),
            "--confusion {}: name the CSV file (the picture is written beside it as .svg)",
            c.display()
        );
    }
    if let Some(t) = a.reject_threshold {
        if !t.is_finite() || t < 0.0 {
            anyhow::bail!("--reject-threshold {t} must be a number ≥ 0");
        }
    }
    let model = Evaluated::open_variant(&a.model, a.variant.as_deref())
        .with_context(|| format!("cannot open model {}", a.model.display()))?;
    let started = std::time::Instant::now();
    let (report, rejection) = evaluate_with_rejection(
        &model,
        &a.data,
        &a.columns.columns(),
        &a.oos_label,
        a.reject_threshold,
    )
    .context("evaluation failed")?;
    let seconds = started.elapsed().as_secs_f64();
    let csv_path = a.confusion.clone().unwrap_or_else(|| match model {
        Evaluated::Checkpoint(_) | Evaluated::CheckpointVariant(..) => {
            a.model.join("confusion.csv")
        }
        Evaluated::Bundle(_) => super::beside(&a.model, ".confusion.csv"),
    });
    host::checkpoint::write_atomic(&csv_path, report.confusion_csv().as_bytes())
        .with_context(|| format!("cannot write {}", csv_path.display()))?;
    let svg_path = csv_path.with_extension("svg");
    if report.labels.len() <= 50 {
        host::plot::confusion_matrix(&svg_path, &report.labels, &report.confusion)?;
    }
    let curve_path = rejection.as_ref().map(|_| {
        a.curve.clone().unwrap_or_else(|| match model {
            Evaluated::Checkpoint(_) | Evaluated::CheckpointVariant(..) => {
                csv_path.with_file_name("rejection_curve.eval.svg")
            }
            Evaluated::Bundle(_) => super::beside(&a.model, ".rejection_curve.svg"),
        })
    });
    if let (Some(r), Some(p)) = (&rejection, &curve_path) {
        let title = format!("{} on {}", a.model.display(), a.data.display());
        host::plot::rejection_curve(p, &r.curve, r.rule.as_ref().map(|r| r.threshold), &title)?;
    }
    if a.json {
        let mut v = serde_json::to_value(&report)?;
        v["model"] = serde_json::json!(a.model.display().to_string());
        v["kind"] = serde_json::json!(model.kind());
        v["seconds"] = serde_json::json!(seconds);
        if let (Some(r), Some(p)) = (&rejection, &curve_path) {
            v["rejection"] = serde_json::to_value(r)?;
            v["rejection"]["curve_svg"] = serde_json::json!(p.display().to_string());
        }
        println!("{v}");
    } else {
        println!(
            "{} {} on {} ({} examples, {:.1} s)\n",
            model.kind(),
            a.model.display(),
            a.data.display(),
            report.n,
            seconds
        );
        print!("{}", report.to_text());
        if let (Some(r), Some(p)) = (&rejection, &curve_path) {
            print!("\n{}", r.to_text());
            println!("trade-off curve: {}", p.display());
        }
        println!(
            "\nconfusion matrix: {}{}",
            csv_path.display(),
            if report.labels.len() <= 50 {
                format!(", {}", svg_path.display())
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
