//! Seeded dropout.
//!
//! candle's `ops::dropout` draws from an unseeded RNG; masks here come from our own
//! seeded generator so a training run is reproducible.

use std::cell::RefCell;

use candle_core::{Result, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Dropout that is active only while training (`rng` present).
#[derive(Debug)]
pub struct Dropout {
    p: f32,
    rng: Option<RefCell<StdRng>>,
}

impl Dropout {
    /// Inactive dropout (evaluation).
    pub fn off() -> Self {
        Self { p: 0.0, rng: None }
    }

    /// Active dropout with probability `p`, masks drawn from `seed`.
    pub fn train(p: f32, seed: u64) -> Self {
        Self {
            p,
            rng: Some(RefCell::new(StdRng::seed_from_u64(seed))),
        }
    }

    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        let Some(rng) = &self.rng else {
            return Ok(x.clone());
        };
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 - self.p;
        let scale = 1.0 / keep;
        let n = x.elem_count();
        let mut rng = rng.borrow_mut();
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if rng.random::<f32>() < keep {
                    scale
                } else {
                    0.0
                }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
        x * mask
    }
}
