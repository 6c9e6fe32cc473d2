//! The quantisation report: sizes, accuracy and macro-F1 of every variant against float
//! on validation data, and the error each quantised layer adds on its own, so a lossy
//! layer can be found.
//!
//! Per-layer error is measured in isolation: the float model runs, and at every linear
//! layer the same input also goes through that layer's int8 form (dequantised weights,
//! and for int8-compute the quantised input); the SNR and cosine compare the two outputs.
//! Errors do not accumulate from earlier layers, so the worst layer stands out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::{embedding_tables, snr_db, QuantizedModel, Variant};
use crate::batching::{sorted_batches, Batch, EncodedExample};
use crate::error::Result;
use crate::metrics::Report;
use crate::model::{AttentionClassifier, Dropout, Linear, Probe};

/// Accuracy of one variant on the validation data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantScore {
    pub variant: String,
    pub accuracy: f64,
    pub macro_f1: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_scope_accuracy: Option<f64>,
    /// Accuracy lost against float, percentage points (negative: gained).
    pub drop_points: f64,
    /// Share of texts with the same predicted label as float.
    pub agreement_with_float: f64,
    /// SNR of the logits against float, dB.
    pub logits_snr_db: f64,
}

/// Error of one quantised tensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerError {
    pub name: String,
    /// SNR of the dequantised weights against float, dB.
    pub weight_snr_db: f64,
    /// SNR of the layer output with int8 weights (float input), dB (linear layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_snr_db_weights_int8: Option<f64>,
    /// SNR of the layer output with int8 weights and quantised input, dB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_snr_db_int8_compute: Option<f64>,
    /// Cosine similarity of the int8-compute output with float.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cosine_int8_compute: Option<f64>,
}

/// What `tools quantize` reports (also stored in `quantization.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuantReport {
    pub validation: String,
    pub examples: usize,
    /// `model.safetensors` of the float checkpoint.
    pub float_weights_bytes: u64,
    /// `model.int8.safetensors`.
    pub int8_weights_bytes: u64,
    /// Float first, then weights-int8, int8-compute.
    pub variants: Vec<VariantScore>,
    pub layers: Vec<LayerError>,
    pub max_drop: f64,
    pub gate_passed: bool,
}

impl QuantReport {
    /// Largest accuracy drop of any int8 variant, points.
    pub fn worst_drop(&self) -> f64 {
        self.variants
            .iter()
            .skip(1)
            .map(|v| v.drop_points)
            .fold(f64::NEG_INFINITY, f64::max)
    }

    /// Validation accuracy of `variant`, if measured.
    pub fn accuracy(&self, variant: Variant) -> Option<f64> {
        self.variants
            .iter()
            .find(|v| v.variant == variant.name())
            .map(|v| v.accuracy)
    }

    pub fn to_text(&self) -> String {
        let mut s = format!(
            "weights: float {} bytes -> int8 {} bytes ({:.3}x)\nvalidation: {} ({} texts)\n\n",
            self.float_weights_bytes,
            self.int8_weights_bytes,
            self.int8_weights_bytes as f64 / self.float_weights_bytes.max(1) as f64,
            self.validation,
            self.examples
        );
        s += "variant        accuracy  macro-F1  in-scope  drop(pts)  agree  logits SNR\n";
        for v in &self.variants {
            s += &format!(
                "{:<14} {:>8.4}  {:>8.4}  {:>8}  {:>9.2}  {:>5.3}  {:>7.1} dB\n",
                v.variant,
                v.accuracy,
                v.macro_f1,
                v.in_scope_accuracy
                    .map(|a| format!("{a:.4}"))
                    .unwrap_or_else(|| "-".into()),
                v.drop_points,
                v.agreement_with_float,
                v.logits_snr_db
            );
        }
        s += "\nlayer (error of this layer alone)                 weight SNR  out SNR w8  out SNR int8  cosine\n";
        let worst = self
            .layers
            .iter()
            .filter_map(|l| l.output_snr_db_int8_compute.map(|v| (v, &l.name)))
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, n)| n.clone());
        for l in &self.layers {
            let f = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "-".into());
            s += &format!(
                "{:<50} {:>8.1}  {:>10}  {:>12}  {:>6}{}\n",
                l.name,
                l.weight_snr_db,
                f(l.output_snr_db_weights_int8),
                f(l.output_snr_db_int8_compute),
                l.cosine_int8_compute
                    .map(|c| format!("{c:.4}"))
                    .unwrap_or_else(|| "-".into()),
                if worst.as_ref() == Some(&l.name) {
                    "  <- lowest"
                } else {
                    ""
                }
            );
        }
        s += &format!(
            "\naccuracy gate: worst drop {:.2} points, --max-drop {}: {}\n",
            self.worst_drop(),
            self.max_drop,
            if self.gate_passed { "passed" } else { "FAILED" }
        );
        s
    }
}

/// Logits of `model` on `examples` (row per example, input order).
pub fn logits(
    model: &AttentionClassifier,
    examples: &[EncodedExample],
    device: &Device,
) -> Result<Vec<Vec<f32>>> {
    let mut out = vec![Vec::new(); examples.len()];
    for indices in sorted_batches(examples, 64) {
        let batch = Batch::new(examples, &indices, device)?;
        let l = model
            .forward(
                &batch.ids,
                &batch.mask,
                Some(&batch.ngrams),
                &Dropout::off(),
            )?
            .logits
            .to_vec2::<f32>()?;
        for (row, &i) in indices.iter().enumerate() {
            out[i] = l[row].clone();
        }
    }
    Ok(out)
}

pub fn argmax(v: &[f32]) -> usize {
    (0..v.len())
        .max_by(|&a, &b| v[a].total_cmp(&v[b]))
        .unwrap_or(0)
}

#[derive(Default, Clone, Copy)]
struct Acc {
    signal: f64,
    noise: f64,
    dot: f64,
    other: f64,
}

impl Acc {
    fn add(&mut self, a: &[f32], b: &[f32]) {
        for (x, y) in a.iter().zip(b) {
            let (x, y) = (f64::from(*x), f64::from(*y));
            self.signal += x * x;
            self.noise += (x - y) * (x - y);
            self.dot += x * y;
            self.other += y * y;
        }
    }
    fn snr(&self) -> f64 {
        snr_db(self.signal, self.noise)
    }
    fn cosine(&self) -> f64 {
        self.dot / (self.signal.sqrt() * self.other.sqrt()).max(1e-30)
    }
}

/// Measures every variant and every layer on `val` (labels already indices).
pub fn measure(
    float_weights: &HashMap<String, Tensor>,
    float_model: &AttentionClassifier,
    q: &QuantizedModel,
    val: &[EncodedExample],
    labels: &[String],
    oos_label: Option<&str>,
    device: &Device,
) -> Result<QuantReport> {
    let gold: Vec<usize> = val.iter().map(|e| e.label as usize).collect();
    let float_logits = logits(float_model, val, device)?;
    let float_pred: Vec<usize> = float_logits.iter().map(|l| argmax(l)).collect();
    let float_report = Report::new(labels, &gold, &float_pred, oos_label);
    let mut variants = vec![VariantScore {
        variant: Variant::Float.name().into(),
        accuracy: float_report.accuracy,
        macro_f1: float_report.macro_f1,
        in_scope_accuracy: float_report.in_scope_accuracy,
        drop_points: 0.0,
        agreement_with_float: 1.0,
        logits_snr_db: 200.0,
    }];
    for v in [Variant::WeightsInt8, Variant::Int8Compute] {
        let model = q.model(v, device)?;
        let l = logits(&model, val, device)?;
        let pred: Vec<usize> = l.iter().map(|l| argmax(l)).collect();
        let r = Report::new(labels, &gold, &pred, oos_label);
        let mut acc = Acc::default();
        for (a, b) in float_logits.iter().zip(&l) {
            acc.add(a, b);
        }
        let agree = pred.iter().zip(&float_pred).filter(|(a, b)| a == b).count();
        variants.push(VariantScore {
            variant: v.name().into(),
            accuracy: r.accuracy,
            macro_f1: r.macro_f1,
            in_scope_accuracy: r.in_scope_accuracy,
            drop_points: (float_report.accuracy - r.accuracy) * 100.0,
            agreement_with_float: agree as f64 / val.len().max(1) as f64,
            logits_snr_db: acc.snr(),
        });
    }

    // Per-layer error, each layer in isolation on the float model's own activations.
    let dequant = q.dequantized(device)?;
    let mut twins: HashMap<String, (Linear, Linear)> = HashMap::new();
    let mut probe_model = float_model.clone();
    for lin in probe_model.linears_mut() {
        let mut w8 = lin.clone();
        w8.weight = dequant[&format!("{}.weight", lin.name)].clone();
        w8.probe = None;
        let mut c8 = w8.clone();
        c8.input_quant = q.spec.ranges.get(&lin.name).map(|r| r.quant());
        twins.insert(lin.name.clone(), (w8, c8));
    }
    let acc: Arc<Mutex<BTreeMap<String, (Acc, Acc)>>> = Arc::default();
    let twins = Arc::new(twins);
    let (a2, t2) = (acc.clone(), twins.clone());
    let probe = Probe(Arc::new(move |lin: &Linear, x: &Tensor, y: &Tensor| {
        let (w8, c8) = &t2[&lin.name];
        let y = y.flatten_all()?.to_vec1::<f32>()?;
        let yw = w8.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        let yc = c8.forward(x)?.flatten_all()?.to_vec1::<f32>()?;
        let mut m = a2.lock().expect("report lock");
        let e = m.entry(lin.name.clone()).or_default();
        e.0.add(&y, &yw);
        e.1.add(&y, &yc);
        Ok(())
    }));
    for lin in probe_model.linears_mut() {
        lin.probe = Some(probe.clone());
    }
    logits(&probe_model, val, device)?;
    let acc = acc.lock().expect("report lock");

    let mut layers = Vec::new();
    let weight_snr = |name: &str| -> Result<f64> {
        let w = float_weights[name].flatten_all()?.to_vec1::<f32>()?;
        Ok(q.tables[name].snr_db(&w))
    };
    for (name, _, _) in embedding_tables(&q.config) {
        layers.push(LayerError {
            name: name.to_string(),
            weight_snr_db: weight_snr(name)?,
            output_snr_db_weights_int8: None,
            output_snr_db_int8_compute: None,
            cosine_int8_compute: None,
        });
    }
    for (prefix, _, _) in super::linear_layers(&q.config) {
        let (w8, c8) = acc.get(&prefix).copied().unwrap_or_default();
        layers.push(LayerError {
            weight_snr_db: weight_snr(&format!("{prefix}.weight"))?,
            output_snr_db_weights_int8: Some(w8.snr()),
            output_snr_db_int8_compute: Some(c8.snr()),
            cosine_int8_compute: Some(c8.cosine()),
            name: prefix,
        });
    }
    Ok(QuantReport {
        validation: String::new(),
        examples: val.len(),
        float_weights_bytes: 0,
        int8_weights_bytes: 0,
        variants,
        layers,
        max_drop: 0.0,
        gate_passed: false,
    })
}
