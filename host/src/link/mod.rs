//! The host end of the serial link to a board running `device serve`.
//!
//! * [`client::Link`] opens a port, runs a reader thread that decodes response frames
//!   and routes each to the request with the same id (answers may come out of order);
//!   frames nobody asked for (local results, errors without an id, answers that arrive
//!   after their request timed out) go to an event queue for `tools monitor`.
//! * [`client::Link::handshake`] sends `Hello` and pages the labels with `GetLabels`.
//! * [`bench`] drives many `Classify` requests (over the link or in-process) and
//!   summarises latency, throughput and accuracy; [`histogram`] draws the latency picture.
//!
//! **Lost answers.** The CRC makes a damaged frame undecodable, never wrong. A request
//! whose answer is lost therefore simply times out ([`LinkError::Timeout`]); ids are
//! never reused within a link, so a late answer can not be matched to a newer request.
//! [`client::Link::request`] retries idempotent requests (every request of protocol
//! version 1 is) up to `retries` times on a timeout or a `Busy` answer, each retry with
//! a fresh id; callers that measure (the bench) use `retries = 0` by default and count
//! timeouts as errors.

pub mod bench;
pub mod client;
pub mod deploy;
pub mod histogram;

use protocol::ErrorCode;

/// The wire contract, re-exported for the CLI.
pub use protocol;

pub use client::{Classification, DeviceInfo, DeviceStats, Event, Link, LinkOptions};

/// Errors of the serial link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    // The cause is part of the message, not an error source: `{:#}` would print it twice.
    #[error("cannot open serial port {port}: {cause}")]
    Open {
        port: String,
        cause: serialport::Error,
    },
    #[error("invalid baud rate {0}: must be between 50 and 4000000")]
    Baud(u32),
    #[error("writing to the serial port: {0}")]
    Write(std::io::Error),
    #[error("serial port closed or failed: {0}")]
    Disconnected(String),
    #[error("no answer to request {id} within {ms} ms (frame lost or device busy)")]
    Timeout { id: u32, ms: u64 },
    #[error("device answered request {}: {code}{}", id.map(|i| i.to_string()).unwrap_or_else(|| "?".into()),
            if detail.is_empty() { String::new() } else { format!(" ({detail})") })]
    Device {
        id: Option<u32>,
        code: ErrorCode,
        detail: String,
    },
    #[error("device speaks protocol version {device}, this host {host}")]
    VersionMismatch { device: u16, host: u16 },
    #[error("text is {len} bytes; the device accepts at most {max}")]
    TextTooLong { len: usize, max: usize },
    #[error("unexpected answer to {request}: {got}")]
    Unexpected { request: &'static str, got: String },
    #[error("cannot encode request: {0}")]
    Encode(#[from] protocol::EncodeError),
    #[error(transparent)]
    Host(#[from] crate::error::HostError),
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
}

impl LinkError {
    /// Short category name for error tallies (`timeout`, `busy`, `bad_crc`, …).
    pub fn kind(&self) -> String {
        match self {
            Self::Timeout { .. } => "timeout".into(),
            Self::Device { code, .. } => code.name().into(),
            Self::Disconnected(_) => "disconnected".into(),
            Self::Write(_) => "write".into(),
            Self::TextTooLong { .. } => "text_too_long".into(),
            Self::Unexpected { .. } => "unexpected".into(),
            _ => "other".into(),
        }
    }
}

/// Result alias of this module.
pub type Result<T, E = LinkError> = std::result::Result<T, E>;

/// Nearest-rank percentile of sorted values (0 when empty).
pub fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Lower bound of the time `bytes` take on a UART at `baud` (10 bits per byte: start,
/// 8 data, stop), in microseconds.
pub fn wire_time_us(bytes: usize, baud: u32) -> u64 {
    (bytes as u64 * 10 * 1_000_000) / u64::from(baud.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_time_and_percentiles() {
        assert_eq!(wire_time_us(115_200 / 10, 115_200), 1_000_000);
        assert_eq!(wire_time_us(19 + 40, 115_200), 5_121);
        let v: Vec<u64> = (1..=10).collect();
        assert_eq!(percentile(&v, 50.0), 5);
        assert_eq!(percentile(&v, 90.0), 9);
        assert_eq!(percentile(&v, 99.0), 10);
    }

    #[test]
    fn error_kinds_are_short_names() {
        let e = LinkError::Device {
            id: Some(3),
            code: ErrorCode::Busy,
            detail: "queue full".into(),
        };
        assert_eq!(e.kind(), "busy");
        assert_eq!(
            e.to_string(),
            "device answered request 3: busy (queue full)"
        );
        assert_eq!(LinkError::Timeout { id: 1, ms: 5 }.kind(), "timeout");
    }
}
