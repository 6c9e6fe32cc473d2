//! Start from a pretrained BERT-family encoder: a Hugging Face folder (`config.json`,
//! `model.safetensors`, `tokenizer.json` or `vocab.txt`), e.g. all-MiniLM-L6-v2.
//!
//! Our encoder uses the Hugging Face BERT weight names (docs/model.md), so loading is a
//! copy by name. Two things differ and are folded in here rather than carried as extra
//! graph inputs: the token-type embedding (every text is one segment, so row 0 is added
//! to every position embedding), and the position table, which keeps only the first
//! `max_len` rows. The attention-pooling head and the classifier start fresh.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::error::{HostError, Result};

/// The fields of a Hugging Face BERT `config.json` that shape the encoder.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HfBertConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position_type() -> String {
    "absolute".into()
}

/// What was copied from the pretrained checkpoint and what started fresh.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    /// Folder the encoder came from.
    pub source: String,
    /// Our parameters filled from the checkpoint.
    pub loaded: Vec<String>,
    /// Our parameters with no counterpart (the pooling head and classifier).
    pub fresh: Vec<String>,
    /// Checkpoint tensors not used (e.g. `pooler.*`, an MLM head).
    pub unused: Vec<String>,
}

/// An opened pretrained encoder folder.
pub struct PretrainedEncoder {
    pub dir: PathBuf,
    pub config: HfBertConfig,
    /// The tokenizer that trained it, as `tokenizer.json` bytes (padding and truncation
    /// removed: the device encodes one text at a time and truncates to `max_len` itself).
    pub tokenizer_json: Vec<u8>,
    /// Checkpoint tensors under our names (`bert.` prefix and `gamma`/`beta` normalised).
    tensors: HashMap<String, Tensor>,
}

impl PretrainedEncoder {
    /// Reads and checks `dir`: a BERT-style encoder with absolute positions and GELU.
    pub fn open(dir: &Path) -> Result<Self> {
        let bad = |problem: String| HostError::Checkpoint {
            path: dir.to_path_buf(),
            problem,
        };
        let config_path = dir.join("config.json");
        let text =
            std::fs::read_to_string(&config_path).map_err(|e| HostError::io(&config_path, e))?;
        let config: HfBertConfig = serde_json::from_str(&text)
            .map_err(|e| bad(format!("config.json is not a BERT config: {e}")))?;
        if let Some(t) = &config.model_type {
            if !matches!(
                t.as_str(),
                "bert" | "roberta" | "xlm-roberta" | "distilbert"
            ) && !t.contains("bert")
            {
                return Err(bad(format!(
                    "model_type '{t}' is not a BERT-family encoder"
                )));
            }
        }
        if config.hidden_act != "gelu" {
            return Err(bad(format!(
                "hidden_act '{}' not supported (the encoder uses exact GELU, 'gelu')",
                config.hidden_act
            )));
        }
        if config.position_embedding_type != "absolute" {
            return Err(bad(format!(
                "position_embedding_type '{}' not supported (absolute only)",
                config.position_embedding_type
            )));
        }
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            return Err(bad(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                config.hidden_size, config.num_attention_heads
            )));
        }
        let tokenizer_json = read_tokenizer(dir)?;
        let weights = dir.join("model.safetensors");
        if !weights.is_file() {
            return Err(bad(
                "no model.safetensors (convert pytorch_model.bin to safetensors first)".into(),
            ));
        }
        let raw = candle_core::safetensors::load(&weights, &Device::Cpu)
            .map_err(|e| bad(format!("model.safetensors: {e}")))?;
        let tensors = raw
            .into_iter()
            .map(|(name, t)| (normalise_name(&name), t))
            .collect();
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            tokenizer_json,
            tensors,
        })
    }

    /// Our model configuration for this encoder with a fresh head over `labels`.
    /// `max_len` may not exceed the checkpoint's position table.
    pub fn model_config(
        &self,
        labels: Vec<String>,
        max_len: usize,
        pool_dim: usize,
        dropout: f32,
        vocab_size: usize,
    ) -> Result<ModelConfig> {
        let c = &self.config;
        if max_len > c.max_position_embeddings {
            return Err(HostError::Invalid(format!(
                "max length {max_len} exceeds the pretrained position table ({} rows) of {}",
                c.max_position_embeddings,
                self.dir.display()
            )));
        }
        if vocab_size > c.vocab_size {
            return Err(HostError::Invalid(format!(
                "the tokenizer has {vocab_size} tokens but {} has only {} embedding rows",
                self.dir.display(),
                c.vocab_size
            )));
        }
        let cfg = ModelConfig {
            preset: format!(
                "pretrained:{}",
                self.dir
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default()
            ),
            vocab_size,
            hidden: c.hidden_size,
            layers: c.num_hidden_layers,
            heads: c.num_attention_heads,
            ffn: c.intermediate_size,
            pool_dim,
            max_len,
            dropout,
            layer_norm_eps: c.layer_norm_eps,
            labels,
            ngrams: None,
        };
        // Sizes out of range (a corrupt config.json) are refused before anything is
        // allocated for them; the word table must be what the config says it is.
        cfg.check()
            .map_err(|p| HostError::Invalid(format!("{}: config.json: {p}", self.dir.display())))?;
        if let Some(word) = self.tensors.get("embeddings.word_embeddings.weight") {
            if word.dims() != [c.vocab_size, c.hidden_size] {
                return Err(HostError::Invalid(format!(
                    "{}: the word embeddings are {:?}, config.json says [{}, {}]",
                    self.dir.display(),
                    word.dims(),
                    c.vocab_size,
                    c.hidden_size
                )));
            }
        }
        Ok(cfg)
    }

    /// Copies the encoder weights into `varmap` (built for `cfg` by
    /// [`crate::model::init_varmap`]); the pooling head and classifier keep their fresh
    /// initialisation. Every encoder parameter must be found with the right shape.
    pub fn load_into(&self, varmap: &VarMap, cfg: &ModelConfig) -> Result<LoadReport> {
        let bad = |problem: String| HostError::Checkpoint {
            path: self.dir.clone(),
            problem,
        };
        let vars: BTreeMap<String, candle_core::Var> = varmap
            .data()
            .lock()
            .expect("varmap lock")
            .clone()
            .into_iter()
            .collect();
        let mut report = LoadReport {
            source: self.dir.display().to_string(),
            ..Default::default()
        };
        let mut used = std::collections::HashSet::new();
        for (name, var) in &vars {
            if name.starts_with("pooling.") || name.starts_with("classifier.") {
                report.fresh.push(name.clone());
                continue;
            }
            let Some(src) = self.tensors.get(name) else {
                return Err(bad(format!("missing encoder weight {name}")));
            };
            used.insert(name.clone());
            let value = match name.as_str() {
                "embeddings.word_embeddings.weight" => src.narrow(0, 0, cfg.vocab_size)?,
                "embeddings.position_embeddings.weight" => {
                    let pos = src.narrow(0, 0, cfg.max_len)?;
                    match self.tensors.get("embeddings.token_type_embeddings.weight") {
                        Some(tt) => {
                            if tt.dims().len() != 2 || tt.dims()[1] != cfg.hidden || tt.dim(0)? == 0
                            {
                                return Err(bad(format!(
                                    "embeddings.token_type_embeddings.weight is {:?}, \
                                     expected [types, {}]",
                                    tt.dims(),
                                    cfg.hidden
                                )));
                            }
                            used.insert("embeddings.token_type_embeddings.weight".into());
                            pos.broadcast_add(&tt.narrow(0, 0, 1)?)?
                        }
                        None => pos,
                    }
                }
                _ => src.clone(),
            };
            let value = value.to_dtype(candle_core::DType::F32)?;
            if value.dims() != var.dims() {
                return Err(bad(format!(
                    "{name}: shape {:?} in the checkpoint, {:?} expected",
                    value.dims(),
                    var.dims()
                )));
            }
            var.set(&value)?;
            report.loaded.push(name.clone());
        }
        report.unused = self
            .tensors
            .keys()
            .filter(|k| !used.contains(*k))
            .cloned()
            .collect();
        report.unused.sort();
        Ok(report)
    }
}

/// `bert.encoder.layer.0.attention.output.LayerNorm.gamma` → our name.
fn normalise_name(name: &str) -> String {
    let name = name.strip_prefix("bert.").unwrap_or(name);
    if name.contains("LayerNorm") {
        if let Some(base) = name.strip_suffix(".gamma") {
            return format!("{base}.weight");
        }
        if let Some(base) = name.strip_suffix(".beta") {
            return format!("{base}.bias");
        }
    }
    name.to_string()
}

/// `tokenizer.json` if present, else a BERT WordPiece tokenizer built from `vocab.txt`;
/// padding and truncation settings removed either way.
fn read_tokenizer(dir: &Path) -> Result<Vec<u8>> {
    let json_path = dir.join("tokenizer.json");
    let mut value: serde_json::Value = if json_path.is_file() {
        let bytes = std::fs::read(&json_path).map_err(|e| HostError::io(&json_path, e))?;
        serde_json::from_slice(&bytes)
            .map_err(|e| HostError::Tokenizer(format!("{}: {e}", json_path.display())))?
    } else {
        let vocab = dir.join("vocab.txt");
        if !vocab.is_file() {
            return Err(HostError::Checkpoint {
                path: dir.to_path_buf(),
                problem: "neither tokenizer.json nor vocab.txt".into(),
            });
        }
        let json = crate::tokenizer::bert_from_vocab(&vocab, lowercase(dir))?;
        serde_json::from_slice(&json).map_err(|e| HostError::Tokenizer(e.to_string()))?
    };
    let Some(object) = value.as_object_mut() else {
        return Err(HostError::Checkpoint {
            path: dir.join("tokenizer.json"),
            problem: "not a JSON object (a Hugging Face tokenizer.json is one)".into(),
        });
    };
    object.insert("padding".into(), serde_json::Value::Null);
    object.insert("truncation".into(), serde_json::Value::Null);
    serde_json::to_vec_pretty(&value).map_err(|e| HostError::Tokenizer(e.to_string()))
}

/// `do_lower_case` from `tokenizer_config.json` (BERT's default: true).
fn lowercase(dir: &Path) -> bool {
    std::fs::read(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("do_lower_case").and_then(|x| x.as_bool()))
        .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalised() {
        assert_eq!(
            normalise_name("bert.encoder.layer.0.output.LayerNorm.gamma"),
            "encoder.layer.0.output.LayerNorm.weight"
        );
        assert_eq!(
            normalise_name("embeddings.LayerNorm.beta"),
            "embeddings.LayerNorm.bias"
        );
        assert_eq!(
            normalise_name("encoder.layer.1.attention.self.query.weight"),
            "encoder.layer.1.attention.self.query.weight"
        );
    }

    #[test]
    fn missing_folder_and_bad_config_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let err = PretrainedEncoder::open(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("config.json"), "{err}");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"model_type":"bert","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
                "num_attention_heads":2,"intermediate_size":16,"max_position_embeddings":16,
                "hidden_act":"relu"}"#,
        )
        .unwrap();
        let err = PretrainedEncoder::open(dir.path())
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("hidden_act 'relu'"), "{err}");
    }
}
