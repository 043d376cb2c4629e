//! `ringsock-echo`: a WebSocket echo server. It answers every text and binary message with the
//! same message and takes part in the close handshake; Autobahn|Testsuite and the benchmarks run
//! against it. SIGINT or SIGTERM shuts it down gracefully (close 1001 to every client).
//!
//! permessage-deflate is accepted whenever a client offers it, with context takeover (an echo
//! is a conversation, where each connection's history pays), so Autobahn's 12.x and 13.x cases
//! and interop clients find it without flags.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use ringsock_engine::reactor::{BackendKind, PoolConfig};
use ringsock_engine::server::{Echo, Engine, Limits};
use ringsock_engine::ws::{DeflateOptions, ServerOptions};
use ringsock_tools::SHUTDOWN_GRACE;

const USAGE: &str =
    "usage: ringsock-echo [--addr IP:PORT]... [--shards N] [--backend auto|io_uring|epoll]
  --addr     address to listen on (repeatable; default 127.0.0.1:9001)
  --shards   shard threads (default: one per core)
  --backend  reactor backend (default: auto, or RINGSOCK_BACKEND)
  --buffers N --buffer-size BYTES
             receive pool per shard (default 512 x 65536)
  --no-deflate
             refuse permessage-deflate (default: accepted when offered, with context takeover)
  --ping SECS
             after SECS without receiving anything, ping; after as long again, still silent,
             cut the connection (default 30; 0: never)
  --idle-timeout SECS
             close a WebSocket with 1001 after SECS without receiving anything, pongs included
             (default 120; 0: never)
  --handshake-timeout SECS
             time from accept to a complete request head (default 10)
  --max-connections N
             connections open at once over all shards; past it new ones are answered 503
             (default 1000000)
  --control-rate N
             pings and pongs a peer may send per second; past it: close 1008 (default 256;
             0: no limit)
  SECS may be fractional (0.5). The defaults suit a public server: a peer that is gone, or
  never sends, does not hold its connection for long.";

/// Silence after which a peer is pinged (and twice this, cut), unless `--ping` says otherwise.
const DEFAULT_PING: Duration = Duration::from_secs(30);

/// Silence after which a connection is closed with 1001, unless `--idle-timeout` says otherwise.
const DEFAULT_IDLE: Duration = Duration::from_secs(120);

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringsock-echo: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut builder = Engine::builder();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let mut pool = PoolConfig::default();
    let mut limits = Limits {
        keepalive: Some(DEFAULT_PING),
        idle_timeout: Some(DEFAULT_IDLE),
        ..Limits::default()
    };
    let mut deflate = true;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--addr" => addrs.push(
                value("--addr")?
                    .parse()
                    .map_err(|e| format!("--addr: {e}"))?,
            ),
            "--shards" => {
                let n: usize = value("--shards")?
                    .parse()
                    .map_err(|e| format!("--shards: {e}"))?;
                builder = builder.shards(n);
            }
            "--backend" => {
                let kind = match value("--backend")?.as_str() {
                    "auto" => BackendKind::Auto,
                    "io_uring" | "uring" => BackendKind::IoUring,
                    "epoll" => BackendKind::Epoll,
                    other => return Err(format!("--backend: unknown backend {other:?}")),
                };
                builder = builder.backend(kind);
            }
            "--buffers" => {
                pool.buffers = value("--buffers")?
                    .parse()
                    .map_err(|e| format!("--buffers: {e}"))?;
            }
            "--buffer-size" => {
                pool.buffer_size = value("--buffer-size")?
                    .parse()
                    .map_err(|e| format!("--buffer-size: {e}"))?;
            }
            "--idle-timeout" => {
                let secs = seconds("--idle-timeout", &value("--idle-timeout")?)?;
                limits.idle_timeout = (!secs.is_zero()).then_some(secs);
            }
            "--ping" => {
                let secs = seconds("--ping", &value("--ping")?)?;
                limits.keepalive = (!secs.is_zero()).then_some(secs);
            }
            "--control-rate" => {
                limits.max_control_per_second = value("--control-rate")?
                    .parse()
                    .map_err(|e| format!("--control-rate: {e}"))?;
            }
            "--handshake-timeout" => {
                limits.handshake_timeout =
                    seconds("--handshake-timeout", &value("--handshake-timeout")?)?;
            }
            "--max-connections" => {
                limits.max_connections = value("--max-connections")?
                    .parse()
                    .map_err(|e| format!("--max-connections: {e}"))?;
            }
            "--no-deflate" => deflate = false,
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if addrs.is_empty() {
        addrs.push("127.0.0.1:9001".parse().expect("a valid address"));
    }
    for addr in addrs {
        builder = builder.bind(addr);
    }
    builder = builder.pool(pool).limits(limits);
    if deflate {
        builder = builder
            .handshake(ServerOptions::new().deflate(DeflateOptions::new().context_takeover(true)));
    }
    let server = builder
        .start(Echo)
        .map_err(|e| format!("cannot start: {e}"))?;
    let listening: Vec<String> = server.local_addrs().iter().map(|a| a.to_string()).collect();
    eprintln!(
        "ringsock-echo: listening on {} ({} backend)",
        listening.join(", "),
        server.backend()
    );
    let report = server
        .shutdown_on_signal(SHUTDOWN_GRACE)
        .map_err(|e| format!("cannot watch for signals: {e}"))?;
    eprintln!(
        "ringsock-echo: {} of {} connections closed cleanly, {} cut",
        report.closed_cleanly, report.closing, report.cut
    );
    Ok(())
}

/// A duration given in (possibly fractional) seconds, as the timeout flags take it.
fn seconds(flag: &str, text: &str) -> Result<Duration, String> {
    let secs: f64 = text.parse().map_err(|e| format!("{flag}: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{flag}: {text:?} is not a duration"))
}
