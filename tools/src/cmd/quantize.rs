//! `tools quantize`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use host::quantize::{quantize, CalibMethod, QuantizeJob};

use super::ColumnArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Float checkpoint directory written by `tools train`.
    #[arg(long, value_name = "CKPT")]
    model: PathBuf,
    /// Quantised checkpoint directory to write (model.int8.safetensors, quantization.json,
    /// config, tokenizer): a new or empty directory, or with --force an existing
    /// checkpoint; written all-or-nothing, and left untouched when the accuracy gate fails.
    #[arg(long, value_name = "CKPT_Q")]
    out: PathBuf,
    /// Replace --out if it already holds a checkpoint. A directory that is not a
    /// checkpoint (or holds an input of this command) is never replaced or written into.
    #[arg(long)]
    force: bool,
    /// Labelled text to calibrate activation ranges on (its labels must be the model's).
    /// Default: the checkpoint's training data without its validation part.
    #[arg(long, value_name = "FILE")]
    calib: Option<PathBuf>,
    /// Calibration examples, drawn with a fixed seed from the calibration data.
    #[arg(long, value_name = "N", default_value_t = 512)]
    calib_size: usize,
    /// How an activation range is taken: `percentile` (default; drops the rarest
    /// outliers, see --percentile) or `min-max` (every value seen).
    #[arg(long, value_name = "METHOD", default_value = "percentile", value_parser = parse_method)]
    calib_method: CalibMethod,
    /// Upper quantile kept by the percentile method (the lower one is 100 minus this).
    #[arg(long, value_name = "P", default_value_t = 99.99)]
    percentile: f64,
    /// Validation data for the report and the accuracy gate. Default: the checkpoint's
    /// validation data (its --val file or the same seeded split of its training file).
    #[arg(long, value_name = "FILE")]
    val: Option<PathBuf>,
    /// Fail, writing nothing, when an int8 variant's validation accuracy is more than
    /// this many percentage points below float.
    #[arg(long, value_name = "PTS", default_value_t = 0.5)]
    max_drop: f64,
    /// Out-of-scope label: when present in the validation data the report adds in-scope
    /// accuracy (CLINC150).
    #[arg(long, default_value = "oos", value_name = "LABEL")]
    oos_label: String,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    columns: ColumnArgs,
}

fn parse_method(s: &str) -> Result<CalibMethod, String> {
    CalibMethod::parse(s).ok_or_else(|| format!("unknown method {s:?} (percentile or min-max)"))
}

pub fn run(a: Args) -> Result<()> {
    let job = QuantizeJob {
        model: a.model.clone(),
        out: a.out.clone(),
        calib: a.calib,
        calib_size: a.calib_size,
        method: a.calib_method,
        percentile: a.percentile,
        val: a.val,
        max_drop: a.max_drop,
        columns: a.columns.columns(),
        oos_label: Some(a.oos_label),
        force: a.force,
    };
    eprintln!(
        "quantising {} → {} (int8 per-channel weights, {:?} activation ranges)…",
        a.model.display(),
        a.out.display(),
        job.method
    );
    let report =
        quantize(&job).with_context(|| format!("quantisation of {} failed", a.model.display()))?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", report.to_text());
        println!("quantised checkpoint: {}", a.out.display());
    }
    Ok(())
}
