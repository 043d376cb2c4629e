//! The server builder: addresses, limits, handler hooks per path, an HTTP responder, pings,
//! backpressure; and the running server's handle (publish, spawn, shutdown).

use std::collections::HashMap;
use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringsock_engine::client::DialOptions;
use ringsock_engine::http::InvalidHeader;
use ringsock_engine::http::RequestHead;
use ringsock_engine::reactor::{BackendKind, PoolConfig};
use ringsock_engine::server::{self as engine, HttpResponse, Limits, ServerHandle, ShutdownReport};
use ringsock_engine::ws::{
    ClientHandshake, ClientOptions, CloseCode, Config, DeflateOptions, HandshakeError,
    ServerOptions,
};
use std::net::ToSocketAddrs;

use crate::actor::Actor;
use crate::addr::{Addr, Target};
use crate::ctx::frame;
use crate::handler::{Handler, Message};
use crate::runtime::{ConnInfo, DialPost, ErasedHandler, Hook, Post, Runtime, Settings, Stats};
use crate::topics::SlowPolicy;
use crate::upgrade::{Accepted, UpgradeRequest};

/// Configures a [`Running`] server.
pub struct ServerBuilder {
    engine: engine::ServerBuilder,
    handshake: ServerOptions,
    routes: Vec<(String, Hook)>,
    http: Option<crate::runtime::Responder>,
    ping: Option<Duration>,
    pong_timeout: Option<Duration>,
    policy: SlowPolicy,
    topic_policies: HashMap<String, SlowPolicy>,
    keep_request: bool,
    limits: Limits,
}

/// The entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the engine's defaults, no routes (every upgrade gets 404), a 1 MiB
    /// high-water mark, a 64 MiB hard limit, and slow subscribers skipped.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            engine: engine::Server::builder(),
            handshake: ServerOptions::new(),
            routes: Vec::new(),
            http: None,
            ping: None,
            pong_timeout: None,
            policy: SlowPolicy::Drop,
            topic_policies: HashMap::new(),
            keep_request: false,
            limits: Limits::default(),
        }
    }
}

impl ServerBuilder {
    /// Adds an address to listen on (IPv4 or IPv6; port 0 picks one).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.engine = self.engine.bind(addr);
        self
    }

    /// Number of shard threads (default: one per core).
    pub fn shards(mut self, n: usize) -> Self {
        self.engine = self.engine.shards(n);
        self
    }

    /// The engine's limits and timeouts (connections, head size, handshake, idle, close,
    /// output levels), replacing any set before (`high_water`, `max_buffered`, `max_length`).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The largest message accepted, in bytes; larger ones close the connection with 1009.
    pub fn max_length(mut self, bytes: usize) -> Self {
        self.limits.max_message = bytes;
        self
    }

    /// Which reactor to run.
    pub fn backend(mut self, kind: BackendKind) -> Self {
        self.engine = self.engine.backend(kind);
        self
    }

    /// The receive buffer pool of each shard.
    pub fn pool(mut self, pool: PoolConfig) -> Self {
        self.engine = self.engine.pool(pool);
        self
    }

    /// Whether shard threads are pinned to cores (default true).
    pub fn pin_threads(mut self, pin: bool) -> Self {
        self.engine = self.engine.pin_threads(pin);
        self
    }

    /// Posts each shard's mailbox holds (tells, cross-shard publishes); default 65,536.
    pub fn mailbox(mut self, capacity: usize) -> Self {
        self.engine = self.engine.mailbox(capacity);
        self
    }

    /// Sends a ping every `interval`; a peer whose pong has not come within the pong timeout
    /// (default: the interval) is dropped, and its handler hears 1006.
    pub fn ping(mut self, interval: Duration) -> Self {
        // A zero interval would ping on every loop turn.
        self.ping = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// How long a peer has to answer an automatic ping.
    pub fn pong_timeout(mut self, timeout: Duration) -> Self {
        self.pong_timeout = Some(timeout);
        self
    }

    /// Supported subprotocols (the client's order of preference wins), unless a hook picks.
    pub fn protocols<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        for name in names {
            self.handshake = self.handshake.protocol(name);
        }
        self
    }

    /// Adds a header to every 101 answer.
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, InvalidHeader> {
        self.handshake = self.handshake.header(name, value)?;
        Ok(self)
    }

    /// Accepts permessage-deflate whenever a client offers it. The defaults
    /// ([`DeflateOptions::new`]) suit push services: no context takeover, so a shard shares its
    /// compressors and a topic message is compressed once for every subscriber.
    pub fn deflate(mut self, options: DeflateOptions) -> Self {
        self.handshake = self.handshake.deflate(options);
        self
    }

    /// The full handshake options (extensions, a subprotocol selector).
    pub fn handshake(mut self, options: ServerOptions) -> Self {
        self.handshake = options;
        self
    }

    /// Outbound bytes past which a connection counts as slow (default 1 MiB): sends report
    /// [`crate::SendStatus::Buffered`], topics apply their policy, and the engine stops reading
    /// from it. `on_drain` fires, and reading resumes, when it falls to `low` (default 64 KiB).
    /// The engine's [`ringsock_engine::server::OutputLimits`] `high` and `low`.
    pub fn high_water(mut self, high: usize, low: usize) -> Self {
        self.limits.output.high = high.max(1);
        self.limits.output.low = low.min(self.limits.output.high);
        self
    }

    /// Outbound bytes past which a send is refused and the connection closed with 1008
    /// (default 64 MiB): the engine's [`ringsock_engine::server::OutputLimits`] `max`, whose
    /// `overflow` policy [`ServerBuilder::limits`] can change.
    pub fn max_buffered(mut self, bytes: usize) -> Self {
        self.limits.output.max = bytes;
        self
    }

    /// What topics do with a subscriber past the high-water mark (default: drop the message).
    pub fn slow_policy(mut self, policy: SlowPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The slow-subscriber policy of one topic.
    pub fn topic_policy(mut self, topic: impl Into<String>, policy: SlowPolicy) -> Self {
        self.topic_policies.insert(topic.into(), policy);
        self
    }

    /// Keeps each connection's upgrade request for [`crate::Ctx::request`] (it costs its size
    /// per connection; off by default).
    pub fn keep_request_headers(mut self, keep: bool) -> Self {
        self.keep_request = keep;
        self
    }

    /// Serves WebSocket upgrades on `path` with the handler `hook` returns; `hook` runs before
    /// the 101 and may refuse with any response (status, headers, body). A plain GET to `path`
    /// gets 426.
    pub fn route<H, F>(mut self, path: &str, hook: F) -> Self
    where
        H: Handler,
        F: Fn(&UpgradeRequest<'_>) -> Result<Accepted<H>, HttpResponse> + Send + Sync + 'static,
    {
        let erased: Hook = Box::new(move |req| {
            hook(req).map(|a| a.map(|h| Box::new(h) as Box<dyn ErasedHandler>))
        });
        self.routes.push((path.to_owned(), erased));
        self.engine = self.engine.websocket_path(path);
        self
    }

    /// Answers requests that are not upgrades (default 404).
    pub fn http(
        mut self,
        respond: impl Fn(&RequestHead) -> HttpResponse + Send + Sync + 'static,
    ) -> Self {
        self.http = Some(Box::new(respond));
        self
    }

    /// Binds and starts the shards.
    pub fn start(self) -> io::Result<Running> {
        let stats = Arc::new(Stats::default());
        let settings = Arc::new(Settings {
            ping: self.ping,
            pong_timeout: self.pong_timeout.or(self.ping).unwrap_or(Duration::MAX),
            high_water: self.limits.output.high,
            low_water: self.limits.output.low,
            policy: self.policy,
            topic_policies: Arc::new(self.topic_policies),
            keep_request: self.keep_request,
        });
        let runtime = Runtime {
            routes: self.routes,
            http: self.http,
            settings,
            stats: stats.clone(),
        };
        let (max_message, close_timeout) = (self.limits.max_message, self.limits.close_timeout);
        let handle = self
            .engine
            .limits(self.limits)
            .handshake(self.handshake)
            .start(runtime)?;
        Ok(Running {
            handle,
            stats,
            next_shard: AtomicUsize::new(0),
            max_message,
            close_timeout,
        })
    }
}

/// Why [`Running::connect`] could not start a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not a valid ws:// or wss:// URL, or an option is invalid.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The host name did not resolve.
    #[error("cannot resolve the host: {0}")]
    Resolve(#[from] io::Error),
    /// The chosen shard's mailbox is full.
    #[error("the shard's mailbox is full")]
    Full,
}

/// Why [`Running::publish`] did not reach every shard.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{full} of {shards} shard mailboxes were full; the message did not reach them")]
pub struct PublishError {
    /// Shards whose mailbox was full.
    pub full: usize,
    /// Shards in all.
    pub shards: usize,
}

/// A running server.
pub struct Running {
    handle: ServerHandle<Post>,
    stats: Arc<Stats>,
    next_shard: AtomicUsize,
    max_message: usize,
    close_timeout: Duration,
}

impl Running {
    /// The addresses listened on (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.handle.local_addrs()
    }

    /// `"io_uring"` or `"epoll"`.
    pub fn backend(&self) -> &'static str {
        self.handle.backend()
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.handle.remote().shards()
    }

    /// Counters over all shards.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Publishes to `topic` from outside the server (a push service's producer): framed once,
    /// posted once to each shard.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Result<(), PublishError> {
        let frame = frame(message.into());
        let topic: Arc<str> = Arc::from(topic);
        let remote = self.handle.remote();
        let mut full = 0;
        for shard in 0..remote.shards() {
            let post = Post::Publish {
                topic: topic.clone(),
                frame: frame.clone(),
            };
            if remote.post(shard, post).is_err() {
                full += 1;
            }
        }
        if full < remote.shards() {
            // A message no shard took was not published; a producer that retries it must not
            // count it twice.
            self.stats.published.fetch_add(1, Ordering::Relaxed);
        }
        match full {
            0 => Ok(()),
            _ => Err(PublishError {
                full,
                shards: remote.shards(),
            }),
        }
    }

    /// Opens a WebSocket to `url` (`ws://` or `wss://`) on a shard, round robin, run by
    /// `handler` as any connection is: `on_open` once the server's 101 arrives
    /// ([`crate::Ctx::response`] holds it), or `on_connect_failed` (a TLS failure arrives as
    /// [`crate::DialError::Tls`]). Fails at once for an invalid URL, a name that does not
    /// resolve, or a full mailbox. Resolving a host name blocks the calling thread, never a
    /// shard.
    pub fn connect<H: Handler + Send>(&self, url: &str, handler: H) -> Result<(), ConnectError> {
        self.connect_with(url, &ClientOptions::new(), &DialOptions::new(), handler)
    }

    /// [`Running::connect`] with [`ClientOptions`] (subprotocols, extensions, extra request
    /// headers) and [`DialOptions`] (TLS settings for `wss://`: private CAs, a client
    /// certificate; an HTTP CONNECT proxy, whose host is resolved here instead of the server's;
    /// the connect timeout).
    pub fn connect_with<H: Handler + Send>(
        &self,
        url: &str,
        options: &ClientOptions,
        dial: &DialOptions,
        handler: H,
    ) -> Result<(), ConnectError> {
        self.connect_from(url, options, dial, None, handler)
    }

    /// [`Running::connect_with`] from a chosen local address (`None`: the kernel's pick). With
    /// port 0 the port is picked for the whole 4-tuple at connect time, so connections spread
    /// over several source IPs (127.0.0.2, 127.0.0.3, ...) get a port range each to one server.
    /// A local address the socket cannot bind to is reported to `on_connect_failed`.
    pub fn connect_from<H: Handler + Send>(
        &self,
        url: &str,
        options: &ClientOptions,
        dial: &DialOptions,
        local: Option<SocketAddr>,
        handler: H,
    ) -> Result<(), ConnectError> {
        // A fresh key per handshake, from the operating system's generator (RFC 6455 4.1).
        let handshake = ClientHandshake::new(url, options, rand::random())?;
        let (host, port) = dial.socket_target(&handshake);
        let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, "the host name has no address")
        })?;
        let info = ConnInfo {
            target: url.into(),
            peer: Some(addr),
            request: None,
            response: None,
        };
        let dial = DialPost {
            addr,
            local,
            handshake,
            options: dial.clone(),
            config: Config {
                max_length: self.max_message,
                close_timeout: self.close_timeout,
                ..Config::default()
            },
            info,
            handler: Box::new(handler),
        };
        let remote = self.handle.remote();
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % remote.shards();
        remote
            .post(shard, Post::Dial(Box::new(dial)))
            .map_err(|_| ConnectError::Full)
    }

    /// Starts `actor` on a shard (round robin) and returns its address. If that shard's
    /// mailbox is full, the actor is dropped and the address is dead.
    pub fn spawn<A: Actor>(&self, actor: A) -> Addr<A::Msg> {
        let remote = self.handle.remote();
        let shard = self.next_shard.fetch_add(1, Ordering::Relaxed) % remote.shards();
        let id = self.stats.next_actor.fetch_add(1, Ordering::Relaxed);
        let alive = Arc::new(AtomicBool::new(true));
        let post = Post::Spawn {
            actor: id,
            entry: Box::new(actor),
            alive: alive.clone(),
        };
        if remote.post(shard, post).is_err() {
            alive.store(false, Ordering::Release);
        }
        Addr {
            remote: remote.clone(),
            shard,
            target: Target::Actor(id),
            alive,
            _msg: PhantomData,
        }
    }

    /// Stops accepting, closes every WebSocket with 1001, waits up to `grace` for the close
    /// handshakes, and reports how it went.
    pub fn shutdown(self, grace: Duration) -> ShutdownReport {
        self.handle.shutdown(grace)
    }

    /// Blocks until the server has shut down (from another thread, or a signal), and returns
    /// the report.
    pub fn wait(&self) -> ShutdownReport {
        self.handle.wait()
    }
}

/// Close codes for [`SlowPolicy::Close`].
pub mod codes {
    use super::CloseCode;
    /// 1008: the subscriber broke the server's policy (did not keep up).
    pub const POLICY_VIOLATION: CloseCode = CloseCode::POLICY_VIOLATION;
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
}
