//! The shard loop against a scripted backend: deterministic checks of what the loop asks the
//! kernel for and how long it sleeps, which loopback tests can only observe as CPU time.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;

use super::{Shard, ShardMsg};
use crate::http::RequestHead;
use crate::reactor::{Backend, BufId, Completion, Token, Waker};
use crate::service::{
    Accept, ConnId, Echo, HttpResponse, Limits, Service, ShardCx, ShardSettings, ShutdownReport,
    Upgrade,
};
use crate::ws::{DataKind, Event, ServerOptions};
use ringsock_testkit::frame::{client_frame, server_frame, BINARY, CLOSE, TEXT};

/// The one connection every script opens: slab slot 0, first generation.
const CONN: Token = Token(1 << 32);

/// What the scripted backend saw and what it will report next.
#[derive(Default)]
struct Log {
    /// Completions for the next `wait`.
    ready: VecDeque<Completion>,
    /// Received bytes the script queued, not yet moved into the backend.
    incoming: Vec<Vec<u8>>,
    /// Buffers handed out so far (the next one's id).
    next_buf: u16,
    /// Everything sent, in order.
    sent: Vec<u8>,
    /// A send of at least this many bytes never completes (a peer that stopped reading).
    stall_sends_from: Option<usize>,
    /// The stalled send, returned (failed) when the token is closed.
    stalled: Option<(Token, Vec<Bytes>)>,
    /// When `close` was called for the connection.
    closed_at: Option<Instant>,
    /// `wait` calls that asked not to sleep at all while nothing was ready.
    busy_waits: usize,
    /// Every `skip` asked for, in order.
    skips: Vec<(Token, u64)>,
    /// Every `pause` (true) and `resume` (false), in order.
    holds: Vec<(Token, bool)>,
}

impl Log {
    fn receive(&mut self, bytes: Vec<u8>) {
        let len = bytes.len();
        self.incoming.push(bytes);
        let buf = BufId(self.next_buf);
        self.next_buf += 1;
        self.ready.push_back(Completion::Received {
            token: CONN,
            buf,
            len,
        });
    }
}

/// What a test runs at every `wait`: it may queue completions or post to the shard's inbox.
type Script = Box<dyn FnMut(&mut Log, &ArrayQueue<ShardMsg>)>;

/// A backend whose `wait` hands control to a script between loop turns.
struct Scripted {
    log: Rc<RefCell<Log>>,
    script: Script,
    inbox: Arc<ArrayQueue<ShardMsg>>,
    waker: Waker,
    /// Received bytes by buffer id (never recycled: each script receives a few times).
    buffers: Vec<Vec<u8>>,
}

impl Backend for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn listen(&mut self, _listener: std::os::fd::RawFd) -> std::io::Result<()> {
        Ok(())
    }
    fn stop_accepting(&mut self) {}
    fn register(&mut self, _token: Token, _fd: std::os::fd::RawFd) -> std::io::Result<()> {
        Ok(())
    }
    fn send(&mut self, token: Token, _fd: std::os::fd::RawFd, chunks: Vec<Bytes>) {
        let mut log = self.log.borrow_mut();
        let len: usize = chunks.iter().map(|c| c.len()).sum();
        if log.stall_sends_from.is_some_and(|min| len >= min) {
            log.stalled = Some((token, chunks));
            return;
        }
        for c in &chunks {
            log.sent.extend_from_slice(c);
        }
        log.ready.push_back(Completion::Sent {
            token,
            result: Ok(len),
            chunks,
        });
    }
    fn skip(&mut self, token: Token, _fd: std::os::fd::RawFd, len: u64) {
        self.log.borrow_mut().skips.push((token, len));
    }
    fn pause(&mut self, token: Token) {
        self.log.borrow_mut().holds.push((token, true));
    }
    fn resume(&mut self, token: Token) {
        self.log.borrow_mut().holds.push((token, false));
    }
    fn shutdown_write(&mut self, _token: Token, _fd: std::os::fd::RawFd) {}
    fn close(&mut self, token: Token, _fd: std::os::fd::OwnedFd) {
        let mut log = self.log.borrow_mut();
        log.closed_at.get_or_insert_with(Instant::now);
        if let Some((t, chunks)) = log.stalled.take() {
            log.ready.push_back(Completion::Sent {
                token: t,
                result: Err(std::io::Error::from_raw_os_error(libc::ECANCELED)),
                chunks,
            });
        }
        log.ready.push_back(Completion::Closed { token });
    }
    fn wait(
        &mut self,
        timeout: Option<Duration>,
        out: &mut Vec<Completion>,
    ) -> std::io::Result<()> {
        let mut log = self.log.borrow_mut();
        (self.script)(&mut log, &self.inbox);
        self.buffers.append(&mut log.incoming);
        if log.ready.is_empty() {
            if timeout == Some(Duration::ZERO) {
                log.busy_waits += 1;
            }
            // Stand in for the kernel's sleep, in short steps so the script runs often.
            let nap = timeout
                .unwrap_or(Duration::MAX)
                .min(Duration::from_millis(5));
            std::thread::sleep(nap);
        }
        out.extend(log.ready.drain(..));
        Ok(())
    }
    fn buffer(&self, buf: BufId, len: usize) -> &[u8] {
        &self.buffers[buf.0 as usize][..len]
    }
    fn recycle(&mut self, _buf: BufId) {}
    fn trim(&mut self) {}
    fn waker(&self) -> Waker {
        self.waker.clone()
    }
}

/// Runs a shard of [`Echo`] with one scripted connection until the script asks for shutdown.
fn run_shard(
    limits: Limits,
    log: Rc<RefCell<Log>>,
    script: impl FnMut(&mut Log, &ArrayQueue<ShardMsg>) + 'static,
) -> ShutdownReport {
    run_service(Echo, limits, log, script)
}

/// [`run_shard`] with any service.
fn run_service<S: Service<Post = ()>>(
    service: S,
    limits: Limits,
    log: Rc<RefCell<Log>>,
    script: impl FnMut(&mut Log, &ArrayQueue<ShardMsg>) + 'static,
) -> ShutdownReport {
    let inbox = Arc::new(ArrayQueue::new(4));
    let backend = Scripted {
        log,
        script: Box::new(script),
        inbox: inbox.clone(),
        waker: Waker::new().unwrap(),
        buffers: Vec::new(),
    };
    let settings = Arc::new(ShardSettings::new(
        limits,
        ServerOptions::default(),
        Vec::new(),
    ));
    let parts = super::ShardParts {
        index: 0,
        listeners: Vec::new(),
        inbox,
        remote: crate::service::Remote::new(1, 4),
        settings,
        service: Arc::new(service),
        max_connections: 16,
    };
    Shard::new(Box::new(backend), parts).run().unwrap()
}

fn upgrade_request() -> Vec<u8> {
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
      Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        .to_vec()
}

/// Contains `needle`?
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// How long a script lets the loop run in the situation under test, watching it for spinning.
const WATCH: Duration = Duration::from_millis(300);

/// When a script ends the shard whatever happened, so that a broken test ends too: far past
/// what the situation needs on any machine.
const GIVE_UP: Duration = Duration::from_secs(10);

#[test]
fn an_idle_close_waiting_for_the_peer_does_not_spin_the_loop() {
    let limits = Limits {
        idle_timeout: Some(Duration::from_millis(30)),
        close_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let log = Rc::new(RefCell::new(Log::default()));
    let started = Instant::now();
    let (mut step, mut ended, mut close_sent) = (0, false, None);
    let report = run_shard(limits, log.clone(), move |log, inbox| {
        match step {
            0 => log
                .ready
                .push_back(Completion::Accepted { fd: not_a_socket() }),
            1 => log.receive(upgrade_request()),
            _ if !ended => {
                if close_sent.is_none() && contains(&log.sent, &[0x88, 14, 0x03, 0xE9]) {
                    close_sent = Some(Instant::now());
                }
                // The peer never answers the 1001; once the loop has waited on it for a while
                // (or the test has run far too long), the test ends the shard.
                if close_sent.is_some_and(|at| at.elapsed() > WATCH) || started.elapsed() > GIVE_UP
                {
                    let _ = inbox.push(ShardMsg::Shutdown {
                        deadline: Instant::now(),
                    });
                    log.ready.push_back(Completion::Woken);
                    ended = true;
                }
            }
            _ => {}
        }
        step += 1;
    });
    let log = log.borrow();
    assert!(
        contains(&log.sent, &[0x88, 14, 0x03, 0xE9]),
        "the idle connection got no close 1001"
    );
    assert!(
        log.busy_waits < 5,
        "the loop polled without sleeping {} times while the close went unanswered",
        log.busy_waits
    );
    // The shutdown's deadline is immediate, so the close still waiting for its answer is cut
    // (and reported: its handler hears 1006).
    assert_eq!(report.cut, 1);
}

#[test]
fn a_final_write_the_peer_never_reads_is_cut_at_the_handshake_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(50);
    let limits = Limits {
        handshake_timeout: TIMEOUT,
        ..Limits::default()
    };
    let log = Rc::new(RefCell::new(Log {
        stall_sends_from: Some(50_000),
        ..Log::default()
    }));
    let started = Instant::now();
    let (mut step, mut ended) = (0, false);
    run_shard(limits, log.clone(), move |log, inbox| {
        match step {
            0 => log
                .ready
                .push_back(Completion::Accepted { fd: not_a_socket() }),
            1 => log.receive(upgrade_request()),
            // A big message whose echo the peer never reads, then its close.
            2 => log.receive(client_frame(true, 0, BINARY, &[7; 60_000])),
            3 => log.receive(client_frame(true, 0, CLOSE, &1000u16.to_be_bytes())),
            // Once the connection is closed (or the test has run far too long), the test ends
            // the shard.
            _ if !ended && (log.closed_at.is_some() || started.elapsed() > GIVE_UP) => {
                let _ = inbox.push(ShardMsg::Shutdown {
                    deadline: Instant::now(),
                });
                log.ready.push_back(Completion::Woken);
                ended = true;
            }
            _ => {}
        }
        step += 1;
    });
    let log = log.borrow();
    let closed_after = log
        .closed_at
        .map(|t| t - started)
        .expect("the connection was never closed");
    // Not before the timeout (counted from the close frame, which came after `started`), and
    // by the timeout, not by the shutdown the script sends only after the close or at GIVE_UP.
    assert!(
        closed_after >= TIMEOUT,
        "a stalled final write was closed after {closed_after:?}, before the handshake timeout"
    );
    assert!(
        closed_after < GIVE_UP,
        "a stalled final write was closed only by the shutdown ({closed_after:?}; handshake \
         timeout {TIMEOUT:?})"
    );
    assert!(
        log.busy_waits < 5,
        "the loop polled without sleeping {} times behind a stalled write",
        log.busy_waits
    );
}

#[test]
fn a_request_followed_by_the_peers_eof_still_gets_its_answer() {
    let log = Rc::new(RefCell::new(Log::default()));
    let mut step = 0;
    run_shard(Limits::default(), log.clone(), move |log, inbox| {
        match step {
            0 => log
                .ready
                .push_back(Completion::Accepted { fd: not_a_socket() }),
            // The request and the client's half-close arrive in the same loop turn.
            1 => {
                log.receive(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
                log.ready.push_back(Completion::Eof { token: CONN });
            }
            _ if log.closed_at.is_some() && inbox.is_empty() => {
                let _ = inbox.push(ShardMsg::Shutdown {
                    deadline: Instant::now(),
                });
                log.ready.push_back(Completion::Woken);
            }
            _ => {}
        }
        step += 1;
    });
    let log = log.borrow();
    assert!(
        log.sent.starts_with(b"HTTP/1.1 404 "),
        "a half-closed client got {:?}",
        String::from_utf8_lossy(&log.sent)
    );
}

/// Echo with payloads discarded: every message comes back as zeros of its length.
struct DiscardingEcho;

impl Service for DiscardingEcho {
    type Session = ();
    type Local = ();
    type Post = ();

    fn local(&self, _: usize, _: &crate::service::Remote<()>) {}

    fn upgrade(&self, _: &mut (), _: &Upgrade<'_>) -> Result<Accept<()>, HttpResponse> {
        Ok(Accept::new(()))
    }

    fn on_open(&self, cx: &mut ShardCx<'_, Self>, id: ConnId, _: &RequestHead) {
        if let Some(open) = cx.conn(id) {
            open.ws.discard_payloads(true);
        }
    }

    fn on_event(&self, cx: &mut ShardCx<'_, Self>, id: ConnId, event: Event) {
        let Some(open) = cx.conn(id) else { return };
        let _ = match event {
            Event::Text(text) => open.ws.send_shared(DataKind::Text, text.into_bytes()),
            Event::Binary(data) => open.ws.send_shared(DataKind::Binary, data),
            _ => Ok(()),
        };
    }
}

#[test]
fn the_rest_of_a_discarded_payload_is_skipped_once_and_accounted_for() {
    let big = client_frame(true, 0, BINARY, &[7; 200_000]);
    let head = big.len() - 200_000;
    // One byte short of a message worth skipping: its rest is read, however long.
    let short = super::SKIP_MIN as usize - 1;
    let small = client_frame(true, 0, BINARY, &vec![1; short]);
    let log = Rc::new(RefCell::new(Log::default()));
    let mut step = 0;
    let (mut skips_then, mut ended) = (Vec::new(), false);
    run_service(
        DiscardingEcho,
        Limits::default(),
        log.clone(),
        move |log, inbox| {
            match step {
                0 => log
                    .ready
                    .push_back(Completion::Accepted { fd: not_a_socket() }),
                1 => log.receive(upgrade_request()),
                // The header and 10,000 bytes of a 200,000-byte message: the rest is skippable.
                2 => log.receive(big[..head + 10_000].to_vec()),
                // The shard asked to skip the rest. Bytes still delivered count against the skip
                // (as when io_uring's receive completes before its cancel), and the skip reports
                // the rest in two parts; no second skip may be asked for meanwhile.
                3 => {
                    skips_then = log.skips.clone();
                    log.receive(big[head + 10_000..head + 50_000].to_vec());
                    log.ready.push_back(Completion::Skipped {
                        token: CONN,
                        len: 100_000,
                    });
                }
                4 => log.ready.push_back(Completion::Skipped {
                    token: CONN,
                    len: 50_000,
                }),
                // A discarded text message after it, then a message too short to be worth
                // skipping, in two parts.
                5 => log.receive(client_frame(true, 0, TEXT, b"hi")),
                6 => log.receive(small[..1_000].to_vec()),
                7 => log.receive(small[1_000..].to_vec()),
                _ if !ended => {
                    let _ = inbox.push(ShardMsg::Shutdown {
                        deadline: Instant::now(),
                    });
                    log.ready.push_back(Completion::Woken);
                    ended = true;
                }
                _ => {}
            }
            step += 1;
            if step == 4 {
                assert_eq!(skips_then, [(CONN, 190_000)], "the skip asked for");
            }
        },
    );
    let log = log.borrow();
    assert_eq!(
        log.skips,
        [(CONN, 190_000), (CONN, 0)],
        "one skip, for the big message only, then a header-sized read for what follows it"
    );
    // Each message came back as zeros of its length, in order: the skipped one whole.
    let mut expected = vec![0x82, 127, 0, 0, 0, 0, 0, 0x03, 0x0D, 0x40];
    expected.extend(vec![0; 200_000]);
    expected.extend([0x81, 2, 0, 0]);
    expected.extend(server_frame(true, 0, BINARY, &vec![0; short]));
    let echoes = log
        .sent
        .windows(expected.len())
        .position(|w| w == &expected[..]);
    assert!(echoes.is_some(), "the echoes are not in what was sent");
}

/// Runs a shard of [`Echo`] over `listeners` (the scripted backend never accepts on them; the
/// shard may, to refuse) until the script asks for shutdown.
fn run_with_listeners(
    limits: Limits,
    listeners: Vec<std::os::fd::OwnedFd>,
    script: impl FnMut(&mut Log, &ArrayQueue<ShardMsg>) + 'static,
) {
    let inbox = Arc::new(ArrayQueue::new(4));
    let backend = Scripted {
        log: Rc::new(RefCell::new(Log::default())),
        script: Box::new(script),
        inbox: inbox.clone(),
        waker: Waker::new().unwrap(),
        buffers: Vec::new(),
    };
    let parts = super::ShardParts {
        index: 0,
        listeners,
        inbox,
        remote: crate::service::Remote::new(1, 4),
        settings: Arc::new(ShardSettings::new(
            limits,
            ServerOptions::default(),
            Vec::new(),
        )),
        service: Arc::new(Echo),
        max_connections: 16,
    };
    Shard::new(Box::new(backend), parts).run().unwrap();
}

/// Three clients in the accept queue of a listener the shard owns, each having sent its
/// request; the scripted backend reports `error` once, then the shard shuts down. Returns what
/// each client read (nothing, if the shard left it waiting).
fn clients_after_accept_failed(reserve_fd: bool, error: i32) -> Vec<Vec<u8>> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients: Vec<_> = (0..3)
        .map(|_| {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(&upgrade_request()).unwrap();
            c
        })
        .collect();
    let mut step = 0;
    let limits = Limits {
        reserve_fd,
        ..Limits::default()
    };
    run_with_listeners(limits, vec![listener.into()], move |log, inbox| {
        match step {
            0 => log
                .ready
                .push_back(Completion::AcceptFailed(std::io::Error::from_raw_os_error(
                    error,
                ))),
            3 => {
                let _ = inbox.push(ShardMsg::Shutdown {
                    deadline: Instant::now(),
                });
                log.ready.push_back(Completion::Woken);
            }
            _ => {}
        }
        step += 1;
    });
    clients
        .iter_mut()
        .map(|c| {
            c.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let mut got = Vec::new();
            // A refused client reads the answer, then EOF; a waiting one times out.
            let _ = c.read_to_end(&mut got);
            got
        })
        .collect()
}

#[test]
fn out_of_descriptors_waiting_connections_get_503_through_the_reserve() {
    for got in clients_after_accept_failed(true, libc::EMFILE) {
        assert_eq!(got, super::refuse::SERVICE_UNAVAILABLE);
    }
    for got in clients_after_accept_failed(true, libc::ENFILE) {
        assert_eq!(got, super::refuse::SERVICE_UNAVAILABLE);
    }
}

#[test]
fn without_a_reserve_or_for_other_errors_waiting_connections_are_left_alone() {
    for got in clients_after_accept_failed(false, libc::EMFILE) {
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
    for got in clients_after_accept_failed(true, libc::ENOBUFS) {
        assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    }
}

/// A descriptor for a fake accept: real, so the shard can own and close it, but no socket, so
/// the socket calls on it fail harmlessly.
fn not_a_socket() -> std::os::fd::OwnedFd {
    std::fs::File::open("/dev/null")
        .expect("/dev/null opens")
        .into()
}
