//! `tools train --init DIR`: fine-tune a pretrained encoder (all-MiniLM-L6-v2) on the demo
//! data, export it, and classify with the device runtime. Skips when the checkpoint has
//! not been fetched (`tools/scripts/fetch_minilm.sh`; CI fetches it).

use e2e::{minilm_checkpoint, repo_root, run_err, run_ok};

#[test]
fn fine_tuned_minilm_exports_and_classifies_on_the_device() {
    let Some(init) = minilm_checkpoint() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ckpt = tmp.path().join("ckpt");
    let bundle = tmp.path().join("bundle");
    let train = repo_root().join("models/demo/train.csv");
    let summary = run_ok(
        "tools",
        &[
            "train",
            "--init",
            init.to_str().unwrap(),
            "--train",
            train.to_str().unwrap(),
            "--out",
            ckpt.to_str().unwrap(),
            "--epochs",
            "1",
            "--freeze-embeddings",
            "--layer-lr-decay",
            "0.9",
            "--quiet",
            "--json",
        ],
        None,
    );
    let summary: serde_json::Value = serde_json::from_str(summary.trim()).unwrap();
    assert_eq!(summary["init"]["loaded"].as_array().unwrap().len(), 100);
    assert_eq!(summary["init"]["fresh"].as_array().unwrap().len(), 5);
    assert_eq!(summary["options"]["layer_lr_decay"], 0.9);
    // One epoch from a pretrained encoder already separates the 15 demo intents well
    // above chance (1/15); from random weights the tiny model is near chance after one.
    let val_acc = summary["outcome"]["best_val_accuracy"].as_f64().unwrap();
    assert!(val_acc > 0.4, "validation accuracy {val_acc}");

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["hidden"], 384);
    assert_eq!(config["layers"], 6);
    assert_eq!(config["vocab_size"], 30522);
    // The checkpoint's tokenizer is MiniLM's own, without its fixed 128-token padding.
    let tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ckpt.join("tokenizer.json")).unwrap()).unwrap();
    assert!(tok["padding"].is_null() && tok["truncation"].is_null());

    run_ok(
        "tools",
        &[
            "export",
            "--model",
            ckpt.to_str().unwrap(),
            "--out",
            bundle.to_str().unwrap(),
        ],
        None,
    );
    let out = run_ok(
        "device",
        &[
            "classify",
            "--bundle",
            bundle.to_str().unwrap(),
            "--allow-unsigned",
        ],
        Some("set an alarm for 7 am\nwhat's the weather in paris tomorrow\n".as_bytes()),
    );
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let labels = config["labels"].as_array().unwrap();
    for l in &lines {
        assert!(labels.contains(&l["label"]), "{l}");
    }
}

#[test]
fn bad_init_uses_are_clear_errors() {
    let train = repo_root().join("models/demo/train.csv");
    let train = train.to_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x");
    let out = out.to_str().unwrap();
    // A folder that is not a checkpoint.
    let err = run_err(
        "tools",
        &[
            "train",
            "--init",
            tmp.path().to_str().unwrap(),
            "--train",
            train,
            "--out",
            out,
        ],
        None,
    );
    assert!(err.contains("config.json"), "{err}");
    let Some(init) = minilm_checkpoint() else {
        return;
    };
    let init = init.to_str().unwrap();
    let err = run_err(
        "tools",
        &[
            "train", "--init", init, "--hidden", "64", "--train", train, "--out", out,
        ],
        None,
    );
    assert!(err.contains("cannot change a pretrained encoder"), "{err}");
    let tokenizer = repo_root().join(".cache/minilm-l6/tokenizer.json");
    let err = run_err(
        "tools",
        &[
            "train",
            "--init",
            init,
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--train",
            train,
            "--out",
            out,
        ],
        None,
    );
    assert!(err.contains("brings its own tokenizer"), "{err}");

    // Corrupt copies of the checkpoint (its weights linked, one file edited): a clear
    // error naming the file, never a panic or an allocation that aborts.
    let corrupt = |tag: &str, file: &str, edit: &dyn Fn(&str) -> String| -> String {
        let dir = tmp.path().join(format!("corrupt-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(init).unwrap().flatten() {
            let to = dir.join(e.file_name());
            if e.file_name() == file {
                let text = std::fs::read_to_string(e.path()).unwrap();
                std::fs::write(&to, edit(&text)).unwrap();
            } else {
                std::os::unix::fs::symlink(e.path(), &to).unwrap();
            }
        }
        let out = tmp.path().join(format!("out-{tag}"));
        run_err(
            "tools",
            &[
                "train",
                "--init",
                dir.to_str().unwrap(),
                "--train",
                train,
                "--out",
                out.to_str().unwrap(),
                "--epochs",
                "1",
            ],
            None,
        )
    };
    let err = corrupt("array", "tokenizer.json", &|_| "[]".into());
    assert!(
        err.contains("tokenizer.json") && err.contains("not a JSON object"),
        "{err}"
    );
    let err = corrupt("huge", "config.json", &|t| {
        let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
        v["hidden_size"] = serde_json::json!(3u64 << 40); // divisible by its 12 heads
        v.to_string()
    });
    assert!(
        err.contains("config.json") && err.contains("parameters"),
        "{err}"
    );
    let err = corrupt("ffn", "config.json", &|t| {
        let mut v: serde_json::Value = serde_json::from_str(t).unwrap();
        v["intermediate_size"] = serde_json::json!(1000);
        v.to_string()
    });
    assert!(
        err.contains("intermediate") || err.contains("shape"),
        "{err}"
    );
}
