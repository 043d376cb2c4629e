//! The running server's handle: publish from outside, open outgoing connections, spawn actors,
//! shut down.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ringsock_engine::client::DialOptions;
use ringsock_engine::server::{EngineHandle, ShutdownReport};
use ringsock_engine::ws::{ClientHandshake, ClientOptions, Config, HandshakeError};

use crate::actor::{post_spawn, Actor};
use crate::addr::Addr;
use crate::handler::Handler;
use crate::message::{frame, Message};
use crate::post::{DialPost, Post};
use crate::registry::{Registry, TopicInfo};
use crate::slot::ConnInfo;
use crate::stats::Stats;

/// Why [`ServerHandle::connect`] could not start a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
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

/// Why [`ServerHandle::publish`] did not reach every shard.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{full} of {shards} shard mailboxes were full; the message did not reach them")]
pub struct PublishError {
    /// Shards whose mailbox was full.
    pub full: usize,
    /// Shards in all.
    pub shards: usize,
}

/// A running server: cheap to clone and shareable with other threads (a publisher, a signal
/// watcher), each clone a handle to the same server. Any clone can publish, spawn, connect,
/// read the stats and topics, wait and shut down. Dropping the last clone stops the server at
/// once, without the close handshakes: call [`ServerHandle::shutdown`] or
/// [`ServerHandle::wait`] first.
#[derive(Clone)]
pub struct ServerHandle {
    inner: Arc<Shared>,
}

/// What every clone of a [`ServerHandle`] holds.
struct Shared {
    /// The engine's handle: addresses, every shard's mailbox, shutdown.
    handle: EngineHandle<Post>,
    /// The counters every shard adds to.
    stats: Arc<Stats>,
    /// The server-wide view of topics.
    registry: Arc<Registry>,
    /// The round robin over shards for dials and spawns.
    next_shard: AtomicUsize,
    /// The largest message an outgoing connection accepts, as the server's own.
    max_message: usize,
    /// How long an outgoing connection waits for the close handshake, as the server's own.
    close_timeout: Duration,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("server", &self.inner.handle)
            .field("stats", &self.inner.stats)
            .finish_non_exhaustive()
    }
}

impl ServerHandle {
    /// The handle of a server just started; `spawned` actors were posted before the start,
    /// round robin from shard 0.
    pub(crate) fn new(
        handle: EngineHandle<Post>,
        stats: Arc<Stats>,
        registry: Arc<Registry>,
        spawned: usize,
        limits: (usize, Duration),
    ) -> Self {
        let (max_message, close_timeout) = limits;
        Self {
            inner: Arc::new(Shared {
                handle,
                stats,
                registry,
                next_shard: AtomicUsize::new(spawned),
                max_message,
                close_timeout,
            }),
        }
    }

    /// The addresses listened on (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        self.inner.handle.local_addrs()
    }

    /// `"io_uring"` or `"epoll"`.
    pub fn backend(&self) -> &'static str {
        self.inner.handle.backend()
    }

    /// The number of shards.
    pub fn shards(&self) -> usize {
        self.inner.handle.remote().shards()
    }

    /// Counters over all shards.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Publishes to `topic` from outside the server (a push service's producer): framed once,
    /// posted once to each shard.
    pub fn publish(&self, topic: &str, message: impl Into<Message>) -> Result<(), PublishError> {
        let frame = frame(message.into());
        let topic: Arc<str> = Arc::from(topic);
        let remote = self.inner.handle.remote();
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
            self.inner.stats.published.fetch_add(1, Ordering::Relaxed);
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

    /// [`ServerHandle::connect`] with [`ClientOptions`] (subprotocols, extensions, extra request
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

    /// [`ServerHandle::connect_with`] from a chosen local address (`None`: the kernel's pick). With
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
                max_length: self.inner.max_message,
                close_timeout: self.inner.close_timeout,
                ..Config::default()
            },
            info,
            handler: Box::new(handler),
        };
        let remote = self.inner.handle.remote();
        let shard = self.inner.next_shard.fetch_add(1, Ordering::Relaxed) % remote.shards();
        remote
            .post(shard, Post::Dial(Box::new(dial)))
            .map_err(|_| ConnectError::Full)
    }

    /// Starts `actor` on a shard (round robin) and returns its address. If that shard's
    /// mailbox is full, the actor is dropped and the address is dead.
    pub fn spawn<A: Actor>(&self, actor: A) -> Addr<A::Msg> {
        let remote = self.inner.handle.remote();
        let shard = self.inner.next_shard.fetch_add(1, Ordering::Relaxed) % remote.shards();
        let id = self.inner.stats.next_actor.fetch_add(1, Ordering::Relaxed);
        post_spawn(remote, shard, id, actor)
    }

    /// Subscribers of `topic` on every shard.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.inner.registry.subscribers(topic)
    }

    /// The topics with at least one subscriber, by name, with their subscribers on every
    /// shard.
    pub fn topics(&self) -> Vec<TopicInfo> {
        self.inner.registry.list()
    }

    /// Stops accepting, closes every WebSocket with 1001, waits up to `grace` for the close
    /// handshakes, and reports how it went.
    /// What this thread published or told before the call reaches the connections before
    /// their 1001. Any clone may call it; the others' [`ServerHandle::wait`] returns the same
    /// report.
    pub fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.inner.handle.shutdown(grace)
    }

    /// Waits for SIGINT or SIGTERM, then shuts down as [`ServerHandle::shutdown`] does, with `grace`
    /// for the close handshakes: the whole life of a server process in one call. Fails only if
    /// the signal handlers cannot be installed.
    pub fn shutdown_on_signal(&self, grace: Duration) -> io::Result<ShutdownReport> {
        self.inner.handle.shutdown_on_signal(grace)
    }

    /// Blocks until the server has shut down (from another thread, or a signal), and returns
    /// the report.
    pub fn wait(&self) -> ShutdownReport {
        self.inner.handle.wait()
    }
}
