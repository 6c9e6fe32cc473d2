//! The aarch64 `device` binary, run under qemu-user with Raspberry Pi 4 (Cortex-A72) and
//! Pi 5 (Cortex-A76) CPU models, classifies the demo test set of a bundle exported on x86
//! with the same predictions as the x86 binary.
//!
//! Needs the cross build (`cargo build --release --target aarch64-unknown-linux-gnu -p
//! device`, see .cargo/config.toml) and `qemu-aarch64`; skips with one line otherwise.
//! `ARM_DEVICE_BIN` points at another build of the binary.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use e2e::{csv_texts_and_labels, repo_root, run_ok, train_demo_bundle};
use serde_json::Value;

const SYSROOT: &str = "/usr/aarch64-linux-gnu";

fn arm_device() -> Option<PathBuf> {
    let bin = std::env::var_os("ARM_DEVICE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/aarch64-unknown-linux-gnu/release/device"));
    let qemu = Command::new("qemu-aarch64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !bin.is_file() || !qemu || !std::path::Path::new(SYSROOT).is_dir() {
        println!(
            "skipped: needs {} (cargo build --release --target aarch64-unknown-linux-gnu -p device), qemu-aarch64 and {SYSROOT}",
            bin.display()
        );
        return None;
    }
    Some(bin)
}

fn classify_under_qemu(bin: &PathBuf, cpu: &str, bundle: &str, input: &str) -> Vec<Value> {
    use std::io::Write;
    let mut child = Command::new("qemu-aarch64")
        .args(["-cpu", cpu, "-L", SYSROOT])
        .arg(bin)
        .args(["classify", "--bundle", bundle])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-aarch64");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "qemu {cpu}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn aarch64_predictions_match_x86() {
    let Some(bin) = arm_device() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let bundle = train_demo_bundle(tmp.path(), 6);
    let bundle_s = bundle.to_str().unwrap();
    let rows = csv_texts_and_labels(&repo_root().join("models/demo/test.csv"));
    let input: String = rows.iter().map(|(t, _)| format!("{t}\n")).collect();
    let x86: Vec<Value> = run_ok(
        "device",
        &["classify", "--bundle", bundle_s],
        Some(input.as_bytes()),
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect();
    assert_eq!(x86.len(), rows.len());
    for cpu in ["cortex-a72", "cortex-a76"] {
        let arm = classify_under_qemu(&bin, cpu, bundle_s, &input);
        assert_eq!(arm.len(), x86.len(), "{cpu}: one answer per text");
        let mut max_diff = 0f64;
        for (i, (a, x)) in arm.iter().zip(&x86).enumerate() {
            assert_eq!(a["label"], x["label"], "{cpu}: text {i} {:?}", rows[i].0);
            assert_eq!(
                a["top_tokens"].as_array().map(|v| v.len()),
                x["top_tokens"].as_array().map(|v| v.len())
            );
            let d = (a["confidence"].as_f64().unwrap() - x["confidence"].as_f64().unwrap()).abs();
            max_diff = max_diff.max(d);
        }
        println!(
            "{cpu}: {} texts, identical labels, max confidence difference {max_diff:.2e}",
            arm.len()
        );
        assert!(max_diff < 1e-4, "{cpu}: confidence differs by {max_diff}");
    }
}
