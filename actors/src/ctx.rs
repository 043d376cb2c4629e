//! What a handler callback can do: send, ping, close, subscribe, publish, set timers, and learn
//! about its connection.

use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringsock_engine::http::{RequestHead, ResponseHead};
use ringsock_engine::server::ConnId;
use ringsock_engine::ws::{CloseCode, Connection, DataKind, SendError};

use crate::actor::{post_spawn, Actor};
use crate::addr::{Addr, Target};
use crate::delivery::{Delivery, SlowPolicy};
use crate::message::{frame, Message};
use crate::prepared::PreparedMessage;
use crate::publish::publish;
use crate::runtime::EngineCx;
use crate::slot::Slot;
use crate::timer::TimerId;

/// What became of a message handed to [`Ctx::send_text`] or [`Ctx::send_binary`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendStatus {
    /// Queued; the outbound buffer is under the high-water mark.
    Queued,
    /// Queued, and the outbound buffer is now past the high-water mark: slow down until
    /// [`Handler::on_drain`](crate::Handler::on_drain).
    Buffered,
    /// Not sent: the connection is closing, or the message would have taken its buffer past
    /// the hard limit (the engine then closes it with 1008, by default).
    Dropped,
}

/// Why [`Ctx::close`] or [`Ctx::ping`] refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CtxError {
    /// Applications may close with 1000 or 3000–4999 only.
    #[error("close code {0} is not one an application may send (1000 or 3000-4999)")]
    InvalidCloseCode(u16),
    /// A close reason or ping payload longer than a control frame allows.
    #[error("{0} bytes is too long for a control frame (reason ≤ 123, ping ≤ 125)")]
    TooLong(usize),
    /// The connection is already closing or closed.
    #[error("the connection is closing")]
    Closing,
}

impl From<SendError> for CtxError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::InvalidCloseCode(c) => CtxError::InvalidCloseCode(c),
            SendError::ReasonTooLong(n) | SendError::ControlPayloadTooLong(n) => {
                CtxError::TooLong(n)
            }
            _ => CtxError::Closing,
        }
    }
}

impl<H> std::fmt::Debug for Ctx<'_, H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("id", &self.id)
            .field("shard", &self.cx.shard())
            .finish_non_exhaustive()
    }
}

/// A handler callback's view of its connection and shard.
pub struct Ctx<'a, H> {
    cx: EngineCx<'a>,
    id: ConnId,
    _handler: PhantomData<fn(H)>,
}

impl<'a, H> Ctx<'a, H> {
    pub(crate) fn new(cx: &'a mut EngineCx<'_>, id: ConnId) -> Self {
        Self {
            cx: cx.reborrow(),
            id,
            _handler: PhantomData,
        }
    }

    fn slot_ref(&self) -> Option<&Slot> {
        self.cx.conns().session(self.id)
    }

    fn slot(&mut self) -> Option<&mut Slot> {
        self.cx.conns_mut().session_mut(self.id)
    }

    /// The same context seen by another handler type: a wrapping handler
    /// ([`crate::ClientPool`]'s) hands it to the handler it wraps.
    pub(crate) fn retype<G>(&mut self) -> Ctx<'_, G> {
        Ctx {
            cx: self.cx.reborrow(),
            id: self.id,
            _handler: PhantomData,
        }
    }

    /// Messages sent with [`Ctx::send`] on this shard so far, and their payload bytes.
    pub(crate) fn shard_sent(&self) -> (u64, u64) {
        let sent = &self.cx.local().sent;
        (sent.messages, sent.bytes)
    }

    /// This connection's id on its shard.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// The time the shard's current loop turn started: cheap (no clock read), and the same for
    /// every callback of the turn. Good for timestamps and round-trip times at the loop's
    /// granularity.
    pub fn now(&self) -> Instant {
        self.cx.now()
    }

    /// The shard this connection lives on.
    pub fn shard(&self) -> usize {
        self.cx.shard()
    }

    /// Sends a text message (copied straight into the outgoing buffer).
    pub fn send_text(&mut self, text: &str) -> SendStatus {
        self.send_with(text.len(), |ws| ws.send_text(text))
    }

    /// Sends a binary message; large payloads are queued without copying.
    pub fn send_binary(&mut self, data: impl Into<Bytes>) -> SendStatus {
        self.send(DataKind::Binary, data.into())
    }

    /// Sends a [`Message`] of either kind.
    pub fn send(&mut self, kind: DataKind, payload: Bytes) -> SendStatus {
        self.send_with(payload.len(), |ws| ws.send_shared(kind, payload))
    }

    /// Sends a message framed in advance: its frame bytes are queued as they are, without
    /// copying (from 1 KiB) or masking, however many times it is sent. With an extension in use
    /// (compression), it is encoded and sent as [`Ctx::send`] would.
    pub fn send_prepared(&mut self, prepared: &PreparedMessage) -> SendStatus {
        self.send_with(prepared.len(), |ws| {
            if ws.has_extensions() {
                let (kind, payload) = prepared.payload();
                return ws.send_shared(kind, payload);
            }
            ws.send_raw_frames(prepared.frames(ws.role()))
        })
    }

    /// From the next message on, skips received payloads instead of keeping them: each data
    /// message reaches [`Handler::on_message`](crate::Handler::on_message) with its kind and length, as that many zero
    /// bytes (shared, never written), and text is not checked for UTF-8. For connections that
    /// only count what they receive (a load generator, a meter): it takes the copy of every
    /// payload out of the receive path. No effect while an extension is in use.
    pub fn discard_payloads(&mut self, yes: bool) {
        let id = self.id;
        if let Some(open) = self.cx.conn(id) {
            open.ws.discard_payloads(yes);
        }
    }

    /// The accounting around every send, and the high-water mark after it. (The engine holds
    /// the send to the output limit: past it the message is refused and, by default, the
    /// connection closed with 1008.)
    fn send_with(
        &mut self,
        len: usize,
        send: impl FnOnce(&mut Connection) -> Result<(), SendError>,
    ) -> SendStatus {
        let id = self.id;
        let (local, conns) = self.cx.split();
        // One lookup for the send and the check after; the settings copied out rather than the
        // `Arc` cloned (two atomic operations per message).
        let settings = &local.settings;
        let (high_water, low_water) = (settings.high_water, settings.low_water);
        let Some((open, queued)) = conns.get_queued(id) else {
            return SendStatus::Dropped;
        };
        if send(&mut open.ws).is_err() {
            return SendStatus::Dropped;
        }
        local.sent.messages += 1;
        local.sent.bytes += len as u64;
        if queued + open.ws.pending_output() < high_water {
            return SendStatus::Queued;
        }
        self.cx.conns_mut().notify_drain(id, low_water);
        SendStatus::Buffered
    }

    /// Bytes queued for this connection and not yet written to its socket.
    pub fn buffered_amount(&self) -> usize {
        self.cx.buffered(self.id)
    }

    /// Sends a ping; its pong is reported to [`Handler::on_pong`](crate::Handler::on_pong).
    pub fn ping(&mut self, payload: &[u8]) -> Result<(), CtxError> {
        let id = self.id;
        let open = self.cx.conn(id).ok_or(CtxError::Closing)?;
        open.ws.ping(payload)?;
        Ok(())
    }

    /// Starts the close handshake: code 1000 or 3000–4999, reason of at most 123 bytes.
    pub fn close(&mut self, code: CloseCode, reason: &str) -> Result<(), CtxError> {
        let (id, now) = (self.id, self.cx.now());
        let open = self.cx.conn(id).ok_or(CtxError::Closing)?;
        open.ws.close(code, reason, now)?;
        Ok(())
    }

    /// The subprotocol agreed in the handshake.
    pub fn protocol(&self) -> Option<&str> {
        self.cx.conns().view(self.id)?.protocol.as_deref()
    }

    /// The WebSocket protocol version (13).
    pub fn version(&self) -> u8 {
        13
    }

    /// The request target of the upgrade: path and query.
    pub fn url(&self) -> &str {
        self.slot_ref().map_or("", |s| &s.info.target)
    }

    /// The upgrade request, if the server keeps it (`keep_request_headers`).
    pub fn request(&self) -> Option<&RequestHead> {
        self.slot_ref()?.info.request.as_deref()
    }

    /// One header of the upgrade request, if the server keeps it.
    pub fn request_header(&self, name: &str) -> Option<&str> {
        self.request()?.headers().get(name)
    }

    /// The server's 101 answer, on a connection this side opened.
    pub fn response(&self) -> Option<&ResponseHead> {
        self.slot_ref()?.info.response.as_deref()
    }

    /// An address for posting `M` to this connection, dead from the start if the connection is
    /// closed or gone; [`Ctx::addr`] names `M` as the handler's message type.
    pub(crate) fn address<M>(&mut self) -> Addr<M> {
        let remote = self.cx.local_mut().remote.clone();
        let shard = self.cx.shard();
        let id = self.id;
        let alive = match self.slot() {
            Some(slot) if !slot.closed => slot
                .alive
                .get_or_insert_with(|| Arc::new(AtomicBool::new(true)))
                .clone(),
            // Closed (asked from `on_close`) or gone: an address that is dead from the start.
            _ => Arc::new(AtomicBool::new(false)),
        };
        Addr::new(remote, shard, Target::Conn(id), alive)
    }

    /// The peer's address (for an outgoing connection through a proxy, the proxy's).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.slot_ref()?.info.peer
    }

    /// Subscribes this connection to `topic` (no effect if it already is, or from
    /// [`Handler::on_close`](crate::Handler::on_close)).
    pub fn subscribe(&mut self, topic: &str) {
        let id = self.id;
        let (local, conns) = self.cx.split();
        let Some(slot) = conns.session_mut(id).filter(|slot| !slot.closed) else {
            return;
        };
        if let Some(name) = local.topics.subscribe(topic, id) {
            slot.topics.push(name);
        }
    }

    /// Unsubscribes this connection from `topic`.
    pub fn unsubscribe(&mut self, topic: &str) {
        let id = self.id;
        let (local, conns) = self.cx.split();
        let Some(slot) = conns.session_mut(id) else {
            return;
        };
        if local.topics.unsubscribe(topic, id) {
            slot.topics.retain(|t| &**t != topic);
        }
    }

    /// Publishes to every subscriber of `topic` on every shard, this connection included if it
    /// subscribes. The message is framed once. Returns this shard's part of the delivery.
    pub fn publish(&mut self, topic: &str, message: impl Into<Message>) -> Delivery {
        let frame = frame(message.into());
        publish(&mut self.cx, topic, frame, None, true)
    }

    /// As [`Ctx::publish`], leaving this connection out.
    pub fn publish_others(&mut self, topic: &str, message: impl Into<Message>) -> Delivery {
        let frame = frame(message.into());
        publish(&mut self.cx, topic, frame, Some(self.id), true)
    }

    /// Subscribers of `topic` on every shard.
    pub fn subscribers(&self, topic: &str) -> usize {
        self.cx.local().topics.count(topic)
    }

    /// Subscribers of `topic` on this shard.
    pub fn subscribers_here(&self, topic: &str) -> usize {
        self.cx.local().topics.count_here(topic)
    }

    /// Starts `actor` on this connection's shard and returns its address. It starts
    /// (`on_start`) after this callback returns, before any message posted to it.
    pub fn spawn<A: Actor>(&mut self, actor: A) -> Addr<A::Msg> {
        let local = self.cx.local_mut();
        let id = local.stats.next_actor.fetch_add(1, Ordering::Relaxed);
        post_spawn(&local.remote, local.shard, id, actor)
    }

    /// Sets the slow-subscriber policy of `topic` on this shard.
    pub fn set_topic_policy(&mut self, topic: &str, policy: SlowPolicy) {
        self.cx.local_mut().topics.set_policy(topic, policy);
    }

    /// Calls [`Handler::on_timer`](crate::Handler::on_timer) after `after`, unless cancelled or the connection closes.
    pub fn set_timer(&mut self, after: Duration) -> TimerId {
        let key = self.cx.local_mut().timer_id();
        let at = self.cx.now() + after;
        let id = self.id;
        if let Some(slot) = self.slot().filter(|slot| !slot.closed) {
            slot.timers.push(key);
            self.cx.set_timer(Some(id), at, key);
        }
        TimerId(key)
    }

    /// Cancels a timer; false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        let Some(slot) = self.slot() else {
            return false;
        };
        match slot.timers.iter().position(|&t| t == timer.0) {
            Some(i) => {
                slot.timers.swap_remove(i);
                true
            }
            None => false,
        }
    }
}
