//! What a [`Service`] callback can reach: every WebSocket of its shard, the shard's local state,
//! its timers and the mailboxes of all shards.
//!
//! Nothing here writes to a socket. Touching a connection marks it dirty, and the shard flushes
//! every dirty connection once at the end of the loop turn, so any number of sends from any
//! number of callbacks leave as one gathered write per connection.

use std::time::Instant;

use bytes::Bytes;
use slab::Slab;

use super::{ConnId, OutputLimits, PostError, Remote, Service};
use crate::conn::dial::{Dial, DialError, Dialing};
use crate::conn::{Conn, Open, Phase, NO_DRAIN};
use crate::reactor::Token;
use crate::timers::Timers;

/// The connections of one shard, as a callback may use them.
pub struct Conns<'a, T> {
    pub(crate) conns: &'a mut Slab<Conn<T>>,
    pub(crate) dirty: &'a mut Vec<Token>,
    /// The limits every send is held to.
    pub(crate) output: OutputLimits,
}

impl<T> std::fmt::Debug for Conns<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conns")
            .field("connections", &self.conns.len())
            .field("dirty", &self.dirty.len())
            .finish_non_exhaustive()
    }
}

impl<T> Conns<'_, T> {
    /// The same connections for a shorter borrow (a context passed down by value).
    pub fn reborrow(&mut self) -> Conns<'_, T> {
        Conns {
            conns: &mut *self.conns,
            dirty: &mut *self.dirty,
            output: self.output,
        }
    }

    /// The open WebSocket `id` names, marked for this turn's flush; `None` once it is gone.
    /// Its sends are held to the server's [`OutputLimits`].
    pub fn get(&mut self, id: ConnId) -> Option<&mut Open<T>> {
        self.get_queued(id).map(|(open, _)| open)
    }

    /// [`Conns::get`] and the bytes already handed to the socket's queue (what
    /// [`Conns::buffered`] counts besides the connection's own pending output), in one lookup.
    pub fn get_queued(&mut self, id: ConnId) -> Option<(&mut Open<T>, usize)> {
        let conn = crate::conn::slot(self.conns, id.0)?;
        let Phase::Ws(open) = &mut conn.phase else {
            return None;
        };
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(id.0);
        }
        // Whatever sends through this borrow, the output stays within `max` counting what the
        // socket still holds.
        let room = self.output.max.saturating_sub(conn.queued);
        open.ws.limit_output(room, self.output.overflow);
        Some((open, conn.queued))
    }

    /// The open WebSocket `id` names, to read (no flush is marked: nothing can be sent
    /// through it).
    pub fn view(&self, id: ConnId) -> Option<&Open<T>> {
        let conn = self.conns.get(id.0.index())?;
        if conn.generation != id.0.generation() {
            return None;
        }
        match &conn.phase {
            Phase::Ws(open) => Some(open),
            _ => None,
        }
    }

    /// The session of `id`.
    pub fn session(&self, id: ConnId) -> Option<&T> {
        self.view(id).map(|open| &open.session)
    }

    /// The session of `id` to change, without marking the connection for a flush.
    pub fn session_mut(&mut self, id: ConnId) -> Option<&mut T> {
        match &mut crate::conn::slot(self.conns, id.0)?.phase {
            Phase::Ws(open) => Some(&mut open.session),
            _ => None,
        }
    }

    /// Bytes queued for `id` and not yet written to its socket (0 once it is gone).
    pub fn buffered(&self, id: ConnId) -> usize {
        let Some(conn) = self
            .conns
            .get(id.0.index())
            .filter(|c| c.generation == id.0.generation())
        else {
            return 0;
        };
        match &conn.phase {
            Phase::Ws(open) => conn.queued + open.ws.pending_output(),
            _ => conn.queued,
        }
    }

    /// When bytes last arrived from `id`'s peer (`None` once it is gone).
    pub fn last_received(&self, id: ConnId) -> Option<Instant> {
        self.conns
            .get(id.0.index())
            .filter(|c| c.generation == id.0.generation())
            .map(|c| c.last_activity)
    }

    /// Queues frames built once for many connections (see
    /// [`crate::ws::Connection::send_raw_frames`]); false if `id` is gone or no longer open.
    pub fn send_raw(&mut self, id: ConnId, frames: &Bytes) -> bool {
        self.get(id)
            .is_some_and(|open| open.ws.send_raw_frames(frames).is_ok())
    }

    /// Asks for [`Service::on_drain`] once `id`'s unwritten output is at most `below` bytes.
    pub fn notify_drain(&mut self, id: ConnId, below: usize) {
        if let Some(conn) = crate::conn::slot(self.conns, id.0) {
            conn.drain_below = u32::try_from(below).unwrap_or(u32::MAX).min(NO_DRAIN - 1);
        }
    }

    /// Drops the connection at once: queued output is discarded, the socket closed, and the
    /// connection reports [`crate::ws::Event::Close`] with 1006. For a peer that is gone
    /// (no pong) or must not get another byte.
    pub fn abort(&mut self, id: ConnId) {
        let Some(conn) = crate::conn::slot(self.conns, id.0) else {
            return;
        };
        conn.abort();
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(id.0);
        }
    }
}

/// The context of a [`Service`] callback on one shard.
pub struct ShardCx<'a, S: Service> {
    pub(crate) conns: Conns<'a, S::Session>,
    /// Outgoing connections made in this callback, for the shard to register with its reactor.
    pub(crate) dials: &'a mut Vec<Token>,
    pub(crate) next_generation: &'a mut u32,
    pub(crate) local: &'a mut S::Local,
    pub(crate) timers: &'a mut Timers,
    pub(crate) remote: &'a Remote<S::Post>,
    pub(crate) shard: usize,
    pub(crate) now: Instant,
}

impl<S: Service> std::fmt::Debug for ShardCx<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardCx")
            .field("shard", &self.shard)
            .field("now", &self.now)
            .field("conns", &self.conns)
            .finish_non_exhaustive()
    }
}

impl<'a, S: Service> ShardCx<'a, S> {
    /// The same context for a shorter borrow: what a layer above hands its own callbacks by
    /// value, so that their context type needs one lifetime, not two.
    pub fn reborrow(&mut self) -> ShardCx<'_, S> {
        ShardCx {
            conns: self.conns.reborrow(),
            dials: &mut *self.dials,
            next_generation: &mut *self.next_generation,
            local: &mut *self.local,
            timers: &mut *self.timers,
            remote: self.remote,
            shard: self.shard,
            now: self.now,
        }
    }

    /// The time this loop turn started; use it for protocol deadlines.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// This shard's index.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Handle for posting to any shard, this one included.
    pub fn remote(&self) -> &Remote<S::Post> {
        self.remote
    }

    /// Posts to shard `shard` (see [`Remote::post`]).
    pub fn post(&self, shard: usize, msg: S::Post) -> Result<(), PostError<S::Post>> {
        self.remote.post(shard, msg)
    }

    /// The shard's local state.
    pub fn local(&self) -> &S::Local {
        self.local
    }

    /// The shard's local state, to change.
    pub fn local_mut(&mut self) -> &mut S::Local {
        self.local
    }

    /// The open WebSocket `id` names, marked for this turn's flush.
    pub fn conn(&mut self, id: ConnId) -> Option<&mut Open<S::Session>> {
        self.conns.get(id)
    }

    /// The shard's local state and its connections at once (fan-out walks one to write the
    /// other).
    pub fn split(&mut self) -> (&mut S::Local, &mut Conns<'a, S::Session>) {
        (&mut *self.local, &mut self.conns)
    }

    /// The connections of this shard, to read.
    pub fn conns(&self) -> &Conns<'a, S::Session> {
        &self.conns
    }

    /// The connections of this shard.
    pub fn conns_mut(&mut self) -> &mut Conns<'a, S::Session> {
        &mut self.conns
    }

    /// Bytes queued for `id` and not yet written.
    pub fn buffered(&self, id: ConnId) -> usize {
        self.conns.buffered(id)
    }

    /// Opens an outgoing WebSocket on this shard: connects to `dial.addr` and sends the
    /// handshake (after the proxy's CONNECT and TLS, when the handshake asks for them).
    /// [`Service::on_connected`] follows the server's 101, or [`Service::on_connect_failed`]
    /// gets the session back. Fails at once (with the session) only when no socket can be made
    /// or the TLS server name cannot be used.
    pub fn connect(&mut self, dial: Dial<S::Session>) -> Result<ConnId, (DialError, S::Session)> {
        let opening = match crate::conn::tls::Opening::new(&dial.handshake, &dial.options) {
            Ok(opening) => opening,
            Err(e) => return Err((e, dial.session)),
        };
        let fd = match crate::conn::dial::connect(dial.addr, dial.local) {
            Ok(fd) => fd,
            Err(e) => return Err((DialError::Io(e), dial.session)),
        };
        *self.next_generation = self.next_generation.wrapping_add(1);
        let generation = *self.next_generation;
        let entry = self.conns.conns.vacant_entry();
        let token = Token::new(entry.key(), generation);
        let mut conn = Conn::new(fd, generation, self.now);
        let proxying = opening.apply(&mut conn);
        let dialing = Box::new(Dialing {
            handshake: dial.handshake,
            options: dial.options,
            config: dial.config,
            session: dial.session,
            head: bytes::BytesMut::new(),
            connected_at: None,
        });
        conn.phase = match proxying {
            true => Phase::Proxying(dialing),
            false => Phase::Dialing(dialing),
        };
        conn.dirty = true;
        entry.insert(conn);
        self.conns.dirty.push(token);
        self.dials.push(token);
        Ok(ConnId(token))
    }

    /// Calls [`Service::on_timer`] with `key` at `at`: for connection `id` (not if it has
    /// closed by then), or for the shard when `id` is `None`. Cancelling is the service's
    /// business: it ignores keys it no longer wants.
    pub fn set_timer(&mut self, id: Option<ConnId>, at: Instant, key: u64) {
        self.timers.schedule_user(at, id.map(|id| id.0), key);
    }
}
