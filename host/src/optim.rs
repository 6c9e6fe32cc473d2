//! A fused AdamW step with global gradient-norm clipping folded in.
//!
//! candle's `AdamW` runs about a dozen whole-tensor ops per parameter, each allocating a
//! new tensor; for a small model that is a large share of every training step. Here each
//! parameter is read once, updated in one pass over plain slices, and written back.
//! Decoupled weight decay (Loshchilov & Hutter) applies only to parameters marked `decay`.

use candle_core::backprop::GradStore;
use candle_core::{Result, Tensor, Var};

struct Param {
    var: Var,
    m: Vec<f32>,
    v: Vec<f32>,
    decay: bool,
    /// Multiplies the learning rate for this parameter (layer-wise decay; 1 = none).
    lr_scale: f32,
}

/// AdamW over a fixed set of named parameters.
pub struct FusedAdamW {
    params: Vec<Param>,
    /// Exponential moving average of the weights (one buffer per parameter), when enabled.
    ema: Option<(f32, Vec<Vec<f32>>)>,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    steps: i32,
}

impl FusedAdamW {
    /// `params`: `(var, apply weight decay)`.
    pub fn new(params: Vec<(Var, bool)>, weight_decay: f64) -> Self {
        Self::with_lr_scales(
            params.into_iter().map(|(v, d)| (v, d, 1.0)).collect(),
            weight_decay,
        )
    }

    /// `params`: `(var, apply weight decay, learning-rate multiplier)`. The multiplier
    /// gives layer-wise learning-rate decay when fine-tuning a pretrained encoder: lower
    /// layers, which hold general features, move less than the fresh head.
    pub fn with_lr_scales(params: Vec<(Var, bool, f64)>, weight_decay: f64) -> Self {
        let params = params
            .into_iter()
            .map(|(var, decay, scale)| {
                let n = var.elem_count();
                Param {
                    var,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                    decay,
                    lr_scale: scale as f32,
                }
            })
            .collect();
        Self {
            params,
            ema: None,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            steps: 0,
        }
    }

    /// Also keeps an exponential moving average of the weights with `decay` (e.g. 0.999):
    /// evaluating and saving the averaged weights smooths out the last steps' noise.
    pub fn with_ema(mut self, decay: f64) -> Result<Self> {
        if decay > 0.0 {
            let buffers = self
                .params
                .iter()
                .map(|p| p.var.as_tensor().flatten_all()?.to_vec1::<f32>())
                .collect::<Result<Vec<_>>>()?;
            self.ema = Some((decay as f32, buffers));
        }
        Ok(self)
    }

    /// Exchanges the live weights with the averaged ones (a second call swaps back).
    /// Does nothing without EMA.
    pub fn swap_ema(&mut self) -> Result<()> {
        let Some((_, buffers)) = &mut self.ema else {
            return Ok(());
        };
        for (p, buf) in self.params.iter().zip(buffers.iter_mut()) {
            let live = p.var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let averaged = std::mem::replace(buf, live);
            p.var.set(&Tensor::from_vec(
                averaged,
                p.var.shape().clone(),
                p.var.device(),
            )?)?;
        }
        Ok(())
    }

    /// One update at learning rate `lr`, after scaling the gradients so their global L2
    /// norm is at most `clip_norm`. Returns the norm before clipping. Parameters without a
    /// gradient are left unchanged.
    pub fn step(&mut self, grads: &GradStore, lr: f64, clip_norm: f64) -> Result<f64> {
        let mut gs: Vec<Option<Vec<f32>>> = Vec::with_capacity(self.params.len());
        let mut sq = 0f64;
        for p in &self.params {
            let g = match grads.get(p.var.as_tensor()) {
                Some(g) => Some(g.flatten_all()?.to_vec1::<f32>()?),
                None => None,
            };
            if let Some(g) = &g {
                sq += sum_of_squares(g);
            }
            gs.push(g);
        }
        let norm = sq.sqrt();
        let scale = if norm > clip_norm && norm.is_finite() {
            clip_norm / (norm + 1e-6)
        } else {
            1.0
        } as f32;
        self.steps += 1;
        let (b1, b2) = (self.beta1 as f32, self.beta2 as f32);
        let bc1 = 1.0 - self.beta1.powi(self.steps);
        let bc2 = 1.0 - self.beta2.powi(self.steps);
        let step_size = (lr / bc1) as f32;
        let bc2_sqrt = bc2.sqrt() as f32;
        let eps = self.eps as f32;
        // Warm-started EMA (as in TensorFlow's ExponentialMovingAverage with num_updates),
        // so early averages are not dominated by the random initialisation.
        let ema_decay = self
            .ema
            .as_ref()
            .map(|(d, _)| d.min((1.0 + self.steps as f32) / (10.0 + self.steps as f32)));
        for (k, (p, g)) in self.params.iter_mut().zip(gs).enumerate() {
            let Some(g) = g else { continue };
            let shape = p.var.shape().clone();
            let mut w = p.var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
            let decay = if p.decay {
                1.0 - (lr * self.weight_decay) as f32 * p.lr_scale
            } else {
                1.0
            };
            let step = AdamStep {
                scale,
                b1,
                b2,
                bc2_sqrt,
                eps,
                decay,
                step_size: step_size * p.lr_scale,
            };
            adamw_update(&mut w, &g, &mut p.m, &mut p.v, &step);
            if let (Some(d), Some((_, buffers))) = (ema_decay, self.ema.as_mut()) {
                for (e, &x) in buffers[k].iter_mut().zip(&w) {
                    *e = d * *e + (1.0 - d) * x;
                }
            }
            p.var.set(&Tensor::from_vec(w, shape, p.var.device())?)?;
        }
        Ok(norm)
    }
}

/// The per-parameter constants of one AdamW step.
struct AdamStep {
    /// Gradient clipping factor.
    scale: f32,
    b1: f32,
    b2: f32,
    bc2_sqrt: f32,
    eps: f32,
    /// Decoupled weight decay factor (1 = none).
    decay: f32,
    /// Learning rate over the first moment's bias correction, times the lr scale.
    step_size: f32,
}

/// The AdamW update of one parameter, element by element. Written over zipped slices (no
/// index bounds checks) and compiled for AVX2 where the CPU has it, so `sqrt` and the
/// division run eight lanes at a time: the scalar indexed loop was ~10 % of a tiny-preset
/// training step (docs/benchmarks.md). Same operations in the same order as before, so the
/// same results.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+avx"))]
fn adamw_update(w: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: &AdamStep) {
    for (((w, &g), m), v) in w.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        let gi = g * k.scale;
        *m = k.b1 * *m + (1.0 - k.b1) * gi;
        *v = k.b2 * *v + (1.0 - k.b2) * gi * gi;
        let denom = v.sqrt() / k.bc2_sqrt + k.eps;
        *w = *w * k.decay - k.step_size * *m / denom;
    }
}

/// `Σ x²` in f64, over eight independent partial sums (vectorisable; a single running sum
/// cannot be reordered).
fn sum_of_squares(x: &[f32]) -> f64 {
    let mut acc = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v as f64 * v as f64;
        }
    }
    acc.iter().sum::<f64>() + tail.iter().map(|&v| v as f64 * v as f64).sum::<f64>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use candle_nn::{AdamW, Optimizer, ParamsAdamW};

    /// Matches candle's AdamW (same betas, eps, decoupled decay) over several steps.
    #[test]
    fn matches_candle_adamw() {
        let dev = Device::Cpu;
        let init = Tensor::new(&[[0.5f32, -1.0, 2.0], [0.1, 0.2, -0.3]], &dev).unwrap();
        let (a, b) = (
            Var::from_tensor(&init).unwrap(),
            Var::from_tensor(&init).unwrap(),
        );
        let mut ours = FusedAdamW::new(vec![(a.clone(), true)], 0.01);
        let mut theirs = AdamW::new(
            vec![b.clone()],
            ParamsAdamW {
                lr: 0.01,
                weight_decay: 0.01,
                ..Default::default()
            },
        )
        .unwrap();
        for _ in 0..5 {
            let la = (a.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            let lb = (b.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            ours.step(&la.backward().unwrap(), 0.01, 1e9).unwrap();
            theirs.step(&lb.backward().unwrap()).unwrap();
        }
        let (x, y) = (
            a.as_tensor().to_vec2::<f32>().unwrap(),
            b.as_tensor().to_vec2::<f32>().unwrap(),
        );
        for (r, s) in x.iter().zip(&y) {
            for (p, q) in r.iter().zip(s) {
                assert!((p - q).abs() < 1e-5, "{p} vs {q}");
            }
        }
    }

    /// The average trails the weights and swapping twice restores them exactly.
    #[test]
    fn ema_swaps_and_restores() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[1f32, -1.0], &dev).unwrap()).unwrap();
        let mut opt = FusedAdamW::new(vec![(a.clone(), false)], 0.0)
            .with_ema(0.9)
            .unwrap();
        for _ in 0..20 {
            let loss = a.as_tensor().sum_all().unwrap();
            opt.step(&loss.backward().unwrap(), 0.1, 1e9).unwrap();
        }
        let live = a.as_tensor().to_vec1::<f32>().unwrap();
        opt.swap_ema().unwrap();
        let avg = a.as_tensor().to_vec1::<f32>().unwrap();
        // The weights fall steadily, so their average lags above them.
        assert!(avg[0] > live[0] && avg[1] > live[1], "{avg:?} vs {live:?}");
        opt.swap_ema().unwrap();
        assert_eq!(a.as_tensor().to_vec1::<f32>().unwrap(), live);
    }

    /// A parameter with learning-rate multiplier 0.5 moves half as far on its first step
    /// (Adam's first step is ±lr per weight whatever the gradient's size).
    #[test]
    fn lr_scale_scales_the_step() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[1f32, 1.0], &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::new(&[1f32, 1.0], &dev).unwrap()).unwrap();
        let mut opt =
            FusedAdamW::with_lr_scales(vec![(a.clone(), false, 1.0), (b.clone(), false, 0.5)], 0.0);
        let loss = (a.as_tensor().sum_all().unwrap() + b.as_tensor().sum_all().unwrap()).unwrap();
        opt.step(&loss.backward().unwrap(), 0.1, 1e9).unwrap();
        let (wa, wb) = (
            a.as_tensor().to_vec1::<f32>().unwrap(),
            b.as_tensor().to_vec1::<f32>().unwrap(),
        );
        assert!((wa[0] - 0.9).abs() < 1e-4, "{wa:?}");
        assert!((wb[0] - 0.95).abs() < 1e-4, "{wb:?}");
    }

    /// Clipping bounds the update: with a huge gradient the first step moves each weight
    /// by at most about lr (Adam's normalised step), and the reported norm is the raw one.
    #[test]
    fn clipping_reports_raw_norm() {
        let dev = Device::Cpu;
        let a = Var::from_tensor(&Tensor::new(&[3f32, 4.0], &dev).unwrap()).unwrap();
        let mut opt = FusedAdamW::new(vec![(a.clone(), false)], 0.0);
        let loss = (a.as_tensor() * 100.0).unwrap().sum_all().unwrap();
        let norm = opt.step(&loss.backward().unwrap(), 0.1, 1.0).unwrap();
        assert!((norm - (2.0f64 * 100.0 * 100.0).sqrt()).abs() < 1e-3);
        let w = a.as_tensor().to_vec1::<f32>().unwrap();
        assert!(
            (w[0] - 2.9).abs() < 1e-3 && (w[1] - 3.9).abs() < 1e-3,
            "{w:?}"
        );
    }
}
