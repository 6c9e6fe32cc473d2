//! `tools export`.

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::ColumnArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint directory written by `tools train`.
    #[arg(long, value_name = "CKPT")]
    model: PathBuf,
    /// Bundle directory to write: a new or empty directory, or with --force an existing
    /// bundle (replaced all-or-nothing). Never the checkpoint itself or a directory
    /// holding it.
    #[arg(long, value_name = "BUNDLE")]
    out: PathBuf,
    /// Replace --out if it already holds a bundle (has manifest.json). A directory that
    /// is not a bundle is never replaced or written into.
    #[arg(long)]
    force: bool,
    /// Labelled or unlabelled text to check tract against candle on (default: the
    /// checkpoint's validation data).
    #[arg(long, value_name = "FILE")]
    check_data: Option<PathBuf>,
    /// Print the export report as JSON.
    #[arg(long)]
    json: bool,
    /// Secret key file (NAME.key from `tools keygen`): sign the bundle, i.e. write
    /// manifest.sig over the exact bytes of its manifest.json (docs/deploy.md). The key is
    /// loaded before exporting, so a bad key writes nothing.
    #[arg(long, value_name = "NAME.key")]
    sign: Option<PathBuf>,
    #[command(flatten)]
    columns: ColumnArgs,
}

pub fn run(a: Args) -> Result<()> {
    let key = match &a.sign {
        Some(k) => Some(bundle::signature::SecretKey::load(k).context("--sign")?),
        None => None,
    };
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
        a.force,
    )
    .with_context(|| format!("export of {} failed", a.model.display()))?;
    if let Some(key) = &key {
        let sig = bundle::signature::sign_bundle(&a.out, key)
            .with_context(|| format!("signing bundle {}", a.out.display()))?;
        eprintln!("bundle {}: signed by key {}", a.out.display(), sig.key_id);
    }
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
        for v in &report.variants {
            println!(
                "  variant {:<13} {}  {} bytes  tract/candle label agreement {:.2}%  max logit diff {:.2e}  expected accuracy {}",
                v.variant,
                v.file,
                v.bytes,
                v.agreement * 100.0,
                v.max_logit_diff,
                v.expected_accuracy
                    .map(|a| format!("{a:.4}"))
                    .unwrap_or_else(|| "-".into())
            );
        }
    }
    Ok(())
}
