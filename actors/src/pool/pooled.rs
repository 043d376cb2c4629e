//! The handler the pool runs around the factory's: it counts what passes and tells the driver
//! when its connection opens, fails or closes.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use ringsock_engine::server::DialError;
use ringsock_engine::ws::{CloseCode, ProtocolError};

use super::shared::{bump, Event, Shared};
use crate::ctx::Ctx;
use crate::handler::Handler;
use crate::message::{Closed, Message};
use crate::timer::TimerId;

/// The handler the pool runs: the factory's, counted.
pub(super) struct Pooled<H> {
    /// The handler the factory made.
    pub inner: H,
    /// Its slot.
    pub index: usize,
    /// The counters and the driver's inbox.
    pub shared: Arc<Shared>,
}

impl<H: Handler> Pooled<H> {
    /// Runs one of the inner handler's callbacks and counts what it sent.
    #[inline]
    fn call<R>(
        &mut self,
        ctx: &mut Ctx<'_, Self>,
        f: impl FnOnce(&mut H, &mut Ctx<'_, H>) -> R,
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

    fn on_open(&mut self, ctx: &mut Ctx<'_, Self>) {
        bump(&self.shared.shard(ctx.shard()).opened, 1);
        self.shared.notify(Event::Opened { index: self.index });
        self.call(ctx, |h, c| h.on_open(c));
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_, Self>, message: Message) {
        let c = self.shared.shard(ctx.shard());
        bump(&c.messages_in, 1);
        bump(&c.bytes_in, message.as_bytes().len() as u64);
        self.call(ctx, |h, c| h.on_message(c, message));
    }

    fn on_pong(&mut self, ctx: &mut Ctx<'_, Self>, payload: Bytes) {
        self.call(ctx, |h, c| h.on_pong(c, payload));
    }

    fn on_close(&mut self, ctx: &mut Ctx<'_, Self>, closed: Closed) {
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

    fn on_error(&mut self, ctx: &mut Ctx<'_, Self>, error: ProtocolError) {
        self.call(ctx, |h, c| h.on_error(c, error));
    }

    fn on_drain(&mut self, ctx: &mut Ctx<'_, Self>) {
        self.call(ctx, |h, c| h.on_drain(c));
    }

    fn on_tell(&mut self, ctx: &mut Ctx<'_, Self>, msg: Self::Msg) {
        self.call(ctx, |h, c| h.on_tell(c, msg));
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_, Self>, timer: TimerId) {
        self.call(ctx, |h, c| h.on_timer(c, timer));
    }

    fn on_connect_failed(&mut self, error: DialError) {
        self.shared.failed.fetch_add(1, Ordering::Relaxed);
        self.inner.on_connect_failed(error);
        self.shared.notify(Event::Failed { index: self.index });
    }
}
