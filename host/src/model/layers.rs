//! The building blocks of the attention classifier, each a plain struct with `forward`.
//!
//! Two candle pitfalls shape this file (see `docs/model.md`): `candle_nn::LayerNorm` and
//! `softmax_last_dim` have no backward pass, so LayerNorm is our own op ([`super::fused_ops`]) and
//! softmax is `candle_nn::ops::softmax`. Linear layers fold batch and sequence into one
//! matmul dimension, which avoids candle's slow broadcast-gradient reductions.

use std::sync::Arc;

use candle_core::{Device, Result, Tensor, D};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::dropout::Dropout;
use crate::config::ModelConfig;

/// Additive mask value for padding: large and finite, so an all-padding row stays finite.
pub const MASK_NEG: f64 = -1e9;

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
    /// Training only: hashed character n-gram vectors added to the word vectors.
    pub ngrams: Option<NgramEmbeddings>,
}

/// fastText-style sub-word information for a WordPiece vocabulary, as a training-time
/// parameterisation of the word-embedding table: token `v`'s vector is
/// `word[v] + mean_g table[bucket(g)]` over the character 3-5-grams `g` of its text
/// (`<` marks a word-initial piece; `##` is dropped; special tokens and pieces shorter
/// than 3 characters have none). Tokens sharing n-grams ("alarm", "alarms", "##larm")
/// share parameters while training; [`NgramEmbeddings::fold`] computes the whole table,
/// which is what the checkpoint saves, so inference (candle, ONNX, the device) sees an
/// ordinary embedding table.
#[derive(Debug, Clone)]
pub struct NgramEmbeddings {
    /// `[buckets, d]`.
    pub table: Tensor,
    /// u32 `[vocab, G]`: bucket of each of token v's n-grams (0 where unused).
    pub index: Tensor,
    /// f32 `[vocab, G]`: 1/count on used entries, 0 elsewhere.
    pub weight: Tensor,
}

impl NgramEmbeddings {
    /// Most n-grams kept per token.
    pub const MAX_PER_TOKEN: usize = 24;

    /// The n-gram buckets of one vocabulary token (see the type's docs).
    pub fn token_ngrams(token: &str, buckets: usize) -> Vec<u32> {
        let special = token.len() > 2 && token.starts_with('[') && token.ends_with(']');
        if special || buckets == 0 {
            return Vec::new();
        }
        let text: Vec<char> = match token.strip_prefix("##") {
            Some(rest) => rest.chars().collect(),
            None => std::iter::once('<').chain(token.chars()).collect(),
        };
        let mut out = Vec::new();
        for n in 3..=5 {
            for w in text.windows(n) {
                let g: String = w.iter().collect();
                out.push(device::tokenize::fnv1a32(g.as_bytes()) % buckets as u32);
                if out.len() == Self::MAX_PER_TOKEN {
                    return out;
                }
            }
        }
        out
    }

    /// Index and weight tables for a vocabulary (`tokens[id]` = token text).
    pub fn tables(tokens: &[String], buckets: usize, device: &Device) -> Result<(Tensor, Tensor)> {
        let per: Vec<Vec<u32>> = tokens
            .iter()
            .map(|t| Self::token_ngrams(t, buckets))
            .collect();
        let g = per.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let mut index = vec![0u32; tokens.len() * g];
        let mut weight = vec![0f32; tokens.len() * g];
        for (v, grams) in per.iter().enumerate() {
            for (j, &b) in grams.iter().enumerate() {
                index[v * g + j] = b;
                weight[v * g + j] = 1.0 / grams.len() as f32;
            }
        }
        Ok((
            Tensor::from_vec(index, (tokens.len(), g), device)?,
            Tensor::from_vec(weight, (tokens.len(), g), device)?,
        ))
    }

    /// The n-gram part `[N, d]` of the vectors of token ids `ids` (u32 `[N]`).
    pub fn lookup(&self, ids: &Tensor) -> Result<Tensor> {
        let n = ids.dim(0)?;
        let (_, g) = self.index.dims2()?;
        let d = self.table.dim(1)?;
        let idx = self.index.index_select(ids, 0)?.flatten_all()?;
        let w = self.weight.index_select(ids, 0)?.reshape((n, g, 1))?;
        self.table
            .index_select(&idx, 0)?
            .reshape((n, g, d))?
            .broadcast_mul(&w)?
            .sum(1)
    }

    /// `word + n-gram part` for the whole vocabulary: the table a checkpoint saves.
    pub fn fold(&self, word: &Tensor) -> Result<Tensor> {
        let v = word.dim(0)?;
        let ids = Tensor::arange(0u32, v as u32, word.device())?;
        word + self.lookup(&ids)?
    }
}

impl Embeddings {
    pub fn new(vb: VarBuilder, cfg: &ModelConfig) -> Result<Self> {
        Ok(Self {
            word: vb.get((cfg.vocab_size, cfg.hidden), "word_embeddings.weight")?,
            position: vb.get((cfg.max_len, cfg.hidden), "position_embeddings.weight")?,
            norm: LayerNorm::new(vb.pp("LayerNorm"), cfg.hidden, cfg.layer_norm_eps)?,
            ngrams: None,
        })
    }

    /// `ids`: u32 `[B,S]` → `[B,S,d]`.
    pub fn forward(&self, ids: &Tensor, dropout: &Dropout) -> Result<Tensor> {
        let (b, s) = ids.dims2()?;
        let hidden = self.word.dim(1)?;
        let flat = ids.flatten_all()?;
        let mut words = self.word.index_select(&flat, 0)?;
        if let Some(ng) = &self.ngrams {
            words = (words + ng.lookup(&flat)?)?;
        }
        let words = words.reshape((b, s, hidden))?;
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

    #[test]
    fn ngram_vectors_fold_into_the_word_table() {
        let dev = Device::Cpu;
        let tokens: Vec<String> = ["[PAD]", "alarm", "##arm", "alarms", "a", "灯", "[CJK000]"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        // "<alarm": 3-grams <al ala lar arm, 4-grams <ala alar larm, 5-grams <alar alarm.
        assert_eq!(NgramEmbeddings::token_ngrams("alarm", 1 << 20).len(), 9);
        assert_eq!(NgramEmbeddings::token_ngrams("##arm", 1 << 20).len(), 1);
        for t in ["[PAD]", "a", "灯", "[CJK000]"] {
            assert!(NgramEmbeddings::token_ngrams(t, 64).is_empty(), "{t}");
        }
        let (index, weight) = NgramEmbeddings::tables(&tokens, 16, &dev).unwrap();
        let table = Tensor::randn(0f32, 1.0, (16, 4), &dev).unwrap();
        let word = Tensor::randn(0f32, 1.0, (tokens.len(), 4), &dev).unwrap();
        let ng = NgramEmbeddings {
            table: table.clone(),
            index,
            weight,
        };
        let folded = ng.fold(&word).unwrap();
        // Row by row: the word vector plus the mean of its n-gram bucket rows.
        let t = table.to_vec2::<f32>().unwrap();
        let w = word.to_vec2::<f32>().unwrap();
        let f = folded.to_vec2::<f32>().unwrap();
        for (v, tok) in tokens.iter().enumerate() {
            let grams = NgramEmbeddings::token_ngrams(tok, 16);
            for j in 0..4 {
                let mean = if grams.is_empty() {
                    0.0
                } else {
                    grams.iter().map(|&b| t[b as usize][j]).sum::<f32>() / grams.len() as f32
                };
                assert!((f[v][j] - (w[v][j] + mean)).abs() < 1e-5, "{tok}");
            }
        }
        // A batch lookup is the folded table's rows.
        let ids = Tensor::new(&[3u32, 1, 0], &dev).unwrap();
        let looked = (word.index_select(&ids, 0).unwrap() + ng.lookup(&ids).unwrap()).unwrap();
        let rows = folded.index_select(&ids, 0).unwrap();
        let diff = (looked - rows).unwrap().abs().unwrap().max_all().unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
    }
}
