//! The connection's own defences against a peer that is not malformed but hostile: output capped
//! by the transport's limit, pongs coalesced for a peer that pings without reading, a rate limit
//! on control frames, and a floor on fragment sizes. Each is the protocol core alone, time
//! passed in.

use std::time::{Duration, Instant};

use crate::common::*;
use ringsock_proto::ws::extension::Extensions;
use ringsock_proto::ws::frame::OpCode;
use ringsock_proto::ws::{
    CloseCode, Config, Connection, Event, Overflow, ProtocolError, SendError, State, FRAGMENT_GRACE,
};

fn server_with(config: Config) -> Connection {
    Connection::server(config, Extensions::default())
}

/// Feeds `input` at `now` and collects every event.
fn feed_at(conn: &mut Connection, input: &[u8], now: Instant) -> Vec<Event> {
    let mut data = input;
    let mut events = Vec::new();
    while let Some(e) = conn.recv(&mut data, now) {
        events.push(e);
    }
    events
}

fn pongs(frames: &[(bool, u8, OpCode, bytes::Bytes)]) -> Vec<bytes::Bytes> {
    frames
        .iter()
        .filter(|f| f.2 == OpCode::Pong)
        .map(|f| f.3.clone())
        .collect()
}

#[test]
fn a_send_past_the_output_limit_is_refused_and_the_connection_carries_on_under_drop() {
    let mut s = server();
    s.limit_output(300, Overflow::Drop);
    s.send_binary(&[1; 200]).unwrap();
    assert_eq!(s.send_binary(&[2; 200]), Err(SendError::Full));
    assert_eq!(s.ping(&[0; 100]), Err(SendError::Full));
    assert_eq!(s.state(), State::Open);
    let frames = parse_frames(&output(&mut s));
    assert_eq!(frames.len(), 1, "only the message that fitted was queued");
    assert_eq!(frames[0].3.len(), 200);
    // The transport took it: room again.
    s.send_binary(&[3; 200]).unwrap();
}

#[test]
fn a_send_past_the_output_limit_ends_the_connection_under_close() {
    let mut s = server();
    s.limit_output(1000, Overflow::Close(CloseCode::POLICY_VIOLATION));
    s.send_text(&"x".repeat(900)).unwrap();
    assert_eq!(s.send_text(&"y".repeat(900)), Err(SendError::Full));
    assert_eq!(s.state(), State::Closed);
    match s.poll_event() {
        Some(Event::Close(c)) => {
            assert_eq!(c.code, CloseCode::POLICY_VIOLATION);
            assert_eq!(c.reason, "outbound buffer limit exceeded");
        }
        other => panic!("expected the close, got {other:?}"),
    }
    let frames = parse_frames(&output(&mut s));
    // The message that fitted, then the close frame behind it: nothing else.
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[0].3.len(), 900);
    assert_eq!(frames[1].2, OpCode::Close);
    assert_eq!(&frames[1].3[..2], &1008u16.to_be_bytes());
    assert_eq!(s.send_text("more"), Err(SendError::Closed));
}

#[test]
fn frames_the_protocol_owes_pass_the_output_limit() {
    let mut s = server();
    s.limit_output(0, Overflow::Drop);
    let ev = feed(&mut s, &client_frame(true, 0, 9, b"are you there"));
    assert!(matches!(&ev[..], [Event::Ping(_)]));
    let ev = feed(&mut s, &client_frame(true, 0, 8, &close_payload(1000, b"")));
    assert!(matches!(&ev[..], [Event::Close(_)]));
    let frames = parse_frames(&output(&mut s));
    let ops: Vec<OpCode> = frames.iter().map(|f| f.2).collect();
    assert_eq!(ops, [OpCode::Pong, OpCode::Close]);
}

#[test]
fn abandon_queues_the_close_and_reports_it_without_waiting_for_the_peer() {
    let mut s = server();
    s.send_text("first").unwrap();
    s.abandon(CloseCode(1013), "try again later");
    assert_eq!(s.state(), State::Closed);
    assert!(s.is_closed());
    assert!(matches!(s.poll_event(), Some(Event::Close(c)) if c.code.0 == 1013));
    let frames = parse_frames(&output(&mut s));
    assert_eq!(frames.len(), 2);
    assert_eq!(frames[1].2, OpCode::Close);
    // Once closed, a second call does nothing.
    s.abandon(CloseCode(1008), "again");
    assert_eq!(s.poll_event(), None);
    assert!(output(&mut s).is_empty());
}

#[test]
fn a_burst_of_pings_from_a_reading_peer_gets_a_pong_each() {
    let mut s = server();
    let mut input = Vec::new();
    for i in 0..10u8 {
        input.extend(client_frame(true, 0, 9, &[i; 3]));
    }
    let ev = feed(&mut s, &input);
    assert_eq!(ev.len(), 10);
    let got = pongs(&parse_frames(&output(&mut s)));
    let want: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 3]).collect();
    assert_eq!(got, want);
}

#[test]
fn pings_from_a_peer_that_does_not_read_are_answered_by_a_bounded_number_of_pongs() {
    let mut s = server();
    let now = Instant::now();
    // 5,000 pings, never taking output; within the control-frame rate (windows of a second).
    for i in 0..5_000u32 {
        let at = now + Duration::from_secs(u64::from(i / 200));
        let ev = feed_at(&mut s, &client_frame(true, 0, 9, &i.to_be_bytes()), at);
        assert!(matches!(&ev[..], [Event::Ping(_)]), "{ev:?}");
    }
    let queued = s.pending_output();
    assert!(queued < 32 * 8, "{queued} bytes of pongs queued");
    let got = pongs(&parse_frames(&output(&mut s)));
    assert_eq!(got.len(), 33, "a burst of pongs, then the latest ping's");
    assert_eq!(&got[32][..], 4_999u32.to_be_bytes());
    // Taking output starts a new burst: the next ping is answered at once again.
    feed(&mut s, &client_frame(true, 0, 9, b"next"));
    let got = pongs(&parse_frames(&output(&mut s)));
    assert_eq!(got, [&b"next"[..]]);
}

#[test]
fn an_owed_pong_goes_out_before_the_close_that_follows_its_ping() {
    let mut s = server();
    let now = Instant::now();
    for i in 0..40u8 {
        feed_at(&mut s, &client_frame(true, 0, 9, &[i]), now);
    }
    feed_at(
        &mut s,
        &client_frame(true, 0, 8, &close_payload(1000, b"bye")),
        now,
    );
    let frames = parse_frames(&output(&mut s));
    let last_pong = frames.iter().rposition(|f| f.2 == OpCode::Pong).unwrap();
    assert_eq!(&frames[last_pong].3[..], [39]);
    assert_eq!(frames.last().unwrap().2, OpCode::Close);
    assert_eq!(last_pong, frames.len() - 2);
}

#[test]
fn a_pong_owed_is_not_taken_from_a_half_received_ping() {
    let mut s = server();
    let now = Instant::now();
    for i in 0..40u8 {
        feed_at(&mut s, &client_frame(true, 0, 9, &[i; 4]), now);
    }
    // The next ping arrives in two pieces; the transport takes output in between.
    let ping = client_frame(true, 0, 9, b"abcdefgh");
    feed_at(&mut s, &ping[..9], now);
    let between = pongs(&parse_frames(&output(&mut s)));
    assert_eq!(between.len(), 32, "the newer ping replaced the owed pong");
    feed_at(&mut s, &ping[9..], now);
    let after = pongs(&parse_frames(&output(&mut s)));
    assert_eq!(after, [&b"abcdefgh"[..]]);
}

#[test]
fn control_frames_past_the_rate_close_with_1008() {
    let config = Config {
        max_control_per_second: 50,
        ..Config::default()
    };
    let mut s = server_with(config);
    let now = Instant::now();
    // 50 a second for three seconds is allowed, pings and pongs alike.
    for second in 0..3u64 {
        for i in 0..50u8 {
            let op = if i % 2 == 0 { 9 } else { 10 };
            let at = now + Duration::from_millis(second * 1000 + u64::from(i));
            let ev = feed_at(&mut s, &client_frame(true, 0, op, &[i]), at);
            assert_eq!(ev.len(), 1, "{ev:?}");
        }
    }
    assert_eq!(s.state(), State::Open);
    let _ = output(&mut s);
    // The 51st in one window is one too many.
    let at = now + Duration::from_secs(3);
    let mut events = Vec::new();
    for _ in 0..51 {
        events.extend(feed_at(&mut s, &client_frame(true, 0, 9, b""), at));
    }
    let n = events.len();
    assert!(matches!(
        &events[n - 2],
        Event::Error(ProtocolError::ControlFlood { limit: 50 })
    ));
    assert!(matches!(&events[n - 1], Event::Close(c) if c.code.0 == 1008));
    let frames = parse_frames(&output(&mut s));
    let close = frames.last().unwrap();
    assert_eq!(close.2, OpCode::Close);
    assert_eq!(&close.3[..2], &1008u16.to_be_bytes());
}

#[test]
fn endless_tiny_fragments_close_with_1008() {
    let mut s = server();
    let mut input = client_frame(false, 0, 1, b"a");
    for _ in 0..FRAGMENT_GRACE + 10 {
        input.extend(client_frame(false, 0, 0, b"b"));
    }
    let events = feed(&mut s, &input);
    let n = events.len();
    assert!(
        matches!(
            &events[n - 2],
            Event::Error(ProtocolError::TinyFragments { fragments, .. })
                if *fragments == FRAGMENT_GRACE + 1
        ),
        "{events:?}"
    );
    assert!(matches!(&events[n - 1], Event::Close(c) if c.code.0 == 1008));
}

#[test]
fn many_fragments_of_useful_size_are_a_message() {
    // Autobahn's case 9.3.1 in small: 64-byte fragments, far past the grace count.
    let mut s = server();
    let total = (FRAGMENT_GRACE as usize) * 4;
    let text: Vec<u8> = (0..total * 64).map(|i| b'a' + (i % 26) as u8).collect();
    let mut input = Vec::new();
    for (i, piece) in text.chunks(64).enumerate() {
        let op = if i == 0 { 1 } else { 0 };
        input.extend(client_frame(i == total - 1, 0, op, piece));
    }
    let events = feed(&mut s, &input);
    match &events[..] {
        [Event::Text(t)] => assert_eq!(t.as_bytes(), &text[..]),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_zero_limit_turns_each_defence_off() {
    let config = Config {
        max_control_per_second: 0,
        min_fragment_average: 0,
        ..Config::default()
    };
    let mut s = server_with(config);
    let now = Instant::now();
    for _ in 0..1_000 {
        feed_at(&mut s, &client_frame(true, 0, 10, b""), now);
    }
    let mut input = client_frame(false, 0, 2, b"a");
    for _ in 0..FRAGMENT_GRACE * 2 {
        input.extend(client_frame(false, 0, 0, b"b"));
    }
    input.extend(client_frame(true, 0, 0, b"c"));
    let events = feed_at(&mut s, &input, now);
    assert!(
        matches!(&events[..], [Event::Binary(b)] if b.len() == FRAGMENT_GRACE as usize * 2 + 2)
    );
    assert_eq!(s.state(), State::Open);
}
