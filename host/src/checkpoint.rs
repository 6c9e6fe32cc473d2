//! A training checkpoint: a directory with `model.safetensors`, `config.json` and the
//! exact `tokenizer.json` the model was trained with (plus logs and plots).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;

use crate::config::ModelConfig;
use crate::error::{HostError, Result};
use crate::model::AttentionClassifier;

pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";
pub const TOKENIZER_FILE: &str = device::bundle::TOKENIZER_FILE;
/// Training summary (data, options, outcome), carried into the bundle manifest.
pub const TRAINING_FILE: &str = "training.json";

/// Writes `bytes` to `path` all-or-nothing (see [`replace_atomically`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    replace_atomically(path, |tmp| {
        std::fs::write(tmp, bytes).map_err(|e| HostError::io(path, e))
    })
}

/// Puts a file at `path` all-or-nothing: `fill` writes a temporary file in the same
/// directory, which is fsynced and renamed over the target (the directory fsynced too);
/// if anything fails the temporary file is removed and `path` is untouched.
pub fn replace_atomically(path: &Path, fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = fill(&tmp).and_then(|()| {
        (|| {
            std::fs::File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })()
        .map_err(|e| HostError::io(path, e))
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Saves the VarMap's tensors as `model.safetensors` in `dir`, atomically.
pub fn save_weights(varmap: &VarMap, dir: &Path) -> Result<()> {
    replace_atomically(&dir.join(WEIGHTS_FILE), |tmp| Ok(varmap.save(tmp)?))
}

/// Saves named tensors as `model.safetensors` in `dir`, atomically.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, dir: &Path) -> Result<()> {
    replace_atomically(&dir.join(WEIGHTS_FILE), |tmp| {
        Ok(candle_core::safetensors::save(tensors, tmp)?)
    })
}

/// An opened checkpoint directory (config and tokenizer read and checked): a float one
/// (`model.safetensors`) or a quantised one (`model.int8.safetensors` +
/// `quantization.json`, see [`crate::quantize`]).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub tokenizer_json: Vec<u8>,
    /// A quantised checkpoint (no float weights).
    pub quantized: bool,
}

impl Checkpoint {
    pub fn open(dir: &Path) -> Result<Self> {
        let bad = |problem: String| HostError::Checkpoint {
            path: dir.to_path_buf(),
            problem,
        };
        if !dir.is_dir() {
            return Err(bad("not a directory".into()));
        }
        let quantized = !dir.join(WEIGHTS_FILE).is_file()
            && dir.join(crate::quantize::QUANT_WEIGHTS_FILE).is_file();
        let weights = if quantized {
            crate::quantize::QUANT_WEIGHTS_FILE
        } else {
            WEIGHTS_FILE
        };
        let mut needed = vec![weights, CONFIG_FILE, TOKENIZER_FILE];
        if quantized {
            needed.push(crate::quantize::QUANT_SPEC_FILE);
        }
        for f in needed {
            if !dir.join(f).is_file() {
                return Err(bad(format!("missing {f}")));
            }
        }
        let text = std::fs::read_to_string(dir.join(CONFIG_FILE))
            .map_err(|e| HostError::io(dir.join(CONFIG_FILE), e))?;
        let config: ModelConfig =
            serde_json::from_str(&text).map_err(|e| bad(format!("{CONFIG_FILE}: {e}")))?;
        if config.labels.len() < 2 || !config.hidden.is_multiple_of(config.heads.max(1)) {
            return Err(bad(format!(
                "{CONFIG_FILE}: inconsistent architecture or fewer than 2 labels"
            )));
        }
        let tokenizer_json = std::fs::read(dir.join(TOKENIZER_FILE))
            .map_err(|e| HostError::io(dir.join(TOKENIZER_FILE), e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            tokenizer_json,
            quantized,
        })
    }

    /// True when `dir` looks like a checkpoint (has `model.safetensors` or
    /// `model.int8.safetensors`).
    pub fn is_checkpoint(dir: &Path) -> bool {
        dir.join(WEIGHTS_FILE).is_file() || dir.join(crate::quantize::QUANT_WEIGHTS_FILE).is_file()
    }

    pub fn weights_path(&self) -> PathBuf {
        self.dir.join(WEIGHTS_FILE)
    }

    /// The model: float weights, or for a quantised checkpoint the int8-compute
    /// simulation (the variant with the most quantisation; see [`Self::load_variant`]).
    pub fn load_model(&self, device: &Device) -> Result<AttentionClassifier> {
        if self.quantized {
            return self.load_variant(crate::quantize::Variant::Int8Compute, device);
        }
        AttentionClassifier::load(&self.config, &self.weights_path(), device).map_err(|e| {
            HostError::Checkpoint {
                path: self.dir.clone(),
                problem: format!("{WEIGHTS_FILE}: {e}"),
            }
        })
    }

    /// The model as `variant` computes it: a float checkpoint only has `float`; a
    /// quantised one simulates `weights-int8` or `int8-compute` (its `float` is the
    /// dequantised weights, the float originals are not kept).
    pub fn load_variant(
        &self,
        variant: crate::quantize::Variant,
        device: &Device,
    ) -> Result<AttentionClassifier> {
        use crate::quantize::{QuantizedModel, Variant};
        if !self.quantized {
            if variant != Variant::Float {
                return Err(HostError::Invalid(format!(
                    "{} is a float checkpoint: variant {variant} needs a quantised one                      (tools quantize)",
                    self.dir.display()
                )));
            }
            return self.load_model(device);
        }
        let q = QuantizedModel::load(&self.dir, &self.config)?;
        q.model(variant, device)
    }

    /// The training summary written by `tools train`, if present.
    pub fn training_summary(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.dir.join(TRAINING_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The text encoder for this checkpoint (same code the device runs).
    pub fn encoder(&self) -> Result<device::tokenize::TextEncoder> {
        Ok(device::tokenize::TextEncoder::from_bytes(
            &self.tokenizer_json,
            self.config.max_len,
        )?)
    }
}
