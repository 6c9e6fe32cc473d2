//! Message types of both directions.
//!
//! Wire rule that every message follows (see `docs/protocol.md`):
//!
//! * the postcard encoding of a [`Request`] or [`Response`] starts with the
//!   variant **tag** (a varint, = declaration order below), and
//! * right after the tag comes the **request id** (`u32` varint) — in every
//!   request variant and in every response variant except
//!   [`Response::Error`], whose id is an `Option<u32>` (`0x00` = none,
//!   `0x01` + varint = some).
//!
//! Future variants must be appended (never inserted) and must keep the id
//! first, so that an old peer can still answer an unknown request with
//! `Error { id: Some(id), code: UnknownMessage, .. }`.

use core::fmt::Write as _;

use heapless::{String, Vec};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::varint;

/// Longest text accepted by [`Request::Classify`], in UTF-8 bytes.
pub const MAX_TEXT_LEN: usize = 256;
/// Longest label name, in UTF-8 bytes (version 3; 32 before). A bundle's labels are
/// never longer, so the names reach the host whole.
pub const MAX_LABEL_LEN: usize = 64;
/// Labels carried by one [`Response::Labels`] page (version 3; 24 before).
pub const MAX_LABELS_PER_PAGE: usize = 12;
/// Entries in [`Response::Result`]`.top_k`.
pub const MAX_TOP_K: usize = 5;
/// Entries in [`Response::Result`]`.top_tokens`.
pub const MAX_TOP_TOKENS: usize = 5;
/// Longest token string in `top_tokens`, in UTF-8 bytes.
pub const MAX_TOKEN_LEN: usize = 24;
/// Longest human-readable detail in [`Response::Error`], in UTF-8 bytes.
pub const MAX_DETAIL_LEN: usize = 96;
/// Longest software version string in [`Response::Info`].
pub const MAX_SOFTWARE_VERSION_LEN: usize = 32;
/// Longest model name in [`Response::Info`].
pub const MAX_MODEL_NAME_LEN: usize = 48;
/// Largest `data` of one [`Request::DeployChunk`], in bytes.
pub const MAX_CHUNK: usize = 512;

/// Text to classify (≤ [`MAX_TEXT_LEN`] bytes).
pub type Text = String<MAX_TEXT_LEN>;
/// One label name (≤ [`MAX_LABEL_LEN`] bytes).
pub type Label = String<MAX_LABEL_LEN>;
/// One page of label names.
pub type LabelPage = Vec<Label, MAX_LABELS_PER_PAGE>;
/// A token string in `top_tokens` (≤ [`MAX_TOKEN_LEN`] bytes).
pub type Token = String<MAX_TOKEN_LEN>;
/// `(label_index, probability)`, best first.
pub type TopK = Vec<(u16, f32), MAX_TOP_K>;
/// `(token, weight)`, most influential first.
pub type TopTokens = Vec<(Token, f32), MAX_TOP_TOKENS>;
/// Error detail (≤ [`MAX_DETAIL_LEN`] bytes).
pub type Detail = String<MAX_DETAIL_LEN>;
/// Software version string.
pub type SoftwareVersion = String<MAX_SOFTWARE_VERSION_LEN>;
/// Model name.
pub type ModelName = String<MAX_MODEL_NAME_LEN>;
/// Bytes of one [`Request::DeployChunk`] (≤ [`MAX_CHUNK`]).
pub type Chunk = Vec<u8, MAX_CHUNK>;

/// Host → device.
///
/// Tags (postcard variant index): `Hello` 0, `GetLabels` 1, `Classify` 2,
/// `Ping` 3, `GetStats` 4, `DeployBegin` 5, `DeployChunk` 6, `DeployCommit` 7,
/// `Rollback` 8. Every variant starts with `id`.
// Variants are inline (no `Box` in no_std); a `Request` is ~270 bytes.
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Request {
    /// Tag 0. Handshake; answered by [`Response::Info`] (or
    /// `Error{VersionMismatch}` if the device does not speak `protocol_version`).
    Hello {
        /// Request id, echoed in the answer.
        id: u32,
        /// The host's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
        protocol_version: u16,
    },
    /// Tag 1. Ask for up to [`MAX_LABELS_PER_PAGE`] label names starting at
    /// `offset`; answered by [`Response::Labels`].
    GetLabels {
        /// Request id.
        id: u32,
        /// Index of the first label wanted.
        offset: u16,
    },
    /// Tag 2. Classify `text`; answered by [`Response::Result`] with
    /// `source: Source::Request`, or by an `Error` with the same id.
    Classify {
        /// Request id.
        id: u32,
        /// UTF-8 text, ≤ [`MAX_TEXT_LEN`] bytes.
        text: Text,
    },
    /// Tag 3. Liveness check; answered by [`Response::Pong`] with the same nonce.
    Ping {
        /// Request id.
        id: u32,
        /// Arbitrary value echoed back.
        nonce: u32,
    },
    /// Tag 4. Ask for counters; answered by [`Response::Stats`].
    GetStats {
        /// Request id.
        id: u32,
    },
    /// Tag 5. Start (or resume) a model update: the transfer is the bundle archive
    /// (`docs/protocol.md` section 8) of `total_bytes` bytes holding `file_count` files
    /// with sha256 `archive_sha256`. Answered by [`Response::DeployStatus`] (how much
    /// of it the device already holds).
    DeployBegin {
        /// Request id.
        id: u32,
        /// sha256 of the whole archive (version 3; of its `manifest.json` before): names
        /// the transfer, and the device checks the received bytes against it.
        archive_sha256: [u8; 32],
        /// Size of the archive in bytes.
        total_bytes: u32,
        /// Files in the archive.
        file_count: u16,
    },
    /// Tag 6. Archive bytes `offset..offset + data.len()`; answered by
    /// [`Response::DeployAck`] with the next offset the device wants.
    DeployChunk {
        /// Request id.
        id: u32,
        /// Position of `data[0]` in the archive.
        offset: u32,
        /// At most [`MAX_CHUNK`] bytes.
        data: Chunk,
    },
    /// Tag 7. The whole archive is sent: unpack, verify, self-test and switch to it.
    /// Answered by [`Response::DeployDone`] or an `Error` saying why it was refused.
    DeployCommit {
        /// Request id.
        id: u32,
    },
    /// Tag 8. Make the previous model current again; answered by
    /// [`Response::DeployDone`] (the model now served) or an `Error`.
    Rollback {
        /// Request id.
        id: u32,
    },
}

/// Device → host.
///
/// Tags: `Info` 0, `Labels` 1, `Result` 2, `Pong` 3, `Stats` 4, `Error` 5,
/// `DeployStatus` 6, `DeployAck` 7, `DeployDone` 8 (the answer to request tag *k* has
/// tag *k* for *k* ≤ 4 and *k* + 1 for the deploy requests, as `Error` holds tag 5).
// Variants are inline (no `Box` in no_std); a `Response` is ~1 KiB
// (a full `Labels` page).
#[allow(clippy::large_enum_variant)]
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub enum Response {
    /// Tag 0. Answer to [`Request::Hello`].
    Info {
        /// Id of the `Hello`.
        id: u32,
        /// The device's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
        protocol_version: u16,
        /// Device software version, e.g. `"0.1.0"`.
        software_version: SoftwareVersion,
        /// Name of the loaded model.
        model_name: ModelName,
        /// SHA-256 of the model bundle, raw bytes (32 bytes on the wire, no length prefix).
        model_sha256: [u8; 32],
        /// Number of labels; fetch their names with [`Request::GetLabels`].
        label_count: u16,
        /// Longest text (UTF-8 bytes) the device accepts; ≤ [`MAX_TEXT_LEN`].
        max_text_len: u16,
    },
    /// Tag 1. One page of label names, answer to [`Request::GetLabels`].
    Labels {
        /// Id of the `GetLabels`.
        id: u32,
        /// Index of `labels[0]` (echo of the request's offset).
        offset: u16,
        /// Total number of labels of the model.
        total: u16,
        /// `min(MAX_LABELS_PER_PAGE, total - offset)` names; empty if `offset >= total`.
        labels: LabelPage,
    },
    /// Tag 2. A classification.
    Result {
        /// Id of the `Classify`, or 0 when `source` is [`Source::Local`].
        id: u32,
        /// Whether this answers a request or was produced on the device.
        source: Source,
        /// Index of the winning label.
        label_index: u16,
        /// Probability of the winning label, 0..=1.
        confidence: f32,
        /// Best labels with their probabilities, best first.
        top_k: TopK,
        /// Tokens that weighed most in the decision.
        top_tokens: TopTokens,
        /// Inference time in microseconds.
        inference_us: u32,
        /// The model's rejection rule applies (version 2): the answer is "unknown" and
        /// `label_index` / `confidence` are only the best guess. An empty text is
        /// answered rejected with `label_index` = the label count (no guess).
        rejected: bool,
    },
    /// Tag 3. Answer to [`Request::Ping`].
    Pong {
        /// Id of the `Ping`.
        id: u32,
        /// The ping's nonce.
        nonce: u32,
    },
    /// Tag 4. Answer to [`Request::GetStats`]. Counters are since boot and wrap at 2³².
    Stats {
        /// Id of the `GetStats`.
        id: u32,
        /// Frames received (including bad ones).
        frames_in: u32,
        /// Frames sent.
        frames_out: u32,
        /// Frames received with a CRC mismatch.
        crc_failures: u32,
        /// Frames received that failed COBS or postcard decoding (incl. too long).
        decode_errors: u32,
        /// Requests refused because the inference queue was full (answered `Busy`), plus
        /// `Error` answers to undecodable frames dropped because the device's bounded
        /// outbox was full (the host was not reading).
        queue_drops: u32,
        /// Classifications performed.
        inferences: u32,
        /// Median inference latency, µs.
        latency_p50_us: u32,
        /// 99th percentile inference latency, µs.
        latency_p99_us: u32,
        /// Largest inference latency, µs.
        latency_max_us: u32,
        /// Seconds since boot.
        uptime_s: u32,
    },
    /// Tag 5. A request (or a frame) could not be served.
    Error {
        /// Id of the failed request, or `None` if it could not be recovered.
        id: Option<u32>,
        /// What went wrong.
        code: ErrorCode,
        /// Human-readable detail (may be empty).
        detail: Detail,
    },
    /// Tag 6. Answer to [`Request::DeployBegin`].
    DeployStatus {
        /// Id of the `DeployBegin`.
        id: u32,
        /// Bytes of this transfer (same `archive_sha256`) the device already holds: the
        /// host resumes at this offset.
        have: u32,
    },
    /// Tag 7. Answer to [`Request::DeployChunk`].
    DeployAck {
        /// Id of the `DeployChunk`.
        id: u32,
        /// The offset the device wants next (= bytes held contiguously from 0).
        next: u32,
    },
    /// Tag 8. Answer to [`Request::DeployCommit`] and [`Request::Rollback`]: the model
    /// the device serves from now on.
    DeployDone {
        /// Id of the request.
        id: u32,
        /// Name of the model now served.
        model_name: ModelName,
        /// SHA-256 of its `model.onnx`, as in `Info`.
        model_sha256: [u8; 32],
    },
}

/// Origin of a [`Response::Result`].
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Tag 0. Answer to the `Classify` whose id is in the `Result`.
    Request,
    /// Tag 1. Produced on the device by itself (e.g. a local input); `seq`
    /// counts such results.
    Local {
        /// Sequence number of local results.
        seq: u32,
    },
}

/// Error codes carried by [`Response::Error`].
///
/// On the wire a code is a plain `u16` varint (not a postcard enum), so a
/// host can decode codes added by a newer device: they arrive as
/// [`ErrorCode::Other`]. `Other` must only hold values not listed here.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(from = "u16", into = "u16")]
pub enum ErrorCode {
    /// 0: the device's request queue is full; retry later.
    Busy,
    /// 1: the frame's COBS structure is invalid or it is too short.
    BadFrame,
    /// 2: CRC-32 mismatch.
    BadCrc,
    /// 3: more than `MAX_FRAME` bytes without a delimiter.
    FrameTooLong,
    /// 4: CRC was fine but the postcard payload did not decode.
    DecodeFailed,
    /// 5: a string field was not valid UTF-8.
    InvalidUtf8,
    /// 6: `Classify.text` longer than the limit.
    TextTooLong,
    /// 7: unknown message tag.
    UnknownMessage,
    /// 8: the device is not ready (e.g. model still loading).
    NotReady,
    /// 9: internal device error.
    Internal,
    /// 10: `Hello.protocol_version` is not supported.
    VersionMismatch,
    /// A code this version does not know.
    Other(u16),
}

impl From<u16> for ErrorCode {
    fn from(v: u16) -> Self {
        match v {
            0 => Self::Busy,
            1 => Self::BadFrame,
            2 => Self::BadCrc,
            3 => Self::FrameTooLong,
            4 => Self::DecodeFailed,
            5 => Self::InvalidUtf8,
            6 => Self::TextTooLong,
            7 => Self::UnknownMessage,
            8 => Self::NotReady,
            9 => Self::Internal,
            10 => Self::VersionMismatch,
            other => Self::Other(other),
        }
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> u16 {
        match c {
            ErrorCode::Busy => 0,
            ErrorCode::BadFrame => 1,
            ErrorCode::BadCrc => 2,
            ErrorCode::FrameTooLong => 3,
            ErrorCode::DecodeFailed => 4,
            ErrorCode::InvalidUtf8 => 5,
            ErrorCode::TextTooLong => 6,
            ErrorCode::UnknownMessage => 7,
            ErrorCode::NotReady => 8,
            ErrorCode::Internal => 9,
            ErrorCode::VersionMismatch => 10,
            ErrorCode::Other(v) => v,
        }
    }
}

impl ErrorCode {
    /// Numeric wire value.
    pub fn as_u16(self) -> u16 {
        self.into()
    }

    /// Short lowercase name, e.g. `"bad_crc"` (`"other"` for unknown codes).
    pub fn name(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::BadFrame => "bad_frame",
            Self::BadCrc => "bad_crc",
            Self::FrameTooLong => "frame_too_long",
            Self::DecodeFailed => "decode_failed",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::TextTooLong => "text_too_long",
            Self::UnknownMessage => "unknown_message",
            Self::NotReady => "not_ready",
            Self::Internal => "internal",
            Self::VersionMismatch => "version_mismatch",
            Self::Other(_) => "other",
        }
    }
}

impl core::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Other(v) => write!(f, "other({v})"),
            c => f.write_str(c.name()),
        }
    }
}

/// Copy `s` into a bounded string, cutting at a char boundary if it is longer than `N` bytes.
pub fn truncated<const N: usize>(s: &str) -> String<N> {
    let mut end = s.len().min(N);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::new();
    // Cannot fail: `end <= N`.
    let _ = out.push_str(&s[..end]);
    out
}

impl Request {
    /// Tag of [`Request::Hello`].
    pub const TAG_HELLO: u32 = 0;
    /// Tag of [`Request::GetLabels`].
    pub const TAG_GET_LABELS: u32 = 1;
    /// Tag of [`Request::Classify`].
    pub const TAG_CLASSIFY: u32 = 2;
    /// Tag of [`Request::Ping`].
    pub const TAG_PING: u32 = 3;
    /// Tag of [`Request::GetStats`].
    pub const TAG_GET_STATS: u32 = 4;
    /// Tag of [`Request::DeployBegin`].
    pub const TAG_DEPLOY_BEGIN: u32 = 5;
    /// Tag of [`Request::DeployChunk`].
    pub const TAG_DEPLOY_CHUNK: u32 = 6;
    /// Tag of [`Request::DeployCommit`].
    pub const TAG_DEPLOY_COMMIT: u32 = 7;
    /// Tag of [`Request::Rollback`].
    pub const TAG_ROLLBACK: u32 = 8;

    /// The request id.
    pub fn id(&self) -> u32 {
        match *self {
            Self::Hello { id, .. }
            | Self::GetLabels { id, .. }
            | Self::Classify { id, .. }
            | Self::Ping { id, .. }
            | Self::GetStats { id }
            | Self::DeployBegin { id, .. }
            | Self::DeployChunk { id, .. }
            | Self::DeployCommit { id }
            | Self::Rollback { id } => id,
        }
    }

    /// `Hello` with this crate's [`PROTOCOL_VERSION`](crate::PROTOCOL_VERSION).
    pub fn hello(id: u32) -> Self {
        Self::Hello {
            id,
            protocol_version: crate::PROTOCOL_VERSION,
        }
    }

    /// `Classify`, or `Err(len)` if `text` is longer than [`MAX_TEXT_LEN`] bytes.
    pub fn classify(id: u32, text: &str) -> core::result::Result<Self, usize> {
        let text = Text::try_from(text).map_err(|_| text.len())?;
        Ok(Self::Classify { id, text })
    }
}

impl Response {
    /// Tag of [`Response::Info`].
    pub const TAG_INFO: u32 = 0;
    /// Tag of [`Response::Labels`].
    pub const TAG_LABELS: u32 = 1;
    /// Tag of [`Response::Result`].
    pub const TAG_RESULT: u32 = 2;
    /// Tag of [`Response::Pong`].
    pub const TAG_PONG: u32 = 3;
    /// Tag of [`Response::Stats`].
    pub const TAG_STATS: u32 = 4;
    /// Tag of [`Response::Error`].
    pub const TAG_ERROR: u32 = 5;
    /// Tag of [`Response::DeployStatus`].
    pub const TAG_DEPLOY_STATUS: u32 = 6;
    /// Tag of [`Response::DeployAck`].
    pub const TAG_DEPLOY_ACK: u32 = 7;
    /// Tag of [`Response::DeployDone`].
    pub const TAG_DEPLOY_DONE: u32 = 8;

    /// The request id this answers. `None` for an `Error` without id and for
    /// a `Result` with [`Source::Local`].
    pub fn id(&self) -> Option<u32> {
        match *self {
            Self::Info { id, .. }
            | Self::Labels { id, .. }
            | Self::Pong { id, .. }
            | Self::Stats { id, .. }
            | Self::DeployStatus { id, .. }
            | Self::DeployAck { id, .. }
            | Self::DeployDone { id, .. } => Some(id),
            Self::Result {
                source: Source::Local { .. },
                ..
            } => None,
            Self::Result { id, .. } => Some(id),
            Self::Error { id, .. } => id,
        }
    }

    /// An `Error`, with `detail` truncated to [`MAX_DETAIL_LEN`] bytes.
    pub fn error(id: Option<u32>, code: ErrorCode, detail: &str) -> Self {
        Self::Error {
            id,
            code,
            detail: truncated(detail),
        }
    }

    /// An `Error` whose detail is formatted (truncated if too long).
    pub fn error_fmt(id: Option<u32>, code: ErrorCode, args: core::fmt::Arguments<'_>) -> Self {
        let mut w = TruncatingWriter::<MAX_DETAIL_LEN> {
            out: String::new(),
            full: false,
        };
        let _ = w.write_fmt(args);
        Self::Error {
            id,
            code,
            detail: w.out,
        }
    }
}

struct TruncatingWriter<const N: usize> {
    out: String<N>,
    full: bool,
}

impl<const N: usize> core::fmt::Write for TruncatingWriter<N> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        if self.full {
            return Ok(());
        }
        let room = N - self.out.len();
        let mut end = s.len().min(room);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.full = end < s.len();
        let _ = self.out.push_str(&s[..end]);
        Ok(())
    }
}

/// What the frame decoder needs to know about a message enum.
///
/// Implemented for [`Request`] and [`Response`]; you do not normally
/// implement it yourself.
pub trait Message: Serialize + DeserializeOwned {
    /// Number of tags this version knows (`0..KNOWN_TAGS`); a larger tag is
    /// reported as [`ErrorCode::UnknownMessage`].
    const KNOWN_TAGS: u32;

    /// This value's tag.
    fn tag(&self) -> u32;

    /// Recover the request id from the bytes that follow a tag (`rest`), for
    /// known and — by the id-first convention — unknown tags.
    fn peek_id(tag: u32, rest: &[u8]) -> Option<u32>;

    /// Check size limits that postcard would report only generically
    /// (currently: `Classify.text` → [`ErrorCode::TextTooLong`]).
    fn check_limits(tag: u32, rest: &[u8]) -> Option<ErrorCode> {
        let _ = (tag, rest);
        None
    }
}

impl Message for Request {
    const KNOWN_TAGS: u32 = 9;

    fn tag(&self) -> u32 {
        match self {
            Self::Hello { .. } => Self::TAG_HELLO,
            Self::GetLabels { .. } => Self::TAG_GET_LABELS,
            Self::Classify { .. } => Self::TAG_CLASSIFY,
            Self::Ping { .. } => Self::TAG_PING,
            Self::GetStats { .. } => Self::TAG_GET_STATS,
            Self::DeployBegin { .. } => Self::TAG_DEPLOY_BEGIN,
            Self::DeployChunk { .. } => Self::TAG_DEPLOY_CHUNK,
            Self::DeployCommit { .. } => Self::TAG_DEPLOY_COMMIT,
            Self::Rollback { .. } => Self::TAG_ROLLBACK,
        }
    }

    fn peek_id(_tag: u32, rest: &[u8]) -> Option<u32> {
        varint::read_u32(rest).map(|(id, _)| id)
    }

    fn check_limits(tag: u32, rest: &[u8]) -> Option<ErrorCode> {
        if tag != Self::TAG_CLASSIFY {
            return None;
        }
        let (_, n) = varint::read_u32(rest)?;
        let (len, _) = varint::read_u32(&rest[n..])?;
        (len as usize > MAX_TEXT_LEN).then_some(ErrorCode::TextTooLong)
    }
}

impl Message for Response {
    const KNOWN_TAGS: u32 = 9;

    fn tag(&self) -> u32 {
        match self {
            Self::Info { .. } => Self::TAG_INFO,
            Self::Labels { .. } => Self::TAG_LABELS,
            Self::Result { .. } => Self::TAG_RESULT,
            Self::Pong { .. } => Self::TAG_PONG,
            Self::Stats { .. } => Self::TAG_STATS,
            Self::Error { .. } => Self::TAG_ERROR,
            Self::DeployStatus { .. } => Self::TAG_DEPLOY_STATUS,
            Self::DeployAck { .. } => Self::TAG_DEPLOY_ACK,
            Self::DeployDone { .. } => Self::TAG_DEPLOY_DONE,
        }
    }

    fn peek_id(tag: u32, rest: &[u8]) -> Option<u32> {
        if tag == Self::TAG_ERROR {
            match rest.first()? {
                1 => varint::read_u32(&rest[1..]).map(|(id, _)| id),
                _ => None,
            }
        } else {
            varint::read_u32(rest).map(|(id, _)| id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_u16_round_trip() {
        for v in 0..=64u16 {
            assert_eq!(u16::from(ErrorCode::from(v)), v);
        }
        assert_eq!(ErrorCode::from(10), ErrorCode::VersionMismatch);
        assert_eq!(ErrorCode::from(11), ErrorCode::Other(11));
        assert_eq!(ErrorCode::from(u16::MAX), ErrorCode::Other(u16::MAX));
    }

    #[test]
    fn truncated_respects_char_boundaries() {
        let s: String<4> = truncated("aé€"); // a(1) é(2) €(3)
        assert_eq!(s.as_str(), "aé");
        let s: String<8> = truncated("short");
        assert_eq!(s.as_str(), "short");
        let s: String<0> = truncated("x");
        assert_eq!(s.as_str(), "");
    }

    #[test]
    fn error_fmt_truncates() {
        let long = "x".repeat(200);
        let r = Response::error_fmt(Some(3), ErrorCode::Internal, format_args!("{long}{}", 5));
        match r {
            Response::Error { id, code, detail } => {
                assert_eq!(id, Some(3));
                assert_eq!(code, ErrorCode::Internal);
                assert_eq!(detail.len(), MAX_DETAIL_LEN);
            }
            _ => unreachable!(),
        }
        let r = Response::error_fmt(None, ErrorCode::UnknownMessage, format_args!("tag {}", 12));
        assert!(matches!(r, Response::Error { ref detail, .. } if detail == "tag 12"));
    }

    #[test]
    fn ids() {
        assert_eq!(Request::hello(7).id(), 7);
        assert_eq!(Request::classify(9, "hi").unwrap().id(), 9);
        assert_eq!(Request::classify(9, &"x".repeat(257)), Err(257));
        let e = Response::error(None, ErrorCode::Busy, "");
        assert_eq!(e.id(), None);
    }
}
