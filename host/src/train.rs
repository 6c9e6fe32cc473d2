//! The training loop: AdamW ([`crate::optim`]) with decoupled weight decay (none on biases and LayerNorm),
//! linear warm-up then linear decay, global gradient-norm clipping, seeded dropout and
//! shuffling, length-bucketed batches, early stopping on validation macro-F1.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarMap;
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::batching::{bucketed_batches, Batch, EncodedExample};
use crate::error::{HostError, Result};
use crate::loss::{cross_entropy, kd_loss, KdParams};
use crate::metrics::Report;
use crate::model::{AttentionClassifier, Dropout};
use crate::optim::FusedAdamW;
use crate::predict::predict;

/// Optimisation settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub weight_decay: f64,
    /// Share of all steps spent warming the learning rate up from 0.
    pub warmup_ratio: f64,
    /// Maximum global L2 norm of the gradient.
    pub clip_norm: f64,
    /// Stop after this many epochs without a better validation macro-F1 (counted only in
    /// the second half of the schedule).
    pub patience: usize,
    pub label_smoothing: f64,
    /// Share of real tokens replaced by `[MASK]` in each training batch (word dropout):
    /// a regulariser that keeps a small model from memorising exact phrasings.
    pub token_dropout: f64,
    /// Share of a text's n-gram ids dropped in each training batch (a model with a bag).
    #[serde(default)]
    pub ngram_dropout: f64,
    /// Weight of the branch losses of a model with a bag: the classifier also scores the
    /// attention-pooled vector alone and the bag alone, and their cross-entropies are added
    /// with this weight, so neither branch can coast on the other (the token branch fits
    /// the training set first and would otherwise leave the bag under-trained).
    #[serde(default)]
    pub branch_loss: f64,
    /// Learning-rate multiple of the bag's table (`ngram_bag.weight`): its rows are sparse,
    /// each updated only by the texts that contain its n-grams.
    #[serde(default = "one")]
    pub ngram_lr_scale: f64,
    /// Decay of the exponential moving average of the weights that is validated and saved
    /// (0 = off).
    pub ema_decay: f64,
    /// Layer-wise learning-rate decay for fine-tuning: the head trains at `lr`, encoder
    /// layer `l` (of `L`) at `lr · decay^(L−l)`, the embeddings at `lr · decay^(L+1)`.
    /// 1 = the same rate everywhere.
    #[serde(default = "one")]
    pub layer_lr_decay: f64,
    /// Keep the word-embedding table fixed (a pretrained vocabulary's rows that the
    /// training data never uses then stay meaningful; each step is also cheaper).
    #[serde(default)]
    pub freeze_embeddings: bool,
    pub seed: u64,
    /// Save the last epoch's (averaged) weights instead of those of the best validation
    /// macro-F1: a near-saturated validation split (a tenth of SNIPS scores ~0.99 at every
    /// epoch) otherwise picks among the epochs by a handful of answers.
    #[serde(default)]
    pub keep_last: bool,
    /// Show a progress bar (stderr).
    pub progress: bool,
    /// Knowledge distillation: batches whose examples carry soft targets are trained on
    /// [`kd_loss`] instead of the cross-entropy (`None`: plain training).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<KdParams>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 20,
            batch_size: 32,
            lr: 1e-3,
            weight_decay: 0.01,
            warmup_ratio: 0.06,
            clip_norm: 1.0,
            patience: 5,
            label_smoothing: 0.1,
            token_dropout: 0.0,
            ngram_dropout: 0.0,
            branch_loss: 0.0,
            ngram_lr_scale: 1.0,
            ema_decay: 0.0,
            layer_lr_decay: 1.0,
            freeze_embeddings: false,
            keep_last: false,
            seed: 42,
            progress: true,
            distill: None,
        }
    }
}

/// One row of the per-epoch log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_loss: f64,
    pub val_accuracy: f64,
    pub val_macro_f1: f64,
    pub lr: f64,
    pub examples_per_s: f64,
    pub seconds: f64,
}

/// What a run produced. `best_*` describe the saved weights: those of the best validation
/// macro-F1, or of the last epoch with [`TrainOptions::keep_last`].
#[derive(Debug, Clone, Serialize)]
pub struct TrainOutcome {
    pub best_epoch: usize,
    pub best_val_macro_f1: f64,
    pub best_val_accuracy: f64,
    pub epochs_run: usize,
    pub seconds: f64,
    pub log: Vec<EpochLog>,
}

/// Learning rate at `step` of `total`: linear warm-up to `peak`, then linear decay to 0.
pub fn lr_at(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        peak * (step + 1) as f64 / warmup as f64
    } else {
        let rest = total.saturating_sub(warmup).max(1);
        peak * (1.0 - (step - warmup) as f64 / rest as f64).max(0.0)
    }
}

fn one() -> f64 {
    1.0
}

/// The multiple of the learning rate a parameter trains at: the bag's table at
/// `ngram_lr_scale` (its rows are updated only by the texts holding their n-grams), the
/// others at `layer_lr_decay` per layer below the head.
pub fn lr_scale(name: &str, layers: usize, opts: &TrainOptions) -> f64 {
    if name.starts_with(crate::model::NGRAM_BAG) {
        opts.ngram_lr_scale
    } else {
        opts.layer_lr_decay
            .powi(layers_below_head(name, layers) as i32)
    }
}

/// How many layers sit between a parameter and the classifier head: 0 for the pooling
/// head and classifier, `L − l` for encoder layer `l`, `L + 1` for the embeddings.
pub fn layers_below_head(name: &str, layers: usize) -> usize {
    if name.starts_with("embeddings.") {
        return layers + 1;
    }
    if let Some(rest) = name.strip_prefix("encoder.layer.") {
        if let Some(l) = rest.split('.').next().and_then(|x| x.parse::<usize>().ok()) {
            return layers.saturating_sub(l);
        }
    }
    0
}

/// The token ids word dropout needs: what to write (`[MASK]`, or `[UNK]` when the
/// tokenizer has no mask token) and which ids never to touch (`[CLS]`, `[SEP]`, `[PAD]`).
/// With a CJK fallback (`device::tokenize`), `cjk_fallback` maps the id of each CJK
/// ideograph in the vocabulary to its reserved fallback id: word dropout writes that
/// instead of `[MASK]`, so the reserved ids are trained as "some ideograph, read from
/// context" — what they stand for at inference (ideographs the training texts lacked).
#[derive(Debug, Clone, Default)]
pub struct SpecialIds {
    pub mask: Option<u32>,
    pub keep: Vec<u32>,
    pub cjk_fallback: std::collections::HashMap<u32, u32>,
}

impl SpecialIds {
    pub fn from_encoder(encoder: &device::tokenize::TextEncoder) -> Self {
        let t = encoder.tokenizer();
        let mask = t.token_to_id("[MASK]").or_else(|| t.token_to_id("[UNK]"));
        let keep = ["[CLS]", "[SEP]", "[PAD]"]
            .iter()
            .filter_map(|s| t.token_to_id(s))
            .collect();
        let mut cjk_fallback = std::collections::HashMap::new();
        if let Some(fb) = encoder.cjk_fallback() {
            for (token, id) in t.get_vocab(false) {
                let mut chars = token.chars();
                if let (Some(c), None) = (chars.next(), chars.next()) {
                    if device::tokenize::is_cjk_ideograph(c) {
                        cjk_fallback.insert(id, fb.id_of(c));
                    }
                }
            }
        }
        Self {
            mask,
            keep,
            cjk_fallback,
        }
    }
}

/// Word dropout: replaces each non-special token with `[MASK]` (a CJK ideograph with its
/// fallback id, see [`SpecialIds`]) with probability `p`.
fn mask_tokens(mut batch: Batch, p: f64, special: &SpecialIds, rng: &mut StdRng) -> Result<Batch> {
    let Some(mask_id) = special.mask else {
        return Ok(batch);
    };
    if p <= 0.0 {
        return Ok(batch);
    }
    let shape = batch.ids.shape().clone();
    let mut ids = batch.ids.flatten_all()?.to_vec1::<u32>()?;
    for id in ids.iter_mut() {
        if !special.keep.contains(id) && rng.random::<f64>() < p {
            *id = special.cjk_fallback.get(id).copied().unwrap_or(mask_id);
        }
    }
    batch.ids = Tensor::from_vec(ids, shape, batch.ids.device())?;
    Ok(batch)
}

/// Trains `model` (whose parameters live in `varmap`) and calls `on_best` each time the
/// validation macro-F1 improves (every epoch with [`TrainOptions::keep_last`]), so the
/// caller can save that checkpoint.
pub fn train(
    model: &AttentionClassifier,
    varmap: &VarMap,
    train_set: &[EncodedExample],
    val_set: &[EncodedExample],
    opts: &TrainOptions,
    special: &SpecialIds,
    mut on_best: impl FnMut(&EpochLog) -> Result<()>,
) -> Result<TrainOutcome> {
    let device = Device::Cpu;
    let labels = model.config.labels.clone();
    let mut named: Vec<(String, Var)> = varmap
        .data()
        .lock()
        .expect("varmap lock")
        .clone()
        .into_iter()
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let layers = model.config.layers;
    let params = named
        .iter()
        .filter(|(n, _)| !(opts.freeze_embeddings && n == "embeddings.word_embeddings.weight"))
        .map(|(n, v)| {
            let scale = lr_scale(n, layers, opts);
            (v.clone(), !crate::model::is_no_decay(n), scale)
        })
        .collect();
    let mut optimizer =
        FusedAdamW::with_lr_scales(params, opts.weight_decay).with_ema(opts.ema_decay)?;

    let mut rng = StdRng::seed_from_u64(opts.seed);
    let dropout = Dropout::train(model.config.dropout, opts.seed.wrapping_add(1));
    let steps_per_epoch = train_set.len().div_ceil(opts.batch_size.max(1));
    let total_steps = steps_per_epoch * opts.epochs;
    let warmup = ((total_steps as f64 * opts.warmup_ratio) as usize).max(1);
    let mut step = 0usize;
    let started = Instant::now();
    let mut log = Vec::new();
    let (mut best_f1, mut since_best) = (-1.0f64, 0usize);
    // The saved weights' epoch and scores.
    let (mut kept_f1, mut kept_acc, mut kept_epoch) = (-1.0f64, 0.0, 0usize);

    for epoch in 1..=opts.epochs {
        let epoch_start = Instant::now();
        let batches = bucketed_batches(train_set, opts.batch_size.max(1), &mut rng);
        let bar = if opts.progress {
            ProgressBar::new(batches.len() as u64)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} {bar:30} {pos}/{len} {msg} [{elapsed}<{eta}]",
            )
            .expect("valid template"),
        );
        bar.set_prefix(format!("{epoch}/{}", opts.epochs));
        let (mut loss_sum, mut correct, mut seen) = (0.0f64, 0usize, 0usize);
        for (batch_no, indices) in batches.iter().enumerate() {
            let lr = lr_at(step, total_steps, warmup, opts.lr);
            let batch = Batch::with_ngram_dropout(
                train_set,
                indices,
                opts.ngram_dropout,
                Some(&mut rng),
                &device,
            )?;
            let batch = mask_tokens(batch, opts.token_dropout, special, &mut rng)?;
            let out = model.forward(&batch.ids, &batch.mask, Some(&batch.ngrams), &dropout)?;
            let l = match (&batch.soft, &opts.distill) {
                (Some(soft), Some(kd)) => {
                    kd_loss(&out.logits, soft, &batch.labels, kd, opts.label_smoothing)?
                }
                _ => cross_entropy(&out.logits, &batch.labels, opts.label_smoothing)?,
            };
            let l = match (&out.branches, opts.branch_loss > 0.0) {
                (Some((pooled, bag)), true) => {
                    let branch = |x: &candle_core::Tensor| -> Result<candle_core::Tensor> {
                        let logits = model.classifier.forward(&dropout.apply(x)?)?;
                        Ok(cross_entropy(&logits, &batch.labels, opts.label_smoothing)?)
                    };
                    let extra = (branch(pooled)? + branch(bag)?)?;
                    (l + (extra * opts.branch_loss)?)?
                }
                _ => l,
            };
            let loss_value = l.to_scalar::<f32>()?;
            if !loss_value.is_finite() {
                return Err(HostError::Invalid(format!(
                    "training diverged at epoch {epoch}, step {} (batch {} of {}): the loss is \
                     not finite ({loss_value}); lower the learning rate (--lr {:e}, {lr:.3e} at \
                     this step) or check the data",
                    step + 1,
                    batch_no + 1,
                    batches.len(),
                    opts.lr
                )));
            }
            let grads = l.backward()?;
            optimizer.step(&grads, lr, opts.clip_norm)?;
            step += 1;
            let pred = out.logits.argmax(D::Minus1)?;
            correct += pred
                .eq(&batch.labels)?
                .to_dtype(DType::F32)?
                .sum_all()?
                .to_scalar::<f32>()? as usize;
            loss_sum += loss_value as f64 * indices.len() as f64;
            seen += indices.len();
            let rate = seen as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4} acc {:.3} {:.0} ex/s",
                loss_sum / seen as f64,
                correct as f64 / seen as f64,
                rate
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        let train_seconds = epoch_start.elapsed().as_secs_f64();
        // Validate (and save) the averaged weights, then continue training the live ones.
        optimizer.swap_ema()?;
        let val = predict(model, val_set, &device)?;
        if !val.loss.is_finite() {
            return Err(HostError::Invalid(format!(
                "training diverged at epoch {epoch}, step {step}: the validation loss is not \
                 finite ({}); lower the learning rate (--lr {:e}) or check the data",
                val.loss, opts.lr
            )));
        }
        let gold: Vec<usize> = val_set.iter().map(|e| e.label as usize).collect();
        let report = Report::new(&labels, &gold, &val.predicted, None);
        let entry = EpochLog {
            epoch,
            train_loss: loss_sum / seen.max(1) as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_loss: val.loss,
            val_accuracy: report.accuracy,
            val_macro_f1: report.macro_f1,
            lr: lr_at(step.saturating_sub(1), total_steps, warmup, opts.lr),
            examples_per_s: seen as f64 / train_seconds.max(1e-9),
            seconds: epoch_start.elapsed().as_secs_f64(),
        };
        let improved = entry.val_macro_f1 > best_f1;
        if opts.progress {
            eprintln!(
                "epoch {epoch:>3}  loss {:.4}  train acc {:.4}  val loss {:.4}  val acc {:.4}  val macro-F1 {:.4}  {:.0} ex/s{}",
                entry.train_loss,
                entry.train_accuracy,
                entry.val_loss,
                entry.val_accuracy,
                entry.val_macro_f1,
                entry.examples_per_s,
                if improved { "  *best" } else { "" }
            );
        }
        if improved {
            best_f1 = entry.val_macro_f1;
            since_best = 0;
        } else {
            since_best += 1;
        }
        if improved || opts.keep_last {
            (kept_f1, kept_acc, kept_epoch) = (entry.val_macro_f1, entry.val_accuracy, epoch);
            on_best(&entry)?;
        }
        optimizer.swap_ema()?;
        log.push(entry);
        // With a linear-decay schedule the best epochs come once the learning rate is low,
        // and a near-saturated validation score is noisy early on: patience only counts in
        // the second half of the schedule.
        if since_best >= opts.patience && epoch * 2 >= opts.epochs {
            if opts.progress {
                eprintln!(
                    "early stop: no better validation macro-F1 for {} epochs",
                    opts.patience
                );
            }
            break;
        }
    }
    Ok(TrainOutcome {
        best_epoch: kept_epoch,
        best_val_macro_f1: kept_f1,
        best_val_accuracy: kept_acc,
        epochs_run: log.len(),
        seconds: started.elapsed().as_secs_f64(),
        log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays() {
        let peak = 1e-3;
        assert!((lr_at(0, 100, 10, peak) - 1e-4).abs() < 1e-12);
        assert!((lr_at(9, 100, 10, peak) - peak).abs() < 1e-12);
        assert!(lr_at(50, 100, 10, peak) < peak && lr_at(50, 100, 10, peak) > 0.0);
        assert!(lr_at(99, 100, 10, peak) < lr_at(50, 100, 10, peak));
    }

    #[test]
    fn layer_depths_for_lr_decay() {
        assert_eq!(layers_below_head("classifier.weight", 6), 0);
        assert_eq!(layers_below_head("pooling.dense.bias", 6), 0);
        assert_eq!(
            layers_below_head("encoder.layer.5.output.dense.weight", 6),
            1
        );
        assert_eq!(
            layers_below_head("encoder.layer.0.attention.self.query.weight", 6),
            6
        );
        assert_eq!(layers_below_head("embeddings.word_embeddings.weight", 6), 7);
    }

    #[test]
    fn the_bag_alone_trains_at_its_own_rate() {
        let opts = TrainOptions {
            ngram_lr_scale: 10.0,
            layer_lr_decay: 0.5,
            ..TrainOptions::default()
        };
        let bag = format!("{}.weight", crate::model::NGRAM_BAG);
        assert_eq!(lr_scale(&bag, 2, &opts), 10.0);
        assert_eq!(lr_scale("classifier.weight", 2, &opts), 1.0);
        assert_eq!(
            lr_scale("encoder.layer.1.output.dense.weight", 2, &opts),
            0.5
        );
        assert_eq!(
            lr_scale("embeddings.word_embeddings.weight", 2, &opts),
            0.125
        );
    }
}
