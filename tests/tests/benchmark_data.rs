//! The slower checks on public benchmark data (../shared/data). Each skips with one line
//! when the data is absent (a user's clone has none).

use e2e::{run_ok, shared_data};
use serde_json::Value;

/// SNIPS, tiny preset from scratch with the 8-epoch schedule of docs/accuracy.md: the
/// bundle (tract) gives exactly the checkpoint's (candle) accuracy, and the accuracy stays
/// in the range the benchmark reports (0.981–0.984; the bar here leaves room for the
/// tokenizer trainer's run-to-run variation: one test text is 0.14 points).
#[test]
fn snips_tiny_from_scratch() {
    let Some(dir) = shared_data("snips") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let (ckpt, bundle) = (tmp.path().join("ckpt"), tmp.path().join("bundle"));
    let (ckpt_s, bundle_s) = (ckpt.to_str().unwrap(), bundle.to_str().unwrap());
    let train = dir.join("train.csv");
    let test = dir.join("test.csv");
    let started = std::time::Instant::now();
    run_ok(
        "tools",
        &[
            "train",
            "--train",
            train.to_str().unwrap(),
            "--out",
            ckpt_s,
            "--epochs",
            "8",
            "--quiet",
        ],
        None,
    );
    let seconds = started.elapsed().as_secs_f64();
    run_ok(
        "tools",
        &["export", "--model", ckpt_s, "--out", bundle_s],
        None,
    );
    let eval = |m: &str| -> Value {
        serde_json::from_str(&run_ok(
            "tools",
            &[
                "eval",
                "--model",
                m,
                "--data",
                test.to_str().unwrap(),
                "--json",
            ],
            None,
        ))
        .unwrap()
    };
    let (c, b) = (eval(ckpt_s), eval(bundle_s));
    let acc = b["accuracy"].as_f64().unwrap();
    println!("snips tiny: test accuracy {acc:.4} (bundle), training {seconds:.0} s");
    assert_eq!(
        c["accuracy"], b["accuracy"],
        "checkpoint and bundle accuracy must be identical"
    );
    assert_eq!(b["n"], 700);
    assert!(acc >= 0.975, "SNIPS tiny accuracy {acc}");
}
