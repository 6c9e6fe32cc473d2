//! Frames: `COBS(postcard(message) ‖ CRC-32 LE) ‖ 0x00`.
//!
//! * [`encode`] writes one complete frame (including the trailing `0x00`)
//!   into a caller's buffer and returns the used part. It serialises,
//!   CRCs and COBS-encodes in one pass, without any scratch buffer.
//! * [`FrameDecoder`] is fed arbitrary chunks of a byte stream and yields
//!   one `Result<M, FrameError>` per non-empty frame. It holds at most
//!   `N - 1` (default [`MAX_FRAME`]` - 1`) encoded bytes, never allocates,
//!   never panics, and resynchronises at the next `0x00` after any bad or
//!   oversize frame.
//!
//! The CRC is the `crc` crate's CRC-32/ISO-HDLC ([`crate::crc`]). COBS is written here
//! (standard Cheshire–Baker COBS, no "reduced" variant): each block is a code byte `c`
//! (1..=255) followed by `c - 1` non-zero data bytes; a block with `c < 255` that is not
//! the last block stands for its data followed by one zero byte. Why not postcard's
//! `Cobs` flavor (the `cobs` crate): it gives the same bytes except when the payload ends
//! on a full 254-byte block, where it appends an empty `0x01` block, a byte that a bit
//! flip can turn into a second delimiter without the CRC seeing it (the test
//! `postcard_flavors_differ_only_on_a_full_last_block` measures it; docs/protocol.md
//! section 2). The encoder here ends such frames canonically, and the decoder also
//! validates what the `cobs` crate's would let through (a `0x00` inside a block).

use core::marker::PhantomData;

use serde::Serialize;

use crate::crc::Crc32;
use crate::messages::{ErrorCode, Message, Response};
use crate::varint;

/// Largest encoded frame in bytes, **including** the `0x00` delimiter.
///
/// Every [`Request`](crate::Request) and [`Response`] fits (the largest, a
/// full `Labels` page, is at most 802 bytes). A receiver needs `MAX_FRAME - 1`
/// bytes of buffer; a sender needs `MAX_FRAME`.
pub const MAX_FRAME: usize = 1024;

/// Length of the CRC trailer.
pub const CRC_LEN: usize = 4;

/// Largest COBS-decoded payload (postcard bytes + CRC) that always fits in
/// [`MAX_FRAME`]: COBS adds at most `1 + len / 254` bytes, plus the delimiter.
pub const MAX_PAYLOAD: usize = 1018;

/// Largest postcard message (`MAX_PAYLOAD - CRC_LEN`).
pub const MAX_MESSAGE: usize = MAX_PAYLOAD - CRC_LEN;

/// Frame delimiter.
pub const DELIMITER: u8 = 0x00;

/// Worst-case COBS-encoded size of `n` payload bytes, without the delimiter.
pub const fn cobs_max_encoded_len(n: usize) -> usize {
    n + 1 + n / 254
}

const _: () = assert!(cobs_max_encoded_len(MAX_PAYLOAD) + 1 == MAX_FRAME);

/// Why a frame could not be turned into a message.
///
/// The variants after `BadCrc` are only produced for frames whose CRC was
/// correct, so the recovered `id` (the varint after the tag) is the one the
/// peer actually sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More than `MAX_FRAME - 1` bytes arrived without a delimiter; they were discarded.
    FrameTooLong,
    /// Invalid COBS, or fewer than 5 decoded bytes (1 tag + 4 CRC).
    BadFrame,
    /// CRC-32 mismatch.
    BadCrc,
    /// The tag is not known to this version.
    UnknownMessage {
        /// The unknown tag.
        tag: u32,
        /// The varint following the tag, by the id-first convention.
        id: Option<u32>,
    },
    /// `Classify.text` declares more than `MAX_TEXT_LEN` bytes.
    TextTooLong {
        /// Id of the request.
        id: Option<u32>,
    },
    /// A string was not valid UTF-8.
    InvalidUtf8 {
        /// Id of the request.
        id: Option<u32>,
    },
    /// Anything else postcard rejected (bad varint/option/enum, a bounded
    /// field over its limit, truncated message, trailing bytes).
    DecodeFailed {
        /// Id of the request, if the prefix was readable.
        id: Option<u32>,
    },
}

impl FrameError {
    /// The matching [`ErrorCode`].
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::FrameTooLong => ErrorCode::FrameTooLong,
            Self::BadFrame => ErrorCode::BadFrame,
            Self::BadCrc => ErrorCode::BadCrc,
            Self::UnknownMessage { .. } => ErrorCode::UnknownMessage,
            Self::TextTooLong { .. } => ErrorCode::TextTooLong,
            Self::InvalidUtf8 { .. } => ErrorCode::InvalidUtf8,
            Self::DecodeFailed { .. } => ErrorCode::DecodeFailed,
        }
    }

    /// The request id, where it could be recovered.
    pub fn id(&self) -> Option<u32> {
        match *self {
            Self::FrameTooLong | Self::BadFrame | Self::BadCrc => None,
            Self::UnknownMessage { id, .. }
            | Self::TextTooLong { id }
            | Self::InvalidUtf8 { id }
            | Self::DecodeFailed { id } => id,
        }
    }

    /// The `Response::Error` a device sends back for this frame.
    pub fn to_response(&self) -> Response {
        Response::error_fmt(self.id(), self.code(), format_args!("{self}"))
    }
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::FrameTooLong => write!(f, "frame longer than {} bytes", MAX_FRAME),
            Self::BadFrame => f.write_str("malformed COBS frame"),
            Self::BadCrc => f.write_str("CRC-32 mismatch"),
            Self::UnknownMessage { tag, .. } => write!(f, "unknown message tag {tag}"),
            Self::TextTooLong { .. } => write!(
                f,
                "text longer than {} bytes",
                crate::messages::MAX_TEXT_LEN
            ),
            Self::InvalidUtf8 { .. } => f.write_str("string is not valid UTF-8"),
            Self::DecodeFailed { .. } => f.write_str("message does not decode"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Why [`encode`] failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The output buffer (shorter than `MAX_FRAME`) cannot hold the frame.
    BufferTooSmall,
    /// The frame would exceed [`MAX_FRAME`]; a receiver would drop it.
    TooLong,
    /// postcard refused the value (cannot happen for [`Request`](crate::Request)/[`Response`]).
    Serialize,
}

impl core::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BufferTooSmall => f.write_str("output buffer too small for frame"),
            Self::TooLong => write!(f, "frame would exceed {} bytes", MAX_FRAME),
            Self::Serialize => f.write_str("postcard serialisation failed"),
        }
    }
}

impl core::error::Error for EncodeError {}

/// Streaming COBS encoder + CRC, used as a postcard flavor.
struct FrameWriter<'a> {
    buf: &'a mut [u8],
    /// Where the current block's code byte goes.
    code_idx: usize,
    /// Next free position.
    pos: usize,
    /// 1 + data bytes in the current block.
    code: u8,
    /// The block before the current one was closed for being full (254 data bytes, no
    /// implied zero): if the data ends with the current block still empty, that empty
    /// block is left out, as canonical COBS does.
    after_full_block: bool,
    crc: Crc32,
}

impl<'a> FrameWriter<'a> {
    fn new(buf: &'a mut [u8]) -> Option<Self> {
        if buf.is_empty() {
            return None;
        }
        Some(Self {
            buf,
            code_idx: 0,
            pos: 1,
            code: 1,
            after_full_block: false,
            crc: Crc32::new(),
        })
    }

    fn close_block(&mut self) -> Option<()> {
        if self.pos >= self.buf.len() {
            return None;
        }
        *self.buf.get_mut(self.code_idx)? = self.code;
        self.code_idx = self.pos;
        self.pos += 1;
        self.code = 1;
        Some(())
    }

    fn put(&mut self, b: u8) -> Option<()> {
        if b == 0 {
            self.after_full_block = false;
            self.close_block()
        } else {
            *self.buf.get_mut(self.pos)? = b;
            self.pos += 1;
            self.code += 1;
            if self.code == 0xFF {
                self.close_block()?;
                self.after_full_block = true;
            }
            Some(())
        }
    }

    /// Closes the last block; returns the encoded length (without a delimiter).
    ///
    /// Data ending on a full block ends the encoding there: an empty `0x01` block after
    /// it would decode to nothing, and a bit flip turning it into `0x00` would end the
    /// frame one byte early with the same payload, a flip the CRC cannot see.
    fn close(&mut self) -> Option<usize> {
        if self.code == 1 && self.after_full_block {
            // Give back the reserved code byte of the empty block.
            return Some(self.code_idx);
        }
        *self.buf.get_mut(self.code_idx)? = self.code;
        Some(self.pos)
    }

    /// Append the CRC, close the last block and the frame; returns the length.
    fn finish(mut self) -> Option<usize> {
        for b in self.crc.finish().to_le_bytes() {
            self.put(b)?;
        }
        let end = self.close()?;
        *self.buf.get_mut(end)? = DELIMITER;
        Some(end + 1)
    }
}

impl postcard::ser_flavors::Flavor for FrameWriter<'_> {
    type Output = Self;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.crc.update_byte(data);
        self.put(data).ok_or(postcard::Error::SerializeBufferFull)
    }

    fn finalize(self) -> postcard::Result<Self> {
        Ok(self)
    }
}

/// Encode `msg` as one complete frame (ending in `0x00`) at the start of
/// `buf`, and return that part of `buf`.
///
/// A buffer of [`MAX_FRAME`] bytes always suffices for
/// [`Request`](crate::Request) and [`Response`].
///
/// ```
/// use protocol::{encode, FrameDecoder, Request};
/// let mut buf = [0u8; protocol::MAX_FRAME];
/// let frame = encode(&Request::Ping { id: 1, nonce: 7 }, &mut buf).unwrap();
/// assert_eq!(frame.last(), Some(&0));
/// let mut dec = FrameDecoder::<Request>::new();
/// let got: Vec<_> = dec.feed(frame).collect();
/// assert_eq!(got, [Ok(Request::Ping { id: 1, nonce: 7 })]);
/// ```
pub fn encode<'b, M: Serialize + ?Sized>(
    msg: &M,
    buf: &'b mut [u8],
) -> Result<&'b [u8], EncodeError> {
    let capped = buf.len() >= MAX_FRAME;
    let full = if capped {
        EncodeError::TooLong
    } else {
        EncodeError::BufferTooSmall
    };
    let limit = buf.len().min(MAX_FRAME);
    let writer = FrameWriter::new(&mut buf[..limit]).ok_or(full)?;
    let writer = match postcard::serialize_with_flavor(msg, writer) {
        Ok(w) => w,
        Err(postcard::Error::SerializeBufferFull) => return Err(full),
        Err(_) => return Err(EncodeError::Serialize),
    };
    let used = writer.finish().ok_or(full)?;
    Ok(&buf[..used])
}

/// [`encode`] into a new `Vec` (only with the `std` feature).
#[cfg(feature = "std")]
pub fn encode_to_vec<M: Serialize + ?Sized>(msg: &M) -> Result<std::vec::Vec<u8>, EncodeError> {
    let mut buf = [0u8; MAX_FRAME];
    encode(msg, &mut buf).map(|f| f.to_vec())
}

/// COBS-encode `data` into `out` (no delimiter appended); returns the length
/// written, or `None` if `out` is too short (≥ [`cobs_max_encoded_len`] always suffices).
pub fn cobs_encode(data: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut w = FrameWriter::new(out)?;
    for &b in data {
        w.put(b)?;
    }
    w.close()
}

/// COBS-decode `buf` in place (it must not contain the `0x00` delimiter);
/// returns the decoded length. Accepts both forms of a payload ending on a
/// full 254-byte block: without a trailing `0x01` block (canonical, what
/// [`encode`] writes) and with one (what earlier builds wrote).
pub fn cobs_decode_in_place(buf: &mut [u8]) -> Result<usize, FrameError> {
    let len = buf.len();
    let mut r = 0;
    let mut w = 0;
    while r < len {
        let code = buf[r] as usize;
        if code == 0 {
            return Err(FrameError::BadFrame);
        }
        r += 1;
        let n = code - 1;
        let end = r + n;
        if end > len {
            return Err(FrameError::BadFrame);
        }
        if buf[r..end].contains(&0) {
            return Err(FrameError::BadFrame);
        }
        buf.copy_within(r..end, w);
        w += n;
        r = end;
        if code != 0xFF && r < len {
            buf[w] = 0;
            w += 1;
        }
    }
    Ok(w)
}

/// Decode postcard message bytes (no COBS, no CRC), classifying failures:
/// unknown tag, `Classify` text too long, invalid UTF-8, anything else.
pub fn decode_message<M: Message>(msg: &[u8]) -> Result<M, FrameError> {
    let Some((tag, n)) = varint::read_u32(msg) else {
        return Err(FrameError::DecodeFailed { id: None });
    };
    let rest = &msg[n..];
    let id = M::peek_id(tag, rest);
    if tag >= M::KNOWN_TAGS {
        return Err(FrameError::UnknownMessage { tag, id });
    }
    if let Some(code) = M::check_limits(tag, rest) {
        return Err(match code {
            ErrorCode::TextTooLong => FrameError::TextTooLong { id },
            _ => FrameError::DecodeFailed { id },
        });
    }
    match postcard::take_from_bytes::<M>(msg) {
        Ok((m, [])) => Ok(m),
        Ok(_) => Err(FrameError::DecodeFailed { id }),
        Err(postcard::Error::DeserializeBadUtf8) => Err(FrameError::InvalidUtf8 { id }),
        Err(_) => Err(FrameError::DecodeFailed { id }),
    }
}

/// Check the CRC of a COBS-decoded payload (`message ‖ crc32 LE`) and decode the message.
pub fn decode_payload<M: Message>(payload: &[u8]) -> Result<M, FrameError> {
    if payload.len() < CRC_LEN + 1 {
        return Err(FrameError::BadFrame);
    }
    let (msg, crc) = payload.split_at(payload.len() - CRC_LEN);
    let want = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crate::crc::crc32(msg) != want {
        return Err(FrameError::BadCrc);
    }
    decode_message(msg)
}

/// Decode one complete encoded frame, with or without its trailing `0x00`.
/// `frame` is used as scratch space (COBS is undone in place).
pub fn decode_frame<M: Message>(frame: &mut [u8]) -> Result<M, FrameError> {
    let frame = match frame.split_last_mut() {
        Some((&mut DELIMITER, body)) => body,
        _ => frame,
    };
    if frame.len() >= MAX_FRAME {
        return Err(FrameError::FrameTooLong);
    }
    let n = cobs_decode_in_place(frame)?;
    decode_payload(&frame[..n])
}

/// Streaming frame decoder for messages of type `M` ([`Request`](crate::Request)
/// on the device, [`Response`] on the host).
///
/// `N` is the largest accepted frame including its delimiter; the decoder
/// keeps an `N - 1` byte buffer inline (no allocation).
///
/// Behaviour per delimiter (`0x00`):
/// * empty frame (two delimiters in a row, or a delimiter at start) → nothing
///   is yielded; senders may send a lone `0x00` to flush a receiver;
/// * more than `N - 1` bytes before it → one `Err(FrameTooLong)`;
/// * otherwise one `Ok(message)` or `Err(..)` (see [`FrameError`]).
///
/// After any error the decoder is at the start of the next frame.
pub struct FrameDecoder<M, const N: usize = MAX_FRAME> {
    buf: [u8; N],
    len: usize,
    overflow: bool,
    _msg: PhantomData<fn() -> M>,
}

impl<M, const N: usize> core::fmt::Debug for FrameDecoder<M, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("FrameDecoder")
            .field("capacity", &N)
            .field("buffered", &self.len)
            .field("discarding", &self.overflow)
            .finish()
    }
}

impl<M: Message, const N: usize> Default for FrameDecoder<M, N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: Message, const N: usize> FrameDecoder<M, N> {
    /// An empty decoder.
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            overflow: false,
            _msg: PhantomData,
        }
    }

    /// Forget any partial frame (e.g. after reopening the port). The next
    /// bytes up to a delimiter are treated as the start of a frame.
    pub fn reset(&mut self) {
        self.len = 0;
        self.overflow = false;
    }

    /// Bytes of the current partial frame held in the buffer.
    pub fn buffered(&self) -> usize {
        self.len
    }

    /// True while an oversize frame is being skipped up to its delimiter.
    pub fn is_discarding(&self) -> bool {
        self.overflow
    }

    /// Feed one byte; returns a result when it completes a non-empty frame.
    pub fn push(&mut self, byte: u8) -> Option<Result<M, FrameError>> {
        if byte == DELIMITER {
            self.end_frame()
        } else {
            self.absorb(&[byte]);
            None
        }
    }

    /// Feed a chunk of any length; iterate the returned value to get one
    /// result per completed frame. Bytes after the last delimiter stay
    /// buffered for the next call.
    ///
    /// The chunk is consumed lazily: drain the iterator (e.g. with `for`),
    /// or bytes not yet reached are lost ([`Feed::remaining`] shows them).
    pub fn feed<'d, 'a>(&'d mut self, input: &'a [u8]) -> Feed<'d, 'a, M, N> {
        Feed { dec: self, input }
    }

    fn absorb(&mut self, chunk: &[u8]) {
        if self.overflow {
            return;
        }
        let cap = N.saturating_sub(1);
        let end = self.len + chunk.len();
        match self.buf.get_mut(self.len..end) {
            Some(dst) if end <= cap => {
                dst.copy_from_slice(chunk);
                self.len = end;
            }
            _ => {
                self.overflow = true;
                self.len = 0;
            }
        }
    }

    fn end_frame(&mut self) -> Option<Result<M, FrameError>> {
        if self.overflow {
            self.reset();
            return Some(Err(FrameError::FrameTooLong));
        }
        if self.len == 0 {
            return None;
        }
        let len = core::mem::take(&mut self.len);
        let frame = &mut self.buf[..len];
        Some(cobs_decode_in_place(frame).and_then(|n| decode_payload(&frame[..n])))
    }
}

/// Iterator returned by [`FrameDecoder::feed`].
#[must_use = "frames are only decoded while the iterator is advanced"]
pub struct Feed<'d, 'a, M, const N: usize> {
    dec: &'d mut FrameDecoder<M, N>,
    input: &'a [u8],
}

impl<'a, M, const N: usize> Feed<'_, 'a, M, N> {
    /// Input not consumed yet.
    pub fn remaining(&self) -> &'a [u8] {
        self.input
    }
}

impl<M: Message, const N: usize> Iterator for Feed<'_, '_, M, N> {
    type Item = Result<M, FrameError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.input.is_empty() {
            match self.input.iter().position(|&b| b == DELIMITER) {
                None => {
                    self.dec.absorb(self.input);
                    self.input = &[];
                }
                Some(p) => {
                    let (chunk, rest) = self.input.split_at(p);
                    self.input = &rest[1..];
                    self.dec.absorb(chunk);
                    if let Some(r) = self.dec.end_frame() {
                        return Some(r);
                    }
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Request, Response};

    fn cobs_round_trip(data: &[u8]) {
        let mut enc = [0u8; 2048];
        let n = cobs_encode(data, &mut enc).unwrap();
        assert!(n <= cobs_max_encoded_len(data.len()), "len {}", data.len());
        assert!(!enc[..n].contains(&0));
        let mut dec = enc;
        let m = cobs_decode_in_place(&mut dec[..n]).unwrap();
        assert_eq!(&dec[..m], data);
    }

    #[test]
    fn cobs_vectors() {
        // Wikipedia examples.
        let cases: &[(&[u8], &[u8])] = &[
            (&[0x00], &[0x01, 0x01]),
            (&[0x00, 0x00], &[0x01, 0x01, 0x01]),
            (&[0x00, 0x11, 0x00], &[0x01, 0x02, 0x11, 0x01]),
            (&[0x11, 0x22, 0x00, 0x33], &[0x03, 0x11, 0x22, 0x02, 0x33]),
            (&[0x11, 0x22, 0x33, 0x44], &[0x05, 0x11, 0x22, 0x33, 0x44]),
            (&[0x11, 0x00, 0x00, 0x00], &[0x02, 0x11, 0x01, 0x01, 0x01]),
            (&[], &[0x01]),
        ];
        for (raw, enc) in cases {
            let mut out = [0u8; 16];
            let n = cobs_encode(raw, &mut out).unwrap();
            assert_eq!(&out[..n], *enc, "encode {raw:02x?}");
            let mut d = [0u8; 16];
            d[..enc.len()].copy_from_slice(enc);
            let m = cobs_decode_in_place(&mut d[..enc.len()]).unwrap();
            assert_eq!(&d[..m], *raw, "decode {enc:02x?}");
        }
    }

    #[test]
    fn cobs_long_runs() {
        let mut data = [0u8; 1100];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i % 255) as u8 + 1;
        }
        for n in [0, 1, 253, 254, 255, 508, 509, 1018, 1100] {
            cobs_round_trip(&data[..n]);
        }
        for n in [0, 1, 254, 255, 1018] {
            cobs_round_trip(&[0u8; 1100][..n]);
        }
        // 254 non-zero bytes then a zero.
        let mut d = [7u8; 255];
        d[254] = 0;
        cobs_round_trip(&d);
    }

    #[test]
    fn cobs_rejects_bad_structure() {
        assert_eq!(
            cobs_decode_in_place(&mut [0x05, 1, 2]),
            Err(FrameError::BadFrame)
        );
        assert_eq!(cobs_decode_in_place(&mut [0x00]), Err(FrameError::BadFrame));
        assert_eq!(
            cobs_decode_in_place(&mut [0x03, 1, 0]),
            Err(FrameError::BadFrame)
        );
        assert_eq!(cobs_decode_in_place(&mut []), Ok(0));
    }

    /// The canonical encodings of data ending on a full block (Wikipedia's COBS examples
    /// 7 and 9): no empty `0x01` block after the full one.
    #[test]
    fn cobs_ends_on_a_full_block_canonically() {
        // 1..=254, then 0xFF or 0x00.
        let mut data = [0u8; 255];
        for (i, b) in data.iter_mut().enumerate() {
            *b = (i as u8).wrapping_add(1);
        }
        let mut out = [0u8; 300];
        let n = cobs_encode(&data[..254], &mut out).unwrap();
        assert_eq!(n, 255);
        assert_eq!(out[0], 0xFF);
        assert_eq!(&out[1..255], &data[..254]);
        let n = cobs_encode(&data, &mut out).unwrap();
        assert_eq!(&out[254..n], &[0xFE, 0x02, 0xFF]);
        cobs_round_trip(&data);
        // A zero after a full block still needs its own block and the final one.
        data[254] = 0;
        let n = cobs_encode(&data, &mut out).unwrap();
        assert_eq!(&out[255..n], &[0x01, 0x01]);
        cobs_round_trip(&data);
        cobs_round_trip(&data[..254]);
    }

    /// The reason COBS is not postcard's `Cobs` flavor: postcard's `CrcModifier` over
    /// `Cobs` (the `cobs` crate) gives this module's frames byte for byte, except when the
    /// payload ends on a full block, where it adds an empty `0x01` block.
    #[test]
    fn postcard_flavors_differ_only_on_a_full_last_block() {
        use postcard::ser_flavors::{crc::CrcModifier, Cobs, Slice};
        static CRC: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
        let text = [b'a'; crate::MAX_TEXT_LEN];
        let (mut same, mut full_block) = (0, 0);
        for id in [1u32, 300, 70_000] {
            for len in 0..=text.len() {
                let m = Request::classify(id, core::str::from_utf8(&text[..len]).unwrap()).unwrap();
                let mut ours = [0u8; MAX_FRAME];
                let ours = encode(&m, &mut ours).unwrap();
                let mut theirs = [0u8; MAX_FRAME + 8];
                let flavor = CrcModifier::new(
                    Cobs::try_new(Slice::new(&mut theirs)).unwrap(),
                    CRC.digest(),
                );
                let theirs = postcard::serialize_with_flavor(&m, flavor).unwrap();
                if ours == &theirs[..] {
                    same += 1;
                } else {
                    // Same frame plus an empty block before the delimiter.
                    assert_eq!(theirs.len(), ours.len() + 1, "id {id} len {len}");
                    assert_eq!(&theirs[theirs.len() - 2..], &[0x01, 0x00]);
                    assert_eq!(&theirs[..ours.len() - 1], &ours[..ours.len() - 1]);
                    full_block += 1;
                }
            }
        }
        extern crate std;
        std::eprintln!(
            "postcard flavors: {same} frames identical, {full_block} with an extra 0x01 block"
        );
        assert!(
            full_block > 0 && same > 700,
            "{same} same, {full_block} differ"
        );
    }

    #[test]
    fn cobs_accepts_both_block_end_forms() {
        let mut a = [0u8; 256];
        a[0] = 0xFF;
        a[1..255].fill(9);
        a[255] = 0x01;
        let n = cobs_decode_in_place(&mut a.clone()).unwrap();
        assert_eq!(n, 254);
        let n = cobs_decode_in_place(&mut a[..255]).unwrap();
        assert_eq!(n, 254);
    }

    #[test]
    fn encode_buffer_errors() {
        let msg = Request::Ping { id: 1, nonce: 2 };
        for n in 0..8 {
            let mut b = [0u8; 8];
            let r = encode(&msg, &mut b[..n]);
            let exact = encode(&msg, &mut [0u8; 64]).unwrap().len();
            if n < exact {
                assert_eq!(r, Err(EncodeError::BufferTooSmall), "n={n}");
            } else {
                assert!(r.is_ok());
            }
        }
        // A value too big for any frame.
        let big_arr = [7u8; 1500];
        let big: &[u8] = &big_arr;
        assert_eq!(encode(big, &mut [0u8; 4096]), Err(EncodeError::TooLong));
        assert_eq!(
            encode(big, &mut [0u8; 100]),
            Err(EncodeError::BufferTooSmall)
        );
    }

    #[test]
    fn decoder_with_tiny_capacity_never_panics() {
        let mut buf = [0u8; MAX_FRAME];
        let frame = encode(&Request::Ping { id: 1, nonce: 2 }, &mut buf).unwrap();
        let mut d0 = FrameDecoder::<Request, 0>::new();
        assert!(d0.feed(frame).all(|r| r == Err(FrameError::FrameTooLong)));
        let mut d1 = FrameDecoder::<Request, 1>::new();
        assert_eq!(
            d1.feed(frame).collect::<std::vec::Vec<_>>(),
            [Err(FrameError::FrameTooLong)]
        );
        let mut exact = FrameDecoder::<Request, 9>::new();
        assert_eq!(frame.len(), 9);
        assert_eq!(
            exact.feed(frame).collect::<std::vec::Vec<_>>(),
            [Ok(Request::Ping { id: 1, nonce: 2 })]
        );
    }

    #[test]
    fn to_response_carries_id_and_code() {
        let e = FrameError::UnknownMessage {
            tag: 9,
            id: Some(4),
        };
        assert_eq!(
            e.to_response(),
            Response::error(Some(4), ErrorCode::UnknownMessage, "unknown message tag 9")
        );
        assert_eq!(FrameError::BadCrc.to_response().id(), None);
    }
}
