//! RFC 6455's own examples (section 5.7), as the literal bytes the RFC prints, against both sides
//! of the protocol core: the parser (the header parser and a connection of each role) must read
//! them, and the encoder (the header encoder, the frame builders and a connection's output) must
//! write them, byte for byte. Nothing here derives an expected byte from ringsock's code, so an
//! encoding bug its parser mirrors cannot pass.

use ringsock_proto::ws::frame::{self as ws_frame, FrameHeader, OpCode, MAX_HEADER_LEN};
use ringsock_proto::ws::{Config, Connection, Event, Role};
use ringsock_testkit::frame::{self, parse_frames, KEY, PONG, TEXT};

use crate::common::{connection, feed, output};

/// "A single-frame unmasked text message".
const UNMASKED_HELLO: [u8; 7] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
/// "A single-frame masked text message" (key `37 fa 21 3d`).
const MASKED_HELLO: [u8; 11] = [
    0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
/// "A fragmented unmasked text message": "Hel", then "lo".
const FRAGMENT_HEL: [u8; 5] = [0x01, 0x03, 0x48, 0x65, 0x6c];
const FRAGMENT_LO: [u8; 4] = [0x80, 0x02, 0x6c, 0x6f];
/// "Unmasked Ping request" carrying "Hello".
const UNMASKED_PING: [u8; 7] = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
/// "Masked Ping response" (a pong) carrying "Hello" (key `37 fa 21 3d`).
const MASKED_PONG: [u8; 11] = [
    0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
];
/// "256 bytes binary message in a single unmasked frame": its header.
const BINARY_256_HEADER: [u8; 4] = [0x82, 0x7E, 0x01, 0x00];
/// "64KiB binary message in a single unmasked frame": its header.
const BINARY_64K_HEADER: [u8; 10] = [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00];

fn recv_all(conn: &mut Connection, input: &[u8]) -> Vec<Event> {
    let events = feed(conn, input);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Error(_) | Event::Close(_))),
        "{events:?}"
    );
    events
}

fn text(event: &Event) -> &str {
    match event {
        Event::Text(t) => t.as_str(),
        other => panic!("expected text, got {other:?}"),
    }
}

fn header(bytes: &[u8]) -> (FrameHeader, usize) {
    FrameHeader::parse(bytes)
        .expect("a valid header")
        .expect("a whole header")
}

fn encoded(h: FrameHeader) -> Vec<u8> {
    let mut out = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut out);
    out[..n].to_vec()
}

fn fin(opcode: OpCode, mask: Option<[u8; 4]>, payload_len: u64) -> FrameHeader {
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask,
        payload_len,
    }
}

/// The 256-byte and 64 KiB messages: any bytes will do; these are not periodic.
fn binary(len: usize) -> Vec<u8> {
    ringsock_testkit::pattern(len, 5)
}

// ------------------------------------------------------------------------------------------------
// The oracle itself
// ------------------------------------------------------------------------------------------------

#[test]
fn the_testkit_builders_write_the_rfc_bytes() {
    assert_eq!(frame::server_frame(true, 0, TEXT, b"Hello"), UNMASKED_HELLO);
    assert_eq!(frame::client_frame(true, 0, TEXT, b"Hello"), MASKED_HELLO);
    assert_eq!(frame::server_frame(false, 0, TEXT, b"Hel"), FRAGMENT_HEL);
    assert_eq!(
        frame::server_frame(true, 0, frame::CONT, b"lo"),
        FRAGMENT_LO
    );
    assert_eq!(
        frame::server_frame(true, 0, frame::PING, b"Hello"),
        UNMASKED_PING
    );
    assert_eq!(frame::client_frame(true, 0, PONG, b"Hello"), MASKED_PONG);
    assert_eq!(
        frame::header(true, 0, frame::BINARY, None, 256),
        BINARY_256_HEADER
    );
    assert_eq!(
        frame::header(true, 0, frame::BINARY, None, 65536),
        BINARY_64K_HEADER
    );
}

// ------------------------------------------------------------------------------------------------
// Parsing
// ------------------------------------------------------------------------------------------------

#[test]
fn the_header_parser_reads_the_rfc_headers() {
    assert_eq!(header(&UNMASKED_HELLO), (fin(OpCode::Text, None, 5), 2));
    assert_eq!(header(&MASKED_HELLO), (fin(OpCode::Text, Some(KEY), 5), 6));
    let (hel, n) = header(&FRAGMENT_HEL);
    assert_eq!(
        (hel.fin, hel.opcode, hel.payload_len, n),
        (false, OpCode::Text, 3, 2)
    );
    assert_eq!(
        header(&FRAGMENT_LO),
        (fin(OpCode::Continuation, None, 2), 2)
    );
    assert_eq!(header(&UNMASKED_PING), (fin(OpCode::Ping, None, 5), 2));
    assert_eq!(header(&MASKED_PONG), (fin(OpCode::Pong, Some(KEY), 5), 6));
    assert_eq!(
        header(&BINARY_256_HEADER),
        (fin(OpCode::Binary, None, 256), 4)
    );
    assert_eq!(
        header(&BINARY_64K_HEADER),
        (fin(OpCode::Binary, None, 65536), 10)
    );
}

#[test]
fn a_client_reads_the_unmasked_hello_whole_and_fragmented() {
    let mut c = connection(Role::Client, Config::default(), Default::default());
    let events = recv_all(&mut c, &UNMASKED_HELLO);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(text(&events[0]), "Hello");

    let mut c = connection(Role::Client, Config::default(), Default::default());
    let events = recv_all(&mut c, &[&FRAGMENT_HEL[..], &FRAGMENT_LO[..]].concat());
    assert_eq!(
        events.len(),
        1,
        "one message from two fragments: {events:?}"
    );
    assert_eq!(text(&events[0]), "Hello");
}

#[test]
fn a_server_reads_the_masked_hello() {
    let mut s = connection(Role::Server, Config::default(), Default::default());
    let events = recv_all(&mut s, &MASKED_HELLO);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(text(&events[0]), "Hello");
}

/// The client reads the RFC's ping and answers with a masked pong carrying "Hello": the same
/// bytes as the RFC's masked pong, under the key the client drew (read back by hand).
#[test]
fn a_client_reads_the_rfc_ping_and_answers_with_the_rfc_pong_under_its_own_key() {
    let mut c = connection(Role::Client, Config::default(), Default::default());
    let events = recv_all(&mut c, &UNMASKED_PING);
    assert!(
        matches!(&events[..], [Event::Ping(p)] if p[..] == b"Hello"[..]),
        "{events:?}"
    );
    let out = output(&mut c);
    let frames = parse_frames(&out);
    assert_eq!(frames.len(), 1, "{frames:?}");
    let key = frames[0].mask.expect("a client masks its pong");
    assert_eq!(
        out,
        frame::frame(true, 0, PONG, Some(key), b"Hello"),
        "the RFC's masked pong under key {key:02x?}"
    );
}

#[test]
fn a_server_reads_the_masked_pong() {
    let mut s = connection(Role::Server, Config::default(), Default::default());
    let events = recv_all(&mut s, &MASKED_PONG);
    assert!(
        matches!(&events[..], [Event::Pong { payload, id: None }] if payload[..] == b"Hello"[..]),
        "{events:?}"
    );
}

#[test]
fn a_client_reads_the_256_byte_and_64_kib_binary_messages() {
    for (head, len) in [
        (&BINARY_256_HEADER[..], 256),
        (&BINARY_64K_HEADER[..], 65536),
    ] {
        let payload = binary(len);
        let mut c = connection(Role::Client, Config::default(), Default::default());
        let events = recv_all(&mut c, &[head, &payload[..]].concat());
        assert!(
            matches!(&events[..], [Event::Binary(b)] if b[..] == payload[..]),
            "{len} bytes: {} events",
            events.len()
        );
    }
}

// ------------------------------------------------------------------------------------------------
// Encoding
// ------------------------------------------------------------------------------------------------

#[test]
fn the_header_encoder_writes_the_rfc_headers() {
    assert_eq!(encoded(fin(OpCode::Text, None, 5)), UNMASKED_HELLO[..2]);
    assert_eq!(encoded(fin(OpCode::Text, Some(KEY), 5)), MASKED_HELLO[..6]);
    let hel = FrameHeader {
        fin: false,
        ..fin(OpCode::Text, None, 3)
    };
    assert_eq!(encoded(hel), FRAGMENT_HEL[..2]);
    assert_eq!(
        encoded(fin(OpCode::Continuation, None, 2)),
        FRAGMENT_LO[..2]
    );
    assert_eq!(encoded(fin(OpCode::Ping, None, 5)), UNMASKED_PING[..2]);
    assert_eq!(encoded(fin(OpCode::Pong, Some(KEY), 5)), MASKED_PONG[..6]);
    assert_eq!(encoded(fin(OpCode::Binary, None, 256)), BINARY_256_HEADER);
    assert_eq!(encoded(fin(OpCode::Binary, None, 65536)), BINARY_64K_HEADER);
}

/// The frames built once for many connections (topic fan-out, a load generator's repeated
/// message): unmasked, and masked under a key the caller gives.
#[test]
fn the_frame_builders_write_the_rfc_frames() {
    assert_eq!(
        ws_frame::server_frame(OpCode::Text, b"Hello")[..],
        UNMASKED_HELLO
    );
    assert_eq!(
        ws_frame::client_frame(OpCode::Text, b"Hello", KEY)[..],
        MASKED_HELLO
    );
    assert_eq!(
        ws_frame::server_frame(OpCode::Ping, b"Hello")[..],
        UNMASKED_PING
    );
    assert_eq!(
        ws_frame::client_frame(OpCode::Pong, b"Hello", KEY)[..],
        MASKED_PONG
    );
    let payload = binary(256);
    assert_eq!(
        ws_frame::server_frame(OpCode::Binary, &payload)[..],
        [&BINARY_256_HEADER[..], &payload[..]].concat()
    );
}

#[test]
fn a_server_writes_the_unmasked_hello_and_the_rfc_ping() {
    let mut s = connection(Role::Server, Config::default(), Default::default());
    s.send_text("Hello").unwrap();
    assert_eq!(output(&mut s), UNMASKED_HELLO);
    s.ping(b"Hello").unwrap();
    assert_eq!(output(&mut s), UNMASKED_PING);
}

/// A client's text "Hello" is the RFC's masked frame under the key the client drew: the key is
/// read back by hand and the payload XORed by hand.
#[test]
fn a_client_writes_the_masked_hello_under_its_own_key() {
    let mut c = connection(Role::Client, Config::default(), Default::default());
    c.send_text("Hello").unwrap();
    let out = output(&mut c);
    assert_eq!(out[..2], MASKED_HELLO[..2], "FIN, text, mask bit, length 5");
    let key = [out[2], out[3], out[4], out[5]];
    assert_eq!(out, frame::frame(true, 0, TEXT, Some(key), b"Hello"));
}

#[test]
fn a_server_writes_the_256_byte_and_64_kib_binary_messages() {
    for (head, len) in [
        (&BINARY_256_HEADER[..], 256),
        (&BINARY_64K_HEADER[..], 65536),
    ] {
        let payload = binary(len);
        let mut s = connection(Role::Server, Config::default(), Default::default());
        s.send_binary(&payload).unwrap();
        let out = output(&mut s);
        assert_eq!(out[..head.len()], *head, "{len} bytes: the header");
        assert!(out[head.len()..] == payload[..], "{len} bytes: the payload");
    }
}
