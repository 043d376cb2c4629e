//! Helpers for the loopback server tests: starting a server on a chosen backend, a bounded tokio
//! runtime, tokio-tungstenite clients, and a raw blocking client that speaks HTTP and WebSocket
//! frames byte by byte (for what a well-behaved client library will not send).

#![allow(dead_code)]

use std::future::Future;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Once;
use std::time::Duration;

use ringsock_engine::http::RequestHead;
use ringsock_engine::reactor::{BackendKind, PoolConfig};
use ringsock_engine::server::{
    Accept, ConnId, Cx, HttpResponse, Limits, Remote, Server, ServerHandle, Service, Upgrade,
};
use ringsock_engine::ws::{DataKind, Event};
use tokio::net::TcpStream as TokioTcp;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// `case: name_io_uring, name_epoll;` — two tests running `case` on each backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($case:ident: $uring:ident, $epoll:ident;)*) => {$(
        #[test]
        fn $uring() {
            $case(ringsock_engine::reactor::BackendKind::IoUring)
        }

        #[test]
        fn $epoll() {
            $case(ringsock_engine::reactor::BackendKind::Epoll)
        }
    )*};
}

/// A tokio-tungstenite client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TokioTcp>>;

/// How long any single blocking read or write of a raw client may take.
pub const RAW_IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Echo for WebSockets; every plain HTTP request gets `200 hello`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Hello;

impl Service for Hello {
    type Session = ();
    type Local = ();
    type Post = ();

    fn local(&self, _: usize, _: &Remote<()>) {}

    fn upgrade(&self, _: &mut (), _: &Upgrade<'_>) -> Result<Accept<()>, HttpResponse> {
        Ok(Accept::new(()))
    }

    fn on_event(&self, cx: &mut Cx<'_, Self>, id: ConnId, event: Event) {
        if let Some(open) = cx.conn(id) {
            let _ = match event {
                Event::Text(text) => open.ws.send_shared(DataKind::Text, text.into_bytes()),
                Event::Binary(data) => open.ws.send_shared(DataKind::Binary, data),
                _ => Ok(()),
            };
        }
    }

    fn on_http(&self, _request: &RequestHead) -> HttpResponse {
        HttpResponse::text(200, "hello")
    }
}

/// What a test server differs in.
pub struct Setup {
    pub addr: SocketAddr,
    pub shards: usize,
    pub limits: Limits,
    pub pool: Option<PoolConfig>,
    pub ws_path: Option<&'static str>,
}

impl Default for Setup {
    fn default() -> Self {
        Self {
            addr: "127.0.0.1:0".parse().unwrap(),
            shards: 1,
            limits: Limits::default(),
            pool: None,
            ws_path: None,
        }
    }
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

/// The process's current soft fd limit.
pub fn fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes a live rlimit of the right type.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit: {}", io::Error::last_os_error());
    lim.rlim_cur
}

/// Starts a server on `kind` (never falling back) with unpinned threads.
pub fn start<S: Service>(kind: BackendKind, setup: Setup, service: S) -> ServerHandle<S::Post> {
    try_start(kind, setup, service).unwrap_or_else(|e| panic!("{kind:?} server failed: {e}"))
}

/// As [`start`], returning the error (for binds that may be impossible, like `[::1]`).
pub fn try_start<S: Service>(
    kind: BackendKind,
    setup: Setup,
    service: S,
) -> io::Result<ServerHandle<S::Post>> {
    raise_fd_limit();
    let mut builder = Server::builder()
        .bind(setup.addr)
        .shards(setup.shards)
        .backend(kind)
        .limits(setup.limits)
        .pin_threads(false);
    if let Some(pool) = setup.pool {
        builder = builder.pool(pool);
    }
    if let Some(path) = setup.ws_path {
        builder = builder.websocket_path(path);
    }
    let server = builder.start(service)?;
    match kind {
        BackendKind::Epoll => assert_eq!(server.backend(), "epoll"),
        BackendKind::IoUring => assert_eq!(server.backend(), "io_uring"),
        BackendKind::Auto => {}
    }
    Ok(server)
}

/// Runs `test` on a fresh two-worker runtime, failing it if it takes longer than `limit`.
pub fn run<F: Future<Output = ()>>(limit: Duration, test: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    rt.block_on(async {
        tokio::time::timeout(limit, test)
            .await
            .unwrap_or_else(|_| panic!("test did not finish within {limit:?}"))
    });
    rt.shutdown_timeout(Duration::from_secs(2));
}

/// Opens a tokio-tungstenite client to `path` on `addr`, with no size limits of its own (the
/// server's are under test).
pub async fn connect(addr: SocketAddr, path: &str) -> Ws {
    let config = WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None);
    let url = format!("ws://{addr}{path}");
    let (ws, response) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true),
    )
    .await
    .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
    .unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    assert_eq!(response.status(), 101);
    ws
}

/// Deterministic bytes that do not repeat with any short period, so an echo shifted, truncated
/// or spliced at a buffer boundary cannot compare equal.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// As [`pattern`], mapped to printable ASCII (valid UTF-8).
pub fn text_pattern(len: usize, seed: u64) -> String {
    let bytes: Vec<u8> = pattern(len, seed)
        .into_iter()
        .map(|b| b' ' + b % 95)
        .collect();
    String::from_utf8(bytes).expect("ASCII")
}

// ------------------------------------------------------------------------------------------
// Raw client
// ------------------------------------------------------------------------------------------

/// Opcodes by number.
pub const CONT: u8 = 0x0;
pub const TEXT: u8 = 0x1;
pub const BINARY: u8 = 0x2;
pub const CLOSE: u8 = 0x8;
pub const PING: u8 = 0x9;
pub const PONG: u8 = 0xA;

/// A frame as a client sends it: masked with `key`.
pub fn masked_frame(fin: bool, opcode: u8, key: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut out = frame_head(fin, opcode, Some(key), payload.len() as u64);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// An unmasked frame (which a client must never send).
pub fn unmasked_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = frame_head(fin, opcode, None, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

/// A frame header alone, announcing `len` payload bytes.
pub fn frame_head(fin: bool, opcode: u8, key: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let mut out = vec![(if fin { 0x80 } else { 0 }) | (opcode & 0x0F)];
    let mask_bit = if key.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= 0xFFFF {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(k) = key {
        out.extend_from_slice(&k);
    }
    out
}

/// A frame the server sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A complete HTTP response read up to the server's close.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The value of the only header called `name` (case-insensitive), if any.
    pub fn header(&self, name: &str) -> Option<&str> {
        let mut found = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name));
        let first = found.next().map(|(_, v)| v.as_str());
        assert!(found.next().is_none(), "header {name} repeated");
        first
    }
}

/// A blocking TCP client with every read and write bounded by [`RAW_IO_TIMEOUT`].
pub struct Raw {
    pub stream: TcpStream,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
}

/// A valid upgrade request for `path`.
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::wrap(TcpStream::connect_timeout(&addr, RAW_IO_TIMEOUT).expect("connect"))
    }

    /// Connects with a fixed 64 KiB receive buffer (no autotuning), so a client that stops
    /// reading stalls the server's writes after a few megabytes at most.
    pub fn connect_with_small_receive_buffer(addr: SocketAddr) -> Raw {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket.set_recv_buffer_size(64 * 1024).unwrap();
        socket
            .connect_timeout(&addr.into(), RAW_IO_TIMEOUT)
            .expect("connect");
        Raw::wrap(socket.into())
    }

    fn wrap(stream: TcpStream) -> Raw {
        stream.set_read_timeout(Some(RAW_IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(RAW_IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and completes a WebSocket handshake on `path`.
    pub fn upgraded(addr: SocketAddr, path: &str) -> Raw {
        Raw::connect(addr).upgrade(path)
    }

    /// Completes a WebSocket handshake on `path`.
    pub fn upgrade(self, path: &str) -> Raw {
        let mut raw = self;
        raw.send(upgrade_request(path).as_bytes());
        let head = raw.read_head().expect("a response head");
        let text = String::from_utf8_lossy(&head);
        assert!(
            text.starts_with("HTTP/1.1 101 "),
            "expected 101, got {text:?}"
        );
        assert!(
            text.contains("\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"),
            "wrong or missing accept key in {text:?}"
        );
        raw
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Reads more bytes into the buffer; `Ok(0)` at EOF.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self.stream.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn need(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF with {} of {n} bytes", self.buf.len()),
                ));
            }
        }
        Ok(())
    }

    /// Reads an HTTP head through its blank line; later bytes stay buffered.
    pub fn read_head(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = self.buf.split_off(end + 4);
                return Ok(std::mem::replace(&mut self.buf, rest));
            }
            if self.fill()? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "EOF inside a head: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    ),
                ));
            }
        }
    }

    /// Reads a whole response up to EOF and checks its body against `Content-Length`.
    pub fn read_answer(&mut self) -> HttpAnswer {
        let head = self.read_head().expect("a response head");
        let head = String::from_utf8(head).expect("an ASCII head");
        let mut lines = head.trim_end_matches("\r\n").split("\r\n");
        let status_line = lines.next().unwrap();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(
            parts.next(),
            Some("HTTP/1.1"),
            "status line {status_line:?}"
        );
        let status = parts
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("header {l:?}"));
                (n.to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut answer = HttpAnswer {
            status,
            headers,
            body: Vec::new(),
        };
        self.expect_eof();
        answer.body = std::mem::take(&mut self.buf);
        let length: usize = answer
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .unwrap();
        assert_eq!(answer.body.len(), length, "body of {answer:?}");
        assert_eq!(answer.header("Connection"), Some("close"));
        answer
    }

    /// Reads one frame from the server (which must not mask).
    pub fn read_frame(&mut self) -> io::Result<Frame> {
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
            opcode: b0 & 0x0F,
            payload,
        })
    }

    /// Reads until the server closes its side; any bytes before that stay buffered. A reset
    /// instead of an orderly EOF fails.
    pub fn expect_eof(&mut self) {
        loop {
            match self.fill() {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => panic!("expected EOF, got {e} (buffered: {} bytes)", self.buf.len()),
            }
        }
    }

    /// Whatever is buffered and not yet consumed.
    pub fn buffered(&self) -> &[u8] {
        &self.buf
    }
}
