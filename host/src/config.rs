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

/// Most parameters a configuration may ask for (4 GB of f32): far above any model this
/// tool trains, and what keeps a corrupt `config.json` from asking for an allocation that
/// aborts the process.
pub const MAX_PARAMETERS: f64 = 1e9;

impl ModelConfig {
    /// Whether the sizes make a network this tool can build: every size positive,
    /// `hidden` divisible by `heads`, a position table of 3 to 4096 rows, a dropout in
    /// [0, 1), a positive finite LayerNorm epsilon, at least 2 labels, a valid n-gram
    /// spec, and at most [`MAX_PARAMETERS`] parameters.
    pub fn check(&self) -> Result<(), String> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden", self.hidden),
            ("layers", self.layers),
            ("heads", self.heads),
            ("ffn", self.ffn),
            ("pool_dim", self.pool_dim),
        ];
        if let Some((name, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(format!("{name} is 0"));
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return Err(format!(
                "hidden {} is not divisible by heads {}",
                self.hidden, self.heads
            ));
        }
        if !(3..=4096).contains(&self.max_len) {
            return Err(format!("max_len {} is outside 3..=4096", self.max_len));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(format!("dropout {} is outside [0, 1)", self.dropout));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return Err(format!(
                "layer_norm_eps {} is not a positive number",
                self.layer_norm_eps
            ));
        }
        if self.labels.len() < 2 {
            return Err(format!(
                "{} labels (a classifier needs 2)",
                self.labels.len()
            ));
        }
        if let Some(spec) = &self.ngrams {
            spec.check().map_err(|p| format!("ngrams: {p}"))?;
        }
        let params = self.parameters();
        if params > MAX_PARAMETERS {
            return Err(format!(
                "{params:.3e} parameters (at most {MAX_PARAMETERS:.0e}): sizes out of range"
            ));
        }
        Ok(())
    }

    /// The network's parameter count, in f64 so that no size overflows it.
    pub fn parameters(&self) -> f64 {
        let f = |v: usize| v as f64;
        let (h, ffn) = (f(self.hidden), f(self.ffn));
        let layer = 4.0 * h * h + 2.0 * h * ffn + ffn + 9.0 * h;
        let buckets = self.ngrams.as_ref().map_or(0.0, |s| f64::from(s.buckets));
        (f(self.vocab_size) + f(self.max_len) + buckets + 2.0) * h
            + f(self.layers) * layer
            + f(self.pool_dim) * (h + 2.0)
            + f(self.labels.len()) * (h + 1.0)
    }

    pub fn num_labels(&self) -> usize {
        self.labels.len()
    }
    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ModelConfig {
        ModelConfig {
            preset: "tiny".into(),
            vocab_size: 3000,
            hidden: 128,
            layers: 2,
            heads: 4,
            ffn: 512,
            pool_dim: 128,
            max_len: 64,
            dropout: 0.1,
            layer_norm_eps: 1e-12,
            labels: vec!["a".into(), "b".into()],
            ngrams: None,
        }
    }

    #[test]
    fn sizes_a_corrupt_config_asks_for_are_refused() {
        tiny().check().unwrap();
        // The tiny preset's ~0.8 M encoder parameters, counted.
        assert!((0.7e6..0.9e6).contains(&tiny().parameters()));
        type Edit = fn(&mut ModelConfig);
        let cases: [(Edit, &str); 7] = [
            (|c| c.heads = 0, "heads is 0"),
            (|c| c.heads = 3, "not divisible"),
            (|c| c.hidden = 1 << 40, "parameters"),
            (|c| c.layers = usize::MAX, "parameters"),
            (|c| c.max_len = 1, "max_len"),
            (|c| c.layer_norm_eps = f64::NAN, "layer_norm_eps"),
            (|c| c.labels.truncate(1), "labels"),
        ];
        for (edit, says) in cases {
            let mut c = tiny();
            edit(&mut c);
            let e = c.check().unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }
}
