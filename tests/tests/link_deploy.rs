//! Model update over the serial link (issue #5): `tools deploy --serial PORT --bundle B`
//! to `device serve --state DIR --trust KEY.pub`, through a pty relay.
//!
//! One tiny model is trained (1 epoch) and exported once per test binary; the bundles
//! are signed copies of it with different manifest names (so different manifests and
//! transfers, the same model.onnx).

mod link_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e::{bin, edit_manifest, run, run_ok, sha256_file, train_demo_bundle};
use link_support::{RawHost, Relay, Rng, Serve};
use protocol::{Request, Response};
use serde_json::Value;

struct Setup {
    dir: PathBuf,
    bundle: PathBuf,
    owner_key: PathBuf,
    owner_pub: PathBuf,
    stranger_key: PathBuf,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap()
            .keep();
        let bundle = train_demo_bundle(&dir, 1);
        for name in ["owner", "stranger"] {
            run_ok("tools", &["keygen", "--out", s(&dir.join(name))], None);
        }
        Setup {
            bundle,
            owner_key: dir.join("owner.key"),
            owner_pub: dir.join("owner.pub"),
            stranger_key: dir.join("stranger.key"),
            dir,
        }
    })
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A copy of the trained bundle named `name`, signed with `key`.
fn bundle_named(name: &str, key: &Path) -> PathBuf {
    bundle_from(&setup().bundle, name, key)
}

/// The trained model quantised and exported (variants weights-int8, the manifest's
/// default, and int8-compute), once per test binary.
fn int8_bundle() -> &'static Path {
    static INT8: OnceLock<PathBuf> = OnceLock::new();
    INT8.get_or_init(|| {
        let st = setup();
        let (ckpt, q, out) = (
            st.dir.join("ckpt"),
            st.dir.join("ckpt-int8"),
            st.dir.join("bundle-int8"),
        );
        run_ok(
            "tools",
            &["quantize", "--model", s(&ckpt), "--out", s(&q)],
            None,
        );
        run_ok(
            "tools",
            &["export", "--model", s(&q), "--out", s(&out)],
            None,
        );
        out
    })
}

/// A copy of the bundle `src` named `name`, signed with `key`.
fn bundle_from(src: &Path, name: &str, key: &Path) -> PathBuf {
    let st = setup();
    let dst = st.dir.join(format!("{name}-{}", unique()));
    fs::create_dir_all(&dst).unwrap();
    for e in fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
    let path = dst.join("manifest.json");
    let mut m: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    m["name"] = Value::String(name.into());
    fs::write(&path, serde_json::to_string_pretty(&m).unwrap()).unwrap();
    run_ok(
        "tools",
        &["sign", "--bundle", s(&dst), "--key", s(key)],
        None,
    );
    dst
}

/// A state directory with `first` installed (tools deploy --to).
fn state_with(first: &Path) -> (tempfile::TempDir, PathBuf) {
    let st = setup();
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let state = tmp.path().join("state");
    run_ok(
        "tools",
        &[
            "deploy",
            "--to",
            s(&state),
            "--bundle",
            s(first),
            "--trust",
            s(&st.owner_pub),
        ],
        None,
    );
    (tmp, state)
}

fn serve(state: &Path, relay: &Relay) -> Serve {
    let st = setup();
    Serve::start_with(&[
        "--state",
        s(state),
        "--trust",
        s(&st.owner_pub),
        "--serial",
        relay.device_path(),
    ])
}

fn deploy_cmd(port: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin("tools"));
    c.args(["deploy", "--serial", port])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// `tools deploy --serial PORT EXTRA...`: (success, stdout JSON or Null, stderr).
fn deploy(port: &str, extra: &[&str]) -> (bool, Value, String) {
    let out = deploy_cmd(port, extra).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), json, stderr)
}

/// The model name the device reports in `Info` (a raw Hello over the host pty).
fn info_name(port: &str) -> String {
    let p = serialport::new(port, 115_200)
        .timeout(Duration::from_millis(20))
        .open_native()
        .unwrap();
    let mut host = RawHost::new(p);
    host.send_bytes(&[0]);
    let id = 0x7000_0000 + unique() as u32;
    host.send(&Request::hello(id));
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(10) {
        if let Some(Ok(Response::Info {
            id: got,
            model_name,
            ..
        })) = host.recv(Duration::from_secs(1))
        {
            if got == id {
                return model_name.to_string();
            }
        }
    }
    panic!("no Info from the device");
}

/// `tools classify --serial` works (returns the label).
fn classify_over_link(port: &str) -> String {
    let out = run_ok(
        "tools",
        &["classify", "--serial", port, "--json", "turn on the lights"],
        None,
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    v["label"].as_str().unwrap().to_string()
}

/// `device classify --state` (a fresh start of the board): the bundle name it reports.
fn state_name(state: &Path) -> Result<String, String> {
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
    if !out.status.success() {
        return Err(stderr);
    }
    stderr
        .split(" name \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .map(str::to_string)
        .ok_or(stderr)
}

/// (a) a deploy of a second bundle switches the served model; (d) rollback over the link
/// returns to the first. Reports the throughput.
#[test]
fn deploy_over_the_link_switches_model_and_rolls_back() {
    let st = setup();
    let v1 = bundle_named("demo-v1", &st.owner_key);
    let v2 = bundle_named("demo-v2", &st.owner_key);
    let (_tmp, state) = state_with(&v1);
    let relay = Relay::new(21);
    let _serve = serve(&state, &relay);
    assert_eq!(info_name(&relay.host_path), "demo-v1");

    let (ok, j, err) = deploy(&relay.host_path, &["--bundle", s(&v2)]);
    assert!(ok, "{err}");
    assert_eq!(j["model_name"], "demo-v2", "{j}");
    assert_eq!(j["was"], "demo-v1");
    assert_eq!(j["resumed_from"], 0);
    assert!(j["bytes_sent"].as_u64().unwrap() >= j["total_bytes"].as_u64().unwrap());
    eprintln!(
        "deploy over the pty: {} bytes in {:.2} s = {:.0} B/s = {:.1}x the raw rate of 115200 baud \
         (a pty has no baud limit), commit {:.2} s",
        j["total_bytes"],
        j["transfer_s"].as_f64().unwrap(),
        j["bytes_per_s"].as_f64().unwrap(),
        j["link_share"].as_f64().unwrap(),
        j["commit_s"].as_f64().unwrap()
    );
    assert!(err.contains("% of the raw link rate"), "{err}");
    assert_eq!(info_name(&relay.host_path), "demo-v2");
    assert!(!classify_over_link(&relay.host_path).is_empty());
    assert_eq!(state_name(&state).unwrap(), "demo-v2");
    // No transfer files left behind.
    let left: Vec<_> = fs::read_dir(&state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("incoming-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // (d) rollback.
    let (ok, j, err) = deploy(&relay.host_path, &["--rollback"]);
    assert!(ok, "{err}");
    assert_eq!(j["model_name"], "demo-v1", "{j}");
    // Intact, validly signed, but the model is broken (truncated, then hashed and signed
    // by mistake): the device's self-test refuses it.
    let broken = bundle_named("demo-broken", &st.owner_key);
    let model = broken.join("model.onnx");
    let bytes = fs::read(&model).unwrap();
    fs::write(&model, &bytes[..bytes.len() / 3]).unwrap();
    let sha = sha256_file(&model);
    edit_manifest(&broken, |m| m["files"]["model.onnx"] = Value::String(sha));
    run_ok(
        "tools",
        &["sign", "--bundle", s(&broken), "--key", s(&st.owner_key)],
        None,
    );
    let (ok, _, err) = deploy(&relay.host_path, &["--bundle", s(&broken)]);
    eprintln!("failing self-test: {err}");
    assert!(!ok);
    assert!(
        err.contains("refused") && err.contains("self-test"),
        "{err}"
    );
    // The bytes were intact, so the device keeps them: a second try sends nothing.
    let held = part_len(&state);
    assert!(held > 0, "the transfer was dropped after a refused install");
    let (ok, _, err) = deploy(&relay.host_path, &["--bundle", s(&broken)]);
    assert!(!ok && err.contains("self-test"), "{err}");
    assert!(
        err.contains(&format!("holds {held} bytes of this transfer; resuming")),
        "{err}"
    );

    assert_eq!(info_name(&relay.host_path), "demo-v1");
    assert!(!classify_over_link(&relay.host_path).is_empty());
    assert_eq!(state_name(&state).unwrap(), "demo-v1");
}

/// (c) a bundle with a flipped byte, and one signed by an untrusted key, are refused with
/// the reason; the old model keeps serving. A device serving `--bundle` refuses deploys.
#[test]
fn bad_bundles_are_refused_over_the_link() {
    let st = setup();
    let v1 = bundle_named("demo-v1", &st.owner_key);
    let (_tmp, state) = state_with(&v1);
    let relay = Relay::new(22);
    let _serve = serve(&state, &relay);

    let flipped = bundle_named("demo-flipped", &st.owner_key);
    let model = flipped.join("model.onnx");
    let mut bytes = fs::read(&model).unwrap();
    let k = bytes.len() / 2;
    bytes[k] ^= 0x01;
    fs::write(&model, bytes).unwrap();
    let (ok, _, err) = deploy(&relay.host_path, &["--bundle", s(&flipped)]);
    eprintln!("flipped byte: {err}");
    assert!(!ok);
    assert!(err.contains("refused"), "{err}");
    assert!(
        err.contains("sha256") || err.contains("model.onnx"),
        "{err}"
    );

    let stranger = bundle_named("demo-stranger", &st.stranger_key);
    let (ok, _, err) = deploy(&relay.host_path, &["--bundle", s(&stranger)]);
    eprintln!("wrong key: {err}");
    assert!(!ok);
    assert!(err.contains("untrusted key"), "{err}");

    assert_eq!(info_name(&relay.host_path), "demo-v1");
    assert!(!classify_over_link(&relay.host_path).is_empty());
    assert_eq!(state_name(&state).unwrap(), "demo-v1");

    // --bundle: no state directory to install into.
    let relay2 = Relay::new(23);
    let _plain = Serve::start(&v1, relay2.device_path(), &[]);
    let (ok, _, err) = deploy(&relay2.host_path, &["--bundle", s(&stranger)]);
    assert!(!ok);
    assert!(err.contains("deploy needs --state"), "{err}");
}

/// `device serve --variant int8-compute` keeps running that variant on a bundle deployed
/// over the link and after a rollback (the manifests' default is weights-int8).
#[test]
fn a_pinned_variant_holds_across_deploy_and_rollback() {
    let st = setup();
    let a = bundle_from(int8_bundle(), "demo-int8-a", &st.owner_key);
    let b = bundle_from(int8_bundle(), "demo-int8-b", &st.owner_key);
    let (_tmp, state) = state_with(&a);
    let relay = Relay::new(26);
    let serve = Serve::start_with(&[
        "--state",
        s(&state),
        "--trust",
        s(&st.owner_pub),
        "--serial",
        relay.device_path(),
        "--variant",
        "int8-compute",
    ]);
    let (ok, j, err) = deploy(&relay.host_path, &["--bundle", s(&b)]);
    assert!(ok, "{err}");
    assert_eq!(j["model_name"], "demo-int8-b", "{j}");
    let (ok, j, err) = deploy(&relay.host_path, &["--rollback"]);
    assert!(ok, "{err}");
    assert_eq!(j["model_name"], "demo-int8-a", "{j}");
    let log = serve.log();
    let served: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("now serving bundle"))
        .collect();
    assert_eq!(served.len(), 2, "{log}");
    for line in served {
        assert!(line.ends_with("variant int8-compute"), "{line}");
    }
}

/// Size of the device's transfer file, if any.
fn part_len(state: &Path) -> u64 {
    fs::read_dir(state)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

fn kill(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

/// (b) a deploy interrupted at a (seeded) random point resumes and sends fewer bytes.
#[test]
fn interrupted_deploy_resumes() {
    let st = setup();
    let v1 = bundle_named("demo-v1", &st.owner_key);
    let v2 = bundle_named("demo-v2", &st.owner_key);
    let total = fs::read_dir(&v2)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum::<u64>();
    let (_tmp, state) = state_with(&v1);
    let relay = Relay::new(24);
    let _serve = serve(&state, &relay);

    let mut rng = Rng::new(0xdeb1);
    let fraction = 0.2 + (rng.next() % 600) as f64 / 1000.0; // 0.2..0.8
    let stop_at = (total as f64 * fraction) as u64;
    let child = deploy_cmd(&relay.host_path, &["--bundle", s(&v2)])
        .spawn()
        .unwrap();
    let t = Instant::now();
    while part_len(&state) < stop_at {
        assert!(t.elapsed() < Duration::from_secs(60), "transfer stalled");
        std::thread::sleep(Duration::from_millis(2));
    }
    kill(child);
    let held = part_len(&state);
    assert!(held > 0 && held < total, "{held} of {total}");
    assert_eq!(info_name(&relay.host_path), "demo-v1");

    let (ok, j, err) = deploy(&relay.host_path, &["--bundle", s(&v2)]);
    assert!(ok, "{err}");
    assert_eq!(j["model_name"], "demo-v2");
    let resumed = j["resumed_from"].as_u64().unwrap();
    assert!(resumed > 0, "{j}");
    assert!(
        j["bytes_sent"].as_u64().unwrap() < j["total_bytes"].as_u64().unwrap(),
        "{j}"
    );
    eprintln!(
        "interrupted at {:.0}%: resumed from {resumed} of {} bytes, sent {}",
        fraction * 100.0,
        j["total_bytes"],
        j["bytes_sent"]
    );
    assert_eq!(info_name(&relay.host_path), "demo-v2");
}

/// (e) the device killed at random points of a deploy (transfer, commit, switch) always
/// starts again with the old or the new model, never neither.
#[test]
fn device_killed_during_deploy_keeps_old_or_new_model() {
    let st = setup();
    let a = bundle_named("demo-a", &st.owner_key);
    let b = bundle_named("demo-b", &st.owner_key);
    let (_tmp, state) = state_with(&a);
    let relay = Relay::new(25);

    // One complete deploy, timed, sets the range of the kill delays.
    let t = Instant::now();
    {
        let _serve = serve(&state, &relay);
        let (ok, _, err) = deploy(&relay.host_path, &["--bundle", s(&b)]);
        assert!(ok, "{err}");
    }
    let full = t.elapsed();
    assert_eq!(state_name(&state).unwrap(), "demo-b");

    let mut rng = Rng::new(0x0e0e);
    let (mut switched, mut trials) = (0, 0);
    let start = Instant::now();
    let mut name = "demo-b".to_string();
    while trials < 20 {
        trials += 1;
        let target = if name == "demo-a" { &b } else { &a };
        let mut serve = serve(&state, &relay);
        let child = deploy_cmd(&relay.host_path, &["--bundle", s(target)])
            .spawn()
            .unwrap();
        let delay = full.mul_f64((rng.next() % 1000) as f64 / 1000.0);
        std::thread::sleep(delay);
        let _ = serve.child.kill();
        let _ = serve.child.wait();
        kill(child);
        drop(serve);
        let now = state_name(&state)
            .unwrap_or_else(|e| panic!("trial {trials}: the board does not start: {e}"));
        assert!(
            now == "demo-a" || now == "demo-b",
            "trial {trials}: unexpected model {now}"
        );
        if now != name {
            switched += 1;
        }
        name = now;
    }
    eprintln!(
        "{trials} device kills during deploys ({:.1} s, full deploy {:.2} s): always old or new; \
         {switched} completed before the kill",
        start.elapsed().as_secs_f64(),
        full.as_secs_f64()
    );
}
