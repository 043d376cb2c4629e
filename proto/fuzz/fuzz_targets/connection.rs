//! Arbitrary peer bytes, delivered in arbitrary pieces, to a server-role and a client-role
//! connection. Neither may panic, `recv` must take all input, nothing may follow `Event::Close`,
//! and whatever a connection writes must parse as whole, valid frames for its role.
//!
//! Input layout: byte 0 is how many split sizes follow (at most 16); each split size is one byte
//! (0 is read as 1); the rest is the stream, fed in pieces of those sizes, cycling.

#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ringsock_proto::ws::extension::Extensions;
use ringsock_proto::ws::frame::{FrameHeader, OpCode};
use ringsock_proto::ws::{mask, CloseFrame, Config, Connection, Event, Role, State};

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let count = (count as usize % 17).min(rest.len());
    let (sizes, stream) = rest.split_at(count);
    let sizes: Vec<usize> = if sizes.is_empty() {
        vec![stream.len().max(1)]
    } else {
        sizes.iter().map(|&s| s.max(1) as usize).collect()
    };
    for role in [Role::Server, Role::Client] {
        run(role, &sizes, stream);
    }
});

fn run(role: Role, sizes: &[usize], stream: &[u8]) {
    let config = Config {
        // Small enough that 1009 is reachable from fuzzer-sized inputs.
        max_length: 4096,
        ..Config::default()
    };
    let mut conn = match role {
        Role::Server => Connection::server(config, Extensions::default()),
        // A pinned seed: the same input gives the same masked output, run after run.
        Role::Client => Connection::client(config, Extensions::default(), [0x42; 32]),
    };
    let now = Instant::now();
    let mut closed = false;
    let mut at = 0;
    let mut i = 0;
    while at < stream.len() {
        let end = (at + sizes[i % sizes.len()]).min(stream.len());
        i += 1;
        let mut piece = &stream[at..end];
        at = end;
        while let Some(event) = conn.recv(&mut piece, now) {
            assert!(!closed, "an event after Event::Close: {event:?}");
            match event {
                Event::Close(_) => closed = true,
                // Echo like the Autobahn peer does, so the send path runs too.
                Event::Text(t) => {
                    let _ = conn.send_text(&t);
                }
                Event::Binary(b) => {
                    let _ = conn.send_binary(&b);
                }
                _ => {}
            }
        }
        assert!(piece.is_empty(), "recv returned None before taking all input");
    }
    assert_eq!(closed, conn.state() == State::Closed);
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    assert_eq!(conn.pending_output(), 0);
    check_output(role, &out);
}

/// The output is a sequence of whole frames, masked exactly when the role is the client, each
/// FIN with no RSV bits, nothing after a close frame, and the close frame's payload valid.
fn check_output(role: Role, mut out: &[u8]) {
    let mut saw_close = false;
    while !out.is_empty() {
        assert!(!saw_close, "bytes after a close frame");
        let (h, n) = FrameHeader::parse(out)
            .expect("output frame header is valid")
            .expect("output holds whole frames");
        assert!(h.fin && h.rsv == 0);
        assert_eq!(h.mask.is_some(), role == Role::Client);
        let len = usize::try_from(h.payload_len).unwrap();
        assert!(out.len() >= n + len, "output frame cut short");
        let mut payload = out[n..n + len].to_vec();
        if let Some(key) = h.mask {
            mask::apply_mask(&mut payload, key, 0);
        }
        match h.opcode {
            OpCode::Close => {
                saw_close = true;
                if !payload.is_empty() {
                    CloseFrame::parse(&payload).expect("sent close payload is valid");
                }
            }
            OpCode::Text => {
                std::str::from_utf8(&payload).expect("sent text is UTF-8");
            }
            OpCode::Binary | OpCode::Ping | OpCode::Pong => {}
            OpCode::Continuation => panic!("connection sent a continuation frame"),
        }
        out = &out[n + len..];
    }
}
