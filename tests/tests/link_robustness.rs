//! The serial link under a careless or hostile peer: late answers from an earlier host
//! process, floods of bad frames with nobody reading, empty texts. Real binaries over
//! pseudo-terminal pairs.

mod link_support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use e2e::{run, run_ok, train_demo_bundle};
use link_support::{pty, RawHost, Relay, Rng, Serve};
use protocol::{truncated, Request, RequestDecoder, Response, Source, TopK, TopTokens};
use serde_json::Value;

/// One demo bundle (tiny preset, 6 epochs) shared by every test of this binary.
fn demo_bundle() -> &'static Path {
    static B: OnceLock<PathBuf> = OnceLock::new();
    B.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        train_demo_bundle(&dir, 6)
    })
}

/// The label `device classify` gives `text` (the reference answer).
fn reference_label(bundle: &Path, text: &str) -> String {
    let out = run_ok(
        "device",
        &["classify", "--bundle", bundle.to_str().unwrap()],
        Some(format!("{text}\n").as_bytes()),
    );
    let v: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    v["label"].as_str().unwrap().to_string()
}

fn result(id: u32, label_index: u16) -> Response {
    Response::Result {
        id,
        source: Source::Request,
        label_index,
        confidence: 0.9,
        top_k: TopK::new(),
        top_tokens: TopTokens::new(),
        inference_us: 100,
        rejected: false,
    }
}

/// A board that is slow to answer: a scripted device on a pty that answers the
/// handshake at once, leaves the first `Classify` unanswered (its sender times out and
/// exits), and answers the next `Classify` only after delivering the late answer to the
/// first one, the way a busy device that finally got to it would.
#[test]
fn a_late_answer_to_an_earlier_process_is_never_taken_for_a_new_request() {
    const LABELS: [&str; 2] = ["lights_off", "play_music"];
    let p = pty();
    let mut port = p.master.try_clone_native().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let first_classify: Arc<Mutex<Option<u32>>> = Arc::default();
    let device = {
        let (stop, first) = (Arc::clone(&stop), Arc::clone(&first_classify));
        std::thread::spawn(move || {
            let mut dec = RequestDecoder::new();
            let mut buf = [0u8; 256];
            let send = |port: &mut serialport::TTYPort, r: &Response| {
                use std::io::Write;
                port.write_all(&protocol::encode_to_vec(r).unwrap())
                    .unwrap();
            };
            while !stop.load(Ordering::SeqCst) {
                let n = match port.read(&mut buf) {
                    Ok(n) => n,
                    Err(_) => continue,
                };
                let reqs: Vec<_> = dec.feed(&buf[..n]).collect();
                for req in reqs {
                    match req {
                        Ok(Request::Hello { id, .. }) => send(
                            &mut port,
                            &Response::Info {
                                id,
                                protocol_version: protocol::PROTOCOL_VERSION,
                                software_version: truncated("scripted"),
                                model_name: truncated("two labels"),
                                model_sha256: [7; 32],
                                label_count: 2,
                                max_text_len: 256,
                            },
                        ),
                        Ok(Request::GetLabels { id, offset }) => {
                            let mut labels = protocol::LabelPage::new();
                            for l in LABELS.iter().skip(usize::from(offset)) {
                                labels.push(truncated(l)).unwrap();
                            }
                            send(
                                &mut port,
                                &Response::Labels {
                                    id,
                                    offset,
                                    total: 2,
                                    labels,
                                },
                            );
                        }
                        Ok(Request::Classify { id, text }) => {
                            let mut first = first.lock().unwrap();
                            match *first {
                                // The first process's request: the device is busy.
                                None => *first = Some(id),
                                // The late answer to it, then the right one.
                                Some(old) => {
                                    assert_eq!(text.as_str(), "play music");
                                    send(&mut port, &result(old, 0));
                                    send(&mut port, &result(id, 1));
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        })
    };

    let timed_out = run(
        "tools",
        &[
            "classify",
            "--serial",
            &p.path,
            "--timeout-ms",
            "300",
            "--retries",
            "0",
            "turn off the lights",
        ],
        None,
    );
    assert!(
        !timed_out.status.success(),
        "the first request must time out"
    );
    assert!(first_classify.lock().unwrap().is_some());

    let out = run_ok(
        "tools",
        &["classify", "--serial", &p.path, "--json", "play music"],
        None,
    );
    stop.store(true, Ordering::SeqCst);
    device.join().unwrap();
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        v["label"], "play_music",
        "the late answer to the earlier process's request was taken: {out}"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Waits for the answer with `id`, skipping whatever else is still in the line.
fn answer(host: &mut RawHost, id: u32) -> Response {
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(r)) = host.recv(Duration::from_millis(200)) {
            if r.id() == Some(id) {
                return r;
            }
        }
    }
    panic!("no answer with id {id} within 30 s");
}

/// The soak test of docs/link.md: 1 M two-byte bad frames with nobody reading, then
/// 10 MB of random bytes with a slow reader. The service's resident memory stays within
/// twice its idle figure (the documented bound), and it then answers a handshake and a
/// classification correctly.
#[test]
fn a_flood_of_bad_frames_keeps_memory_bounded_and_the_service_correct() {
    let bundle = demo_bundle();
    let text = "turn on the kitchen lights";
    let expected = reference_label(bundle, text);
    let p = pty();
    let serve = Serve::start(bundle, &p.path, &[]);
    let pid = serve.child.id();
    let mut host = RawHost::new(p.master);
    host.send_bytes(&[0]);

    // Idle: model loaded, its plans built by a first classification.
    host.send(&Request::classify(1, text).unwrap());
    assert!(matches!(answer(&mut host, 1), Response::Result { .. }));
    std::thread::sleep(Duration::from_millis(200));
    let idle = rss_kib(pid);
    let mut peak = idle;

    // 1 M bad frames (`01 00`: a frame with no payload), nobody reading the answers.
    let chunk: Vec<u8> = [1u8, 0].repeat(32 * 1024);
    for _ in 0..(1_000_000 / (32 * 1024) + 1) {
        host.send_bytes(&chunk);
        peak = peak.max(rss_kib(pid));
    }

    // 10 MB of random bytes while a reader drains the answers slowly (1 KiB / 5 ms).
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let mut port = host.port.try_clone_native().unwrap();
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while !stop.load(Ordering::SeqCst) {
                let _ = port.read(&mut buf);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let mut rng = Rng::new(0xf100d);
    let mut bytes = vec![0u8; 64 * 1024];
    for _ in 0..(10 * 1024 * 1024 / bytes.len()) {
        for b in bytes.iter_mut() {
            *b = rng.next() as u8;
        }
        host.send_bytes(&bytes);
        peak = peak.max(rss_kib(pid));
    }
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();
    peak = peak.max(rss_kib(pid));
    eprintln!("device serve RSS: idle {idle} KiB, peak during the flood {peak} KiB");
    assert!(
        peak <= 2 * idle,
        "RSS grew from {idle} KiB idle to {peak} KiB under the flood"
    );

    // Still correct: the random bytes' last frame is ended, then a handshake and a
    // classification with the right label, and the drops are counted.
    host.send_bytes(&[0]);
    host.send(&Request::hello(2));
    assert!(matches!(answer(&mut host, 2), Response::Info { .. }));
    host.send(&Request::GetLabels { id: 3, offset: 0 });
    let Response::Labels { labels, total, .. } = answer(&mut host, 3) else {
        panic!("expected Labels");
    };
    let mut names: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
    let mut offset = names.len();
    while offset < usize::from(total) {
        let id = 100 + offset as u32;
        host.send(&Request::GetLabels {
            id,
            offset: offset as u16,
        });
        let Response::Labels { labels, .. } = answer(&mut host, id) else {
            panic!("expected Labels");
        };
        names.extend(labels.iter().map(|l| l.to_string()));
        offset = names.len();
    }
    host.send(&Request::classify(4, text).unwrap());
    let Response::Result { label_index, .. } = answer(&mut host, 4) else {
        panic!("expected a Result");
    };
    assert_eq!(names[usize::from(label_index)], expected);
    host.send(&Request::GetStats { id: 5 });
    let Response::Stats {
        queue_drops,
        decode_errors,
        ..
    } = answer(&mut host, 5)
    else {
        panic!("expected Stats");
    };
    assert!(decode_errors >= 1_000_000, "decode_errors {decode_errors}");
    assert!(queue_drops > 0, "dropped error answers are counted");
}

/// An empty or blank text over the link is answered as rejected with no label (there is
/// nothing to classify), both to a raw `Classify` and through `tools classify`.
#[test]
fn empty_text_over_the_link_is_answered_unknown() {
    let bundle = demo_bundle();
    let p = pty();
    let serve = Serve::start(bundle, &p.path, &[]);
    let mut host = RawHost::new(p.master.try_clone_native().unwrap());
    host.send_bytes(&[0]);
    host.send(&Request::hello(1));
    let Response::Info { label_count, .. } = answer(&mut host, 1) else {
        panic!("expected Info");
    };
    for (id, text) in [(2, ""), (3, "   \t ")] {
        host.send(&Request::classify(id, text).unwrap());
        match answer(&mut host, id) {
            Response::Result {
                rejected,
                label_index,
                top_k,
                ..
            } => {
                assert!(rejected, "{text:?} must be rejected");
                assert_eq!(label_index, label_count, "{text:?}: no label");
                assert!(top_k.is_empty());
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
    drop((host, serve, p));

    // Through `tools classify` (host end of a relay: tools and device on two ptys).
    let relay = Relay::new(3);
    let _serve = Serve::start(bundle, relay.device_path(), &[]);
    let out = run_ok(
        "tools",
        &["classify", "--serial", &relay.host_path, "--json", "  "],
        None,
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["label"], "unknown", "{out}");
    assert_eq!(v["reason"], "empty", "{out}");
    assert_eq!(v["rejected"], true, "{out}");
    let text = run_ok(
        "tools",
        &["classify", "--serial", &relay.host_path, ""],
        None,
    );
    assert!(text.starts_with("unknown (empty text)"), "{text}");
}
