//! Shared helpers for the integration tests.
#![allow(dead_code)]

use protocol::{
    crc::crc32, encode, framing::cobs_encode, messages::truncated, ErrorCode, FrameDecoder,
    FrameError, Message, Request, Response, Source, MAX_FRAME,
};

/// Encode one message into a fresh Vec (frame incl. trailing 0x00).
pub fn frame<M: serde::Serialize>(m: &M) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME];
    encode(m, &mut buf).expect("encode").to_vec()
}

/// Build a frame around raw postcard bytes (computes CRC, COBS, delimiter),
/// to craft frames the typed encoder cannot produce.
pub fn frame_raw(message_bytes: &[u8]) -> Vec<u8> {
    let mut payload = message_bytes.to_vec();
    payload.extend_from_slice(&crc32(message_bytes).to_le_bytes());
    let mut out = vec![0u8; payload.len() + payload.len() / 254 + 2];
    let n = cobs_encode(&payload, &mut out).unwrap();
    out.truncate(n);
    out.push(0);
    out
}

/// Feed `bytes` in one go and collect every result.
pub fn decode_all<M: Message>(bytes: &[u8]) -> Vec<Result<M, FrameError>> {
    let mut d = FrameDecoder::<M>::new();
    d.feed(bytes).collect()
}

/// Feed byte by byte.
pub fn decode_bytewise<M: Message>(bytes: &[u8]) -> Vec<Result<M, FrameError>> {
    let mut d = FrameDecoder::<M>::new();
    bytes.iter().filter_map(|&b| d.push(b)).collect()
}

pub fn s<const N: usize>(x: &str) -> heapless::String<N> {
    heapless::String::try_from(x).expect("fits")
}

/// One (typical) instance of every request variant.
pub fn sample_requests() -> Vec<Request> {
    vec![
        Request::hello(1),
        Request::GetLabels { id: 2, offset: 24 },
        Request::classify(3, "Turn the kitchen lights off, please").unwrap(),
        Request::classify(u32::MAX, "").unwrap(),
        Request::Ping {
            id: 4,
            nonce: 0xDEAD_BEEF,
        },
        Request::GetStats { id: 5 },
        Request::DeployBegin {
            id: 6,
            archive_sha256: [0xAB; 32],
            total_bytes: 3_300_000,
            file_count: 4,
        },
        Request::DeployChunk {
            id: 7,
            offset: 1024,
            data: heapless::Vec::from_slice(&[0, 1, 2, 0, 255]).unwrap(),
        },
        Request::DeployCommit { id: 8 },
        Request::Rollback { id: 9 },
    ]
}

/// The largest possible value of every request variant.
pub fn max_requests() -> Vec<Request> {
    vec![
        Request::Hello {
            id: u32::MAX,
            protocol_version: u16::MAX,
        },
        Request::GetLabels {
            id: u32::MAX,
            offset: u16::MAX,
        },
        Request::Classify {
            id: u32::MAX,
            text: truncated(&"€".repeat(200)),
        },
        Request::Classify {
            id: u32::MAX,
            text: truncated(&"x".repeat(256)),
        },
        Request::Ping {
            id: u32::MAX,
            nonce: u32::MAX,
        },
        Request::GetStats { id: u32::MAX },
        Request::DeployBegin {
            id: u32::MAX,
            archive_sha256: [0xFF; 32],
            total_bytes: u32::MAX,
            file_count: u16::MAX,
        },
        Request::DeployChunk {
            id: u32::MAX,
            offset: u32::MAX,
            data: heapless::Vec::from_slice(&[0xFF; protocol::MAX_CHUNK]).unwrap(),
        },
        Request::DeployChunk {
            id: u32::MAX,
            offset: u32::MAX,
            data: heapless::Vec::from_slice(&[0x00; protocol::MAX_CHUNK]).unwrap(),
        },
        Request::DeployCommit { id: u32::MAX },
        Request::Rollback { id: u32::MAX },
    ]
}

/// One (typical) instance of every response variant.
pub fn sample_responses() -> Vec<Response> {
    let mut labels = heapless::Vec::new();
    for l in ["greeting", "weather", "lights_on", "lights_off"] {
        labels.push(s(l)).unwrap();
    }
    let mut top_k = heapless::Vec::new();
    top_k.push((2, 0.91f32)).unwrap();
    top_k.push((0, 0.05)).unwrap();
    let mut top_tokens = heapless::Vec::new();
    top_tokens.push((s("lights"), 1.25f32)).unwrap();
    top_tokens.push((s("off"), -0.5)).unwrap();
    vec![
        Response::Info {
            id: 1,
            protocol_version: protocol::PROTOCOL_VERSION,
            software_version: s("0.1.0"),
            model_name: s("intent-tiny"),
            model_sha256: core::array::from_fn(|i| i as u8),
            label_count: 150,
            max_text_len: 256,
        },
        Response::Labels {
            id: 2,
            offset: 0,
            total: 4,
            labels,
        },
        Response::Result {
            id: 3,
            source: Source::Request,
            label_index: 2,
            confidence: 0.91,
            top_k: top_k.clone(),
            top_tokens: top_tokens.clone(),
            inference_us: 1234,
            rejected: false,
        },
        Response::Result {
            id: 0,
            source: Source::Local { seq: 17 },
            label_index: 0,
            confidence: 0.5,
            top_k,
            top_tokens,
            inference_us: 99,
            rejected: true,
        },
        Response::Pong {
            id: 4,
            nonce: 0xDEAD_BEEF,
        },
        Response::Stats {
            id: 5,
            frames_in: 10,
            frames_out: 9,
            crc_failures: 1,
            decode_errors: 0,
            queue_drops: 0,
            inferences: 7,
            latency_p50_us: 800,
            latency_p99_us: 2500,
            latency_max_us: 3100,
            uptime_s: 3600,
        },
        Response::error(Some(6), ErrorCode::Busy, "queue full"),
        Response::error(None, ErrorCode::BadCrc, ""),
        Response::error(Some(7), ErrorCode::Other(300), "from the future"),
        Response::DeployStatus { id: 8, have: 4096 },
        Response::DeployAck { id: 9, next: 4608 },
        Response::DeployDone {
            id: 10,
            model_name: s("intent-tiny-v2"),
            model_sha256: [0x5A; 32],
        },
    ]
}

/// The largest possible value of every response variant.
pub fn max_responses() -> Vec<Response> {
    let label: protocol::Label = truncated(&"é".repeat(protocol::MAX_LABEL_LEN / 2));
    let mut labels = heapless::Vec::new();
    while labels.push(label.clone()).is_ok() {}
    let mut top_k = heapless::Vec::new();
    while top_k.push((u16::MAX, f32::MAX)).is_ok() {}
    let mut top_tokens = heapless::Vec::new();
    while top_tokens
        .push((truncated(&"t".repeat(24)), f32::MIN))
        .is_ok()
    {}
    vec![
        Response::Info {
            id: u32::MAX,
            protocol_version: u16::MAX,
            software_version: truncated(&"v".repeat(32)),
            model_name: truncated(&"m".repeat(48)),
            model_sha256: [0xFF; 32],
            label_count: u16::MAX,
            max_text_len: u16::MAX,
        },
        Response::Labels {
            id: u32::MAX,
            offset: u16::MAX,
            total: u16::MAX,
            labels,
        },
        Response::Result {
            id: u32::MAX,
            source: Source::Local { seq: u32::MAX },
            label_index: u16::MAX,
            confidence: f32::MAX,
            top_k,
            top_tokens,
            inference_us: u32::MAX,
            rejected: true,
        },
        Response::Pong {
            id: u32::MAX,
            nonce: u32::MAX,
        },
        Response::Stats {
            id: u32::MAX,
            frames_in: u32::MAX,
            frames_out: u32::MAX,
            crc_failures: u32::MAX,
            decode_errors: u32::MAX,
            queue_drops: u32::MAX,
            inferences: u32::MAX,
            latency_p50_us: u32::MAX,
            latency_p99_us: u32::MAX,
            latency_max_us: u32::MAX,
            uptime_s: u32::MAX,
        },
        Response::Error {
            id: Some(u32::MAX),
            code: ErrorCode::Other(u16::MAX),
            detail: truncated(&"d".repeat(96)),
        },
        Response::DeployStatus {
            id: u32::MAX,
            have: u32::MAX,
        },
        Response::DeployAck {
            id: u32::MAX,
            next: u32::MAX,
        },
        Response::DeployDone {
            id: u32::MAX,
            model_name: truncated(&"m".repeat(48)),
            model_sha256: [0xFF; 32],
        },
    ]
}
