//! Out-of-scope rejection end to end on the demo data (it has an `oos` class): `tools
//! train` calibrates a rule on its validation split, `tools export` carries it into the
//! manifest, `tools eval` reports in-scope accuracy and oos recall both ways and draws the
//! curve, `tools calibrate` re-chooses it, `device classify` answers `unknown`, and
//! `tools bench` counts a rejected out-of-scope query as right.

use std::path::Path;

use e2e::{edit_manifest, repo_root, run_ok, train_demo_bundle};
use serde_json::Value;

fn eval_json(model: &Path, extra: &[&str]) -> Value {
    let test = repo_root().join("models/demo/test.csv");
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--data",
        test.to_str().unwrap(),
        "--json",
    ];
    args.extend(extra);
    serde_json::from_str(&run_ok("tools", &args, None)).unwrap()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn classify(bundle: &Path, text: &str) -> Value {
    let out = run_ok(
        "device",
        &["classify", "--bundle", bundle.to_str().unwrap(), text],
        None,
    );
    serde_json::from_str(out.trim()).unwrap()
}

#[test]
fn rejection_from_training_to_the_device() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = train_demo_bundle(tmp.path(), 6);
    let ckpt = tmp.path().join("ckpt");

    // Training calibrated a rule on its validation split; export carried it over.
    assert!(ckpt.join("rejection.json").is_file());
    let svg = std::fs::read_to_string(ckpt.join("rejection_curve.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("oos recall"));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("manifest.json")).unwrap())
            .unwrap();
    let rule = &manifest["rejection"];
    assert_eq!(rule["oos_label"], "oos", "{manifest}");
    let threshold = f(&rule["threshold"]);
    assert!((0.0..=1.0).contains(&threshold), "{rule}");

    // Eval reports both ways, through tract (bundle) and candle (checkpoint).
    let b = eval_json(&bundle, &[]);
    let r = &b["rejection"];
    assert_eq!(r["out_of_scope"], 40, "{r}");
    // Class only = the argmax figures of the main report.
    assert_eq!(
        f(&r["class_only"]["in_scope_accuracy"]),
        f(&b["in_scope_accuracy"])
    );
    assert_eq!(f(&r["class_only"]["oos_recall"]), f(&b["oos_recall"]));
    // The rule is the manifest's; a threshold ≥ 0 only adds rejections.
    assert_eq!(f(&r["rule"]["threshold"]) as f32, threshold as f32);
    let (with, only) = (&r["with_rule"], &r["class_only"]);
    assert!(f(&with["oos_recall"]) >= f(&only["oos_recall"]));
    assert!(f(&with["in_scope_accuracy"]) <= f(&only["in_scope_accuracy"]));
    let curve = Path::new(r["curve_svg"].as_str().unwrap());
    assert!(std::fs::read_to_string(curve)
        .unwrap()
        .contains("trade-off"));
    let c = eval_json(&ckpt, &[]);
    let one = 1.0 / f(&c["rejection"]["in_scope"]) + 1e-9;
    for k in ["in_scope_accuracy", "in_scope_rejected"] {
        let (x, y) = (f(&c["rejection"]["with_rule"][k]), f(&with[k]));
        assert!((x - y).abs() <= one, "{k}: checkpoint {x}, bundle {y}");
    }
    // The text report shows both rows.
    let test = repo_root().join("models/demo/test.csv");
    let text = run_ok(
        "tools",
        &[
            "eval",
            "--model",
            bundle.to_str().unwrap(),
            "--data",
            test.to_str().unwrap(),
        ],
        None,
    );
    assert!(text.contains("class only (argmax)") && text.contains("with rule (threshold"));

    // A threshold above 1 rejects everything.
    let all = eval_json(&bundle, &["--reject-threshold", "1.01"]);
    assert_eq!(f(&all["rejection"]["with_rule"]["in_scope_accuracy"]), 0.0);
    assert_eq!(f(&all["rejection"]["with_rule"]["oos_recall"]), 1.0);

    // Re-calibrating with no in-scope loss allowed keeps in-scope accuracy on that data.
    let cal: Value = serde_json::from_str(&run_ok(
        "tools",
        &[
            "calibrate",
            "--model",
            ckpt.to_str().unwrap(),
            "--data",
            test.to_str().unwrap(),
            "--max-in-scope-drop",
            "0",
            "--json",
        ],
        None,
    ))
    .unwrap();
    let c = eval_json(&ckpt, &[]);
    assert_eq!(
        f(&c["rejection"]["rule"]["threshold"]) as f32,
        f(&cal["rule"]["threshold"]) as f32
    );
    let (with, only) = (&c["rejection"]["with_rule"], &c["rejection"]["class_only"]);
    assert_eq!(f(&with["in_scope_accuracy"]), f(&only["in_scope_accuracy"]));
    assert!(f(&with["oos_recall"]) >= f(&only["oos_recall"]));

    // The device applies the manifest's rule: consistent with the threshold ...
    let text = "what is the meaning of life";
    let p = classify(&bundle, text);
    let expect = p["label"] == "oos" || f(&p["confidence"]) < threshold;
    assert_eq!(p["rejected"], expect, "{p}");
    // ... and with a threshold above 1, it answers unknown and keeps its best guess.
    edit_manifest(&bundle, |m| {
        m["rejection"]["threshold"] = serde_json::json!(1.01)
    });
    let q = classify(&bundle, text);
    assert_eq!(q["answer"], "unknown");
    assert_eq!(q["rejected"], true);
    assert_eq!(
        (&q["label"], &q["confidence"]),
        (&p["label"], &p["confidence"])
    );

    // Bench counts a rejected query right exactly when its gold label is oos: with every
    // answer rejected, the correct ones are the 40 out-of-scope test queries.
    let bench: Value = serde_json::from_str(&run_ok(
        "tools",
        &[
            "bench",
            "--bundle",
            bundle.to_str().unwrap(),
            "--data",
            test.to_str().unwrap(),
            "--json",
            "--quiet",
            "--histogram",
            tmp.path().join("h.svg").to_str().unwrap(),
        ],
        None,
    ))
    .unwrap();
    assert_eq!(bench["rejected"], bench["n"]);
    assert_eq!(bench["correct"], 40, "{bench}");
}

#[test]
fn a_model_without_an_oos_class_gets_a_threshold_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let train = std::fs::read_to_string(repo_root().join("models/demo/train.csv")).unwrap();
    let in_scope: String = train
        .lines()
        .filter(|l| !l.ends_with(",oos"))
        .map(|l| format!("{l}\n"))
        .collect();
    let train_path = tmp.path().join("train.csv");
    std::fs::write(&train_path, in_scope).unwrap();
    let ckpt = tmp.path().join("ckpt");
    run_ok(
        "tools",
        &[
            "train",
            "--train",
            train_path.to_str().unwrap(),
            "--out",
            ckpt.to_str().unwrap(),
            "--epochs",
            "4",
            "--quiet",
        ],
        None,
    );
    // Calibrated to the false-rejection rate: no oos class, a threshold above 0 (at
    // least one validation query may be rejected), and no oos figures.
    let cal: Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("rejection.json")).unwrap())
            .unwrap();
    let rule = &cal["rule"];
    assert!(rule.get("oos_label").is_none(), "{rule}");
    assert!(rule.get("val_oos_recall").is_none(), "{rule}");
    assert!(f(&rule["threshold"]) > 0.0, "{rule}");
    assert!(f(&rule["val_in_scope_rejected"]) > 0.0, "{rule}");

    // Evaluated on data with oos queries: oos is an extra, never predicted class; the
    // class alone catches none, the threshold is the only way to catch them.
    let v = eval_json(&ckpt, &[]);
    let oos = v["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "oos")
        .expect("oos row");
    assert_eq!(oos["support"], 40);
    let r = &v["rejection"];
    assert_eq!(r["oos_class"], false);
    assert_eq!(f(&r["class_only"]["oos_recall"]), 0.0);
    assert_eq!(f(&r["class_only"]["in_scope_rejected"]), 0.0);
    // Rejections by threshold alone count as caught out-of-scope queries.
    let all = eval_json(&ckpt, &["--reject-threshold", "1.01"]);
    assert_eq!(f(&all["rejection"]["with_rule"]["oos_recall"]), 1.0);
    assert_eq!(f(&all["rejection"]["with_rule"]["in_scope_accuracy"]), 0.0);
    assert!(all["rejection"]["rule"].get("oos_label").is_none());

    // `--curve` naming the checkpoint's own curve leaves it whole (a copy onto itself
    // used to empty it); naming another file writes the same picture there.
    let own = ckpt.join("rejection_curve.svg");
    let other = tmp.path().join("curve.svg");
    for curve in [&other, &own] {
        run_ok(
            "tools",
            &[
                "calibrate",
                "--model",
                ckpt.to_str().unwrap(),
                "--data",
                train_path.to_str().unwrap(),
                "--curve",
                curve.to_str().unwrap(),
            ],
            None,
        );
    }
    let svg = std::fs::read_to_string(&own).unwrap();
    assert!(svg.contains("</svg>"), "{} bytes", svg.len());
    assert_eq!(std::fs::read_to_string(&other).unwrap(), svg);
}
