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
    Bundle(Box<device::classify::Classifier>),
}

impl Evaluated {
    /// Opens a checkpoint directory (has `model.safetensors`) or a bundle (has `manifest.json`).
    pub fn open(path: &Path) -> Result<Self> {
        if Checkpoint::is_checkpoint(path) {
            return Ok(Self::Checkpoint(Box::new(Checkpoint::open(path)?)));
        }
        if path.join(device::bundle::MANIFEST_FILE).is_file() {
            let verified = device::bundle::Bundle::read(path)?.verify()?;
            return Ok(Self::Bundle(Box::new(device::classify::Classifier::load(
                &verified,
            )?)));
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
            Self::Checkpoint(c) => c.config.labels.clone(),
            Self::Bundle(b) => b.labels().to_vec(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Checkpoint(_) => "checkpoint (candle)",
            Self::Bundle(_) => "bundle (tract)",
        }
    }

    /// Predicted label index for every text.
    pub fn predict(&self, texts: &[&str]) -> Result<Vec<usize>> {
        match self {
            Self::Checkpoint(c) => {
                let device = Device::Cpu;
                let model = c.load_model(&device)?;
                let encoder = c.encoder()?;
                let examples = texts
                    .iter()
                    .map(|t| {
                        let enc = encoder.encode(t)?;
                        Ok(crate::batching::EncodedExample {
                            ids: enc.ids.iter().map(|&i| i as u32).collect(),
                            label: 0,
                        })
                    })
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
