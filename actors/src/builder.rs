//! The server builder: addresses, limits, handler hooks per path, an HTTP responder, pings,
//! backpressure. `start` turns it into a [`Running`] server.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ringsock_engine::http::InvalidHeader;
use ringsock_engine::http::RequestHead;
use ringsock_engine::reactor::{BackendKind, PoolConfig};
use ringsock_engine::server::{self as engine, HttpResponse, Limits};
use ringsock_engine::ws::{DeflateOptions, ServerOptions};

use crate::delivery::SlowPolicy;
use crate::handler::Handler;
use crate::running::Running;
use crate::runtime::{ErasedHandler, Hook, Responder, Runtime};
use crate::settings::Settings;
use crate::stats::Stats;
use crate::upgrade::{Accepted, UpgradeRequest};

/// Configures a [`Running`] server.
pub struct ServerBuilder {
    /// The engine's builder: addresses, shards, backend, buffer pool, mailboxes.
    engine: engine::ServerBuilder,
    /// The handshake's options: subprotocols, extensions, extra headers.
    handshake: ServerOptions,
    /// Upgrade hooks by path.
    routes: Vec<(String, Hook)>,
    /// The responder for requests that are not upgrades.
    http: Option<Responder>,
    /// The automatic ping interval, if any.
    ping: Option<Duration>,
    /// The automatic pong deadline, if not the interval.
    pong_timeout: Option<Duration>,
    /// The default slow-subscriber policy.
    policy: SlowPolicy,
    /// Policies of named topics.
    topic_policies: HashMap<String, SlowPolicy>,
    /// Whether connections keep their upgrade request.
    keep_request: bool,
    /// The engine's limits, kept here as `high_water`, `max_buffered` and `max_length` edit
    /// them until `start`.
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
        Ok(Running::new(handle, stats, max_message, close_timeout))
    }
}
