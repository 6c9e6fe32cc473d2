//! Keys, signatures and the local all-or-nothing install (issue #5), with the real
//! binaries: `tools keygen`, `tools export --sign`, `tools sign`, `tools deploy --to DIR`,
//! `device classify --trust/--state`.
//!
//! One tiny model is trained (1 epoch) and exported signed once per test binary; the
//! other bundles are copies of it with an edited manifest (re-signed), so each test
//! costs seconds, not a training run.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use e2e::{bin, edit_manifest, run, run_err, run_ok, sha256_file, train_demo_bundle};
use serde_json::Value;

struct Setup {
    dir: PathBuf,
    /// Signed by `owner` (tools export --sign).
    signed: PathBuf,
    /// The same model, unsigned (plain tools export).
    unsigned: PathBuf,
    owner_key: PathBuf,
    owner_pub: PathBuf,
    owner_id: String,
    stranger_key: PathBuf,
    stranger_pub: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        // Kept for the whole test binary (a static is never dropped): under target/tmp,
        // not /tmp, so `cargo clean` removes it.
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        let unsigned = train_demo_bundle(&dir, 1);
        let keygen = |name: &str| {
            let out = run_ok("tools", &["keygen", "--out", s(&dir.join(name))], None);
            let id = out
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("key id "))
                .expect("keygen prints the key id")
                .to_string();
            (
                dir.join(format!("{name}.key")),
                dir.join(format!("{name}.pub")),
                id,
            )
        };
        let (owner_key, owner_pub, owner_id) = keygen("owner");
        let (stranger_key, stranger_pub, _) = keygen("stranger");
        let signed = dir.join("signed");
        let out = run(
            "tools",
            &[
                "export",
                "--model",
                s(&dir.join("ckpt")),
                "--out",
                s(&signed),
                "--sign",
                s(&owner_key),
            ],
            None,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("signed by key {owner_id}")),
            "{stderr}"
        );
        assert!(signed.join("manifest.sig").is_file());
        Setup {
            dir,
            signed,
            unsigned,
            owner_key,
            owner_pub,
            owner_id,
            stranger_key,
            stranger_pub,
        }
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn copy_bundle(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

/// Edits `manifest.json` of `dir` as JSON.
fn sign(dir: &Path, key: &Path) {
    run_ok(
        "tools",
        &["sign", "--bundle", s(dir), "--key", s(key)],
        None,
    );
}

/// A copy of the signed bundle named `name`, re-signed by the owner.
fn renamed(name: &str) -> PathBuf {
    let st = setup();
    let dst = st.dir.join(format!("{name}-{}", unique()));
    copy_bundle(&st.signed, &dst);
    edit_manifest(&dst, |m| m["name"] = Value::String(name.into()));
    sign(&dst, &st.owner_key);
    dst
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn deploy_args<'a>(state: &'a Path, bundle: &'a Path, trust: &'a Path) -> Vec<&'a str> {
    vec![
        "deploy",
        "--to",
        s(state),
        "--bundle",
        s(bundle),
        "--trust",
        s(trust),
    ]
}

/// `device classify --state` on one text: (bundle name from the stderr report, label).
fn classify_state(state: &Path) -> (String, String) {
    let st = setup();
    let out = run(
        "device",
        &[
            "classify",
            "--state",
            s(state),
            "--trust",
            s(&st.owner_pub),
            "turn on the lights",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "classify --state failed: {stderr}");
    let name = stderr
        .split(" name \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no bundle name reported: {stderr}"))
        .to_string();
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    (name, line["label"].as_str().unwrap().to_string())
}

#[test]
fn keys_and_signed_classify() {
    let st = setup();
    let text = "turn on the lights";

    // Signed + trusted key: classifies and says by which key.
    let out = run(
        "device",
        &[
            "classify",
            "--bundle",
            s(&st.signed),
            "--trust",
            s(&st.owner_pub),
            text,
        ],
        None,
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("signed by trusted key {}", st.owner_id)),
        "{stderr}"
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(line["label"].is_string());

    // Wrong key: refused, naming the key.
    let err = run_err(
        "device",
        &[
            "classify",
            "--bundle",
            s(&st.signed),
            "--trust",
            s(&st.stranger_pub),
            text,
        ],
        None,
    );
    assert!(
        err.contains(&format!("signature by key {} is not trusted", st.owner_id)),
        "{err}"
    );
    // Several --trust keys: any one is enough.
    run_ok(
        "device",
        &[
            "classify",
            "--bundle",
            s(&st.signed),
            "--trust",
            s(&st.stranger_pub),
            "--trust",
            s(&st.owner_pub),
            text,
        ],
        None,
    );

    // Unsigned bundle with --trust: refused.
    let err = run_err(
        "device",
        &[
            "classify",
            "--bundle",
            s(&st.unsigned),
            "--trust",
            s(&st.owner_pub),
            text,
        ],
        None,
    );
    assert!(err.contains("manifest.sig missing"), "{err}");

    // No flags: loads, with a warning (the quick start keeps working).
    let out = run(
        "device",
        &["classify", "--bundle", s(&st.unsigned), text],
        None,
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARNING") && stderr.contains("signature not checked"),
        "{stderr}"
    );

    // --allow-unsigned: loads, loudly.
    let out = run(
        "device",
        &[
            "classify",
            "--bundle",
            s(&st.unsigned),
            "--allow-unsigned",
            text,
        ],
        None,
    );
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("WARNING: --allow-unsigned"), "{stderr}");

    // A tampered manifest (label renamed, sha256 sums intact) fails the signature.
    let tampered = st.dir.join("tampered-manifest");
    copy_bundle(&st.signed, &tampered);
    edit_manifest(&tampered, |m| {
        m["labels"][0] = Value::String("unlock_door".into())
    });
    let err = run_err(
        "device",
        &[
            "classify",
            "--bundle",
            s(&tampered),
            "--trust",
            s(&st.owner_pub),
            text,
        ],
        None,
    );
    assert!(err.contains("signature does not verify"), "{err}");

    // Bad key files: named, with the problem; never a panic.
    let missing = st.dir.join("nope.pub");
    let err = run_err(
        "device",
        &[
            "classify",
            "--bundle",
            s(&st.signed),
            "--trust",
            s(&missing),
            text,
        ],
        None,
    );
    assert!(
        err.contains(&format!("key file {}: not found", missing.display())),
        "{err}"
    );
    let malformed = st.dir.join("malformed.pub");
    fs::write(&malformed, "ssh-ed25519 AAAA...\n").unwrap();
    let err = run_err(
        "device",
        &[
            "classify",
            "--bundle",
            s(&st.signed),
            "--trust",
            s(&malformed),
            text,
        ],
        None,
    );
    assert!(
        err.contains("malformed.pub: malformed: first line is"),
        "{err}"
    );
    let short = st.dir.join("short.pub");
    fs::write(
        &short,
        format!(
            "edge-classifier ed25519 public key v1\n{}\n",
            "ab".repeat(16)
        ),
    )
    .unwrap();
    let err = run_err(
        "device",
        &[
            "classify",
            "--bundle",
            s(&st.signed),
            "--trust",
            s(&short),
            text,
        ],
        None,
    );
    assert!(
        err.contains("short.pub: wrong key length: 16 bytes"),
        "{err}"
    );
    let err = run_err(
        "tools",
        &["sign", "--bundle", s(&st.signed), "--key", s(&st.owner_pub)],
        None,
    );
    assert!(
        err.contains("this is a public key file, a secret key is needed"),
        "{err}"
    );

    // keygen refuses to overwrite a key.
    let before = fs::read(&st.owner_key).unwrap();
    let err = run_err(
        "tools",
        &["keygen", "--out", s(&st.dir.join("owner"))],
        None,
    );
    assert!(
        err.contains("owner.key: already exists; refusing to overwrite"),
        "{err}"
    );
    assert_eq!(fs::read(&st.owner_key).unwrap(), before);
    let mode = {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(&st.owner_key).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode, 0o600);
}

#[test]
fn deploy_refuses_bad_bundles_keeps_current_and_rolls_back() {
    let st = setup();
    let state = st.dir.join(format!("state-{}", unique()));
    let trust = &st.owner_pub;

    // --state needs an explicit trust choice.
    let err = run_err("device", &["classify", "--state", s(&state), "x"], None);
    assert!(err.contains("needs --trust"), "{err}");
    let err = run_err(
        "tools",
        &["deploy", "--to", s(&state), "--bundle", s(&st.signed)],
        None,
    );
    assert!(err.contains("--trust"), "{err}");

    let a = renamed("model-a");
    let out = run_ok("tools", &deploy_args(&state, &a, trust), None);
    assert!(
        out.contains("installed bundle") && out.contains("self-test"),
        "{out}"
    );
    assert_eq!(classify_state(&state).0, "model-a");

    let refused = |bundle: &Path, want: &str| {
        let err = run_err("tools", &deploy_args(&state, bundle, trust), None);
        assert!(err.contains(want), "expected {want:?}: {err}");
        assert_eq!(
            classify_state(&state).0,
            "model-a",
            "current changed after: {err}"
        );
    };

    // One flipped byte in model.onnx of a signed bundle.
    let flipped = renamed("flipped");
    let model = flipped.join("model.onnx");
    let mut bytes = fs::read(&model).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&model, bytes).unwrap();
    refused(&flipped, "file model.onnx: sha256 mismatch");

    // Label renamed in the manifest without re-signing.
    let tampered = renamed("tampered");
    edit_manifest(&tampered, |m| {
        m["labels"][0] = Value::String("unlock_door".into())
    });
    refused(&tampered, "signature does not verify");

    // Signed by a key the board does not trust.
    let foreign = renamed("foreign");
    sign(&foreign, &st.stranger_key);
    refused(&foreign, "is not trusted");

    // Unsigned.
    refused(&st.unsigned, "manifest.sig missing");

    // Intact and validly signed, but the tokenizer (a valid one) has more tokens than
    // the model's embedding table: the self-test refuses it.
    let big_vocab = renamed("big-vocab");
    let tok_path = big_vocab.join("tokenizer.json");
    let mut tok: Value = serde_json::from_str(&fs::read_to_string(&tok_path).unwrap()).unwrap();
    let vocab = tok["model"]["vocab"].as_object_mut().unwrap();
    let next = vocab.values().filter_map(Value::as_u64).max().unwrap() + 1;
    for i in 0..10_000 {
        vocab.insert(format!("zzextra{i}"), Value::from(next + i));
    }
    fs::write(&tok_path, serde_json::to_string(&tok).unwrap()).unwrap();
    let sha = sha256_file(&tok_path);
    edit_manifest(&big_vocab, |m| {
        m["files"]["tokenizer.json"] = Value::String(sha)
    });
    sign(&big_vocab, &st.owner_key);
    refused(&big_vocab, "self-test failed");

    // A corrupted model with matching sha256 and signature (signed by mistake).
    let broken = renamed("broken-model");
    let model = broken.join("model.onnx");
    let bytes = fs::read(&model).unwrap();
    fs::write(&model, &bytes[..bytes.len() / 3]).unwrap();
    let sha = sha256_file(&model);
    edit_manifest(&broken, |m| m["files"]["model.onnx"] = Value::String(sha));
    sign(&broken, &st.owner_key);
    refused(&broken, "self-test failed");

    // Nothing half-installed is left behind.
    let leftovers: Vec<String> = fs::read_dir(&state)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("staging-") || n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A second good bundle, then rollback and forward again.
    let b = renamed("model-b");
    run_ok("tools", &deploy_args(&state, &b, trust), None);
    assert_eq!(classify_state(&state).0, "model-b");
    let status: Value = serde_json::from_str(&run_ok(
        "tools",
        &["deploy", "--to", s(&state), "--status"],
        None,
    ))
    .unwrap();
    assert_eq!(status["current"]["name"], "model-b");
    assert_eq!(status["previous"]["name"], "model-a");
    let out = run_ok(
        "tools",
        &[
            "deploy",
            "--to",
            s(&state),
            "--rollback",
            "--trust",
            s(trust),
        ],
        None,
    );
    assert!(out.contains("rolled back"), "{out}");
    assert_eq!(classify_state(&state).0, "model-a");
    run_ok(
        "tools",
        &[
            "deploy",
            "--to",
            s(&state),
            "--rollback",
            "--trust",
            s(trust),
        ],
        None,
    );
    assert_eq!(classify_state(&state).0, "model-b");

    // Bit rot in the current bundle on the card: classify falls back to previous, loudly.
    let cur_id = status["current"]["id"].as_str().unwrap();
    let rotten = state.join("bundles").join(cur_id).join("tokenizer.json");
    let mut bytes = fs::read(&rotten).unwrap();
    bytes[10] ^= 0x20;
    fs::write(&rotten, bytes).unwrap();
    let out = run(
        "device",
        &[
            "classify",
            "--state",
            s(&state),
            "--trust",
            s(trust),
            "turn on the lights",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("FALLING BACK to the previous bundle"),
        "{stderr}"
    );
    assert!(stderr.contains("name \"model-a\" (previous;"), "{stderr}");

    // An unusable state directory is named with the problem.
    let file = st.dir.join("not-a-dir");
    fs::write(&file, b"").unwrap();
    let err = run_err("tools", &deploy_args(&file, &b, trust), None);
    assert!(
        err.contains("not-a-dir: exists and is not a directory"),
        "{err}"
    );
    let err = run_err("tools", &deploy_args(&file.join("sub"), &b, trust), None);
    assert!(err.contains("cannot create bundles/"), "{err}");
    let err = run_err(
        "device",
        &[
            "classify",
            "--state",
            s(&st.dir.join("absent")),
            "--trust",
            s(trust),
            "x",
        ],
        None,
    );
    assert!(err.contains("absent: does not exist"), "{err}");
}

/// xorshift64*: seeded, so a failing trial can be replayed.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn killed_installs_leave_the_old_or_the_new_bundle_current() {
    const TRIALS: usize = 20;
    let st = setup();
    let state = st.dir.join(format!("state-kill-{}", unique()));
    let first = renamed("kill-0");
    run_ok("tools", &deploy_args(&state, &first, &st.owner_pub), None);

    // Bundles for every trial first (signing is not what is being timed).
    let bundles: Vec<PathBuf> = (1..=TRIALS + 2)
        .map(|i| renamed(&format!("kill-{i}")))
        .collect();

    // Two full installs, timed (the faster counts), to spread the kill points over the
    // duration of one install including process start.
    let mut full = std::time::Duration::MAX;
    for b in &bundles[TRIALS..] {
        let t = Instant::now();
        run_ok("tools", &deploy_args(&state, b, &st.owner_pub), None);
        full = full.min(t.elapsed());
    }
    let mut current = classify_state(&state).0;
    assert_eq!(current, format!("kill-{}", TRIALS + 2));

    let mut rng = Rng(0x5eed_0005_dead_beef);
    let (mut old, mut new, mut finished) = (0, 0, 0);
    for (i, bundle) in bundles[..TRIALS].iter().enumerate() {
        let name = format!("kill-{}", i + 1);
        // The first trial is killed at once and the last one is left to finish, so both
        // outcomes occur whatever the machine's speed; the rest spread over the install.
        let delay = match i {
            0 => std::time::Duration::ZERO,
            _ if i == TRIALS - 1 => full * 10,
            _ => full.mul_f64(1.2 * rng.next_f64()),
        };
        let mut child = Command::new(bin("tools"))
            .args(deploy_args(&state, bundle, &st.owner_pub))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let killed = matches!(child.try_wait(), Ok(None));
        let _ = child.kill();
        let status = child.wait().unwrap();
        if !killed {
            assert!(status.success(), "trial {i}: deploy failed on its own");
            finished += 1;
        }
        let (now, label) = classify_state(&state);
        assert!(!label.is_empty());
        assert!(
            now == current || now == name,
            "trial {i} (kill after {delay:?}): current is {now}, expected {current} or {name}"
        );
        if now == name {
            new += 1;
        } else {
            old += 1;
        }
        current = now;
    }
    println!(
        "kill trials: one install takes {:.0} ms; {TRIALS} trials killed at 0..1.2x{:.0} ms: \
         {old} left the old bundle current, {new} the new one ({finished} finished before the kill)",
        full.as_secs_f64() * 1e3,
        full.as_secs_f64() * 1e3
    );
    assert!(
        old > 0 && new > 0,
        "kill points did not cover the install: old {old}, new {new}"
    );
    // No stale staging directory survives the next open.
    let leftovers = fs::read_dir(&state)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            n.to_string_lossy().starts_with("staging-")
        })
        .count();
    assert_eq!(leftovers, 0);
    // At most current and previous remain installed.
    assert!(fs::read_dir(state.join("bundles")).unwrap().count() <= 3);
}
