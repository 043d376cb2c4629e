//! Helpers shared by the protocol-core tests: run a connection over input to collect its events
//! and output.
//!
//! Frames come from the testkit, built from literal header bits with the mask XORed by hand, and
//! the output is read back by the testkit's own parser: never by ringsock's `FrameHeader` or
//! mask code, which are what these tests test.

use std::time::Instant;

use bytes::Bytes;
use ringsock_proto::ws::extension::Extensions;
use ringsock_proto::ws::frame::OpCode;
use ringsock_proto::ws::{Config, Connection, Event, Role};

pub use ringsock_testkit::frame::{client_frame, close_payload, server_frame};

/// The client role's masking-key seed in every test: pinned, so a test's output is the same on
/// every run.
pub const TEST_SEED: [u8; 32] = [0x5e; 32];

/// A fresh connection in `role` (a client seeded with [`TEST_SEED`]).
pub fn connection(role: Role, config: Config, extensions: Extensions) -> Connection {
    match role {
        Role::Server => Connection::server(config, extensions),
        Role::Client => Connection::client(config, extensions, TEST_SEED),
    }
}

/// A fresh server-role connection with default limits.
pub fn server() -> Connection {
    Connection::server(Config::default(), Extensions::default())
}

/// A fresh client-role connection with default limits.
pub fn client() -> Connection {
    Connection::client(Config::default(), Extensions::default(), TEST_SEED)
}

/// Feeds all of `input` in one piece and collects every event.
pub fn feed(conn: &mut Connection, input: &[u8]) -> Vec<Event> {
    feed_split(conn, input, input.len().max(1))
}

/// Feeds `input` in pieces of `piece` bytes and collects every event.
pub fn feed_split(conn: &mut Connection, input: &[u8], piece: usize) -> Vec<Event> {
    let now = Instant::now();
    let mut events = Vec::new();
    for chunk in input.chunks(piece.max(1)) {
        let mut data = chunk;
        while let Some(e) = conn.recv(&mut data, now) {
            events.push(e);
        }
        assert!(
            data.is_empty(),
            "recv returned None before taking all input"
        );
    }
    events
}

/// All bytes the connection wants to write, concatenated.
pub fn output(conn: &mut Connection) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    out
}

/// The opcode a frame's low nibble names, mapped by hand (not by `OpCode::from_u8`).
pub fn opcode(nibble: u8) -> OpCode {
    match nibble {
        0x0 => OpCode::Continuation,
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        0x8 => OpCode::Close,
        0x9 => OpCode::Ping,
        0xA => OpCode::Pong,
        other => panic!("ringsock wrote reserved opcode {other:#x}"),
    }
}

/// Reads output (masked or not) by hand into (fin, rsv, opcode, unmasked payload) tuples.
pub fn parse_frames(bytes: &[u8]) -> Vec<(bool, u8, OpCode, Bytes)> {
    ringsock_testkit::frame::parse_frames(bytes)
        .into_iter()
        .map(|f| (f.fin, f.rsv, opcode(f.opcode), Bytes::from(f.payload)))
        .collect()
}
