//! The service type the engine runs ([`Runtime`]), the context the engine hands it
//! ([`EngineCx`]), and the type-erased interface through which it calls handlers
//! ([`ErasedHandler`]).
//!
//! These three name one another (a route yields a handler whose callbacks take the runtime's
//! context), so they share this module; it names nothing else of the crate's but plain data
//! (settings, stats, messages, timer ids, the upgrade request). What the runtime does as a
//! [`Service`](ringsock_engine::server::Service) is in `service`, how a handler is called in
//! `dispatch`.

use std::any::Any;
use std::sync::Arc;

use bytes::Bytes;
use ringsock_engine::http::RequestHead;
use ringsock_engine::server::{ConnId, DialError, HttpResponse, ShardCx};
use ringsock_engine::ws::ProtocolError;

use crate::message::{Closed, Message};
use crate::registry::Registry;
use crate::settings::Settings;
use crate::stats::Stats;
use crate::timer::TimerId;
use crate::upgrade::{Accept, UpgradeRequest};

/// The engine's context as the runtime uses it.
pub(crate) type EngineCx<'a> = ShardCx<'a, Runtime>;

/// A type-erased upgrade hook: it makes the connection's handler.
pub(crate) type Hook = Box<
    dyn Fn(&UpgradeRequest<'_>) -> Result<Accept<Box<dyn ErasedHandler>>, HttpResponse>
        + Send
        + Sync,
>;

/// Answers plain HTTP requests.
pub(crate) type Responder = Box<dyn Fn(&RequestHead) -> HttpResponse + Send + Sync>;

/// The service: routes upgrades to hooks by path and runs what they return.
pub(crate) struct Runtime {
    /// Upgrade hooks by request path, in the order they were given.
    pub routes: Vec<(String, Hook)>,
    /// The responder for requests that are not upgrades; `None` answers 404.
    pub http: Option<Responder>,
    /// What every shard applies to its connections.
    pub settings: Arc<Settings>,
    /// The counters every shard adds to.
    pub stats: Arc<Stats>,
    /// The server-wide view of topics.
    pub registry: Arc<Registry>,
}

/// What a handler is called for.
pub(crate) enum Dispatch {
    /// `on_open`.
    Open,
    /// `on_message`.
    Message(Message),
    /// `on_pong`, for a ping the handler sent.
    Pong(Bytes),
    /// `on_close`.
    Close(Closed),
    /// `on_error`.
    Error(ProtocolError),
    /// `on_drain`.
    Drain,
    /// `on_tell`, with the message still boxed as it travelled.
    Tell(Box<dyn Any + Send>),
    /// `on_timer`.
    Timer(TimerId),
}

/// A [`Handler`](crate::Handler) with its type erased, so connections of different handler
/// types share a shard. (Every handler implements it; the implementation is in `dispatch`.)
pub(crate) trait ErasedHandler {
    /// Runs the callback `what` names, for connection `id`.
    fn dispatch(&mut self, cx: &mut EngineCx<'_>, id: ConnId, what: Dispatch);
    /// Runs `on_connect_failed`: no context, as there is no connection.
    fn connect_failed(&mut self, error: DialError);
}
