//! The ARM estimate (`tools/benchmarks/arm_estimate.py`, docs/benchmarks.md "Raspberry Pi 4 /
//! Pi 5 cores (estimated)") keeps running: its `--smoke` mode on a demo bundle (one variant,
//! the Cortex-A76 model, short queries, device and onnxruntime under qemu with the block
//! counter, costed with llvm-mca) writes a table row with a positive estimate for both sides
//! and their ratio.
//!
//! Needs the aarch64 device binary, qemu-aarch64 with plugin support, llvm-mca 19 and the arm64
//! python + onnxruntime that `tools/benchmarks/arm_estimate.py --setup-only --ort` fetches (.ci/run
//! does); skips with one line when any is missing, unless ARM_ESTIMATE_REQUIRED=1.
//! `ARM_DEVICE_BIN` points at another build of the binary.

use std::process::Command;

use e2e::{repo_root, train_demo_bundle};

#[test]
fn arm_estimate_smoke_writes_a_plausible_row() {
    let root = repo_root();
    let script = root.join("tools/benchmarks/arm_estimate.py");
    let device = std::env::var("ARM_DEVICE_BIN").unwrap_or_else(|_| {
        root.join("target/aarch64-unknown-linux-gnu/release/device")
            .to_string_lossy()
            .into_owned()
    });
    let required = std::env::var("ARM_ESTIMATE_REQUIRED").is_ok_and(|v| v == "1");
    let check = Command::new("python3")
        .arg(&script)
        .args(["--check", "--smoke", "--device", &device])
        .output();
    let ok = match &check {
        Ok(o) if o.status.success() => true,
        Ok(o) => {
            let why = String::from_utf8_lossy(&o.stdout);
            assert!(!required, "ARM_ESTIMATE_REQUIRED=1 but {}", why.trim());
            println!(
                "skipped: ARM estimate smoke run {} (tools/benchmarks/arm_estimate.py --setup-only --ort)",
                why.trim()
            );
            false
        }
        Err(e) => {
            assert!(!required, "ARM_ESTIMATE_REQUIRED=1 but python3: {e}");
            println!("skipped: ARM estimate smoke run needs python3 ({e})");
            false
        }
    };
    if !ok {
        return;
    }

    let tmp = tempfile::tempdir().unwrap();
    let bundle = train_demo_bundle(tmp.path(), 1);
    let md = tmp.path().join("benchmarks.md");
    let work = tmp.path().join("work");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--smoke", "--no-build", "--device", &device, "--bundle"])
        .arg(&bundle)
        .arg("--work")
        .arg(&work)
        .arg("--out")
        .arg(&md)
        .current_dir(&root)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "arm_estimate.py --smoke failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The results: the device and onnxruntime per-query estimates, positive and sane.
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(work.join("arm_estimate.json")).unwrap())
            .unwrap();
    let rows = results.as_object().unwrap();
    let side = |s: &str| {
        rows.values()
            .find(|r| r["side"] == s)
            .unwrap_or_else(|| panic!("no {s} estimate: {results}"))
    };
    let (dev, ort) = (side("device"), side("onnxruntime"));
    for r in [dev, ort] {
        let us = r["us"].as_f64().unwrap();
        let insns = r["insns"].as_f64().unwrap();
        // A tiny-preset query: well above 10 µs and 100k instructions, well below a second.
        assert!(us > 10.0 && us < 1e6, "implausible estimate: {r}");
        assert!(insns > 1e5, "implausible instruction count: {r}");
        assert!(
            r["mca_share"].as_f64().unwrap() > 0.5,
            "llvm-mca costed too little: {r}"
        );
        assert_eq!(r["core"], "a76", "{r}");
    }

    // The page: the section between its markers, with the row and its ratio.
    let doc = std::fs::read_to_string(&md).unwrap();
    let begin = "<!-- arm_estimate:BEGIN pi-cores -->";
    let end = "<!-- arm_estimate:END pi-cores -->";
    assert!(doc.contains(begin) && doc.contains(end), "{doc}");
    let section = doc.split(begin).nth(1).unwrap().split(end).next().unwrap();
    let row = section
        .lines()
        .find(|l| l.contains("Cortex-A76") && l.contains("short"))
        .unwrap_or_else(|| panic!("no A76 short row:\n{section}"));
    let ratio = dev["us"].as_f64().unwrap() / ort["us"].as_f64().unwrap();
    assert!(
        row.contains(&format!("**{ratio:.2}x**")),
        "ratio {ratio:.2} missing: {row}"
    );
    assert!(section.contains("Estimates, not measurements"), "{section}");
    assert!(
        section.contains("tools/benchmarks/arm_estimate.py --smoke"),
        "{section}"
    );
    println!("{row}");
}
