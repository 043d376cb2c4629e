//! permessage-deflate through the connection state machine: both roles negotiated by the real
//! extension, messages across the wire bytes, and the rules of RFC 7692 on bad input.

use std::sync::Arc;

use crate::common::*;
use proptest::prelude::*;
use ringsock_proto::ws::deflate::{DeflateOptions, PerMessageDeflate};
use ringsock_proto::ws::extension::{Extension, ExtensionParams, Extensions};
use ringsock_proto::ws::frame::OpCode;
use ringsock_proto::ws::{Config, Connection, Event};

/// A server and a client connection that negotiated permessage-deflate with these options.
fn pair(server: DeflateOptions, client: DeflateOptions) -> (Connection, Connection) {
    let s: Arc<dyn Extension> = Arc::new(PerMessageDeflate::new(server));
    let c: Arc<dyn Extension> = Arc::new(PerMessageDeflate::new(client));
    let offers = c.client_offers();
    let refs: Vec<&ExtensionParams> = offers.iter().collect();
    let (response, server_session) = s.accept_offer(&refs).unwrap().unwrap();
    let client_session = c.accept_response(&response).unwrap();
    let config = Config {
        max_length: 1 << 20,
        ..Config::default()
    };
    (
        Connection::server(config.clone(), Extensions::new(vec![server_session])),
        Connection::client(config, Extensions::new(vec![client_session]), TEST_SEED),
    )
}

fn texts(events: Vec<Event>) -> Vec<String> {
    events
        .into_iter()
        .map(|e| match e {
            Event::Text(t) => t.as_str().to_owned(),
            other => panic!("expected text, got {other:?}"),
        })
        .collect()
}

#[test]
fn messages_cross_compressed_in_both_directions() {
    for takeover in [false, true] {
        let opts = DeflateOptions::new().context_takeover(takeover);
        let (mut server, mut client) = pair(opts.clone(), opts);
        let msg = "{\"event\":\"price\",\"symbol\":\"ACME\",\"values\":[1,2,3,4,5]}".repeat(20);
        for _ in 0..3 {
            server.send_text(&msg).unwrap();
            let wire = output(&mut server);
            let frames = parse_frames(&wire);
            assert_eq!(frames[0].1, 0x40, "RSV1 set on a compressed message");
            assert!(
                wire.len() < msg.len() / 4,
                "{} vs {}",
                wire.len(),
                msg.len()
            );
            assert_eq!(texts(feed(&mut client, &wire)), std::slice::from_ref(&msg));
            client.send_text(&msg).unwrap();
            let wire = output(&mut client);
            assert_eq!(
                texts(feed_split(&mut server, &wire, 7)),
                std::slice::from_ref(&msg)
            );
        }
    }
}

#[test]
fn a_compressed_message_may_span_fragments() {
    let (mut server, mut client) = pair(DeflateOptions::new(), DeflateOptions::new());
    let msg = "fragmented and compressed ".repeat(40);
    client.send_text(&msg).unwrap();
    // Re-frame the client's single compressed frame as three fragments, RSV1 on the first only.
    let frames = parse_frames(&output(&mut client));
    let payload = &frames[0].3;
    let third = payload.len() / 3;
    let mut wire = client_frame(false, 0x40, 0x1, &payload[..third]);
    wire.extend(client_frame(false, 0, 0x0, &payload[third..2 * third]));
    wire.extend(client_frame(true, 0, 0x0, &payload[2 * third..]));
    assert_eq!(texts(feed(&mut server, &wire)), [msg]);
}

fn fails_with(conn: &mut Connection, wire: &[u8], code: u16) {
    let events = feed(conn, wire);
    assert!(
        matches!(events.last(), Some(Event::Close(c)) if c.code.0 == code),
        "expected close {code}, got {events:?}"
    );
    let frames = parse_frames(&output(conn));
    let (_, _, op, payload) = frames.last().expect("a close frame").clone();
    assert_eq!(op, OpCode::Close);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), code);
}

#[test]
fn rsv1_on_a_control_frame_is_1002() {
    let (mut server, _) = pair(DeflateOptions::new(), DeflateOptions::new());
    fails_with(&mut server, &client_frame(true, 0x40, 0x9, b"ping"), 1002);
}

#[test]
fn rsv1_on_a_continuation_is_1002() {
    let (mut server, _) = pair(DeflateOptions::new(), DeflateOptions::new());
    let mut wire = client_frame(false, 0, 0x1, b"plain ");
    wire.extend(client_frame(true, 0x40, 0x0, b"then flagged"));
    fails_with(&mut server, &wire, 1002);
}

#[test]
fn a_corrupt_compressed_frame_is_1007() {
    let (mut server, _) = pair(DeflateOptions::new(), DeflateOptions::new());
    fails_with(
        &mut server,
        &client_frame(true, 0x40, 0x2, &[0xff, 0xee, 0xdd, 0xcc]),
        1007,
    );
}

#[test]
fn a_decompression_bomb_is_1009_before_it_is_inflated() {
    let (mut server, mut client) = pair(DeflateOptions::new(), DeflateOptions::new());
    // 16 MiB of zeros compresses to ~16 KB: well under the 1 MiB limit on the wire.
    client.send_binary(&vec![0u8; 16 << 20]).unwrap();
    let wire = output(&mut client);
    assert!(wire.len() < 64 << 10);
    fails_with(&mut server, &wire, 1009);
}

#[test]
fn invalid_utf8_inside_compressed_text_is_1007() {
    let (mut server, mut client) = pair(DeflateOptions::new(), DeflateOptions::new());
    client.send_binary(&[0xc3; 400]).unwrap();
    let mut wire = output(&mut client);
    wire[0] = (wire[0] & 0xf0) | 0x1; // the same compressed payload, now claiming to be text
    fails_with(&mut server, &wire, 1007);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the sizes, windows and takeover, every message arrives intact and in order.
    #[test]
    fn any_messages_round_trip(
        msgs in proptest::collection::vec(
            prop_oneof![Just(Vec::new()), proptest::collection::vec(any::<u8>(), 1..3000)],
            1..12,
        ),
        repeat in 1usize..40,
        server_bits in 8u8..=15,
        client_bits in 8u8..=15,
        takeover in any::<bool>(),
        piece in 1usize..200,
    ) {
        let server_opts = DeflateOptions::new().context_takeover(takeover).max_window_bits(server_bits).threshold(0);
        let client_opts = DeflateOptions::new().context_takeover(takeover).max_window_bits(client_bits).threshold(0);
        let (mut server, mut client) = pair(server_opts, client_opts);
        for m in &msgs {
            // Repeated content, so the window actually matters.
            let body: Vec<u8> = m.iter().cycle().take(m.len() * repeat).copied().collect();
            client.send_binary(&body).unwrap();
            let events = feed_split(&mut server, &output(&mut client), piece);
            prop_assert!(matches!(&events[..], [Event::Binary(b)] if b[..] == body[..]));
            server.send_binary(&body).unwrap();
            let events = feed_split(&mut client, &output(&mut server), piece);
            prop_assert!(matches!(&events[..], [Event::Binary(b)] if b[..] == body[..]));
        }
    }
}
