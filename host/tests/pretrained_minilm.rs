//! `--init` reproduces the pretrained checkpoint's own hidden states before any
//! fine-tuning: token ids and last hidden states of all-MiniLM-L6-v2 against
//! `host/tests/data/minilm_reference.json`, which `tools/scripts/minilm_reference.py`
//! computed with an independent numpy BERT over the raw safetensors file.
//!
//! Needs the checkpoint in `.cache/minilm-l6` (`tools/scripts/fetch_minilm.sh`, run by
//! CI); skips with a message when it is absent.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use host::model::{AttentionClassifier, Dropout};
use host::pretrained::PretrainedEncoder;

fn checkpoint() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.cache/minilm-l6");
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} absent (run tools/scripts/fetch_minilm.sh)",
            dir.display()
        );
        None
    }
}

fn reference() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/minilm_reference.json");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn hidden_states_match_the_checkpoint() {
    let Some(dir) = checkpoint() else { return };
    let enc = PretrainedEncoder::open(&dir).unwrap();
    let text = device::tokenize::TextEncoder::from_bytes(&enc.tokenizer_json, 64).unwrap();
    let labels = vec!["a".to_string(), "b".to_string(), "c".to_string()];
    let cfg = enc
        .model_config(labels, 64, 384, 0.1, text.vocab_size())
        .unwrap();
    assert_eq!(
        (cfg.hidden, cfg.layers, cfg.heads, cfg.ffn),
        (384, 6, 12, 1536)
    );
    let dev = Device::Cpu;
    let (model, varmap) = AttentionClassifier::fresh(&cfg, 7, &dev).unwrap();
    let report = enc.load_into(&varmap, &cfg).unwrap();
    assert!(report
        .fresh
        .iter()
        .all(|n| n.starts_with("pooling.") || n.starts_with("classifier.")));
    assert_eq!(report.fresh.len(), 5, "{:?}", report.fresh);
    assert!(
        report.unused.iter().any(|n| n.starts_with("pooler.")),
        "{:?}",
        report.unused
    );
    assert!(
        !report.unused.iter().any(|n| n.contains("token_type")),
        "token types folded in"
    );

    let r = reference();
    let dims = r["dims"].as_u64().unwrap() as usize;
    let cases = r["cases"].as_array().unwrap();
    let encoded: Vec<_> = cases
        .iter()
        .map(|c| text.encode(c["text"].as_str().unwrap()).unwrap())
        .collect();
    // One padded batch: padding must not change the real tokens' states.
    let batch = device::tokenize::Batch::from_encoded(&encoded, text.pad_id());
    let (b, s) = (batch.batch, batch.seq);
    let ids: Vec<u32> = batch.ids.iter().map(|&x| x as u32).collect();
    let mask: Vec<f32> = batch.mask.iter().map(|&x| x as f32).collect();
    let ids = Tensor::from_vec(ids, (b, s), &dev).unwrap();
    let mask = Tensor::from_vec(mask, (b, s), &dev).unwrap();
    let hidden = model
        .encode(&ids, &mask, &Dropout::off())
        .unwrap()
        .to_vec3::<f32>()
        .unwrap();
    let mut worst = 0f64;
    for (i, case) in cases.iter().enumerate() {
        let want_ids: Vec<i64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(encoded[i].ids, want_ids, "token ids of {}", case["text"]);
        let leading = case["hidden_leading"].as_array().unwrap();
        let norms = case["hidden_norm"].as_array().unwrap();
        for (t, row) in leading.iter().enumerate() {
            let got = &hidden[i][t];
            for (k, want) in row.as_array().unwrap().iter().enumerate().take(dims) {
                let diff = (got[k] as f64 - want.as_f64().unwrap()).abs();
                worst = worst.max(diff);
                assert!(
                    diff < 2e-4,
                    "{} token {t} dim {k}: {} vs {want}",
                    case["text"],
                    got[k]
                );
            }
            let norm = got.iter().map(|&x| (x as f64).powi(2)).sum::<f64>().sqrt();
            let want = norms[t].as_f64().unwrap();
            assert!((norm - want).abs() / want < 1e-4, "norm {norm} vs {want}");
        }
    }
    eprintln!("largest difference from the numpy reference: {worst:.2e}");
}

#[test]
fn a_folder_without_weights_is_a_clear_error() {
    let Some(dir) = checkpoint() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(dir.join(f), tmp.path().join(f)).unwrap();
    }
    let err = PretrainedEncoder::open(tmp.path())
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no model.safetensors"), "{err}");
}
