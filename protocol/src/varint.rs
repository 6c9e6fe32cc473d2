//! Postcard's unsigned varint (LEB128), for peeking at a message's prefix
//! (tag, id, text length) without decoding the whole message.
//!
//! Encoding: 7 bits per byte, least significant group first, bit 7 set on
//! every byte except the last. A `u32` takes 1–5 bytes; as in postcard, a
//! 5th byte above `0x0F` (bits beyond 32) is rejected. Non-minimal encodings
//! (e.g. `80 00` for 0) are accepted, like postcard does.

/// Maximum encoded length of a `u32` varint.
pub const MAX_U32_LEN: usize = 5;

/// Read a `u32` varint from the start of `bytes`: `(value, bytes used)`,
/// or `None` if it is truncated or overflows 32 bits.
///
/// ```
/// assert_eq!(protocol::varint::read_u32(&[0x2A]), Some((42, 1)));
/// assert_eq!(protocol::varint::read_u32(&[0xAC, 0x02, 0xFF]), Some((300, 2)));
/// assert_eq!(protocol::varint::read_u32(&[0x80]), None);
/// ```
pub fn read_u32(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut out = 0u32;
    for (i, &b) in bytes.iter().take(MAX_U32_LEN).enumerate() {
        out |= ((b & 0x7F) as u32) << (7 * i);
        if b & 0x80 == 0 {
            if i == MAX_U32_LEN - 1 && b > 0x0F {
                return None;
            }
            return Some((out, i + 1));
        }
    }
    None
}

/// Write `v` as a varint into `out`; returns the number of bytes written,
/// or `None` if `out` is too short.
///
/// ```
/// let mut b = [0u8; 5];
/// assert_eq!(protocol::varint::write_u32(300, &mut b), Some(2));
/// assert_eq!(&b[..2], &[0xAC, 0x02]);
/// ```
pub fn write_u32(mut v: u32, out: &mut [u8]) -> Option<usize> {
    let mut i = 0;
    loop {
        let slot = out.get_mut(i)?;
        if v < 0x80 {
            *slot = v as u8;
            return Some(i + 1);
        }
        *slot = (v as u8 & 0x7F) | 0x80;
        v >>= 7;
        i += 1;
    }
}

/// A message's tag and, if it can be recovered, its request id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Variant tag (first varint of the postcard bytes).
    pub tag: u32,
    /// Request id (the field right after the tag), if readable.
    pub id: Option<u32>,
}

/// Peek at the tag and id of postcard message bytes of `M` (no CRC, no COBS),
/// without decoding the rest. `None` if not even the tag is readable.
///
/// Works for tags unknown to this version too (the id-first convention).
///
/// ```
/// use protocol::{varint::{peek_header, Header}, Request};
/// // Classify (tag 2), id 300, then a text whose bytes are not valid UTF-8:
/// let bytes = [0x02, 0xAC, 0x02, 0x02, 0xFF, 0xFE];
/// assert_eq!(peek_header::<Request>(&bytes), Some(Header { tag: 2, id: Some(300) }));
/// ```
pub fn peek_header<M: crate::Message>(message: &[u8]) -> Option<Header> {
    let (tag, n) = read_u32(message)?;
    Some(Header {
        tag,
        id: M::peek_id(tag, &message[n..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_postcard() {
        let samples = [
            0u32,
            1,
            127,
            128,
            255,
            300,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            u32::MAX - 1,
            u32::MAX,
        ];
        for v in samples {
            let mut pc = [0u8; 8];
            let enc = postcard::to_slice(&v, &mut pc).unwrap();
            let mut mine = [0u8; 5];
            let n = write_u32(v, &mut mine).unwrap();
            assert_eq!(&mine[..n], &*enc);
            assert_eq!(read_u32(enc), Some((v, n)));
        }
    }

    #[test]
    fn rejects_truncated_and_overflow() {
        assert_eq!(read_u32(&[]), None);
        assert_eq!(read_u32(&[0xFF, 0xFF]), None);
        assert_eq!(
            read_u32(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]),
            Some((u32::MAX, 5))
        );
        assert_eq!(read_u32(&[0xFF, 0xFF, 0xFF, 0xFF, 0x10]), None);
        assert_eq!(read_u32(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), None);
        assert_eq!(write_u32(300, &mut [0u8; 1]), None);
    }
}
