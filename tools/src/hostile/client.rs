//! A raw WebSocket client over std's `TcpStream`, for attacks a well-behaved client library
//! would refuse to make: any opcode, `fin` and length, frames the peer's echo never drains,
//! request heads a byte at a time, resets in the middle of a message.
//!
//! Reads are bounded by a deadline (the socket's read timeout, set per read) and writes by a
//! stall bound (the socket's write timeout): nothing here can block without end. Loopback only.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

use super::tcp::{self, Drain};

/// Continuation frame opcode.
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame opcode.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame opcode.
pub const OP_BINARY: u8 = 0x2;
/// Close frame opcode.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame opcode.
pub const OP_PING: u8 = 0x9;
/// Pong frame opcode.
pub const OP_PONG: u8 = 0xA;

/// The masking key of every frame these clients send. RFC 6455 wants a fresh key per frame,
/// which only matters against scripts in browsers; one key lets an attack build its frames
/// once and write them millions of times.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// The accept value the handshake key of [`UPGRADE_REQUEST`] (RFC 6455's example key) must
/// be answered with: checking the 101 needs no SHA-1 here.
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The largest request or response head read before giving up on it.
const MAX_HEAD: usize = 16 << 10;

/// The largest frame payload accepted from the server: the echo server's default message limit
/// is 64 MiB, and nothing these clients read comes near it.
const MAX_PAYLOAD: u64 = 128 << 20;

/// The upgrade request every client sends (no extension offered: echoes come back as sent).
pub const UPGRADE_REQUEST: &str = concat!(
    "GET / HTTP/1.1\r\n",
    "Host: 127.0.0.1\r\n",
    "Upgrade: websocket\r\n",
    "Connection: Upgrade\r\n",
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    "Sec-WebSocket-Version: 13\r\n",
    "\r\n"
);

/// The header of a client frame (masked, no RSV bits) carrying `len` payload bytes, mask key
/// included: what precedes a payload masked with [`mask_in_place`].
pub fn frame_header(opcode: u8, fin: bool, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0f));
    match len {
        0..=125 => out.push(0x80 | len as u8),
        126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0x80 | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out
}

/// Masks (or unmasks) `data` with [`MASK`], `data` starting at byte `offset` of its payload.
pub fn mask_in_place(data: &mut [u8], offset: usize) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= MASK[(offset + i) % 4];
    }
}

/// A whole client frame: header, mask key and masked payload.
pub fn encode_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = frame_header(opcode, fin, payload.len() as u64);
    let start = out.len();
    out.extend_from_slice(payload);
    mask_in_place(&mut out[start..], 0);
    out
}

/// `count` copies of one frame back to back, so a flood writes many frames per system call.
pub fn repeat_frame(opcode: u8, fin: bool, payload: &[u8], count: usize) -> Vec<u8> {
    encode_frame(opcode, fin, payload).repeat(count)
}

/// A frame from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The FIN bit.
    pub fin: bool,
    /// The opcode (low four bits of the first byte).
    pub opcode: u8,
    /// The payload, unmasked.
    pub payload: Vec<u8>,
}

impl Frame {
    /// The status code of a close frame (`None` for other frames, or a close without a code).
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode == OP_CLOSE && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// Why a read produced nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// The deadline passed with the frame or head incomplete.
    TimedOut,
    /// The peer closed the connection (EOF).
    Closed,
    /// The peer reset the connection.
    Reset,
    /// Another socket error.
    Error(String),
    /// Bytes that are not a frame or a head these clients accept.
    Malformed(String),
}

impl fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut => f.write_str("no answer"),
            Self::Closed => f.write_str("closed"),
            Self::Reset => f.write_str("reset"),
            Self::Error(e) => write!(f, "error: {e}"),
            Self::Malformed(e) => write!(f, "malformed: {e}"),
        }
    }
}

/// What the server answered to a request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP response head with this status code.
    Status {
        /// The status code.
        code: u16,
        /// The whole head, for headers and diagnostics.
        head: String,
    },
    /// No response head: the connection ended or the deadline passed.
    Ended(ReadEnd),
}

/// Why a WebSocket connection could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The TCP connection failed (refused, timed out…).
    Connect(io::Error),
    /// The upgrade request could not be written.
    Write(io::Error),
    /// The server answered something other than a valid 101, or nothing.
    Refused(Answer),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "connect: {e}"),
            Self::Write(e) => write!(f, "writing the request: {e}"),
            Self::Refused(Answer::Status { code, .. }) => write!(f, "answered {code}"),
            Self::Refused(Answer::Ended(end)) => write!(f, "upgrade: {end}"),
        }
    }
}

/// How a bounded write ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteEnd {
    /// Every byte was handed to the kernel.
    Done,
    /// No byte could be written for the stall bound: the peer stopped reading.
    Stalled,
    /// The overall deadline passed first.
    TimeUp,
    /// The connection failed (reset, broken pipe…).
    Failed(String),
}

/// Socket options for a new connection.
#[derive(Clone, Debug)]
pub struct Options {
    /// `SO_RCVBUF`, set before connecting so the advertised window is small from the SYN on:
    /// a peer that does not read then holds little in its own kernel.
    pub recv_buffer: Option<usize>,
    /// The connect timeout.
    pub connect_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            recv_buffer: None,
            connect_timeout: Duration::from_secs(2),
        }
    }
}

impl Options {
    /// Options with a small receive buffer, for clients that never read.
    pub fn small_recv_buffer() -> Self {
        Self {
            recv_buffer: Some(4096),
            ..Self::default()
        }
    }
}

/// Reads frames and response heads from one socket, keeping what it read past them.
/// A [`RawClient`] has one; [`RawClient::split_reader`] gives one to another thread.
#[derive(Debug)]
pub struct Reader {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Reader {
    /// Reads more bytes into `pending`, waiting until `deadline` at most. Always tries once,
    /// even past the deadline: what already arrived is then read, not reported as missing.
    fn fill(&mut self, deadline: Instant) -> Result<(), ReadEnd> {
        let mut buf = [0u8; 16 << 10];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // A zero timeout means "block forever" to the socket: keep at least a millisecond.
            let _ = self
                .stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))));
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(ReadEnd::Closed),
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    return Ok(());
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => {
                        if Instant::now() >= deadline {
                            return Err(ReadEnd::TimedOut);
                        }
                    }
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                        return Err(ReadEnd::Reset)
                    }
                    _ => return Err(ReadEnd::Error(e.to_string())),
                },
            }
        }
    }

    /// Reads one frame, waiting until `deadline` at most. Server frames are unmasked; a masked
    /// one is unmasked anyway, as this client is for watching, not judging.
    pub fn read_frame(&mut self, deadline: Instant) -> Result<Frame, ReadEnd> {
        loop {
            if let Some(frame) = self.parse_frame()? {
                return Ok(frame);
            }
            self.fill(deadline)?;
        }
    }

    /// A frame from `pending`, if a whole one is there.
    fn parse_frame(&mut self) -> Result<Option<Frame>, ReadEnd> {
        let p = &self.pending;
        if p.len() < 2 {
            return Ok(None);
        }
        let (fin, opcode, masked) = (p[0] & 0x80 != 0, p[0] & 0x0f, p[1] & 0x80 != 0);
        let (len, mut at) = match p[1] & 0x7f {
            126 if p.len() >= 4 => (u64::from(u16::from_be_bytes([p[2], p[3]])), 4),
            127 if p.len() >= 10 => (
                u64::from_be_bytes(p[2..10].try_into().unwrap_or([0; 8])),
                10,
            ),
            126 | 127 => return Ok(None),
            n => (u64::from(n), 2),
        };
        if len > MAX_PAYLOAD {
            return Err(ReadEnd::Malformed(format!("a {len}-byte frame")));
        }
        let mask = if masked {
            if p.len() < at + 4 {
                return Ok(None);
            }
            at += 4;
            Some([p[at - 4], p[at - 3], p[at - 2], p[at - 1]])
        } else {
            None
        };
        let end = at + len as usize;
        if p.len() < end {
            // Room for the rest at once: a large frame is not read 16 KiB per reallocation.
            self.pending.reserve(end - p.len());
            return Ok(None);
        }
        let mut payload = self.pending[at..end].to_vec();
        if let Some(key) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= key[i % 4];
            }
        }
        self.pending.drain(..end);
        Ok(Some(Frame {
            fin,
            opcode,
            payload,
        }))
    }

    /// Reads an HTTP response head, waiting until `deadline` at most; bytes after it stay for
    /// [`read_frame`](Self::read_frame).
    pub fn read_answer(&mut self, deadline: Instant) -> Answer {
        loop {
            if let Some(end) = find(&self.pending, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.pending[..end + 4]).into_owned();
                self.pending.drain(..end + 4);
                let code = head
                    .split_ascii_whitespace()
                    .nth(1)
                    .and_then(|c| c.parse().ok());
                return match code {
                    Some(code) if head.starts_with("HTTP/1.") => Answer::Status { code, head },
                    _ => Answer::Ended(ReadEnd::Malformed(format!("not HTTP: {head:?}"))),
                };
            }
            if self.pending.len() > MAX_HEAD {
                return Answer::Ended(ReadEnd::Malformed("a head past 16 KiB".into()));
            }
            if let Err(end) = self.fill(deadline) {
                return Answer::Ended(end);
            }
        }
    }

    /// What ended the connection, if it has ended, without waiting: `None` while it is open
    /// and quiet. Bytes that arrive meanwhile are kept for later reads.
    pub fn poll_end(&mut self) -> Option<ReadEnd> {
        // One non-blocking read: polling hundreds of connections must not wait on each.
        if let Err(e) = self.stream.set_nonblocking(true) {
            return Some(ReadEnd::Error(e.to_string()));
        }
        let mut buf = [0u8; 4096];
        let end = match self.stream.read(&mut buf) {
            Ok(0) => Some(ReadEnd::Closed),
            Ok(n) => {
                self.pending.extend_from_slice(&buf[..n]);
                None
            }
            Err(e) => match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => None,
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    Some(ReadEnd::Reset)
                }
                _ => Some(ReadEnd::Error(e.to_string())),
            },
        };
        let _ = self.stream.set_nonblocking(false);
        end
    }

    /// Bytes read but not yet returned as a frame or head.
    pub fn pending(&self) -> &[u8] {
        &self.pending
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One raw client connection.
#[derive(Debug)]
pub struct RawClient {
    reader: Reader,
}

impl RawClient {
    /// Opens a TCP connection to `addr` (loopback only) with `options`.
    pub fn connect(addr: SocketAddr, options: &Options) -> io::Result<Self> {
        if !addr.ip().is_loopback() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the hostile clients attack loopback only",
            ));
        }
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if let Some(size) = options.recv_buffer {
            socket.set_recv_buffer_size(size)?;
        }
        socket.connect_timeout(&addr.into(), options.connect_timeout)?;
        let stream: TcpStream = socket.into();
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: Reader {
                stream,
                pending: Vec::new(),
            },
        })
    }

    /// Connects and upgrades: the request, then a 101 with the right accept value, within
    /// `timeout` of starting.
    pub fn open(addr: SocketAddr, options: &Options, timeout: Duration) -> Result<Self, OpenError> {
        let deadline = Instant::now() + timeout;
        let mut client = Self::connect(addr, options).map_err(OpenError::Connect)?;
        client.upgrade(deadline)?;
        Ok(client)
    }

    /// Sends the upgrade request and checks the 101, waiting until `deadline` at most.
    pub fn upgrade(&mut self, deadline: Instant) -> Result<(), OpenError> {
        self.write_all(UPGRADE_REQUEST.as_bytes())
            .map_err(OpenError::Write)?;
        match self.reader.read_answer(deadline) {
            Answer::Status { code: 101, head }
                if head.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("sec-websocket-accept:")
                        && l.ends_with(ACCEPT)
                }) =>
            {
                Ok(())
            }
            other => Err(OpenError::Refused(other)),
        }
    }

    /// Writes all of `bytes` (blocking, with the socket's current write timeout; none by
    /// default, so only for small writes to a peer that reads).
    pub fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.reader.stream.write_all(bytes)
    }

    /// Writes one masked frame.
    pub fn write_frame(&mut self, opcode: u8, fin: bool, payload: &[u8]) -> io::Result<()> {
        self.write_all(&encode_frame(opcode, fin, payload))
    }

    /// Writes `bytes` until done, until no byte could be written for `stall` (the peer stopped
    /// reading), or until `deadline`. Returns how many bytes the kernel took, and why it ended.
    pub fn write_bounded(
        &mut self,
        bytes: &[u8],
        stall: Duration,
        deadline: Instant,
    ) -> (usize, WriteEnd) {
        // With SO_SNDTIMEO a blocked send returns what it wrote so far, or EAGAIN if it could
        // write nothing for the whole timeout: exactly "the peer stopped reading".
        let stall = stall.max(Duration::from_millis(1));
        let _ = self.reader.stream.set_write_timeout(Some(stall));
        let mut done = 0;
        while done < bytes.len() {
            if Instant::now() >= deadline {
                return (done, WriteEnd::TimeUp);
            }
            match self.reader.stream.write(&bytes[done..]) {
                Ok(0) => return (done, WriteEnd::Failed("wrote nothing".into())),
                Ok(n) => done += n,
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                        return (done, WriteEnd::Stalled)
                    }
                    io::ErrorKind::Interrupted => {}
                    _ => return (done, WriteEnd::Failed(e.to_string())),
                },
            }
        }
        (done, WriteEnd::Done)
    }

    /// Reads one frame, waiting until `deadline` at most.
    pub fn read_frame(&mut self, deadline: Instant) -> Result<Frame, ReadEnd> {
        self.reader.read_frame(deadline)
    }

    /// Reads an HTTP response head, waiting until `deadline` at most.
    pub fn read_answer(&mut self, deadline: Instant) -> Answer {
        self.reader.read_answer(deadline)
    }

    /// What ended the connection, without waiting (`None` while open and quiet).
    pub fn poll_end(&mut self) -> Option<ReadEnd> {
        self.reader.poll_end()
    }

    /// Waits until the server has read everything written so far, stops reading (no progress
    /// for `quiet`), or `bound` passes; see [`tcp::wait_until_read`].
    pub fn wait_until_read(&self, quiet: Duration, bound: Duration) -> Drain {
        tcp::wait_until_read(&self.reader.stream, quiet, bound)
    }

    /// A reader on a clone of the socket, for another thread, taking any bytes already read.
    pub fn split_reader(&mut self) -> io::Result<Reader> {
        Ok(Reader {
            stream: self.reader.stream.try_clone()?,
            pending: std::mem::take(&mut self.reader.pending),
        })
    }

    /// The socket.
    pub fn stream(&self) -> &TcpStream {
        &self.reader.stream
    }

    /// Closes with a reset (`SO_LINGER` 0): no FIN, no TIME_WAIT, whatever was unsent dropped.
    pub fn reset(self) {
        let _ = SockRef::from(&self.reader.stream).set_linger(Some(Duration::ZERO));
        // Shut down nothing first: a shutdown would send a FIN before the reset.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode_with_each_length_form() {
        assert_eq!(
            encode_frame(OP_PING, true, b""),
            [0x89, 0x80, MASK[0], MASK[1], MASK[2], MASK[3]]
        );
        assert_eq!(frame_header(OP_TEXT, false, 125)[..2], [0x01, 0x80 | 125]);
        assert_eq!(
            frame_header(OP_BINARY, true, 65535)[..4],
            [0x82, 0x80 | 126, 0xff, 0xff]
        );
        assert_eq!(
            frame_header(OP_BINARY, true, 1 << 20)[..10],
            [0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 0]
        );
        let f = encode_frame(OP_TEXT, true, b"hello");
        let mut payload = f[6..].to_vec();
        mask_in_place(&mut payload, 0);
        assert_eq!(payload, b"hello");
        // Masking in pieces is masking at once.
        let mut a = b"abcdefg".to_vec();
        let (x, y) = a.split_at_mut(3);
        mask_in_place(x, 0);
        mask_in_place(y, 3);
        let mut b = b"abcdefg".to_vec();
        mask_in_place(&mut b, 0);
        assert_eq!(a, b);
    }
}
