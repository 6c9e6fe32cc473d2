//! Export of a quantised checkpoint: one bundle with two int8 variants sharing one
//! weights file.
//!
//! ```text
//! BUNDLE/
//!   model.onnx                 weights-int8: DequantizeLinear(int8 W) -> MatMul (default)
//!   model-int8-compute.onnx    int8-compute: QuantizeLinear(x) -> MatMulInteger -> DequantizeLinear
//!   weights.int8.bin           every int8 tensor, once: ONNX external data of both graphs
//!   tokenizer.json, manifest.json (format 2: variants, default_variant, reference)
//! ```
//!
//! tract 0.23.9 reads ONNX external data (`data_location = EXTERNAL`, location relative
//! to the model's directory) and lets the caller serve the bytes, so the device hands it
//! the sha256-verified bytes; onnxruntime and `onnx.load` resolve the same file beside
//! the model. No float weights are carried: a quantised checkpoint has none (export the
//! float checkpoint for a float bundle).
//!
//! Before anything is written, both graphs run through the device's tract engine on the
//! check texts and must give the same label as the candle simulation of that variant on
//! at least [`MIN_AGREEMENT`] of them.

use std::path::Path;

use candle_core::Device;
use serde::Serialize;

use super::{check_texts, ExportReport};
use crate::batching::EncodedExample;
use crate::checkpoint::Checkpoint;
use crate::data::Columns;
use crate::error::{HostError, Result};
use crate::quantize::report::{argmax, logits};
use crate::quantize::{QuantizedModel, Variant};

/// The shared int8 weights of a quantised bundle.
pub const WEIGHTS_INT8_FILE: &str = "weights.int8.bin";
/// The int8-compute graph.
pub const INT8_COMPUTE_FILE: &str = "model-int8-compute.onnx";
/// Smallest share of check texts on which tract must match candle's label.
pub const MIN_AGREEMENT: f64 = 0.995;
/// Reference texts stored in the manifest (their logits, rounded to 1e-4, are most of
/// the manifest's size with many classes).
pub const REFERENCE_TEXTS: usize = 4;

/// How one variant checked out.
#[derive(Debug, Clone, Serialize)]
pub struct VariantCheck {
    pub variant: String,
    pub file: String,
    pub bytes: u64,
    /// Share of check texts where tract and the candle simulation give the same label.
    pub agreement: f64,
    pub max_logit_diff: f32,
    pub expected_accuracy: Option<f64>,
}

fn export_err(msg: String) -> HostError {
    HostError::Export(msg)
}

/// A staging directory removed when dropped.
struct Stage(std::path::PathBuf);

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn export_quantized(
    ckpt: &Checkpoint,
    out: &Path,
    check_data: Option<&Path>,
    columns: &Columns,
) -> Result<ExportReport> {
    let device = Device::Cpu;
    let q = QuantizedModel::load(&ckpt.dir, &ckpt.config)?;
    let (blob, layout) = super::onnx::pack_int8(&q, WEIGHTS_INT8_FILE);
    let graphs = [
        (Variant::WeightsInt8, bundle::MODEL_FILE),
        (Variant::Int8Compute, INT8_COMPUTE_FILE),
    ];
    let mut files: Vec<(&str, Vec<u8>)> = vec![(WEIGHTS_INT8_FILE, blob)];
    for (variant, file) in graphs {
        let bytes = super::onnx::build_onnx_quantized(&q, variant, Some(&layout))
            .map_err(|e| export_err(e.to_string()))?;
        files.push((file, bytes));
    }

    // Stage the ONNX files and the weights so tract resolves external data as on the board.
    let stage = Stage(std::env::temp_dir().join(format!(
        "edge-export-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )));
    std::fs::create_dir_all(&stage.0).map_err(|e| HostError::io(&stage.0, e))?;
    for (name, bytes) in &files {
        std::fs::write(stage.0.join(name), bytes)
            .map_err(|e| HostError::io(stage.0.join(name), e))?;
    }

    let (texts, check_source) = check_texts(ckpt, check_data, columns)?;
    if texts.is_empty() {
        return Err(export_err(format!(
            "{check_source}: no texts to check the export on"
        )));
    }
    let encoder = ckpt.encoder()?;
    let encoded = texts
        .iter()
        .map(|t| encoder.encode(t))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let examples: Vec<EncodedExample> = encoded.iter().map(|e| EncodedExample::new(e, 0)).collect();
    let c = ckpt.config.num_labels();
    let report = q.spec.report.as_ref();
    let mut checks = Vec::new();
    let mut reference: Vec<bundle::ReferenceText> = texts
        .iter()
        .take(REFERENCE_TEXTS)
        .map(|t| bundle::ReferenceText {
            text: t.clone(),
            outputs: Default::default(),
        })
        .collect();
    let mut max_diff_all = 0f32;
    for (variant, file) in graphs {
        let model = q.model(variant, &device)?;
        let candle = logits(&model, &examples, &device)?;
        let engine = device::engine::Engine::from_onnx_file(
            &stage.0,
            file,
            c,
            device::engine::EngineOptions::default(),
        )?;
        let (mut agree, mut max_diff) = (0usize, 0f32);
        for (i, enc) in encoded.iter().enumerate() {
            let (l, _) = engine.run_batch(&encoder.batch(std::slice::from_ref(enc)))?;
            let diff = device::max_abs_diff(&l, &candle[i]);
            if diff.is_nan() {
                return Err(export_err(format!(
                    "{variant}: the logits for {:?} are not finite (tract {}, candle {}); \
                     nothing was written",
                    texts[i],
                    super::finiteness(&l),
                    super::finiteness(&candle[i])
                )));
            }
            max_diff = max_diff.max(diff);
            if argmax(&l) == argmax(&candle[i]) {
                agree += 1;
            }
            if let Some(r) = reference.get_mut(i) {
                r.outputs.insert(
                    variant.name().into(),
                    bundle::ReferenceOutput {
                        label_index: argmax(&l),
                        logits: l.iter().map(|x| (x * 1e4).round() / 1e4).collect(),
                    },
                );
            }
        }
        let agreement = agree as f64 / encoded.len() as f64;
        if agreement < MIN_AGREEMENT {
            return Err(export_err(format!(
                "{variant} ({file}): tract and the candle int8 model agree on {:.2}% of {} texts \
                 (need {:.1}%), max logit difference {max_diff:.2e}; nothing was written",
                agreement * 100.0,
                encoded.len(),
                MIN_AGREEMENT * 100.0
            )));
        }
        max_diff_all = max_diff_all.max(max_diff);
        let bytes = files
            .iter()
            .find(|(n, _)| *n == file)
            .map(|(_, b)| b.len())
            .unwrap_or(0);
        checks.push(VariantCheck {
            variant: variant.name().into(),
            file: file.into(),
            bytes: bytes as u64,
            agreement,
            max_logit_diff: max_diff,
            expected_accuracy: report.and_then(|r| r.accuracy(variant)),
        });
    }

    let mut manifest = super::new_manifest(out, ckpt);
    manifest.variants = checks
        .iter()
        .map(|ch| bundle::VariantEntry {
            name: ch.variant.clone(),
            file: ch.file.clone(),
            sha256: String::new(),
            external_data: vec![WEIGHTS_INT8_FILE.into()],
            expected_accuracy: ch.expected_accuracy,
            description: match ch.variant.as_str() {
                "weights-int8" => "int8 weights (per-channel scales) dequantised at load; f32 compute".into(),
                _ => "int8 weights, static u8 activations: QuantizeLinear -> MatMulInteger (int8 kernels)".into(),
            },
        })
        .collect();
    manifest.default_variant = Some(Variant::WeightsInt8.name().into());
    manifest.reference = reference;
    manifest.metrics = serde_json::json!({
        "quantization": report.map(|r| serde_json::json!({
            "variants": r.variants,
            "validation": r.validation,
            "float_weights_bytes": r.float_weights_bytes,
            "int8_weights_bytes": r.int8_weights_bytes,
        })),
        "calibration": q.spec.calibration,
        "export_check": { "texts": texts.len(), "source": check_source, "variants": checks },
    });
    let file_refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (*n, b.as_slice()))
        .chain(std::iter::once((
            bundle::TOKENIZER_FILE,
            ckpt.tokenizer_json.as_slice(),
        )))
        .collect();
    let manifest = bundle::write_bundle(out, manifest, &file_refs)?;
    let bundle_bytes = manifest
        .files
        .keys()
        .chain(std::iter::once(&bundle::MANIFEST_FILE.to_string()))
        .filter_map(|f| std::fs::metadata(out.join(f)).ok())
        .map(|m| m.len())
        .sum();
    Ok(ExportReport {
        bundle: out.to_path_buf(),
        files: manifest.files,
        bundle_bytes,
        checked: texts.len(),
        max_logit_diff: max_diff_all,
        check_data: check_source,
        variants: checks,
    })
}
