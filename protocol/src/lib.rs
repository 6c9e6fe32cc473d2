//! The wire contract between the host and the classifier board.
//!
//! `#![no_std]`, no allocation, no I/O, no `unsafe`: the same crate is used by
//! the `std` host and by the device (or a microcontroller). The byte-level
//! description for implementers in other languages is `docs/protocol.md`.
//!
//! # Version
//!
//! [`PROTOCOL_VERSION`] = **3** (2 added `Result.rejected`; 3 carries labels of up to 64
//! bytes, 12 a page, and names a deploy transfer by the sha256 of the whole archive). The host opens with `Hello`; the device
//! answers `Info` if it speaks that version, else
//! `Error { code: VersionMismatch }`. The layouts of `Hello` (request tag 0),
//! `Info` (response tag 0, at least its `id` and `protocol_version` fields) and
//! `Error` (response tag 5) are frozen across versions, so this exchange
//! always works.
//!
//! # Frame
//!
//! ```text
//! COBS( postcard(message) ‖ CRC-32/ISO-HDLC(postcard bytes), 4 bytes LE ) ‖ 0x00
//! ```
//!
//! At most [`MAX_FRAME`] = 1024 bytes including the delimiter. See
//! [`framing`] for the encoder and the streaming [`FrameDecoder`], and
//! [`crc`] for the CRC (the `crc` crate's CRC-32/ISO-HDLC, table built at compile time).
//!
//! # Messages
//!
//! Every message is a postcard enum: a varint **tag**, then the fields in
//! order. Every request — and every response except `Error` — has its `u32`
//! **id** right after the tag, so a device can name the request in an error
//! even when the rest fails to decode (see [`varint::peek_header`]). Ids are
//! chosen by the host; several requests may be in flight and answers may
//! come in any order. Each request gets exactly one answer carrying its id.
//!
//! | dir | tag | message | fields (wire order) | meaning |
//! |---|---|---|---|---|
//! | H→D | 0 | [`Request::Hello`] | `id: u32, protocol_version: u16` | handshake |
//! | H→D | 1 | [`Request::GetLabels`] | `id: u32, offset: u16` | ask for label names `offset..offset+12` |
//! | H→D | 2 | [`Request::Classify`] | `id: u32, text: str ≤ 256 B` | classify a text |
//! | H→D | 3 | [`Request::Ping`] | `id: u32, nonce: u32` | liveness |
//! | H→D | 4 | [`Request::GetStats`] | `id: u32` | ask for counters |
//! | H→D | 5 | [`Request::DeployBegin`] | `id: u32, archive_sha256: [u8; 32], total_bytes: u32, file_count: u16` | start or resume a model update |
//! | H→D | 6 | [`Request::DeployChunk`] | `id: u32, offset: u32, data: seq ≤ 512 of u8` | archive bytes at `offset` |
//! | H→D | 7 | [`Request::DeployCommit`] | `id: u32` | install and switch to the sent bundle |
//! | H→D | 8 | [`Request::Rollback`] | `id: u32` | switch back to the previous model |
//! | D→H | 0 | [`Response::Info`] | `id: u32, protocol_version: u16, software_version: str ≤ 32 B, model_name: str ≤ 48 B, model_sha256: [u8; 32], label_count: u16, max_text_len: u16` | answer to `Hello` |
//! | D→H | 1 | [`Response::Labels`] | `id: u32, offset: u16, total: u16, labels: seq ≤ 12 of str ≤ 64 B` | one page of label names |
//! | D→H | 2 | [`Response::Result`] | `id: u32, source: Source, label_index: u16, confidence: f32, top_k: seq ≤ 5 of (u16, f32), top_tokens: seq ≤ 5 of (str ≤ 24 B, f32), inference_us: u32, rejected: bool` | a classification (answer to `Classify`, or a device-local one) |
//! | D→H | 3 | [`Response::Pong`] | `id: u32, nonce: u32` | answer to `Ping` |
//! | D→H | 4 | [`Response::Stats`] | `id: u32, frames_in, frames_out, crc_failures, decode_errors, queue_drops, inferences, latency_p50_us, latency_p99_us, latency_max_us, uptime_s: u32` | answer to `GetStats` |
//! | D→H | 5 | [`Response::Error`] | `id: Option<u32>, code: ErrorCode (u16), detail: str ≤ 96 B` | a request or frame failed |
//! | D→H | 6 | [`Response::DeployStatus`] | `id: u32, have: u32` | answer to `DeployBegin`: bytes already held |
//! | D→H | 7 | [`Response::DeployAck`] | `id: u32, next: u32` | answer to `DeployChunk`: next offset wanted |
//! | D→H | 8 | [`Response::DeployDone`] | `id: u32, model_name: str ≤ 48 B, model_sha256: [u8; 32]` | answer to `DeployCommit` / `Rollback`: the model now served |
//!
//! [`Source`]: tag 0 `Request` (no fields) | tag 1 `Local { seq: u32 }` (then
//! `id` is 0). [`ErrorCode`] values: Busy 0, BadFrame 1, BadCrc 2,
//! FrameTooLong 3, DecodeFailed 4, InvalidUtf8 5, TextTooLong 6,
//! UnknownMessage 7, NotReady 8, Internal 9, VersionMismatch 10.
//!
//! Labels are not part of `Info`: 150 labels × 33 bytes would not fit a
//! frame, so the host pages them with `GetLabels { offset: 0, 24, 48, … }`
//! until `offset + labels.len() >= total` (7 round trips for 150 labels).
//!
//! # Example
//!
//! ```
//! use protocol::{encode, FrameDecoder, Request, Response, MAX_FRAME};
//!
//! // Host side.
//! let mut tx = [0u8; MAX_FRAME];
//! let frame = encode(&Request::classify(7, "turn the lights off").unwrap(), &mut tx).unwrap();
//!
//! // Device side: bytes may arrive in any chunking.
//! let mut rx = FrameDecoder::<Request>::new();
//! let (a, b) = frame.split_at(5);
//! assert_eq!(rx.feed(a).count(), 0);
//! for msg in rx.feed(b) {
//!     match msg {
//!         Ok(Request::Classify { id, text }) => assert_eq!((id, text.as_str()), (7, "turn the lights off")),
//!         Ok(other) => panic!("unexpected {other:?}"),
//!         // Answer errors with the id when it could be recovered.
//!         Err(e) => { let _reply: Response = e.to_response(); }
//!     }
//! }
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod crc;
pub mod framing;
pub mod messages;
pub mod varint;

#[cfg(feature = "std")]
pub use framing::encode_to_vec;
pub use framing::{
    decode_frame, decode_message, decode_payload, encode, EncodeError, Feed, FrameDecoder,
    FrameError, MAX_FRAME, MAX_MESSAGE, MAX_PAYLOAD,
};
pub use messages::*;

/// Version of this wire contract; sent in `Hello` and `Info`.
pub const PROTOCOL_VERSION: u16 = 3;

/// Decoder for the device side (receives [`Request`]s).
pub type RequestDecoder = FrameDecoder<Request>;
/// Decoder for the host side (receives [`Response`]s).
pub type ResponseDecoder = FrameDecoder<Response>;
