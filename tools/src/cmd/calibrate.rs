//! `tools calibrate`: (re)choose the out-of-scope rejection threshold of a checkpoint or
//! a bundle on validation data.

use std::path::PathBuf;

use anyhow::{Context, Result};
use host::calibrate::{score_file, write_checkpoint};
use host::evaluate::Evaluated;
use host::rejection::{self, CalibrationOptions, Criterion};

use super::ColumnArgs;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CriterionArg {
    // (Described in the flag's help: clap lists documented values as "- name" lines.)
    WithinDrop,
    Sum,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// A checkpoint (writes rejection.json and rejection_curve.svg into it; `tools export`
    /// carries the rule into the bundle) or an unsigned bundle (rewrites its manifest).
    #[arg(long, value_name = "CKPT|BUNDLE")]
    model: PathBuf,
    /// Labelled validation data (.csv/.tsv/.jsonl); not the test split.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// Label of out-of-scope examples (and the model's out-of-scope class, if it has one).
    #[arg(long, default_value = rejection::DEFAULT_OOS_LABEL, value_name = "LABEL")]
    oos_label: String,
    /// How to choose the threshold when the data has out-of-scope examples: `within-drop`,
    /// the highest out-of-scope recall losing at most --max-in-scope-drop points of in-scope
    /// accuracy against the class alone; `sum`, the highest in-scope accuracy +
    /// out-of-scope recall.
    #[arg(long, value_enum, default_value = "within-drop")]
    criterion: CriterionArg,
    /// For --criterion within-drop: in-scope accuracy points (percent) the threshold may
    /// cost against the class alone.
    #[arg(long, default_value_t = 1.0, value_name = "PTS")]
    max_in_scope_drop: f64,
    /// Data without out-of-scope examples: share of in-scope queries the threshold may
    /// reject (on top of those the class alone rejects; rounded up to whole queries).
    #[arg(long, default_value_t = 0.01, value_name = "RATE")]
    false_rejection: f64,
    /// Where to draw the trade-off curve for a bundle (default: BUNDLE.rejection_curve.svg;
    /// a checkpoint gets rejection_curve.svg inside).
    #[arg(long, value_name = "FILE.svg")]
    curve: Option<PathBuf>,
    /// Print the calibration as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    columns: ColumnArgs,
}

pub fn run(a: Args) -> Result<()> {
    if !(0.0..=100.0).contains(&a.max_in_scope_drop) {
        anyhow::bail!(
            "--max-in-scope-drop {} must be in 0..=100",
            a.max_in_scope_drop
        );
    }
    if !(0.0..=1.0).contains(&a.false_rejection) {
        anyhow::bail!("--false-rejection {} must be in 0..=1", a.false_rejection);
    }
    let opts = CalibrationOptions {
        oos_label: a.oos_label.clone(),
        criterion: match a.criterion {
            CriterionArg::WithinDrop => Criterion::WithinDrop {
                max_drop: a.max_in_scope_drop,
            },
            CriterionArg::Sum => Criterion::MaxSum,
        },
        false_rejection: a.false_rejection,
    };
    let model = Evaluated::open(&a.model)
        .with_context(|| format!("cannot open model {}", a.model.display()))?;
    let scored = score_file(&model, &a.data, &a.columns.columns(), &a.oos_label)
        .context("scoring the validation data")?;
    let on = format!(
        "{} ({} examples)",
        a.data.display(),
        scored.n_in + scored.n_oos
    );
    let cal = rejection::calibrate(&scored, &opts, &on);
    let (written, curve) = match &model {
        Evaluated::Bundle(_) => {
            // The picture first: a path it cannot be written to leaves the bundle as it was.
            let curve = a
                .curve
                .clone()
                .unwrap_or_else(|| super::beside(&a.model, ".rejection_curve.svg"));
            host::plot::rejection_curve(&curve, &cal.curve, Some(cal.rule.threshold), &on)?;
            let manifest = rejection::write_bundle_rule(&a.model, &cal.rule)?;
            (manifest, curve)
        }
        _ => {
            write_checkpoint(&a.model, &cal)?;
            let curve = a.model.join(rejection::CURVE_FILE);
            if let Some(c) = &a.curve {
                // All-or-nothing, and never a copy onto itself (which would empty it).
                let same = std::fs::canonicalize(c).ok() == std::fs::canonicalize(&curve).ok();
                if !same {
                    let svg = std::fs::read(&curve)
                        .with_context(|| format!("reading {}", curve.display()))?;
                    host::checkpoint::write_atomic(c, &svg)
                        .with_context(|| format!("writing {}", c.display()))?;
                }
            }
            (a.model.join(rejection::REJECTION_FILE), curve)
        }
    };
    if a.json {
        let mut v = serde_json::to_value(&cal)?;
        v["written"] = serde_json::json!(written.display().to_string());
        v["curve_svg"] = serde_json::json!(curve.display().to_string());
        if let Some(o) = v.as_object_mut() {
            o.remove("curve");
        }
        println!("{v}");
    } else {
        println!("{}", rejection::summary_line(&cal));
        println!("criterion: {}", cal.rule.criterion);
        println!(
            "rule written to {}; curve {}",
            written.display(),
            curve.display()
        );
    }
    Ok(())
}
