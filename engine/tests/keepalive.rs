//! `Limits::keepalive` over loopback, on both backends: a silent peer is pinged, a peer that
//! answers stays, a peer that answers nothing is cut, and a peer that keeps sending is never
//! pinged at all.

#[macro_use]
mod support;

use std::time::{Duration, Instant};

use ringsock_engine::reactor::BackendKind;
use ringsock_engine::server::{Echo, Limits, ServerHandle};
use support::*;

const KEEPALIVE: Duration = Duration::from_millis(300);
const PING: u8 = 9;
const PONG: u8 = 10;

fn server(kind: BackendKind) -> ServerHandle {
    let limits = Limits {
        keepalive: Some(KEEPALIVE),
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
    let server = server(kind);
    let mut raw = Raw::upgraded(server.local_addrs()[0], "/");
    for round in 0..3 {
        let silent = Instant::now();
        let ping = raw.read_frame().expect("a keepalive ping");
        assert_eq!(ping.opcode, PING, "round {round}");
        assert!(
            silent.elapsed() >= KEEPALIVE / 2,
            "pinged after only {:?} of silence",
            silent.elapsed()
        );
        raw.send(&masked_frame(true, PONG, [9, 8, 7, 6], &ping.payload));
    }
    // Still open: an echo comes back.
    raw.send(&masked_frame(true, 1, [1, 1, 1, 1], b"alive"));
    let echo = raw.read_frame().unwrap();
    assert_eq!((echo.opcode, &echo.payload[..]), (1, &b"alive"[..]));
}

fn a_peer_that_answers_nothing_is_cut(kind: BackendKind) {
    let server = server(kind);
    let mut raw = Raw::upgraded(server.local_addrs()[0], "/");
    let silent = Instant::now();
    assert_eq!(raw.read_frame().unwrap().opcode, PING);
    // No pong, no close frame: the connection simply ends.
    raw.expect_eof();
    assert!(
        silent.elapsed() >= KEEPALIVE * 3 / 2,
        "cut after only {:?}",
        silent.elapsed()
    );
}

fn a_peer_that_keeps_sending_is_never_pinged(kind: BackendKind) {
    let server = server(kind);
    let mut raw = Raw::upgraded(server.local_addrs()[0], "/");
    for i in 0..15u8 {
        raw.send(&masked_frame(true, 1, [4, 3, 2, 1], &[b'a' + i]));
        let echo = raw.read_frame().unwrap();
        assert_eq!(echo.opcode, 1, "message {i}: got opcode {}", echo.opcode);
        std::thread::sleep(KEEPALIVE / 5);
    }
}

on_both_backends! {
    a_silent_peer_is_pinged_and_stays_while_it_answers:
        answered_keepalive_io_uring, answered_keepalive_epoll;
    a_peer_that_answers_nothing_is_cut: unanswered_keepalive_io_uring, unanswered_keepalive_epoll;
    a_peer_that_keeps_sending_is_never_pinged:
        busy_peer_not_pinged_io_uring, busy_peer_not_pinged_epoll;
}
