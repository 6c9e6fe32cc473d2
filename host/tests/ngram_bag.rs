//! The bag of n-grams end to end: candle, the written ONNX through the device's engine,
//! and the bundle the device opens agree, and the n-gram ids change the answer.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use device::tokenize::testing::tiny_tokenizer_json;
use device::tokenize::TextEncoder;
use host::batching::{Batch, EncodedExample};
use host::config::ModelConfig;
use host::export::onnx::build_onnx;
use host::model::{AttentionClassifier, Dropout};

const SPEC: bundle::NgramSpec = bundle::NgramSpec {
    buckets: 97,
    max: 24,
};

fn config() -> ModelConfig {
    ModelConfig {
        preset: "test".into(),
        vocab_size: 24,
        hidden: 16,
        layers: 1,
        heads: 2,
        ffn: 32,
        pool_dim: 8,
        max_len: 16,
        dropout: 0.0,
        layer_norm_eps: 1e-12,
        labels: (0..4).map(|i| format!("c{i}")).collect(),
        ngrams: Some(SPEC),
    }
}

/// A fresh model's weights with the bag table and the classifier scaled up, so that the
/// n-grams move the logits (row 0 of the table stays zero).
fn weights(c: &ModelConfig) -> HashMap<String, Tensor> {
    let (_, varmap) = AttentionClassifier::fresh(c, 11, &Device::Cpu).unwrap();
    let data = varmap.data().lock().unwrap();
    data.iter()
        .map(|(name, var)| {
            let t = var.as_tensor().clone();
            let t = match name.as_str() {
                "ngram_bag.weight" => (t * 100.0).unwrap(),
                "classifier.weight" => (t * 50.0).unwrap(),
                _ => t,
            };
            (name.clone(), t)
        })
        .collect()
}

fn encoder() -> TextEncoder {
    TextEncoder::from_bytes(tiny_tokenizer_json().as_bytes(), 16)
        .unwrap()
        .with_ngrams(Some(SPEC))
}

const TEXTS: [&str; 4] = [
    "the cat sat on the mat",
    "a dog ran fast",
    "the cafe is slow!",
    "playing cats, sitting dogs and a mat",
];

fn candle_logits(c: &ModelConfig, w: &HashMap<String, Tensor>, texts: &[&str]) -> Vec<Vec<f32>> {
    let vb = candle_nn::VarBuilder::from_tensors(w.clone(), DType::F32, &Device::Cpu);
    let model = AttentionClassifier::new(vb, c).unwrap();
    let enc = encoder();
    let examples: Vec<EncodedExample> = texts
        .iter()
        .map(|t| EncodedExample::new(&enc.encode(t).unwrap(), 0))
        .collect();
    assert!(examples.iter().all(|e| !e.ngrams.is_empty()));
    let indices: Vec<usize> = (0..texts.len()).collect();
    let batch = Batch::new(&examples, &indices, &Device::Cpu).unwrap();
    model
        .forward(
            &batch.ids,
            &batch.mask,
            Some(&batch.ngrams),
            &Dropout::off(),
        )
        .unwrap()
        .logits
        .to_vec2::<f32>()
        .unwrap()
}

#[test]
fn the_written_graph_takes_ngram_ids_and_matches_candle() {
    let c = config();
    let w = weights(&c);
    let bytes = build_onnx(&c, &w).unwrap();
    let engine = device::engine::Engine::from_onnx_bytes(&bytes, c.num_labels()).unwrap();
    assert_eq!(engine.ngram_width(), Some(SPEC.max));
    let enc = encoder();
    let encoded: Vec<_> = TEXTS.iter().map(|t| enc.encode(t).unwrap()).collect();
    let (logits, _) = engine.run_batch(&enc.batch(&encoded)).unwrap();
    let reference = candle_logits(&c, &w, &TEXTS);
    let n = c.num_labels();
    for (i, row) in reference.iter().enumerate() {
        let diff = device::max_abs_diff(&logits[i * n..(i + 1) * n], row);
        assert!(
            diff < 1e-3,
            "{:?}: tract and candle differ by {diff}",
            TEXTS[i]
        );
    }
    // The ids matter: the same tokens without their n-grams give other logits.
    let mut bare = enc.batch(&encoded);
    bare.ngram_ids.fill(0);
    let (without, _) = engine.run_batch(&bare).unwrap();
    let moved = device::max_abs_diff(&logits, &without);
    assert!(moved > 0.1, "the bag changed the logits by only {moved}");
}

#[test]
fn a_bundle_with_a_bag_is_format_3_and_classifies_like_candle() {
    let c = config();
    let w = weights(&c);
    let bytes = build_onnx(&c, &w).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let mut manifest = bundle::Manifest::new("t", &c.preset, c.labels.clone(), c.max_len);
    manifest.ngrams = c.ngrams;
    let tok = tiny_tokenizer_json();
    let written = bundle::write_bundle(
        &dir,
        manifest.clone(),
        &[
            (bundle::MODEL_FILE, &bytes),
            (bundle::TOKENIZER_FILE, tok.as_bytes()),
        ],
    )
    .unwrap();
    assert_eq!(written.format_version, 3);
    let classifier = device::Classifier::open(&dir).unwrap();
    let reference = candle_logits(&c, &w, &TEXTS);
    for (text, row) in TEXTS.iter().zip(&reference) {
        let p = classifier.classify(text).unwrap();
        let best = (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap();
        assert_eq!(p.label_index, best, "{text:?}");
    }

    // The same model in a bundle whose manifest does not declare the input is refused.
    let other = tmp.path().join("undeclared");
    manifest.ngrams = None;
    bundle::write_bundle(
        &other,
        manifest,
        &[
            (bundle::MODEL_FILE, &bytes),
            (bundle::TOKENIZER_FILE, tok.as_bytes()),
        ],
    )
    .unwrap();
    let err = device::Classifier::open(&other).unwrap_err().to_string();
    assert!(err.contains("ngram_ids"), "{err}");
}
