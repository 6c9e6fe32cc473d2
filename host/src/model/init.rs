//! Seeded BERT-style initialisation.
//!
//! candle's own initialisers use an unseeded RNG (and `embedding` uses N(0,1)); here every
//! weight comes from one seeded generator: N(0, 0.02) for matrices and embeddings,
//! LayerNorm weight 1, biases 0. Vars are created in name order so the seed alone fixes them.

use candle_core::{Device, Result, Tensor, Var};
use candle_nn::VarMap;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::config::ModelConfig;

/// Every parameter name with its shape, in a fixed order.
pub fn parameter_shapes(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    let (d, f) = (cfg.hidden, cfg.ffn);
    let mut v: Vec<(String, Vec<usize>)> = vec![
        (
            "embeddings.word_embeddings.weight".into(),
            vec![cfg.vocab_size, d],
        ),
        (
            "embeddings.position_embeddings.weight".into(),
            vec![cfg.max_len, d],
        ),
        ("embeddings.LayerNorm.weight".into(), vec![d]),
        ("embeddings.LayerNorm.bias".into(), vec![d]),
    ];
    for l in 0..cfg.layers {
        let p = format!("encoder.layer.{l}");
        for lin in [
            "attention.self.query",
            "attention.self.key",
            "attention.self.value",
            "attention.output.dense",
        ] {
            v.push((format!("{p}.{lin}.weight"), vec![d, d]));
            v.push((format!("{p}.{lin}.bias"), vec![d]));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            v.push((format!("{p}.{ln}.weight"), vec![d]));
            v.push((format!("{p}.{ln}.bias"), vec![d]));
        }
        v.push((format!("{p}.intermediate.dense.weight"), vec![f, d]));
        v.push((format!("{p}.intermediate.dense.bias"), vec![f]));
        v.push((format!("{p}.output.dense.weight"), vec![d, f]));
        v.push((format!("{p}.output.dense.bias"), vec![d]));
    }
    v.push(("pooling.dense.weight".into(), vec![cfg.pool_dim, d]));
    v.push(("pooling.dense.bias".into(), vec![cfg.pool_dim]));
    v.push(("pooling.query.weight".into(), vec![1, cfg.pool_dim]));
    v.push(("classifier.weight".into(), vec![cfg.num_labels(), d]));
    v.push(("classifier.bias".into(), vec![cfg.num_labels()]));
    // Last, so adding the bag leaves every other weight's seeded initial value unchanged.
    if let Some(spec) = cfg.ngrams {
        v.push((
            format!("{}.weight", super::NGRAM_BAG),
            vec![spec.buckets as usize, d],
        ));
    }
    v
}

/// True for parameters that get no weight decay (biases and LayerNorm weights).
pub fn is_no_decay(name: &str) -> bool {
    name.ends_with(".bias") || name.contains("LayerNorm")
}

/// A VarMap holding freshly initialised parameters.
pub fn init_varmap(cfg: &ModelConfig, seed: u64, device: &Device) -> Result<VarMap> {
    let mut rng = StdRng::seed_from_u64(seed);
    let normal = Normal::new(0.0f32, 0.02).expect("valid std");
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().expect("varmap lock");
        for (name, shape) in parameter_shapes(cfg) {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if name.ends_with(".bias") {
                vec![0.0; n]
            } else if name.contains("LayerNorm") {
                vec![1.0; n]
            } else {
                let mut v: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
                if name.starts_with(super::NGRAM_BAG) {
                    v[..shape[1]].fill(0.0); // the padding row
                }
                v
            };
            let var = Var::from_tensor(&Tensor::from_vec(values, shape, device)?)?;
            data.insert(name, var);
        }
    }
    Ok(varmap)
}
