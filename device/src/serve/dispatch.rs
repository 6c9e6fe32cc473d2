//! The transport-free part of the service: what to answer to each decoded frame, the
//! bounded inference queue and its workers.
//!
//! ```text
//! reader ──frame──▶ Core::handle ──Classify──▶ bounded queue ──▶ worker(s) ──Result──▶ outbox
//!                        │  (full → Error Busy)                                          │
//!                        └──Hello/GetLabels/Ping/GetStats/errors──────────────────────▶ outbox ──▶ writer
//! ```
//!
//! Both queues are bounded, so no input makes the service's memory grow: the outbox
//! holds at most [`OUTBOX_CAPACITY`] answers. Answers to requests wait for room (the
//! host is slowed down, nothing it asked for is lost); answers to undecodable frames
//! are dropped when it is full and counted in `Stats.queue_drops`.

use std::collections::HashMap;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use protocol::{
    truncated, ErrorCode, FrameError, Request, Response, Source, TopK, TopTokens,
    MAX_LABELS_PER_PAGE, MAX_TEXT_LEN, MAX_TOP_K, MAX_TOP_TOKENS, PROTOCOL_VERSION,
};

use super::deploy::{current, Deployer, Swap};
use super::stats::Stats;
use crate::classify::{Classifier, Prediction};
use bundle::{VerifiedBundle, MODEL_FILE};

/// Answers waiting for the writer. At 115200 baud a full outbox of typical answers
/// (10-200 bytes on the wire) drains in well under a second.
pub const OUTBOX_CAPACITY: usize = 64;

/// The bounded outbox: `(sender for Core and the workers, receiver for the writer)`.
pub fn outbox() -> (SyncSender<Response>, Receiver<Response>) {
    mpsc::sync_channel(OUTBOX_CAPACITY)
}

/// What `Info` reports about the loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    /// sha256 of `model.onnx`, from the (verified) manifest.
    pub model_sha256: [u8; 32],
    pub labels: Vec<String>,
    /// Longest `Classify.text` accepted, in bytes.
    pub max_text_len: u16,
}

impl ModelInfo {
    /// Reads name, labels and the model's sha256 from a verified bundle's manifest.
    pub fn from_bundle(bundle: &VerifiedBundle) -> ModelInfo {
        let m = bundle.manifest();
        let mut model_sha256 = [0u8; 32];
        if let Some(h) = m.files.get(MODEL_FILE) {
            // Verified bundles carry a 64-hex-digit sum; anything else leaves zeros.
            let _ = hex::decode_to_slice(h, &mut model_sha256);
        }
        ModelInfo {
            name: m.name.clone(),
            model_sha256,
            labels: m.labels.clone(),
            max_text_len: MAX_TEXT_LEN as u16,
        }
    }

    /// The `Info` answer to `Hello { id }`.
    pub fn info(&self, id: u32) -> Response {
        Response::Info {
            id,
            protocol_version: PROTOCOL_VERSION,
            software_version: truncated(env!("CARGO_PKG_VERSION")),
            model_name: truncated(&self.name),
            model_sha256: self.model_sha256,
            label_count: self.labels.len().min(u16::MAX as usize) as u16,
            max_text_len: self.max_text_len,
        }
    }

    /// The `Labels` page starting at `offset`.
    pub fn labels_page(&self, id: u32, offset: u16) -> Response {
        let total = self.labels.len().min(u16::MAX as usize);
        let start = usize::from(offset).min(total);
        let end = (start + MAX_LABELS_PER_PAGE).min(total);
        let mut labels = protocol::LabelPage::new();
        for l in &self.labels[start..end] {
            // Cannot overflow: at most MAX_LABELS_PER_PAGE names.
            let _ = labels.push(truncated(l));
        }
        Response::Labels {
            id,
            offset,
            total: total as u16,
            labels,
        }
    }
}

/// One text waiting for inference.
#[derive(Debug)]
pub struct Job {
    pub id: u32,
    pub source: Source,
    pub text: String,
}

/// Decides the answer to each decoded frame; owns the sending side of the queue.
pub struct Core {
    info: Swap<ModelInfo>,
    stats: Arc<Stats>,
    jobs: SyncSender<Job>,
    outbox: SyncSender<Response>,
    /// `Some` with `--state`: model updates over the link are accepted.
    deploy: Option<Deployer>,
}

impl Core {
    pub fn new(
        info: Arc<ModelInfo>,
        stats: Arc<Stats>,
        jobs: SyncSender<Job>,
        outbox: SyncSender<Response>,
    ) -> Core {
        Core {
            info: Arc::new(RwLock::new(info)),
            stats,
            jobs,
            outbox,
            deploy: None,
        }
    }

    /// The served model's `Info`, swapped by a deploy or rollback.
    pub fn info_slot(&self) -> Swap<ModelInfo> {
        Arc::clone(&self.info)
    }

    /// Accept deploys and rollbacks (`device serve --state`).
    pub fn set_deployer(&mut self, d: Deployer) {
        self.deploy = Some(d);
    }

    fn deploy_request(&self, id: u32, f: impl FnOnce(&Deployer) -> Response) {
        let answer = match &self.deploy {
            Some(d) => f(d),
            None => Response::error(
                Some(id),
                ErrorCode::NotReady,
                "deploy needs --state (device serve runs from --bundle)",
            ),
        };
        self.send(answer);
    }

    /// Queues the answer to a request: waits for room in the bounded outbox, so a host
    /// that sends faster than it reads is slowed down (the reader stops reading, the
    /// serial line fills) instead of growing the device's memory.
    fn send(&self, r: Response) {
        // The writer lives as long as the service; a send error only happens at shutdown.
        let _ = self.outbox.send(r);
    }

    /// Queues the answer to a frame that could not be decoded, only if the outbox has
    /// room: garbage on the line must not hold up the reader, and when the other end does
    /// not read, these answers are dropped and counted in `Stats.queue_drops`.
    fn send_or_drop(&self, r: Response) {
        if let Err(TrySendError::Full(_)) = self.outbox.try_send(r) {
            self.stats.queue_drop();
        }
    }

    /// Handles one result of the frame decoder. Never fails: every problem becomes a
    /// counted error and, where the protocol says so, an `Error` answer.
    pub fn handle(&self, frame: Result<Request, FrameError>) {
        self.stats.frame_in();
        let req = match frame {
            Ok(r) => r,
            Err(e) => {
                self.stats.frame_error(&e);
                self.send_or_drop(e.to_response());
                return;
            }
        };
        let info = current(&self.info);
        match req {
            Request::Hello {
                id,
                protocol_version,
            } => {
                if protocol_version == PROTOCOL_VERSION {
                    self.send(info.info(id));
                } else {
                    self.send(Response::error_fmt(
                        Some(id),
                        ErrorCode::VersionMismatch,
                        format_args!(
                            "device speaks protocol {PROTOCOL_VERSION}, host {protocol_version}"
                        ),
                    ));
                }
            }
            Request::GetLabels { id, offset } => self.send(info.labels_page(id, offset)),
            Request::Ping { id, nonce } => self.send(Response::Pong { id, nonce }),
            Request::GetStats { id } => self.send(self.stats.to_response(id)),
            Request::Classify { id, text } => {
                if text.len() > usize::from(info.max_text_len) {
                    self.stats
                        .frame_error(&FrameError::TextTooLong { id: Some(id) });
                    self.send(Response::error_fmt(
                        Some(id),
                        ErrorCode::TextTooLong,
                        format_args!("{} bytes > {}", text.len(), info.max_text_len),
                    ));
                    return;
                }
                let job = Job {
                    id,
                    source: Source::Request,
                    text: text.as_str().to_owned(),
                };
                match self.jobs.try_send(job) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        self.stats.queue_drop();
                        self.send(Response::error(
                            Some(id),
                            ErrorCode::Busy,
                            "inference queue full, retry later",
                        ));
                    }
                    Err(TrySendError::Disconnected(_)) => self.send(Response::error(
                        Some(id),
                        ErrorCode::Internal,
                        "inference workers stopped",
                    )),
                }
            }
            Request::DeployBegin {
                id,
                archive_sha256,
                total_bytes,
                file_count,
            } => self.deploy_request(id, |d| d.begin(id, archive_sha256, total_bytes, file_count)),
            Request::DeployChunk { id, offset, data } => {
                self.deploy_request(id, |d| d.chunk(id, offset, &data))
            }
            Request::DeployCommit { id } => self.deploy_request(id, |d| d.commit(id)),
            Request::Rollback { id } => self.deploy_request(id, |d| d.rollback(id)),
        }
    }
}

/// Maps a prediction to the wire `Result`.
pub fn result_frame(
    id: u32,
    source: Source,
    p: &Prediction,
    index_of: &HashMap<String, u16>,
) -> Response {
    let mut top_k = TopK::new();
    for s in p.top_k.iter().take(MAX_TOP_K) {
        if let Some(&i) = index_of.get(s.label.as_str()) {
            let _ = top_k.push((i, s.p));
        }
    }
    let mut top_tokens = TopTokens::new();
    for t in p.top_tokens.iter().take(MAX_TOP_TOKENS) {
        let _ = top_tokens.push((truncated(&t.token), t.weight));
    }
    Response::Result {
        id,
        source,
        label_index: p.label_index.min(u16::MAX as usize) as u16,
        confidence: p.confidence,
        top_k,
        top_tokens,
        inference_us: p.inference_us.min(u64::from(u32::MAX)) as u32,
        rejected: p.rejected,
    }
}

/// Starts `n` inference workers sharing the queue; each answers into `outbox`.
pub fn spawn_workers(
    n: usize,
    classifier: Swap<Classifier>,
    jobs: Receiver<Job>,
    outbox: SyncSender<Response>,
    stats: Arc<Stats>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    let jobs = Arc::new(Mutex::new(jobs));
    (0..n.max(1))
        .map(|k| {
            let (classifier, jobs, outbox, stats) = (
                Arc::clone(&classifier),
                Arc::clone(&jobs),
                outbox.clone(),
                Arc::clone(&stats),
            );
            std::thread::Builder::new()
                .name(format!("infer-{k}"))
                .spawn(move || worker(&classifier, &jobs, &outbox, &stats))
        })
        .collect()
}

fn index_of(classifier: &Classifier) -> HashMap<String, u16> {
    classifier
        .labels()
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), i.min(u16::MAX as usize) as u16))
        .collect()
}

fn worker(
    slot: &Swap<Classifier>,
    jobs: &Mutex<Receiver<Job>>,
    outbox: &SyncSender<Response>,
    stats: &Stats,
) {
    let mut classifier = current(slot);
    let mut index = index_of(&classifier);
    loop {
        let job = {
            let rx = jobs.lock().unwrap_or_else(|p| p.into_inner());
            match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            }
        };
        // A deploy or rollback may have swapped the model since the last job.
        let now = current(slot);
        if !Arc::ptr_eq(&now, &classifier) {
            index = index_of(&now);
            classifier = now;
        }
        let answer = match classifier.classify(&job.text) {
            Ok(p) => {
                stats.inference(p.inference_us.min(u64::from(u32::MAX)) as u32);
                result_frame(job.id, job.source, &p, &index)
            }
            Err(e) => match job.source {
                Source::Request => Response::error_fmt(
                    Some(job.id),
                    ErrorCode::Internal,
                    format_args!("classification failed: {e}"),
                ),
                Source::Local { seq } => {
                    eprintln!("device serve: local line {seq}: classification failed: {e}");
                    continue;
                }
            },
        };
        if outbox.send(answer).is_err() {
            return;
        }
    }
}

/// A bounded queue: `(sender for Core and local input, receiver for the workers)`.
pub fn queue(capacity: usize) -> (SyncSender<Job>, Receiver<Job>) {
    mpsc::sync_channel(capacity.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(labels: usize) -> Arc<ModelInfo> {
        Arc::new(ModelInfo {
            name: "m".into(),
            model_sha256: [7; 32],
            labels: (0..labels).map(|i| format!("label_{i}")).collect(),
            max_text_len: 256,
        })
    }

    fn core(cap: usize) -> (Core, Receiver<Job>, Receiver<Response>, Arc<Stats>) {
        let (jtx, jrx) = queue(cap);
        let (otx, orx) = outbox();
        let stats = Arc::new(Stats::new());
        (
            Core::new(info(50), Arc::clone(&stats), jtx, otx),
            jrx,
            orx,
            stats,
        )
    }

    #[test]
    fn full_queue_answers_busy_and_counts() {
        let (core, jobs, out, stats) = core(2);
        for id in 1..=3 {
            core.handle(Ok(Request::classify(id, "hi").unwrap()));
        }
        assert_eq!(jobs.try_iter().count(), 2);
        match out.try_recv().unwrap() {
            Response::Error { id, code, .. } => assert_eq!((id, code), (Some(3), ErrorCode::Busy)),
            r => panic!("{r:?}"),
        }
        assert!(matches!(
            stats.to_response(0),
            Response::Stats {
                queue_drops: 1,
                frames_in: 3,
                ..
            }
        ));
    }

    #[test]
    fn answers_to_bad_frames_never_outgrow_the_outbox() {
        let (core, _jobs, out, stats) = core(2);
        // Nobody drains the outbox: the reader must neither block nor grow it.
        for _ in 0..OUTBOX_CAPACITY * 10 {
            core.handle(Err(FrameError::BadFrame));
        }
        assert_eq!(out.try_iter().count(), OUTBOX_CAPACITY);
        match stats.to_response(0) {
            Response::Stats {
                queue_drops,
                decode_errors,
                ..
            } => {
                assert_eq!(queue_drops as usize, OUTBOX_CAPACITY * 9);
                assert_eq!(decode_errors as usize, OUTBOX_CAPACITY * 10);
            }
            r => panic!("{r:?}"),
        }
        // With room again, answers to bad frames flow as before.
        core.handle(Err(FrameError::BadCrc));
        assert!(matches!(
            out.try_recv(),
            Ok(Response::Error {
                code: ErrorCode::BadCrc,
                ..
            })
        ));
    }

    #[test]
    fn bad_frames_are_counted_and_answered_with_their_id() {
        let (core, _jobs, out, stats) = core(2);
        core.handle(Err(FrameError::BadCrc));
        core.handle(Err(FrameError::InvalidUtf8 { id: Some(42) }));
        core.handle(Err(FrameError::UnknownMessage {
            tag: 9,
            id: Some(5),
        }));
        let answers: Vec<_> = out.try_iter().map(|r| r.id()).collect();
        assert_eq!(answers, [None, Some(42), Some(5)]);
        assert!(matches!(
            stats.to_response(0),
            Response::Stats {
                crc_failures: 1,
                decode_errors: 2,
                frames_in: 3,
                ..
            }
        ));
    }

    #[test]
    fn handshake_labels_ping_and_version() {
        let (core, _jobs, out, _) = core(2);
        core.handle(Ok(Request::hello(1)));
        core.handle(Ok(Request::Hello {
            id: 2,
            protocol_version: 99,
        }));
        core.handle(Ok(Request::GetLabels { id: 3, offset: 48 }));
        core.handle(Ok(Request::GetLabels { id: 4, offset: 60 }));
        core.handle(Ok(Request::Ping { id: 5, nonce: 77 }));
        let r: Vec<_> = out.try_iter().collect();
        assert!(
            matches!(r[0], Response::Info { id: 1, label_count: 50, model_sha256, .. } if model_sha256 == [7; 32])
        );
        assert!(matches!(
            r[1],
            Response::Error {
                id: Some(2),
                code: ErrorCode::VersionMismatch,
                ..
            }
        ));
        match &r[2] {
            Response::Labels {
                offset: 48,
                total: 50,
                labels,
                ..
            } => {
                assert_eq!(labels.len(), 2);
                assert_eq!(labels[0].as_str(), "label_48");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&r[3], Response::Labels { labels, .. } if labels.is_empty()));
        assert_eq!(r[4], Response::Pong { id: 5, nonce: 77 });
    }
}
