//! Helpers shared by the protocol-core integration tests: craft frames byte by byte, and run a
//! server-role connection over input to collect its events and output.

#![allow(dead_code)]

use std::time::Instant;

use bytes::Bytes;
use ringsock_proto::ws::extension::Extensions;
use ringsock_proto::ws::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use ringsock_proto::ws::{mask, Config, Connection, Event, Role};

/// A frame as a client would send it (masked with a fixed key), with every bit settable.
pub fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, rsv, opcode, Some([0x37, 0xfa, 0x21, 0x3d]), payload)
}

/// A frame as a server would send it (unmasked).
pub fn server_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, rsv, opcode, None, payload)
}

/// Any frame, including ones with reserved opcodes, which `FrameHeader` cannot express.
pub fn raw_frame(fin: bool, rsv: u8, opcode: u8, key: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let h = FrameHeader {
        fin,
        rsv,
        opcode: OpCode::Binary,
        mask: key,
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = h.encode(&mut head);
    head[0] = (head[0] & 0xF0) | (opcode & 0x0F);
    let mut out = head[..n].to_vec();
    let start = out.len();
    out.extend_from_slice(payload);
    if let Some(k) = key {
        mask::apply_mask(&mut out[start..], k, 0);
    }
    out
}

/// A close payload: code then reason.
pub fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

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

/// Parses server-role output (unmasked frames) into (fin, rsv, opcode, payload) tuples.
pub fn parse_frames(mut bytes: &[u8]) -> Vec<(bool, u8, OpCode, Bytes)> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        let (h, n) = FrameHeader::parse(bytes).unwrap().expect("whole frame");
        let len = h.payload_len as usize;
        let mut payload = bytes[n..n + len].to_vec();
        if let Some(k) = h.mask {
            mask::apply_mask(&mut payload, k, 0);
        }
        frames.push((h.fin, h.rsv, h.opcode, Bytes::from(payload)));
        bytes = &bytes[n + len..];
    }
    frames
}
