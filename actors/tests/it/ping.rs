//! Automatic pings: they reach the client, a peer that answers them stays, and a peer that stops
//! answering is dropped after the pong deadline (its handler hears 1006, its socket ends) —
//! whether the deadline is shorter than, equal to (the default) or longer than the interval.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use ringsock_actors::{
    Accept, BackendKind, Closed, Ctx, Handler, Message, ServerBuilder, ServerHandle,
};
use ringsock_testkit::on_both_backends;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::support::*;

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
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if let Message::Text(t) = message {
            ctx.send_text(t.as_str());
        }
    }
    fn on_pong(&mut self, _: &mut Ctx<'_, Self>, payload: Bytes) {
        let _ = self.report.send(Seen::Pong(payload));
    }
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, closed: Closed) {
        let _ = self.report.send(Seen::Close(closed, Instant::now()));
    }
}

fn server(
    kind: BackendKind,
    configure: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> (ServerHandle, mpsc::Receiver<Seen>) {
    let (tx, rx) = mpsc::channel();
    let b = builder(kind, 1).route("/", move |_| {
        Ok(Accept::new(Watched { report: tx.clone() }))
    });
    (start(kind, configure(b)), rx)
}

/// A raw client that answers every ping sees them keep coming, every ~100 ms, and stays open;
/// its answers are not reported to `on_pong` (they answer automatic pings).
fn pings_arrive_and_a_peer_that_answers_stays(kind: BackendKind) {
    // A deadline far above the client's answer time (it answers as it reads).
    let (server, seen) = server(kind, |b| {
        b.ping(Duration::from_millis(100))
            .pong_timeout(Duration::from_secs(2))
    });
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
    assert!(elapsed < STEP, "8 pings took {elapsed:?}");
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
    let (frames, end) = raw.read_until_end(interval + deadline + STEP);
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
        closed_after < interval + deadline + STEP,
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

/// A raw client that answers each ping 300 ms late — three ticks later, well within the 2 s
/// deadline — stays open, and its late answers are not mistaken for pongs to the handler's own
/// pings.
fn a_peer_answering_late_within_the_deadline_stays(kind: BackendKind) {
    let (server, seen) = server(kind, |b| {
        b.ping(Duration::from_millis(100))
            .pong_timeout(Duration::from_secs(2))
    });
    let addr = server.local_addrs()[0];
    let mut raw = Raw::upgraded(addr, "/");
    for _ in 0..5 {
        let frame = raw.read_frame().expect("a ping");
        assert_eq!(frame.opcode, PING, "unexpected frame {frame:?}");
        // The situation under test: a peer this slow to answer.
        std::thread::sleep(Duration::from_millis(300));
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
    // The client answers as it reads, so only a stall of a whole deadline could make it late.
    const DEADLINE: Duration = Duration::from_secs(1);
    let (server, seen) = server(kind, |b| {
        b.ping(Duration::from_millis(100)).pong_timeout(DEADLINE)
    });
    let addr = server.local_addrs()[0];
    run(STEP * 2, async {
        let mut ws = connect(addr, "/").await;
        // Forty pings a 100 ms interval apart: about four deadlines.
        let started = Instant::now();
        let mut pings = 0;
        while pings < 40 {
            match next_raw(&mut ws).await {
                Some(Ok(WsMessage::Ping(_))) => pings += 1,
                other => panic!("after {pings} pings: unexpected {other:?}"),
            }
        }
        let lived = started.elapsed();
        assert!(
            lived >= DEADLINE * 3,
            "40 pings at a 100 ms interval in {lived:?}"
        );
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
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if let Some(text) = message.as_text() {
            ctx.ping(text.as_bytes()).unwrap();
        }
    }
    fn on_pong(&mut self, _: &mut Ctx<'_, Self>, payload: Bytes) {
        let _ = self.report.send(Seen::Pong(payload));
    }
}

fn own_pings_are_reported_and_automatic_ones_are_not(kind: BackendKind) {
    let (tx, seen) = mpsc::channel();
    let server = start(
        kind,
        builder(kind, 1)
            .ping(Duration::from_millis(50))
            .pong_timeout(Duration::from_secs(2))
            .route("/", move |_| Ok(Accept::new(Pinger { report: tx.clone() }))),
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
    // A last ping of the handler's own, answered like the rest: its report comes after that of
    // every pong before it (one connection, in order), so nothing is still on its way.
    raw.send_frame(TEXT, b"last");
    loop {
        let frame = raw.read_frame().expect("a frame");
        assert_eq!(frame.opcode, PING, "unexpected frame {frame:?}");
        raw.send_frame(PONG, &frame.payload);
        if frame.payload == b"last" {
            break;
        }
    }
    loop {
        match recv_within(&seen, STEP, "the report of the last pong") {
            Seen::Pong(p) if p == "last" => break,
            Seen::Pong(p) => pongs.push(p),
            other => panic!("unexpected {other:?}"),
        }
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
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, _: Message) {
        for i in 0..40u8 {
            ctx.ping(&[i]).unwrap();
        }
    }
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, closed: Closed) {
        let _ = self.report.send(Seen::Close(closed, Instant::now()));
    }
}

/// The pong deadline of the flood test: the client answers at once, so only a stall this long
/// could make it late.
const FLOOD_DEADLINE: Duration = Duration::from_secs(1);

fn own_ping_flood_does_not_make_an_answering_peer_dead(kind: BackendKind) {
    let (tx, seen) = mpsc::channel();
    let server = start(
        kind,
        builder(kind, 1)
            .ping(Duration::from_millis(100))
            .pong_timeout(FLOOD_DEADLINE)
            .route("/", move |_| {
                Ok(Accept::new(Flooder { report: tx.clone() }))
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
    while started.elapsed() < FLOOD_DEADLINE * 3 {
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

on_both_backends!(
    pings_arrive_and_a_peer_that_answers_stays,
    silent_peer_is_dropped_when_the_deadline_is_shorter_than_the_interval,
    silent_peer_is_dropped_with_the_default_deadline,
    silent_peer_is_dropped_when_the_deadline_spans_several_intervals,
    a_peer_answering_late_within_the_deadline_stays,
    a_reading_client_outlives_many_deadlines,
    own_pings_are_reported_and_automatic_ones_are_not,
    own_ping_flood_does_not_make_an_answering_peer_dead,
);
