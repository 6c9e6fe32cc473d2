//! The hex examples of docs/protocol.md, computed and compared with the document.

mod common;

use common::*;
use protocol::{crc::crc32, decode_frame, ErrorCode, Request, Response, Source};

const CLASSIFY_FRAME: &str = "12 02 AC 02 09 6C 69 67 68 74 73 20 6F 6E 8D 9A 12 6C 00";
const RESULT_FRAME: &str = "04 02 AC 02 02 02 01 05 60 3F 02 02 01 03 60 3F 01 01 01 0A 3E 01 06 6C 69 67 68 74 73 01 05 C0 3F D2 09 05 2F DF 5A 88 00";
const ERROR_FRAME: &str = "06 05 01 AC 02 06 05 F5 CC 0C 8E 00";
const HELLO_FRAME: &str = "01 07 01 03 E9 B9 53 7F 00";
const HELLO_V2_FRAME: &str = "01 07 01 02 7F 89 54 08 00";
const DEPLOY_ACK_FRAME: &str = "07 07 05 80 08 37 35 02 8F 00";

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");
    std::fs::read_to_string(path).expect("docs/protocol.md")
}

fn result_example() -> Response {
    let mut top_k = heapless::Vec::new();
    top_k.push((2, 0.875)).unwrap();
    top_k.push((0, 0.125)).unwrap();
    let mut top_tokens = heapless::Vec::new();
    top_tokens.push((s("lights"), 1.5)).unwrap();
    Response::Result {
        id: 300,
        source: Source::Request,
        label_index: 2,
        confidence: 0.875,
        top_k,
        top_tokens,
        inference_us: 1234,
        rejected: false,
    }
}

#[test]
fn classify_example() {
    let m = Request::classify(300, "lights on").unwrap();
    let msg = [
        0x02, 0xAC, 0x02, 0x09, 0x6C, 0x69, 0x67, 0x68, 0x74, 0x73, 0x20, 0x6F, 0x6E,
    ];
    let mut buf = [0u8; 64];
    assert_eq!(postcard::to_slice(&m, &mut buf).unwrap(), &msg);
    assert_eq!(crc32(&msg), 0x6C12_9A8D);
    assert_eq!(hex(&frame(&m)), CLASSIFY_FRAME);
    assert_eq!(decode_frame::<Request>(&mut unhex(CLASSIFY_FRAME)), Ok(m));
}

#[test]
fn result_example_frame() {
    let m = result_example();
    let mut buf = [0u8; 64];
    let msg = postcard::to_slice(&m, &mut buf).unwrap();
    assert_eq!(msg.len(), 35);
    assert_eq!(
        hex(msg),
        "02 AC 02 00 02 00 00 60 3F 02 02 00 00 60 3F 00 00 00 00 3E 01 06 6C 69 67 68 74 73 00 00 C0 3F D2 09 00"
    );
    assert_eq!(crc32(msg), 0x885A_DF2F);
    assert_eq!(hex(&frame(&m)), RESULT_FRAME);
    assert_eq!(decode_frame::<Response>(&mut unhex(RESULT_FRAME)), Ok(m));
}

#[test]
fn error_example() {
    let m = Response::error(Some(300), ErrorCode::TextTooLong, "");
    let mut buf = [0u8; 64];
    assert_eq!(
        hex(postcard::to_slice(&m, &mut buf).unwrap()),
        "05 01 AC 02 06 00"
    );
    assert_eq!(crc32(&[0x05, 0x01, 0xAC, 0x02, 0x06, 0x00]), 0x8E0C_CCF5);
    assert_eq!(hex(&frame(&m)), ERROR_FRAME);
    assert_eq!(decode_frame::<Response>(&mut unhex(ERROR_FRAME)), Ok(m));
}

#[test]
fn hello_example() {
    let m = Request::hello(1);
    assert_eq!(hex(&frame(&m)), HELLO_FRAME);
    assert_eq!(decode_frame::<Request>(&mut unhex(HELLO_FRAME)), Ok(m));
    // The version-2 hello the document quotes.
    let v2 = Request::Hello {
        id: 1,
        protocol_version: 2,
    };
    assert_eq!(hex(&frame(&v2)), HELLO_V2_FRAME);
    assert!(doc().contains(HELLO_V2_FRAME));
    assert!(doc().contains("`0x7F53B9E9`"));
}

#[test]
fn deploy_ack_example() {
    let m = Response::DeployAck { id: 5, next: 1024 };
    let mut buf = [0u8; 64];
    assert_eq!(
        hex(postcard::to_slice(&m, &mut buf).unwrap()),
        "07 05 80 08"
    );
    assert_eq!(crc32(&[0x07, 0x05, 0x80, 0x08]), 0x8F00_3537);
    assert_eq!(hex(&frame(&m)), DEPLOY_ACK_FRAME);
    assert_eq!(
        decode_frame::<Response>(&mut unhex(DEPLOY_ACK_FRAME)),
        Ok(m)
    );
}

#[test]
fn deploy_tags_are_the_documented_ones() {
    let doc = doc();
    for (tag, name) in [
        (Request::TAG_DEPLOY_BEGIN, "DeployBegin"),
        (Request::TAG_DEPLOY_CHUNK, "DeployChunk"),
        (Request::TAG_DEPLOY_COMMIT, "DeployCommit"),
        (Request::TAG_ROLLBACK, "Rollback"),
        (Response::TAG_DEPLOY_STATUS, "DeployStatus"),
        (Response::TAG_DEPLOY_ACK, "DeployAck"),
        (Response::TAG_DEPLOY_DONE, "DeployDone"),
    ] {
        assert!(
            doc.contains(&format!("| `{tag:02}` | `{name}` |")),
            "docs/protocol.md lacks tag {tag} {name}"
        );
    }
}

#[test]
fn documented_bytes_are_in_the_document() {
    let doc = doc();
    for (name, hex) in [
        ("classify", CLASSIFY_FRAME),
        ("result", RESULT_FRAME),
        ("error", ERROR_FRAME),
        ("hello", HELLO_FRAME),
        ("deploy ack", DEPLOY_ACK_FRAME),
    ] {
        assert!(
            doc.contains(hex),
            "docs/protocol.md lacks the {name} frame {hex}"
        );
    }
    for fragment in [
        "02 AC 02 09 6C 69 67 68 74 73 20 6F 6E 8D 9A 12 6C",
        "`0x6C129A8D`",
        "`0x885ADF2F`",
        "`0x8E0CCCF5`",
        "`05 01 AC 02 06 00`",
        "crc32(\"123456789\") | `0xCBF43926`",
        "`PROTOCOL_VERSION = 3`",
    ] {
        assert!(doc.contains(fragment), "docs/protocol.md lacks {fragment}");
    }
}

#[test]
fn documented_limits_match_the_crate() {
    let doc = doc();
    use protocol::*;
    for (name, value) in [
        ("MAX_FRAME", MAX_FRAME),
        ("MAX_PAYLOAD", MAX_PAYLOAD),
        ("MAX_MESSAGE", MAX_MESSAGE),
        ("MAX_TEXT_LEN", MAX_TEXT_LEN),
        ("MAX_LABEL_LEN", MAX_LABEL_LEN),
        ("MAX_LABELS_PER_PAGE", MAX_LABELS_PER_PAGE),
        ("MAX_TOP_K", MAX_TOP_K),
        ("MAX_TOP_TOKENS", MAX_TOP_TOKENS),
        ("MAX_TOKEN_LEN", MAX_TOKEN_LEN),
        ("MAX_DETAIL_LEN", MAX_DETAIL_LEN),
        ("MAX_SOFTWARE_VERSION_LEN", MAX_SOFTWARE_VERSION_LEN),
        ("MAX_MODEL_NAME_LEN", MAX_MODEL_NAME_LEN),
        ("MAX_CHUNK", MAX_CHUNK),
    ] {
        let row = doc
            .lines()
            .find(|l| l.starts_with('|') && l.contains(&format!("`{name}`")))
            .unwrap_or_else(|| panic!("no limits row for {name}"));
        assert!(
            row.contains(&format!("| {value} ")),
            "{name} = {value}, doc row: {row}"
        );
    }
    // Error codes table.
    for v in 0..=10u16 {
        let code = ErrorCode::from(v);
        let name = format!("{code:?}");
        assert!(
            doc.contains(&format!("| {v} | `{name}` |")),
            "error code {v} {name} missing from the doc table"
        );
    }
}

#[test]
fn result_carries_rejected_as_its_last_byte() {
    assert_eq!(protocol::PROTOCOL_VERSION, 3);
    let mut m = result_example();
    if let Response::Result { rejected, .. } = &mut m {
        *rejected = true;
    }
    let mut buf = [0u8; 64];
    let msg = postcard::to_slice(&m, &mut buf).unwrap().to_vec();
    assert_eq!(msg.len(), 35);
    assert_eq!(msg.last(), Some(&0x01));
    assert_eq!(decode_frame::<Response>(&mut frame(&m)), Ok(m.clone()));
    // A version-1 Result (no `rejected` byte) does not decode as version 2; nor does a
    // `rejected` byte other than 00/01.
    let v1 = &msg[..34];
    assert!(postcard::from_bytes::<Response>(v1).is_err());
    let mut bad = msg.clone();
    *bad.last_mut().unwrap() = 0x02;
    assert!(postcard::from_bytes::<Response>(&bad).is_err());
}
