//! Length-bucketed batches: each batch is padded to its own longest sequence, not to the
//! maximum length, which is most of the training speed on short utterances.

use candle_core::{Device, Result, Tensor};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::model::NgramInput;

/// Token ids of one example and its class index.
#[derive(Debug, Clone)]
pub struct EncodedExample {
    pub ids: Vec<u32>,
    /// The text's n-gram ids (`device::ngrams`; empty when the model has no bag).
    pub ngrams: Vec<u32>,
    pub label: u32,
    /// Distillation soft targets: the teacher's class probabilities at the distillation
    /// temperature (`None` outside distillation; see [`crate::distill`]).
    pub soft: Option<Vec<f32>>,
}

impl EncodedExample {
    /// The model's view of the device tokenizer's output (ids as candle's u32).
    pub fn new(encoded: &device::tokenize::Encoded, label: u32) -> Self {
        Self {
            ids: encoded.ids.iter().map(|&i| i as u32).collect(),
            ngrams: encoded.ngrams.iter().map(|&i| i as u32).collect(),
            label,
            soft: None,
        }
    }
}

/// Encodes a data set with the checkpoint's text encoder and label list.
pub fn encode(
    encoder: &device::tokenize::TextEncoder,
    data: &crate::data::Dataset,
    labels: &[String],
) -> crate::error::Result<Vec<EncodedExample>> {
    data.check_labels(labels)?;
    data.examples
        .iter()
        .map(|e| {
            let enc = encoder.encode(&e.text)?;
            let label = labels
                .iter()
                .position(|l| *l == e.label)
                .expect("checked above") as u32;
            Ok(EncodedExample::new(&enc, label))
        })
        .collect()
}

/// A padded batch ready for the model.
#[derive(Debug)]
pub struct Batch {
    /// u32 `[B,S]`, padded with 0 (`[PAD]`).
    pub ids: Tensor,
    /// f32 `[B,S]`, 1 for real tokens.
    pub mask: Tensor,
    /// u32 `[B]`.
    pub labels: Tensor,
    /// Indices of the examples in the source slice.
    pub indices: Vec<usize>,
    /// f32 `[B,C]` soft targets, when every example in the batch has them.
    pub soft: Option<Tensor>,
    /// The n-gram ids, padded to the batch's most (at least one column of padding when
    /// no example has any: a model without a bag ignores them).
    pub ngrams: NgramInput,
}

impl Batch {
    pub fn new(examples: &[EncodedExample], indices: &[usize], device: &Device) -> Result<Self> {
        Self::with_ngram_dropout(examples, indices, 0.0, None, device)
    }

    /// A training batch whose n-gram ids are each dropped with probability `p` (drawn
    /// from `rng` only when `p > 0`, so runs without it keep their random stream).
    pub fn with_ngram_dropout(
        examples: &[EncodedExample],
        indices: &[usize],
        p: f64,
        rng: Option<&mut StdRng>,
        device: &Device,
    ) -> Result<Self> {
        let b = indices.len();
        let s = indices
            .iter()
            .map(|&i| examples[i].ids.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut ids = vec![0u32; b * s];
        let mut mask = vec![0f32; b * s];
        for (row, &i) in indices.iter().enumerate() {
            for (col, &id) in examples[i].ids.iter().enumerate() {
                ids[row * s + col] = id;
                mask[row * s + col] = 1.0;
            }
        }
        let labels: Vec<u32> = indices.iter().map(|&i| examples[i].label).collect();
        let soft = indices
            .iter()
            .map(|&i| examples[i].soft.as_deref())
            .collect::<Option<Vec<&[f32]>>>()
            .filter(|rows| !rows.is_empty())
            .map(|rows| {
                let c = rows[0].len();
                Tensor::from_vec(rows.concat(), (b, c), device)
            })
            .transpose()?;
        let mut rows: Vec<Vec<u32>> = indices
            .iter()
            .map(|&i| examples[i].ngrams.clone())
            .collect();
        if let (Some(rng), true) = (rng, p > 0.0) {
            for row in &mut rows {
                row.retain(|_| !rng.random_bool(p));
            }
        }
        Ok(Self {
            ids: Tensor::from_vec(ids, (b, s), device)?,
            mask: Tensor::from_vec(mask, (b, s), device)?,
            labels: Tensor::from_vec(labels, b, device)?,
            indices: indices.to_vec(),
            soft,
            ngrams: ngram_input(&rows, device)?,
        })
    }
}

/// Rows of n-gram ids as the model's input: padded with id 0 and weight 0, each real id
/// weighted 1 / (its row's count).
pub fn ngram_input(rows: &[Vec<u32>], device: &Device) -> Result<NgramInput> {
    let m = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
    let mut ids = vec![0u32; rows.len() * m];
    let mut weight = vec![0f32; rows.len() * m];
    for (r, row) in rows.iter().enumerate() {
        for (j, &id) in row.iter().enumerate() {
            ids[r * m + j] = id;
            weight[r * m + j] = 1.0 / row.len() as f32;
        }
    }
    Ok(NgramInput {
        ids: Tensor::from_vec(ids, (rows.len(), m), device)?,
        weight: Tensor::from_vec(weight, (rows.len(), m), device)?,
    })
}

/// Training order for one epoch: shuffle, sort windows of `50 × batch_size` by length,
/// cut into batches, shuffle the batches. Similar lengths share a batch; order stays random.
pub fn bucketed_batches(
    examples: &[EncodedExample],
    batch_size: usize,
    rng: &mut StdRng,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(rng);
    let window = batch_size * 50;
    let mut batches = Vec::new();
    for chunk in order.chunks_mut(window) {
        chunk.sort_by_key(|&i| examples[i].ids.len());
        batches.extend(chunk.chunks(batch_size).map(|c| c.to_vec()));
    }
    batches.shuffle(rng);
    batches
}

/// Evaluation order: sorted by length, fixed-size batches (no randomness needed).
pub fn sorted_batches(examples: &[EncodedExample], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| examples[i].ids.len());
    order.chunks(batch_size).map(|c| c.to_vec()).collect()
}
