//! The receive controls of both backends over loopback TCP.
//!
//! - [`Backend::skip`]: a skip drops exactly the bytes asked for (counting bytes delivered after
//!   the ask), never one of the bytes after them, however the bytes arrive; EOF and `close` end
//!   it as they end receiving.
//! - [`Backend::pause`] and [`Backend::resume`]: nothing is read while paused, so the kernel's
//!   window pushes back on the peer; resuming delivers every byte that waited, in order, and the
//!   EOF behind them.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use super::{create, Backend, BackendKind, Completion, PoolConfig, Token, PROBE_LEN};

/// Longest any test waits for a backend: a bug fails the test instead of hanging it.
const LIMIT: Duration = Duration::from_secs(10);

/// Byte `i` of every test stream. Not periodic, so a skip that drops a few bytes too many or
/// too few cannot land on bytes that happen to look right.
fn byte(i: u64) -> u8 {
    (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8
}

fn pattern(from: u64, len: usize) -> Vec<u8> {
    (from..from + len as u64).map(byte).collect()
}

fn backend(kind: BackendKind) -> Box<dyn Backend> {
    let (be, fell_back) = create(
        kind,
        PoolConfig {
            buffers: 16,
            buffer_size: 16 * 1024,
            ..PoolConfig::default()
        },
    )
    .unwrap();
    assert!(fell_back.is_none());
    be
}

/// A client connected to a socket registered under `token`; the listener goes with it.
fn connected(be: &mut dyn Backend, token: Token) -> (Socket, TcpStream, OwnedFd) {
    connected_with(be, token, &[])
}

/// [`connected`], the client having written `first` before the socket is registered.
fn connected_with(
    be: &mut dyn Backend,
    token: Token,
    first: &[u8],
) -> (Socket, TcpStream, OwnedFd) {
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(16).unwrap();
    l.set_nonblocking(true).unwrap();
    be.listen(l.as_raw_fd()).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(first).unwrap();
    let deadline = Instant::now() + LIMIT;
    let mut out = Vec::new();
    let fd = loop {
        assert!(Instant::now() < deadline, "no connection accepted");
        be.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
        if let Some(Completion::Accepted { fd }) = out.pop() {
            break fd;
        }
    };
    be.stop_accepting();
    // The bytes written are in the server's socket before it is registered.
    ringsock_testkit::wait_until(LIMIT, "the first bytes in the accepted socket", || {
        unread(fd.as_raw_fd()) == first.len()
    });
    be.register(token, fd.as_raw_fd()).unwrap();
    (l, client, fd)
}

/// How many bytes wait unread in socket `fd` (`FIONREAD`).
fn unread(fd: RawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int, which `n` is.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", std::io::Error::last_os_error());
    n as usize
}

/// The server side's view of the client's stream: where it is, and what a skip still owes.
#[derive(Default, Debug)]
struct Reader {
    /// Stream offset of the next byte, whether it is received or dropped.
    offset: u64,
    /// Bytes the skips asked for that were neither dropped nor delivered yet.
    owed: u64,
    skipped: u64,
    received_while_owed: u64,
    /// The length of every `Received`, in order.
    reads: Vec<usize>,
    eof: bool,
    closed: bool,
}

impl Reader {
    fn skip(&mut self, be: &mut dyn Backend, token: Token, fd: RawFd, n: u64) {
        self.owed += n;
        be.skip(token, fd.as_raw_fd(), n);
    }

    /// Takes one completion: received bytes must be the stream's next ones, and a skip may
    /// drop no more than is owed.
    fn take(&mut self, be: &mut dyn Backend, token: Token, c: Completion) {
        match c {
            Completion::Received { token: t, buf, len } => {
                assert_eq!(t, token);
                assert!(!self.closed, "received after Closed");
                let bytes = be.buffer(buf, len).to_vec();
                be.recycle(buf);
                assert!(
                    bytes == pattern(self.offset, len),
                    "{len} bytes received at offset {} are not the stream's",
                    self.offset
                );
                self.offset += len as u64;
                self.reads.push(len);
                let counted = self.owed.min(len as u64);
                self.received_while_owed += counted;
                self.owed -= counted;
            }
            Completion::Skipped { token: t, len } => {
                assert_eq!(t, token);
                assert!(
                    len as u64 <= self.owed,
                    "dropped {len} bytes with only {} owed",
                    self.owed
                );
                self.owed -= len as u64;
                self.offset += len as u64;
                self.skipped += len as u64;
            }
            Completion::Eof { token: t } => {
                assert_eq!(t, token);
                self.eof = true;
            }
            Completion::Closed { token: t } => {
                assert_eq!(t, token);
                assert!(!self.closed, "Closed twice");
                self.closed = true;
            }
            Completion::Sent { .. } | Completion::Woken => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Waits until `done` holds.
    fn until(&mut self, be: &mut dyn Backend, token: Token, mut done: impl FnMut(&Reader) -> bool) {
        let deadline = Instant::now() + LIMIT;
        let mut out = Vec::new();
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out: {self:?}");
            be.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
            for c in out.drain(..) {
                self.take(be, token, c);
            }
        }
    }
}

/// Writes `len` stream bytes from `from` in pieces of `piece`, pausing `pause` between them.
fn write_stream(client: &mut TcpStream, from: u64, len: usize, piece: usize, pause: Duration) {
    let data = pattern(from, len);
    for chunk in data.chunks(piece) {
        client.write_all(chunk).unwrap();
        if !pause.is_zero() {
            thread::sleep(pause);
        }
    }
}

/// Big skips over bytes that arrive in bursts, several times the backend's largest drop
/// (`SKIP_CHUNK`), then small ones, each right after some bytes were read.
fn a_skip_drops_exactly_its_bytes_and_what_follows_arrives_intact(kind: BackendKind) {
    const TOTAL: usize = 12 << 20;
    let mut be = backend(kind);
    let token = Token::new(2, 5);
    let (_l, mut client, fd) = connected(&mut *be, token);
    let writer = thread::spawn(move || {
        write_stream(&mut client, 0, TOTAL, 256 << 10, Duration::from_millis(1));
        client
    });
    let mut r = Reader::default();
    for n in [9 << 20, 100_000, 1, 70_000] {
        let from = r.offset;
        r.until(&mut *be, token, |r| r.offset > from);
        r.skip(&mut *be, token, fd.as_raw_fd(), n);
        r.until(&mut *be, token, |r| r.owed == 0);
    }
    r.until(&mut *be, token, |r| r.offset == TOTAL as u64);
    assert!(r.skipped > 9 << 20, "{r:?}");
    let client = writer.join().unwrap();
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
    drop(client);
}

/// A skip asked for while the socket is empty waits for the bytes, arriving in small pieces.
fn a_skip_waits_for_bytes_not_sent_yet(kind: BackendKind) {
    let mut be = backend(kind);
    let token = Token::new(0, 1);
    let (_l, mut client, fd) = connected(&mut *be, token);
    write_stream(&mut client, 0, 10_000, 10_000, Duration::ZERO);
    let mut r = Reader::default();
    r.until(&mut *be, token, |r| r.offset == 10_000);
    r.skip(&mut *be, token, fd.as_raw_fd(), 50_000);
    let writer = thread::spawn(move || {
        write_stream(
            &mut client,
            10_000,
            100_000,
            3_000,
            Duration::from_millis(1),
        );
        client
    });
    r.until(&mut *be, token, |r| r.offset == 110_000);
    assert_eq!(r.owed, 0);
    assert_eq!(r.skipped + r.received_while_owed, 50_000);
    let _client = writer.join().unwrap();
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
}

/// A skip asked for in the turn the socket is registered, with bytes already waiting in it:
/// whatever the backend still delivers counts against the skip (io_uring's multishot receive
/// runs when submitted, ahead of the cancel that makes way for the skip).
fn bytes_delivered_after_the_ask_count_against_the_skip(kind: BackendKind) {
    let mut be = backend(kind);
    let token = Token::new(1, 3);
    let (_l, mut client, fd) = connected_with(&mut *be, token, &pattern(0, 20_000));
    let mut r = Reader::default();
    r.skip(&mut *be, token, fd.as_raw_fd(), 50_000);
    let writer = thread::spawn(move || {
        write_stream(
            &mut client,
            20_000,
            100_000,
            10_000,
            Duration::from_millis(1),
        );
        client
    });
    r.until(&mut *be, token, |r| r.offset == 120_000);
    assert_eq!(r.skipped + r.received_while_owed, 50_000, "{r:?}");
    if kind == BackendKind::IoUring {
        assert!(
            r.received_while_owed > 0,
            "nothing was delivered after the ask: {r:?}"
        );
    }
    let _client = writer.join().unwrap();
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
}

/// The peer closes before the skip is over: what was there is dropped, then EOF.
fn eof_ends_a_skip(kind: BackendKind) {
    let mut be = backend(kind);
    let token = Token::new(0, 7);
    let (_l, mut client, fd) = connected(&mut *be, token);
    write_stream(&mut client, 0, 1_000, 1_000, Duration::ZERO);
    let mut r = Reader::default();
    r.until(&mut *be, token, |r| r.offset == 1_000);
    r.skip(&mut *be, token, fd.as_raw_fd(), 1 << 20);
    write_stream(&mut client, 1_000, 30_000, 30_000, Duration::ZERO);
    drop(client);
    r.until(&mut *be, token, |r| r.eof);
    assert_eq!(r.offset, 31_000);
    assert_eq!(r.owed, (1 << 20) - 30_000);
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
}

/// `close` in the middle of a skip that waits for bytes: `Closed` comes, once, and nothing after.
fn close_during_a_skip_ends_with_closed(kind: BackendKind) {
    let mut be = backend(kind);
    let token = Token::new(4, 2);
    let (_l, mut client, fd) = connected(&mut *be, token);
    write_stream(&mut client, 0, 5_000, 5_000, Duration::ZERO);
    let mut r = Reader::default();
    r.until(&mut *be, token, |r| r.offset == 5_000);
    r.skip(&mut *be, token, fd.as_raw_fd(), 1 << 20);
    write_stream(&mut client, 5_000, 2_000, 2_000, Duration::ZERO);
    r.until(&mut *be, token, |r| r.skipped == 2_000);
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
    let mut out = Vec::new();
    be.wait(Some(Duration::from_millis(30)), &mut out).unwrap();
    assert!(out.is_empty(), "after Closed: {out:?}");
    drop(client);
}

/// After a skip, and after a skip of 0, the next read takes no more than a frame header
/// (`PROBE_LEN`), even when the skip emptied the socket and the bytes come later; a full
/// header-sized read that no skip follows goes back to whole buffers.
fn the_read_after_a_skip_is_header_sized(kind: BackendKind) {
    let mut be = backend(kind);
    let token = Token::new(1, 3);
    let (_l, mut client, fd) = connected(&mut *be, token);
    write_stream(&mut client, 0, 1_000, 1_000, Duration::ZERO);
    let mut r = Reader::default();
    r.until(&mut *be, token, |r| r.offset == 1_000);

    // A skip of 0 on an empty socket: the bytes that come next are read a header at a time.
    r.skip(&mut *be, token, fd.as_raw_fd(), 0);
    let mut out = Vec::new();
    be.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
    for c in out.drain(..) {
        r.take(&mut *be, token, c);
    }
    let before = r.reads.len();
    write_stream(&mut client, 1_000, 50_000, 50_000, Duration::ZERO);
    r.until(&mut *be, token, |r| r.offset == 51_000);
    let reads = &r.reads[before..];
    assert_eq!(
        reads[0], PROBE_LEN,
        "the first read after a skip of 0: {reads:?}"
    );
    assert!(
        reads[1..].iter().any(|&n| n > PROBE_LEN),
        "no skip followed, yet the reads stayed short: {reads:?}"
    );

    // A skip that ends exactly where the socket runs dry: the probe waits for the next bytes.
    r.skip(&mut *be, token, fd.as_raw_fd(), 10_000);
    write_stream(&mut client, 51_000, 10_000, 10_000, Duration::ZERO);
    r.until(&mut *be, token, |r| r.owed == 0);
    be.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
    for c in out.drain(..) {
        r.take(&mut *be, token, c);
    }
    let before = r.reads.len();
    write_stream(&mut client, 61_000, 20_000, 20_000, Duration::ZERO);
    r.until(&mut *be, token, |r| r.offset == 81_000);
    let reads = &r.reads[before..];
    assert_eq!(
        reads[0], PROBE_LEN,
        "the first read after the skip: {reads:?}"
    );
    assert_eq!(r.skipped, 10_000);
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
}

/// Waits a few turns, handing over whatever a read already under way at a pause delivers.
fn settle(r: &mut Reader, be: &mut dyn Backend, token: Token) {
    let mut out = Vec::new();
    for _ in 0..3 {
        be.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        for c in out.drain(..) {
            r.take(be, token, c);
        }
    }
}

/// Nothing is read while paused, however long the bytes wait; after `resume` every byte arrives
/// in order.
fn a_paused_socket_is_read_only_after_resume(kind: BackendKind) {
    let mut be = backend(kind);
    let token = Token::new(3, 9);
    let (_l, mut client, fd) = connected(&mut *be, token);
    write_stream(&mut client, 0, 1_000, 1_000, Duration::ZERO);
    let mut r = Reader::default();
    r.until(&mut *be, token, |r| r.offset == 1_000);
    be.pause(token);
    settle(&mut r, &mut *be, token);
    let paused_at = r.offset;
    write_stream(&mut client, 1_000, 200_000, 20_000, Duration::ZERO);
    let mut out = Vec::new();
    for _ in 0..5 {
        be.wait(Some(Duration::from_millis(20)), &mut out).unwrap();
        assert!(
            !out.iter().any(|c| matches!(c, Completion::Received { .. })),
            "read while paused: {out:?}"
        );
        out.clear();
    }
    assert_eq!(r.offset, paused_at);
    // Pausing twice and resuming once resumes: a pause is a state, not a count.
    be.pause(token);
    be.resume(token);
    r.until(&mut *be, token, |r| r.offset == 201_000);
    // And it can be paused again after resuming.
    be.pause(token);
    settle(&mut r, &mut *be, token);
    write_stream(&mut client, 201_000, 5_000, 5_000, Duration::ZERO);
    be.wait(Some(Duration::from_millis(30)), &mut out).unwrap();
    assert!(out.is_empty(), "read while paused again: {out:?}");
    be.resume(token);
    r.until(&mut *be, token, |r| r.offset == 206_000);
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
}

/// A peer writing to a paused socket is stopped by the kernel's window: the bytes it gets
/// written are bounded by socket buffers, not by how much it has to send.
fn a_pause_pushes_back_on_the_peer(kind: BackendKind) {
    let mut be = backend(kind);
    let token = Token::new(0, 4);
    let (_l, client, fd) = connected(&mut *be, token);
    let mut r = Reader::default();
    be.pause(token);
    settle(&mut r, &mut *be, token);
    client.set_nonblocking(true).unwrap();
    let piece = pattern(0, 64 << 10);
    let mut written = 0usize;
    let deadline = Instant::now() + LIMIT;
    let mut stalls = 0;
    // Until the kernel refuses for a while (the pause lets nothing drain), or 256 MiB.
    while stalls < 20 && written < 256 << 20 {
        assert!(Instant::now() < deadline, "the peer was never stopped");
        match (&client).write(&piece) {
            Ok(n) => {
                written += n;
                stalls = 0;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                stalls += 1;
                let mut out = Vec::new();
                be.wait(Some(Duration::from_millis(5)), &mut out).unwrap();
                assert!(out.is_empty(), "read while paused: {out:?}");
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert!(
        written < 64 << 20,
        "{written} bytes written into a paused socket"
    );
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
}

/// The peer's EOF behind bytes that wait for a resume comes after them.
fn eof_while_paused_comes_after_resume(kind: BackendKind) {
    let mut be = backend(kind);
    let token = Token::new(2, 2);
    let (_l, mut client, fd) = connected(&mut *be, token);
    let mut r = Reader::default();
    be.pause(token);
    settle(&mut r, &mut *be, token);
    write_stream(&mut client, 0, 30_000, 30_000, Duration::ZERO);
    drop(client);
    let mut out = Vec::new();
    be.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
    assert!(out.is_empty(), "while paused: {out:?}");
    be.resume(token);
    r.until(&mut *be, token, |r| r.eof);
    assert_eq!(r.offset, 30_000);
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
}

/// `close` while paused ends with one `Closed`.
fn close_while_paused_ends_with_closed(kind: BackendKind) {
    let mut be = backend(kind);
    let token = Token::new(1, 6);
    let (_l, mut client, fd) = connected(&mut *be, token);
    write_stream(&mut client, 0, 100, 100, Duration::ZERO);
    let mut r = Reader::default();
    r.until(&mut *be, token, |r| r.offset == 100);
    be.pause(token);
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
    be.resume(token);
    let mut out = Vec::new();
    be.wait(Some(Duration::from_millis(30)), &mut out).unwrap();
    assert!(out.is_empty(), "after Closed: {out:?}");
}

/// A socket with far more queued than its budget is read a budget (io_uring, which checks it
/// after each receive: one buffer more at most) or a buffer (epoll) per wait at most, and all of
/// it still arrives, in order.
fn a_flooding_socket_gets_its_budget_per_wait(kind: BackendKind) {
    const BUDGET: usize = 32 << 10;
    const BUFFER: usize = 8 << 10;
    let (mut be, fell_back) = create(
        kind,
        PoolConfig {
            buffers: 64,
            buffer_size: BUFFER as u32,
            read_budget: BUDGET as u32,
        },
    )
    .unwrap();
    assert!(fell_back.is_none());
    let token = Token::new(0, 3);
    let (_l, mut client, fd) = connected(&mut *be, token);
    const TOTAL: usize = 2 << 20;
    let writer = thread::spawn(move || {
        write_stream(&mut client, 0, TOTAL, TOTAL, Duration::ZERO);
        client
    });
    let mut r = Reader::default();
    let mut out = Vec::new();
    let mut most = 0;
    let deadline = Instant::now() + LIMIT;
    while r.offset < TOTAL as u64 {
        assert!(Instant::now() < deadline, "timed out: {r:?}");
        be.wait(Some(Duration::from_millis(50)), &mut out).unwrap();
        let mut this_wait = 0;
        for c in out.drain(..) {
            if let Completion::Received { len, .. } = c {
                this_wait += len;
            }
            r.take(&mut *be, token, c);
        }
        most = most.max(this_wait);
    }
    assert!(
        most <= BUDGET + BUFFER,
        "{most} bytes of one socket in one wait"
    );
    let _client = writer.join().unwrap();
    be.close(token, fd);
    r.until(&mut *be, token, |r| r.closed);
}

ringsock_testkit::on_both_backends!(
    a_skip_drops_exactly_its_bytes_and_what_follows_arrives_intact,
    a_skip_waits_for_bytes_not_sent_yet,
    bytes_delivered_after_the_ask_count_against_the_skip,
    eof_ends_a_skip,
    close_during_a_skip_ends_with_closed,
    the_read_after_a_skip_is_header_sized,
    a_paused_socket_is_read_only_after_resume,
    a_pause_pushes_back_on_the_peer,
    eof_while_paused_comes_after_resume,
    close_while_paused_ends_with_closed,
    a_flooding_socket_gets_its_budget_per_wait,
);
