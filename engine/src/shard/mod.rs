//! A shard: one thread, one reactor, its own connections and timers.
//!
//! The loop is: wait for completions; hand received bytes to each socket's protocol state
//! (request head, then WebSocket [`Connection`]); let the [`Service`] answer; then, once per loop
//! turn, flush every connection that has output with one gathered send (µWebSockets' cork).
//! Nothing here blocks or takes a lock: other threads reach a shard only through its bounded
//! inbox and its waker.
//!
//! The loop and the completions it dispatches are here; each side of a connection's life has
//! its module: [`receive`] (bytes in, the request's route, a peer's end), [`dial`] (an outgoing
//! connection's transitions), [`flush`] (bytes out and backpressure), [`deadlines`] (timers),
//! [`shutdown`], [`refuse`] (503s when the shard cannot take a connection) and [`reclaim`]
//! (memory back to the kernel). The connection's data is [`crate::conn`]; what the service
//! sees, and the settings, are [`crate::service`].

mod deadlines;
mod dial;
mod flush;
mod receive;
mod reclaim;
mod refuse;
mod shutdown;
#[cfg(test)]
mod tests;

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use slab::Slab;

use crate::client::TlsError;
use crate::conn::dial::{DialError, Dialing};
use crate::conn::{slot, tls, Conn, Lifecycle, Open, Phase, NO_DRAIN};
use crate::http::{parse_request, RequestHead};
use crate::reactor::{Backend, BufId, Completion, Token, MAX_IOVECS};
use crate::service::route::{self, Route};
use crate::service::{
    ConnId, Conns, OutputLimits, Remote, Service, ShardCx, ShardSettings, ShutdownReport,
};
use crate::timers::Timers;
use crate::ws::extension::Extensions;
use crate::ws::{ClientNegotiated, CloseCode, Connection, Event, Refusal, State};
use refuse::Refusals;

/// Control messages the server handle sends a shard (apart from the service's posts).
#[derive(Debug)]
pub(crate) enum ShardMsg {
    /// Stop accepting, close every connection with 1001, and end by `deadline`.
    Shutdown {
        /// When connections still open are cut.
        deadline: Instant,
    },
}

/// How long past the shutdown deadline the shard waits for the backend's last `Closed`s.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Posts handled per loop turn at most, so a flood of posts cannot starve the sockets.
const MAX_POSTS_PER_TURN: usize = 8192;

/// What callbacks may touch, apart from the reactor.
struct World<S: Service> {
    conns: Slab<Conn<S::Session>>,
    dirty: Vec<Token>,
    /// Outgoing connections not yet registered with the reactor.
    dials: Vec<Token>,
    next_generation: u32,
    timers: Timers,
    local: S::Local,
    remote: Remote<S::Post>,
    index: usize,
    /// The output limits every connection's sends are held to.
    output: OutputLimits,
    /// Where outgoing connections' masking keys come from (a seed each).
    rng: StdRng,
}

impl<S: Service> World<S> {
    fn cx(&mut self, now: Instant) -> ShardCx<'_, S> {
        ShardCx {
            conns: Conns {
                conns: &mut self.conns,
                dirty: &mut self.dirty,
                output: self.output,
            },
            dials: &mut self.dials,
            next_generation: &mut self.next_generation,
            local: &mut self.local,
            timers: &mut self.timers,
            remote: &self.remote,
            shard: self.index,
            now,
        }
    }

    fn mark_dirty(&mut self, token: Token) {
        if let Some(conn) = slot(&mut self.conns, token) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    /// Hands every event the connection has queued (outside `recv`: transport loss, a close
    /// timeout, an abort) to the service.
    fn drain_events(&mut self, service: &S, token: Token, now: Instant, report: &mut Report) {
        loop {
            let Some(conn) = slot(&mut self.conns, token) else {
                return;
            };
            let Phase::Ws(open) = &mut conn.phase else {
                return;
            };
            let Some(event) = open.ws.poll_event() else {
                if open.ws.is_closed() && conn.lifecycle == Lifecycle::Live {
                    conn.lifecycle = Lifecycle::CloseWhenFlushed;
                    // A WebSocket that ended by itself ends its TLS cleanly too, after the
                    // close frame (the flush writes them in that order).
                    if let Some(tls) = conn.tls.as_deref_mut() {
                        tls.close();
                    }
                }
                return;
            };
            report.note(&event);
            service.on_event(&mut self.cx(now), ConnId(token), event);
        }
    }

    /// Hands received bytes to an open WebSocket and its events to the service.
    fn feed(
        &mut self,
        service: &S,
        token: Token,
        mut input: &[u8],
        now: Instant,
        report: &mut Report,
    ) {
        loop {
            let Some(conn) = slot(&mut self.conns, token) else {
                return;
            };
            let Phase::Ws(open) = &mut conn.phase else {
                return;
            };
            let Some(event) = open.ws.recv(&mut input, now) else {
                break;
            };
            report.note(&event);
            service.on_event(&mut self.cx(now), ConnId(token), event);
        }
        self.drain_events(service, token, now, report);
    }
}

/// The shutdown report and whether a shutdown is under way.
#[derive(Default)]
struct Report {
    shutting_down: bool,
    report: ShutdownReport,
}

impl Report {
    /// Counts how connections end during a shutdown.
    fn note(&mut self, event: &Event) {
        if let (true, Event::Close(close)) = (self.shutting_down, event) {
            if close.code == CloseCode::ABNORMAL {
                self.report.cut += 1;
            } else {
                self.report.closed_cleanly += 1;
            }
        }
    }
}

/// Where received bytes are: a receive buffer the reactor lent, or plaintext TLS produced.
enum Input<'a> {
    Buffer(BufId, usize),
    Plain(&'a [u8]),
}

/// The most plaintext buffer capacity a shard keeps between receives.
const PLAIN_KEEP: usize = 64 << 10;

/// The shortest discarded message whose payload is dropped unread ([`Backend::skip`]): a skip
/// and the header-sized read after it ([`crate::reactor::PROBE_LEN`]) cost receive calls of
/// their own, which only the copy of a long payload repays. Any rest of such a message is
/// skipped, however short: that puts the connection into the header-then-skip rhythm, which
/// it keeps while messages stay long.
const SKIP_MIN: u64 = 16 << 10;

/// How long a shard goes without receiving before it gives its receive buffers' memory back
/// ([`Backend::trim`]). Long enough that a steady stream never pays the page faults of
/// refilling them; short enough that an idle server's memory follows its connections.
const TRIM_AFTER: Duration = Duration::from_secs(1);

/// A shard's state, owned by its thread.
pub(crate) struct Shard<S: Service> {
    backend: Box<dyn Backend>,
    /// Plaintext out of TLS for the receive being handled (reused; only TLS connections use it).
    plain: Vec<u8>,
    world: World<S>,
    inbox: Arc<ArrayQueue<ShardMsg>>,
    listeners: Vec<OwnedFd>,
    settings: Arc<ShardSettings>,
    service: Arc<S>,
    max_connections: usize,
    shutdown: Option<Instant>,
    report: Report,
    /// When the last bytes arrived, while receive buffers may hold memory to give back.
    pool_used: Option<Instant>,
    /// Freed memory owed back to the kernel.
    reclaim: reclaim::Reclaim,
    /// Emptied lists of chunks from completed sends, for the next sends.
    send_lists: Vec<Vec<Bytes>>,
    /// The reserve descriptor and the accept-failure episode (answers 503 out of descriptors).
    refusals: Refusals,
}

/// How a shard is made: everything but its reactor.
pub(crate) struct ShardParts<S: Service> {
    pub index: usize,
    pub listeners: Vec<OwnedFd>,
    pub inbox: Arc<ArrayQueue<ShardMsg>>,
    pub remote: Remote<S::Post>,
    pub settings: Arc<ShardSettings>,
    pub service: Arc<S>,
    pub max_connections: usize,
}

impl<S: Service> Shard<S> {
    pub(crate) fn new(backend: Box<dyn Backend>, parts: ShardParts<S>) -> Self {
        let local = parts.service.local(parts.index, &parts.remote);
        // A client-only shard accepts nothing: it needs no reserve.
        let reserve = parts.settings.limits.reserve_fd && !parts.listeners.is_empty();
        Self {
            backend,
            plain: Vec::new(),
            world: World {
                conns: Slab::new(),
                dirty: Vec::new(),
                dials: Vec::new(),
                next_generation: 0,
                timers: Timers::new(),
                local,
                remote: parts.remote,
                index: parts.index,
                output: parts.settings.limits.output,
                rng: match parts.settings.rng_seed {
                    // Each shard its own stream, all pinned by the one seed.
                    Some(seed) => {
                        StdRng::seed_from_u64(seed ^ (parts.index as u64).rotate_left(32))
                    }
                    None => StdRng::from_os_rng(),
                },
            },
            inbox: parts.inbox,
            listeners: parts.listeners,
            settings: parts.settings,
            service: parts.service,
            max_connections: parts.max_connections,
            shutdown: None,
            report: Report::default(),
            pool_used: None,
            reclaim: reclaim::Reclaim::new(Instant::now()),
            send_lists: Vec::new(),
            refusals: Refusals::new(reserve),
        }
    }

    /// Runs until a shutdown has finished; returns what the shutdown achieved.
    pub(crate) fn run(mut self) -> std::io::Result<ShutdownReport> {
        for l in &self.listeners {
            self.backend.listen(l.as_raw_fd())?;
        }
        let shard = self.world.index;
        self.refusals.start(shard);
        let mut completions = Vec::with_capacity(256);
        let mut posts_left = false;
        loop {
            let now = Instant::now();
            let mut wake_at = self.world.timers.next_deadline();
            if let Some(deadline) = self.shutdown {
                let cut = if now >= deadline {
                    deadline + CLOSE_GRACE
                } else {
                    deadline
                };
                wake_at = Some(wake_at.map_or(cut, |t| t.min(cut)));
            }
            if let Some(used) = self.pool_used {
                let trim_at = used + TRIM_AFTER;
                wake_at = Some(wake_at.map_or(trim_at, |t| t.min(trim_at)));
            }
            if let Some(trim_at) = self.reclaim.due_at() {
                wake_at = Some(wake_at.map_or(trim_at, |t| t.min(trim_at)));
            }
            let mut timeout = wake_at.map(|t| t.saturating_duration_since(now));
            if posts_left
                || (timeout != Some(Duration::ZERO) && !self.world.remote.prepare_sleep(shard))
            {
                timeout = Some(Duration::ZERO);
            }
            let waited = self.backend.wait(timeout, &mut completions);
            self.world.remote.awake(shard);
            waited?;
            let now = Instant::now();
            match self.pool_used {
                Some(used) if completions.is_empty() && now >= used + TRIM_AFTER => {
                    self.backend.trim();
                    self.pool_used = None;
                    self.reclaim.maybe_trim(now, true);
                }
                _ => {
                    self.reclaim.maybe_trim(now, false);
                }
            }
            for completion in completions.drain(..) {
                self.on_completion(completion, now);
            }
            while let Some(msg) = self.inbox.pop() {
                self.on_message(msg, now);
            }
            posts_left = self.take_posts(now, MAX_POSTS_PER_TURN);
            self.fire_timers(now);
            self.flush(now);
            if let Some(deadline) = self.shutdown {
                if self.world.conns.is_empty() || now >= deadline + CLOSE_GRACE {
                    return Ok(self.report.report);
                }
                if now >= deadline {
                    self.cut_remaining();
                }
            }
        }
    }

    /// Hands up to `MAX_POSTS_PER_TURN` posts to the service, then tells it they are done;
    /// true if more are waiting.
    fn take_posts(&mut self, now: Instant, limit: usize) -> bool {
        let shard = self.world.index;
        let mut taken = 0;
        let more = loop {
            if taken == limit {
                break true;
            }
            let Some(post) = self.world.remote.pop(shard) else {
                break false;
            };
            self.service.on_post(&mut self.world.cx(now), post);
            taken += 1;
        };
        if taken > 0 {
            self.service.on_posts_done(&mut self.world.cx(now));
        }
        more
    }

    fn on_completion(&mut self, completion: Completion, now: Instant) {
        match completion {
            Completion::Accepted { fd } => self.on_accepted(fd, now),
            Completion::AcceptFailed(error) => self.refusals.accept_failed(
                self.world.index,
                &error,
                &self.listeners,
                self.shutdown.is_some(),
            ),
            Completion::Received { token, buf, len } => {
                self.pool_used = Some(now);
                self.reclaim.released(len);
                self.on_received(token, buf, len, now);
                self.backend.recycle(buf);
            }
            Completion::Skipped { token, len } => self.on_skipped(token, len, now),
            Completion::Eof { token } => self.on_transport_end(token, true, None, now),
            Completion::RecvFailed { token, error } => {
                self.on_transport_end(token, false, Some(error), now)
            }
            Completion::Sent {
                token,
                result,
                chunks,
            } => self.on_sent(token, result, chunks, now),
            Completion::Closed { token } => {
                let error = match self.shutdown {
                    Some(_) => DialError::Shutdown,
                    None => DialError::Closed,
                };
                self.fail_dial(token, error, now);
                // Whatever ended it, an open WebSocket's last event is its close.
                if let Some(conn) = slot(&mut self.world.conns, token) {
                    if let Phase::Ws(open) = &mut conn.phase {
                        open.ws.transport_closed();
                    }
                    self.world
                        .drain_events(&self.service, token, now, &mut self.report);
                    self.world.conns.remove(token.index());
                }
            }
            Completion::Woken => {}
        }
    }

    fn on_accepted(&mut self, fd: OwnedFd, now: Instant) {
        self.refusals.accepted(self.world.index);
        if self.shutdown.is_some() {
            return; // dropped: closed
        }
        if self.world.conns.len() >= self.max_connections {
            // Told, not left to guess from a bare close (the backend handed the socket over).
            refuse::refuse(fd);
            return;
        }
        set_nodelay(&fd);
        let raw = fd.as_raw_fd();
        self.world.next_generation = self.world.next_generation.wrapping_add(1);
        let generation = self.world.next_generation;
        let entry = self.world.conns.vacant_entry();
        let token = Token::new(entry.key(), generation);
        entry.insert(Conn::new(fd, generation, now));
        if self.backend.register(token, raw).is_err() {
            // Closed as its slot is dropped: nothing else holds it.
            self.world.conns.remove(token.index());
            return;
        }
        self.schedule(token);
    }
}

/// `n`, or `u32::MAX` if it is larger.
fn clamp_u32(n: impl TryInto<u32>) -> u32 {
    n.try_into().unwrap_or(u32::MAX)
}

/// Queues a final answer and closes once it is written.
fn answer<T>(conn: &mut Conn<T>, bytes: Vec<u8>) {
    conn.push_out(Bytes::from(bytes));
    conn.phase = Phase::Answered;
    conn.lifecycle = Lifecycle::CloseWhenFlushed;
}

fn peer_addr(fd: &OwnedFd) -> Option<std::net::SocketAddr> {
    socket2::SockRef::from(fd).peer_addr().ok()?.as_socket()
}

fn set_nodelay(fd: &OwnedFd) {
    // A failure costs latency only, never correctness.
    let _ = socket2::SockRef::from(fd).set_tcp_nodelay(true);
}
