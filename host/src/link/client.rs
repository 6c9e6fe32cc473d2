//! [`Link`]: a serial connection to `device serve` with id-matched requests.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::{
    ErrorCode, FrameError, Request, Response, ResponseDecoder, Source, MAX_FRAME,
    MAX_LABELS_PER_PAGE, MAX_TEXT_LEN, PROTOCOL_VERSION,
};
use serde::Serialize;
use serialport::SerialPort;

use super::{LinkError, Result};

/// How a [`Link`] talks to the port.
#[derive(Debug, Clone)]
pub struct LinkOptions {
    pub baud: u32,
    /// How long to wait for each answer.
    pub timeout: Duration,
    /// Extra attempts (fresh id each) after a timeout or a `Busy` answer.
    pub retries: u32,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            baud: 115_200,
            timeout: Duration::from_secs(2),
            retries: 2,
        }
    }
}

/// Something that arrived without being asked for.
// `Frame` carries a whole `Response` (up to ~1 KiB, heapless); events are rare, so no Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A frame matching no pending request: a local `Result`, an `Error` without id, or
    /// an answer that came after its request timed out.
    Frame(Response),
    /// A frame that failed to decode (bad CRC, bad COBS, too long, …).
    BadFrame(FrameError),
    /// The port failed; the link is dead.
    Disconnected(String),
}

/// What the device said about itself in the handshake, plus its label names.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceInfo {
    pub protocol_version: u16,
    pub software_version: String,
    pub model_name: String,
    /// sha256 of the bundle's model.onnx, hex.
    pub model_sha256: String,
    pub label_count: u16,
    pub max_text_len: u16,
    pub labels: Vec<String>,
}

/// The device's `Stats` counters.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct DeviceStats {
    pub frames_in: u32,
    pub frames_out: u32,
    pub crc_failures: u32,
    pub decode_errors: u32,
    pub queue_drops: u32,
    pub inferences: u32,
    pub latency_p50_us: u32,
    pub latency_p99_us: u32,
    pub latency_max_us: u32,
    pub uptime_s: u32,
}

/// An answer with its timing and sizes.
#[derive(Debug, Clone)]
pub struct Answer {
    pub response: Response,
    /// From the request's write to the answer's arrival.
    pub rtt: Duration,
    /// Request and response frame sizes in bytes, delimiters included.
    pub request_bytes: usize,
    pub response_bytes: usize,
}

/// A classification received over the link.
#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    pub label_index: u16,
    pub confidence: f32,
    pub top_k: Vec<(u16, f32)>,
    pub top_tokens: Vec<(String, f32)>,
    /// Inference time measured on the device.
    pub inference_us: u32,
    /// The model's rejection rule applies: the answer is "unknown", `label_index` and
    /// `confidence` are only the best guess.
    pub rejected: bool,
    /// Round trip of the attempt that answered, µs.
    pub rtt_us: u64,
    pub request_bytes: usize,
    pub response_bytes: usize,
}

/// Frames counted by the host's reader.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct LinkCounters {
    pub frames_in: u64,
    pub bad_frames: u64,
    pub unmatched: u64,
}

#[derive(Default)]
struct Shared {
    pending: Mutex<HashMap<u32, Sender<Response>>>,
    dead: Mutex<Option<String>>,
    stop: AtomicBool,
    frames_in: AtomicU64,
    bad_frames: AtomicU64,
    unmatched: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Events kept for a reader that is not listening (older ones are dropped).
const EVENT_BACKLOG: usize = 1024;

/// A serial connection to `device serve`. `Sync`: many threads may have requests in
/// flight at once.
pub struct Link {
    port: String,
    opts: LinkOptions,
    writer: Mutex<Box<dyn SerialPort>>,
    shared: Arc<Shared>,
    events: Mutex<Receiver<Event>>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("port", &self.port)
            .field("opts", &self.opts)
            .finish()
    }
}

impl Link {
    /// Opens `port`, starts the reader and sends a lone `0x00` to flush the device's decoder.
    pub fn open(port: &str, opts: LinkOptions) -> Result<Link> {
        if !(50..=4_000_000).contains(&opts.baud) {
            return Err(LinkError::Baud(opts.baud));
        }
        let open_err = |cause| LinkError::Open {
            port: port.to_string(),
            cause,
        };
        let reader_port = serialport::new(port, opts.baud)
            .timeout(Duration::from_millis(50))
            .open()
            .map_err(open_err)?;
        let mut writer = reader_port.try_clone().map_err(open_err)?;
        writer
            .set_timeout(Duration::from_secs(1).max(opts.timeout))
            .map_err(open_err)?;
        writer.write_all(&[0]).map_err(LinkError::Write)?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::sync_channel(EVENT_BACKLOG);
        let reader = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("link-reader".into())
                .spawn(move || read_loop(reader_port, &shared, &tx))
                .map_err(LinkError::Thread)?
        };
        Ok(Link {
            port: port.to_string(),
            opts,
            writer: Mutex::new(writer),
            shared,
            events: Mutex::new(rx),
            reader: Some(reader),
        })
    }

    pub fn port(&self) -> &str {
        &self.port
    }

    pub fn options(&self) -> &LinkOptions {
        &self.opts
    }

    /// Changes how often timed-out or `Busy` requests are retried.
    pub fn set_retries(&mut self, retries: u32) {
        self.opts.retries = retries;
    }

    pub fn counters(&self) -> LinkCounters {
        LinkCounters {
            frames_in: self.shared.frames_in.load(Ordering::Relaxed),
            bad_frames: self.shared.bad_frames.load(Ordering::Relaxed),
            unmatched: self.shared.unmatched.load(Ordering::Relaxed),
        }
    }

    /// Registers a new pending request under a random id (never 0, never one in flight)
    /// and returns it. Random rather than counted from 1: the serial line outlives this
    /// process, and an answer to a request of an earlier process that timed out must
    /// not match a request of this one (`docs/protocol.md`, "Choosing ids").
    fn register(&self, waiter: Sender<Response>) -> u32 {
        let mut pending = lock(&self.shared.pending);
        loop {
            let id: u32 = rand::random();
            if id != 0 && !pending.contains_key(&id) {
                pending.insert(id, waiter);
                return id;
            }
        }
    }

    fn dead(&self) -> Option<String> {
        lock(&self.shared.dead).clone()
    }

    /// Sends one request with a fresh id; the answer is collected with [`Pending::wait`].
    pub fn send(&self, make: impl FnOnce(u32) -> Request) -> Result<Pending<'_>> {
        if let Some(why) = self.dead() {
            return Err(LinkError::Disconnected(why));
        }
        let (tx, rx) = mpsc::channel();
        let id = self.register(tx);
        let req = make(id);
        let mut buf = [0u8; MAX_FRAME];
        let frame = match protocol::encode(&req, &mut buf) {
            Ok(f) => f,
            Err(e) => {
                lock(&self.shared.pending).remove(&id);
                return Err(e.into());
            }
        };
        let pending = Pending {
            link: self,
            id,
            rx,
            sent: Instant::now(),
            request_bytes: frame.len(),
        };
        lock(&self.writer)
            .write_all(frame)
            .map_err(LinkError::Write)?;
        Ok(pending)
    }

    /// Sends and waits, retrying (fresh id each time) after a timeout or `Busy`, up to
    /// `options().retries` times. An `Error` answer other than `Busy` is returned as
    /// [`LinkError::Device`] at once.
    pub fn request(&self, make: impl Fn(u32) -> Request) -> Result<Answer> {
        let mut attempt = 0;
        loop {
            let outcome = self
                .send(&make)
                .and_then(|p| p.wait(self.opts.timeout))
                .and_then(|a| match a.response {
                    Response::Error { id, code, detail } => Err(LinkError::Device {
                        id,
                        code,
                        detail: detail.to_string(),
                    }),
                    _ => Ok(a),
                });
            let retry = match &outcome {
                Err(LinkError::Timeout { .. }) => true,
                Err(LinkError::Device {
                    code: ErrorCode::Busy,
                    ..
                }) => {
                    std::thread::sleep(Duration::from_millis(5 << attempt.min(6)));
                    true
                }
                _ => false,
            };
            if !retry || attempt >= self.opts.retries {
                return outcome;
            }
            attempt += 1;
        }
    }

    /// `Hello`, version check, then every label page (all in flight at once).
    pub fn handshake(&self) -> Result<DeviceInfo> {
        let a = self.request(Request::hello)?;
        let (protocol_version, software_version, model_name, sha, label_count, max_text_len) =
            match a.response {
                Response::Info {
                    protocol_version,
                    software_version,
                    model_name,
                    model_sha256,
                    label_count,
                    max_text_len,
                    ..
                } => (
                    protocol_version,
                    software_version,
                    model_name,
                    model_sha256,
                    label_count,
                    max_text_len,
                ),
                other => return Err(unexpected("Hello", &other)),
            };
        if protocol_version != PROTOCOL_VERSION {
            return Err(LinkError::VersionMismatch {
                device: protocol_version,
                host: PROTOCOL_VERSION,
            });
        }
        let total = usize::from(label_count);
        let offsets: Vec<u16> = (0..total)
            .step_by(MAX_LABELS_PER_PAGE)
            .map(|o| o as u16)
            .collect();
        // All pages in flight; a page whose answer is lost is asked again with retries.
        let inflight: Vec<_> = offsets
            .iter()
            .map(|&offset| self.send(|id| Request::GetLabels { id, offset }))
            .collect();
        let mut labels = Vec::with_capacity(total);
        for (&offset, p) in offsets.iter().zip(inflight) {
            let first = p.and_then(|p| p.wait(self.opts.timeout));
            let answer = match first {
                Ok(a) if matches!(a.response, Response::Labels { .. }) => a,
                _ => self.request(|id| Request::GetLabels { id, offset })?,
            };
            match answer.response {
                Response::Labels {
                    offset: o,
                    total: t,
                    labels: page,
                    ..
                } if o == offset
                    && usize::from(t) == total
                    && page.len() == MAX_LABELS_PER_PAGE.min(total - usize::from(offset)) =>
                {
                    labels.extend(page.iter().map(|l| l.to_string()))
                }
                other => return Err(unexpected("GetLabels", &other)),
            }
        }
        Ok(DeviceInfo {
            protocol_version,
            software_version: software_version.to_string(),
            model_name: model_name.to_string(),
            model_sha256: sha.iter().map(|b| format!("{b:02x}")).collect(),
            label_count,
            max_text_len,
            labels,
        })
    }

    /// Classifies one text (retries per the options).
    pub fn classify(&self, text: &str) -> Result<Classification> {
        if text.len() > MAX_TEXT_LEN {
            return Err(LinkError::TextTooLong {
                len: text.len(),
                max: MAX_TEXT_LEN,
            });
        }
        let a = self.request(|id| Request::classify(id, text).expect("length checked"))?;
        match a.response {
            Response::Result {
                source: Source::Request,
                label_index,
                confidence,
                top_k,
                top_tokens,
                inference_us,
                rejected,
                ..
            } => Ok(Classification {
                label_index,
                confidence,
                top_k: top_k.to_vec(),
                top_tokens: top_tokens
                    .iter()
                    .map(|(t, w)| (t.to_string(), *w))
                    .collect(),
                inference_us,
                rejected,
                rtt_us: a.rtt.as_micros() as u64,
                request_bytes: a.request_bytes,
                response_bytes: a.response_bytes,
            }),
            other => Err(unexpected("Classify", &other)),
        }
    }

    /// Round trip of a `Ping`.
    pub fn ping(&self) -> Result<Duration> {
        let nonce: u32 = rand::random();
        let a = self.request(|id| Request::Ping { id, nonce })?;
        match a.response {
            Response::Pong { nonce: n, .. } if n == nonce => Ok(a.rtt),
            other => Err(unexpected("Ping", &other)),
        }
    }

    /// The device's counters.
    pub fn stats(&self) -> Result<DeviceStats> {
        let a = self.request(|id| Request::GetStats { id })?;
        match a.response {
            Response::Stats {
                frames_in,
                frames_out,
                crc_failures,
                decode_errors,
                queue_drops,
                inferences,
                latency_p50_us,
                latency_p99_us,
                latency_max_us,
                uptime_s,
                ..
            } => Ok(DeviceStats {
                frames_in,
                frames_out,
                crc_failures,
                decode_errors,
                queue_drops,
                inferences,
                latency_p50_us,
                latency_p99_us,
                latency_max_us,
                uptime_s,
            }),
            other => Err(unexpected("GetStats", &other)),
        }
    }

    /// The next unsolicited event, waiting at most `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<Event> {
        lock(&self.events).recv_timeout(timeout).ok()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

fn unexpected(request: &'static str, got: &Response) -> LinkError {
    match got {
        Response::Error { id, code, detail } => LinkError::Device {
            id: *id,
            code: *code,
            detail: detail.to_string(),
        },
        other => LinkError::Unexpected {
            request,
            got: format!("{other:?}"),
        },
    }
}

/// A request in flight.
pub struct Pending<'a> {
    link: &'a Link,
    id: u32,
    rx: Receiver<Response>,
    sent: Instant,
    request_bytes: usize,
}

impl Pending<'_> {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Waits for the answer with this request's id.
    pub fn wait(self, timeout: Duration) -> Result<Answer> {
        match self.rx.recv_timeout(timeout) {
            Ok(response) => {
                let mut buf = [0u8; MAX_FRAME];
                let response_bytes = protocol::encode(&response, &mut buf).map_or(0, |f| f.len());
                Ok(Answer {
                    rtt: self.sent.elapsed(),
                    response,
                    request_bytes: self.request_bytes,
                    response_bytes,
                })
            }
            Err(RecvTimeoutError::Timeout) => Err(LinkError::Timeout {
                id: self.id,
                ms: timeout.as_millis() as u64,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(LinkError::Disconnected(
                self.link.dead().unwrap_or_else(|| "link closed".into()),
            )),
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        // A late answer to this id becomes an unmatched event, never another request's.
        lock(&self.link.shared.pending).remove(&self.id);
    }
}

fn read_loop(mut port: Box<dyn SerialPort>, shared: &Shared, events: &SyncSender<Event>) {
    let mut decoder = ResponseDecoder::new();
    let mut buf = [0u8; MAX_FRAME];
    let why = loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        match port.read(&mut buf) {
            Ok(0) => break "end of stream".to_string(),
            Ok(n) => {
                for item in decoder.feed(&buf[..n]) {
                    shared.frames_in.fetch_add(1, Ordering::Relaxed);
                    match item {
                        Ok(resp) => {
                            let waiter = resp.id().and_then(|id| lock(&shared.pending).remove(&id));
                            match waiter {
                                Some(tx) => {
                                    let _ = tx.send(resp);
                                }
                                None => {
                                    shared.unmatched.fetch_add(1, Ordering::Relaxed);
                                    let _ = events.try_send(Event::Frame(resp));
                                }
                            }
                        }
                        Err(e) => {
                            shared.bad_frames.fetch_add(1, Ordering::Relaxed);
                            let _ = events.try_send(Event::BadFrame(e));
                        }
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::WouldBlock
                ) => {}
            Err(e) => break e.to_string(),
        }
    };
    *lock(&shared.dead) = Some(why.clone());
    // Dropping the senders wakes every waiter with "disconnected".
    lock(&shared.pending).clear();
    let _ = events.try_send(Event::Disconnected(why));
}
