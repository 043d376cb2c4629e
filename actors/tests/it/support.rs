//! Helpers for the actors layer's loopback tests: a server builder on a chosen backend, a bounded
//! tokio runtime, tokio-tungstenite clients (one that reads slowly on purpose), bounded waits on
//! std channels, and a raw blocking client for peers that misbehave (never answer a ping).
//!
//! Every wait here is bounded: a test that hangs is a failing test, not a stuck CI job.

#![allow(dead_code)]

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::sync::Once;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ringsock_actors::{BackendKind, Running, Server, ServerBuilder};
use tokio::net::{TcpSocket, TcpStream as TokioTcp};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A tokio-tungstenite client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TokioTcp>>;

/// The longest any single await or blocking read in a test may take.
pub const STEP: Duration = Duration::from_secs(10);

/// `case: name_io_uring, name_epoll` — two tests running `case` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident: $uring:ident, $epoll:ident;)*) => {$(
        #[test]
        fn $uring() {
            $case(ringsock_actors::BackendKind::IoUring)
        }

        #[test]
        fn $epoll() {
            $case(ringsock_actors::BackendKind::Epoll)
        }
    )*};
}

/// Raises the soft fd limit to the hard one, once per process: a test binary runs several
/// servers and their clients at once, two fds per connection.
pub fn raise_fd_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit read and write a live rlimit of the right type.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
                lim.rlim_cur = lim.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
        }
    });
}

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
        .bind("127.0.0.1:0".parse().unwrap())
        .shards(shards)
        .backend(kind)
        .pin_threads(false)
}

/// Starts `builder`, checking that the backend asked for is the one running (no fallback).
pub fn start(kind: BackendKind, builder: ServerBuilder) -> Running {
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

/// Runs `test` on a fresh two-worker runtime, failing it if it takes longer than `limit`.
pub fn run<F: Future>(limit: Duration, test: F) -> F::Output {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let out = rt.block_on(async {
        tokio::time::timeout(limit, test)
            .await
            .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"))
    });
    rt.shutdown_timeout(Duration::from_secs(2));
    out
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

/// Receives from a std channel within `limit`, failing the test otherwise.
pub fn recv_within<T>(rx: &mpsc::Receiver<T>, limit: Duration, what: &str) -> T {
    rx.recv_timeout(limit)
        .unwrap_or_else(|e| panic!("{what}: nothing within {limit:?} ({e})"))
}

/// As [`recv_within`], from async code: polls the channel without blocking a runtime worker.
pub async fn recv_async<T>(rx: &mpsc::Receiver<T>, limit: Duration, what: &str) -> T {
    let until = Instant::now() + limit;
    loop {
        match rx.try_recv() {
            Ok(v) => return v,
            Err(mpsc::TryRecvError::Disconnected) => panic!("{what}: the channel closed"),
            Err(mpsc::TryRecvError::Empty) if Instant::now() >= until => {
                panic!("{what}: nothing within {limit:?}")
            }
            Err(mpsc::TryRecvError::Empty) => tokio::time::sleep(Duration::from_millis(2)).await,
        }
    }
}

/// Polls `cond` every 2 ms until it holds, failing after `limit`.
pub async fn wait_until_async(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < until, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ------------------------------------------------------------------------------------------
// Raw client
// ------------------------------------------------------------------------------------------

/// Opcodes by number.
pub const TEXT: u8 = 0x1;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A frame as a client sends it: final, masked with a fixed key.
pub fn masked_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [0x37, 0xfa, 0x21, 0x3d];
    let len = payload.len();
    let mut out = vec![0x80 | (opcode & 0x0F)];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// A frame the server sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// The RSV bits as they sit in the first byte (RSV1 = 0x40: compressed).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

/// How a raw read ended when it did not yield a frame.
#[derive(Debug)]
pub enum RawEnd {
    /// Orderly EOF.
    Eof,
    /// Reset or another error (not a timeout).
    Reset(io::Error),
}

/// A blocking WebSocket client that does only what it is told: it never answers a ping on its
/// own. Every read and write is bounded by [`STEP`].
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects and completes a handshake on `target` (path and query), expecting 101.
    pub fn upgraded(addr: SocketAddr, target: &str) -> Raw {
        Raw::upgraded_with(addr, target, "").0
    }

    /// [`Raw::upgraded`] with extra request header lines (each ending in CRLF); also returns
    /// the 101 response head.
    pub fn upgraded_with(addr: SocketAddr, target: &str, headers: &str) -> (Raw, String) {
        let stream = TcpStream::connect_timeout(&addr, STEP).expect("connect");
        stream.set_read_timeout(Some(STEP)).unwrap();
        stream.set_write_timeout(Some(STEP)).unwrap();
        stream.set_nodelay(true).unwrap();
        let mut raw = Raw {
            stream,
            buf: Vec::new(),
        };
        raw.send(
            format!(
                "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Version: 13\r\n{headers}\r\n"
            )
            .as_bytes(),
        );
        let head = raw.read_head();
        let text = String::from_utf8_lossy(&head).into_owned();
        assert!(
            text.starts_with("HTTP/1.1 101 "),
            "expected 101, got {text:?}"
        );
        (raw, text)
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends a masked frame.
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.send(&masked_frame(opcode, payload));
    }

    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn need(&mut self, n: usize) -> Result<(), RawEnd> {
        while self.buf.len() < n {
            match self.fill() {
                Ok(0) => return Err(RawEnd::Eof),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => panic!("no bytes within {STEP:?}"),
                Err(e) => return Err(RawEnd::Reset(e)),
            }
        }
        Ok(())
    }

    fn read_head(&mut self) -> Vec<u8> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = self.buf.split_off(end + 4);
                return std::mem::replace(&mut self.buf, rest);
            }
            match self.fill() {
                Ok(0) => panic!("EOF inside a response head"),
                Ok(_) => {}
                Err(e) => panic!("reading a response head: {e}"),
            }
        }
    }

    /// Reads one frame from the server (which must not mask), or how the stream ended.
    pub fn read_frame(&mut self) -> Result<Frame, RawEnd> {
        self.need(2)?;
        let (b0, b1) = (self.buf[0], self.buf[1]);
        assert_eq!(b1 & 0x80, 0, "the server masked a frame");
        let (len, at) = match b1 & 0x7F {
            126 => {
                self.need(4)?;
                (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
            }
            127 => {
                self.need(10)?;
                let mut b = [0u8; 8];
                b.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(b) as usize, 10)
            }
            n => (n as usize, 2),
        };
        self.need(at + len)?;
        let payload = self.buf[at..at + len].to_vec();
        self.buf.drain(..at + len);
        Ok(Frame {
            fin: b0 & 0x80 != 0,
            rsv: b0 & 0x70,
            opcode: b0 & 0x0F,
            payload,
        })
    }

    /// Reads frames until the server's side ends (EOF or reset), within `limit`; returns the
    /// frames read meanwhile and how it ended.
    pub fn read_until_end(&mut self, limit: Duration) -> (Vec<Frame>, RawEnd) {
        let until = Instant::now() + limit;
        let mut frames = Vec::new();
        loop {
            assert!(
                Instant::now() < until,
                "the server did not end the connection within {limit:?}; read {} frames",
                frames.len()
            );
            match self.read_frame() {
                Ok(f) => frames.push(f),
                Err(end) => return (frames, end),
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}
