//! `Limits::keepalive` over loopback, on both backends: a silent peer is pinged, a peer that
//! answers stays, a peer that answers nothing is cut, and a peer that keeps sending is never
//! pinged at all.
//!
//! Where the client must answer or send within the keepalive for the test to pass, the keepalive
//! is long (2 s) against the gaps the client leaves (none, or 100 ms), so only a stall of seconds
//! could break it; where only a lower bound is checked, it is short.

use std::time::{Duration, Instant};

use ringsock_engine::reactor::BackendKind;
use ringsock_engine::server::{Echo, EngineHandle, Limits};
use ringsock_testkit::on_both_backends;

use crate::support::*;

/// The keepalive of the tests that answer or send within it.
const LONG: Duration = Duration::from_secs(2);
/// The keepalive of the test that only waits to be cut.
const SHORT: Duration = Duration::from_millis(300);

fn server(kind: BackendKind, keepalive: Duration) -> EngineHandle {
    let limits = Limits {
        keepalive: Some(keepalive),
        ..Limits::default()
    };
    start(
        kind,
        Setup {
            limits,
            ..Setup::default()
        },
        Echo,
    )
}

fn a_silent_peer_is_pinged_and_stays_while_it_answers(kind: BackendKind) {
    let server = server(kind, LONG);
    // From before the connect: the server's silence starts later (at the request, then at each
    // pong), so every ping must come at least a keepalive after `silent`.
    let mut silent = Instant::now();
    let mut raw = Raw::upgraded(server.local_addrs()[0], "/");
    for round in 0..3 {
        let ping = raw.read_frame().expect("a keepalive ping");
        assert_eq!(ping.opcode, PING, "round {round}");
        assert!(
            silent.elapsed() >= LONG,
            "round {round}: pinged after only {:?} of silence",
            silent.elapsed()
        );
        silent = Instant::now();
        raw.send_frame(PONG, &ping.payload);
    }
    // Still open: an echo comes back.
    raw.send_frame(TEXT, b"alive");
    let echo = raw.read_frame().unwrap();
    assert_eq!((echo.opcode, &echo.payload[..]), (TEXT, &b"alive"[..]));
}

fn a_peer_that_answers_nothing_is_cut(kind: BackendKind) {
    let server = server(kind, SHORT);
    let silent = Instant::now();
    let mut raw = Raw::upgraded(server.local_addrs()[0], "/");
    assert_eq!(raw.read_frame().unwrap().opcode, PING);
    // No pong, no close frame: the connection simply ends, a keepalive after the ping, which
    // came a keepalive after the request.
    raw.expect_eof();
    assert!(
        silent.elapsed() >= SHORT * 2,
        "cut after only {:?}",
        silent.elapsed()
    );
}

fn a_peer_that_keeps_sending_is_never_pinged(kind: BackendKind) {
    let server = server(kind, LONG);
    let mut raw = Raw::upgraded(server.local_addrs()[0], "/");
    // A message every 100 ms for one and a half keepalives.
    let started = Instant::now();
    let mut i = 0u8;
    while started.elapsed() < LONG * 3 / 2 {
        raw.send_frame(TEXT, &[b'a' + i % 26]);
        let echo = raw.read_frame().unwrap();
        assert_eq!(echo.opcode, TEXT, "message {i}: got opcode {}", echo.opcode);
        i = i.wrapping_add(1);
        // The situation under test: a peer that talks this often.
        std::thread::sleep(Duration::from_millis(100));
    }
}

on_both_backends!(
    a_silent_peer_is_pinged_and_stays_while_it_answers,
    a_peer_that_answers_nothing_is_cut,
    a_peer_that_keeps_sending_is_never_pinged,
);
