//! The client pool: thousands of connections over the shards, each echoing its own messages
//! (hundreds over `wss://` with a test CA, and TLS failures without it); redials with backoff
//! after the server goes away and comes back; attempt limits; the dial rate as a ceiling.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringsock_actors::{
    Accept, BackendKind, ClientPool, CloseCode, Closed, ConnectError, Ctx, DialError, DialOptions,
    Handler, HandshakeError, Message, PoolSlot, PreparedMessage, Reconnect, Server, ServerHandle,
};
use ringsock_testkit::on_both_backends;

use crate::dial_support::{wss_echo_server_for, Pki};

use crate::support::*;

/// Echo for the server side.
struct Echo;
impl Handler for Echo {
    type Msg = ();
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        match message {
            Message::Text(t) => ctx.send_text(t.as_str()),
            Message::Binary(b) => ctx.send_binary(b),
        };
    }
}

fn echo_server(kind: BackendKind, addr: SocketAddr) -> ServerHandle {
    start(
        kind,
        builder(kind, 2)
            .bind(addr)
            .route("/echo", |_| Ok(Accept::new(Echo))),
    )
}

/// A client-only runtime of two shards.
fn client_runtime(kind: BackendKind) -> ServerHandle {
    raise_fd_limit();
    let runtime = Server::builder()
        .shards(2)
        .backend(kind)
        .pin_threads(false)
        .start()
        .expect("a client runtime");
    match kind {
        BackendKind::Epoll => assert_eq!(runtime.backend(), "epoll"),
        BackendKind::IoUring => assert_eq!(runtime.backend(), "io_uring"),
        BackendKind::Auto => {}
    }
    runtime
}

/// What the echo clients report.
#[derive(Default)]
struct Tally {
    /// Connections whose every message came back, in order, and nothing else.
    done: AtomicUsize,
    /// Replies that were not the next one expected.
    wrong: AtomicUsize,
    shards: Mutex<[usize; 2]>,
}

/// Sends `MESSAGES` messages naming its slot, expects each back in order.
struct Numbered {
    index: usize,
    next: usize,
    tally: Arc<Tally>,
}

const MESSAGES: usize = 3;

impl Handler for Numbered {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.tally.shards.lock().unwrap()[ctx.shard()] += 1;
        for seq in 0..MESSAGES {
            if seq % 2 == 0 {
                ctx.send_text(&format!("{}:{seq}", self.index));
            } else {
                ctx.send_binary(format!("{}:{seq}", self.index).into_bytes());
            }
        }
    }
    fn on_message(&mut self, _: &mut Ctx<'_, Self>, message: Message) {
        let expected = format!("{}:{}", self.index, self.next);
        let kind_ok = matches!(
            (&message, self.next % 2),
            (Message::Text(_), 0) | (Message::Binary(_), 1)
        );
        if message.as_bytes() != expected.as_bytes() || !kind_ok {
            self.tally.wrong.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.next += 1;
        if self.next == MESSAGES {
            self.tally.done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Opens `n` connections to `url` with `options` over two client shards, each running a
/// [`Numbered`] echo, and checks that every one got its own messages back in order, that the
/// counters add up, and that every connection closes cleanly at shutdown.
fn pool_echoes_its_own_messages(kind: BackendKind, url: String, n: usize, options: DialOptions) {
    let tally = Arc::new(Tally::default());
    let t = tally.clone();
    let pool = ClientPool::builder()
        .url(url)
        .connections(n)
        .max_connecting(256)
        .dial(options)
        .start(client_runtime(kind), move |slot: PoolSlot| {
            assert_eq!(slot.attempt, 0);
            Numbered {
                index: slot.index,
                next: 0,
                tally: t.clone(),
            }
        })
        .unwrap();
    let all_done = pool.wait(Duration::from_secs(30), |_| {
        tally.done.load(Ordering::Relaxed) == n
    });
    let st = pool.stats();
    assert!(
        all_done,
        "{} of {n} connections got all their messages back; {st:?}",
        tally.done.load(Ordering::Relaxed)
    );
    assert_eq!(tally.wrong.load(Ordering::Relaxed), 0);
    let shards = *tally.shards.lock().unwrap();
    assert_eq!(
        shards,
        [n / 2, n / 2],
        "round robin over the client's shards"
    );
    assert_eq!(
        (st.dialed, st.opened, st.open, st.failed, st.connecting),
        (n as u64, n as u64, n as u64, 0, 0)
    );
    let messages = (n * MESSAGES) as u64;
    assert_eq!((st.messages_out, st.messages_in), (messages, messages));
    assert_eq!(st.bytes_out, st.bytes_in);
    let report = pool.shutdown(Duration::from_secs(5));
    assert_eq!(report.closed_cleanly, n, "{report:?}");
}

fn two_thousand_connections_echo_their_own_messages(kind: BackendKind) {
    let server = echo_server(kind, "127.0.0.1:0".parse().unwrap());
    let url = format!("ws://{}/echo", server.local_addrs()[0]);
    pool_echoes_its_own_messages(kind, url, 2000, DialOptions::new());
    server.shutdown(Duration::from_secs(1));
}

/// The same over `wss://`: TLS on the client's shards, trusting the test CA, against the
/// tokio-rustls echo server (ringsock's server does not speak TLS).
fn wss_connections_echo_their_own_messages(kind: BackendKind) {
    const N: usize = 200;
    let pki = Pki::localhost();
    let (addr, server) = wss_echo_server_for(pki.server_config(false), N);
    let options = DialOptions::new().tls(pki.trusting());
    pool_echoes_its_own_messages(kind, format!("wss://{addr}/echo"), N, options);
    // Every connection ended as the server wants it: close handshake, then TLS close_notify.
    for _ in 0..N {
        let saw = recv_within(&server, STEP, "the server's report");
        assert_eq!(saw.result, Ok(()));
    }
}

/// Without the test CA every `wss://` dial fails on the server's certificate: the pool counts
/// the failures, redials and gives up as its policy says, and opens nothing.
fn wss_dials_without_the_test_ca_fail_on_tls(kind: BackendKind) {
    /// Sorts the failures it hears: certificate errors, anything else.
    #[derive(Default)]
    struct Failures {
        certificate: AtomicUsize,
        other: Mutex<Vec<String>>,
    }
    struct Untrusting(Arc<Failures>);
    impl Handler for Untrusting {
        type Msg = ();
        fn on_connect_failed(&mut self, error: DialError) {
            match error {
                DialError::Tls(e) if e.is_certificate_error() => {
                    self.0.certificate.fetch_add(1, Ordering::Relaxed);
                }
                other => self.0.other.lock().unwrap().push(other.to_string()),
            }
        }
    }
    const N: usize = 20;
    let pki = Pki::localhost();
    // Each slot dials twice: the first dial and one redial.
    let (addr, server) = wss_echo_server_for(pki.server_config(false), 2 * N);
    let failures = Arc::new(Failures::default());
    let f = failures.clone();
    let policy = Reconnect::new(Duration::from_millis(1), Duration::from_millis(1)).attempts(1);
    // Mozilla's roots only: the test CA is unknown.
    let pool = ClientPool::builder()
        .url(format!("wss://{addr}/echo"))
        .connections(N)
        .reconnect(policy)
        .start(client_runtime(kind), move |_| Untrusting(f.clone()))
        .unwrap();
    assert!(
        pool.wait(STEP, |s| s.gave_up == N as u64 && s.connecting == 0),
        "{:?}",
        pool.stats()
    );
    // Let anything stray show up before counting.
    std::thread::sleep(Duration::from_millis(50));
    let st = pool.stats();
    assert_eq!(
        (st.dialed, st.failed, st.reconnects, st.gave_up),
        (2 * N as u64, 2 * N as u64, N as u64, N as u64),
        "{st:?}"
    );
    assert_eq!((st.opened, st.open, st.messages_in), (0, 0, 0), "{st:?}");
    assert_eq!(*failures.other.lock().unwrap(), Vec::<String>::new());
    assert_eq!(failures.certificate.load(Ordering::Relaxed), 2 * N);
    // Each dial told the server why before it closed.
    for _ in 0..2 * N {
        let saw = recv_within(&server, STEP, "the server's report");
        let result = saw.result.unwrap_err();
        assert!(result.contains("UnknownCA"), "{result}");
    }
    pool.shutdown(Duration::from_secs(1));
}

/// Records when each slot was dialled and closed, to check the backoff between them.
#[derive(Default)]
struct Timeline {
    dialled: Mutex<Vec<(usize, u32, Instant)>>,
    closed: Mutex<Vec<(usize, u16, Instant)>>,
    failed: AtomicU64,
}

struct Watched {
    index: usize,
    timeline: Arc<Timeline>,
}

impl Handler for Watched {
    type Msg = ();
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, closed: Closed) {
        let entry = (self.index, closed.code.0, Instant::now());
        self.timeline.closed.lock().unwrap().push(entry);
    }
    fn on_connect_failed(&mut self, _: DialError) {
        self.timeline.failed.fetch_add(1, Ordering::Relaxed);
    }
}

fn watched_pool(
    kind: BackendKind,
    url: String,
    n: usize,
    policy: Reconnect,
) -> (ClientPool, Arc<Timeline>) {
    let timeline = Arc::new(Timeline::default());
    let t = timeline.clone();
    let pool = ClientPool::builder()
        .url(url)
        .connections(n)
        .reconnect(policy)
        .start(client_runtime(kind), move |slot: PoolSlot| {
            let entry = (slot.index, slot.attempt, Instant::now());
            t.dialled.lock().unwrap().push(entry);
            Watched {
                index: slot.index,
                timeline: t.clone(),
            }
        })
        .unwrap();
    (pool, timeline)
}

fn redials_with_backoff_when_the_server_goes_away_and_comes_back(kind: BackendKind) {
    const N: usize = 50;
    const INITIAL: Duration = Duration::from_millis(40);
    let first = echo_server(kind, "127.0.0.1:0".parse().unwrap());
    let addr = first.local_addrs()[0];
    let policy = Reconnect::new(INITIAL, Duration::from_millis(320));
    let (pool, timeline) = watched_pool(kind, format!("ws://{addr}/echo"), N, policy);
    assert!(pool.wait_open(N as u64, STEP), "{:?}", pool.stats());

    // The server goes away: every connection hears 1001, and every redial is refused.
    let gone = Instant::now();
    first.shutdown(Duration::from_secs(2));
    assert!(
        pool.wait(STEP, |s| s.open == 0 && s.failed >= 2 * N as u64),
        "{:?}",
        pool.stats()
    );
    // ... until it comes back on the same port.
    let second = echo_server(kind, addr);
    assert!(pool.wait_open(N as u64, STEP), "{:?}", pool.stats());
    let st = pool.stats();
    assert_eq!(st.closed, N as u64);
    assert_eq!(st.gave_up, 0);
    assert!(st.reconnects >= 3 * N as u64, "{st:?}");
    assert_eq!(st.failed, timeline.failed.load(Ordering::Relaxed));

    // No slot was redialled sooner than its backoff: attempt n waits INITIAL * 2^(n-1), counted
    // from the close (attempt 1) or from the failure before it (which comes after its dial).
    let dialled = timeline.dialled.lock().unwrap().clone();
    let closed = timeline.closed.lock().unwrap().clone();
    for index in 0..N {
        let close = closed
            .iter()
            .find(|c| c.0 == index)
            .unwrap_or_else(|| panic!("slot {index} never closed"));
        assert_eq!(close.1, 1001, "the server said it was going away");
        let mut tries: Vec<(u32, Instant)> = dialled
            .iter()
            .filter(|d| d.0 == index && d.2 > gone)
            .map(|d| (d.1, d.2))
            .collect();
        tries.sort_by_key(|t| t.1);
        assert!(tries.len() >= 2, "slot {index}: {tries:?}");
        let mut last = close.2;
        for (n, (attempt, at)) in tries.iter().enumerate() {
            assert_eq!(*attempt, n as u32 + 1, "slot {index}: attempts count up");
            let wait = INITIAL * (1 << n).min(8);
            // A millisecond of slack for the clocks read on different threads.
            assert!(
                *at + Duration::from_millis(1) >= last + wait,
                "slot {index}, attempt {attempt}: dialled {:?} after the previous try, backoff {wait:?}",
                at.duration_since(last)
            );
            last = *at;
        }
    }
    pool.shutdown(Duration::from_secs(2));
    second.shutdown(Duration::from_secs(1));
}

/// A WebSocket server that answers every handshake and then drops the first `drop_first`
/// connections without a close frame (the client hears 1006); later ones are held open until
/// the returned flag is set.
fn dropping_server(drop_first: usize) -> (SocketAddr, Arc<AtomicBool>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut accepted = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
            let Ok((mut tcp, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            tcp.set_nonblocking(false).unwrap();
            tcp.set_read_timeout(Some(STEP)).unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let text = String::from_utf8_lossy(&request);
            let Some(key) = text.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            }) else {
                continue;
            };
            let accept = ringsock_engine::ws::handshake::accept_key(key.as_bytes());
            let _ = write!(
                tcp,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
                 Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
            );
            accepted += 1;
            if accepted <= drop_first {
                std::thread::sleep(Duration::from_millis(5));
                drop(tcp);
            } else {
                held.push(tcp);
            }
        }
    });
    (addr, stop)
}

fn redials_with_backoff_after_the_server_drops_connections(kind: BackendKind) {
    const N: usize = 10;
    const INITIAL: Duration = Duration::from_millis(30);
    let (addr, stop) = dropping_server(N);
    let policy = Reconnect::new(INITIAL, Duration::from_secs(1));
    let (pool, timeline) = watched_pool(kind, format!("ws://{addr}/"), N, policy);
    assert!(
        pool.wait(STEP, |s| s.open == N as u64 && s.opened == 2 * N as u64),
        "{:?}",
        pool.stats()
    );
    let st = pool.stats();
    assert_eq!(
        (st.closed, st.dropped, st.reconnects, st.failed),
        (N as u64, N as u64, N as u64, 0)
    );
    let dialled = timeline.dialled.lock().unwrap().clone();
    let closed = timeline.closed.lock().unwrap().clone();
    for index in 0..N {
        let close = closed.iter().find(|c| c.0 == index).expect("a drop");
        assert_eq!(close.1, 1006, "dropped without a close handshake");
        let redial = dialled
            .iter()
            .find(|d| d.0 == index && d.1 == 1)
            .unwrap_or_else(|| panic!("slot {index} was not redialled: {dialled:?}"));
        assert!(
            redial.2 + Duration::from_millis(1) >= close.2 + INITIAL,
            "slot {index} redialled {:?} after the drop",
            redial.2.duration_since(close.2)
        );
    }
    pool.shutdown(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
}

fn connections_spread_over_local_addresses(kind: BackendKind) {
    /// Records the address each connection came from.
    struct Peer(Arc<Mutex<Vec<IpAddr>>>);
    impl Handler for Peer {
        type Msg = ();
        fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
            let ip = ctx.peer_addr().expect("a peer").ip();
            self.0.lock().unwrap().push(ip);
        }
    }
    let peers = Arc::new(Mutex::new(Vec::new()));
    let p = peers.clone();
    let server = start(
        kind,
        builder(kind, 1).route("/", move |_| Ok(Accept::new(Peer(p.clone())))),
    );
    let sources: Vec<IpAddr> = vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()];
    let pool = ClientPool::builder()
        .url(format!("ws://{}/", server.local_addrs()[0]))
        .connections(6)
        .local_addrs(sources.iter().copied())
        .start(client_runtime(kind), |_| Echo)
        .unwrap();
    assert!(pool.wait_open(6, STEP), "{:?}", pool.stats());
    assert!(
        pool.wait(STEP, |_| peers.lock().unwrap().len() == 6),
        "the server saw {:?}",
        peers.lock().unwrap()
    );
    let mut seen = peers.lock().unwrap().clone();
    seen.sort();
    let expected: Vec<IpAddr> = [sources[0]; 3].into_iter().chain([sources[1]; 3]).collect();
    assert_eq!(seen, expected);
    pool.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

fn gives_up_after_the_attempt_limit(kind: BackendKind) {
    const N: usize = 10;
    // A port that was just free: nothing listens there.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let policy = Reconnect::new(Duration::from_millis(2), Duration::from_millis(8))
        .attempts(3)
        .jitter(true);
    let (pool, timeline) = watched_pool(kind, format!("ws://{addr}/"), N, policy);
    assert!(
        pool.wait(STEP, |s| s.gave_up == N as u64),
        "{:?}",
        pool.stats()
    );
    // Let anything stray show up before counting.
    std::thread::sleep(Duration::from_millis(50));
    let st = pool.stats();
    assert_eq!(
        (st.failed, st.dialed, st.reconnects),
        (40, 40, 30),
        "{st:?}"
    );
    assert_eq!(timeline.dialled.lock().unwrap().len(), 4 * N);
    assert_eq!(st.opened, 0);
    pool.shutdown(Duration::from_secs(1));
}

fn the_dial_rate_is_a_ceiling(kind: BackendKind) {
    const N: usize = 60;
    const RATE: f64 = 200.0;
    let server = echo_server(kind, "127.0.0.1:0".parse().unwrap());
    let url = format!("ws://{}/echo", server.local_addrs()[0]);
    let started = Instant::now();
    let pool = ClientPool::builder()
        .url(url)
        .connections(N)
        .rate(RATE)
        .start(client_runtime(kind), |_| Echo)
        .unwrap();
    assert!(pool.wait_open(N as u64, STEP), "{:?}", pool.stats());
    let took = started.elapsed();
    // The first dial goes at once, the others one every 1/RATE s.
    let least = Duration::from_secs_f64((N - 1) as f64 / RATE);
    assert!(took >= least, "{N} dials at {RATE}/s took {took:?}");
    pool.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

fn clean_closes_are_dialled_again_when_asked(kind: BackendKind) {
    /// Closes as soon as it opens.
    struct Churn(Arc<AtomicUsize>);
    impl Handler for Churn {
        type Msg = ();
        fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
            ctx.close(CloseCode::NORMAL, "").unwrap();
        }
    }
    let server = echo_server(kind, "127.0.0.1:0".parse().unwrap());
    let url = format!("ws://{}/echo", server.local_addrs()[0]);
    let opens = Arc::new(AtomicUsize::new(0));
    let o = opens.clone();
    // A long backoff that must not apply: a clean close is no failure.
    let policy =
        Reconnect::new(Duration::from_secs(60), Duration::from_secs(60)).after_clean_close(true);
    let mut pool = ClientPool::builder()
        .url(url)
        .connections(4)
        .reconnect(policy)
        .start(client_runtime(kind), move |_| Churn(o.clone()))
        .unwrap();
    assert!(pool.wait(STEP, |s| s.opened >= 200), "{:?}", pool.stats());
    pool.stop_dialing();
    assert!(
        pool.wait(STEP, |s| s.open == 0 && s.connecting == 0),
        "{:?}",
        pool.stats()
    );
    let st = pool.stats();
    assert_eq!(st.failed, 0);
    assert_eq!(st.closed, st.opened);
    assert_eq!(st.dropped, 0);
    assert_eq!(opens.load(Ordering::Relaxed) as u64, st.opened);
    pool.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

fn prepared_messages_go_out_framed_once_and_discarded_payloads_keep_their_length(
    kind: BackendKind,
) {
    /// Server side: greets with a prepared message, checks what the client sends, echoes it.
    struct Greeter {
        greeting: Arc<PreparedMessage>,
        expected: Vec<u8>,
        checked: Arc<AtomicUsize>,
    }
    impl Handler for Greeter {
        type Msg = ();
        fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
            ctx.send_prepared(&self.greeting);
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
            if message.as_bytes() == &self.expected[..] {
                self.checked.fetch_add(1, Ordering::Relaxed);
            }
            ctx.send_binary(message.as_bytes().to_vec());
        }
    }
    /// Client side: keeps the first message (the greeting), then discards; sends a prepared
    /// message twice.
    struct Sender {
        prepared: Arc<PreparedMessage>,
        seen: Arc<Mutex<Vec<(bool, usize, bool)>>>,
    }
    impl Handler for Sender {
        type Msg = ();
        fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
            ctx.send_prepared(&self.prepared);
            ctx.send_prepared(&self.prepared);
        }
        fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
            let zeros = message.as_bytes().iter().all(|&b| b == 0);
            let entry = (message.as_text().is_some(), message.as_bytes().len(), zeros);
            self.seen.lock().unwrap().push(entry);
            ctx.discard_payloads(true);
        }
    }
    let greeting = Arc::new(PreparedMessage::new("hello, prepared"));
    let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8 + 1).collect();
    let prepared = Arc::new(PreparedMessage::new(payload.clone()));
    let checked = Arc::new(AtomicUsize::new(0));
    let (g, c) = (greeting.clone(), checked.clone());
    let server = start(
        kind,
        builder(kind, 1).route("/", move |_| {
            Ok(Accept::new(Greeter {
                greeting: g.clone(),
                expected: payload.clone(),
                checked: c.clone(),
            }))
        }),
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let pool = ClientPool::builder()
        .url(format!("ws://{}/", server.local_addrs()[0]))
        .connections(3)
        .start(client_runtime(kind), move |_| Sender {
            prepared: prepared.clone(),
            seen: s.clone(),
        })
        .unwrap();
    assert!(
        pool.wait(STEP, |st| st.messages_in == 9),
        "{:?}",
        pool.stats()
    );
    assert_eq!(
        checked.load(Ordering::Relaxed),
        6,
        "the server read the prepared frames"
    );
    let st = pool.stats();
    assert_eq!((st.messages_out, st.bytes_out), (6, 6 * 3000));
    assert_eq!(st.bytes_in, 3 * 15 + 6 * 3000);
    let mut seen = seen.lock().unwrap().clone();
    seen.sort();
    let mut expected = vec![(false, 3000, true); 6];
    expected.extend([(true, 15, false); 3]);
    assert_eq!(seen, expected);
    pool.shutdown(Duration::from_secs(1));
    server.shutdown(Duration::from_secs(1));
}

on_both_backends!(
    redials_with_backoff_after_the_server_drops_connections,
    connections_spread_over_local_addresses,
    prepared_messages_go_out_framed_once_and_discarded_payloads_keep_their_length,
    two_thousand_connections_echo_their_own_messages,
    wss_connections_echo_their_own_messages,
    wss_dials_without_the_test_ca_fail_on_tls,
    redials_with_backoff_when_the_server_goes_away_and_comes_back,
    gives_up_after_the_attempt_limit,
    the_dial_rate_is_a_ceiling,
    clean_closes_are_dialled_again_when_asked,
);

#[test]
fn an_invalid_url_is_refused_before_anything_is_dialled() {
    let err = ClientPool::builder()
        .url("ws://127.0.0.1:9/")
        .url("http://example.com/")
        .connections(3)
        .start(client_runtime(BackendKind::Epoll), |_| Echo)
        .unwrap_err();
    assert!(
        matches!(err, ConnectError::Handshake(HandshakeError::InvalidUrl(_))),
        "{err:?}"
    );
}
