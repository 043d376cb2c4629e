//! Calling a connection's handler: the erased interface implemented for every [`Handler`], and
//! taking the handler out of its slot for the call.

use ringsock_engine::server::{ConnId, DialError};

use crate::ctx::Ctx;
use crate::handler::Handler;
use crate::runtime::{Dispatch, EngineCx, ErasedHandler};

impl<H: Handler> ErasedHandler for H {
    fn dispatch(&mut self, cx: &mut EngineCx<'_>, id: ConnId, what: Dispatch) {
        let mut ctx = Ctx::new(cx, id);
        match what {
            Dispatch::Open => self.on_open(&mut ctx),
            Dispatch::Message(m) => self.on_message(&mut ctx, m),
            Dispatch::Pong(p) => self.on_pong(&mut ctx, p),
            Dispatch::Close(c) => self.on_close(&mut ctx, c),
            Dispatch::Error(e) => self.on_error(&mut ctx, e),
            Dispatch::Drain => self.on_drain(&mut ctx),
            Dispatch::Tell(msg) => {
                // An Addr<M> only reaches handlers whose Msg is M, so this always succeeds.
                if let Ok(msg) = msg.downcast::<H::Msg>() {
                    self.on_tell(&mut ctx, *msg)
                }
            }
            Dispatch::Timer(t) => self.on_timer(&mut ctx, t),
        }
    }

    fn connect_failed(&mut self, error: DialError) {
        self.on_connect_failed(error);
    }
}

/// Runs one handler callback for `id`: the handler is taken out of its slot for the call, so
/// the callback's context can reach every connection of the shard, its own included.
pub(crate) fn call(cx: &mut EngineCx<'_>, id: ConnId, what: Dispatch) {
    let Some(mut handler) = cx
        .conns_mut()
        .session_mut(id)
        .and_then(|s| s.handler.take())
    else {
        return;
    };
    handler.dispatch(cx, id, what);
    if let Some(slot) = cx.conns_mut().session_mut(id) {
        slot.handler = Some(handler);
    }
}
