//! A blocking WebSocket client over std's `TcpStream` that does only what it is told: it sends
//! any bytes (frames a conforming client never would), never answers a ping on its own, and reads
//! HTTP answers and frames byte by byte. Every read and write is bounded by [`IO_TIMEOUT`]: a
//! server that stops answering fails the test instead of hanging it.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::frame::{self, parse_frame, Frame};
use crate::STEP;

/// How long any single blocking read or write of a [`Raw`] client may take.
pub const IO_TIMEOUT: Duration = STEP;

/// The `Sec-WebSocket-Accept` answering [`upgrade_request`]'s key (RFC 6455's example key).
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A valid upgrade request for `target` (path and query), with RFC 6455's example key.
pub fn upgrade_request(target: &str) -> String {
    upgrade_request_with(target, "")
}

/// [`upgrade_request`] with extra header lines (each ending in CRLF).
fn upgrade_request_with(target: &str, headers: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{headers}\r\n"
    )
}

/// How a read ended when it did not yield what was asked for.
#[derive(Debug)]
pub enum RawEnd {
    /// The server closed its side (orderly EOF).
    Eof,
    /// A reset or another socket error (not a timeout: that fails the test).
    Reset(io::Error),
}

impl fmt::Display for RawEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawEnd::Eof => f.write_str("EOF"),
            RawEnd::Reset(e) => write!(f, "reset: {e}"),
        }
    }
}

/// A complete HTTP response, read up to the server's close.
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The header lines as name and trimmed value, in order.
    pub headers: Vec<(String, String)>,
    /// Everything after the head.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The value of the only header called `name` (case-insensitive), if any; a repeated one
    /// fails the test.
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

/// The raw client: a socket and the bytes read from it but not yet consumed.
#[derive(Debug)]
pub struct Raw {
    /// The socket, for what the methods do not cover (shutdown, linger, reading by hand).
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    /// Connects to `addr` (no handshake yet).
    pub fn connect(addr: SocketAddr) -> Raw {
        Raw::wrap(TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect"))
    }

    /// Connects with a fixed 64 KiB receive buffer (set before the SYN, so no autotuning): when
    /// this client stops reading, the server's writes stall after a few megabytes at most.
    pub fn connect_with_small_receive_buffer(addr: SocketAddr) -> Raw {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )
        .expect("socket");
        socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
        socket
            .connect_timeout(&addr.into(), IO_TIMEOUT)
            .expect("connect");
        Raw::wrap(socket.into())
    }

    fn wrap(stream: TcpStream) -> Raw {
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_nodelay(true).unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects and completes a WebSocket handshake on `target`.
    pub fn upgraded(addr: SocketAddr, target: &str) -> Raw {
        Raw::connect(addr).upgrade(target)
    }

    /// [`Raw::upgraded`] with extra request header lines (each ending in CRLF); also returns the
    /// 101 response head.
    pub fn upgraded_with(addr: SocketAddr, target: &str, headers: &str) -> (Raw, String) {
        Raw::connect(addr).upgrade_with(target, headers)
    }

    /// Completes a WebSocket handshake on `target`, checking the 101 and its accept key.
    pub fn upgrade(self, target: &str) -> Raw {
        self.upgrade_with(target, "").0
    }

    /// [`Raw::upgrade`] with extra request header lines; also returns the 101 response head.
    pub fn upgrade_with(mut self, target: &str, headers: &str) -> (Raw, String) {
        self.send(upgrade_request_with(target, headers).as_bytes());
        let head = self
            .read_head()
            .unwrap_or_else(|e| panic!("no response head: {e}"));
        assert!(
            head.starts_with("HTTP/1.1 101 "),
            "expected 101, got {head:?}"
        );
        assert!(
            head.contains(&format!("\r\nSec-WebSocket-Accept: {ACCEPT}\r\n")),
            "wrong or missing accept key in {head:?}"
        );
        (self, head)
    }

    /// Writes all of `bytes`.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends a final frame masked with [`frame::KEY`].
    pub fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        self.send(&frame::client_frame(true, 0, opcode, payload));
    }

    /// Reads more bytes into the buffer; `Ok(0)` at EOF. A timeout fails the test.
    fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                panic!(
                    "no bytes within {IO_TIMEOUT:?} ({} buffered)",
                    self.buf.len()
                )
            }
            Err(e) => Err(e),
        }
    }

    fn need(&mut self, n: usize) -> Result<(), RawEnd> {
        while self.buf.len() < n {
            match self.fill() {
                Ok(0) => return Err(RawEnd::Eof),
                Ok(_) => {}
                Err(e) => return Err(RawEnd::Reset(e)),
            }
        }
        Ok(())
    }

    /// Reads an HTTP head through its blank line (lossily as text); later bytes stay buffered.
    pub fn read_head(&mut self) -> Result<String, RawEnd> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let rest = self.buf.split_off(end + 4);
                let head = std::mem::replace(&mut self.buf, rest);
                return Ok(String::from_utf8_lossy(&head).into_owned());
            }
            match self.fill() {
                Ok(0) => return Err(RawEnd::Eof),
                Ok(_) => {}
                Err(e) => return Err(RawEnd::Reset(e)),
            }
        }
    }

    /// Reads a whole response up to EOF, checking its body against `Content-Length` and its
    /// `Connection: close` (the server closes after an answer that is not a 101).
    pub fn read_answer(&mut self) -> HttpAnswer {
        let head = self
            .read_head()
            .unwrap_or_else(|e| panic!("no response head: {e}"));
        let mut lines = head.trim_end_matches("\r\n").split("\r\n");
        let status_line = lines.next().unwrap_or_default();
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

    /// Reads one frame from the server, which must not mask it; or how the stream ended.
    pub fn read_frame(&mut self) -> Result<Frame, RawEnd> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.buf) {
                assert_eq!(frame.mask, None, "the server masked a frame");
                self.buf.drain(..used);
                return Ok(frame);
            }
            // At least one more byte: `parse_frame` needs more than is buffered.
            let more = self.buf.len() + 1;
            self.need(more)?;
        }
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

    /// Reads until the server closes its side; any bytes before that stay buffered. A reset
    /// instead of an orderly EOF fails the test.
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
