//! One test per protocol rule of the connection state machine, named after the rule.

use std::time::{Duration, Instant};

use crate::common::*;
use bytes::Bytes;
use ringsock_proto::ws::extension::{
    DataKind, ExtMessage, ExtensionError, ExtensionSession, Extensions, Rsv,
};
use ringsock_proto::ws::frame::OpCode;
use ringsock_proto::ws::{
    CloseCode, Config, Connection, Event, ProtocolError, Role, SendError, State,
};

/// The close code of the single close frame a failed connection wrote, and that nothing else
/// was written after it.
fn sent_close_code(conn: &mut Connection) -> u16 {
    let frames = parse_frames(&output(conn));
    let (_, _, op, payload) = frames.last().expect("a close frame was written").clone();
    assert_eq!(op, OpCode::Close);
    u16::from_be_bytes([payload[0], payload[1]])
}

fn assert_failed_with(events: &[Event], code: u16) {
    let n = events.len();
    assert!(n >= 2, "expected error then close, got {events:?}");
    assert!(
        matches!(&events[n - 2], Event::Error(e) if e.close_code().0 == code),
        "{events:?}"
    );
    assert!(
        matches!(&events[n - 1], Event::Close(c) if c.code.0 == code),
        "{events:?}"
    );
}

#[test]
fn rsv_bits_without_a_negotiated_extension_close_with_1002() {
    for rsv in [0x40, 0x20, 0x10, 0x70] {
        let mut s = server();
        let ev = feed(&mut s, &client_frame(true, rsv, 1, b"x"));
        assert_failed_with(&ev, 1002);
        assert!(matches!(ev[0], Event::Error(ProtocolError::ReservedBits(r)) if r == rsv));
        assert_eq!(sent_close_code(&mut s), 1002);
    }
}

#[test]
fn unknown_opcodes_close_with_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let mut s = server();
        assert_failed_with(&feed(&mut s, &client_frame(true, 0, op, b"")), 1002);
        assert_eq!(sent_close_code(&mut s), 1002);
    }
}

#[test]
fn fragmented_control_frames_close_with_1002() {
    let mut s = server();
    assert_failed_with(&feed(&mut s, &client_frame(false, 0, 9, b"ping")), 1002);
}

#[test]
fn control_frames_over_125_bytes_close_with_1002() {
    let mut s = server();
    assert_failed_with(&feed(&mut s, &client_frame(true, 0, 9, &[0; 126])), 1002);
}

#[test]
fn continuation_with_nothing_to_continue_closes_with_1002() {
    let mut s = server();
    let ev = feed(&mut s, &client_frame(true, 0, 0, b"x"));
    assert!(matches!(
        ev[0],
        Event::Error(ProtocolError::UnexpectedContinuation)
    ));
    assert_failed_with(&ev, 1002);
}

#[test]
fn new_data_frame_inside_a_fragmented_message_closes_with_1002() {
    let mut s = server();
    let mut input = client_frame(false, 0, 1, b"a");
    input.extend(client_frame(true, 0, 2, b"b"));
    let ev = feed(&mut s, &input);
    assert!(matches!(
        ev[0],
        Event::Error(ProtocolError::ExpectedContinuation)
    ));
    assert_failed_with(&ev, 1002);
}

#[test]
fn invalid_close_payloads_close_with_1002() {
    let bad: [Vec<u8>; 4] = [
        vec![0x03],
        close_payload(999, b""),
        close_payload(1005, b""),
        close_payload(1000, &[0xC3, 0x28]),
    ];
    for payload in bad {
        let mut s = server();
        assert_failed_with(&feed(&mut s, &client_frame(true, 0, 8, &payload)), 1002);
        assert_eq!(sent_close_code(&mut s), 1002);
    }
}

#[test]
fn unmasked_client_frames_close_with_1002() {
    let mut s = server();
    let ev = feed(&mut s, &server_frame(true, 0, 1, b"hi"));
    assert!(matches!(
        ev[0],
        Event::Error(ProtocolError::UnmaskedClientFrame)
    ));
    assert_failed_with(&ev, 1002);
}

#[test]
fn masked_server_frames_close_with_1002() {
    let mut c = client();
    let ev = feed(&mut c, &client_frame(true, 0, 1, b"hi"));
    assert!(matches!(
        ev[0],
        Event::Error(ProtocolError::MaskedServerFrame)
    ));
    assert_failed_with(&ev, 1002);
}

#[test]
fn sixty_four_bit_length_with_top_bit_closes_with_1002() {
    let mut s = server();
    let frame = [0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
    assert_failed_with(&feed(&mut s, &frame), 1002);
}

#[test]
fn invalid_utf8_closes_with_1007_inside_the_fragment_that_carries_it() {
    let mut s = server();
    // The first fragment is valid, the second holds a lone continuation byte; the third would
    // complete the message but must never be needed.
    let ev = feed(&mut s, &client_frame(false, 0, 1, "héllo".as_bytes()));
    assert!(ev.is_empty());
    let ev = feed(&mut s, &client_frame(false, 0, 0, &[b'a', 0x80, b'b']));
    assert_failed_with(&ev, 1007);
    assert_eq!(s.state(), State::Closed);
    assert!(feed(&mut s, &client_frame(true, 0, 0, b"end")).is_empty());
}

#[test]
fn invalid_utf8_is_caught_before_the_frame_is_complete() {
    let mut s = server();
    let frame = client_frame(
        true,
        0,
        1,
        &[b'o', b'k', 0xF8, b'.', b'.', b'.', b'.', b'.'],
    );
    // Header (6 bytes) and the first three payload bytes: the 0xF8 is already known bad.
    let ev = feed(&mut s, &frame[..9]);
    assert_failed_with(&ev, 1007);
}

#[test]
fn text_split_inside_a_code_point_across_fragments_is_valid() {
    let mut s = server();
    let euro = "€".as_bytes();
    let mut input = client_frame(false, 0, 1, &euro[..1]);
    input.extend(client_frame(false, 0, 0, &euro[1..2]));
    input.extend(client_frame(true, 0, 0, &euro[2..]));
    let ev = feed(&mut s, &input);
    assert!(
        matches!(&ev[..], [Event::Text(t)] if t.as_str() == "€"),
        "{ev:?}"
    );
}

#[test]
fn text_ending_inside_a_code_point_closes_with_1007() {
    let mut s = server();
    assert_failed_with(
        &feed(&mut s, &client_frame(true, 0, 1, &"€".as_bytes()[..2])),
        1007,
    );
}

fn small_limit(role: Role, max: usize) -> Connection {
    connection(
        role,
        Config {
            max_length: max,
            ..Config::default()
        },
        Extensions::default(),
    )
}

#[test]
fn message_over_max_length_closes_with_1009_from_the_header_alone() {
    let mut s = small_limit(Role::Server, 100);
    let frame = client_frame(true, 0, 2, &[7; 101]);
    // Only the header arrives: the length it announces is enough to refuse.
    let ev = feed(&mut s, &frame[..8]);
    assert!(matches!(
        ev[0],
        Event::Error(ProtocolError::MessageTooBig {
            length: 101,
            max: 100
        })
    ));
    assert_failed_with(&ev, 1009);
    assert_eq!(sent_close_code(&mut s), 1009);
}

#[test]
fn max_length_counts_all_fragments_of_a_message() {
    let mut s = small_limit(Role::Server, 100);
    let mut input = client_frame(false, 0, 2, &[1; 60]);
    input.extend(client_frame(true, 0, 0, &[2; 41]));
    assert_failed_with(&feed(&mut s, &input), 1009);

    let mut s = small_limit(Role::Server, 100);
    let mut input = client_frame(false, 0, 2, &[1; 60]);
    input.extend(client_frame(true, 0, 0, &[2; 40]));
    let ev = feed(&mut s, &input);
    assert!(matches!(&ev[..], [Event::Binary(b)] if b.len() == 100));
}

/// A test extension owning RSV1: it marks outgoing messages and, incoming, accepts marked
/// messages, failing with 1010 on a payload that says "bad".
struct Marker;
impl ExtensionSession for Marker {
    fn rsv(&self) -> Rsv {
        Rsv::RSV1
    }
    fn encode(&mut self, mut m: ExtMessage) -> Result<ExtMessage, ExtensionError> {
        m.rsv = m.rsv.union(Rsv::RSV1);
        Ok(m)
    }
    fn decode(&mut self, mut m: ExtMessage, _max: usize) -> Result<ExtMessage, ExtensionError> {
        if &m.payload[..] == b"bad" {
            return Err(ExtensionError::new("marker refused the message"));
        }
        m.rsv = Rsv(m.rsv.0 & !Rsv::RSV1.0);
        Ok(m)
    }
}

fn with_marker(role: Role) -> Connection {
    connection(
        role,
        Config::default(),
        Extensions::new(vec![Box::new(Marker)]),
    )
}

#[test]
fn extension_failure_closes_with_1010() {
    let mut s = with_marker(Role::Server);
    let ev = feed(&mut s, &client_frame(true, 0x40, 2, b"bad"));
    assert!(matches!(&ev[0], Event::Error(ProtocolError::Extension(_))));
    assert_failed_with(&ev, 1010);
    assert_eq!(sent_close_code(&mut s), 1010);
}

#[test]
fn rsv_bit_owned_by_an_extension_is_accepted_on_the_first_frame_only() {
    let mut s = with_marker(Role::Server);
    let mut input = client_frame(false, 0x40, 1, b"he");
    input.extend(client_frame(true, 0, 0, b"llo"));
    let ev = feed(&mut s, &input);
    assert!(
        matches!(&ev[..], [Event::Text(t)] if t.as_str() == "hello"),
        "{ev:?}"
    );

    let mut s = with_marker(Role::Server);
    let mut input = client_frame(false, 0x40, 1, b"he");
    input.extend(client_frame(true, 0x40, 0, b"llo"));
    assert_failed_with(&feed(&mut s, &input), 1002);

    let mut s = with_marker(Role::Server);
    assert_failed_with(&feed(&mut s, &client_frame(true, 0x40, 9, b"")), 1002);

    let mut s = with_marker(Role::Server);
    assert_failed_with(&feed(&mut s, &client_frame(true, 0x20, 1, b"x")), 1002);
}

#[test]
fn outgoing_messages_pass_through_extensions_and_carry_their_rsv_bits() {
    let mut s = with_marker(Role::Server);
    s.send_text("hi").unwrap();
    let frames = parse_frames(&output(&mut s));
    assert_eq!(
        frames,
        vec![(true, 0x40, OpCode::Text, Bytes::from_static(b"hi"))]
    );
}

#[test]
fn a_peer_close_is_echoed_with_its_code_and_ends_the_connection() {
    let mut s = server();
    let ev = feed(
        &mut s,
        &client_frame(true, 0, 8, &close_payload(3001, b"done")),
    );
    assert!(matches!(&ev[..], [Event::Close(c)] if c.code.0 == 3001 && c.reason == "done"));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(sent_close_code(&mut s), 3001);
}

#[test]
fn an_empty_close_is_answered_with_an_empty_close_and_reported_as_1000() {
    let mut s = server();
    let ev = feed(&mut s, &client_frame(true, 0, 8, b""));
    assert!(matches!(&ev[..], [Event::Close(c)] if c.code == CloseCode::NORMAL));
    let frames = parse_frames(&output(&mut s));
    assert_eq!(frames, vec![(true, 0, OpCode::Close, Bytes::new())]);
}

#[test]
fn input_after_a_close_is_ignored() {
    let mut s = server();
    let mut input = client_frame(true, 0, 8, &close_payload(1000, b""));
    input.extend(client_frame(true, 0, 1, b"late"));
    input.extend(client_frame(true, 0, 9, b"late ping"));
    input.extend(b"\xff\xff garbage");
    let ev = feed(&mut s, &input);
    assert_eq!(ev.len(), 1, "{ev:?}");
    assert_eq!(
        parse_frames(&output(&mut s)).len(),
        1,
        "only the close reply"
    );
}

#[test]
fn our_close_is_finished_by_the_peers_close() {
    let now = Instant::now();
    let mut s = server();
    s.close(CloseCode::NORMAL, "bye", now).unwrap();
    assert_eq!(s.state(), State::Closing);
    assert_eq!(sent_close_code(&mut s), 1000);
    let ev = feed(&mut s, &client_frame(true, 0, 8, &close_payload(1000, b"")));
    assert!(matches!(&ev[..], [Event::Close(c)] if c.code.0 == 1000));
    assert_eq!(s.state(), State::Closed);
    assert!(
        output(&mut s).is_empty(),
        "a close answering ours is not answered again"
    );
}

#[test]
fn an_unanswered_close_times_out_with_1006_at_the_deadline() {
    let now = Instant::now();
    let mut s = Connection::server(
        Config {
            close_timeout: Duration::from_secs(5),
            ..Config::default()
        },
        Extensions::default(),
    );
    s.close(CloseCode::NORMAL, "", now).unwrap();
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(5)));
    s.handle_timeout(now + Duration::from_secs(4));
    assert_eq!(s.state(), State::Closing);
    assert_eq!(s.poll_event(), None);
    s.handle_timeout(now + Duration::from_secs(5));
    assert_eq!(s.state(), State::Closed);
    assert!(matches!(s.poll_event(), Some(Event::Close(c)) if c.code == CloseCode::ABNORMAL));
    assert_eq!(s.poll_timeout(), None);
}

/// RFC 6455 section 7.1.1: the server closes the TCP connection first. A client that waits for
/// it reports the close when the transport ends (clean: the handshake finished), keeps the
/// transport open until then, and ignores anything that still arrives.
#[test]
fn a_client_reports_the_close_once_the_server_has_closed_the_transport() {
    let now = Instant::now();
    let mut c = client();
    c.wait_for_server_close(Some(Duration::from_secs(2)));
    let mut input = server_frame(true, 0, 8, &close_payload(1000, b"bye"));
    input.extend(server_frame(true, 0, 1, b"late"));
    let mut data = &input[..];
    assert_eq!(c.recv(&mut data, now), None, "held until the server closes");
    assert!(data.is_empty(), "the rest is ignored");
    assert_eq!(c.state(), State::Closed);
    assert!(
        !c.is_closed(),
        "the transport stays open for the server to close"
    );
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(2)));
    assert_eq!(sent_close_code(&mut c), 1000, "the reply goes out at once");
    assert_eq!(c.poll_event(), None);
    c.transport_closed();
    assert!(c.is_closed());
    assert!(
        matches!(c.poll_event(), Some(Event::Close(cl)) if cl.code.0 == 1000 && cl.reason == "bye")
    );
    assert_eq!(c.poll_event(), None);
    assert_eq!(c.poll_timeout(), None);
}

/// A server that does not close the transport gets `wait_for_server_close`'s time; then the
/// close (still clean) is reported and the client may close the transport itself. The same
/// holds when the client started the close.
#[test]
fn a_client_stops_waiting_for_the_server_to_close_at_the_deadline() {
    let now = Instant::now();
    let mut c = client();
    c.wait_for_server_close(Some(Duration::from_secs(2)));
    c.close(CloseCode::NORMAL, "", now).unwrap();
    assert_eq!(sent_close_code(&mut c), 1000);
    let later = now + Duration::from_secs(1);
    let mut data = &server_frame(true, 0, 8, &close_payload(1000, b""))[..];
    assert_eq!(c.recv(&mut data, later), None);
    assert_eq!(c.poll_timeout(), Some(later + Duration::from_secs(2)));
    c.handle_timeout(later + Duration::from_millis(1999));
    assert!(!c.is_closed());
    assert_eq!(c.poll_event(), None);
    c.handle_timeout(later + Duration::from_secs(2));
    assert!(c.is_closed());
    assert!(matches!(c.poll_event(), Some(Event::Close(cl)) if cl.code.0 == 1000));
    assert!(output(&mut c).is_empty(), "nothing more is sent");
    c.transport_closed();
    assert_eq!(c.poll_event(), None, "closed once only");
}

/// Without the wait (the protocol core's default) and in the server role, the close is
/// reported as soon as the handshake is done.
#[test]
fn without_the_wait_a_close_is_reported_at_once() {
    let mut c = client();
    let ev = feed(&mut c, &server_frame(true, 0, 8, &close_payload(1000, b"")));
    assert!(matches!(&ev[..], [Event::Close(cl)] if cl.code.0 == 1000));
    assert!(c.is_closed());
    let mut s = server();
    s.wait_for_server_close(Some(Duration::from_secs(2)));
    let ev = feed(&mut s, &client_frame(true, 0, 8, &close_payload(1000, b"")));
    assert!(matches!(&ev[..], [Event::Close(cl)] if cl.code.0 == 1000));
    assert!(s.is_closed(), "a server does not wait for itself");
}

#[test]
fn messages_still_arrive_while_closing() {
    let now = Instant::now();
    let mut s = server();
    s.close(CloseCode::NORMAL, "", now).unwrap();
    let ev = feed(&mut s, &client_frame(true, 0, 2, b"in flight"));
    assert!(matches!(&ev[..], [Event::Binary(b)] if &b[..] == b"in flight"));
}

#[test]
fn pings_are_answered_automatically_even_while_closing() {
    let now = Instant::now();
    let mut s = server();
    let ev = feed(&mut s, &client_frame(true, 0, 9, b"are you there"));
    assert!(matches!(&ev[..], [Event::Ping(p)] if &p[..] == b"are you there"));
    let frames = parse_frames(&output(&mut s));
    assert_eq!(
        frames,
        vec![(true, 0, OpCode::Pong, Bytes::from_static(b"are you there"))]
    );

    s.close(CloseCode::NORMAL, "", now).unwrap();
    output(&mut s);
    feed(&mut s, &client_frame(true, 0, 9, b"still?"));
    let frames = parse_frames(&output(&mut s));
    assert_eq!(
        frames,
        vec![(true, 0, OpCode::Pong, Bytes::from_static(b"still?"))]
    );
}

#[test]
fn a_pong_names_the_ping_it_answers() {
    let mut s = server();
    let first = s.ping(b"one").unwrap();
    let second = s.ping(b"two").unwrap();
    assert_ne!(first, second);
    let ev = feed(&mut s, &client_frame(true, 0, 10, b"two"));
    assert!(matches!(&ev[..], [Event::Pong { id: Some(id), .. }] if *id == second));
    let ev = feed(&mut s, &client_frame(true, 0, 10, b"two"));
    assert!(
        matches!(&ev[..], [Event::Pong { id: None, .. }]),
        "answered only once"
    );
    let ev = feed(&mut s, &client_frame(true, 0, 10, b"one"));
    assert!(matches!(&ev[..], [Event::Pong { id: Some(id), .. }] if *id == first));
}

#[test]
fn applications_may_close_only_with_1000_or_3000_to_4999() {
    let now = Instant::now();
    for code in [0u16, 999, 1001, 1002, 1006, 2999, 5000] {
        assert_eq!(
            server().close(CloseCode(code), "", now),
            Err(SendError::InvalidCloseCode(code))
        );
    }
    for code in [1000u16, 3000, 4999] {
        assert_eq!(server().close(CloseCode(code), "", now), Ok(()));
    }
    assert_eq!(
        server().close(CloseCode::NORMAL, &"x".repeat(124), now),
        Err(SendError::ReasonTooLong(124))
    );
    assert_eq!(
        server().close_as_endpoint(CloseCode::GOING_AWAY, "", now),
        Ok(())
    );
    assert_eq!(
        server().close_as_endpoint(CloseCode::ABNORMAL, "", now),
        Err(SendError::InvalidCloseCode(1006))
    );
}

#[test]
fn nothing_is_sent_after_our_close() {
    let now = Instant::now();
    let mut s = server();
    s.close(CloseCode::NORMAL, "", now).unwrap();
    assert_eq!(s.send_text("late"), Err(SendError::Closed));
    assert_eq!(s.send_binary(b"late"), Err(SendError::Closed));
    assert_eq!(s.ping(b""), Err(SendError::Closed));
    assert_eq!(s.close(CloseCode::NORMAL, "", now), Err(SendError::Closed));
}

#[test]
fn a_dropped_transport_reports_1006_with_an_empty_reason() {
    let mut s = server();
    feed(&mut s, &client_frame(false, 0, 1, b"half a mess"));
    s.transport_closed();
    assert!(
        matches!(s.poll_event(), Some(Event::Close(c)) if c.code.0 == 1006 && c.reason.is_empty())
    );
    assert_eq!(s.poll_event(), None);
    s.transport_closed();
    assert_eq!(s.poll_event(), None, "closed once only");
}

#[test]
fn clients_mask_every_frame_with_a_fresh_key() {
    let mut c = client();
    c.send_text("same payload").unwrap();
    c.send_text("same payload").unwrap();
    let out = output(&mut c);
    let keys: Vec<_> = [&out[2..6], &out[20..24]]
        .iter()
        .map(|k| k.to_vec())
        .collect();
    assert!(out[1] & 0x80 != 0 && out[19] & 0x80 != 0, "mask bit set");
    assert_ne!(keys[0], keys[1], "two frames, two keys");
    let mut s = server();
    let ev = feed(&mut s, &out);
    assert!(
        matches!(&ev[..], [Event::Text(a), Event::Text(b)] if a.as_str() == "same payload" && b.as_str() == "same payload")
    );
}

#[test]
fn servers_queue_large_shared_payloads_without_copying() {
    let mut s = server();
    let payload = Bytes::from(vec![9u8; 64 * 1024]);
    s.send_shared(DataKind::Binary, payload.clone()).unwrap();
    let header = s.poll_transmit().unwrap();
    assert_eq!(&header[..], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    let body = s.poll_transmit().unwrap();
    assert_eq!(body.as_ptr(), payload.as_ptr(), "the very same bytes");
    assert_eq!(s.pending_output(), 0);
}

#[test]
fn small_frames_are_corked_into_one_chunk() {
    let mut s = server();
    for i in 0..10 {
        s.send_text(&format!("message {i}")).unwrap();
    }
    let chunk = s.poll_transmit().unwrap();
    assert_eq!(parse_frames(&chunk).len(), 10);
    assert!(s.poll_transmit().is_none());
}

#[test]
fn a_frame_header_split_at_every_byte_still_parses() {
    let frame = client_frame(true, 0, 2, &[5u8; 70_000]);
    for split in 1..14 {
        let mut s = server();
        let mut ev = feed(&mut s, &frame[..split]);
        ev.extend(feed(&mut s, &frame[split..]));
        assert!(
            matches!(&ev[..], [Event::Binary(b)] if b.len() == 70_000),
            "split {split}"
        );
    }
}

#[test]
fn discarded_payloads_arrive_as_zeros_of_their_length_and_keep_the_rules() {
    let big = vec![b'x'; 70_000];
    for piece in [1, 7, 4096, usize::MAX] {
        let mut c = client();
        c.discard_payloads(true);
        let mut input = Vec::new();
        input.extend(server_frame(true, 0, 1, b"short"));
        // Invalid UTF-8 is not looked at: the bytes are not kept.
        input.extend(server_frame(true, 0, 1, &[0xff, 0xfe]));
        input.extend(server_frame(true, 0, 2, &big));
        // A fragmented message, with a ping between its fragments.
        input.extend(server_frame(false, 0, 2, b"abc"));
        input.extend(server_frame(true, 0, 9, b"p"));
        input.extend(server_frame(true, 0, 0, b"defg"));
        let events = feed_split(&mut c, &input, piece.min(input.len()));
        let seen: Vec<(String, usize, bool)> = events
            .iter()
            .map(|e| match e {
                Event::Text(t) => ("text".into(), t.len(), t.as_bytes().iter().all(|&b| b == 0)),
                Event::Binary(b) => ("binary".into(), b.len(), b.iter().all(|&b| b == 0)),
                Event::Ping(p) => ("ping".into(), p.len(), p[..] == *b"p"),
                other => (format!("{other:?}"), 0, false),
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("text".into(), 5, true),
                ("text".into(), 2, true),
                ("binary".into(), 70_000, true),
                ("ping".into(), 1, true),
                ("binary".into(), 7, true),
            ],
            "piece {piece}"
        );
        // The ping was answered; nothing else was written.
        let frames = parse_frames(&output(&mut c));
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].2, OpCode::Pong);
    }
}

#[test]
fn discarding_still_enforces_the_frame_rules_and_the_size_limit() {
    let mut c = Connection::client(
        Config {
            max_length: 10,
            ..Config::default()
        },
        Extensions::new(Vec::new()),
        TEST_SEED,
    );
    c.discard_payloads(true);
    assert_failed_with(&feed(&mut c, &server_frame(true, 0, 2, &[0; 11])), 1009);
    let mut c = client();
    c.discard_payloads(true);
    assert_failed_with(&feed(&mut c, &server_frame(true, 0, 0, b"x")), 1002);
    let mut c = client();
    c.discard_payloads(true);
    assert_failed_with(&feed(&mut c, &client_frame(true, 0, 2, b"masked")), 1002);
}

#[test]
fn a_prepared_client_frame_is_one_masked_frame_a_server_reads_back() {
    let payload: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let frame = ringsock_proto::ws::client_frame(OpCode::Binary, &payload, [3, 1, 4, 1]);
    let mut s = server();
    let mut twice = frame.to_vec();
    twice.extend_from_slice(&frame);
    let events = feed(&mut s, &twice);
    assert_eq!(events.len(), 2);
    for e in events {
        assert!(matches!(e, Event::Binary(b) if b[..] == payload[..]));
    }
    let mut c = client();
    c.send_raw_frames(&frame).unwrap();
    assert_eq!(output(&mut c), frame.to_vec());
}

/// Runs `input` through a discarding connection the way a transport that drops payloads unread
/// would: `piece` bytes delivered at a time, and after each delivery up to `skip_cap` of what
/// `skippable` offers dropped (as much as the rest of the input holds, as a socket would).
/// Returns the events and how many bytes were dropped.
fn feed_skipping(
    c: &mut Connection,
    input: &[u8],
    piece: usize,
    skip_cap: u64,
) -> (Vec<Event>, u64) {
    let now = Instant::now();
    let (mut events, mut dropped, mut at) = (Vec::new(), 0u64, 0usize);
    while at < input.len() {
        let end = (at + piece).min(input.len());
        let mut data = &input[at..end];
        while let Some(e) = c.recv(&mut data, now) {
            events.push(e);
        }
        assert!(data.is_empty());
        at = end;
        let n = c.skippable(0).min(skip_cap).min((input.len() - at) as u64);
        if n > 0 {
            c.skipped(n, now);
            at += n as usize;
            dropped += n;
            while let Some(e) = c.poll_event() {
                events.push(e);
            }
        }
    }
    (events, dropped)
}

#[test]
fn skipping_discarded_payloads_gives_the_events_receiving_them_gives() {
    let mut input = Vec::new();
    input.extend(server_frame(true, 0, 1, b"short"));
    input.extend(server_frame(true, 0, 2, &[7; 300_000]));
    input.extend(server_frame(true, 0, 2, b""));
    // A fragmented text message with a ping between its fragments and an empty last fragment.
    input.extend(server_frame(false, 0, 1, &[b'a'; 20_000]));
    input.extend(server_frame(true, 0, 9, b"ping"));
    input.extend(server_frame(false, 0, 0, &[b'b'; 70_000]));
    input.extend(server_frame(true, 0, 0, b""));
    input.extend(server_frame(true, 0, 2, &[9; 126]));
    input.extend(server_frame(true, 0, 8, &close_payload(1000, b"")));
    let mut plain = client();
    plain.discard_payloads(true);
    let expected = feed(&mut plain, &input);
    // (Parsed: a client masks each frame with a fresh key.)
    let expected_out = parse_frames(&output(&mut plain));
    assert_eq!(expected.len(), 7, "{expected:?}");
    for piece in [1, 2, 3, 10, 14, 100, 4096, 65536, usize::MAX] {
        for cap in [1, 1000, u64::MAX] {
            let mut c = client();
            c.discard_payloads(true);
            let (events, dropped) = feed_skipping(&mut c, &input, piece.min(input.len()), cap);
            assert_eq!(events, expected, "piece {piece}, cap {cap}");
            let out = parse_frames(&output(&mut c));
            assert_eq!(out, expected_out, "piece {piece}, cap {cap}");
            if piece < 20_000 {
                assert!(dropped > 0, "piece {piece}, cap {cap}: nothing was skipped");
            }
        }
    }
}

#[test]
fn skippable_is_the_rest_of_a_discarded_data_frame_and_nothing_else() {
    let frame = server_frame(true, 0, 2, &[1; 1000]);
    let header = frame.len() - 1000;
    // Not discarding: nothing may be dropped.
    let mut c = client();
    feed(&mut c, &frame[..header + 10]);
    assert_eq!(c.skippable(0), 0);

    let mut c = client();
    c.discard_payloads(true);
    assert_eq!(c.skippable(0), 0, "before any frame");
    feed(&mut c, &frame[..1]);
    assert_eq!(c.skippable(0), 0, "inside the header");
    feed(&mut c, &frame[1..header + 10]);
    assert_eq!(c.skippable(0), 990);
    assert_eq!(c.skippable(1000), 990, "a message of exactly the minimum");
    assert_eq!(c.skippable(1001), 0, "a message below the minimum");
    feed(&mut c, &frame[header + 10..]);
    assert_eq!(c.skippable(0), 0, "at the frame's end");

    // A control frame between fragments is read whole, even inside a discarded message.
    let mut c = client();
    c.discard_payloads(true);
    let mut input = server_frame(false, 0, 2, b"abc");
    input.extend(&server_frame(true, 0, 9, &[5; 100])[..20]);
    feed(&mut c, &input);
    assert_eq!(c.skippable(0), 0);

    // The server role skips masked payloads alike.
    let mut s = server();
    s.discard_payloads(true);
    let masked = client_frame(true, 0, 2, &[3; 500]);
    feed(&mut s, &masked[..masked.len() - 400]);
    assert_eq!(s.skippable(0), 400);

    // With an extension, payloads are decoded, so never discarded nor skipped.
    let mut c = with_marker(Role::Client);
    c.discard_payloads(true);
    feed(&mut c, &frame[..header + 10]);
    assert_eq!(c.skippable(0), 0);
}

#[test]
fn a_skip_ends_its_frame_and_message_exactly_and_the_next_header_is_read() {
    let now = Instant::now();
    let mut c = client();
    c.discard_payloads(true);
    let first = server_frame(true, 0, 2, &[1; 100]);
    feed(&mut c, &first[..first.len() - 95]);
    c.skipped(95, now);
    assert_eq!(
        c.poll_event(),
        Some(Event::Binary(Bytes::from(vec![0; 100])))
    );
    assert_eq!(c.poll_event(), None);
    assert_eq!(c.skippable(0), 0);
    let ev = feed(&mut c, &server_frame(true, 0, 1, b"hi"));
    assert!(
        matches!(&ev[..], [Event::Text(t)] if t.len() == 2),
        "{ev:?}"
    );

    // A fragment's skip ends the fragment only; the message ends with its last fragment.
    let head = server_frame(false, 0, 2, &[1; 300]);
    feed(&mut c, &head[..head.len() - 290]);
    c.skipped(200, now);
    assert_eq!(c.skippable(0), 90);
    c.skipped(90, now);
    assert_eq!(c.poll_event(), None, "the message is not over");
    assert_eq!(
        c.skippable(0),
        0,
        "a skip never reaches into the next fragment"
    );
    let tail = server_frame(true, 0, 0, &[1; 50]);
    feed(&mut c, &tail[..tail.len() - 50]);
    c.skipped(50, now);
    assert_eq!(
        c.poll_event(),
        Some(Event::Binary(Bytes::from(vec![0; 350])))
    );
    assert!(!c.is_closed());
}

#[test]
fn skipping_keeps_the_size_limit_and_the_frame_rules() {
    let now = Instant::now();
    let mut c = Connection::client(
        Config {
            max_length: 150,
            ..Config::default()
        },
        Extensions::new(Vec::new()),
        TEST_SEED,
    );
    c.discard_payloads(true);
    let first = server_frame(false, 0, 2, &[0; 100]);
    feed(&mut c, &first[..first.len() - 100]);
    c.skipped(100, now);
    assert_failed_with(&feed(&mut c, &server_frame(true, 0, 0, &[0; 51])), 1009);
}

#[test]
fn skipping_more_than_the_frame_holds_ends_the_connection() {
    let now = Instant::now();
    let mut c = client();
    c.discard_payloads(true);
    let frame = server_frame(true, 0, 2, &[1; 100]);
    feed(&mut c, &frame[..frame.len() - 60]);
    c.skipped(61, now);
    assert!(c.is_closed());
    assert!(
        matches!(c.poll_event(), Some(Event::Close(close)) if close.code.0 == 1006),
        "the stream cannot be followed past a skip into the next header"
    );
    // Nothing is left to account for once closed: later skips are ignored.
    c.skipped(10, now);
    assert_eq!(c.poll_event(), None);
    assert_eq!(c.skippable(0), 0);
}

#[test]
fn only_after_a_long_discarded_message_is_the_next_header_read_alone() {
    let long = server_frame(true, 0, 2, &[1; 20_000]);
    let short = server_frame(true, 0, 2, &[1; 100]);
    let mut c = client();
    c.discard_payloads(true);
    assert!(!c.skip_next_header_only(16_384), "before any message");
    feed(&mut c, &long);
    assert!(c.skip_next_header_only(16_384));
    assert!(!c.skip_next_header_only(20_001), "shorter than asked");
    assert!(!c.skip_next_header_only(0), "a minimum of 0 means never");
    feed(&mut c, &long[..1]);
    assert!(!c.skip_next_header_only(16_384), "inside a header");
    feed(&mut c, &long[1..20]);
    assert!(!c.skip_next_header_only(16_384), "inside a payload");
    feed(&mut c, &long[20..]);
    feed(&mut c, &short);
    assert!(!c.skip_next_header_only(16_384), "after a short message");

    // Kept messages, or messages an extension decodes, are never skipped.
    let mut c = client();
    feed(&mut c, &long);
    assert!(!c.skip_next_header_only(16_384));
    let mut c = with_marker(Role::Client);
    c.discard_payloads(true);
    feed(&mut c, &long);
    assert!(!c.skip_next_header_only(16_384));
}
