//! End to end on the device side: a bundle with a tiny hand-written ONNX model (a bag of
//! per-token class scores, averaged over real tokens) and the tiny test tokenizer,
//! through the library and through the `device` binary.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use device::tokenize::testing::{tiny_tokenizer_json, TINY_VOCAB};
use device::{
    write_bundle, Bundle, Classifier, DeviceError, Engine, Manifest, MODEL_FILE, TOKENIZER_FILE,
};
use prost::Message;
use tract_onnx::pb;

const LABELS: [&str; 3] = ["animal", "place", "other"];

fn value_info(name: &str, elem: pb::tensor_proto::DataType, dims: &[&str]) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: elem as i32,
                shape: Some(pb::TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            value: Some(Value::DimParam(d.to_string())),
                            ..Default::default()
                        })
                        .collect(),
                }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn node(op: &str, inputs: &[&str], output: &str, attrs: Vec<pb::AttributeProto>) -> pb::NodeProto {
    pb::NodeProto {
        op_type: op.into(),
        name: output.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.into()],
        attribute: attrs,
        ..Default::default()
    }
}

fn int_attr(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn i64_tensor(name: &str, v: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.into(),
        dims: vec![v.len() as i64],
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        int64_data: v.to_vec(),
        ..Default::default()
    }
}

/// Per-token class scores: "cat", "dog" say animal; "mat", "cafe" say place.
fn score_table() -> Vec<f32> {
    TINY_VOCAB
        .iter()
        .flat_map(|t| match *t {
            "cat" | "dog" => [4.0, 0.0, 0.0],
            "mat" | "cafe" => [0.0, 4.0, 0.0],
            _ => [0.0, 0.0, 0.5],
        })
        .collect()
}

/// logits = mean over real tokens of table[id]; attention = mask / count.
fn bag_model_onnx() -> Vec<u8> {
    bag_model_onnx_with(score_table())
}

/// The bag model with its own score table (e.g. one with NaN rows: a broken model).
fn bag_model_onnx_with(scores: Vec<f32>) -> Vec<u8> {
    use pb::tensor_proto::DataType;
    let table = pb::TensorProto {
        name: "table".into(),
        dims: vec![TINY_VOCAB.len() as i64, LABELS.len() as i64],
        data_type: DataType::Float as i32,
        float_data: scores,
        ..Default::default()
    };
    let graph = pb::GraphProto {
        name: "bag".into(),
        node: vec![
            node(
                "Cast",
                &["attention_mask"],
                "maskf",
                vec![int_attr("to", DataType::Float as i64)],
            ),
            node(
                "ReduceSum",
                &["maskf", "axis1"],
                "count",
                vec![int_attr("keepdims", 1)],
            ),
            node("Div", &["maskf", "count"], "attention", vec![]),
            node(
                "Gather",
                &["table", "input_ids"],
                "scores",
                vec![int_attr("axis", 0)],
            ),
            node("Unsqueeze", &["attention", "axis_last"], "att3", vec![]),
            node("Mul", &["scores", "att3"], "weighted", vec![]),
            node(
                "ReduceSum",
                &["weighted", "axis1"],
                "logits",
                vec![int_attr("keepdims", 0)],
            ),
        ],
        initializer: vec![
            table,
            i64_tensor("axis1", &[1]),
            i64_tensor("axis_last", &[-1]),
        ],
        input: vec![
            value_info("input_ids", DataType::Int64, &["batch", "seq"]),
            value_info("attention_mask", DataType::Int64, &["batch", "seq"]),
        ],
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
    .encode_to_vec()
}

fn write_test_bundle(dir: &Path) -> Manifest {
    write_bag_bundle(dir, bag_model_onnx())
}

fn write_bag_bundle(dir: &Path, model: Vec<u8>) -> Manifest {
    let tok = tiny_tokenizer_json();
    let manifest = Manifest::new("bag", "test", LABELS.map(String::from).to_vec(), 8);
    write_bundle(
        dir,
        manifest,
        &[(MODEL_FILE, &model), (TOKENIZER_FILE, tok.as_bytes())],
    )
    .unwrap()
}

#[test]
fn classifies_and_explains() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    write_test_bundle(&dir);
    let c = Classifier::load(&Bundle::read(&dir).unwrap().verify().unwrap()).unwrap();
    assert_eq!(c.engine().vocab_size(), Some(TINY_VOCAB.len()));

    let p = c.classify("the cat sat").unwrap();
    assert_eq!(p.label, "animal");
    assert_eq!(p.label_index, 0);
    assert_eq!(p.top_k.len(), 3);
    assert!((p.top_k.iter().map(|s| s.p).sum::<f32>() - 1.0).abs() < 1e-5);
    assert_eq!(p.confidence, p.top_k[0].p);
    // Uniform attention over 5 real tokens; the top tokens skip [CLS]/[SEP].
    assert_eq!(p.top_tokens.len(), 3);
    assert!(p.top_tokens.iter().all(|t| !t.token.starts_with('[')));
    assert!((p.top_tokens[0].weight - 0.2).abs() < 1e-6);

    let p = c.classify("the mat at the cafe").unwrap();
    assert_eq!(p.label, "place");
    // Nothing to classify: rejected as empty, the model is not run. Also when the
    // normaliser leaves nothing (zero-width space, byte order mark, control characters).
    for blank in ["", "  \t ", "\u{200B}", "\u{FEFF}\u{1}", " \u{200B} \u{7} "] {
        let p = c.classify(blank).unwrap();
        assert_eq!(p.label, device::UNKNOWN_LABEL);
        assert_eq!(p.label_index, LABELS.len());
        assert!(p.rejected);
        assert_eq!(p.reason, Some(device::RejectReason::Empty));
        assert!(p.top_k.is_empty() && p.top_tokens.is_empty());
    }
    assert_eq!(c.classify("the cat").unwrap().reason, None);
    // In a batch each answer stays with its text.
    let batch = c
        .classify_batch(&["the cat sat", "\u{200B}", " ", "the mat at the cafe"])
        .unwrap();
    let labels: Vec<&str> = batch.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "animal",
            device::UNKNOWN_LABEL,
            device::UNKNOWN_LABEL,
            "place"
        ]
    );
}

#[test]
fn a_non_finite_model_output_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    // "cat" scores NaN for every class.
    let mut scores = score_table();
    let cat = TINY_VOCAB.iter().position(|t| *t == "cat").unwrap();
    scores[cat * LABELS.len()..(cat + 1) * LABELS.len()].fill(f32::NAN);
    write_bag_bundle(&dir, bag_model_onnx_with(scores));
    let c = Classifier::open(&dir).unwrap();
    let err = c.classify("the cat").unwrap_err();
    assert!(matches!(err, DeviceError::Inference(_)), "{err}");
    assert!(err.to_string().contains("not finite"), "{err}");
    assert!(c.classify_batch(&["the mat", "the cat"]).is_err());
    assert!(c.probabilities(&["the cat"]).is_err());
    assert_eq!(c.classify("the mat").unwrap().label, "place");

    // The CLI: an error line, never "confidence": null; every input failed: exit 3.
    let out = device_bin()
        .args(["classify", "--bundle"])
        .arg(&dir)
        .arg("the cat")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        line["error"].as_str().unwrap().contains("not finite"),
        "{line}"
    );
}

#[test]
fn batch_padding_does_not_change_results() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    write_test_bundle(&dir);
    let c = Classifier::open(&dir).unwrap();
    let texts = ["cat", "the dog sat on the mat", ""];
    let batch = c.classify_batch(&texts).unwrap();
    for (text, b) in texts.iter().zip(&batch) {
        let alone = c.classify(text).unwrap();
        assert_eq!(alone.label, b.label);
        for (x, y) in alone.top_k.iter().zip(&b.top_k) {
            assert!((x.p - y.p).abs() < 1e-6, "{text}");
        }
    }
}

#[test]
fn engine_rejects_bad_inputs_without_panicking() {
    let e = Engine::from_onnx_bytes(&bag_model_onnx(), 3).unwrap();
    let (logits, attention) = e
        .run(&[2, 6, 3, 2, 3, 0], &[1, 1, 1, 1, 1, 0], 2, 3)
        .unwrap();
    assert_eq!((logits.len(), attention.len()), (6, 6));
    assert_eq!(attention[5], 0.0);
    let err = e.run(&[2, 999, 3], &[1, 1, 1], 1, 3).unwrap_err();
    assert!(matches!(err, DeviceError::Input(_)), "{err}");
    assert!(e.run(&[2, -1, 3], &[1, 1, 1], 1, 3).is_err());
    assert!(e.run(&[2, 3], &[1, 1, 1], 1, 3).is_err());
    assert!(e.run(&[2, 3, 0], &[1, 2, 0], 1, 3).is_err());
    assert!(e.run(&[0, 0, 0], &[0, 0, 0], 1, 3).is_err());
    assert!(e.run(&[], &[], 0, 0).is_err());
    // Still usable, with another shape, after the errors.
    let (logits, _) = e.run(&[2, 10, 3], &[1, 1, 1], 1, 3).unwrap();
    assert!(logits[0] > logits[1]);

    let err = Engine::from_onnx_bytes(&bag_model_onnx(), 4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 classes"), "{err}");
    let err = Engine::from_onnx_bytes(b"not onnx at all", 3)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("ONNX bytes: model:"), "{err}");
}

fn device_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_device"))
}

#[test]
fn cli_classifies_arguments_and_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    write_test_bundle(&dir);

    let out = device_bin()
        .args(["classify", "--bundle"])
        .arg(&dir)
        .args(["--top-k", "2", "--top-tokens", "1", "the cat", "a cafe"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["text"], "the cat");
    assert_eq!(lines[0]["label"], "animal");
    assert_eq!(lines[0]["label_index"], 0);
    assert_eq!(lines[0]["top_k"].as_array().unwrap().len(), 2);
    assert_eq!(lines[0]["top_tokens"].as_array().unwrap().len(), 1);
    assert!(lines[0]["top_k"][0]["p"].is_number());
    assert!(lines[0]["top_tokens"][0]["token"].is_string());
    assert!(lines[0]["top_tokens"][0]["weight"].is_number());
    assert!(lines[0]["confidence"].is_number());
    assert!(lines[0]["inference_us"].is_u64());
    assert_eq!(lines[1]["label"], "place");

    let mut child = device_bin()
        .args(["classify", "--bundle"])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"the dog\r\n\xff\xfe bad\n\nthe mat")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["text"], "the dog");
    assert_eq!(lines[1]["line"], 2);
    assert!(lines[1]["error"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(lines[2]["text"], "");
    assert_eq!(lines[3]["label"], "place");
}

#[test]
fn cli_rejects_a_tampered_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    write_test_bundle(&dir);
    let path = dir.join(TOKENIZER_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let out = device_bin()
        .args(["classify", "--bundle"])
        .arg(&dir)
        .arg("cat")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("file tokenizer.json: sha256 mismatch"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );

    let out = device_bin()
        .args(["classify", "--bundle", "/nonexistent/bundle", "cat"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("directory does not exist"));
}

/// Rewrites the bundle's manifest with `rule` (the manifest is not in its own file list).
fn set_rule(dir: &Path, rule: Option<device::RejectionRule>) {
    let path = dir.join(device::MANIFEST_FILE);
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m.rejection = rule;
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
}

#[test]
fn the_manifest_rejection_rule_is_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    write_test_bundle(&dir);
    // The last has no class words: "other" (an empty text is rejected as empty instead).
    let texts = ["the cat sat", "the mat at the cafe", "the"];
    let load = || Classifier::load(&Bundle::read(&dir).unwrap().verify().unwrap()).unwrap();

    // No rule: never rejected.
    let c = load();
    assert!(c.rejection().is_none());
    let plain = c.classify_batch(&texts).unwrap();
    assert!(plain.iter().all(|p| !p.rejected));

    // Threshold above 1: everything is unknown, the best guess is kept.
    set_rule(&dir, Some(device::RejectionRule::new(1.01, None)));
    let all = load().classify_batch(&texts).unwrap();
    for (p, q) in all.iter().zip(&plain) {
        assert!(p.rejected, "{p:?}");
        assert_eq!((p.label_index, &p.label), (q.label_index, &q.label));
        assert_eq!(p.confidence, q.confidence);
    }

    // Threshold 0: nothing is rejected on probability ...
    set_rule(&dir, Some(device::RejectionRule::new(0.0, None)));
    assert!(load()
        .classify_batch(&texts)
        .unwrap()
        .iter()
        .all(|p| !p.rejected));
    // ... but with an out-of-scope class, predicting it is a rejection ("the" → "other").
    set_rule(
        &dir,
        Some(device::RejectionRule::new(0.0, Some("other".into()))),
    );
    let c = load();
    let r: Vec<bool> = c
        .classify_batch(&texts)
        .unwrap()
        .iter()
        .map(|p| p.rejected)
        .collect();
    assert_eq!(r, [false, false, true]);

    // A threshold between the confidences splits them.
    let mid = (plain[0].confidence + plain[1].confidence) / 2.0;
    let (lo, hi) = if plain[0].confidence < plain[1].confidence {
        (0, 1)
    } else {
        (1, 0)
    };
    set_rule(&dir, Some(device::RejectionRule::new(mid, None)));
    let c = load();
    assert!(c.classify(texts[lo]).unwrap().rejected);
    assert!(!c.classify(texts[hi]).unwrap().rejected);
}

#[test]
fn device_classify_prints_unknown_for_a_rejected_text() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("bundle");
    write_test_bundle(&dir);
    set_rule(&dir, Some(device::RejectionRule::new(1.01, None)));
    let out = Command::new(env!("CARGO_BIN_EXE_device"))
        .args(["classify", "--bundle"])
        .arg(&dir)
        .arg("the cat sat")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["answer"], "unknown");
    assert_eq!(line["rejected"], true);
    assert_eq!(line["label"], "animal");
    assert!(line["confidence"].as_f64().unwrap() > 0.0);
}
