//! `ringsock-load`: a WebSocket load generator built on ringsock's own client role — a
//! [`ClientPool`] on a client-only runtime of `--shards` shards (default 1) — with four
//! scenarios:
//!
//! - `echo`: N connections each keep `--depth` messages of `--size` bytes in flight against an
//!   echo server (one more per echo); messages/s, MB/s (payload bytes echoed, MB = 10^6) and
//!   round-trip latency percentiles (p50, p90, p99, p99.9, max; from queueing a message to the
//!   shard turn its echo arrives in).
//! - `fanout`: N subscribers to a server that pushes to all of them (`ringsock-fanout`); counts
//!   what arrives: messages and bytes per second, each second's count.
//! - `idle`: opens N connections and holds them; with `--server-pid`, the server's `VmRSS`
//!   growth per connection at the end of the hold (the idle steady state).
//! - `connect`: handshakes per second: each of `--concurrency` slots connects, gets its 101,
//!   closes (1000), and dials again at once; also the dial-to-101 latency.
//!
//! `--deflate` offers permessage-deflate (`--deflate-takeover` with context takeover), and
//! `--payload json` sends JSON-like text that differs from message to message, so that
//! compression ratios are real ones. The echo report then adds the bytes on the wire per
//! message: the TCP payload bytes the generator's sockets sent and received over the measured
//! window (`TCP_INFO` of every socket, [`process_tcp_bytes`]) over the messages, beside the
//! payload bytes.
//!
//! It is meant not to be the bottleneck, so by default it does what a full client does only
//! where the server can tell: every handshake is real and every frame is parsed and checked,
//! but the message is framed and masked once ([`PreparedMessage`]: its bytes are queued as they
//! are, shared from 1 KiB up) and received payloads are skipped ([`Ctx::discard_payloads`]:
//! only their lengths are checked). `--strict` turns both off. With an extension in use
//! (permessage-deflate) neither shortcut applies: each message is compressed per connection as
//! any client would, each echo is inflated and compared byte for byte with what was sent. Latency timestamps are the shard
//! loop's turn times (no clock read per message), and each shard keeps its own histogram,
//! merged into the report every 100 ms.
//!
//! Every run is bounded: opening by 60 s, the run by `--warmup` + `--duration` (or `--hold`),
//! draining and closing by a few seconds, and a watchdog ends the process if all that is
//! overrun. A progress line goes to stderr once a second; the report to stdout, as one JSON
//! line with `--json`. `--server-pid` adds the server's CPU use (or memory); the generator's
//! own CPU use is always reported, so a run shows which side was the limit.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use ringsock_actors::{
    BackendKind, ClientOptions, ClientPool, CloseCode, Closed, Ctx, DataKind, DeflateOptions,
    DialError, Handler, Message, PoolStats, PreparedMessage, Reconnect, Server, ShutdownReport,
    Utf8Bytes,
};
use ringsock_engine::reactor::PoolConfig;
use ringsock_tools::{
    json, json_string, process_cpu_seconds, process_rss_kib, process_tcp_bytes, raise_nofile_limit,
    self_cpu_seconds, system_busy_seconds,
};

const USAGE: &str = "usage:
  ringsock-load echo    --url URL --conns N --size BYTES --depth D [--binary] --duration SECS
  ringsock-load fanout  --url URL --conns N [--size BYTES] --duration SECS
  ringsock-load idle    --url URL --conns N --hold SECS [--exchange N --size BYTES]
  ringsock-load connect --url URL --concurrency N --duration SECS
options:
  --url ws://HOST:PORT/PATH   where to connect (or --addr IP:PORT [--path /PATH])
  --warmup SECS       echo, fanout, connect: run this long before measuring (default 1)
  --shards N          the generator's own shard threads (default 1)
  --backend B         auto|io_uring|epoll (default auto)
  --src IP[,IP...]    source addresses to spread connections over (default: the kernel's pick)
  --open-batch N      handshakes in progress at once while opening (default 256)
  --rate N            dials per second at most (default: no limit)
  --buffers N --buffer-size BYTES
                      receive pool per shard (default: the runtime's, 512 x 65536; echo of
                      4 KiB or more: 64 buffers)
  --server-pid PID    report the server's CPU use (echo, fanout, connect) or VmRSS growth (idle)
  --label TEXT        copied into the report
  --json              the report as one JSON line on stdout (a human line goes to stderr)
  --quiet             no progress lines
  --strict            send and receive as an ordinary client: a fresh masking key and a copy
                      per message sent, payloads kept and text checked for UTF-8 on receipt
                      (default: the message is framed and masked once and sent as is, and
                      received payloads are skipped, only their lengths checked)
  --payload P         fill: the letters a-z over and over, one message for all (default);
                      json: JSON-like text, a different message each time (sequence number,
                      timestamp, fields from small vocabularies; at least 64 bytes)
  --deflate           offer permessage-deflate without context takeover (the engine's default:
                      each message compressed on its own); echoes are inflated and compared
  --deflate-takeover  offer it with context takeover both ways (implies --deflate)
  --deflate-window B  the largest window to compress with and to ask of the server (9-15)
  --exchange N        idle: each connection first sends N messages of --size bytes, one echo at
                      a time, then idles; memory is read after all have finished (default 0)";

/// Longest time to wait for all connections to open.
const OPEN_LIMIT: Duration = Duration::from_secs(60);
/// How long in-flight echoes get to come back before the connections close.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);
/// The close handshakes' grace at the end.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// Latency histogram bounds: 1 µs .. 100 s at 3 significant figures.
const HIST_LOW_NS: u64 = 1_000;
const HIST_HIGH_NS: u64 = 100_000_000_000;
/// How often a shard hands its latency samples to the report.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Echo,
    Fanout,
    Idle,
    Connect,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Echo => "echo",
            Mode::Fanout => "fanout",
            Mode::Idle => "idle",
            Mode::Connect => "connect",
        }
    }
}

#[derive(Clone, Debug)]
struct Args {
    mode: Mode,
    url: String,
    conns: usize,
    size: usize,
    depth: usize,
    binary: bool,
    duration: Duration,
    warmup: Duration,
    hold: Duration,
    shards: usize,
    backend: BackendKind,
    src: Vec<IpAddr>,
    open_batch: usize,
    rate: Option<f64>,
    buffers: Option<u16>,
    buffer_size: Option<u32>,
    server_pid: Option<u32>,
    label: String,
    json: bool,
    quiet: bool,
    strict: bool,
    /// `--payload json`: JSON-like messages, each different.
    json_payload: bool,
    /// The permessage-deflate offer, if any.
    deflate: Option<DeflateOptions>,
    /// ... and whether it asks for context takeover.
    deflate_takeover: bool,
    exchange: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = std::env::args().skip(1).peekable();
    let mode = match args.next().as_deref() {
        Some("echo") => Mode::Echo,
        Some("fanout") => Mode::Fanout,
        Some("idle") => Mode::Idle,
        Some("connect") => Mode::Connect,
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return Ok(None);
        }
        Some(other) => return Err(format!("unknown scenario {other:?}")),
        None => return Err("which scenario: echo, fanout, idle or connect?".into()),
    };
    let mut a = Args {
        mode,
        url: String::new(),
        conns: 0,
        size: 16,
        depth: 1,
        binary: false,
        duration: Duration::from_secs(5),
        warmup: Duration::from_secs(1),
        hold: Duration::from_secs(2),
        shards: 1,
        backend: BackendKind::Auto,
        src: Vec::new(),
        open_batch: 256,
        rate: None,
        buffers: None,
        buffer_size: None,
        server_pid: None,
        label: String::new(),
        json: false,
        quiet: false,
        strict: false,
        json_payload: false,
        deflate: None,
        deflate_takeover: false,
        exchange: 0,
    };
    let (mut deflate, mut takeover, mut window) = (false, false, None::<u8>);
    let mut addr: Option<String> = None;
    let mut path = "/".to_owned();
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
            "--url" => a.url = args.next().ok_or("--url needs a value")?,
            "--addr" => addr = Some(args.next().ok_or("--addr needs a value")?),
            "--path" => path = args.next().ok_or("--path needs a value")?,
            "--conns" | "--concurrency" => a.conns = num(&arg, args.next())?,
            "--size" => a.size = num("--size", args.next())?,
            "--depth" => a.depth = num("--depth", args.next())?,
            "--binary" => a.binary = true,
            "--duration" => a.duration = secs("--duration", args.next())?,
            "--warmup" => a.warmup = secs("--warmup", args.next())?,
            "--hold" => a.hold = secs("--hold", args.next())?,
            "--shards" => a.shards = num("--shards", args.next())?,
            "--backend" => {
                a.backend = match args.next().as_deref() {
                    Some("auto") => BackendKind::Auto,
                    Some("io_uring" | "uring") => BackendKind::IoUring,
                    Some("epoll") => BackendKind::Epoll,
                    other => return Err(format!("--backend: unknown backend {other:?}")),
                }
            }
            "--src" => {
                let list = args.next().ok_or("--src needs a value")?;
                for ip in list.split(',') {
                    a.src
                        .push(ip.parse().map_err(|e| format!("--src {ip:?}: {e}"))?);
                }
            }
            "--open-batch" => a.open_batch = num("--open-batch", args.next())?,
            "--rate" => a.rate = Some(num("--rate", args.next())?),
            "--buffers" => a.buffers = Some(num("--buffers", args.next())?),
            "--buffer-size" => a.buffer_size = Some(num("--buffer-size", args.next())?),
            "--server-pid" => a.server_pid = Some(num("--server-pid", args.next())?),
            "--label" => a.label = args.next().ok_or("--label needs a value")?,
            "--json" => a.json = true,
            "--quiet" => a.quiet = true,
            "--strict" => a.strict = true,
            "--payload" => {
                a.json_payload = match args.next().as_deref() {
                    Some("json") => true,
                    Some("fill") => false,
                    other => return Err(format!("--payload: json or fill, not {other:?}")),
                }
            }
            "--deflate" => deflate = true,
            "--deflate-takeover" => (deflate, takeover) = (true, true),
            "--deflate-window" => window = Some(num("--deflate-window", args.next())?),
            "--exchange" => a.exchange = num("--exchange", args.next())?,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if let Some(addr) = addr {
        if !a.url.is_empty() {
            return Err("--url and --addr are two ways to say the same thing: pick one".into());
        }
        a.url = format!("ws://{addr}{path}");
    }
    if a.url.is_empty() {
        return Err("--url (or --addr) is required".into());
    }
    if a.conns == 0 {
        return Err("--conns (--concurrency for connect) must be at least 1".into());
    }
    if a.mode == Mode::Echo && a.depth == 0 {
        return Err("--depth must be at least 1".into());
    }
    if window.is_some() && !deflate {
        return Err("--deflate-window needs --deflate or --deflate-takeover".into());
    }
    if deflate {
        let mut o = DeflateOptions::new().context_takeover(takeover);
        if let Some(bits) = window {
            o = o.max_window_bits(bits).request_max_window_bits(bits);
        }
        a.deflate = Some(o);
        a.deflate_takeover = takeover;
    }
    if a.json_payload && a.size < json::MIN_SIZE {
        return Err(format!(
            "--payload json needs --size {} or more",
            json::MIN_SIZE
        ));
    }
    if a.exchange > 0 && a.mode != Mode::Idle {
        return Err("--exchange is for the idle scenario".into());
    }
    if a.shards == 0 || a.open_batch == 0 {
        return Err("--shards and --open-batch must be at least 1".into());
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringsock-load: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    watchdog(&args);
    match run(&args) {
        Ok(report) => {
            if args.json {
                eprintln!("ringsock-load: {}", report.human);
                println!("{}", report.json);
            } else {
                println!("{}", report.human);
            }
            if report.failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("ringsock-load: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ends the process if the run overruns every bound it has by far (a stuck shutdown, a wedged
/// server): no benchmark script should ever wait on this generator forever.
fn watchdog(a: &Args) {
    let run = match a.mode {
        Mode::Idle => a.hold,
        _ => a.warmup + a.duration,
    };
    let limit = OPEN_LIMIT + run + DRAIN_LIMIT + CLOSE_GRACE + Duration::from_secs(15);
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        eprintln!("ringsock-load: still running after {limit:?}; giving up");
        std::process::exit(3);
    });
}

// ---- what the handlers share ------------------------------------------------------------------

/// Phases of a run, as handlers see them.
const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const DRAIN: u8 = 2;
const CLOSING: u8 = 3;

/// State every handler of the run reads (and rarely writes).
struct Shared {
    phase: AtomicU8,
    /// The messages connections send, each framed once and sent as is (with an extension in
    /// use, compressed per connection instead). One for `--payload fill`; for `--payload json`
    /// a cycle of distinct ones that each connection walks from its own place.
    prepared: Vec<PreparedMessage>,
    /// ... or, with `--strict`, their payloads, masked afresh for every send.
    payloads: Vec<Bytes>,
    kind: DataKind,
    strict: bool,
    size: usize,
    depth: usize,
    /// Idle: messages each connection exchanges before idling.
    exchange: usize,
    /// Connections whose handshake agreed on permessage-deflate.
    deflated: AtomicU64,
    /// Idle: connections that have finished their exchange.
    exchanged: AtomicU64,
    /// Merged latency samples of all shards.
    hist: Mutex<Histogram<u64>>,
    /// Replies of the wrong size, echoes of nothing, connections that ended early.
    bad_frames: AtomicU64,
    unexpected_closes: AtomicU64,
    /// The first few errors, for the report.
    samples: Mutex<Vec<String>>,
}

impl Shared {
    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    /// Sends message `i` of the run's cycle.
    #[inline]
    fn send<H: Handler>(&self, ctx: &mut Ctx<'_, H>, i: usize) {
        if self.strict {
            ctx.send(self.kind, self.payloads[i].clone());
        } else {
            ctx.send_prepared(&self.prepared[i]);
        }
    }

    /// Where connection `index` starts in the cycle: spread out, so that connections do not
    /// send the same message at the same time.
    fn start(&self, index: usize) -> usize {
        index.wrapping_mul(7919) % self.payloads.len()
    }

    /// The message after `i` in the cycle.
    fn next(&self, i: usize) -> usize {
        if i + 1 == self.payloads.len() {
            0
        } else {
            i + 1
        }
    }

    /// Checks an echo of message `i`: its length always, its bytes when the connection keeps
    /// payloads (`--strict`, or an extension in use: then they are inflated, never skipped).
    fn check_echo(&self, message: &Message, i: usize, kept: bool) {
        let got = message.as_bytes();
        let want = &self.payloads[i];
        if got.len() != want.len() {
            self.bad_frames.fetch_add(1, Ordering::Relaxed);
            self.sample(format!(
                "an echo of {} bytes, {} expected",
                got.len(),
                want.len()
            ));
        } else if kept && got != &want[..] {
            self.bad_frames.fetch_add(1, Ordering::Relaxed);
            self.sample("an echo that differs from the message sent".into());
        }
    }

    /// Notes whether the handshake agreed on permessage-deflate; true if it did.
    fn note_deflate<H: Handler>(&self, ctx: &mut Ctx<'_, H>) -> bool {
        let agreed = ctx.response().is_some_and(|r| {
            r.headers()
                .tokens("sec-websocket-extensions")
                .any(|e| e.trim_start().starts_with("permessage-deflate"))
        });
        if agreed {
            self.deflated.fetch_add(1, Ordering::Relaxed);
        }
        agreed
    }

    fn sample(&self, what: String) {
        let mut s = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() < 5 {
            s.push(what);
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(HIST_LOW_NS, HIST_HIGH_NS, 3).expect("valid histogram bounds")
}

/// A shard's latency samples, merged into [`Shared::hist`] now and then: recording stays a
/// thread-local operation, with no lock or shared cache line per message.
struct Recorder {
    hist: Histogram<u64>,
    dirty: bool,
    /// When to hand the samples over next (a comparison per message, not a subtraction).
    flush_at: Instant,
}

thread_local! {
    static RECORDER: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Records one latency sample (while measuring).
fn record(shared: &Shared, now: Instant, ns: u64) {
    RECORDER.with(|r| {
        let mut r = r.borrow_mut();
        let r = r.get_or_insert_with(|| Recorder {
            hist: histogram(),
            dirty: false,
            flush_at: now + FLUSH_EVERY,
        });
        r.hist.saturating_record(ns);
        r.dirty = true;
        if now >= r.flush_at {
            flush_into(shared, r, now);
        }
    });
}

/// Hands this shard's unflushed samples to the report.
fn flush(shared: &Shared, now: Instant) {
    RECORDER.with(|r| {
        if let Some(r) = r.borrow_mut().as_mut().filter(|r| r.dirty) {
            flush_into(shared, r, now);
        }
    });
}

fn flush_into(shared: &Shared, r: &mut Recorder, now: Instant) {
    let mut hist = shared.hist.lock().unwrap_or_else(|e| e.into_inner());
    let _ = hist.add(&r.hist);
    r.hist.reset();
    r.dirty = false;
    r.flush_at = now + FLUSH_EVERY;
}

// ---- the handlers -----------------------------------------------------------------------------

/// Echo: keeps `depth` messages in flight; each echo is timed, checked and answered with the
/// next message.
struct EchoConn {
    shared: Arc<Shared>,
    /// Send times and cycle positions of the messages in flight, oldest first.
    in_flight: VecDeque<(Instant, usize)>,
    /// The next message of the cycle to send.
    next: usize,
    /// Whether received payloads are kept (so echoes can be compared byte for byte).
    kept: bool,
}

impl EchoConn {
    fn send(&mut self, ctx: &mut Ctx<'_, Self>, now: Instant) {
        let i = self.next;
        self.shared.send(ctx, i);
        self.in_flight.push_back((now, i));
        self.next = self.shared.next(i);
    }
}

impl Handler for EchoConn {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        // Skipping payloads has no effect with an extension in use: they are inflated anyway.
        let deflated = self.shared.note_deflate(ctx);
        self.kept = self.shared.strict || deflated;
        if !self.shared.strict {
            ctx.discard_payloads(true);
        }
        if self.shared.phase() > MEASURE {
            return;
        }
        let now = ctx.now();
        for _ in 0..self.shared.depth {
            self.send(ctx, now);
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let now = ctx.now();
        let phase = self.shared.phase();
        let Some((sent, i)) = self.in_flight.pop_front() else {
            self.shared.bad_frames.fetch_add(1, Ordering::Relaxed);
            self.shared
                .sample("an echo of a message that was never sent".into());
            return;
        };
        self.shared.check_echo(&message, i, self.kept);
        if phase == MEASURE {
            let ns = now.saturating_duration_since(sent).as_nanos() as u64;
            record(&self.shared, now, ns);
        } else {
            flush(&self.shared, now);
        }
        if phase <= MEASURE {
            self.send(ctx, now);
        }
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, closed: Closed) {
        flush(&self.shared, ctx.now());
        unexpected_close(&self.shared, &closed);
    }

    fn on_connect_failed(&mut self, error: DialError) {
        self.shared.sample(format!("connect: {error}"));
    }
}

/// A close before the run ends is an error of the run.
fn unexpected_close(shared: &Shared, closed: &Closed) {
    if shared.phase() < CLOSING {
        shared.unexpected_closes.fetch_add(1, Ordering::Relaxed);
        shared.sample(format!(
            "closed by the server: {} {:?}",
            closed.code.0, closed.reason
        ));
    }
}

/// Fan-out subscriber and idle connection: receives, checks sizes, sends nothing (an idle
/// connection with `--exchange` first sends its messages, one echo at a time).
struct Listener {
    shared: Arc<Shared>,
    check_size: bool,
    /// Idle with `--exchange`: messages still to send, the one awaiting its echo, and whether
    /// payloads are kept.
    to_send: usize,
    awaiting: Option<usize>,
    next: usize,
    kept: bool,
}

impl Listener {
    /// Sends the next message of the exchange, or counts the connection as done.
    fn exchange(&mut self, ctx: &mut Ctx<'_, Self>) {
        if self.to_send == 0 {
            self.shared.exchanged.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.to_send -= 1;
        self.shared.send(ctx, self.next);
        self.awaiting = Some(self.next);
        self.next = self.shared.next(self.next);
    }
}

impl Handler for Listener {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let deflated = self.shared.note_deflate(ctx);
        self.kept = self.shared.strict || deflated;
        if !self.shared.strict {
            ctx.discard_payloads(true);
        }
        if self.shared.exchange > 0 {
            self.exchange(ctx);
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        if let Some(i) = self.awaiting.take() {
            self.shared.check_echo(&message, i, self.kept);
            self.exchange(ctx);
            return;
        }
        if self.check_size && message.as_bytes().len() != self.shared.size {
            self.shared.bad_frames.fetch_add(1, Ordering::Relaxed);
            self.shared.sample(format!(
                "a message of {} bytes, {} expected",
                message.as_bytes().len(),
                self.shared.size
            ));
        }
    }

    fn on_close(&mut self, _: &mut Ctx<'_, Self>, closed: Closed) {
        unexpected_close(&self.shared, &closed);
    }

    fn on_connect_failed(&mut self, error: DialError) {
        self.shared.sample(format!("connect: {error}"));
    }
}

/// Connect: times dial → 101, then closes at once; the pool dials the slot again.
struct Churn {
    shared: Arc<Shared>,
    dialled: Instant,
}

impl Handler for Churn {
    type Msg = ();

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let now = ctx.now();
        if self.shared.phase() == MEASURE {
            let ns = now.saturating_duration_since(self.dialled).as_nanos() as u64;
            record(&self.shared, now, ns);
        }
        let _ = ctx.close(CloseCode::NORMAL, "");
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, closed: Closed) {
        flush(&self.shared, ctx.now());
        if closed.code.0 != 1000 {
            unexpected_close(&self.shared, &closed);
        }
    }

    fn on_connect_failed(&mut self, error: DialError) {
        self.shared.sample(format!("connect: {error}"));
    }
}

// ---- the run ----------------------------------------------------------------------------------

/// The payloads to send: the letters a-z over and over (one message for every send), or a
/// cycle of distinct JSON-like messages. The cycle is at least 256 KiB (and 8 messages; at most
/// 4096), eight times the largest DEFLATE window: when a connection comes round to a message
/// again, its earlier copy has long left the compressor's window, so with context takeover
/// each message compresses as a fresh one would, without generating one per send.
fn payloads(a: &Args) -> Vec<Vec<u8>> {
    if !a.json_payload {
        return vec![(0..a.size).map(|i| b'a' + (i % 26) as u8).collect()];
    }
    let count = (256 * 1024usize).div_ceil(a.size).clamp(8, 4096);
    json::messages(count, a.size, 0x5eed)
        .into_iter()
        .map(String::into_bytes)
        .collect()
}

/// The receive pool unless `--buffers` says otherwise: for echoes of 4 KiB and more, 64 buffers
/// instead of the runtime's 512. The io_uring backend hands its buffers out in ring order, so
/// 512 × 64 KiB = 32 MiB cycle through the last-level cache the server shares, and each socket
/// then gets more, smaller receives; with 64 the 16 KiB echo ran 10-20% faster on both sides
/// (the server's time per message fell too). Small echoes and fan-out keep the default: there
/// more sockets deliver per loop turn than 64 buffers would serve.
fn default_buffers(a: &Args) -> Option<u16> {
    (a.mode == Mode::Echo && a.size >= 4096).then_some(64)
}

struct Report {
    human: String,
    json: String,
    failed: bool,
}

/// CPU clocks at one instant: the generator's, the server's, the whole machine's busy time.
#[derive(Clone, Copy)]
struct Clocks {
    at: Instant,
    gen: f64,
    server: Option<f64>,
    machine: Option<f64>,
}

impl Clocks {
    fn now(server_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            gen: self_cpu_seconds(),
            server: server_pid.and_then(process_cpu_seconds),
            machine: system_busy_seconds(),
        }
    }
}

/// CPU use between two readings, in % of one core: the generator, the server, and the rest of
/// the machine (other processes, and softirq work the kernel charges to no task).
struct CpuUse {
    gen: f64,
    server: Option<f64>,
    other: Option<f64>,
}

fn cpu_use(a: &Clocks, b: &Clocks) -> CpuUse {
    let secs = (b.at - a.at).as_secs_f64().max(1e-9);
    let gen = (b.gen - a.gen) / secs * 100.0;
    let server = match (a.server, b.server) {
        (Some(x), Some(y)) => Some((y - x) / secs * 100.0),
        _ => None,
    };
    let other = match (a.machine, b.machine) {
        (Some(x), Some(y)) => Some(((y - x) / secs * 100.0 - gen - server.unwrap_or(0.0)).max(0.0)),
        _ => None,
    };
    CpuUse { gen, server, other }
}

fn run(a: &Args) -> Result<Report, String> {
    let nofile = raise_nofile_limit();
    if (nofile as usize) < a.conns + 64 {
        return Err(format!(
            "{} connections need more open files than the limit of {nofile} (raise ulimit -n)",
            a.conns
        ));
    }
    // Leaked once, so that queueing one costs no reference count: a static `Bytes` clones as a
    // pointer copy.
    let payloads: Vec<Bytes> = payloads(a)
        .into_iter()
        .map(|p| Bytes::from_static(p.leak()))
        .collect();
    let kind = if a.binary {
        DataKind::Binary
    } else {
        DataKind::Text
    };
    let prepared = payloads
        .iter()
        .map(|payload| {
            PreparedMessage::new(match kind {
                DataKind::Binary => Message::Binary(payload.clone()),
                DataKind::Text => Message::Text(
                    Utf8Bytes::try_from_bytes(payload.clone()).expect("the payload is ASCII"),
                ),
            })
        })
        .collect();
    let shared = Arc::new(Shared {
        phase: AtomicU8::new(WARMUP),
        prepared,
        payloads,
        kind,
        strict: a.strict,
        size: a.size,
        depth: a.depth,
        exchange: a.exchange,
        deflated: AtomicU64::new(0),
        exchanged: AtomicU64::new(0),
        hist: Mutex::new(histogram()),
        bad_frames: AtomicU64::new(0),
        unexpected_closes: AtomicU64::new(0),
        samples: Mutex::new(Vec::new()),
    });
    let mut pool_config = PoolConfig::default();
    if let Some(n) = a.buffers.or(default_buffers(a)) {
        pool_config.buffers = n;
    }
    if let Some(n) = a.buffer_size {
        pool_config.buffer_size = n;
    }
    let runtime = Server::builder()
        .shards(a.shards)
        .backend(a.backend)
        .pool(pool_config)
        // Benchmarks pin the whole process with taskset; pinning shards here would undo that.
        .pin_threads(false)
        .start()
        .map_err(|e| format!("cannot start the client runtime: {e}"))?;
    let backend = runtime.backend();
    let mut builder = ClientPool::builder()
        .url(a.url.clone())
        .connections(a.conns)
        .max_connecting(a.open_batch)
        .local_addrs(a.src.iter().copied());
    if let Some(deflate) = &a.deflate {
        builder = builder.options(ClientOptions::new().deflate(deflate.clone()));
    }
    if let Some(rate) = a.rate {
        builder = builder.rate(rate);
    }
    let rss_before = a.server_pid.and_then(process_rss_kib);
    let opened_at = Instant::now();
    let s = shared.clone();
    let pool = match a.mode {
        Mode::Echo => builder.start(runtime, move |slot| EchoConn {
            shared: s.clone(),
            in_flight: VecDeque::with_capacity(s.depth),
            next: s.start(slot.index),
            kept: false,
        }),
        Mode::Fanout | Mode::Idle => {
            let check_size = a.mode == Mode::Fanout;
            builder.start(runtime, move |slot| Listener {
                shared: s.clone(),
                check_size,
                to_send: s.exchange,
                awaiting: None,
                next: s.start(slot.index),
                kept: false,
            })
        }
        Mode::Connect => builder
            // Failures back off; clean closes are dialled again at once.
            .reconnect(
                Reconnect::new(Duration::from_millis(1), Duration::from_millis(100))
                    .after_clean_close(true),
            )
            .start(runtime, move |_| Churn {
                shared: s.clone(),
                dialled: Instant::now(),
            }),
    }
    .map_err(|e| format!("{}: {e}", a.url))?;

    let mut run = Run {
        a,
        shared,
        pool: Some(pool),
        backend,
        progress_from: (Instant::now(), PoolStats::default()),
    };
    if a.mode == Mode::Connect {
        return run.connect();
    }
    // Opening: until every connection is open or has failed.
    let n = a.conns as u64;
    let mut next_line = opened_at + Duration::from_secs(1);
    let all = loop {
        let st = run.pool().stats();
        if st.opened >= n || st.opened + st.failed >= n {
            break true;
        }
        if opened_at.elapsed() > OPEN_LIMIT {
            break false;
        }
        if Instant::now() >= next_line {
            run.progress(&st);
            next_line += Duration::from_secs(1);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let open_secs = opened_at.elapsed().as_secs_f64();
    let st = run.pool().stats();
    eprintln!(
        "ringsock-load: {} of {} connections open in {open_secs:.2} s ({} failed){}",
        st.open,
        a.conns,
        st.failed,
        if all { "" } else { "; giving up on the rest" }
    );
    match a.mode {
        Mode::Echo => run.echo(open_secs),
        Mode::Fanout => run.fanout(open_secs),
        Mode::Idle => run.idle(open_secs, rss_before),
        Mode::Connect => unreachable!("handled above"),
    }
}

struct Run<'a> {
    a: &'a Args,
    shared: Arc<Shared>,
    pool: Option<ClientPool>,
    backend: &'static str,
    /// The last progress line's time and counters.
    progress_from: (Instant, PoolStats),
}

impl Run<'_> {
    fn pool(&self) -> &ClientPool {
        self.pool.as_ref().expect("the pool runs until the end")
    }

    /// Whether the deflate offer asks for context takeover.
    fn takeover(&self) -> bool {
        self.a.deflate.is_some() && self.a.deflate_takeover
    }

    /// One progress line on stderr: connections and message rates since the last one.
    fn progress(&mut self, st: &PoolStats) {
        let now = Instant::now();
        let (t0, s0) = std::mem::replace(&mut self.progress_from, (now, *st));
        if self.a.quiet {
            return;
        }
        let secs = (now - t0).as_secs_f64().max(1e-9);
        let rate = |a: u64, b: u64| (a.saturating_sub(b)) as f64 / secs;
        eprintln!(
            "ringsock-load: open {} connecting {} failed {} closed {} | in {:.0} msg/s {:.1} MB/s | out {:.0} msg/s | opened {:.0}/s",
            st.open,
            st.connecting,
            st.failed,
            st.closed,
            rate(st.messages_in, s0.messages_in),
            rate(st.bytes_in, s0.bytes_in) / 1e6,
            rate(st.messages_out, s0.messages_out),
            rate(st.opened, s0.opened),
        );
    }

    /// Sleeps until `until`, a progress line every second.
    fn run_until(&mut self, until: Instant, mut each_second: impl FnMut(&PoolStats)) {
        let mut tick = Instant::now();
        while tick < until {
            tick = (tick + Duration::from_secs(1)).min(until);
            let now = Instant::now();
            if tick > now {
                std::thread::sleep(tick - now);
            }
            let st = self.pool().stats();
            each_second(&st);
            self.progress(&st);
        }
    }

    /// Stops dialling, closes every connection and stops the runtime.
    fn close(&mut self) -> ShutdownReport {
        self.shared.phase.store(CLOSING, Ordering::Relaxed);
        let pool = self.pool.take().expect("closed once");
        pool.shutdown(CLOSE_GRACE)
    }

    fn errors(&self, st: &PoolStats) -> u64 {
        st.failed
            + self.shared.unexpected_closes.load(Ordering::Relaxed)
            + self.shared.bad_frames.load(Ordering::Relaxed)
    }

    fn samples(&self) -> String {
        let s = self
            .shared
            .samples
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if s.is_empty() {
            String::new()
        } else {
            format!("; first errors: {}", s.join("; "))
        }
    }

    fn label(&self) -> String {
        if self.a.label.is_empty() {
            String::new()
        } else {
            format!("[{}] ", self.a.label)
        }
    }

    /// The JSON fields every report starts with.
    fn json_head(&self) -> String {
        let a = self.a;
        format!(
            "\"mode\":\"{}\",\"label\":{},\"url\":{},\"shards\":{},\"backend\":\"{}\",\"conns\":{}",
            a.mode.name(),
            json_string(&a.label),
            json_string(&a.url),
            a.shards,
            self.backend,
            a.conns
        )
    }

    fn echo(mut self, open_secs: f64) -> Result<Report, String> {
        let a = self.a;
        self.run_until(Instant::now() + a.warmup, |_| {});
        let before = self.pool().stats();
        // The sockets' byte counters next to the message counters they are divided by.
        let tcp0 = process_tcp_bytes();
        let errors_before = self.errors(&before);
        let c0 = Clocks::now(a.server_pid);
        self.shared.phase.store(MEASURE, Ordering::Relaxed);
        self.run_until(c0.at + a.duration, |_| {});
        self.shared.phase.store(DRAIN, Ordering::Relaxed);
        let after = self.pool().stats();
        let tcp1 = process_tcp_bytes();
        let c1 = Clocks::now(a.server_pid);
        let secs = (c1.at - c0.at).as_secs_f64();
        let errors_in_window = self.errors(&after) - errors_before;
        // Let what is in flight come back, so no server sees a connection vanish mid-message.
        self.pool()
            .wait(DRAIN_LIMIT, |s| s.messages_in >= s.messages_out);
        let report = self.close();

        let msgs = after.messages_in - before.messages_in;
        let bytes = after.bytes_in - before.bytes_in;
        let hist = self.shared.hist.lock().unwrap_or_else(|e| e.into_inner());
        let q = |p: f64| hist.value_at_quantile(p) as f64 / 1e3;
        let (p50, p90, p99, p999, max) =
            (q(0.5), q(0.9), q(0.99), q(0.999), hist.max() as f64 / 1e3);
        let cpu = cpu_use(&c0, &c1);
        let msgs_per_s = msgs as f64 / secs;
        let mb_per_s = bytes as f64 / secs / 1e6;
        // The pool is gone: its last reading stands in (what closing found is in `Shared`).
        let errors = self.errors(&after);
        let bad = self.shared.bad_frames.load(Ordering::Relaxed);
        let wire = Wire::between(&before, &after, tcp0, tcp1);
        let deflated = self.shared.deflated.load(Ordering::Relaxed);
        let human =
            format!(
            "{label}{conns} conns x {size} B {kind}{deflate}, depth {depth}, {shards} shard(s): \
             {msgs_per_s:.0} msgs/s, {mb_per_s:.1} MB/s, p50 {p50:.0} us, p90 {p90:.0} us, \
             p99 {p99:.0} us, p99.9 {p999:.0} us, max {max:.0} us; on the wire per message: \
             {wire_out} B out, {wire_in} B in ({ratio} of the payload); errors {errors} (bad \
             frames {bad}); cpu: generator {gen:.0}%{srv}{other}; {closed} of {opened} closed \
             cleanly{samples}",
            label = self.label(),
            conns = a.conns,
            size = a.size,
            kind = match (a.binary, a.json_payload) {
                (true, _) => "binary",
                (false, true) => "JSON text",
                (false, false) => "text",
            },
            deflate = match &a.deflate {
                Some(_) => format!(
                    ", permessage-deflate {} on {deflated} conns",
                    if self.takeover() { "with takeover" } else { "without takeover" }
                ),
                None => String::new(),
            },
            wire_out = opt_num(wire.out_per_msg, 1),
            wire_in = opt_num(wire.in_per_msg, 1),
            ratio = opt_num(wire.ratio, 3),
            depth = a.depth,
            shards = a.shards,
            gen = cpu.gen,
            srv = opt_pct(", server ", cpu.server),
            other = opt_pct(", rest ", cpu.other),
            closed = report.closed_cleanly,
            opened = report.closing,
            samples = self.samples(),
        );
        let json = format!(
            "{{{head},\"size\":{size},\"depth\":{depth},\"binary\":{binary},\
             \"seconds\":{secs:.3},\"open_s\":{open_secs:.3},\"msgs\":{msgs},\
             \"msgs_per_s\":{msgs_per_s:.0},\"mb_per_s\":{mb_per_s:.2},\"p50_us\":{p50:.1},\
             \"p90_us\":{p90:.1},\"p99_us\":{p99:.1},\"p999_us\":{p999:.1},\"max_us\":{max:.1},\
             \"samples\":{count},\"errors\":{errors},\"errors_in_window\":{errors_in_window},\
             \"bad_frames\":{bad},\"gen_cpu_pct\":{gen:.1},\"server_cpu_pct\":{srv},\
             \"other_cpu_pct\":{other},\"closed_cleanly\":{closed},\"payload\":\"{payload}\",\
             \"deflate\":{deflate},\"deflate_conns\":{deflated},\"payload_out_per_msg\":{pout},\
             \"payload_in_per_msg\":{pin},\"wire_out_per_msg\":{wout},\"wire_in_per_msg\":{win},\
             \"wire_ratio\":{ratio},\"tcp_sockets\":{sockets}}}",
            head = self.json_head(),
            size = a.size,
            depth = a.depth,
            binary = a.binary,
            payload = if a.json_payload { "json" } else { "fill" },
            deflate = match &a.deflate {
                None => "null",
                Some(_) if self.takeover() => "\"takeover\"",
                Some(_) => "\"no-takeover\"",
            },
            pout = opt_num(wire.payload_out_per_msg, 1),
            pin = opt_num(wire.payload_in_per_msg, 1),
            wout = json_num(wire.out_per_msg, 1),
            win = json_num(wire.in_per_msg, 1),
            ratio = json_num(wire.ratio, 4),
            sockets = wire.sockets,
            count = hist.len(),
            gen = cpu.gen,
            srv = opt_json(cpu.server),
            other = opt_json(cpu.other),
            closed = report.closed_cleanly,
        );
        Ok(Report {
            human,
            json,
            failed: errors > 0 || msgs == 0,
        })
    }

    fn fanout(mut self, open_secs: f64) -> Result<Report, String> {
        let a = self.a;
        self.run_until(Instant::now() + a.warmup, |_| {});
        let before = self.pool().stats();
        let errors_before = self.errors(&before);
        let c0 = Clocks::now(a.server_pid);
        self.shared.phase.store(MEASURE, Ordering::Relaxed);
        let mut per_second = Vec::new();
        let mut last = before.messages_in;
        self.run_until(c0.at + a.duration, |st| {
            per_second.push(st.messages_in - last);
            last = st.messages_in;
        });
        self.shared.phase.store(DRAIN, Ordering::Relaxed);
        let after = self.pool().stats();
        let c1 = Clocks::now(a.server_pid);
        let secs = (c1.at - c0.at).as_secs_f64();
        let errors_in_window = self.errors(&after) - errors_before;
        let open_at_end = after.open;
        let report = self.close();

        let msgs = after.messages_in - before.messages_in;
        let bytes = after.bytes_in - before.bytes_in;
        // What one message is on the wire from the server: an unmasked header and the payload.
        let header = match a.size {
            0..=125 => 2,
            126..=65535 => 4,
            _ => 10,
        };
        let wire_bytes = bytes + msgs * header;
        let per_s = msgs as f64 / secs;
        let by_bytes_per_s = bytes as f64 / a.size.max(1) as f64 / secs;
        let mb_per_s = wire_bytes as f64 / secs / 1e6;
        let cpu = cpu_use(&c0, &c1);
        let errors = self.errors(&after);
        let bad = self.shared.bad_frames.load(Ordering::Relaxed);
        let series: Vec<String> = per_second.iter().map(|n| n.to_string()).collect();
        let human = format!(
            "{label}{open_at_end} of {conns} subscribers x {size} B, {shards} shard(s): \
             {per_s:.0} deliveries/s ({mb_per_s:.1} MB/s on the wire); per second [{series}]; \
             errors {errors} (bad frames {bad}); cpu: reader {gen:.0}%{srv}{other}; {closed} \
             closed cleanly{samples}",
            label = self.label(),
            conns = a.conns,
            size = a.size,
            shards = a.shards,
            series = series.join(" "),
            gen = cpu.gen,
            srv = opt_pct(", server ", cpu.server),
            other = opt_pct(", rest ", cpu.other),
            closed = report.closed_cleanly,
            samples = self.samples(),
        );
        let json = format!(
            "{{{head},\"open_at_end\":{open_at_end},\"size\":{size},\"seconds\":{secs:.3},\
             \"open_s\":{open_secs:.3},\"msgs\":{msgs},\"bytes\":{bytes},\
             \"read_bytes\":{wire_bytes},\"deliveries_per_s\":{per_s:.0},\
             \"deliveries_per_s_by_bytes\":{by_bytes_per_s:.0},\"mb_per_s\":{mb_per_s:.2},\
             \"msgs_per_read\":null,\"per_second\":[{series}],\"errors\":{errors},\
             \"errors_in_window\":{errors_in_window},\"bad_frames\":{bad},\
             \"gen_cpu_pct\":{gen:.1},\"server_cpu_pct\":{srv},\"other_cpu_pct\":{other},\
             \"closed_cleanly\":{closed}}}",
            head = self.json_head(),
            size = a.size,
            series = series.join(","),
            gen = cpu.gen,
            srv = opt_json(cpu.server),
            other = opt_json(cpu.other),
            closed = report.closed_cleanly,
        );
        Ok(Report {
            human,
            json,
            failed: errors > 0 || msgs == 0,
        })
    }

    fn idle(mut self, open_secs: f64, rss_before: Option<u64>) -> Result<Report, String> {
        let a = self.a;
        let open = self.pool().stats().open;
        // With --exchange, memory is read once every connection has had its echoes back (within
        // the opening's time bound).
        let mut exchanged = 0;
        if a.exchange > 0 {
            let until = Instant::now() + OPEN_LIMIT;
            loop {
                exchanged = self.shared.exchanged.load(Ordering::Relaxed);
                if exchanged >= open || Instant::now() >= until {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            eprintln!(
                "ringsock-load: {exchanged} of {open} connections exchanged {} messages",
                a.exchange
            );
        }
        eprintln!(
            "ringsock-load: {open} connections open; holding {:?}",
            a.hold
        );
        self.run_until(Instant::now() + a.hold, |_| {});
        // The server's memory once the connections have sat idle for the hold: the steady
        // state, after whatever the handshakes' burst left to give back (a ringsock shard
        // returns its receive buffers' pages after a second without input).
        let rss_after = a.server_pid.and_then(process_rss_kib);
        let st = self.pool().stats();
        let still_open = st.open;
        let report = self.close();
        let per_conn = match (rss_before, rss_after) {
            (Some(b), Some(af)) if open > 0 => Some((af as f64 - b as f64) * 1024.0 / open as f64),
            _ => None,
        };
        let errors = self.errors(&st);
        let opt = |v: Option<u64>| v.map_or("null".into(), |v| v.to_string());
        let deflated = self.shared.deflated.load(Ordering::Relaxed);
        let human = format!(
            "{label}{open} of {n} idle connections open in {open_secs:.2} s{deflate}{exchange}, \
             {still_open} still open after {hold:?}; server VmRSS {b} -> {af} KiB = {pc} bytes \
             per connection; errors {errors}; {closed} closed cleanly{samples}",
            label = self.label(),
            n = a.conns,
            deflate = if a.deflate.is_some() {
                format!(", permessage-deflate on {deflated}")
            } else {
                String::new()
            },
            exchange = if a.exchange > 0 {
                format!(
                    ", {exchanged} exchanged {} x {} B each way",
                    a.exchange, a.size
                )
            } else {
                String::new()
            },
            hold = a.hold,
            b = opt(rss_before),
            af = opt(rss_after),
            pc = per_conn.map_or("?".into(), |v| format!("{v:.0}")),
            closed = report.closed_cleanly,
            samples = self.samples(),
        );
        let json = format!(
            "{{{head},\"open\":{open},\"still_open\":{still_open},\"open_s\":{open_secs:.3},\
             \"rss_before_kib\":{b},\"rss_after_kib\":{af},\"rss_per_conn_bytes\":{pc},\
             \"errors\":{errors},\"closed_cleanly\":{closed},\"deflate_conns\":{deflated},\
             \"exchange\":{exchange},\"exchanged\":{exchanged},\"size\":{size}}}",
            head = self.json_head(),
            exchange = a.exchange,
            size = a.size,
            b = opt(rss_before),
            af = opt(rss_after),
            pc = per_conn.map_or("null".into(), |v| format!("{v:.0}")),
            closed = report.closed_cleanly,
        );
        Ok(Report {
            human,
            json,
            failed: errors > 0 || open < a.conns as u64 || (a.exchange > 0 && exchanged < open),
        })
    }

    fn connect(mut self) -> Result<Report, String> {
        let a = self.a;
        self.run_until(Instant::now() + a.warmup, |_| {});
        let before = self.pool().stats();
        let errors_before = self.errors(&before);
        let c0 = Clocks::now(a.server_pid);
        self.shared.phase.store(MEASURE, Ordering::Relaxed);
        let mut per_second = Vec::new();
        let mut last = before.opened;
        self.run_until(c0.at + a.duration, |st| {
            per_second.push(st.opened - last);
            last = st.opened;
        });
        self.shared.phase.store(DRAIN, Ordering::Relaxed);
        let after = self.pool().stats();
        let c1 = Clocks::now(a.server_pid);
        let secs = (c1.at - c0.at).as_secs_f64();
        let errors_in_window = self.errors(&after) - errors_before;
        // Let the last handshakes finish and their connections close before stopping.
        if let Some(pool) = self.pool.as_mut() {
            pool.stop_dialing();
        }
        self.pool()
            .wait(DRAIN_LIMIT, |s| s.connecting == 0 && s.open == 0);
        let end = self.pool().stats();
        self.close();

        let handshakes = after.opened - before.opened;
        let cycles = after.closed - before.closed;
        let hist = self.shared.hist.lock().unwrap_or_else(|e| e.into_inner());
        let q = |p: f64| hist.value_at_quantile(p) as f64 / 1e3;
        let (p50, p90, p99, p999, max) =
            (q(0.5), q(0.9), q(0.99), q(0.999), hist.max() as f64 / 1e3);
        let cpu = cpu_use(&c0, &c1);
        let per_s = handshakes as f64 / secs;
        let cycles_per_s = cycles as f64 / secs;
        let errors = self.errors(&end);
        let series: Vec<String> = per_second.iter().map(|n| n.to_string()).collect();
        let human = format!(
            "{label}{conc} at once, {shards} shard(s): {per_s:.0} handshakes/s ({cycles_per_s:.0} \
             connect+close cycles/s); dial to 101: p50 {p50:.0} us, p90 {p90:.0} us, p99 \
             {p99:.0} us, max {max:.0} us; per second [{series}]; errors {errors}; cpu: \
             generator {gen:.0}%{srv}{other}{samples}",
            label = self.label(),
            conc = a.conns,
            shards = a.shards,
            series = series.join(" "),
            gen = cpu.gen,
            srv = opt_pct(", server ", cpu.server),
            other = opt_pct(", rest ", cpu.other),
            samples = self.samples(),
        );
        let json = format!(
            "{{{head},\"concurrency\":{conc},\"seconds\":{secs:.3},\"handshakes\":{handshakes},\
             \"handshakes_per_s\":{per_s:.0},\"cycles\":{cycles},\"cycles_per_s\":{cycles_per_s:.0},\
             \"p50_us\":{p50:.1},\"p90_us\":{p90:.1},\"p99_us\":{p99:.1},\"p999_us\":{p999:.1},\
             \"max_us\":{max:.1},\"per_second\":[{series}],\"errors\":{errors},\
             \"errors_in_window\":{errors_in_window},\"gen_cpu_pct\":{gen:.1},\
             \"server_cpu_pct\":{srv},\"other_cpu_pct\":{other}}}",
            head = self.json_head(),
            conc = a.conns,
            series = series.join(","),
            gen = cpu.gen,
            srv = opt_json(cpu.server),
            other = opt_json(cpu.other),
        );
        Ok(Report {
            human,
            json,
            failed: errors > 0 || handshakes == 0,
        })
    }
}

/// Bytes on the wire against payload bytes over the measured window: the generator's sockets'
/// TCP counters ([`process_tcp_bytes`]) over the pool's message counters.
struct Wire {
    out_per_msg: Option<f64>,
    in_per_msg: Option<f64>,
    payload_out_per_msg: Option<f64>,
    payload_in_per_msg: Option<f64>,
    /// Wire bytes both ways over payload bytes both ways.
    ratio: Option<f64>,
    sockets: usize,
}

impl Wire {
    fn between(
        before: &PoolStats,
        after: &PoolStats,
        tcp0: Option<(u64, u64, usize)>,
        tcp1: Option<(u64, u64, usize)>,
    ) -> Self {
        let per = |bytes: u64, msgs: u64| (msgs > 0).then(|| bytes as f64 / msgs as f64);
        let msgs_out = after.messages_out - before.messages_out;
        let msgs_in = after.messages_in - before.messages_in;
        let payload_out = after.bytes_out - before.bytes_out;
        let payload_in = after.bytes_in - before.bytes_in;
        // Counters only grow while no socket closes; a smaller second reading means one did.
        let (wire_out, wire_in, sockets) = match (tcp0, tcp1) {
            (Some((o0, i0, _)), Some((o1, i1, n))) if o1 >= o0 && i1 >= i0 => {
                (Some(o1 - o0), Some(i1 - i0), n)
            }
            _ => (None, None, 0),
        };
        Self {
            out_per_msg: wire_out.and_then(|b| per(b, msgs_out)),
            in_per_msg: wire_in.and_then(|b| per(b, msgs_in)),
            payload_out_per_msg: per(payload_out, msgs_out),
            payload_in_per_msg: per(payload_in, msgs_in),
            ratio: match (wire_out, wire_in) {
                (Some(o), Some(i)) if payload_out + payload_in > 0 => {
                    Some((o + i) as f64 / (payload_out + payload_in) as f64)
                }
                _ => None,
            },
            sockets,
        }
    }
}

/// A number with `digits` decimals, or `?`.
fn opt_num(v: Option<f64>, digits: usize) -> String {
    v.map_or("?".into(), |v| format!("{v:.digits$}"))
}

/// A number with `digits` decimals, or `null`.
fn json_num(v: Option<f64>, digits: usize) -> String {
    v.map_or("null".into(), |v| format!("{v:.digits$}"))
}

fn opt_pct(prefix: &str, v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{prefix}{v:.0}%"))
}

fn opt_json(v: Option<f64>) -> String {
    v.map_or("null".into(), |v| format!("{v:.1}"))
}
