//! Post-training int8 quantisation of a float checkpoint (`tools quantize`).
//!
//! What is quantised, and how:
//!
//! | tensor | int8 form |
//! |---|---|
//! | every linear weight (attention Q/K/V/output, FFN, pooling `W` and `u`, classifier) | symmetric, one scale per output channel: `q = round(W / s)`, `s = max|W[o,:]| / 127`, `q ∈ [-127, 127]` |
//! | word and position embedding tables | symmetric, one scale per row |
//! | input of every quantised matmul (int8-compute only) | asymmetric u8 with a static scale and zero point from calibration (ONNX `QuantizeLinear`) |
//! | LayerNorm, biases, softmax, attention scores | stay f32 |
//!
//! A quantised checkpoint is a directory like a float one, with `model.int8.safetensors`
//! (int8 tensors `NAME` `[rows, cols]` with f32 `NAME.scale` `[rows]`, plus the f32
//! LayerNorm/bias tensors) instead of `model.safetensors`, and `quantization.json`
//! ([`QuantSpec`]: activation ranges, calibration, the report). It carries no float
//! weights. candle evaluates it with simulated quantisation ([`QuantizedModel::model`]):
//! weights are dequantised exactly as the device's `DequantizeLinear` does, and for the
//! int8-compute variant every matmul input goes through [`ActQuant::apply`], the same
//! arithmetic as `QuantizeLinear -> MatMulInteger`. So `tools eval CKPT_Q` predicts the board.
//!
//! Calibration ([`calibrate`]) runs the float model over training examples and records
//! each matmul input's range: `min-max`, or `percentile` (the default: the 0.01 % and
//! 99.99 % quantiles, which ignores the rare outliers that would otherwise stretch the
//! 256-step grid; see docs/quantization.md for the measurement behind the choice).

pub mod calibrate;
pub mod report;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    write_atomic, Checkpoint, CONFIG_FILE, QUANT_SPEC_FILE, QUANT_WEIGHTS_FILE, TOKENIZER_FILE,
    TRAINING_FILE,
};
use crate::config::ModelConfig;
use crate::data::{Columns, Dataset};
use crate::error::{HostError, Result};
pub use crate::model::ActQuant;
use crate::model::AttentionClassifier;
pub use calibrate::CalibMethod;
pub use report::QuantReport;

/// Embedding tables quantised per row (and the bag-of-n-grams table, when the model has one:
/// [`embedding_tables`]).
pub const EMBEDDING_TABLES: [&str; 2] = [
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
];
/// The bag-of-n-grams table's weight name.
pub const NGRAM_TABLE: &str = "ngram_bag.weight";

/// Every table of `config` quantised per row, with its `(rows, cols)`.
pub fn embedding_tables(config: &ModelConfig) -> Vec<(&'static str, usize, usize)> {
    let mut v = vec![
        (EMBEDDING_TABLES[0], config.vocab_size, config.hidden),
        (EMBEDDING_TABLES[1], config.max_len, config.hidden),
    ];
    if let Some(spec) = config.ngrams {
        v.push((NGRAM_TABLE, spec.buckets as usize, config.hidden));
    }
    v
}

/// Whether `name` is a table quantised per row (stored `[rows, d]`, gathered by id).
pub fn is_embedding_table(name: &str) -> bool {
    EMBEDDING_TABLES.contains(&name) || name == NGRAM_TABLE
}
/// Format of [`QuantSpec`].
pub const QUANT_FORMAT: u32 = 1;

fn invalid(msg: impl Into<String>) -> HostError {
    HostError::Invalid(msg.into())
}

/// The model's forms (`float`, `weights-int8`, `int8-compute`), named where the bundle
/// format is defined.
pub use bundle::Variant;

/// The model of checkpoint `ckpt`: float weights, or for a quantised checkpoint the
/// int8-compute simulation (the variant with the most quantisation; see [`load_variant`]).
pub fn load_model(ckpt: &Checkpoint, device: &Device) -> Result<AttentionClassifier> {
    if ckpt.quantized {
        return load_variant(ckpt, Variant::Int8Compute, device);
    }
    ckpt.load_float(device)
}

/// The model of checkpoint `ckpt` as `variant` computes it: a float checkpoint only has
/// `float`; a quantised one simulates `weights-int8` or `int8-compute` (its `float` is the
/// dequantised weights, the float originals are not kept).
pub fn load_variant(
    ckpt: &Checkpoint,
    variant: Variant,
    device: &Device,
) -> Result<AttentionClassifier> {
    if !ckpt.quantized {
        if variant != Variant::Float {
            return Err(HostError::Invalid(format!(
                "{} is a float checkpoint: variant {variant} needs a quantised one                      (tools quantize)",
                ckpt.dir.display()
            )));
        }
        return ckpt.load_float(device);
    }
    let q = QuantizedModel::load(&ckpt.dir, &ckpt.config)?;
    q.model(variant, device)
}

/// Every quantised linear layer: (weight-name prefix, out, in), in graph order.
pub fn linear_layers(c: &ModelConfig) -> Vec<(String, usize, usize)> {
    let (d, f) = (c.hidden, c.ffn);
    let mut v = Vec::new();
    for l in 0..c.layers {
        let p = format!("encoder.layer.{l}");
        for m in ["query", "key", "value"] {
            v.push((format!("{p}.attention.self.{m}"), d, d));
        }
        v.push((format!("{p}.attention.output.dense"), d, d));
        v.push((format!("{p}.intermediate.dense"), f, d));
        v.push((format!("{p}.output.dense"), d, f));
    }
    v.push(("pooling.dense".into(), c.pool_dim, d));
    v.push(("pooling.query".into(), 1, c.pool_dim));
    v.push(("classifier".into(), c.num_labels(), d));
    v
}

/// A matrix quantised symmetrically per row (row = output channel or embedding row).
#[derive(Debug, Clone, PartialEq)]
pub struct QTensor {
    pub rows: usize,
    pub cols: usize,
    /// Row-major int8 values in `[-127, 127]`.
    pub values: Vec<i8>,
    /// One scale per row: `w ≈ q * scale`.
    pub scales: Vec<f32>,
}

impl QTensor {
    /// Quantises row-major `w` (`rows x cols`).
    pub fn quantize(w: &[f32], rows: usize, cols: usize) -> QTensor {
        assert_eq!(w.len(), rows * cols);
        let mut values = Vec::with_capacity(w.len());
        let mut scales = Vec::with_capacity(rows);
        for row in w.chunks(cols.max(1)) {
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales.push(scale);
            values.extend(
                row.iter()
                    .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
            );
        }
        QTensor {
            rows,
            cols,
            values,
            scales,
        }
    }

    /// `q * scale`, row-major, exactly what `DequantizeLinear` computes.
    pub fn dequantize(&self) -> Vec<f32> {
        self.values
            .chunks(self.cols.max(1))
            .zip(&self.scales)
            .flat_map(|(row, &s)| row.iter().map(move |&q| f32::from(q) * s))
            .collect()
    }

    /// Signal-to-quantisation-noise ratio of `dequantize()` against `w`, dB.
    pub fn snr_db(&self, w: &[f32]) -> f64 {
        let (mut s, mut n) = (0f64, 0f64);
        for (a, b) in w.iter().zip(self.dequantize()) {
            s += f64::from(*a).powi(2);
            n += f64::from(a - b).powi(2);
        }
        snr_db(s, n)
    }
}

/// `10 log10(signal / noise)`, capped at 200 dB for exact results.
pub fn snr_db(signal: f64, noise: f64) -> f64 {
    if noise <= 0.0 {
        200.0
    } else {
        (10.0 * (signal / noise).log10()).min(200.0)
    }
}

/// Calibrated range of one matmul input and the u8 grid derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActRange {
    /// Smallest and largest value kept (after the percentile cut, if any).
    pub min: f32,
    pub max: f32,
    /// Extremes actually seen in calibration.
    pub observed_min: f32,
    pub observed_max: f32,
    pub scale: f32,
    pub zero_point: u8,
}

impl ActRange {
    pub fn quant(&self) -> ActQuant {
        ActQuant {
            scale: self.scale,
            zero_point: self.zero_point,
        }
    }
}

/// How calibration was done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationInfo {
    pub method: CalibMethod,
    /// Upper quantile kept by the percentile method (lower: 100 - this).
    pub percentile: f64,
    pub examples: usize,
    pub source: String,
}

/// `quantization.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuantSpec {
    pub format: u32,
    pub weights: String,
    pub activations: String,
    /// Linear-layer prefix -> calibrated input range.
    pub ranges: BTreeMap<String, ActRange>,
    pub calibration: CalibrationInfo,
    /// The float checkpoint this was made from.
    pub source: String,
    #[serde(default)]
    pub report: Option<QuantReport>,
}

/// A quantised model: int8 tables, the f32 tensors that stay float, activation ranges.
#[derive(Debug, Clone)]
pub struct QuantizedModel {
    pub config: ModelConfig,
    /// Quantised weights by checkpoint name (`{prefix}.weight`, embedding tables).
    pub tables: BTreeMap<String, QTensor>,
    /// Tensors kept in f32 (LayerNorm, biases): name -> (shape, values).
    pub float: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    pub spec: QuantSpec,
}

fn tensor_values(name: &str, t: &Tensor) -> Result<(Vec<usize>, Vec<f32>)> {
    let v = t
        .to_dtype(DType::F32)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(|e| invalid(format!("weight {name}: {e}")))?;
    Ok((t.dims().to_vec(), v))
}

impl QuantizedModel {
    /// Quantises the weights of a float checkpoint (no activation ranges yet: see
    /// [`calibrate::calibrate`]).
    pub fn from_float(
        config: &ModelConfig,
        weights: &HashMap<String, Tensor>,
        calibration: CalibrationInfo,
        source: String,
    ) -> Result<QuantizedModel> {
        let mut quantised: Vec<(String, usize, usize)> = linear_layers(config)
            .into_iter()
            .map(|(p, o, i)| (format!("{p}.weight"), o, i))
            .collect();
        quantised.extend(
            embedding_tables(config)
                .into_iter()
                .map(|(n, r, c)| (n.to_string(), r, c)),
        );
        let mut tables = BTreeMap::new();
        for (name, rows, cols) in &quantised {
            let t = weights
                .get(name)
                .ok_or_else(|| invalid(format!("missing weight {name}")))?;
            let (shape, v) = tensor_values(name, t)?;
            if shape != [*rows, *cols] {
                return Err(invalid(format!(
                    "weight {name}: shape {shape:?}, expected [{rows}, {cols}]"
                )));
            }
            tables.insert(name.clone(), QTensor::quantize(&v, *rows, *cols));
        }
        let mut float = BTreeMap::new();
        for (name, t) in weights {
            if !tables.contains_key(name) {
                float.insert(name.clone(), tensor_values(name, t)?);
            }
        }
        Ok(QuantizedModel {
            config: config.clone(),
            tables,
            float,
            spec: QuantSpec {
                format: QUANT_FORMAT,
                weights: "int8 symmetric per output channel (linear layers), per row \
                          (embedding tables); LayerNorm and biases f32"
                    .into(),
                activations: "u8 asymmetric, static per-tensor scale and zero point for \
                              the input of every quantised matmul (int8-compute variant)"
                    .into(),
                ranges: BTreeMap::new(),
                calibration,
                source,
                report: None,
            },
        })
    }

    /// Every tensor as f32, quantised ones dequantised.
    pub fn dequantized(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (name, q) in &self.tables {
            let t = Tensor::from_vec(q.dequantize(), (q.rows, q.cols), device)?;
            out.insert(name.clone(), t);
        }
        for (name, (shape, v)) in &self.float {
            out.insert(
                name.clone(),
                Tensor::from_vec(v.clone(), shape.as_slice(), device)?,
            );
        }
        Ok(out)
    }

    /// The candle model simulating `variant` (`Float` is the dequantised weights, same as
    /// `WeightsInt8`: the float weights are not kept).
    pub fn model(&self, variant: Variant, device: &Device) -> Result<AttentionClassifier> {
        let vb = VarBuilder::from_tensors(self.dequantized(device)?, DType::F32, device);
        let mut model = AttentionClassifier::new(vb, &self.config)?;
        if variant == Variant::Int8Compute {
            self.set_input_quant(&mut model)?;
        }
        Ok(model)
    }

    /// Puts the calibrated input quantisation on every linear layer of `model`.
    pub fn set_input_quant(&self, model: &mut AttentionClassifier) -> Result<()> {
        for lin in model.linears_mut() {
            let r = self.spec.ranges.get(&lin.name).ok_or_else(|| {
                invalid(format!(
                    "no calibrated activation range for {} in {QUANT_SPEC_FILE}",
                    lin.name
                ))
            })?;
            lin.input_quant = Some(r.quant());
        }
        Ok(())
    }

    /// f32 tensors that stay float, as candle tensors (for the ONNX writer).
    pub fn float_tensors(&self, device: &Device) -> Result<HashMap<String, Tensor>> {
        self.float
            .iter()
            .map(|(n, (s, v))| {
                Ok((
                    n.clone(),
                    Tensor::from_vec(v.clone(), s.as_slice(), device)?,
                ))
            })
            .collect()
    }

    /// `model.int8.safetensors` bytes.
    pub fn weights_bytes(&self) -> Result<Vec<u8>> {
        use safetensors::tensor::TensorView;
        use safetensors::Dtype;
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (name, q) in &self.tables {
            owned.push((
                name.clone(),
                Dtype::I8,
                vec![q.rows, q.cols],
                q.values.iter().map(|&v| v as u8).collect(),
            ));
            owned.push((
                format!("{name}.scale"),
                Dtype::F32,
                vec![q.rows],
                q.scales.iter().flat_map(|v| v.to_le_bytes()).collect(),
            ));
        }
        for (name, (shape, v)) in &self.float {
            owned.push((
                name.clone(),
                Dtype::F32,
                shape.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ));
        }
        let views = owned
            .iter()
            .map(|(n, d, s, b)| {
                TensorView::new(*d, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| invalid(format!("{n}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize(views, None).map_err(|e| invalid(format!("safetensors: {e}")))
    }

    /// Reads a quantised checkpoint's weights and spec.
    pub fn load(dir: &Path, config: &ModelConfig) -> Result<QuantizedModel> {
        let bad = |problem: String| HostError::Checkpoint {
            path: dir.to_path_buf(),
            problem,
        };
        let spec_path = dir.join(QUANT_SPEC_FILE);
        let text = std::fs::read_to_string(&spec_path).map_err(|e| HostError::io(&spec_path, e))?;
        let spec: QuantSpec =
            serde_json::from_str(&text).map_err(|e| bad(format!("{QUANT_SPEC_FILE}: {e}")))?;
        if spec.format != QUANT_FORMAT {
            return Err(bad(format!(
                "{QUANT_SPEC_FILE}: format {} (this tool reads {QUANT_FORMAT})",
                spec.format
            )));
        }
        let path = dir.join(QUANT_WEIGHTS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| HostError::io(&path, e))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("{QUANT_WEIGHTS_FILE}: {e}")))?;
        let mut tables = BTreeMap::new();
        let mut float = BTreeMap::new();
        let f32s = |b: &[u8]| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        for (name, view) in st.tensors() {
            match view.dtype() {
                safetensors::Dtype::I8 => {
                    let shape = view.shape();
                    if shape.len() != 2 {
                        return Err(bad(format!("{name}: int8 tensor of rank {}", shape.len())));
                    }
                    let scale = st
                        .tensor(&format!("{name}.scale"))
                        .map_err(|_| bad(format!("{QUANT_WEIGHTS_FILE}: {name}.scale missing")))?;
                    let scales = f32s(scale.data());
                    if scales.len() != shape[0] {
                        return Err(bad(format!(
                            "{name}.scale: {} scales for {} rows",
                            scales.len(),
                            shape[0]
                        )));
                    }
                    tables.insert(
                        name.clone(),
                        QTensor {
                            rows: shape[0],
                            cols: shape[1],
                            values: view.data().iter().map(|&b| b as i8).collect(),
                            scales,
                        },
                    );
                }
                safetensors::Dtype::F32 if name.ends_with(".scale") => {}
                safetensors::Dtype::F32 => {
                    float.insert(name.clone(), (view.shape().to_vec(), f32s(view.data())));
                }
                other => return Err(bad(format!("{name}: unexpected dtype {other:?}"))),
            }
        }
        Ok(QuantizedModel {
            config: config.clone(),
            tables,
            float,
            spec,
        })
    }
}

/// Everything `tools quantize` needs.
#[derive(Debug, Clone)]
pub struct QuantizeJob {
    /// Float checkpoint.
    pub model: PathBuf,
    /// Quantised checkpoint to write (replaced all-or-nothing).
    pub out: PathBuf,
    /// Calibration text (default: the checkpoint's training data, minus validation).
    pub calib: Option<PathBuf>,
    pub calib_size: usize,
    pub method: CalibMethod,
    pub percentile: f64,
    /// Validation data for the report and the gate (default: the checkpoint's).
    pub val: Option<PathBuf>,
    /// Largest accepted accuracy drop, percentage points, of any int8 variant.
    pub max_drop: f64,
    pub columns: Columns,
    pub oos_label: Option<String>,
    /// Replace `out` if it already holds a checkpoint (never anything else:
    /// [`crate::checkpoint::check_output`]).
    pub force: bool,
}

/// The validation set a checkpoint was trained with (its `--val` file, or the same
/// seeded split of its training file) and the training part.
pub fn training_data(ckpt: &Checkpoint, columns: &Columns) -> Result<(Dataset, Dataset, String)> {
    let summary = ckpt.training_summary().ok_or_else(|| {
        invalid(format!(
            "{}: no {TRAINING_FILE} to find the training and validation data; pass --calib and --val",
            ckpt.dir.display()
        ))
    })?;
    let get = |k: &str| summary.get(k).and_then(|v| v.as_str()).map(PathBuf::from);
    let train_path =
        get("train_file").ok_or_else(|| invalid(format!("{TRAINING_FILE} has no train_file")))?;
    let load = |p: &Path| {
        Dataset::load(p, columns).map_err(|e| {
            invalid(format!(
                "training data {} is not readable here ({e}); pass --calib and --val",
                p.display()
            ))
        })
    };
    let train = load(&train_path)?;
    if let Some(val) = get("val_file") {
        let v = load(&val)?;
        return Ok((train, v, val.display().to_string()));
    }
    let seed = summary
        .pointer("/options/seed")
        .and_then(|v| v.as_u64())
        .unwrap_or(42);
    let (tr, val) = train.stratified_split(0.1, seed);
    Ok((
        tr,
        val,
        format!("{} (validation split)", train_path.display()),
    ))
}

/// Quantises, calibrates, measures and — if no int8 variant loses more than
/// `max_drop` points of accuracy — writes the quantised checkpoint. On failure nothing
/// is written (the directory is staged beside `out` and renamed into place).
pub fn quantize(job: &QuantizeJob) -> Result<QuantReport> {
    if job.percentile.is_nan() || job.percentile <= 50.0 || job.percentile > 100.0 {
        return Err(invalid(format!(
            "--percentile {} must be in (50, 100]",
            job.percentile
        )));
    }
    if job.calib_size == 0 {
        return Err(invalid("--calib-size must be at least 1"));
    }
    if job.max_drop.is_nan() || job.max_drop < 0.0 {
        return Err(invalid(format!("--max-drop {} must be >= 0", job.max_drop)));
    }
    {
        let mut inputs = vec![("the model being quantised", job.model.as_path())];
        if let Some(c) = &job.calib {
            inputs.push(("the calibration data", c));
        }
        if let Some(v) = &job.val {
            inputs.push(("the validation data", v));
        }
        crate::checkpoint::check_output(
            &job.out,
            crate::checkpoint::OutputKind::Checkpoint,
            job.force,
            &inputs,
        )?;
    }
    let ckpt = Checkpoint::open(&job.model)?;
    if ckpt.quantized {
        return Err(invalid(format!(
            "{} is already a quantised checkpoint; quantise the float checkpoint it came from",
            job.model.display()
        )));
    }
    let device = Device::Cpu;
    let labels = ckpt.config.labels.clone();
    let encoder = ckpt.encoder()?;

    // Data: calibration from training text, the report and gate on validation.
    let defaults = if job.calib.is_none() || job.val.is_none() {
        Some(training_data(&ckpt, &job.columns)?)
    } else {
        None
    };
    let (calib_set, calib_source) = match &job.calib {
        Some(p) => (Dataset::load(p, &job.columns)?, p.display().to_string()),
        None => {
            let (tr, _, _) = defaults.as_ref().expect("loaded above");
            (tr.clone(), format!("{} (training part)", tr.path.display()))
        }
    };
    calib_set.check_labels(&labels)?;
    let (val_set, val_source) = match &job.val {
        Some(p) => (Dataset::load(p, &job.columns)?, p.display().to_string()),
        None => {
            let (_, v, src) = defaults.as_ref().expect("loaded above");
            (v.clone(), src.clone())
        }
    };
    val_set.check_labels(&labels)?;
    let calib_enc = crate::batching::encode(&encoder, &calib_set, &labels)?;
    let calib_enc = calibrate::sample(&calib_enc, job.calib_size);
    let val_enc = crate::batching::encode(&encoder, &val_set, &labels)?;

    let weights = candle_core::safetensors::load(ckpt.weights_path(), &device)?;
    // A NaN or infinite weight would be quantised to some integer and the gate would
    // compare against a broken float model: refused, as export refuses it.
    crate::checkpoint::check_finite(&weights, &ckpt.weights_path())?;
    let float_model = ckpt.load_float(&device)?;
    let mut q = QuantizedModel::from_float(
        &ckpt.config,
        &weights,
        CalibrationInfo {
            method: job.method,
            percentile: job.percentile,
            examples: calib_enc.len(),
            source: calib_source,
        },
        job.model.display().to_string(),
    )?;
    q.spec.ranges = calibrate::calibrate(
        &float_model,
        &calib_enc,
        job.method,
        job.percentile,
        &device,
    )?;

    let float_bytes = std::fs::metadata(ckpt.weights_path())
        .map(|m| m.len())
        .unwrap_or(0);
    let weights_bytes = q.weights_bytes()?;
    let mut report = report::measure(
        &weights,
        &float_model,
        &q,
        &val_enc,
        &labels,
        job.oos_label.as_deref(),
        &device,
    )?;
    report.validation = val_source;
    report.float_weights_bytes = float_bytes;
    report.int8_weights_bytes = weights_bytes.len() as u64;
    report.max_drop = job.max_drop;
    report.gate_passed = report.worst_drop() <= job.max_drop;
    if !report.gate_passed {
        return Err(invalid(format!(
            "int8 accuracy drops {:.2} points, more than --max-drop {}; nothing was written\n{}",
            report.worst_drop(),
            job.max_drop,
            report.to_text()
        )));
    }
    q.spec.report = Some(report.clone());

    // Stage the whole directory, then move it into place.
    let spec_json = serde_json::to_vec_pretty(&q.spec).map_err(|e| invalid(e.to_string()))?;
    let config_json =
        serde_json::to_vec_pretty(&ckpt.config).map_err(|e| invalid(e.to_string()))?;
    let mut files: Vec<(&str, Vec<u8>)> = vec![
        (QUANT_WEIGHTS_FILE, weights_bytes),
        (QUANT_SPEC_FILE, spec_json),
        (CONFIG_FILE, config_json),
        (TOKENIZER_FILE, ckpt.tokenizer_json.clone()),
    ];
    if let Ok(t) = std::fs::read(ckpt.dir.join(TRAINING_FILE)) {
        files.push((TRAINING_FILE, t));
    }
    // The float model's calibrated rejection rule carries over (re-calibrate the
    // quantised checkpoint with `tools calibrate` to fit its own probabilities).
    for f in [
        crate::rejection::REJECTION_FILE,
        crate::rejection::CURVE_FILE,
    ] {
        if let Ok(t) = std::fs::read(ckpt.dir.join(f)) {
            files.push((f, t));
        }
    }
    replace_dir(&job.out, &files)?;
    Ok(report)
}

/// Writes `files` into a fresh sibling directory and renames it to `out` (an existing
/// `out` is moved aside first and removed after): `out` is never half-written. Whether
/// `out` may be replaced at all is [`crate::checkpoint::check_output`]'s decision.
pub fn replace_dir(out: &Path, files: &[(&str, Vec<u8>)]) -> Result<()> {
    crate::checkpoint::replace_dir_atomically(out, |tmp| {
        files
            .iter()
            .try_for_each(|(name, bytes)| write_atomic(&tmp.join(name), bytes))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_row_symmetric_quantisation() {
        let w = [0.5f32, -1.0, 0.25, 0.0, 0.0, 0.0, 2.0, 1.0, -0.5];
        let q = QTensor::quantize(&w, 3, 3);
        assert_eq!(q.scales[0], 1.0 / 127.0);
        assert_eq!(q.values[..3], [64, -127, 32]);
        // An all-zero row gets scale 1 and stays exactly zero.
        assert_eq!((q.scales[1], &q.values[3..6]), (1.0, &[0i8, 0, 0][..]));
        assert_eq!(q.values[6], 127);
        let d = q.dequantize();
        for (a, b) in w.iter().zip(&d) {
            assert!((a - b).abs() <= 2.0 / 127.0 / 2.0 + 1e-6, "{a} vs {b}");
        }
        assert!(q.snr_db(&w) > 35.0);
    }

    #[test]
    fn activation_grid_includes_zero_and_matches_quantize_linear() {
        let a = ActQuant::from_range(-0.5, 2.0);
        assert!((a.scale - 2.5 / 254.0).abs() < 1e-9);
        assert_eq!(a.zero_point, 52);
        let dev = Device::Cpu;
        let x = Tensor::new(&[0.0f32, 1.0, -3.0, 9.0, -0.5, 2.0], &dev).unwrap();
        let y = a.apply(&x).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(y[0], 0.0);
        assert!((y[1] - 1.0).abs() <= a.scale / 2.0 + 1e-6);
        // Out of range values clamp to the grid ends: code 0 below, 255 above.
        assert!((y[2] - (-(52.0) * a.scale)).abs() < 1e-6);
        assert!((y[3] - (203.0 * a.scale)).abs() < 1e-6);
        // The calibrated range itself is codes 1 to 255: its ends are on the grid.
        assert!((y[4] - (-(51.0) * a.scale)).abs() < 1e-6 && (y[4] + 0.5).abs() <= a.scale / 2.0);
        assert!((y[5] - (203.0 * a.scale)).abs() < 1e-6 && (y[5] - 2.0).abs() <= a.scale / 2.0);
        // A positive-only range puts the zero point at 1: no input in range gets code 0.
        assert_eq!(ActQuant::from_range(0.3, 4.0).zero_point, 1);
        for (lo, hi) in [
            (-0.17f32, 11.3f32),
            (-7.9, 6.2),
            (-3.0, 0.01),
            (-1e-3, 250.0),
        ] {
            let q = ActQuant::from_range(lo, hi);
            let code = |x: f32| ((x / q.scale).round() + f32::from(q.zero_point)).clamp(0.0, 255.0);
            assert_eq!((code(lo), code(hi)), (1.0, 255.0), "[{lo}, {hi}]: {q:?}");
        }
    }
}
