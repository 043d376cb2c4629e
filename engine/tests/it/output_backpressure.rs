//! The engine's output levels over loopback, on both backends: a client that sends without
//! reading its echoes is not read either once the server's output passes the high level, and is
//! served in full, in order, once it reads again; a service that queues past the maximum gets
//! its overflow policy.

use std::io::Read;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ringsock_engine::reactor::BackendKind;
use ringsock_engine::server::{
    Accept, ConnId, Echo, HttpResponse, Limits, OutputLimits, Service, ShardCx, Upgrade,
};
use ringsock_engine::ws::{CloseCode, Event, Overflow, SendError};
use ringsock_testkit::on_both_backends;

use crate::support::*;

/// Each message the writer sends.
const FRAME: usize = 64 << 10;
/// The most the writer sends in all: far more than any socket buffers hold.
const TOTAL_FRAMES: usize = 4096;
/// How long the writer's progress may stand still before it counts as stopped by the server.
const STALL: Duration = Duration::from_millis(500);

/// Message `seq`: its number in its first 8 bytes, then a pattern seeded with it.
fn numbered(seq: usize) -> Vec<u8> {
    let mut payload = pattern(FRAME, seq as u64);
    payload[..8].copy_from_slice(&(seq as u64).to_be_bytes());
    frame(true, 0, 2, Some([1, 2, 3, 4]), &payload)
}

fn a_client_that_does_not_read_is_not_read_either(kind: BackendKind) {
    let server = start(kind, Setup::default(), Echo);
    let mut raw = Raw::connect_with_small_receive_buffer(server.local_addrs()[0]).upgrade("/");
    let mut writer = raw.stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let written = Arc::new(AtomicUsize::new(0));
    let count = written.clone();
    let writing = thread::spawn(move || {
        use std::io::Write;
        for seq in 0..TOTAL_FRAMES {
            if writer.write_all(&numbered(seq)).is_err() {
                return;
            }
            count.store(seq + 1, Ordering::Release);
        }
    });
    // Wait until the writer's progress stands still: the server stopped reading.
    let start = Instant::now();
    let mut last = (0, Instant::now());
    let stalled_at = loop {
        thread::sleep(Duration::from_millis(20));
        let now = written.load(Ordering::Acquire);
        assert!(
            now < TOTAL_FRAMES,
            "the client wrote all {} MiB without reading: the server never stopped reading",
            (TOTAL_FRAMES * FRAME) >> 20
        );
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= STALL {
            break now;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no stall");
    };
    // The server's 1 MiB high level, the client's 64 KiB receive buffer, and the kernel's
    // socket buffers between them (the server's receive buffer may grow to 32 MiB here).
    assert!(
        stalled_at * FRAME < 64 << 20,
        "{} MiB written before the server stopped reading",
        (stalled_at * FRAME) >> 20
    );
    // Reading again: every echo arrives, in order, and the writer finishes.
    let mut total = 0;
    while total < TOTAL_FRAMES {
        let f = raw.read_frame().expect("an echo");
        assert_eq!(f.opcode, 2);
        assert_eq!(f.payload.len(), FRAME);
        let seq = u64::from_be_bytes(f.payload[..8].try_into().unwrap()) as usize;
        assert_eq!(seq, total, "echoes out of order");
        assert!(
            f.payload[8..] == pattern(FRAME, seq as u64)[8..],
            "echo {seq} differs"
        );
        total += 1;
    }
    writing.join().unwrap();
}

/// Queues `count` messages of `size` bytes on open, without any input to pace it, and reports
/// the send results.
struct Flood {
    size: usize,
    count: usize,
    results: std::sync::mpsc::Sender<Vec<Result<(), SendError>>>,
}

impl Service for Flood {
    type Session = ();
    type Local = ();
    type Post = ();
    fn local(&self, _: usize, _: &ringsock_engine::server::Remote<()>) {}
    fn upgrade(&self, _: &mut (), _: &Upgrade<'_>) -> Result<Accept<()>, HttpResponse> {
        Ok(Accept::new(()))
    }
    fn on_open(
        &self,
        cx: &mut ShardCx<'_, Self>,
        id: ConnId,
        _: &ringsock_engine::http::RequestHead,
    ) {
        let body = bytes::Bytes::from(vec![7u8; self.size]);
        let open = cx.conn(id).unwrap();
        let results = (0..self.count)
            .map(|_| {
                open.ws
                    .send_shared(ringsock_engine::ws::DataKind::Binary, body.clone())
            })
            .collect();
        let _ = self.results.send(results);
    }
    fn on_event(&self, _: &mut ShardCx<'_, Self>, _: ConnId, _: Event) {}
}

fn flood_server(
    kind: BackendKind,
    overflow: Overflow,
) -> (
    ringsock_engine::server::EngineHandle,
    std::sync::mpsc::Receiver<Vec<Result<(), SendError>>>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let limits = Limits {
        output: OutputLimits {
            max: 1 << 20,
            overflow,
            ..OutputLimits::default()
        },
        ..Limits::default()
    };
    let setup = Setup {
        limits,
        ..Setup::default()
    };
    let service = Flood {
        size: 100_000,
        count: 20,
        results: tx,
    };
    (start(kind, setup, service), rx)
}

fn a_service_queueing_past_max_is_refused_and_keeps_the_connection_under_drop(kind: BackendKind) {
    let (server, rx) = flood_server(kind, Overflow::Drop);
    let mut raw = Raw::upgraded(server.local_addrs()[0], "/");
    let results = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let sent = results.iter().filter(|r| r.is_ok()).count();
    // 1 MiB holds 10 messages of 100,000 bytes (and their headers).
    assert_eq!(sent, 10, "{results:?}");
    assert!(results[10..].iter().all(|r| *r == Err(SendError::Full)));
    for _ in 0..sent {
        let f = raw.read_frame().unwrap();
        assert_eq!(f.payload.len(), 100_000);
    }
    // Nothing more: the connection stays open and quiet.
    raw.stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut byte = [0u8; 1];
    let quiet = raw.stream.read(&mut byte);
    assert!(quiet.is_err(), "unexpected bytes or EOF: {quiet:?}");
}

fn a_service_queueing_past_max_closes_the_connection_under_close(kind: BackendKind) {
    let (server, rx) = flood_server(kind, Overflow::Close(CloseCode(1013)));
    let mut raw = Raw::upgraded(server.local_addrs()[0], "/");
    let results = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    for _ in 0..10 {
        assert_eq!(raw.read_frame().unwrap().payload.len(), 100_000);
    }
    let close = raw.read_frame().unwrap();
    assert_eq!(close.close_code(), Some(1013));
    raw.expect_eof();
}

on_both_backends!(
    a_client_that_does_not_read_is_not_read_either,
    a_service_queueing_past_max_is_refused_and_keeps_the_connection_under_drop,
    a_service_queueing_past_max_closes_the_connection_under_close,
);
