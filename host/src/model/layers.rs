//! The building blocks of the attention classifier, each a plain struct with `forward`.
//!
//! Two candle pitfalls shape this file (see `docs/model.md`): `candle_nn::LayerNorm` and
//! `softmax_last_dim` have no backward pass, so LayerNorm is our own op ([`super::fused_ops`]) and
//! softmax is `candle_nn::ops::softmax`. Linear layers fold batch and sequence into one
//! matmul dimension, which avoids candle's slow broadcast-gradient reductions.

use std::sync::Arc;

use candle_core::{Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::dropout::Dropout;
use crate::config::ModelConfig;

/// Additive mask value for padding: large and finite, so an all-padding row stays finite;
/// far below any attention score (its `exp` is 0 in f32); and finite in f16 (whose largest
/// value is 65504), so an exported model under tract's f16 transform (`NAME+f16` on a
/// Pi 5) keeps a real token's `0 · MASK_NEG` at 0 (-1e9, -inf in f16, made it NaN and
/// every answer with it).
pub const MASK_NEG: f64 = -3e4;

/// Static asymmetric u8 quantisation of a matmul input, exactly ONNX `QuantizeLinear`
/// followed by the zero-point subtraction `MatMulInteger` does:
/// `x̂ = (clamp(round(x / scale) + zero_point, 0, 255) - zero_point) * scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ActQuant {
    pub scale: f32,
    pub zero_point: u8,
}

impl ActQuant {
    /// The u8 grid covering `[lo, hi]` (widened to include 0, so 0 is exact) with codes
    /// 1-255: `lo` lands on 1, and code 0 is left to values below the calibrated range.
    /// The int8 kernels see a u8 input as `code - 128`, and with no -128 among the activations
    /// the AVX2 kernel takes its cheapest exact loop
    /// (`third_party/tract-linalg/PATCHES.md`); one code of 256 is all it costs.
    pub fn from_range(lo: f32, hi: f32) -> ActQuant {
        let (lo, hi) = (lo.min(0.0), hi.max(0.0));
        let scale = if hi - lo > 1e-12 {
            (hi - lo) / 254.0
        } else {
            1.0
        };
        let zero_point = (1.0 - lo / scale).round().clamp(1.0, 255.0) as u8;
        ActQuant { scale, zero_point }
    }

    /// Fake quantisation with a straight-through gradient (`x + (x̂ - x).detach()`), so
    /// the same code serves simulation and quantisation-aware training.
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let zp = f64::from(self.zero_point);
        let q = ((x / f64::from(self.scale))?.round()? + zp)?.clamp(0f32, 255f32)?;
        let xq = ((q - zp)? * f64::from(self.scale))?;
        x + (xq - x)?.detach()
    }
}

/// The function a [`Probe`] calls with the layer, its input and its output.
pub type ProbeFn = dyn Fn(&Linear, &Tensor, &Tensor) -> Result<()> + Send + Sync;

/// A callback that sees every [`Linear`]'s name, input and output (calibration and
/// per-layer error measurement). Not used in training or inference.
#[derive(Clone)]
pub struct Probe(pub Arc<ProbeFn>);

impl std::fmt::Debug for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Probe")
    }
}

/// `y = x Wᵀ + b` with `W` stored `[out, in]`.
#[derive(Debug, Clone)]
pub struct Linear {
    /// Weight-name prefix (`encoder.layer.0.attention.self.query`).
    pub name: String,
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    /// Simulated static int8 quantisation of the input (int8-compute variant, QAT).
    pub input_quant: Option<ActQuant>,
    /// Observer of input and output (quantisation tooling).
    pub probe: Option<Probe>,
}

impl Linear {
    pub fn new(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Self {
            name: vb.prefix(),
            weight,
            bias,
            input_quant: None,
            probe: None,
        })
    }

    pub fn forward(&self, input: &Tensor) -> Result<Tensor> {
        let quantised;
        let x = match &self.input_quant {
            Some(q) => {
                quantised = q.apply(input)?;
                &quantised
            }
            None => input,
        };
        let y = self.matmul(x)?;
        if let Some(p) = &self.probe {
            (p.0)(self, input, &y)?;
        }
        Ok(y)
    }

    /// `x Wᵀ + b` without input quantisation or probe.
    pub fn matmul(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().expect("rank >= 1");
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = x.reshape((rows, in_dim))?.matmul(&self.weight.t()?)?;
        let y = match &self.bias {
            Some(b) => super::fused_ops::add_bias(&y, b)?,
            None => y,
        };
        let mut out_dims = dims;
        *out_dims.last_mut().expect("rank >= 1") = self.weight.dim(0)?;
        y.reshape(out_dims)
    }
}

/// LayerNorm over the last dimension, with a gradient (`candle_nn::LayerNorm` has none):
/// a fused op on CPU f32 ([`super::fused_ops`]), basic ops elsewhere.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn new(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        super::fused_ops::layer_norm(x, &self.weight, &self.bias, self.eps)
    }
}

/// Token + position embeddings, then LayerNorm and dropout.
#[derive(Debug, Clone)]
pub struct Embeddings {
    pub word: Tensor,
    pub position: Tensor,
    pub norm: LayerNorm,
}

/// The `ngram_ids` of a batch (`device::ngrams`), as the model reads them.
#[derive(Debug, Clone)]
pub struct NgramInput {
    /// u32 `[B, M]`, 0 on padding.
    pub ids: Tensor,
    /// f32 `[B, M]`: 1 / (the row's id count) on real ids, 0 on padding (so each row
    /// averages its ids; a row without ids gives the zero vector).
    pub weight: Tensor,
}

/// Bag of n-grams: the mean of one learnt vector per n-gram id of the text, added to the
/// attention-pooled vector before the classifier. It reads what a TF-IDF baseline reads
/// (whole words, word pairs, character n-grams), so a word the vocabulary never saw still
/// counts through the n-grams it shares with words that were seen. Row 0 (padding) is
/// zero from initialisation on and never gets a gradient (its weight is 0).
#[derive(Debug, Clone)]
pub struct NgramBag {
    /// `[buckets, d]`.
    pub table: Tensor,
}

impl NgramBag {
    pub fn new(vb: VarBuilder, buckets: usize, hidden: usize) -> Result<Self> {
        Ok(Self {
            table: vb.get((buckets, hidden), "weight")?,
        })
    }

    /// `[B, d]`: `Σ_m weight[b,m] · table[ids[b,m]]`.
    pub fn forward(&self, input: &NgramInput) -> Result<Tensor> {
        let (b, m) = input.ids.dims2()?;
        let d = self.table.dim(1)?;
        self.table
            .index_select(&input.ids.flatten_all()?, 0)?
            .reshape((b, m, d))?
            .broadcast_mul(&input.weight.unsqueeze(2)?)?
            .sum(1)
    }
}

impl Embeddings {
    pub fn new(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        Ok(Self {
            word: vb.get((cfg.vocab_size, cfg.hidden), "word_embeddings.weight")?,
            position: vb.get((cfg.max_len, cfg.hidden), "position_embeddings.weight")?,
            norm: LayerNorm::new(vb.pp("LayerNorm"), cfg.hidden, cfg.layer_norm_eps)?,
        })
    }

    /// `ids`: u32 `[B,S]` → `[B,S,d]`.
    pub fn forward(&self, ids: &Tensor, dropout: &Dropout) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let hidden = self.word.dim(1)?;
        let flat = ids.flatten_all()?;
        let words = self.word.index_select(&flat, 0)?.reshape((b, s, hidden))?;
        // The position rows are a bias over the batch: [B, S·d] + [S·d].
        let positions = self.position.narrow(0, 0, s)?.flatten_all()?;
        let x = super::fused_ops::add_bias(&words.reshape((b, s * hidden))?, &positions)?
            .reshape((b, s, hidden))?;
        dropout.apply(&self.norm.forward(&x)?)
    }
}

/// Multi-head self-attention with an additive padding mask.
#[derive(Debug, Clone)]
pub struct SelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub output: Linear,
    pub norm: LayerNorm,
    pub heads: usize,
}

impl SelfAttention {
    pub fn new(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        let d = cfg.hidden;
        let s = vb.pp("self");
        let o = vb.pp("output");
        Ok(Self {
            query: Linear::new(s.pp("query"), d, d, true)?,
            key: Linear::new(s.pp("key"), d, d, true)?,
            value: Linear::new(s.pp("value"), d, d, true)?,
            output: Linear::new(o.pp("dense"), d, d, true)?,
            norm: LayerNorm::new(o.pp("LayerNorm"), d, cfg.layer_norm_eps)?,
            heads: cfg.heads,
        })
    }

    fn split_heads(&self, x: &Tensor) -> Result<Tensor> {
        let (b, s, d) = x.dims3()?;
        x.reshape((b, s, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// `x`: `[B,S,d]`, `key_mask`: additive `[B,1,1,S]`. Returns `LayerNorm(x + attn(x))`.
    pub fn forward(&self, x: &Tensor, key_mask: &Tensor, dropout: &Dropout) -> Result<Tensor> {
        let (b, s, d) = x.dims3()?;
        let head_dim = d / self.heads;
        let q = self.split_heads(&self.query.forward(x)?)?;
        let k = self.split_heads(&self.key.forward(x)?)?;
        let v = self.split_heads(&self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?;
        let probs = candle_nn::ops::softmax(&scores.broadcast_add(key_mask)?, D::Minus1)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, s, d))?;
        let attended = dropout.apply(&self.output.forward(&ctx)?)?;
        self.norm.forward(&(x + attended)?)
    }
}

/// Position-wise feed-forward block with erf-GELU.
#[derive(Debug, Clone)]
pub struct FeedForward {
    pub intermediate: Linear,
    pub output: Linear,
    pub norm: LayerNorm,
}

impl FeedForward {
    pub fn new(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        Ok(Self {
            intermediate: Linear::new(vb.pp("intermediate.dense"), cfg.hidden, cfg.ffn, true)?,
            output: Linear::new(vb.pp("output.dense"), cfg.ffn, cfg.hidden, true)?,
            norm: LayerNorm::new(vb.pp("output.LayerNorm"), cfg.hidden, cfg.layer_norm_eps)?,
        })
    }

    pub fn forward(&self, x: &Tensor, dropout: &Dropout) -> Result<Tensor> {
        let h = super::gelu::gelu(&self.intermediate.forward(x)?)?;
        let y = dropout.apply(&self.output.forward(&h)?)?;
        self.norm.forward(&(x + y)?)
    }
}

/// One post-LayerNorm transformer encoder layer (BERT layout and names).
#[derive(Debug, Clone)]
pub struct EncoderLayer {
    pub attention: SelfAttention,
    pub ffn: FeedForward,
}

impl EncoderLayer {
    pub fn new(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        Ok(Self {
            attention: SelfAttention::new(vb.pp("attention"), cfg)?,
            ffn: FeedForward::new(vb, cfg)?,
        })
    }

    pub fn forward(&self, x: &Tensor, key_mask: &Tensor, dropout: &Dropout) -> Result<Tensor> {
        let x = self.attention.forward(x, key_mask, dropout)?;
        self.ffn.forward(&x, dropout)
    }
}

/// Additive attention pooling: `α = softmax(uᵀ tanh(W h + b))` over the real tokens.
#[derive(Debug, Clone)]
pub struct AttentionPooling {
    pub dense: Linear,
    pub query: Linear,
}

impl AttentionPooling {
    pub fn new(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        Ok(Self {
            dense: Linear::new(vb.pp("dense"), cfg.hidden, cfg.pool_dim, true)?,
            query: Linear::new(vb.pp("query"), cfg.pool_dim, 1, false)?,
        })
    }

    /// `x`: `[B,S,d]`, `pad_mask`: additive `[B,S]`. Returns `(pooled [B,d], α [B,S])`.
    pub fn forward(&self, x: &Tensor, pad_mask: &Tensor) -> Result<(Tensor, Tensor)> {
        let energy = self.dense.forward(x)?.tanh()?;
        let scores = self.query.forward(&energy)?.squeeze(D::Minus1)?;
        let alpha = candle_nn::ops::softmax(&(scores + pad_mask)?, D::Minus1)?;
        let pooled = alpha.unsqueeze(1)?.matmul(x)?.squeeze(1)?;
        Ok((pooled, alpha))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The padding mask is finite in f16 (an exported model under tract's f16 transform)
    /// and still removes a padded key entirely in f32: `exp(MASK_NEG + score) = 0` for
    /// any score a model produces.
    #[test]
    fn the_mask_value_survives_f16_and_zeroes_padding() {
        const F16_MAX: f64 = 65504.0;
        assert!(MASK_NEG.abs() <= F16_MAX, "{MASK_NEG} is -inf in f16");
        assert_eq!((MASK_NEG as f32 + 1000.0).exp(), 0.0);
    }

    #[test]
    fn the_bag_averages_the_rows_of_real_ids() {
        let dev = Device::Cpu;
        let mut t: Vec<f32> = (0..20).map(|v| v as f32).collect();
        t[..4].fill(0.0); // row 0, padding
        let bag = NgramBag {
            table: Tensor::from_vec(t, (5, 4), &dev).unwrap(),
        };
        let input = NgramInput {
            ids: Tensor::new(&[[2u32, 4, 0], [0, 0, 0]], &dev).unwrap(),
            weight: Tensor::new(&[[0.5f32, 0.5, 0.0], [0.0, 0.0, 0.0]], &dev).unwrap(),
        };
        let out = bag.forward(&input).unwrap().to_vec2::<f32>().unwrap();
        // Rows 2 (8..12) and 4 (16..20) averaged; the empty row is zero.
        assert_eq!(out[0], [12.0, 13.0, 14.0, 15.0]);
        assert_eq!(out[1], [0.0; 4]);
    }
}
