//! Arbitrary peer bytes to connections that negotiated permessage-deflate (server and client
//! role, with and without context takeover), so compressed payloads of any shape reach the
//! inflater. Nothing may panic, no message may exceed the size limit after inflating, and what
//! a connection writes must be whole frames (RSV1 allowed on data frames only).
//!
//! Input layout: byte 0 picks role and takeover; the rest is the stream, fed in pieces of 37.

#![no_main]

use std::sync::Arc;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use ringsock_proto::ws::deflate::{DeflateOptions, PerMessageDeflate, Strategy};
use ringsock_proto::ws::extension::{Extension, ExtensionParams, Extensions};
use ringsock_proto::ws::frame::FrameHeader;
use ringsock_proto::ws::{Config, Connection, Event, Role};

const MAX: usize = 4096;

const STRATEGIES: [Strategy; 5] = [
    Strategy::Default,
    Strategy::Filtered,
    Strategy::HuffmanOnly,
    Strategy::Rle,
    Strategy::Fixed,
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, stream)) = data.split_first() else {
        return;
    };
    let role = if pick & 1 == 0 { Role::Server } else { Role::Client };
    let options = DeflateOptions::new()
        .context_takeover(pick & 2 != 0)
        .max_window_bits(8 + (pick >> 4) % 8)
        .mem_level(1 + (pick >> 2) % 9)
        .strategy(STRATEGIES[usize::from(pick >> 3) % STRATEGIES.len()])
        .threshold(0);
    let ext: Arc<dyn Extension> = Arc::new(PerMessageDeflate::new(options));
    let offers = ext.client_offers();
    let refs: Vec<&ExtensionParams> = offers.iter().collect();
    let Ok(Some((response, server_session))) = ext.accept_offer(&refs) else {
        panic!("our own offer is accepted");
    };
    let session = match role {
        Role::Server => server_session,
        Role::Client => ext.accept_response(&response).expect("our own answer is accepted"),
    };
    let config = Config {
        max_length: MAX,
        ..Config::default()
    };
    let mut conn = match role {
        Role::Server => Connection::server(config, Extensions::new(vec![session])),
        // A pinned seed: the same input gives the same masked output, run after run.
        Role::Client => Connection::client(config, Extensions::new(vec![session]), [0x42; 32]),
    };
    let now = Instant::now();
    for piece in stream.chunks(37) {
        let mut piece = piece;
        while let Some(event) = conn.recv(&mut piece, now) {
            match event {
                Event::Text(t) => {
                    assert!(t.len() <= MAX);
                    let _ = conn.send_text(&t);
                }
                Event::Binary(b) => {
                    assert!(b.len() <= MAX);
                    let _ = conn.send_binary(&b);
                }
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    while let Some(chunk) = conn.poll_transmit() {
        out.extend_from_slice(&chunk);
    }
    let mut rest = &out[..];
    while !rest.is_empty() {
        let (h, n) = FrameHeader::parse(rest)
            .expect("output frame header is valid")
            .expect("output holds whole frames");
        assert!(h.rsv & !0x40 == 0 && (h.rsv == 0 || !h.opcode.is_control()));
        rest = &rest[n + h.payload_len as usize..];
    }
});
