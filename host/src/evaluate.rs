//! `tools eval`: the same classification report for a checkpoint (candle) or a bundle
//! (the device runtime, tract), so the two can be compared.

use std::path::Path;

use candle_core::Device;

use crate::checkpoint::Checkpoint;
use crate::data::{Columns, Dataset};
use crate::error::{HostError, Result};
use crate::metrics::Report;

/// A model to evaluate: a training checkpoint or an exported bundle.
pub enum Evaluated {
    Checkpoint(Box<Checkpoint>),
    /// A checkpoint evaluated as one variant (quantised checkpoints simulate
    /// `weights-int8` or `int8-compute`).
    CheckpointVariant(Box<Checkpoint>, crate::quantize::Variant),
    Bundle(Box<device::classify::Classifier>),
}

impl Evaluated {
    /// Opens a checkpoint directory (has `model.safetensors` or `model.int8.safetensors`)
    /// or a bundle (has `manifest.json`; its default variant).
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_variant(path, None)
    }

    /// Like [`Self::open`], as variant `variant` (`float`, `weights-int8`,
    /// `int8-compute`; for a bundle also `NAME+f16` or `weights-int8+int8-act`) when given.
    pub fn open_variant(path: &Path, variant: Option<&str>) -> Result<Self> {
        if Checkpoint::is_checkpoint(path) {
            let ckpt = Box::new(Checkpoint::open(path)?);
            return match variant {
                None => Ok(Self::Checkpoint(ckpt)),
                Some(v) => {
                    let v = crate::quantize::Variant::parse(v)?;
                    if !ckpt.quantized && v != crate::quantize::Variant::Float {
                        return Err(HostError::Invalid(format!(
                            "{}: a float checkpoint has only the variant float (quantise it \
                             with tools quantize for {v})",
                            path.display()
                        )));
                    }
                    Ok(Self::CheckpointVariant(ckpt, v))
                }
            };
        }
        if path.join(bundle::MANIFEST_FILE).is_file() {
            let verified = bundle::Bundle::read(path)?.verify()?;
            let classifier = match variant {
                None => device::classify::Classifier::load(&verified)?,
                Some(v) => {
                    let choice = device::variant::Choice::parse(v);
                    verified
                        .manifest()
                        .variant(&choice.variant)
                        .map_err(|p| HostError::Invalid(format!("{}: {p}", path.display())))?;
                    device::variant::load(&verified, &choice)?
                }
            };
            return Ok(Self::Bundle(Box::new(classifier)));
        }
        Err(HostError::Invalid(format!(
            "{}: neither a checkpoint (no {}) nor a bundle (no {})",
            path.display(),
            crate::checkpoint::WEIGHTS_FILE,
            bundle::MANIFEST_FILE
        )))
    }

    pub fn labels(&self) -> Vec<String> {
        match self {
            Self::Checkpoint(c) | Self::CheckpointVariant(c, _) => c.config.labels.clone(),
            Self::Bundle(b) => b.labels().to_vec(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Checkpoint(c) if c.quantized => {
                "quantised checkpoint (candle, int8-compute simulated)"
            }
            Self::Checkpoint(_) => "checkpoint (candle)",
            Self::CheckpointVariant(_, v) => match v {
                crate::quantize::Variant::Float => "checkpoint (candle, float)",
                crate::quantize::Variant::WeightsInt8 => {
                    "checkpoint (candle, weights-int8 simulated)"
                }
                crate::quantize::Variant::Int8Compute => {
                    "checkpoint (candle, int8-compute simulated)"
                }
            },
            Self::Bundle(_) => "bundle (tract)",
        }
    }

    /// The out-of-scope rejection rule of the model: a bundle's manifest `rejection`, a
    /// checkpoint's `rejection.json` (`tools train` / `tools calibrate`).
    pub fn rejection_rule(&self) -> Result<Option<bundle::rejection::RejectionRule>> {
        match self {
            Self::Checkpoint(c) | Self::CheckpointVariant(c, _) => {
                crate::rejection::read_checkpoint_rule(&c.dir)
            }
            Self::Bundle(b) => Ok(b.rejection().cloned()),
        }
    }

    /// candle's predictions for `texts` from checkpoint `c` (float, or the quantised
    /// variant this evaluates).
    fn checkpoint_predictions(
        &self,
        c: &Checkpoint,
        texts: &[&str],
    ) -> Result<crate::predict::Predictions> {
        let device = Device::Cpu;
        let model = match self {
            Self::CheckpointVariant(_, v) => crate::quantize::load_variant(c, *v, &device)?,
            _ => crate::quantize::load_model(c, &device)?,
        };
        let encoder = c.encoder()?;
        let examples = texts
            .iter()
            .map(|t| Ok(crate::batching::EncodedExample::new(&encoder.encode(t)?, 0)))
            .collect::<Result<Vec<_>>>()?;
        crate::predict::predict(&model, &examples, &device)
    }

    /// Predicted label index (argmax) and the probabilities of every class, per text.
    pub fn predict_probs(&self, texts: &[&str]) -> Result<(Vec<usize>, Vec<Vec<f32>>)> {
        match self {
            Self::Checkpoint(c) | Self::CheckpointVariant(c, _) => {
                let p = self.checkpoint_predictions(c, texts)?;
                Ok((p.predicted, p.probs))
            }
            Self::Bundle(b) => {
                let mut probs = Vec::with_capacity(texts.len());
                for chunk in texts.chunks(64) {
                    probs.extend(b.probabilities(chunk)?);
                }
                let predicted = probs.iter().map(|p| crate::rejection::argmax(p)).collect();
                Ok((predicted, probs))
            }
        }
    }

    /// Predicted label index for every text.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<usize>> {
        match self {
            Self::Checkpoint(c) | Self::CheckpointVariant(c, _) => {
                Ok(self.checkpoint_predictions(c, texts)?.predicted)
            }
            Self::Bundle(b) => {
                let mut out = Vec::with_capacity(texts.len());
                for chunk in texts.chunks(64) {
                    out.extend(b.classify_batch(chunk)?.into_iter().map(|p| p.label_index));
                }
                Ok(out)
            }
        }
    }
}

/// Evaluates `model` on a labelled file. Labels the model does not know are an error.
pub fn evaluate(
    model: &Evaluated,
    data: &Path,
    columns: &Columns,
    oos_label: Option<&str>,
) -> Result<Report> {
    let data = Dataset::load(data, columns)?;
    let labels = model.labels();
    data.check_labels(&labels)?;
    let texts: Vec<&str> = data.examples.iter().map(|e| e.text.as_str()).collect();
    let predicted = model.predict(&texts)?;
    let gold: Vec<usize> = data
        .examples
        .iter()
        .map(|e| labels.iter().position(|l| *l == e.label).expect("checked"))
        .collect();
    Ok(Report::new(&labels, &gold, &predicted, oos_label))
}

/// Out-of-scope figures of an evaluation: class only (argmax) and with the model's rule.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectionReport {
    pub oos_label: String,
    /// Whether the model has `oos_label` as a class.
    pub oos_class: bool,
    pub in_scope: usize,
    pub out_of_scope: usize,
    /// Threshold 0: the argmax alone (the out-of-scope class when the model has one).
    pub class_only: crate::rejection::RejectionMetrics,
    /// The rule applied (the model's, or `--reject-threshold`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<bundle::rejection::RejectionRule>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub with_rule: Option<crate::rejection::RejectionMetrics>,
    /// Threshold sweep 0, 0.01, …, 1 on this data.
    #[serde(skip)]
    pub curve: Vec<crate::rejection::RejectionMetrics>,
}

impl RejectionReport {
    pub fn to_text(&self) -> String {
        let row = |name: &str, m: &crate::rejection::RejectionMetrics| {
            format!(
                "{name:<34}{:>14.4}{:>12}{:>19.4}{:>10.4}\n",
                m.in_scope_accuracy,
                m.oos_recall
                    .map_or_else(|| "-".to_string(), |r| format!("{r:.4}")),
                m.in_scope_rejected,
                m.accuracy
            )
        };
        let mut s = format!(
            "out-of-scope: {} in-scope, {} {:?} examples\n{:<34}{:>14}{:>12}{:>19}{:>10}\n",
            self.in_scope,
            self.out_of_scope,
            self.oos_label,
            "",
            "in-scope acc",
            "oos recall",
            "in-scope rejected",
            "accuracy"
        );
        s += &row(
            if self.oos_class {
                "  class only (argmax)"
            } else {
                "  no rule (argmax)"
            },
            &self.class_only,
        );
        match (&self.rule, &self.with_rule) {
            (Some(r), Some(m)) => {
                s += &row(&format!("  with rule (threshold {:.4})", r.threshold), m);
            }
            _ => s += "  no rejection rule (tools calibrate, or --reject-threshold)\n",
        }
        s
    }
}

/// [`evaluate`] plus the out-of-scope report: present when the data has `oos_label`
/// examples or the model has a rejection rule. `threshold` overrides the model's rule.
///
/// A model without an out-of-scope class (threshold only) may be evaluated on data with
/// `oos_label` examples: the report then has `oos_label` as an extra class that is never
/// predicted.
pub fn evaluate_with_rejection(
    model: &Evaluated,
    data: &Path,
    columns: &Columns,
    oos_label: &str,
    threshold: Option<f32>,
) -> Result<(Report, Option<RejectionReport>)> {
    let data = Dataset::load(data, columns)?;
    let model_labels = model.labels();
    let oos_class = model_labels.iter().any(|l| l == oos_label);
    let mut labels = model_labels.clone();
    if !oos_class && data.examples.iter().any(|e| e.label == oos_label) {
        labels.push(oos_label.to_string());
    }
    data.check_labels(&labels)?;
    let texts: Vec<&str> = data.examples.iter().map(|e| e.text.as_str()).collect();
    let (predicted, probs) = model.predict_probs(&texts)?;
    let gold: Vec<usize> = data
        .examples
        .iter()
        .map(|e| labels.iter().position(|l| *l == e.label).expect("checked"))
        .collect();
    let report = Report::new(&labels, &gold, &predicted, Some(oos_label));
    let rule = match threshold {
        Some(t) => Some(bundle::rejection::RejectionRule::new(
            t,
            oos_class.then(|| oos_label.to_string()),
        )),
        None => model.rejection_rule()?,
    };
    let gold_opt: Vec<Option<usize>> = gold
        .iter()
        .map(|&g| (labels[g] != oos_label).then_some(g))
        .collect();
    // The rule's own out-of-scope class (normally the same label).
    let rule_oos = rule
        .as_ref()
        .and_then(|r| r.oos_label.clone())
        .unwrap_or_else(|| oos_label.to_string());
    let scored = crate::rejection::Scored::new(&model_labels, &probs, &gold_opt, &rule_oos);
    if scored.n_oos == 0 && rule.is_none() {
        return Ok((report, None));
    }
    let rejection = RejectionReport {
        oos_label: oos_label.to_string(),
        oos_class,
        in_scope: scored.n_in,
        out_of_scope: scored.n_oos,
        class_only: scored.metrics(0.0),
        with_rule: rule.as_ref().map(|r| scored.metrics(r.threshold)),
        curve: scored.curve(rule.as_ref().map(|r| r.threshold)),
        rule,
    };
    Ok((report, Some(rejection)))
}
