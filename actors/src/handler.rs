//! What an application implements for each WebSocket connection.

use bytes::Bytes;
use ringsock_engine::server::DialError;
use ringsock_engine::ws::ProtocolError;

use crate::addr::Addr;
use crate::ctx::Ctx;
use crate::message::{Closed, Message};
use crate::timer::TimerId;

/// A WebSocket connection's behaviour. Every callback runs on the shard that owns the
/// connection, one at a time, with `&mut self` and a [`Ctx`] to act on it and its shard.
///
/// All callbacks have empty defaults, so a handler implements only what it needs.
pub trait Handler: Sized + 'static {
    /// What other threads and connections may post to this one with an
    /// [`Addr`](crate::Addr); use `()` if nothing.
    type Msg: Send + 'static;

    /// The connection is open; its 101 is queued and messages may be sent.
    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        let _ = ctx;
    }

    /// A whole message arrived.
    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let _ = (ctx, message);
    }

    /// A pong arrived for a ping sent with [`Ctx::ping`] (automatic pings are not reported).
    fn on_pong(&mut self, ctx: &mut Ctx<'_, Self>, payload: Bytes) {
        let _ = (ctx, payload);
    }

    /// The connection ended; this is the last callback. Subscriptions, timers and the
    /// connection's [`Addr`](crate::Addr)s are already gone.
    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, closed: Closed) {
        let _ = (ctx, closed);
    }

    /// The peer broke the protocol; [`Handler::on_close`] follows with the code sent to it.
    fn on_error(&mut self, ctx: &mut Ctx<'_, Self>, error: ProtocolError) {
        let _ = (ctx, error);
    }

    /// The outbound buffer, after passing the high-water mark, fell to the low-water mark.
    fn on_drain(&mut self, ctx: &mut Ctx<'_, Self>) {
        let _ = ctx;
    }

    /// A message posted with an [`Addr`](crate::Addr).
    fn on_tell(&mut self, ctx: &mut Ctx<'_, Self>, msg: Self::Msg) {
        let _ = (ctx, msg);
    }

    /// A timer set with [`Ctx::set_timer`] is due.
    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, timer: TimerId) {
        let _ = (ctx, timer);
    }

    /// An outgoing connection ([`crate::ServerHandle::connect`]) did not open: refused, timed out,
    /// or the server's answer was not a valid 101 (the error then holds its status and
    /// headers). No other callback runs for it.
    fn on_connect_failed(&mut self, error: DialError) {
        let _ = error;
    }
}

// The one `Ctx` method that needs the handler's message type lives beside the trait that names
// it, so `ctx` does not import `handler` back.
impl<H: Handler> Ctx<'_, H> {
    /// An address for posting `H::Msg` to this connection from anywhere (dead from the start if
    /// asked for in [`Handler::on_close`]).
    pub fn addr(&mut self) -> Addr<H::Msg> {
        self.address()
    }
}
