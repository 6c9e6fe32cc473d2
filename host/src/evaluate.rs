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
    /// `int8-compute`; for a bundle also `NAME+f16`) when given.
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
        if path.join(device::bundle::MANIFEST_FILE).is_file() {
            let verified = device::bundle::Bundle::read(path)?.verify()?;
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
            device::bundle::MANIFEST_FILE
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

    /// Predicted label index for every text.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<usize>> {
        match self {
            Self::Checkpoint(_) | Self::CheckpointVariant(..) => {
                let device = Device::Cpu;
                let (c, model) = match self {
                    Self::CheckpointVariant(c, v) => (c, c.load_variant(*v, &device)?),
                    Self::Checkpoint(c) => (c, c.load_model(&device)?),
                    Self::Bundle(_) => unreachable!(),
                };
                let encoder = c.encoder()?;
                let examples = texts
                    .iter()
                    .map(|t| Ok(crate::batching::EncodedExample::new(&encoder.encode(t)?, 0)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(crate::train::predict(&model, &examples, &device)?.predicted)
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
