//! int8 quantisation end to end on the shipped demo data: train a small model once,
//! quantise it (report, accuracy gate, all-or-nothing output), export both int8
//! variants into one bundle sharing one weights file, run every variant through the
//! device's engine and tuner, and check every exported ONNX with the reference `onnx`
//! checker and onnxruntime (`host/tests/onnx_check.py`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use host::data::Columns;
use host::quantize::{quantize, CalibMethod, QuantizeJob};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn columns() -> Columns {
    Columns {
        text: "text".into(),
        label: "label".into(),
    }
}

/// A small float checkpoint trained once per test binary on models/demo.
fn float_checkpoint() -> &'static Path {
    static CKPT: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &CKPT
        .get_or_init(|| {
            let tmp = tempfile::tempdir().unwrap();
            let out = tmp.path().join("ckpt");
            let mut preset = host::preset::Preset::get("tiny").unwrap();
            preset.hidden = 64;
            preset.heads = 4;
            preset.ffn = 128;
            preset.pool_dim = 64;
            preset.vocab_size = 2000;
            preset.epochs = 8;
            let job = host::pipeline::TrainJob {
                train: root().join("models/demo/train.csv"),
                val: None,
                val_fraction: 0.1,
                columns: columns(),
                out: out.clone(),
                preset,
                tokenizer: None,
                init: None,
                options: host::train::TrainOptions {
                    epochs: 8,
                    lr: 2e-3,
                    progress: false,
                    ..Default::default()
                },
                force: false,
            };
            host::pipeline::run(&job).expect("training the demo model");
            (tmp, out)
        })
        .1
}

fn job(out: &Path) -> QuantizeJob {
    QuantizeJob {
        model: float_checkpoint().to_path_buf(),
        out: out.to_path_buf(),
        calib: None,
        calib_size: 256,
        method: CalibMethod::Percentile,
        percentile: 99.99,
        val: None,
        max_drop: 2.0,
        columns: columns(),
        oos_label: Some("oos".into()),
        force: false,
    }
}

/// Quantised checkpoint made once per test binary.
fn quantized_checkpoint() -> &'static Path {
    static Q: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &Q.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("ckpt_q");
        quantize(&job(&out)).expect("quantize");
        (tmp, out)
    })
    .1
}

/// Bundle exported from the quantised checkpoint, once per test binary.
fn quantized_bundle() -> &'static Path {
    static B: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &B.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("bundle_q");
        host::export::export(quantized_checkpoint(), &out, None, &columns(), false)
            .expect("export");
        (tmp, out)
    })
    .1
}

#[test]
fn quantize_reports_every_variant_and_layer_and_writes_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("q");
    let report = quantize(&job(&out)).unwrap();
    let names: Vec<&str> = report.variants.iter().map(|v| v.variant.as_str()).collect();
    assert_eq!(names, ["float", "weights-int8", "int8-compute"]);
    assert!(
        report.gate_passed && report.worst_drop() <= 2.0,
        "{}",
        report.to_text()
    );
    // Per-channel int8 weights: a quarter of the float bytes plus scales.
    let ratio = report.int8_weights_bytes as f64 / report.float_weights_bytes as f64;
    assert!((0.24..0.30).contains(&ratio), "int8/float weights {ratio}");
    // Every quantised tensor has an error entry; int8 noise is far below the signal.
    // Word, position and n-gram tables; six linears per layer; pooling and classifier.
    assert_eq!(report.layers.len(), 3 + 2 * 6 + 3);
    for l in &report.layers {
        assert!(l.weight_snr_db > 30.0, "{}: {}", l.name, l.weight_snr_db);
        if let Some(snr) = l.output_snr_db_int8_compute {
            assert!(snr > 25.0, "{}: output SNR {snr}", l.name);
        }
    }
    for f in [
        "model.int8.safetensors",
        "quantization.json",
        "config.json",
        "tokenizer.json",
    ] {
        assert!(out.join(f).is_file(), "{f}");
    }
    assert!(!out.join("model.safetensors").exists(), "no float weights");
    // Nothing left beside it.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["q"]);

    // The quantised checkpoint is a checkpoint: tools eval simulates the int8 model.
    let ev = host::evaluate::Evaluated::open(&out).unwrap();
    assert!(ev.kind().contains("quantised"));
    let data = root().join("models/demo/test.csv");
    let r = host::evaluate::evaluate(&ev, &data, &columns(), Some("oos")).unwrap();
    let fl = host::evaluate::Evaluated::open(float_checkpoint()).unwrap();
    let rf = host::evaluate::evaluate(&fl, &data, &columns(), Some("oos")).unwrap();
    assert!(
        (r.accuracy - rf.accuracy).abs() <= 0.03,
        "int8 {} float {}",
        r.accuracy,
        rf.accuracy
    );
    let w8 = host::evaluate::Evaluated::open_variant(&out, Some("weights-int8")).unwrap();
    host::evaluate::evaluate(&w8, &data, &columns(), Some("oos")).unwrap();
}

#[test]
fn failed_accuracy_gate_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // A folder that is not a checkpoint is never written into (tests/tests/hostile_input.rs);
    // here the output does not exist yet and must still not exist after the failure.
    let out = tmp.path().join("q");
    let mut j = job(&out);
    // Ranges cut at the 50.1th percentile clip nearly every activation: accuracy collapses.
    j.percentile = 50.1;
    j.max_drop = 0.0;
    let err = quantize(&j).unwrap_err().to_string();
    assert!(err.contains("more than --max-drop 0"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
}

#[test]
fn bad_inputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    // Calibration file with a label the model does not know.
    let calib = tmp.path().join("calib.csv");
    std::fs::write(
        &calib,
        "text,label\nturn on the lights,lights_on\nfly me to the moon,teleport\n",
    )
    .unwrap();
    let mut j = job(&tmp.path().join("q"));
    j.calib = Some(calib.clone());
    let err = quantize(&j).unwrap_err().to_string();
    assert!(
        err.contains("calib.csv:3") && err.contains("teleport"),
        "{err}"
    );
    // Missing checkpoint.
    let mut j = job(&tmp.path().join("q"));
    j.model = tmp.path().join("nope");
    let err = quantize(&j).unwrap_err().to_string();
    assert!(
        err.contains("nope") && err.contains("not a directory"),
        "{err}"
    );
    // Bad numbers.
    let mut j = job(&tmp.path().join("q"));
    j.percentile = 20.0;
    assert!(quantize(&j)
        .unwrap_err()
        .to_string()
        .contains("--percentile"));
    // A quantised checkpoint cannot be quantised again; float checkpoints have no int8 variant.
    let mut j = job(&tmp.path().join("q"));
    j.model = quantized_checkpoint().to_path_buf();
    assert!(quantize(&j)
        .unwrap_err()
        .to_string()
        .contains("already a quantised"));
    let e = host::evaluate::Evaluated::open_variant(float_checkpoint(), Some("int8-compute"));
    assert!(e.err().unwrap().to_string().contains("float checkpoint"));
    let e = host::evaluate::Evaluated::open_variant(quantized_checkpoint(), Some("int4"));
    assert!(e
        .err()
        .unwrap()
        .to_string()
        .contains("unknown variant \"int4\""));
    assert!(!tmp.path().join("q").exists());
}

#[test]
fn quantized_bundle_shares_one_weights_file_and_every_variant_runs() {
    let dir = quantized_bundle();
    let v = bundle::Bundle::read(dir).unwrap().verify().unwrap();
    let m = v.manifest();
    // The tiny preset reads n-gram ids: format 3 (variants and the bag).
    assert_eq!(m.format_version, 3);
    assert!(m.ngrams.is_some());
    let names: Vec<&str> = m.variants.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["weights-int8", "int8-compute"]);
    assert_eq!(m.default_variant.as_deref(), Some("weights-int8"));
    for var in &m.variants {
        assert_eq!(var.external_data, ["weights.int8.bin"]);
        assert_eq!(m.files[&var.file], var.sha256);
        assert!(var.expected_accuracy.is_some());
    }
    assert!(!m.reference.is_empty());

    // Size: one int8 copy of the weights; well under the float bundle.
    let float_dir = tempfile::tempdir().unwrap();
    let fb = float_dir.path().join("b");
    host::export::export(float_checkpoint(), &fb, None, &columns(), false).unwrap();
    let size = |d: &Path| -> u64 {
        std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let ratio = size(dir) as f64 / size(&fb) as f64;
    println!("int8 bundle / float bundle = {ratio:.3}");
    // This test model is tiny (the tokenizer is a large share); the tiny preset with an
    // 8k vocabulary measures 0.27 (docs/quantization.md). The weights are there once:
    let fsize = |d: &Path, f: &str| std::fs::metadata(d.join(f)).unwrap().len() as f64;
    let shared = fsize(dir, "weights.int8.bin") / fsize(&fb, "model.onnx");
    assert!(
        shared < 0.27,
        "weights.int8.bin is {shared:.3} of the float model.onnx"
    );
    for var in &m.variants {
        let graph = fsize(dir, &var.file) / fsize(&fb, "model.onnx");
        assert!(
            graph < 0.08,
            "{}: graph is {graph:.3} of the float model",
            var.name
        );
    }
    assert!(ratio < 0.4, "int8 bundle is {ratio:.3} of the float bundle");

    // Every variant loads from the verified bytes and reproduces its reference outputs;
    // so does weights-int8 with int8 activations where the device has the int8 tiles
    // (its logits move by the activations' rounding, not its labels).
    let int8_act = device::fused_ops::dense_dynamic_i8::available();
    let mut choices = vec!["weights-int8", "int8-compute"];
    if int8_act {
        choices.push("weights-int8+int8-act");
    }
    for name in choices {
        let choice = device::variant::Choice::parse(name);
        let c = device::variant::load(&v, &choice).unwrap();
        let var = choice.variant.as_str();
        for r in &m.reference {
            let p = c.classify(&r.text).unwrap();
            assert_eq!(
                p.label_index, r.outputs[var].label_index,
                "{name}: {:?}",
                r.text
            );
        }
    }
    let e = device::variant::load(&v, &device::variant::Choice::parse("int8-compute+int8-act"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("applies only to weights-int8"), "{e}");
    // The plain loader takes the default variant (what older code paths get).
    device::Classifier::load(&v)
        .unwrap()
        .classify("set an alarm for 7")
        .unwrap();

    // The tuner measures both, picks one that agrees, records it; a second select reads it.
    let copy = tempfile::tempdir().unwrap();
    let cdir = copy.path().join("b");
    std::fs::create_dir(&cdir).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), cdir.join(e.file_name())).unwrap();
    }
    let cv = bundle::Bundle::read(&cdir).unwrap().verify().unwrap();
    let opts = device::variant::TuneOptions { warmup: 1, runs: 2 };
    let sel = device::variant::select(&cv, None, opts).unwrap();
    assert_eq!(sel.source, "tuned");
    let report = sel.report.unwrap();
    // weights-int8, int8-compute, and weights-int8+int8-act where it can run.
    let labels: Vec<&str> = report
        .timings
        .iter()
        .map(|t| t.candidate.as_str())
        .collect();
    assert_eq!(labels.len(), 2 + int8_act as usize, "{labels:?}");
    assert_eq!(
        labels.contains(&"weights-int8+int8-act"),
        int8_act,
        "{labels:?}"
    );
    if let Some(t) = report
        .timings
        .iter()
        .find(|t| t.candidate == "weights-int8+int8-act")
    {
        // Its logits are not the f32 ones: the int8 products ran.
        assert!(t.max_logit_diff > 1e-4, "{t:?}");
    }
    assert!(
        report
            .timings
            .iter()
            .all(|t| t.agrees && t.checked == m.reference.len()),
        "{report:?}"
    );
    assert!(
        cdir.join(device::variant::CHOICE_FILE).is_file(),
        "{}",
        sel.record
    );
    let again = device::variant::select(&cv, None, opts).unwrap();
    assert_eq!(
        (again.source.as_str(), &again.choice),
        ("recorded", &sel.choice)
    );
    // `device serve` takes the recorded choice without measuring (and a flag over it);
    // an untuned bundle gets the manifest's default.
    let p = device::variant::preferred(&cv, None).unwrap();
    assert_eq!(p, sel.choice);
    let p = device::variant::preferred(&cv, Some("int8-compute")).unwrap();
    assert_eq!(p.variant, "int8-compute");
    assert!(device::variant::preferred(&cv, Some("int4")).is_err());
    let untuned = device::variant::preferred(&v, None).unwrap();
    assert_eq!(untuned.variant, "weights-int8");
    // The choice file is not part of the bundle: it still verifies.
    bundle::Bundle::read(&cdir).unwrap().verify().unwrap();
    // Override and unknown names.
    let o = device::variant::select(&cv, Some("int8-compute"), opts).unwrap();
    assert_eq!(
        (o.source.as_str(), o.choice.variant.as_str()),
        ("override", "int8-compute")
    );
    let e = device::variant::select(&cv, Some("float"), opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no variant \"float\"") && e.contains("weights-int8"),
        "{e}"
    );
    // An unwritable record location is reported, not fatal.
    std::fs::remove_file(cdir.join(device::variant::CHOICE_FILE)).unwrap();
    std::fs::create_dir(cdir.join(device::variant::CHOICE_FILE)).unwrap();
    let note = device::variant::record(&cv, &report);
    assert!(note.starts_with("not recorded"), "{note}");

    // A bundle without reference texts: the plain variants are only checked for finite
    // logits, and a transformed form (int8 activations here) is held to its plain
    // variant's labels on the device's probe texts, never taken unchecked.
    let bare = copy.path().join("bare");
    std::fs::create_dir(&bare).unwrap();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), bare.join(e.file_name())).unwrap();
    }
    let manifest_path = bare.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    manifest.as_object_mut().unwrap().remove("reference");
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let bv = bundle::Bundle::read(&bare).unwrap().verify().unwrap();
    assert!(bv.manifest().reference.is_empty());
    let bare_report = device::variant::tune(&bv, opts).unwrap();
    for t in &bare_report.timings {
        if t.candidate.contains('+') {
            assert!(
                t.agrees && t.checked == device::variant::PROBE_TEXTS.len(),
                "{t:?}"
            );
            assert!(t.max_logit_diff > 1e-4, "the int8 products ran: {t:?}");
        } else {
            assert!(t.agrees && t.checked == 0, "{t:?}");
            assert!(t.note.contains("finite"), "{t:?}");
        }
    }

    // tools eval --variant on the bundle.
    let data = root().join("models/demo/test.csv");
    for var in [None, Some("weights-int8"), Some("int8-compute")] {
        let ev = host::evaluate::Evaluated::open_variant(dir, var).unwrap();
        let r = host::evaluate::evaluate(&ev, &data, &columns(), Some("oos")).unwrap();
        assert!(r.accuracy > 0.5, "{var:?}: {}", r.accuracy);
    }
}

/// Every plan a single text may run on gives the same answer: the engine with its race
/// (each length bucket's fixed-length plan timed against the symbolic plan), every
/// bucket on its fixed-length plan, and the symbolic plan alone; texts of 3 to 64 tokens
/// cover every bucket. int8-compute gets the `--check` tolerance (its activations are
/// rounded after sums taken in a plan-dependent order).
#[test]
fn every_plan_route_gives_the_same_answer() {
    use device::engine::{Engine, EngineOptions, PlanOptions};
    let v = bundle::Bundle::read(quantized_bundle())
        .unwrap()
        .verify()
        .unwrap();
    let enc = device::tokenize::TextEncoder::from_bundle(&v).unwrap();
    let words = "please set an alarm for seven tomorrow morning and play some jazz after it";
    let texts: Vec<String> = (1..=12)
        .map(|n| {
            words
                .split(' ')
                .cycle()
                .take(n * 5)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    for (variant, tolerance) in [("weights-int8", 1e-5f32), ("int8-compute", 2e-2)] {
        let load = |options| Engine::load_variant(&v, variant, options).unwrap();
        let engines = [
            load(EngineOptions::default()),
            load(EngineOptions {
                plans: PlanOptions {
                    fixed_plans: true,
                    ..PlanOptions::default()
                },
                ..EngineOptions::default()
            }),
            load(EngineOptions {
                plans: PlanOptions {
                    symbolic_only: true,
                    ..PlanOptions::default()
                },
                ..EngineOptions::default()
            }),
        ];
        let mut lengths = std::collections::BTreeSet::new();
        for t in &texts {
            let encoded = enc.encode(t).unwrap();
            lengths.insert(encoded.ids.len());
            let batch = enc.batch(std::slice::from_ref(&encoded));
            let runs: Vec<_> = engines
                .iter()
                .map(|e| e.run_batch(&batch).unwrap())
                .collect();
            let probs = |logits: &[f32]| {
                let max = logits.iter().fold(f32::MIN, |m, &v| m.max(v));
                let e: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
                let sum: f32 = e.iter().sum();
                e.into_iter().map(|v| v / sum).collect::<Vec<_>>()
            };
            let reference = probs(&runs[2].0);
            for (route, (logits, attention)) in runs.iter().enumerate() {
                assert_eq!(attention.len(), encoded.ids.len());
                let worst = probs(logits)
                    .iter()
                    .zip(&reference)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= tolerance,
                    "{variant}, route {route}, {} tokens: |Δp| {worst}",
                    encoded.ids.len()
                );
            }
        }
        assert!(
            lengths.first() < Some(&8) && lengths.last() > Some(&32),
            "lengths {lengths:?} miss buckets"
        );
    }
}

/// `Engine::prepare` (what `device serve` runs at start-up) decides every bucket's route
/// before the first query, and routes stored by `device tune` are taken as they are (no
/// race) and give the same answers as the symbolic plan.
#[test]
fn prepared_plans_and_stored_routes() {
    use device::engine::{Engine, EngineOptions, PlanOptions};
    let v = bundle::Bundle::read(quantized_bundle())
        .unwrap()
        .verify()
        .unwrap();
    let enc = device::tokenize::TextEncoder::from_bundle(&v).unwrap();
    let raced = Engine::load_variant(&v, "weights-int8", EngineOptions::default()).unwrap();
    assert!(raced.routes().iter().all(|(_, from)| from.is_none()));
    let decided = raced.prepare().unwrap();
    let after: Vec<(usize, usize)> = raced
        .routes()
        .into_iter()
        .map(|(len, from)| (len, from.expect("decided by prepare")))
        .collect();
    assert_eq!(decided, after);
    assert_eq!(
        decided.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![8, 16, 32, 64]
    );

    // Unusual routes a race would hardly pick: bucket 8 on the symbolic plan, 16 fixed,
    // 32 fixed from 20, 64 fixed from 33.
    let stored = vec![(8, 9), (16, 9), (32, 20), (64, 33)];
    let options = EngineOptions {
        plans: PlanOptions {
            routes: stored.clone(),
            ..PlanOptions::default()
        },
        ..EngineOptions::default()
    };
    let replayed = Engine::load_variant(&v, "weights-int8", options).unwrap();
    assert_eq!(replayed.prepare().unwrap(), stored);
    let symbolic = Engine::load_variant(
        &v,
        "weights-int8",
        EngineOptions {
            plans: PlanOptions {
                symbolic_only: true,
                ..PlanOptions::default()
            },
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let words = "please set an alarm for seven tomorrow morning and play some jazz after it";
    for n in 1..=12 {
        let text: Vec<&str> = words.split(' ').cycle().take(n * 5).collect();
        let encoded = enc.encode(&text.join(" ")).unwrap();
        let batch = enc.batch(std::slice::from_ref(&encoded));
        let ids = &encoded.ids;
        let (a, _) = replayed.run_batch(&batch).unwrap();
        let (b, _) = symbolic.run_batch(&batch).unwrap();
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-4, "{} tokens: |Δlogit| {worst}", ids.len());
    }
}

/// The embedding tables of both int8 graphs are gathered while int8 and only the rows
/// a query uses are scaled: no `DequantizeLinear` of a whole table before a `Gather`
/// (that costs a pass over the table per query; MiniLM's is 30,522 x 384).
#[test]
fn int8_embedding_rows_are_gathered_before_scaling() {
    use prost::Message;
    use tract_onnx::pb;
    let dir = quantized_bundle();
    for file in ["model.onnx", "model-int8-compute.onnx"] {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        let g = pb::ModelProto::decode(bytes.as_slice())
            .unwrap()
            .graph
            .unwrap();
        let producer = |name: &str| g.node.iter().find(|n| n.output.iter().any(|o| o == name));
        let int8_init = |name: &str| {
            g.initializer
                .iter()
                .any(|t| t.name == name && t.data_type == pb::tensor_proto::DataType::Int8 as i32)
        };
        let gathers: Vec<_> = g.node.iter().filter(|n| n.op_type == "Gather").collect();
        for n in &gathers {
            let p = producer(&n.input[0]).map(|p| p.op_type.as_str());
            assert_ne!(
                p,
                Some("DequantizeLinear"),
                "{file}: {} gathers a dequantised table",
                n.name
            );
        }
        let int8_gathers = gathers.iter().filter(|n| int8_init(&n.input[0])).count();
        assert_eq!(
            int8_gathers, 3,
            "{file}: word, position and n-gram tables gathered as int8"
        );
    }
}

fn python_has_onnx() -> bool {
    Command::new("python3")
        .args(["-c", "import onnx, onnxruntime, numpy"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs `onnx_check.py` on `dir/file` and returns onnxruntime's logits, row-major.
fn onnxruntime_logits(
    dir: &Path,
    file: &str,
    ids: &[Vec<i64>],
    mask: &[Vec<i64>],
    ngram_ids: &[Vec<i64>],
) -> Vec<f32> {
    let inputs =
        serde_json::json!({"input_ids": ids, "attention_mask": mask, "ngram_ids": ngram_ids});
    let inputs_path = dir.join("inputs.json.tmp");
    std::fs::write(&inputs_path, inputs.to_string()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/onnx_check.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(dir.join(file))
        .arg(&inputs_path)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&inputs_path);
    assert!(
        out.status.success(),
        "onnx_check.py {file} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
        })
        .collect()
}

#[test]
fn onnxruntime_and_tract_agree_on_every_exported_variant() {
    if !python_has_onnx() {
        println!("skipped: onnx/onnxruntime not installed (pip install onnx onnxruntime numpy)");
        return;
    }
    let qdir = quantized_bundle();
    let float_tmp = tempfile::tempdir().unwrap();
    let fdir = float_tmp.path().join("float");
    host::export::export(float_checkpoint(), &fdir, None, &columns(), false).unwrap();
    // A copy of the quantised bundle, so the checker's scratch file does not touch it.
    let qcopy = float_tmp.path().join("q");
    std::fs::create_dir(&qcopy).unwrap();
    for e in std::fs::read_dir(qdir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), qcopy.join(e.file_name())).unwrap();
    }

    let texts: Vec<String> =
        host::data::Dataset::load(&root().join("models/demo/test.csv"), &columns())
            .unwrap()
            .examples
            .into_iter()
            .take(24)
            .map(|e| e.text)
            .collect();
    for (dir, variant) in [
        (&fdir, "float"),
        (&qcopy, "weights-int8"),
        (&qcopy, "int8-compute"),
    ] {
        let v = bundle::Bundle::read(dir).unwrap().verify().unwrap();
        let file = v.manifest().variant(variant).unwrap().file;
        let classifier =
            device::variant::load(&v, &device::variant::Choice::parse(variant)).unwrap();
        let enc = classifier
            .encoder()
            .encode_batch(&texts.iter().map(String::as_str).collect::<Vec<_>>())
            .unwrap();
        let batch = classifier.encoder().batch(&enc);
        assert!(batch.ngram_width > 0, "the tiny preset reads n-gram ids");
        let (tract, _) = classifier.engine().run_batch(&batch).unwrap();
        let rows = |v: &[i64], w: usize| v.chunks(w).map(|r| r.to_vec()).collect::<Vec<_>>();
        let ort = onnxruntime_logits(
            dir,
            &file,
            &rows(&batch.ids, batch.seq),
            &rows(&batch.mask, batch.seq),
            &rows(&batch.ngram_ids, batch.ngram_width),
        );
        assert_eq!(ort.len(), tract.len());
        let c = v.manifest().labels.len();
        let argmax = |r: &[f32]| (0..r.len()).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap();
        // Float: same math, 1e-4. int8: onnxruntime rewrites DequantizeLinear/QDQ chains
        // with its own fused kernels (different rounding/accumulation order), so logits
        // differ in the 2nd-3rd digit.
        // int8-compute runs onnxruntime's exact int8 kernels (onnx_check.py): on x86 without
        // VNNI its default ones saturate 16-bit sums of u8 x s8 pairs (off by 0.44-0.57 here).
        let tol = if variant == "float" { 1e-4 } else { 0.05 };
        let diff = tract
            .iter()
            .zip(&ort)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        // Labels agree, except that a near tie (tract's two candidates within twice the
        // logit tolerance) may go either way when the logits differ by up to `tol`.
        let mut same = 0;
        for (a, b) in tract.chunks(c).zip(ort.chunks(c)) {
            let (ta, oa) = (argmax(a), argmax(b));
            same += usize::from(ta == oa);
            assert!(
                ta == oa || (a[ta] - a[oa]).abs() <= 2.0 * tol,
                "{variant}: labels differ ({ta} vs {oa}) without a near tie: {a:?} vs {b:?}"
            );
        }
        println!(
            "{variant}: onnxruntime vs tract: {same}/{} labels equal, max logit diff {diff:.2e}",
            texts.len()
        );
        if variant == "float" || variant == "int8-compute" {
            assert_eq!(same, texts.len(), "{variant}: labels differ");
        }
        assert!(diff <= tol, "{variant}: logits differ by {diff}");
    }
}
