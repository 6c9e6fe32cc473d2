//! The ONNX writer against the math of docs/model.md: a random-weight model is written,
//! loaded through the device's own engine (tract), and compared with a plain f64 forward
//! pass written here from the document. A second test runs the file through the
//! reference ONNX tooling (`onnx.checker` with full_check, onnxruntime) via
//! `host/tests/onnx_check.py`.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};
use device::engine::Engine;
use host::config::ModelConfig;
use host::export::onnx::{build_onnx, OnnxError};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn config() -> ModelConfig {
    ModelConfig {
        preset: "test".into(),
        vocab_size: 50,
        hidden: 16,
        layers: 2,
        heads: 4,
        ffn: 32,
        pool_dim: 8,
        max_len: 12,
        dropout: 0.1,
        layer_norm_eps: 1e-5,
        labels: (0..5).map(|i| format!("label{i}")).collect(),
        ngrams: None,
    }
}

/// Checkpoint weights as plain data (for the reference) and as candle tensors.
struct Weights {
    data: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Weights {
    fn random(c: &ModelConfig, seed: u64) -> Weights {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = HashMap::new();
        let mut add = |name: String, shape: Vec<usize>, center: f32, spread: f32| {
            let n = shape.iter().product();
            let v = (0..n)
                .map(|_| center + spread * rng.random_range(-1.0f32..1.0))
                .collect();
            data.insert(name, (shape, v));
        };
        let (d, f, da) = (c.hidden, c.ffn, c.pool_dim);
        add(
            "embeddings.word_embeddings.weight".into(),
            vec![c.vocab_size, d],
            0.0,
            1.0,
        );
        add(
            "embeddings.position_embeddings.weight".into(),
            vec![c.max_len, d],
            0.0,
            0.5,
        );
        let layer_norm = |add: &mut dyn FnMut(String, Vec<usize>, f32, f32), p: &str| {
            add(format!("{p}.weight"), vec![d], 1.0, 0.2);
            add(format!("{p}.bias"), vec![d], 0.0, 0.1);
        };
        layer_norm(&mut add, "embeddings.LayerNorm");
        for l in 0..c.layers {
            let p = format!("encoder.layer.{l}");
            for m in ["query", "key", "value"] {
                add(
                    format!("{p}.attention.self.{m}.weight"),
                    vec![d, d],
                    0.0,
                    0.5,
                );
                add(format!("{p}.attention.self.{m}.bias"), vec![d], 0.0, 0.1);
            }
            add(
                format!("{p}.attention.output.dense.weight"),
                vec![d, d],
                0.0,
                0.3,
            );
            add(
                format!("{p}.attention.output.dense.bias"),
                vec![d],
                0.0,
                0.1,
            );
            layer_norm(&mut add, &format!("{p}.attention.output.LayerNorm"));
            add(
                format!("{p}.intermediate.dense.weight"),
                vec![f, d],
                0.0,
                0.4,
            );
            add(format!("{p}.intermediate.dense.bias"), vec![f], 0.0, 0.1);
            add(format!("{p}.output.dense.weight"), vec![d, f], 0.0, 0.3);
            add(format!("{p}.output.dense.bias"), vec![d], 0.0, 0.1);
            layer_norm(&mut add, &format!("{p}.output.LayerNorm"));
        }
        add("pooling.dense.weight".into(), vec![da, d], 0.0, 0.5);
        add("pooling.dense.bias".into(), vec![da], 0.0, 0.1);
        add("pooling.query.weight".into(), vec![1, da], 0.0, 1.5);
        add(
            "classifier.weight".into(),
            vec![c.num_labels(), d],
            0.0,
            0.5,
        );
        add("classifier.bias".into(), vec![c.num_labels()], 0.0, 0.1);
        Weights { data }
    }

    fn tensors(&self) -> HashMap<String, Tensor> {
        self.data
            .iter()
            .map(|(k, (shape, v))| {
                let t = Tensor::from_vec(v.clone(), shape.as_slice(), &Device::Cpu).unwrap();
                (k.clone(), t)
            })
            .collect()
    }

    fn get(&self, name: &str) -> Vec<f64> {
        self.data[name].1.iter().map(|&x| f64::from(x)).collect()
    }
}

// ---- f64 reference forward, straight from docs/model.md ----------------------------

type Mat = Vec<Vec<f64>>; // [rows][cols]

/// `x W^T + b` with W stored `[out, in]`.
fn linear(x: &Mat, w: &[f64], b: Option<&[f64]>, out: usize) -> Mat {
    let inp = x[0].len();
    x.iter()
        .map(|row| {
            (0..out)
                .map(|o| {
                    let dot: f64 = (0..inp).map(|i| row[i] * w[o * inp + i]).sum();
                    dot + b.map_or(0.0, |b| b[o])
                })
                .collect()
        })
        .collect()
}

fn layer_norm(x: &Mat, w: &[f64], b: &[f64], eps: f64) -> Mat {
    x.iter()
        .map(|row| {
            let n = row.len() as f64;
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            row.iter()
                .enumerate()
                .map(|(i, v)| (v - mean) / (var + eps).sqrt() * w[i] + b[i])
                .collect()
        })
        .collect()
}

fn softmax(v: &[f64]) -> Vec<f64> {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = v.iter().map(|x| (x - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

fn erf(x: f64) -> f64 {
    // Abramowitz-Stegun 7.1.26 is only 1e-7; use a series / continued fraction instead.
    if x.abs() < 3.0 {
        // Maclaurin series, converges fast for |x| < 3.
        let mut sum = x;
        let mut term = x;
        let x2 = x * x;
        for n in 1..200 {
            term *= -x2 / n as f64;
            let add = term / (2 * n + 1) as f64;
            sum += add;
            if add.abs() < 1e-17 {
                break;
            }
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    } else {
        // erfc continued fraction (Lentz), accurate for |x| >= 3.
        let ax = x.abs();
        let mut f = 0.0;
        for k in (1..60).rev() {
            f = (k as f64 / 2.0) / (ax + f);
        }
        let erfc = (-ax * ax).exp() / std::f64::consts::PI.sqrt() / (ax + f);
        x.signum() * (1.0 - erfc)
    }
}

/// One sequence (length `s`, mask) through the model: (logits, alpha).
fn reference_one(c: &ModelConfig, w: &Weights, ids: &[i64], mask: &[i64]) -> (Vec<f64>, Vec<f64>) {
    let (d, h) = (c.hidden, c.heads);
    let dh = d / h;
    let s = ids.len();
    let word = w.get("embeddings.word_embeddings.weight");
    let pos = w.get("embeddings.position_embeddings.weight");
    let mut x: Mat = (0..s)
        .map(|t| {
            (0..d)
                .map(|j| word[ids[t] as usize * d + j] + pos[t * d + j])
                .collect()
        })
        .collect();
    let ln = |x: &Mat, p: &str| {
        layer_norm(
            x,
            &w.get(&format!("{p}.weight")),
            &w.get(&format!("{p}.bias")),
            c.layer_norm_eps,
        )
    };
    let lin = |x: &Mat, p: &str, out: usize| {
        linear(
            x,
            &w.get(&format!("{p}.weight")),
            Some(&w.get(&format!("{p}.bias"))),
            out,
        )
    };
    x = ln(&x, "embeddings.LayerNorm");
    let ext: Vec<f64> = mask.iter().map(|&m| (1.0 - m as f64) * -1e9).collect();
    for l in 0..c.layers {
        let p = format!("encoder.layer.{l}");
        let q = lin(&x, &format!("{p}.attention.self.query"), d);
        let k = lin(&x, &format!("{p}.attention.self.key"), d);
        let v = lin(&x, &format!("{p}.attention.self.value"), d);
        let mut merged = vec![vec![0.0; d]; s];
        for head in 0..h {
            let o = head * dh;
            for i in 0..s {
                let scores: Vec<f64> = (0..s)
                    .map(|j| {
                        let dot: f64 = (0..dh).map(|e| q[i][o + e] * k[j][o + e]).sum();
                        dot / (dh as f64).sqrt() + ext[j]
                    })
                    .collect();
                let p = softmax(&scores);
                for e in 0..dh {
                    merged[i][o + e] = (0..s).map(|j| p[j] * v[j][o + e]).sum();
                }
            }
        }
        let a = lin(&merged, &format!("{p}.attention.output.dense"), d);
        let res: Mat = x
            .iter()
            .zip(&a)
            .map(|(r, a)| r.iter().zip(a).map(|(x, y)| x + y).collect())
            .collect();
        x = ln(&res, &format!("{p}.attention.output.LayerNorm"));
        let inner = lin(&x, &format!("{p}.intermediate.dense"), c.ffn);
        let act: Mat = inner
            .iter()
            .map(|r| {
                r.iter()
                    .map(|&v| 0.5 * v * (1.0 + erf(v / 2f64.sqrt())))
                    .collect()
            })
            .collect();
        let f = lin(&act, &format!("{p}.output.dense"), d);
        let res: Mat = x
            .iter()
            .zip(&f)
            .map(|(r, a)| r.iter().zip(a).map(|(x, y)| x + y).collect())
            .collect();
        x = ln(&res, &format!("{p}.output.LayerNorm"));
    }
    let e: Mat = lin(&x, "pooling.dense", c.pool_dim)
        .into_iter()
        .map(|r| r.into_iter().map(f64::tanh).collect())
        .collect();
    let u = w.get("pooling.query.weight");
    let scores: Vec<f64> = (0..s)
        .map(|t| (0..c.pool_dim).map(|j| e[t][j] * u[j]).sum::<f64>() + ext[t])
        .collect();
    let alpha = softmax(&scores);
    let pooled: Vec<f64> = (0..d)
        .map(|j| (0..s).map(|t| alpha[t] * x[t][j]).sum())
        .collect();
    let logits = lin(&vec![pooled], "classifier", c.num_labels()).remove(0);
    (logits, alpha)
}

// ---- inputs ---------------------------------------------------------------------------

/// Row-major padded batch: token rows `[CLS] random… [SEP]` of the given lengths.
fn batch(lengths: &[usize], vocab: usize, seed: u64) -> (Vec<i64>, Vec<i64>, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let seq = *lengths.iter().max().unwrap();
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for &len in lengths {
        for t in 0..seq {
            let id = match t {
                0 => 2,
                t if t == len - 1 => 3,
                t if t < len => rng.random_range(5..vocab as i64),
                _ => 0,
            };
            ids.push(id);
            mask.push(i64::from(t < len));
        }
    }
    (ids, mask, seq)
}

fn max_abs_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).abs())
        .fold(0.0, f64::max)
}

fn written_model(seed: u64) -> (ModelConfig, Weights, Vec<u8>) {
    let c = config();
    let w = Weights::random(&c, seed);
    let bytes = build_onnx(&c, &w.tensors()).expect("build_onnx");
    (c, w, bytes)
}

#[test]
fn tract_matches_the_f64_reference() {
    let (c, w, bytes) = written_model(7);
    let engine = Engine::from_onnx_bytes(&bytes, c.num_labels()).expect("tract loads the model");
    assert_eq!(engine.vocab_size(), Some(c.vocab_size));
    assert_eq!(engine.max_positions(), Some(c.max_len));
    let nc = c.num_labels();

    // One plan, several shapes: batch 2 with padding, batch 3, full max_len.
    for (lengths, seed) in [
        (vec![9, 5], 1),
        (vec![3, 12, 7], 2),
        (vec![12], 3),
        (vec![2], 4),
    ] {
        let (ids, mask, seq) = batch(&lengths, c.vocab_size, seed);
        let (logits, attention) = engine.run(&ids, &mask, lengths.len(), seq).unwrap();
        for (b, &len) in lengths.iter().enumerate() {
            let row = b * seq..(b + 1) * seq;
            let (ref_logits, ref_alpha) =
                reference_one(&c, &w, &ids[row.clone()], &mask[row.clone()]);
            let dl = max_abs_diff(&logits[b * nc..(b + 1) * nc], &ref_logits);
            let da = max_abs_diff(&attention[row.clone()], &ref_alpha);
            println!("lengths {lengths:?} row {b}: logits diff {dl:.1e}, attention diff {da:.1e}");
            assert!(
                dl <= 1e-4,
                "lengths {lengths:?} row {b}: logits differ by {dl:e}"
            );
            assert!(
                da <= 1e-4,
                "lengths {lengths:?} row {b}: attention differs by {da:e}"
            );

            let alpha = &attention[row];
            let real: f32 = alpha[..len].iter().sum();
            assert!(
                (real - 1.0).abs() < 1e-5,
                "attention sums to {real} over real tokens"
            );
            assert!(
                alpha[len..].iter().all(|&a| a == 0.0),
                "attention on pads: {alpha:?}"
            );
        }
        // The reference logits are not degenerate (the comparison means something).
        let spread = logits.iter().copied().fold(f32::MIN, f32::max)
            - logits.iter().copied().fold(f32::MAX, f32::min);
        assert!(spread > 0.1, "logits nearly constant: {logits:?}");
    }
}

#[test]
fn padding_does_not_change_the_result() {
    let (c, _, bytes) = written_model(11);
    let engine = Engine::from_onnx_bytes(&bytes, c.num_labels()).unwrap();
    let nc = c.num_labels();
    let (ids, mask, seq) = batch(&[10, 4], c.vocab_size, 5);
    let (padded, padded_alpha) = engine.run(&ids, &mask, 2, seq).unwrap();
    let short = &ids[seq..seq + 4];
    let (alone, alone_alpha) = engine.run(short, &[1; 4], 1, 4).unwrap();
    let diff = alone
        .iter()
        .zip(&padded[nc..])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-5, "padded vs alone logits differ by {diff:e}");
    let diff = alone_alpha
        .iter()
        .zip(&padded_alpha[seq..seq + 4])
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff <= 1e-5, "padded vs alone attention differ by {diff:e}");
}

#[test]
fn missing_or_misshapen_weights_are_named() {
    let c = config();
    let w = Weights::random(&c, 3);
    let mut tensors = w.tensors();
    tensors.remove("encoder.layer.1.intermediate.dense.bias");
    match build_onnx(&c, &tensors) {
        Err(OnnxError::MissingWeight { name }) => {
            assert_eq!(name, "encoder.layer.1.intermediate.dense.bias")
        }
        other => panic!("expected MissingWeight, got {other:?}"),
    }

    let mut tensors = w.tensors();
    let wrong = Tensor::zeros((16, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    tensors.insert("pooling.dense.weight".into(), wrong);
    let err = build_onnx(&c, &tensors).unwrap_err();
    assert!(
        matches!(&err, OnnxError::WrongShape { name, expected, got }
            if name == "pooling.dense.weight" && expected == &[8, 16] && got == &[16, 8]),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "weight pooling.dense.weight: wrong shape: expected [8, 16], got [16, 8]"
    );

    let mut bad = config();
    bad.heads = 3;
    assert!(matches!(
        build_onnx(&bad, &w.tensors()),
        Err(OnnxError::Config(_))
    ));
}

#[test]
fn model_header_and_interface() {
    use prost::Message;
    let (c, _, bytes) = written_model(5);
    let m = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
    assert_eq!(m.ir_version, 8);
    assert_eq!(m.producer_name, "edge-classifier");
    assert_eq!(m.opset_import.len(), 1);
    assert_eq!(
        (m.opset_import[0].domain.as_str(), m.opset_import[0].version),
        ("", 17)
    );
    let g = m.graph.unwrap();
    let names =
        |v: &[tract_onnx::pb::ValueInfoProto]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&g.input), ["input_ids", "attention_mask"]);
    assert_eq!(names(&g.output), ["logits", "attention"]);
    // Every checkpoint weight is written exactly once.
    let mut inits: Vec<&str> = g.initializer.iter().map(|t| t.name.as_str()).collect();
    let n = inits.len();
    inits.sort();
    inits.dedup();
    assert_eq!(inits.len(), n, "duplicate initializer names");
    let weights = Weights::random(&c, 5);
    for name in weights.data.keys() {
        let count = g
            .initializer
            .iter()
            .filter(|t| t.name == *name || t.name == format!("{name}.transposed"))
            .count();
        assert_eq!(count, 1, "{name}");
    }
}

// ---- reference tooling -----------------------------------------------------------------

fn python_has_onnx() -> bool {
    Command::new("python3")
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn onnx_checker_and_onnxruntime_agree_with_tract() {
    if !python_has_onnx() {
        println!("skipped: onnx/onnxruntime not installed (pip install onnx onnxruntime)");
        return;
    }
    let (c, _, bytes) = written_model(13);
    let tmp = tempfile::tempdir().unwrap();
    let model_path = tmp.path().join("model.onnx");
    std::fs::write(&model_path, &bytes).unwrap();
    let (ids, mask, seq) = batch(&[8, 3, 12], c.vocab_size, 9);
    let rows = |v: &[i64]| v.chunks(seq).map(|r| r.to_vec()).collect::<Vec<_>>();
    let inputs = serde_json::json!({"input_ids": rows(&ids), "attention_mask": rows(&mask)});
    let inputs_path = tmp.path().join("inputs.json");
    std::fs::write(&inputs_path, inputs.to_string()).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_check.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&model_path)
        .arg(&inputs_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "onnx_check.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ort: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("JSON from onnx_check.py");
    let flat = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .flat_map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()))
            .collect()
    };

    let engine = Engine::from_onnx_bytes(&bytes, c.num_labels()).unwrap();
    let (logits, attention) = engine.run(&ids, &mask, 3, seq).unwrap();
    let dl = max_abs_diff(&logits, &flat(&ort["logits"]));
    let da = max_abs_diff(&attention, &flat(&ort["attention"]));
    println!("onnxruntime vs tract: logits diff {dl:.1e}, attention diff {da:.1e}");
    assert!(dl <= 1e-4, "onnxruntime vs tract logits differ by {dl:e}");
    assert!(
        da <= 1e-4,
        "onnxruntime vs tract attention differ by {da:e}"
    );
}

#[test]
fn written_model_runs_as_a_device_bundle() {
    use device::tokenize::testing::tiny_tokenizer_json;
    let (c, _, bytes) = written_model(17);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    let manifest = bundle::Manifest::new("t", &c.preset, c.labels.clone(), c.max_len);
    let tok = tiny_tokenizer_json();
    bundle::write_bundle(
        &dir,
        manifest,
        &[
            (bundle::MODEL_FILE, &bytes),
            (bundle::TOKENIZER_FILE, tok.as_bytes()),
        ],
    )
    .unwrap();
    let classifier = device::Classifier::open(&dir).unwrap();
    let texts = [
        "the cat sat on the mat",
        "",
        "a dog ran fast and the cat is playing on the mat",
    ];
    let batch = classifier.classify_batch(&texts).unwrap();
    for (text, p) in texts.iter().zip(&batch) {
        let alone = classifier.classify(text).unwrap();
        assert_eq!(alone.label_index, p.label_index);
        assert!((alone.confidence - p.confidence).abs() <= 1e-5, "{text:?}");
        if text.is_empty() {
            // Nothing to classify: answered "unknown" without running the model.
            assert!(p.rejected && p.label == device::UNKNOWN_LABEL, "{p:?}");
        } else {
            assert!(c.labels.contains(&p.label));
        }
        assert!(p
            .top_tokens
            .iter()
            .all(|t| !["[CLS]", "[SEP]", "[PAD]"].contains(&t.token.as_str())));
    }
}
