//! The board builds of the `device` binary, run under qemu-user, classify the demo test set
//! of a bundle exported on x86 with the same predictions as the x86 binary:
//!
//! - aarch64 (`aarch64-unknown-linux-gnu`, 64-bit Raspberry Pi OS) with the Raspberry Pi 4
//!   (Cortex-A72) and Pi 5 (Cortex-A76) CPU models;
//! - armv7 (`armv7-unknown-linux-gnueabihf` with NEON, 32-bit Raspberry Pi OS) with the
//!   Pi 2 (Cortex-A7) model and qemu-arm's `max` (an ARMv8 core in AArch32 state, as a Pi
//!   3/4/Zero 2 running the 32-bit OS; qemu-arm 7.2 has no `cortex-a53` model), with
//!   tract's armv7 NEON kernels, and once on the VFP kernels tract falls back to without
//!   NEON.
//!
//! tract picks its armv7 NEON kernels from `/proc/cpuinfo` ("neon" in Features), which a
//! Pi's kernel reports; under qemu-user 7.2 the guest reads the host's x86 cpuinfo, so the
//! test sets tract's `TRACT_CPU_ARM32_NEON` knob to what a Pi reports.
//!
//! Needs the cross builds (`cargo build --release --target <triple> -p device`, see
//! .cargo/config.toml), `qemu-aarch64` / `qemu-arm` and the cross sysroots; each part skips
//! with one line otherwise. `ARM_DEVICE_BIN` / `ARMV7_DEVICE_BIN` point at other builds.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use e2e::{csv_texts_and_labels, repo_root, run_ok, train_demo_bundle};
use serde_json::Value;

struct Arch {
    triple: &'static str,
    qemu: &'static str,
    sysroot: &'static str,
    bin_env: &'static str,
}

const AARCH64: Arch = Arch {
    triple: "aarch64-unknown-linux-gnu",
    qemu: "qemu-aarch64",
    sysroot: "/usr/aarch64-linux-gnu",
    bin_env: "ARM_DEVICE_BIN",
};

const ARMV7: Arch = Arch {
    triple: "armv7-unknown-linux-gnueabihf",
    qemu: "qemu-arm",
    sysroot: "/usr/arm-linux-gnueabihf",
    bin_env: "ARMV7_DEVICE_BIN",
};

impl Arch {
    /// The cross-built binary, or None (after printing the skip line) when something is missing.
    fn device(&self) -> Option<PathBuf> {
        let bin = std::env::var_os(self.bin_env)
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(format!("target/{}/release/device", self.triple)));
        let qemu = Command::new(self.qemu)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        if !bin.is_file() || !qemu || !Path::new(self.sysroot).is_dir() {
            println!(
                "skipped: needs {} (cargo build --release --target {} -p device), {} and {}",
                bin.display(),
                self.triple,
                self.qemu,
                self.sysroot
            );
            return None;
        }
        Some(bin)
    }

    fn classify(&self, bin: &Path, cpu: &str, env: &[(&str, &str)], input: &str) -> Vec<Value> {
        use std::io::Write;
        let mut child = Command::new(self.qemu)
            .args(["-cpu", cpu, "-L", self.sysroot])
            .arg(bin)
            .args(["classify", "--bundle", s(&setup().bundle)])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.qemu));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{} {cpu}: {}",
            self.qemu,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Label for label (and confidences within 1e-4) against the x86 binary.
    fn check(&self, bin: &Path, cpu: &str, env: &[(&str, &str)], what: &str) {
        let st = setup();
        let arm = self.classify(bin, cpu, env, &st.input);
        let tag = format!("{} {cpu}{what}", self.triple);
        assert_eq!(arm.len(), st.x86.len(), "{tag}: one answer per text");
        let mut max_diff = 0f64;
        for (i, (a, x)) in arm.iter().zip(&st.x86).enumerate() {
            assert_eq!(a["label"], x["label"], "{tag}: text {i} {:?}", st.rows[i].0);
            assert_eq!(
                a["top_tokens"].as_array().map(|v| v.len()),
                x["top_tokens"].as_array().map(|v| v.len())
            );
            let d = (a["confidence"].as_f64().unwrap() - x["confidence"].as_f64().unwrap()).abs();
            max_diff = max_diff.max(d);
        }
        println!(
            "{tag}: {} texts, identical labels, max confidence difference {max_diff:.2e}",
            arm.len()
        );
        assert!(max_diff < 1e-4, "{tag}: confidence differs by {max_diff}");
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// One demo bundle (6 epochs) and the x86 binary's answers on the demo test set, shared
/// by both architectures' tests.
struct Setup {
    _dir: tempfile::TempDir,
    bundle: PathBuf,
    rows: Vec<(String, String)>,
    input: String,
    x86: Vec<Value>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let bundle = train_demo_bundle(dir.path(), 6);
        let rows = csv_texts_and_labels(&repo_root().join("models/demo/test.csv"));
        let input: String = rows.iter().map(|(t, _)| format!("{t}\n")).collect();
        let x86: Vec<Value> = run_ok(
            "device",
            &["classify", "--bundle", s(&bundle)],
            Some(input.as_bytes()),
        )
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        assert_eq!(x86.len(), rows.len());
        Setup {
            _dir: dir,
            bundle,
            rows,
            input,
            x86,
        }
    })
}

#[test]
fn aarch64_predictions_match_x86() {
    let Some(bin) = AARCH64.device() else { return };
    for cpu in ["cortex-a72", "cortex-a76"] {
        AARCH64.check(&bin, cpu, &[], "");
    }
}

/// The tract-linalg matmul kernels (`armv7neon_mmm_*`, `armvfpv2_mmm_*`) one armv7
/// classification enters: qemu-arm logs the address of every block it translates
/// (`-d in_asm`) and where it loaded the binary (`-d page`); the kernels' addresses come
/// from the binary's symbols (`arm-linux-gnueabihf-nm`). None when nm is missing.
fn armv7_kernels_entered(bin: &Path, env: &[(&str, &str)]) -> Option<Vec<String>> {
    let nm = Command::new("arm-linux-gnueabihf-nm")
        .arg(bin)
        .output()
        .ok()?;
    if !nm.status.success() {
        return None;
    }
    let kernels: Vec<(u64, String)> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, kind, name) = (f.next()?, f.next()?, f.next()?);
            let kernel = name.starts_with("armv7neon_mmm_") || name.starts_with("armvfpv2_mmm_");
            (kernel && (kind == "T" || kind == "t"))
                .then(|| Some((u64::from_str_radix(addr, 16).ok()?, name.to_string())))
                .flatten()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("qemu.log");
    let out = Command::new(ARMV7.qemu)
        .args([
            "-cpu",
            "cortex-a7",
            "-L",
            ARMV7.sysroot,
            "-d",
            "page,in_asm",
            "-D",
        ])
        .arg(&log)
        .arg(bin)
        .args([
            "classify",
            "--bundle",
            s(&setup().bundle),
            "turn on the lights",
        ])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = std::fs::read_to_string(&log).unwrap();
    let base = log
        .lines()
        .find_map(|l| l.strip_prefix("start_code"))
        .and_then(|v| u64::from_str_radix(v.trim().trim_start_matches("0x"), 16).ok())
        .expect("qemu -d page prints start_code");
    let entered: std::collections::HashSet<u64> = log
        .lines()
        .filter_map(|l| l.strip_prefix("0x")?.split(':').next())
        .filter_map(|a| u64::from_str_radix(a, 16).ok())
        .collect();
    let mut names: Vec<String> = kernels
        .into_iter()
        .filter(|(a, _)| entered.contains(&(base + a)))
        .map(|(_, n)| n)
        .collect();
    names.sort();
    Some(names)
}

#[test]
fn armv7_predictions_match_x86() {
    let Some(bin) = ARMV7.device() else { return };
    match armv7_kernels_entered(&bin, &[("TRACT_CPU_ARM32_NEON", "true")]) {
        Some(k) => {
            println!("armv7 with NEON runs tract's kernels {k:?}");
            assert!(
                !k.is_empty() && k.iter().all(|n| n.starts_with("armv7neon_mmm_f32")),
                "{k:?}"
            );
            let vfp = armv7_kernels_entered(&bin, &[("TRACT_CPU_ARM32_NEON", "false")]).unwrap();
            println!("armv7 without NEON runs {vfp:?}");
            assert!(vfp.iter().all(|n| n.starts_with("armvfpv2_")), "{vfp:?}");
        }
        None => println!("note: arm-linux-gnueabihf-nm missing: kernel selection not checked"),
    }
    let neon = [("TRACT_CPU_ARM32_NEON", "true")];
    for cpu in ["cortex-a7", "max"] {
        ARMV7.check(&bin, cpu, &neon, " (NEON kernels)");
    }
    ARMV7.check(
        &bin,
        "cortex-a7",
        &[("TRACT_CPU_ARM32_NEON", "false")],
        " (VFP kernels, no NEON)",
    );
}
