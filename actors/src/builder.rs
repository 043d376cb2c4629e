//! The server builder: addresses, limits, handler hooks per path, an HTTP responder, pings,
//! backpressure. `start` turns it into a [`ServerHandle`] server.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::ToSocketAddrs;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ringsock_engine::http::InvalidHeader;
use ringsock_engine::http::RequestHead;
use ringsock_engine::reactor::{BackendKind, PoolConfig};
use ringsock_engine::server::{self as engine, HttpResponse, Limits, Remote};
use ringsock_engine::ws::{DeflateOptions, ServerOptions};

use crate::actor::{post_spawn, Actor};
use crate::addr::Addr;
use crate::delivery::SlowPolicy;
use crate::handler::Handler;
use crate::post::Post;
use crate::registry::{Registry, TopicEvent, TopicHook};
use crate::runtime::{ErasedHandler, Hook, Responder, Runtime};
use crate::server_handle::ServerHandle;
use crate::settings::Settings;
use crate::stats::Stats;
use crate::upgrade::{Accept, UpgradeRequest};

/// Configures a [`ServerHandle`] server.
pub struct ServerBuilder {
    /// The engine's builder: addresses, shards, backend, buffer pool, mailboxes.
    engine: engine::EngineBuilder,
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
    /// The counters every shard will add to (actor ids are numbered here from the first spawn).
    stats: Arc<Stats>,
    /// The shards' mailboxes, made by the first [`ServerBuilder::spawn`] so its actors wait in
    /// them for the start.
    remote: Option<Remote<Post>>,
    /// Actors spawned before the start, dealt round robin.
    spawned: usize,
    /// The topic hook.
    on_topic: Option<TopicHook>,
    /// An address `bind` could not resolve, reported by `start`.
    bind_error: Option<io::Error>,
}

impl fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("engine", &self.engine)
            .field(
                "routes",
                &self.routes.iter().map(|(p, _)| p).collect::<Vec<_>>(),
            )
            .field("ping", &self.ping)
            .field("policy", &self.policy)
            .field("limits", &self.limits)
            .field("spawned", &self.spawned)
            .finish_non_exhaustive()
    }
}

/// The entry point: `Server::builder()`.
#[derive(Debug)]
pub struct Server;

impl Server {
    /// A builder with the engine's defaults, no routes (every upgrade gets 404), a 1 MiB
    /// high-water mark, a 64 MiB hard limit, and slow subscribers skipped.
    pub fn builder() -> ServerBuilder {
        ServerBuilder {
            engine: engine::Engine::builder(),
            handshake: ServerOptions::new(),
            routes: Vec::new(),
            http: None,
            ping: None,
            pong_timeout: None,
            policy: SlowPolicy::Drop,
            topic_policies: HashMap::new(),
            keep_request: false,
            limits: Limits::default(),
            stats: Arc::default(),
            remote: None,
            spawned: 0,
            on_topic: None,
            bind_error: None,
        }
    }
}

impl ServerBuilder {
    /// Adds the addresses to listen on: `"127.0.0.1:9001"`, `"[::1]:9001"`, `("localhost",
    /// 9001)` or a [`SocketAddr`](std::net::SocketAddr) (port 0 picks one). A name is resolved here, and every
    /// address it has is bound; one that does not resolve fails [`ServerBuilder::start`].
    pub fn bind(mut self, addrs: impl ToSocketAddrs) -> Self {
        match addrs.to_socket_addrs() {
            Ok(addrs) => {
                for addr in addrs {
                    self.engine = self.engine.bind(addr);
                }
            }
            Err(e) => {
                self.bind_error.get_or_insert(e);
            }
        }
        self
    }

    /// Number of shard threads (default: one per core). Set it before
    /// [`ServerBuilder::spawn`], which deals actors over the shards.
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
        F: Fn(&UpgradeRequest<'_>) -> Result<Accept<H>, HttpResponse> + Send + Sync + 'static,
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

    /// Starts `actor` with the server and returns its address now, so that routes, handlers and
    /// other threads can be given it before the first connection. Actors are dealt to the
    /// shards round robin; each starts (`on_start`) on its shard's first turn, before that
    /// shard accepts a connection or handles a message posted to the actor. Call
    /// [`ServerBuilder::shards`] and [`ServerBuilder::mailbox`] before this: the actors wait in
    /// the mailboxes (an actor that finds its mailbox full is dropped, its address dead).
    pub fn spawn<A: Actor>(&mut self, actor: A) -> Addr<A::Msg> {
        let (shards, capacity) = (self.engine.shard_count(), self.engine.mailbox_capacity());
        let remote = self
            .remote
            .get_or_insert_with(|| Remote::new(shards, capacity));
        let shard = self.spawned % remote.shards();
        self.spawned += 1;
        let id = self.stats.next_actor.fetch_add(1, Ordering::Relaxed);
        post_spawn(remote, shard, id, actor)
    }

    /// Calls `hook` when a topic gains its first subscriber on any shard and when it loses its
    /// last (where a bridge to a broker subscribes upstream and unsubscribes). It runs on the
    /// shard where that happened, inside the subscribe or unsubscribe (or the close that
    /// unsubscribed), under the lock that orders these events server-wide: it must be quick,
    /// must not block, and must not subscribe, unsubscribe or read topic counts itself (the
    /// lock is not reentrant; hand the event to a channel or an actor instead).
    pub fn on_topic(mut self, hook: impl Fn(TopicEvent<'_>) + Send + Sync + 'static) -> Self {
        self.on_topic = Some(Box::new(hook));
        self
    }

    /// Binds and starts the shards.
    pub fn start(self) -> io::Result<ServerHandle> {
        if let Some(e) = self.bind_error {
            return Err(e);
        }
        let stats = self.stats;
        let registry = Arc::new(Registry::new(self.on_topic));
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
            registry: registry.clone(),
        };
        let limits = (self.limits.max_message, self.limits.close_timeout);
        let engine = self.engine.limits(self.limits).handshake(self.handshake);
        let handle = match self.remote {
            Some(remote) => engine.start_with(runtime, remote).map_err(|e| {
                if e.kind() == io::ErrorKind::InvalidInput {
                    io::Error::new(
                        e.kind(),
                        format!("{e}: call `shards` before `spawn`, which dealt actors to them"),
                    )
                } else {
                    e
                }
            })?,
            None => engine.start(runtime)?,
        };
        Ok(ServerHandle::new(
            handle,
            stats,
            registry,
            self.spawned,
            limits,
        ))
    }
}
