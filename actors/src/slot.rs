//! What the runtime keeps beside each connection in the engine's slab: its handler, its
//! subscriptions and timers, and what it remembers of its upgrade.

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use ringsock_engine::http::{RequestHead, ResponseHead};
use ringsock_engine::ws::PingId;

use crate::runtime::ErasedHandler;

/// What the runtime keeps beside each connection.
pub(crate) struct Slot {
    /// `None` only while one of its callbacks runs.
    pub handler: Option<Box<dyn ErasedHandler>>,
    /// The topics it subscribes to, as the shard's topic table names them, so closing leaves
    /// each without a lookup by string.
    pub topics: Vec<Arc<str>>,
    /// Made when the first [`crate::Addr`] is; cleared at close so addresses see it gone.
    pub alive: Option<Arc<AtomicBool>>,
    /// Timers set and not yet fired or cancelled.
    pub timers: Vec<u64>,
    /// The automatic ping waiting for its pong.
    pub auto_ping: Option<(PingId, Instant)>,
    /// The connection has closed for good: `on_close` may still be running, but nothing may
    /// subscribe it, arm its timers or hand out a live address for it any more.
    pub closed: bool,
    /// What it remembers of its upgrade.
    pub info: ConnInfo,
}

/// What a connection remembers of its upgrade.
pub(crate) struct ConnInfo {
    /// The request target (server side) or the URL dialled (client side).
    pub target: Box<str>,
    /// The peer's address (for an outgoing connection through a proxy, the proxy's).
    pub peer: Option<SocketAddr>,
    /// The upgrade request, if the server keeps it (`keep_request_headers`).
    pub request: Option<Box<RequestHead>>,
    /// The server's 101, on an outgoing connection.
    pub response: Option<Box<ResponseHead>>,
}

impl Slot {
    /// A connection about to open, run by `handler`.
    pub(crate) fn new(handler: Box<dyn ErasedHandler>, info: ConnInfo) -> Self {
        Slot {
            handler: Some(handler),
            topics: Vec::new(),
            alive: None,
            timers: Vec::new(),
            auto_ping: None,
            closed: false,
            info,
        }
    }
}
