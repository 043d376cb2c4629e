//! What every connection runs under ([`Limits`], [`OutputLimits`]), what every shard is told
//! ([`ShardSettings`]), and how a graceful shutdown went ([`ShutdownReport`]): settings the server
//! hands its shards and results they hand back.

use std::sync::Arc;
use std::time::Duration;

use crate::http::HeadLimits;
use crate::ws::{CloseCode, Config, Overflow, ServerOptions};

/// Limits every connection runs under.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Connections open at once, over all shards (each shard takes its share); past it a new
    /// connection is answered `503 Service Unavailable` and closed.
    pub max_connections: usize,
    /// Keep one spare file descriptor per shard (on `/dev/null`), default true. When the
    /// process runs out of descriptors (EMFILE, ENFILE) nothing can be accepted, and clients
    /// waiting in the accept queue would hang until they gave up; with the reserve, the shard
    /// lets it go, accepts the waiting connections one at a time, answers each
    /// `503 Service Unavailable` (with `Retry-After`) and closes it, then takes the reserve back.
    /// Costs one descriptor per shard. Off: waiting clients wait until a descriptor is free.
    /// Either way accepting pauses without spinning and resumes as soon as a connection closes.
    pub reserve_fd: bool,
    /// Request head limits (past `max_head_bytes`: 431).
    pub head: HeadLimits,
    /// Largest WebSocket message in bytes (past it: close 1009).
    pub max_message: usize,
    /// Time from accept to a complete request head; a slower client is disconnected. Also bounds
    /// how long a final answer may take to write.
    pub handshake_timeout: Duration,
    /// Close a WebSocket with 1001 after this long without receiving anything (`None`: never).
    pub idle_timeout: Option<Duration>,
    /// Dead-peer detection for every WebSocket: after this long without receiving anything the
    /// shard pings, and if still nothing has arrived after as long again, it cuts the
    /// connection (reported as 1006; a close frame would wait behind the same silence). A
    /// connection that is receiving is never pinged. `None` (the default): off. (The actors
    /// layer has its own periodic ping, `EngineBuilder::ping`.)
    pub keepalive: Option<Duration>,
    /// How long a sent close frame waits for the peer's before the connection is cut (1006).
    pub close_timeout: Duration,
    /// Outgoing connections: how long, after the close handshake, the client waits for the
    /// server to close the TCP connection before closing it itself; the close is reported when
    /// the connection is over ([`crate::ws::Connection::wait_for_server_close`]). 2 s, as Chromium
    /// waits (`kUnderlyingConnectionCloseTimeoutSeconds`).
    pub server_close_timeout: Duration,
    /// Unwritten output per connection: where reading pauses and resumes, and the hard cap.
    pub output: OutputLimits,
    /// Pings and pongs a peer may send in one second; past it: close 1008 (0: no limit).
    /// Default 256 ([`Config::max_control_per_second`]).
    pub max_control_per_second: u32,
    /// The fewest payload bytes a fragment may carry on average once a message has more than
    /// [`crate::ws::FRAGMENT_GRACE`] fragments; below it: close 1008 (0: no limit). Default 16
    /// ([`Config::min_fragment_average`]).
    pub min_fragment_average: u32,
}

/// How much output a connection may have that its peer has not taken yet (queued in the shard
/// and in the socket's send in flight, not counting the kernel's socket buffer): one owner of
/// output and backpressure for every service.
///
/// - Past `high` the shard stops reading the connection's socket: a peer that does not read its
///   answers cannot make the server read (and answer) more. The kernel's window then pushes back
///   on it. Reading resumes once the output has fallen to `low`.
/// - A send that would take the output past `max` is refused and gets `overflow`, whatever
///   service makes it (the output of a service that writes without reading, such as a push to
///   a subscriber that has stopped reading, is bounded by this alone).
///
/// So a connection holds at most `max` bytes of output, and an echo-like service, whose output
/// follows its input, about `high` plus one read's worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputLimits {
    /// Reading resumes at or below this. Default 64 KiB.
    pub low: usize,
    /// Reading pauses above this. Default 1 MiB.
    pub high: usize,
    /// Sends past this get `overflow`. Default 64 MiB.
    pub max: usize,
    /// What a send past `max` gets. Default: close with 1008.
    pub overflow: Overflow,
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            low: 64 << 10,
            high: 1 << 20,
            max: 64 << 20,
            overflow: Overflow::Close(CloseCode::POLICY_VIOLATION),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 1_000_000,
            reserve_fd: true,
            head: HeadLimits::default(),
            max_message: (1 << 26) - 1,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: None,
            keepalive: None,
            close_timeout: Duration::from_secs(30),
            server_close_timeout: Duration::from_secs(2),
            output: OutputLimits::default(),
            max_control_per_second: Config::default().max_control_per_second,
            min_fragment_average: Config::default().min_fragment_average,
        }
    }
}

impl Limits {
    /// The protocol settings every accepted connection runs with, made once per server and
    /// shared (an `Arc` clone per connection).
    fn connection_config(&self) -> Arc<Config> {
        Arc::new(Config {
            max_length: self.max_message,
            close_timeout: self.close_timeout,
            max_control_per_second: self.max_control_per_second,
            min_fragment_average: self.min_fragment_average,
            ..Config::default()
        })
    }
}

/// What every shard needs to know, shared read-only.
pub(crate) struct ShardSettings {
    pub limits: Limits,
    /// The protocol settings of accepted connections, from `limits`.
    pub ws_config: Arc<Config>,
    pub handshake: ServerOptions,
    /// Paths that accept WebSocket upgrades; empty means every path does.
    pub ws_paths: Vec<String>,
    /// Pins the shards' random generators ([`EngineBuilder::rng_seed`]); `None`: seeded from
    /// the operating system.
    pub rng_seed: Option<u64>,
}

impl ShardSettings {
    pub(crate) fn new(limits: Limits, handshake: ServerOptions, ws_paths: Vec<String>) -> Self {
        Self {
            ws_config: limits.connection_config(),
            limits,
            handshake,
            ws_paths,
            rng_seed: None,
        }
    }

    /// Whether an upgrade to `path` is accepted.
    pub(crate) fn is_websocket_path(&self, path: &str) -> bool {
        self.ws_paths.is_empty() || self.ws_paths.iter().any(|p| p == path)
    }

    /// Whether `path` was registered as WebSocket-only (a plain GET there gets 426).
    pub(crate) fn is_registered_websocket_path(&self, path: &str) -> bool {
        self.ws_paths.iter().any(|p| p == path)
    }
}

/// How a graceful shutdown went, summed over shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// WebSocket connections sent a 1001 close.
    pub closing: usize,
    /// Of those and any others closing meanwhile: finished the close handshake.
    pub closed_cleanly: usize,
    /// Ended without a close handshake (transport dropped, close timeout) during shutdown.
    pub cut: usize,
}

impl std::ops::AddAssign for ShutdownReport {
    fn add_assign(&mut self, other: Self) {
        self.closing += other.closing;
        self.closed_cleanly += other.closed_cleanly;
        self.cut += other.cut;
    }
}
