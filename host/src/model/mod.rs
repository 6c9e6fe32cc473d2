//! `AttentionClassifier`: embeddings → encoder layers → additive attention pooling → linear.
//!
//! The exact math and weight names are in `docs/model.md`; the ONNX writer in
//! [`crate::export::onnx`] emits the same graph.

mod dropout;
pub mod fused_ops;
pub mod gelu;
mod init;
pub mod layers;

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};

pub use dropout::Dropout;
pub use init::{init_varmap, is_no_decay, parameter_shapes};
pub use layers::{ActQuant, Linear, NgramBag, NgramInput, Probe};
use layers::{AttentionPooling, Embeddings, EncoderLayer, MASK_NEG};

use crate::config::ModelConfig;

/// Weight-name prefix of the bag-of-n-grams table (`ngram_bag.weight`).
pub const NGRAM_BAG: &str = "ngram_bag";

/// What one forward pass returns: class scores and the pooling weights.
#[derive(Debug, Clone)]
pub struct ClassifierOutput {
    /// `[B, C]` unnormalised class scores.
    pub logits: Tensor,
    /// `[B, S]` attention pooling weights α (sum to 1 over real tokens, 0 on padding).
    pub alpha: Tensor,
    /// `[B, d]` the attention-pooled vector alone and the bag-of-n-grams vector alone
    /// (a model with a bag; training can score each branch by itself too, see
    /// `TrainOptions::branch_loss`).
    pub branches: Option<(Tensor, Tensor)>,
}

/// The classifier: a plain struct of layers.
#[derive(Debug, Clone)]
pub struct AttentionClassifier {
    pub config: ModelConfig,
    pub embeddings: Embeddings,
    pub layers: Vec<EncoderLayer>,
    pub pooling: AttentionPooling,
    /// Present when the config has `ngrams`.
    pub ngram_bag: Option<NgramBag>,
    pub classifier: Linear,
}

impl AttentionClassifier {
    /// Builds the model on weights found in `vb` by their `docs/model.md` names.
    pub fn new(vb: VarBuilder, config: &ModelConfig) -> Result<Self> {
        let embeddings = Embeddings::new(vb.pp("embeddings"), config)?;
        let layers = (0..config.layers)
            .map(|l| EncoderLayer::new(vb.pp(format!("encoder.layer.{l}")), config))
            .collect::<Result<Vec<_>>>()?;
        let pooling = AttentionPooling::new(vb.pp("pooling"), config)?;
        let ngram_bag = config
            .ngrams
            .map(|spec| NgramBag::new(vb.pp(NGRAM_BAG), spec.buckets as usize, config.hidden))
            .transpose()?;
        let classifier = Linear::new(
            vb.pp("classifier"),
            config.hidden,
            config.num_labels(),
            true,
        )?;
        Ok(Self {
            config: config.clone(),
            embeddings,
            layers,
            pooling,
            ngram_bag,
            classifier,
        })
    }

    /// A freshly initialised model (BERT init from a seeded RNG) and the VarMap that owns it.
    pub fn fresh(config: &ModelConfig, seed: u64, device: &Device) -> Result<(Self, VarMap)> {
        let varmap = init_varmap(config, seed, device)?;
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        Ok((Self::new(vb, config)?, varmap))
    }

    /// Loads `model.safetensors` weights (no training).
    pub fn load(config: &ModelConfig, weights: &std::path::Path, device: &Device) -> Result<Self> {
        // SAFETY-free path: read the file into memory instead of mmapping it.
        let tensors = candle_core::safetensors::load(weights, device)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
        Self::new(vb, config)
    }

    /// Every linear layer, in graph order (the ones int8 quantisation covers).
    pub fn linears_mut(&mut self) -> Vec<&mut Linear> {
        let mut out = Vec::new();
        for layer in &mut self.layers {
            let a = &mut layer.attention;
            out.extend([&mut a.query, &mut a.key, &mut a.value, &mut a.output]);
            let f = &mut layer.ffn;
            out.extend([&mut f.intermediate, &mut f.output]);
        }
        out.extend([&mut self.pooling.dense, &mut self.pooling.query]);
        out.push(&mut self.classifier);
        out
    }

    /// The encoder's last hidden states `[B,S,d]` (what a pretrained checkpoint's own
    /// `last_hidden_state` is compared with).
    pub fn encode(&self, ids: &Tensor, mask: &Tensor, dropout: &Dropout) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let pad = ((mask.ones_like()? - mask)? * MASK_NEG)?;
        let key_mask = pad.reshape((b, 1, 1, s))?;
        let mut x = self.embeddings.forward(ids, dropout)?;
        for layer in &self.layers {
            x = layer.forward(&x, &key_mask, dropout)?;
        }
        Ok(x)
    }

    /// `ids`: u32 `[B,S]`; `mask`: f32 `[B,S]` (1 real, 0 padding); `ngrams`: the
    /// batch's n-gram ids, required when the model has a bag (ignored otherwise).
    pub fn forward(
        &self,
        ids: &Tensor,
        mask: &Tensor,
        ngrams: Option<&NgramInput>,
        dropout: &Dropout,
    ) -> Result<ClassifierOutput> {
        let x = self.encode(ids, mask, dropout)?;
        let pad = ((mask.ones_like()? - mask)? * MASK_NEG)?;
        let (pooled, alpha) = self.pooling.forward(&x, &pad)?;
        let (sum, branches) = match &self.ngram_bag {
            Some(bag) => {
                let input = ngrams.ok_or_else(|| {
                    candle_core::Error::Msg("the model reads n-gram ids; the batch has none".into())
                })?;
                let bag = bag.forward(input)?;
                ((&pooled + &bag)?, Some((pooled, bag)))
            }
            None => (pooled, None),
        };
        let logits = self.classifier.forward(&dropout.apply(&sum)?)?;
        Ok(ClassifierOutput {
            logits,
            alpha,
            branches,
        })
    }
}
