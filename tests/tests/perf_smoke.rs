//! The speed work of issue #7 keeps outputs unchanged, and the benchmark suite
//! (`tools/benchmarks/perf.py`, docs/benchmarks.md) keeps running: on a demo bundle, the
//! default engine (fixed-length plans + ASCII tokenizer fast path) against the plain
//! symbolic plan and the `tokenizers` library, then the suite's smoke mode.

use e2e::{bin, repo_root, run_ok, train_demo_bundle};
use serde_json::Value;

fn lines(out: &str) -> Vec<Value> {
    out.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn fast_engine_matches_plain_engine_and_suite_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let bundle = train_demo_bundle(tmp.path(), 1);
    let b = bundle.to_str().unwrap();
    let demo = repo_root().join("models/demo");
    for data in ["test.csv", "train.csv"] {
        let texts = demo.join(data);
        let out = run_ok(
            "device",
            &[
                "bench-latency",
                "--bundle",
                b,
                "--texts",
                texts.to_str().unwrap(),
                "--check",
            ],
            None,
        );
        let rows = lines(&out);
        assert_eq!(rows.len(), 1, "{out}");
        let r = &rows[0];
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["labels_differ"], 0, "{r}");
        assert_eq!(r["tokens_differ"], 0, "{r}");
        assert_eq!(r["fast_tokenizer"], true, "{r}");
        assert!(r["max_prob_diff"].as_f64().unwrap() <= 1e-5, "{r}");
    }

    let texts = demo.join("test.csv");
    let bench = |extra: &[&str]| {
        let mut args = vec![
            "bench-latency",
            "--bundle",
            b,
            "--texts",
            texts.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        run_ok("device", &args, None)
    };
    let out = bench(&[
        "--queries",
        "5",
        "--rounds",
        "1",
        "--modes",
        "buckets,baseline",
    ]);
    let rows = lines(&out);
    assert_eq!(rows.len(), 4, "2 modes x short/long: {out}");
    for r in &rows {
        assert!(r["e2e_p50_us"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["model_p50_us"].as_f64().unwrap() > 0.0, "{r}");
    }

    // The memory budget of the fixed-length plans: 0 leaves every bucket on the symbolic
    // plan (no plan beside it is built or raced); a bad value is refused by name.
    let budget = |value: &str| {
        std::process::Command::new(bin("device"))
            .args(["bench-latency", "--bundle", b, "--texts"])
            .arg(&texts)
            .args(["--queries", "3", "--rounds", "1", "--modes", "buckets"])
            .env("DEVICE_PLAN_MEMORY_MB", value)
            .output()
            .expect("device")
    };
    let out = budget("0");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = lines(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(rows.len(), 2, "short and long: {rows:?}");
    for r in &rows {
        let routes = r["routes"].as_array().unwrap();
        assert!(routes.iter().any(|route| !route[1].is_null()), "{r}");
        for route in routes {
            if let Some(from) = route[1].as_u64() {
                assert_eq!(from, route[0].as_u64().unwrap() + 1, "fixed plan used: {r}");
            }
        }
        // Measured (a number, not null). It may be 0: a plan shares the model's constants
        // (the embedding tables, the packed dense weights), and its own few hundred
        // kilobytes can come from pages the allocator already holds.
        assert!(r["plan_bytes"].as_u64().is_some(), "{r}");
    }
    let out = budget("lots");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("DEVICE_PLAN_MEMORY_MB"), "{stderr}");

    // The per-node profile names the matmul kernel tract picked for each matmul (how the
    // AVX2 int8 kernel's stall was found: third_party/tract-linalg/PATCHES.md). The dense
    // layers on tract's matmuls (`DEVICE_F32_DENSE=0`): where the CPU has the device's own
    // dense tiles (AVX-512, aarch64), every matmul of the float model is one of those.
    let out = std::process::Command::new(bin("device"))
        .args(["bench-latency", "--bundle", b, "--texts"])
        .arg(&texts)
        .args([
            "--queries",
            "2",
            "--rounds",
            "1",
            "--profile",
            "--profile-nodes",
            "1000",
        ])
        .env("DEVICE_F32_DENSE", "0")
        .output()
        .expect("device");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = String::from_utf8_lossy(&out.stdout).into_owned();
    let matmuls: Vec<&str> = out.lines().filter(|l| l.contains("(OptMatMul)")).collect();
    assert!(!matmuls.is_empty(), "{out}");
    for l in &matmuls {
        assert!(l.contains("— Mult: m:") && l.contains(" with ["), "{l}");
    }

    let deps = std::process::Command::new("python3")
        .args(["-c", "import onnx, onnxruntime, tokenizers, numpy"])
        .output();
    if !deps.is_ok_and(|o| o.status.success()) {
        eprintln!(
            "skipped perf.py smoke run: python3 with onnx, onnxruntime, tokenizers, numpy needed"
        );
        return;
    }
    assert!(bin("device").is_file());
    let md = tmp.path().join("benchmarks.md");
    let out = std::process::Command::new("python3")
        .args(["tools/benchmarks/perf.py", "--no-build", "--no-train-bench"])
        .args(["--rounds", "1", "--queries", "10", "--bundle", b])
        .arg("--work")
        .arg(tmp.path().join("work"))
        .arg("--out")
        .arg(&md)
        .env("SMOKE", "1")
        .current_dir(repo_root())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "perf.py smoke run failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = std::fs::read_to_string(&md).unwrap();
    for section in [
        "## End-to-end latency per query",
        "## Fixed-length plans vs the symbolic plan",
        "## Memory, cold start, size",
        "## Headline",
        "## Code layout of the device binary",
    ] {
        assert!(doc.contains(section), "{section} missing:\n{doc}");
    }
}
