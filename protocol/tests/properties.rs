//! Property tests (proptest).

mod common;

use common::*;
use proptest::prelude::*;
use protocol::{
    messages::truncated, ErrorCode, FrameDecoder, FrameError, Request, Response, Source, MAX_FRAME,
};

fn bstr<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    let max_chars = N;
    proptest::string::string_regex(&format!("(?s).{{0,{max_chars}}}"))
        .unwrap()
        .prop_map(|s| truncated::<N>(&s))
}

fn bvec<T: core::fmt::Debug + Clone, const N: usize>(
    elem: impl Strategy<Value = T>,
) -> impl Strategy<Value = heapless::Vec<T, N>> {
    prop::collection::vec(elem, 0..=N).prop_map(|v| heapless::Vec::from_slice(&v).unwrap())
}

/// Any f32 except NaN (NaN != NaN would break equality checks).
fn f() -> impl Strategy<Value = f32> {
    use prop::num::f32::*;
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO | INFINITE
}

/// Small and large values so varints of every length occur.
fn u32v() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..200, any::<u32>()]
}

fn u16v() -> impl Strategy<Value = u16> {
    prop_oneof![0u16..200, any::<u16>()]
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (u32v(), u16v()).prop_map(|(id, protocol_version)| Request::Hello {
            id,
            protocol_version
        }),
        (u32v(), u16v()).prop_map(|(id, offset)| Request::GetLabels { id, offset }),
        (u32v(), bstr::<256>()).prop_map(|(id, text)| Request::Classify { id, text }),
        (u32v(), u32v()).prop_map(|(id, nonce)| Request::Ping { id, nonce }),
        u32v().prop_map(|id| Request::GetStats { id }),
    ]
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    any::<u16>().prop_map(ErrorCode::from)
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (
            u32v(),
            u16v(),
            bstr::<32>(),
            bstr::<48>(),
            any::<[u8; 32]>(),
            u16v(),
            u16v()
        )
            .prop_map(
                |(
                    id,
                    protocol_version,
                    software_version,
                    model_name,
                    model_sha256,
                    label_count,
                    max_text_len,
                )| {
                    Response::Info {
                        id,
                        protocol_version,
                        software_version,
                        model_name,
                        model_sha256,
                        label_count,
                        max_text_len,
                    }
                }
            ),
        (
            u32v(),
            u16v(),
            u16v(),
            bvec::<_, { protocol::MAX_LABELS_PER_PAGE }>(bstr::<{ protocol::MAX_LABEL_LEN }>())
        )
            .prop_map(|(id, offset, total, labels)| Response::Labels {
                id,
                offset,
                total,
                labels
            }),
        (
            u32v(),
            prop_oneof![
                Just(Source::Request),
                u32v().prop_map(|seq| Source::Local { seq })
            ],
            u16v(),
            f(),
            bvec::<_, 5>((u16v(), f())),
            bvec::<_, 5>((bstr::<24>(), f())),
            u32v(),
            any::<bool>()
        )
            .prop_map(
                |(
                    id,
                    source,
                    label_index,
                    confidence,
                    top_k,
                    top_tokens,
                    inference_us,
                    rejected,
                )| {
                    Response::Result {
                        id,
                        source,
                        label_index,
                        confidence,
                        top_k,
                        top_tokens,
                        inference_us,
                        rejected,
                    }
                }
            ),
        (u32v(), u32v()).prop_map(|(id, nonce)| Response::Pong { id, nonce }),
        (u32v(), prop::array::uniform10(u32v())).prop_map(|(id, c)| Response::Stats {
            id,
            frames_in: c[0],
            frames_out: c[1],
            crc_failures: c[2],
            decode_errors: c[3],
            queue_drops: c[4],
            inferences: c[5],
            latency_p50_us: c[6],
            latency_p99_us: c[7],
            latency_max_us: c[8],
            uptime_s: c[9],
        }),
        (prop::option::of(u32v()), error_code(), bstr::<96>())
            .prop_map(|(id, code, detail)| Response::Error { id, code, detail }),
    ]
}

/// Feed `bytes` split at the given (sorted, deduplicated) cut points.
fn feed_split<M: protocol::Message>(bytes: &[u8], cuts: &[usize]) -> Vec<Result<M, FrameError>> {
    let mut d = FrameDecoder::<M>::new();
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts.iter().chain(std::iter::once(&bytes.len())) {
        let c = c.min(bytes.len()).max(start);
        out.extend(d.feed(&bytes[start..c]));
        start = c;
    }
    out
}

fn cuts(max_len: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..=max_len, 0..8).prop_map(|mut v| {
        v.sort();
        v.dedup();
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn request_encode_decode_identity(m in request(), c in cuts(300)) {
        let f = frame(&m);
        prop_assert!(f.len() <= MAX_FRAME);
        prop_assert_eq!(f.iter().filter(|&&b| b == 0).count(), 1);
        prop_assert_eq!(feed_split::<Request>(&f, &c), vec![Ok(m)]);
    }

    #[test]
    fn response_encode_decode_identity(m in response(), c in cuts(900)) {
        let f = frame(&m);
        prop_assert!(f.len() <= MAX_FRAME);
        prop_assert_eq!(f.iter().filter(|&&b| b == 0).count(), 1);
        prop_assert_eq!(feed_split::<Response>(&f, &c), vec![Ok(m)]);
    }

    #[test]
    fn arbitrary_streams_never_panic(
        bytes in prop::collection::vec(prop_oneof![3 => any::<u8>(), 1 => Just(0u8)], 0..4096),
        c in cuts(4096),
    ) {
        let zeros = bytes.iter().filter(|&&b| b == 0).count();
        let a = feed_split::<Request>(&bytes, &c);
        prop_assert!(a.len() <= zeros);
        // Chunking does not change the outcome.
        prop_assert_eq!(&a, &decode_bytewise::<Request>(&bytes));
        let b = feed_split::<Response>(&bytes, &c);
        prop_assert!(b.len() <= zeros);
    }

    #[test]
    fn valid_frames_inside_noise_never_panic_and_survive_resync(
        noise in prop::collection::vec(any::<u8>(), 0..2000),
        m in request(),
        c in cuts(2400),
    ) {
        let mut stream = noise.clone();
        stream.push(0);
        stream.extend(frame(&m));
        let out = feed_split::<Request>(&stream, &c);
        prop_assert_eq!(out.last(), Some(&Ok(m)));
    }

    #[test]
    fn single_bit_flip_never_yields_a_different_request(m in request(), bit in any::<prop::sample::Index>()) {
        let f = frame(&m);
        let i = bit.index(f.len() * 8);
        let mut bad = f.clone();
        bad[i / 8] ^= 1 << (i % 8);
        bad.push(0);
        let sentinel = Request::GetStats { id: 0xABCD };
        bad.extend(frame(&sentinel));
        let out = decode_all::<Request>(&bad);
        prop_assert_eq!(out.last(), Some(&Ok(sentinel)));
        for got in out[..out.len() - 1].iter().flatten() {
            prop_assert_eq!(got, &m);
        }
    }

    #[test]
    fn single_bit_flip_never_yields_a_different_response(m in response(), bit in any::<prop::sample::Index>()) {
        let f = frame(&m);
        let i = bit.index(f.len() * 8);
        let mut bad = f.clone();
        bad[i / 8] ^= 1 << (i % 8);
        bad.push(0);
        let out = decode_all::<Response>(&bad);
        for got in out.iter().flatten() {
            prop_assert_eq!(got, &m);
        }
    }

    #[test]
    fn single_bit_flips_in_payload_bytes_are_always_detected(m in request()) {
        // Every bit of every byte except the delimiter, exhaustively for this message.
        let f = frame(&m);
        for i in 0..(f.len() - 1) * 8 {
            let mut bad = f.clone();
            bad[i / 8] ^= 1 << (i % 8);
            for r in decode_all::<Request>(&bad) {
                prop_assert!(r.is_err(), "flip {} gave {:?}", i, r);
            }
        }
    }
}
