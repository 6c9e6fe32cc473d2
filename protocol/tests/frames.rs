//! Frame-level behaviour: round trips, corruption, resync, error classification.

mod common;

use common::*;
use protocol::{
    decode_frame, varint, ErrorCode, FrameDecoder, FrameError, Message, Request, Response,
    MAX_FRAME, MAX_LABELS_PER_PAGE, MAX_TEXT_LEN,
};

#[test]
fn every_request_round_trips() {
    for m in sample_requests().into_iter().chain(max_requests()) {
        let f = frame(&m);
        assert_eq!(decode_all::<Request>(&f), vec![Ok(m.clone())], "{m:?}");
        assert_eq!(decode_bytewise::<Request>(&f), vec![Ok(m.clone())]);
        let mut copy = f.clone();
        assert_eq!(decode_frame::<Request>(&mut copy), Ok(m.clone()));
        let mut no_delim = f[..f.len() - 1].to_vec();
        assert_eq!(decode_frame::<Request>(&mut no_delim), Ok(m.clone()));
    }
}

#[test]
fn every_response_round_trips() {
    for m in sample_responses().into_iter().chain(max_responses()) {
        let f = frame(&m);
        assert_eq!(decode_all::<Response>(&f), vec![Ok(m.clone())], "{m:?}");
        assert_eq!(decode_bytewise::<Response>(&f), vec![Ok(m.clone())]);
    }
}

#[test]
fn every_variant_is_covered_by_samples() {
    let mut req_tags: Vec<u32> = sample_requests().iter().map(|m| m.tag()).collect();
    req_tags.dedup();
    assert_eq!(req_tags, (0..Request::KNOWN_TAGS).collect::<Vec<_>>());
    let mut resp_tags: Vec<u32> = sample_responses().iter().map(|m| m.tag()).collect();
    resp_tags.dedup();
    assert_eq!(resp_tags, (0..Response::KNOWN_TAGS).collect::<Vec<_>>());
}

#[test]
fn tag_and_id_are_the_first_varints() {
    for m in sample_requests().into_iter().chain(max_requests()) {
        let mut buf = [0u8; MAX_FRAME];
        let bytes = postcard::to_slice(&m, &mut buf).unwrap();
        let h = varint::peek_header::<Request>(bytes).unwrap();
        assert_eq!(h.tag, m.tag());
        assert_eq!(h.id, Some(m.id()));
    }
    for m in sample_responses().into_iter().chain(max_responses()) {
        let mut buf = [0u8; MAX_FRAME];
        let bytes = postcard::to_slice(&m, &mut buf).unwrap();
        let h = varint::peek_header::<Response>(bytes).unwrap();
        assert_eq!(h.tag, m.tag());
        match m {
            Response::Result { id, .. } => assert_eq!(h.id, Some(id)),
            _ => assert_eq!(h.id, m.id()),
        }
    }
}

#[test]
fn largest_messages_fit_in_a_frame() {
    let mut largest = 0;
    for m in max_requests() {
        largest = largest.max(frame(&m).len());
    }
    for m in max_responses() {
        let n = frame(&m).len();
        assert!(n <= MAX_FRAME, "{n} > {MAX_FRAME}: {m:?}");
        largest = largest.max(n);
    }
    // Keep a safety margin so a field can grow without changing MAX_FRAME.
    assert!(largest <= 900, "largest frame is {largest} bytes");
}

#[test]
fn crc_known_answer() {
    assert_eq!(protocol::crc::crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn a_corrupted_byte_never_yields_a_wrong_message() {
    let good = Request::Ping { id: 77, nonce: 5 };
    for m in sample_requests() {
        let f = frame(&m);
        for pos in 0..f.len() {
            for v in 0..=255u8 {
                if v == f[pos] {
                    continue;
                }
                let mut bad = f.clone();
                bad[pos] = v;
                // A separating delimiter, then a good frame to prove resync.
                bad.push(0);
                bad.extend(frame(&good));
                let out = decode_all::<Request>(&bad);
                assert_eq!(out.last(), Some(&Ok(good.clone())), "pos {pos} val {v:#x}");
                for r in &out[..out.len() - 1] {
                    assert!(r.is_err(), "pos {pos} val {v:#x} gave {r:?} for {m:?}");
                }
            }
        }
    }
}

#[test]
fn corrupted_data_byte_is_bad_crc() {
    let m = Request::Ping {
        id: 1,
        nonce: 0x0101_0101,
    };
    let mut f = frame(&m);
    // Byte 1 is a data byte (the tag 3), not a COBS code byte.
    f[1] ^= 0x40;
    assert_eq!(decode_all::<Request>(&f), vec![Err(FrameError::BadCrc)]);
}

#[test]
fn truncated_frames_are_errors_then_resync() {
    let m = Request::classify(9, "what is the weather tomorrow").unwrap();
    let f = frame(&m);
    for cut in 1..f.len() - 1 {
        let mut stream = f[..cut].to_vec();
        stream.push(0);
        stream.extend(&f);
        let out = decode_all::<Request>(&stream);
        assert_eq!(out.len(), 2, "cut {cut}");
        assert!(
            matches!(out[0], Err(FrameError::BadCrc | FrameError::BadFrame)),
            "cut {cut}: {:?}",
            out[0]
        );
        assert_eq!(out[1], Ok(m.clone()));
    }
}

#[test]
fn oversize_frame_then_good_frame() {
    let m = Request::GetStats { id: 3 };
    for junk_len in [MAX_FRAME - 1, MAX_FRAME, MAX_FRAME + 1, 5000] {
        let mut stream = vec![0x55u8; junk_len];
        stream.push(0);
        stream.extend(frame(&m));
        let out = decode_all::<Request>(&stream);
        if junk_len < MAX_FRAME {
            // Fits the buffer: rejected as a bad frame instead.
            assert_eq!(out, vec![Err(FrameError::BadFrame), Ok(m.clone())]);
        } else {
            assert_eq!(
                out,
                vec![Err(FrameError::FrameTooLong), Ok(m.clone())],
                "{junk_len}"
            );
        }
        assert_eq!(decode_bytewise::<Request>(&stream), out);
    }
}

#[test]
fn decoder_holds_exactly_max_frame_minus_one() {
    // A frame of exactly MAX_FRAME bytes (incl. delimiter) is accepted.
    let mut d = FrameDecoder::<Request>::new();
    let junk = vec![0x01u8; MAX_FRAME - 1];
    assert_eq!(d.feed(&junk).count(), 0);
    assert!(!d.is_discarding());
    assert_eq!(d.buffered(), MAX_FRAME - 1);
    d.feed(&[1]).for_each(drop);
    assert!(d.is_discarding());
    assert_eq!(
        d.feed(&[0]).collect::<Vec<_>>(),
        vec![Err(FrameError::FrameTooLong)]
    );
    assert!(!d.is_discarding());
    assert_eq!(d.buffered(), 0);
}

#[test]
fn garbage_between_frames() {
    let a = Request::Ping { id: 1, nonce: 1 };
    let b = Request::GetStats { id: 2 };
    let c = Request::hello(3);

    // Delimited garbage: reported, then the next frame decodes.
    let mut stream = frame(&a);
    stream.extend([0x13, 0x37, 0xFF, 0x00, 0xAA, 0x00, 0x00]);
    stream.extend(frame(&b));
    let out = decode_all::<Request>(&stream);
    assert_eq!(out.first(), Some(&Ok(a.clone())));
    assert_eq!(out.last(), Some(&Ok(b.clone())));
    assert_eq!(out.len(), 4);
    assert!(out[1..3].iter().all(|r| r.is_err()));

    // Undelimited garbage glues onto the next frame, which is lost (error),
    // and the one after it decodes again.
    let mut stream = frame(&a);
    stream.extend([0x42, 0x42, 0x42]);
    stream.extend(frame(&b));
    stream.extend(frame(&c));
    let out = decode_all::<Request>(&stream);
    assert_eq!(out.len(), 3);
    assert_eq!(out[0], Ok(a));
    assert!(out[1].is_err());
    assert_eq!(out[2], Ok(c));
}

#[test]
fn leading_garbage_before_first_frame() {
    let m = Request::Ping { id: 5, nonce: 6 };
    let mut stream = vec![0xF0, 0x0F, 0x00];
    stream.extend(frame(&m));
    let out = decode_all::<Request>(&stream);
    assert_eq!(out.last(), Some(&Ok(m)));
}

#[test]
fn empty_frames_are_ignored() {
    let m = Request::Ping { id: 5, nonce: 6 };
    let mut stream = vec![0, 0, 0];
    stream.extend(frame(&m));
    stream.extend([0, 0]);
    assert_eq!(decode_all::<Request>(&stream), vec![Ok(m.clone())]);
    assert_eq!(decode_bytewise::<Request>(&stream), vec![Ok(m)]);
    assert!(decode_all::<Request>(&[0; 100]).is_empty());
}

#[test]
fn tiny_frames_are_bad_frame() {
    // 1..4 decoded bytes cannot hold tag + CRC.
    for body in [
        &[0x02, 0x05][..],
        &[0x03, 1, 2],
        &[0x05, 1, 2, 3, 4],
        &[0x01],
    ] {
        let mut stream = body.to_vec();
        stream.push(0);
        assert_eq!(
            decode_all::<Request>(&stream),
            vec![Err(FrameError::BadFrame)],
            "{body:02x?}"
        );
    }
}

#[test]
fn classify_with_invalid_utf8_keeps_its_id() {
    // tag 2, id 300 (AC 02), text length 3, bytes "a" FF FE.
    let f = frame_raw(&[0x02, 0xAC, 0x02, 0x03, b'a', 0xFF, 0xFE]);
    let out = decode_all::<Request>(&f);
    assert_eq!(out, vec![Err(FrameError::InvalidUtf8 { id: Some(300) })]);
    let reply = out[0].clone().unwrap_err().to_response();
    match reply {
        Response::Error { id, code, .. } => {
            assert_eq!(id, Some(300));
            assert_eq!(code, ErrorCode::InvalidUtf8);
        }
        other => panic!("{other:?}"),
    }
    // The reply itself round-trips.
    assert_eq!(decode_all::<Response>(&frame(&reply)), vec![Ok(reply)]);
}

#[test]
fn classify_with_text_too_long_keeps_its_id() {
    let mut msg = vec![0x02, 0x07];
    let len = MAX_TEXT_LEN + 1;
    msg.extend([(len as u8 & 0x7F) | 0x80, (len >> 7) as u8]);
    msg.extend(std::iter::repeat_n(b'x', len));
    let out = decode_all::<Request>(&frame_raw(&msg));
    assert_eq!(out, vec![Err(FrameError::TextTooLong { id: Some(7) })]);
    assert_eq!(out[0].clone().unwrap_err().code(), ErrorCode::TextTooLong);
}

#[test]
fn exactly_max_text_len_is_accepted() {
    let t = "y".repeat(MAX_TEXT_LEN);
    let m = Request::classify(1, &t).unwrap();
    assert_eq!(decode_all::<Request>(&frame(&m)), vec![Ok(m)]);
}

#[test]
fn unknown_tags_are_unknown_message() {
    // First unknown request tag, with an id.
    let out = decode_all::<Request>(&frame_raw(&[0x09, 0x2A, 0x01, 0x02]));
    assert_eq!(
        out,
        vec![Err(FrameError::UnknownMessage {
            tag: 9,
            id: Some(42)
        })]
    );
    // A big tag (multi-byte varint 200 = C8 01), id 1.
    let out = decode_all::<Request>(&frame_raw(&[0xC8, 0x01, 0x01]));
    assert_eq!(
        out,
        vec![Err(FrameError::UnknownMessage {
            tag: 200,
            id: Some(1)
        })]
    );
    // Unknown tag and nothing after it.
    let out = decode_all::<Request>(&frame_raw(&[0x0A]));
    assert_eq!(
        out,
        vec![Err(FrameError::UnknownMessage { tag: 10, id: None })]
    );
    // Responses: tag 9 is the first unknown one.
    let out = decode_all::<Response>(&frame_raw(&[0x09, 0x03]));
    assert_eq!(
        out,
        vec![Err(FrameError::UnknownMessage {
            tag: 9,
            id: Some(3)
        })]
    );
    assert_eq!(
        out[0].clone().unwrap_err().code(),
        ErrorCode::UnknownMessage
    );
}

#[test]
fn malformed_messages_are_decode_failed_with_id() {
    // Ping id 4 but nonce missing.
    assert_eq!(
        decode_all::<Request>(&frame_raw(&[0x03, 0x04])),
        vec![Err(FrameError::DecodeFailed { id: Some(4) })]
    );
    // Trailing byte after a complete GetStats.
    assert_eq!(
        decode_all::<Request>(&frame_raw(&[0x04, 0x04, 0x00])),
        vec![Err(FrameError::DecodeFailed { id: Some(4) })]
    );
    // Tag varint itself broken.
    assert_eq!(
        decode_all::<Request>(&frame_raw(&[0xFF, 0xFF, 0xFF, 0xFF, 0xFF])),
        vec![Err(FrameError::DecodeFailed { id: None })]
    );
    // Labels page with one label too many.
    let mut msg = vec![0x01, 0x09, 0x00, 0x40, (MAX_LABELS_PER_PAGE + 1) as u8];
    for _ in 0..=MAX_LABELS_PER_PAGE {
        msg.extend([1, b'a']);
    }
    assert_eq!(
        decode_all::<Response>(&frame_raw(&msg)),
        vec![Err(FrameError::DecodeFailed { id: Some(9) })]
    );
    // Error response with a bad Option byte: no id.
    assert_eq!(
        decode_all::<Response>(&frame_raw(&[0x05, 0x02, 0x00, 0x00])),
        vec![Err(FrameError::DecodeFailed { id: None })]
    );
}

#[test]
fn unknown_error_codes_decode_as_other() {
    // Error { id: Some(1), code: 42, detail: "" }
    let out = decode_all::<Response>(&frame_raw(&[0x05, 0x01, 0x01, 0x2A, 0x00]));
    assert_eq!(
        out,
        vec![Ok(Response::error(Some(1), ErrorCode::Other(42), ""))]
    );
}

#[test]
fn hello_with_other_version_still_decodes() {
    let m = Request::Hello {
        id: 1,
        protocol_version: 2,
    };
    assert_eq!(decode_all::<Request>(&frame(&m)), vec![Ok(m)]);
}

#[test]
fn every_chunking_of_a_stream_gives_the_same_results() {
    let mut stream = vec![0];
    for m in sample_requests() {
        stream.extend(frame(&m));
    }
    stream.extend([1, 2, 3, 0]);
    let expected = decode_all::<Request>(&stream);
    assert_eq!(expected.len(), sample_requests().len() + 1);
    for split in 0..=stream.len() {
        let mut d = FrameDecoder::<Request>::new();
        let mut got: Vec<_> = d.feed(&stream[..split]).collect();
        got.extend(d.feed(&stream[split..]));
        assert_eq!(got, expected, "split {split}");
    }
    for size in 1..16 {
        let mut d = FrameDecoder::<Request>::new();
        let got: Vec<_> = stream
            .chunks(size)
            .flat_map(|c| d.feed(c).collect::<Vec<_>>())
            .collect();
        assert_eq!(got, expected, "chunk size {size}");
    }
}

#[test]
fn feed_remaining_shows_unconsumed_input() {
    let a = frame(&Request::GetStats { id: 1 });
    let mut stream = a.clone();
    stream.extend(&a);
    let mut d = FrameDecoder::<Request>::new();
    let mut it = d.feed(&stream);
    assert!(matches!(it.next(), Some(Ok(_))));
    assert_eq!(it.remaining(), &a[..]);
}
