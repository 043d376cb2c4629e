//! Automatic pings: they reach the client, a peer that answers them stays, and a peer that stops
//! answering is dropped after the pong deadline (its handler hears 1006, its socket ends) —
//! whether the deadline is shorter than, equal to (the default) or longer than the interval.

mod support;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use ringsock_actors::{
    Accepted, BackendKind, Closed, Ctx, Handler, Message, Running, ServerBuilder,
};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use support::*;

/// What a connection's handler reports.
#[derive(Debug)]
enum Seen {
    Pong(Bytes),
    Close(Closed, Instant),
}

/// Echoes, and reports pongs and its close.
struct Watched {
    report: mpsc::Sender<Seen>,
}

impl Handler for Watched {
    type Msg = ();
    fn on_message(&mut self, ctx: &mut Ctx<'_, '_, Self>, message: Message) {
        if let Message::Text(t) = message {
            ctx.send_text(t.as_str());
        }
    }
    fn on_pong(&mut self, _: &mut Ctx<'_, '_, Self>, payload: Bytes) {
        let _ = self.report.send(Seen::Pong(payload));
    }
    fn on_close(&mut self, _: &mut Ctx<'_, '_, Self>, closed: Closed) {
        let _ = self.report.send(Seen::Close(closed, Instant::now()));
    }
}

fn server(
    kind: BackendKind,
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> (Running, mpsc::Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let b = builder(kind, 1).route("/", move |_| {
        Ok(Accepted::new(Watched { report: tx.clone() }))
    });
    (start(kind, configure(b)), rx)
}

/// A raw client that answers every ping sees them keep coming, every ~100 ms, and stays open;
/// its answers are not reported to `on_pong` (they answer automatic pings).
fn pings_arrive_and_a_peer_that_answers_stays(kind: BackendKind) {
    let (server, seen) = server(kind, |b| b.ping(Duration::from_millis(100)));
    let addr = server.local_addrs()[0];
    let mut raw = Raw::upgraded(addr, "/");
    let start = Instant::now();
    let mut pings = 0;
    while pings < 8 {
        let frame = raw.read_frame().expect("a frame");
        assert_eq!(frame.opcode, PING, "unexpected frame {frame:?}");
        raw.send_frame(PONG, &frame.payload);
        pings += 1;
    }
    let elapsed = start.elapsed();
    // Eight intervals of 100 ms: not early, and not starved.
    assert!(
        elapsed >= Duration::from_millis(700),
        "8 pings in {elapsed:?}"
    );
    assert!(elapsed < Duration::from_secs(5), "8 pings took {elapsed:?}");
    assert!(
        seen.try_recv().is_err(),
        "the handler heard something: {:?}",
        seen.try_recv()
    );
    // Still open: it echoes.
    raw.send_frame(TEXT, b"still here");
    let frame = loop {
        let frame = raw.read_frame().expect("a frame");
        if frame.opcode != PING {
            break frame;
        }
        raw.send_frame(PONG, &frame.payload);
    };
    assert_eq!(
        (frame.opcode, &frame.payload[..]),
        (TEXT, &b"still here"[..])
    );
    drop(raw);
    match recv_within(&seen, STEP, "the close") {
        Seen::Close(closed, _) => assert_eq!(closed.code.0, 1006),
        other => panic!("expected the close, got {other:?}"),
    }
    server.shutdown(Duration::from_secs(2));
}

/// A raw client that reads but never answers: after the first ping and the pong timeout the
/// server drops it; the handler hears 1006, the socket ends (EOF or reset).
fn silent_peer_is_dropped(kind: BackendKind, interval: Duration, pong_timeout: Option<Duration>) {
    let (server, seen) = server(kind, |b| {
        let b = b.ping(interval);
        match pong_timeout {
            Some(t) => b.pong_timeout(t),
            None => b,
        }
    });
    let deadline = pong_timeout.unwrap_or(interval);
    let addr = server.local_addrs()[0];
    let start = Instant::now();
    let mut raw = Raw::upgraded(addr, "/");
    let (frames, end) = raw.read_until_end(Duration::from_secs(5));
    let ended = start.elapsed();
    assert!(
        frames.iter().all(|f| f.opcode == PING),
        "unexpected frames: {frames:?}"
    );
    assert!(!frames.is_empty(), "no ping before the end ({end:?})");
    let (closed, at) = match recv_within(&seen, STEP, "the close") {
        Seen::Close(closed, at) => (closed, at),
        other => panic!("expected the close, got {other:?}"),
    };
    assert_eq!(closed.code.0, 1006, "{closed:?}");
    assert_eq!(closed.reason, "");
    // Not before the first ping's deadline.
    let closed_after = at.duration_since(start);
    assert!(
        closed_after >= interval + deadline,
        "dropped after {closed_after:?}, before the first ping ({interval:?}) plus the pong \
         timeout ({deadline:?})"
    );
    assert!(
        closed_after < interval + deadline + Duration::from_secs(2),
        "dropped only after {closed_after:?}"
    );
    eprintln!(
        "{kind:?}: ping every {interval:?}, deadline {deadline:?}: {} pings, dropped after \
         {closed_after:?}, socket ended ({end:?}) after {ended:?}",
        frames.len()
    );
    server.shutdown(Duration::from_secs(2));
}

fn silent_peer_is_dropped_when_the_deadline_is_shorter_than_the_interval(kind: BackendKind) {
    silent_peer_is_dropped(
        kind,
        Duration::from_millis(200),
        Some(Duration::from_millis(100)),
    );
}

fn silent_peer_is_dropped_with_the_default_deadline(kind: BackendKind) {
    silent_peer_is_dropped(kind, Duration::from_millis(100), None);
}

fn silent_peer_is_dropped_when_the_deadline_spans_several_intervals(kind: BackendKind) {
    silent_peer_is_dropped(
        kind,
        Duration::from_millis(100),
        Some(Duration::from_millis(350)),
    );
}

/// A raw client that answers each ping 150 ms late — after the next tick, within the 350 ms
/// deadline — stays open, and its late answers are not mistaken for pongs to the handler's own
/// pings.
fn a_peer_answering_late_within_the_deadline_stays(kind: BackendKind) {
    let (server, seen) = server(kind, |b| {
        b.ping(Duration::from_millis(100))
            .pong_timeout(Duration::from_millis(350))
    });
    let addr = server.local_addrs()[0];
    let mut raw = Raw::upgraded(addr, "/");
    for _ in 0..5 {
        let frame = raw.read_frame().expect("a ping");
        assert_eq!(frame.opcode, PING, "unexpected frame {frame:?}");
        std::thread::sleep(Duration::from_millis(150));
        raw.send_frame(PONG, &frame.payload);
    }
    raw.send_frame(TEXT, b"still here");
    let frame = loop {
        let frame = raw.read_frame().expect("a frame");
        if frame.opcode != PING {
            break frame;
        }
        raw.send_frame(PONG, &frame.payload);
    };
    assert_eq!(
        (frame.opcode, &frame.payload[..]),
        (TEXT, &b"still here"[..])
    );
    assert!(
        seen.try_recv().is_err(),
        "the handler heard something: {:?}",
        seen.try_recv()
    );
    server.shutdown(Duration::from_secs(2));
}

/// A tokio-tungstenite client answers pings while it is being read: it outlives many pong
/// deadlines.
fn a_reading_client_outlives_many_deadlines(kind: BackendKind) {
    let (server, seen) = server(kind, |b| {
        b.ping(Duration::from_millis(50))
            .pong_timeout(Duration::from_millis(150))
    });
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(20), async {
        let mut ws = connect(addr, "/").await;
        let mut pings = 0;
        let until = tokio::time::Instant::now() + Duration::from_millis(800);
        while tokio::time::Instant::now() < until {
            match tokio::time::timeout_at(until, ws.next()).await {
                Err(_) => break,
                Ok(Some(Ok(WsMessage::Ping(_)))) => pings += 1,
                Ok(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!(pings >= 8, "only {pings} pings in 800 ms");
        ws.send(WsMessage::text("alive")).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "alive");
        assert!(
            seen.try_recv().is_err(),
            "the handler heard something: {:?}",
            seen.try_recv()
        );
        ws.close(None).await.unwrap();
    });
    match recv_within(&seen, STEP, "the close") {
        Seen::Close(closed, _) => assert_eq!(closed.code.0, 1000),
        other => panic!("expected the close, got {other:?}"),
    }
    server.shutdown(Duration::from_secs(2));
}

/// A ping the handler sends itself is reported to `on_pong`, with its payload, alongside the
/// automatic ones (which are not).
struct Pinger {
    report: mpsc::Sender<Seen>,
}

impl Handler for Pinger {
    type Msg = ();
    fn on_message(&mut self, ctx: &mut Ctx<'_, '_, Self>, message: Message) {
        if let Some(text) = message.as_text() {
            ctx.ping(text.as_bytes()).unwrap();
        }
    }
    fn on_pong(&mut self, _: &mut Ctx<'_, '_, Self>, payload: Bytes) {
        let _ = self.report.send(Seen::Pong(payload));
    }
}

fn own_pings_are_reported_and_automatic_ones_are_not(kind: BackendKind) {
    let (tx, seen) = mpsc::channel();
    let server = start(
        kind,
        builder(kind, 1)
            .ping(Duration::from_millis(50))
            .route("/", move |_| {
                Ok(Accepted::new(Pinger { report: tx.clone() }))
            }),
    );
    let addr = server.local_addrs()[0];
    let mut raw = Raw::upgraded(addr, "/");
    let mut answered = 0;
    let mut asked = false;
    let mut pongs = Vec::new();
    while pongs.is_empty() || answered < 6 {
        assert!(answered < 100, "no report of the handler's own pong");
        let frame = raw.read_frame().expect("a frame");
        assert_eq!(frame.opcode, PING, "unexpected frame {frame:?}");
        raw.send_frame(PONG, &frame.payload);
        answered += 1;
        if answered == 3 && !asked {
            raw.send_frame(TEXT, b"mine");
            asked = true;
        }
        while let Ok(Seen::Pong(p)) = seen.try_recv() {
            pongs.push(p);
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    while let Ok(Seen::Pong(p)) = seen.try_recv() {
        pongs.push(p);
    }
    assert_eq!(pongs, [Bytes::from_static(b"mine")]);
    server.shutdown(Duration::from_secs(2));
}

/// A handler that sends many pings of its own pushes the automatic one out of the protocol's
/// bounded ping memory; the peer still answers, so it must not be taken for dead.
struct Flooder {
    report: mpsc::Sender<Seen>,
}

impl Handler for Flooder {
    type Msg = ();
    fn on_message(&mut self, ctx: &mut Ctx<'_, '_, Self>, _: Message) {
        for i in 0..40u8 {
            ctx.ping(&[i]).unwrap();
        }
    }
    fn on_close(&mut self, _: &mut Ctx<'_, '_, Self>, closed: Closed) {
        let _ = self.report.send(Seen::Close(closed, Instant::now()));
    }
}

fn own_ping_flood_does_not_make_an_answering_peer_dead(kind: BackendKind) {
    let (tx, seen) = mpsc::channel();
    let server = start(
        kind,
        builder(kind, 1)
            .ping(Duration::from_millis(100))
            .pong_timeout(Duration::from_millis(400))
            .route("/", move |_| {
                Ok(Accepted::new(Flooder { report: tx.clone() }))
            }),
    );
    let addr = server.local_addrs()[0];
    let mut raw = Raw::upgraded(addr, "/");
    let auto = raw.read_frame().expect("the automatic ping");
    assert_eq!((auto.opcode, auto.payload.len()), (PING, 0));
    raw.send_frame(TEXT, b"flood");
    // Answer everything, the held-back automatic ping last, for well past the deadline.
    let started = Instant::now();
    let mut answered_auto = false;
    while started.elapsed() < Duration::from_millis(1200) {
        let frame = raw.read_frame().expect("the connection stays open");
        assert_eq!(frame.opcode, PING, "unexpected frame {frame:?}");
        raw.send_frame(PONG, &frame.payload);
        if !answered_auto && frame.payload.len() == 1 && frame.payload[0] == 39 {
            raw.send_frame(PONG, b"");
            answered_auto = true;
        }
    }
    assert!(answered_auto, "the handler's 40 pings never arrived");
    assert!(
        !matches!(seen.try_recv(), Ok(Seen::Close(..))),
        "an answering peer was dropped"
    );
    server.shutdown(Duration::from_secs(2));
}

on_both_backends! {
    pings_arrive_and_a_peer_that_answers_stays:
        pings_arrive_and_a_peer_that_answers_stays_io_uring,
        pings_arrive_and_a_peer_that_answers_stays_epoll;
    silent_peer_is_dropped_when_the_deadline_is_shorter_than_the_interval:
        silent_peer_is_dropped_when_the_deadline_is_shorter_than_the_interval_io_uring,
        silent_peer_is_dropped_when_the_deadline_is_shorter_than_the_interval_epoll;
    silent_peer_is_dropped_with_the_default_deadline:
        silent_peer_is_dropped_with_the_default_deadline_io_uring,
        silent_peer_is_dropped_with_the_default_deadline_epoll;
    silent_peer_is_dropped_when_the_deadline_spans_several_intervals:
        silent_peer_is_dropped_when_the_deadline_spans_several_intervals_io_uring,
        silent_peer_is_dropped_when_the_deadline_spans_several_intervals_epoll;
    a_peer_answering_late_within_the_deadline_stays:
        a_peer_answering_late_within_the_deadline_stays_io_uring,
        a_peer_answering_late_within_the_deadline_stays_epoll;
    a_reading_client_outlives_many_deadlines:
        a_reading_client_outlives_many_deadlines_io_uring,
        a_reading_client_outlives_many_deadlines_epoll;
    own_pings_are_reported_and_automatic_ones_are_not:
        own_pings_are_reported_and_automatic_ones_are_not_io_uring,
        own_pings_are_reported_and_automatic_ones_are_not_epoll;
    own_ping_flood_does_not_make_an_answering_peer_dead:
        own_ping_flood_does_not_make_an_answering_peer_dead_io_uring,
        own_ping_flood_does_not_make_an_answering_peer_dead_epoll;
}
