//! CRC-32/ISO-HDLC (the "IEEE" CRC-32 of Ethernet, zlib, PNG), from the `crc` crate
//! (the one postcard's `use-crc` flavors use), behind the two names the frame code and a
//! C implementer need: [`crc32`] and the incremental [`Crc32`].
//!
//! | parameter | value |
//! |---|---|
//! | width | 32 |
//! | polynomial | `0x04C11DB7` (reflected: `0xEDB88320`) |
//! | init | `0xFFFFFFFF` |
//! | reflect in / out | yes / yes |
//! | xor out | `0xFFFFFFFF` |
//! | check (`"123456789"`) | `0xCBF43926` |
//! | residue | `0xDEBB20E3` |
//!
//! The CRC covers the postcard bytes and is appended little-endian *inside* the COBS
//! block (`docs/protocol.md` section 2). The crate's 256-entry table is built at compile
//! time, so it lives in flash/rodata and costs nothing at start-up.

use crc::{Crc, Digest, CRC_32_ISO_HDLC};

/// Reflected CRC-32/ISO-HDLC polynomial.
pub const POLY_REFLECTED: u32 = 0xEDB8_8320;

/// `crc32(b"123456789")`, the catalogue check value.
pub const CHECK: u32 = CRC_32_ISO_HDLC.check;

static CRC: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// Incremental CRC-32/ISO-HDLC.
///
/// ```
/// use protocol::crc::Crc32;
/// let mut c = Crc32::new();
/// c.update(b"1234");
/// c.update(b"56789");
/// assert_eq!(c.finish(), 0xCBF43926);
/// ```
#[derive(Clone)]
pub struct Crc32(Digest<'static, u32>);

impl core::fmt::Debug for Crc32 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_tuple("Crc32").field(&self.finish()).finish()
    }
}

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A fresh digest.
    pub fn new() -> Self {
        Self(CRC.digest())
    }

    /// Feed more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// Feed one byte.
    pub fn update_byte(&mut self, b: u8) {
        self.0.update(&[b]);
    }

    /// The CRC of the bytes fed so far (does not consume the digest).
    pub fn finish(&self) -> u32 {
        self.0.clone().finalize()
    }
}

/// CRC-32/ISO-HDLC of `data` in one call.
pub fn crc32(data: &[u8]) -> u32 {
    CRC.checksum(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit-at-a-time reference, independent of the crate's table.
    fn crc32_bitwise(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                let mask = (crc & 1).wrapping_neg();
                crc = (crc >> 1) ^ (POLY_REFLECTED & mask);
            }
        }
        !crc
    }

    #[test]
    fn known_answer() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b"123456789"), CHECK);
    }

    #[test]
    fn empty_is_zero() {
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn more_known_answers() {
        // Values from zlib's crc32().
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
        assert_eq!(
            crc32(b"The quick brown fox jumps over the lazy dog"),
            0x414F_A339
        );
    }

    #[test]
    fn table_matches_bitwise() {
        let data: [u8; 300] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        for n in 0..data.len() {
            assert_eq!(crc32(&data[..n]), crc32_bitwise(&data[..n]));
        }
    }

    #[test]
    fn incremental_matches_oneshot() {
        let data = b"hello, serial world";
        for split in 0..=data.len() {
            let mut c = Crc32::new();
            c.update(&data[..split]);
            for &b in &data[split..] {
                c.update_byte(b);
            }
            assert_eq!(c.finish(), crc32(data));
        }
    }

    #[test]
    fn residue() {
        // Appending the CRC little-endian and running the CRC over everything
        // (without the final xor) yields the constant residue.
        let data = b"residue check";
        let mut all = [0u8; 17];
        all[..13].copy_from_slice(data);
        all[13..].copy_from_slice(&crc32(data).to_le_bytes());
        let mut c = Crc32::new();
        c.update(&all);
        assert_eq!(c.finish() ^ 0xFFFF_FFFF, 0xDEBB_20E3);
    }
}
