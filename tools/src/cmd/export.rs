//! `tools export`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::ColumnArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint directory written by `tools train`.
    #[arg(long, value_name = "CKPT")]
    model: PathBuf,
    /// Bundle directory to write (replaced all-or-nothing if it exists).
    #[arg(long, value_name = "BUNDLE")]
    out: PathBuf,
    /// Labelled or unlabelled text to check tract against candle on (default: the
    /// checkpoint's validation data).
    #[arg(long, value_name = "FILE")]
    check_data: Option<PathBuf>,
    /// Print the export report as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    columns: ColumnArgs,
}

pub fn run(a: Args) -> Result<()> {
    eprintln!(
        "exporting {} → {} (ONNX opset 17), checking with tract…",
        a.model.display(),
        a.out.display()
    );
    let report = host::export::export(
        &a.model,
        &a.out,
        a.check_data.as_deref(),
        &a.columns.columns(),
    )
    .with_context(|| format!("export of {} failed", a.model.display()))?;
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "bundle {} ({} bytes): tract matches candle on {} texts (max logit difference {:.2e})",
            report.bundle.display(),
            report.bundle_bytes,
            report.checked,
            report.max_logit_diff
        );
        for (f, h) in &report.files {
            println!("  {f}  sha256 {h}");
        }
    }
    Ok(())
}
