//! Test fixtures for the serial-link tests: pseudo-terminal "cables", a relay between
//! two of them that can corrupt bytes and be unplugged, and a `device serve` child.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::{bin, repo_root};
use serialport::{SerialPort, TTYPort};

/// One pty pair: the test keeps both ends open; other processes open `path`.
pub struct Pty {
    pub master: TTYPort,
    pub slave: TTYPort,
    pub path: String,
}

pub fn pty() -> Pty {
    let (master, slave) = TTYPort::pair().expect("pty pair");
    // pair() opens without O_CLOEXEC: child processes (`device serve`) would inherit
    // the master and keep the "cable" alive after an unplug. Keep close-on-exec
    // duplicates only (the window before this is microseconds).
    let (mut master, slave) = (
        master.try_clone_native().expect("dup master"),
        slave.try_clone_native().expect("dup slave"),
    );
    let path = slave.name().expect("pty name");
    master.set_timeout(Duration::from_millis(5)).unwrap();
    Pty {
        master,
        slave,
        path,
    }
}

/// xorshift64*: a small seeded generator, so fault runs are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

type Slot = Arc<Mutex<Option<TTYPort>>>;

/// host process ⇄ [host pty] ⇄ relay (this process) ⇄ [device pty] ⇄ `device serve`.
///
/// The device opens `device_link`, a symlink to its pty, so the pty can be
/// "unplugged" (closed: the device sees a hang-up) and "plugged back" as a new pty
/// behind the same path, like a USB adapter re-enumerating.
pub struct Relay {
    pub host_path: String,
    pub device_link: PathBuf,
    _dir: tempfile::TempDir,
    dev_r: Slot,
    dev_w: Slot,
    dev_slave: Slot,
    host_keep: Pty,
    /// Probability of corrupting a byte, per million.
    ppm: Arc<AtomicU32>,
    /// Corruption only starts after this many more device→host frames (0 = now).
    arm_after: Arc<AtomicU32>,
    pub corrupted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    pub fn new(seed: u64) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let host = pty();
        let device_link = dir.path().join("ttyDEVICE");
        let mut relay = Relay {
            host_path: host.path.clone(),
            device_link,
            _dir: dir,
            dev_r: Arc::default(),
            dev_w: Arc::default(),
            dev_slave: Arc::default(),
            host_keep: Pty {
                master: host.master.try_clone_native().unwrap(),
                slave: host.slave,
                path: host.path,
            },
            ppm: Arc::default(),
            arm_after: Arc::default(),
            corrupted: Arc::default(),
            stop: Arc::default(),
            threads: Vec::new(),
        };
        relay.replug();
        let host_r = host.master;
        let host_w: Slot = Arc::new(Mutex::new(Some(
            relay.host_keep.master.try_clone_native().unwrap(),
        )));
        let host_r: Slot = Arc::new(Mutex::new(Some(host_r)));
        // host → device
        relay.threads.push(pump(
            host_r,
            Arc::clone(&relay.dev_w),
            Rng::new(seed),
            Arc::clone(&relay.ppm),
            (Arc::clone(&relay.arm_after), false),
            Arc::clone(&relay.corrupted),
            Arc::clone(&relay.stop),
        ));
        // device → host
        relay.threads.push(pump(
            Arc::clone(&relay.dev_r),
            host_w,
            Rng::new(seed.wrapping_mul(31).wrapping_add(7)),
            Arc::clone(&relay.ppm),
            (Arc::clone(&relay.arm_after), true),
            Arc::clone(&relay.corrupted),
            Arc::clone(&relay.stop),
        ));
        relay
    }

    /// Corrupt this fraction of bytes in both directions (XOR with a random non-zero byte).
    pub fn set_corruption(&self, fraction: f64) {
        self.ppm.store((fraction * 1e6) as u32, Ordering::SeqCst);
    }

    /// Start corrupting (both directions) only after `frames` more device→host frames.
    pub fn arm_after_device_frames(&self, frames: u32) {
        self.arm_after.store(frames, Ordering::SeqCst);
    }

    /// Close the device's pty: the device sees a hang-up and its path vanishes.
    pub fn unplug(&self) {
        *self.dev_r.lock().unwrap() = None;
        *self.dev_w.lock().unwrap() = None;
        *self.dev_slave.lock().unwrap() = None;
        let _ = std::fs::remove_file(&self.device_link);
    }

    /// A new device pty behind the same `device_link` path.
    pub fn replug(&self) {
        let p = pty();
        let tmp = self.device_link.with_extension("new");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&p.path, &tmp).unwrap();
        std::fs::rename(&tmp, &self.device_link).unwrap();
        *self.dev_w.lock().unwrap() = Some(p.master.try_clone_native().unwrap());
        *self.dev_r.lock().unwrap() = Some(p.master);
        *self.dev_slave.lock().unwrap() = Some(p.slave);
    }

    pub fn device_path(&self) -> &str {
        self.device_link.to_str().unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn pump(
    from: Slot,
    to: Slot,
    mut rng: Rng,
    ppm: Arc<AtomicU32>,
    (arm, counts_frames): (Arc<AtomicU32>, bool),
    corrupted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::SeqCst) {
            let n = {
                let mut g = from.lock().unwrap();
                match g.as_mut() {
                    Some(p) => p.read(&mut buf).unwrap_or_default(),
                    None => 0,
                }
            };
            if n == 0 {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            }
            let rate = ppm.load(Ordering::SeqCst);
            for b in &mut buf[..n] {
                let armed = arm.load(Ordering::SeqCst) == 0;
                if armed && rate > 0 && rng.next() % 1_000_000 < u64::from(rate) {
                    let x = (rng.next() % 255 + 1) as u8;
                    *b ^= x;
                    corrupted.fetch_add(1, Ordering::Relaxed);
                } else if *b == 0 && counts_frames {
                    let _ =
                        arm.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1));
                }
            }
            if let Some(p) = to.lock().unwrap().as_mut() {
                let _ = p.write_all(&buf[..n]);
            }
        }
    })
}

/// A running `device serve`; killed on drop. Its stderr is collected.
pub struct Serve {
    pub child: Child,
    pub stderr: Arc<Mutex<String>>,
}

impl Serve {
    pub fn start(bundle: &Path, port: &str, extra: &[&str]) -> Serve {
        let mut args = vec!["--bundle", bundle.to_str().unwrap(), "--serial", port];
        args.extend_from_slice(extra);
        Serve::start_with(&args)
    }

    /// `device serve ARGS...` (the caller names the model source and the port).
    pub fn start_with(args: &[&str]) -> Serve {
        let mut child = Command::new(bin("device"))
            .arg("serve")
            .args(args)
            .current_dir(repo_root())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start device serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take().unwrap();
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let s = Serve { child, stderr };
        s.wait_for_log("device serve: model", Duration::from_secs(60));
        s
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle` (panics with the log after `timeout`).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let t = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                t.elapsed() < timeout,
                "device serve never logged {needle:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the 'accuracy' of `tools eval --json` on `data` for `bundle`.
pub fn eval_accuracy(bundle: &Path, data: &Path, scratch: &Path) -> f64 {
    let out = e2e::run_ok(
        "tools",
        &[
            "eval",
            "--model",
            bundle.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
            "--json",
            "--confusion",
            scratch.join("confusion.csv").to_str().unwrap(),
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    // With a rejection rule (docs/rejection.md) the device answers "unknown", and bench
    // counts that right only for out-of-scope gold labels: eval's figure with the rule.
    v["rejection"]["with_rule"]["accuracy"]
        .as_f64()
        .or_else(|| v["accuracy"].as_f64())
        .expect("eval accuracy")
}

/// Runs `tools bench --json` and parses its object.
pub fn bench_json(args: &[&str]) -> serde_json::Value {
    let mut all = vec!["bench", "--json", "--quiet"];
    all.extend_from_slice(args);
    let out = e2e::run_ok("tools", &all, None);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bench JSON ({e}): {out}"))
}

/// Writes frames to a pty master and collects decoded responses.
pub struct RawHost {
    pub port: TTYPort,
    dec: protocol::ResponseDecoder,
}

impl RawHost {
    pub fn new(port: TTYPort) -> RawHost {
        RawHost {
            port,
            dec: protocol::ResponseDecoder::new(),
        }
    }

    pub fn send_bytes(&mut self, b: &[u8]) {
        self.port.write_all(b).unwrap();
    }

    pub fn send(&mut self, r: &protocol::Request) {
        let f = protocol::encode_to_vec(r).unwrap();
        self.send_bytes(&f);
    }

    /// Next decoded frame within `timeout` (frames that fail to decode are returned too).
    pub fn recv(
        &mut self,
        timeout: Duration,
    ) -> Option<Result<protocol::Response, protocol::FrameError>> {
        let t = Instant::now();
        let mut byte = [0u8; 1];
        while t.elapsed() < timeout {
            match self.port.read(&mut byte) {
                Ok(1) => {
                    if let Some(r) = self.dec.push(byte[0]) {
                        return Some(r);
                    }
                }
                _ => continue,
            }
        }
        None
    }

    /// Next successfully decoded response.
    pub fn expect(&mut self, what: &str) -> protocol::Response {
        match self.recv(Duration::from_secs(10)) {
            Some(Ok(r)) => r,
            other => panic!("{what}: expected a response, got {other:?}"),
        }
    }
}
