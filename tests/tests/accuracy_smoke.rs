//! The accuracy benchmark's smoke version (`tools/benchmarks/accuracy.py --smoke`): the
//! whole train → quantise → export → evaluate path of every benchmark model, on small
//! stratified subsets of ../shared/data, so the script that produces docs/accuracy.md
//! keeps working. Skips when the public data is absent.

use e2e::{bin, repo_root, shared_data};

#[test]
fn accuracy_benchmark_smoke_run() {
    if shared_data("clinc150").is_none() || shared_data("snips").is_none() {
        return;
    }
    let tools = bin("tools");
    assert!(tools.is_file());
    let tmp = tempfile::tempdir().unwrap();
    // A row measured earlier, kept in the page's rows file: the run keeps it (its data set
    // and model are not run) and the run's SNIPS tiny row replaces the stale one.
    let kept = serde_json::json!([
        {"dataset": "snips", "model": "minilm-distilled", "parameters": 2.2e7,
         "accuracy": 0.5, "macro_f1": 0.5, "in_scope": 0.5, "oos_recall": null,
         "in_scope_rule": 0.5, "oos_recall_rule": null, "bundle_mb": 23.0,
         "train_seconds": 60.0, "epochs": 1, "date": "2000-01-01", "svm": null,
         "steps": [{"command": "earlier-command", "seconds": 1.0}]},
        {"dataset": "snips", "model": "tiny", "parameters": 1.0, "accuracy": 0.123,
         "macro_f1": 0.5, "in_scope": 0.5, "oos_recall": null, "in_scope_rule": 0.5,
         "oos_recall_rule": null, "bundle_mb": 1.0, "train_seconds": 1.0, "epochs": 1,
         "date": "2000-01-01", "svm": null, "steps": []}
    ]);
    std::fs::write(tmp.path().join("accuracy.json"), kept.to_string()).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            "tools/benchmarks/accuracy.py",
            "--smoke",
            "--no-build",
            "--out",
        ])
        .arg(tmp.path())
        .current_dir(repo_root())
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "accuracy.py --smoke failed:\n{stderr}"
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(tmp.path().join("results.json")).unwrap()).unwrap();
    let minilm = repo_root()
        .join(".cache/minilm-l6/model.safetensors")
        .is_file();
    let models = if minilm { 3 } else { 2 };
    assert_eq!(rows.len(), 2 * models, "{rows:?}");
    let sklearn = std::process::Command::new("python3")
        .args(["-c", "import sklearn"])
        .status()
        .is_ok_and(|s| s.success());
    for r in &rows {
        let acc = r["accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc), "{r}");
        // Every row carries the TF-IDF + SVM baseline of its data set (scikit-learn), or
        // none when scikit-learn is missing (the script then says so in one line).
        if sklearn {
            let svm = r["svm"]["accuracy"].as_f64().unwrap_or(-1.0);
            assert!((0.0..=1.0).contains(&svm), "{r}");
        } else {
            assert!(r["svm"].is_null(), "{r}");
            assert!(stderr.contains("no TF-IDF + SVM baseline"), "{stderr}");
        }
        let run = tmp.path().join(format!(
            "{}-{}",
            r["dataset"].as_str().unwrap(),
            r["model"].as_str().unwrap()
        ));
        // The figure in the table is the int8 bundle's, as `tools eval` reported it.
        let eval: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run.join("eval.json")).unwrap()).unwrap();
        assert_eq!(eval["accuracy"], r["accuracy"]);
        assert!(run.join("bundle-int8/manifest.json").is_file());
        if r["dataset"] == "clinc150" {
            assert!(
                r["oos_recall"].is_number(),
                "CLINC150 reports oos recall: {r}"
            );
        }
        if r["dataset"] == "clinc150" && r["model"] == "minilm" {
            // CLINC150's MiniLM is a soup of two runs: both trained, the soup records them,
            // and the table's training time is theirs summed.
            let training: serde_json::Value =
                serde_json::from_slice(&std::fs::read(run.join("ckpt/training.json")).unwrap())
                    .unwrap();
            let ingredients = training["soup"]["ingredients"].as_array().unwrap();
            assert_eq!(ingredients.len(), 2, "{training}");
            let secs: f64 = (0..2)
                .map(|i| {
                    let t: serde_json::Value = serde_json::from_slice(
                        &std::fs::read(run.join(format!("ingredient-{i}/training.json"))).unwrap(),
                    )
                    .unwrap();
                    t["outcome"]["seconds"].as_f64().unwrap()
                })
                .sum();
            assert!(
                (r["train_seconds"].as_f64().unwrap() - secs).abs() < 1e-6,
                "{r}"
            );
        }
    }
    let doc = std::fs::read_to_string(tmp.path().join("accuracy.md")).unwrap();
    assert!(doc.contains("| clinc150 | tiny |"), "{doc}");
    assert!(doc.contains("| TF-IDF + SVM |"), "{doc}");
    // The page is every row of its rows file: this run's and the one kept from earlier.
    let all: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(tmp.path().join("accuracy.json")).unwrap()).unwrap();
    assert_eq!(all.len(), rows.len() + 1, "{all:?}");
    let earlier = all
        .iter()
        .find(|r| r["model"] == "minilm-distilled")
        .expect("the kept row");
    assert_eq!(earlier["date"], "2000-01-01");
    assert!(doc.contains("| snips | minilm-distilled |") && doc.contains("earlier-command"));
    let tiny = all
        .iter()
        .find(|r| r["dataset"] == "snips" && r["model"] == "tiny")
        .unwrap();
    assert_ne!(
        tiny["accuracy"], 0.123,
        "the run's row replaced the stale one"
    );
    assert_ne!(tiny["date"], "2000-01-01");
    assert!(!doc.contains("0.1230"), "{doc}");
}

/// The full run's training commands (`accuracy.py --dry-run`, every model) never repeat a
/// flag: clap refuses a repeated flag, so a per-data-set override appended to a model's
/// flags instead of replacing them would only fail hours into a full run.
#[test]
fn accuracy_benchmark_full_commands_repeat_no_flag() {
    if shared_data("clinc150").is_none() || shared_data("snips").is_none() {
        return;
    }
    let out = std::process::Command::new("python3")
        .args([
            "tools/benchmarks/accuracy.py",
            "--dry-run",
            "--models",
            "tiny",
            "minilm",
            "tiny-distilled",
            "minilm-distilled",
        ])
        .current_dir(repo_root())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    // 2 data sets x 4 models, CLINC150's MiniLM as two runs and a soup.
    assert_eq!(lines.len(), 10, "{stdout}");
    for line in &lines {
        let mut seen = std::collections::HashSet::new();
        // (--ckpt is the one flag meant to repeat: `tools soup`'s ingredients.)
        for flag in line
            .split_whitespace()
            .filter(|w| w.starts_with("--") && *w != "--ckpt")
        {
            assert!(seen.insert(flag), "{flag} repeated in: {line}");
        }
    }
    assert!(stdout.contains(" soup --ckpt "), "{stdout}");
}
