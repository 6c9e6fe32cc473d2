//! Feed arbitrary bytes, in arbitrary chunk splits, to the streaming decoders.
//!
//! Input layout: the first byte `k` says how many of the following bytes
//! (`k % 16`) are chunk-length controls; the rest is the byte stream, cut
//! into chunks whose lengths cycle through the control bytes (`c + 1`,
//! or `c * 8 + 1` for large chunks when bit 7 is set).
//!
//! If bit 7 of `k` is set, the rest is instead taken as *message* bytes:
//! the target appends their CRC and COBS-encodes them into a valid frame
//! (between two delimiters), so postcard decoding and the error
//! classification behind a correct CRC get fuzzed too, not only the CRC check.
//!
//! Checked: no panic; the results do not depend on the chunking (compared
//! with byte-by-byte feeding); every decoded message re-encodes to a frame
//! that decodes to the same bytes again; a small-capacity decoder never
//! yields a message the full-size one would not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{
    crc::crc32, encode, framing::cobs_encode, FrameDecoder, FrameError, Message, Request, Response,
    MAX_FRAME,
};

fn chunks<'a>(stream: &'a [u8], ctrl: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = stream;
    let mut i = 0;
    while !rest.is_empty() {
        let c = if ctrl.is_empty() {
            255
        } else {
            ctrl[i % ctrl.len()]
        };
        i += 1;
        let len = if c & 0x80 != 0 {
            (c as usize & 0x7F) * 8 + 1
        } else {
            c as usize + 1
        };
        let (a, b) = rest.split_at(len.min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

fn check<M: Message + core::fmt::Debug + PartialEq>(stream: &[u8], parts: &[&[u8]]) {
    let mut chunked = FrameDecoder::<M>::new();
    let a: Vec<Result<M, FrameError>> = parts
        .iter()
        .flat_map(|p| chunked.feed(p).collect::<Vec<_>>())
        .collect();

    let mut bytewise = FrameDecoder::<M>::new();
    let b: Vec<Result<M, FrameError>> = stream.iter().filter_map(|&x| bytewise.push(x)).collect();

    // Results must not depend on chunking. Compare via encoded bytes for the
    // Ok case (floats may be NaN, where PartialEq fails).
    assert_eq!(a.len(), b.len());
    let mut buf1 = [0u8; MAX_FRAME];
    let mut buf2 = [0u8; MAX_FRAME];
    for (x, y) in a.iter().zip(&b) {
        match (x, y) {
            (Ok(mx), Ok(my)) => {
                let fx = encode(mx, &mut buf1).expect("decoded message re-encodes");
                let fy = encode(my, &mut buf2).expect("decoded message re-encodes");
                assert_eq!(fx, fy);
                // Re-encoded frame decodes to the same message bytes.
                let mut d = FrameDecoder::<M>::new();
                let again: Vec<_> = d.feed(fx).collect();
                assert_eq!(again.len(), 1);
                let m2 = again
                    .into_iter()
                    .next()
                    .unwrap()
                    .expect("re-encoded frame decodes");
                let f2 = encode(&m2, &mut buf2).unwrap();
                assert_eq!(fx, f2);
            }
            (Err(ex), Err(ey)) => assert_eq!(ex, ey),
            _ => panic!("chunking changed the outcome: {x:?} vs {y:?}"),
        }
    }

    // A decoder with a small buffer never panics and never invents messages.
    let mut small = FrameDecoder::<M, 64>::new();
    let oks = parts
        .iter()
        .flat_map(|p| small.feed(p).collect::<Vec<_>>())
        .filter(|r| r.is_ok())
        .count();
    assert!(oks <= a.iter().filter(|r| r.is_ok()).count());
}

fuzz_target!(|data: &[u8]| {
    let Some((&k, rest)) = data.split_first() else {
        return;
    };
    let n = (k as usize % 16).min(rest.len());
    let (ctrl, stream) = rest.split_at(n);
    if k & 0x80 != 0 {
        let mut payload = stream.to_vec();
        payload.extend_from_slice(&crc32(stream).to_le_bytes());
        let mut framed = vec![0u8; payload.len() + payload.len() / 254 + 3];
        let len = cobs_encode(&payload, &mut framed[1..]).expect("cobs bound");
        framed.truncate(len + 1);
        framed.push(0);
        let parts = chunks(&framed, ctrl);
        check::<Request>(&framed, &parts);
        check::<Response>(&framed, &parts);
    } else {
        let parts = chunks(stream, ctrl);
        check::<Request>(stream, &parts);
        check::<Response>(stream, &parts);
    }
});
