//! A shard: one thread, one reactor, its own connections and timers.
//!
//! The loop is: wait for completions; hand received bytes to each socket's protocol state
//! (request head, then WebSocket [`Connection`]); let the [`Service`] answer; then, once per loop
//! turn, flush every connection that has output with one gathered send (µWebSockets' cork).
//! Nothing here blocks or takes a lock: other threads reach a shard only through its bounded
//! inbox and its waker.

pub(crate) mod conn;
#[cfg(test)]
mod tests;
pub mod timers;

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use slab::Slab;

use crate::http::{parse_request, RequestHead};
use crate::reactor::{Backend, BufId, Completion, Token, MAX_IOVECS};
use crate::server::{HttpResponse, Service, ShardSettings, ShutdownReport};
use crate::ws::extension::Extensions;
use crate::ws::{is_websocket_upgrade, CloseCode, Config, Connection, Event, Refusal, Role, State};
use conn::{Conn, Lifecycle, Phase};
use timers::Timers;

/// Messages other threads post to a shard.
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

/// A shard's state, owned by its thread.
pub(crate) struct Shard {
    backend: Box<dyn Backend>,
    conns: Slab<Conn>,
    next_generation: u32,
    timers: Timers,
    dirty: Vec<Token>,
    inbox: Arc<ArrayQueue<ShardMsg>>,
    listeners: Vec<OwnedFd>,
    settings: Arc<ShardSettings>,
    service: Arc<dyn Service>,
    max_connections: usize,
    shutdown: Option<Instant>,
    report: ShutdownReport,
}

impl Shard {
    pub fn new(
        backend: Box<dyn Backend>,
        listeners: Vec<OwnedFd>,
        inbox: Arc<ArrayQueue<ShardMsg>>,
        settings: Arc<ShardSettings>,
        service: Arc<dyn Service>,
        max_connections: usize,
    ) -> Self {
        Self {
            backend,
            conns: Slab::new(),
            next_generation: 0,
            timers: Timers::new(),
            dirty: Vec::new(),
            inbox,
            listeners,
            settings,
            service,
            max_connections,
            shutdown: None,
            report: ShutdownReport::default(),
        }
    }

    /// Runs until a shutdown has finished; returns what the shutdown achieved.
    pub fn run(mut self) -> std::io::Result<ShutdownReport> {
        for l in &self.listeners {
            self.backend.listen(l.as_raw_fd())?;
        }
        let mut completions = Vec::with_capacity(256);
        loop {
            let now = Instant::now();
            let mut wake_at = self.timers.next_deadline();
            if let Some(deadline) = self.shutdown {
                let cut = if now >= deadline {
                    deadline + CLOSE_GRACE
                } else {
                    deadline
                };
                wake_at = Some(wake_at.map_or(cut, |t| t.min(cut)));
            }
            let timeout = wake_at.map(|t| t.saturating_duration_since(now));
            self.backend.wait(timeout, &mut completions)?;
            let now = Instant::now();
            for completion in completions.drain(..) {
                self.on_completion(completion, now);
            }
            while let Some(msg) = self.inbox.pop() {
                self.on_message(msg, now);
            }
            self.fire_timers(now);
            self.flush(now);
            if let Some(deadline) = self.shutdown {
                if self.conns.is_empty() || now >= deadline + CLOSE_GRACE {
                    return Ok(self.report);
                }
                if now >= deadline {
                    self.cut_remaining();
                }
            }
        }
    }

    fn conn_mut(&mut self, token: Token) -> Option<&mut Conn> {
        slot(&mut self.conns, token)
    }

    fn mark_dirty(&mut self, token: Token) {
        if let Some(conn) = self.conn_mut(token) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(token);
            }
        }
    }

    fn on_completion(&mut self, completion: Completion, now: Instant) {
        match completion {
            Completion::Accepted { fd } => self.on_accepted(fd, now),
            Completion::AcceptFailed(_) => {}
            Completion::Received { token, buf, len } => {
                self.on_received(token, buf, len, now);
                self.backend.recycle(buf);
            }
            Completion::Eof { token } => self.on_transport_end(token, true),
            Completion::RecvFailed { token, .. } => self.on_transport_end(token, false),
            Completion::Sent {
                token,
                result,
                chunks,
            } => self.on_sent(token, result, chunks, now),
            Completion::Closed { token } => {
                if self.conn_mut(token).is_some() {
                    self.conns.remove(token.index());
                }
            }
            Completion::Woken => {}
        }
    }

    fn on_accepted(&mut self, fd: RawFd, now: Instant) {
        if self.shutdown.is_some() || self.conns.len() >= self.max_connections {
            // SAFETY: the backend handed us ownership of this freshly accepted socket.
            unsafe { libc::close(fd) };
            return;
        }
        set_nodelay(fd);
        self.next_generation = self.next_generation.wrapping_add(1);
        let generation = self.next_generation;
        let entry = self.conns.vacant_entry();
        let token = Token::new(entry.key(), generation);
        entry.insert(Conn::new(fd, generation, now));
        if self.backend.register(token, fd).is_err() {
            self.conns.remove(token.index());
            // SAFETY: registration failed, so nothing else holds this socket.
            unsafe { libc::close(fd) };
            return;
        }
        self.schedule(token);
    }

    fn on_received(&mut self, token: Token, buf: BufId, len: usize, now: Instant) {
        let Shard {
            backend,
            conns,
            settings,
            service,
            shutdown,
            report,
            ..
        } = self;
        let Some(conn) = slot(conns, token) else {
            return;
        };
        if conn.lifecycle != Lifecycle::Live {
            return;
        }
        conn.last_activity = now;
        let data = backend.buffer(buf, len);
        match &mut conn.phase {
            Phase::Head(head) => {
                head.extend_from_slice(data);
                match parse_request(head, &settings.limits.head) {
                    Ok(None) => {}
                    Err(e) => answer(
                        conn,
                        refusal_bytes(&Refusal::new(e.status(), e.to_string())),
                    ),
                    Ok(Some((request, used))) => {
                        let rest = head.split_off(used).freeze();
                        route(conn, settings, service.as_ref(), request, &rest, now);
                    }
                }
            }
            Phase::Ws(ws) => {
                feed(ws, data, service.as_ref(), now, shutdown.is_some(), report);
                if ws.is_closed() {
                    conn.lifecycle = Lifecycle::CloseWhenFlushed;
                }
            }
            Phase::Answered => {}
        }
        self.mark_dirty(token);
    }

    /// The peer's side ended: with an EOF (`half_closed`) it may still read, otherwise the
    /// connection is broken.
    fn on_transport_end(&mut self, token: Token, half_closed: bool) {
        let shutting_down = self.shutdown.is_some();
        let Shard {
            conns,
            service,
            report,
            ..
        } = self;
        let Some(conn) = slot(conns, token) else {
            return;
        };
        if let Phase::Ws(ws) = &mut conn.phase {
            ws.transport_closed();
            while let Some(event) = ws.poll_event() {
                note_close(&event, shutting_down, report);
                service.on_event(ws, event);
            }
        }
        // A reset or failed write leaves nothing worth writing; after a plain EOF the peer can
        // still read (a client that half-closes after its request), so its answer goes out.
        if !half_closed {
            conn.out.clear();
        }
        if conn.lifecycle == Lifecycle::Live {
            conn.lifecycle = Lifecycle::CloseWhenFlushed;
        }
        self.mark_dirty(token);
    }

    fn on_sent(
        &mut self,
        token: Token,
        result: std::io::Result<usize>,
        chunks: Vec<Bytes>,
        _now: Instant,
    ) {
        let Some(conn) = self.conn_mut(token) else {
            return;
        };
        conn.sending = false;
        match result {
            Ok(written) => conn.requeue_unsent(chunks, written),
            Err(_) => {
                drop(chunks);
                self.on_transport_end(token, false);
                return;
            }
        }
        self.mark_dirty(token);
    }

    fn on_message(&mut self, msg: ShardMsg, now: Instant) {
        match msg {
            ShardMsg::Shutdown { deadline } => {
                if self.shutdown.is_some() {
                    return;
                }
                self.shutdown = Some(deadline);
                self.backend.stop_accepting();
                let tokens: Vec<Token> = self
                    .conns
                    .iter()
                    .map(|(i, c)| Token::new(i, c.generation))
                    .collect();
                for token in tokens {
                    let Some(conn) = self.conn_mut(token) else {
                        continue;
                    };
                    if conn.lifecycle != Lifecycle::Live {
                        continue;
                    }
                    match &mut conn.phase {
                        Phase::Ws(ws) => {
                            if ws
                                .close_as_endpoint(
                                    CloseCode::GOING_AWAY,
                                    "server shutting down",
                                    now,
                                )
                                .is_ok()
                            {
                                self.report.closing += 1;
                            }
                        }
                        _ => conn.lifecycle = Lifecycle::CloseWhenFlushed,
                    }
                    self.mark_dirty(token);
                }
            }
        }
    }

    /// At the shutdown deadline: every connection still open is cut.
    fn cut_remaining(&mut self) {
        let tokens: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.lifecycle != Lifecycle::Closing)
            .map(|(i, c)| Token::new(i, c.generation))
            .collect();
        for token in tokens {
            if let Some(conn) = self.conn_mut(token) {
                conn.lifecycle = Lifecycle::Closing;
                let fd = conn.fd;
                self.backend.close(token, fd);
            }
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        let shutting_down = self.shutdown.is_some();
        while let Some((at, token)) = self.timers.pop_due(now) {
            let Shard {
                backend,
                conns,
                service,
                settings,
                report,
                ..
            } = &mut *self;
            let Some(conn) = slot(conns, token) else {
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
                    && now >= conn.last_activity + settings.limits.handshake_timeout
                {
                    conn.out.clear();
                    conn.lifecycle = Lifecycle::Closing;
                    backend.close(token, conn.fd);
                }
            } else {
                match &mut conn.phase {
                    Phase::Head(_) | Phase::Answered => {
                        if now >= conn.accepted_at + settings.limits.handshake_timeout {
                            conn.out.clear();
                            conn.lifecycle = Lifecycle::CloseWhenFlushed;
                        }
                    }
                    Phase::Ws(ws) => {
                        ws.handle_timeout(now);
                        if let Some(idle) = settings.limits.idle_timeout {
                            if now >= conn.last_activity + idle {
                                let _ = ws.close_as_endpoint(
                                    CloseCode::GOING_AWAY,
                                    "idle timeout",
                                    now,
                                );
                            }
                        }
                        while let Some(event) = ws.poll_event() {
                            note_close(&event, shutting_down, report);
                            service.on_event(ws, event);
                        }
                        if ws.is_closed() {
                            conn.lifecycle = Lifecycle::CloseWhenFlushed;
                        }
                    }
                }
            }
            self.mark_dirty(token);
        }
    }

    /// Once per loop turn: moves each dirty connection's output into one gathered send, closes
    /// what is finished, and schedules its next deadline.
    fn flush(&mut self, _now: Instant) {
        let dirty = std::mem::take(&mut self.dirty);
        for &token in &dirty {
            let Some(conn) = self.conn_mut(token) else {
                continue;
            };
            conn.dirty = false;
            if let Phase::Ws(ws) = &mut conn.phase {
                while let Some(chunk) = ws.poll_transmit() {
                    conn.out.push_back(chunk);
                }
            }
            if !conn.sending && !conn.out.is_empty() && conn.lifecycle != Lifecycle::Closing {
                let n = conn.out.len().min(MAX_IOVECS);
                let chunks: Vec<Bytes> = conn.out.drain(..n).collect();
                conn.sending = true;
                let fd = conn.fd;
                self.backend.send(token, fd, chunks);
            } else if !conn.sending
                && conn.out.is_empty()
                && conn.lifecycle == Lifecycle::CloseWhenFlushed
            {
                conn.lifecycle = Lifecycle::Closing;
                let fd = conn.fd;
                self.backend.close(token, fd);
                continue;
            }
            if let Some(conn) = self.conn_mut(token) {
                if let Phase::Ws(ws) = &mut conn.phase {
                    if !conn.sending && conn.out.is_empty() {
                        ws.release_buffers();
                    }
                }
            }
            self.schedule(token);
        }
        // Keep the list's allocation for the next turn.
        let mut dirty = dirty;
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
    }

    /// Makes sure a timer entry exists for the connection's earliest deadline.
    fn schedule(&mut self, token: Token) {
        let limits = &self.settings.limits;
        let Some(conn) = slot(&mut self.conns, token) else {
            return;
        };
        let deadline = match (&conn.phase, conn.lifecycle) {
            (_, Lifecycle::Closing) => None,
            (_, Lifecycle::CloseWhenFlushed) => Some(conn.last_activity + limits.handshake_timeout),
            (Phase::Head(_) | Phase::Answered, _) => {
                Some(conn.accepted_at + limits.handshake_timeout)
            }
            (Phase::Ws(ws), _) => {
                // Idle time counts only while open: once our close is out, the close timeout
                // governs, and a past idle deadline would fire on every loop turn.
                let idle = limits
                    .idle_timeout
                    .filter(|_| ws.state() == State::Open)
                    .map(|d| conn.last_activity + d);
                match (ws.poll_timeout(), idle) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                }
            }
        };
        if let Some(at) = deadline {
            if conn.timer.is_none_or(|t| at < t) {
                conn.timer = Some(at);
                self.timers.schedule(at, token);
            }
        }
    }
}

/// The connection `token` names, if its slot still holds that generation: a completion for a
/// closed connection must never reach the slot's next occupant.
fn slot(conns: &mut Slab<Conn>, token: Token) -> Option<&mut Conn> {
    conns
        .get_mut(token.index())
        .filter(|c| c.generation == token.generation())
}

/// Hands received bytes to an open WebSocket and its events to the service.
fn feed(
    ws: &mut Connection,
    data: &[u8],
    service: &dyn Service,
    now: Instant,
    shutting_down: bool,
    report: &mut ShutdownReport,
) {
    let mut input = data;
    while let Some(event) = ws.recv(&mut input, now) {
        note_close(&event, shutting_down, report);
        service.on_event(ws, event);
    }
}

/// Counts how connections end during a shutdown.
fn note_close(event: &Event, shutting_down: bool, report: &mut ShutdownReport) {
    if let (true, Event::Close(close)) = (shutting_down, event) {
        if close.code == CloseCode::ABNORMAL {
            report.cut += 1;
        } else {
            report.closed_cleanly += 1;
        }
    }
}

/// Decides what a complete request head gets: a WebSocket, a 426, or the HTTP responder.
fn route(
    conn: &mut Conn,
    settings: &ShardSettings,
    service: &dyn Service,
    request: RequestHead,
    rest: &[u8],
    now: Instant,
) {
    let ws_path = settings.is_websocket_path(request.path());
    // A request naming `Upgrade: websocket` goes to the handshake even when it is not a valid
    // upgrade (POST, HTTP/1.0, no `Connection: upgrade`): its 400 says what is wrong, where the
    // HTTP responder would only say 404.
    let wants_websocket =
        is_websocket_upgrade(&request) || request.headers().has_token("upgrade", "websocket");
    if wants_websocket {
        if !ws_path {
            return answer(conn, http_bytes(&HttpResponse::not_found()));
        }
        match settings.handshake.accept(&request) {
            Err(refusal) => answer(conn, refusal_bytes(&refusal)),
            Ok(accepted) => {
                conn.out.push_back(Bytes::from(accepted.response));
                let config = Config {
                    max_length: settings.limits.max_message,
                    close_timeout: settings.limits.close_timeout,
                    ..Config::default()
                };
                let mut ws = Box::new(Connection::new(
                    Role::Server,
                    config,
                    Extensions::new(accepted.extensions),
                ));
                service.on_open(&mut ws, &request);
                let mut report = ShutdownReport::default();
                feed(&mut ws, rest, service, now, false, &mut report);
                if ws.is_closed() {
                    conn.lifecycle = Lifecycle::CloseWhenFlushed;
                }
                conn.phase = Phase::Ws(ws);
            }
        }
    } else if request.method() == "GET" && settings.is_registered_websocket_path(request.path()) {
        let refusal = Refusal::new(
            426,
            "This path speaks WebSocket only: send an Upgrade request",
        )
        .with_header("Upgrade", "websocket");
        answer(conn, refusal_bytes(&refusal));
    } else {
        answer(conn, http_bytes(&service.on_http(&request)));
    }
}

/// Queues a final answer and closes once it is written.
fn answer(conn: &mut Conn, bytes: Vec<u8>) {
    conn.out.push_back(Bytes::from(bytes));
    conn.phase = Phase::Answered;
    conn.lifecycle = Lifecycle::CloseWhenFlushed;
}

fn refusal_bytes(refusal: &Refusal) -> Vec<u8> {
    refusal.to_response()
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
