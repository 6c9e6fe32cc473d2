//! Helpers for the end-to-end tests in `tests/tests/`: find the real binaries, the
//! repository's shipped data, and the shared benchmark data (when present).
//!
//! The binaries are the release (or debug) builds of `tools` and `device` next to this
//! test executable; `cargo test --workspace` builds them because both crates have
//! integration tests of their own (`device/tests/`, `tools/tests/`): cargo builds a
//! package's binaries only for its own integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The workspace root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of a workspace binary (`tools`, `device`) built with the same profile as the tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target/<profile>");
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} not built: run `cargo build --release --workspace` (or cargo test --workspace)",
        path.display()
    );
    path
}

/// Runs a binary with arguments and optional stdin; returns its output.
pub fn run(name: &str, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin(name))
        .args(args)
        .current_dir(repo_root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin piped");
        pipe.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait for child")
}

/// Runs and asserts success; returns stdout as a string.
pub fn run_ok(name: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(name, args, stdin);
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Runs, asserts failure, and returns stderr.
pub fn run_err(name: &str, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(name, args, stdin);
    assert!(
        !out.status.success(),
        "{name} {args:?} should have failed; stdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{name} panicked: {stderr}");
    stderr
}

/// `../shared/data/<name>` when present; otherwise prints one skip line and returns None.
pub fn shared_data(name: &str) -> Option<PathBuf> {
    let dir = repo_root()
        .parent()
        .map(|p| p.join("shared/data").join(name));
    match dir {
        Some(d) if d.is_dir() => Some(d),
        _ => {
            println!("skipped: ../shared/data/{name} is not present (benchmark data lives outside the repository)");
            None
        }
    }
}

/// The all-MiniLM-L6-v2 checkpoint fetched by `tools/scripts/fetch_minilm.sh` (into the
/// ignored `.cache/`); otherwise prints one skip line and returns None.
pub fn minilm_checkpoint() -> Option<PathBuf> {
    let dir = repo_root().join(".cache/minilm-l6");
    if dir.join("model.safetensors").is_file() {
        Some(dir)
    } else {
        println!("skipped: .cache/minilm-l6 is not present (run tools/scripts/fetch_minilm.sh)");
        None
    }
}

/// The texts (first column) of a `text,label` CSV, parsed minimally (quotes handled).
pub fn csv_texts_and_labels(path: &Path) -> Vec<(String, String)> {
    let data = std::fs::read_to_string(path).expect("read csv");
    let mut rows = Vec::new();
    for record in parse_csv(&data).into_iter().skip(1) {
        if record.len() >= 2 {
            rows.push((record[0].clone(), record[1].clone()));
        }
    }
    rows
}

fn parse_csv(data: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = data.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', true) => quoted = false,
            ('"', false) if field.is_empty() => quoted = true,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            ('\r', false) => {}
            (c, _) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Trains the tiny preset on the shipped demo data for `epochs` and exports it; returns
/// the bundle directory (inside `dir`).
pub fn train_demo_bundle(dir: &Path, epochs: u32) -> PathBuf {
    train_bundle(dir, &repo_root().join("models/demo/train.csv"), epochs)
}

/// Trains the tiny preset on `train` for `epochs` into `dir/ckpt` and exports it to
/// `dir/bundle`, which it returns.
pub fn train_bundle(dir: &Path, train: &Path, epochs: u32) -> PathBuf {
    let ckpt = dir.join("ckpt");
    let bundle = dir.join("bundle");
    let epochs = epochs.to_string();
    let (train, ckpt_s) = (train.to_str().unwrap(), ckpt.to_str().unwrap());
    run_ok(
        "tools",
        &[
            "train", "--train", train, "--out", ckpt_s, "--epochs", &epochs, "--quiet",
        ],
        None,
    );
    run_ok(
        "tools",
        &[
            "export",
            "--model",
            ckpt_s,
            "--out",
            bundle.to_str().unwrap(),
        ],
        None,
    );
    bundle
}

/// Rewrites a bundle's `manifest.json` through `f` (tests that tamper with bundles).
pub fn edit_manifest(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    f(&mut m);
    std::fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
}

/// Lowercase sha256 hex of a file, by `sha256sum` (keeps this crate free of a hash
/// dependency, and independent of the code under test).
pub fn sha256_file(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}
