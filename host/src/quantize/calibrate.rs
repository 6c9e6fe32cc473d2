//! Static activation ranges for the input of every quantised matmul.
//!
//! The float model runs over calibration examples with a [`Probe`] on every linear
//! layer. `min-max` keeps the extremes seen; `percentile` (default) keeps the
//! `(100 - p)` and `p` quantiles of all input values, read from a 4096-bin histogram
//! built in a second pass over the same examples, so memory stays flat whatever N is.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::ActRange;
use crate::batching::{sorted_batches, Batch, EncodedExample};
use crate::error::Result;
use crate::model::{ActQuant, AttentionClassifier, Dropout, Linear, Probe};

/// How a range is taken from the calibration activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CalibMethod {
    MinMax,
    Percentile,
}

impl CalibMethod {
    pub fn parse(s: &str) -> Option<CalibMethod> {
        match s {
            "min-max" | "minmax" => Some(CalibMethod::MinMax),
            "percentile" => Some(CalibMethod::Percentile),
            _ => None,
        }
    }
}

const BINS: usize = 4096;

/// `n` examples drawn with a fixed seed (all of them when there are fewer).
pub fn sample(examples: &[EncodedExample], n: usize) -> Vec<EncodedExample> {
    let mut v = examples.to_vec();
    v.shuffle(&mut StdRng::seed_from_u64(0x5eed));
    v.truncate(n);
    v
}

#[derive(Debug, Clone)]
struct Stats {
    min: f32,
    max: f32,
    hist: Vec<u64>,
}

/// Runs `model` over `examples` with `probe` on every linear layer.
fn run_probed(
    model: &AttentionClassifier,
    examples: &[EncodedExample],
    probe: Probe,
    device: &Device,
) -> Result<()> {
    let mut m = model.clone();
    for lin in m.linears_mut() {
        lin.probe = Some(probe.clone());
    }
    for indices in sorted_batches(examples, 32) {
        let batch = Batch::new(examples, &indices, device)?;
        m.forward(
            &batch.ids,
            &batch.mask,
            Some(&batch.ngrams),
            &Dropout::off(),
        )?;
    }
    Ok(())
}

/// Input values of a linear layer, every row of the batch (batches are length-sorted,
/// so padding rows are few; they hold ordinary hidden states, not outliers).
fn values(x: &Tensor) -> candle_core::Result<Vec<f32>> {
    x.flatten_all()?.to_vec1::<f32>()
}

/// Calibrated input range of every linear layer of `model` (a float model).
pub fn calibrate(
    model: &AttentionClassifier,
    examples: &[EncodedExample],
    method: CalibMethod,
    percentile: f64,
    device: &Device,
) -> Result<BTreeMap<String, ActRange>> {
    let stats: Arc<Mutex<BTreeMap<String, Stats>>> = Arc::default();
    let s = stats.clone();
    let probe = Probe(Arc::new(move |lin: &Linear, x: &Tensor, _y: &Tensor| {
        let v = values(x)?;
        let mut map = s.lock().expect("calibration lock");
        let e = map.entry(lin.name.clone()).or_insert(Stats {
            min: f32::INFINITY,
            max: f32::NEG_INFINITY,
            hist: Vec::new(),
        });
        for &a in &v {
            e.min = e.min.min(a);
            e.max = e.max.max(a);
        }
        Ok(())
    }));
    run_probed(model, examples, probe, device)?;

    if method == CalibMethod::Percentile {
        let s = stats.clone();
        let probe = Probe(Arc::new(move |lin: &Linear, x: &Tensor, _y: &Tensor| {
            let v = values(x)?;
            let mut map = s.lock().expect("calibration lock");
            let e = map.get_mut(&lin.name).expect("seen in pass 1");
            if e.hist.is_empty() {
                e.hist = vec![0; BINS];
            }
            let width = (e.max - e.min).max(1e-12);
            for &a in &v {
                let b = (((a - e.min) / width) * BINS as f32) as usize;
                e.hist[b.min(BINS - 1)] += 1;
            }
            Ok(())
        }));
        run_probed(model, examples, probe, device)?;
    }

    let stats = stats.lock().expect("calibration lock");
    Ok(stats
        .iter()
        .map(|(name, e)| {
            let (lo, hi) = match method {
                CalibMethod::MinMax => (e.min, e.max),
                CalibMethod::Percentile => {
                    let total: u64 = e.hist.iter().sum();
                    let width = (e.max - e.min) / BINS as f32;
                    let at = |q: f64| -> f32 {
                        let target = (q / 100.0 * total as f64).ceil() as u64;
                        let mut acc = 0;
                        for (i, &c) in e.hist.iter().enumerate() {
                            acc += c;
                            if acc >= target.max(1) {
                                return e.min + width * i as f32;
                            }
                        }
                        e.max
                    };
                    // Lower edge of the low bin, upper edge of the high bin.
                    (at(100.0 - percentile), (at(percentile) + width).min(e.max))
                }
            };
            let q = ActQuant::from_range(lo, hi);
            (
                name.clone(),
                ActRange {
                    min: lo,
                    max: hi,
                    observed_min: e.min,
                    observed_max: e.max,
                    scale: q.scale,
                    zero_point: q.zero_point,
                },
            )
        })
        .collect())
}
