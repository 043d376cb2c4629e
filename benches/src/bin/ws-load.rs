//! `ws-load`: the WebSocket load generator of the load scenarios.
//!
//! One thread, edge-triggered epoll through `mio`, N client connections, each doing a real
//! opening handshake (random key, `Sec-WebSocket-Accept` checked by
//! [`ClientHandshake`]). It is built so as not to be the bottleneck:
//!
//! - the masked frame for the chosen payload size is encoded once, and a run of copies of it is
//!   what every connection writes from: sending D messages is one `write` of D frames' bytes;
//! - replies are parsed at the frame-header level only, to count whole messages; payload bytes
//!   are skipped, never unmasked, and for large messages (`--discard-min`, default 16 KiB) not
//!   even copied out of the kernel: the header is read alone and the payload dropped with
//!   `recv(MSG_TRUNC)`, so receiving 1 MiB costs a few syscalls and no copy;
//! - one clock read per `read` call timestamps every message that call completes.
//!
//! Modes:
//! - load (`--conns N --size BYTES --depth D --duration SECS [--binary]`): keeps D messages in
//!   flight per connection (D at start, one more per complete echo); reports messages/s, MB/s
//!   (payload bytes echoed per second, MB = 10^6 bytes), p50/p99/p99.9 round-trip latency
//!   (per message: a FIFO of send times per connection), errors, and the CPU use of itself and,
//!   with `--server-pid`, of the server.
//! - idle (`--idle N --hold SECS`): opens N connections (handshake only), reports when all are
//!   open, holds them, then closes them. With `--server-pid` it reads the server's `VmRSS`
//!   before the first connection and once all are open, and reports the growth per connection.
//! - fan-out (`--fanout N --duration SECS [--size BYTES]`): opens N subscriber connections to a
//!   server that pushes messages to all of them (`ringsock-fanout`), sends nothing, and counts
//!   what arrives over the measured window: deliveries per second (whole messages, checked to be
//!   `--size` bytes), the bytes read off the sockets and the deliveries those bytes amount to,
//!   each second's count, and the CPU use of itself (the reader) and of the server.
//!
//! `--raw` skips the handshake and talks frames straight away, for `tcp-echo`: it echoes the
//! masked frames back byte for byte and the reply parser accepts them, which measures the
//! generator's own ceiling with the same frame bytes.
//!
//! Output: a human line on stderr and one JSON object on one line on stdout, at the end.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use ringsock_benches::{
    process_cpu_seconds, process_rss_kib, raise_nofile_limit, self_cpu_seconds, system_busy_seconds,
};
use ringsock_engine::ws::frame::MAX_HEADER_LEN;
use ringsock_engine::ws::{ClientHandshake, ClientOptions, FrameHeader, OpCode};
use ringsock_tools::json_string;
use socket2::{Domain, Protocol, Socket, Type};

const USAGE: &str = "usage:
  ws-load --addr IP:PORT --conns N --size BYTES --depth D --duration SECS [--binary]
  ws-load --addr IP:PORT --idle N --hold SECS
  ws-load --addr IP:PORT --fanout N --duration SECS [--size BYTES]
options:
  --warmup SECS       load mode: run this long before measuring (default 1)
  --raw               no HTTP handshake (for tcp-echo, which echoes the masked frames back)
  --server-pid PID    report the server's CPU use (load) or VmRSS growth (idle)
  --label TEXT        copied into the JSON line
  --src IP[,IP...]    source addresses to spread connections over (default: the kernel's pick)
  --open-batch N      handshakes in progress at once (default 256)
  --discard-min BYTES messages at least this large are dropped in the kernel with
                      recv(MSG_TRUNC) instead of copied out (default 16384; 0: never)
  --path /PATH        request target (default /)";

/// Largest reply the handshake may take (a 101 is a few hundred bytes).
const MAX_RESPONSE: usize = 16 * 1024;
/// Bytes read per `read` call; shared by all connections (one thread).
const READ_CHUNK: usize = 256 * 1024;
/// The send run holds about this many bytes of back-to-back frames.
const RUN_BYTES: usize = 64 * 1024;
/// How long the end of a run may take: draining in-flight messages, then the close handshakes.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
const CLOSE_LIMIT: Duration = Duration::from_secs(3);
/// Longest time to wait for all connections to open.
const OPEN_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
struct Args {
    addr: SocketAddr,
    conns: usize,
    size: usize,
    depth: usize,
    duration: Duration,
    warmup: Duration,
    binary: bool,
    idle: bool,
    fanout: bool,
    hold: Duration,
    raw: bool,
    server_pid: Option<u32>,
    label: String,
    src: Vec<IpAddr>,
    open_batch: usize,
    discard_min: usize,
    path: String,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        addr: "127.0.0.1:9001".parse().expect("a valid address"),
        conns: 0,
        size: 16,
        depth: 1,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        binary: false,
        idle: false,
        fanout: false,
        hold: Duration::from_secs(2),
        raw: false,
        server_pid: None,
        label: String::new(),
        src: Vec::new(),
        open_batch: 256,
        discard_min: 16 * 1024,
        path: "/".into(),
    };
    let mut args = std::env::args().skip(1);
    fn num<T: std::str::FromStr>(name: &str, v: Option<String>) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        let v = v.ok_or(format!("{name} needs a value"))?;
        v.parse().map_err(|e| format!("{name} {v:?}: {e}"))
    }
    let secs = |name: &str, v: Option<String>| -> Result<Duration, String> {
        let s: f64 = num(name, v)?;
        Duration::try_from_secs_f64(s).map_err(|e| format!("{name}: {e}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--addr" => a.addr = num("--addr", args.next())?,
            "--conns" => a.conns = num("--conns", args.next())?,
            "--size" => a.size = num("--size", args.next())?,
            "--depth" => a.depth = num("--depth", args.next())?,
            "--duration" => a.duration = secs("--duration", args.next())?,
            "--warmup" => a.warmup = secs("--warmup", args.next())?,
            "--binary" => a.binary = true,
            "--idle" => {
                a.idle = true;
                a.conns = num("--idle", args.next())?;
            }
            "--fanout" => {
                a.fanout = true;
                a.conns = num("--fanout", args.next())?;
            }
            "--hold" => a.hold = secs("--hold", args.next())?,
            "--raw" => a.raw = true,
            "--server-pid" => a.server_pid = Some(num("--server-pid", args.next())?),
            "--label" => a.label = args.next().ok_or("--label needs a value")?,
            "--src" => {
                let list = args.next().ok_or("--src needs a value")?;
                for ip in list.split(',') {
                    a.src
                        .push(ip.parse().map_err(|e| format!("--src {ip:?}: {e}"))?);
                }
            }
            "--open-batch" => a.open_batch = num("--open-batch", args.next())?,
            "--discard-min" => a.discard_min = num("--discard-min", args.next())?,
            "--path" => a.path = args.next().ok_or("--path needs a value")?,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if a.conns == 0 {
        return Err("--conns (or --idle, --fanout) must be at least 1".into());
    }
    if a.idle && a.fanout {
        return Err("--idle and --fanout are different modes".into());
    }
    if !a.idle && !a.fanout && a.depth == 0 {
        return Err("--depth must be at least 1".into());
    }
    if a.open_batch == 0 {
        return Err("--open-batch must be at least 1".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ws-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(report) => {
            eprintln!("ws-load: {}", report.human);
            println!("{}", report.json);
            if report.failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("ws-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Non-blocking `connect` issued, waiting for it to finish.
    Connecting,
    /// Writing the request and reading the 101.
    Handshake,
    /// Frames flow.
    Open,
    /// Our close frame is queued or sent; waiting for the server's.
    Closing,
    /// Over, cleanly or not; the socket is gone.
    Done,
}

/// What the frame currently being received will count as once its payload is skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Incoming {
    /// A data frame; `fin` ends a message.
    Data { fin: bool },
    /// The server's close frame.
    Close,
    /// Ping or pong: not counted.
    Other,
}

/// One client connection.
struct Conn {
    stream: Option<TcpStream>,
    phase: Phase,
    /// The handshake until the 101 has been checked; boxed because it is dropped early.
    handshake: Option<Box<ClientHandshake>>,
    /// Bytes of the request written, then bytes of the response gathered.
    hs_written: usize,
    hs_response: Vec<u8>,
    /// Whole frames owed to the socket, counting the one `partial` bytes into.
    queued: usize,
    partial: usize,
    /// Bytes of our close frame written, once `queued` is drained (`None`: no close due).
    close_written: Option<usize>,
    got_close: bool,
    /// A frame header split across reads.
    header: [u8; MAX_HEADER_LEN],
    header_len: usize,
    /// Payload bytes of the current frame still to skip, and what the frame counts as.
    skip: u64,
    incoming: Incoming,
    /// Payload bytes of the message being received so far (checked against `--size`).
    message_len: u64,
    /// Send times (ns since the run's epoch) of the messages in flight, oldest first.
    in_flight: VecDeque<u64>,
}

impl Conn {
    /// A connection in progress on `stream`, or (`None`) one whose socket could not be made.
    fn new(stream: Option<TcpStream>, handshake: Option<Box<ClientHandshake>>) -> Self {
        Self {
            phase: if stream.is_some() {
                Phase::Connecting
            } else {
                Phase::Done
            },
            stream,
            handshake,
            hs_written: 0,
            hs_response: Vec::new(),
            queued: 0,
            partial: 0,
            close_written: None,
            got_close: false,
            header: [0; MAX_HEADER_LEN],
            header_len: 0,
            skip: 0,
            incoming: Incoming::Other,
            message_len: 0,
            in_flight: VecDeque::new(),
        }
    }
}

/// The bytes every connection sends, built once.
struct Wire {
    /// One masked message frame.
    frame_len: usize,
    /// `frame` repeated back to back, so any run of whole frames starting at a frame boundary
    /// (plus a partial offset) is one contiguous slice of it.
    run: Vec<u8>,
    /// A masked close frame with code 1000.
    close: Vec<u8>,
    /// The payload size replies must have.
    size: u64,
    /// Replies are pushed by the server, not echoes: no send time to match them with.
    pushed: bool,
}

impl Wire {
    fn new(size: usize, binary: bool, pushed: bool) -> Self {
        // One random mask for every frame: servers cannot tell and must accept it, and it lets
        // the frame bytes be built once. The payload is ASCII, so valid UTF-8 for text.
        let key: [u8; 4] = rand::random();
        let payload: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let frame = masked_frame(
            if binary { OpCode::Binary } else { OpCode::Text },
            &payload,
            key,
        );
        let copies = (RUN_BYTES / frame.len()).clamp(1, 4096);
        Self {
            frame_len: frame.len(),
            run: frame.repeat(copies),
            close: masked_frame(OpCode::Close, &1000u16.to_be_bytes(), key),
            size: size as u64,
            pushed,
        }
    }
}

fn masked_frame(opcode: OpCode, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let header = FrameHeader {
        fin: true,
        rsv: 0,
        opcode,
        mask: Some(key),
        payload_len: payload.len() as u64,
    };
    let mut head = [0u8; MAX_HEADER_LEN];
    let n = header.encode(&mut head);
    let mut frame = head[..n].to_vec();
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// Counters for the measured window.
struct Stats {
    msgs: u64,
    bytes: u64,
    /// Bytes read off the sockets (headers included) while measuring, and in how many reads.
    read_bytes: u64,
    reads: u64,
    latency_ns: Histogram<u64>,
    /// Messages whose payload length was not `--size`, unexpected opcodes, protocol errors.
    bad_frames: u64,
}

impl Stats {
    fn new() -> Self {
        Self {
            msgs: 0,
            bytes: 0,
            read_bytes: 0,
            reads: 0,
            // 1 µs .. 100 s at 3 significant figures.
            latency_ns: Histogram::new_with_bounds(1_000, 100_000_000_000, 3)
                .expect("valid histogram bounds"),
            bad_frames: 0,
        }
    }
}

/// How the generator is doing overall.
struct Run {
    args: Args,
    epoch: Instant,
    wire: Wire,
    poll: Poll,
    conns: Vec<Conn>,
    rbuf: Vec<u8>,
    stats: Stats,
    /// Whether payloads are dropped in the kernel (`--discard-min`): headers are then read
    /// alone, so that a read never copies the payload that follows them.
    discard: bool,
    /// Whether completed echoes are answered with a new message.
    sending: bool,
    /// Whether completions count toward `stats`.
    measuring: bool,
    opened: usize,
    opening: usize,
    next_to_open: usize,
    errors: u64,
    /// The first few error texts, for the report.
    error_samples: Vec<String>,
    closed_cleanly: usize,
}

struct Report {
    human: String,
    json: String,
    failed: bool,
}

fn run(args: &Args) -> Result<Report, String> {
    let nofile = raise_nofile_limit();
    if (nofile as usize) < args.conns + 16 {
        return Err(format!(
            "{} connections need more open files than the limit of {nofile} (raise ulimit -n)",
            args.conns
        ));
    }
    let mut run = Run {
        args: args.clone(),
        epoch: Instant::now(),
        wire: Wire::new(args.size, args.binary, args.fanout),
        poll: Poll::new().map_err(|e| format!("epoll: {e}"))?,
        conns: Vec::with_capacity(args.conns),
        rbuf: vec![0; READ_CHUNK],
        stats: Stats::new(),
        discard: args.discard_min > 0 && args.size >= args.discard_min,
        sending: false,
        measuring: false,
        opened: 0,
        opening: 0,
        next_to_open: 0,
        errors: 0,
        error_samples: Vec::new(),
        closed_cleanly: 0,
    };
    let rss_before = args.server_pid.and_then(process_rss_kib);
    let open_start = Instant::now();
    run.open_all()?;
    let open_secs = open_start.elapsed().as_secs_f64();
    eprintln!(
        "ws-load: {} of {} connections open in {open_secs:.2} s ({} errors)",
        run.opened, args.conns, run.errors
    );
    if args.idle {
        run.idle(rss_before, open_secs)
    } else if args.fanout {
        run.fanout(open_secs)
    } else {
        run.load(open_secs)
    }
}

impl Run {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn fail(&mut self, id: usize, why: String) {
        let conn = &mut self.conns[id];
        if conn.phase == Phase::Done {
            return;
        }
        match conn.phase {
            Phase::Connecting | Phase::Handshake => self.opening -= 1,
            Phase::Open | Phase::Closing => self.opened -= 1,
            Phase::Done => {}
        }
        conn.phase = Phase::Done;
        conn.in_flight.clear();
        conn.queued = 0;
        if let Some(mut s) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(format!("conn {id}: {why}"));
        }
    }

    /// Opens every connection, `--open-batch` handshakes at a time, and returns when each is
    /// open or failed.
    fn open_all(&mut self) -> Result<(), String> {
        let url = format!("ws://{}{}", self.args.addr, self.args.path);
        let deadline = Instant::now() + OPEN_LIMIT;
        let mut events = Events::with_capacity(4096);
        loop {
            while self.opening < self.args.open_batch && self.next_to_open < self.args.conns {
                let id = self.next_to_open;
                self.next_to_open += 1;
                let handshake = if self.args.raw {
                    None
                } else {
                    Some(Box::new(
                        ClientHandshake::new(&url, &ClientOptions::new(), rand::random())
                            .map_err(|e| format!("handshake for {url}: {e}"))?,
                    ))
                };
                match self.connect(id) {
                    Ok(stream) => {
                        self.conns.push(Conn::new(Some(stream), handshake));
                        self.opening += 1;
                    }
                    Err(e) => {
                        self.conns.push(Conn::new(None, None));
                        self.errors += 1;
                        if self.error_samples.len() < 5 {
                            self.error_samples.push(format!("conn {id}: connect: {e}"));
                        }
                    }
                }
            }
            if self.opening == 0 && self.next_to_open == self.args.conns {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "only {} of {} connections opened within {OPEN_LIMIT:?}",
                    self.opened, self.args.conns
                ));
            }
            self.poll_once(&mut events, Duration::from_millis(100))?;
        }
    }

    fn connect(&mut self, id: usize) -> io::Result<TcpStream> {
        let addr = self.args.addr;
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if !self.args.src.is_empty() {
            let src = self.args.src[id % self.args.src.len()];
            // Let connect() pick the port for the whole 4-tuple instead of bind() reserving
            // one per source address: otherwise 10,000 connections could run out of ports.
            set_bind_no_port(&socket);
            socket.bind(&SocketAddr::new(src, 0).into())?;
        }
        match socket.connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let mut stream = TcpStream::from_std(socket.into());
        self.poll.registry().register(
            &mut stream,
            Token(id),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(stream)
    }

    /// One `epoll_wait` and the work it reports.
    fn poll_once(&mut self, events: &mut Events, timeout: Duration) -> Result<(), String> {
        match self.poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(format!("epoll_wait: {e}")),
        }
        for event in events.iter() {
            let id = event.token().0;
            if let Err(why) = self.service(id) {
                self.fail(id, why);
            }
        }
        Ok(())
    }

    /// Drives one connection as far as its socket allows.
    fn service(&mut self, id: usize) -> Result<(), String> {
        loop {
            match self.conns[id].phase {
                Phase::Done => return Ok(()),
                Phase::Connecting => {
                    let conn = &mut self.conns[id];
                    let stream = conn.stream.as_ref().expect("a connecting socket");
                    if let Some(e) = stream.take_error().map_err(|e| e.to_string())? {
                        return Err(format!("connect: {e}"));
                    }
                    match stream.peer_addr() {
                        Ok(_) => {}
                        // Not connected yet: wait for the writable edge.
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => return Ok(()),
                        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => return Ok(()),
                        Err(e) => return Err(format!("connect: {e}")),
                    }
                    if conn.handshake.is_some() {
                        conn.phase = Phase::Handshake;
                    } else {
                        self.now_open(id);
                    }
                }
                Phase::Handshake => {
                    if !self.handshake_step(id)? {
                        return Ok(());
                    }
                }
                Phase::Open | Phase::Closing => return self.pump(id),
            }
        }
    }

    /// Writes the request and reads the reply; `Ok(true)` once the connection is open.
    fn handshake_step(&mut self, id: usize) -> Result<bool, String> {
        let conn = &mut self.conns[id];
        let hs = conn.handshake.as_ref().expect("a handshake");
        let stream = conn.stream.as_mut().expect("a socket");
        let request = hs.request_bytes();
        while conn.hs_written < request.len() {
            match stream.write(&request[conn.hs_written..]) {
                Ok(n) => conn.hs_written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("writing the request: {e}")),
            }
        }
        let mut chunk = [0u8; 2048];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) => return Err("the server closed during the handshake".into()),
                Ok(n) => conn.hs_response.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("reading the response: {e}")),
            }
            match hs.read_response(&conn.hs_response) {
                Ok(None) if conn.hs_response.len() > MAX_RESPONSE => {
                    return Err("the response head is too long".into())
                }
                Ok(None) => {}
                Ok(Some((_, head_len))) => {
                    let rest = conn.hs_response.split_off(head_len);
                    conn.hs_response = Vec::new();
                    conn.handshake = None;
                    self.now_open(id);
                    if !rest.is_empty() {
                        let now = self.now_ns();
                        self.on_bytes(id, &rest, now)?;
                    }
                    return Ok(true);
                }
                Err(e) => return Err(format!("handshake refused: {e}")),
            }
        }
        Ok(false)
    }

    fn now_open(&mut self, id: usize) {
        self.conns[id].phase = Phase::Open;
        self.opening -= 1;
        self.opened += 1;
    }

    /// Reads until the socket is empty, then writes what is owed.
    fn pump(&mut self, id: usize) -> Result<(), String> {
        loop {
            let conn = &mut self.conns[id];
            let stream = conn.stream.as_mut().expect("a socket");
            if self.discard && conn.skip > 0 && conn.header_len == 0 {
                let want = conn.skip.min(self.rbuf.len() as u64) as usize;
                match discard(stream, &mut self.rbuf[..want]) {
                    Ok(0) => return self.on_eof(id),
                    Ok(n) => {
                        let now = self.now_ns();
                        self.on_discarded(id, n, now)?;
                        if n < want {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("recv: {e}")),
                }
                continue;
            }
            let len = if self.discard {
                MAX_HEADER_LEN
            } else {
                self.rbuf.len()
            };
            match stream.read(&mut self.rbuf[..len]) {
                Ok(0) => return self.on_eof(id),
                Ok(n) => {
                    let now = self.now_ns();
                    if self.measuring {
                        self.stats.read_bytes += n as u64;
                        self.stats.reads += 1;
                    }
                    let rbuf = std::mem::take(&mut self.rbuf);
                    let result = self.on_bytes(id, &rbuf[..n], now);
                    self.rbuf = rbuf;
                    result?;
                    if n < len {
                        // A short read: the socket is (very likely) empty. Skip the read that
                        // would only say EAGAIN; the next edge brings us back.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        self.flush(id)
    }

    /// The server closed its side: the end of a clean close handshake, or an error.
    fn on_eof(&mut self, id: usize) -> Result<(), String> {
        let conn = &self.conns[id];
        if conn.phase == Phase::Closing && conn.got_close {
            self.finish_clean(id);
            return Ok(());
        }
        Err("the server closed the connection".into())
    }

    /// `n` payload bytes were dropped in the kernel.
    fn on_discarded(&mut self, id: usize, n: usize, now: u64) -> Result<(), String> {
        let conn = &mut self.conns[id];
        conn.skip -= n as u64;
        if conn.skip == 0 && end_frame(conn, &self.wire, &mut self.stats, self.measuring, now)? {
            self.queue_more(id, 1, now);
        }
        Ok(())
    }

    /// `completed` echoes came back: while sending, each is answered with a new message.
    fn queue_more(&mut self, id: usize, completed: usize, now: u64) {
        let conn = &mut self.conns[id];
        if completed > 0 && self.sending && conn.phase == Phase::Open {
            conn.queued += completed;
            conn.in_flight.extend(std::iter::repeat_n(now, completed));
        }
    }

    /// Writes queued frames, then a due close frame, until done or the socket is full.
    fn flush(&mut self, id: usize) -> Result<(), String> {
        let conn = &mut self.conns[id];
        let Some(stream) = conn.stream.as_mut() else {
            return Ok(());
        };
        let frame_len = self.wire.frame_len;
        while conn.queued > 0 {
            let owed = conn.queued * frame_len - conn.partial;
            let end = self.wire.run.len().min(conn.partial + owed);
            match stream.write(&self.wire.run[conn.partial..end]) {
                Ok(n) => {
                    let done = conn.partial + n;
                    conn.queued -= done / frame_len;
                    conn.partial = done % frame_len;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("write: {e}")),
            }
        }
        if let Some(written) = conn.close_written.as_mut() {
            while *written < self.wire.close.len() {
                match stream.write(&self.wire.close[*written..]) {
                    Ok(n) => *written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("write close: {e}")),
                }
            }
        }
        Ok(())
    }

    /// Parses reply frames at the header level, skipping payloads; every whole message pops
    /// its send time and, while sending, queues the next one.
    fn on_bytes(&mut self, id: usize, mut data: &[u8], now: u64) -> Result<(), String> {
        let mut completed = 0usize;
        let conn = &mut self.conns[id];
        loop {
            if conn.skip > 0 {
                let take = conn.skip.min(data.len() as u64);
                conn.skip -= take;
                data = &data[take as usize..];
                if conn.skip > 0 {
                    break;
                }
                if end_frame(conn, &self.wire, &mut self.stats, self.measuring, now)? {
                    completed += 1;
                }
                continue;
            }
            if data.is_empty() {
                break;
            }
            // The header: whole in `data`, or (rarely) split across reads into `conn.header`.
            let parsed = if conn.header_len == 0 {
                match FrameHeader::parse(data).map_err(|e| e.to_string())? {
                    Some((h, n)) => {
                        data = &data[n..];
                        h
                    }
                    None => {
                        conn.header[..data.len()].copy_from_slice(data);
                        conn.header_len = data.len();
                        break;
                    }
                }
            } else {
                let had = conn.header_len;
                let take = (MAX_HEADER_LEN - had).min(data.len());
                conn.header[had..had + take].copy_from_slice(&data[..take]);
                match FrameHeader::parse(&conn.header[..had + take]).map_err(|e| e.to_string())? {
                    Some((h, n)) => {
                        data = &data[n - had..];
                        conn.header_len = 0;
                        h
                    }
                    None => {
                        conn.header_len = had + take;
                        break;
                    }
                }
            };
            conn.incoming = match parsed.opcode {
                OpCode::Text | OpCode::Binary | OpCode::Continuation => {
                    Incoming::Data { fin: parsed.fin }
                }
                OpCode::Close => Incoming::Close,
                OpCode::Ping | OpCode::Pong => Incoming::Other,
            };
            conn.skip = parsed.payload_len;
            if matches!(conn.incoming, Incoming::Data { .. }) {
                conn.message_len += parsed.payload_len;
            }
            if conn.skip == 0 && end_frame(conn, &self.wire, &mut self.stats, self.measuring, now)?
            {
                completed += 1;
            }
        }
        self.queue_more(id, completed, now);
        Ok(())
    }

    fn finish_clean(&mut self, id: usize) {
        let conn = &mut self.conns[id];
        if let Some(mut s) = conn.stream.take() {
            let _ = self.poll.registry().deregister(&mut s);
        }
        conn.phase = Phase::Done;
        self.opened -= 1;
        self.closed_cleanly += 1;
    }

    /// Load mode: the measured run.
    fn load(mut self, open_secs: f64) -> Result<Report, String> {
        let mut events = Events::with_capacity(4096);
        let depth = self.args.depth;
        let start = self.now_ns();
        self.sending = true;
        for id in 0..self.conns.len() {
            if self.conns[id].phase != Phase::Open {
                continue;
            }
            let conn = &mut self.conns[id];
            conn.queued += depth;
            conn.in_flight.extend(std::iter::repeat_n(start, depth));
            if let Err(why) = self.flush(id) {
                self.fail(id, why);
            }
        }
        let t0 = Instant::now();
        let measure_from = t0 + self.args.warmup;
        let measure_to = measure_from + self.args.duration;
        self.poll_until(&mut events, measure_from, |_| false)?;

        self.measuring = true;
        self.stats = Stats::new();
        let errors_before = self.errors;
        let (gen_cpu0, srv_cpu0, sys0) =
            (self_cpu_seconds(), self.server_cpu(), system_busy_seconds());
        let wall0 = Instant::now();
        self.poll_until(&mut events, measure_to, |_| false)?;
        let secs = wall0.elapsed().as_secs_f64();
        let (gen_cpu1, srv_cpu1, sys1) =
            (self_cpu_seconds(), self.server_cpu(), system_busy_seconds());
        self.measuring = false;
        self.sending = false;
        let errors_in_window = self.errors - errors_before;

        // Let what is in flight come back, so no server sees a connection vanish mid-message.
        let drain_to = Instant::now() + DRAIN_LIMIT;
        self.poll_until(&mut events, drain_to, |run| {
            run.conns.iter().all(|c| c.in_flight.is_empty())
        })?;
        let closed = self.close_all(&mut events)?;

        let s = &self.stats;
        let msgs_per_s = s.msgs as f64 / secs;
        let mb_per_s = s.bytes as f64 / secs / 1e6;
        let q = |p: f64| s.latency_ns.value_at_quantile(p) as f64 / 1e3;
        let (p50, p99, p999, max) = (q(0.5), q(0.99), q(0.999), s.latency_ns.max() as f64 / 1e3);
        let gen_cpu = (gen_cpu1 - gen_cpu0) / secs * 100.0;
        let srv_cpu = match (srv_cpu0, srv_cpu1) {
            (Some(a), Some(b)) => Some((b - a) / secs * 100.0),
            _ => None,
        };
        // Busy time nobody here was charged for, in % of one core: other processes (the machine
        // is shared) and softirq work the kernel charges to no task.
        let other_cpu = match (sys0, sys1) {
            (Some(a), Some(b)) => {
                let total = (b - a) / secs * 100.0;
                Some((total - gen_cpu - srv_cpu.unwrap_or(0.0)).max(0.0))
            }
            _ => None,
        };
        let a = &self.args;
        let human = format!(
            "{label}{conns} conns x {size} B {kind}, depth {depth}: {msgs_per_s:.0} msgs/s, \
             {mb_per_s:.1} MB/s, p50 {p50:.0} us, p99 {p99:.0} us, p99.9 {p999:.0} us; \
             errors {errors} (bad frames {bad}); cpu: generator {gen_cpu:.0}%{srv}{other}; \
             {closed} of {opened} closed cleanly{samples}",
            label = if a.label.is_empty() {
                String::new()
            } else {
                format!("[{}] ", a.label)
            },
            conns = a.conns,
            size = a.size,
            kind = if a.binary { "binary" } else { "text" },
            errors = self.errors,
            bad = s.bad_frames,
            srv = srv_cpu.map_or(String::new(), |c| format!(", server {c:.0}%")),
            other = other_cpu.map_or(String::new(), |c| format!(", rest {c:.0}%")),
            opened = a.conns,
            samples = self.samples(),
        );
        let mut json = String::new();
        let _ = write!(
            json,
            "{{\"mode\":\"load\",\"label\":{label},\"addr\":\"{addr}\",\"raw\":{raw},\
             \"conns\":{conns},\"size\":{size},\"depth\":{depth},\"binary\":{binary},\
             \"seconds\":{secs:.3},\"open_s\":{open_secs:.3},\"msgs\":{msgs},\
             \"msgs_per_s\":{msgs_per_s:.0},\"mb_per_s\":{mb_per_s:.2},\"p50_us\":{p50:.1},\
             \"p99_us\":{p99:.1},\"p999_us\":{p999:.1},\"max_us\":{max:.1},\"errors\":{errors},\
             \"errors_in_window\":{errors_in_window},\"bad_frames\":{bad},\
             \"gen_cpu_pct\":{gen_cpu:.1},\"server_cpu_pct\":{srv},\"other_cpu_pct\":{other},\"closed_cleanly\":{closed}}}",
            label = json_string(&a.label),
            addr = a.addr,
            raw = a.raw,
            conns = a.conns,
            size = a.size,
            binary = a.binary,
            msgs = s.msgs,
            errors = self.errors,
            bad = s.bad_frames,
            srv = srv_cpu.map_or("null".into(), |c| format!("{c:.1}")),
            other = other_cpu.map_or("null".into(), |c| format!("{c:.1}")),
        );
        Ok(Report {
            human,
            json,
            failed: self.errors > 0 || s.bad_frames > 0 || s.msgs == 0,
        })
    }

    /// Idle mode: all open, hold, close.
    fn idle(mut self, rss_before: Option<u64>, open_secs: f64) -> Result<Report, String> {
        let mut events = Events::with_capacity(4096);
        let open = self.opened;
        // Give the server a moment to finish whatever the last handshakes started, then read
        // its memory once.
        let settle = Instant::now() + Duration::from_millis(500);
        self.poll_until(&mut events, settle, |_| false)?;
        let rss_after = self.args.server_pid.and_then(process_rss_kib);
        eprintln!(
            "ws-load: all {open} connections open; holding {:?}",
            self.args.hold
        );
        let hold_to = Instant::now() + self.args.hold;
        self.poll_until(&mut events, hold_to, |_| false)?;
        let still_open = self.opened;
        let closed = self.close_all(&mut events)?;

        let per_conn = match (rss_before, rss_after) {
            (Some(b), Some(a)) if open > 0 => Some((a as f64 - b as f64) * 1024.0 / open as f64),
            _ => None,
        };
        let a = &self.args;
        let opt = |v: Option<u64>| v.map_or("null".into(), |v| v.to_string());
        let human = format!(
            "{label}{open} of {n} idle connections open in {open_secs:.2} s, {still_open} still \
             open after {hold:?}; server VmRSS {b} -> {af} KiB = {pc} bytes per connection; \
             errors {errors}; {closed} closed cleanly{samples}",
            label = if a.label.is_empty() {
                String::new()
            } else {
                format!("[{}] ", a.label)
            },
            n = a.conns,
            hold = a.hold,
            b = opt(rss_before),
            af = opt(rss_after),
            pc = per_conn.map_or("?".into(), |v| format!("{v:.0}")),
            errors = self.errors,
            samples = self.samples(),
        );
        let json = format!(
            "{{\"mode\":\"idle\",\"label\":{label},\"addr\":\"{addr}\",\"conns\":{n},\
             \"open\":{open},\"still_open\":{still_open},\"open_s\":{open_secs:.3},\
             \"rss_before_kib\":{b},\"rss_after_kib\":{af},\"rss_per_conn_bytes\":{pc},\
             \"errors\":{errors},\"closed_cleanly\":{closed}}}",
            label = json_string(&a.label),
            addr = a.addr,
            n = a.conns,
            b = opt(rss_before),
            af = opt(rss_after),
            pc = per_conn.map_or("null".into(), |v| format!("{v:.0}")),
            errors = self.errors,
        );
        Ok(Report {
            human,
            json,
            failed: self.errors > 0 || open < a.conns,
        })
    }

    /// Fan-out mode: the server pushes to every connection, which only reads.
    fn fanout(mut self, open_secs: f64) -> Result<Report, String> {
        let mut events = Events::with_capacity(4096);
        let measure_from = Instant::now() + self.args.warmup;
        self.poll_until(&mut events, measure_from, |_| false)?;

        self.measuring = true;
        self.stats = Stats::new();
        let errors_before = self.errors;
        let (gen_cpu0, srv_cpu0, sys0) =
            (self_cpu_seconds(), self.server_cpu(), system_busy_seconds());
        let wall0 = Instant::now();
        let measure_to = wall0 + self.args.duration;
        // Messages per second of the window (the last entry may cover less than a second).
        let mut per_second = Vec::new();
        let (mut tick, mut counted) = (wall0, 0);
        while tick < measure_to {
            tick = (tick + Duration::from_secs(1)).min(measure_to);
            self.poll_until(&mut events, tick, |_| false)?;
            per_second.push(self.stats.msgs - counted);
            counted = self.stats.msgs;
        }
        let secs = wall0.elapsed().as_secs_f64();
        let (gen_cpu1, srv_cpu1, sys1) =
            (self_cpu_seconds(), self.server_cpu(), system_busy_seconds());
        self.measuring = false;
        let errors_in_window = self.errors - errors_before;
        let open_at_end = self.opened;
        let closed = self.close_all(&mut events)?;

        let s = &self.stats;
        let a = &self.args;
        // What one message is on the wire from the server: an unmasked header and the payload.
        let header = match a.size {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        };
        let frame_len = (header + a.size) as f64;
        let per_s = s.msgs as f64 / secs;
        let by_bytes_per_s = s.read_bytes as f64 / frame_len / secs;
        let mb_per_s = s.read_bytes as f64 / secs / 1e6;
        // How many messages arrive together: the batching the server achieved, as seen here.
        let msgs_per_read = s.msgs as f64 / s.reads.max(1) as f64;
        let gen_cpu = (gen_cpu1 - gen_cpu0) / secs * 100.0;
        let srv_cpu = match (srv_cpu0, srv_cpu1) {
            (Some(a), Some(b)) => Some((b - a) / secs * 100.0),
            _ => None,
        };
        let other_cpu = match (sys0, sys1) {
            (Some(a), Some(b)) => {
                let total = (b - a) / secs * 100.0;
                Some((total - gen_cpu - srv_cpu.unwrap_or(0.0)).max(0.0))
            }
            _ => None,
        };
        let series: Vec<String> = per_second.iter().map(|n| n.to_string()).collect();
        let human = format!(
            "{label}{open_at_end} of {conns} subscribers x {size} B: {per_s:.0} deliveries/s \
             ({by_bytes_per_s:.0}/s by bytes read, {mb_per_s:.1} MB/s on the wire, \
             {msgs_per_read:.1} messages per read); \
             per second [{series}]; errors {errors} (bad frames {bad}); cpu: reader \
             {gen_cpu:.0}%{srv}{other}; {closed} closed cleanly{samples}",
            label = if a.label.is_empty() {
                String::new()
            } else {
                format!("[{}] ", a.label)
            },
            conns = a.conns,
            size = a.size,
            series = series.join(" "),
            errors = self.errors,
            bad = s.bad_frames,
            srv = srv_cpu.map_or(String::new(), |c| format!(", server {c:.0}%")),
            other = other_cpu.map_or(String::new(), |c| format!(", rest {c:.0}%")),
            samples = self.samples(),
        );
        let json = format!(
            "{{\"mode\":\"fanout\",\"label\":{label},\"addr\":\"{addr}\",\"conns\":{conns},\
             \"open_at_end\":{open_at_end},\"size\":{size},\"seconds\":{secs:.3},\
             \"open_s\":{open_secs:.3},\"msgs\":{msgs},\"read_bytes\":{read},\
             \"deliveries_per_s\":{per_s:.0},\"deliveries_per_s_by_bytes\":{by_bytes_per_s:.0},\
             \"mb_per_s\":{mb_per_s:.2},\"reads\":{reads},\"msgs_per_read\":{msgs_per_read:.1},\
             \"per_second\":[{series}],\"errors\":{errors},\
             \"errors_in_window\":{errors_in_window},\"bad_frames\":{bad},\
             \"gen_cpu_pct\":{gen_cpu:.1},\"server_cpu_pct\":{srv},\"other_cpu_pct\":{other},\
             \"closed_cleanly\":{closed}}}",
            label = json_string(&a.label),
            addr = a.addr,
            conns = a.conns,
            size = a.size,
            msgs = s.msgs,
            read = s.read_bytes,
            reads = s.reads,
            series = series.join(","),
            errors = self.errors,
            bad = s.bad_frames,
            srv = srv_cpu.map_or("null".into(), |c| format!("{c:.1}")),
            other = other_cpu.map_or("null".into(), |c| format!("{c:.1}")),
        );
        Ok(Report {
            human,
            json,
            failed: self.errors > 0 || s.bad_frames > 0 || s.msgs == 0,
        })
    }

    fn samples(&self) -> String {
        if self.error_samples.is_empty() {
            String::new()
        } else {
            format!("; first errors: {}", self.error_samples.join("; "))
        }
    }

    fn server_cpu(&self) -> Option<f64> {
        self.args.server_pid.and_then(process_cpu_seconds)
    }

    /// Polls until `deadline` or until `done` says so.
    fn poll_until(
        &mut self,
        events: &mut Events,
        deadline: Instant,
        done: impl Fn(&Run) -> bool,
    ) -> Result<(), String> {
        loop {
            let now = Instant::now();
            if now >= deadline || done(self) {
                return Ok(());
            }
            self.poll_once(events, (deadline - now).min(Duration::from_millis(50)))?;
        }
    }

    /// Sends a close frame on every open connection and waits (bounded) for the replies; the
    /// number of clean close handshakes is returned. In raw mode there is no close handshake
    /// (tcp-echo echoes our close frame, which counts as its reply).
    fn close_all(&mut self, events: &mut Events) -> Result<usize, String> {
        for id in 0..self.conns.len() {
            let conn = &mut self.conns[id];
            if conn.phase != Phase::Open {
                continue;
            }
            conn.phase = Phase::Closing;
            conn.close_written = Some(0);
            if let Err(why) = self.flush(id) {
                self.fail(id, why);
            }
        }
        let deadline = Instant::now() + CLOSE_LIMIT;
        self.poll_until(events, deadline, |run| {
            run.conns
                .iter()
                .all(|c| c.phase != Phase::Closing || c.got_close)
        })?;
        for id in 0..self.conns.len() {
            let conn = &self.conns[id];
            match conn.phase {
                Phase::Closing if conn.got_close => self.finish_clean(id),
                Phase::Open | Phase::Closing | Phase::Connecting | Phase::Handshake => {
                    self.fail(id, "no close reply".into())
                }
                Phase::Done => {}
            }
        }
        Ok(self.closed_cleanly)
    }
}

/// A frame's payload has been skipped; `Ok(true)` when that completed a message.
fn end_frame(
    conn: &mut Conn,
    wire: &Wire,
    stats: &mut Stats,
    measuring: bool,
    now: u64,
) -> Result<bool, String> {
    match conn.incoming {
        Incoming::Data { fin: true } if wire.pushed => {
            let len = std::mem::take(&mut conn.message_len);
            if measuring {
                if len != wire.size {
                    stats.bad_frames += 1;
                }
                stats.msgs += 1;
                stats.bytes += len;
            }
            Ok(false)
        }
        Incoming::Data { fin: true } => {
            let len = std::mem::take(&mut conn.message_len);
            let Some(sent) = conn.in_flight.pop_front() else {
                return Err("an echo of a message that was never sent".into());
            };
            if measuring {
                if len != wire.size {
                    stats.bad_frames += 1;
                }
                stats.msgs += 1;
                stats.bytes += len;
                stats.latency_ns.saturating_record(now.saturating_sub(sent));
            }
            Ok(true)
        }
        Incoming::Data { fin: false } | Incoming::Other => Ok(false),
        Incoming::Close => {
            if conn.phase != Phase::Closing {
                return Err("the server sent a close frame".into());
            }
            conn.got_close = true;
            Ok(false)
        }
    }
}

/// Drops up to `buf.len()` bytes from the socket's receive queue without copying them
/// (`MSG_TRUNC` on a TCP socket: the kernel skips the copy; `buf` only bounds the count).
fn discard(stream: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    // SAFETY: `buf` is live and writable for its whole length (the kernel does not even write
    // to it with MSG_TRUNC); the result is checked before use.
    let n = unsafe {
        libc::recv(
            stream.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `IP_BIND_ADDRESS_NO_PORT`: defer the port choice from bind() to connect().
fn set_bind_no_port(socket: &Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt reads one c_int from a live local.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
