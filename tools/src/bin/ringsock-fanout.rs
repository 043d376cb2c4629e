//! `ringsock-fanout`: the actors server as a push service, for the fan-out and idle-memory
//! benchmarks. Every WebSocket on `/` gets a small handler (one `u64`) and is subscribed to one
//! topic; a publisher thread publishes `--size`-byte binary messages to it through
//! [`ServerHandle::publish`], in bursts of `--burst`, either at `--rate` messages per second or flat out
//! (backing off while the shard's mailbox is full). `--idle` leaves out the subscription and the
//! publisher: what is left is the per-connection cost of an actors connection. An idle
//! connection answers each message with the same message, so that a memory benchmark can make
//! every connection compress and inflate (`--deflate`, `--deflate-takeover`) before it idles.
//!
//! SIGINT or SIGTERM stops the publisher, shuts the server down and prints the server's counters
//! as one JSON line on stdout (`dropped` must be 0 for every delivery to be a real one).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringsock_actors::{
    Accept, BackendKind, Closed, Ctx, DataKind, DeflateOptions, Handler, Message, Server,
    ServerHandle,
};
use ringsock_tools::SHUTDOWN_GRACE;

const TOPIC: &str = "fanout";

/// Connections subscribed right now (the publisher waits for `--subscribers` of them).
static SUBSCRIBED: AtomicUsize = AtomicUsize::new(0);

const USAGE: &str = "usage: ringsock-fanout [options]
  --addr IP:PORT       address to listen on (default 127.0.0.1:9001)
  --backend B          auto|io_uring|epoll (default auto)
  --shards N           shard threads (default 1)
  --size BYTES         payload of each published message (default 16)
  --burst N            messages published back to back before pacing (default 256)
  --rate N             messages per second (default 0: flat out, backing off on a full mailbox)
  --mailbox N          posts the shard's mailbox holds (default 1024): with a flat-out publisher
                       it sets about how many messages one shard turn takes, hence writes to each
                       subscriber at once (the publisher refills it while the turn runs)
  --high-water BYTES   unwritten bytes past which a subscriber is skipped (default: the
                       server's, 1 MiB); skipped deliveries are counted in `dropped`
  --subscribers N      publish only while at least N connections subscribe (default 1): the
                       run starts once all subscribers are in and ends as the first one leaves
  --idle               no subscription and no publisher (the idle-memory benchmark); each
                       message received is echoed
  --deflate            accept permessage-deflate without context takeover (the default: one
                       compressor and decompressor per shard, none per connection)
  --deflate-takeover   accept it with context takeover (own contexts per connection)
  --deflate-window B   compress with at most 2^B-byte windows and ask the same of clients (9-15)
  --deflate-mem-level L
                       zlib's memory level for compressing, 1-9 (default 8)";

/// The per-connection state of the fan-out benchmark: one `u64`.
struct Subscriber {
    received: u64,
}

impl Handler for Subscriber {
    type Msg = ();
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        ctx.subscribe(TOPIC);
        SUBSCRIBED.fetch_add(1, Ordering::Relaxed);
    }
    fn on_message(&mut self, _: &mut Ctx<'_, Self>, _: Message) {
        self.received += 1;
    }
    fn on_close(&mut self, _: &mut Ctx<'_, Self>, _: Closed) {
        SUBSCRIBED.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The same state without the subscription, for the idle-memory benchmark. It echoes what it
/// receives: the memory benchmark of permessage-deflate has each connection send a message and
/// read the echo, so that the server has compressed and inflated on it before it idles.
struct Idle {
    received: u64,
}

impl Handler for Idle {
    type Msg = ();
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        self.received += 1;
        match message {
            Message::Text(t) => ctx.send(DataKind::Text, t.into_bytes()),
            Message::Binary(b) => ctx.send(DataKind::Binary, b),
        };
    }
}

struct Options {
    addrs: Vec<SocketAddr>,
    backend: BackendKind,
    shards: usize,
    size: usize,
    burst: usize,
    rate: f64,
    mailbox: usize,
    high_water: Option<usize>,
    subscribers: usize,
    idle: bool,
    deflate: Option<DeflateOptions>,
}

fn parse() -> Result<Option<Options>, String> {
    let mut o = Options {
        addrs: Vec::new(),
        backend: BackendKind::Auto,
        shards: 1,
        size: 16,
        burst: 256,
        rate: 0.0,
        mailbox: 1024,
        high_water: None,
        subscribers: 1,
        idle: false,
        deflate: None,
    };
    let (mut deflate, mut takeover, mut window, mut mem_level) =
        (false, false, None::<u8>, None::<u8>);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e| format!("{name} {v:?}: {e}"))
        }
        match arg.as_str() {
            "--addr" => o.addrs.push(num("--addr", value("--addr")?)?),
            "--backend" => {
                o.backend = match value("--backend")?.as_str() {
                    "auto" => BackendKind::Auto,
                    "io_uring" | "uring" => BackendKind::IoUring,
                    "epoll" => BackendKind::Epoll,
                    other => return Err(format!("--backend: unknown backend {other:?}")),
                }
            }
            "--shards" => o.shards = num("--shards", value("--shards")?)?,
            "--size" => o.size = num("--size", value("--size")?)?,
            "--burst" => o.burst = num::<usize>("--burst", value("--burst")?)?.max(1),
            "--rate" => o.rate = num("--rate", value("--rate")?)?,
            "--mailbox" => o.mailbox = num("--mailbox", value("--mailbox")?)?,
            "--high-water" => o.high_water = Some(num("--high-water", value("--high-water")?)?),
            "--subscribers" => o.subscribers = num("--subscribers", value("--subscribers")?)?,
            "--idle" => o.idle = true,
            "--deflate" => deflate = true,
            "--deflate-takeover" => (deflate, takeover) = (true, true),
            "--deflate-window" => {
                window = Some(num("--deflate-window", value("--deflate-window")?)?)
            }
            "--deflate-mem-level" => {
                mem_level = Some(num("--deflate-mem-level", value("--deflate-mem-level")?)?)
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.addrs.is_empty() {
        o.addrs
            .push("127.0.0.1:9001".parse().expect("a valid address"));
    }
    if (window.is_some() || mem_level.is_some()) && !deflate {
        return Err(
            "--deflate-window and --deflate-mem-level need --deflate or --deflate-takeover".into(),
        );
    }
    if deflate {
        let mut d = DeflateOptions::new().context_takeover(takeover);
        if let Some(bits) = window {
            d = d.max_window_bits(bits).request_max_window_bits(bits);
        }
        if let Some(level) = mem_level {
            d = d.mem_level(level);
        }
        o.deflate = Some(d);
    }
    Ok(Some(o))
}

fn main() -> ExitCode {
    match parse().and_then(|o| o.map_or(Ok(()), run)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringsock-fanout: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(o: Options) -> Result<(), String> {
    let epoch = Instant::now();
    let mut builder = Server::builder()
        .shards(o.shards)
        .backend(o.backend)
        // The runner pins the whole process with taskset; the publisher thread shares its core.
        .pin_threads(false)
        .mailbox(o.mailbox);
    if let Some(high) = o.high_water {
        builder = builder.high_water(high, high / 2);
    }
    if let Some(deflate) = &o.deflate {
        builder = builder.deflate(deflate.clone());
    }
    for addr in &o.addrs {
        builder = builder.bind(*addr);
    }
    builder = if o.idle {
        builder.route("/", |_| Ok(Accept::new(Idle { received: 0 })))
    } else {
        builder.route("/", |_| Ok(Accept::new(Subscriber { received: 0 })))
    };
    let server = builder.start().map_err(|e| format!("cannot start: {e}"))?;
    let listening: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    eprintln!(
        "ringsock-fanout: listening on {} ({} backend, {} shard(s)); {}",
        listening.join(", "),
        server.backend(),
        o.shards,
        if o.idle {
            "idle: no topic, no publisher".to_owned()
        } else {
            format!(
                "publishing {} B to {TOPIC:?} in bursts of {} at {}",
                o.size,
                o.burst,
                if o.rate > 0.0 {
                    format!("{} msgs/s", o.rate)
                } else {
                    "full speed".into()
                }
            )
        }
    );
    let stop = AtomicBool::new(false);
    let accepted = AtomicU64::new(0);
    let full = AtomicU64::new(0);
    // The publisher runs until the server has shut down: a signal starts the shutdown, whose
    // grace period is short on loopback, and publishes to stopped shards only fill their
    // mailboxes (`burst` messages), so the counters barely move after the signal.
    let report = std::thread::scope(|s| {
        if !o.idle {
            s.spawn(|| publisher(&server, &o, &stop, &accepted, &full));
        }
        let report = server.shutdown_on_signal(SHUTDOWN_GRACE);
        stop.store(true, Ordering::Relaxed);
        report
    })
    .map_err(|e| format!("cannot catch SIGINT and SIGTERM: {e}"))?;
    let st = server.stats();
    let (published, delivered, dropped) = (
        st.published.load(Ordering::Relaxed),
        st.delivered.load(Ordering::Relaxed),
        st.dropped.load(Ordering::Relaxed),
    );
    eprintln!(
        "ringsock-fanout: {} of {} connections closed cleanly, {} cut",
        report.closed_cleanly, report.closing, report.cut
    );
    println!(
        "{{\"published\":{published},\"accepted\":{},\"mailbox_full\":{},\"delivered\":{delivered},\
         \"dropped\":{dropped},\"seconds\":{:.3}}}",
        accepted.load(Ordering::Relaxed),
        full.load(Ordering::Relaxed),
        epoch.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Publishes until `stop`: `burst` messages back to back, then (with a rate) waits for the next
/// burst's time. A full mailbox is retried after a short sleep, never skipped: every message the
/// publisher counts reached the shard.
fn publisher(
    server: &ServerHandle,
    o: &Options,
    stop: &AtomicBool,
    accepted: &AtomicU64,
    full: &AtomicU64,
) {
    let payload = Bytes::from(
        (0..o.size)
            .map(|i| b'a' + (i % 26) as u8)
            .collect::<Vec<u8>>(),
    );
    let burst_every = (o.rate > 0.0).then(|| Duration::from_secs_f64(o.burst as f64 / o.rate));
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if SUBSCRIBED.load(Ordering::Relaxed) < o.subscribers {
            std::thread::sleep(Duration::from_millis(10));
            next = Instant::now();
            continue;
        }
        for _ in 0..o.burst {
            while server.publish(TOPIC, payload.clone()).is_err() {
                full.fetch_add(1, Ordering::Relaxed);
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            accepted.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(every) = burst_every {
            next += every;
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            } else if now - next > Duration::from_secs(1) {
                // Far behind (the shard cannot keep up): do not try to catch up in one go.
                next = now;
            }
        }
    }
}
