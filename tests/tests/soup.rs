//! `tools soup` with the real binaries on the shipped demo data: two tiny models trained
//! from the same seed with different word dropout average into a checkpoint whose
//! weights are their element-wise mean and which quantises, exports and evaluates like
//! any other; greedy soups never fall below their best ingredient on validation data;
//! checkpoints that cannot be averaged are refused with the reason, nothing overwritten.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use e2e::{run_err, run_ok, sha256_file};
use serde_json::Value;

/// Two demo checkpoints from one seed, with and without word dropout (trained once).
fn ingredients() -> &'static [PathBuf; 2] {
    static ING: OnceLock<(tempfile::TempDir, [PathBuf; 2])> = OnceLock::new();
    &ING.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let make = |name: &str, dropout: &str| {
            let ckpt = dir.path().join(name);
            run_ok(
                "tools",
                &[
                    "train",
                    "--train",
                    "models/demo/train.csv",
                    "--out",
                    ckpt.to_str().unwrap(),
                    "--epochs",
                    "6",
                    "--token-dropout",
                    dropout,
                    "--quiet",
                ],
                None,
            );
            ckpt
        };
        let a = make("a", "0");
        let b = make("b", "0.2");
        (dir, [a, b])
    })
    .1
}

/// The f32 tensors of a safetensors file, read here by hand (independent of candle).
fn safetensors(path: &Path) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    header
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| *k != "__metadata__")
        .map(|(k, v)| {
            assert_eq!(v["dtype"], "F32", "{k}");
            let (s, e) = (
                v["data_offsets"][0].as_u64().unwrap() as usize,
                v["data_offsets"][1].as_u64().unwrap() as usize,
            );
            let values = data[s..e]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k.clone(), values)
        })
        .collect()
}

/// `tools soup --recipe RECIPE` of the two ingredients into `out`; its JSON report.
fn soup(recipe: &str, out: &Path) -> Value {
    let [a, b] = ingredients();
    let args = [
        "soup",
        "--json",
        "--quiet",
        "--recipe",
        recipe,
        "--ckpt",
        a.to_str().unwrap(),
        "--ckpt",
        b.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    serde_json::from_str(&run_ok("tools", &args, None)).unwrap()
}

#[test]
fn uniform_soup_is_the_mean_and_exports_like_any_checkpoint() {
    let [a, b] = ingredients();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("soup");
    let report = soup("uniform", &out);
    assert_eq!(report["recipe"], "uniform");
    let ing = report["ingredients"].as_array().unwrap();
    assert_eq!(ing.len(), 2);
    assert!(ing.iter().all(|i| i["in_soup"] == true));

    // The weights are the element-wise mean, tensor by tensor.
    let (wa, wb) = (
        safetensors(&a.join("model.safetensors")),
        safetensors(&b.join("model.safetensors")),
    );
    let ws = safetensors(&out.join("model.safetensors"));
    assert_eq!(ws.len(), wa.len());
    let mut differ = 0usize;
    for (name, s) in &ws {
        let (x, y) = (&wa[name], &wb[name]);
        assert_eq!(s.len(), x.len(), "{name}");
        for i in 0..s.len() {
            let mean = (x[i] + y[i]) / 2.0;
            assert!(
                (s[i] - mean).abs() <= 1e-6 * mean.abs().max(1.0),
                "{name}[{i}]"
            );
            differ += usize::from(x[i] != y[i]);
        }
    }
    assert!(
        differ > 1000,
        "the ingredients should differ ({differ} weights do)"
    );

    // The record: the soup's own validation figures, the ingredients' summed training time.
    let training: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("training.json")).unwrap()).unwrap();
    assert_eq!(training["soup"]["recipe"], "uniform");
    assert_eq!(
        training["outcome"]["best_val_accuracy"],
        report["val_accuracy"]
    );
    let secs = |c: &Path| -> f64 {
        let t: Value =
            serde_json::from_str(&std::fs::read_to_string(c.join("training.json")).unwrap())
                .unwrap();
        t["outcome"]["seconds"].as_f64().unwrap()
    };
    let total = training["outcome"]["seconds"].as_f64().unwrap();
    assert!((total - (secs(a) + secs(b))).abs() < 1e-6, "{total}");
    assert!(out.join("rejection.json").is_file());

    // An ordinary checkpoint: quantise → export (self-checked against candle) → evaluate.
    let q = dir.path().join("soup-int8");
    let bundle = dir.path().join("bundle");
    run_ok(
        "tools",
        &[
            "quantize",
            "--model",
            out.to_str().unwrap(),
            "--out",
            q.to_str().unwrap(),
            "--max-drop",
            "30",
        ],
        None,
    );
    run_ok(
        "tools",
        &[
            "export",
            "--model",
            q.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ],
        None,
    );
    let eval: Value = serde_json::from_str(&run_ok(
        "tools",
        &[
            "eval",
            "--model",
            bundle.to_str().unwrap(),
            "--data",
            "models/demo/test.csv",
            "--json",
        ],
        None,
    ))
    .unwrap();
    // Demo data has 6 intents: a working soup is far above chance (1/6).
    let acc = eval["accuracy"].as_f64().unwrap();
    assert!(acc > 0.6, "soup bundle accuracy {acc}");
}

#[test]
fn greedy_soup_is_never_below_its_best_ingredient() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("soup");
    let report = soup("greedy", &out);
    assert_eq!(report["recipe"], "greedy");
    let ing = report["ingredients"].as_array().unwrap();
    let best = ing
        .iter()
        .map(|i| i["val_accuracy"].as_f64().unwrap())
        .fold(0.0, f64::max);
    let soup_acc = report["val_accuracy"].as_f64().unwrap();
    assert!(soup_acc >= best, "soup {soup_acc} < best ingredient {best}");
    // The best ingredient is always in; with one member the soup is that checkpoint.
    let kept: Vec<&Value> = ing.iter().filter(|i| i["in_soup"] == true).collect();
    assert!(!kept.is_empty());
    if kept.len() == 1 {
        let only = Path::new(kept[0]["checkpoint"].as_str().unwrap());
        assert_eq!(
            safetensors(&only.join("model.safetensors")),
            safetensors(&out.join("model.safetensors"))
        );
    }
    // The demo has no validation file: the ingredients' shared held-out split is used.
    assert!(report["val_file"]
        .as_str()
        .unwrap()
        .contains("validation split"));
}

#[test]
fn checkpoints_that_cannot_be_averaged_are_refused() {
    let [a, b] = ingredients();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("soup");
    let (a_s, b_s, out_s) = (
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        out.to_str().unwrap(),
    );

    let e = run_err("tools", &["soup", "--ckpt", a_s, "--out", out_s], None);
    assert!(e.contains("at least two checkpoints"), "{e}");

    // Writing over an ingredient is refused and the ingredient is untouched.
    let before = sha256_file(&a.join("model.safetensors"));
    let e = run_err(
        "tools",
        &["soup", "--ckpt", a_s, "--ckpt", b_s, "--out", a_s],
        None,
    );
    assert!(e.contains("is one of the ingredients"), "{e}");
    assert_eq!(sha256_file(&a.join("model.safetensors")), before);

    // Another label set (config.json), another tokenizer, broken weights.
    let copy = |name: &str| -> PathBuf {
        let c = dir.path().join(name);
        std::fs::create_dir_all(&c).unwrap();
        for f in [
            "model.safetensors",
            "config.json",
            "tokenizer.json",
            "training.json",
        ] {
            std::fs::copy(b.join(f), c.join(f)).unwrap();
        }
        c
    };
    // What `tools soup` says when `a` is averaged with `other`.
    let refusal = |other: &Path| {
        run_err(
            "tools",
            &[
                "soup",
                "--ckpt",
                a_s,
                "--ckpt",
                other.to_str().unwrap(),
                "--out",
                out_s,
            ],
            None,
        )
    };
    let labels = copy("labels");
    let cfg_path = labels.join("config.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["labels"][0] = Value::from("renamed_intent");
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let e = refusal(&labels);
    assert!(e.contains("config.json differs"), "{e}");

    let tok = copy("tokenizer");
    let tok_path = tok.join("tokenizer.json");
    let mut t = std::fs::read(&tok_path).unwrap();
    t.push(b'\n');
    std::fs::write(&tok_path, t).unwrap();
    let e = refusal(&tok);
    assert!(e.contains("tokenizer.json differs"), "{e}");

    let broken = copy("broken");
    let w = std::fs::read(broken.join("model.safetensors")).unwrap();
    std::fs::write(broken.join("model.safetensors"), &w[..w.len() / 2]).unwrap();
    let e = refusal(&broken);
    assert!(
        e.contains("model.safetensors") && e.contains("broken"),
        "{e}"
    );

    // None of the refusals wrote a soup.
    assert!(!out.join("model.safetensors").exists());
}
