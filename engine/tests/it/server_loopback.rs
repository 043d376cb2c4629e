//! The whole server over real loopback sockets, on both reactor backends: tokio-tungstenite
//! clients for what a conforming peer does, a raw blocking client for what it never would.
//!
//! Every case is a function taking the [`BackendKind`]; `on_both_backends!` makes each a module
//! with an `io_uring` and an `epoll` test. Every wait is bounded.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ringsock_engine::reactor::{BackendKind, PoolConfig};
use ringsock_engine::server::{Echo, Limits, ShutdownReport};
use ringsock_testkit::on_both_backends;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::support::*;

on_both_backends!(
    echoes_text_and_binary_at_length_boundaries_up_to_16_mib,
    echoes_fragmented_messages_whole_and_answers_a_ping_between_fragments_first,
    thousand_connections_each_get_100_pipelined_echoes_in_order,
    version_8_handshake_gets_400_naming_version_13,
    refusal_reaches_a_client_that_half_closed_after_its_request,
    handshake_without_key_gets_400,
    post_with_upgrade_headers_gets_400_saying_get_is_required,
    request_head_over_8_kib_gets_431,
    malformed_request_head_gets_400,
    plain_get_to_a_websocket_path_gets_426_with_upgrade_header,
    plain_get_elsewhere_gets_the_services_http_answer,
    slow_handshake_is_cut_at_the_handshake_timeout,
    peer_that_stops_reading_is_cut_at_the_handshake_timeout_after_its_close,
    misbehaving_peers_are_closed_without_disturbing_100_good_ones,
    graceful_shutdown_closes_every_client_with_1001_and_reports_it,
    exhausted_receive_pool_loses_no_data,
    echoes_over_ipv6_loopback,
    idle_client_is_closed_with_1001_after_the_idle_timeout,
    connections_over_max_connections_get_503,
);

/// The next message, failing on end of stream, error or a wait over 20 s.
async fn next<S>(rx: &mut S) -> Message
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    match tokio::time::timeout(Duration::from_secs(20), rx.next()).await {
        Err(_) => panic!("no message within 20 s"),
        Ok(None) => panic!("the stream ended"),
        Ok(Some(Err(e))) => panic!("receive failed: {e}"),
        Ok(Some(Ok(msg))) => msg,
    }
}

/// Compares payloads without printing megabytes when they differ.
fn assert_same(got: &[u8], want: &[u8], what: &str) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b);
        panic!(
            "{what}: got {} bytes, want {}; first difference at {at:?}",
            got.len(),
            want.len()
        );
    }
}

/// Reads messages until the server ends the stream (after the close handshake).
async fn drain_to_end(ws: &mut Ws) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Err(_) => panic!("the server did not end the connection within 10 s"),
            Ok(None) | Ok(Some(Err(_))) => return,
            Ok(Some(Ok(Message::Close(_)))) => {}
            Ok(Some(Ok(other))) => panic!("unexpected message after close: {other:?}"),
        }
    }
}

fn close_code(msg: &Message) -> Option<u16> {
    match msg {
        Message::Close(Some(frame)) => Some(u16::from(frame.code)),
        _ => None,
    }
}

// ------------------------------------------------------------------------------------------
// 1. Echo sizes
// ------------------------------------------------------------------------------------------

fn echoes_text_and_binary_at_length_boundaries_up_to_16_mib(kind: BackendKind) {
    let server = start(kind, Setup::default(), Echo);
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(60), async move {
        let (mut tx, mut rx) = connect(addr, "/").await.split();
        for (i, len) in [0, 125, 126, 65535, 65536, 16 << 20]
            .into_iter()
            .enumerate()
        {
            let text = text_pattern(len, 2 * i as u64 + 1);
            let binary = pattern(len, 2 * i as u64 + 2);
            let send = async {
                tx.send(Message::text(text.clone())).await.unwrap();
                tx.send(Message::binary(binary.clone())).await.unwrap();
            };
            let receive = async { (next(&mut rx).await, next(&mut rx).await) };
            let ((), (first, second)) = tokio::join!(send, receive);
            match first {
                Message::Text(t) => assert_same(t.as_bytes(), text.as_bytes(), "text echo"),
                other => panic!("{len} bytes: expected text, got {:?}", kind_of(&other)),
            }
            match second {
                Message::Binary(b) => assert_same(&b, &binary, "binary echo"),
                other => panic!("{len} bytes: expected binary, got {:?}", kind_of(&other)),
            }
        }
    });
}

/// A message's kind and size, for failure messages that do not dump payloads.
fn kind_of(msg: &Message) -> String {
    match msg {
        Message::Text(t) => format!("text of {} bytes", t.len()),
        Message::Binary(b) => format!("binary of {} bytes", b.len()),
        other => format!("{other:?}"),
    }
}

// ------------------------------------------------------------------------------------------
// 2. Fragmentation
// ------------------------------------------------------------------------------------------

fn echoes_fragmented_messages_whole_and_answers_a_ping_between_fragments_first(kind: BackendKind) {
    let server = start(kind, Setup::default(), Echo);
    let addr = server.local_addrs()[0];
    let mut raw = Raw::upgraded(addr, "/");

    // Text in three frames, the middle cut inside the two bytes of 'ö'.
    let text = "Hello, fragmented wörld".as_bytes();
    let cut = text.iter().position(|&b| b == 0xC3).unwrap() + 1;
    raw.send(&frame(false, 0, TEXT, Some([1, 2, 3, 4]), &text[..7]));
    raw.send(&frame(false, 0, CONT, Some([5, 6, 7, 8]), &text[7..cut]));
    raw.send(&frame(true, 0, CONT, Some([9, 10, 11, 12]), &text[cut..]));
    let echo = raw.read_frame().unwrap();
    assert_eq!(
        (echo.fin, echo.opcode, echo.payload.as_slice()),
        (true, TEXT, text),
        "the text message must come back whole, in one frame"
    );

    // Binary in two frames (crossing the 16- and 64-bit length forms) with a ping between.
    let binary = pattern(71_000, 7);
    let mut burst = frame(
        false,
        0,
        BINARY,
        Some([0xA1, 0xB2, 0xC3, 0xD4]),
        &binary[..1000],
    );
    burst.extend(frame(
        true,
        0,
        PING,
        Some([0x11, 0x22, 0x33, 0x44]),
        b"between",
    ));
    burst.extend(frame(
        true,
        0,
        CONT,
        Some([0xFE, 0xDC, 0xBA, 0x98]),
        &binary[1000..],
    ));
    raw.send(&burst);
    let pong = raw.read_frame().unwrap();
    assert_eq!(
        (pong.fin, pong.opcode, pong.payload.as_slice()),
        (true, PONG, &b"between"[..]),
        "the pong must come before the echo"
    );
    let echo = raw.read_frame().unwrap();
    assert_eq!((echo.fin, echo.opcode), (true, BINARY));
    assert_same(&echo.payload, &binary, "fragmented binary echo");

    // And the close handshake ends it.
    raw.send(&frame(
        true,
        0,
        CLOSE,
        Some([1, 1, 1, 1]),
        &1000u16.to_be_bytes(),
    ));
    let close = raw.read_frame().unwrap();
    assert_eq!(close.close_code(), Some(1000));
    raw.expect_eof();
    assert!(raw.buffered().is_empty());
}

// ------------------------------------------------------------------------------------------
// 3. Many connections
// ------------------------------------------------------------------------------------------

fn thousand_connections_each_get_100_pipelined_echoes_in_order(kind: BackendKind) {
    const CONNS: usize = 1000;
    const MESSAGES: usize = 100;
    raise_fd_limit();
    let limit = fd_limit();
    // A client and a server socket per connection, plus room for the other tests in this process.
    assert!(
        limit >= 2 * CONNS as u64 + 512,
        "the fd limit ({limit}) is too low for {CONNS} loopback connections"
    );
    let server = start(
        kind,
        Setup {
            shards: 2,
            ..Setup::default()
        },
        Echo,
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(90), async move {
        // All open at once first, then all traffic.
        let mut connecting = JoinSet::new();
        for c in 0..CONNS {
            connecting.spawn(async move { (c, connect(addr, "/").await) });
        }
        let mut clients = Vec::with_capacity(CONNS);
        while let Some(joined) = connecting.join_next().await {
            clients.push(joined.expect("connect task"));
        }
        assert_eq!(clients.len(), CONNS);

        let mut talking = JoinSet::new();
        for (c, mut ws) in clients {
            talking.spawn(async move {
                for m in 0..MESSAGES {
                    ws.feed(Message::text(format!("conn {c} message {m}")))
                        .await
                        .unwrap();
                }
                ws.flush().await.unwrap();
                for m in 0..MESSAGES {
                    match next(&mut ws).await {
                        Message::Text(t) => assert_eq!(t.as_str(), format!("conn {c} message {m}")),
                        other => panic!("conn {c}: expected text, got {other:?}"),
                    }
                }
            });
        }
        let mut done = 0;
        while let Some(joined) = talking.join_next().await {
            if let Err(e) = joined {
                std::panic::resume_unwind(e.into_panic());
            }
            done += 1;
        }
        assert_eq!(done, CONNS);
    });
}

// ------------------------------------------------------------------------------------------
// 4. Handshakes refused, HTTP answered
// ------------------------------------------------------------------------------------------

/// Sends `request` on a fresh connection and reads the whole answer.
fn ask(addr: SocketAddr, request: &[u8]) -> HttpAnswer {
    let mut raw = Raw::connect(addr);
    raw.send(request);
    raw.read_answer()
}

/// A server with the `Hello` service and `/ws` registered as the WebSocket path.
fn hello_server(kind: BackendKind) -> ringsock_engine::server::EngineHandle {
    start(
        kind,
        Setup {
            ws_path: Some("/ws"),
            ..Setup::default()
        },
        Hello,
    )
}

fn version_8_handshake_gets_400_naming_version_13(kind: BackendKind) {
    let server = hello_server(kind);
    let request = upgrade_request("/ws").replace(
        "Sec-WebSocket-Version: 13\r\n",
        "Sec-WebSocket-Version: 8\r\n",
    );
    let answer = ask(server.local_addrs()[0], request.as_bytes());
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.header("Sec-WebSocket-Version"), Some("13"));
}

/// `printf 'GET …' | nc host port` style: the request, then the client's FIN. The answer must
/// still be written (the peer only shut its sending side).
fn refusal_reaches_a_client_that_half_closed_after_its_request(kind: BackendKind) {
    let server = hello_server(kind);
    let request = upgrade_request("/ws").replace(
        "Sec-WebSocket-Version: 13\r\n",
        "Sec-WebSocket-Version: 8\r\n",
    );
    let mut raw = Raw::connect(server.local_addrs()[0]);
    raw.send(request.as_bytes());
    raw.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = raw.read_answer();
    assert_eq!(answer.status, 400, "{answer:?}");
    assert_eq!(answer.header("Sec-WebSocket-Version"), Some("13"));
}

fn handshake_without_key_gets_400(kind: BackendKind) {
    let server = hello_server(kind);
    let request =
        upgrade_request("/ws").replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "");
    assert!(!request.contains("Key"));
    let answer = ask(server.local_addrs()[0], request.as_bytes());
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(
        String::from_utf8_lossy(&answer.body).contains("Sec-WebSocket-Key"),
        "the reason should name the missing header: {answer:?}"
    );
}

/// A POST is not an upgrade (RFC 6455 requires GET), but it names `Upgrade: websocket`, so it
/// goes to the handshake, whose 400 says why — not to the HTTP responder (whose 404 would not).
fn post_with_upgrade_headers_gets_400_saying_get_is_required(kind: BackendKind) {
    let server = hello_server(kind);
    let request = upgrade_request("/ws").replacen("GET", "POST", 1);
    let answer = ask(server.local_addrs()[0], request.as_bytes());
    assert_eq!(answer.status, 400, "{answer:?}");
    let reason = String::from_utf8_lossy(&answer.body);
    assert!(reason.contains("must be GET"), "{answer:?}");
}

fn request_head_over_8_kib_gets_431(kind: BackendKind) {
    let server = hello_server(kind);
    let mut request = upgrade_request("/ws").into_bytes();
    request.truncate(request.len() - 2); // no blank line yet
    request.extend_from_slice(b"X-Filler: ");
    request.resize(8300, b'a');
    let answer = ask(server.local_addrs()[0], &request);
    assert_eq!(answer.status, 431, "{answer:?}");
}

fn malformed_request_head_gets_400(kind: BackendKind) {
    let server = hello_server(kind);
    let answer = ask(
        server.local_addrs()[0],
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
    );
    assert_eq!(answer.status, 400, "{answer:?}");
}

fn plain_get_to_a_websocket_path_gets_426_with_upgrade_header(kind: BackendKind) {
    let server = hello_server(kind);
    let answer = ask(
        server.local_addrs()[0],
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(answer.status, 426, "{answer:?}");
    assert_eq!(answer.header("Upgrade"), Some("websocket"));
}

fn plain_get_elsewhere_gets_the_services_http_answer(kind: BackendKind) {
    let server = hello_server(kind);
    let answer = ask(
        server.local_addrs()[0],
        b"GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, b"hello");
    assert_eq!(
        answer.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
}

/// A request head dribbled a byte every 300 ms never completes within the handshake timeout
/// (1 s): the server cuts it, not before the timeout (measured from before the connect, so the
/// bound is strict) and within a generous bound after it.
fn slow_handshake_is_cut_at_the_handshake_timeout(kind: BackendKind) {
    use std::io::{Read, Write};
    const TIMEOUT: Duration = Duration::from_secs(1);
    let server = start(
        kind,
        Setup {
            limits: Limits {
                handshake_timeout: TIMEOUT,
                ..Limits::default()
            },
            ..Setup::default()
        },
        Echo,
    );
    let started = Instant::now();
    let raw = Raw::connect(server.local_addrs()[0]);
    let stop = Arc::new(AtomicBool::new(false));
    let mut writer = raw.stream.try_clone().unwrap();
    let dribble = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            for byte in upgrade_request("/").bytes() {
                if stop.load(Ordering::Relaxed) || writer.write_all(&[byte]).is_err() {
                    return;
                }
                // The situation under test: a client this slow.
                std::thread::sleep(Duration::from_millis(300));
            }
        })
    };
    let mut reader = raw.stream;
    let mut sink = [0u8; 1024];
    // Read until the server closes (EOF, or a reset if a dribbled byte was unread at close).
    let closed_after = loop {
        match reader.read(&mut sink) {
            Ok(0) => break started.elapsed(),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the server kept a slow handshake open for {IO_TIMEOUT:?}")
            }
            Err(_) => break started.elapsed(),
        }
    };
    stop.store(true, Ordering::Relaxed);
    dribble.join().unwrap();
    assert!(
        closed_after >= TIMEOUT,
        "closed after {closed_after:?}, before the handshake timeout ({TIMEOUT:?})"
    );
    assert!(
        closed_after < TIMEOUT + STEP,
        "closed only after {closed_after:?} (handshake timeout {TIMEOUT:?})"
    );
}

// ------------------------------------------------------------------------------------------
// 5. Misbehaving peers among good ones
// ------------------------------------------------------------------------------------------

/// Garbage right after a valid handshake: the server closes with `code`, then EOF.
fn expect_close_after(addr: SocketAddr, garbage: &[u8], code: u16, what: &str) {
    let mut raw = Raw::upgraded(addr, "/");
    raw.send(garbage);
    let frame = raw
        .read_frame()
        .unwrap_or_else(|e| panic!("{what}: no close frame: {e}"));
    assert_eq!(frame.close_code(), Some(code), "{what}: got {frame:?}");
    raw.expect_eof();
}

/// Half a frame, then a reset (linger 0): the server must simply forget the connection.
fn reset_mid_frame(addr: SocketAddr) {
    let mut raw = Raw::upgraded(addr, "/");
    let key = [9, 8, 7, 6];
    let mut half = header(true, 0, BINARY, Some(key), 1000);
    half.extend(std::iter::repeat_n(0x55, 500));
    raw.send(&half);
    socket2::SockRef::from(&raw.stream)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(raw);
}

fn misbehaving_peers_are_closed_without_disturbing_100_good_ones(kind: BackendKind) {
    const GOOD: usize = 100;
    let server = start(
        kind,
        Setup {
            shards: 2,
            ..Setup::default()
        },
        Echo,
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(60), async move {
        let mut connecting = JoinSet::new();
        for _ in 0..GOOD {
            connecting.spawn(async move { connect(addr, "/").await });
        }
        let mut clients = Vec::new();
        while let Some(joined) = connecting.join_next().await {
            clients.push(joined.expect("connect task"));
        }

        let stop = Arc::new(AtomicBool::new(false));
        let echoes: Arc<Vec<AtomicU64>> = Arc::new((0..GOOD).map(|_| AtomicU64::new(0)).collect());
        let mut good = JoinSet::new();
        for (c, mut ws) in clients.into_iter().enumerate() {
            let (stop, echoes) = (stop.clone(), echoes.clone());
            good.spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Sizes vary so some echoes span several receive buffers.
                    let payload = pattern(1 + (n as usize * 997 + c * 131) % 40_000, n);
                    ws.send(Message::binary(payload.clone())).await.unwrap();
                    match next(&mut ws).await {
                        Message::Binary(b) => assert_same(&b, &payload, "good connection echo"),
                        other => panic!("good conn {c}: got {}", kind_of(&other)),
                    }
                    n += 1;
                    echoes[c].store(n, Ordering::Relaxed);
                }
                ws.close(None).await.unwrap();
                drain_to_end(&mut ws).await;
            });
        }

        // Several rounds, so both shards see each kind of bad peer.
        let bad = tokio::task::spawn_blocking(move || {
            let key = [0x12, 0x34, 0x56, 0x78];
            for _ in 0..4 {
                expect_close_after(addr, &server_frame(true, 0, TEXT, b"hi"), 1002, "unmasked");
                expect_close_after(
                    addr,
                    &frame(true, 0, 0x3, Some(key), b"reserved"),
                    1002,
                    "reserved opcode",
                );
                expect_close_after(
                    addr,
                    &header(true, 0, BINARY, Some(key), 1 << 27),
                    1009,
                    "2^27-byte frame",
                );
                reset_mid_frame(addr);
            }
        });
        if let Err(e) = bad.await {
            std::panic::resume_unwind(e.into_panic());
        }

        // Every good connection must keep going after all of that.
        let after: Vec<u64> = echoes.iter().map(|e| e.load(Ordering::Relaxed)).collect();
        while echoes
            .iter()
            .zip(&after)
            .any(|(e, &a)| e.load(Ordering::Relaxed) < a + 10)
        {
            if let Some(Err(e)) = good.try_join_next() {
                std::panic::resume_unwind(e.into_panic());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut finished = 0;
        while let Some(joined) = good.join_next().await {
            if let Err(e) = joined {
                std::panic::resume_unwind(e.into_panic());
            }
            finished += 1;
        }
        assert_eq!(finished, GOOD);
        // And a newcomer is served as usual.
        let mut ws = connect(addr, "/").await;
        ws.send(Message::text("after")).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::text("after"));
    });
}

/// A client sends 16 MiB, then its close, and never reads: the echo and the close reply can
/// never be written. The handshake timeout also bounds a final write, so the server must give
/// up on them and close the socket; the client then finds only part of the echo, then the end.
fn peer_that_stops_reading_is_cut_at_the_handshake_timeout_after_its_close(kind: BackendKind) {
    const SIZE: usize = 16 << 20;
    const TIMEOUT: Duration = Duration::from_secs(1);
    let server = start(
        kind,
        Setup {
            limits: Limits {
                handshake_timeout: TIMEOUT,
                ..Limits::default()
            },
            ..Setup::default()
        },
        Echo,
    );
    let server_addr = server.local_addrs()[0];
    let mut raw = Raw::connect_with_small_receive_buffer(server_addr).upgrade("/");
    let client_addr = raw.stream.local_addr().unwrap();
    let mut burst = frame(true, 0, BINARY, Some([3, 1, 4, 1]), &vec![0x5A; SIZE]);
    burst.extend(frame(
        true,
        0,
        CLOSE,
        Some([5, 9, 2, 6]),
        &1000u16.to_be_bytes(),
    ));
    let started = Instant::now();
    raw.send(&burst);
    let sent = Instant::now();
    // Stay deaf until the server has closed its socket (the kernel shows it leave ESTABLISHED;
    // its FIN waits behind the echo this client does not read), then read what the server got
    // out before it gave up.
    wait_until(
        TIMEOUT + STEP,
        "the server closing the stalled connection",
        || tcp_state(server_addr, client_addr) != Some(TCP_ESTABLISHED),
    );
    let gave_up = started.elapsed();
    assert!(
        gave_up >= TIMEOUT,
        "the server gave up {gave_up:?} after the close was sent, before the timeout ({TIMEOUT:?})"
    );
    let mut received = 0usize;
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        use std::io::Read;
        match raw.stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!(
                    "the connection was still open {:?} after the close",
                    sent.elapsed()
                )
            }
            Err(_) => break, // reset: also an end
        }
    }
    assert!(
        received < SIZE,
        "all {received} bytes of the echo arrived: the stalled write was never given up"
    );
}

// ------------------------------------------------------------------------------------------
// 6. Graceful shutdown
// ------------------------------------------------------------------------------------------

fn graceful_shutdown_closes_every_client_with_1001_and_reports_it(kind: BackendKind) {
    const CLIENTS: usize = 50;
    let server = start(
        kind,
        Setup {
            shards: 2,
            ..Setup::default()
        },
        Echo,
    );
    let addr = server.local_addrs()[0];
    // Far longer than 50 close handshakes take on any machine: a shutdown that returns before it
    // ends did not wait it out.
    const GRACE: Duration = Duration::from_secs(30);
    run(GRACE * 3, async move {
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(CLIENTS);
        let mut clients = JoinSet::new();
        for c in 0..CLIENTS {
            let ready = ready_tx.clone();
            clients.spawn(async move {
                let mut ws = connect(addr, "/").await;
                // One echo first: the connection is open on the server, not just accepted.
                ws.send(Message::text(format!("client {c}"))).await.unwrap();
                assert_eq!(next(&mut ws).await, Message::text(format!("client {c}")));
                ready.send(()).await.unwrap();
                let msg = next(&mut ws).await;
                assert_eq!(close_code(&msg), Some(1001), "client {c} got {msg:?}");
                // Polling on lets tungstenite send its close reply and see the server's EOF.
                drain_to_end(&mut ws).await;
            });
        }
        for _ in 0..CLIENTS {
            ready_rx.recv().await.unwrap();
        }
        let shutting_down = std::thread::spawn(move || {
            let t = Instant::now();
            (server.shutdown(GRACE), t.elapsed())
        });
        while let Some(joined) = clients.join_next().await {
            if let Err(e) = joined {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        let (report, took) = tokio::task::spawn_blocking(move || shutting_down.join().unwrap())
            .await
            .unwrap();
        assert_eq!(
            report,
            ShutdownReport {
                closing: CLIENTS,
                closed_cleanly: CLIENTS,
                cut: 0
            }
        );
        assert!(
            took < GRACE,
            "shutdown waited out its grace ({took:?}) though every client answered"
        );
    });
}

// ------------------------------------------------------------------------------------------
// 7. Receive pool exhaustion
// ------------------------------------------------------------------------------------------

fn exhausted_receive_pool_loses_no_data(kind: BackendKind) {
    const CLIENTS: usize = 64;
    const MESSAGES: usize = 4;
    const SIZE: usize = 256 * 1024;
    let server = start(
        kind,
        Setup {
            shards: 2,
            pool: Some(PoolConfig {
                buffers: 8,
                buffer_size: 4096,
                ..PoolConfig::default()
            }),
            ..Setup::default()
        },
        Echo,
    );
    let addr = server.local_addrs()[0];
    run(Duration::from_secs(60), async move {
        let mut clients = JoinSet::new();
        for c in 0..CLIENTS {
            clients.spawn(async move {
                let (mut tx, mut rx) = connect(addr, "/").await.split();
                let payloads: Vec<Vec<u8>> = (0..MESSAGES)
                    .map(|m| pattern(SIZE, (c * MESSAGES + m) as u64))
                    .collect();
                let send = async {
                    for p in &payloads {
                        tx.feed(Message::binary(p.clone())).await.unwrap();
                    }
                    tx.flush().await.unwrap();
                };
                let receive = async {
                    for (m, p) in payloads.iter().enumerate() {
                        match next(&mut rx).await {
                            Message::Binary(b) => {
                                assert_same(&b, p, &format!("client {c} message {m}"))
                            }
                            other => panic!("client {c}: got {}", kind_of(&other)),
                        }
                    }
                };
                tokio::join!(send, receive);
            });
        }
        let mut done = 0;
        while let Some(joined) = clients.join_next().await {
            if let Err(e) = joined {
                std::panic::resume_unwind(e.into_panic());
            }
            done += 1;
        }
        assert_eq!(done, CLIENTS);
    });
}

// ------------------------------------------------------------------------------------------
// 8. IPv6
// ------------------------------------------------------------------------------------------

fn echoes_over_ipv6_loopback(kind: BackendKind) {
    let setup = Setup {
        addr: "[::1]:0".parse().unwrap(),
        ..Setup::default()
    };
    // No silent skip: a machine without IPv6 loopback fails here and says so (run with
    // `--skip echoes_over_ipv6_loopback` there).
    let server = try_start(kind, setup, Echo)
        .unwrap_or_else(|e| panic!("cannot listen on [::1], so IPv6 is untested here: {e}"));
    let addr = server.local_addrs()[0];
    assert!(addr.is_ipv6());
    run(Duration::from_secs(20), async move {
        let mut ws = connect(addr, "/v6").await;
        ws.send(Message::text("over IPv6")).await.unwrap();
        assert_eq!(next(&mut ws).await, Message::text("over IPv6"));
        ws.close(None).await.unwrap();
        drain_to_end(&mut ws).await;
    });
}

// ------------------------------------------------------------------------------------------
// 9. Idle timeout
// ------------------------------------------------------------------------------------------

fn idle_client_is_closed_with_1001_after_the_idle_timeout(kind: BackendKind) {
    const IDLE: Duration = Duration::from_secs(1);
    let server = start(
        kind,
        Setup {
            limits: Limits {
                idle_timeout: Some(IDLE),
                ..Limits::default()
            },
            ..Setup::default()
        },
        Echo,
    );
    let addr = server.local_addrs()[0];
    run(IDLE + STEP * 2, async move {
        // From before the connect: the server's idle time starts later, at the request, so
        // the lower bound is strict.
        let started = Instant::now();
        let mut ws = connect(addr, "/").await;
        let msg = next(&mut ws).await;
        let after = started.elapsed();
        assert_eq!(close_code(&msg), Some(1001), "got {msg:?}");
        assert!(
            after >= IDLE,
            "closed after {after:?}, before the idle timeout ({IDLE:?})"
        );
        assert!(
            after < IDLE + STEP,
            "closed only after {after:?} (idle timeout {IDLE:?})"
        );
        drain_to_end(&mut ws).await;
    });
}

// ------------------------------------------------------------------------------------------
// 10. Refusals
// ------------------------------------------------------------------------------------------

/// Connects, sends an upgrade request and reads everything until the server's close. A reset
/// after the answer also ends it: the server may close before the request has arrived, and
/// then the request meets a closed socket.
fn upgrade_and_read_to_close(addr: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.write_all(upgrade_request("/").as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !got.is_empty() => break,
            Err(e) => panic!("after {:?}: {e}", String::from_utf8_lossy(&got)),
        }
        // An upgraded connection stays open: its head is all there is to read.
        if got.starts_with(b"HTTP/1.1 101 ") && got.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8(got).unwrap()
}

/// Past `max_connections` a client is told why (a 503 with Retry-After) instead of finding a
/// bare close; once a connection ends, a new one is served again.
fn connections_over_max_connections_get_503(kind: BackendKind) {
    let server = start(
        kind,
        Setup {
            limits: Limits {
                max_connections: 2,
                ..Limits::default()
            },
            ..Setup::default()
        },
        Echo,
    );
    let addr = server.local_addrs()[0];
    let first = Raw::upgraded(addr, "/");
    let _second = Raw::upgraded(addr, "/");
    let answer = upgrade_and_read_to_close(addr);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer:?}"
    );
    assert!(answer.contains("\r\nRetry-After: "), "{answer:?}");
    assert!(answer.contains("\r\nConnection: close\r\n"), "{answer:?}");
    assert!(
        answer.ends_with("out of connections; try again in a moment.\n"),
        "{answer:?}"
    );

    drop(first);
    // The server sees the close at its next turn: poll (each try a whole connection) until a
    // new one is served, within a generous bound.
    let deadline = Instant::now() + STEP;
    loop {
        let answer = upgrade_and_read_to_close(addr);
        if answer.starts_with("HTTP/1.1 101 ") {
            break;
        }
        assert!(answer.starts_with("HTTP/1.1 503 "), "{answer:?}");
        assert!(
            Instant::now() < deadline,
            "no room after a connection ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
