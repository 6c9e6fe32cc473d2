//! The training objectives: cross-entropy with label smoothing, and the knowledge
//! distillation loss that mixes it with a teacher's softened outputs. Used by the training
//! loop ([`crate::train`]) and by prediction ([`crate::predict`]); the distillation job
//! ([`crate::distill`]) fills [`KdParams`] in.

use candle_core::{Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::{HostError, Result};

/// Cross-entropy with label smoothing `eps`, averaged over the batch.
pub fn cross_entropy(logits: &Tensor, labels: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let nll = logp
        .gather(&labels.unsqueeze(1)?, 1)?
        .squeeze(1)?
        .neg()?
        .mean_all()?;
    if eps == 0.0 {
        return Ok(nll);
    }
    let uniform = logp.mean(D::Minus1)?.neg()?.mean_all()?;
    (nll * (1.0 - eps))? + (uniform * eps)?
}

/// The distillation loss's two knobs.
///
/// Defaults `T = 2`, `alpha = 0.5`:
/// - `T = 2` softens the teacher enough to show how it ranks the wrong classes (Hinton et
///   al.'s "dark knowledge") without flattening a distribution over many classes (151 on
///   CLINC150) into near-uniform noise, which higher temperatures do; the `T²` factor in
///   [`kd_loss`] keeps the soft term's gradients the same size whatever `T` is.
/// - `alpha = 0.5` weighs the teacher and the hard labels equally: the soft targets carry
///   the teacher's similarities between classes, the hard labels correct the teacher's
///   own mistakes (a teacher is not always right, and a tiny teacher often is not).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KdParams {
    /// Softmax temperature applied to teacher and student logits in the soft term.
    pub temperature: f64,
    /// Weight of the soft (teacher) term; `1 - alpha` weighs the hard cross-entropy.
    pub alpha: f64,
}

impl Default for KdParams {
    fn default() -> Self {
        Self {
            temperature: 2.0,
            alpha: 0.5,
        }
    }
}

impl KdParams {
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(HostError::Invalid(format!(
                "temperature {} must be positive",
                self.temperature
            )));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(HostError::Invalid(format!(
                "alpha {} must be in [0, 1]",
                self.alpha
            )));
        }
        Ok(())
    }
}

/// `alpha · T² · KL(p_teacher ‖ softmax(s/T)) + (1 − alpha) · CE_eps(s, y)`, averaged over
/// the batch. `soft` is `p_teacher = softmax(t/T)`, f32 `[B,C]`; `eps` is the label
/// smoothing of the hard term (the preset's, as in ordinary training).
pub fn kd_loss(
    logits: &Tensor,
    soft: &Tensor,
    labels: &Tensor,
    kd: &KdParams,
    eps: f64,
) -> candle_core::Result<Tensor> {
    let hard = cross_entropy(logits, labels, eps)?;
    if kd.alpha == 0.0 {
        return Ok(hard);
    }
    let t = kd.temperature;
    let log_q = candle_nn::ops::log_softmax(&(logits / t)?, D::Minus1)?;
    // p·(log p − log q); p = 0 contributes 0 (clamped log keeps 0·log 0 finite).
    let log_p = soft.clamp(1e-30f32, 1.0f32)?.log()?;
    let kl = (soft * (log_p - log_q)?)?.sum(D::Minus1)?.mean_all()?;
    let soft_term = (kl * (kd.alpha * t * t))?;
    if kd.alpha == 1.0 {
        return Ok(soft_term);
    }
    soft_term + (hard * (1.0 - kd.alpha))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn smoothed_loss_matches_formula() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[2.0f32, 0.0, -1.0]], &dev).unwrap();
        let labels = Tensor::new(&[0u32], &dev).unwrap();
        let z: f64 = [2.0f64, 0.0, -1.0].iter().map(|x| x.exp()).sum();
        let logp: Vec<f64> = [2.0f64, 0.0, -1.0].iter().map(|x| x - z.ln()).collect();
        let want = 0.9 * -logp[0] + 0.1 * -(logp.iter().sum::<f64>() / 3.0);
        let got = cross_entropy(&logits, &labels, 0.1)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    fn softmax(x: &[f64]) -> Vec<f64> {
        let m = x.iter().cloned().fold(f64::MIN, f64::max);
        let e: Vec<f64> = x.iter().map(|v| (v - m).exp()).collect();
        let z: f64 = e.iter().sum();
        e.iter().map(|v| v / z).collect()
    }

    #[test]
    fn kd_loss_matches_a_hand_computation() {
        let dev = Device::Cpu;
        let s = [[2.0f64, 0.5, -1.0], [0.0, 1.0, 0.3]];
        let t = [[3.0f64, 1.0, 0.0], [-1.0, 2.0, 2.5]];
        let y = [0u32, 2];
        let (temp, alpha, eps) = (2.0, 0.7, 0.1);
        let mut want = 0.0;
        for i in 0..2 {
            let p = softmax(&t[i].map(|v| v / temp));
            let q = softmax(&s[i].map(|v| v / temp));
            let kl: f64 = (0..3).map(|c| p[c] * (p[c].ln() - q[c].ln())).sum();
            let logp: Vec<f64> = softmax(&s[i]).iter().map(|v| v.ln()).collect();
            let ce = (1.0 - eps) * -logp[y[i] as usize] + eps * -(logp.iter().sum::<f64>() / 3.0);
            want += (alpha * temp * temp * kl + (1.0 - alpha) * ce) / 2.0;
        }
        let soft: Vec<f32> = t
            .iter()
            .flat_map(|r| softmax(&r.map(|v| v / temp)))
            .map(|v| v as f32)
            .collect();
        let logits = Tensor::new(&s.map(|r| r.map(|v| v as f32)), &dev).unwrap();
        let soft = Tensor::from_vec(soft, (2, 3), &dev).unwrap();
        let labels = Tensor::new(&y, &dev).unwrap();
        let kd = KdParams {
            temperature: temp,
            alpha,
        };
        let got = kd_loss(&logits, &soft, &labels, &kd, eps)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn alpha_zero_is_the_cross_entropy_and_alpha_one_ignores_labels() {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[1.0f32, -0.5, 0.2], [0.3, 0.3, 2.0]], &dev).unwrap();
        let soft = Tensor::new(&[[0.2f32, 0.5, 0.3], [0.1, 0.1, 0.8]], &dev).unwrap();
        let labels = Tensor::new(&[1u32, 0], &dev).unwrap();
        let other = Tensor::new(&[2u32, 2], &dev).unwrap();
        let scalar = |t: Tensor| t.to_scalar::<f32>().unwrap();
        let ce = scalar(cross_entropy(&logits, &labels, 0.1).unwrap());
        let kd0 = KdParams {
            temperature: 3.0,
            alpha: 0.0,
        };
        let got = scalar(kd_loss(&logits, &soft, &labels, &kd0, 0.1).unwrap());
        assert!((got - ce).abs() < 1e-7, "{got} vs {ce}");
        let kd1 = KdParams {
            temperature: 3.0,
            alpha: 1.0,
        };
        let a = scalar(kd_loss(&logits, &soft, &labels, &kd1, 0.0).unwrap());
        let b = scalar(kd_loss(&logits, &soft, &other, &kd1, 0.0).unwrap());
        assert!(a > 0.0 && (a - b).abs() < 1e-7, "{a} vs {b}");
        // The soft term vanishes when the student already matches the teacher.
        let matched = candle_nn::ops::softmax(&(&logits / 3.0).unwrap(), D::Minus1).unwrap();
        let zero = scalar(kd_loss(&logits, &matched, &labels, &kd1, 0.0).unwrap());
        assert!(zero.abs() < 1e-6, "{zero}");
    }

    #[test]
    fn gradient_flows_and_points_towards_the_teacher() {
        let dev = Device::Cpu;
        let logits = Var::new(&[[0.0f32, 0.0, 0.0]], &dev).unwrap();
        let soft = Tensor::new(&[[0.1f32, 0.8, 0.1]], &dev).unwrap();
        let labels = Tensor::new(&[0u32], &dev).unwrap();
        let kd = KdParams {
            temperature: 2.0,
            alpha: 1.0,
        };
        let l = kd_loss(logits.as_tensor(), &soft, &labels, &kd, 0.0).unwrap();
        let grads = l.backward().unwrap();
        let g = grads
            .get(&logits)
            .expect("a gradient")
            .to_vec2::<f32>()
            .unwrap();
        // d/ds of T²·KL = T·(q − p): negative where the teacher puts more mass.
        assert!(g[0][1] < 0.0 && g[0][0] > 0.0 && g[0][2] > 0.0, "{g:?}");
        assert!((g[0][1] - 2.0 * (1.0 / 3.0 - 0.8)).abs() < 1e-5, "{g:?}");
        // With alpha = 0.5 the hard label pulls class 0 up as well.
        let kd = KdParams {
            temperature: 2.0,
            alpha: 0.5,
        };
        let l = kd_loss(logits.as_tensor(), &soft, &labels, &kd, 0.0).unwrap();
        let g = l
            .backward()
            .unwrap()
            .get(&logits)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        assert!(g[0][0] < 0.0, "{g:?}");
    }
}
