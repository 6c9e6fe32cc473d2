//! The serial link end to end, without hardware: `device serve` on one end of a
//! pseudo-terminal "cable", the `tools` commands (or a raw protocol host) on the other.

mod link_support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2e::{bin, repo_root, run_err, run_ok, train_demo_bundle};
use link_support::{bench_json, eval_accuracy, pty, RawHost, Relay, Serve};
use protocol::{ErrorCode, Request, Response, Source};
use serde_json::Value;

/// One demo bundle (tiny preset, 6 epochs) shared by every test of this binary.
fn demo_bundle() -> &'static Path {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        train_demo_bundle(&dir, 6)
    })
}

fn demo_test() -> PathBuf {
    repo_root().join("models/demo/test.csv")
}

/// Labels `device classify` gives each text (the reference answers).
fn reference_labels(bundle: &Path, texts: &[&str]) -> Vec<String> {
    let input: String = texts.iter().map(|t| format!("{t}\n")).collect();
    run_ok(
        "device",
        &["classify", "--bundle", bundle.to_str().unwrap()],
        Some(input.as_bytes()),
    )
    .lines()
    .map(|l| {
        serde_json::from_str::<Value>(l).unwrap()["label"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .collect()
}

fn read_jsonl(p: &Path) -> Vec<Value> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn link_bench_over_pty_matches_eval_and_in_process() {
    let bundle = demo_bundle();
    let scratch = tempfile::tempdir().unwrap();
    let relay = Relay::new(1);
    let _serve = Serve::start(bundle, relay.device_path(), &[]);
    let data = demo_test();
    let rows = e2e::csv_texts_and_labels(&data).len();
    let hist = scratch.path().join("latency.svg");
    let v = bench_json(&[
        "--serial",
        &relay.host_path,
        "--data",
        data.to_str().unwrap(),
        "--concurrency",
        "2",
        "--histogram",
        hist.to_str().unwrap(),
    ]);
    println!("bench over pty: {v}");
    assert_eq!(v["n"], rows);
    assert_eq!(v["answered"], rows, "every query answered: {v}");
    assert_eq!(v["errors"], 0);
    let eval = eval_accuracy(bundle, &data, scratch.path());
    assert_eq!(
        v["accuracy"].as_f64().unwrap(),
        eval,
        "bench over the link = tools eval"
    );
    for k in [
        "rtt_p50_us",
        "rtt_p99_us",
        "device_p50_us",
        "device_p99_us",
        "wire_p50_us",
    ] {
        assert!(v[k].as_u64().unwrap() > 0, "{k} in {v}");
    }
    assert!(v["rtt_p50_us"].as_u64() >= v["device_p50_us"].as_u64());
    assert!(v["device_stats"]["inferences"].as_u64().unwrap() >= rows as u64);
    assert!(std::fs::read_to_string(&hist).unwrap().starts_with("<svg"));

    // The same measurement in-process: same accuracy, no link.
    let local = bench_json(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--histogram",
        scratch.path().join("local.svg").to_str().unwrap(),
    ]);
    assert_eq!(local["mode"], "in-process");
    assert_eq!(local["answered"], rows);
    assert_eq!(local["accuracy"].as_f64().unwrap(), eval);

    // Text report: percentiles, wire bound and accuracy are printed.
    let text = run_ok(
        "tools",
        &[
            "bench",
            "--serial",
            &relay.host_path,
            "--data",
            data.to_str().unwrap(),
            "-n",
            "20",
            "--quiet",
            "--histogram",
            hist.to_str().unwrap(),
        ],
        None,
    );
    for needle in [
        "p50 ms",
        "p99 ms",
        "round trip",
        "wire lower bound",
        "accuracy",
        "throughput",
    ] {
        assert!(text.contains(needle), "{needle} missing in:\n{text}");
    }
}

#[test]
fn link_classify_answers_like_device_classify() {
    let bundle = demo_bundle();
    let relay = Relay::new(2);
    let _serve = Serve::start(bundle, relay.device_path(), &[]);
    let text = "turn on the kitchen lights";
    let expected = &reference_labels(bundle, &[text])[0];
    let out = run_ok(
        "tools",
        &["classify", "--serial", &relay.host_path, "--json", text],
        None,
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["label"].as_str().unwrap(), expected);
    assert!(v["confidence"].as_f64().unwrap() > 0.0);
    assert!(v["inference_us"].as_u64().unwrap() > 0);
    assert!(!v["top_tokens"].as_array().unwrap().is_empty());
    // Human-readable form names the label and the device time.
    let out = run_ok(
        "tools",
        &["classify", "--serial", &relay.host_path, text],
        None,
    );
    assert!(
        out.starts_with(expected.as_str()) && out.contains("µs"),
        "{out}"
    );
}

/// Raw frames straight onto the device's pty: garbage, flipped bits, truncated,
/// oversize, invalid UTF-8, unknown kinds, wrong version. Each is counted and answered
/// (with the request id where one is recoverable), and the service keeps answering.
#[test]
fn link_faults_are_counted_answered_and_survived() {
    let bundle = demo_bundle();
    let p = pty();
    let _serve = Serve::start(bundle, &p.path, &[]);
    let mut host = RawHost::new(p.master);
    host.send_bytes(&[0]);

    // Healthy first.
    host.send(&Request::Ping { id: 1, nonce: 5 });
    assert_eq!(host.expect("ping"), Response::Pong { id: 1, nonce: 5 });

    let error = |r: Response| match r {
        Response::Error { id, code, .. } => (id, code),
        other => panic!("expected an Error, got {other:?}"),
    };
    // 1. Garbage ended by a delimiter.
    host.send_bytes(b"\x13\x37garbage\xff\xfe\x00");
    let (id, code) = error(host.expect("garbage"));
    assert_eq!(id, None);
    assert!(
        matches!(code, ErrorCode::BadFrame | ErrorCode::BadCrc),
        "{code}"
    );

    // 2. A flipped bit inside a valid Classify frame → CRC failure.
    let mut f = protocol::encode_to_vec(&Request::classify(2, "lights on").unwrap()).unwrap();
    f[6] ^= 0x04;
    host.send_bytes(&f);
    assert_eq!(error(host.expect("bit flip")), (None, ErrorCode::BadCrc));

    // 3. Truncated frame (first half, then the delimiter).
    let f = protocol::encode_to_vec(&Request::classify(3, "turn the lights off").unwrap()).unwrap();
    host.send_bytes(&f[..f.len() / 2]);
    host.send_bytes(&[0]);
    let (id, code) = error(host.expect("truncated"));
    assert_eq!(id, None);
    assert!(
        matches!(code, ErrorCode::BadFrame | ErrorCode::BadCrc),
        "{code}"
    );

    // 4. Oversize: 3000 bytes without a delimiter.
    host.send_bytes(&[0x55; 3000]);
    host.send_bytes(&[0]);
    assert_eq!(
        error(host.expect("oversize")),
        (None, ErrorCode::FrameTooLong)
    );

    // 5. Invalid UTF-8 with a correct CRC: the id is recovered.
    host.send_bytes(&raw_frame(&[0x02, 0x07, 0x03, b'a', 0xff, b'b']));
    assert_eq!(
        error(host.expect("utf8")),
        (Some(7), ErrorCode::InvalidUtf8)
    );

    // 6. Unknown message kind (tag 9, id 8).
    host.send_bytes(&raw_frame(&[0x09, 0x08, 0x01, 0x02]));
    assert_eq!(
        error(host.expect("unknown")),
        (Some(8), ErrorCode::UnknownMessage)
    );

    // 7. Wrong protocol version.
    host.send(&Request::Hello {
        id: 9,
        protocol_version: 999,
    });
    assert_eq!(
        error(host.expect("version")),
        (Some(9), ErrorCode::VersionMismatch)
    );

    // 8. Trailing bytes after a valid message (CRC fine) → DecodeFailed with id.
    host.send_bytes(&raw_frame(&[0x03, 0x0a, 0x01, 0xee]));
    assert_eq!(
        error(host.expect("trailing")),
        (Some(10), ErrorCode::DecodeFailed)
    );

    // Still serving correctly: handshake, labels, a classification with its id.
    host.send(&Request::hello(11));
    let labels = match host.expect("info") {
        Response::Info {
            id: 11,
            label_count,
            max_text_len: 256,
            ..
        } => label_count,
        other => panic!("{other:?}"),
    };
    host.send(&Request::GetLabels { id: 12, offset: 0 });
    let names: Vec<String> = match host.expect("labels") {
        Response::Labels {
            id: 12,
            total,
            labels: page,
            ..
        } => {
            assert_eq!(total, labels);
            page.iter().map(|l| l.to_string()).collect()
        }
        other => panic!("{other:?}"),
    };
    let text = "turn on the kitchen lights";
    host.send(&Request::classify(13, text).unwrap());
    match host.expect("classify") {
        Response::Result {
            id: 13,
            source: Source::Request,
            label_index,
            ..
        } => {
            assert_eq!(
                names[usize::from(label_index)],
                reference_labels(bundle, &[text])[0]
            )
        }
        other => panic!("{other:?}"),
    }
    host.send(&Request::GetStats { id: 14 });
    match host.expect("stats") {
        Response::Stats {
            id: 14,
            frames_in,
            crc_failures,
            decode_errors,
            inferences,
            latency_p50_us,
            ..
        } => {
            assert_eq!(
                crc_failures,
                1 + u32::from(false),
                "only the bit flip fails its CRC for sure"
            );
            // garbage/truncated may count as either bucket; the rest are decode errors.
            assert!(decode_errors >= 5, "decode_errors {decode_errors}");
            assert!(frames_in >= 13, "frames_in {frames_in}");
            assert_eq!(inferences, 1);
            assert!(latency_p50_us > 0);
        }
        other => panic!("{other:?}"),
    }
}

/// `COBS(message ‖ CRC) ‖ 0`, for hand-made messages.
fn raw_frame(msg: &[u8]) -> Vec<u8> {
    let mut payload = msg.to_vec();
    payload.extend_from_slice(&protocol::crc::crc32(msg).to_le_bytes());
    let mut out = vec![0u8; payload.len() + 2 + payload.len() / 254];
    let n = protocol::framing::cobs_encode(&payload, &mut out).unwrap();
    out.truncate(n);
    out.push(0);
    out
}

#[test]
fn link_survives_unplug_and_replug() {
    let bundle = demo_bundle();
    let relay = Relay::new(3);
    let mut serve = Serve::start(bundle, relay.device_path(), &[]);
    let classify = |timeout: &str, retries: &str| {
        e2e::run(
            "tools",
            &[
                "classify",
                "--serial",
                &relay.host_path,
                "--json",
                "--timeout-ms",
                timeout,
                "--retries",
                retries,
                "lights on please",
            ],
            None,
        )
    };
    let before = classify("2000", "0");
    assert!(
        before.status.success(),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );

    relay.unplug();
    serve.wait_for_log("lost", Duration::from_secs(5));
    // Unplugged: the host gets a clear error, not a hang or a wrong answer.
    let during = classify("300", "0");
    assert!(!during.status.success());
    let msg = String::from_utf8_lossy(&during.stderr);
    assert!(
        msg.contains("no answer") && !msg.contains("panicked"),
        "{msg}"
    );
    std::thread::sleep(Duration::from_millis(600));
    assert!(
        serve.alive(),
        "device serve exited when its port vanished:\n{}",
        serve.log()
    );

    relay.replug();
    serve.wait_for_log("open again", Duration::from_secs(10));
    let after = classify("2000", "3");
    assert!(
        after.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&after.stderr),
        serve.log()
    );
    let (a, b): (Value, Value) = (
        serde_json::from_slice(&before.stdout).unwrap(),
        serde_json::from_slice(&after.stdout).unwrap(),
    );
    assert_eq!(a["label"], b["label"]);
    assert_eq!(a["model"], b["model"]);
    assert!(serve.alive());
}

/// 1% of bytes corrupted in both directions: no wrong answer is ever accepted, every
/// query either matches the clean run or fails with a clear error, and the device keeps
/// serving and counts the CRC failures.
#[test]
fn link_one_percent_corruption_never_yields_a_wrong_answer() {
    let bundle = demo_bundle();
    let scratch = tempfile::tempdir().unwrap();
    let relay = Relay::new(0x5eed);
    let _serve = Serve::start(bundle, relay.device_path(), &["--queue", "64"]);
    let data = demo_test();
    let hist = scratch.path().join("h.svg");
    let (clean_p, noisy_p) = (
        scratch.path().join("clean.jsonl"),
        scratch.path().join("noisy.jsonl"),
    );
    let n = "200";
    let clean = bench_json(&[
        "--serial",
        &relay.host_path,
        "--data",
        data.to_str().unwrap(),
        "-n",
        n,
        "--concurrency",
        "4",
        "--histogram",
        hist.to_str().unwrap(),
        "--predictions",
        clean_p.to_str().unwrap(),
    ]);
    assert_eq!(clean["errors"], 0);

    // Corrupt from the first frame after the handshake (Info + one Labels page).
    relay.set_corruption(0.01);
    relay.arm_after_device_frames(2);
    let noisy = bench_json(&[
        "--serial",
        &relay.host_path,
        "--data",
        data.to_str().unwrap(),
        "-n",
        n,
        "--concurrency",
        "8",
        "--timeout-ms",
        "400",
        "--histogram",
        hist.to_str().unwrap(),
        "--predictions",
        noisy_p.to_str().unwrap(),
    ]);
    println!("noisy bench: {noisy}");
    let corrupted = relay.corrupted.load(std::sync::atomic::Ordering::Relaxed);
    assert!(corrupted > 50, "the relay corrupted only {corrupted} bytes");
    let (clean, noisy_rows) = (read_jsonl(&clean_p), read_jsonl(&noisy_p));
    assert_eq!(noisy_rows.len(), 200);
    let (mut answered, mut failed) = (0, 0);
    for (c, q) in clean.iter().zip(&noisy_rows) {
        assert_eq!(c["row"], q["row"]);
        if let Some(label) = q.get("label") {
            assert_eq!(
                label, &c["label"],
                "a corrupted exchange produced a different answer: {q}"
            );
            answered += 1;
        } else {
            let e = q["error"].as_str().expect("an error message");
            assert!(
                e.contains("no answer to request") || e.contains("device answered"),
                "unclear error: {e}"
            );
            failed += 1;
        }
    }
    println!("1% corruption: {answered} answered correctly, {failed} failed cleanly, {corrupted} bytes corrupted");
    assert!(
        answered > 0 && failed > 0,
        "answered {answered}, failed {failed}"
    );
    assert_eq!(noisy["answered"], answered);

    // Clean again: the device still answers, and it counted the damage.
    relay.set_corruption(0.0);
    let after = bench_json(&[
        "--serial",
        &relay.host_path,
        "--data",
        data.to_str().unwrap(),
        "-n",
        "20",
        "--histogram",
        hist.to_str().unwrap(),
    ]);
    assert_eq!(after["errors"], 0, "{after}");
    let stats = &after["device_stats"];
    assert!(stats["crc_failures"].as_u64().unwrap() > 0, "{stats}");
    assert!(
        stats["frames_in"].as_u64() > stats["inferences"].as_u64(),
        "{stats}"
    );
}

#[test]
fn link_monitor_prints_local_input_results() {
    let bundle = demo_bundle();
    let scratch = tempfile::tempdir().unwrap();
    let input = scratch.path().join("local.txt");
    std::fs::write(&input, "").unwrap();
    let relay = Relay::new(4);
    let _serve = Serve::start(
        bundle,
        relay.device_path(),
        &["--input", input.to_str().unwrap()],
    );
    let mut monitor = Command::new(bin("tools"))
        .args([
            "monitor",
            "--serial",
            &relay.host_path,
            "--json",
            "--count",
            "3",
            "--duration",
            "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(monitor.stdout.take().unwrap()).lines();
    let info: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(info["kind"], "info");
    assert_eq!(info["labels"].as_array().unwrap().len(), 15);

    let texts = [
        "turn on the kitchen lights",
        "what is the weather tomorrow",
        "play some jazz",
    ];
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    for t in texts {
        writeln!(f, "{t}").unwrap();
    }
    drop(f);
    let t0 = Instant::now();
    let results: Vec<Value> = lines
        .take(3)
        .map(|l| serde_json::from_str(&l.unwrap()).unwrap())
        .collect();
    assert!(monitor.wait().unwrap().success());
    assert!(t0.elapsed() < Duration::from_secs(30));
    let expected = reference_labels(bundle, &texts);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["kind"], "result");
        assert_eq!(r["source"], "local");
        assert_eq!(r["seq"], i);
        assert_eq!(r["label"].as_str().unwrap(), expected[i], "{r}");
    }
}

#[test]
fn link_bad_cli_input_is_a_clear_error() {
    let bundle = demo_bundle();
    let b = bundle.to_str().unwrap();
    let e = run_err(
        "device",
        &["serve", "--bundle", b, "--serial", "/dev/does-not-exist"],
        None,
    );
    assert!(
        e.contains("cannot open serial port /dev/does-not-exist"),
        "{e}"
    );
    let e = run_err(
        "device",
        &[
            "serve",
            "--bundle",
            b,
            "--serial",
            "/dev/null",
            "--baud",
            "0",
        ],
        None,
    );
    assert!(e.contains("invalid baud rate 0"), "{e}");
    let e = run_err(
        "device",
        &[
            "serve",
            "--bundle",
            b,
            "--serial",
            "/dev/null",
            "--baud",
            "fast",
        ],
        None,
    );
    assert!(e.contains("--baud"), "{e}");
    let e = run_err(
        "device",
        &[
            "serve",
            "--bundle",
            "/no/such/bundle",
            "--serial",
            "/dev/null",
        ],
        None,
    );
    assert!(e.contains("/no/such/bundle"), "{e}");
    let e = run_err(
        "device",
        &[
            "serve",
            "--bundle",
            b,
            "--serial",
            "/dev/null",
            "--input",
            "/no/such/file",
        ],
        None,
    );
    assert!(e.contains("/no/such/file"), "{e}");
    // Sizes that would allocate without bound, or a clock past its range: refused by
    // the flag's parser, naming the flag.
    for (flag, value) in [
        ("--queue", "10000000000"),
        ("--workers", "100000"),
        ("--queue", "0"),
    ] {
        let e = run_err(
            "device",
            &["serve", "--bundle", b, "--serial", "/dev/null", flag, value],
            None,
        );
        assert!(e.contains(flag) && e.contains(value), "{e}");
    }
    for value in ["inf", "NaN", "-1", "1e300"] {
        let flag = format!("--duration={value}");
        let e = run_err("tools", &["monitor", "--serial", "/dev/null", &flag], None);
        assert!(e.contains("--duration") && e.contains("seconds"), "{e}");
    }
    let e = run_err(
        "tools",
        &[
            "bench",
            "--bundle",
            b,
            "--data",
            "models/demo/test.csv",
            "-n",
            "1000000000000",
        ],
        None,
    );
    assert!(e.contains("-n") && e.contains("1000000000000"), "{e}");
    // Output paths are checked before the run: nothing measured is thrown away, and a
    // picture never lands on the CSV's name.
    let e = run_err(
        "tools",
        &[
            "bench",
            "--bundle",
            b,
            "--data",
            "models/demo/test.csv",
            "--histogram",
            "/no/such/dir/h.svg",
        ],
        None,
    );
    assert!(
        e.contains("--histogram") && e.contains("no directory /no/such/dir"),
        "{e}"
    );
    let e = run_err(
        "tools",
        &[
            "eval",
            "--model",
            b,
            "--data",
            "models/demo/test.csv",
            "--confusion",
            "/tmp/c.svg",
        ],
        None,
    );
    assert!(e.contains("--confusion /tmp/c.svg"), "{e}");

    let e = run_err(
        "tools",
        &["classify", "--serial", "/dev/does-not-exist", "hi"],
        None,
    );
    assert!(
        e.contains("cannot open serial port /dev/does-not-exist"),
        "{e}"
    );
    let e = run_err(
        "tools",
        &["classify", "--serial", "/dev/null", "--baud", "0", "hi"],
        None,
    );
    assert!(e.contains("invalid baud rate"), "{e}");
    let e = run_err("tools", &["bench", "--data", "models/demo/test.csv"], None);
    assert!(e.contains("--serial") && e.contains("--bundle"), "{e}");
    let e = run_err(
        "tools",
        &[
            "bench",
            "--serial",
            "/dev/does-not-exist",
            "--data",
            "models/demo/test.csv",
        ],
        None,
    );
    assert!(e.contains("cannot open serial port"), "{e}");
    let e = run_err(
        "tools",
        &["bench", "--bundle", b, "--data", "/no/such.csv"],
        None,
    );
    assert!(e.contains("/no/such.csv"), "{e}");
    let e = run_err(
        "tools",
        &["monitor", "--serial", "/dev/does-not-exist"],
        None,
    );
    assert!(e.contains("cannot open serial port"), "{e}");
    // A port that answers nothing: a timeout, not a hang.
    let p = pty();
    let e = run_err(
        "tools",
        &["classify", "--serial", &p.path, "--timeout-ms", "200", "hi"],
        None,
    );
    assert!(e.contains("no answer"), "{e}");
}

/// A board as deployed: `device serve --state DIR --trust KEY.pub` serves the bundle that
/// `tools deploy --to DIR` installed (signed), and refuses to start from a state directory
/// without a trust decision.
#[test]
fn link_serves_a_deployed_signed_state_dir() {
    let bundle = demo_bundle();
    let tmp = tempfile::tempdir().unwrap();
    let signed = tmp.path().join("signed");
    std::fs::create_dir(&signed).unwrap();
    for f in std::fs::read_dir(bundle).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), signed.join(f.file_name())).unwrap();
    }
    let key = tmp.path().join("owner");
    let (key_s, signed_s) = (key.to_str().unwrap(), signed.to_str().unwrap());
    run_ok("tools", &["keygen", "--out", key_s], None);
    let (secret, public) = (format!("{key_s}.key"), format!("{key_s}.pub"));
    run_ok(
        "tools",
        &["sign", "--bundle", signed_s, "--key", &secret],
        None,
    );
    let state = tmp.path().join("state");
    let state_s = state.to_str().unwrap();
    run_ok(
        "tools",
        &[
            "deploy", "--to", state_s, "--bundle", signed_s, "--trust", &public,
        ],
        None,
    );

    let relay = Relay::new(11);
    let out = std::process::Command::new(e2e::bin("device"))
        .args(["serve", "--state", state_s, "--serial", relay.device_path()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs --trust"), "{err}");

    let _serve = Serve::start_with(&[
        "--state",
        state_s,
        "--trust",
        &public,
        "--serial",
        relay.device_path(),
    ]);
    let text = "turn on the kitchen lights";
    let expected = &reference_labels(bundle, &[text])[0];
    let out = run_ok(
        "tools",
        &["classify", "--serial", &relay.host_path, "--json", text],
        None,
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["label"].as_str().unwrap(), expected);
}
