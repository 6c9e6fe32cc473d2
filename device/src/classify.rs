//! Text in, label out: tokenizer + engine + labels, and the explanation (top tokens by
//! the pooling attention α) that comes for free with the attention-pooling model.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::engine::{Engine, EngineOptions};
use crate::error::{DeviceError, Result};
use crate::tokenize::{Encoded, TextEncoder};
use bundle::rejection::RejectionRule;
use bundle::{Bundle, VerifiedBundle};

/// How much of the ranking a [`Prediction`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifyOptions {
    /// Labels in `top_k`, best first (clamped to the number of labels).
    pub top_k: usize,
    /// Tokens in `top_tokens`, highest α first.
    pub top_tokens: usize,
}

impl Default for ClassifyOptions {
    fn default() -> Self {
        ClassifyOptions {
            top_k: 3,
            top_tokens: 3,
        }
    }
}

/// One label with its probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelScore {
    pub label: String,
    pub p: f32,
}

/// One input token with its pooling weight α.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenWeight {
    pub token: String,
    pub weight: f32,
}

/// The `label` of a prediction that names no class (see [`RejectReason::Empty`]).
pub const UNKNOWN_LABEL: &str = "unknown";

/// Why a prediction was rejected (`rejected` is true exactly when there is a reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The text is empty or only whitespace: there is nothing to classify, the model is
    /// not run. `label` is [`UNKNOWN_LABEL`], `label_index` is the number of labels (no
    /// class), `confidence` 0, `top_k` and `top_tokens` empty.
    Empty,
    /// The bundle's rejection rule applies ([`RejectionRule`]): `label` and `confidence`
    /// are the model's best guess.
    Rule,
}

/// The classification of one text.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The best class, or [`UNKNOWN_LABEL`] for an empty text.
    pub label: String,
    /// Index of `label` in the labels; equal to the number of labels (no class) for an
    /// empty text.
    pub label_index: usize,
    /// Softmax probability of `label`.
    pub confidence: f32,
    /// Best labels with probabilities, best first.
    pub top_k: Vec<LabelScore>,
    /// Non-special tokens with the highest attention α, highest first.
    pub top_tokens: Vec<TokenWeight>,
    /// Wall time of tokenise + run + softmax, microseconds (for a batch: the whole batch's).
    pub inference_us: u64,
    /// The answer is "unknown": the text is empty, or the bundle's rejection rule applies
    /// (then `label` and `confidence` are only the best guess). `reason` says which.
    pub rejected: bool,
    /// Why the prediction was rejected (`None` when it was not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<RejectReason>,
}

impl Prediction {
    /// The answer to an empty or whitespace-only text (see [`RejectReason::Empty`]).
    pub fn empty(num_labels: usize) -> Prediction {
        Prediction {
            label: UNKNOWN_LABEL.into(),
            label_index: num_labels,
            confidence: 0.0,
            top_k: Vec::new(),
            top_tokens: Vec::new(),
            inference_us: 0,
            rejected: true,
            reason: Some(RejectReason::Empty),
        }
    }
}

/// Whether `text` has nothing to classify (empty or only whitespace): such a text is
/// answered [`RejectReason::Empty`] without running the model. So is a text whose
/// tokens are all special ones once encoded ([`has_content`]: zero-width spaces, control
/// characters, anything the tokenizer's normaliser removes).
pub fn is_blank(text: &str) -> bool {
    text.trim().is_empty()
}

/// Whether an encoded text has a token of its own (not only `[CLS]`, `[SEP]`).
pub fn has_content(encoded: &Encoded) -> bool {
    encoded.special.iter().any(|&s| !s)
}

/// Stage 4 (ready): a tokenizer and an engine from the same bundle, plus its labels.
#[derive(Debug)]
pub struct Classifier {
    encoder: TextEncoder,
    engine: Engine,
    labels: Vec<String>,
    options: ClassifyOptions,
    /// The rejection rule and the index of its out-of-scope class.
    rejection: Option<(RejectionRule, Option<usize>)>,
}

impl Classifier {
    /// Reads, verifies and loads the bundle in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Classifier> {
        Self::load(&Bundle::read(dir)?.verify()?)
    }

    /// Loads tokenizer and engine from a verified bundle.
    pub fn load(bundle: &VerifiedBundle) -> Result<Classifier> {
        Self::load_with(bundle, &EngineOptions::default())
    }

    /// As [`load`](Self::load), the engine (the bundle's default variant) built with
    /// `options`.
    pub fn load_with(bundle: &VerifiedBundle, options: &EngineOptions) -> Result<Classifier> {
        let encoder = TextEncoder::from_bundle(bundle)?;
        let name = bundle.manifest().default_variant_name();
        let engine = Engine::load_variant(bundle, &name, options.clone())?;
        Ok(
            Self::new(encoder, engine, bundle.manifest().labels.clone())?
                .with_rejection(bundle.manifest().rejection.clone()),
        )
    }

    /// Assembles a classifier from parts, checking they fit together.
    pub fn new(encoder: TextEncoder, engine: Engine, labels: Vec<String>) -> Result<Classifier> {
        let origin = "classifier".to_string();
        if labels.len() != engine.num_labels() || labels.is_empty() {
            return Err(DeviceError::Model {
                origin,
                problem: format!(
                    "{} labels for a model with {} classes",
                    labels.len(),
                    engine.num_labels()
                ),
            });
        }
        if let Some(v) = engine.vocab_size() {
            if encoder.vocab_size() > v {
                return Err(DeviceError::Model {
                    origin,
                    problem: format!(
                        "tokenizer has {} tokens, the model's embedding table {v}",
                        encoder.vocab_size()
                    ),
                });
            }
        }
        // The encoder must hash n-grams for this model's input and table, or not at all.
        let spec = encoder.ngram_spec();
        let width = engine.ngram_width();
        let rows = engine.ngram_buckets();
        if spec.map(|s| s.max) != width
            || spec.zip(rows).is_some_and(|(s, r)| s.buckets as usize != r)
        {
            return Err(DeviceError::Model {
                origin,
                problem: format!(
                    "the encoder's ngrams {spec:?} do not fit the model's {} input \
                     (width {width:?}, table rows {rows:?})",
                    crate::engine::NGRAM_INPUT
                ),
            });
        }
        if let Some(p) = engine.max_positions() {
            if encoder.max_len() > p {
                return Err(DeviceError::Model {
                    origin,
                    problem: format!(
                        "max_len {} exceeds the model's {p} positions",
                        encoder.max_len()
                    ),
                });
            }
        }
        Ok(Classifier {
            encoder,
            engine,
            labels,
            options: ClassifyOptions::default(),
            rejection: None,
        })
    }

    /// Sets (or removes) the rejection rule applied to predictions.
    pub fn with_rejection(mut self, rule: Option<RejectionRule>) -> Classifier {
        self.rejection = rule.map(|r| {
            let oos = r.oos_index(&self.labels);
            (r, oos)
        });
        self
    }

    /// The rejection rule in force, if any.
    pub fn rejection(&self) -> Option<&RejectionRule> {
        self.rejection.as_ref().map(|(r, _)| r)
    }

    /// Softmax probabilities of every class for each text (no ranking, no rule), in the
    /// order of [`Self::labels`].
    pub fn probabilities(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encoded = self.encoder.encode_batch(texts)?;
        let (logits, _) = self.engine.run_batch(&self.encoder.batch(&encoded))?;
        check_finite(&logits, self.labels.len(), texts)?;
        Ok(logits.chunks(self.labels.len()).map(softmax).collect())
    }

    /// Sets how many labels and tokens predictions carry.
    pub fn with_options(mut self, options: ClassifyOptions) -> Classifier {
        self.options = options;
        self
    }

    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    pub fn encoder(&self) -> &TextEncoder {
        &self.encoder
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Classifies one text.
    pub fn classify(&self, text: &str) -> Result<Prediction> {
        let mut v = self.classify_batch(&[text])?;
        Ok(v.remove(0))
    }

    /// Classifies texts in one run, padded to the longest (mask 0 on pads). Each
    /// prediction's `inference_us` is the whole batch's time.
    ///
    /// An empty or whitespace-only text ([`is_blank`]), or one with no token of its own
    /// once encoded ([`has_content`]), is answered [`Prediction::empty`] without running
    /// the model. A model output that is not
    /// finite (NaN or infinite logits: broken weights, or a variant this CPU computes
    /// wrongly) is an error, never a prediction.
    pub fn classify_batch(&self, texts: &[&str]) -> Result<Vec<Prediction>> {
        let c = self.labels.len();
        let start = Instant::now();
        let mut real: Vec<&str> = texts.iter().copied().filter(|t| !is_blank(t)).collect();
        let mut encoded = if real.is_empty() {
            Vec::new()
        } else {
            self.encoder.encode_batch(&real)?
        };
        // Per non-blank text: whether it has a token to classify.
        let content: Vec<bool> = encoded.iter().map(has_content).collect();
        let mut keep = content.iter();
        real.retain(|_| *keep.next().unwrap_or(&false));
        encoded.retain(has_content);
        let mut answers = Vec::with_capacity(real.len()).into_iter();
        if !real.is_empty() {
            let batch = self.encoder.batch(&encoded);
            let (logits, attention) = self.engine.run_batch(&batch)?;
            check_finite(&logits, c, &real)?;
            let probs: Vec<Vec<f32>> = logits.chunks(c).map(softmax).collect();
            let elapsed = start.elapsed().as_micros() as u64;
            answers = probs
                .iter()
                .zip(&encoded)
                .zip(attention.chunks(batch.seq))
                .map(|((p, enc), alpha)| self.prediction(p, enc, alpha, elapsed))
                .collect::<Vec<_>>()
                .into_iter();
        }
        let mut content = content.into_iter();
        Ok(texts
            .iter()
            .map(|t| {
                if is_blank(t) || !content.next().unwrap_or(false) {
                    Prediction::empty(c)
                } else {
                    answers.next().expect("one answer per text with content")
                }
            })
            .collect())
    }

    fn prediction(&self, probs: &[f32], enc: &Encoded, alpha: &[f32], us: u64) -> Prediction {
        let ranked = rank(probs);
        let best = ranked[0];
        let top_k = ranked
            .iter()
            .take(self.options.top_k)
            .map(|&i| LabelScore {
                label: self.labels[i].clone(),
                p: probs[i],
            })
            .collect();
        let real: Vec<usize> = (0..enc.len()).filter(|&i| !enc.special[i]).collect();
        let weights: Vec<f32> = real.iter().map(|&i| alpha[i]).collect();
        let top_tokens = rank(&weights)
            .into_iter()
            .take(self.options.top_tokens)
            .map(|j| TokenWeight {
                token: enc.tokens[real[j]].clone(),
                weight: weights[j],
            })
            .collect();
        let rejected = self
            .rejection
            .as_ref()
            .is_some_and(|(r, oos)| r.rejects(probs, *oos));
        Prediction {
            label: self.labels[best].clone(),
            label_index: best,
            confidence: probs[best],
            top_k,
            top_tokens,
            inference_us: us,
            rejected,
            reason: rejected.then_some(RejectReason::Rule),
        }
    }
}

/// Refuses model outputs that are not finite, naming the first text that got one.
fn check_finite(logits: &[f32], c: usize, texts: &[&str]) -> Result<()> {
    match logits
        .chunks(c.max(1))
        .position(|row| row.iter().any(|v| !v.is_finite()))
    {
        None => Ok(()),
        Some(i) => Err(DeviceError::Inference(format!(
            "the model's output for {:?} is not finite (NaN or infinite logits): its weights \
             are broken or this CPU cannot run this variant",
            texts.get(i).copied().unwrap_or_default()
        ))),
    }
}

/// Largest |a − b| over two logit vectors, for comparing a model against a reference.
/// NaN when either side holds a non-finite value or the lengths differ, so a check
/// `diff <= tolerance` fails on a broken model instead of passing (a plain fold with
/// `f32::max` drops NaN and reports 0).
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() || a.iter().chain(b).any(|v| !v.is_finite()) {
        return f32::NAN;
    }
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max)
}

/// Numerically stable softmax (max subtracted, sums in f64). NaN inputs give NaN outputs.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f64> = logits.iter().map(|&x| f64::from(x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|&e| (e / sum) as f32).collect()
}

/// Indices sorted by value, highest first; ties keep index order; NaN last.
fn rank(values: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| {
        let (x, y) = (values[a], values[b]);
        match (x.is_nan(), y.is_nan()) {
            (true, false) => std::cmp::Ordering::Greater,
            (false, true) => std::cmp::Ordering::Less,
            _ => y.partial_cmp(&x).unwrap_or(std::cmp::Ordering::Equal),
        }
    });
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let p = softmax(&[1000.0, 1000.0, -1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6 && p[2] == 0.0);
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[2] > p[1] && p[1] > p[0]);
    }

    #[test]
    fn classifier_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Classifier>();
    }

    #[test]
    fn max_abs_diff_fails_on_non_finite_values() {
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 1.0]), 1.0);
        assert!(max_abs_diff(&[f32::NAN, 2.0], &[f32::NAN, 2.0]).is_nan());
        assert!(max_abs_diff(&[1.0, f32::INFINITY], &[1.0, f32::INFINITY]).is_nan());
        assert!(max_abs_diff(&[1.0], &[1.0, 2.0]).is_nan());
        // What the old fold said about two NaN vectors.
        let old = [f32::NAN]
            .iter()
            .zip(&[f32::NAN])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert_eq!(old, 0.0);
    }

    #[test]
    fn blank_texts() {
        assert!(is_blank("") && is_blank(" \t\r\n") && is_blank("\u{3000}"));
        assert!(!is_blank(" a "));
        let p = Prediction::empty(4);
        assert_eq!((p.label.as_str(), p.label_index), (UNKNOWN_LABEL, 4));
        assert!(p.rejected && p.reason == Some(RejectReason::Empty));
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["reason"], "empty");
    }

    #[test]
    fn rank_orders_high_first_with_nan_last() {
        assert_eq!(rank(&[0.1, f32::NAN, 0.5, 0.1]), vec![2, 0, 3, 1]);
    }
}
