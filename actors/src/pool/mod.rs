//! A pool of outgoing connections over a runtime's shards: see [`ClientPool`]. The handle and
//! its builder are here; the reconnect policy, the counters, the handler wrapped around the
//! application's and the driver thread have a module each.

mod driver;
mod pooled;
mod reconnect;
mod shared;

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ringsock_engine::client::DialOptions;
use ringsock_engine::server::ShutdownReport;
use ringsock_engine::ws::{ClientHandshake, ClientOptions};

use crate::handler::Handler;
use crate::server_handle::{ConnectError, ServerHandle};
use driver::Driver;
use shared::{Event, Shared};

pub use reconnect::Reconnect;
pub use shared::PoolStats;

/// Which connection of the pool a handler is made for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSlot {
    /// The connection's index, `0..connections`; a redial keeps it.
    pub index: usize,
    /// Which of the pool's URLs it dials (`index % urls`).
    pub url: usize,
    /// 0 for the first dial; n for the n-th redial since the slot last opened.
    pub attempt: u32,
}

/// Configures a [`ClientPool`].
#[derive(Clone, Debug)]
pub struct ClientPoolBuilder {
    /// The URLs; slot `i` dials `urls[i % n]`.
    pub(super) urls: Vec<String>,
    /// How many connections to keep.
    pub(super) connections: usize,
    /// Dials per second at most, if limited.
    pub(super) rate: Option<f64>,
    /// Dials in flight at most, if limited.
    pub(super) max_connecting: Option<usize>,
    /// When to redial, if ever.
    pub(super) reconnect: Option<Reconnect>,
    /// Every handshake's options.
    pub(super) options: ClientOptions,
    /// Every connection's TLS, proxy and connect timeout.
    pub(super) dial: DialOptions,
    /// Local addresses to dial from, round robin.
    pub(super) local: Vec<IpAddr>,
}

impl ClientPoolBuilder {
    /// Adds a URL; connection `i` dials URL `i % urls`.
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self
    }

    /// Adds URLs.
    pub fn urls<I: IntoIterator<Item = S>, S: Into<String>>(mut self, urls: I) -> Self {
        self.urls.extend(urls.into_iter().map(Into::into));
        self
    }

    /// How many connections to open (default 1).
    pub fn connections(mut self, n: usize) -> Self {
        self.connections = n;
        self
    }

    /// At most `per_second` dials a second, first dials and redials alike (default: as fast as
    /// the shards take them).
    pub fn rate(mut self, per_second: f64) -> Self {
        self.rate = (per_second > 0.0 && per_second.is_finite()).then_some(per_second);
        self
    }

    /// At most `n` dials in progress at once (default: no limit). A server's accept backlog
    /// (`somaxconn`, often 4096) drops what overflows it, and a dropped SYN is retried only a
    /// second later: opening thousands of connections goes faster a few hundred at a time.
    pub fn max_connecting(mut self, n: usize) -> Self {
        self.max_connecting = Some(n.max(1));
        self
    }

    /// Dials lost connections again (default: never).
    pub fn reconnect(mut self, policy: Reconnect) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Subprotocols, extensions and headers of every handshake.
    pub fn options(mut self, options: ClientOptions) -> Self {
        self.options = options;
        self
    }

    /// TLS, proxy and connect timeout of every connection.
    pub fn dial(mut self, options: DialOptions) -> Self {
        self.dial = options;
        self
    }

    /// Local addresses to connect from, round robin (connection `i` from `addrs[i % n]`), each
    /// with a port the kernel picks per destination: a way past the ~28,000 ephemeral ports
    /// one source address has towards one server (127.0.0.2, 127.0.0.3, ... on loopback).
    pub fn local_addrs<I: IntoIterator<Item = IpAddr>>(mut self, addrs: I) -> Self {
        self.local = addrs.into_iter().collect();
        self
    }

    /// Starts dialling on `runtime`'s shards (usually a client-only runtime: a
    /// [`crate::Server::builder`] without `bind`), each connection run by the handler
    /// `factory` makes for its slot. The factory runs on the pool's own thread, again for each
    /// redial. Fails if a URL is invalid (the runtime is then dropped, which stops it).
    pub fn start<H, F>(self, runtime: ServerHandle, factory: F) -> Result<ClientPool, ConnectError>
    where
        H: Handler + Send,
        F: FnMut(PoolSlot) -> H + Send + 'static,
    {
        for url in &self.urls {
            // Checks the URL and options; each dial makes its own, with a fresh key.
            ClientHandshake::new(url, &self.options, [0; 16])?;
        }
        if self.urls.is_empty() && self.connections > 0 {
            return Err(ConnectError::Handshake(
                ringsock_engine::ws::HandshakeError::InvalidUrl("the pool has no URL".into()),
            ));
        }
        let (events, inbox) = mpsc::channel();
        let shards = runtime.shards().max(1);
        let shared = Arc::new(Shared::new(shards, events));
        let runtime = Arc::new(runtime);
        let driver = Driver::new(self, runtime.clone(), shared.clone(), factory, inbox);
        let thread = std::thread::Builder::new()
            .name("ringsock-pool".into())
            .spawn(move || driver.run())
            .expect("spawning the pool's thread");
        Ok(ClientPool {
            shared,
            runtime: Some(runtime),
            driver: Some(thread),
        })
    }
}

/// A pool of outgoing connections: N WebSockets to one or more URLs, spread over the shards of a
/// [`ServerHandle`] runtime, each run by a [`Handler`] a factory makes; dials paced by a rate and a
/// limit on handshakes in flight; lost connections dialled again after an exponential backoff;
/// counters over the whole pool.
///
/// ```no_run
/// use std::time::Duration;
/// use ringsock_actors::{ClientPool, Ctx, Handler, Message, Reconnect, Server};
///
/// struct Ping;
/// impl Handler for Ping {
///     type Msg = ();
///     fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
///         ctx.send_text("hello");
///     }
///     fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
///         if let Some(text) = message.as_text() {
///             ctx.send_text(text);
///         }
///     }
/// }
///
/// let client = Server::builder().shards(2).start()?; // no bind: a client-only runtime
/// let pool = ClientPool::builder()
///     .url("ws://127.0.0.1:9001/")
///     .connections(1000)
///     .rate(5000.0) // dials per second
///     .reconnect(Reconnect::new(Duration::from_millis(100), Duration::from_secs(5)))
///     .start(client, |_slot| Ping)
///     .expect("valid URLs");
/// pool.wait_open(1000, Duration::from_secs(10));
/// println!("{:?}", pool.stats());
/// pool.shutdown(Duration::from_secs(2));
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The pool dials through [`ServerHandle::connect_from`] — the same shard posts as any connection,
/// round robin over the shards — from one driver thread of its own, which also resolves host
/// names (never a shard). Handlers tell the driver when a connection opens, fails or closes;
/// counters are kept per shard by the one thread that writes them, so a message costs the pool
/// a few plain stores and no shared atomic operation.
pub struct ClientPool {
    /// The counters and the driver's inbox.
    shared: Arc<Shared>,
    /// The runtime, shared with the driver; `None` only once `shutdown` took it.
    runtime: Option<Arc<ServerHandle>>,
    /// The driver thread, until it is joined.
    driver: Option<JoinHandle<()>>,
}

impl fmt::Debug for ClientPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientPool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ClientPool {
    /// A builder: no URL, one connection, no rate limit, no reconnects.
    pub fn builder() -> ClientPoolBuilder {
        ClientPoolBuilder {
            urls: Vec::new(),
            connections: 1,
            rate: None,
            max_connecting: None,
            reconnect: None,
            options: ClientOptions::new(),
            dial: DialOptions::new(),
            local: Vec::new(),
        }
    }

    /// The runtime the connections live on (to connect others, spawn actors, publish).
    pub fn runtime(&self) -> &ServerHandle {
        self.runtime
            .as_deref()
            .expect("the runtime lives as long as the pool")
    }

    /// The counters now. Each is exact for its shard and read without stopping anything, so
    /// a snapshot taken while connections change may be off by those changes.
    pub fn stats(&self) -> PoolStats {
        self.shared.stats()
    }

    /// Waits until at least `n` connections are open; false if `timeout` passed first.
    pub fn wait_open(&self, n: u64, timeout: Duration) -> bool {
        self.wait(timeout, |s| s.open >= n)
    }

    /// Waits until `check` holds for the counters (polled every millisecond); false if
    /// `timeout` passed first.
    pub fn wait(&self, timeout: Duration, check: impl Fn(&PoolStats) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if check(&self.stats()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops dialling: nothing waiting is dialled and nothing lost is dialled again. Open
    /// connections stay open, dials in progress finish.
    pub fn stop_dialing(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        self.shared.notify(Event::Stop);
        if let Some(thread) = self.driver.take() {
            let _ = thread.join();
        }
    }

    /// Stops dialling, closes every connection of the runtime with 1001 (going away), waits up
    /// to `grace` for the close handshakes and stops the runtime.
    pub fn shutdown(mut self, grace: Duration) -> ShutdownReport {
        self.stop_dialing();
        let runtime = self
            .runtime
            .take()
            .expect("the runtime lives as long as the pool");
        match Arc::try_unwrap(runtime) {
            Ok(running) => running.shutdown(grace),
            // Unreachable: the driver, the only other owner, has ended. Dropping the last
            // reference stops the runtime anyway.
            Err(_) => ShutdownReport::default(),
        }
    }
}

impl Drop for ClientPool {
    fn drop(&mut self) {
        self.stop_dialing();
    }
}
