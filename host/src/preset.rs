//! Model presets shipped in `models/presets/*.json`, compiled into the binary.

use serde::{Deserialize, Serialize};

use crate::error::{HostError, Result};

/// Architecture and training defaults of a named preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    pub description: String,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub ffn: usize,
    pub pool_dim: usize,
    pub max_len: usize,
    pub dropout: f32,
    pub vocab_size: usize,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub warmup_ratio: f64,
    pub label_smoothing: f64,
    pub token_dropout: f64,
    pub ema_decay: f64,
    pub patience: usize,
    /// Rows of the bag-of-n-grams table (0 = no bag; see `host::model::NgramBag` and
    /// `device::ngrams`): the model's third input, `ngram_ids`.
    #[serde(default)]
    pub ngram_buckets: usize,
    /// Most n-gram ids read per text (the width of `ngram_ids`).
    #[serde(default = "default_ngram_max")]
    pub ngram_max: usize,
    /// Share of a text's n-gram ids dropped at random in each training step.
    #[serde(default)]
    pub ngram_dropout: f64,
    /// Weight of the branch losses (the pooled tokens alone and the bag alone, each scored
    /// by the classifier) added to the loss of a model with a bag.
    #[serde(default)]
    pub branch_loss: f64,
    /// The bag's table trains at this multiple of the learning rate (its rows are sparse:
    /// each gets a gradient only from the texts that contain its n-grams).
    #[serde(default = "one")]
    pub ngram_lr_scale: f64,
}

fn one() -> f64 {
    1.0
}

fn default_ngram_max() -> usize {
    256
}

const SHIPPED: [(&str, &str); 3] = [
    ("tiny", include_str!("../../models/presets/tiny.json")),
    ("small", include_str!("../../models/presets/small.json")),
    ("minilm", include_str!("../../models/presets/minilm.json")),
];

impl Preset {
    /// The architecture these sizes describe, for a tokenizer of `vocab_size` tokens and
    /// these labels (a model trained from scratch; a pretrained encoder brings its own).
    pub fn model_config(
        &self,
        vocab_size: usize,
        labels: Vec<String>,
    ) -> crate::config::ModelConfig {
        crate::config::ModelConfig {
            preset: self.name.clone(),
            vocab_size,
            hidden: self.hidden,
            layers: self.layers,
            heads: self.heads,
            ffn: self.ffn,
            pool_dim: self.pool_dim,
            max_len: self.max_len,
            dropout: self.dropout,
            layer_norm_eps: 1e-12,
            labels,
            ngrams: self.ngram_spec(),
        }
    }

    /// The n-gram input these settings give, if any.
    pub fn ngram_spec(&self) -> Option<bundle::NgramSpec> {
        (self.ngram_buckets > 0).then_some(bundle::NgramSpec {
            buckets: self.ngram_buckets as u32,
            max: self.ngram_max,
        })
    }

    /// Names of the shipped presets.
    pub fn names() -> Vec<&'static str> {
        SHIPPED.iter().map(|(n, _)| *n).collect()
    }

    /// A shipped preset by name, or a preset JSON file by path.
    pub fn get(name_or_path: &str) -> Result<Self> {
        if let Some((_, json)) = SHIPPED.iter().find(|(n, _)| *n == name_or_path) {
            return serde_json::from_str(json)
                .map_err(|e| HostError::Invalid(format!("preset {name_or_path}: {e}")));
        }
        let path = std::path::Path::new(name_or_path);
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(path).map_err(|e| HostError::io(path, e))?;
            return serde_json::from_str(&text)
                .map_err(|e| HostError::Invalid(format!("preset {}: {e}", path.display())));
        }
        Err(HostError::Invalid(format!(
            "unknown preset '{name_or_path}' (shipped: {}; or give a path to a preset .json)",
            Self::names().join(", ")
        )))
    }

    /// Checks that the sizes make a valid network.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(HostError::Invalid(format!("preset {}: {m}", self.name)));
        if self.hidden == 0
            || self.layers == 0
            || self.heads == 0
            || self.ffn == 0
            || self.pool_dim == 0
        {
            return bad("hidden, layers, heads, ffn and pool_dim must be positive".into());
        }
        if !self.hidden.is_multiple_of(self.heads) {
            return bad(format!(
                "hidden {} is not divisible by heads {}",
                self.hidden, self.heads
            ));
        }
        if !(3..=4096).contains(&self.max_len) {
            return bad(format!(
                "max_len {} must be between 3 and 4096",
                self.max_len
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout {} must be in [0, 1)", self.dropout));
        }
        if self.epochs == 0 || self.batch_size == 0 {
            return bad("epochs and batch_size must be positive".into());
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} must be positive", self.lr));
        }
        if let Some(spec) = self.ngram_spec() {
            spec.check().or_else(|p| bad(format!("n-grams: {p}")))?;
        }
        if !(self.ngram_lr_scale > 0.0 && self.ngram_lr_scale.is_finite()) {
            return bad(format!(
                "ngram_lr_scale {} must be positive",
                self.ngram_lr_scale
            ));
        }
        // Probabilities and fractions: NaN is in no range, so it is refused too.
        for (name, value, upto_one) in [
            ("ngram_dropout", self.ngram_dropout, false),
            ("token_dropout", self.token_dropout, false),
            ("label_smoothing", self.label_smoothing, false),
            ("ema_decay", self.ema_decay, false),
            ("warmup_ratio", self.warmup_ratio, true),
        ] {
            let ok = if upto_one {
                (0.0..=1.0).contains(&value)
            } else {
                (0.0..1.0).contains(&value)
            };
            if !ok {
                let range = if upto_one { "[0, 1]" } else { "[0, 1)" };
                return bad(format!("{name} {value} must be in {range}"));
            }
        }
        for (name, value) in [
            ("weight_decay", self.weight_decay),
            ("branch_loss", self.branch_loss),
        ] {
            if !(value >= 0.0 && value.is_finite()) {
                return bad(format!("{name} {value} must be 0 or more"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_presets_parse_and_are_valid() {
        for n in Preset::names() {
            let p = Preset::get(n).unwrap();
            p.validate().unwrap();
            assert_eq!(p.name, n);
        }
        let tiny = Preset::get("tiny").unwrap();
        assert_eq!(
            (tiny.hidden, tiny.layers, tiny.heads, tiny.ffn, tiny.max_len),
            (128, 2, 4, 512, 64)
        );
        assert_eq!(
            (
                Preset::get("small").unwrap().hidden,
                Preset::get("small").unwrap().layers
            ),
            (256, 4)
        );
    }

    #[test]
    fn unknown_preset_is_named() {
        let e = Preset::get("huge").unwrap_err().to_string();
        assert!(
            e.contains("unknown preset 'huge'") && e.contains("tiny"),
            "{e}"
        );
    }

    #[test]
    fn rates_and_probabilities_out_of_range_are_rejected() {
        type Set = fn(&mut Preset, f64);
        let cases: [(&str, Set, f64); 8] = [
            ("token_dropout", |p, v| p.token_dropout = v, 2.0),
            ("token_dropout", |p, v| p.token_dropout = v, f64::NAN),
            ("label_smoothing", |p, v| p.label_smoothing = v, 1.0),
            ("ema_decay", |p, v| p.ema_decay = v, -0.1),
            ("warmup_ratio", |p, v| p.warmup_ratio = v, 1.5),
            ("weight_decay", |p, v| p.weight_decay = v, f64::INFINITY),
            ("branch_loss", |p, v| p.branch_loss = v, -1.0),
            ("ngram_dropout", |p, v| p.ngram_dropout = v, 1.0),
        ];
        for (name, set, value) in cases {
            let mut p = Preset::get("tiny").unwrap();
            set(&mut p, value);
            let e = p.validate().unwrap_err().to_string();
            assert!(e.contains(name), "{name} = {value}: {e}");
        }
        let mut p = Preset::get("tiny").unwrap();
        (p.warmup_ratio, p.ema_decay, p.token_dropout) = (1.0, 0.0, 0.0);
        p.validate().unwrap();
    }

    #[test]
    fn bad_sizes_are_rejected() {
        let mut p = Preset::get("tiny").unwrap();
        p.heads = 3;
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("not divisible"));
    }

    #[test]
    fn the_bag_learning_rate_scale_defaults_to_one_and_must_be_positive() {
        assert_eq!(Preset::get("tiny").unwrap().ngram_lr_scale, 10.0);
        assert_eq!(Preset::get("small").unwrap().ngram_lr_scale, 1.0);
        let mut p = Preset::get("tiny").unwrap();
        p.ngram_lr_scale = 0.0;
        assert!(p
            .validate()
            .unwrap_err()
            .to_string()
            .contains("ngram_lr_scale"));
    }
}
