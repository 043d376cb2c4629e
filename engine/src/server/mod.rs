//! The server: binds listeners, starts one shard per core, routes requests, and shuts down
//! gracefully.
//!
//! ```no_run
//! use ringsock_engine::server::{Echo, Engine};
//! let server = Engine::builder().bind("127.0.0.1:9001").start(Echo)?;
//! println!("echo on {} with {}", server.local_addrs()[0], server.backend());
//! server.wait();
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use socket2::{Domain, Socket, Type};

use crate::reactor::{self, BackendKind, PoolConfig, Waker};
use crate::service::ShardSettings;
use crate::shard::{Shard, ShardMsg, ShardParts};
use crate::ws::ServerOptions;

// The contract, where users of the server look for it.
pub use crate::service::{
    Accept, ConnId, Conns, Dial, DialError, Echo, HttpResponse, Limits, Open, OutputLimits,
    PostError, Remote, Service, ShardCx, ShutdownReport, Upgrade,
};

/// Configures and starts a [`Engine`].
#[derive(Debug)]
pub struct EngineBuilder {
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
    /// An address `bind` could not resolve, reported by `start`.
    bind_error: Option<io::Error>,
}

/// The entry point: `Engine::builder()`.
#[derive(Debug)]
pub struct Engine;

impl Engine {
    /// A builder with defaults: one shard per core, pinned; io_uring with epoll as fallback
    /// (`RINGSOCK_BACKEND` overrides); every path accepts WebSocket upgrades.
    pub fn builder() -> EngineBuilder {
        EngineBuilder {
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
            bind_error: None,
        }
    }
}

impl EngineBuilder {
    /// Adds the addresses to listen on: `"127.0.0.1:9001"`, `"[::1]:0"`, `("localhost", 9001)`
    /// or a [`SocketAddr`] (port 0 picks one, the same for all shards). A name is resolved here
    /// and every address it has is bound; one that does not resolve fails
    /// [`EngineBuilder::start`].
    pub fn bind(mut self, addrs: impl ToSocketAddrs) -> Self {
        match addrs.to_socket_addrs() {
            Ok(addrs) => self.addrs.extend(addrs),
            Err(e) => {
                self.bind_error.get_or_insert(e);
            }
        }
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

    /// The number of shards `start` will run.
    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// The capacity of each shard's mailbox.
    pub fn mailbox_capacity(&self) -> usize {
        self.mailbox
    }

    /// Binds every address on every shard (`SO_REUSEPORT`) and starts the shards.
    pub fn start<S: Service>(self, service: S) -> io::Result<EngineHandle<S::Post>> {
        let remote = Remote::new(self.shards, self.mailbox);
        self.start_with(service, remote)
    }

    /// [`EngineBuilder::start`] on mailboxes made beforehand ([`Remote::new`]), so that what was
    /// posted to them before the start is the first thing each shard handles. Fails with
    /// [`io::ErrorKind::InvalidInput`] if `remote` has not one mailbox per shard.
    pub fn start_with<S: Service>(
        self,
        service: S,
        remote: Remote<S::Post>,
    ) -> io::Result<EngineHandle<S::Post>> {
        if let Some(e) = self.bind_error {
            return Err(e);
        }
        if remote.shards() != self.shards {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the mailboxes were made for {} shards, the server runs {}",
                    remote.shards(),
                    self.shards
                ),
            ));
        }
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
        let per_shard_max = self.limits.max_connections.div_ceil(self.shards);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

        let (ready_tx, ready_rx) = mpsc::channel();
        let mut shards = Vec::with_capacity(self.shards);
        let mut threads = Vec::with_capacity(self.shards);
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
            threads.push(thread);
            shards.push(ShardHandle { inbox, waker: None });
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
        Ok(EngineHandle {
            inner: Arc::new(Running {
                addrs,
                backend,
                shards,
                remote,
                state: Mutex::new(Stopping {
                    threads,
                    report: None,
                }),
                stopped: Condvar::new(),
            }),
        })
    }
}

struct ShardHandle {
    inbox: Arc<ArrayQueue<ShardMsg>>,
    waker: Option<Waker>,
}

/// A running server: cheap to clone, and shareable with other threads (a publisher, a signal
/// watcher). The server shuts down gracefully when any clone calls
/// [`EngineHandle::shutdown`] (or [`EngineHandle::shutdown_on_signal`] sees its signal), and at
/// once, without a grace period, when the last clone is dropped. `P` is what its service accepts
/// as posts.
pub struct EngineHandle<P = ()> {
    inner: Arc<Running<P>>,
}

impl<P> Clone for EngineHandle<P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

/// What every clone of a [`EngineHandle`] shares.
struct Running<P> {
    addrs: Vec<SocketAddr>,
    backend: &'static str,
    shards: Vec<ShardHandle>,
    remote: Remote<P>,
    /// The shard threads until a shutdown has joined them, then its report.
    state: Mutex<Stopping>,
    /// Signalled when the report is in.
    stopped: Condvar,
}

/// Where a server is in stopping.
struct Stopping {
    threads: Vec<JoinHandle<io::Result<ShutdownReport>>>,
    report: Option<ShutdownReport>,
}

impl<P> std::fmt::Debug for EngineHandle<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("addrs", &self.inner.addrs)
            .field("backend", &self.inner.backend)
            .field("shards", &self.inner.shards.len())
            .finish()
    }
}

impl<P> EngineHandle<P> {
    /// Posts to the shards from outside (see [`Service::on_post`]).
    pub fn remote(&self) -> &Remote<P> {
        &self.inner.remote
    }

    /// The addresses listened on (port 0 resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.inner.addrs
    }

    /// `"io_uring"` or `"epoll"`.
    pub fn backend(&self) -> &'static str {
        self.inner.backend
    }

    /// Stops accepting, sends close 1001 to every WebSocket, waits up to `grace` for the close
    /// handshakes, cuts what remains, and reports how it went. Posts queued before the call
    /// (a last publish) are handled before the 1001s are sent. A second call, from any clone,
    /// waits for the first and returns the same report.
    pub fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.inner.shutdown(grace)
    }

    /// Blocks until the server has shut down (from another clone or a signal), and returns the
    /// report. Does not stop it.
    pub fn wait(&self) -> ShutdownReport {
        let mut state = self.inner.lock();
        loop {
            if let Some(report) = state.report {
                return report;
            }
            state = self
                .inner
                .stopped
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Waits for SIGINT or SIGTERM, then shuts down with `grace` (see
    /// [`EngineHandle::shutdown`]): the whole life of a server process in one call. The signals
    /// are caught with handlers (no signal mask to set before the shards start), and a second
    /// Ctrl-C during the grace period does not kill the process; it is only caught while this
    /// call runs. Fails if the handlers cannot be installed.
    pub fn shutdown_on_signal(&self, grace: Duration) -> io::Result<ShutdownReport> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        if let Some(signal) = signals.forever().next() {
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            eprintln!("ringsock: {name}, closing connections (grace {grace:?})");
        }
        let report = self.shutdown(grace);
        signals.handle().close();
        Ok(report)
    }
}

impl<P> Running<P> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Stopping> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let mut state = self.lock();
        if let Some(report) = state.report {
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
        for thread in state.threads.drain(..) {
            if let Ok(Ok(report)) = thread.join() {
                total += report;
            }
        }
        state.report = Some(total);
        self.stopped.notify_all();
        total
    }
}

impl<P> Drop for Running<P> {
    fn drop(&mut self) {
        self.shutdown(Duration::ZERO);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::Echo;

    /// A clone waits on another thread while the original shuts down: both see one report, and
    /// a second shutdown returns it again instead of stopping anything twice.
    #[test]
    fn a_clone_waits_for_the_shutdown_another_makes() {
        let server = Engine::builder()
            .bind("127.0.0.1:0")
            .shards(1)
            .pin_threads(false)
            .start(Echo)
            .unwrap();
        let waiter = server.clone();
        let waiting = std::thread::spawn(move || waiter.wait());
        let report = server.shutdown(Duration::from_millis(100));
        assert_eq!(waiting.join().unwrap(), report);
        assert_eq!(server.shutdown(Duration::ZERO), report);
        // Stopped: nothing listens any more.
        let addr = server.local_addrs()[0];
        assert!(std::net::TcpStream::connect(addr).is_err());
    }
}
