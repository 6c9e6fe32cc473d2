//! Model architecture and checkpoint `config.json`.
//!
//! One struct describes the network completely: the candle model, the ONNX
//! writer and the bundle manifest all read their sizes from it.

use serde::{Deserialize, Serialize};

/// Architecture of an [`crate::model::AttentionClassifier`] plus what is needed to use it
/// (label list, maximum length). Serialised as a checkpoint's `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Preset the sizes came from (`tiny`, `small`, `custom`, ...), for reports.
    pub preset: String,
    /// Tokenizer vocabulary size (rows of the word embedding table).
    pub vocab_size: usize,
    /// Hidden size `d` of embeddings and encoder layers.
    pub hidden: usize,
    /// Number of transformer encoder layers.
    pub layers: usize,
    /// Attention heads per layer; `hidden` must be divisible by it.
    pub heads: usize,
    /// Inner size of the feed-forward block.
    pub ffn: usize,
    /// Inner size of the additive attention pooling (`W` is `pool_dim x hidden`).
    pub pool_dim: usize,
    /// Maximum sequence length in tokens, `[CLS]` and `[SEP]` included; rows of the
    /// position embedding table.
    pub max_len: usize,
    /// Dropout probability used in training (embeddings, attention output, FFN, pooled).
    pub dropout: f32,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Class labels, in the order of the classifier's outputs.
    pub labels: Vec<String>,
    /// The bag-of-n-grams input (`ngram_ids`, a `[buckets, hidden]` table): how the text
    /// is hashed, as the bundle's manifest carries it. None: token ids only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ngrams: Option<bundle::NgramSpec>,
}

impl ModelConfig {
    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}
