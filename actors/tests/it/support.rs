//! Helpers for the actors layer's loopback tests: a server builder on a chosen backend and
//! tokio-tungstenite clients (one that reads slowly on purpose). What every suite shares (the raw
//! client for peers that misbehave, frames built byte by byte, bounded waits, the tokio runner)
//! comes from `ringsock-testkit`, re-exported here.
//!
//! Every wait here is bounded: a test that hangs is a failing test, not a stuck CI job.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use ringsock_actors::{BackendKind, Server, ServerBuilder, ServerHandle};
use tokio::net::{TcpSocket, TcpStream as TokioTcp};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub use ringsock_testkit::frame::{PING, PONG, TEXT};
pub use ringsock_testkit::{
    raise_fd_limit, recv_async, recv_within, run, wait_progress_async, Raw, STEP,
};

/// A tokio-tungstenite client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TokioTcp>>;

/// The most the kernel lets a TCP socket's send buffer grow to (`tcp_wmem`'s maximum; 4 MiB if
/// it cannot be read). A server writing to a client that stopped reading fills this much before
/// its own output starts to pile up.
pub fn tcp_send_buffer_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 << 20)
}

/// A builder listening on an ephemeral loopback port with `shards` unpinned shards on `kind`.
pub fn builder(kind: BackendKind, shards: usize) -> ServerBuilder {
    raise_fd_limit();
    Server::builder()
        .bind("127.0.0.1:0")
        .shards(shards)
        .backend(kind)
        .pin_threads(false)
}

/// Starts `builder`, checking that the backend asked for is the one running (no fallback).
pub fn start(kind: BackendKind, builder: ServerBuilder) -> ServerHandle {
    let server = builder
        .start()
        .unwrap_or_else(|e| panic!("{kind:?} server failed to start: {e}"));
    match kind {
        BackendKind::Epoll => assert_eq!(server.backend(), "epoll"),
        BackendKind::IoUring => assert_eq!(server.backend(), "io_uring"),
        BackendKind::Auto => {}
    }
    server
}

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
        .read_buffer_size(8 * 1024)
}

/// Opens a tokio-tungstenite client to `path` (with its query) on `addr`.
pub async fn connect(addr: SocketAddr, path: &str) -> Ws {
    let url = format!("ws://{addr}{path}");
    let (ws, response) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(client_config()), true),
    )
    .await
    .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
    .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    assert_eq!(response.status(), 101);
    ws
}

/// As [`connect`], but with a fixed 16 KiB receive buffer (no autotuning): when this client stops
/// reading, the kernel stops taking the server's bytes after a few megabytes at most, and what
/// the server sends after that stays in its own buffers, where the high-water mark sees it.
pub async fn connect_slow_reader(addr: SocketAddr, path: &str) -> Ws {
    let url = format!("ws://{addr}{path}");
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(16 * 1024).expect("SO_RCVBUF");
    let stream = tokio::time::timeout(STEP, socket.connect(addr))
        .await
        .expect("connect timed out")
        .expect("connect");
    stream.set_nodelay(true).unwrap();
    let (ws, response) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::client_async_with_config(
            url.as_str(),
            MaybeTlsStream::Plain(stream),
            Some(client_config()),
        ),
    )
    .await
    .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
    .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    assert_eq!(response.status(), 101);
    ws
}

/// The next frame the client reports (data, ping, pong or close), within [`STEP`]; `None` when
/// the stream ends.
pub async fn next_raw(ws: &mut Ws) -> Option<Result<WsMessage, WsError>> {
    tokio::time::timeout(STEP, ws.next())
        .await
        .unwrap_or_else(|_| panic!("no message within {STEP:?}"))
}

/// The next data or close message (pings and pongs skipped), within [`STEP`].
pub async fn next_message(ws: &mut Ws) -> WsMessage {
    loop {
        match next_raw(ws).await {
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
            Some(Ok(msg)) => return msg,
            Some(Err(e)) => panic!("the stream failed: {e}"),
            None => panic!("the stream ended"),
        }
    }
}

/// The next message, which must be text.
pub async fn next_text(ws: &mut Ws) -> String {
    match next_message(ws).await {
        WsMessage::Text(t) => t.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// The next message, which must be binary.
pub async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    match next_message(ws).await {
        WsMessage::Binary(b) => b.to_vec(),
        other => panic!("expected a binary message, got {}", describe(&other)),
    }
}

/// Reads for `period` and fails if a data or close message arrives (pings are answered by
/// reading, and skipped).
pub async fn expect_silence(ws: &mut Ws, period: Duration) {
    let until = tokio::time::Instant::now() + period;
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Err(_) => return,
            Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => continue,
            Ok(Some(Ok(msg))) => panic!("expected silence, got {}", describe(&msg)),
            Ok(Some(Err(e))) => panic!("expected silence, the stream failed: {e}"),
            Ok(None) => panic!("expected silence, the stream ended"),
        }
    }
}

/// A short description of a message (binary payloads can be megabytes).
pub fn describe(msg: &WsMessage) -> String {
    match msg {
        WsMessage::Text(t) if t.len() <= 200 => format!("Text({:?})", t.as_str()),
        WsMessage::Text(t) => format!("Text({} bytes)", t.len()),
        WsMessage::Binary(b) => format!("Binary({} bytes)", b.len()),
        WsMessage::Close(c) => format!("Close({c:?})"),
        other => format!("{other:?}"),
    }
}

/// The code of a close message, if it is one with a code.
pub fn close_code(msg: &WsMessage) -> Option<u16> {
    match msg {
        WsMessage::Close(Some(frame)) => Some(u16::from(frame.code)),
        _ => None,
    }
}
