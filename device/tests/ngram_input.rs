//! The model's optional third input, `ngram_ids` `[batch, M]`: a tiny hand-written ONNX
//! model that adds the mean of an n-gram table's rows (over the ids that are not padding)
//! to an attention-pooled bag of token and position scores, as the host's exported models
//! do. Checked through the engine, a bundle with `ngrams` in its manifest and the
//! `device` binary, against logits computed here by hand.

use std::path::Path;
use std::process::Command;

use device::tokenize::testing::{tiny_tokenizer_json, TINY_VOCAB};
use device::{
    softmax, write_bundle, Batch, Bundle, Classifier, DeviceError, Engine, Manifest, TextEncoder,
    MODEL_FILE, TOKENIZER_FILE,
};
use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::tensor_proto::DataType;

const LABELS: [&str; 3] = ["animal", "place", "other"];
const C: usize = LABELS.len();
const POSITIONS: usize = 16;
const SPEC: bundle::NgramSpec = bundle::NgramSpec {
    buckets: 64,
    max: 4,
};

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

fn token_table() -> Vec<f32> {
    values(TINY_VOCAB.len() * C, 1)
}

fn position_table() -> Vec<f32> {
    values(POSITIONS * C, 2).iter().map(|v| v * 0.1).collect()
}

/// The n-gram table; row 0 (padding) is zero, as the host trains it.
fn ngram_table() -> Vec<f32> {
    let mut t = values(SPEC.buckets as usize * C, 3);
    t[..C].fill(0.0);
    t
}

/// The int8 form of [`ngram_table`]: per-row scale and int8 values.
fn ngram_table_int8() -> (Vec<i8>, Vec<f32>) {
    let t = ngram_table();
    let mut q = Vec::new();
    let mut scales = Vec::new();
    for row in t.chunks(C) {
        let scale = row.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6) / 127.0;
        scales.push(scale);
        q.extend(row.iter().map(|v| (v / scale).round() as i8));
    }
    (q, scales)
}

/// The logits the model gives for one text whose tokens are all real.
fn expected_logits(ids: &[i64], ngrams: &[i64], int8: bool) -> Vec<f32> {
    let (tok, pos) = (token_table(), position_table());
    let ng: Vec<f32> = if int8 {
        let (q, s) = ngram_table_int8();
        q.iter()
            .enumerate()
            .map(|(i, &v)| f32::from(v) * s[i / C])
            .collect()
    } else {
        ngram_table()
    };
    let mut out = vec![0f32; C];
    for (p, &id) in ids.iter().enumerate() {
        for c in 0..C {
            out[c] += (tok[id as usize * C + c] + pos[p * C + c]) / ids.len() as f32;
        }
    }
    let real = ngrams.iter().filter(|&&g| g > 0).count().max(1) as f32;
    for &g in ngrams {
        for c in 0..C {
            out[c] += ng[g as usize * C + c] / real;
        }
    }
    out
}

fn value_info(name: &str, elem: DataType, dims: &[&str]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let dim = |d: &str| Dimension {
        value: Some(match d.parse::<i64>() {
            Ok(v) => Value::DimValue(v),
            Err(_) => Value::DimParam(d.to_string()),
        }),
        ..Default::default()
    };
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims.iter().map(|d| dim(d)).collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: &[(&str, i64)]) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs
            .iter()
            .map(|(name, i)| pb::AttributeProto {
                name: (*name).into(),
                r#type: pb::attribute_proto::AttributeType::Int as i32,
                i: *i,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

fn tensor(name: &str, dims: &[i64], elem: DataType) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: elem as i32,
        ..Default::default()
    }
}

fn f32_tensor(name: &str, dims: &[i64], v: Vec<f32>) -> pb::TensorProto {
    pb::TensorProto {
        float_data: v,
        ..tensor(name, dims, DataType::Float)
    }
}

fn i64_tensor(name: &str, dims: &[i64], v: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        int64_data: v.to_vec(),
        ..tensor(name, dims, DataType::Int64)
    }
}

/// How the test model takes its n-grams.
#[derive(Clone, Copy)]
enum Ngrams<'a> {
    /// No `ngram_ids` input: the two-input model.
    None,
    /// `ngram_ids` `[batch, width]` (`width` a number or a symbol), gathering an f32 table.
    Float(&'a str),
    /// `ngram_ids` `[batch, 4]` gathering an int8 table and its per-row scales.
    Int8,
    /// `ngram_ids` `[batch, 4]` in the exporter's form (`host::export::onnx::ngram_bag`):
    /// per-id weights `1 / max(count, 1)` (int8: times the row scale) times the gathered
    /// rows in one `MatMul`. The form the device fuses into one `FusedEmbeddingBag`.
    Exported { int8: bool },
}

/// logits = Σ_s attention[s]·(tokens[id_s] + positions[s]) + Σ_j ngrams[g_j] / max(#g>0, 1);
/// attention = mask / Σ mask.
fn model(ngrams: Ngrams) -> pb::ModelProto {
    let mut nodes = vec![
        node(
            "Cast",
            &["attention_mask"],
            "maskf",
            &[("to", DataType::Float as i64)],
        ),
        node(
            "ReduceSum",
            &["maskf", "axis1"],
            "count",
            &[("keepdims", 1)],
        ),
        node("Div", &["maskf", "count"], "attention", &[]),
        node("Gather", &["tokens", "input_ids"], "tok", &[("axis", 0)]),
        node("Shape", &["input_ids"], "shape", &[]),
        node("Gather", &["shape", "one"], "seq_len", &[("axis", 0)]),
        node("Range", &["zero", "seq_len", "one"], "range", &[]),
        node("Gather", &["positions", "range"], "pos", &[("axis", 0)]),
        node("Add", &["tok", "pos"], "emb", &[]),
        node("Unsqueeze", &["attention", "axis_last"], "att3", &[]),
        node("Mul", &["emb", "att3"], "weighted", &[]),
    ];
    let mut initializer = vec![
        f32_tensor(
            "tokens",
            &[TINY_VOCAB.len() as i64, C as i64],
            token_table(),
        ),
        f32_tensor("positions", &[POSITIONS as i64, C as i64], position_table()),
        i64_tensor("axis1", &[1], &[1]),
        i64_tensor("axis_last", &[1], &[-1]),
        i64_tensor("zero", &[], &[0]),
        i64_tensor("one", &[], &[1]),
        f32_tensor("one_f", &[], vec![1.0]),
    ];
    let mut input = vec![
        value_info("input_ids", DataType::Int64, &["batch", "seq"]),
        value_info("attention_mask", DataType::Int64, &["batch", "seq"]),
    ];
    let rows = SPEC.buckets as i64;
    match ngrams {
        Ngrams::None => {
            nodes.push(node(
                "ReduceSum",
                &["weighted", "axis1"],
                "logits",
                &[("keepdims", 0)],
            ));
        }
        Ngrams::Exported { int8 } => {
            nodes.push(node(
                "ReduceSum",
                &["weighted", "axis1"],
                "pooled",
                &[("keepdims", 0)],
            ));
            input.push(value_info("ngram_ids", DataType::Int64, &["batch", "4"]));
            let float = [("to", DataType::Float as i64)];
            nodes.extend([
                node("Greater", &["ngram_ids", "zero"], "bag_real_b", &[]),
                node("Cast", &["bag_real_b"], "bag_real", &float),
                node(
                    "ReduceSum",
                    &["bag_real", "axis1"],
                    "bag_count",
                    &[("keepdims", 1)],
                ),
                node("Max", &["bag_count", "one_f"], "bag_count_1", &[]),
                node("Div", &["bag_real", "bag_count_1"], "bag_weight", &[]),
            ]);
            let weight = if int8 {
                let (q, scales) = ngram_table_int8();
                initializer.push(pb::TensorProto {
                    raw_data: q.iter().map(|&v| v as u8).collect(),
                    ..tensor("ngram_q", &[rows, C as i64], DataType::Int8)
                });
                initializer.push(f32_tensor("ngram_scale", &[rows], scales));
                nodes.extend([
                    node("Gather", &["ngram_q", "ngram_ids"], "bag_q", &[("axis", 0)]),
                    node(
                        "Gather",
                        &["ngram_scale", "ngram_ids"],
                        "bag_s",
                        &[("axis", 0)],
                    ),
                    node("Mul", &["bag_weight", "bag_s"], "bag_weight_s", &[]),
                    node("Cast", &["bag_q"], "bag_rows", &float),
                ]);
                "bag_weight_s"
            } else {
                initializer.push(f32_tensor("ngram_table", &[rows, C as i64], ngram_table()));
                nodes.push(node(
                    "Gather",
                    &["ngram_table", "ngram_ids"],
                    "bag_rows",
                    &[("axis", 0)],
                ));
                "bag_weight"
            };
            nodes.extend([
                node("Unsqueeze", &[weight, "axis1"], "bag_w3", &[]),
                node("MatMul", &["bag_w3", "bag_rows"], "bag_sum", &[]),
                node("Squeeze", &["bag_sum", "axis1"], "bag_mean", &[]),
                node("Add", &["pooled", "bag_mean"], "logits", &[]),
            ]);
        }
        Ngrams::Float(_) | Ngrams::Int8 => {
            nodes.push(node(
                "ReduceSum",
                &["weighted", "axis1"],
                "pooled",
                &[("keepdims", 0)],
            ));
            let width = match ngrams {
                Ngrams::Float(w) => w,
                _ => "4",
            };
            input.push(value_info("ngram_ids", DataType::Int64, &["batch", width]));
            if let Ngrams::Int8 = ngrams {
                let (q, scales) = ngram_table_int8();
                initializer.push(pb::TensorProto {
                    raw_data: q.iter().map(|&v| v as u8).collect(),
                    ..tensor("ngram_q", &[rows, C as i64], DataType::Int8)
                });
                initializer.push(f32_tensor("ngram_scale", &[rows, 1], scales));
                nodes.extend([
                    node("Gather", &["ngram_q", "ngram_ids"], "ng_q", &[("axis", 0)]),
                    node(
                        "Cast",
                        &["ng_q"],
                        "ng_qf",
                        &[("to", DataType::Float as i64)],
                    ),
                    node(
                        "Gather",
                        &["ngram_scale", "ngram_ids"],
                        "ng_s",
                        &[("axis", 0)],
                    ),
                    node("Mul", &["ng_qf", "ng_s"], "ng", &[]),
                ]);
            } else {
                initializer.push(f32_tensor("ngram_table", &[rows, C as i64], ngram_table()));
                nodes.push(node(
                    "Gather",
                    &["ngram_table", "ngram_ids"],
                    "ng",
                    &[("axis", 0)],
                ));
            }
            nodes.extend([
                node("ReduceSum", &["ng", "axis1"], "ng_sum", &[("keepdims", 0)]),
                node("Greater", &["ngram_ids", "zero"], "ng_real", &[]),
                node(
                    "Cast",
                    &["ng_real"],
                    "ng_realf",
                    &[("to", DataType::Float as i64)],
                ),
                node(
                    "ReduceSum",
                    &["ng_realf", "axis1"],
                    "ng_count",
                    &[("keepdims", 1)],
                ),
                node("Max", &["ng_count", "one_f"], "ng_div", &[]),
                node("Div", &["ng_sum", "ng_div"], "ng_mean", &[]),
                node("Add", &["pooled", "ng_mean"], "logits", &[]),
            ]);
        }
    }
    let graph = pb::GraphProto {
        name: "bag-ngrams".into(),
        node: nodes,
        initializer,
        input,
        output: vec![
            value_info("logits", DataType::Float, &["batch", "classes"]),
            value_info("attention", DataType::Float, &["batch", "seq"]),
        ],
        ..Default::default()
    };
    pb::ModelProto {
        ir_version: 8,
        opset_import: vec![pb::OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "device-test".into(),
        graph: Some(graph),
        ..Default::default()
    }
}

fn onnx(ngrams: Ngrams) -> Vec<u8> {
    model(ngrams).encode_to_vec()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let diff = device::max_abs_diff(a, b);
    assert!(diff < 1e-5, "{what}: {a:?} vs {b:?}");
}

/// A token batch of the given rows (all tokens real) with n-gram rows of width 4.
fn batch(rows: &[(&[i64], &[i64])]) -> Batch {
    let seq = rows.iter().map(|r| r.0.len()).max().unwrap();
    let mut b = Batch {
        ids: Vec::new(),
        mask: Vec::new(),
        batch: rows.len(),
        seq,
        ngram_ids: Vec::new(),
        ngram_width: SPEC.max,
    };
    for (ids, ngrams) in rows {
        b.ids.extend_from_slice(ids);
        b.ids.extend(std::iter::repeat_n(0, seq - ids.len()));
        b.mask.extend(std::iter::repeat_n(1, ids.len()));
        b.mask.extend(std::iter::repeat_n(0, seq - ids.len()));
        b.ngram_ids.extend_from_slice(ngrams);
    }
    b
}

#[test]
fn the_engine_feeds_ngram_ids_and_gives_the_hand_computed_logits() {
    for (ngrams, int8) in [(Ngrams::Float("4"), false), (Ngrams::Int8, true)] {
        // Eager: every plan is built, the fixed-length ones (8 and 16 tokens) included.
        let e = Engine::from_onnx_bytes(&onnx(ngrams), C).unwrap();
        assert_eq!(e.ngram_width(), Some(4));
        assert_eq!(e.ngram_buckets(), Some(64));
        assert_eq!(e.vocab_size(), Some(TINY_VOCAB.len()));
        assert_eq!(e.max_positions(), Some(POSITIONS));

        let a: (&[i64], &[i64]) = (&[2, 6, 3], &[5, 63, 0, 0]);
        let b: (&[i64], &[i64]) = (&[2, 10, 7, 9, 3], &[1, 2, 3, 4]);
        let none: (&[i64], &[i64]) = (&[2, 3], &[0, 0, 0, 0]);
        // One text (a fixed-length plan) and a batch (the symbolic plan, rows padded).
        for row in [a, b, none] {
            let (logits, attention) = e.run_batch(&batch(&[row])).unwrap();
            assert_close(&logits, &expected_logits(row.0, row.1, int8), "one text");
            assert_eq!(attention.len(), row.0.len());
        }
        let (logits, attention) = e.run_batch(&batch(&[a, b, none])).unwrap();
        let want: Vec<f32> = [a, b, none]
            .iter()
            .flat_map(|r| expected_logits(r.0, r.1, int8))
            .collect();
        assert_close(&logits, &want, "batch");
        assert_eq!(attention.len(), 3 * 5);
        assert_eq!(attention[3..5], [0.0, 0.0]);
    }
}

#[test]
fn bad_ngram_inputs_are_clean_errors() {
    let e = Engine::from_onnx_bytes(&onnx(Ngrams::Float("4")), C).unwrap();
    let input_err = |b: &Batch| match e.run_batch(b) {
        Err(DeviceError::Input(m)) => m,
        other => panic!("{other:?}"),
    };
    let m = input_err(&batch(&[(&[2, 6, 3], &[5, 64, 0, 0])]));
    assert!(
        m.contains("n-gram id 64 outside the n-gram table 0..64"),
        "{m}"
    );
    input_err(&batch(&[(&[2, 6, 3], &[-1, 0, 0, 0])]));
    input_err(&batch(&[(&[2, 6, 3], &[i64::MAX, 0, 0, 0])]));
    // Too few and too many ids for the width.
    let m = input_err(&batch(&[(&[2, 6, 3], &[5, 6, 7])]));
    assert!(m.contains("3 ngram_ids values for a 1 x 4 batch"), "{m}");
    input_err(&batch(&[(&[2, 6, 3], &[5, 6, 7, 8, 9])]));
    // A batch of another width, or without n-grams (an encoder without the spec).
    let mut b = batch(&[(&[2, 6, 3], &[5, 6, 7, 8])]);
    b.ngram_width = 2;
    input_err(&b);
    let tokens_only = Batch::from_encoded(
        &[TextEncoder::from_bytes(tiny_tokenizer_json().as_bytes(), 8)
            .unwrap()
            .encode("the cat")
            .unwrap()],
        0,
    );
    let m = input_err(&tokens_only);
    assert!(m.contains("an encoder without the bundle's ngrams"), "{m}");
    // The token-only entry point cannot feed this model.
    let err = e.run(&[2, 6, 3], &[1, 1, 1], 1, 3).unwrap_err();
    assert!(err.to_string().contains("run_batch"), "{err}");
    // Still usable.
    let row: (&[i64], &[i64]) = (&[2, 6, 3], &[5, 6, 0, 0]);
    let (logits, _) = e.run_batch(&batch(&[row])).unwrap();
    assert_close(
        &logits,
        &expected_logits(row.0, row.1, false),
        "after errors",
    );

    // A two-input model takes no n-grams.
    let plain = Engine::from_onnx_bytes(&onnx(Ngrams::None), C).unwrap();
    assert_eq!(plain.ngram_width(), None);
    let m = match plain.run_batch(&batch(&[row])) {
        Err(DeviceError::Input(m)) => m,
        other => panic!("{other:?}"),
    };
    assert!(m.contains("takes none"), "{m}");
    plain.run_batch(&tokens_only).unwrap();
}

#[test]
fn a_malformed_ngram_input_is_refused_at_load() {
    let err = |proto: pb::ModelProto| {
        Engine::from_onnx_bytes(&proto.encode_to_vec(), C)
            .unwrap_err()
            .to_string()
    };
    // A symbolic width.
    let m = err(model(Ngrams::Float("width")));
    assert!(m.contains("with a fixed M"), "{m}");
    // Out of order.
    let mut p = model(Ngrams::Float("4"));
    p.graph.as_mut().unwrap().input.swap(1, 2);
    let m = err(p);
    assert!(
        m.contains("inputs are [\"input_ids\", \"ngram_ids\""),
        "{m}"
    );
    // Not int64.
    let mut p = model(Ngrams::Float("4"));
    p.graph.as_mut().unwrap().input[2] = value_info("ngram_ids", DataType::Int32, &["batch", "4"]);
    assert!(err(p).contains("not int64"));
    // Indices that reach the table through another node: their range is unknown.
    let mut p = model(Ngrams::Float("4"));
    let g = p.graph.as_mut().unwrap();
    let gather = g.node.iter().position(|n| n.name == "ng").unwrap();
    g.node[gather].input[1] = "ng_ids".into();
    g.node
        .insert(gather, node("Identity", &["ngram_ids"], "ng_ids", &[]));
    let m = err(p);
    assert!(m.contains("no n-gram table found"), "{m}");
}

fn write_ngram_bundle(dir: &Path, model: &[u8], spec: Option<bundle::NgramSpec>) {
    let mut manifest = Manifest::new("bag-ngrams", "test", LABELS.map(String::from).to_vec(), 16);
    manifest.ngrams = spec;
    let tok = tiny_tokenizer_json();
    write_bundle(
        dir,
        manifest,
        &[(MODEL_FILE, model), (TOKENIZER_FILE, tok.as_bytes())],
    )
    .unwrap();
}

#[test]
fn a_bundle_with_ngrams_classifies_with_the_texts_ngrams() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    write_ngram_bundle(&dir, &onnx(Ngrams::Float("4")), Some(SPEC));
    let verified = Bundle::read(&dir).unwrap().verify().unwrap();
    assert_eq!(verified.manifest().format_version, 3);
    let c = Classifier::load(&verified).unwrap();
    assert_eq!(c.encoder().ngram_spec(), Some(SPEC));
    assert_eq!(c.engine().ngram_width(), Some(4));

    let texts = ["the cat sat on the mat", "a dog", "Cafe!"];
    let want: Vec<Vec<f32>> = texts
        .iter()
        .map(|t| {
            let e = c.encoder().encode(t).unwrap();
            let ngrams = device::ngrams::ngram_ids(t, &SPEC);
            assert_eq!(e.ngrams, ngrams);
            let mut padded = ngrams.clone();
            padded.resize(SPEC.max, 0);
            softmax(&expected_logits(&e.ids, &padded, false))
        })
        .collect();
    // A batch (rows padded) and each text alone (fixed-length plans, raced at first use).
    let batch = c.probabilities(&texts).unwrap();
    for (i, t) in texts.iter().enumerate() {
        assert_close(&batch[i], &want[i], t);
        assert_close(&c.probabilities(&[t]).unwrap()[0], &want[i], t);
        let best = want[i].iter().copied().fold(0f32, f32::max);
        assert!(
            (c.classify(t).unwrap().confidence - best).abs() < 1e-5,
            "{t}"
        );
    }
    // Every plan made up front, with n-gram warm-up inputs.
    let engine = Engine::load_variant(&verified, "float", Default::default()).unwrap();
    let routes = engine.prepare().unwrap();
    assert_eq!(routes.len(), 2);
    let c = Classifier::new(
        c.encoder().clone(),
        engine,
        LABELS.map(String::from).to_vec(),
    )
    .unwrap();
    for (i, t) in texts.iter().enumerate() {
        assert_close(&c.probabilities(&[t]).unwrap()[0], &want[i], t);
    }

    // The `device` binary.
    let out = Command::new(env!("CARGO_BIN_EXE_device"))
        .args(["classify", "--bundle"])
        .arg(&dir)
        .arg(texts[0])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let best = (0..C)
        .max_by(|&a, &b| want[0][a].total_cmp(&want[0][b]))
        .unwrap();
    assert_eq!(line["label"], LABELS[best]);
}

#[test]
fn a_model_and_manifest_that_disagree_on_ngrams_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<u8>, Option<bundle::NgramSpec>, &str); 4] = [
        (
            "no-spec",
            onnx(Ngrams::Float("4")),
            None,
            "the manifest has no ngrams",
        ),
        (
            "no-input",
            onnx(Ngrams::None),
            Some(SPEC),
            "the model has no ngram_ids input",
        ),
        (
            "width",
            onnx(Ngrams::Float("4")),
            Some(bundle::NgramSpec { max: 5, ..SPEC }),
            "the manifest's ngrams max is 5",
        ),
        (
            "buckets",
            onnx(Ngrams::Int8),
            Some(bundle::NgramSpec {
                buckets: 32,
                ..SPEC
            }),
            "the model's n-gram table has 64 rows",
        ),
    ];
    for (name, model, spec, problem) in cases {
        let dir = tmp.path().join(name);
        write_ngram_bundle(&dir, &model, spec);
        let verified = Bundle::read(&dir).unwrap().verify().unwrap();
        let err = Classifier::load(&verified).unwrap_err();
        assert!(matches!(err, DeviceError::Model { .. }), "{name}: {err}");
        let m = err.to_string();
        assert!(m.contains(problem), "{name}: {m}");
        assert!(
            m.contains(&format!("{}: {MODEL_FILE}", dir.display())),
            "{name}: {m}"
        );
    }

    // Parts assembled by hand: an encoder without the spec for a model with the input.
    let engine = Engine::from_onnx_bytes(&onnx(Ngrams::Float("4")), C).unwrap();
    let encoder = TextEncoder::from_bytes(tiny_tokenizer_json().as_bytes(), 16).unwrap();
    let labels = LABELS.map(String::from).to_vec();
    let err = Classifier::new(encoder.clone(), engine, labels.clone()).unwrap_err();
    assert!(
        err.to_string().contains("do not fit the model's ngram_ids"),
        "{err}"
    );
    let engine = Engine::from_onnx_bytes(&onnx(Ngrams::Float("4")), C).unwrap();
    let wrong = bundle::NgramSpec {
        buckets: 128,
        ..SPEC
    };
    assert!(Classifier::new(
        encoder.clone().with_ngrams(Some(wrong)),
        engine,
        labels.clone()
    )
    .is_err());
    let engine = Engine::from_onnx_bytes(&onnx(Ngrams::Float("4")), C).unwrap();
    Classifier::new(encoder.with_ngrams(Some(SPEC)), engine, labels).unwrap();
}

/// The exporter's bag runs as one `FusedEmbeddingBag` node (the fused engine) and gives
/// the logits of tract's own ops (`tract_ops`) and of the hand computation, for float and
/// int8 tables, one text and a padded batch with an all-padding row; out-of-table ids stay
/// clean errors.
#[test]
fn the_exported_bag_runs_as_one_fused_node_with_tract_values() {
    use device::options::FusionOptions;
    use device::EngineOptions;
    let dir = tempfile::tempdir().unwrap();
    for int8 in [false, true] {
        let bytes = onnx(Ngrams::Exported { int8 });
        let file = if int8 {
            "bag_int8.onnx"
        } else {
            "bag_f32.onnx"
        };
        std::fs::write(dir.path().join(file), &bytes).unwrap();
        let engine = |tract_ops: bool| {
            let options = EngineOptions {
                fusion: FusionOptions {
                    tract_ops,
                    ..FusionOptions::default()
                },
                ..EngineOptions::default()
            };
            Engine::from_onnx_file(dir.path(), file, C, options).unwrap()
        };
        let (fused, tract) = (engine(false), engine(true));
        let names = |e: &Engine| -> Vec<String> {
            e.plan()
                .unwrap()
                .model()
                .nodes()
                .iter()
                .map(|n| n.op.name().to_string())
                .collect()
        };
        let (fused_names, tract_names) = (names(&fused), names(&tract));
        let bags = |n: &[String]| n.iter().filter(|n| *n == "FusedEmbeddingBag").count();
        assert_eq!(bags(&fused_names), 1, "{fused_names:?}");
        assert_eq!(bags(&tract_names), 0, "{tract_names:?}");
        // The bag's gathers (rows, and an int8 table's scales) are gone; the token and
        // position gathers stay.
        let gathers = |n: &[String]| n.iter().filter(|n| n.contains("Gather")).count();
        assert_eq!(
            gathers(&fused_names) + 1 + usize::from(int8),
            gathers(&tract_names),
            "{fused_names:?} vs {tract_names:?}"
        );

        let a: (&[i64], &[i64]) = (&[2, 6, 3], &[5, 63, 0, 0]);
        let b: (&[i64], &[i64]) = (&[2, 10, 7, 9, 3], &[1, 2, 3, 4]);
        let none: (&[i64], &[i64]) = (&[2, 3], &[0, 0, 0, 0]);
        for rows in [&[a][..], &[b], &[none], &[a, b, none]] {
            let (got, _) = fused.run_batch(&batch(rows)).unwrap();
            let (want, _) = tract.run_batch(&batch(rows)).unwrap();
            assert_close(&got, &want, "fused vs tract ops");
            let by_hand: Vec<f32> = rows
                .iter()
                .flat_map(|r| expected_logits(r.0, r.1, int8))
                .collect();
            assert_close(&got, &by_hand, "fused vs by hand");
        }
        let m = match fused.run_batch(&batch(&[(&[2, 6, 3], &[5, 64, 0, 0])])) {
            Err(DeviceError::Input(m)) => m,
            other => panic!("{other:?}"),
        };
        assert!(m.contains("outside the n-gram table"), "{m}");
    }
}
