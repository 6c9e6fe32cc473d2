//! Running a model over encoded examples without dropout: predicted classes, class
//! probabilities and the mean loss. Used by training's validation ([`crate::train`]),
//! evaluation ([`crate::evaluate`]) and soups ([`crate::soup`]).

use candle_core::Device;

use crate::batching::{sorted_batches, Batch, EncodedExample};
use crate::error::Result;
use crate::loss::cross_entropy;
use crate::model::{AttentionClassifier, Dropout};

/// Predicted class, probabilities and loss over a set of examples (no dropout).
pub struct Predictions {
    pub predicted: Vec<usize>,
    pub probs: Vec<Vec<f32>>,
    pub loss: f64,
}

/// Runs the model over `examples` in length-sorted batches.
pub fn predict(
    model: &AttentionClassifier,
    examples: &[EncodedExample],
    device: &Device,
) -> Result<Predictions> {
    let c = model.config.num_labels();
    let mut predicted = vec![0usize; examples.len()];
    let mut probs = vec![Vec::new(); examples.len()];
    let mut loss_sum = 0.0;
    let off = Dropout::off();
    for indices in sorted_batches(examples, 128) {
        let batch = Batch::new(examples, &indices, device)?;
        let out = model.forward(&batch.ids, &batch.mask, Some(&batch.ngrams), &off)?;
        loss_sum += cross_entropy(&out.logits, &batch.labels, 0.0)?.to_scalar::<f32>()? as f64
            * indices.len() as f64;
        let p = candle_nn::ops::softmax_last_dim(&out.logits)?.to_vec2::<f32>()?;
        for (row, &i) in indices.iter().enumerate() {
            let best = (0..c)
                .max_by(|&a, &b| p[row][a].total_cmp(&p[row][b]))
                .unwrap_or(0);
            predicted[i] = best;
            probs[i] = p[row].clone();
        }
    }
    Ok(Predictions {
        predicted,
        probs,
        loss: loss_sum / examples.len().max(1) as f64,
    })
}
