//! A shard: one thread, one reactor, its own connections and timers.
//!
//! The loop is: wait for completions; hand received bytes to each socket's protocol state
//! (request head, then WebSocket [`Connection`]); let the [`Service`] answer; then, once per loop
//! turn, flush every connection that has output with one gathered send (µWebSockets' cork).
//! Nothing here blocks or takes a lock: other threads reach a shard only through its bounded
//! inbox and its waker.

pub(crate) mod conn;
pub mod cx;
pub mod dial;
mod reclaim;
mod refuse;
#[cfg(test)]
mod tests;
pub mod timers;
mod tls;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use slab::Slab;

use crate::client::TlsError;
use crate::http::{parse_request, RequestHead};
use crate::reactor::{Backend, BufId, Completion, Token, MAX_IOVECS};
use crate::server::{
    ConnId, HttpResponse, OutputLimits, Remote, Service, ShardSettings, ShutdownReport, Upgrade,
};
use crate::ws::extension::Extensions;
use crate::ws::{
    is_websocket_upgrade, AcceptError, ClientAccepted, CloseCode, Connection, Decision, Event,
    Refusal, State,
};
use conn::{Conn, Lifecycle, Phase};
use cx::{Conns, Cx, Open};
use dial::{DialError, Dialing};
use refuse::Refusals;
use timers::Timers;

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
    fn cx(&mut self, now: Instant) -> Cx<'_, S> {
        Cx {
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
    pub fn new(backend: Box<dyn Backend>, parts: ShardParts<S>) -> Self {
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
            refusals: Refusals::new(reserve),
        }
    }

    /// Runs until a shutdown has finished; returns what the shutdown achieved.
    pub fn run(mut self) -> std::io::Result<ShutdownReport> {
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
            posts_left = self.take_posts(now);
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
    fn take_posts(&mut self, now: Instant) -> bool {
        let shard = self.world.index;
        let mut taken = 0;
        let more = loop {
            if taken == MAX_POSTS_PER_TURN {
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

    fn on_accepted(&mut self, fd: RawFd, now: Instant) {
        self.refusals.accepted(self.world.index);
        if self.shutdown.is_some() {
            // SAFETY: the backend handed us ownership of this freshly accepted socket.
            unsafe { libc::close(fd) };
            return;
        }
        if self.world.conns.len() >= self.max_connections {
            // Told, not left to guess from a bare close (the backend handed the socket over).
            refuse::refuse(fd);
            return;
        }
        set_nodelay(fd);
        self.world.next_generation = self.world.next_generation.wrapping_add(1);
        let generation = self.world.next_generation;
        let entry = self.world.conns.vacant_entry();
        let token = Token::new(entry.key(), generation);
        entry.insert(Conn::new(fd, generation, now));
        if self.backend.register(token, fd).is_err() {
            self.world.conns.remove(token.index());
            // SAFETY: registration failed, so nothing else holds this socket.
            unsafe { libc::close(fd) };
            return;
        }
        self.schedule(token);
    }

    fn on_received(&mut self, token: Token, buf: BufId, len: usize, now: Instant) {
        if self.on_bytes(token, Input::Buffer(buf, len), now) {
            self.world.mark_dirty(token);
        }
    }

    /// Bytes a skip dropped unread: the WebSocket accounts for them as received payload.
    fn on_skipped(&mut self, token: Token, len: usize, now: Instant) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        conn.skipping = conn.skipping.saturating_sub(clamp_u32(len));
        if conn.lifecycle != Lifecycle::Live {
            return;
        }
        conn.heard_from(now);
        let Phase::Ws(open) = &mut conn.phase else {
            return;
        };
        open.ws.skipped(len as u64, now);
        self.world
            .drain_events(&self.service, token, now, &mut self.report);
        self.world.mark_dirty(token);
    }

    /// Received bytes that went through TLS: their plaintext goes to the phase; a TLS failure
    /// after it.
    fn on_tls_received(&mut self, token: Token, buf: BufId, len: usize, now: Instant) {
        let Some(tls) = slot(&mut self.world.conns, token).and_then(|c| c.tls.as_deref_mut())
        else {
            return;
        };
        let mut plain = std::mem::take(&mut self.plain);
        plain.clear();
        let received = tls.receive(0, self.backend.buffer(buf, len), &mut plain);
        // Plaintext that came before a bad record still counts.
        self.on_bytes(token, Input::Plain(&plain), now);
        if let Err(e) = received {
            self.on_tls_error(token, e, now);
        }
        if plain.capacity() <= PLAIN_KEEP {
            self.plain = plain;
        }
    }

    /// Hands bytes to the connection's phase: from the socket (through TLS first when the
    /// connection has it), or plaintext out of TLS. False if the connection takes no more.
    fn on_bytes(&mut self, token: Token, input: Input<'_>, now: Instant) -> bool {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return false;
        };
        let data = match input {
            Input::Buffer(buf, len) => {
                // The backend counts delivered bytes against a skip in progress; so do we.
                conn.skipping = conn.skipping.saturating_sub(clamp_u32(len));
                if conn.lifecycle != Lifecycle::Live {
                    return false;
                }
                conn.heard_from(now);
                if let Phase::Dialing(dialing) | Phase::Proxying(dialing) = &mut conn.phase {
                    dialing.connected_at.get_or_insert(now);
                }
                if conn.tls.is_some() {
                    self.on_tls_received(token, buf, len, now);
                    return true;
                }
                self.backend.buffer(buf, len)
            }
            Input::Plain([]) => return true,
            Input::Plain(plain) => plain,
        };
        match &mut conn.phase {
            Phase::Head(head) => {
                head.extend_from_slice(data);
                match parse_request(head, &self.settings.limits.head) {
                    Ok(None) => {}
                    Err(e) => answer(conn, Refusal::new(e.status(), e.to_string()).to_response()),
                    Ok(Some((request, used))) => {
                        let rest = head.split_off(used).freeze();
                        self.route(token, request, rest, now);
                    }
                }
            }
            Phase::Ws(_) => {
                self.world
                    .feed(&self.service, token, data, now, &mut self.report);
            }
            Phase::Dialing(dialing) => {
                dialing.head.extend_from_slice(data);
                match dialing.handshake.read_response(&dialing.head) {
                    Ok(None) => {}
                    Err(e) => self.fail_dial(token, DialError::Handshake(e), now),
                    Ok(Some((accepted, used))) => self.opened(token, accepted, used, now),
                }
            }
            Phase::Proxying(dialing) => {
                dialing.head.extend_from_slice(data);
                // A proxy is always set while proxying.
                let answer = match &dialing.options.proxy {
                    Some(proxy) => proxy.read_response(&dialing.head),
                    None => Ok(Some(0)),
                };
                match answer {
                    Ok(None) => {}
                    Err(e) => self.fail_dial(token, DialError::Proxy(e), now),
                    Ok(Some(used)) => self.tunnelled(token, used, now),
                }
            }
            Phase::Answered => {}
        }
        true
    }

    /// TLS failed: a dial fails with the reason (and the alert rustls prepared goes out before
    /// the socket closes); an open WebSocket has lost its transport.
    fn on_tls_error(&mut self, token: Token, error: TlsError, now: Instant) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        match conn.phase {
            Phase::Dialing(_) | Phase::Proxying(_) => {
                self.fail_dial(token, DialError::Tls(error), now);
                if let Some(conn) = slot(&mut self.world.conns, token) {
                    conn.transmit_tls();
                }
            }
            _ => {
                let error = std::io::Error::new(std::io::ErrorKind::InvalidData, error);
                self.on_transport_end(token, false, Some(error), now);
            }
        }
    }

    /// The proxy opened the tunnel: the handshake (inside TLS for `wss://`) goes out on the same
    /// socket, and whatever followed the proxy's answer belongs to it.
    fn tunnelled(&mut self, token: Token, used: usize, now: Instant) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        let Phase::Proxying(mut dialing) = std::mem::replace(&mut conn.phase, Phase::Answered)
        else {
            return;
        };
        let rest = dialing.head.split_off(used);
        dialing.head.clear();
        let opened = tls::open_tunnel(conn, &dialing.handshake, &dialing.options);
        conn.phase = Phase::Dialing(dialing);
        let inner = match opened {
            Ok(inner) => inner,
            Err(e) => return self.fail_dial(token, e, now),
        };
        if rest.is_empty() {
            return;
        }
        match (inner, conn.tls.as_deref_mut()) {
            (Some(layer), Some(tls)) => {
                let mut plain = Vec::new();
                let received = tls.receive(layer, &rest, &mut plain);
                self.on_bytes(token, Input::Plain(&plain), now);
                if let Err(e) = received {
                    self.on_tls_error(token, e, now);
                }
            }
            _ => {
                self.on_bytes(token, Input::Plain(&rest), now);
            }
        }
    }

    /// An outgoing connection's 101 arrived: it becomes a WebSocket in the client role.
    fn opened(&mut self, token: Token, accepted: ClientAccepted, used: usize, now: Instant) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        let Phase::Dialing(dialing) = std::mem::replace(&mut conn.phase, Phase::Answered) else {
            return;
        };
        let Dialing {
            config,
            session,
            mut head,
            ..
        } = *dialing;
        let rest = head.split_off(used).freeze();
        let mut ws = Connection::client(
            config,
            Extensions::new(accepted.extensions),
            self.world.rng.random(),
        );
        // The server closes the TCP connection first (RFC 6455 section 7.1.1); the socket stays
        // open for it, and the close is reported when it has, or when this side gives up.
        ws.wait_for_server_close(Some(self.settings.limits.server_close_timeout));
        conn.phase = Phase::Ws(Box::new(Open {
            ws,
            session,
            protocol: accepted.protocol.map(Into::into),
        }));
        self.world.mark_dirty(token);
        self.service
            .on_connected(&mut self.world.cx(now), ConnId(token), &accepted.response);
        self.world
            .feed(&self.service, token, &rest, now, &mut self.report);
    }

    /// An outgoing connection that has not opened ends: the service gets its session back and
    /// the socket closes. Nothing happens for any other kind of connection.
    fn fail_dial(&mut self, token: Token, error: DialError, now: Instant) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        if !matches!(conn.phase, Phase::Dialing(_) | Phase::Proxying(_)) {
            return;
        }
        let (Phase::Dialing(dialing) | Phase::Proxying(dialing)) =
            std::mem::replace(&mut conn.phase, Phase::Answered)
        else {
            return;
        };
        conn.discard_output();
        if conn.lifecycle == Lifecycle::Live {
            conn.lifecycle = Lifecycle::CloseWhenFlushed;
        }
        self.world.mark_dirty(token);
        self.service
            .on_connect_failed(&mut self.world.cx(now), dialing.session, error);
    }

    /// Registers the outgoing connections callbacks made with the reactor.
    fn register_dials(&mut self, now: Instant) {
        while let Some(token) = self.world.dials.pop() {
            let Some(conn) = slot(&mut self.world.conns, token) else {
                continue;
            };
            let fd = conn.fd;
            if let Err(e) = self.backend.register(token, fd) {
                self.fail_dial(token, DialError::Io(e), now);
                // Never registered: the reactor will not report its close, so close it here.
                if let Some(conn) = slot(&mut self.world.conns, token) {
                    // SAFETY: the socket was made by `dial::connect` and nothing else holds it.
                    unsafe { libc::close(conn.fd) };
                    self.world.conns.remove(token.index());
                }
                continue;
            }
            self.schedule(token);
        }
    }

    /// Decides what a complete request head gets: a WebSocket, a 426, or the HTTP responder.
    fn route(&mut self, token: Token, request: RequestHead, rest: Bytes, now: Instant) {
        let settings = &*self.settings;
        let service = &*self.service;
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        let ws_path = settings.is_websocket_path(request.path());
        // A request naming `Upgrade: websocket` goes to the handshake even when it is not a
        // valid upgrade (POST, HTTP/1.0, no `Connection: upgrade`): its 400 says what is wrong,
        // where the HTTP responder would only say 404.
        let wants_websocket =
            is_websocket_upgrade(&request) || request.headers().has_token("upgrade", "websocket");
        if !wants_websocket {
            if request.method() == "GET" && settings.is_registered_websocket_path(request.path()) {
                let refusal = Refusal::new(
                    426,
                    "This path speaks WebSocket only: send an Upgrade request",
                )
                .with_header("Upgrade", "websocket");
                answer(conn, refusal.to_response());
            } else {
                answer(conn, http_bytes(&service.on_http(&request)));
            }
            return;
        }
        if !ws_path {
            return answer(conn, http_bytes(&HttpResponse::not_found()));
        }
        let peer = peer_addr(conn.fd);
        let local = &mut self.world.local;
        let mut session = None;
        let accepted = settings.handshake.accept_with(&request, |protocols| {
            let upgrade = Upgrade {
                request: &request,
                protocols,
                peer,
                shard: self.world.index,
            };
            service.upgrade(local, &upgrade).map(|accept| {
                session = Some(accept.session);
                Decision {
                    protocol: accept.protocol,
                    headers: accept.headers,
                }
            })
        });
        let (accepted, session) = match (accepted, session) {
            (Err(AcceptError::Refused(refusal)), _) => return answer(conn, refusal.to_response()),
            (Err(AcceptError::Decided(response)), _) => return answer(conn, http_bytes(&response)),
            (Ok(accepted), Some(session)) => (accepted, session),
            (Ok(_), None) => {
                return answer(
                    conn,
                    Refusal::new(500, "the upgrade was accepted without a session").to_response(),
                )
            }
        };
        conn.push_out(Bytes::from(accepted.response));
        let ws = Connection::server(
            settings.ws_config.clone(),
            Extensions::new(accepted.extensions),
        );
        conn.phase = Phase::Ws(Box::new(Open {
            ws,
            session,
            protocol: accepted.protocol.map(Into::into),
        }));
        self.world.mark_dirty(token);
        service.on_open(&mut self.world.cx(now), ConnId(token), &request);
        self.world
            .feed(service, token, &rest, now, &mut self.report);
    }

    /// The peer's side ended: with an EOF (`half_closed`) it may still read, otherwise the
    /// connection is broken.
    fn on_transport_end(
        &mut self,
        token: Token,
        half_closed: bool,
        error: Option<std::io::Error>,
        now: Instant,
    ) {
        let failed = match error {
            Some(e) => DialError::Io(e),
            None => DialError::Closed,
        };
        self.fail_dial(token, failed, now);
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        if let Phase::Ws(open) = &mut conn.phase {
            open.ws.transport_closed();
        }
        // A reset or failed write leaves nothing worth writing; after a plain EOF the peer can
        // still read (a client that half-closes after its request), so its answer goes out.
        if !half_closed {
            conn.discard_output();
        }
        if conn.lifecycle == Lifecycle::Live {
            conn.lifecycle = Lifecycle::CloseWhenFlushed;
        }
        self.world
            .drain_events(&self.service, token, now, &mut self.report);
        self.world.mark_dirty(token);
    }

    fn on_sent(
        &mut self,
        token: Token,
        result: std::io::Result<usize>,
        chunks: Vec<Bytes>,
        now: Instant,
    ) {
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        conn.sending = false;
        match result {
            Ok(written) => {
                if let (Phase::Dialing(d) | Phase::Proxying(d), true) =
                    (&mut conn.phase, written > 0)
                {
                    // Bytes left, so the connection is up: the handshake timeout takes over.
                    d.connected_at.get_or_insert(now);
                }
                self.reclaim.released(written);
                conn.requeue_unsent(chunks, written)
            }
            Err(_) => {
                drop(chunks);
                self.on_transport_end(token, false, None, now);
                return;
            }
        }
        if let Phase::Ws(open) = &conn.phase {
            let buffered = conn.queued + open.ws.pending_output();
            if conn.read_paused && buffered <= self.settings.limits.output.low {
                conn.read_paused = false;
                self.backend.resume(token);
            }
            if conn.drain_below != conn::NO_DRAIN && buffered <= conn.drain_below as usize {
                conn.drain_below = conn::NO_DRAIN;
                self.service
                    .on_drain(&mut self.world.cx(now), ConnId(token));
            }
        }
        self.world.mark_dirty(token);
    }

    fn on_message(&mut self, msg: ShardMsg, now: Instant) {
        match msg {
            ShardMsg::Shutdown { deadline } => {
                if self.shutdown.is_some() {
                    return;
                }
                self.shutdown = Some(deadline);
                self.report.shutting_down = true;
                self.backend.stop_accepting();
                let tokens: Vec<Token> = self
                    .world
                    .conns
                    .iter()
                    .map(|(i, c)| Token::new(i, c.generation))
                    .collect();
                for token in tokens {
                    let Some(conn) = slot(&mut self.world.conns, token) else {
                        continue;
                    };
                    if conn.lifecycle != Lifecycle::Live {
                        continue;
                    }
                    match &mut conn.phase {
                        Phase::Ws(open) => {
                            if open
                                .ws
                                .close_as_endpoint(
                                    CloseCode::GOING_AWAY,
                                    "server shutting down",
                                    now,
                                )
                                .is_ok()
                            {
                                self.report.report.closing += 1;
                            }
                        }
                        _ => conn.lifecycle = Lifecycle::CloseWhenFlushed,
                    }
                    self.world.mark_dirty(token);
                }
            }
        }
    }

    /// At the shutdown deadline: every connection still open is cut.
    fn cut_remaining(&mut self) {
        let tokens: Vec<Token> = self
            .world
            .conns
            .iter()
            .filter(|(_, c)| c.lifecycle != Lifecycle::Closing)
            .map(|(i, c)| Token::new(i, c.generation))
            .collect();
        for token in tokens {
            if let Some(conn) = slot(&mut self.world.conns, token) {
                conn.lifecycle = Lifecycle::Closing;
                let fd = conn.fd;
                self.backend.close(token, fd);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some((at, token)) = self.world.timers.pop_due(now) {
            let limits = &self.settings.limits;
            let Some(conn) = slot(&mut self.world.conns, token) else {
                continue;
            };
            if conn.timer != Some(at) {
                continue;
            }
            conn.timer = None;
            if conn.lifecycle != Lifecycle::Live {
                // Writing the last bytes took too long: give up on them, and on the send in
                // flight too (a peer that stopped reading never lets it finish), so close now.
                if conn.lifecycle == Lifecycle::CloseWhenFlushed
                    && now >= conn.last_activity + limits.handshake_timeout
                {
                    conn.discard_output();
                    conn.lifecycle = Lifecycle::Closing;
                    self.backend.close(token, conn.fd);
                }
            } else {
                match &mut conn.phase {
                    Phase::Head(_) | Phase::Answered => {
                        if now >= conn.accepted_at + limits.handshake_timeout {
                            conn.discard_output();
                            conn.lifecycle = Lifecycle::CloseWhenFlushed;
                        }
                    }
                    Phase::Dialing(dialing) | Phase::Proxying(dialing) => {
                        if now >= dialing.deadline(conn.accepted_at, limits.handshake_timeout) {
                            self.fail_dial(token, DialError::Timeout, now);
                        }
                    }
                    Phase::Ws(open) => {
                        open.ws.handle_timeout(now);
                        let silent = now.saturating_duration_since(conn.last_activity);
                        let mut dead = false;
                        if let Some(keepalive) = limits.keepalive {
                            if conn.pinged && silent >= 2 * keepalive {
                                dead = true;
                            } else if !conn.pinged && silent >= keepalive {
                                conn.pinged = open.ws.ping(b"").is_ok();
                            }
                        }
                        if dead {
                            conn.abort();
                        } else if let Some(idle) = limits.idle_timeout {
                            if silent >= idle {
                                let _ = open.ws.close_as_endpoint(
                                    CloseCode::GOING_AWAY,
                                    "idle timeout",
                                    now,
                                );
                            }
                        }
                        self.world
                            .drain_events(&self.service, token, now, &mut self.report);
                    }
                }
            }
            self.world.mark_dirty(token);
        }
        let mark = self.world.timers.user_mark();
        while let Some((token, key)) = self.world.timers.pop_user_due(now, mark) {
            let id = match token {
                None => None,
                Some(token) => {
                    let open = slot(&mut self.world.conns, token).is_some_and(
                        |c| matches!(&c.phase, Phase::Ws(open) if !open.ws.is_closed()),
                    );
                    if !open {
                        continue;
                    }
                    Some(ConnId(token))
                }
            };
            self.service.on_timer(&mut self.world.cx(now), id, key);
        }
    }

    /// Once per loop turn: moves each dirty connection's output into one gathered send, closes
    /// what is finished, and schedules its next deadline. Events a callback caused on another
    /// connection (an abort) are delivered first, which may dirty more connections; the loop
    /// runs until none is left.
    fn flush(&mut self, now: Instant) {
        self.register_dials(now);
        let mut batch = Vec::new();
        while !self.world.dirty.is_empty() {
            std::mem::swap(&mut batch, &mut self.world.dirty);
            for token in batch.drain(..) {
                self.world
                    .drain_events(&self.service, token, now, &mut self.report);
                self.flush_one(token);
            }
        }
        // Keep the list's allocation for the next turn.
        if self.world.dirty.capacity() < batch.capacity() {
            self.world.dirty = batch;
        }
    }

    fn flush_one(&mut self, token: Token) {
        let output = self.settings.limits.output;
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        conn.dirty = false;
        if let Phase::Ws(open) = &mut conn.phase {
            // Here, with every completion of the turn handled, `skippable` counts exactly the
            // bytes the backend has not reported yet. TLS bytes are records, never skipped; a
            // paused socket is not read, not even to drop bytes.
            if conn.skipping == 0
                && conn.tls.is_none()
                && !conn.read_paused
                && conn.lifecycle == Lifecycle::Live
            {
                let n = clamp_u32(open.ws.skippable(SKIP_MIN));
                if n > 0 {
                    conn.skipping = n;
                    self.backend.skip(token, conn.fd, n.into());
                } else if open.ws.skip_next_header_only(SKIP_MIN) {
                    self.backend.skip(token, conn.fd, 0);
                }
            }
            // Output moves out of the protocol only when the socket can take it: while a send
            // is stuck on a peer that does not read, it stays where the protocol can still
            // coalesce what it owes (pongs) and the limits see it whole.
            if !conn.sending {
                match conn.tls.as_deref_mut() {
                    None => {
                        while let Some(chunk) = open.ws.poll_transmit() {
                            conn.queued += chunk.len();
                            conn.out.push_back(chunk);
                        }
                    }
                    Some(tls) => {
                        while let Some(chunk) = open.ws.poll_transmit() {
                            tls.send(&chunk);
                        }
                    }
                }
            }
            // Read backpressure: past the high level, the peer's bytes stay in the kernel.
            if !conn.read_paused
                && conn.lifecycle == Lifecycle::Live
                && conn.queued + open.ws.pending_output() > output.high
            {
                conn.read_paused = true;
                self.backend.pause(token);
            }
        }
        if conn.tls.is_some() {
            conn.transmit_tls();
        }
        if !conn.sending && !conn.out.is_empty() && conn.lifecycle != Lifecycle::Closing {
            let n = conn.out.len().min(MAX_IOVECS);
            let chunks: Vec<Bytes> = conn.out.drain(..n).collect();
            conn.sending = true;
            self.backend.send(token, conn.fd, chunks);
        } else if !conn.sending
            && conn.out.is_empty()
            && conn.lifecycle == Lifecycle::CloseWhenFlushed
        {
            conn.lifecycle = Lifecycle::Closing;
            self.backend.close(token, conn.fd);
            return;
        }
        if let Phase::Ws(open) = &mut conn.phase {
            if !conn.sending && conn.out.is_empty() {
                open.ws.release_buffers();
            }
        }
        self.schedule(token);
    }

    /// Makes sure a timer entry exists for the connection's earliest deadline.
    fn schedule(&mut self, token: Token) {
        let limits = &self.settings.limits;
        let Some(conn) = slot(&mut self.world.conns, token) else {
            return;
        };
        let deadline = match (&conn.phase, conn.lifecycle) {
            (_, Lifecycle::Closing) => None,
            (_, Lifecycle::CloseWhenFlushed) => Some(conn.last_activity + limits.handshake_timeout),
            (Phase::Head(_) | Phase::Answered, _) => {
                Some(conn.accepted_at + limits.handshake_timeout)
            }
            (Phase::Dialing(dialing) | Phase::Proxying(dialing), _) => {
                Some(dialing.deadline(conn.accepted_at, limits.handshake_timeout))
            }
            (Phase::Ws(open), _) => {
                // Idle time and keepalive count only while open: once our close is out, the
                // close timeout governs, and a past deadline would fire on every loop turn.
                let open_since = |d: Duration| {
                    (open.ws.state() == State::Open).then_some(conn.last_activity + d)
                };
                let idle = limits.idle_timeout.and_then(open_since);
                let keepalive = limits
                    .keepalive
                    .and_then(|k| open_since(if conn.pinged { 2 * k } else { k }));
                [open.ws.poll_timeout(), idle, keepalive]
                    .into_iter()
                    .flatten()
                    .min()
            }
        };
        if let Some(at) = deadline {
            if conn.timer.is_none_or(|t| at < t) {
                conn.timer = Some(at);
                self.world.timers.schedule(at, token);
            }
        }
    }
}

/// The connection `token` names, if its slot still holds that generation: a completion for a
/// closed connection must never reach the slot's next occupant.
fn slot<T>(conns: &mut Slab<Conn<T>>, token: Token) -> Option<&mut Conn<T>> {
    conns
        .get_mut(token.index())
        .filter(|c| c.generation == token.generation())
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

fn http_bytes(response: &HttpResponse) -> Vec<u8> {
    let mut writer = crate::http::HeadWriter::response(response.status);
    for (name, value) in &response.headers {
        if writer.header(name, value).is_err() {
            let refusal = Refusal::new(
                500,
                format!("the HTTP responder produced an invalid header {name:?}"),
            );
            return refusal.to_response();
        }
    }
    let _ = writer.header("Connection", "close");
    writer.finish_with_body(&response.body)
}

fn peer_addr(fd: RawFd) -> Option<std::net::SocketAddr> {
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is this connection's open socket for the duration of the call; the
    // borrowed view is not kept.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    socket2::SockRef::from(&fd).peer_addr().ok()?.as_socket()
}

fn set_nodelay(fd: RawFd) {
    let one: libc::c_int = 1;
    // SAFETY: passes a live c_int of the right size to setsockopt on a socket we own.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
