//! Outgoing connections: ringsock's client role on its own shards, against its own server and
//! against a tokio-tungstenite server; handshake failures reach the handler typed, with the
//! status and headers of the answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use ringsock_actors::{
    Accept, BackendKind, ConnectError, Ctx, DialError, Handler, HandshakeError, Limits, Message,
    Server, ServerHandle,
};
use ringsock_testkit::on_both_backends;

use crate::dial_support::{Client, Seen};
use crate::support::*;

/// Echo for the server side.
struct Echo;
impl Handler for Echo {
    type Msg = ();
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if let Some(t) = message.as_text() {
            ctx.send_text(t);
        }
    }
}

/// A client-only runtime: shards with no listener.
fn client_runtime(kind: BackendKind) -> ServerHandle {
    raise_fd_limit();
    Server::builder()
        .shards(2)
        .backend(kind)
        .pin_threads(false)
        .start()
        .expect("a client runtime")
}

/// One line per event, for comparing a whole exchange at once.
fn summary(seen: &[Seen]) -> Vec<String> {
    seen.iter()
        .map(|s| match s {
            Seen::Open(status) => format!("open {status}"),
            Seen::Text(t) => format!("text {t}"),
            Seen::Closed(code) => format!("closed {code}"),
            Seen::Failed(e) => format!("failed {e}"),
        })
        .collect()
}

fn exchange(client: &ServerHandle, url: &str) -> Vec<Seen> {
    let (tx, rx) = mpsc::channel();
    client
        .connect(
            url,
            Client {
                send: vec!["one".into(), "two".into()],
                expect: 2,
                report: tx,
            },
        )
        .unwrap();
    let mut seen = Vec::new();
    loop {
        let s = recv_within(&rx, STEP, "the client's next event");
        let done = matches!(s, Seen::Closed(_) | Seen::Failed(_));
        seen.push(s);
        if done {
            return seen;
        }
    }
}

fn against_ringsock_server(kind: BackendKind) {
    let server = start(
        kind,
        builder(kind, 1).route("/echo", |_| Ok(Accept::new(Echo))),
    );
    let client = client_runtime(kind);
    let url = format!("ws://{}/echo", server.local_addrs()[0]);
    let seen = exchange(&client, &url);
    assert_eq!(
        summary(&seen),
        ["open 101", "text one", "text two", "closed 1000"]
    );
    client.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

fn against_tungstenite_server(kind: BackendKind) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let peer = std::thread::spawn(move || {
        run(STEP, async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            // Read to the end: tokio-tungstenite answers the close while being read.
            while let Some(Ok(msg)) = ws.next().await {
                if msg.is_text() || msg.is_binary() {
                    ws.send(msg).await.unwrap();
                }
            }
        })
    });
    let client = client_runtime(kind);
    let seen = exchange(&client, &format!("ws://{addr}/"));
    assert_eq!(
        summary(&seen),
        ["open 101", "text one", "text two", "closed 1000"]
    );
    peer.join().unwrap();
    client.shutdown(Duration::from_secs(1));
}

/// A server that answers any request with `status` and a marker header, then closes.
fn refusing_server(status: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut tcp, _)) = listener.accept() {
            tcp.set_read_timeout(Some(STEP)).unwrap();
            let mut buf = [0u8; 4096];
            let _ = tcp.read(&mut buf);
            let _ = write!(
                tcp,
                "HTTP/1.1 {status}\r\nX-Why: go away\r\nContent-Length: 0\r\n\r\n"
            );
        }
    });
    addr
}

fn a_refusal_is_a_typed_error_with_status_and_headers(kind: BackendKind) {
    let addr = refusing_server("403 Forbidden");
    let client = client_runtime(kind);
    let seen = exchange(&client, &format!("ws://{addr}/"));
    match seen.as_slice() {
        [Seen::Failed(DialError::Handshake(e @ HandshakeError::UnexpectedStatus(_)))] => {
            assert_eq!(e.status(), Some(403));
            assert_eq!(e.headers().unwrap().get("x-why"), Some("go away"));
        }
        other => panic!("expected a 403 handshake error, got {other:?}"),
    }
    client.shutdown(Duration::from_secs(1));
}

fn a_refused_connection_is_an_io_error(kind: BackendKind) {
    // A port that was just free: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = client_runtime(kind);
    let seen = exchange(&client, &format!("ws://{addr}/"));
    assert!(
        matches!(
            seen.as_slice(),
            [Seen::Failed(DialError::Io(_) | DialError::Closed)]
        ),
        "{seen:?}"
    );
    client.shutdown(Duration::from_secs(1));
}

/// A raw server that completes the handshake, sends close 1000, reads the client's close reply
/// and then keeps the socket `hold` long before closing it (`None`: never; it waits for the
/// client to close). Reports what it read after the reply: `Some(elapsed)` when the client
/// closed the TCP connection (EOF that long after the server sent its close frame, before which
/// the client cannot have started waiting), `None` if it did not before the server would have.
/// Then it closes the socket, once the test says so on the returned sender (or a step later).
fn closing_server(
    hold: Option<Duration>,
) -> (
    SocketAddr,
    mpsc::Receiver<Option<Duration>>,
    mpsc::Sender<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    let (close, close_now) = mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut tcp, _)) = listener.accept() else {
            return;
        };
        tcp.set_read_timeout(Some(STEP)).unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match tcp.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let text = String::from_utf8_lossy(&request);
        let key = text
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .expect("a key");
        let accept = ringsock_engine::ws::handshake::accept_key(key.as_bytes());
        write!(
            tcp,
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .unwrap();
        let closing = std::time::Instant::now();
        tcp.write_all(&[0x88, 0x02, 0x03, 0xe8]).unwrap();
        // The client's masked close reply: 2 + 4 + 2 bytes.
        let mut reply = [0u8; 8];
        tcp.read_exact(&mut reply).unwrap();
        assert_eq!(reply[0], 0x88, "a close frame");
        tcp.set_read_timeout(Some(hold.unwrap_or(STEP))).unwrap();
        let seen = match tcp.read(&mut buf) {
            Ok(0) => Some(closing.elapsed()),
            _ => None,
        };
        let _ = tx.send(seen);
        let _ = close_now.recv_timeout(STEP);
    });
    (addr, rx, close)
}

/// RFC 6455 section 7.1.1: after the close handshake the server closes the TCP connection
/// first. The client keeps its socket open for it and reports the close once it has.
fn the_client_waits_for_the_server_to_close_the_transport(kind: BackendKind) {
    let hold = Duration::from_millis(300);
    let (addr, server_saw, close_transport) = closing_server(Some(hold));
    // Far longer than the hold: only the server's close can end the wait.
    let client = runtime_with_server_close_timeout(kind, STEP);
    let (tx, rx) = mpsc::channel();
    let handler = Client {
        send: vec![],
        expect: 1,
        report: tx,
    };
    client.connect(&format!("ws://{addr}/"), handler).unwrap();
    assert!(matches!(recv_within(&rx, STEP, "open"), Seen::Open(101)));
    // The server has held the socket open past its hold, and closes it only when told: until
    // then nothing may have been reported.
    let eof = recv_within(&server_saw, STEP, "the server's read");
    assert_eq!(
        eof, None,
        "the client did not close the TCP connection first"
    );
    assert!(
        rx.try_recv().is_err(),
        "the close is reported only once the server has closed the transport"
    );
    close_transport.send(()).unwrap();
    assert!(matches!(
        recv_within(&rx, STEP, "the close"),
        Seen::Closed(1000)
    ));
    client.shutdown(Duration::from_secs(1));
}

/// A client-only runtime (one shard) whose outgoing connections wait `wait` for the server to
/// close the transport after the close handshake.
fn runtime_with_server_close_timeout(kind: BackendKind, wait: Duration) -> ServerHandle {
    raise_fd_limit();
    Server::builder()
        .shards(1)
        .backend(kind)
        .pin_threads(false)
        .limits(Limits {
            server_close_timeout: wait,
            ..Limits::default()
        })
        .start()
        .unwrap()
}

/// A server that never closes: the client gives up after `Limits::server_close_timeout`,
/// closes the socket itself and reports the close, still clean.
fn the_client_stops_waiting_for_a_server_that_does_not_close(kind: BackendKind) {
    let (addr, server_saw, _) = closing_server(None);
    let wait = Duration::from_millis(200);
    let client = runtime_with_server_close_timeout(kind, wait);
    let (tx, rx) = mpsc::channel();
    let handler = Client {
        send: vec![],
        expect: 1,
        report: tx,
    };
    client.connect(&format!("ws://{addr}/"), handler).unwrap();
    assert!(matches!(recv_within(&rx, STEP, "open"), Seen::Open(101)));
    assert!(matches!(
        recv_within(&rx, STEP, "the close"),
        Seen::Closed(1000)
    ));
    let eof = recv_within(&server_saw, STEP, "the server's read").expect("the client closed");
    assert!(
        eof >= wait && eof < wait + STEP,
        "the client closed {eof:?} after the server's close frame, not after waiting {wait:?}"
    );
    client.shutdown(Duration::from_secs(1));
}

#[test]
fn an_invalid_url_is_refused_at_once() {
    let client = client_runtime(BackendKind::Epoll);
    let (tx, _rx) = mpsc::channel();
    let handler = |tx: &mpsc::Sender<Seen>| Client {
        send: vec![],
        expect: 1,
        report: tx.clone(),
    };
    for url in ["http://example.com/", "not a url", "ws://"] {
        match client.connect(url, handler(&tx)) {
            Err(ConnectError::Handshake(HandshakeError::InvalidUrl(_))) => {}
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
    client.shutdown(Duration::from_secs(1));
}

on_both_backends!(
    against_ringsock_server,
    against_tungstenite_server,
    a_refusal_is_a_typed_error_with_status_and_headers,
    a_refused_connection_is_an_io_error,
    the_client_waits_for_the_server_to_close_the_transport,
    the_client_stops_waiting_for_a_server_that_does_not_close,
);
