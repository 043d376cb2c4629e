//! The server: binds listeners, starts one shard per core, routes requests, and shuts down
//! gracefully.
//!
//! ```no_run
//! use ringsock_engine::server::{Echo, Server};
//! let server = Server::builder().bind("127.0.0.1:9001".parse().unwrap()).start(Echo)?;
//! println!("echo on {} with {}", server.local_addrs()[0], server.backend());
//! server.wait();
//! # Ok::<(), std::io::Error>(())
//! ```

mod remote;
mod service;

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use socket2::{Domain, Socket, Type};

use crate::http::HeadLimits;
use crate::reactor::{self, BackendKind, PoolConfig, Waker};
use crate::shard::{Shard, ShardMsg, ShardParts};
use crate::ws::{CloseCode, Config, Overflow, ServerOptions};

pub use remote::{PostError, Remote};
pub use service::{
    Accept, ConnId, Conns, Cx, Dial, DialError, Echo, HttpResponse, Open, Service, Upgrade,
};

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
    /// layer has its own periodic ping, `ServerBuilder::ping`.)
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
    /// Pins the shards' random generators ([`ServerBuilder::rng_seed`]); `None`: seeded from
    /// the operating system.
    pub rng_seed: Option<u64>,
}

impl ShardSettings {
    pub fn new(limits: Limits, handshake: ServerOptions, ws_paths: Vec<String>) -> Self {
        Self {
            ws_config: limits.connection_config(),
            limits,
            handshake,
            ws_paths,
            rng_seed: None,
        }
    }

    /// Whether an upgrade to `path` is accepted.
    pub fn is_websocket_path(&self, path: &str) -> bool {
        self.ws_paths.is_empty() || self.ws_paths.iter().any(|p| p == path)
    }

    /// Whether `path` was registered as WebSocket-only (a plain GET there gets 426).
    pub fn is_registered_websocket_path(&self, path: &str) -> bool {
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

/// Configures and starts a [`Server`].
#[derive(Debug)]
pub struct ServerBuilder {
    addrs: Vec<SocketAddr>,
    shards: usize,
    limits: Limits,
    backend: BackendKind,
    pool: PoolConfig,
    handshake: Option<ServerOptions>,
    ws_paths: Vec<String>,
    pin: bool,
    mailbox: usize,
    rng_seed: Option<u64>,
}

/// The entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with defaults: one shard per core, pinned; io_uring with epoll as fallback
    /// (`RINGSOCK_BACKEND` overrides); every path accepts WebSocket upgrades.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            addrs: Vec::new(),
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            limits: Limits::default(),
            backend: BackendKind::from_env().unwrap_or_default(),
            pool: PoolConfig::default(),
            handshake: None,
            ws_paths: Vec::new(),
            pin: true,
            mailbox: 65536,
            rng_seed: None,
        }
    }
}

impl ServerBuilder {
    /// Adds an address to listen on (IPv4 or IPv6; port 0 picks one, the same for all shards).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.addrs.push(addr);
        self
    }

    /// Number of shard threads.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n.max(1);
        self
    }

    /// Connection limits and timeouts.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Which reactor backend to run (overrides `RINGSOCK_BACKEND`).
    pub fn backend(mut self, kind: BackendKind) -> Self {
        self.backend = kind;
        self
    }

    /// The receive buffer pool of each shard.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.pool = pool;
        self
    }

    /// Subprotocols, extensions and extra 101 headers for WebSocket handshakes.
    pub fn handshake(mut self, options: ServerOptions) -> Self {
        self.handshake = Some(options);
        self
    }

    /// Accepts WebSocket upgrades only on this path (call again for more); a plain GET to it
    /// gets `426 Upgrade Required`. Without any, every path accepts upgrades.
    pub fn websocket_path(mut self, path: impl Into<String>) -> Self {
        self.ws_paths.push(path.into());
        self
    }

    /// Whether shard threads are pinned to cores (default true).
    pub fn pin_threads(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// How many posts each shard's mailbox holds (default 65,536); past it
    /// [`Remote::post`] answers [`PostError::Full`].
    pub fn mailbox(mut self, capacity: usize) -> Self {
        self.mailbox = capacity.max(1);
        self
    }

    /// Seeds the shards' random generators (outgoing connections' masking keys) from `seed`
    /// instead of the operating system, so a test can pin every byte a client writes. Never in
    /// production: RFC 6455 wants masking keys an observer cannot predict.
    pub fn rng_seed(mut self, seed: u64) -> Self {
        self.rng_seed = Some(seed);
        self
    }

    /// Binds every address on every shard (`SO_REUSEPORT`) and starts the shards.
    pub fn start<S: Service>(self, service: S) -> io::Result<ServerHandle<S::Post>> {
        // No address is a client-only runtime: shards that only dial out.
        // Bind on this thread so a busy port fails `start`, and port 0 resolves once.
        let mut addrs = self.addrs.clone();
        let mut per_shard: Vec<Vec<OwnedFd>> = (0..self.shards).map(|_| Vec::new()).collect();
        for addr in &mut addrs {
            for listeners in per_shard.iter_mut() {
                let socket = listener(*addr)?;
                if addr.port() == 0 {
                    *addr = socket
                        .local_addr()?
                        .as_socket()
                        .ok_or_else(|| io::Error::other("listener has no IP address"))?;
                }
                listeners.push(OwnedFd::from(socket));
            }
        }
        let settings = Arc::new(ShardSettings {
            rng_seed: self.rng_seed,
            ..ShardSettings::new(
                self.limits.clone(),
                self.handshake.unwrap_or_default(),
                self.ws_paths,
            )
        });
        let service = Arc::new(service);
        let remote = Remote::new(self.shards, self.mailbox);
        let per_shard_max = self.limits.max_connections.div_ceil(self.shards);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

        let (ready_tx, ready_rx) = mpsc::channel();
        let mut shards = Vec::with_capacity(self.shards);
        for (i, listeners) in per_shard.into_iter().enumerate() {
            let inbox = Arc::new(ArrayQueue::new(4));
            let (settings, service, ready_tx, remote) = (
                settings.clone(),
                service.clone(),
                ready_tx.clone(),
                remote.clone(),
            );
            let (kind, pool, pin, shard_inbox) = (self.backend, self.pool, self.pin, inbox.clone());
            let thread = std::thread::Builder::new()
                .name(format!("ringsock-shard-{i}"))
                .spawn(move || {
                    if pin {
                        pin_to_core(i % cores);
                    }
                    // The backend is made on its own thread: io_uring's DEFER_TASKRUN requires it.
                    let backend = match reactor::create(kind, pool) {
                        Ok((backend, fallback)) => {
                            let _ =
                                ready_tx.send((i, Ok((backend.name(), backend.waker(), fallback))));
                            backend
                        }
                        Err(e) => {
                            let _ = ready_tx.send((i, Err(e)));
                            return Ok(ShutdownReport::default());
                        }
                    };
                    remote.set_waker(i, backend.waker());
                    let parts = ShardParts {
                        index: i,
                        listeners,
                        inbox: shard_inbox,
                        remote,
                        settings,
                        service,
                        max_connections: per_shard_max,
                    };
                    Shard::new(backend, parts).run()
                })?;
            shards.push(ShardHandle {
                inbox,
                waker: None,
                thread: Some(thread),
            });
        }
        drop(ready_tx);
        let mut backend = "";
        let mut fallback_reason = None;
        for _ in 0..shards.len() {
            match ready_rx.recv() {
                Ok((i, Ok((name, waker, fallback)))) => {
                    backend = name;
                    fallback_reason = fallback_reason.or(fallback);
                    shards[i].waker = Some(waker);
                }
                Ok((_, Err(e))) => return Err(e),
                Err(_) => return Err(io::Error::other("a shard thread died while starting")),
            }
        }
        match &fallback_reason {
            Some(why) => {
                eprintln!("ringsock: io_uring unavailable ({why}); using the {backend} backend")
            }
            None => eprintln!("ringsock: using the {backend} backend"),
        }
        Ok(ServerHandle {
            addrs,
            backend,
            shards,
            remote,
            report: None,
        })
    }
}

struct ShardHandle {
    inbox: Arc<ArrayQueue<ShardMsg>>,
    waker: Option<Waker>,
    thread: Option<JoinHandle<io::Result<ShutdownReport>>>,
}

/// A running server. Dropping it shuts the server down at once (no grace period). `P` is what
/// its service accepts as posts.
pub struct ServerHandle<P = ()> {
    addrs: Vec<SocketAddr>,
    backend: &'static str,
    shards: Vec<ShardHandle>,
    remote: Remote<P>,
    report: Option<ShutdownReport>,
}

impl<P> std::fmt::Debug for ServerHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("addrs", &self.addrs)
            .field("backend", &self.backend)
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl<P> ServerHandle<P> {
    /// Posts to the shards from outside (see [`Service::on_post`]).
    pub fn remote(&self) -> &Remote<P> {
        &self.remote
    }

    /// The addresses listened on (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// `"io_uring"` or `"epoll"`.
    pub fn backend(&self) -> &'static str {
        self.backend
    }

    /// Stops accepting, sends close 1001 to every WebSocket, waits up to `grace` for the close
    /// handshakes, cuts what remains, and reports how it went.
    pub fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        self.shutdown_in_place(grace)
    }

    fn shutdown_in_place(&mut self, grace: Duration) -> ShutdownReport {
        if let Some(report) = self.report {
            return report;
        }
        let deadline = Instant::now() + grace;
        for shard in &self.shards {
            // The control inbox holds 4 messages and shutdown is sent once: it always fits.
            let _ = shard.inbox.push(ShardMsg::Shutdown { deadline });
        }
        for shard in &self.shards {
            if let Some(w) = &shard.waker {
                w.wake();
            }
        }
        let mut total = ShutdownReport::default();
        for shard in &mut self.shards {
            if let Some(thread) = shard.thread.take() {
                if let Ok(Ok(report)) = thread.join() {
                    total += report;
                }
            }
        }
        self.report = Some(total);
        total
    }

    /// Blocks until the server is shut down from elsewhere (it runs until the process ends).
    pub fn wait(mut self) {
        for shard in &mut self.shards {
            if let Some(thread) = shard.thread.take() {
                let _ = thread.join();
            }
        }
        self.report = Some(ShutdownReport::default());
    }
}

impl<P> Drop for ServerHandle<P> {
    fn drop(&mut self) {
        self.shutdown_in_place(Duration::ZERO);
    }
}

/// A non-blocking listening socket with `SO_REUSEPORT`, so each shard can have its own.
fn listener(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

fn pin_to_core(core: usize) {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes within it; the call only
    // reads the set for the current thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}
