//! The whole path on the shipped demo data with the real binaries:
//! train → export → `device classify` → `tools eval` on checkpoint and bundle.

use e2e::{csv_texts_and_labels, repo_root, run_ok};
use serde_json::Value;

#[test]
fn demo_train_export_classify_eval() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("ckpt");
    let bundle = dir.path().join("bundle");
    let (ckpt_s, bundle_s) = (ckpt.to_str().unwrap(), bundle.to_str().unwrap());

    let summary: Value = serde_json::from_str(&run_ok(
        "tools",
        &[
            "train",
            "--train",
            "models/demo/train.csv",
            "--out",
            ckpt_s,
            "--epochs",
            "12",
            "--quiet",
            "--json",
            "--threads",
            "2",
        ],
        None,
    ))
    .unwrap();
    assert_eq!(summary["labels"], 15);
    for f in [
        "model.safetensors",
        "config.json",
        "tokenizer.json",
        "training.json",
        "training_log.csv",
        "training_curves.svg",
    ] {
        assert!(ckpt.join(f).is_file(), "checkpoint lacks {f}");
    }
    let log = std::fs::read_to_string(ckpt.join("training_log.csv")).unwrap();
    assert!(log.lines().count() >= 2, "per-epoch log has rows");

    let export: Value = serde_json::from_str(&run_ok(
        "tools",
        &["export", "--model", ckpt_s, "--out", bundle_s, "--json"],
        None,
    ))
    .unwrap();
    assert!(export["checked"].as_u64().unwrap() > 0);
    assert!(export["max_logit_diff"].as_f64().unwrap() <= 1e-4);
    // The tokenizer that trained the model is the one the bundle carries, byte for byte.
    assert_eq!(
        std::fs::read(ckpt.join("tokenizer.json")).unwrap(),
        std::fs::read(bundle.join("tokenizer.json")).unwrap()
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["labels"].as_array().unwrap().len(), 15);
    assert!(manifest["files"]["model.onnx"].as_str().unwrap().len() == 64);

    // Device runtime on every test text.
    let test = repo_root().join("models/demo/test.csv");
    let rows = csv_texts_and_labels(&test);
    let input: String = rows.iter().map(|(t, _)| format!("{t}\n")).collect();
    let out = run_ok(
        "device",
        &["classify", "--bundle", bundle_s],
        Some(input.as_bytes()),
    );
    let preds: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(preds.len(), rows.len());
    let correct = preds
        .iter()
        .zip(&rows)
        .filter(|(p, (_, label))| p["label"] == label.as_str())
        .count();
    let device_acc = correct as f64 / rows.len() as f64;
    for p in &preds {
        let c = p["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c));
        assert!(p["top_tokens"].as_array().unwrap().len() <= 3);
        assert!(p["inference_us"].as_u64().is_some());
    }

    // The same report from the checkpoint (candle) and the bundle (tract).
    let eval = |model: &str| -> Value {
        serde_json::from_str(&run_ok(
            "tools",
            &[
                "eval",
                "--model",
                model,
                "--data",
                "models/demo/test.csv",
                "--json",
            ],
            None,
        ))
        .unwrap()
    };
    let (from_ckpt, from_bundle) = (eval(ckpt_s), eval(bundle_s));
    assert_eq!(
        from_ckpt["accuracy"], from_bundle["accuracy"],
        "candle and tract must agree"
    );
    assert_eq!(from_ckpt["macro_f1"], from_bundle["macro_f1"]);
    assert!(
        (from_bundle["accuracy"].as_f64().unwrap() - device_acc).abs() < 1e-9,
        "device classify = tools eval"
    );
    assert_eq!(from_bundle["n"], rows.len());
    assert!(from_bundle["in_scope_accuracy"].is_number() && from_bundle["oos_recall"].is_number());
    assert_eq!(from_bundle["per_class"].as_array().unwrap().len(), 15);
    // A 12-epoch tiny model learns the demo task (seeded: 0.82-0.85 measured, the 20-epoch
    // demo.sh run in docs/accuracy.md) — a floor a broken tokenizer or data set would fail.
    assert!(device_acc > 0.75, "demo test accuracy {device_acc}");
    // Chinese test texts: no CJK ideograph is `[UNK]` (the tokenizer's CJK fallback reads
    // the ones training never saw), and they are classified about as well as the rest.
    let is_cjk = |c: char| ('\u{4e00}'..='\u{9fff}').contains(&c);
    let zh: Vec<usize> = (0..rows.len())
        .filter(|&i| rows[i].0.chars().any(is_cjk))
        .collect();
    assert!(
        zh.len() >= 150,
        "Chinese rows in the demo test split: {}",
        zh.len()
    );
    let zh_correct = zh
        .iter()
        .filter(|&&i| preds[i]["label"] == rows[i].1.as_str())
        .count();
    let zh_acc = zh_correct as f64 / zh.len() as f64;
    assert!(zh_acc > 0.75, "demo Chinese test accuracy {zh_acc}");
    // Every token of each Chinese text (`--top-tokens` past any length): each ideograph is
    // a token of its own, shown as itself, and none is `[UNK]`.
    let input: String = zh.iter().map(|&i| format!("{}\n", rows[i].0)).collect();
    let out = run_ok(
        "device",
        &["classify", "--bundle", bundle_s, "--top-tokens", "64"],
        Some(input.as_bytes()),
    );
    for (line, &i) in out.lines().zip(&zh) {
        let p: Value = serde_json::from_str(line).unwrap();
        let tokens: Vec<&str> = p["top_tokens"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["token"].as_str().unwrap())
            .collect();
        assert_eq!(p["label"], preds[i]["label"]);
        for c in rows[i].0.chars().filter(|&c| is_cjk(c)) {
            assert!(
                tokens.contains(&c.to_string().as_str()),
                "{c} of {:?}: {tokens:?}",
                rows[i].0
            );
        }
        let unk = tokens.iter().filter(|t| **t == "[UNK]").count();
        let non_cjk_words = rows[i]
            .0
            .chars()
            .filter(|c| !c.is_ascii() && !is_cjk(*c))
            .count();
        assert!(unk <= non_cjk_words, "[UNK] in {:?}: {tokens:?}", rows[i].0);
    }
    // Eval output lands beside the bundle, never inside it (a bundle holds what its manifest lists).
    assert!(!bundle.join("confusion.csv").exists());
    let beside = dir.path().join("bundle.confusion.csv");
    assert!(beside.is_file() && dir.path().join("bundle.confusion.svg").is_file());
    let csv = std::fs::read_to_string(beside).unwrap();
    assert_eq!(csv.lines().count(), 16, "header + one row per label");
}

/// `--tokenizer FILE` trains with an existing tokenizer.json, which then travels byte for
/// byte into the checkpoint and the bundle.
#[test]
fn existing_tokenizer_is_used_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first");
    let second = dir.path().join("second");
    let bundle = dir.path().join("bundle");
    let train = |out: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--train",
            "models/demo/train.csv",
            "--out",
            out.to_str().unwrap(),
            "--epochs",
            "1",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        run_ok("tools", &args, None);
    };
    // (Above the demo's ~550 distinct characters, which a vocabulary always keeps.)
    train(&first, &["--vocab-size", "1000"]);
    let tok = first.join("tokenizer.json");
    train(&second, &["--tokenizer", tok.to_str().unwrap()]);
    run_ok(
        "tools",
        &[
            "export",
            "--model",
            second.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ],
        None,
    );
    let original = std::fs::read(&tok).unwrap();
    assert_eq!(
        original,
        std::fs::read(second.join("tokenizer.json")).unwrap()
    );
    assert_eq!(
        original,
        std::fs::read(bundle.join("tokenizer.json")).unwrap()
    );
    let config: Value =
        serde_json::from_slice(&std::fs::read(second.join("config.json")).unwrap()).unwrap();
    let vocab = config["vocab_size"].as_u64().unwrap();
    assert!(
        vocab <= 1000,
        "vocabulary comes from the given tokenizer: {vocab}"
    );
}

/// `tools train --keep last` saves the last epoch's averaged weights, whatever the
/// validation score said: the run's outcome names the last epoch and its validation
/// scores. `--keep best` (the default) names the epoch with the best validation macro-F1
/// of the log (the first of equals).
#[test]
fn training_keeps_the_best_or_the_last_epoch() {
    let dir = tempfile::tempdir().unwrap();
    for keep in ["best", "last"] {
        let ckpt = dir.path().join(keep);
        let out = run_ok(
            "tools",
            &[
                "train",
                "--train",
                "models/demo/train.csv",
                "--out",
                ckpt.to_str().unwrap(),
                "--epochs",
                "3",
                "--keep",
                keep,
                "--quiet",
                "--json",
            ],
            None,
        );
        let summary: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        let outcome = &summary["outcome"];
        let log = outcome["log"].as_array().unwrap();
        assert_eq!(log.len(), 3, "{outcome}");
        let kept = outcome["best_epoch"].as_u64().unwrap() as usize;
        let best = log
            .iter()
            .map(|e| e["val_macro_f1"].as_f64().unwrap())
            .enumerate()
            .fold((0, f64::MIN), |b, (i, f)| if f > b.1 { (i, f) } else { b })
            .0
            + 1;
        assert_eq!(kept, if keep == "last" { 3 } else { best }, "{outcome}");
        assert_eq!(
            outcome["best_val_macro_f1"],
            log[kept - 1]["val_macro_f1"],
            "{outcome}"
        );
    }
}
