//! A pool of outgoing connections over a runtime's shards: see [`ClientPool`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringsock_engine::client::DialOptions;
use ringsock_engine::server::{DialError, ShutdownReport};
use ringsock_engine::ws::{ClientHandshake, ClientOptions, CloseCode, ProtocolError};

use crate::ctx::Ctx;
use crate::handler::Handler;
use crate::message::{Closed, Message};
use crate::running::{ConnectError, Running};
use crate::timer::TimerId;

/// When and how often a lost connection is dialled again.
///
/// A connection is lost when its dial fails (refused, timed out, a handshake refused) or when
/// it closes with any code but 1000: 1001 (a server going away), 1006 (dropped without a close
/// handshake), 1011, an application's 4000s. A clean close (1000) is redialled only with
/// [`Reconnect::after_clean_close`].
///
/// The n-th attempt in a row waits `initial × 2^(n-1)`, at most `max` (with jitter: a random
/// time between half that and that). A connection that opens resets the count.
#[derive(Clone, Debug, PartialEq)]
pub struct Reconnect {
    initial: Duration,
    max: Duration,
    attempts: Option<u32>,
    after_clean_close: bool,
    jitter: bool,
}

impl Reconnect {
    /// Exponential backoff from `initial` (the first redial's delay) doubling up to `max`, with
    /// no limit on attempts, after failures and abnormal closes only.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempts: None,
            after_clean_close: false,
            jitter: false,
        }
    }

    /// Gives a connection up after `n` redials in a row that did not open (counted in
    /// [`PoolStats::gave_up`]).
    pub fn attempts(mut self, n: u32) -> Self {
        self.attempts = Some(n);
        self
    }

    /// Also redials after a clean close (code 1000), at once (a clean close is no failure), so
    /// the pool keeps its N connections whatever ends them: handlers that close as soon as they
    /// open churn connections as fast as the server takes them.
    pub fn after_clean_close(mut self, yes: bool) -> Self {
        self.after_clean_close = yes;
        self
    }

    /// Spreads each delay randomly over its upper half, so connections dropped together do not
    /// come back together.
    pub fn jitter(mut self, yes: bool) -> Self {
        self.jitter = yes;
        self
    }

    /// The delay before attempt `n` (1 for the first redial), without jitter.
    pub fn delay(&self, n: u32) -> Duration {
        let shift = n.saturating_sub(1).min(31);
        self.initial
            .checked_mul(1 << shift)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

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

/// The pool's counters, summed over its shards.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Dials started (first dials and redials).
    pub dialed: u64,
    /// Dials in progress: neither open nor failed yet.
    pub connecting: u64,
    /// Connections open now.
    pub open: u64,
    /// Connections that opened, in all.
    pub opened: u64,
    /// Dials that did not open (refused, timed out, a handshake refused, no socket).
    pub failed: u64,
    /// Open connections that closed, in all.
    pub closed: u64,
    /// Of those, how many without a close handshake (1006: the transport dropped, a close
    /// went unanswered).
    pub dropped: u64,
    /// Redials scheduled after a failure or a close.
    pub reconnects: u64,
    /// Connections given up after the reconnect policy's attempt limit.
    pub gave_up: u64,
    /// Whole messages received.
    pub messages_in: u64,
    /// Their payload bytes.
    pub bytes_in: u64,
    /// Messages the pool's handlers sent with [`Ctx::send`] and its `send_*` forms.
    pub messages_out: u64,
    /// Their payload bytes.
    pub bytes_out: u64,
}

/// Configures a [`ClientPool`].
#[derive(Clone, Debug)]
pub struct ClientPoolBuilder {
    urls: Vec<String>,
    connections: usize,
    rate: Option<f64>,
    max_connecting: Option<usize>,
    reconnect: Option<Reconnect>,
    options: ClientOptions,
    dial: DialOptions,
    local: Vec<IpAddr>,
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
    pub fn start<H, F>(self, runtime: Running, factory: F) -> Result<ClientPool, ConnectError>
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
        let shared = Arc::new(Shared {
            shards: (0..shards).map(|_| ShardCounters::default()).collect(),
            driver: DriverCounters::default(),
            failed: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            events,
            driver_parked: AtomicBool::new(false),
            driver_thread: std::sync::OnceLock::new(),
        });
        let runtime = Arc::new(runtime);
        let driver = Driver {
            config: self,
            runtime: runtime.clone(),
            shared: shared.clone(),
            factory,
            inbox,
            due: BinaryHeap::new(),
            attempts: Vec::new(),
            in_flight: 0,
            next_token: Instant::now(),
            rng: seed(),
        };
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
/// [`Running`] runtime, each run by a [`Handler`] a factory makes; dials paced by a rate and a
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
///     fn on_open(&mut self, ctx: &mut Ctx<'_, '_, Self>) {
///         ctx.send_text("hello");
///     }
///     fn on_message(&mut self, ctx: &mut Ctx<'_, '_, Self>, message: Message) {
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
/// The pool dials through [`Running::connect_from`] — the same shard posts as any connection,
/// round robin over the shards — from one driver thread of its own, which also resolves host
/// names (never a shard). Handlers tell the driver when a connection opens, fails or closes;
/// counters are kept per shard by the one thread that writes them, so a message costs the pool
/// a few plain stores and no shared atomic operation.
pub struct ClientPool {
    shared: Arc<Shared>,
    runtime: Option<Arc<Running>>,
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
    pub fn runtime(&self) -> &Running {
        self.runtime
            .as_deref()
            .expect("the runtime lives as long as the pool")
    }

    /// The counters now. Each is exact for its shard and read without stopping anything, so
    /// a snapshot taken while connections change may be off by those changes.
    pub fn stats(&self) -> PoolStats {
        let mut s = PoolStats::default();
        let d = &self.shared.driver;
        for c in self.shared.shards.iter() {
            s.opened += c.opened.load(Ordering::Relaxed);
            s.closed += c.closed.load(Ordering::Relaxed);
            s.dropped += c.dropped.load(Ordering::Relaxed);
            s.messages_in += c.messages_in.load(Ordering::Relaxed);
            s.bytes_in += c.bytes_in.load(Ordering::Relaxed);
            s.messages_out += c.messages_out.load(Ordering::Relaxed);
            s.bytes_out += c.bytes_out.load(Ordering::Relaxed);
        }
        s.failed = self.shared.failed.load(Ordering::Relaxed);
        // Read after what it bounds, so `connecting` never goes below zero by much.
        s.dialed = d.dialed.load(Ordering::Relaxed);
        s.reconnects = d.reconnects.load(Ordering::Relaxed);
        s.gave_up = d.gave_up.load(Ordering::Relaxed);
        s.connecting = s.dialed.saturating_sub(s.opened + s.failed);
        s.open = s.opened.saturating_sub(s.closed);
        s
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

/// Counters one shard writes (single writer: a load and a store, no atomic read-modify-write),
/// on a cache line of their own.
#[derive(Default)]
#[repr(align(128))]
struct ShardCounters {
    opened: AtomicU64,
    closed: AtomicU64,
    dropped: AtomicU64,
    messages_in: AtomicU64,
    bytes_in: AtomicU64,
    messages_out: AtomicU64,
    bytes_out: AtomicU64,
}

/// Counters the driver thread writes.
#[derive(Default)]
#[repr(align(128))]
struct DriverCounters {
    dialed: AtomicU64,
    reconnects: AtomicU64,
    gave_up: AtomicU64,
}

/// Adds `n` to a counter only this thread writes.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// What the pool's handlers and its owner share with the driver.
struct Shared {
    shards: Box<[ShardCounters]>,
    driver: DriverCounters,
    /// Written from any shard (`on_connect_failed` has no shard) and by the driver.
    failed: AtomicU64,
    stopping: AtomicBool,
    events: mpsc::Sender<Event>,
    /// The driver is parked until something happens (it is not when busy: then it looks at
    /// its events every [`TICK`] by itself, and nobody pays a wake-up per event).
    driver_parked: AtomicBool,
    driver_thread: std::sync::OnceLock<std::thread::Thread>,
}

impl Shared {
    /// Tells the driver something happened.
    fn notify(&self, event: Event) {
        let _ = self.events.send(event);
        // SeqCst on both sides (here after the send, there after marking itself parked and
        // before looking at the inbox): one of the two always sees the other.
        if self.driver_parked.load(Ordering::SeqCst)
            && self.driver_parked.swap(false, Ordering::SeqCst)
        {
            if let Some(thread) = self.driver_thread.get() {
                thread.unpark();
            }
        }
    }

    fn shard(&self, shard: usize) -> &ShardCounters {
        // Sized by the runtime's shard count: a shard index is always in range.
        &self.shards[shard]
    }
}

/// What the driver hears.
enum Event {
    Opened { index: usize },
    Failed { index: usize },
    Closed { index: usize, code: CloseCode },
    Stop,
}

/// The handler the pool runs: the factory's, counted.
struct Pooled<H> {
    inner: H,
    index: usize,
    shared: Arc<Shared>,
}

impl<H: Handler> Pooled<H> {
    /// Runs one of the inner handler's callbacks and counts what it sent.
    #[inline]
    fn call<R>(
        &mut self,
        ctx: &mut Ctx<'_, '_, Self>,
        f: impl FnOnce(&mut H, &mut Ctx<'_, '_, H>) -> R,
    ) -> R {
        let before = ctx.shard_sent();
        let r = f(&mut self.inner, &mut ctx.retype());
        let after = ctx.shard_sent();
        if after.0 != before.0 {
            let c = self.shared.shard(ctx.shard());
            bump(&c.messages_out, after.0 - before.0);
            bump(&c.bytes_out, after.1 - before.1);
        }
        r
    }
}

impl<H: Handler> Handler for Pooled<H> {
    type Msg = H::Msg;

    fn on_open(&mut self, ctx: &mut Ctx<'_, '_, Self>) {
        bump(&self.shared.shard(ctx.shard()).opened, 1);
        self.shared.notify(Event::Opened { index: self.index });
        self.call(ctx, |h, c| h.on_open(c));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, '_, Self>, message: Message) {
        let c = self.shared.shard(ctx.shard());
        bump(&c.messages_in, 1);
        bump(&c.bytes_in, message.as_bytes().len() as u64);
        self.call(ctx, |h, c| h.on_message(c, message));
    }

    fn on_pong(&mut self, ctx: &mut Ctx<'_, '_, Self>, payload: Bytes) {
        self.call(ctx, |h, c| h.on_pong(c, payload));
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, '_, Self>, closed: Closed) {
        let c = self.shared.shard(ctx.shard());
        bump(&c.closed, 1);
        if closed.code == CloseCode::ABNORMAL {
            bump(&c.dropped, 1);
        }
        let code = closed.code;
        self.call(ctx, |h, c| h.on_close(c, closed));
        self.shared.notify(Event::Closed {
            index: self.index,
            code,
        });
    }

    fn on_error(&mut self, ctx: &mut Ctx<'_, '_, Self>, error: ProtocolError) {
        self.call(ctx, |h, c| h.on_error(c, error));
    }

    fn on_drain(&mut self, ctx: &mut Ctx<'_, '_, Self>) {
        self.call(ctx, |h, c| h.on_drain(c));
    }

    fn on_tell(&mut self, ctx: &mut Ctx<'_, '_, Self>, msg: Self::Msg) {
        self.call(ctx, |h, c| h.on_tell(c, msg));
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, '_, Self>, timer: TimerId) {
        self.call(ctx, |h, c| h.on_timer(c, timer));
    }

    fn on_connect_failed(&mut self, error: DialError) {
        self.shared.failed.fetch_add(1, Ordering::Relaxed);
        self.inner.on_connect_failed(error);
        self.shared.notify(Event::Failed { index: self.index });
    }
}

/// The pool's thread: dials what is due as the rate and the limit on dials in flight allow,
/// and schedules redials as handlers report failures and closes.
struct Driver<F> {
    config: ClientPoolBuilder,
    runtime: Arc<Running>,
    shared: Arc<Shared>,
    factory: F,
    inbox: mpsc::Receiver<Event>,
    /// Slots waiting to be dialled, by when.
    due: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Per slot: dials in a row since it last opened.
    attempts: Vec<u32>,
    in_flight: usize,
    /// When the rate allows the next dial.
    next_token: Instant,
    rng: u64,
}

/// How long the driver sleeps at most without news, parked (an event unparks it).
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// While events keep coming, the driver looks at them this often instead of being woken for
/// each: a pool churning tens of thousands of connections a second would otherwise spend much
/// of its shards' time waking it (a futex wake and two context switches per event).
const TICK: Duration = Duration::from_millis(1);
/// How long to wait before retrying a dial a full shard mailbox turned away.
const FULL_RETRY: Duration = Duration::from_millis(1);

impl<H, F> Driver<F>
where
    H: Handler + Send,
    F: FnMut(PoolSlot) -> H + Send + 'static,
{
    fn run(mut self) {
        let _ = self.shared.driver_thread.set(std::thread::current());
        let now = Instant::now();
        self.attempts = vec![0; self.config.connections];
        for index in 0..self.config.connections {
            self.due.push(Reverse((now, index)));
        }
        loop {
            let mut busy = false;
            while let Ok(event) = self.inbox.try_recv() {
                self.handle(event);
                busy = true;
            }
            if self.shared.stopping.load(Ordering::Acquire) {
                return;
            }
            let wake = self.dial_due();
            let until = |limit: Duration| {
                wake.map_or(limit, |at| {
                    at.saturating_duration_since(Instant::now()).min(limit)
                })
            };
            if busy || self.in_flight > 0 {
                // Busy: come back in a tick, unasked; events meanwhile wake nobody.
                std::thread::sleep(until(TICK));
                continue;
            }
            // Idle: park until an event or the next due dial. Marked parked first, then the
            // inbox checked again, so an event sent in between is not slept through.
            self.shared.driver_parked.store(true, Ordering::SeqCst);
            match self.inbox.try_recv() {
                Ok(event) => {
                    self.shared.driver_parked.store(false, Ordering::SeqCst);
                    self.handle(event);
                }
                Err(mpsc::TryRecvError::Disconnected) => return,
                Err(mpsc::TryRecvError::Empty) => {
                    std::thread::park_timeout(until(IDLE_WAIT));
                    self.shared.driver_parked.store(false, Ordering::SeqCst);
                }
            }
        }
    }

    /// Dials every slot that is due, as far as the rate and the in-flight limit allow; returns
    /// when to look again (`None`: only an event can change anything).
    fn dial_due(&mut self) -> Option<Instant> {
        loop {
            let Reverse((at, index)) = *self.due.peek()?;
            let now = Instant::now();
            if at > now {
                return Some(at);
            }
            if self
                .config
                .max_connecting
                .is_some_and(|max| self.in_flight >= max)
            {
                return None;
            }
            if let Some(rate) = self.config.rate {
                if self.next_token > now {
                    return Some(self.next_token);
                }
                let every = Duration::from_secs_f64(1.0 / rate);
                // A late wake-up is made up for, idle time is not: after a pause the rate is
                // still a ceiling, not an average with a burst saved up.
                if self.next_token + every < now {
                    self.next_token = now;
                }
                self.next_token += every;
            }
            self.due.pop();
            self.dial(index, now);
        }
    }

    fn dial(&mut self, index: usize, now: Instant) {
        let c = &self.config;
        let url_index = index % c.urls.len();
        let slot = PoolSlot {
            index,
            url: url_index,
            attempt: self.attempts[index],
        };
        let local =
            (!c.local.is_empty()).then(|| SocketAddr::new(c.local[index % c.local.len()], 0));
        let handler = Pooled {
            inner: (self.factory)(slot),
            index,
            shared: self.shared.clone(),
        };
        let result =
            self.runtime
                .connect_from(&c.urls[url_index], &c.options, &c.dial, local, handler);
        match result {
            Ok(()) => {
                self.in_flight += 1;
                bump(&self.shared.driver.dialed, 1);
            }
            Err(ConnectError::Full) => {
                // Not dialled at all: the same attempt, a moment later.
                self.due.push(Reverse((now + FULL_RETRY, index)));
            }
            Err(_) => {
                // Unresolvable or refused by the runtime: a failed dial like any other.
                bump(&self.shared.driver.dialed, 1);
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
                self.in_flight += 1;
                self.handle(Event::Failed { index });
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Stop => self.shared.stopping.store(true, Ordering::Release),
            Event::Opened { index } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.attempts[index] = 0;
            }
            Event::Failed { index } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                self.redial(index);
            }
            Event::Closed { index, code } => {
                let Some(policy) = &self.config.reconnect else {
                    return;
                };
                if code != CloseCode::NORMAL {
                    self.redial(index);
                } else if policy.after_clean_close && !self.shared.stopping.load(Ordering::Acquire)
                {
                    // A clean close is no failure: dialled again at once (as the rate allows).
                    bump(&self.shared.driver.reconnects, 1);
                    self.due.push(Reverse((Instant::now(), index)));
                }
            }
        }
    }

    /// Schedules slot `index` again after its backoff, unless there is no policy or the slot
    /// has used its attempts.
    fn redial(&mut self, index: usize) {
        let Some(policy) = &self.config.reconnect else {
            return;
        };
        if self.shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let attempt = self.attempts[index] + 1;
        if policy.attempts.is_some_and(|max| attempt > max) {
            bump(&self.shared.driver.gave_up, 1);
            return;
        }
        self.attempts[index] = attempt;
        let mut delay = policy.delay(attempt);
        if policy.jitter && !delay.is_zero() {
            let r = next_random(&mut self.rng);
            // Uniform over [delay / 2, delay].
            let half = delay / 2;
            delay = half + half.mul_f64((r >> 11) as f64 / (1u64 << 53) as f64);
        }
        bump(&self.shared.driver.reconnects, 1);
        self.due.push(Reverse((Instant::now() + delay, index)));
    }
}

fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ 0x9E37_79B9_7F4A_7C15
}

/// splitmix64: jitter needs spread, not secrecy.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = Reconnect::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<u128> = (1..=6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(1));
        let zero = Reconnect::new(Duration::ZERO, Duration::ZERO);
        assert_eq!(zero.delay(7), Duration::ZERO);
    }
}
