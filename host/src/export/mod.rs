//! Export: a checkpoint becomes a device bundle (`model.onnx`, `tokenizer.json`,
//! `manifest.json`), written through the device's own bundle types and checked with the
//! device's own engine before success is reported.

pub mod onnx;
pub mod quantized;

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde::Serialize;

use crate::batching::EncodedExample;
use crate::checkpoint::{check_output, Checkpoint, OutputKind};
use crate::data::{Columns, Dataset};
use crate::error::{HostError, Result};

/// Largest logit difference between candle and tract that export accepts.
pub const LOGIT_TOLERANCE: f32 = 1e-4;

/// What `tools export` did.
#[derive(Debug, Clone, Serialize)]
pub struct ExportReport {
    pub bundle: PathBuf,
    pub files: std::collections::BTreeMap<String, String>,
    pub bundle_bytes: u64,
    /// Texts checked through tract against candle.
    pub checked: usize,
    pub max_logit_diff: f32,
    pub check_data: String,
    /// Variants of a quantised bundle and how each checked out (empty for a float bundle).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub variants: Vec<quantized::VariantCheck>,
}

/// The texts export checks itself on: `check_data` if given, else the validation data the
/// checkpoint was trained with (its validation file, or the same seeded split of its
/// training file).
pub(crate) fn check_texts(
    ckpt: &Checkpoint,
    check_data: Option<&Path>,
    columns: &Columns,
) -> Result<(Vec<String>, String)> {
    if let Some(p) = check_data {
        let d = Dataset::load(p, columns)?;
        return Ok((
            d.examples.into_iter().map(|e| e.text).collect(),
            p.display().to_string(),
        ));
    }
    let summary = ckpt.training_summary().ok_or_else(|| {
        HostError::Export(format!(
            "{}: no training.json to find validation text; pass --check-data FILE",
            ckpt.dir.display()
        ))
    })?;
    let get = |k: &str| summary.get(k).and_then(|v| v.as_str()).map(PathBuf::from);
    let missing = |p: &Path| {
        HostError::Export(format!(
            "validation data {} is not readable here; pass --check-data FILE",
            p.display()
        ))
    };
    if let Some(val) = get("val_file") {
        let d = Dataset::load(&val, columns).map_err(|_| missing(&val))?;
        return Ok((
            d.examples.into_iter().map(|e| e.text).collect(),
            val.display().to_string(),
        ));
    }
    let train = get("train_file")
        .ok_or_else(|| HostError::Export("training.json has no train_file".into()))?;
    let seed = summary
        .pointer("/options/seed")
        .and_then(|v| v.as_u64())
        .unwrap_or(42);
    let d = Dataset::load(&train, columns).map_err(|_| missing(&train))?;
    let (_, val) = d.stratified_split(0.1, seed);
    Ok((
        val.examples.into_iter().map(|e| e.text).collect(),
        format!("{} (validation split)", train.display()),
    ))
}

/// "finite" or what a logit vector holds that is not.
pub(crate) fn finiteness(v: &[f32]) -> &'static str {
    if v.iter().any(|x| x.is_nan()) {
        "NaN"
    } else if v.iter().any(|x| x.is_infinite()) {
        "infinite"
    } else {
        "finite"
    }
}

/// A manifest for a bundle written to `out` from `ckpt`: named after the bundle
/// directory, with the checkpoint's preset, labels and maximum length.
pub(crate) fn new_manifest(out: &Path, ckpt: &Checkpoint) -> bundle::Manifest {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model")
        .to_string();
    let mut manifest = bundle::Manifest::new(
        name,
        ckpt.config.preset.clone(),
        ckpt.config.labels.clone(),
        ckpt.config.max_len,
    );
    manifest.tool_version = format!("tools {}", env!("CARGO_PKG_VERSION"));
    manifest.ngrams = ckpt.config.ngrams;
    // The checkpoint's calibrated out-of-scope rule (an unreadable rejection.json is
    // reported by `tools eval`/`calibrate`; the bundle then goes without a rule).
    manifest.rejection = crate::rejection::read_checkpoint_rule(&ckpt.dir)
        .ok()
        .flatten();
    manifest
}

/// Exports `ckpt_dir` to a bundle at `out`. `out` must be new, an empty directory, or
/// (with `force`) an existing bundle, and neither the checkpoint nor a directory holding
/// it ([`crate::checkpoint::check_output`]); the bundle is built beside it and renamed
/// into place only once it has checked out.
pub fn export(
    ckpt_dir: &Path,
    out: &Path,
    check_data: Option<&Path>,
    columns: &Columns,
    force: bool,
) -> Result<ExportReport> {
    let mut inputs = vec![("the model being exported", ckpt_dir)];
    if let Some(d) = check_data {
        inputs.push(("the check data", d));
    }
    check_output(out, OutputKind::Bundle, force, &inputs)?;
    let ckpt = Checkpoint::open(ckpt_dir)?;
    if ckpt.quantized {
        return quantized::export_quantized(&ckpt, out, check_data, columns);
    }
    let device = Device::Cpu;
    let weights = candle_core::safetensors::load(ckpt.weights_path(), &device)?;
    crate::checkpoint::check_finite(&weights, &ckpt.weights_path())?;
    let onnx_bytes =
        onnx::build_onnx(&ckpt.config, &weights).map_err(|e| HostError::Export(e.to_string()))?;

    // Check the ONNX through the device's engine against candle before writing anything.
    let (texts, check_source) = check_texts(&ckpt, check_data, columns)?;
    let model = ckpt.load_float(&device)?;
    let encoder = ckpt.encoder()?;
    let engine = device::engine::Engine::from_onnx_bytes(&onnx_bytes, ckpt.config.num_labels())?;
    let c = ckpt.config.num_labels();
    let mut max_diff = 0f32;
    for chunk in texts.chunks(64) {
        let encoded = chunk
            .iter()
            .map(|t| encoder.encode(t))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let examples: Vec<EncodedExample> =
            encoded.iter().map(|e| EncodedExample::new(e, 0)).collect();
        let indices: Vec<usize> = (0..examples.len()).collect();
        let batch = crate::batching::Batch::new(&examples, &indices, &device)?;
        let reference = model
            .forward(
                &batch.ids,
                &batch.mask,
                Some(&batch.ngrams),
                &crate::model::Dropout::off(),
            )?
            .logits
            .to_vec2::<f32>()?;
        for (i, enc) in encoded.iter().enumerate() {
            let (logits, _) = engine.run_batch(&encoder.batch(std::slice::from_ref(enc)))?;
            let argmax = |v: &[f32]| (0..c).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap_or(0);
            // NaN when either side is not finite: a NaN model fails here instead of
            // matching itself with a difference of 0.
            let diff = device::max_abs_diff(&logits, &reference[i]);
            if diff.is_nan() {
                return Err(HostError::Export(format!(
                    "the logits for {:?} are not finite (tract {}, candle {}); nothing was \
                     written",
                    chunk[i],
                    finiteness(&logits),
                    finiteness(&reference[i])
                )));
            }
            max_diff = max_diff.max(diff);
            if argmax(&logits) != argmax(&reference[i]) || diff > LOGIT_TOLERANCE {
                return Err(HostError::Export(format!(
                    "tract and candle disagree on {:?}: max logit difference {diff:.2e} (tolerance {LOGIT_TOLERANCE:.0e}), \
                     argmax {} vs {}; nothing was written",
                    chunk[i],
                    argmax(&logits),
                    argmax(&reference[i])
                )));
            }
        }
    }

    let mut manifest = new_manifest(out, &ckpt);
    manifest.metrics = serde_json::json!({
        "training": ckpt.training_summary().map(|s| serde_json::json!({
            "best_epoch": s.pointer("/outcome/best_epoch"),
            "best_val_macro_f1": s.pointer("/outcome/best_val_macro_f1"),
            "best_val_accuracy": s.pointer("/outcome/best_val_accuracy"),
            "seconds": s.pointer("/outcome/seconds"),
            "train_examples": s.get("train_examples"),
            "parameters": s.get("parameters"),
        })),
        "export_check": { "texts": texts.len(), "max_logit_diff": max_diff, "source": check_source },
    });
    let manifest = bundle::write_bundle(
        out,
        manifest,
        &[
            (bundle::MODEL_FILE, &onnx_bytes),
            (bundle::TOKENIZER_FILE, &ckpt.tokenizer_json),
        ],
    )?;
    let bundle_bytes = manifest
        .files
        .keys()
        .filter_map(|f| std::fs::metadata(out.join(f)).ok())
        .map(|m| m.len())
        .sum();
    Ok(ExportReport {
        bundle: out.to_path_buf(),
        files: manifest.files,
        bundle_bytes,
        checked: texts.len(),
        max_logit_diff: max_diff,
        check_data: check_source,
        variants: Vec::new(),
    })
}
